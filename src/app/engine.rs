//! The one place a backend is chosen: [`Backend`] (the names the CLI and
//! the page accept), [`AnyEngine`] (the CPU or GPU engine behind the one
//! `Engine` interface) and [`Engines`] (the browser lab's CPU engine with a
//! WebGPU engine started on first use, and its fallbacks).

use crate::engine::cpu::{CpuEngine, CpuGraphRun, CpuRun};
use crate::engine::gpu::{GpuEngine, GpuGraphRun, GpuOptions, GpuRun};
use crate::engine::graph::{GraphCompute, GraphOutputs, GraphPass};
use crate::engine::{
    Array, Component, Compute, HeadWeights, LayerComponents, Metric, PathGrads, Replacement,
    RunInfo, Start, SweepPair,
};
use crate::error::{Error, Result};
use crate::model::graph::Slot;
use crate::model::Config;
use crate::model::Weights;
use std::cell::RefCell;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// A requested backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The GPU where one is available (in the browser: `navigator.gpu`), else the CPU.
    #[default]
    Auto,
    Cpu,
    Gpu,
}

/// Pairs per group on a GPU backend: enough patches per tail pass to fill
/// a GPU, while an interrupted run loses at most this many pairs.
pub const GPU_GROUP_SIZE: usize = 16;

impl Backend {
    /// "auto" (or ""), "cpu", "gpu" (or "webgpu").
    pub fn parse(s: &str) -> Result<Backend> {
        match s.trim() {
            "" | "auto" => Ok(Backend::Auto),
            "cpu" => Ok(Backend::Cpu),
            "gpu" | "webgpu" => Ok(Backend::Gpu),
            other => Err(Error::Input(format!(
                "unknown backend {other:?}; choose auto, cpu or gpu"
            ))),
        }
    }

    /// Pairs analysed together by default (`patchlab batch --group`, the
    /// Dataset tab): the GPU shares its passes among a group's pairs; the CPU
    /// gains nothing from sharing, and a smaller group loses less to a cancel.
    /// `Auto` before it is resolved ([`Engines::resolve`]) counts as the CPU.
    pub fn default_group_size(self) -> usize {
        match self {
            Backend::Gpu => GPU_GROUP_SIZE,
            Backend::Cpu | Backend::Auto => 1,
        }
    }
}

/// Why the CPU computes where the GPU was asked for (or `Auto` would have
/// chosen it): the GPU engine could not start. Its text is the note the
/// front ends show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuFallback {
    /// Why the GPU engine could not start.
    pub reason: String,
    /// What was unavailable: "WebGPU" in the browser's lab, "the GPU" natively.
    what: &'static str,
}

impl GpuFallback {
    /// What failed, without the fallback: "WebGPU is unavailable (why)",
    /// the error of a request that asked for the GPU and nothing else.
    pub fn unavailable(&self) -> String {
        format!("{} is unavailable ({})", self.what, self.reason)
    }
}

impl std::fmt::Display for GpuFallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; computing on the CPU", self.unavailable())
    }
}

/// The CPU or the GPU engine. Shared (`Rc`), so that a long-lived host can
/// keep its engines while a request computes on one of them.
#[derive(Clone)]
pub enum AnyEngine {
    Cpu(Rc<CpuEngine>),
    Gpu(Rc<GpuEngine>),
}

/// A run of an [`AnyEngine`]: always of the engine that made it.
pub enum AnyRun {
    Cpu(CpuRun),
    Gpu(GpuRun),
}

