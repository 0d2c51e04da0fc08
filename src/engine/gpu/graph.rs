//! The edge graph's passes on the GPU engine ([`crate::engine::graph`]
//! says what they compute), step for step as the CPU engine's
//! `cpu/graph.rs`: one submission and one read-back per pass.
//!
//! Layouts on the device: the node outputs [n_forward, T, d]; a patched
//! layer's slot inputs [3H, T, d] (q heads, k heads, v heads); a layer's
//! slot gradients [T, 3H, d], so that one layer norm's tape row serves the
//! 3H rows of a position (reordered to the graph's [slot, T, d] on the host).

use super::context::{At, Enc, Slice};
use super::forward::Readout;
use super::ops::{AttnGrads, AttnShape, LnTape, Mm, Norm, Rows, Shared, Streams, Strided};
use super::{GpuBlock, GpuEngine};
use crate::engine::graph::{EdgePatch, GraphCompute, GraphOutputs, GraphPass, Hold};
use crate::engine::Metric;
use crate::error::Result;
use crate::model::graph::{GraphLayout, Node, Slot};
use crate::model::Config;
use wgpu::Buffer;

/// What the edge perturbations read of one layer of a graph run.
struct LayerBufs {
    /// The residual stream entering the block [T, d].
    resid_pre: Buffer,
    /// q | k | v of every head [T, 3d] (each from its own slot's input).
    qkv: Buffer,
    /// hook_z [T, d].
    z: Buffer,
    resid_mid: Buffer,
}

/// What a gradient pass keeps of one layer for its backward.
struct LayerTape {
    ln1: (Buffer, Buffer),
    /// [H, T, T].
    pattern: Buffer,
    ln2: (Buffer, Buffer),
    /// hook_pre [T, d_mlp].
    pre: Buffer,
}

/// A forward pass over the edge graph on the GPU: the outputs and
/// gradients on the host (what the circuit methods read), the activations
/// the edge perturbations start from on the device.
pub struct GpuGraphRun {
    metric: f32,
    outputs: Vec<f32>,
    grads: Option<Vec<f32>>,
    /// The node outputs [n_forward, T, d].
    outs: Buffer,
    layers: Vec<LayerBufs>,
    t: usize,
}

impl GraphOutputs for GpuGraphRun {
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

/// An edge patch on the device.
struct Patch {
    /// [n_forward, (T − first_diff)·d].
    values: Buffer,
    /// The mask transposed, [n_backward, n_forward], and its negation.
    mask_t: Buffer,
    neg_mask_t: Buffer,
    first_diff: usize,
}

/// What a layer's attention leaves: ln_1's tape, q | k | v, hook_z, the
/// pattern (a gradient pass's tape) and resid_mid.
struct GraphAttn {
    ln1: (Buffer, Buffer),
    qkv: Buffer,
    z: Buffer,
    pattern: Option<Buffer>,
    mid: Buffer,
}

/// One graph pass being recorded.
struct Pass<'e, 'h> {
    enc: Enc<'e>,
    layout: GraphLayout,
    t: usize,
    /// Passes run side by side (embedding overrides of one prompt): each
    /// array holds their rows one pass after another, [b·T, ..]; patches
    /// and held outputs come one pass at a time (b = 1).
    b: usize,
    patch: Option<Patch>,
    hold: Option<Hold<'h>>,
    grad: bool,
    /// The node outputs [n_forward, b·T, d].
    outs: Buffer,
}

impl Pass<'_, '_> {
    /// Rows of a residual stream: b passes of T.
    fn rows(&self) -> usize {
        self.b * self.t
    }
}

/// A layer norm's tape buffers: x̂ [rows, d] and rstd [rows].
fn tape(t: &(Buffer, Buffer)) -> LnTape<'_> {
    LnTape {
        xhat: &t.0,
        rstd: &t.1,
    }
}

impl GpuEngine {
    fn buf(&self, len: usize, label: &str) -> Result<Buffer> {
        self.gpu.buffer(len, label)
    }

    /// A layer norm of `rows` rows of `x` into a new buffer, with its tape.
    fn graph_norm(
        &self,
        enc: &mut Enc,
        x: &Buffer,
        rows: Rows,
        ln: &Norm,
    ) -> Result<(Buffer, (Buffer, Buffer))> {
        let d = self.cfg.d_model;
        let y = self.buf(rows.count * d, "graph ln")?;
        let t = (
            self.buf(rows.count * d, "graph xhat")?,
            self.buf(rows.count, "graph rstd")?,
        );
        enc.layer_norm(x, rows, ln, &y, tape(&t));
        Ok((y, t))
    }

