//! The CPU backend's fast paths: the model *tail* from a perturbed point
//! for a batch of perturbations (only positions ≥ the first differing token,
//! the final block only at the last position, only what the metric reads),
//! forward and with activation gradients. Runs the steps of
//! `engine::plan::TailPlan`, as the GPU backend's tail does.

use super::layers::*;
use super::{CpuEngine, CpuRun};
use crate::engine::plan::{Start, Step, TailPlan, CPU_ROWS_PER_PASS};
use crate::engine::{Array, Component, LayerComponents, PathGrads};
use crate::error::Result;
use crate::model::Param;
use candle_core::{DType, Device, Tensor};
use std::ops::Range;

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

impl CpuEngine {
    /// The start rows of a tail pass for each perturbation: the base run's
    /// residual at the start point plus `delta` ([batch, rows, d_model]).
    fn start_rows(
        &self,
        base: &CpuRun,
        start: Start,
        first_diff: usize,
        delta: &Tensor,
    ) -> Result<Tensor> {
        let r = base.hook(&start.hook())?;
        let rows = r.narrow(0, first_diff, r.dim(0)? - first_diff)?;
        Ok(delta.broadcast_add(&rows)?)
    }

    /// Runs the model tail for a batch of start rows x [batch, n, d_model]
    /// (positions first_diff..T): the steps of `TailPlan::new(start)`, then the metric.
    /// With `record`, keeps the tapes for the backward pass.
    fn tail(
        &self,
        base: &CpuRun,
        start: Start,
        first_diff: usize,
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
                        first_diff,
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

    /// Δ of the site's residual contribution for each component (rows first_diff..T):
    /// heads: other's hook_result[:, h] − base's; neurons: Δhook_post[:, n] · W_out[n].
    fn component_deltas(
        &self,
        base: &CpuRun,
        other: &CpuRun,
        which: LayerComponents,
        comps: Range<usize>,
        first_diff: usize,
    ) -> Result<Tensor> {
        let hook = which.component.hook(which.layer);
        let (a, b) = (base.hook(&hook)?, other.hook(&hook)?);
        let t = a.dim(0)?;
        let diff = (b.narrow(0, first_diff, t - first_diff)?
            - a.narrow(0, first_diff, t - first_diff)?)?;
        let k = comps.len();
        match which.component {
            // [n, heads, d] → [k, n, d]
            Component::Heads => Ok(diff
                .narrow(1, comps.start, k)?
                .transpose(0, 1)?
                .contiguous()?),
            Component::Neurons => {
                let w = self.blocks[which.layer]
                    .mlp_proj_w
                    .narrow(0, comps.start, k)?; // [k, d]
                let dpost = diff.narrow(1, comps.start, k)?.t()?.contiguous()?; // [k, n]
                Ok(dpost.unsqueeze(2)?.broadcast_mul(&w.unsqueeze(1)?)?)
            }
        }
    }

    /// Δ of the site's whole residual contribution (attn_out or mlp_out), [n, d].
    fn site_delta(
        &self,
        base: &CpuRun,
        other: &CpuRun,
        which: LayerComponents,
        first_diff: usize,
    ) -> Result<Tensor> {
        let hook = which.component.out_hook(which.layer);
        let (a, b) = (base.hook(&hook)?, other.hook(&hook)?);
        let t = a.dim(0)?;
        Ok(
            (b.narrow(0, first_diff, t - first_diff)?
                - a.narrow(0, first_diff, t - first_diff)?)?,
        )
    }

    /// `Compute::patch_metrics`: the tails of `components` patched at `which`,
    /// `CPU_ROWS_PER_PASS` rows a pass.
    pub(super) fn sweep_patches(
        &self,
        base: &CpuRun,
        other: &CpuRun,
        which: LayerComponents,
        components: Range<usize>,
        first_diff: usize,
    ) -> Result<Vec<f32>> {
        let n = base.tokens.len() - first_diff;
        let per_pass = (CPU_ROWS_PER_PASS / n).max(1);
        let mut out = Vec::with_capacity(components.len());
        let mut c = components.start;
        while c < components.end {
            let k = per_pass.min(components.end - c);
            let delta = self.component_deltas(base, other, which, c..c + k, first_diff)?;
            let x = self.start_rows(base, Start::of(which), first_diff, &delta)?;
            let run = self.tail(base, Start::of(which), first_diff, x, false)?;
            out.extend(run.metric.to_vec1::<f32>()?);
            c += k;
        }
        Ok(out)
    }

    /// `Compute::path_gradients`: the tails along the site's straight path,
    /// forward and backward, the gradients weighted and summed.
    pub(super) fn sweep_path(
        &self,
        base: &CpuRun,
        other: &CpuRun,
        which: LayerComponents,
        alphas: &[f32],
        weights: &[f32],
        first_diff: usize,
    ) -> Result<PathGrads> {
        let (t, d) = (base.tokens.len(), self.cfg.d_model);
        let n = t - first_diff;
        let delta = self.site_delta(base, other, which, first_diff)?; // [n, d]
        let start = Start::of(which);
        let per_pass = (CPU_ROWS_PER_PASS / n).max(1);
        let mut metrics = Vec::with_capacity(alphas.len());
        let mut grad = Tensor::zeros((n, d), DType::F32, &Device::Cpu)?;
        for (a_chunk, w_chunk) in alphas.chunks(per_pass).zip(weights.chunks(per_pass)) {
            let k = a_chunk.len();
            let a = Tensor::new(a_chunk, &Device::Cpu)?.reshape((k, 1, 1))?;
            let x = self.start_rows(
                base,
                start,
                first_diff,
                &delta.unsqueeze(0)?.broadcast_mul(&a)?,
            )?;
            let run = self.tail(base, start, first_diff, x, true)?;
            metrics.extend(run.metric.to_vec1::<f32>()?);
            let g = self.tail_backward(run, n)?; // [k, n, d]
            let w = Tensor::new(w_chunk, &Device::Cpu)?.reshape((k, 1, 1))?;
            grad = (grad + g.broadcast_mul(&w)?.sum(0)?)?;
        }
        // ∂m/∂hook_post = ∂m/∂mlp_out · W_outᵀ; ∂m/∂hook_result[:, h] = ∂m/∂attn_out
        let grad = match which.component {
            Component::Heads => grad,
            Component::Neurons => matmul_rows_t(&grad, &self.blocks[which.layer].mlp_proj_w)?,
        };
        let grad = grad.pad_with_zeros(0, first_diff, 0)?;
        Ok(PathGrads {
            metrics,
            weighted_grad: Param::new(grad.dims().to_vec(), grad.flatten_all()?.to_vec1::<f32>()?),
        })
    }

    /// `Compute::base_gradients`: one tail from the embeddings and its
    /// backward, read at every block.
    pub(super) fn sweep_base_gradients(
        &self,
        base: &CpuRun,
        component: Component,
        first_diff: usize,
    ) -> Result<Vec<Array>> {
        let (t, d) = (base.tokens.len(), self.cfg.d_model);
        // one forward of the whole network over rows first_diff..T and one backward,
        // reading ∂m/∂resid_post (= ∂m/∂mlp_out) and ∂m/∂resid_mid
        // (= ∂m/∂attn_out) at every block boundary
        let zero = Tensor::zeros((1, t - first_diff, d), DType::F32, &Device::Cpu)?;
        let x = self.start_rows(base, Start::Embed, first_diff, &zero)?;
        let run = self.tail(base, Start::Embed, first_diff, x, true)?;
        let mut dx = self.metric_backward(run.metric_tape.as_ref().expect("a recorded tail"))?;
        // [1, rows, d] → [t, d], zero before first_diff (and before the last row in the final block)
        let pad = |g: &Tensor| -> Result<Tensor> {
            Ok(g.squeeze(0)?.pad_with_zeros(0, t - g.dim(1)?, 0)?)
        };
        let mut grads = vec![None; self.cfg.n_layers];
        let plan = TailPlan::new(Start::Embed, self.cfg.n_layers);
        for (step, tape) in plan.steps.iter().zip(run.tapes).rev() {
            match (*step, tape) {
                (Step::Mlp(layer), Tape::Mlp(tape)) => {
                    if component == Component::Neurons {
                        grads[layer] =
                            Some(matmul_rows_t(&pad(&dx)?, &self.blocks[layer].mlp_proj_w)?);
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

    /// `Compute::resid_metrics`: the tails of residual perturbations.
    pub(super) fn sweep_resid_metrics(
        &self,
        base: &CpuRun,
        start: Start,
        first_diff: usize,
        deltas: &[f32],
    ) -> Result<Vec<f32>> {
        let (n, d) = (base.tokens.len() - first_diff, self.cfg.d_model);
        let per_pass = (CPU_ROWS_PER_PASS / n).max(1);
        let mut out = Vec::with_capacity(deltas.len() / (n * d));
        for chunk in deltas.chunks(per_pass * n * d) {
            let delta = Tensor::from_slice(chunk, (chunk.len() / (n * d), n, d), &Device::Cpu)?;
            let x = self.start_rows(base, start, first_diff, &delta)?;
            out.extend(
                self.tail(base, start, first_diff, x, false)?
                    .metric
                    .to_vec1::<f32>()?,
            );
        }
        Ok(out)
    }

    /// `Compute::resid_gradients`: the tails of residual perturbations and
    /// their backward.
    pub(super) fn sweep_resid_gradients(
        &self,
        base: &CpuRun,
        start: Start,
        first_diff: usize,
        deltas: &[f32],
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let (n, d) = (base.tokens.len() - first_diff, self.cfg.d_model);
        let per_pass = (CPU_ROWS_PER_PASS / n).max(1);
        let k = deltas.len() / (n * d);
        let (mut metrics, mut grads) = (Vec::with_capacity(k), Vec::with_capacity(deltas.len()));
        for chunk in deltas.chunks(per_pass * n * d) {
            let delta = Tensor::from_slice(chunk, (chunk.len() / (n * d), n, d), &Device::Cpu)?;
            let x = self.start_rows(base, start, first_diff, &delta)?;
            let run = self.tail(base, start, first_diff, x, true)?;
            metrics.extend(run.metric.to_vec1::<f32>()?);
            grads.extend(
                self.tail_backward(run, n)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            );
        }
        Ok((metrics, grads))
    }
}
