//! The WebGPU backend: wgpu and hand-written WGSL compute kernels
//! (`shaders/*.wgsl`), behind the same `Engine` interface as the CPU backend.
//!
//! All arithmetic and accumulation is f32. Weights are uploaded once; the
//! token embedding is split into chunks that fit the device's storage
//! binding limit. A run keeps every hook activation on the device; sweeps
//! (`patch_metrics`, `path_gradients`) run the model tail for whole batches of
//! perturbations in one submission and read back only the metrics (and the
//! weighted gradient). The probability difference forms the full logits of
//! the last position only, in groups of rows that fit one binding. Read-back awaits `map_async`; natively the device is
//! polled to completion, in wasm the browser resolves it.

mod context;
mod faults;
mod forward;
mod graph;
mod ops;
mod tail;
mod unembed;

use super::hooks::{check_all_used, unknown_hook};
use super::{
    Array, Component, Compute, HeadWeights, LayerComponents, Metric, PathGrads, Replacement,
    RunInfo, Start, SweepPair,
};
use crate::error::{Error, Result};
use crate::model::weights::WeightSource;
use crate::model::{Config, Param, Weights};
use context::{At, Enc, Gpu, ShaderSizes, Slice};
use forward::{Forward, ForwardOpts, View};
use ops::{Linear, Matrix, Norm};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;
use wgpu::Buffer;

pub use graph::GpuGraphRun;
/// A matrix product's layout, for [`GpuEngine::run_matmul`] (tests).
#[doc(hidden)]
pub use ops::Mm as MatmulLayout;

/// The largest d_head the attention kernels are compiled for.
const MAX_D_HEAD: usize = 256;

/// One block's weights on the device, each with its shape.
struct GpuBlock {
    ln_1: Norm,
    /// [d, 3·d]: q | k | v.
    c_attn: Linear,
    /// [d, d]: the heads' W_O stacked ([heads, d_head, d]) and b_O.
    c_proj: Linear,
    ln_2: Norm,
    /// [d, d_mlp]: W_in.
    c_fc: Linear,
    /// [d_mlp, d]: W_out.
    mlp_proj: Linear,
}

struct GpuWeights {
    /// wte in chunks of `wte_rows` rows (each within the binding limit).
    wte: Vec<Buffer>,
    wte_rows: usize,
    wpe: Buffer,
    blocks: Vec<GpuBlock>,
    ln_f: Norm,
}

impl GpuWeights {
    /// Where token `id`'s row of wte starts (rows of width d).
    fn wte_row(&self, id: u32, d: usize) -> At<'_> {
        let (chunk, row) = (id as usize / self.wte_rows, id as usize % self.wte_rows);
        At::new(&self.wte[chunk], row * d)
    }
}

/// Settings of the GPU backend beyond the model.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// Use buffers of at most this many bytes even where the device allows
    /// more (the token embedding is then split into more chunks, sweeps into
    /// smaller passes). None: the device's max_storage_buffer_binding_size.
    pub max_buffer_bytes: Option<u64>,
    /// Time every kernel ([`DeviceProfile::timing`](crate::engine::profile::DeviceProfile::timing)):
    /// `Timing::Timestamps` uses the adapter's timestamp queries where it
    /// offers them, else (natively) elapsed time per dispatch, each
    /// submitted alone; `Timing::Elapsed` the latter always (native only).
    /// None: no times, unless natively PATCHLAB_GPU_PROFILE is set.
    pub timing: Option<crate::engine::profile::Timing>,
}

pub struct GpuEngine {
    cfg: Config,
    gpu: Gpu,
    w: GpuWeights,
    /// The last sweep's workspace, reused by the next sweep of the same shape.
    work: Mutex<Option<(tail::WorkKey, tail::Work)>>,
}

/// One prompt's forward pass, its activations on the device.
pub struct GpuRun {
    tokens: Vec<u32>,
    def: Metric,
    metric: f32,
    fwd: Forward,
}

