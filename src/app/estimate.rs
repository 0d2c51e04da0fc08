//! What an analysis will cost on the engine at hand, before it starts
//! (docs/performance.md, "Cost model"): its FLOPs per phase
//! (`attribution::cost`) at a rate measured on that engine
//! ([`calibrate`]), the memory its runs keep, and the work budget of one
//! engine call that keeps Cancel within about a second.

use super::engine::{AnyEngine, AnyRun};
use crate::attribution::cost::{self, Estimate};
use crate::attribution::run::Options;
use crate::attribution::Pair;
use crate::clock::now_ms;
use crate::engine::{Component, Engine, LayerComponents, Metric, SweepPair};
use crate::error::{Error, Result};
use crate::model::{Config, Tokenizer};
use crate::report::Prompts;
use serde::Serialize;

/// Seconds of work (at the calibrated rate) of one engine call of a
/// budgeted run. Cancel waits for the call in flight, and a phase may run
/// slower than the calibration did: a third of a second keeps Cancel
/// within a second (`scripts/bench-cost` measures it).
pub const SECONDS_PER_CALL: f64 = 0.3;

/// The engine's measured rate: a small real workload (IG's path, the
/// phase most of an analysis's time goes to) timed on it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Calibration {
    pub backend: &'static str,
    /// Matrix-product FLOPs per second of the workload (as `cost` counts them).
    pub flops_per_s: f64,
    pub flops: f64,
    pub ms: f64,
}

/// Tokens of the calibration pair, where its prompts differ, and the
/// points of its IG path: 24 points of 8 rows make passes of 192 rows, the
/// size of an analysis's (a 15-token pair's 51 points of 5 rows are 255).
const CAL_TOKENS: usize = 16;
const CAL_FIRST_DIFF: usize = 8;
const CAL_POINTS: usize = 24;

/// Times the calibration workload on `e`: the heads' IG path at the
/// next-to-last layer on the CPU (a quarter of a second of GPT-2 small in
/// WebAssembly; the last layer's tail is one row), at every layer on a
/// GPU (small work there is all dispatch and read-back), once untimed
/// first on a GPU, whose first passes build their pipelines. The two
/// forwards it needs are not timed.
pub async fn calibrate(e: &AnyEngine) -> Result<Calibration> {
    let cfg = e.config().clone();
    let t = CAL_TOKENS.min(cfg.n_ctx);
    let fd = CAL_FIRST_DIFF.min(t - 1);
    let vocab = cfg.d_vocab as u32;
    // fixed token ids, the same for every model of a vocabulary
    let a: Vec<u32> = (0..t as u32).map(|i| (i * 7919 + 13) % vocab).collect();
    let mut b = a.clone();
    b[fd] = (b[fd] + 1) % vocab;
    let metric = Metric::logit_diff(a[1], a[2]);
    let (ra, rb) = (e.run(&a, &metric).await?, e.run(&b, &metric).await?);
    let sweep = SweepPair {
        base: &ra,
        other: &rb,
        first_diff: fd,
    };
    // the last layer's tail is its last row only: the one before it
    let next_to_last = cfg.n_layers.saturating_sub(2);
    let layers = match e.backend() {
        "cpu" => next_to_last..next_to_last + 1,
        _ => 0..cfg.n_layers,
    };
    let paths = || heads_paths(e, sweep, layers.clone(), (t, fd));
    if e.backend() != "cpu" {
        paths().await?;
    }
    let start = now_ms();
    let flops = paths().await?;
    let ms = (now_ms() - start).max(1e-3);
    Ok(Calibration {
        backend: e.backend(),
        flops_per_s: flops / (ms / 1e3),
        flops,
        ms,
    })
}

