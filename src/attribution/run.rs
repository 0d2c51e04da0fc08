//! The whole analysis of one prompt pair, as the report describes it.

use super::atp::attribution_patching;
use super::cost::{self, Estimate};
use super::dla::{direct_logit_attribution, layer_labels};
use super::features::{
    assumed_feature_flops, feature_flops, feature_scores, sae_features, FeatureAsk,
};
use super::integrated_gradients::integrated_gradients;
use super::pair::MetricSpec;
use super::patching::activation_patching;
use super::quadrature::Rule;
use super::sites::{site_scores, SiteAsk};
use super::{Direction, Method, Observer, Pair, Tracker};
use crate::clock::now_ms;
use crate::engine::{Component, Engine, Metric, SweepPair};
use crate::error::{Error, Result};
use crate::model::sae::Sae;
use crate::model::Tokenizer;
use crate::report::{
    derive, Analysis, Deltas, Dla, Maps, MethodKey, MetricValues, ModelInfo, PatchSite, Patterns,
    Prediction, Prompts, Report, ScoreMap, Settings, SiteMap, SCHEMA,
};
use crate::report::{features::feature_key, FeatureRuns, SaeInfo};
use std::collections::BTreeMap;
use std::sync::Arc;

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
    /// TransformerLens's patching sites to score besides `components`.
    pub sites: Vec<PatchSite>,
    /// Direct logit attribution of both runs (logit-difference metric only).
    pub dla: bool,
    /// The most matrix-product FLOPs one engine call should do: AP's
    /// patches and IG's path points are split to fit (`cost`), so a host
    /// that must answer Cancel within a second can pause that often. `None`
    /// lets each call be as large as the engine's passes allow. Not a
    /// setting of the report: it changes no number beyond float noise.
    pub work_per_call: Option<f64>,
    /// Sparse autoencoders whose features to score (one per hook).
    pub saes: Vec<Arc<Sae>>,
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
            sites: vec![],
            dla: false,
            work_per_call: None,
            saes: vec![],
        }
    }
}

impl Options {
    /// Refuses options that no pair can be analysed with.
    pub fn check(&self) -> Result<()> {
        if self.methods.is_empty()
            || self.directions.is_empty()
            || (self.components.is_empty()
                && self.sites.is_empty()
                && !self.dla
                && self.saes.is_empty())
        {
            return Err(Error::Input(
                "choose at least one method, one direction and one component kind, site or SAE"
                    .into(),
            ));
        }
        for (i, a) in self.saes.iter().enumerate() {
            if let Some(b) = self.saes[..i].iter().find(|b| b.hook_name == a.hook_name) {
                return Err(Error::Input(format!(
                    "two SAEs read {}: {} and {}; give one SAE per hook",
                    a.hook_name, b.name, a.name
                )));
            }
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
            sites: self.sites.clone(),
            dla: self.dla,
            saes: self.saes.iter().map(|s| SaeInfo::of(s)).collect(),
        }
    }

    /// The (component kind, method) phases in the order they run: heads
    /// first (cheap, shown first), then neurons; cheap methods first.
    pub fn component_phases(&self) -> Vec<(Component, Method)> {
        let mut comps = self.components.clone();
        comps.sort_by_key(|c| *c == Component::Neurons);
        comps
            .into_iter()
            .flat_map(|c| [Method::Atp, Method::Ig, Method::Ap].map(|m| (c, m)))
            .filter(|(_, m)| self.methods.contains(m))
            .collect()
    }

    /// What analysing pairs of these (tokens, first differing position)
    /// will cost, phase by phase (`cost`).
    pub fn estimate(&self, cfg: &crate::model::Config, pairs: &[(usize, usize)]) -> Estimate {
        cost::estimate(cfg, self, pairs)
    }

