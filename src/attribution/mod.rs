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
pub mod integrated_gradients;
pub mod pair;
pub mod patching;
pub mod quadrature;
pub mod run;

use crate::engine::Component;
use crate::error::{Error, Result};

pub use crate::report::{parse_component, Direction, Method, ScoreMap};
pub use pair::Pair;

/// Progress of a long computation, for bars, ETAs and cancellation.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    pub stage: &'a str,
    /// Work done and total, in units of roughly one patched tail pass.
    pub done: u64,
    pub total: u64,
}

/// Receives progress and partial results; returning `false` from `progress`
/// cancels the computation at the next chunk boundary.
pub trait Observer {
    fn progress(&mut self, _p: &Progress<'_>) -> bool {
        true
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

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// Counts work units and forwards progress to an observer.
pub struct Tracker<'o> {
    obs: &'o mut dyn Observer,
    done: u64,
    total: u64,
}

impl<'o> Tracker<'o> {
    pub fn new(obs: &'o mut dyn Observer, total: u64) -> Tracker<'o> {
        Tracker {
            obs,
            done: 0,
            total,
        }
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
    pub fn partial(&mut self, scores: &LayerScores<'_>) {
        self.obs.partial(scores);
    }
}
