//! The dataset summary (docs/methods.md, "Datasets"): the analysis's
//! correlations, overlaps and metrics over many prompt pairs,
//! recomputed from the per-pair reports alone (so `merge` can rebuild it from
//! any set of shards).
//!
//! Every statistic keeps its distribution: `per_pair` holds one value per
//! pair in pair order (null where the value is undefined, e.g. Pearson r of
//! a constant map), and `mean` / `std` are taken over the defined values.
//! `std` is the population standard deviation (ddof 0, as `numpy.std`).

use super::{Direction, MethodKey, ModelInfo, PatchSite, Report, Settings, SiteMap};
use crate::engine::Component;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Tells a summary file from a report.
pub const SUMMARY_KIND: &str = "patchlab-summary";
/// 2: correlations on AP's scale (IG*), `correlations_raw`, `mean_abs`,
/// pairs with a small metric gap left out (`excluded`).
pub const SUMMARY_SCHEMA: u32 = 2;

/// One statistic over the pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub per_pair: Vec<Option<f64>>,
    /// Pairs where the value is defined.
    pub n: usize,
    pub mean: Option<f64>,
    pub std: Option<f64>,
    /// The mean of |value| (for correlations: the average strength of
    /// agreement, whatever each pair's sign).
    pub mean_abs: Option<f64>,
    pub min: Option<f64>,
    /// numpy.median: the mean of the two middle values for an even count.
    pub median: Option<f64>,
    pub max: Option<f64>,
}

impl Stat {
    pub fn of(per_pair: Vec<Option<f64>>) -> Stat {
        let mut defined: Vec<f64> = per_pair
            .iter()
            .flatten()
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        let n = defined.len();
        if n == 0 {
            return Stat {
                per_pair,
                n,
                mean: None,
                std: None,
                mean_abs: None,
                min: None,
                median: None,
                max: None,
            };
        }
        let mean = defined.iter().sum::<f64>() / n as f64;
        let var = defined.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        let mean_abs = defined.iter().map(|x| x.abs()).sum::<f64>() / n as f64;
        defined.sort_by(|a, b| a.total_cmp(b));
        let median = if n % 2 == 1 {
            defined[n / 2]
        } else {
            (defined[n / 2 - 1] + defined[n / 2]) / 2.0
        };
        Stat {
            per_pair,
            n,
            mean: Some(mean),
            std: Some(var.sqrt()),
            mean_abs: Some(mean_abs),
            min: Some(defined[0]),
            median: Some(median),
            max: Some(defined[n - 1]),
        }
    }
}

/// Where the pairs came from, so shards of different datasets are not merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// "task:ioi" or "file:pairs.csv".
    pub source: String,
    /// Generator seed (tasks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Pairs in the whole dataset (all shards).
    pub total: usize,
}

/// One pair's line in the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairEntry {
    /// Index in the whole dataset; the report is `pairs/<index:04>.json`.
    pub index: usize,
    pub clean: String,
    pub corrupt: String,
    pub correct: String,
    pub incorrect: String,
    pub n_tokens: usize,
    pub metric_clean: f32,
    pub metric_corrupt: f32,
    /// The report's warning codes (`small_gap`, …).
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub schema: u32,
    pub kind: String,
    pub dataset: DatasetInfo,
    pub model: ModelInfo,
    pub settings: Settings,
    pub backend: String,
    pub n_pairs: usize,
    /// Dataset indices no report was found for (an unfinished or missing shard).
    pub missing: Vec<usize>,
    /// Whether pairs with a small metric gap count in the correlations and
    /// overlaps (`--include-small-gap`); by default they are left out.
    pub include_small_gap: bool,
    /// Dataset indices of the pairs left out of the correlations, overlaps
    /// and site maps: their |m_clean − m_corrupt| is too small for normalised
    /// scores to mean anything (their per_pair values are null).
    pub excluded: Vec<usize>,
    pub pairs: Vec<PairEntry>,
    /// metric.{clean|corrupt}: the metric of each pair's two prompts.
    pub metric: BTreeMap<String, Stat>,
    /// correlations.{heads|neurons}."<A>__vs__<B>": Pearson r per pair of
    /// maps on AP's scale, A, B among ig_norm_ / atp_ / ap_ ×
    /// clean_to_corrupt / corrupt_to_clean, and asym_ig_norm__vs__asym_ap
    /// (and the AtP asymmetries): the reports' `analysis.correlations`.
    pub correlations: BTreeMap<String, BTreeMap<String, Stat>>,
    /// The same for the raw IG maps (`analysis.correlations_raw`).
    pub correlations_raw: BTreeMap<String, BTreeMap<String, Stat>>,
    /// overlap.{heads|neurons}.{and|or}: Jaccard of IG*'s and AP's latent sets.
    pub overlap: BTreeMap<String, BTreeMap<String, Stat>>,
    /// Seconds spent on the pairs, summed over the reports' totals.
    pub compute_s: f64,
    /// site_maps.<method>.<direction>.<site>: each cell's mean and std over
    /// the pairs (the patching sites' maps, when the reports have them).
    /// Maps with a position axis average only the pairs whose positions
    /// align (`site_alignment`); the others every pair. Pairs left out of
    /// the correlations (small gap) are left out here too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub site_maps: SiteTable,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_alignment: Option<Alignment>,
    /// feature_maps.<method>.<direction>."sae:<hook>" (and
    /// "sae_by_pos:<hook>"): each SAE feature's mean and std over the pairs
    /// that count, written sparse like the reports' feature maps. By-position
    /// maps average only the pairs whose positions align (the alignment of
    /// `site_alignment`, computed the same way), the others every pair.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub feature_maps: FeatureTable,
}

