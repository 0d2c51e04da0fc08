//! The fast paths on the GPU: the model *tail* from a perturbed layer for a
//! batch of perturbations (rows ≥ the first differing position only, prefix
//! keys/values from the base run, the final block at the last position only,
//! the two answer logits only — or, for the probability difference, the full
//! logits of the last position), forward and with activation gradients.
//! Mirrors `tail` / `tail_backward` of the CPU backend step by step.

use super::context::{is_oom, Enc};
use super::forward::{Forward, Head, LayerBufs};
use super::ops::{AttnShape, Batch};
use super::GpuEngine;
use crate::engine::{Component, Site};
use crate::error::Result;
use wgpu::Buffer;

/// Rows (batch × positions) per tail pass, as on the CPU.
const ROWS_PER_PASS: usize = 3072;
/// Device memory one sweep may allocate for its workspace and tapes.
const WORK_BYTES: usize = 512 << 20;

/// Where a tail pass starts.
#[derive(Clone, Copy)]
pub(super) enum Start {
    /// `blocks.L.hook_resid_mid`: layer L's MLP runs next.
    Mid(usize),
    /// `blocks.L.hook_resid_post`: layer L+1 runs next.
    Post(usize),
}

impl Start {
    pub fn of(site: Site) -> Start {
        match site.component {
            Component::Heads => Start::Mid(site.layer),
            Component::Neurons => Start::Post(site.layer),
        }
    }
}

/// One sublayer of the tail.
#[derive(Clone, Copy)]
enum Step {
    Mlp(usize),
    /// Attention of a layer; `true`: queries at the last position only.
    Attn(usize, bool),
}