    fn upload_patch(&self, p: EdgePatch<'_>, layout: &GraphLayout) -> Result<Patch> {
        let (nf, nb) = (layout.n_forward(), layout.n_backward());
        let mut t = vec![0f32; nb * nf];
        for u in 0..nf {
            for v in 0..nb {
                t[v * nf + u] = p.patched[u * nb + v];
            }
        }
        let neg: Vec<f32> = t.iter().map(|x| -x).collect();
        Ok(Patch {
            values: self.gpu.upload(p.values, "edge patch values")?,
            mask_t: self.gpu.upload(&t, "edge patch mask")?,
            neg_mask_t: self.gpu.upload(&neg, "edge patch mask")?,
            first_diff: p.first_diff,
        })
    }

    /// The inputs of the `count` slots from `slot` on (all reading the
    /// nodes before `slot`), [count, T, d]: `x` plus, from the first
    /// difference on, Σ_u mask[u, v] (values_u − output_u). None (read `x`)
    /// without a patch.
    fn slot_inputs(
        &self,
        p: &mut Pass,
        x: &Buffer,
        slot: Slot,
        count: usize,
    ) -> Result<Option<Buffer>> {
        let Some(patch) = &p.patch else {
            return Ok(None);
        };
        let (t, d) = (p.t, self.cfg.d_model);
        let (nf, prev, first) = (
            p.layout.n_forward(),
            p.layout.prev_index(slot),
            p.layout.backward_index(slot),
        );
        let n = (t - patch.first_diff) * d;
        let part = self.buf(count * n, "edge patch correction")?;
        let corr = self.buf(count * n, "edge patch correction")?;
        // Mᵀ[slots, :prev] · values[:prev], then minus Mᵀ · outputs[:prev, rows first_diff..]
        let mm = Mm {
            lda: nf,
            a_off: first * nf,
            ..Mm::plain(count, prev, n)
        };
        p.enc
            .matmul(mm, &patch.mask_t, &patch.values, None, None, &part);
        let mm = Mm {
            ldb: t * d,
            b_off: patch.first_diff * d,
            ..mm
        };
        p.enc
            .matmul(mm, &patch.neg_mask_t, &p.outs, None, Some(&part), &corr);
        let inputs = self.buf(count * t * d, "slot inputs")?;
        let streams = Streams {
            slots: count,
            t,
            d,
            first_diff: patch.first_diff,
        };
        p.enc.graph_inputs(x, &corr, streams, &inputs);
        Ok(Some(inputs))
    }

    /// Copies held outputs of `count` nodes into the node outputs at `node`.
    fn hold_nodes(&self, p: &mut Pass, values: &[f32], node: usize) -> Result<()> {
        let held = self.gpu.upload(values, "held outputs")?;
        let td = p.rows() * self.cfg.d_model;
        p.enc
            .copy(At::start(&held), At::new(&p.outs, node * td), values.len());
        Ok(())
    }

    /// Block `l` of a graph pass on the residual stream `x` [T, d]: writes
    /// its nodes' outputs (heads, then the MLP) and returns the stream after
    /// the block, what the edge perturbations read and, for a gradient pass,
    /// the tape.
    fn graph_block(
        &self,
        p: &mut Pass,
        l: usize,
        x: Buffer,
    ) -> Result<(Buffer, LayerBufs, Option<LayerTape>)> {
        let attn = self.graph_attention(p, l, &x)?;
        let (next, ln2, pre) = self.graph_mlp(p, l, &attn.mid)?;
        let tape = attn.pattern.map(|pattern| LayerTape {
            ln1: attn.ln1,
            pattern,
            ln2,
            pre,
        });
        let bufs = LayerBufs {
            resid_pre: x,
            qkv: attn.qkv,
            z: attn.z,
            resid_mid: attn.mid,
        };
        Ok((next, bufs, tape))
    }

