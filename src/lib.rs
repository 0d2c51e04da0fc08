//! patchlab: activation patching, integrated gradients and attribution
//! patching for every attention head and MLP neuron of GPT-2, with one engine
//! interface and CPU / WebGPU backends.

pub mod app;
pub mod attribution;
pub mod clock;
pub mod dataset;
pub mod engine;
pub mod error;
pub mod model;
pub mod report;
#[cfg(not(target_arch = "wasm32"))]
pub mod serve;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use error::{Error, Result};