/// The sublayers a tail runs, and whether it keeps only the last row from the start.
struct Plan {
    gather_first: bool,
    steps: Vec<Step>,
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

/// What a workspace was made for: (batch elements, rows, tokens, recording,
/// full logits for the probability difference).
pub(super) type WorkKey = (usize, usize, usize, bool, bool);

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
            Err(e) if is_oom(&e) && key.0 > 1 => {
                let smaller = (key.0 / 2, key.1, key.2, key.3, key.4);
                Ok((smaller, self.work(smaller)?))
            }
            r => r.map(|w| (key, w)),
        }
    }

    fn put_work(&self, key: WorkKey, w: Work) {
        *self.work.lock().unwrap_or_else(|e| e.into_inner()) = Some((key, w));
    }

    fn plan(&self, start: Start) -> Plan {
        let last = self.cfg.n_layers - 1;
        let (gather_first, mut steps, first) = match start {
            Start::Mid(l) => (l == last, vec![Step::Mlp(l)], l + 1),
            Start::Post(l) => (false, vec![], l + 1),
        };
        for l in first..=last {
            steps.push(Step::Attn(l, l == last));
            steps.push(Step::Mlp(l));
        }
        Plan {
            gather_first,
            steps,
        }
    }

    /// Rows per batch element entering each step (n, or 1 after the last position is taken).
    fn step_rows(plan: &Plan, n: usize) -> Vec<usize> {
        let mut m = if plan.gather_first { 1 } else { n };
        plan.steps
            .iter()
            .map(|s| {
                let rows = m;
                if let Step::Attn(_, true) = s {
                    m = 1;
                }
                rows
            })
            .collect()
    }

    /// Batch elements per pass for tails of n rows.
    pub(super) fn capacity(&self, n: usize, t: usize, record: bool) -> usize {
        let c = &self.cfg;
        let (d, dm, h) = (c.d_model, c.d_mlp, c.n_heads);
        // tapes are sized for the longest tail (from layer 0's MLP), so one
        // workspace serves every layer
        let plan = self.plan(Start::Mid(0));
        // floats per batch element
        let mut per = n * (8 * d + 1 + 2 * dm) + 3 * d + 1;
        let mut widest = n * dm.max(3 * d);
        if record {
            per += n * (7 * d) + h * n * t;
            widest = widest.max(h * n * t);
            for (s, m) in plan.steps.iter().zip(Self::step_rows(&plan, n)) {
                per += match s {
                    Step::Mlp(_) => m * (d + 1 + dm),
                    Step::Attn(_, lo) => n * (4 * d + 1) + h * (if *lo { 1 } else { n }) * t,
                };
            }
        }
        let by_rows = ROWS_PER_PASS / n;
        let by_mem = WORK_BYTES / (4 * per);
        let by_binding = self.gpu.max_floats() / widest.max(1);
        by_rows.min(by_mem).min(by_binding).clamp(1, 65_535)
    }

    fn work(&self, (cap, n, t, record, prob): WorkKey) -> Result<Work> {
        let g = &self.gpu;
        let c = &self.cfg;
        let (d, dm, h) = (c.d_model, c.d_mlp, c.n_heads);
        let r = cap * n;
        let grad = if record {
            let plan = self.plan(Start::Mid(0));
            let tapes = plan
                .steps
                .iter()
                .zip(Self::step_rows(&plan, n))
                .map(|(s, m)| {
                    Ok(match s {
                        Step::Mlp(_) => Tape {
                            xhat: g.buffer(cap * m * d, "tape xhat")?,
                            rstd: g.buffer(cap * m, "tape rstd")?,
                            act: g.buffer(cap * m * dm, "tape pre")?,
                            pat: None,
                        },
                        Step::Attn(_, lo) => Tape {
                            xhat: g.buffer(r * d, "tape xhat")?,
                            rstd: g.buffer(r, "tape rstd")?,
                            act: g.buffer(r * 3 * d, "tape qkv")?,
                            pat: Some(
                                g.buffer(cap * h * (if *lo { 1 } else { n }) * t, "tape pattern")?,
                            ),
                        },
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
            unembed: if prob {
                Some(self.unembed_work(cap, record)?)
            } else {
                None
            },
        })
    }

    /// Runs the tail for `batch` start rows in `ws.x[0]` and writes the metrics
    /// to `metrics[out_off..]`. Returns the rows per batch element at the end.
    #[allow(clippy::too_many_arguments)]
    fn encode_tail(
        &self,
        enc: &mut Enc,
        ws: &Work,
        base: &Stacked,
        plan: &Plan,
        b: Batch,
        metrics: &Buffer,
        out_off: usize,
    ) -> usize {
        let c = &self.cfg;
        let (d, dm, eps) = (c.d_model, c.d_mlp, c.layer_norm_eps);
        let (bs, n) = (b.batch, b.n);
        let mut cur = 0;
        let mut m = n;
        if plan.gather_first {
            enc.gather_last(&ws.x[0], bs, n, 1, d, &ws.x[1]);
            cur = 1;
            m = 1;
        }
        for (si, step) in plan.steps.iter().enumerate() {
            // a tail's steps are the last ones of the longest tail
            let tape = ws
                .grad
                .as_ref()
                .map(|g| &g.tapes[g.tapes.len() - plan.steps.len() + si]);
            let (x, y) = (&ws.x[cur], &ws.x[1 - cur]);
            match *step {
                Step::Mlp(l) => {
                    let w = &self.w.blocks[l];
                    let rows = bs * m;
                    let (xhat, rstd, pre) = match tape {
                        Some(t) => (&t.xhat, &t.rstd, &t.act),
                        None => (&ws.xhat, &ws.rstd, &ws.hid),
                    };
                    enc.layer_norm(
                        x,
                        rows,
                        d,
                        (1, 0),
                        (&w.ln_2_w, &w.ln_2_b),
                        eps,
                        &ws.ln,
                        xhat,
                        rstd,
                    );
                    enc.linear(&ws.ln, rows, d, &w.c_fc_w, dm, &w.c_fc_b, None, pre);
                    enc.gelu(pre, rows * dm, &ws.post);
                    enc.linear(
                        &ws.post,
                        rows,
                        dm,
                        &w.mlp_proj_w,
                        d,
                        &w.mlp_proj_b,
                        Some(x),
                        y,
                    );
                }
                Step::Attn(l, last_only) => {
                    let w = &self.w.blocks[l];
                    let rows = bs * n;
                    let nq = if last_only { 1 } else { n };
                    let (xhat, rstd, qkv, pat) = match tape {
                        Some(t) => (&t.xhat, &t.rstd, &t.act, t.pat.as_ref()),
                        None => (&ws.xhat, &ws.rstd, &ws.qkv, None),
                    };
                    enc.layer_norm(
                        x,
                        rows,
                        d,
                        (1, 0),
                        (&w.ln_1_w, &w.ln_1_b),
                        eps,
                        &ws.ln,
                        xhat,
                        rstd,
                    );
                    enc.linear(&ws.ln, rows, d, &w.c_attn_w, 3 * d, &w.c_attn_b, None, qkv);
                    let s = self.attn_shape(b, nq);
                    enc.attn_tail(s, qkv, &base.qkv[l], &ws.z, pat);
                    let res = if last_only {
                        enc.gather_last(x, bs, n, 1, d, &ws.xl);
                        &ws.xl
                    } else {
                        x
                    };
                    enc.linear(&ws.z, bs * nq, d, &w.c_proj_w, d, &w.c_proj_b, Some(res), y);
                    m = nq;
                }
            }
            cur = 1 - cur;
        }
        let w = &self.w;
        enc.layer_norm(
            &ws.x[cur],
            bs,
            d,
            (m, m - 1),
            (&w.ln_f_w, &w.ln_f_b),
            eps,
            &ws.norm,
            &ws.xhat_f,
            &ws.rstd_f,
        );
        match &base.head {
            Head::Dir(dir) => enc.metric(&ws.norm, bs, d, (1, 0), (dir, b.per), metrics, out_off),
            Head::Signs(signs) => self.encode_prob_diff(
                enc,
                ws.unembed.as_ref().expect("a workspace with logits"),
                &ws.norm,
                bs,
                0,
                signs,
                metrics,
                out_off,
            ),
        }
        m
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
    /// start rows. Returns the buffer and its rows per batch element (the
    /// last of the n rows; earlier ones have zero gradient). `at_mlp` sees
    /// the gradient at both ends of every MLP step: (layer, false) for
    /// ∂m/∂resid_post, (layer, true) for ∂m/∂resid_mid, with its rows per
    /// batch element.
    fn encode_tail_backward<'w>(
        &self,
        enc: &mut Enc,
        ws: &'w Work,
        base: &Stacked,
        plan: &Plan,
        b: Batch,
        at_mlp: &mut dyn FnMut(&mut Enc, usize, bool, &Buffer, usize),
    ) -> (&'w Buffer, usize) {
        let c = &self.cfg;
        let (d, dm) = (c.d_model, c.d_mlp);
        let gw = ws.grad.as_ref().expect("a recording workspace");
        let bs = b.batch;
        // ∂m/∂(ln_final's output): the answer direction of each row's pair,
        // or the rows the probability difference's forward left
        let (dy, dy_rows) = match &base.head {
            Head::Dir(dir) => (dir, (1, 0, b.per)),
            Head::Signs(_) => (
                self.prob_diff_grad(ws.unembed.as_ref().expect("a workspace with logits")),
                (1, 0, 1),
            ),
        };
        enc.layer_norm_backward(
            dy,
            dy_rows,
            bs,
            d,
            &self.w.ln_f_w,
            &ws.xhat_f,
            &ws.rstd_f,
            None,
            &gw.g[0],
        );
        let mut cur = 0;
        let mut gm = 1;
        for (si, step) in plan.steps.iter().enumerate().rev() {
            let t = &gw.tapes[gw.tapes.len() - plan.steps.len() + si];
            let (g, out) = (&gw.g[cur], &gw.g[1 - cur]);
            match *step {
                Step::Mlp(l) => {
                    at_mlp(enc, l, false, g, gm);
                    let w = &self.w.blocks[l];
                    let rows = bs * gm;
                    enc.linear_backward(g, rows, d, &w.mlp_proj_w, dm, &ws.hid);
                    enc.gelu_backward(&t.act, &ws.hid, rows * dm, &ws.post);
                    enc.linear_backward(&ws.post, rows, dm, &w.c_fc_w, d, &gw.dh);
                    enc.layer_norm_backward(
                        &gw.dh,
                        (1, 0, 1),
                        rows,
                        d,
                        &w.ln_2_w,
                        &t.xhat,
                        &t.rstd,
                        Some((g, gm, gm)),
                        out,
                    );
                    at_mlp(enc, l, true, out, gm);
                }
                Step::Attn(l, last_only) => {
                    let w = &self.w.blocks[l];
                    let n = b.n;
                    let nq = if last_only { 1 } else { n };
                    enc.linear_backward(g, bs * nq, d, &w.c_proj_w, d, &gw.dz);
                    let pat = t.pat.as_ref().expect("attention tape");
                    enc.attn_tail_backward(
                        self.attn_shape(b, nq),
                        &gw.dz,
                        pat,
                        &t.act,
                        &base.qkv[l],
                        &gw.ds,
                        &gw.dqkv,
                    );
                    enc.linear_backward(&gw.dqkv, bs * n, 3 * d, &w.c_attn_w, d, &gw.dh);
                    enc.layer_norm_backward(
                        &gw.dh,
                        (1, 0, 1),
                        bs * n,
                        d,
                        &w.ln_1_w,
                        &t.xhat,
                        &t.rstd,
                        Some((g, n, nq)),
                        out,
                    );
                    gm = n;
                }
            }
            cur = 1 - cur;
        }
        (&gw.g[cur], gm)
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
            enc.copy(b, 0, &out, i * len, len);
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
                    return Ok(group[0].0.layers[l].qkv.clone());
                }
                let bufs: Vec<_> = group.iter().map(|g| &g.0.layers[l].qkv).collect();
                self.stack(enc, &bufs, t * 3 * d, "stacked qkv")
            })
            .collect::<Result<Vec<_>>>()?;
        let head = match &group[0].0.head {
            Head::Dir(_) => {
                let dirs: Vec<_> = group
                    .iter()
                    .map(|g| match &g.0.head {
                        Head::Dir(dir) => dir,
                        Head::Signs(_) => unreachable!("a group shares one metric kind"),
                    })
                    .collect();
                Head::Dir(self.stack(enc, &dirs, d, "answer directions")?)
            }
            // the caller groups only runs with the same signs
            Head::Signs(signs) => Head::Signs(signs.clone()),
        };
        Ok(Stacked { qkv, head })
    }

    /// Where a group's tails at `site` start, stacked: the residual stream
    /// the site adds to (resid_mid for heads, resid_post for neurons), and
    /// the base and the other runs' activation `act` ([len] floats per pair).
    fn stack_site<'a>(
        &self,
        enc: &mut Enc,
        group: &[RunPair<'a>],
        site: Site,
        t: usize,
        (act, len): (Act, usize),
    ) -> Result<[Buffer; 3]> {
        let l = site.layer;
        let resid: Act = match site.component {
            Component::Heads => |b| &b.resid_mid,
            Component::Neurons => |b| &b.resid_post,
        };
        let stack = |enc: &mut Enc, f: Act, run: fn(&RunPair<'a>) -> &'a Forward, len| {
            let bufs: Vec<&Buffer> = group.iter().map(|g| f(&run(g).layers[l])).collect();
            self.stack(enc, &bufs, len, "stacked activations")
        };
        Ok([
            stack(enc, resid, |g| g.0, t * self.cfg.d_model)?,
            stack(enc, act, |g| g.0, len)?,
            stack(enc, act, |g| g.1, len)?,
        ])
    }

    /// Metrics of every pair's base run with each component of `site` in
    /// `comps` patched from its other run, one tail per (pair, component).
    /// The pairs (all of token length t) share passes; rows start at fd, the
    /// earliest first differing position of the group.
    pub(super) async fn sweep_patches(
        &self,
        group: &[RunPair<'_>],
        site: Site,
        comps: std::ops::Range<usize>,
        t: usize,
        fd: usize,
    ) -> Result<Vec<Vec<f32>>> {
        let items = comps.len();
        self.in_parts(group, items, (t, fd), false, async |ws, cap, part| {
            self.patch_part(ws, cap, part, site, comps.clone(), t, fd)
                .await
        })
        .await
    }

    /// Runs `part(workspace, its batch elements, pairs)` over a group in
    /// parts: one workspace for `items` elements (components or α) of every
    /// pair, or as many as fit; a part holds the pairs that fit it and one
    /// buffer binding of stacked arrays.
    async fn in_parts<T>(
        &self,
        group: &[RunPair<'_>],
        items: usize,
        (t, fd): (usize, usize),
        record: bool,
        part: impl AsyncFn(&Work, usize, &[RunPair<'_>]) -> Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        let n = t - fd;
        let want = (group.len() * items).clamp(1, self.capacity(n, t, record));
        let key = (want, n, t, record, group_has_signs(group));
        let (key, ws) = self.take_work(key)?;
        let mut out = Vec::with_capacity(group.len());
        for pairs in group.chunks(key.0.min(self.pairs_per_part(t))) {
            out.extend(part(&ws, key.0, pairs).await?);
        }
        self.put_work(key, ws);
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    async fn patch_part(
        &self,
        ws: &Work,
        cap: usize,
        group: &[RunPair<'_>],
        site: Site,
        comps: std::ops::Range<usize>,
        t: usize,
        fd: usize,
    ) -> Result<Vec<Vec<f32>>> {
        let c = &self.cfg;
        let (d, n, pairs) = (c.d_model, t - fd, group.len());
        let plan = self.plan(Start::of(site));
        let per = (cap / pairs).min(comps.len()).max(1);
        let metrics = self.gpu.buffer(pairs * comps.len(), "metrics")?;
        let mut enc = Enc::new(&self.gpu);
        let base = self.stacked(&mut enc, group, t, site.layer + 1)?;
        let l = site.layer;
        // the components' own activations: hook_result or hook_post
        let (act, len): (Act, usize) = match site.component {
            Component::Heads => (|b| &b.result, t * c.n_heads * d),
            Component::Neurons => (|b| &b.post, t * c.d_mlp),
        };
        let [resid, rb, ro] = self.stack_site(&mut enc, group, site, t, (act, len))?;
        let chunks = chunks(comps.len(), per);
        for &(s0, k) in &chunks {
            let b = Batch::new(pairs, k, n, d, fd);
            let c0 = comps.start + s0;
            match site.component {
                Component::Heads => enc.patch_heads(b, c.n_heads, c0, &resid, &rb, &ro, &ws.x[0]),
                Component::Neurons => enc.patch_neurons(
                    b,
                    c.d_mlp,
                    c0,
                    &resid,
                    &rb,
                    &ro,
                    &self.w.blocks[l].mlp_proj_w,
                    &ws.x[0],
                ),
            }
            self.encode_tail(&mut enc, ws, &base, &plan, b, &metrics, pairs * s0);
        }
        enc.submit();
        let raw = self.gpu.read(&[(&metrics, 0, pairs * comps.len())]).await?;
        Ok(unpack(&raw[0], pairs, comps.len(), &chunks))
    }

    /// For every pair (all of token length t): the metrics along the
    /// straight path of the site's whole contribution and
    /// Σ_k w_k ∂m/∂(attn_out or mlp_out) over rows fd.. ([n, d], or [n, d_mlp]
    /// for neurons: ∂m/∂hook_post).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn sweep_path(
        &self,
        group: &[RunPair<'_>],
        site: Site,
        alphas: &[f32],
        weights: &[f32],
        t: usize,
        fd: usize,
    ) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        self.in_parts(group, alphas.len(), (t, fd), true, async |ws, cap, part| {
            self.path_part(ws, cap, part, site, alphas, weights, t, fd)
                .await
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn path_part(
        &self,
        ws: &Work,
        cap: usize,
        group: &[RunPair<'_>],
        site: Site,
        alphas: &[f32],
        weights: &[f32],
        t: usize,
        fd: usize,
    ) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        let c = &self.cfg;
        let (d, n, pairs) = (c.d_model, t - fd, group.len());
        let plan = self.plan(Start::of(site));
        let per = (cap / pairs).min(alphas.len()).max(1);
        let g = &self.gpu;
        let metrics = g.buffer(pairs * alphas.len(), "metrics")?;
        let alpha_buf = g.upload(alphas, "alphas")?;
        let weight_buf = g.upload(weights, "weights")?;
        let grad = g.buffer(pairs * n * d, "weighted gradient")?;
        let mut enc = Enc::new(g);
        enc.clear(&grad);
        let base = self.stacked(&mut enc, group, t, site.layer + 1)?;
        let l = site.layer;
        // the site's whole contribution: attn_out or mlp_out
        let act: Act = match site.component {
            Component::Heads => |b| &b.attn_out,
            Component::Neurons => |b| &b.mlp_out,
        };
        let [resid, ob, oo] = self.stack_site(&mut enc, group, site, t, (act, t * d))?;
        let chunks = chunks(alphas.len(), per);
        for &(k0, k) in &chunks {
            let b = Batch::new(pairs, k, n, d, fd);
            enc.patch_path(b, &resid, &ob, &oo, &alpha_buf, k0, &ws.x[0]);
            self.encode_tail(&mut enc, ws, &base, &plan, b, &metrics, pairs * k0);
            let (gx, m) =
                self.encode_tail_backward(&mut enc, ws, &base, &plan, b, &mut |_, _, _, _, _| {});
            enc.weighted_sum(gx, m, b, &weight_buf, k0, &grad);
        }
        let (out, width) = match site.component {
            Component::Heads => (grad, d),
            Component::Neurons => {
                // ∂m/∂hook_post = ∂m/∂mlp_out · W_outᵀ
                let gp = g.buffer(pairs * n * c.d_mlp, "weighted gradient")?;
                enc.linear_backward(
                    &grad,
                    pairs * n,
                    d,
                    &self.w.blocks[l].mlp_proj_w,
                    c.d_mlp,
                    &gp,
                );
                (gp, c.d_mlp)
            }
        };
        enc.submit();
        let r = g
            .read(&[
                (&metrics, 0, pairs * alphas.len()),
                (&out, 0, pairs * n * width),
            ])
            .await?;
        let ms = unpack(&r[0], pairs, alphas.len(), &chunks);
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
        t: usize,
        fd: usize,
    ) -> Result<Vec<Vec<f32>>> {
        let c = &self.cfg;
        let (d, dm, n) = (c.d_model, c.d_mlp, t - fd);
        let g = &self.gpu;
        let plan = self.plan(Start::Mid(0));
        let key = (1, n, t, true, matches!(base.head, Head::Signs(_)));
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
        enc.copy(&base.layers[0].resid_mid, fd * d, &ws.x[0], 0, n * d);
        self.encode_tail(&mut enc, &ws, &stacked, &plan, b, &metric, 0);
        // heads: ∂m/∂attn_out = ∂m/∂resid_mid (after the MLP's backward);
        // neurons: ∂m/∂mlp_out = ∂m/∂resid_post (before it)
        let want_mid = component == Component::Heads;
        self.encode_tail_backward(
            &mut enc,
            &ws,
            &stacked,
            &plan,
            b,
            &mut |enc, l, mid, gx, m| {
                if mid == want_mid {
                    enc.weighted_sum(gx, m, b, &one, 0, &acc[l]);
                }
            },
        );
        let out = match component {
            Component::Heads => acc,
            Component::Neurons => acc
                .iter()
                .enumerate()
                .map(|(l, a)| {
                    let gp = g.buffer(n * dm, "gradient")?;
                    enc.linear_backward(a, n, d, &self.w.blocks[l].mlp_proj_w, dm, &gp);
                    Ok(gp)
                })
                .collect::<Result<Vec<_>>>()?,
        };
        enc.submit();
        let width = if want_mid { d } else { dm };
        let ranges: Vec<_> = out.iter().map(|b| (b, 0, n * width)).collect();
        let r = g.read(&ranges).await?;
        self.put_work(key, ws);
        Ok(r)
    }
}

/// The base side of a sweep over a group of prompt pairs of one token length
/// T: each layer's q | k | v of the pairs' base runs, stacked [pair, T, 3·d],
/// and how the metric is read (the answer directions stacked [pair, d], or
/// the probability difference's signs, which the group shares). A group of
/// one uses its run's own buffers.
pub(super) struct Stacked {
    qkv: Vec<Buffer>,
    head: Head,
}

impl Stacked {
    /// One run's own buffers.
    fn of(run: &Forward) -> Stacked {
        Stacked {
            qkv: run.layers.iter().map(|l| l.qkv.clone()).collect(),
            head: match &run.head {
                Head::Dir(b) => Head::Dir(b.clone()),
                Head::Signs(b) => Head::Signs(b.clone()),
            },
        }
    }
}

/// One of a layer's activations.
type Act = fn(&LayerBufs) -> &Buffer;

/// A pair of a grouped sweep: the base run and the run patched in.
pub(super) type RunPair<'a> = (&'a Forward, &'a Forward);

fn group_has_signs(group: &[RunPair]) -> bool {
    matches!(group[0].0.head, Head::Signs(_))
}

/// A sweep's items in chunks of at most `per`: (first item, items).
fn chunks(items: usize, per: usize) -> Vec<(usize, usize)> {
    (0..items)
        .step_by(per.max(1))
        .map(|s| (s, per.min(items - s)))
        .collect()
}

/// Per-pair results from a grouped metrics buffer, where the chunk of items
/// s0..s0+k holds the k items of pair 0, then of pair 1, … from `pairs · s0`.
fn unpack(raw: &[f32], pairs: usize, items: usize, chunks: &[(usize, usize)]) -> Vec<Vec<f32>> {
    let mut out = vec![vec![0.0; items]; pairs];
    for &(s0, k) in chunks {
        for (p, row) in out.iter_mut().enumerate() {
            let from = pairs * s0 + p * k;
            row[s0..s0 + k].copy_from_slice(&raw[from..from + k]);
        }
    }
    out
}