    /// Layer l's heads, each q, k and v reading its own slot's input:
    /// hook_result of every head into the node outputs (or the held
    /// values), and resid_mid = x + Σ_h hook_result + b_O.
    fn graph_attention(&self, p: &mut Pass, l: usize, x: &Buffer) -> Result<GraphAttn> {
        let c = &self.cfg;
        let (t, d, h, dh) = (p.t, c.d_model, c.n_heads, c.d_head);
        let bt = p.rows();
        let b: &GpuBlock = &self.w.blocks[l];
        let q_slot = Slot::Head {
            layer: l,
            head: 0,
            qkv: crate::model::graph::Qkv::Q,
        };
        // ln_1 of the shared stream, or of each slot's own
        let slots = self.slot_inputs(p, x, q_slot, 3 * h)?;
        let rows = if slots.is_some() { 3 * h * t } else { bt };
        let input = slots.as_ref().unwrap_or(x);
        let (ln, ln1) = self.graph_norm(&mut p.enc, input, Rows::all(rows), &b.ln_1)?;
        let qkv = self.slot_qkv(p, b, &ln, slots.is_some())?;
        let z = self.buf(bt * d, "graph z")?;
        let pattern = if p.grad {
            Some(self.buf(p.b * h * t * t, "graph pattern")?)
        } else {
            None
        };
        let shape = self.full_attention(p.b, t);
        p.enc.attn_tail(shape, &qkv, &qkv, &z, pattern.as_ref());
        // hook_result of every head, [H, T, d] at the heads' nodes
        let heads = p.layout.forward_index(Node::Head { layer: l, head: 0 });
        match p.hold {
            Some(Hold::Heads { layer, values }) if layer == l => {
                self.hold_nodes(p, values, heads)?
            }
            _ => {
                let mm = Mm {
                    batch: h,
                    a_bs: dh,
                    lda: d,
                    b_bs: dh * d,
                    c_off: heads * bt * d,
                    c_bs: bt * d,
                    ..Mm::plain(bt, dh, d)
                };
                p.enc.matmul(mm, &z, &b.c_proj.w, None, None, &p.outs);
            }
        }
        let mid = self.buf(bt * d, "graph resid_mid")?;
        let results = Strided {
            buf: &p.outs,
            n: h,
            off: heads * bt * d,
            hs: bt * d,
            ts: d,
        };
        p.enc
            .graph_sum(x, results, Some(&b.c_proj.b), bt * d, d, &mid);
        Ok(GraphAttn {
            ln1,
            qkv,
            z,
            pattern,
            mid,
        })
    }

    /// q | k | v [T, 3d] from ln_1's output: of the one shared stream
    /// through the plain projection, or with `per_slot` of each slot's own
    /// ([3H, T, d]: q heads, k heads, v heads) through its head's columns.
    fn slot_qkv(&self, p: &mut Pass, b: &GpuBlock, ln: &Buffer, per_slot: bool) -> Result<Buffer> {
        let c = &self.cfg;
        let (t, d, h, dh) = (p.t, c.d_model, c.n_heads, c.d_head);
        let qkv = self.buf(p.rows() * 3 * d, "graph qkv")?;
        if !per_slot {
            p.enc.linear(ln, p.rows(), &b.c_attn, None, &qkv);
            return Ok(qkv);
        }
        // head h's q, k or v from its own slot's input: columns s·d + h·dh..
        for s in 0..3 {
            let mm = Mm {
                batch: h,
                a_off: s * h * t * d,
                a_bs: t * d,
                ldb: 3 * d,
                b_off: s * d,
                b_bs: dh,
                ldc: 3 * d,
                c_off: s * d,
                c_bs: dh,
                bias_off: s * d,
                bias_bs: dh,
                ..Mm::plain(t, d, dh)
            };
            p.enc
                .matmul(mm, ln, &b.c_attn.w, Some(&b.c_attn.b), None, &qkv);
        }
        Ok(qkv)
    }

    /// Layer l's MLP on its slot's input: its output into the node outputs
    /// (or the held values); returns resid_post = mid + the output, ln_2's
    /// tape and hook_pre.
    fn graph_mlp(
        &self,
        p: &mut Pass,
        l: usize,
        mid: &Buffer,
    ) -> Result<(Buffer, (Buffer, Buffer), Buffer)> {
        let c = &self.cfg;
        let (t, d, dm) = (p.rows(), c.d_model, c.d_mlp);
        let b: &GpuBlock = &self.w.blocks[l];
        let mlp_in = self.slot_inputs(p, mid, Slot::Mlp { layer: l }, 1)?;
        let input = mlp_in.as_ref().unwrap_or(mid);
        let (ln2_out, ln2) = self.graph_norm(&mut p.enc, input, Rows::all(t), &b.ln_2)?;
        let pre = self.buf(t * dm, "graph pre")?;
        p.enc.linear(&ln2_out, t, &b.c_fc, None, &pre);
        let post = self.buf(t * dm, "graph post")?;
        p.enc.gelu(&pre, t * dm, &post);
        let mlp = p.layout.forward_index(Node::Mlp { layer: l });
        match p.hold {
            Some(Hold::Mlp { layer, values }) if layer == l => self.hold_nodes(p, values, mlp)?,
            _ => {
                let mm = Mm {
                    c_off: mlp * t * d,
                    ..Mm::plain(t, dm, d)
                };
                p.enc
                    .matmul(mm, &post, &b.mlp_proj.w, Some(&b.mlp_proj.b), None, &p.outs);
            }
        }
        let next = self.buf(t * d, "graph resid_post")?;
        let out = Strided {
            buf: &p.outs,
            n: 1,
            off: mlp * t * d,
            hs: 0,
            ts: d,
        };
        p.enc.graph_sum(mid, out, None, t * d, d, &next);
        Ok((next, ln2, pre))
    }