impl AnyEngine {
    /// The engine of a loaded model on `backend`; `Auto` is the GPU when
    /// one starts, else the CPU, with the fallback saying why. Blocks
    /// while the GPU starts (native front ends; the browser uses [`Engines`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(
        config: Config,
        weights: Weights,
        backend: Backend,
    ) -> Result<(AnyEngine, Option<GpuFallback>)> {
        match backend {
            Backend::Cpu => Ok((AnyEngine::cpu(CpuEngine::new(config, weights)?), None)),
            Backend::Gpu => Ok((
                AnyEngine::gpu(GpuEngine::new_blocking(config, weights)?),
                None,
            )),
            Backend::Auto => {
                let gpu = pollster::block_on(GpuEngine::from_source(
                    config.clone(),
                    &weights,
                    GpuOptions::default(),
                ));
                match gpu {
                    Ok(e) => Ok((AnyEngine::gpu(e), None)),
                    Err(why) => Ok((
                        AnyEngine::cpu(CpuEngine::new(config, weights)?),
                        Some(GpuFallback {
                            reason: why.to_string(),
                            what: "the GPU",
                        }),
                    )),
                }
            }
        }
    }

    pub fn cpu(e: CpuEngine) -> AnyEngine {
        AnyEngine::Cpu(Rc::new(e))
    }

    pub fn gpu(e: GpuEngine) -> AnyEngine {
        AnyEngine::Gpu(Rc::new(e))
    }

    /// The backend this engine computes on (never `Auto`).
    pub fn kind(&self) -> Backend {
        match self {
            AnyEngine::Cpu(_) => Backend::Cpu,
            AnyEngine::Gpu(_) => Backend::Gpu,
        }
    }

    /// Milliseconds per plain [m, k] · [k, n] (+ bias) product of the
    /// engine's linear layers, waiting for the device (`patchlab bench`).
    pub async fn time_matmul(&self, m: usize, k: usize, n: usize, reps: usize) -> Result<f64> {
        match self {
            AnyEngine::Cpu(e) => e.time_matmul(m, k, n, reps),
            AnyEngine::Gpu(e) => e.time_matmul(m, k, n, reps).await,
        }
    }
}

/// How many threads the CPU engine computes on: every core natively, the
/// Web Worker pool in the threaded browser build, 1 in the plain one.
pub fn cpu_threads() -> usize {
    crate::engine::cpu::threads()
}

/// Milliseconds per plain [m, k] · [k, n] + bias product on the CPU
/// engine's linear-layer kernel, no model needed (the page's
/// `cpuMatmulMs`).
pub fn time_cpu_matmul(m: usize, k: usize, n: usize, reps: usize) -> Result<f64> {
    crate::engine::cpu::time_matmul(m, k, n, reps)
}

/// A run of the engine a call goes to: `AnyEngine` only makes runs of its
/// own engine, so the other kind means runs of two engines were mixed.
trait RunOf: Sized {
    fn of(run: &AnyRun) -> Result<&Self>;
}

fn mixed(run: &AnyRun) -> Error {
    let (has, other) = match run {
        AnyRun::Cpu(_) => ("cpu", "gpu"),
        AnyRun::Gpu(_) => ("gpu", "cpu"),
    };
    Error::Backend(format!(
        "a run of the {has} engine was given to the {other} engine: runs of two engines were mixed"
    ))
}

impl RunOf for CpuRun {
    fn of(run: &AnyRun) -> Result<&CpuRun> {
        match run {
            AnyRun::Cpu(r) => Ok(r),
            _ => Err(mixed(run)),
        }
    }
}

impl RunOf for GpuRun {
    fn of(run: &AnyRun) -> Result<&GpuRun> {
        match run {
            AnyRun::Gpu(r) => Ok(r),
            _ => Err(mixed(run)),
        }
    }
}

fn of<R: RunOf>(run: &AnyRun) -> Result<&R> {
    R::of(run)
}

/// A group's sweep pairs as runs of one engine.
fn sweeps<'r, R: RunOf>(pairs: &[SweepPair<'r, AnyRun>]) -> Result<Vec<SweepPair<'r, R>>> {
    pairs
        .iter()
        .map(|p| {
            Ok(SweepPair {
                base: R::of(p.base)?,
                other: R::of(p.other)?,
                first_diff: p.first_diff,
            })
        })
        .collect()
}

/// `AnyEngine`'s calls go to the engine it holds, runs converted by `of`
/// (each arm is its own expression, so `of` finds the run type from the
/// engine's method). A new `Compute` method is one line here.
macro_rules! dispatch {
    ($self:ident, $e:ident => $call:expr) => {
        match $self {
            AnyEngine::Cpu($e) => $call,
            AnyEngine::Gpu($e) => $call,
        }
    };
}

