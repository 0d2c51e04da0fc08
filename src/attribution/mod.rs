//! Attribution methods, written once against the [`Engine`] interface:
//! activation patching, layer integrated gradients (captum semantics),
//! attribution patching, and the analysis that compares them.

pub mod ablation;
pub mod analysis;
pub mod atp;
pub mod integrated_gradients;
pub mod pair;
pub mod patching;
pub mod quadrature;
pub mod run;

use crate::engine::Component;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;

pub use pair::Pair;

/// Scores of one component kind: [layer][component].
pub type ScoreMap = Vec<Vec<f32>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Ap,
    Ig,
    Atp,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::Ap, Method::Ig, Method::Atp];
    pub fn name(self) -> &'static str {
        match self {
            Method::Ap => "ap",
            Method::Ig => "ig",
            Method::Atp => "atp",
        }
    }
    pub fn parse(s: &str) -> Result<Method> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| Error::Input(format!("unknown method {s:?}; choose from ap, ig, atp")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Noising: run the clean prompt, take activations from the corrupt run.
    CleanToCorrupt,
    /// Denoising: run the corrupt prompt, take activations from the clean run.
    CorruptToClean,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::CleanToCorrupt, Direction::CorruptToClean];
    pub fn name(self) -> &'static str {
        match self {
            Direction::CleanToCorrupt => "clean_to_corrupt",
            Direction::CorruptToClean => "corrupt_to_clean",
        }
    }
    pub fn parse(s: &str) -> Result<Direction> {
        Direction::ALL
            .into_iter()
            .find(|d| d.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                Error::Input(format!(
                    "unknown direction {s:?}; choose from clean_to_corrupt, corrupt_to_clean"
                ))
            })
    }
    /// (base, other) of a (clean, corrupt) pair of anything.
    pub fn order<T>(self, clean: T, corrupt: T) -> (T, T) {
        match self {
            Direction::CleanToCorrupt => (clean, corrupt),
            Direction::CorruptToClean => (corrupt, clean),
        }
    }
}

pub fn parse_component(s: &str) -> Result<Component> {
    match s.trim().to_ascii_lowercase().as_str() {
        "heads" | "head" => Ok(Component::Heads),
        "neurons" | "neuron" => Ok(Component::Neurons),
        _ => Err(Error::Input(format!(
            "unknown component kind {s:?}; choose from heads, neurons"
        ))),
    }
}

/// Progress of a long computation, for bars, ETAs and cancellation.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    pub stage: &'a str,
    /// Work done and total, in units of roughly one patched tail pass.
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
    /// One layer's scores of pair `pair` of the group being analysed (0 for
    /// a single pair) are ready.
    fn partial(
        &mut self,
        _pair: usize,
        _method: Method,
        _dir: Direction,
        _component: Component,
        _layer: usize,
        _scores: &[f32],
    ) {
    }
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
    /// Awaits the observer's pause before an engine call.
    pub async fn pause(&mut self) -> Result<()> {
        pause(self.obs).await
    }
    #[allow(clippy::too_many_arguments)]
    pub fn partial(
        &mut self,
        pair: usize,
        m: Method,
        d: Direction,
        c: Component,
        layer: usize,
        s: &[f32],
    ) {
        self.obs.partial(pair, m, d, c, layer, s);
    }
}
