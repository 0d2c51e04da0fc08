//! The whole analysis of one prompt pair, as the report describes it.

use super::analysis::{asymmetry, flatten, ig_norm, jaccard, latent_sets, pearson, top_k};
use super::atp::attribution_patching;
use super::integrated_gradients::integrated_gradients;
use super::pair::MetricSpec;
use super::patching::activation_patching;
use super::quadrature::Rule;
use super::{Direction, Method, Observer, Pair, ScoreMap, Tracker};
use crate::clock::now_ms;
use crate::engine::{Component, Engine, SweepPair};
use crate::error::{Error, Result};
use crate::model::Tokenizer;
use crate::report::{
    Analysis, Deltas, Latent, Maps, Maps1, Metric, ModelInfo, Prediction, Prompts, Report,
    Settings, Tokens, TopEntry, Warning, SCHEMA,
};
use std::collections::BTreeMap;

/// What to compute.
#[derive(Debug, Clone)]
pub struct Options {
    pub methods: Vec<Method>,
    pub directions: Vec<Direction>,
    pub components: Vec<Component>,
    pub ig_steps: usize,
    pub ig_rule: Rule,
    /// p of the latent-component highlight (0.9 = top 10 %).
    pub percentile: f64,
    /// Entries in each top-components list.
    pub top: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            methods: Method::ALL.to_vec(),
            directions: Direction::ALL.to_vec(),
            components: vec![Component::Heads, Component::Neurons],
            ig_steps: 50,
            ig_rule: Rule::GaussLegendre,
            percentile: 0.9,
            top: 10,
        }
    }
}

