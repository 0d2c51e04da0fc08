//! The CPU backend, on candle-core tensors: the reference every other backend
//! is tested against, and the fallback where WebGPU is missing.
//!
//! `forward` (forward.rs) is the plain TransformerLens-style hooked forward.
//! The fast paths (`patch_metrics`, `path_gradients`, …: tail.rs) run only the
//! *tail* of the network: from the patched layer on, only positions ≥ the
//! first differing token (rows "n"), the final block only at the last
//! position, and only the two answer logits (the logit difference; the
//! probability difference needs all logits, at the last position only), for
//! a whole batch of perturbations at once. Attention, the MLP and layer norm
//! are written once, in layers.rs; graph.rs holds the edge graph's passes.

mod forward;
mod fused;
mod graph;
pub(super) mod layers;
mod tail;

pub use fused::threads;
pub use graph::CpuGraphRun;

use super::hooks::{check_all_used, split_hook, unknown_hook};
use super::plan::Start;
use super::{
    Array, Component, Compute, HeadWeights, LayerComponents, Metric, PathGrads, Replacement,
    RunInfo,
};
use crate::error::{Error, Result};
use crate::model::weights::{Block, WeightSource};
use crate::model::{Config, Param, Weights};
use candle_core::{Device, Tensor};
use layers::heads_first;
use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

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
        which: LayerComponents,
        components: Range<usize>,
        first_diff: usize,
    ) -> Result<Vec<f32>> {
        self.sweep_patches(base, other, which, components, first_diff)
    }

    async fn path_gradients(
        &self,
        base: &CpuRun,
        other: &CpuRun,
        which: LayerComponents,
        alphas: &[f32],
        weights: &[f32],
        first_diff: usize,
    ) -> Result<PathGrads> {
        self.sweep_path(base, other, which, alphas, weights, first_diff)
    }

    async fn base_gradients(
        &self,
        base: &CpuRun,
        _other: &CpuRun,
        component: Component,
        first_diff: usize,
    ) -> Result<Vec<Array>> {
        self.sweep_base_gradients(base, component, first_diff)
    }

    async fn resid_metrics(
        &self,
        base: &CpuRun,
        start: Start,
        first_diff: usize,
        deltas: &[f32],
    ) -> Result<Vec<f32>> {
        self.sweep_resid_metrics(base, start, first_diff, deltas)
    }

    async fn resid_gradients(
        &self,
        base: &CpuRun,
        start: Start,
        first_diff: usize,
        deltas: &[f32],
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        self.sweep_resid_gradients(base, start, first_diff, deltas)
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