    /// The causal attention of `b` passes over all their t positions each,
    /// as a tail of b elements from position 0 (each its own base).
    fn full_attention(&self, b: usize, t: usize) -> AttnShape {
        AttnShape {
            batch: b,
            per: 1,
            n: t,
            nq: t,
            first_diff: 0,
            heads: self.cfg.n_heads,
            dh: self.cfg.d_head,
            d: self.cfg.d_model,
        }
    }

    /// From ∂m/∂(final residual) `g` [T, d] to every layer's slot gradients:
    /// per layer [T, 3H, d] (q, k, v heads) and the MLP's [T, d]. Held
    /// outputs pass no gradient to their inputs.
    fn graph_backward(
        &self,
        p: &mut Pass,
        layers: &[LayerBufs],
        tapes: &[LayerTape],
        mut g: Buffer,
    ) -> Result<Vec<(Buffer, Buffer)>> {
        let c = &self.cfg;
        let (t, d, h, dh, dm) = (p.rows(), c.d_model, c.n_heads, c.d_head, c.d_mlp);
        let (b_, tt) = (p.b, p.t);
        let mut out = Vec::with_capacity(tapes.len());
        for (l, (tape_l, bufs)) in tapes.iter().zip(layers).enumerate().rev() {
            let b = &self.w.blocks[l];
            let d_mlp_in = self.buf(t * d, "graph d mlp_in")?;
            match p.hold {
                Some(Hold::Mlp { layer, .. }) if layer == l => p.enc.clear(&d_mlp_in),
                _ => {
                    let dpost = self.buf(t * dm, "graph d post")?;
                    p.enc.linear_backward(&g, t, &b.mlp_proj, &dpost);
                    let dpre = self.buf(t * dm, "graph d pre")?;
                    p.enc.gelu_backward(&tape_l.pre, &dpost, t * dm, &dpre);
                    let dln2 = self.buf(t * d, "graph d ln2")?;
                    p.enc.linear_backward(&dpre, t, &b.c_fc, &dln2);
                    p.enc.layer_norm_backward(
                        Shared::each(&dln2),
                        t,
                        &b.ln_2,
                        tape(&tape_l.ln2),
                        None,
                        &d_mlp_in,
                    );
                }
            }
            let g_mid = self.buf(t * d, "graph d resid_mid")?;
            p.enc.add(&g, &d_mlp_in, t * d, &g_mid);
            let slots = self.buf(t * 3 * h * d, "graph slot grads")?;
            match p.hold {
                Some(Hold::Heads { layer, .. }) if layer == l => p.enc.clear(&slots),
                _ => {
                    // ∂m/∂z = g_mid · W_Oᵀ, then through attention to q | k | v
                    let dz = self.buf(t * d, "graph dz")?;
                    p.enc.linear_backward(&g_mid, t, &b.c_proj, &dz);
                    let ds = self.buf(b_ * h * tt * tt, "graph d scores")?;
                    let dqkv = self.buf(t * 3 * d, "graph d qkv")?;
                    let grads = AttnGrads {
                        dz: &dz,
                        pattern: &tape_l.pattern,
                        qkv: &bufs.qkv,
                        base_qkv: &bufs.qkv,
                        ds: &ds,
                        dqkv: &dqkv,
                    };
                    p.enc.attn_tail_backward(self.full_attention(b_, tt), grads);
                    // slot (s, head)'s ∂m/∂ln_1 = dqkv[:, s·d + head·dh..] · W[:, same]ᵀ
                    let dln = self.buf(t * 3 * h * d, "graph d ln1")?;
                    for s in 0..3 {
                        let mm = Mm {
                            batch: h,
                            lda: 3 * d,
                            a_off: s * d,
                            a_bs: dh,
                            trans_b: true,
                            ldb: 3 * d,
                            b_off: s * d,
                            b_bs: dh,
                            ldc: 3 * h * d,
                            c_off: s * h * d,
                            c_bs: d,
                            ..Mm::plain(t, dh, d)
                        };
                        p.enc.matmul(mm, &dqkv, &b.c_attn.w, None, None, &dln);
                    }
                    p.enc.layer_norm_backward_rows(
                        Shared::each(&dln),
                        t * 3 * h,
                        &b.ln_1,
                        tape(&tape_l.ln1),
                        3 * h,
                        None,
                        &slots,
                    );
                }
            }
            let next = self.buf(t * d, "graph d resid_pre")?;
            let all = Strided {
                buf: &slots,
                n: 3 * h,
                off: 0,
                hs: d,
                ts: 3 * h * d,
            };
            p.enc.graph_sum(&g_mid, all, None, t * d, d, &next);
            out.push((slots, d_mlp_in));
            g = next;
        }
        out.reverse();
        Ok(out)
    }
}

