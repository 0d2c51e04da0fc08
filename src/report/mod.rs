//! The analysis report: the one contract between the CLI, wasm, the page,
//! exports and embeds. Serialised as JSON ([`SCHEMA`]); non-finite scores
//! are written as `null` and read back as NaN.
//!
//! `report` depends on nothing of `attribution`: `attribution` runs the
//! methods on an engine and fills a report in, while everything that reads a
//! report (the summary, merge, exports, the upgrade of old reports, the
//! page) needs only this module. So the report's vocabulary ([`Method`],
//! [`Direction`], [`ScoreMap`]) and what a report derives from its own maps
//! ([`derive`]: IG*, the analysis, the warnings) live here, and
//! `attribution` re-exports the vocabulary for its callers.

pub mod analysis;
pub mod circuit;
pub mod derive;
pub mod features;
pub mod keys;
pub mod npy;
pub mod sites;
pub mod slim;
pub mod summary;

pub use derive::derive;
pub use features::{ActiveFeatures, FeatureAnalysis, FeatureRuns, SaeInfo};
pub use keys::{parse_component, Direction, LatentKind, Method, MethodKey, ScoreMap};
pub use sites::{PatchSite, SiteMap};

use crate::engine::Component;
use crate::model::Token;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// The report's schema. 2: gap-normalised IG (`results.ig_norm`), one
/// asymmetry formula and signed latent sets on AP's scale, raw-IG
/// correlations in `analysis.correlations_raw`, `warnings`. 3: the
/// patching sites' maps (`results.<method>.<direction>.<site>`,
/// `settings.sites`). Schema-1 reports are read and brought up to 3
/// (everything new derives from their scores); schema-2 reports have no
/// site maps and are read as they are. 4: sparse-autoencoder features
/// (`results.<method>.<direction>.sae:<hook>` and `sae_by_pos:<hook>`,
/// `settings.saes`, `features`, `analysis.features`); schema-3 reports
/// have none and are read as they are.
pub const SCHEMA: u32 = 4;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema: u32,
    pub model: ModelInfo,
    pub prompts: Prompts,
    pub tokens: Tokens,
    pub metric: MetricValues,
    /// Top next-token predictions of each unpatched run.
    pub predictions: BTreeMap<String, Vec<Prediction>>,
    pub settings: Settings,
    /// results[method][direction] — method ∈ ap, atp, ig, ig_norm (IG*,
    /// derived from ig); direction ∈ clean_to_corrupt, corrupt_to_clean.
    pub results: BTreeMap<MethodKey, BTreeMap<Direction, Maps>>,
    /// ig_convergence_delta[direction].heads|neurons[layer].
    pub ig_convergence_delta: BTreeMap<Direction, Deltas>,
    pub analysis: Analysis,
    /// Direct logit attribution of both runs (logit-difference metric,
    /// when asked for; schema 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dla: Option<Dla>,
    /// The attention patterns (`blocks.L.attn.hook_pattern`) of both runs,
    /// [layer, head, dest, src], for the pattern viewer; written with any
    /// site or DLA (schema 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patterns: Option<Patterns>,
    /// features[hook_name]: each run's active features of the SAE on that
    /// hook (schema 4; `settings.saes` lists the SAEs).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, FeatureRuns>,
    /// What makes this pair's scores doubtful (`small_gap`: the metric
    /// barely differs between the prompts).
    #[serde(default)]
    pub warnings: Vec<Warning>,
    pub timings_ms: BTreeMap<String, f64>,
    pub backend: String,
    pub version: String,
    /// Set in a slim report ([`slim::slim`]): the scores are rounded and
    /// only the maps named here are kept. Absent from a full report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<Precision>,
}

/// What a slim report kept and how precisely.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Precision {
    /// Every score is rounded to this many significant digits.
    pub significant_digits: u32,
    /// The maps kept: `heads`, `neurons`, `patterns`, `dla`, site names.
    pub kept: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_model: usize,
    pub d_mlp: usize,
    pub n_ctx: usize,
    pub d_vocab: usize,
}

