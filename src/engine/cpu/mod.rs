//! The CPU backend, on candle-core tensors: the reference every other backend
//! is tested against, and the fallback where WebGPU is missing.
//!
//! `forward` is the plain TransformerLens-style hooked forward. The fast paths
//! (`patch_metrics`, `path_gradients`) run only the *tail* of the network:
//! from the patched layer on, only positions ≥ the first differing token
//! (rows "n"), the final block only at the last position, and only the two
//! answer logits (the logit difference; the probability difference needs all
//! logits, at the last position only), for a whole batch of perturbations at
//! once.

mod fused;
mod graph;
pub(super) mod layers;

pub use fused::threads;
pub use graph::{EdgePatch, GraphPass, GraphRun, Hold};

use super::hooks::{check_all_used, split_hook, unknown_hook};
use super::plan::{Start, Step, TailPlan, CPU_ROWS_PER_PASS};
use super::{
    prob_diff_row, Array, Component, Compute, HeadWeights, Metric, PathGrads, Replacement, RunInfo,
    Site,
};
use crate::error::{Error, Result};
use crate::model::weights::{Block, WeightSource};
use crate::model::{Config, Param, Weights};
use candle_core::{DType, Device, Tensor, D};
use layers::*;
use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

/// Rows whose full logits ([rows, d_vocab]) the probability difference forms at once.
const LOGIT_ROWS: usize = 64;

pub(crate) struct CpuBlock {
    ln_1_w: Tensor,
    ln_1_b: Tensor,
    c_attn_w: Tensor,
    c_attn_b: Tensor,
    c_proj_w: Tensor,
    /// c_proj_w viewed as [heads, d_head, d_model]: each head's W_O.
    w_o: Tensor,
    c_proj_b: Tensor,
    ln_2_w: Tensor,
    ln_2_b: Tensor,
    c_fc_w: Tensor,
    c_fc_b: Tensor,
    mlp_proj_w: Tensor,
    mlp_proj_b: Tensor,
}

pub struct CpuEngine {
    cfg: Config,
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<CpuBlock>,
    ln_f_w: Tensor,
    ln_f_b: Tensor,
}

/// How the metric is read from ln_final's output: the answer direction
/// [d_model], or every token's sign.
type Readout = super::Readout<Tensor, Vec<f32>>;

/// One prompt's forward pass on the CPU backend.
pub struct CpuRun {
    tokens: Vec<u32>,
    def: Metric,
    readout: Readout,
    metric: f32,
    last_logits: Vec<f32>,
    hooks: HashMap<String, Tensor>,
    /// Per layer, keys and values as [heads, pos, d_head] for the tail passes.
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
}

impl CpuRun {
    fn hook(&self, name: &str) -> Result<&Tensor> {
        self.hooks.get(name).ok_or_else(|| unknown_hook(name))
    }
}

impl RunInfo for CpuRun {
    fn tokens(&self) -> &[u32] {
        &self.tokens
    }
    fn metric_def(&self) -> &Metric {
        &self.def
    }
    fn metric(&self) -> f32 {
        self.metric
    }
}

fn tensor(p: Param) -> Result<Tensor> {
    Ok(Tensor::from_vec(p.data, p.shape, &Device::Cpu)?)
}

/// What one step of a tail keeps for the backward pass.
enum Tape {
    Mlp(MlpTape),
    Attn(AttnTailTape),
}

/// What the backward of a tail starts from.
struct MetricTape {
    /// ln_final's tape.
    ln_f: LnTape,
    /// ∂metric/∂(ln_final's output) [batch, d_model].
    d_norm: Tensor,
}

/// What a tail pass returns.
struct TailRun {
    /// The metric of each batch element, [batch].
    metric: Tensor,
    /// With `record`: one tape per step of the plan, in order, and the
    /// metric's tape.
    tapes: Vec<Tape>,
    metric_tape: Option<MetricTape>,
}