/// feature_maps.<method>.<direction>.<key>.
pub type FeatureTable = BTreeMap<MethodKey, BTreeMap<Direction, BTreeMap<String, FeatureStats>>>;

/// An SAE feature map's cells over the pairs (as [`SiteStats`], sparse in JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureStats {
    pub n: usize,
    #[serde(serialize_with = "sparse_out", deserialize_with = "sparse_in")]
    pub mean: SiteMap,
    #[serde(serialize_with = "sparse_out", deserialize_with = "sparse_in")]
    pub std: SiteMap,
}

fn sparse_out<S: serde::Serializer>(m: &SiteMap, s: S) -> std::result::Result<S::Ok, S::Error> {
    super::features::FeatureMapOut(m).serialize(s)
}

fn sparse_in<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<SiteMap, D::Error> {
    Ok(super::features::FeatureMapIn::deserialize(d)?.0)
}

/// site_maps.<method>.<direction>.<site>.
pub type SiteTable = BTreeMap<MethodKey, BTreeMap<Direction, BTreeMap<PatchSite, SiteStats>>>;

/// A site map's cells over the pairs: mean and population std (ddof 0) of
/// each cell's finite values, and how many pairs went in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteStats {
    pub n: usize,
    pub mean: SiteMap,
    pub std: SiteMap,
}

/// Which pairs' positions line up: those of the most common (token count,
/// first differing position), i.e. one template. The others are listed,
/// never mixed into a positional map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alignment {
    pub n_tokens: usize,
    pub first_diff: usize,
    /// Dataset indices averaged in the positional maps.
    pub aligned: Vec<usize>,
    /// Dataset indices whose token count or first differing position differ.
    pub not_aligned: Vec<usize>,
}

/// Mean and std per cell of the maps of `pairs` (all of one shape).
fn cell_stats(maps: &[&SiteMap]) -> Option<SiteStats> {
    let first = maps.first()?;
    if maps.iter().any(|m| m.shape != first.shape) {
        return None;
    }
    let cells = first.values.len();
    let (mut mean, mut std) = (
        SiteMap::zeros(first.shape.clone()),
        SiteMap::zeros(first.shape.clone()),
    );
    for c in 0..cells {
        let vals: Vec<f64> = maps
            .iter()
            .map(|m| m.values[c] as f64)
            .filter(|v| v.is_finite())
            .collect();
        if vals.is_empty() {
            mean.values[c] = f32::NAN;
            std.values[c] = f32::NAN;
            continue;
        }
        let mu = vals.iter().sum::<f64>() / vals.len() as f64;
        let var = vals.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / vals.len() as f64;
        mean.values[c] = mu as f32;
        std.values[c] = var.sqrt() as f32;
    }
    Some(SiteStats {
        n: maps.len(),
        mean,
        std,
    })
}