impl RunInfo for AnyRun {
    fn tokens(&self) -> &[u32] {
        match self {
            AnyRun::Cpu(r) => r.tokens(),
            AnyRun::Gpu(r) => r.tokens(),
        }
    }
    fn metric_def(&self) -> &Metric {
        match self {
            AnyRun::Cpu(r) => r.metric_def(),
            AnyRun::Gpu(r) => r.metric_def(),
        }
    }
    fn metric(&self) -> f32 {
        match self {
            AnyRun::Cpu(r) => r.metric(),
            AnyRun::Gpu(r) => r.metric(),
        }
    }
}

/// A graph run of an [`AnyEngine`]: always of the engine that made it.
pub enum AnyGraphRun {
    Cpu(CpuGraphRun),
    Gpu(GpuGraphRun),
}

impl GraphOutputs for AnyGraphRun {
    fn metric(&self) -> f32 {
        match self {
            AnyGraphRun::Cpu(r) => r.metric(),
            AnyGraphRun::Gpu(r) => r.metric(),
        }
    }
    fn outputs(&self) -> &[f32] {
        match self {
            AnyGraphRun::Cpu(r) => r.outputs(),
            AnyGraphRun::Gpu(r) => r.outputs(),
        }
    }
    fn grads(&self) -> Option<&[f32]> {
        match self {
            AnyGraphRun::Cpu(r) => r.grads(),
            AnyGraphRun::Gpu(r) => r.grads(),
        }
    }
    fn len(&self) -> usize {
        match self {
            AnyGraphRun::Cpu(r) => r.len(),
            AnyGraphRun::Gpu(r) => r.len(),
        }
    }
}

/// The graph's passes on the engine held; checked once in front
/// (`GraphPasses`), as `Compute`'s calls are.
impl GraphCompute for AnyEngine {
    type GraphRun = AnyGraphRun;

    fn graph_config(&self) -> &Config {
        dispatch!(self, e => GraphCompute::graph_config(&**e))
    }

    async fn graph_forward(
        &self,
        tokens: &[u32],
        metric: &Metric,
        pass: GraphPass<'_>,
    ) -> Result<AnyGraphRun> {
        Ok(match self {
            AnyEngine::Cpu(e) => {
                AnyGraphRun::Cpu(GraphCompute::graph_forward(&**e, tokens, metric, pass).await?)
            }
            AnyEngine::Gpu(e) => {
                AnyGraphRun::Gpu(GraphCompute::graph_forward(&**e, tokens, metric, pass).await?)
            }
        })
    }

    async fn edge_perturbations(
        &self,
        run: &AnyGraphRun,
        slot: Slot,
        first_diff: usize,
        deltas: &[f32],
    ) -> Result<Vec<f32>> {
        match (self, run) {
            (AnyEngine::Cpu(e), AnyGraphRun::Cpu(r)) => {
                GraphCompute::edge_perturbations(&**e, r, slot, first_diff, deltas).await
            }
            (AnyEngine::Gpu(e), AnyGraphRun::Gpu(r)) => {
                GraphCompute::edge_perturbations(&**e, r, slot, first_diff, deltas).await
            }
            _ => Err(Error::Backend(
                "a graph run of one engine was given to the other: runs of two engines were mixed"
                    .into(),
            )),
        }
    }

    async fn edge_products(
        &self,
        deltas: &[f32],
        grads: &[f32],
        nf: usize,
        nb: usize,
    ) -> Result<Vec<f32>> {
        dispatch!(self, e => GraphCompute::edge_products(&**e, deltas, grads, nf, nb).await)
    }

    async fn graph_gradients(
        &self,
        tokens: &[u32],
        metric: &Metric,
        embeds: &[f32],
    ) -> Result<Vec<Vec<f32>>> {
        dispatch!(self, e => GraphCompute::graph_gradients(&**e, tokens, metric, embeds).await)
    }

    fn graph_batch(&self, t: usize) -> usize {
        dispatch!(self, e => GraphCompute::graph_batch(&**e, t))
    }
}

/// Unchecked delegation: `Engine`'s checks run once, in front of `AnyEngine`.
impl Compute for AnyEngine {
    type Run = AnyRun;

    fn config(&self) -> &Config {
        dispatch!(self, e => Compute::config(&**e))
    }