impl GpuEngine {
    /// The metric of each of the b passes from its final stream `x` (the
    /// logits' slot reads it plus its own patched edges) and, for a gradient
    /// pass, ∂m/∂(final stream) [b·T, d] (nonzero at each pass's last row
    /// only).
    fn graph_readout(
        &self,
        p: &mut Pass,
        x: &Buffer,
        metric: &Metric,
    ) -> Result<(Buffer, Option<Buffer>)> {
        let (t, b, d) = (p.t, p.b, self.cfg.d_model);
        let logits_in = self.slot_inputs(p, x, Slot::Logits, 1)?;
        let input = logits_in.as_ref().unwrap_or(x);
        let (norm, ln_f) = self.graph_norm(&mut p.enc, input, Rows::last_of(b, t), &self.w.ln_f)?;
        let readout = self.encode_readout(&mut p.enc, metric)?;
        let value = self.buf(b, "graph metric")?;
        // ∂m/∂norm: the answer direction (one for all b rows), or what the
        // probability difference leaves (one row each)
        let (dy, every) = match &readout {
            Readout::Dir(dir) => {
                let at = At::start(&value);
                let shared = Shared { buf: dir, every: b };
                p.enc.metric(&norm, Rows::all(b), d, shared, at);
                (dir.clone(), b)
            }
            Readout::Signs(signs) => {
                let u = self.unembed_work(b, p.grad)?;
                let at = At::start(&value);
                self.encode_prob_diff(&mut p.enc, &u, &norm, Rows::all(b), signs, at);
                if !p.grad {
                    return Ok((value, None));
                }
                (self.prob_diff_grad(&u).clone(), 1)
            }
        };
        if !p.grad {
            return Ok((value, None));
        }
        let d_last = self.buf(b * d, "graph d final")?;
        let dy = Shared { buf: &dy, every };
        p.enc
            .layer_norm_backward(dy, b, &self.w.ln_f, tape(&ln_f), None, &d_last);
        let top = self.buf(b * t * d, "graph d logits")?;
        p.enc.clear(&top);
        for i in 0..b {
            let last = At::new(&top, (i * t + t - 1) * d);
            p.enc.copy(At::new(&d_last, i * d), last, d);
        }
        Ok((value, Some(top)))
    }

    /// The read-back slot gradients in the graph's backward order,
    /// [n_backward, T, d]: per layer its 3H slots (read as [T, 3H, d]) and
    /// its MLP, then the logits.
    fn slot_order(&self, read: &mut impl Iterator<Item = Vec<f32>>, t: usize) -> Vec<f32> {
        let (d, h) = (self.cfg.d_model, self.cfg.n_heads);
        let mut all = Vec::with_capacity(GraphLayout::new(&self.cfg).n_backward() * t * d);
        for _ in 0..self.cfg.n_layers {
            let slots = read.next().expect("slot gradients");
            for s in 0..3 * h {
                for pos in 0..t {
                    all.extend_from_slice(&slots[(pos * 3 * h + s) * d..][..d]);
                }
            }
            all.extend(read.next().expect("MLP input gradients"));
        }
        all.extend(read.next().expect("logits gradients"));
        all
    }
}

/// The edges of one call of `edge_perturbations`: n_u upstream nodes'
/// changes, each over the n rows from the first difference on.
#[derive(Clone, Copy)]
struct Edges {
    n_u: usize,
    n: usize,
    first_diff: usize,
}

impl Edges {
    fn rows(&self) -> usize {
        self.n_u * self.n
    }
}