/// The sites' and features' per-cell statistics of the counted pairs, and
/// which of them align.
fn site_maps(counted: &[&(usize, Report)]) -> (SiteTable, FeatureTable, Option<Alignment>) {
    let has = |f: fn(&super::Maps) -> bool| {
        counted
            .iter()
            .any(|(_, r)| r.results.values().flat_map(|d| d.values()).any(f))
    };
    let (has_sites, has_features) = (
        has(|m| !m.sites.is_empty()),
        has(|m| !m.features.is_empty()),
    );
    if !has_sites && !has_features {
        return (BTreeMap::new(), BTreeMap::new(), None);
    }
    // the most common (token count, first difference); ties: the earliest pair's
    let mut groups: Vec<((usize, usize), Vec<usize>)> = Vec::new();
    for (i, r) in counted {
        let key = (r.tokens.clean.len(), r.tokens.first_diff);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(*i),
            None => groups.push((key, vec![*i])),
        }
    }
    let best = groups.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let ((n_tokens, first_diff), aligned) = groups
        .iter()
        .find(|(_, v)| v.len() == best)
        .cloned()
        .expect("a pair");
    let not_aligned: Vec<usize> = counted
        .iter()
        .map(|(i, _)| *i)
        .filter(|i| !aligned.contains(i))
        .collect();
    let mut out = SiteTable::new();
    let first = &counted[0].1;
    for (&m, dirs) in &first.results {
        for (&d, maps) in dirs {
            for &site in maps.sites.keys() {
                let positional = site.axes().iter().any(|a| *a != "layer" && *a != "head");
                let these: Vec<&SiteMap> = counted
                    .iter()
                    .filter(|(i, _)| !positional || aligned.contains(i))
                    .filter_map(|(_, r)| r.results.get(&m)?.get(&d)?.sites.get(&site))
                    .collect();
                if let Some(st) = cell_stats(&these) {
                    out.entry(m)
                        .or_default()
                        .entry(d)
                        .or_default()
                        .insert(site, st);
                }
            }
        }
    }
    let mut features = FeatureTable::new();
    for (&m, dirs) in &first.results {
        for (&d, maps) in dirs {
            for key in maps.features.keys() {
                let positional = key.starts_with(super::features::BY_POS);
                let these: Vec<&SiteMap> = counted
                    .iter()
                    .filter(|(i, _)| !positional || aligned.contains(i))
                    .filter_map(|(_, r)| r.results.get(&m)?.get(&d)?.features.get(key))
                    .collect();
                if let Some(st) = cell_stats(&these) {
                    let stats = FeatureStats {
                        n: st.n,
                        mean: st.mean,
                        std: st.std,
                    };
                    features
                        .entry(m)
                        .or_default()
                        .entry(d)
                        .or_default()
                        .insert(key.clone(), stats);
                }
            }
        }
    }
    let alignment = Alignment {
        n_tokens,
        first_diff,
        aligned,
        not_aligned,
    };
    (out, features, Some(alignment))
}

impl Summary {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("summaries serialise")
    }
    pub fn from_json(s: &str) -> Result<Summary> {
        let v: Summary = serde_json::from_str(s)
            .map_err(|e| Error::Input(format!("not a patchlab summary: {e}")))?;
        if v.kind != SUMMARY_KIND || v.schema != SUMMARY_SCHEMA {
            return Err(Error::Input(format!(
                "summary kind `{}` schema {} is not `{SUMMARY_KIND}` schema {SUMMARY_SCHEMA}",
                v.kind, v.schema
            )));
        }
        Ok(v)
    }

    /// The dataset a summary.json describes, from any schema of summary
    /// (what `merge` needs of a shard written by an older patchlab).
    pub fn dataset_of(s: &str) -> Result<DatasetInfo> {
        #[derive(Deserialize)]
        struct Head {
            kind: String,
            schema: u32,
            dataset: DatasetInfo,
        }
        let h: Head = serde_json::from_str(s)
            .map_err(|e| Error::Input(format!("not a patchlab summary: {e}")))?;
        if h.kind != SUMMARY_KIND || h.schema == 0 || h.schema > SUMMARY_SCHEMA {
            return Err(Error::Input(format!(
                "summary kind `{}` schema {} is not `{SUMMARY_KIND}` schema 1 to {SUMMARY_SCHEMA}",
                h.kind, h.schema
            )));
        }
        Ok(h.dataset)
    }
}

/// Checks that two reports can be averaged together: same model shape and
/// the same settings.
fn compatible(a: &Report, b: &Report) -> Result<()> {
    if a.model != b.model {
        return Err(Error::Input(format!(
            "the reports come from different models ({} and {}): summarise one model at a time",
            a.model.name, b.model.name
        )));
    }
    if a.settings != b.settings {
        return Err(Error::Input(
            "the reports were computed with different settings (methods, directions, \
             components, IG steps or percentile): rerun them with the same options"
                .into(),
        ));
    }
    Ok(())
}