/// A host copy of one tensor.
fn host_param(t: &Tensor) -> Result<Param> {
    Ok(Param::new(
        t.dims().to_vec(),
        t.flatten_all()?.to_vec1::<f32>()?,
    ))
}

impl WeightSource for CpuEngine {
    fn wte(&self) -> Result<Cow<'_, Param>> {
        Ok(Cow::Owned(host_param(&self.wte)?))
    }
    fn wpe(&self) -> Result<Cow<'_, Param>> {
        Ok(Cow::Owned(host_param(&self.wpe)?))
    }
    fn ln_f(&self) -> Result<(Cow<'_, Param>, Cow<'_, Param>)> {
        Ok((
            Cow::Owned(host_param(&self.ln_f_w)?),
            Cow::Owned(host_param(&self.ln_f_b)?),
        ))
    }
    fn block(&self, layer: usize) -> Result<Cow<'_, Block>> {
        let b = self
            .blocks
            .get(layer)
            .ok_or_else(|| Error::Input(format!("layer {layer} does not exist")))?;
        Ok(Cow::Owned(Block {
            ln_1_w: host_param(&b.ln_1_w)?,
            ln_1_b: host_param(&b.ln_1_b)?,
            c_attn_w: host_param(&b.c_attn_w)?,
            c_attn_b: host_param(&b.c_attn_b)?,
            c_proj_w: host_param(&b.c_proj_w)?,
            c_proj_b: host_param(&b.c_proj_b)?,
            ln_2_w: host_param(&b.ln_2_w)?,
            ln_2_b: host_param(&b.ln_2_b)?,
            c_fc_w: host_param(&b.c_fc_w)?,
            c_fc_b: host_param(&b.c_fc_b)?,
            mlp_proj_w: host_param(&b.mlp_proj_w)?,
            mlp_proj_b: host_param(&b.mlp_proj_b)?,
        }))
    }
}

/// Times the plain product [m, k] · [k, n] + bias with the kernel behind
/// every linear layer (`layers::linear`: gemm on `threads()` threads):
/// milliseconds per product, the mean of `reps` products after one warm-up,
/// for GFLOP/s = 2·m·k·n / (ms · 1e6). The CPU counterpart of
/// `GpuEngine::time_matmul`; in the browser, `cpu_matmul_ms`.
pub fn time_matmul(m: usize, k: usize, n: usize, reps: usize) -> Result<f64> {
    let a = Tensor::full(0.5f32, (m, k), &Device::Cpu)?;
    let b = Tensor::full(0.25f32, (k, n), &Device::Cpu)?;
    let bias = Tensor::full(1.0f32, n, &Device::Cpu)?;
    let mut ms = 0.0;
    for round in [1, reps.max(1)] {
        let t = crate::clock::now_ms();
        for _ in 0..round {
            // computed eagerly: the product is done when this returns
            std::hint::black_box(layers::linear(&a, &b, &bias)?);
        }
        ms = (crate::clock::now_ms() - t) / round as f64;
    }
    Ok(ms)
}