impl GpuEngine {
    /// mlp(x + Δ_u) − mlp(x) for every u, x = resid_mid of `layer` at rows
    /// first_diff.. : [n_u, n, d].
    fn mlp_perturbations(
        &self,
        enc: &mut Enc,
        run: &GpuGraphRun,
        layer: usize,
        dx: &Buffer,
        e: Edges,
    ) -> Result<Buffer> {
        let c = &self.cfg;
        let (t, d, dm) = (run.t, c.d_model, c.d_mlp);
        let (lb, b) = (&run.layers[layer], &self.w.blocks[layer]);
        let rows = e.rows();
        let inp = self.buf(rows * d, "edge mlp input")?;
        let mid = At::new(&lb.resid_mid, e.first_diff * d);
        enc.bcast_add(dx, mid, 1.0, e.n * d, rows * d, &inp);
        let (ln, _) = self.graph_norm(enc, &inp, Rows::all(rows), &b.ln_2)?;
        let pre = self.buf(rows * dm, "edge mlp pre")?;
        enc.linear(&ln, rows, &b.c_fc, None, &pre);
        let post = self.buf(rows * dm, "edge mlp post")?;
        enc.gelu(&pre, rows * dm, &post);
        let y = self.buf(rows * d, "edge mlp out")?;
        enc.linear(&post, rows, &b.mlp_proj, None, &y);
        let node = GraphLayout::new(c).forward_index(Node::Mlp { layer });
        let own = At::new(&run.outs, (node * t + e.first_diff) * d);
        let out = self.buf(rows * d, "edge perturbations")?;
        enc.bcast_add(&y, own, -1.0, e.n * d, rows * d, &out);
        Ok(out)
    }

    /// Every head of `layer` recomputed with its `qkv` input changed by
    /// Δ_u, (z′ − z)·W_O per head: [H, n_u, n, d].
    fn head_perturbations(
        &self,
        enc: &mut Enc,
        run: &GpuGraphRun,
        layer: usize,
        qkv: crate::model::graph::Qkv,
        dx: &Buffer,
        e: Edges,
    ) -> Result<Buffer> {
        let c = &self.cfg;
        let (d, h, dh) = (c.d_model, c.n_heads, c.d_head);
        let (lb, b) = (&run.layers[layer], &self.w.blocks[layer]);
        let (rows, n, first_diff) = (e.rows(), e.n, e.first_diff);
        let inp = self.buf(rows * d, "edge head input")?;
        let pre = At::new(&lb.resid_pre, first_diff * d);
        enc.bcast_add(dx, pre, 1.0, n * d, rows * d, &inp);
        let (ln, _) = self.graph_norm(enc, &inp, Rows::all(rows), &b.ln_1)?;
        // each element's q | k | v: the run's rows first_diff.., the
        // changed input's q, k or v written over its third
        let elems = self.buf(rows * 3 * d, "edge qkv")?;
        for u in 0..e.n_u {
            let from = At::new(&lb.qkv, first_diff * 3 * d);
            enc.copy(from, At::new(&elems, u * n * 3 * d), n * 3 * d);
        }
        let s = qkv as usize;
        let mm = Mm {
            ldb: 3 * d,
            b_off: s * d,
            ldc: 3 * d,
            c_off: s * d,
            bias_off: s * d,
            ..Mm::plain(rows, d, d)
        };
        enc.matmul(mm, &ln, &b.c_attn.w, Some(&b.c_attn.b), None, &elems);
        // queries at first_diff..; keys and values before it from the run
        let shape = AttnShape {
            batch: e.n_u,
            per: e.n_u,
            n,
            nq: n,
            first_diff,
            heads: h,
            dh,
            d,
        };
        let z = self.buf(rows * d, "edge z")?;
        enc.attn_tail(shape, &elems, &lb.qkv, &z, None);
        let dz = self.buf(rows * d, "edge dz")?;
        let own = At::new(&lb.z, first_diff * d);
        enc.bcast_add(&z, own, -1.0, n * d, rows * d, &dz);
        // per head (z′ − z)·W_O[h]: [H, n_u·n, d]
        let out = self.buf(h * rows * d, "edge perturbations")?;
        let mm = Mm {
            batch: h,
            lda: d,
            a_bs: dh,
            b_bs: dh * d,
            c_bs: rows * d,
            ..Mm::plain(rows, dh, d)
        };
        enc.matmul(mm, &dz, &b.c_proj.w, None, None, &out);
        Ok(out)
    }
}

/// Floats of device memory the side-by-side passes of `graph_gradients`
/// may take (256 MiB, about).
const GRAPH_BATCH_FLOATS: usize = 64 << 20;

/// What `graph_passes` brings back.
struct PassesDone {
    /// Each pass's metric.
    metrics: Vec<f32>,
    /// The node outputs [n_forward, T, d] (one pass), when asked for.
    outputs: Option<Vec<f32>>,
    /// Each pass's slot gradients [n_backward, T, d], for a gradient pass.
    grads: Option<Vec<Vec<f32>>>,
    outs: Buffer,
    layers: Vec<LayerBufs>,
}

