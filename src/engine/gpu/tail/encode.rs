//! One tail pass recorded into a submission: forward from the start rows
//! to each batch element's metric, and backward to ∂m/∂(the start rows).

use super::{Pass, StepIo};
use crate::engine::gpu::context::{At, Enc};
use crate::engine::gpu::forward::Readout;
use crate::engine::gpu::ops::{AttnGrads, AttnShape, Batch, LastRows, Rows, Shared};
use crate::engine::gpu::GpuEngine;
use crate::engine::plan::{Start, Step};
use wgpu::Buffer;

impl GpuEngine {
    /// Runs the tail for the start rows in `p.ws.x[0]` and writes each batch
    /// element's metric to `metrics`. Returns the rows per batch element at
    /// the end.
    pub(super) fn encode_tail(&self, enc: &mut Enc, p: &Pass, metrics: At) -> usize {
        let ws = p.ws;
        // the residual rows are in x[cur]; each step writes x[1 − cur]
        let mut cur = 0;
        let mut m = p.b.n;
        if p.plan.gather_first {
            enc.gather_last(&ws.x[0], p.b, &ws.x[1]);
            (cur, m) = (1, 1);
        }
        for (si, step) in p.plan.steps.iter().enumerate() {
            let io = StepIo {
                layer: step.layer(),
                m,
                input: &ws.x[cur],
                output: &ws.x[1 - cur],
                tape: p.tape(si),
            };
            match *step {
                Step::Mlp(_) => self.tail_mlp(enc, p, io),
                Step::Attn { last_only, .. } => m = self.tail_attn(enc, p, io, last_only),
            }
            cur = 1 - cur;
        }
        self.tail_metric(enc, p, &ws.x[cur], m, metrics);
        m
    }

    /// x + W_out · gelu(W_in · ln_2(x) + b_in) + b_out on the m rows of each
    /// batch element.
    fn tail_mlp(&self, enc: &mut Enc, p: &Pass, s: StepIo) {
        let (ws, w) = (p.ws, &self.w.blocks[s.layer]);
        let rows = p.b.batch * s.m;
        let (tape, pre) = match s.tape {
            Some(t) => (t.ln(), &t.act),
            None => (ws.ln_tape(), &ws.hid),
        };
        enc.layer_norm(s.input, Rows::all(rows), &w.ln_2, &ws.ln, tape);
        enc.linear(&ws.ln, rows, &w.c_fc, None, pre);
        enc.gelu(pre, rows * self.cfg.d_mlp, &ws.post);
        enc.linear(&ws.post, rows, &w.mlp_proj, Some(s.input), s.output);
    }

    /// x + attn(ln_1(x)) · W_O + b_O on the n rows of each batch element,
    /// keys and values of positions < first_diff from the base run; with
    /// `last_only`, queries (and output rows) at the last position only.
    /// Returns the rows per batch element it leaves.
    fn tail_attn(&self, enc: &mut Enc, p: &Pass, s: StepIo, last_only: bool) -> usize {
        let (ws, b, w) = (p.ws, p.b, &self.w.blocks[s.layer]);
        let rows = b.batch * b.n;
        let nq = if last_only { 1 } else { b.n };
        let (tape, qkv, pattern) = match s.tape {
            Some(t) => (t.ln(), &t.act, t.pat.as_ref()),
            None => (ws.ln_tape(), &ws.qkv, None),
        };
        enc.layer_norm(s.input, Rows::all(rows), &w.ln_1, &ws.ln, tape);
        enc.linear(&ws.ln, rows, &w.c_attn, None, qkv);
        let base_qkv = &p.base.qkv[s.layer];
        enc.attn_tail(self.attn_shape(b, nq), qkv, base_qkv, &ws.z, pattern);
        let res = if last_only {
            enc.gather_last(s.input, b, &ws.xl);
            &ws.xl
        } else {
            s.input
        };
        enc.linear(&ws.z, b.batch * nq, &w.c_proj, Some(res), s.output);
        nq
    }

    /// The metric of each batch element from the last of its m rows in x:
    /// ln_final, then the logit difference with its pair's answer direction,
    /// or the probability difference.
    fn tail_metric(&self, enc: &mut Enc, p: &Pass, x: &Buffer, m: usize, metrics: At) {
        let (ws, b) = (p.ws, p.b);
        let tape = ws.ln_f_tape();
        enc.layer_norm(x, Rows::last_of(b.batch, m), &self.w.ln_f, &ws.norm, tape);
        let rows = Rows::all(b.batch);
        match &p.base.readout {
            Readout::Dir(dir) => {
                let dir = Shared {
                    buf: dir,
                    every: b.per,
                };
                enc.metric(&ws.norm, rows, self.cfg.d_model, dir, metrics);
            }
            Readout::Signs(signs) => {
                let u = ws.unembed.as_ref().expect("a workspace with logits");
                self.encode_prob_diff(enc, u, &ws.norm, rows, signs, metrics);
            }
        }
    }

    fn attn_shape(&self, b: Batch, nq: usize) -> AttnShape {
        AttnShape {
            batch: b.batch,
            per: b.per,
            n: b.n,
            nq,
            first_diff: b.first_diff,
            heads: self.cfg.n_heads,
            dh: self.cfg.d_head,
            d: self.cfg.d_model,
        }
    }