    fn backend(&self) -> &'static str {
        dispatch!(self, e => Compute::backend(&**e))
    }

    fn device_counts(&self) -> Option<(u64, u64)> {
        dispatch!(self, e => Compute::device_counts(&**e))
    }

    fn device_profile(&self) -> Option<crate::engine::profile::DeviceProfile> {
        dispatch!(self, e => Compute::device_profile(&**e))
    }

    async fn run(&self, tokens: &[u32], metric: &Metric) -> Result<AnyRun> {
        Ok(match self {
            AnyEngine::Cpu(e) => AnyRun::Cpu(Compute::run(&**e, tokens, metric).await?),
            AnyEngine::Gpu(e) => AnyRun::Gpu(Compute::run(&**e, tokens, metric).await?),
        })
    }

    async fn last_logits(&self, run: &AnyRun) -> Result<Vec<f32>> {
        dispatch!(self, e => Compute::last_logits(&**e, of(run)?).await)
    }

    async fn activation(&self, run: &AnyRun, hook: &str) -> Result<Array> {
        dispatch!(self, e => Compute::activation(&**e, of(run)?, hook).await)
    }

    async fn activations(&self, reads: &[(&AnyRun, &str)]) -> Result<Vec<Array>> {
        dispatch!(self, e => {
            let reads = reads
                .iter()
                .map(|&(run, hook)| Ok((of(run)?, hook)))
                .collect::<Result<Vec<_>>>()?;
            Compute::activations(&**e, &reads).await
        })
    }

    async fn patch_metrics(
        &self,
        base: &AnyRun,
        other: &AnyRun,
        which: LayerComponents,
        components: Range<usize>,
        first_diff: usize,
    ) -> Result<Vec<f32>> {
        dispatch!(self, e => {
            Compute::patch_metrics(&**e, of(base)?, of(other)?, which, components, first_diff).await
        })
    }

    async fn path_gradients(
        &self,
        base: &AnyRun,
        other: &AnyRun,
        which: LayerComponents,
        alphas: &[f32],
        weights: &[f32],
        first_diff: usize,
    ) -> Result<PathGrads> {
        dispatch!(self, e => {
            Compute::path_gradients(&**e, of(base)?, of(other)?, which, alphas, weights, first_diff).await
        })
    }

    async fn patch_metrics_group(
        &self,
        pairs: &[SweepPair<'_, AnyRun>],
        which: LayerComponents,
        components: Range<usize>,
    ) -> Result<Vec<Vec<f32>>> {
        dispatch!(self, e => {
            Compute::patch_metrics_group(&**e, &sweeps(pairs)?, which, components).await
        })
    }

    async fn path_gradients_group(
        &self,
        pairs: &[SweepPair<'_, AnyRun>],
        which: LayerComponents,
        alphas: &[f32],
        weights: &[f32],
    ) -> Result<Vec<PathGrads>> {
        dispatch!(self, e => {
            Compute::path_gradients_group(&**e, &sweeps(pairs)?, which, alphas, weights).await
        })
    }

    async fn base_gradients(
        &self,
        base: &AnyRun,
        other: &AnyRun,
        component: Component,
        first_diff: usize,
    ) -> Result<Vec<Array>> {
        dispatch!(self, e => {
            Compute::base_gradients(&**e, of(base)?, of(other)?, component, first_diff).await
        })
    }

    async fn resid_metrics(
        &self,
        base: &AnyRun,
        start: Start,
        first_diff: usize,
        deltas: &[f32],
    ) -> Result<Vec<f32>> {
        dispatch!(self, e => Compute::resid_metrics(&**e, of(base)?, start, first_diff, deltas).await)
    }

    async fn resid_gradients(
        &self,
        base: &AnyRun,
        start: Start,
        first_diff: usize,
        deltas: &[f32],
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        dispatch!(self, e => {
            Compute::resid_gradients(&**e, of(base)?, start, first_diff, deltas).await
        })
    }

    async fn resid_base_gradients(
        &self,
        base: &AnyRun,
        first_diff: usize,
        starts: &[Start],
    ) -> Result<Vec<Vec<f32>>> {
        dispatch!(self, e => {
            Compute::resid_base_gradients(&**e, of(base)?, first_diff, starts).await
        })
    }

    async fn logit_diff_direction(&self, correct: u32, incorrect: u32) -> Result<(Vec<f32>, f32)> {
        dispatch!(self, e => Compute::logit_diff_direction(&**e, correct, incorrect).await)
    }

    async fn head_weights(&self, layer: usize) -> Result<HeadWeights> {
        dispatch!(self, e => Compute::head_weights(&**e, layer).await)
    }

    async fn metric_with_replacements(
        &self,
        tokens: &[u32],
        metric: &Metric,
        replacements: &[Replacement],
    ) -> Result<f32> {
        dispatch!(self, e => {
            Compute::metric_with_replacements(&**e, tokens, metric, replacements).await
        })
    }

    async fn metric_with_substitutions(
        &self,
        tokens: &[u32],
        metric: &Metric,
        substitutions: &[(String, Array)],
    ) -> Result<f32> {
        dispatch!(self, e => {
            Compute::metric_with_substitutions(&**e, tokens, metric, substitutions).await
        })
    }
}

/// The WebGPU engine of a long-lived host: started on the first request
/// that wants it, then kept (or its failure remembered, so that it is tried
/// only once); a lost device is started anew on the next request.
enum GpuState {
    Untried,
    Starting,
    Ready(Rc<GpuEngine>),
    Failed(String),
}

/// The engines of a model loaded in the browser: the CPU engine, and a GPU
/// engine started from its weights when a request first asks for it.
pub struct Engines {
    cpu: Rc<CpuEngine>,
    gpu: RefCell<GpuState>,
    /// Requests waiting for the GPU engine another request is starting.
    waiting: RefCell<Vec<Waker>>,
    /// Whether the host offers a GPU (`navigator.gpu`): what `Auto` picks.
    has_gpu: bool,
    /// Each engine's calibrated rate, FLOPs per second (`estimate::calibrate`).
    rates: RefCell<Vec<(&'static str, f64)>>,
    /// How the GPU engine times its kernels, if at all
    /// ([`Engines::set_gpu_timing`]).
    gpu_timing: std::cell::Cell<Option<crate::engine::profile::Timing>>,
}

impl Engines {
    /// The engines of a loaded model: its CPU engine now (it takes the
    /// weights over), its GPU engine on first use where `has_gpu`.
    pub fn load(config: Config, weights: Weights, has_gpu: bool) -> Result<Engines> {
        Ok(Engines::new(CpuEngine::new(config, weights)?, has_gpu))
    }

    pub fn new(cpu: CpuEngine, has_gpu: bool) -> Engines {
        Engines {
            cpu: Rc::new(cpu),
            gpu: RefCell::new(GpuState::Untried),
            waiting: RefCell::new(Vec::new()),
            has_gpu,
            rates: RefCell::new(Vec::new()),
            gpu_timing: std::cell::Cell::new(None),
        }
    }

    /// Times the GPU engine's kernels (`GpuOptions::timing`; in the browser
    /// only with timestamp queries, where the adapter offers them) from
    /// when it starts: true where it has not started yet (the setting
    /// then applies), false where it has (the setting applies only to an
    /// engine started anew after a lost device).
    pub fn set_gpu_timing(&self, timing: Option<crate::engine::profile::Timing>) -> bool {
        self.gpu_timing.set(timing);
        matches!(&*self.gpu.borrow(), GpuState::Untried)
    }

    /// The backend a request for `backend` computes on, as far as is known
    /// without starting anything: "cpu", or "gpu" unless the GPU engine
    /// already failed to start (then requests fall back to the CPU).
    pub fn would_use(&self, backend: Backend) -> &'static str {
        match self.resolve(backend) {
            Backend::Gpu if !matches!(&*self.gpu.borrow(), GpuState::Failed(_)) => "gpu",
            _ => "cpu",
        }
    }

    /// The rate `set_rate` recorded for a backend ("cpu", "gpu").
    pub fn rate(&self, backend: &str) -> Option<f64> {
        self.rates
            .borrow()
            .iter()
            .find(|(b, _)| *b == backend)
            .map(|r| r.1)
    }

    /// Records a backend's measured rate, FLOPs per second.
    pub fn set_rate(&self, backend: &'static str, flops_per_s: f64) {
        let mut rates = self.rates.borrow_mut();
        rates.retain(|(b, _)| *b != backend);
        rates.push((backend, flops_per_s));
    }

    pub fn config(&self) -> &Config {
        self.cpu.config()
    }

    /// The backend `backend` asks for here: `Auto` is the GPU where the
    /// host offers one.
    pub fn resolve(&self, backend: Backend) -> Backend {
        match backend {
            Backend::Auto if self.has_gpu => Backend::Gpu,
            Backend::Auto => Backend::Cpu,
            b => b,
        }
    }

    /// Pairs analysed together by default on `backend` (see
    /// [`Backend::default_group_size`]).
    pub fn default_group_size(&self, backend: Backend) -> usize {
        self.resolve(backend).default_group_size()
    }

    /// The CPU engine.
    pub fn cpu(&self) -> AnyEngine {
        AnyEngine::Cpu(self.cpu.clone())
    }

    /// The GPU engine's work since it started (per kernel: dispatches,
    /// workgroups, FLOPs, bytes; submissions, read-backs), if it has.
    pub fn gpu_profile(&self) -> Option<crate::engine::profile::DeviceProfile> {
        match &*self.gpu.borrow() {
            GpuState::Ready(g) => Compute::device_profile(&**g),
            _ => None,
        }
    }

    /// The CPU engine itself (the Circuit tab's slider re-evaluates
    /// faithfulness on it).
    pub fn cpu_engine(&self) -> Rc<CpuEngine> {
        self.cpu.clone()
    }

    /// The engine for a requested backend. When the GPU engine cannot
    /// start, the CPU engine computes instead and the fallback says
    /// why. A request that finds the GPU engine starting for another one
    /// (the page's predictions run beside its analyses) waits for it, so
    /// that what computes never depends on which request came first.
    pub async fn get(&self, backend: Backend) -> (AnyEngine, Option<GpuFallback>) {
        if self.resolve(backend) == Backend::Cpu {
            return (self.cpu(), None);
        }
        UntilStarted(self).await;
        // a lost device (driver reset, the browser reclaiming it): start anew
        if matches!(&*self.gpu.borrow(), GpuState::Ready(e) if e.is_lost()) {
            *self.gpu.borrow_mut() = GpuState::Untried;
        }
        let state = std::mem::replace(&mut *self.gpu.borrow_mut(), GpuState::Starting);
        let (state, out) = match state {
            GpuState::Ready(e) => (GpuState::Ready(e.clone()), Ok(e)),
            GpuState::Failed(why) => (GpuState::Failed(why.clone()), Err(why)),
            // UntilStarted returned: no other request is starting it
            GpuState::Starting => {
                unreachable!("the GPU engine is started by one request at a time")
            }
            // from the CPU engine's tensors, a tensor or a layer at a time
            // (no second host copy of the model)
            GpuState::Untried => {
                let cfg = self.cpu.config().clone();
                let opts = GpuOptions {
                    timing: self.gpu_timing.get(),
                    ..GpuOptions::default()
                };
                match GpuEngine::from_source(cfg, &*self.cpu, opts).await {
                    Ok(e) => {
                        let e = Rc::new(e);
                        (GpuState::Ready(e.clone()), Ok(e))
                    }
                    Err(e) => {
                        let why = e.to_string();
                        (GpuState::Failed(why.clone()), Err(why))
                    }
                }
            }
        };
        *self.gpu.borrow_mut() = state;
        for w in self.waiting.borrow_mut().drain(..) {
            w.wake();
        }
        match out {
            Ok(e) => (AnyEngine::Gpu(e), None),
            Err(reason) => (
                self.cpu(),
                Some(GpuFallback {
                    reason,
                    what: "WebGPU",
                }),
            ),
        }
    }
}

/// Ready once no request is starting the GPU engine.
struct UntilStarted<'a>(&'a Engines);