impl CpuEngine {
    pub fn new(cfg: Config, w: Weights) -> Result<CpuEngine> {
        let (h, dh, d) = (cfg.n_heads, cfg.d_head, cfg.d_model);
        let blocks = w
            .blocks
            .into_iter()
            .map(|b| {
                let c_proj_w = tensor(b.c_proj_w)?;
                Ok(CpuBlock {
                    ln_1_w: tensor(b.ln_1_w)?,
                    ln_1_b: tensor(b.ln_1_b)?,
                    c_attn_w: tensor(b.c_attn_w)?,
                    c_attn_b: tensor(b.c_attn_b)?,
                    w_o: c_proj_w.reshape((h, dh, d))?,
                    c_proj_w,
                    c_proj_b: tensor(b.c_proj_b)?,
                    ln_2_w: tensor(b.ln_2_w)?,
                    ln_2_b: tensor(b.ln_2_b)?,
                    c_fc_w: tensor(b.c_fc_w)?,
                    c_fc_b: tensor(b.c_fc_b)?,
                    mlp_proj_w: tensor(b.mlp_proj_w)?,
                    mlp_proj_b: tensor(b.mlp_proj_b)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CpuEngine {
            wte: tensor(w.wte)?,
            wpe: tensor(w.wpe)?,
            blocks,
            ln_f_w: tensor(w.ln_f_w)?,
            ln_f_b: tensor(w.ln_f_b)?,
            cfg,
        })
    }

    /// A host copy of the weights (as `new` took them). To start another
    /// backend from this one, use the engine as a [`WeightSource`] instead:
    /// it copies one tensor at a time.
    pub fn weights(&self) -> Result<Weights> {
        let (ln_f_w, ln_f_b) = self.ln_f()?;
        Ok(Weights {
            wte: self.wte()?.into_owned(),
            wpe: self.wpe()?.into_owned(),
            blocks: (0..self.blocks.len())
                .map(|l| Ok(self.block(l)?.into_owned()))
                .collect::<Result<Vec<_>>>()?,
            ln_f_w: ln_f_w.into_owned(),
            ln_f_b: ln_f_b.into_owned(),
        })
    }

    /// `time_matmul` (the engine's weights play no part in it).
    pub fn time_matmul(&self, m: usize, k: usize, n: usize, reps: usize) -> Result<f64> {
        time_matmul(m, k, n, reps)
    }

    fn eps(&self) -> f64 {
        self.cfg.layer_norm_eps as f64
    }

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
    fn readout(&self, m: &Metric) -> Result<Readout> {
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
    fn readout_forward(
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
                    let logits = layers::matmul_rows(&norm.narrow(0, r0, k)?, &wte_t)?;
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
                        d_norms.push(layers::matmul_rows(&dl, &self.wte)?);
                    }
                }
                let metric = Tensor::from_vec(metrics, batch, &Device::Cpu)?;
                let d_norm = grad.then(|| Tensor::cat(&d_norms, 0)).transpose()?;
                Ok((metric, d_norm))
            }
        }
    }

    /// The start rows of a tail pass for each perturbation: the base run's
    /// residual at the start point plus `delta` ([batch, rows, d_model]).
    fn start_rows(&self, base: &CpuRun, start: Start, fd: usize, delta: &Tensor) -> Result<Tensor> {
        let r = base.hook(&start.hook())?;
        let rows = r.narrow(0, fd, r.dim(0)? - fd)?;
        Ok(delta.broadcast_add(&rows)?)
    }

    /// Runs the model tail for a batch of start rows x [batch, n, d_model]
    /// (positions fd..T): the steps of `TailPlan::new(start)`, then the metric.
    /// With `record`, keeps the tapes for the backward pass.
    fn tail(
        &self,
        base: &CpuRun,
        start: Start,
        fd: usize,
        x: Tensor,
        record: bool,
    ) -> Result<TailRun> {
        let plan = TailPlan::new(start, self.cfg.n_layers);
        let n = x.dim(1)?;
        let mut tapes = Vec::new();
        let mut x = if plan.gather_first {
            x.narrow(1, n - 1, 1)?
        } else {
            x
        };
        for step in &plan.steps {
            x = match *step {
                Step::Mlp(l) => {
                    let (y, tape) = mlp(&self.blocks[l], &x, self.eps(), record)?;
                    tapes.extend(tape.map(Tape::Mlp));
                    y
                }
                Step::Attn { layer, last_only } => {
                    let prefix = Prefix {
                        keys: &base.keys[layer],
                        values: &base.values[layer],
                        fd,
                    };
                    let b = &self.blocks[layer];
                    let (y, tape) = attention_tail(b, &x, prefix, last_only, record, &self.cfg)?;
                    tapes.extend(tape.map(Tape::Attn));
                    y
                }
            };
        }
        let rows = x.dim(1)?;
        let x_last = x.narrow(1, rows - 1, 1)?.squeeze(1)?;
        let (norm, ln_f) = layer_norm(&x_last, &self.ln_f_w, &self.ln_f_b, self.eps())?;
        let (metric, d_norm) = self.readout_forward(&base.readout, &norm, record)?;
        Ok(TailRun {
            metric,
            tapes,
            metric_tape: d_norm.map(|d_norm| MetricTape { ln_f, d_norm }),
        })
    }

