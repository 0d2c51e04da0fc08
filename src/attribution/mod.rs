//! Attribution methods, written once against the [`Engine`] interface:
//! activation patching, layer integrated gradients (captum semantics) and
//! attribution patching, the report of a pair ([`run`]) and mean ablation.
//!
//! `attribution` depends on `report` and never the reverse: the report is
//! the data every front end reads without running a method, so its
//! vocabulary ([`Method`], [`Direction`], [`ScoreMap`], re-exported here) and
//! the analysis derived from its maps (`report::derive`) live there.

pub mod ablation;
pub mod atp;
pub mod circuit;
pub mod cost;
pub mod dla;
pub mod features;
pub mod integrated_gradients;
pub mod pair;
pub mod patching;
pub mod quadrature;
pub mod run;
pub mod sites;

use crate::engine::Component;
use crate::error::{Error, Result};
use std::future::Future;
use std::pin::Pin;

pub use crate::report::{parse_component, Direction, Method, ScoreMap};
pub use pair::Pair;

/// Floats of activations one read-back brings to the host at most (64 MiB):
/// the layers whose activations fit share one wait for the device.
const READ_FLOATS: usize = 16 << 20;

/// How many layers' activations of `component`, for `runs` runs of `t`
/// tokens, one read-back fetches (at least one).
pub(crate) fn layers_per_read(
    cfg: &crate::model::Config,
    component: Component,
    runs: usize,
    t: usize,
) -> usize {
    let per_layer = runs * t * component.count(cfg) * component.width(cfg);
    (READ_FLOATS / per_layer.max(1)).clamp(1, cfg.n_layers.max(1))
}

/// The activations of `component` at `layers` of the base and the other
/// run, (base, other) per layer, with one read-back.
pub(crate) async fn layer_activations<E: crate::engine::Engine>(
    e: &E,
    base: &E::Run,
    other: &E::Run,
    component: Component,
    layers: std::ops::Range<usize>,
) -> Result<Vec<(crate::engine::Array, crate::engine::Array)>> {
    let hooks: Vec<String> = layers.map(|l| component.hook(l)).collect();
    let reads: Vec<(&E::Run, &str)> = hooks
        .iter()
        .flat_map(|h| [(base, h.as_str()), (other, h.as_str())])
        .collect();
    let mut acts = e.activations(&reads).await?.into_iter();
    let mut out = Vec::with_capacity(hooks.len());
    while let (Some(b), Some(o)) = (acts.next(), acts.next()) {
        out.push((b, o));
    }
    Ok(out)
}

/// Progress of a long computation, for bars, ETAs and cancellation.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    pub stage: &'a str,
    /// Work done and total: an analysis counts matrix-product FLOPs
    /// (`cost`), so the fraction moves with the time; circuits and ablations
    /// count their passes.
    pub done: u64,
    pub total: u64,
}

/// A wait that an observer asks for before the next engine call.
pub type Pause<'a> = Pin<Box<dyn Future<Output = Result<()>> + 'a>>;

/// Receives progress and partial results; returning `false` from `progress`
/// cancels the computation at the next chunk boundary.
pub trait Observer {
    fn progress(&mut self, _p: &Progress<'_>) -> bool {
        true
    }
    /// Asked before each heavy engine call (a forward, a sweep, a gradient
    /// pass): a host whose event loop must run in between (a browser worker
    /// that has to receive "cancel" while the CPU engine's ready-at-once
    /// futures compute) returns a future to await first; `None` goes on.
    fn pause(&mut self) -> Option<Pause<'_>> {
        None
    }
    /// One layer's scores are ready.
    fn partial(&mut self, _scores: &LayerScores<'_>) {}
}

/// One layer's scores of one pair, method, direction and component kind.
#[derive(Debug, Clone, Copy)]
pub struct LayerScores<'a> {
    /// The pair's place in the group being analysed (0 for a single pair).
    pub pair: usize,
    pub method: Method,
    pub direction: Direction,
    pub component: Component,
    pub layer: usize,
    pub scores: &'a [f32],
}

/// Awaits the observer's pause, if it asks for one.
pub async fn pause(obs: &mut dyn Observer) -> Result<()> {
    match obs.pause() {
        Some(p) => p.await,
        None => Ok(()),
    }
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// Counts work units and forwards progress to an observer.
pub struct Tracker<'o> {
    obs: &'o mut dyn Observer,
    done: u64,
    total: u64,
    budget: Option<f64>,
}

impl<'o> Tracker<'o> {
    pub fn new(obs: &'o mut dyn Observer, total: u64) -> Tracker<'o> {
        Tracker {
            obs,
            done: 0,
            total,
            budget: None,
        }
    }
    /// Holds each engine call to `flops` of work (`run::Options::work_per_call`).
    pub fn with_budget(mut self, flops: Option<f64>) -> Tracker<'o> {
        self.budget = flops;
        self
    }
    /// Records `units` of finished work; Err(Cancelled) if the observer says stop.
    pub fn advance(&mut self, stage: &str, units: u64) -> Result<()> {
        self.done += units;
        let p = Progress {
            stage,
            done: self.done.min(self.total),
            total: self.total,
        };
        if self.obs.progress(&p) {
            Ok(())
        } else {
            Err(Error::Cancelled)
        }
    }
    /// Replaces an estimate in the total by the work found while running
    /// (an SAE's changed features are known once both runs are encoded).
    pub fn revise(&mut self, estimated: u64, actual: u64) {
        self.total = (self.total + actual)
            .saturating_sub(estimated)
            .max(self.done);
    }
    /// Reports all the work done: the counts of `cost` are rounded, so the
    /// last step snaps to the total.
    pub fn finish(&mut self, stage: &str) -> Result<()> {
        self.done = self.total;
        self.advance(stage, 0)
    }
    /// Awaits the observer's pause before an engine call.
    pub async fn pause(&mut self) -> Result<()> {
        pause(self.obs).await
    }
    /// The work budget of one engine call, in FLOPs.
    pub fn work_per_call(&self) -> Option<f64> {
        self.budget
    }
    pub fn partial(&mut self, scores: &LayerScores<'_>) {
        self.obs.partial(scores);
    }
}
