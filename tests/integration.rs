//! patchlab's integration tests, as one test binary.
//!
//! Each file beside this one is a module of tests for one area; linking one
//! binary instead of one per file keeps a fresh CI build small and quick (a
//! debug test binary links in all of wgpu, candle and tokenizers).
//! Run one area with `cargo test --test integration gpu_backend::`.

mod common;

mod ablation;
mod app;
mod architecture;
mod circuits;
mod cli;
mod cost;
mod dataset_runner;
mod datasets;
mod fast_paths;
mod features;
mod fuzz_loading;
mod golden;
mod golden_circuits;
mod golden_features;
mod golden_sites;
mod gpu_backend;
mod gpu_faults;
mod groups;
mod latent;
mod metric;
mod package;
mod published_files;
mod replacements;
mod report_bytes;
mod sites;
mod summary;
mod weight_stream;
mod www_sites;