    /// Progress units of analysing pairs of these (tokens, first differing
    /// position): the FLOPs after the forwards.
    pub fn work(&self, cfg: &crate::model::Config, pairs: &[(usize, usize)]) -> u64 {
        cost::units(self.estimate(cfg, pairs).tracked_flops())
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

impl<R> Prepared<R> {
    /// The pair as a sweep in direction `d`: its base run, the run patched
    /// in, from its first differing position.
    fn sweep(&self, d: Direction) -> SweepPair<'_, R> {
        let (base, other) = d.order(&self.clean, &self.corrupt);
        SweepPair {
            base,
            other,
            first_diff: self.pair.first_diff,
        }
    }
}

/// One pair's scores, as the sweeps fill them in.
#[derive(Clone, Default)]
struct Scores {
    results: BTreeMap<MethodKey, BTreeMap<Direction, Maps>>,
    deltas: BTreeMap<Direction, Deltas>,
    /// Each SAE's active features of both runs, by hook name.
    features: BTreeMap<String, FeatureRuns>,
}

impl Scores {
    /// Method `m`'s map of component kind `c` in direction `d`.
    fn set_map(&mut self, m: Method, d: Direction, c: Component, map: ScoreMap) {
        let by_dir = self.results.entry(m.into()).or_default();
        by_dir.entry(d).or_default().set(c, map);
    }

    /// IG's convergence deltas (one per layer) of component kind `c` in
    /// direction `d`.
    fn set_delta(&mut self, d: Direction, c: Component, delta: Vec<f32>) {
        let entry = self.deltas.entry(d).or_default();
        match c {
            Component::Heads => entry.heads = Some(delta),
            Component::Neurons => entry.neurons = Some(delta),
        }
    }
}

/// What the reports of a group share.
struct Shared<'a> {
    model_name: &'a str,
    tok: &'a Tokenizer,
    opts: &'a Options,
    timings: BTreeMap<String, f64>,
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
    for sae in &opts.saes {
        sae.check_model(&cfg)?;
    }
    let share = 1.0 / group.len() as f64;
    let mut timings = BTreeMap::new();
    let t0 = now_ms();
    let prep = prepare_group(e, tok, &cfg, group, obs).await?;
    timings.insert("forward".to_string(), (now_ms() - t0) * share / 2.0);

    let shapes: Vec<(usize, usize)> = prep
        .iter()
        .map(|p| (p.pair.clean.len(), p.pair.first_diff))
        .collect();
    let mut track = Tracker::new(obs, opts.work(&cfg, &shapes)).with_budget(opts.work_per_call);
    track.advance("forward", 0)?;
    let mut scores = vec![Scores::default(); group.len()];
    for (key, ms) in score_components(e, opts, &prep, &mut scores, &mut track).await? {
        *timings.entry(key).or_insert(0.0) += ms * share;
    }
    if !opts.sites.is_empty() {
        let t = now_ms();
        score_sites(e, opts, &prep, &mut scores, &mut track).await?;
        timings.insert("sites".to_string(), (now_ms() - t) * share);
    }
    if !opts.saes.is_empty() {
        let t = now_ms();
        score_features(e, opts, &prep, &mut scores, &mut track).await?;
        timings.insert("features".to_string(), (now_ms() - t) * share);
    }
    let dlas = group_dla(e, opts, &prep, &mut track).await?;
    track.finish("reports")?;
    timings.insert("total".to_string(), (now_ms() - t_start) * share);
    let shared = Shared {
        model_name,
        tok,
        opts,
        timings,
    };
    group_reports(e, &shared, group, &prep, scores, dlas).await
}

/// Tokenizes, checks and runs every pair of a group (`prepare`); an input
/// error names its pair when the group has several.
async fn prepare_group<E: Engine>(
    e: &E,
    tok: &Tokenizer,
    cfg: &crate::model::Config,
    group: &[Prompts],
    obs: &mut dyn Observer,
) -> Result<Vec<Prepared<E::Run>>> {
    let mut prep = Vec::with_capacity(group.len());
    for (i, prompts) in group.iter().enumerate() {
        let p = prepare(e, tok, cfg, prompts, obs)
            .await
            .map_err(|err| match err {
                Error::Input(m) if group.len() > 1 => {
                    Error::Input(format!("pair {} of the group: {m}", i + 1))
                }
                err => err,
            })?;
        prep.push(p);
    }
    Ok(prep)
}

