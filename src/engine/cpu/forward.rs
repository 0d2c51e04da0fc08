//! The CPU backend's plain hooked forward over all positions (what `run`
//! caches, and the reference loops' forwards with replaced or substituted
//! activations), and how the metric is read from ln_final's output.

use super::layers::*;
use super::{fused, CpuEngine, Readout};
use crate::engine::{prob_diff_row, Metric};
use crate::error::Result;
use candle_core::{Device, Tensor, D};

/// Rows whose full logits ([rows, d_vocab]) the probability difference forms at once.
const LOGIT_ROWS: usize = 64;

impl CpuEngine {
    /// The hooked forward pass over all positions. `hook` sees every
    /// TransformerLens activation and returns it (possibly replaced).
    /// Returns `ln_final.hook_normalized` [pos, d_model].
    pub fn forward(
        &self,
        tokens: &[u32],
        hook: &mut dyn FnMut(&str, Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let (t, h, dh, d) = (
            tokens.len(),
            self.cfg.n_heads,
            self.cfg.d_head,
            self.cfg.d_model,
        );
        let ids = Tensor::new(tokens, &Device::Cpu)?;
        let embed = hook("hook_embed", self.wte.index_select(&ids, 0)?)?;
        let pos = hook("hook_pos_embed", self.wpe.narrow(0, 0, t)?)?;
        let mut x = (embed + pos)?;
        for (l, b) in self.blocks.iter().enumerate() {
            let name = |s: &str| format!("blocks.{l}.{s}");
            x = hook(&name("hook_resid_pre"), x)?;
            let (ln1, ln1_tape) = layer_norm(&x, &b.ln_1_w, &b.ln_1_b, self.eps())?;
            hook(&name("ln1.hook_scale"), ln1_tape.rstd.recip()?)?;
            let ln1 = hook(&name("ln1.hook_normalized"), ln1)?;
            let qkv = linear(&ln1, &b.c_attn_w, &b.c_attn_b)?;
            let split = |i: usize| qkv.narrow(1, i * d, d)?.reshape((t, h, dh));
            let q = hook(&name("attn.hook_q"), split(0)?)?;
            let k = hook(&name("attn.hook_k"), split(1)?)?;
            let v = hook(&name("attn.hook_v"), split(2)?)?;
            let (q, k, v) = (heads_first(&q)?, heads_first(&k)?, heads_first(&v)?);
            // hook_attn_scores and hook_pattern are seen inside attention
            let (z, _) = attention(&q, &k, &v, 0, &mut |s, a| hook(&name(s), a))?;
            let z = hook(&name("attn.hook_z"), z.transpose(0, 1)?.contiguous()?)?;
            // each head's output z_h · W_O[h]: [heads, pos, d_model] → [pos, heads, d_model]
            let result = heads_first(&z)?
                .matmul(&b.w_o)?
                .transpose(0, 1)?
                .contiguous()?;
            let result = hook(&name("attn.hook_result"), result)?;
            let attn_out = hook(
                &name("hook_attn_out"),
                result.sum(1)?.broadcast_add(&b.c_proj_b)?,
            )?;
            let mid = hook(&name("hook_resid_mid"), (x + attn_out)?)?;
            // hook_mlp_in is the copy fed to ln_2; the skip path keeps resid_mid
            let mlp_in = hook(&name("hook_mlp_in"), mid.clone())?;
            let (ln2, ln2_tape) = layer_norm(&mlp_in, &b.ln_2_w, &b.ln_2_b, self.eps())?;
            hook(&name("ln2.hook_scale"), ln2_tape.rstd.recip()?)?;
            let ln2 = hook(&name("ln2.hook_normalized"), ln2)?;
            let pre = hook(&name("mlp.hook_pre"), linear(&ln2, &b.c_fc_w, &b.c_fc_b)?)?;
            let post = hook(&name("mlp.hook_post"), gelu_new(&pre)?)?;
            let mlp_out = hook(
                &name("hook_mlp_out"),
                linear(&post, &b.mlp_proj_w, &b.mlp_proj_b)?,
            )?;
            x = hook(&name("hook_resid_post"), (mid + mlp_out)?)?;
        }
        let (norm, tape) = layer_norm(&x, &self.ln_f_w, &self.ln_f_b, self.eps())?;
        hook("ln_final.hook_scale", tape.rstd.recip()?)?;
        hook("ln_final.hook_normalized", norm)
    }

    /// Checks a metric and prepares what reads it from ln_final's output.
    pub(super) fn readout(&self, m: &Metric) -> Result<Readout> {
        Readout::of(
            m,
            self.cfg.d_vocab,
            |correct, incorrect| {
                Ok((self.wte.get(correct as usize)? - self.wte.get(incorrect as usize)?)?)
            },
            Ok,
        )
    }

    /// The metric of each row of ln_final's output `norm` [batch, d_model]
    /// and, with `grad`, ∂m/∂norm [batch, d_model].
    pub(super) fn readout_forward(
        &self,
        head: &Readout,
        norm: &Tensor,
        grad: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        match head {
            Readout::Dir(dir) => {
                let metric = norm.broadcast_mul(dir)?.sum(D::Minus1)?;
                let d_norm = grad
                    .then(|| dir.unsqueeze(0)?.broadcast_as(norm.dims()))
                    .transpose()?;
                Ok((metric, d_norm))
            }
            Readout::Signs(signs) => {
                // the full logits of a few rows at a time: [rows, d_vocab] · wte
                let (batch, v) = (norm.dim(0)?, self.cfg.d_vocab);
                let wte_t = self.wte.t()?;
                let mut metrics = vec![0f32; batch];
                let mut d_norms = Vec::new();
                for r0 in (0..batch).step_by(LOGIT_ROWS) {
                    let k = LOGIT_ROWS.min(batch - r0);
                    let logits = matmul_rows(&norm.narrow(0, r0, k)?, &wte_t)?;
                    let mut l = logits.flatten_all()?.to_vec1::<f32>()?;
                    let ms = &mut metrics[r0..r0 + k];
                    fused::par_rows(k, v, &mut [&mut l, ms], |first, out| {
                        let [l, ms] = out else { unreachable!() };
                        for (row, m) in l.chunks_mut(v).zip(ms.iter_mut()) {
                            *m = prob_diff_row(row, signs, grad);
                        }
                        let _ = first;
                    });
                    if grad {
                        // ∂m/∂norm = ∂m/∂logits · wte
                        let dl = Tensor::from_vec(l, (k, v), &Device::Cpu)?;
                        d_norms.push(matmul_rows(&dl, &self.wte)?);
                    }
                }
                let metric = Tensor::from_vec(metrics, batch, &Device::Cpu)?;
                let d_norm = grad.then(|| Tensor::cat(&d_norms, 0)).transpose()?;
                Ok((metric, d_norm))
            }
        }
    }
}