/// Values of one pair by component kind and key, named as the summary
/// names them.
type Table = BTreeMap<String, BTreeMap<String, Option<f64>>>;

/// A report's correlations as a [`Table`].
fn correlation_table(t: &BTreeMap<Component, BTreeMap<String, Option<f64>>>) -> Table {
    t.iter()
        .map(|(c, m)| (c.name().to_string(), m.clone()))
        .collect()
}

/// Per component kind and key, the statistic of the pairs' values; over the
/// union of keys, so a key a pair lacks reads as undefined there.
fn table(
    sorted: &[&(usize, Report)],
    values: impl Fn(&Report) -> Table,
) -> BTreeMap<String, BTreeMap<String, Stat>> {
    let per_pair: Vec<Table> = sorted.iter().map(|(_, r)| values(r)).collect();
    let mut keys: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for t in &per_pair {
        for (c, m) in t {
            keys.entry(c.clone()).or_default().extend(m.keys().cloned());
        }
    }
    keys.into_iter()
        .map(|(c, ks)| {
            let stats = ks
                .into_iter()
                .map(|k| {
                    let v = per_pair
                        .iter()
                        .map(|t| t.get(&c).and_then(|m| m.get(&k)).copied().flatten())
                        .collect();
                    (k, Stat::of(v))
                })
                .collect();
            (c, stats)
        })
        .collect()
}

/// Whether a report's pair counts in a summary's correlations and overlaps.
fn counts(r: &Report, include_small_gap: bool) -> bool {
    include_small_gap || !r.warnings.iter().any(|w| w.code == "small_gap")
}

/// The summary of the reports `(dataset index, report)`, sorted by index;
/// pairs with a small metric gap are left out of the correlations and
/// overlaps unless `include_small_gap`.
pub fn summarize(
    dataset: DatasetInfo,
    reports: &[(usize, Report)],
    include_small_gap: bool,
) -> Result<Summary> {
    let sorted = sorted_checked(reports)?;
    let (_, first) = &reports[0];
    let total = dataset
        .total
        .max(sorted.last().map(|(i, _)| i + 1).unwrap_or(0));
    let excluded: Vec<usize> = sorted
        .iter()
        .filter(|(_, r)| !counts(r, include_small_gap))
        .map(|(i, _)| *i)
        .collect();
    let tables = pair_tables(&sorted, include_small_gap);
    let (site_maps, feature_maps, site_alignment) = site_summary(&sorted, include_small_gap);
    Ok(Summary {
        schema: SUMMARY_SCHEMA,
        kind: SUMMARY_KIND.to_string(),
        dataset: DatasetInfo { total, ..dataset },
        model: first.model.clone(),
        settings: first.settings.clone(),
        backend: backends(&sorted),
        n_pairs: sorted.len(),
        missing: missing(&sorted, total),
        include_small_gap,
        excluded,
        pairs: sorted.iter().map(|(i, r)| PairEntry::of(*i, r)).collect(),
        metric: metric_stats(&sorted),
        correlations: tables.correlations,
        correlations_raw: tables.correlations_raw,
        overlap: tables.overlap,
        compute_s: sorted
            .iter()
            .map(|(_, r)| r.timings_ms.get("total").copied().unwrap_or(0.0))
            .sum::<f64>()
            / 1000.0,
        site_maps,
        site_alignment,
        feature_maps,
    })
}

/// The reports sorted by dataset index, once checked: at least one, no
/// index twice, all of one model and one set of settings.
fn sorted_checked(reports: &[(usize, Report)]) -> Result<Vec<&(usize, Report)>> {
    let Some((_, first)) = reports.first() else {
        return Err(Error::Input(
            "there are no pair reports to summarise".into(),
        ));
    };
    let mut order: Vec<usize> = (0..reports.len()).collect();
    order.sort_by_key(|&i| reports[i].0);
    for w in order.windows(2) {
        if reports[w[0]].0 == reports[w[1]].0 {
            return Err(Error::Input(format!(
                "pair {} appears twice: each dataset index must come from one shard",
                reports[w[0]].0
            )));
        }
    }
    for (_, r) in reports {
        compatible(first, r)?;
    }
    Ok(order.iter().map(|&i| &reports[i]).collect())
}

/// Dataset indices below `total` that no report has.
fn missing(sorted: &[&(usize, Report)], total: usize) -> Vec<usize> {
    let present: std::collections::BTreeSet<usize> = sorted.iter().map(|(i, _)| *i).collect();
    (0..total).filter(|i| !present.contains(i)).collect()
}