    /// Backward of `encode_tail` (which must have recorded): ∂m/∂x of the
    /// start rows, as the rows it holds (the last of each element's n rows,
    /// or all of them; earlier ones have zero gradient). `at_block` sees the
    /// gradient at both ends of every MLP step: ∂m/∂resid_post (at
    /// `Start::Post(l)`) before the MLP's backward and ∂m/∂resid_mid (at
    /// `Start::Mid(l)`) after it.
    pub(super) fn encode_tail_backward<'w>(
        &self,
        enc: &mut Enc,
        p: &Pass<'w>,
        at_block: &mut dyn FnMut(&mut Enc, Start, LastRows),
    ) -> LastRows<'w> {
        let gw = p.ws.grad.as_ref().expect("a recording workspace");
        let n = p.b.n;
        self.metric_backward(enc, p, &gw.g[0]);
        // the gradient is in g[cur] for gm rows per element; each step writes g[1 − cur]
        let mut cur = 0;
        let mut gm = 1;
        for (si, step) in p.plan.steps.iter().enumerate().rev() {
            let io = StepIo {
                layer: step.layer(),
                m: gm,
                input: &gw.g[cur],
                output: &gw.g[1 - cur],
                tape: p.tape(si),
            };
            let rows = |buf| LastRows {
                buf,
                of: n,
                last: gm,
            };
            match *step {
                Step::Mlp(l) => {
                    at_block(enc, Start::Post(l), rows(io.input));
                    self.mlp_backward(enc, p, io);
                    at_block(enc, Start::Mid(l), rows(io.output));
                }
                Step::Attn { last_only, .. } => gm = self.attn_backward(enc, p, io, last_only),
            }
            cur = 1 - cur;
        }
        LastRows {
            buf: &gw.g[cur],
            of: n,
            last: gm,
        }
    }

    /// ∂m/∂(the final residual's last row of each batch element) into
    /// `out`, through ln_final: from the element's answer direction, or from
    /// the ∂m/∂norm rows the probability difference's forward left.
    fn metric_backward(&self, enc: &mut Enc, p: &Pass, out: &Buffer) {
        let ws = p.ws;
        let dy = match &p.base.readout {
            Readout::Dir(dir) => Shared {
                buf: dir,
                every: p.b.per,
            },
            Readout::Signs(_) => Shared::each(
                self.prob_diff_grad(ws.unembed.as_ref().expect("a workspace with logits")),
            ),
        };
        enc.layer_norm_backward(dy, p.b.batch, &self.w.ln_f, ws.ln_f_tape(), None, out);
    }

    /// Backward of `tail_mlp`: ∂m/∂x = ∂m/∂y + ln_2's backward of
    /// ((∂m/∂y · W_outᵀ) ⊙ gelu′(pre)) · W_inᵀ.
    fn mlp_backward(&self, enc: &mut Enc, p: &Pass, s: StepIo) {
        let (ws, w) = (p.ws, &self.w.blocks[s.layer]);
        let gw = ws.grad.as_ref().expect("a recording workspace");
        let t = s.tape.expect("a recorded tail");
        let rows = p.b.batch * s.m;
        let dm = self.cfg.d_mlp;
        // ∂m/∂hook_post, ∂m/∂hook_pre, ∂m/∂ln_2(x)
        enc.linear_backward(s.input, rows, &w.mlp_proj, &ws.hid);
        enc.gelu_backward(&t.act, &ws.hid, rows * dm, &ws.post);
        enc.linear_backward(&ws.post, rows, &w.c_fc, &gw.dh);
        let skip = LastRows {
            buf: s.input,
            of: s.m,
            last: s.m,
        };
        enc.layer_norm_backward(
            Shared::each(&gw.dh),
            rows,
            &w.ln_2,
            t.ln(),
            Some(skip),
            s.output,
        );
    }

    /// Backward of `tail_attn`: from ∂m/∂y on the rows it left to ∂m/∂x on
    /// all n rows (the skip path reaches only the rows it left). Returns n.
    fn attn_backward(&self, enc: &mut Enc, p: &Pass, s: StepIo, last_only: bool) -> usize {
        let (ws, b, w) = (p.ws, p.b, &self.w.blocks[s.layer]);
        let gw = ws.grad.as_ref().expect("a recording workspace");
        let t = s.tape.expect("a recorded tail");
        let (n, nq) = (b.n, if last_only { 1 } else { b.n });
        // ∂m/∂z, ∂m/∂(q | k | v), ∂m/∂ln_1(x)
        enc.linear_backward(s.input, b.batch * nq, &w.c_proj, &gw.dz);
        let grads = AttnGrads {
            dz: &gw.dz,
            pattern: t.pat.as_ref().expect("attention tape"),
            qkv: &t.act,
            base_qkv: &p.base.qkv[s.layer],
            ds: &gw.ds,
            dqkv: &gw.dqkv,
        };
        enc.attn_tail_backward(self.attn_shape(b, nq), grads);
        enc.linear_backward(&gw.dqkv, b.batch * n, &w.c_attn, &gw.dh);
        let skip = LastRows {
            buf: s.input,
            of: n,
            last: nq,
        };
        let dh = Shared::each(&gw.dh);
        enc.layer_norm_backward(dh, b.batch * n, &w.ln_1, t.ln(), Some(skip), s.output);
        n
    }
}
