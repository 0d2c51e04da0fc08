//! The fast paths on the GPU: the model *tail* from a perturbed layer for a
//! batch of perturbations (rows ≥ the first differing position only, prefix
//! keys/values from the base run, the final block at the last position only,
//! the two answer logits only — or, for the probability difference, the full
//! logits of the last position), forward and with activation gradients.
//! Runs the steps of `engine::plan::TailPlan`, as the CPU backend's `tail` does.

use super::context::{is_oom, At, Enc, Slice};
use super::forward::{Forward, LayerBufs, Readout};
use super::ops::{AttnGrads, AttnShape, Batch, LastRows, LnTape, Patched, Rows, Shared, SiteStack};
use super::GpuEngine;
use crate::engine::hooks::unknown_hook;
use crate::engine::plan::{Start, Step, TailPlan, GPU_ROWS_PER_PASS};
use crate::engine::{Component, Site};
use crate::error::Result;
use std::ops::Range;
use wgpu::Buffer;

/// Device memory one sweep may allocate for its workspace and tapes.
const WORK_BYTES: usize = 512 << 20;

/// The longest tail a GPU sweep runs (from the embeddings, as a
/// perturbation of layer 0's `hook_resid_pre` needs): workspaces hold tapes
/// for all of its steps, so one workspace serves a sweep at any layer.
fn longest_tail(n_layers: usize) -> TailPlan {
    TailPlan::new(Start::Embed, n_layers)
}

/// Tape buffers of one sublayer (gradient passes only).
struct Tape {
    xhat: Buffer,
    rstd: Buffer,
    /// MLP: hook_pre [rows, d_mlp]; attention: qkv [rows, 3·d].
    act: Buffer,
    /// Attention: the pattern [batch, heads, nq, T].
    pat: Option<Buffer>,
}

impl Tape {
    /// The sublayer's layer norm tape.
    fn ln(&self) -> LnTape<'_> {
        LnTape {
            xhat: &self.xhat,
            rstd: &self.rstd,
        }
    }
}

/// What a workspace was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct WorkKey {
    /// Batch elements per pass.
    pub cap: usize,
    /// Rows per batch element (positions fd..T).
    pub n: usize,
    /// Tokens of the prompts.
    pub t: usize,
    /// Whether it keeps tapes for gradients.
    pub record: bool,
    /// Whether it forms full logits (the probability difference).
    pub logits: bool,
}

/// Buffers of a sweep, sized for `cap` batch elements of n rows.
pub(super) struct Work {
    x: [Buffer; 2],
    ln: Buffer,
    xhat: Buffer,
    rstd: Buffer,
    qkv: Buffer,
    z: Buffer,
    xl: Buffer,
    hid: Buffer,
    post: Buffer,
    norm: Buffer,
    xhat_f: Buffer,
    rstd_f: Buffer,
    grad: Option<GradWork>,
    /// The probability difference's buffers (None for the logit difference).
    unembed: Option<super::unembed::Unembed>,
}

struct GradWork {
    tapes: Vec<Tape>,
    g: [Buffer; 2],
    dz: Buffer,
    dh: Buffer,
    dqkv: Buffer,
    ds: Buffer,
}

/// The rows a group's tails run on: prompts of t tokens, positions fd..t.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    pub t: usize,
    pub fd: usize,
}

impl Window {
    /// Rows per tail.
    pub fn n(self) -> usize {
        self.t - self.fd
    }
}

/// The straight path of a path-gradient sweep: its α and their weights.
#[derive(Clone, Copy)]
pub(super) struct Path<'a> {
    pub alphas: &'a [f32],
    pub weights: &'a [f32],
}

/// A pair of a grouped sweep: the base run and the run patched in.
#[derive(Clone, Copy)]
pub(super) struct RunPair<'a> {
    pub base: &'a Forward,
    pub other: &'a Forward,
}

/// One part of a sweep (see `in_parts`): the workspace, its batch elements
/// per pass, and the pairs of this part.
struct Part<'a, 'r> {
    ws: &'a Work,
    cap: usize,
    group: &'a [RunPair<'r>],
}