    /// ∂metric/∂(final residual at the last position), [batch, 1, d_model],
    /// from ∂metric/∂(ln_final's output).
    fn metric_backward(&self, t: &MetricTape) -> Result<Tensor> {
        Ok(layer_norm_backward(&t.d_norm, &self.ln_f_w, &t.ln_f)?.unsqueeze(1)?)
    }

    /// Backward of a recorded `tail`: ∂metric/∂x for the start rows, [batch, n, d_model].
    fn tail_backward(&self, run: TailRun, n: usize) -> Result<Tensor> {
        let mut dx = self.metric_backward(&run.metric_tape.expect("a recorded tail"))?;
        for tape in run.tapes.into_iter().rev() {
            dx = match tape {
                Tape::Mlp(t) => mlp_backward(&t, &dx)?,
                Tape::Attn(t) => attention_tail_backward(&t, &dx)?,
            };
        }
        // a tail that started in the final block sees only the last row
        let rows = dx.dim(1)?;
        if rows < n {
            dx = dx.pad_with_zeros(1, n - rows, 0)?;
        }
        Ok(dx)
    }

    /// Δ of the site's residual contribution for each component (rows fd..T):
    /// heads: other's hook_result[:, h] − base's; neurons: Δhook_post[:, n] · W_out[n].
    fn component_deltas(
        &self,
        base: &CpuRun,
        other: &CpuRun,
        site: Site,
        comps: Range<usize>,
        fd: usize,
    ) -> Result<Tensor> {
        let hook = site.component.hook(site.layer);
        let (a, b) = (base.hook(&hook)?, other.hook(&hook)?);
        let t = a.dim(0)?;
        let diff = (b.narrow(0, fd, t - fd)? - a.narrow(0, fd, t - fd)?)?;
        let k = comps.len();
        match site.component {
            // [n, heads, d] → [k, n, d]
            Component::Heads => Ok(diff
                .narrow(1, comps.start, k)?
                .transpose(0, 1)?
                .contiguous()?),
            Component::Neurons => {
                let w = self.blocks[site.layer]
                    .mlp_proj_w
                    .narrow(0, comps.start, k)?; // [k, d]
                let dpost = diff.narrow(1, comps.start, k)?.t()?.contiguous()?; // [k, n]
                Ok(dpost.unsqueeze(2)?.broadcast_mul(&w.unsqueeze(1)?)?)
            }
        }
    }

    /// Δ of the site's whole residual contribution (attn_out or mlp_out), [n, d].
    fn site_delta(&self, base: &CpuRun, other: &CpuRun, site: Site, fd: usize) -> Result<Tensor> {
        let hook = site.component.out_hook(site.layer);
        let (a, b) = (base.hook(&hook)?, other.hook(&hook)?);
        let t = a.dim(0)?;
        Ok((b.narrow(0, fd, t - fd)? - a.narrow(0, fd, t - fd)?)?)
    }
}

impl Compute for CpuEngine {
    type Run = CpuRun;

    fn config(&self) -> &Config {
        &self.cfg
    }

