//! The edge graph's passes on the CPU engine ([`crate::engine::graph`]
//! says what they compute).

use super::layers::*;
use super::{CpuBlock, CpuEngine};
use crate::engine::graph::{EdgePatch, GraphCompute, GraphOutputs, GraphPass, Hold};
use crate::engine::Metric;
use crate::error::{Error, Result};
use crate::model::graph::{GraphLayout, Qkv, Slot};
use crate::model::Config;
use candle_core::{Device, Tensor};

/// One layer's activations of a graph run, heads first.
struct LayerActs {
    resid_pre: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    z: Tensor,
    resid_mid: Tensor,
    mlp_out: Tensor,
}

/// What a graph run keeps for its backward pass.
struct LayerTape {
    ln1: LnTape,
    attn: AttentionTape,
    mlp: MlpTape,
}

/// A forward pass over the edge graph on the CPU.
pub struct CpuGraphRun {
    metric: f32,
    outputs: Vec<f32>,
    grads: Option<Vec<f32>>,
    layers: Vec<LayerActs>,
    t: usize,
}

/// `values` (checked in front of the backend) as a tensor of `shape`.
fn sized(values: &[f32], shape: &[usize]) -> Result<Tensor> {
    Ok(Tensor::from_slice(values, shape, &Device::Cpu)?)
}

impl GraphOutputs for CpuGraphRun {
    fn metric(&self) -> f32 {
        self.metric
    }
    fn outputs(&self) -> &[f32] {
        &self.outputs
    }
    fn grads(&self) -> Option<&[f32]> {
        self.grads.as_deref()
    }
    fn len(&self) -> usize {
        self.t
    }
}

/// An edge patch as tensors.
struct Patch {
    /// [n_forward, (T − first_diff)·d]: what each node's patched edges carry.
    values: Tensor,
    /// [n_forward, n_backward]: 1 where edge u → v is patched.
    mask: Tensor,
    first_diff: usize,
}

impl Patch {
    /// Σ_u mask[u, v] (values_u − output_u) for the slots `cols` (first
    /// index, count), all of which read nodes 0..prev: what the patch adds
    /// to their inputs, [cols, T, d].
    fn correction(&self, outputs: &[Tensor], prev: usize, cols: (usize, usize)) -> Result<Tensor> {
        let (t, d) = outputs[0].dims2()?;
        let r = self.first_diff;
        let own = Tensor::stack(&outputs[..prev], 0)?
            .narrow(1, r, t - r)?
            .reshape((prev, (t - r) * d))?;
        let diff = (self.values.narrow(0, 0, prev)? - own)?;
        let m = self.mask.narrow(0, 0, prev)?.narrow(1, cols.0, cols.1)?;
        let c = m.t()?.matmul(&diff)?.reshape((cols.1, t - r, d))?;
        Ok(c.pad_with_zeros(1, r, 0)?)
    }
}

/// What every block of one graph pass reads besides its residual stream.
struct PassCtx<'a> {
    layout: GraphLayout,
    t: usize,
    patch: Option<Patch>,
    hold: Option<Hold<'a>>,
    grad: bool,
}

impl PassCtx<'_> {
    /// What the patch adds to the inputs of the `count` slots from `slot`
    /// on (in the backward order; all of them read the nodes before
    /// `slot`), [count, T, d]; None without a patch.
    fn correction(&self, outputs: &[Tensor], slot: Slot, count: usize) -> Result<Option<Tensor>> {
        let (prev, first) = (
            self.layout.prev_index(slot),
            self.layout.backward_index(slot),
        );
        self.patch
            .as_ref()
            .map(|p| p.correction(outputs, prev, (first, count)))
            .transpose()
    }

    /// The outputs `hold` fixes for layer `layer`'s heads ([H, T, d]) or
    /// MLP ([T, d]), if it holds them.
    fn held(&self, layer: usize, heads: bool, d: usize) -> Result<Option<Tensor>> {
        let (h, t) = (self.layout.n_heads, self.t);
        match self.hold {
            Some(Hold::Heads { layer: l, values }) if heads && l == layer => {
                Ok(Some(sized(values, &[h, t, d])?))
            }
            Some(Hold::Mlp { layer: l, values }) if !heads && l == layer => {
                Ok(Some(sized(values, &[t, d])?))
            }
            _ => Ok(None),
        }
    }
}

impl GraphCompute for CpuEngine {
    type GraphRun = CpuGraphRun;

    fn graph_config(&self) -> &Config {
        &self.cfg
    }