/// The summary's tables of per-pair values: correlations (on AP's scale
/// and raw) and latent-set overlaps.
struct PairTables {
    correlations: BTreeMap<String, BTreeMap<String, Stat>>,
    correlations_raw: BTreeMap<String, BTreeMap<String, Stat>>,
    overlap: BTreeMap<String, BTreeMap<String, Stat>>,
}

/// The statistics of the reports' correlations and overlaps; a pair that
/// does not count (`counts`) reads as undefined in every cell.
fn pair_tables(sorted: &[&(usize, Report)], include_small_gap: bool) -> PairTables {
    // a left-out pair's values read as undefined
    let values = |r: &Report, t: &Table| -> Table {
        if counts(r, include_small_gap) {
            return t.clone();
        }
        t.iter()
            .map(|(c, m)| (c.clone(), m.keys().map(|k| (k.clone(), None)).collect()))
            .collect()
    };
    let correlations = table(sorted, |r| {
        values(r, &correlation_table(&r.analysis.correlations))
    });
    let correlations_raw = table(sorted, |r| {
        values(r, &correlation_table(&r.analysis.correlations_raw))
    });
    let overlap = table(sorted, |r| {
        let t: Table = r
            .analysis
            .overlap
            .iter()
            .map(|(c, m)| {
                (
                    c.name().to_string(),
                    m.iter()
                        .map(|(k, v)| (k.name().to_string(), Some(*v)))
                        .collect(),
                )
            })
            .collect();
        values(r, &t)
    });
    PairTables {
        correlations,
        correlations_raw,
        overlap,
    }
}

/// metric.{clean|corrupt}: the statistic of every pair's metric.
fn metric_stats(sorted: &[&(usize, Report)]) -> BTreeMap<String, Stat> {
    BTreeMap::from([
        (
            "clean".to_string(),
            Stat::of(
                sorted
                    .iter()
                    .map(|(_, r)| Some(r.metric.clean as f64))
                    .collect(),
            ),
        ),
        (
            "corrupt".to_string(),
            Stat::of(
                sorted
                    .iter()
                    .map(|(_, r)| Some(r.metric.corrupt as f64))
                    .collect(),
            ),
        ),
    ])
}

impl PairEntry {
    /// Pair `index`'s line, from its report.
    fn of(index: usize, r: &Report) -> PairEntry {
        PairEntry {
            index,
            clean: r.prompts.clean.clone(),
            corrupt: r.prompts.corrupt.clone(),
            correct: r.prompts.correct.clone(),
            incorrect: r.prompts.incorrect.clone(),
            n_tokens: r.tokens.clean.len(),
            metric_clean: r.metric.clean,
            metric_corrupt: r.metric.corrupt,
            warnings: r.warnings.iter().map(|w| w.code.clone()).collect(),
        }
    }
}

/// The site maps' statistics over the pairs that count (none: no maps).
fn site_summary(
    sorted: &[&(usize, Report)],
    include_small_gap: bool,
) -> (SiteTable, FeatureTable, Option<Alignment>) {
    let counted: Vec<&(usize, Report)> = sorted
        .iter()
        .copied()
        .filter(|(_, r)| counts(r, include_small_gap))
        .collect();
    if counted.is_empty() {
        (BTreeMap::new(), BTreeMap::new(), None)
    } else {
        site_maps(&counted)
    }
}

/// The backends the reports were computed on, sorted, comma-separated.
fn backends(sorted: &[&(usize, Report)]) -> String {
    let mut backends: Vec<&str> = sorted.iter().map(|(_, r)| r.backend.as_str()).collect();
    backends.sort();
    backends.dedup();
    backends.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ignores_undefined_values_and_uses_population_std() {
        let s = Stat::of(vec![Some(1.0), None, Some(3.0), Some(f64::NAN)]);
        assert_eq!(s.n, 2);
        assert_eq!(s.mean, Some(2.0));
        assert_eq!(s.std, Some(1.0));
        assert_eq!(s.mean_abs, Some(2.0));
        assert_eq!(Stat::of(vec![Some(-0.5), Some(0.25)]).mean_abs, Some(0.375));
        assert_eq!((s.min, s.median, s.max), (Some(1.0), Some(2.0), Some(3.0)));
        let odd = Stat::of(vec![Some(5.0), Some(-1.0), Some(2.0)]);
        assert_eq!(odd.median, Some(2.0));
        let e = Stat::of(vec![None]);
        assert_eq!((e.n, e.mean, e.std, e.median), (0, None, None, None));
    }
}