/// AP, IG and AtP of every requested component kind and direction into
/// each pair's scores, every sweep one engine call for the whole group.
/// Returns the milliseconds of each (method, component kind), keyed as the
/// report's timings are, in the order they ran.
async fn score_components<E: Engine>(
    e: &E,
    opts: &Options,
    prep: &[Prepared<E::Run>],
    scores: &mut [Scores],
    track: &mut Tracker<'_>,
) -> Result<Vec<(String, f64)>> {
    let mut times = Vec::new();
    for (c, m) in opts.component_phases() {
        let t = now_ms();
        for &d in &opts.directions {
            let sweeps: Vec<SweepPair<'_, E::Run>> = prep.iter().map(|p| p.sweep(d)).collect();
            let (maps, deltas) = method_maps(e, m, &sweeps, c, d, opts, track).await?;
            for (s, map) in scores.iter_mut().zip(maps) {
                s.set_map(m, d, c, map);
            }
            if let Some(deltas) = deltas {
                for (s, delta) in scores.iter_mut().zip(deltas) {
                    s.set_delta(d, c, delta);
                }
            }
        }
        times.push((format!("{}_{}", m.name(), c.name()), now_ms() - t));
    }
    Ok(times)
}

/// One method's maps of one component kind in direction `d`, one per pair
/// of `sweeps`; for IG, each pair's convergence deltas beside them.
async fn method_maps<E: Engine>(
    e: &E,
    m: Method,
    sweeps: &[SweepPair<'_, E::Run>],
    c: Component,
    d: Direction,
    opts: &Options,
    track: &mut Tracker<'_>,
) -> Result<(Vec<ScoreMap>, Option<Vec<Vec<f32>>>)> {
    Ok(match m {
        Method::Ap => (activation_patching(e, sweeps, c, d, track).await?, None),
        Method::Atp => (attribution_patching(e, sweeps, c, d, track).await?, None),
        Method::Ig => {
            let rule = (opts.ig_steps, opts.ig_rule);
            let rs = integrated_gradients(e, sweeps, c, rule, d, track).await?;
            let (maps, deltas) = rs
                .into_iter()
                .map(|r| (r.scores, r.convergence_delta))
                .unzip();
            (maps, Some(deltas))
        }
    })
}

/// The requested methods at the requested patching sites, pair by pair and
/// direction by direction, into each pair's scores.
async fn score_sites<E: Engine>(
    e: &E,
    opts: &Options,
    prep: &[Prepared<E::Run>],
    scores: &mut [Scores],
    track: &mut Tracker<'_>,
) -> Result<()> {
    let ask = SiteAsk {
        sites: &opts.sites,
        methods: &opts.methods,
        ig_steps: opts.ig_steps,
        ig_rule: opts.ig_rule,
    };
    for (p, s) in prep.iter().zip(scores.iter_mut()) {
        for &d in &opts.directions {
            let maps = site_scores(e, p.sweep(d), &ask, d, track).await?;
            for (m, by_site) in maps {
                let entry = s.results.entry(m).or_default().entry(d).or_default();
                entry.sites.extend(by_site);
            }
        }
    }
    Ok(())
}

/// Every SAE's features, pair by pair and direction by direction, into each
/// pair's scores, with both runs' active features.
async fn score_features<E: Engine>(
    e: &E,
    opts: &Options,
    prep: &[Prepared<E::Run>],
    scores: &mut [Scores],
    track: &mut Tracker<'_>,
) -> Result<()> {
    let ask = FeatureAsk {
        methods: &opts.methods,
        ig_steps: opts.ig_steps,
        ig_rule: opts.ig_rule,
    };
    let cfg = e.config();
    for (p, s) in prep.iter().zip(scores.iter_mut()) {
        for sae in &opts.saes {
            track.pause().await?;
            let clean = sae_features(e, &p.clean, sae).await?;
            let corrupt = sae_features(e, &p.corrupt, sae).await?;
            let shape = (p.pair.clean.len(), p.pair.first_diff);
            for &d in &opts.directions {
                let runs = d.order(&clean[..], &corrupt[..]);
                let work = feature_flops(cfg, sae, &opts.methods, opts.ig_steps, shape, runs);
                let assumed = assumed_feature_flops(cfg, sae, &opts.methods, opts.ig_steps, shape);
                track.revise(super::cost::units(assumed), super::cost::units(work));
                let maps = feature_scores(e, p.sweep(d), sae, runs, &ask, d, track).await?;
                for (m, fm) in maps {
                    let entry = s.results.entry(m).or_default().entry(d).or_default();
                    entry
                        .features
                        .insert(feature_key(&sae.hook_name, false), fm.all);
                    entry
                        .features
                        .insert(feature_key(&sae.hook_name, true), fm.by_pos);
                }
            }
            s.features.insert(
                sae.hook_name.clone(),
                FeatureRuns {
                    clean: crate::report::ActiveFeatures::of(&clean, sae.d_sae),
                    corrupt: crate::report::ActiveFeatures::of(&corrupt, sae.d_sae),
                },
            );
        }
    }
    Ok(())
}

/// Each pair's direct logit attribution of its clean and corrupt runs, when
/// asked for and the metric is a logit difference.
async fn group_dla<E: Engine>(
    e: &E,
    opts: &Options,
    prep: &[Prepared<E::Run>],
    track: &mut Tracker<'_>,
) -> Result<Vec<Option<Dla>>> {
    let mut dlas = Vec::with_capacity(prep.len());
    for p in prep {
        let dla = match (&p.pair.metric, opts.dla) {
            (Metric::LogitDiff { correct, incorrect }, true) => {
                let answers = (*correct, *incorrect);
                let (clean, bias) = direct_logit_attribution(e, &p.clean, answers, track).await?;
                let (corrupt, _) = direct_logit_attribution(e, &p.corrupt, answers, track).await?;
                Some(Dla {
                    labels: layer_labels(e.config().n_layers),
                    bias,
                    clean,
                    corrupt,
                })
            }
            _ => None,
        };
        dlas.push(dla);
    }
    Ok(dlas)
}

/// Every pair's report from its scores and DLA, with its last-position
/// logits and, where DLA or sites were asked for, its attention patterns.
async fn group_reports<E: Engine>(
    e: &E,
    shared: &Shared<'_>,
    group: &[Prompts],
    prep: &[Prepared<E::Run>],
    scores: Vec<Scores>,
    dlas: Vec<Option<Dla>>,
) -> Result<Vec<Report>> {
    let opts = shared.opts;
    let mut reports = Vec::with_capacity(group.len());
    for (((p, prompts), s), dla) in prep.iter().zip(group).zip(scores).zip(dlas) {
        let logits = (
            e.last_logits(&p.clean).await?,
            e.last_logits(&p.corrupt).await?,
        );
        let mut r = report(e, shared, prompts, p, logits, s);
        r.dla = dla;
        if opts.dla || !opts.sites.is_empty() {
            r.patterns = Some(Patterns {
                clean: patterns(e, &p.clean).await?,
                corrupt: patterns(e, &p.corrupt).await?,
            });
        }
        reports.push(r);
    }
    Ok(reports)
}

/// A run's attention patterns, [layer, head, dest, src].
async fn patterns<E: Engine>(e: &E, run: &E::Run) -> Result<SiteMap> {
    let cfg = e.config();
    let mut values = Vec::new();
    let mut t = 0;
    for l in 0..cfg.n_layers {
        let a = e
            .activation(run, &format!("blocks.{l}.attn.hook_pattern"))
            .await?;
        t = a.shape[1];
        values.extend(a.data);
    }
    Ok(SiteMap {
        shape: vec![cfg.n_layers, cfg.n_heads, t, t],
        values,
    })
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

/// One pair's report from its scores and the last-position logits of its
/// clean and corrupt runs.
fn report<E: Engine>(
    e: &E,
    shared: &Shared<'_>,
    prompts: &Prompts,
    p: &Prepared<E::Run>,
    (lc, lk): (Vec<f32>, Vec<f32>),
    scores: Scores,
) -> Report {
    let Shared {
        model_name,
        tok,
        opts,
        ..
    } = shared;
    let cfg = e.config();
    let pair = &p.pair;
    let ids = [pair.correct, pair.incorrect];
    let mut r = Report {
        schema: SCHEMA,
        model: ModelInfo::of(model_name, cfg),
        prompts: prompts.clone(),
        tokens: pair.tokens(tok),
        metric: MetricValues {
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
        results: scores.results,
        ig_convergence_delta: scores.deltas,
        analysis: Analysis::default(),
        dla: None,
        patterns: None,
        features: scores.features,
        warnings: Vec::new(),
        timings_ms: shared.timings.clone(),
        backend: e.backend().to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        precision: None,
    };
    derive(&mut r, opts.top);
    r
}