impl Future for UntilStarted<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if matches!(*self.0.gpu.borrow(), GpuState::Starting) {
            self.0.waiting.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

#[cfg(test)]
mod tests {
    // not `super::*`: that brings `Compute` too, whose calls skip the checks
    use super::{AnyEngine, Backend, Engines, GpuState, RunOf};
    use crate::engine::cpu::CpuEngine;
    use crate::engine::gpu::GpuRun;
    use crate::engine::{Component, Engine, LayerComponents, Metric};
    use crate::model::random::{random_weights, RandomSpec};
    use crate::model::{Config, Weights};
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    fn tiny() -> (Config, Weights) {
        let spec = RandomSpec {
            n_layers: 1,
            n_heads: 2,
            d_model: 8,
            n_ctx: 16,
            seed: 3,
        };
        (spec.config(), random_weights(&spec))
    }

    #[test]
    fn a_request_that_finds_the_gpu_starting_waits_for_the_outcome() {
        let (cfg, w) = tiny();
        let engines = Engines::new(CpuEngine::new(cfg, w).unwrap(), true);
        // another request is starting the GPU engine
        *engines.gpu.borrow_mut() = GpuState::Starting;
        let mut cx = Context::from_waker(Waker::noop());
        let mut second = Box::pin(engines.get(Backend::Auto));
        assert!(second.as_mut().poll(&mut cx).is_pending());
        assert!(second.as_mut().poll(&mut cx).is_pending());
        // the first request's start ends: the waiting one gets its outcome
        *engines.gpu.borrow_mut() = GpuState::Failed("no adapter".into());
        for w in engines.waiting.borrow_mut().drain(..) {
            w.wake();
        }
        let Poll::Ready((engine, note)) = second.as_mut().poll(&mut cx) else {
            panic!("still waiting after the start ended");
        };
        assert_eq!(engine.kind(), Backend::Cpu);
        let note = note.expect("a fallback");
        assert_eq!(note.reason, "no adapter");
        assert_eq!(
            note.to_string(),
            "WebGPU is unavailable (no adapter); computing on the CPU"
        );
    }