    async fn graph_forward(
        &self,
        tokens: &[u32],
        metric: &Metric,
        pass: GraphPass<'_>,
    ) -> Result<CpuGraphRun> {
        let GraphPass {
            embed,
            patch,
            hold,
            grad,
        } = pass;
        let readout = self.readout(metric)?;
        let t = tokens.len();
        let cx = PassCtx {
            layout: GraphLayout::new(&self.cfg),
            t,
            patch: patch.map(|p| self.patch_tensors(p, t)).transpose()?,
            hold,
            grad,
        };
        let embed = self.graph_embed(tokens, embed)?;
        let mut outputs: Vec<Tensor> = vec![embed.clone()];
        let mut x = (embed + self.wpe.narrow(0, 0, t)?)?;
        let mut layers = Vec::with_capacity(self.cfg.n_layers);
        let mut tapes = Vec::new();
        for l in 0..self.cfg.n_layers {
            let (post, acts, tape) = self.graph_block(l, x, &mut outputs, &cx)?;
            layers.push(acts);
            tapes.extend(tape);
            x = post;
        }
        let logits_in = match cx.correction(&outputs, Slot::Logits, 1)? {
            Some(c) => (&x + c.squeeze(0)?)?,
            None => x,
        };
        let last = logits_in.narrow(0, t - 1, 1)?;
        let (norm, ln_f) = layer_norm(&last, &self.ln_f_w, &self.ln_f_b, self.eps())?;
        let (m, d_norm) = self.readout_forward(&readout, &norm, grad)?;
        let metric = m.get(0)?.to_scalar::<f32>()?;
        let grads = match d_norm {
            Some(d_norm) => {
                let d_last = layer_norm_backward(&d_norm, &self.ln_f_w, &ln_f)?;
                Some(self.graph_backward(&tapes, d_last, t, hold)?)
            }
            None => None,
        };
        let outputs = Tensor::stack(&outputs, 0)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(CpuGraphRun {
            metric,
            outputs,
            grads,
            layers,
            t,
        })
    }

    async fn edge_perturbations(
        &self,
        run: &CpuGraphRun,
        slot: Slot,
        first_diff: usize,
        deltas: &[f32],
    ) -> Result<Vec<f32>> {
        let (t, d, h, dh) = (run.t, self.cfg.d_model, self.cfg.n_heads, self.cfg.d_head);
        let n = t - first_diff;
        let n_u = deltas.len() / (n * d);
        let dx = Tensor::from_slice(deltas, (n_u, n, d), &Device::Cpu)?;
        let out = match slot {
            Slot::Logits => dx,
            Slot::Mlp { layer } => {
                let acts = &self.layer_of(run, layer)?;
                let x = acts.resid_mid.narrow(0, first_diff, n)?;
                let (out, _) = mlp_branch(
                    &self.blocks[layer],
                    &dx.broadcast_add(&x)?,
                    self.eps(),
                    false,
                )?;
                out.broadcast_sub(&acts.mlp_out.narrow(0, first_diff, n)?)?
            }
            Slot::Head { layer, qkv, .. } => {
                let acts = &self.layer_of(run, layer)?;
                let b = &self.blocks[layer];
                let x = acts.resid_pre.narrow(0, first_diff, n)?;
                let (ln, _) = layer_norm(&dx.broadcast_add(&x)?, &b.ln_1_w, &b.ln_1_b, self.eps())?;
                let s = qkv as usize;
                // the changed input's new q, k or v: [n_u, H, n, dh]
                let new = linear(
                    &ln,
                    &b.c_attn_w.narrow(1, s * d, d)?,
                    &b.c_attn_b.narrow(0, s * d, d)?,
                )?
                .reshape((n_u, n, h, dh))?
                .transpose(1, 2)?
                .contiguous()?;
                let every = |base: &Tensor| -> Result<Tensor> {
                    let rows = base.dim(1)?;
                    Ok(base
                        .unsqueeze(0)?
                        .broadcast_as((n_u, h, rows, dh))?
                        .contiguous()?)
                };
                let with_new_rows = |base: &Tensor| -> Result<Tensor> {
                    if first_diff == 0 {
                        return Ok(new.clone());
                    }
                    let prefix = base
                        .narrow(1, 0, first_diff)?
                        .unsqueeze(0)?
                        .broadcast_as((n_u, h, first_diff, dh))?;
                    Ok(Tensor::cat(&[&prefix.contiguous()?, &new], 2)?)
                };
                let (qr, kr, vr) = match qkv {
                    Qkv::Q => (new.clone(), every(&acts.k)?, every(&acts.v)?),
                    Qkv::K => (
                        every(&acts.q.narrow(1, first_diff, n)?.contiguous()?)?,
                        with_new_rows(&acts.k)?,
                        every(&acts.v)?,
                    ),
                    Qkv::V => (
                        every(&acts.q.narrow(1, first_diff, n)?.contiguous()?)?,
                        every(&acts.k)?,
                        with_new_rows(&acts.v)?,
                    ),
                };
                // queries at positions first_diff..T
                let (z, _) = attention(&qr, &kr, &vr, first_diff, &mut unhooked)?; // [n_u, H, n, dh]
                let dz = z.broadcast_sub(&acts.z.narrow(1, first_diff, n)?.unsqueeze(0)?)?;
                // per head (z′ − z)·W_O[h]: [H, n_u·n, dh] · [H, dh, d]
                dz.transpose(0, 1)?
                    .contiguous()?
                    .reshape((h, n_u * n, dh))?
                    .matmul(&b.w_o)?
                    .reshape((h, n_u, n, d))?
                    .transpose(0, 1)?
                    .contiguous()?
            }
        };
        Ok(out.flatten_all()?.to_vec1::<f32>()?)
    }

