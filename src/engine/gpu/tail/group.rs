//! Sweeps over a group of prompt pairs of one token length: patches of
//! every component (`sweep_patches`) and the straight path of a site's
//! contribution (`sweep_path`), the pairs sharing passes.

use super::{Pass, Path, RunPair, Stacked, Window, Work, WorkKey};
use crate::engine::gpu::context::{At, Enc, Slice};
use crate::engine::gpu::forward::{Forward, LayerBufs, Readout};
use crate::engine::gpu::ops::{Batch, Patched, SiteStack};
use crate::engine::gpu::GpuEngine;
use crate::engine::plan::{Start, TailPlan};
use crate::engine::{Component, LayerComponents};
use crate::error::Result;
use std::ops::Range;
use wgpu::Buffer;

/// One part of a sweep (see `in_parts`): the workspace, its batch elements
/// per pass, and the pairs of this part.
struct Part<'a, 'r> {
    ws: &'a Work,
    cap: usize,
    group: &'a [RunPair<'r>],
}

impl GpuEngine {
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

    /// Where a group's tails at `which` start, stacked: the residual stream
    /// the site adds to (resid_mid for heads, resid_post for neurons), and
    /// the base and the other runs' activation `act`.
    fn stack_site<'a>(
        &self,
        enc: &mut Enc,
        group: &[RunPair<'a>],
        which: LayerComponents,
        t: usize,
        act: SiteAct,
    ) -> Result<SiteStack> {
        let l = which.layer;
        let resid: Act = match which.component {
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

    /// Metrics of every pair's base run with each component of `which` in
    /// `comps` patched from its other run, one tail per (pair, component).
    /// The pairs (all of token length t) share passes; rows start at first_diff, the
    /// earliest first differing position of the group.
    pub(in crate::engine::gpu) async fn sweep_patches(
        &self,
        group: &[RunPair<'_>],
        which: LayerComponents,
        comps: Range<usize>,
        win: Window,
    ) -> Result<Vec<Vec<f32>>> {
        self.in_parts(group, comps.len(), win, false, async |part| {
            self.patch_part(part, which, comps.clone(), win).await
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
        which: LayerComponents,
        comps: Range<usize>,
        win: Window,
    ) -> Result<Vec<Vec<f32>>> {
        let c = &self.cfg;
        let (d, n, pairs) = (c.d_model, win.n(), part.group.len());
        let plan = TailPlan::new(Start::of(which), c.n_layers);
        let per = (part.cap / pairs).min(comps.len()).max(1);
        let metrics = self.gpu.buffer(pairs * comps.len(), "metrics")?;
        let mut enc = Enc::new(&self.gpu);
        let base = self.stacked(&mut enc, part.group, win.t, which.layer + 1)?;
        // the components' own activations: hook_result or hook_post
        let act = match which.component {
            Component::Heads => SiteAct {
                get: |b| &b.result,
                len: win.t * c.n_heads * d,
            },
            Component::Neurons => SiteAct {
                get: |b| &b.post,
                len: win.t * c.d_mlp,
            },
        };
        let stack = self.stack_site(&mut enc, part.group, which, win.t, act)?;
        let x = &part.ws.x[0];
        let chunks = chunks(comps.len(), per);
        for ch in &chunks {
            let b = Batch::new(pairs, ch.len, n, d, win.first_diff);
            let patched = Patched {
                first: comps.start + ch.first,
                per_layer: which.component.count(c),
            };
            match which.component {
                Component::Heads => enc.patch_heads(b, patched, &stack, x),
                Component::Neurons => {
                    let w_out = &self.w.blocks[which.layer].mlp_proj.w;
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
    /// Σ_k w_k ∂m/∂(attn_out or mlp_out) over rows first_diff.. ([n, d], or [n, d_mlp]
    /// for neurons: ∂m/∂hook_post).
    pub(in crate::engine::gpu) async fn sweep_path(
        &self,
        group: &[RunPair<'_>],
        which: LayerComponents,
        path: Path<'_>,
        win: Window,
    ) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        self.in_parts(group, path.alphas.len(), win, true, async |part| {
            self.path_part(part, which, path, win).await
        })
        .await
    }

    async fn path_part(
        &self,
        part: Part<'_, '_>,
        which: LayerComponents,
        path: Path<'_>,
        win: Window,
    ) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        let c = &self.cfg;
        let (d, n, pairs) = (c.d_model, win.n(), part.group.len());
        let items = path.alphas.len();
        let plan = TailPlan::new(Start::of(which), c.n_layers);
        let per = (part.cap / pairs).min(items).max(1);
        let g = &self.gpu;
        let metrics = g.buffer(pairs * items, "metrics")?;
        let alpha_buf = g.upload(path.alphas, "alphas")?;
        let weight_buf = g.upload(path.weights, "weights")?;
        let grad = g.buffer(pairs * n * d, "weighted gradient")?;
        let mut enc = Enc::new(g);
        enc.clear(&grad);
        let base = self.stacked(&mut enc, part.group, win.t, which.layer + 1)?;
        // the site's whole contribution: attn_out or mlp_out
        let get: Act = match which.component {
            Component::Heads => |b| &b.attn_out,
            Component::Neurons => |b| &b.mlp_out,
        };
        let act = SiteAct {
            get,
            len: win.t * d,
        };
        let stack = self.stack_site(&mut enc, part.group, which, win.t, act)?;
        let chunks = chunks(items, per);
        for ch in &chunks {
            let b = Batch::new(pairs, ch.len, n, d, win.first_diff);
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
        let (out, width) = match which.component {
            Component::Heads => (grad, d),
            Component::Neurons => {
                // ∂m/∂hook_post = ∂m/∂mlp_out · W_outᵀ
                let gp = g.buffer(pairs * n * c.d_mlp, "weighted gradient")?;
                let w_out = &self.w.blocks[which.layer].mlp_proj;
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