impl GpuEngine {
    /// `b` graph passes of `tokens` side by side (b > 1: the embedding
    /// overrides in `pass.embed`, [b, T, d], and nothing else changed), with
    /// one submission and one read-back.
    async fn graph_passes(
        &self,
        tokens: &[u32],
        metric: &Metric,
        pass: GraphPass<'_>,
        b: usize,
        read_outputs: bool,
    ) -> Result<PassesDone> {
        let c = &self.cfg;
        let (t, d, h) = (tokens.len(), c.d_model, c.n_heads);
        debug_assert!(b == 1 || (pass.patch.is_none() && pass.hold.is_none()));
        let layout = GraphLayout::new(c);
        let nf = layout.n_forward();
        let patch = pass
            .patch
            .map(|p| self.upload_patch(p, &layout))
            .transpose()?;
        let mut p = Pass {
            enc: Enc::new(&self.gpu),
            layout,
            t,
            b,
            patch,
            hold: pass.hold,
            grad: pass.grad,
            outs: self.buf(nf * b * t * d, "graph node outputs")?,
        };
        let bt = p.rows();
        // the input node's output: hook_embed, or the pass's override
        match pass.embed {
            Some(e) => {
                let e = self.gpu.upload(e, "embedding override")?;
                p.enc.copy(At::start(&e), At::start(&p.outs), bt * d);
            }
            None => {
                for (i, &tok) in tokens.iter().cycle().take(bt).enumerate() {
                    p.enc
                        .copy(self.w.wte_row(tok, d), At::new(&p.outs, i * d), d);
                }
            }
        }
        let mut x = self.buf(bt * d, "graph resid")?;
        p.enc
            .bcast_add(&p.outs, At::start(&self.w.wpe), 1.0, t * d, bt * d, &x);
        let mut layers = Vec::with_capacity(c.n_layers);
        let mut tapes = Vec::new();
        for l in 0..c.n_layers {
            let (next, bufs, tape_l) = self.graph_block(&mut p, l, x)?;
            layers.push(bufs);
            tapes.extend(tape_l);
            x = next;
        }
        let (value, top) = self.graph_readout(&mut p, &x, metric)?;
        // the gradient: from ∂m/∂(final residual) to every slot's
        let grads = match top {
            Some(top) => Some((
                self.graph_backward(&mut p, &layers, &tapes, top.clone())?,
                top,
            )),
            None => None,
        };
        let Pass { enc, outs, .. } = p;
        enc.submit();
        let mut slices = vec![Slice::first(&value, b)];
        if read_outputs {
            slices.push(Slice::first(&outs, nf * bt * d));
        }
        if let Some((per_layer, top)) = &grads {
            for (slots, mlp) in per_layer {
                slices.push(Slice::first(slots, bt * 3 * h * d));
                slices.push(Slice::first(mlp, bt * d));
            }
            slices.push(Slice::first(top, bt * d));
        }
        let mut read = self.gpu.read(&slices).await?.into_iter();
        let metrics = read.next().expect("the metrics");
        let outputs = read_outputs.then(|| read.next().expect("the node outputs"));
        let grads = grads.map(|_| {
            // each array holds the b passes' rows one after another
            let arrays: Vec<Vec<f32>> = read.collect();
            (0..b)
                .map(|i| {
                    let mut own = arrays.iter().map(|a| {
                        let per = a.len() / b;
                        a[i * per..(i + 1) * per].to_vec()
                    });
                    self.slot_order(&mut own, t)
                })
                .collect()
        });
        Ok(PassesDone {
            metrics,
            outputs,
            grads,
            outs,
            layers,
        })
    }
}

impl GraphCompute for GpuEngine {
    type GraphRun = GpuGraphRun;

    fn graph_config(&self) -> &Config {
        &self.cfg
    }

    async fn graph_forward(
        &self,
        tokens: &[u32],
        metric: &Metric,
        pass: GraphPass<'_>,
    ) -> Result<GpuGraphRun> {
        let t = tokens.len();
        let done = self.graph_passes(tokens, metric, pass, 1, true).await?;
        Ok(GpuGraphRun {
            metric: done.metrics[0],
            outputs: done.outputs.unwrap_or_default(),
            grads: done.grads.map(|mut g| g.remove(0)),
            outs: done.outs,
            layers: done.layers,
            t,
        })
    }