    async fn edge_products(
        &self,
        deltas: &[f32],
        grads: &[f32],
        nf: usize,
        nb: usize,
    ) -> Result<Vec<f32>> {
        let k = deltas.len() / nf;
        let a = Tensor::from_slice(deltas, (nf, k), &Device::Cpu)?;
        let g = Tensor::from_slice(grads, (nb, k), &Device::Cpu)?;
        Ok(a.matmul(&g.t()?)?.flatten_all()?.to_vec1::<f32>()?)
    }
}

impl CpuEngine {
    /// An edge patch's values and mask (their sizes checked in front of
    /// the backend) as tensors.
    fn patch_tensors(&self, p: EdgePatch<'_>, t: usize) -> Result<Patch> {
        let g = GraphLayout::new(&self.cfg);
        let (nf, nb, d) = (g.n_forward(), g.n_backward(), self.cfg.d_model);
        let rows = t - p.first_diff;
        Ok(Patch {
            values: Tensor::from_slice(p.values, (nf, rows * d), &Device::Cpu)?,
            mask: Tensor::from_slice(p.patched, (nf, nb), &Device::Cpu)?,
            first_diff: p.first_diff,
        })
    }

    /// The input node's output (`hook_embed`): the tokens' embeddings, or
    /// the pass's override.
    fn graph_embed(&self, tokens: &[u32], embed: Option<&[f32]>) -> Result<Tensor> {
        let (t, d) = (tokens.len(), self.cfg.d_model);
        match embed {
            Some(e) => Ok(Tensor::from_slice(e, (t, d), &Device::Cpu)?),
            None => Ok(self
                .wte
                .index_select(&Tensor::new(tokens, &Device::Cpu)?, 0)?),
        }
    }

    /// Block `l` of a graph pass on the residual stream `x` [T, d]: each
    /// head's q, k and v input and the MLP's input read `x` plus what the
    /// patch changes on their edges; held outputs replace the computed ones.
    /// Appends the block's node outputs (its heads, then its MLP) to
    /// `outputs`; returns the stream after the block, the block's
    /// activations and, for a gradient pass, its tape.
    fn graph_block(
        &self,
        l: usize,
        x: Tensor,
        outputs: &mut Vec<Tensor>,
        cx: &PassCtx,
    ) -> Result<(Tensor, LayerActs, Option<LayerTape>)> {
        let (h, d, eps) = (self.cfg.n_heads, self.cfg.d_model, self.eps());
        let b = &self.blocks[l];
        let q_slot = Slot::Head {
            layer: l,
            head: 0,
            qkv: Qkv::Q,
        };
        // each slot's input: [3H, T, d] (q heads, k heads, v heads), or
        // the shared stream [1, T, d]
        let inputs = match cx.correction(outputs, q_slot, 3 * h)? {
            Some(c) => c.broadcast_add(&x)?,
            None => x.unsqueeze(0)?,
        };
        let (ln, ln1) = layer_norm(&inputs, &b.ln_1_w, &b.ln_1_b, eps)?;
        let (q, k, v) = self.slot_qkv(b, &ln)?; // [H, T, dh]
        let (z, attn) = attention(&q, &k, &v, 0, &mut unhooked)?; // [H, T, dh]
        let result = match cx.held(l, true, d)? {
            Some(values) => values,
            None => z.matmul(&b.w_o)?, // [H, T, d]
        };
        for head in 0..h {
            outputs.push(result.get(head)?);
        }
        let mid = (&x + result.sum(0)?.broadcast_add(&b.c_proj_b)?)?;
        let mlp_in = match cx.correction(outputs, Slot::Mlp { layer: l }, 1)? {
            Some(c) => (&mid + c.squeeze(0)?)?,
            None => mid.clone(),
        };
        let (out, mlp_tape) = mlp_branch(b, &mlp_in, eps, cx.grad)?;
        let out = cx.held(l, false, d)?.unwrap_or(out);
        outputs.push(out.clone());
        let post = (&mid + &out)?;
        let tape = mlp_tape.map(|mlp| LayerTape { ln1, attn, mlp });
        let acts = LayerActs {
            resid_pre: x,
            q,
            k,
            v,
            z,
            resid_mid: mid,
            mlp_out: out,
        };
        Ok((post, acts, tape))
    }

