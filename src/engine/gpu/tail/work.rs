//! The workspace of a sweep: its buffers and tapes, sized for as many batch
//! elements as memory and one buffer binding allow, and cached between calls.

use super::{GradWork, Tape, Window, Work, WorkKey};
use crate::engine::gpu::context::is_oom;
use crate::engine::gpu::ops::LnTape;
use crate::engine::gpu::GpuEngine;
use crate::engine::plan::{Start, Step, TailPlan, GPU_ROWS_PER_PASS};
use crate::error::Result;

/// Device memory one sweep may allocate for its workspace and tapes.
const WORK_BYTES: usize = 512 << 20;

/// The longest tail a GPU sweep runs (from the embeddings, as a
/// perturbation of layer 0's `hook_resid_pre` needs): workspaces hold tapes
/// for all of its steps, so one workspace serves a sweep at any layer.
fn longest_tail(n_layers: usize) -> TailPlan {
    TailPlan::new(Start::Embed, n_layers)
}

impl GpuEngine {
    /// The cached workspace if it fits, else a new one (the cache keeps the
    /// last one: a sweep over layers reuses it call after call). When the
    /// device has no memory for a new one, tries once more with half the
    /// batch elements. Returns the key of the workspace it gives.
    pub(super) fn take_work(&self, key: WorkKey) -> Result<(WorkKey, Work)> {
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

    pub(super) fn put_work(&self, key: WorkKey, w: Work) {
        *self.work.lock().unwrap_or_else(|e| e.into_inner()) = Some((key, w));
    }

    /// Batch elements per pass for tails on `win`'s rows: as many as
    /// `GPU_ROWS_PER_PASS`, `WORK_BYTES` and one buffer binding allow.
    pub(super) fn capacity(&self, win: Window, record: bool) -> usize {
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
}

impl Work {
    /// The layer norm tape of forward-only passes (overwritten step by step).
    pub(super) fn ln_tape(&self) -> LnTape<'_> {
        LnTape {
            xhat: &self.xhat,
            rstd: &self.rstd,
        }
    }
    /// ln_final's tape.
    pub(super) fn ln_f_tape(&self) -> LnTape<'_> {
        LnTape {
            xhat: &self.xhat_f,
            rstd: &self.rstd_f,
        }
    }
}