    async fn graph_gradients(
        &self,
        tokens: &[u32],
        metric: &Metric,
        embeds: &[f32],
    ) -> Result<Vec<Vec<f32>>> {
        let td = tokens.len() * self.cfg.d_model;
        let mut out = Vec::with_capacity(embeds.len() / td);
        for chunk in embeds.chunks(td * self.graph_batch(tokens.len())) {
            let pass = GraphPass {
                embed: Some(chunk),
                grad: true,
                ..GraphPass::default()
            };
            let b = chunk.len() / td;
            let done = self.graph_passes(tokens, metric, pass, b, false).await?;
            out.extend(done.grads.unwrap_or_default());
        }
        Ok(out)
    }

    fn graph_batch(&self, t: usize) -> usize {
        let c = &self.cfg;
        let (d, h, nf) = (c.d_model, c.n_heads, GraphLayout::new(c).n_forward());
        // one pass's largest array and all of its arrays (node outputs, and
        // per layer the stream, ln, q | k | v, pattern, MLP and their
        // gradients and tapes, about): as many passes as fit one binding
        // and GRAPH_BATCH_FLOATS
        let largest = (nf * t * d).max(3 * h * t * d).max(t * c.d_mlp);
        let all = nf * t * d + c.n_layers * (t * (24 * d + 4 * c.d_mlp) + 3 * h * t * t);
        (self.gpu.max_floats() / largest.max(1))
            .min(GRAPH_BATCH_FLOATS / all.max(1))
            .clamp(1, 64)
    }
    async fn edge_perturbations(
        &self,
        run: &GpuGraphRun,
        slot: Slot,
        first_diff: usize,
        deltas: &[f32],
    ) -> Result<Vec<f32>> {
        let c = &self.cfg;
        let (t, d, h) = (run.t, c.d_model, c.n_heads);
        let n = t - first_diff;
        let e = Edges {
            n_u: deltas.len() / (n * d),
            n,
            first_diff,
        };
        let mut enc = Enc::new(&self.gpu);
        let dx = self.gpu.upload(deltas, "edge deltas")?;
        let (out, len) = match slot {
            Slot::Logits => return Ok(deltas.to_vec()),
            Slot::Mlp { layer } => (
                self.mlp_perturbations(&mut enc, run, layer, &dx, e)?,
                e.rows() * d,
            ),
            Slot::Head { layer, qkv, .. } => (
                self.head_perturbations(&mut enc, run, layer, qkv, &dx, e)?,
                h * e.rows() * d,
            ),
        };
        enc.submit();
        let v = self
            .gpu
            .read(&[Slice::first(&out, len)])
            .await?
            .pop()
            .expect("one slice");
        if !matches!(slot, Slot::Head { .. }) {
            return Ok(v);
        }
        // [H, n_u, n, d] → [n_u, H, n, d]
        let block = n * d;
        let mut o = Vec::with_capacity(len);
        for u in 0..e.n_u {
            for head in 0..h {
                o.extend_from_slice(&v[(head * e.n_u + u) * block..][..block]);
            }
        }
        Ok(o)
    }

    async fn edge_products(
        &self,
        deltas: &[f32],
        grads: &[f32],
        nf: usize,
        nb: usize,
    ) -> Result<Vec<f32>> {
        let k = deltas.len() / nf;
        // chunks of k that fit one binding, summed on the device
        let kc = (self.gpu.max_floats() / nf.max(nb)).clamp(1, k);
        let out = [
            self.buf(nf * nb, "edge products")?,
            self.buf(nf * nb, "edge products")?,
        ];
        let mut enc = Enc::new(&self.gpu);
        let mut last = 0;
        for (i, k0) in (0..k).step_by(kc).enumerate() {
            let kk = kc.min(k - k0);
            let cols = |m: &[f32], rows: usize| -> Vec<f32> {
                (0..rows)
                    .flat_map(|r| m[r * k + k0..r * k + k0 + kk].iter().copied())
                    .collect()
            };
            let a = self.gpu.upload(&cols(deltas, nf), "edge deltas")?;
            let g = self.gpu.upload(&cols(grads, nb), "slot gradients")?;
            let mm = Mm {
                trans_b: true,
                ldb: kk,
                ..Mm::plain(nf, kk, nb)
            };
            let prev = (i > 0).then(|| &out[(i - 1) % 2]);
            enc.matmul(mm, &a, &g, None, prev, &out[i % 2]);
            last = i % 2;
        }
        enc.submit();
        Ok(self
            .gpu
            .read(&[Slice::first(&out[last], nf * nb)])
            .await?
            .pop()
            .expect("one slice"))
    }
}