/// The heads' IG path (`CAL_POINTS` points) at each of `layers`; returns
/// its FLOPs. The gradients come back to the host: a device's work is done.
async fn heads_paths(
    e: &AnyEngine,
    sweep: SweepPair<'_, AnyRun>,
    layers: std::ops::Range<usize>,
    (t, fd): (usize, usize),
) -> Result<f64> {
    let alphas: Vec<f32> = (0..CAL_POINTS)
        .map(|k| (k as f32 + 0.5) / CAL_POINTS as f32)
        .collect();
    let weights = vec![1.0 / CAL_POINTS as f32; CAL_POINTS];
    let mut flops = 0.0;
    for layer in layers {
        let which = LayerComponents {
            layer,
            component: Component::Heads,
        };
        e.path_gradients_group(&[sweep], which, &alphas, &weights)
            .await?;
        flops += CAL_POINTS as f64 * cost::ig_point_flops(e.config(), which, t - fd, t);
    }
    Ok(flops)
}

/// An analysis's cost on one engine, for the page to show before Run.
#[derive(Debug, Clone, Serialize)]
pub struct AnalysisCost {
    pub backend: &'static str,
    /// Tokens and first differing position of each pair.
    pub pairs: Vec<[usize; 2]>,
    #[serde(flatten)]
    pub estimate: Estimate,
    /// The calibrated rate, FLOPs per second, if the engine was calibrated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flops_per_s: Option<f64>,
    /// `flops / flops_per_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// The weights and the runs together, bytes.
    pub memory_bytes: f64,
    /// What this build can hold (WebAssembly's 4 GiB address space); none natively.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<f64>,
}

/// WebAssembly's 32-bit address space, less room for the allocator, the
/// tokenizer and the engine's passes.
pub const WASM_MEMORY_LIMIT: f64 = 3.5 * (1u64 << 30) as f64;

/// The memory this build can give an analysis, if it is bounded.
pub fn memory_limit() -> Option<f64> {
    cfg!(target_arch = "wasm32").then_some(WASM_MEMORY_LIMIT)
}

/// The cost of analysing `prompts` with `opts` on `backend`, at `rate`.
pub fn analysis_cost(
    cfg: &Config,
    tok: &Tokenizer,
    prompts: &[Prompts],
    opts: &Options,
    backend: &'static str,
    rate: Option<f64>,
) -> Result<AnalysisCost> {
    let mut shapes = Vec::with_capacity(prompts.len());
    for p in prompts {
        let pair = Pair::from_prompts(tok, cfg, p)?;
        shapes.push((pair.clean.len(), pair.first_diff));
    }
    let estimate = opts.estimate(cfg, &shapes);
    Ok(AnalysisCost {
        backend,
        pairs: shapes.iter().map(|&(t, fd)| [t, fd]).collect(),
        flops_per_s: rate,
        seconds: rate.map(|r| estimate.flops / r),
        memory_bytes: cfg.weight_bytes() as f64 + estimate.run_bytes,
        memory_limit: memory_limit(),
        estimate,
    })
}

impl AnalysisCost {
    /// Refuses an analysis whose runs cannot fit this build's memory,
    /// saying how long a prompt can be.
    pub fn check_memory(&self, cfg: &Config) -> Result<()> {
        let runs: Vec<usize> = self.pairs.iter().flat_map(|&[t, _]| [t, t]).collect();
        runs_fit(cfg, &runs, self.memory_limit, "this analysis")
    }
}

/// Refuses runs of these token lengths that cannot fit beside the model
/// in `limit` bytes (none: no bound), saying how long a prompt can be.
pub fn runs_fit(cfg: &Config, runs: &[usize], limit: Option<f64>, what: &str) -> Result<()> {
    let Some(limit) = limit else {
        return Ok(());
    };
    let weights = cfg.weight_bytes() as f64;
    let need = weights + runs.iter().map(|&t| cost::run_bytes(cfg, t)).sum::<f64>();
    if need <= limit {
        return Ok(());
    }
    let n = runs.len().max(1) as f64;
    let fits = (1..=cfg.n_ctx)
        .take_while(|&t| weights + n * cost::run_bytes(cfg, t) <= limit)
        .last()
        .unwrap_or(0);
    let gb = |b: f64| b / 1e9;
    Err(Error::Input(format!(
        "{what} would keep {:.1} GB (the model {:.1} GB, each prompt's run its activations), \
         more than the {:.1} GB WebAssembly can address: shorten the prompts to at most {fits} \
         tokens, or run the native CLI (`patchlab analyze`)",
        gb(need),
        gb(weights),
        gb(limit),
    )))
}
