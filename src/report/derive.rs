//! What a report derives from its own score maps: IG* (`results.ig_norm`),
//! the whole `analysis` and the `warnings`. New reports and schema-1 reports
//! read back both go through [`derive`], so they agree exactly.

use super::analysis::{asymmetry, flatten, ig_norm, jaccard, latent_sets, pearson, top_k};
use super::{
    parse_component, Analysis, Direction, LatentKind, LatentSets, Maps, Maps1, MethodKey, Report,
    ScoreMap, TopEntry, Warning,
};
use crate::engine::Component;
use std::collections::BTreeMap;

/// The maps on AP's scale, in the order in which they are paired for
/// correlations; keys are "<earlier>__vs__<later>" of their names
/// (`ig_norm_clean_to_corrupt`, …).
pub const SCALED_ORDER: [(MethodKey, Direction); 6] = [
    (MethodKey::IgNorm, Direction::CleanToCorrupt),
    (MethodKey::IgNorm, Direction::CorruptToClean),
    (MethodKey::Atp, Direction::CleanToCorrupt),
    (MethodKey::Atp, Direction::CorruptToClean),
    (MethodKey::Ap, Direction::CleanToCorrupt),
    (MethodKey::Ap, Direction::CorruptToClean),
];

/// The raw IG maps (captum's means, not on AP's scale), correlated with
/// every other map in `analysis.correlations_raw` (for IG vs AP,
/// r_raw = r × sign(m_base − m_other); docs/methods.md, "Analysis").
pub const RAW_ORDER: [(MethodKey, Direction); 2] = [
    (MethodKey::Ig, Direction::CleanToCorrupt),
    (MethodKey::Ig, Direction::CorruptToClean),
];

/// The methods whose asymmetry and latent sets the analysis has, in the
/// order the views show them.
pub const ASYMMETRY_METHODS: [MethodKey; 3] = [MethodKey::IgNorm, MethodKey::Ap, MethodKey::Atp];

/// A map's name in the correlations' keys: `ig_norm_clean_to_corrupt`, …
pub fn map_name(m: MethodKey, d: Direction) -> String {
    format!("{m}_{d}")
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
    r.results.remove(&MethodKey::IgNorm);
    if let Some(ig) = r.results.get(&MethodKey::Ig) {
        let mut scaled = BTreeMap::new();
        for (&d, maps) in ig {
            // m_base − m_other
            let gap = match d {
                Direction::CleanToCorrupt => mc - mk,
                Direction::CorruptToClean => mk - mc,
            };
            scaled.insert(
                d,
                Maps {
                    heads: maps
                        .heads
                        .as_ref()
                        .map(|m| ig_norm(m, t * r.model.d_model, gap)),
                    neurons: maps.neurons.as_ref().map(|m| ig_norm(m, t, gap)),
                    // a site's raw IG is already the sum of its attributions
                    sites: maps
                        .sites
                        .iter()
                        .map(|(&s, m)| (s, m.map(|v| (v as f64 / gap as f64) as f32)))
                        .collect(),
                    // so is a feature map's
                    features: maps
                        .features
                        .iter()
                        .map(|(k, m)| (k.clone(), m.map(|v| (v as f64 / gap as f64) as f32)))
                        .collect(),
                },
            );
        }
        r.results.insert(MethodKey::IgNorm, scaled);
    }
    let components: Vec<Component> = r
        .settings
        .components
        .iter()
        .filter_map(|c| parse_component(c).ok())
        .collect();
    r.analysis = analyse(&r.results, &components, r.settings.percentile, top);
    r.analysis.features = super::features::analyse_features(&r.results, r.settings.percentile, top);
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
    results: &BTreeMap<MethodKey, BTreeMap<Direction, Maps>>,
    components: &[Component],
    percentile: f64,
    top: usize,
) -> Analysis {
    let get = |m: MethodKey, d: Direction, c: Component| {
        results
            .get(&m)
            .and_then(|x| x.get(&d))
            .and_then(|x| x.get(c))
    };
    let mut a = Analysis {
        percentile,
        ..Default::default()
    };
    for &c in components {
        let pairs = |order: &[(MethodKey, Direction)], with: &[(MethodKey, Direction)]| {
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
        let mut asym: BTreeMap<MethodKey, ScoreMap> = BTreeMap::new();
        for m in ASYMMETRY_METHODS {
            if let (Some(cc), Some(ccl)) = (
                get(m, Direction::CleanToCorrupt, c),
                get(m, Direction::CorruptToClean, c),
            ) {
                asym.insert(m, asymmetry(cc, ccl));
            }
        }
        for (x, y) in [
            (MethodKey::IgNorm, MethodKey::Ap),
            (MethodKey::Atp, MethodKey::Ap),
            (MethodKey::IgNorm, MethodKey::Atp),
        ] {
            if let (Some(p), Some(q)) = (asym.get(&x), asym.get(&y)) {
                corr.insert(
                    format!("asym_{x}__vs__asym_{y}"),
                    pearson(&flatten(p), &flatten(q)),
                );
            }
        }
        a.correlations.insert(c, corr);
        if !raw.is_empty() {
            a.correlations_raw.insert(c, raw);
        }
        let mut latent: BTreeMap<MethodKey, LatentSets> = BTreeMap::new();
        for (&m, s) in &asym {
            let (and, or) = latent_sets(s, percentile);
            latent.insert(m, LatentSets { and, or });
            a.asymmetry
                .entry(m)
                .or_default()
                .insert(c, Maps1(s.clone()));
        }
        for (&m, l) in &latent {
            a.latent.entry(m).or_default().insert(c, l.clone());
        }
        if let (Some(ig), Some(ap)) = (latent.get(&MethodKey::IgNorm), latent.get(&MethodKey::Ap)) {
            a.overlap.insert(
                c,
                LatentKind::ALL
                    .into_iter()
                    .map(|k| (k, jaccard(ig.get(k), ap.get(k))))
                    .collect(),
            );
        }
        for (&m, dirs) in results {
            for (&d, maps) in dirs {
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
                        .entry(m)
                        .or_default()
                        .entry(d)
                        .or_default()
                        .insert(c, list);
                }
            }
        }
    }
    a
}