    #[test]
    fn backends_parse_by_name_and_refuse_others() {
        assert_eq!(Backend::parse("").unwrap(), Backend::Auto);
        assert_eq!(Backend::parse("auto").unwrap(), Backend::Auto);
        assert_eq!(Backend::parse("cpu").unwrap(), Backend::Cpu);
        assert_eq!(Backend::parse("webgpu").unwrap(), Backend::Gpu);
        let e = Backend::parse("tpu").unwrap_err().to_string();
        assert!(e.contains("unknown backend \"tpu\""), "{e}");
        assert_eq!(Backend::Gpu.default_group_size(), 16);
        assert_eq!(Backend::Cpu.default_group_size(), 1);
    }

    #[test]
    fn delegates_to_the_cpu_engine() {
        let (cfg, w) = tiny();
        let direct = CpuEngine::new(cfg.clone(), w.clone()).unwrap();
        let (any, note) = AnyEngine::load(cfg, w, Backend::Cpu).unwrap();
        assert!(note.is_none());
        assert_eq!(any.backend(), "cpu");
        assert_eq!(any.kind(), Backend::Cpu);
        let metric = Metric::logit_diff(1, 2);
        let tokens = [5, 6, 7];
        let run = pollster::block_on(any.run(&tokens, &metric)).unwrap();
        let want = pollster::block_on(direct.run(&tokens, &metric)).unwrap();
        assert_eq!(any.metric(&run).to_bits(), direct.metric(&want).to_bits());
        let which = LayerComponents {
            layer: 0,
            component: Component::Heads,
        };
        let got = pollster::block_on(any.patch_metrics(&run, &run, which, 0..2, 0)).unwrap();
        let want = pollster::block_on(direct.patch_metrics(&want, &want, which, 0..2, 0)).unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn a_run_of_another_engine_is_an_error() {
        let (cfg, w) = tiny();
        let cpu = AnyEngine::cpu(CpuEngine::new(cfg, w).unwrap());
        let run = pollster::block_on(cpu.run(&[1, 2], &Metric::logit_diff(1, 2))).unwrap();
        // a GPU engine cannot be made here; ask the run's variant directly
        let e = GpuRun::of(&run).err().expect("a CPU run is no GPU run");
        assert!(
            e.to_string().contains("runs of two engines were mixed"),
            "{e}"
        );
    }
}
