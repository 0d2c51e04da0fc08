//! The application layer, between the methods (`attribution`) and the
//! front ends (the CLI in `src/bin/patchlab/`, the wasm bindings in
//! `src/wasm/`, the page in `www/`): the choice of engine ([`engine`]), the
//! requests the front ends fill in ([`request`]) and the calls of a
//! long-lived lab ([`session`]), the dataset runner of `patchlab batch` and
//! the page's Dataset tab ([`dataset`]). The front ends only convert arguments and
//! results.

pub mod circuit;
pub mod dataset;
pub mod engine;
pub mod request;
pub mod session;

pub use engine::{cpu_threads, time_cpu_matmul, AnyEngine, AnyRun, Backend, Engines, GpuFallback};
pub use request::{ablation_sets, AblateRequest, AnalyzeRequest};
pub use session::Session;