/// One tail pass being encoded: the workspace, the base side, the steps and
/// the batch.
struct Pass<'a> {
    ws: &'a Work,
    base: &'a Stacked,
    plan: &'a TailPlan,
    b: Batch,
}

impl<'a> Pass<'a> {
    /// The tape of step `si` (gradient passes): a tail's steps are the last
    /// ones of the longest tail.
    fn tape(&self, si: usize) -> Option<&'a Tape> {
        let steps = self.plan.steps.len();
        self.ws
            .grad
            .as_ref()
            .map(|g| &g.tapes[g.tapes.len() - steps + si])
    }
}

/// One step of a tail pass: its layer, the rows per batch element entering
/// it, where it reads and where it writes (residual rows forward, gradients
/// backward), and its tape (gradient passes).
#[derive(Clone, Copy)]
struct StepIo<'a> {
    layer: usize,
    m: usize,
    input: &'a Buffer,
    output: &'a Buffer,
    tape: Option<&'a Tape>,
}

impl GpuEngine {
    /// The cached workspace if it fits, else a new one (the cache keeps the
    /// last one: a sweep over layers reuses it call after call). When the
    /// device has no memory for a new one, tries once more with half the
    /// batch elements. Returns the key of the workspace it gives.
    fn take_work(&self, key: WorkKey) -> Result<(WorkKey, Work)> {
        let mut slot = self.work.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, w)) = slot.take() {
            if k == key {
                return Ok((key, w));
            }
            // dropped before the new one is made
        }
        drop(slot);
        match self.work(key) {
            Err(e) if is_oom(&e) && key.cap > 1 => {
                let smaller = WorkKey {
                    cap: key.cap / 2,
                    ..key
                };
                Ok((smaller, self.work(smaller)?))
            }
            r => r.map(|w| (key, w)),
        }
    }

    fn put_work(&self, key: WorkKey, w: Work) {
        *self.work.lock().unwrap_or_else(|e| e.into_inner()) = Some((key, w));
    }

    /// Batch elements per pass for tails on `win`'s rows: as many as
    /// `GPU_ROWS_PER_PASS`, `WORK_BYTES` and one buffer binding allow.
    fn capacity(&self, win: Window, record: bool) -> usize {
        let c = &self.cfg;
        let (d, dm, h) = (c.d_model, c.d_mlp, c.n_heads);
        let (n, t) = (win.n(), win.t);
        let plan = longest_tail(c.n_layers);
        // floats per batch element
        let mut per = n * (8 * d + 1 + 2 * dm) + 3 * d + 1;
        let mut widest = n * dm.max(3 * d);
        if record {
            per += n * (7 * d) + h * n * t;
            widest = widest.max(h * n * t);
            for (s, m) in plan.steps.iter().zip(plan.step_rows(n)) {
                per += match s {
                    Step::Mlp(_) => m * (d + 1 + dm),
                    Step::Attn { last_only, .. } => {
                        n * (4 * d + 1) + h * (if *last_only { 1 } else { n }) * t
                    }
                };
            }
        }
        let by_rows = GPU_ROWS_PER_PASS / n;
        let by_mem = WORK_BYTES / (4 * per);
        let by_binding = self.gpu.max_floats() / widest.max(1);
        by_rows.min(by_mem).min(by_binding).clamp(1, 65_535)
    }

    fn work(&self, key: WorkKey) -> Result<Work> {
        let g = &self.gpu;
        let c = &self.cfg;
        let (d, dm, h) = (c.d_model, c.d_mlp, c.n_heads);
        let WorkKey { cap, n, t, .. } = key;
        let r = cap * n;
        let grad = if key.record {
            let plan = longest_tail(c.n_layers);
            let tapes = plan
                .steps
                .iter()
                .zip(plan.step_rows(n))
                .map(|(s, m)| {
                    Ok(match s {
                        Step::Mlp(_) => Tape {
                            xhat: g.buffer(cap * m * d, "tape xhat")?,
                            rstd: g.buffer(cap * m, "tape rstd")?,
                            act: g.buffer(cap * m * dm, "tape pre")?,
                            pat: None,
                        },
                        Step::Attn { last_only, .. } => {
                            let nq = if *last_only { 1 } else { n };
                            Tape {
                                xhat: g.buffer(r * d, "tape xhat")?,
                                rstd: g.buffer(r, "tape rstd")?,
                                act: g.buffer(r * 3 * d, "tape qkv")?,
                                pat: Some(g.buffer(cap * h * nq * t, "tape pattern")?),
                            }
                        }
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Some(GradWork {
                tapes,
                g: [g.buffer(r * d, "grad")?, g.buffer(r * d, "grad")?],
                dz: g.buffer(r * d, "dz")?,
                dh: g.buffer(r * d, "dh")?,
                dqkv: g.buffer(r * 3 * d, "dqkv")?,
                ds: g.buffer(cap * h * n * t, "ds")?,
            })
        } else {
            None
        };
        Ok(Work {
            x: [g.buffer(r * d, "rows")?, g.buffer(r * d, "rows")?],
            ln: g.buffer(r * d, "ln")?,
            xhat: g.buffer(r * d, "xhat")?,
            rstd: g.buffer(r, "rstd")?,
            qkv: g.buffer(r * 3 * d, "qkv")?,
            z: g.buffer(r * d, "z")?,
            xl: g.buffer(cap * d, "last rows")?,
            hid: g.buffer(r * dm, "hidden")?,
            post: g.buffer(r * dm, "post")?,
            norm: g.buffer(cap * d, "ln_final")?,
            xhat_f: g.buffer(cap * d, "xhat")?,
            rstd_f: g.buffer(cap, "rstd")?,
            grad,
            unembed: if key.logits {
                Some(self.unembed_work(cap, key.record)?)
            } else {
                None
            },
        })
    }

    /// Runs the tail for the start rows in `p.ws.x[0]` and writes each batch
    /// element's metric to `metrics`. Returns the rows per batch element at
    /// the end.
    fn encode_tail(&self, enc: &mut Enc, p: &Pass, metrics: At) -> usize {
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
    /// keys and values of positions < fd from the base run; with
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
            fd: b.fd,
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
    fn encode_tail_backward<'w>(
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
    /// Pairs of t tokens whose stacked arrays (q | k | v, head results, MLP
    /// activations) fit one buffer binding.
    fn pairs_per_part(&self, t: usize) -> usize {
        let c = &self.cfg;
        let widest = t * (3 * c.d_model).max(c.n_heads * c.d_model).max(c.d_mlp);
        (self.gpu.max_floats() / widest.max(1)).max(1)
    }

    /// Buffers of `len` floats each, one after another in one new buffer (a
    /// single buffer is used as it is).
    fn stack(&self, enc: &mut Enc, bufs: &[&Buffer], len: usize, label: &str) -> Result<Buffer> {
        if let [one] = bufs {
            return Ok((*one).clone());
        }
        let out = self.gpu.buffer(bufs.len() * len, label)?;
        for (i, b) in bufs.iter().enumerate() {
            enc.copy(At::start(b), At::new(&out, i * len), len);
        }
        Ok(out)
    }

    /// The base side of a group's tails that start after layer `first` − 1:
    /// q | k | v of layers ≥ `first` and the metric's head, of every pair's
    /// base run (all of token length t).
    fn stacked(&self, enc: &mut Enc, group: &[RunPair], t: usize, first: usize) -> Result<Stacked> {
        let d = self.cfg.d_model;
        let qkv = (0..self.cfg.n_layers)
            .map(|l| {
                if l < first {
                    // never read by these tails
                    return Ok(group[0].base.layers[l].qkv.clone());
                }
                let bufs: Vec<_> = group.iter().map(|g| &g.base.layers[l].qkv).collect();
                self.stack(enc, &bufs, t * 3 * d, "stacked qkv")
            })
            .collect::<Result<Vec<_>>>()?;
        let readout = match &group[0].base.readout {
            Readout::Dir(_) => {
                let dirs: Vec<_> = group
                    .iter()
                    .map(|g| match &g.base.readout {
                        Readout::Dir(dir) => dir,
                        Readout::Signs(_) => unreachable!("a group shares one metric kind"),
                    })
                    .collect();
                Readout::Dir(self.stack(enc, &dirs, d, "answer directions")?)
            }
            // the caller groups only runs with the same signs
            Readout::Signs(signs) => Readout::Signs(signs.clone()),
        };
        Ok(Stacked { qkv, readout })
    }

    /// Where a group's tails at `site` start, stacked: the residual stream
    /// the site adds to (resid_mid for heads, resid_post for neurons), and
    /// the base and the other runs' activation `act`.
    fn stack_site<'a>(
        &self,
        enc: &mut Enc,
        group: &[RunPair<'a>],
        site: Site,
        t: usize,
        act: SiteAct,
    ) -> Result<SiteStack> {
        let l = site.layer;
        let resid: Act = match site.component {
            Component::Heads => |b| &b.resid_mid,
            Component::Neurons => |b| &b.resid_post,
        };
        let stack = |enc: &mut Enc, f: Act, run: fn(&RunPair<'a>) -> &'a Forward, len| {
            let bufs: Vec<&Buffer> = group.iter().map(|g| f(&run(g).layers[l])).collect();
            self.stack(enc, &bufs, len, "stacked activations")
        };
        Ok(SiteStack {
            resid: stack(enc, resid, |g| g.base, t * self.cfg.d_model)?,
            base: stack(enc, act.get, |g| g.base, act.len)?,
            other: stack(enc, act.get, |g| g.other, act.len)?,
        })
    }

    /// Metrics of every pair's base run with each component of `site` in
    /// `comps` patched from its other run, one tail per (pair, component).
    /// The pairs (all of token length t) share passes; rows start at fd, the
    /// earliest first differing position of the group.
    pub(super) async fn sweep_patches(
        &self,
        group: &[RunPair<'_>],
        site: Site,
        comps: Range<usize>,
        win: Window,
    ) -> Result<Vec<Vec<f32>>> {
        self.in_parts(group, comps.len(), win, false, async |part| {
            self.patch_part(part, site, comps.clone(), win).await
        })
        .await
    }

    /// Runs `part` over a group in parts: one workspace for `items` elements
    /// (components or α) of every pair, or as many as fit; a part holds the
    /// pairs that fit it and one buffer binding of stacked arrays.
    async fn in_parts<T>(
        &self,
        group: &[RunPair<'_>],
        items: usize,
        win: Window,
        record: bool,
        part: impl AsyncFn(Part<'_, '_>) -> Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        let want = (group.len() * items).clamp(1, self.capacity(win, record));
        let key = WorkKey {
            cap: want,
            n: win.n(),
            t: win.t,
            record,
            logits: group[0].base.readout.is_signs(),
        };
        let (key, ws) = self.take_work(key)?;
        let mut out = Vec::with_capacity(group.len());
        for pairs in group.chunks(key.cap.min(self.pairs_per_part(win.t))) {
            let p = Part {
                ws: &ws,
                cap: key.cap,
                group: pairs,
            };
            out.extend(part(p).await?);
        }
        self.put_work(key, ws);
        Ok(out)
    }

    async fn patch_part(
        &self,
        part: Part<'_, '_>,
        site: Site,
        comps: Range<usize>,
        win: Window,
    ) -> Result<Vec<Vec<f32>>> {
        let c = &self.cfg;
        let (d, n, pairs) = (c.d_model, win.n(), part.group.len());
        let plan = TailPlan::new(Start::of(site), c.n_layers);
        let per = (part.cap / pairs).min(comps.len()).max(1);
        let metrics = self.gpu.buffer(pairs * comps.len(), "metrics")?;
        let mut enc = Enc::new(&self.gpu);
        let base = self.stacked(&mut enc, part.group, win.t, site.layer + 1)?;
        // the components' own activations: hook_result or hook_post
        let act = match site.component {
            Component::Heads => SiteAct {
                get: |b| &b.result,
                len: win.t * c.n_heads * d,
            },
            Component::Neurons => SiteAct {
                get: |b| &b.post,
                len: win.t * c.d_mlp,
            },
        };
        let stack = self.stack_site(&mut enc, part.group, site, win.t, act)?;
        let x = &part.ws.x[0];
        let chunks = chunks(comps.len(), per);
        for ch in &chunks {
            let b = Batch::new(pairs, ch.len, n, d, win.fd);
            let patched = Patched {
                first: comps.start + ch.first,
                per_layer: site.component.count(c),
            };
            match site.component {
                Component::Heads => enc.patch_heads(b, patched, &stack, x),
                Component::Neurons => {
                    let w_out = &self.w.blocks[site.layer].mlp_proj.w;
                    enc.patch_neurons(b, patched, &stack, w_out, x)
                }
            }
            let pass = Pass {
                ws: part.ws,
                base: &base,
                plan: &plan,
                b,
            };
            self.encode_tail(&mut enc, &pass, At::new(&metrics, pairs * ch.first));
        }
        enc.submit();
        let raw = self
            .gpu
            .read(&[Slice::first(&metrics, pairs * comps.len())])
            .await?;
        Ok(unpack(&raw[0], pairs, comps.len(), &chunks))
    }

    /// For every pair (all of token length t): the metrics along the
    /// straight path of the site's whole contribution and
    /// Σ_k w_k ∂m/∂(attn_out or mlp_out) over rows fd.. ([n, d], or [n, d_mlp]
    /// for neurons: ∂m/∂hook_post).
    pub(super) async fn sweep_path(
        &self,
        group: &[RunPair<'_>],
        site: Site,
        path: Path<'_>,
        win: Window,
    ) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        self.in_parts(group, path.alphas.len(), win, true, async |part| {
            self.path_part(part, site, path, win).await
        })
        .await
    }

    async fn path_part(
        &self,
        part: Part<'_, '_>,
        site: Site,
        path: Path<'_>,
        win: Window,
    ) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        let c = &self.cfg;
        let (d, n, pairs) = (c.d_model, win.n(), part.group.len());
        let items = path.alphas.len();
        let plan = TailPlan::new(Start::of(site), c.n_layers);
        let per = (part.cap / pairs).min(items).max(1);
        let g = &self.gpu;
        let metrics = g.buffer(pairs * items, "metrics")?;
        let alpha_buf = g.upload(path.alphas, "alphas")?;
        let weight_buf = g.upload(path.weights, "weights")?;
        let grad = g.buffer(pairs * n * d, "weighted gradient")?;
        let mut enc = Enc::new(g);
        enc.clear(&grad);
        let base = self.stacked(&mut enc, part.group, win.t, site.layer + 1)?;
        // the site's whole contribution: attn_out or mlp_out
        let get: Act = match site.component {
            Component::Heads => |b| &b.attn_out,
            Component::Neurons => |b| &b.mlp_out,
        };
        let act = SiteAct {
            get,
            len: win.t * d,
        };
        let stack = self.stack_site(&mut enc, part.group, site, win.t, act)?;
        let chunks = chunks(items, per);
        for ch in &chunks {
            let b = Batch::new(pairs, ch.len, n, d, win.fd);
            enc.patch_path(b, &stack, At::new(&alpha_buf, ch.first), &part.ws.x[0]);
            let pass = Pass {
                ws: part.ws,
                base: &base,
                plan: &plan,
                b,
            };
            self.encode_tail(&mut enc, &pass, At::new(&metrics, pairs * ch.first));
            let gx = self.encode_tail_backward(&mut enc, &pass, &mut |_, _, _| {});
            enc.weighted_sum(gx, b, At::new(&weight_buf, ch.first), &grad);
        }
        let (out, width) = match site.component {
            Component::Heads => (grad, d),
            Component::Neurons => {
                // ∂m/∂hook_post = ∂m/∂mlp_out · W_outᵀ
                let gp = g.buffer(pairs * n * c.d_mlp, "weighted gradient")?;
                let w_out = &self.w.blocks[site.layer].mlp_proj;
                enc.linear_backward(&grad, pairs * n, w_out, &gp);
                (gp, c.d_mlp)
            }
        };
        enc.submit();
        let r = g
            .read(&[
                Slice::first(&metrics, pairs * items),
                Slice::first(&out, pairs * n * width),
            ])
            .await?;
        let ms = unpack(&r[0], pairs, items, &chunks);
        Ok(ms
            .into_iter()
            .zip(r[1].chunks(n * width))
            .map(|(m, gr)| (m, gr.to_vec()))
            .collect())
    }
}

impl GpuEngine {
    /// ∂m/∂(hook_result or hook_post) at the base run for every layer, rows
    /// fd.. ([n, width] each): one tail from layer 0's MLP and one backward,
    /// reading the gradient at every block boundary.
    pub(super) async fn sweep_base_gradients(
        &self,
        base: &Forward,
        component: Component,
        win: Window,
    ) -> Result<Vec<Vec<f32>>> {
        let c = &self.cfg;
        let (d, dm, n, fd) = (c.d_model, c.d_mlp, win.n(), win.fd);
        let g = &self.gpu;
        let plan = TailPlan::new(Start::Mid(0), c.n_layers);
        let key = WorkKey {
            cap: 1,
            n,
            t: win.t,
            record: true,
            logits: base.readout.is_signs(),
        };
        let (key, ws) = self.take_work(key)?;
        let b = Batch::new(1, 1, n, d, fd);
        let metric = g.buffer(1, "metric")?;
        let stacked = Stacked::of(base);
        let one = g.upload(&[1.0], "one")?;
        let acc = (0..c.n_layers)
            .map(|_| g.buffer(n * d, "gradient"))
            .collect::<Result<Vec<_>>>()?;
        let mut enc = Enc::new(g);
        for a in &acc {
            enc.clear(a);
        }
        let start = At::new(&base.layers[0].resid_mid, fd * d);
        enc.copy(start, At::start(&ws.x[0]), n * d);
        let pass = Pass {
            ws: &ws,
            base: &stacked,
            plan: &plan,
            b,
        };
        self.encode_tail(&mut enc, &pass, At::start(&metric));
        // heads: ∂m/∂attn_out = ∂m/∂resid_mid (after the MLP's backward);
        // neurons: ∂m/∂mlp_out = ∂m/∂resid_post (before it)
        self.encode_tail_backward(&mut enc, &pass, &mut |enc, point, gx| {
            let (Start::Mid(layer) | Start::Post(layer)) = point else {
                return;
            };
            if point == Start::of(Site { layer, component }) {
                enc.weighted_sum(gx, b, At::start(&one), &acc[layer]);
            }
        });
        let out = match component {
            Component::Heads => acc,
            Component::Neurons => acc
                .iter()
                .enumerate()
                .map(|(l, a)| {
                    let gp = g.buffer(n * dm, "gradient")?;
                    enc.linear_backward(a, n, &self.w.blocks[l].mlp_proj, &gp);
                    Ok(gp)
                })
                .collect::<Result<Vec<_>>>()?,
        };
        enc.submit();
        let width = component.grad_width(c);
        let ranges: Vec<_> = out.iter().map(|b| Slice::first(b, n * width)).collect();
        let r = g.read(&ranges).await?;
        self.put_work(key, ws);
        Ok(r)
    }
}

impl GpuEngine {
    /// Tails from `start` of one base run for a batch of perturbations of
    /// its residual rows there (`deltas`: k blocks of [n, d]): each element's
    /// metric and, with `record`, ∂m/∂(its start rows) ([k, n, d]).
    pub(super) async fn sweep_resid(
        &self,
        base: &Forward,
        start: Start,
        win: Window,
        deltas: &[f32],
        record: bool,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let c = &self.cfg;
        let (d, n, fd) = (c.d_model, win.n(), win.fd);
        let block = n * d;
        let k = deltas.len() / block;
        let g = &self.gpu;
        let plan = TailPlan::new(start, c.n_layers);
        let resid = match start {
            Start::Mid(l) => &base.layers[l].resid_mid,
            Start::Post(l) => &base.layers[l].resid_post,
            Start::Embed => {
                let name = "blocks.0.hook_resid_pre";
                &base.hooks.get(name).ok_or_else(|| unknown_hook(name))?.buf
            }
        };
        let key = WorkKey {
            cap: k.clamp(1, self.capacity(win, record)),
            n,
            t: win.t,
            record,
            logits: base.readout.is_signs(),
        };
        let (key, ws) = self.take_work(key)?;
        let stacked = Stacked::of(base);
        let metrics = g.buffer(k.max(1), "metrics")?;
        let one = g.upload(&[1.0], "one")?;
        let mut enc = Enc::new(g);
        let mut grads = Vec::new();
        for (ci, chunk) in deltas.chunks(key.cap * block).enumerate() {
            let kk = chunk.len() / block;
            let pert = g.upload(chunk, "perturbations")?;
            // start rows: the base run's rows fd.. plus each perturbation
            for e in 0..kk {
                enc.copy(At::new(resid, fd * d), At::new(&ws.x[1], e * block), block);
            }
            enc.add(&ws.x[1], &pert, kk * block, &ws.x[0]);
            let b = Batch::new(1, kk, n, d, fd);
            let pass = Pass {
                ws: &ws,
                base: &stacked,
                plan: &plan,
                b,
            };
            self.encode_tail(&mut enc, &pass, At::new(&metrics, ci * key.cap));
            if record {
                let gx = self.encode_tail_backward(&mut enc, &pass, &mut |_, _, _| {});
                let out = g.buffer(kk * block, "gradients")?;
                enc.clear(&out);
                // each element its own "pair" with weight 1: out[e] = g[e]
                enc.weighted_sum(gx, Batch::new(kk, 1, n, d, fd), At::start(&one), &out);
                grads.push((out, kk * block));
            }
        }
        enc.submit();
        let mut ranges = vec![Slice::first(&metrics, k)];
        ranges.extend(grads.iter().map(|(b, len)| Slice::first(b, *len)));
        let mut r = g.read(&ranges).await?;
        self.put_work(key, ws);
        let metrics = r.remove(0);
        Ok((metrics, r.concat()))
    }
}

impl Work {
    /// The layer norm tape of forward-only passes (overwritten step by step).
    fn ln_tape(&self) -> LnTape<'_> {
        LnTape {
            xhat: &self.xhat,
            rstd: &self.rstd,
        }
    }
    /// ln_final's tape.
    fn ln_f_tape(&self) -> LnTape<'_> {
        LnTape {
            xhat: &self.xhat_f,
            rstd: &self.rstd_f,
        }
    }
}

/// The base side of a sweep over a group of prompt pairs of one token length
/// T: each layer's q | k | v of the pairs' base runs, stacked [pair, T, 3·d],
/// and how the metric is read (the answer directions stacked [pair, d], or
/// the probability difference's signs, which the group shares). A group of
/// one uses its run's own buffers.
pub(super) struct Stacked {
    qkv: Vec<Buffer>,
    readout: Readout,
}

impl Stacked {
    /// One run's own buffers.
    fn of(run: &Forward) -> Stacked {
        Stacked {
            qkv: run.layers.iter().map(|l| l.qkv.clone()).collect(),
            readout: run.readout.clone(),
        }
    }
}

/// One of a layer's activations.
type Act = fn(&LayerBufs) -> &Buffer;

/// A layer's activation at a site and its length (floats per run).
struct SiteAct {
    get: Act,
    len: usize,
}

/// A run of a sweep's items (components or α) that one pass takes.
#[derive(Clone, Copy)]
struct Chunk {
    first: usize,
    len: usize,
}

/// A sweep's items in chunks of at most `per`.
fn chunks(items: usize, per: usize) -> Vec<Chunk> {
    (0..items)
        .step_by(per.max(1))
        .map(|first| Chunk {
            first,
            len: per.min(items - first),
        })
        .collect()
}

/// Per-pair results from a grouped metrics buffer, where the chunk of items
/// first..first+len holds the items of pair 0, then of pair 1, … from
/// `pairs · first`.
fn unpack(raw: &[f32], pairs: usize, items: usize, chunks: &[Chunk]) -> Vec<Vec<f32>> {
    let mut out = vec![vec![0.0; items]; pairs];
    for ch in chunks {
        for (p, row) in out.iter_mut().enumerate() {
            let from = pairs * ch.first + p * ch.len;
            row[ch.first..ch.first + ch.len].copy_from_slice(&raw[from..from + ch.len]);
        }
    }
    out
}