    /// Every head's q, k and v [H, T, d_head] from ln_1's output: one
    /// stream for every slot ([1, T, d]) through the plain projection, or
    /// each slot's own ([3H, T, d]: q heads, k heads, v heads) through its
    /// head's columns of W_Q, W_K or W_V.
    fn slot_qkv(&self, b: &CpuBlock, ln: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let (h, dh, d) = (self.cfg.n_heads, self.cfg.d_head, self.cfg.d_model);
        let t = ln.dim(1)?;
        if ln.dim(0)? == 1 {
            let qkv = linear(&ln.squeeze(0)?, &b.c_attn_w, &b.c_attn_b)?;
            let split = |s: usize| heads_first(&qkv.narrow(1, s * d, d)?.reshape((t, h, dh))?);
            return Ok((split(0)?, split(1)?, split(2)?));
        }
        // head h's q, k, v from its own inputs: [H, T, d] · [H, d, dh]
        let proj = |s: usize| -> Result<Tensor> {
            let w = b
                .c_attn_w
                .narrow(1, s * d, d)?
                .reshape((d, h, dh))?
                .transpose(0, 1)?
                .contiguous()?;
            let bias = b.c_attn_b.narrow(0, s * d, d)?.reshape((h, 1, dh))?;
            Ok(ln.narrow(0, s * h, h)?.matmul(&w)?.broadcast_add(&bias)?)
        };
        Ok((proj(0)?, proj(1)?, proj(2)?))
    }

    /// From ∂m/∂(final residual at the last position) to ∂m/∂(every slot's
    /// input), [n_backward, T, d] in the graph's backward order. Held
    /// outputs pass no gradient to their inputs.
    fn graph_backward(
        &self,
        tapes: &[LayerTape],
        d_last: Tensor,
        t: usize,
        hold: Option<Hold<'_>>,
    ) -> Result<Vec<f32>> {
        let (d, h) = (self.cfg.d_model, self.cfg.n_heads);
        // the logits read the final stream: its gradient is nonzero at the last row only
        let mut g = d_last.pad_with_zeros(0, t - 1, 0)?;
        let logits = g.clone();
        let mut per_layer = Vec::with_capacity(tapes.len());
        for (l, (b, tape)) in self.blocks.iter().zip(tapes).enumerate().rev() {
            let d_mlp_in = match hold {
                Some(Hold::Mlp { layer, .. }) if layer == l => g.zeros_like()?,
                _ => mlp_branch_backward(&tape.mlp, &g)?,
            };
            let g_mid = (&g + &d_mlp_in)?;
            // every head's result is added to the stream: ∂m/∂z_h = g_mid · W_O[h]ᵀ,
            // columns h·dh.. of g_mid · c_projᵀ
            let dz = heads_first(&matmul_rows_t(&g_mid, &b.c_proj_w)?.reshape((
                t,
                h,
                self.cfg.d_head,
            ))?)?; // [H, T, dh]
            let da = attention_backward(&tape.attn, &dz)?;
            let d_ln = [da.q, da.k, da.v]
                .iter()
                .enumerate()
                .map(|(s, ds)| {
                    let w_t = b
                        .c_attn_w
                        .narrow(1, s * d, d)?
                        .reshape((d, h, self.cfg.d_head))?
                        .permute((1, 2, 0))?
                        .contiguous()?; // [H, dh, d]
                    Ok(ds.matmul(&w_t)?)
                })
                .collect::<Result<Vec<_>>>()?;
            let d_ln = Tensor::cat(&d_ln, 0)?; // [3H, T, d]
            let n = 3 * h;
            let shared = LnTape {
                xhat: tape.ln1.xhat.broadcast_as((n, t, d))?.contiguous()?,
                rstd: tape.ln1.rstd.broadcast_as((n, t, 1))?.contiguous()?,
            };
            let d_slots = match hold {
                Some(Hold::Heads { layer, .. }) if layer == l => d_ln.zeros_like()?,
                _ => layer_norm_backward(&d_ln, &b.ln_1_w, &shared)?,
            };
            g = (&g_mid + d_slots.sum(0)?)?;
            per_layer.push(Tensor::cat(&[d_slots, d_mlp_in.unsqueeze(0)?], 0)?);
        }
        per_layer.reverse();
        per_layer.push(logits.unsqueeze(0)?);
        Ok(Tensor::cat(&per_layer, 0)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    }

    fn layer_of<'r>(&self, run: &'r CpuGraphRun, layer: usize) -> Result<&'r LayerActs> {
        run.layers
            .get(layer)
            .ok_or_else(|| Error::Input(format!("layer {layer} does not exist")))
    }
}