impl ModelInfo {
    /// A model's name and shape, as reports record them.
    pub fn of(name: &str, cfg: &crate::model::Config) -> ModelInfo {
        ModelInfo {
            name: name.to_string(),
            n_layers: cfg.n_layers,
            n_heads: cfg.n_heads,
            d_model: cfg.d_model,
            d_mlp: cfg.d_mlp,
            n_ctx: cfg.n_ctx,
            d_vocab: cfg.d_vocab,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prompts {
    pub clean: String,
    pub corrupt: String,
    pub correct: String,
    pub incorrect: String,
    pub bos: bool,
    /// The metric: "logit_diff" (default) or "greater_than:YY" (probability
    /// mass on the two-digit years above YY minus at-or-below YY).
    #[serde(default = "logit_diff")]
    pub metric: String,
}

fn logit_diff() -> String {
    "logit_diff".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tokens {
    pub clean: Vec<Token>,
    pub corrupt: Vec<Token>,
    pub first_diff: usize,
    pub correct: Token,
    pub incorrect: Token,
}

/// The metric's values of the two prompts (the metric itself is
/// [`crate::engine::Metric`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricValues {
    /// "logit_diff": logits[last, correct] − logits[last, incorrect];
    /// "greater_than:YY": Σ p(years above YY) − Σ p(years 00..YY).
    pub name: String,
    pub clean: f32,
    pub corrupt: f32,
    /// log_softmax at the last position of [correct, incorrect], per run.
    pub logprobs: BTreeMap<String, [f32; 2]>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub id: u32,
    pub text: String,
    pub logit: f32,
    pub prob: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub methods: Vec<String>,
    pub directions: Vec<String>,
    pub components: Vec<String>,
    pub ig_steps: usize,
    pub ig_rule: String,
    pub percentile: f64,
    /// The patching sites asked for beyond heads and neurons (schema 3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<PatchSite>,
    /// Whether direct logit attribution was asked for (schema 3).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dla: bool,
    /// The sparse autoencoders whose features were scored (schema 4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub saes: Vec<SaeInfo>,
}

/// Score maps of one method and direction: [layer][head] and [layer][neuron].
#[derive(Debug, Clone, Default)]
pub struct Maps {
    pub heads: Option<ScoreMap>,
    pub neurons: Option<ScoreMap>,
    /// TransformerLens's patching sites (`resid_pre`, `q_by_pos`, …), each
    /// an n-dimensional map of its own shape (schema 3).
    pub sites: BTreeMap<PatchSite, SiteMap>,
    /// SAE feature maps keyed `sae:<hook_name>` ([d_sae]) and
    /// `sae_by_pos:<hook_name>` ([T, d_sae]) (schema 4; [`features`]).
    pub features: BTreeMap<String, SiteMap>,
}

// In JSON a `Maps` is one object: `heads`, `neurons`, then each site by its
// name and each feature map by its key (sparse where that is smaller).
impl Serialize for Maps {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        if let Some(h) = &self.heads {
            m.serialize_entry("heads", h)?;
        }
        if let Some(n) = &self.neurons {
            m.serialize_entry("neurons", n)?;
        }
        for (site, map) in &self.sites {
            m.serialize_entry(site.name(), map)?;
        }
        for (key, map) in &self.features {
            m.serialize_entry(key, &features::FeatureMapOut(map))?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Maps {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Maps, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Maps;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of score maps")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Maps, A::Error> {
                let mut maps = Maps::default();
                let nested = |v: Option<Vec<Vec<Option<f32>>>>| {
                    v.map(|v| {
                        v.into_iter()
                            .map(|r| r.into_iter().map(nan).collect())
                            .collect()
                    })
                };
                while let Some(key) = a.next_key::<String>()? {
                    match key.as_str() {
                        "heads" => maps.heads = nested(a.next_value()?),
                        "neurons" => maps.neurons = nested(a.next_value()?),
                        k if features::parse_feature_key(k).is_some() => {
                            let m: features::FeatureMapIn = a.next_value()?;
                            maps.features.insert(key, m.0);
                        }
                        k => match PatchSite::ALL.into_iter().find(|s| s.name() == k) {
                            Some(site) => {
                                maps.sites.insert(site, a.next_value()?);
                            }
                            None => {
                                return Err(serde::de::Error::custom(format!(
                                    "unknown score map `{k}` (expected heads, neurons, a patching site or sae:<hook>)"
                                )))
                            }
                        },
                    }
                }
                Ok(maps)
            }
        }
        d.deserialize_map(V)
    }
}

impl Maps {
    pub fn get(&self, c: Component) -> Option<&ScoreMap> {
        match c {
            Component::Heads => self.heads.as_ref(),
            Component::Neurons => self.neurons.as_ref(),
        }
    }
    pub fn set(&mut self, c: Component, m: ScoreMap) {
        match c {
            Component::Heads => self.heads = Some(m),
            Component::Neurons => self.neurons = Some(m),
        }
    }
}

/// Direct logit attribution (TransformerLens `logit_attrs` of
/// `stack_head_results` and `decompose_resid`) of the clean and the corrupt
/// run: each component's write along w_f ⊙ (wte[correct] − wte[incorrect])
/// through ln_final at its frozen scale, at every position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dla {
    /// The rows of each run's `layers`: embed, pos_embed, then L_attn_out
    /// and L_mlp_out for every layer L.
    pub labels: Vec<String>,
    /// b_f · (wte[correct] − wte[incorrect]), the part of m no component
    /// writes: at the last position, Σ layers + bias = m.
    pub bias: f32,
    pub clean: DlaRun,
    pub corrupt: DlaRun,
}

/// Both runs' attention patterns, [layer, head, dest, src] each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Patterns {
    pub clean: SiteMap,
    pub corrupt: SiteMap,
}

