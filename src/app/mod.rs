//! The application layer, between the methods (`attribution`) and the
//! front ends (the CLI in `src/bin/patchlab/`, the wasm bindings in
//! `src/wasm/`, the page in `www/`): the choice of engine ([`engine`]), the
//! requests the front ends fill in ([`request`]), a model directory loaded
//! for the CLI (`load`, native only) and the calls of a long-lived lab
//! ([`session`]), the dataset runner of `patchlab batch` and
//! the page's Dataset tab ([`dataset`]), and what a run will cost on the
//! engine at hand ([`estimate`]). The front ends only convert arguments and
//! results.

pub mod circuit;
pub mod dataset;
pub mod engine;
pub mod estimate;
#[cfg(not(target_arch = "wasm32"))]
pub mod load;
pub mod request;
pub mod session;

pub use engine::{cpu_threads, time_cpu_matmul, AnyEngine, AnyRun, Backend, Engines, GpuFallback};
#[cfg(not(target_arch = "wasm32"))]
pub use load::LoadedModel;
pub use request::{ablation_sets, AblateRequest, AnalyzeRequest};
pub use session::Session;