impl Options {
    fn check(&self) -> Result<()> {
        if self.methods.is_empty() || self.directions.is_empty() || self.components.is_empty() {
            return Err(Error::Input(
                "choose at least one method, one direction and one component kind".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.percentile) {
            return Err(Error::Input(format!(
                "percentile {} is outside 0..1 (0.9 highlights the top 10 %)",
                self.percentile
            )));
        }
        super::quadrature::nodes_and_weights(self.ig_rule, self.ig_steps).map(|_| ())
    }

    /// The report's record of these options.
    pub fn settings(&self) -> Settings {
        Settings {
            methods: self.methods.iter().map(|m| m.name().to_string()).collect(),
            directions: self
                .directions
                .iter()
                .map(|d| d.name().to_string())
                .collect(),
            components: self
                .components
                .iter()
                .map(|c| c.name().to_string())
                .collect(),
            ig_steps: self.ig_steps,
            ig_rule: serde_json::to_value(self.ig_rule)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            percentile: self.percentile,
        }
    }

    /// Work units of the whole analysis, for progress and ETA.
    pub fn work(&self, cfg: &crate::model::Config) -> u64 {
        let dirs = self.directions.len() as u64;
        let layers = cfg.n_layers as u64;
        let mut total = 0;
        for &c in &self.components {
            for &m in &self.methods {
                total += dirs
                    * layers
                    * match m {
                        Method::Ap => c.count(cfg) as u64,
                        Method::Ig => 3 * (self.ig_steps as u64 + 1),
                        Method::Atp => 3,
                    };
            }
        }
        total
    }
}

fn log_softmax_at(logits: &[f32], ids: [u32; 2]) -> [f32; 2] {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max as f64
        + logits
            .iter()
            .map(|&x| ((x - max) as f64).exp())
            .sum::<f64>()
            .ln();
    ids.map(|i| (logits[i as usize] as f64 - lse) as f32)
}

/// The k most likely next tokens with their logits and probabilities.
pub fn predictions(tok: &Tokenizer, logits: &[f32], k: usize) -> Vec<Prediction> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let z: f64 = logits.iter().map(|&x| ((x - max) as f64).exp()).sum();
    let mut idx: Vec<usize> = (0..logits.len().min(tok.vocab_size().max(1))).collect();
    idx.sort_by(|&a, &b| {
        logits[b]
            .partial_cmp(&logits[a])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    idx.truncate(k);
    idx.into_iter()
        .map(|i| Prediction {
            id: i as u32,
            text: tok.token_text(i as u32),
            logit: logits[i],
            prob: (((logits[i] - max) as f64).exp() / z) as f32,
        })
        .collect()
}

/// Runs every requested method on one pair and assembles the report.
pub async fn analyze_pair<E: Engine>(
    e: &E,
    model_name: &str,
    tok: &Tokenizer,
    prompts: &Prompts,
    opts: &Options,
    obs: &mut dyn Observer,
) -> Result<Report> {
    let mut r = analyze_group(e, model_name, tok, std::slice::from_ref(prompts), opts, obs).await?;
    Ok(r.pop().expect("one report per pair"))
}

/// Pairs in groups that can share an engine's passes: at most `size` pairs
/// of equal token length and first differing position each (a shared pass
/// starts at its group's earliest first difference, so mixed ones would
/// patch, and recompute, more rows). Groups keep dataset order inside and are
/// ordered by their first pair. Pairs that are not valid (with this
/// tokenizer and model) are returned apart with their error.
pub fn share_groups(
    tok: &Tokenizer,
    cfg: &crate::model::Config,
    pairs: &[Prompts],
    size: usize,
) -> (Vec<Vec<usize>>, Vec<(usize, Error)>) {
    let mut by_key: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    let mut bad = Vec::new();
    for (i, p) in pairs.iter().enumerate() {
        match Pair::from_prompts(tok, cfg, p) {
            Ok(pair) => by_key
                .entry((pair.clean.len(), pair.first_diff))
                .or_default()
                .push(i),
            Err(e) => bad.push((i, e)),
        }
    }
    let mut groups: Vec<Vec<usize>> = by_key
        .into_values()
        .flat_map(|v| {
            v.chunks(size.max(1))
                .map(<[usize]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect();
    groups.sort_by_key(|g| g[0]);
    (groups, bad)
}

/// One pair of a group: its tokens and its two runs.
struct Prepared<R> {
    pair: Pair,
    spec: MetricSpec,
    clean: R,
    corrupt: R,
}

/// Runs every requested method on a group of pairs together and assembles
/// one report per pair, in order. Every sweep is one engine call for the
/// whole group, so a backend can share its passes between pairs (the GPU
/// does for pairs of equal token length); the results equal those of
/// `analyze_pair` on each pair. A group's timings are its own divided
/// evenly among its pairs.
pub async fn analyze_group<E: Engine>(
    e: &E,
    model_name: &str,
    tok: &Tokenizer,
    group: &[Prompts],
    opts: &Options,
    obs: &mut dyn Observer,
) -> Result<Vec<Report>> {
    opts.check()?;
    if group.is_empty() {
        return Ok(vec![]);
    }
    let t_start = now_ms();
    let cfg = e.config().clone();
    let share = 1.0 / group.len() as f64;
    let mut timings = BTreeMap::new();
    let t0 = now_ms();
    let mut prep = Vec::with_capacity(group.len());
    for (i, prompts) in group.iter().enumerate() {
        let p = prepare(e, tok, &cfg, prompts, obs)
            .await
            .map_err(|err| match err {
                Error::Input(m) if group.len() > 1 => {
                    Error::Input(format!("pair {} of the group: {m}", i + 1))
                }
                err => err,
            })?;
        prep.push(p);
    }
    timings.insert("forward".to_string(), (now_ms() - t0) * share / 2.0);

    let mut track = Tracker::new(obs, opts.work(&cfg) * group.len() as u64);
    track.advance("forward", 0)?;
    let mut results: Vec<BTreeMap<Method, BTreeMap<Direction, Maps>>> =
        vec![BTreeMap::new(); group.len()];
    let mut deltas: Vec<BTreeMap<String, Deltas>> = vec![BTreeMap::new(); group.len()];
    // heads first (cheap, shown first), then neurons; cheap methods first
    let mut comps = opts.components.clone();
    comps.sort_by_key(|c| *c == Component::Neurons);
    for &c in &comps {
        for m in [Method::Atp, Method::Ig, Method::Ap] {
            if !opts.methods.contains(&m) {
                continue;
            }
            let t = now_ms();
            for &d in &opts.directions {
                let sweeps: Vec<SweepPair<'_, E::Run>> = prep
                    .iter()
                    .map(|p| {
                        let (base, other) = d.order(&p.clean, &p.corrupt);
                        SweepPair {
                            base,
                            other,
                            from_pos: p.pair.first_diff,
                        }
                    })
                    .collect();
                let maps = match m {
                    Method::Ap => activation_patching(e, &sweeps, c, d, &mut track).await?,
                    Method::Atp => attribution_patching(e, &sweeps, c, d, &mut track).await?,
                    Method::Ig => {
                        let rule = (opts.ig_steps, opts.ig_rule);
                        let rs = integrated_gradients(e, &sweeps, c, rule, d, &mut track).await?;
                        rs.into_iter()
                            .zip(deltas.iter_mut())
                            .map(|(r, delta)| {
                                let entry = delta.entry(d.name().to_string()).or_default();
                                match c {
                                    Component::Heads => entry.heads = Some(r.convergence_delta),
                                    Component::Neurons => entry.neurons = Some(r.convergence_delta),
                                }
                                r.scores
                            })
                            .collect()
                    }
                };
                for (res, map) in results.iter_mut().zip(maps) {
                    res.entry(m).or_default().entry(d).or_default().set(c, map);
                }
            }
            *timings
                .entry(format!("{}_{}", m.name(), c.name()))
                .or_insert(0.0) += (now_ms() - t) * share;
        }
    }
    timings.insert("total".to_string(), (now_ms() - t_start) * share);
    let mut reports = Vec::with_capacity(group.len());
    for ((p, prompts), (res, delta)) in prep.iter().zip(group).zip(results.into_iter().zip(deltas))
    {
        let (lc, lk) = (
            e.last_logits(&p.clean).await?,
            e.last_logits(&p.corrupt).await?,
        );
        reports.push(report(
            e,
            model_name,
            tok,
            prompts,
            p,
            (lc, lk),
            res,
            delta,
            opts,
            timings.clone(),
        ));
    }
    Ok(reports)
}

/// Tokenizes and checks a pair and runs both prompts (the observer may
/// pause before each).
async fn prepare<E: Engine>(
    e: &E,
    tok: &Tokenizer,
    cfg: &crate::model::Config,
    prompts: &Prompts,
    obs: &mut dyn Observer,
) -> Result<Prepared<E::Run>> {
    // a bad metric name is reported before bad prompts
    let spec = MetricSpec::parse(&prompts.metric)?;
    let pair = Pair::from_prompts(tok, cfg, prompts)?;
    super::pause(obs).await?;
    let clean = e.run(&pair.clean, &pair.metric).await?;
    super::pause(obs).await?;
    let corrupt = e.run(&pair.corrupt, &pair.metric).await?;
    Ok(Prepared {
        pair,
        spec,
        clean,
        corrupt,
    })
}

/// One pair's report from its results.
#[allow(clippy::too_many_arguments)]
fn report<E: Engine>(
    e: &E,
    model_name: &str,
    tok: &Tokenizer,
    prompts: &Prompts,
    p: &Prepared<E::Run>,
    (lc, lk): (Vec<f32>, Vec<f32>),
    results: BTreeMap<Method, BTreeMap<Direction, Maps>>,
    deltas: BTreeMap<String, Deltas>,
    opts: &Options,
    timings: BTreeMap<String, f64>,
) -> Report {
    let cfg = e.config();
    let pair = &p.pair;
    let ids = [pair.correct, pair.incorrect];
    let mut r = Report {
        schema: SCHEMA,
        model: ModelInfo {
            name: model_name.to_string(),
            n_layers: cfg.n_layers,
            n_heads: cfg.n_heads,
            d_model: cfg.d_model,
            d_mlp: cfg.d_mlp,
            n_ctx: cfg.n_ctx,
            d_vocab: cfg.d_vocab,
        },
        prompts: prompts.clone(),
        tokens: Tokens {
            clean: tok.tokens(&pair.clean),
            corrupt: tok.tokens(&pair.corrupt),
            first_diff: pair.first_diff,
            correct: tok.tokens(&[pair.correct]).remove(0),
            incorrect: tok.tokens(&[pair.incorrect]).remove(0),
        },
        metric: Metric {
            name: p.spec.name(),
            clean: e.metric(&p.clean),
            corrupt: e.metric(&p.corrupt),
            logprobs: BTreeMap::from([
                ("clean".to_string(), log_softmax_at(&lc, ids)),
                ("corrupt".to_string(), log_softmax_at(&lk, ids)),
            ]),
        },
        predictions: BTreeMap::from([
            ("clean".to_string(), predictions(tok, &lc, 10)),
            ("corrupt".to_string(), predictions(tok, &lk, 10)),
        ]),
        settings: opts.settings(),
        results: results
            .into_iter()
            .map(|(m, d)| {
                (
                    m.name().to_string(),
                    d.into_iter()
                        .map(|(d, x)| (d.name().to_string(), x))
                        .collect(),
                )
            })
            .collect(),
        ig_convergence_delta: deltas,
        analysis: Analysis::default(),
        warnings: Vec::new(),
        timings_ms: timings,
        backend: e.backend().to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    derive(&mut r, opts.top);
    r
}

/// The maps on AP's scale, in the order in which they are paired for
/// correlations; keys are "<earlier>__vs__<later>" of their names
/// (`ig_norm_clean_to_corrupt`, …).
pub const SCALED_ORDER: [(&str, Direction); 6] = [
    (IG_NORM, Direction::CleanToCorrupt),
    (IG_NORM, Direction::CorruptToClean),
    ("atp", Direction::CleanToCorrupt),
    ("atp", Direction::CorruptToClean),
    ("ap", Direction::CleanToCorrupt),
    ("ap", Direction::CorruptToClean),
];

/// The notebook's raw IG maps, correlated with every other map in
/// `analysis.correlations_raw` (for IG vs AP, r_raw = r × sign(m_base − m_other)).
pub const RAW_ORDER: [(&str, Direction); 2] = [
    ("ig", Direction::CleanToCorrupt),
    ("ig", Direction::CorruptToClean),
];

/// The report key of gap-normalised IG (IG*), derived from `ig`.
pub const IG_NORM: &str = "ig_norm";

/// The methods whose asymmetry and latent sets the analysis has, in the
/// order the views show them.
pub const ASYMMETRY_METHODS: [&str; 3] = [IG_NORM, "ap", "atp"];

pub fn map_name(m: &str, d: Direction) -> String {
    format!("{m}_{}", d.name())
}

/// The smallest |m_clean − m_corrupt| whose normalised scores mean
/// something: 1e-3 of the metric's scale s = max(1, |m_clean|, |m_corrupt|).
/// The metric's float noise is about 1e-5 · s (where the CPU and GPU
/// backends agree), and every AP, AtP and IG* score is divided by the gap,
/// so below this the noise would be over 1 % of a full effect.
pub fn small_gap_threshold(m_clean: f32, m_corrupt: f32) -> f64 {
    1e-3 * 1f64.max(m_clean.abs() as f64).max(m_corrupt.abs() as f64)
}

/// Fills in what a report derives from its scores: `results.ig_norm`
/// (IG* from `results.ig`, the metric gap and the prompt length), the whole
/// `analysis` and the `warnings`. New reports and schema-1 reports read
/// back (which had neither IG* nor the signed latent sets) both go through
/// here, so they agree exactly.
pub fn derive(r: &mut Report, top: usize) {
    let (mc, mk) = (r.metric.clean, r.metric.corrupt);
    let t = r.tokens.clean.len();
    r.results.remove(IG_NORM);
    if let Some(ig) = r.results.get("ig") {
        let mut scaled = BTreeMap::new();
        for (d, maps) in ig {
            let Ok(dir) = Direction::parse(d) else {
                continue;
            };
            // m_base − m_other
            let gap = match dir {
                Direction::CleanToCorrupt => mc - mk,
                Direction::CorruptToClean => mk - mc,
            };
            scaled.insert(
                d.clone(),
                Maps {
                    heads: maps
                        .heads
                        .as_ref()
                        .map(|m| ig_norm(m, t * r.model.d_model, gap)),
                    neurons: maps.neurons.as_ref().map(|m| ig_norm(m, t, gap)),
                },
            );
        }
        r.results.insert(IG_NORM.to_string(), scaled);
    }
    let components: Vec<Component> = r
        .settings
        .components
        .iter()
        .filter_map(|c| crate::attribution::parse_component(c).ok())
        .collect();
    r.analysis = analyse(&r.results, &components, r.settings.percentile, top);
    r.warnings.clear();
    let gap = (mc as f64 - mk as f64).abs();
    let min = small_gap_threshold(mc, mk);
    // a NaN metric (gap NaN) is flagged too
    if gap < min || gap.is_nan() {
        r.warnings.push(Warning {
            code: "small_gap".into(),
            message: format!(
                "the metric barely differs between the prompts (m_clean {mc:.6}, m_corrupt {mk:.6}, gap {gap:.2e} < {min:.1e}): \
                 AP, AtP and IG* are divided by this gap, so their float noise is over 1 % of a full effect; \
                 choose prompts the model tells apart (dataset means leave this pair out)"
            ),
        });
    }
}

/// Correlations, asymmetry, latent components, overlaps and top lists of a
/// report's results (keyed as the report: method, then direction).
pub fn analyse(
    results: &BTreeMap<String, BTreeMap<String, Maps>>,
    components: &[Component],
    percentile: f64,
    top: usize,
) -> Analysis {
    let get = |m: &str, d: Direction, c: Component| {
        results
            .get(m)
            .and_then(|x| x.get(d.name()))
            .and_then(|x| x.get(c))
    };
    let mut a = Analysis {
        percentile,
        ..Default::default()
    };
    for &c in components {
        let cname = c.name().to_string();
        let pairs = |order: &[(&str, Direction)], with: &[(&str, Direction)]| {
            let mut corr = BTreeMap::new();
            for (i, &(m1, d1)) in order.iter().enumerate() {
                for &(m2, d2) in order[i + 1..].iter().chain(with) {
                    if let (Some(x), Some(y)) = (get(m1, d1, c), get(m2, d2, c)) {
                        corr.insert(
                            format!("{}__vs__{}", map_name(m1, d1), map_name(m2, d2)),
                            pearson(&flatten(x), &flatten(y)),
                        );
                    }
                }
            }
            corr
        };
        let mut corr = pairs(&SCALED_ORDER, &[]);
        // raw IG against raw IG and every map on AP's scale but IG* (its own rescaling)
        let raw = pairs(&RAW_ORDER, &SCALED_ORDER[2..]);
        let mut asym: BTreeMap<&str, ScoreMap> = BTreeMap::new();
        for m in ASYMMETRY_METHODS {
            if let (Some(cc), Some(ccl)) = (
                get(m, Direction::CleanToCorrupt, c),
                get(m, Direction::CorruptToClean, c),
            ) {
                asym.insert(m, asymmetry(cc, ccl));
            }
        }
        for (x, y) in [(IG_NORM, "ap"), ("atp", "ap"), (IG_NORM, "atp")] {
            if let (Some(p), Some(q)) = (asym.get(x), asym.get(y)) {
                corr.insert(
                    format!("asym_{x}__vs__asym_{y}"),
                    pearson(&flatten(p), &flatten(q)),
                );
            }
        }
        a.correlations.insert(cname.clone(), corr);
        if !raw.is_empty() {
            a.correlations_raw.insert(cname.clone(), raw);
        }
        let mut latent: BTreeMap<&str, Latent> = BTreeMap::new();
        for (m, s) in &asym {
            let (and, or) = latent_sets(s, percentile);
            latent.insert(m, Latent { and, or });
            a.asymmetry
                .entry(m.to_string())
                .or_default()
                .insert(cname.clone(), Maps1(s.clone()));
        }
        for (m, l) in &latent {
            a.latent
                .entry(m.to_string())
                .or_default()
                .insert(cname.clone(), l.clone());
        }
        if let (Some(ig), Some(ap)) = (latent.get(IG_NORM), latent.get("ap")) {
            a.overlap.insert(
                cname.clone(),
                BTreeMap::from([
                    ("and".to_string(), jaccard(&ig.and, &ap.and)),
                    ("or".to_string(), jaccard(&ig.or, &ap.or)),
                ]),
            );
        }
        for (m, dirs) in results {
            for (d, maps) in dirs {
                if let Some(s) = maps.get(c) {
                    let list = top_k(s, top)
                        .into_iter()
                        .map(|(layer, index, score)| TopEntry {
                            layer,
                            index,
                            score,
                        })
                        .collect();
                    a.top
                        .entry(m.clone())
                        .or_default()
                        .entry(d.clone())
                        .or_default()
                        .insert(cname.clone(), list);
                }
            }
        }
    }
    a
}