/// One run's direct logit attribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlaRun {
    /// [layer, head, pos].
    pub heads: SiteMap,
    /// [2 + 2·layers, pos], rows named by `Dla::labels`.
    pub layers: SiteMap,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Deltas {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_vec"
    )]
    pub heads: Option<Vec<f32>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_vec"
    )]
    pub neurons: Option<Vec<f32>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Analysis {
    pub percentile: f64,
    /// correlations[heads|neurons]["A__vs__B"] = Pearson r (null if
    /// undefined) of maps on AP's scale: A, B among ig_norm_, atp_, ap_ ×
    /// clean_to_corrupt / corrupt_to_clean; plus asym_ig_norm__vs__asym_ap,
    /// asym_atp__vs__asym_ap and asym_ig_norm__vs__asym_atp.
    pub correlations: BTreeMap<Component, BTreeMap<String, Option<f64>>>,
    /// Raw IG (`ig_…`, captum's means, not on AP's scale) against raw IG,
    /// AtP and AP. For raw IG vs AP, r_raw = r(IG*, AP) × sign(m_base − m_other).
    #[serde(default)]
    pub correlations_raw: BTreeMap<Component, BTreeMap<String, Option<f64>>>,
    /// asymmetry[ig_norm|ap|atp][heads|neurons] = A = (S_ccl − S_cc) /
    /// max|S_ccl − S_cc| (needs both directions).
    pub asymmetry: BTreeMap<MethodKey, BTreeMap<Component, Maps1>>,
    /// latent[ig_norm|ap|atp][heads|neurons] = AND (A > 0) / OR (A < 0)
    /// components with |A| ≥ its p-quantile, as [layer, index].
    pub latent: BTreeMap<MethodKey, BTreeMap<Component, LatentSets>>,
    /// overlap[heads|neurons][and|or] = Jaccard of IG*'s and AP's sets.
    pub overlap: BTreeMap<Component, BTreeMap<LatentKind, f64>>,
    /// top[method][direction][heads|neurons]: largest |score| first.
    pub top: BTreeMap<MethodKey, BTreeMap<Direction, BTreeMap<Component, Vec<TopEntry>>>>,
    /// features[hook_name]: the same analysis of each SAE's feature maps
    /// over all positions (schema 4).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, FeatureAnalysis>,
}

/// A single score map wrapped so that nulls read back as NaN.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Maps1(#[serde(deserialize_with = "map")] pub ScoreMap);

/// The latent AND and OR components of one asymmetry map, as [layer, index].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatentSets {
    pub and: Vec<[usize; 2]>,
    pub or: Vec<[usize; 2]>,
}

impl LatentSets {
    pub fn get(&self, kind: LatentKind) -> &[[usize; 2]] {
        match kind {
            LatentKind::And => &self.and,
            LatentKind::Or => &self.or,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopEntry {
    pub layer: usize,
    pub index: usize,
    pub score: f32,
}

fn nan(v: Option<f32>) -> f32 {
    v.unwrap_or(f32::NAN)
}

fn map<'de, D: Deserializer<'de>>(d: D) -> Result<ScoreMap, D::Error> {
    let v: Vec<Vec<Option<f32>>> = Deserialize::deserialize(d)?;
    Ok(v.into_iter()
        .map(|r| r.into_iter().map(nan).collect())
        .collect())
}

fn opt_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<f32>>, D::Error> {
    let v: Option<Vec<Option<f32>>> = Deserialize::deserialize(d)?;
    Ok(v.map(|v| v.into_iter().map(nan).collect()))
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("reports serialise")
    }
    /// Reads a report; a schema-1 report is brought up to this schema (its
    /// IG*, analysis and warnings derived from its scores).
    pub fn from_json(s: &str) -> crate::Result<Report> {
        let mut r: Report = serde_json::from_str(s)
            .map_err(|e| crate::Error::Input(format!("not a patchlab report: {e}")))?;
        match r.schema {
            SCHEMA => {}
            2 | 3 => r.schema = SCHEMA,
            1 => {
                let top = r
                    .analysis
                    .top
                    .values()
                    .flat_map(|d| d.values())
                    .flat_map(|c| c.values())
                    .map(Vec::len)
                    .max()
                    .unwrap_or(10);
                derive(&mut r, top);
                r.schema = SCHEMA;
            }
            other => {
                return Err(crate::Error::Input(format!(
                    "report schema {other} is not supported (this patchlab reads schemas 1 to {SCHEMA}; a newer patchlab wrote it)"
                )))
            }
        }
        Ok(r)
    }
}