    fn backend(&self) -> &'static str {
        "cpu"
    }

    async fn run(&self, tokens: &[u32], def: &Metric) -> Result<CpuRun> {
        let readout = self.readout(def)?;
        let mut hooks = HashMap::new();
        let norm = self.forward(tokens, &mut |name, t| {
            hooks.insert(name.to_string(), t.clone());
            Ok(t)
        })?;
        let last = norm.get(tokens.len() - 1)?;
        let metric = match &readout {
            Readout::Dir(dir) => (&last * dir)?.sum_all()?.to_scalar::<f32>()?,
            Readout::Signs(_) => {
                let (m, _) = self.readout_forward(&readout, &last.unsqueeze(0)?, false)?;
                m.get(0)?.to_scalar::<f32>()?
            }
        };
        let last_logits = self
            .wte
            .matmul(&last.unsqueeze(1)?)?
            .squeeze(1)?
            .to_vec1::<f32>()?;
        let heads_first_of = |name: String| -> Result<Tensor> {
            let t = hooks.get(&name).expect("forward sets every hook");
            heads_first(t)
        };
        let n = self.cfg.n_layers;
        let keys = (0..n)
            .map(|l| heads_first_of(format!("blocks.{l}.attn.hook_k")))
            .collect::<Result<_>>()?;
        let values = (0..n)
            .map(|l| heads_first_of(format!("blocks.{l}.attn.hook_v")))
            .collect::<Result<_>>()?;
        Ok(CpuRun {
            tokens: tokens.to_vec(),
            def: def.clone(),
            readout,
            metric,
            last_logits,
            hooks,
            keys,
            values,
        })
    }

    async fn last_logits(&self, run: &CpuRun) -> Result<Vec<f32>> {
        Ok(run.last_logits.clone())
    }

    async fn activation(&self, run: &CpuRun, hook: &str) -> Result<Array> {
        let t = run.hook(hook)?;
        Ok(Param::new(
            t.dims().to_vec(),
            t.flatten_all()?.to_vec1::<f32>()?,
        ))
    }

    async fn patch_metrics(
        &self,
        base: &CpuRun,
        other: &CpuRun,
        site: Site,
        components: Range<usize>,
        fd: usize,
    ) -> Result<Vec<f32>> {
        let n = base.tokens.len() - fd;
        let per_pass = (CPU_ROWS_PER_PASS / n).max(1);
        let mut out = Vec::with_capacity(components.len());
        let mut c = components.start;
        while c < components.end {
            let k = per_pass.min(components.end - c);
            let delta = self.component_deltas(base, other, site, c..c + k, fd)?;
            let x = self.start_rows(base, Start::of(site), fd, &delta)?;
            let run = self.tail(base, Start::of(site), fd, x, false)?;
            out.extend(run.metric.to_vec1::<f32>()?);
            c += k;
        }
        Ok(out)
    }

    async fn path_gradients(
        &self,
        base: &CpuRun,
        other: &CpuRun,
        site: Site,
        alphas: &[f32],
        weights: &[f32],
        fd: usize,
    ) -> Result<PathGrads> {
        let (t, d) = (base.tokens.len(), self.cfg.d_model);
        let n = t - fd;
        let delta = self.site_delta(base, other, site, fd)?; // [n, d]
        let start = Start::of(site);
        let per_pass = (CPU_ROWS_PER_PASS / n).max(1);
        let mut metrics = Vec::with_capacity(alphas.len());
        let mut grad = Tensor::zeros((n, d), DType::F32, &Device::Cpu)?;
        for (a_chunk, w_chunk) in alphas.chunks(per_pass).zip(weights.chunks(per_pass)) {
            let k = a_chunk.len();
            let a = Tensor::new(a_chunk, &Device::Cpu)?.reshape((k, 1, 1))?;
            let x = self.start_rows(base, start, fd, &delta.unsqueeze(0)?.broadcast_mul(&a)?)?;
            let run = self.tail(base, start, fd, x, true)?;
            metrics.extend(run.metric.to_vec1::<f32>()?);
            let g = self.tail_backward(run, n)?; // [k, n, d]
            let w = Tensor::new(w_chunk, &Device::Cpu)?.reshape((k, 1, 1))?;
            grad = (grad + g.broadcast_mul(&w)?.sum(0)?)?;
        }
        // ∂m/∂hook_post = ∂m/∂mlp_out · W_outᵀ; ∂m/∂hook_result[:, h] = ∂m/∂attn_out
        let grad = match site.component {
            Component::Heads => grad,
            Component::Neurons => {
                layers::matmul_rows_t(&grad, &self.blocks[site.layer].mlp_proj_w)?
            }
        };
        let grad = grad.pad_with_zeros(0, fd, 0)?;
        Ok(PathGrads {
            metrics,
            weighted_grad: Param::new(grad.dims().to_vec(), grad.flatten_all()?.to_vec1::<f32>()?),
        })
    }

    async fn base_gradients(
        &self,
        base: &CpuRun,
        _other: &CpuRun,
        component: Component,
        fd: usize,
    ) -> Result<Vec<Array>> {
        let (t, d) = (base.tokens.len(), self.cfg.d_model);
        // one forward of the whole network over rows fd..T and one backward,
        // reading ∂m/∂resid_post (= ∂m/∂mlp_out) and ∂m/∂resid_mid
        // (= ∂m/∂attn_out) at every block boundary
        let zero = Tensor::zeros((1, t - fd, d), DType::F32, &Device::Cpu)?;
        let x = self.start_rows(base, Start::Embed, fd, &zero)?;
        let run = self.tail(base, Start::Embed, fd, x, true)?;
        let mut dx = self.metric_backward(run.metric_tape.as_ref().expect("a recorded tail"))?;
        // [1, rows, d] → [t, d], zero before fd (and before the last row in the final block)
        let pad = |g: &Tensor| -> Result<Tensor> {
            Ok(g.squeeze(0)?.pad_with_zeros(0, t - g.dim(1)?, 0)?)
        };
        let mut grads = vec![None; self.cfg.n_layers];
        let plan = TailPlan::new(Start::Embed, self.cfg.n_layers);
        for (step, tape) in plan.steps.iter().zip(run.tapes).rev() {
            match (*step, tape) {
                (Step::Mlp(layer), Tape::Mlp(tape)) => {
                    if component == Component::Neurons {
                        grads[layer] = Some(layers::matmul_rows_t(
                            &pad(&dx)?,
                            &self.blocks[layer].mlp_proj_w,
                        )?);
                    }
                    dx = mlp_backward(&tape, &dx)?;
                    if component == Component::Heads {
                        grads[layer] = Some(pad(&dx)?);
                    }
                }
                (Step::Attn { .. }, Tape::Attn(tape)) => dx = attention_tail_backward(&tape, &dx)?,
                _ => unreachable!("one tape per step of the plan"),
            }
        }
        grads
            .into_iter()
            .map(|g| {
                let g = g.expect("every block has an MLP tape");
                Ok(Param::new(
                    g.dims().to_vec(),
                    g.flatten_all()?.to_vec1::<f32>()?,
                ))
            })
            .collect()
    }

    async fn resid_metrics(
        &self,
        base: &CpuRun,
        start: Start,
        fd: usize,
        deltas: &[f32],
    ) -> Result<Vec<f32>> {
        let (n, d) = (base.tokens.len() - fd, self.cfg.d_model);
        let per_pass = (CPU_ROWS_PER_PASS / n).max(1);
        let mut out = Vec::with_capacity(deltas.len() / (n * d));
        for chunk in deltas.chunks(per_pass * n * d) {
            let delta = Tensor::from_slice(chunk, (chunk.len() / (n * d), n, d), &Device::Cpu)?;
            let x = self.start_rows(base, start, fd, &delta)?;
            out.extend(
                self.tail(base, start, fd, x, false)?
                    .metric
                    .to_vec1::<f32>()?,
            );
        }
        Ok(out)
    }

    async fn resid_gradients(
        &self,
        base: &CpuRun,
        start: Start,
        fd: usize,
        deltas: &[f32],
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let (n, d) = (base.tokens.len() - fd, self.cfg.d_model);
        let per_pass = (CPU_ROWS_PER_PASS / n).max(1);
        let k = deltas.len() / (n * d);
        let (mut metrics, mut grads) = (Vec::with_capacity(k), Vec::with_capacity(deltas.len()));
        for chunk in deltas.chunks(per_pass * n * d) {
            let delta = Tensor::from_slice(chunk, (chunk.len() / (n * d), n, d), &Device::Cpu)?;
            let x = self.start_rows(base, start, fd, &delta)?;
            let run = self.tail(base, start, fd, x, true)?;
            metrics.extend(run.metric.to_vec1::<f32>()?);
            grads.extend(
                self.tail_backward(run, n)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            );
        }
        Ok((metrics, grads))
    }

    async fn logit_diff_direction(&self, correct: u32, incorrect: u32) -> Result<(Vec<f32>, f32)> {
        let row =
            |id: u32| -> Result<Vec<f32>> { Ok(self.wte.get(id as usize)?.to_vec1::<f32>()?) };
        Ok(super::logit_diff_direction(
            &self.ln_f_w.to_vec1::<f32>()?,
            &self.ln_f_b.to_vec1::<f32>()?,
            &row(correct)?,
            &row(incorrect)?,
        ))
    }

    async fn head_weights(&self, layer: usize) -> Result<HeadWeights> {
        let b = self.block(layer)?;
        Ok(HeadWeights::of(
            &self.cfg,
            &b.ln_1_b.data,
            &b.c_attn_w.data,
            &b.c_attn_b.data,
            b.c_proj_w.data.clone(),
        ))
    }

    async fn metric_with_replacements(
        &self,
        tokens: &[u32],
        def: &Metric,
        reps: &[Replacement],
    ) -> Result<f32> {
        let (h, d, dm) = (self.cfg.n_heads, self.cfg.d_model, self.cfg.d_mlp);
        let norm = self.forward(tokens, &mut |name, t| {
            let Some((layer, rest)) = split_hook(name) else {
                return Ok(t);
            };
            let component = match rest {
                "attn.hook_result" => Component::Heads,
                "mlp.hook_post" => Component::Neurons,
                _ => return Ok(t),
            };
            let mine: Vec<&Replacement> = reps
                .iter()
                .filter(|r| r.layer == layer && r.component == component)
                .collect();
            if mine.is_empty() {
                return Ok(t);
            }
            let shape = t.dims().to_vec();
            let mut v = t.flatten_all()?.to_vec1::<f32>()?;
            for r in mine {
                for p in 0..tokens.len() {
                    match component {
                        Component::Heads => {
                            v[(p * h + r.index) * d..][..d].copy_from_slice(&r.values[p * d..][..d])
                        }
                        Component::Neurons => v[p * dm + r.index] = r.values[p],
                    }
                }
            }
            Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
        })?;
        let last = norm.get(tokens.len() - 1)?;
        let logits = self.wte.matmul(&last.unsqueeze(1)?)?.squeeze(1)?;
        Ok(def.of_logits(&mut logits.to_vec1::<f32>()?))
    }

    async fn metric_with_substitutions(
        &self,
        tokens: &[u32],
        def: &Metric,
        subs: &[(String, Array)],
    ) -> Result<f32> {
        let mut used = 0;
        let norm = self.forward(
            tokens,
            &mut |name, t| match subs.iter().find(|(n, _)| n == name) {
                Some((_, v)) => {
                    used += 1;
                    Ok(Tensor::from_vec(
                        v.data.clone(),
                        v.shape.clone(),
                        &Device::Cpu,
                    )?)
                }
                None => Ok(t),
            },
        )?;
        check_all_used(used, subs)?;
        // a plain GPT-2 forward computes all logits; so does this reference path
        let logits = norm.matmul(&self.wte.t()?)?;
        let last = logits.get(tokens.len() - 1)?;
        Ok(def.of_logits(&mut last.to_vec1::<f32>()?))
    }
}