impl RunInfo for GpuRun {
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

impl GpuEngine {
    /// Opens the default adapter, compiles the kernels and uploads the weights.
    pub async fn new(cfg: Config, w: Weights) -> Result<GpuEngine> {
        Self::with_options(cfg, w, GpuOptions::default()).await
    }

    /// `new` with settings.
    pub async fn with_options(cfg: Config, w: Weights, opts: GpuOptions) -> Result<GpuEngine> {
        Self::from_source(cfg, &w, opts).await
    }

    /// Uploads the weights from any source a tensor or a layer at a time:
    /// started from the CPU engine, the host holds at most one extra tensor
    /// (the token embedding, the largest), not a second copy of the model.
    pub async fn from_source(
        cfg: Config,
        w: &dyn WeightSource,
        opts: GpuOptions,
    ) -> Result<GpuEngine> {
        if cfg.d_head > MAX_D_HEAD || cfg.d_head * cfg.n_heads != cfg.d_model {
            return Err(Error::Config(format!(
                "the GPU backend needs d_head = d_model / n_heads ≤ {MAX_D_HEAD} (got d_head {}, d_model {}, {} heads)",
                cfg.d_head, cfg.d_model, cfg.n_heads
            )));
        }
        let gpu = Gpu::new(
            ShaderSizes {
                max_t: cfg.n_ctx,
                max_dh: cfg.d_head.next_power_of_two().max(16),
            },
            opts.max_buffer_bytes,
            opts.timing,
        )
        .await?;
        let up = |p: &Param, name: &str| gpu.upload(&p.data, name);
        let (d, dm, eps) = (cfg.d_model, cfg.d_mlp, cfg.layer_norm_eps);
        let norm = |w: &Param, b: &Param, name: &str| -> Result<Norm> {
            Ok(Norm {
                w: up(w, &format!("{name}.weight"))?,
                b: up(b, &format!("{name}.bias"))?,
                d,
                eps,
            })
        };
        // a Conv1D layer whose weight has the shape [k, n] (in, out)
        let linear = |w: &Param, b: &Param, name: &str, [k, n]: [usize; 2]| -> Result<Linear> {
            Ok(Linear {
                w: up(w, &format!("{name}.weight"))?,
                b: up(b, &format!("{name}.bias"))?,
                k,
                n,
            })
        };
        let wte_rows = (gpu.max_floats() / d).min(cfg.d_vocab).max(1);
        let wte = w
            .wte()?
            .data
            .chunks(wte_rows * d)
            .map(|c| gpu.upload(c, "wte"))
            .collect::<Result<Vec<_>>>()?;
        let blocks = (0..cfg.n_layers)
            .map(|l| {
                let b = w.block(l)?;
                Ok(GpuBlock {
                    ln_1: norm(&b.ln_1_w, &b.ln_1_b, "ln_1")?,
                    c_attn: linear(&b.c_attn_w, &b.c_attn_b, "attn.c_attn", [d, 3 * d])?,
                    c_proj: linear(&b.c_proj_w, &b.c_proj_b, "attn.c_proj", [d, d])?,
                    ln_2: norm(&b.ln_2_w, &b.ln_2_b, "ln_2")?,
                    c_fc: linear(&b.c_fc_w, &b.c_fc_b, "mlp.c_fc", [d, dm])?,
                    mlp_proj: linear(&b.mlp_proj_w, &b.mlp_proj_b, "mlp.c_proj", [dm, d])?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let (ln_f_w, ln_f_b) = w.ln_f()?;
        let weights = GpuWeights {
            wte,
            wte_rows,
            wpe: up(&*w.wpe()?, "wpe")?,
            blocks,
            ln_f: norm(&ln_f_w, &ln_f_b, "ln_f")?,
        };
        gpu.check()?;
        Ok(GpuEngine {
            cfg,
            gpu,
            w: weights,
            work: Mutex::new(None),
        })
    }

    /// `new`, waiting for the device (native only; in wasm await `new`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(cfg: Config, w: Weights) -> Result<GpuEngine> {
        pollster::block_on(Self::new(cfg, w))
    }

    /// The adapter in use, e.g. "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)".
    pub fn adapter(&self) -> &str {
        &self.gpu.adapter
    }

    /// Times the plain tiled product [m, k] · [k, n] (+ bias), the kernel
    /// behind every linear layer: milliseconds per product over `reps`
    /// products in one submission (after one warm-up submission), for
    /// GFLOP/s = 2·m·k·n / (ms · 1e6).
    pub async fn time_matmul(&self, m: usize, k: usize, n: usize, reps: usize) -> Result<f64> {
        let g = &self.gpu;
        let a = g.upload(&vec![0.5; m * k], "bench a")?;
        let layer = Linear {
            w: g.upload(&vec![0.25; k * n], "bench b")?,
            b: g.upload(&vec![1.0; n], "bench bias")?,
            k,
            n,
        };
        let c = g.buffer(m * n, "bench c")?;
        let mut ms = 0.0;
        for round in [1, reps.max(1)] {
            let mut enc = Enc::new(g);
            for _ in 0..round {
                enc.linear(&a, m, &layer, None, &c);
            }
            let t = crate::clock::now_ms();
            enc.submit();
            g.read(&[Slice::first(&c, 1)]).await?;
            ms = (crate::clock::now_ms() - t) / round as f64;
        }
        Ok(ms)
    }

    /// Whether large products (m and n ≥ 128, vec4-aligned) use the
    /// register-tiled kernel `matmul_tiled` (the default) or `matmul`: a
    /// switch for `patchlab bench --matmul-only` to time both.
    #[doc(hidden)]
    pub fn set_matmul_tiled(&self, on: bool) {
        self.gpu
            .matmul_tiled
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Test hook: C = A · B (+ bias) (+ residual) in the layout `mm` on host
    /// arrays (C starts as `c`), by the kernel the engine picks for it: C
    /// after the product, and that kernel's name.
    #[doc(hidden)]
    pub async fn run_matmul(
        &self,
        mm: MatmulLayout,
        a: &[f32],
        b: &[f32],
        bias: Option<&[f32]>,
        res: Option<&[f32]>,
        c: &[f32],
    ) -> Result<(Vec<f32>, &'static str)> {
        let g = &self.gpu;
        let (ab, bb, cb) = (g.upload(a, "a")?, g.upload(b, "b")?, g.upload(c, "c")?);
        let bias = bias.map(|x| g.upload(x, "bias")).transpose()?;
        let res = res.map(|x| g.upload(x, "res")).transpose()?;
        let before = g.profile(self.adapter());
        let mut enc = Enc::new(g);
        enc.matmul(mm, &ab, &bb, bias.as_ref(), res.as_ref(), &cb);
        enc.submit();
        let out = g.read(&[Slice::first(&cb, c.len())]).await?;
        let ran = g.profile(self.adapter()).since(&before);
        let kernel = ran
            .kernels
            .iter()
            .find(|k| k.dispatches > 0)
            .map_or("none", |k| k.name);
        Ok((out.into_iter().next().unwrap_or_default(), kernel))
    }

    /// Frees the workspace the last sweep left for the next one.
    pub fn free_workspace(&self) {
        *self.work.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// When the kernels are timed (`GpuOptions::timing`, or natively the
    /// environment variable PATCHLAB_GPU_PROFILE): milliseconds and
    /// dispatches per kernel since the engine was made, as of the last
    /// read-back. None when not timed.
    pub fn kernel_profile(&self) -> Option<String> {
        self.gpu.profile_report()
    }

    /// Encodes and submits a forward pass, then reads its metric.
    async fn forward(
        &self,
        tokens: &[u32],
        metric: &Metric,
        opts: &ForwardOpts,
    ) -> Result<(Forward, f32, usize)> {
        let mut enc = Enc::new(&self.gpu);
        let (fwd, used) = self.encode_forward(&mut enc, tokens, metric, opts)?;
        enc.submit();
        let m = self.gpu.read(&[Slice::first(&fwd.metric, 1)]).await?;
        Ok((fwd, m[0][0], used))
    }
}

/// Splits the pairs of a grouped sweep into sets that can share tail passes:
/// equal token length and, for the probability difference, equal token sets
/// (the logit difference's answers may differ: each pair has its direction).
fn share_passes(pairs: &[SweepPair<'_, GpuRun>]) -> Vec<Vec<usize>> {
    let key = |p: &SweepPair<'_, GpuRun>| {
        let probs = match &p.base.def {
            Metric::LogitDiff { .. } => None,
            m @ Metric::ProbDiff { .. } => Some(m.clone()),
        };
        (p.base.tokens.len(), probs)
    };
    let mut sets: Vec<(_, Vec<usize>)> = Vec::new();
    for (i, p) in pairs.iter().enumerate() {
        let k = key(p);
        match sets.iter_mut().find(|(s, _)| *s == k) {
            Some((_, v)) => v.push(i),
            None => sets.push((k, vec![i])),
        }
    }
    sets.into_iter().map(|(_, v)| v).collect()
}

/// The runs of one set of `share_passes`, and the rows their tails share:
/// their token length and the set's earliest first differing position.
fn run_pairs<'a>(
    pairs: &[SweepPair<'a, GpuRun>],
    set: &[usize],
) -> (Vec<tail::RunPair<'a>>, tail::Window) {
    let group = set
        .iter()
        .map(|&i| tail::RunPair {
            base: &pairs[i].base.fwd,
            other: &pairs[i].other.fwd,
        })
        .collect();
    let t = pairs[set[0]].base.tokens.len();
    let first_diff = set.iter().map(|&i| pairs[i].first_diff).min().unwrap_or(0);
    (group, tail::Window { t, first_diff })
}

impl Compute for GpuEngine {
    type Run = GpuRun;

    fn config(&self) -> &Config {
        &self.cfg
    }

    fn backend(&self) -> &'static str {
        "gpu"
    }

    fn device_counts(&self) -> Option<(u64, u64)> {
        Some(self.gpu.counts())
    }

    fn device_profile(&self) -> Option<super::profile::DeviceProfile> {
        Some(self.gpu.profile(self.adapter()))
    }

    async fn run(&self, tokens: &[u32], def: &Metric) -> Result<GpuRun> {
        let keep = ForwardOpts {
            keep: true,
            ..Default::default()
        };
        let (fwd, metric, _) = self.forward(tokens, def, &keep).await?;
        Ok(GpuRun {
            tokens: tokens.to_vec(),
            def: def.clone(),
            metric,
            fwd,
        })
    }

    async fn last_logits(&self, run: &GpuRun) -> Result<Vec<f32>> {
        let (d, v) = (self.cfg.d_model, self.cfg.d_vocab);
        let t = run.tokens.len();
        let out = self.gpu.buffer(v, "logits")?;
        let mut enc = Enc::new(&self.gpu);
        let last = At::new(&run.fwd.norm, (t - 1) * d);
        for (i, chunk) in self.w.wte.iter().enumerate() {
            let first = i * self.w.wte_rows;
            let rows = self.w.wte_rows.min(v - first);
            let w = Matrix {
                buf: chunk,
                rows,
                cols: d,
            };
            enc.logits(last, w, At::new(&out, first));
        }
        enc.submit();
        Ok(self.gpu.read(&[Slice::first(&out, v)]).await?.remove(0))
    }

    async fn activation(&self, run: &GpuRun, hook: &str) -> Result<Array> {
        Ok(self.activations(&[(run, hook)]).await?.remove(0))
    }

    async fn activations(&self, reads: &[(&GpuRun, &str)]) -> Result<Vec<Array>> {
        let mut hooks = Vec::with_capacity(reads.len());
        let mut slices = Vec::with_capacity(reads.len());
        for &(run, hook) in reads {
            let h = run.fwd.hooks.get(hook).ok_or_else(|| unknown_hook(hook))?;
            let len: usize = h.shape.iter().product();
            let t = run.tokens.len();
            slices.push(match h.view {
                View::Full | View::Recip => Slice::first(&h.buf, len),
                View::Cols { ld, .. } => Slice::first(&h.buf, t * ld),
            });
            hooks.push((h, len / t));
        }
        // one read-back for all of them
        let data = self.gpu.read(&slices).await?;
        Ok(hooks
            .into_iter()
            .zip(data)
            .map(|((h, width), all)| {
                let data = match h.view {
                    View::Full => all,
                    View::Recip => all.into_iter().map(|r| r.recip()).collect(),
                    View::Cols { off, ld } => all
                        .chunks(ld)
                        .flat_map(|row| row[off..off + width].iter().copied())
                        .collect(),
                };
                Param::new(h.shape.clone(), data)
            })
            .collect())
    }

    async fn patch_metrics(
        &self,
        base: &GpuRun,
        other: &GpuRun,
        which: LayerComponents,
        components: Range<usize>,
        first_diff: usize,
    ) -> Result<Vec<f32>> {
        let pair = SweepPair {
            base,
            other,
            first_diff,
        };
        let mut r = self.patch_metrics_group(&[pair], which, components).await?;
        Ok(r.pop().expect("one pair"))
    }

    async fn patch_metrics_group(
        &self,
        pairs: &[SweepPair<'_, GpuRun>],
        which: LayerComponents,
        components: Range<usize>,
    ) -> Result<Vec<Vec<f32>>> {
        let mut out = vec![Vec::new(); pairs.len()];
        if components.is_empty() {
            return Ok(out);
        }
        for set in share_passes(pairs) {
            let (group, win) = run_pairs(pairs, &set);
            let r = self
                .sweep_patches(&group, which, components.clone(), win)
                .await?;
            for (&i, m) in set.iter().zip(r) {
                out[i] = m;
            }
        }
        Ok(out)
    }

    async fn path_gradients(
        &self,
        base: &GpuRun,
        other: &GpuRun,
        which: LayerComponents,
        alphas: &[f32],
        weights: &[f32],
        first_diff: usize,
    ) -> Result<PathGrads> {
        let pair = SweepPair {
            base,
            other,
            first_diff,
        };
        let mut r = self
            .path_gradients_group(&[pair], which, alphas, weights)
            .await?;
        Ok(r.pop().expect("one pair"))
    }

    async fn path_gradients_group(
        &self,
        pairs: &[SweepPair<'_, GpuRun>],
        which: LayerComponents,
        alphas: &[f32],
        weights: &[f32],
    ) -> Result<Vec<PathGrads>> {
        let width = which.component.grad_width(&self.cfg);
        let path = tail::Path { alphas, weights };
        let mut out: Vec<Option<PathGrads>> = (0..pairs.len()).map(|_| None).collect();
        for set in share_passes(pairs) {
            let (group, win) = run_pairs(pairs, &set);
            let (t, first_diff) = (win.t, win.first_diff);
            let r = if alphas.is_empty() {
                vec![(vec![], vec![0.0; win.n() * width]); set.len()]
            } else {
                self.sweep_path(&group, which, path, win).await?
            };
            for (&i, (metrics, grad)) in set.iter().zip(r) {
                let mut data = vec![0.0; first_diff * width];
                data.extend(grad);
                // the group starts at its earliest first difference; this
                // pair's rows before its own are zero by definition
                data[..pairs[i].first_diff * width].fill(0.0);
                out[i] = Some(PathGrads {
                    metrics,
                    weighted_grad: Param::new(vec![t, width], data),
                });
            }
        }
        Ok(out
            .into_iter()
            .map(|g| g.expect("every pair is in one set"))
            .collect())
    }

    async fn base_gradients(
        &self,
        base: &GpuRun,
        _other: &GpuRun,
        component: Component,
        first_diff: usize,
    ) -> Result<Vec<Array>> {
        let t = base.tokens.len();
        let width = component.grad_width(&self.cfg);
        let grads = self
            .sweep_base_gradients(&base.fwd, component, tail::Window { t, first_diff })
            .await?;
        Ok(grads
            .into_iter()
            .map(|g| {
                let mut data = vec![0.0; first_diff * width];
                data.extend(g);
                Param::new(vec![t, width], data)
            })
            .collect())
    }

    async fn resid_metrics(
        &self,
        base: &GpuRun,
        start: Start,
        first_diff: usize,
        deltas: &[f32],
    ) -> Result<Vec<f32>> {
        let win = tail::Window {
            t: base.tokens.len(),
            first_diff,
        };
        Ok(self
            .sweep_resid(&base.fwd, start, win, deltas, false)
            .await?
            .0)
    }

    async fn resid_gradients(
        &self,
        base: &GpuRun,
        start: Start,
        first_diff: usize,
        deltas: &[f32],
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let win = tail::Window {
            t: base.tokens.len(),
            first_diff,
        };
        self.sweep_resid(&base.fwd, start, win, deltas, true).await
    }

    async fn resid_base_gradients(
        &self,
        base: &GpuRun,
        first_diff: usize,
        starts: &[Start],
    ) -> Result<Vec<Vec<f32>>> {
        let win = tail::Window {
            t: base.tokens.len(),
            first_diff,
        };
        self.sweep_resid_base_gradients(&base.fwd, starts, win)
            .await
    }

    async fn logit_diff_direction(&self, correct: u32, incorrect: u32) -> Result<(Vec<f32>, f32)> {
        let d = self.cfg.d_model;
        let rows = [self.w.wte_row(correct, d), self.w.wte_row(incorrect, d)];
        let r = self
            .gpu
            .read(&[
                Slice::first(&self.w.ln_f.w, d),
                Slice::first(&self.w.ln_f.b, d),
                Slice {
                    buf: rows[0].buf,
                    off: rows[0].off,
                    len: d,
                },
                Slice {
                    buf: rows[1].buf,
                    off: rows[1].off,
                    len: d,
                },
            ])
            .await?;
        Ok(super::logit_diff_direction(&r[0], &r[1], &r[2], &r[3]))
    }

    async fn head_weights(&self, layer: usize) -> Result<HeadWeights> {
        let d = self.cfg.d_model;
        let b = &self.w.blocks[layer];
        let r = self
            .gpu
            .read(&[
                Slice::first(&b.ln_1.b, d),
                Slice::first(&b.c_attn.w, d * 3 * d),
                Slice::first(&b.c_attn.b, 3 * d),
                Slice::first(&b.c_proj.w, d * d),
            ])
            .await?;
        let [ln_1_b, c_attn_w, c_attn_b, c_proj_w] = <[Vec<f32>; 4]>::try_from(r)
            .map_err(|_| Error::Backend("reading a block's weights".into()))?;
        Ok(HeadWeights::of(
            &self.cfg, &ln_1_b, &c_attn_w, &c_attn_b, c_proj_w,
        ))
    }

    async fn metric_with_replacements(
        &self,
        tokens: &[u32],
        def: &Metric,
        reps: &[Replacement],
    ) -> Result<f32> {
        let reps = ForwardOpts {
            reps: self.upload_replacements(tokens.len(), reps)?,
            ..Default::default()
        };
        let (_, m, _) = self.forward(tokens, def, &reps).await?;
        Ok(m)
    }

    async fn metric_with_substitutions(
        &self,
        tokens: &[u32],
        def: &Metric,
        subs: &[(String, Array)],
    ) -> Result<f32> {
        let mut bufs = HashMap::new();
        for (name, v) in subs {
            bufs.insert(name.clone(), self.gpu.upload(&v.data, name)?);
        }
        let subs_opts = ForwardOpts {
            subs: bufs,
            ..Default::default()
        };
        let (_, m, used) = self.forward(tokens, def, &subs_opts).await?;
        check_all_used(used, subs)?;
        Ok(m)
    }
}
