//! Sparse-autoencoder features in the report: the SAEs an analysis used,
//! each run's active features, the feature maps' keys and their sparse JSON
//! form, and the analysis of feature maps (docs/methods.md, "SAE features").
//!
//! A feature map is keyed by its SAE's hook: `sae:<hook_name>` ([d_sae],
//! every position patched together) and `sae_by_pos:<hook_name>` ([T,
//! d_sae]). Most cells are exactly 0 (a feature that is equal in both runs
//! scores 0 and is never run), so a map is written sparse when that is
//! smaller: `{"shape": [...], "indices": [...], "values": [...]}` with
//! row-major flat indices of the non-zero cells. Dense nested arrays read
//! back as well.

use super::analysis::flatten;
use super::derive::analyse;
use super::{Direction, LatentSets, Maps, MethodKey, SiteMap};
use crate::engine::Component;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// The key prefix of a map over all positions.
pub const ALL_POS: &str = "sae:";
/// The key prefix of a map by position.
pub const BY_POS: &str = "sae_by_pos:";

/// The report key of an SAE's feature map.
pub fn feature_key(hook_name: &str, by_pos: bool) -> String {
    format!("{}{hook_name}", if by_pos { BY_POS } else { ALL_POS })
}

/// Splits a feature-map key into (hook name, by position).
pub fn parse_feature_key(key: &str) -> Option<(&str, bool)> {
    if let Some(h) = key.strip_prefix(BY_POS) {
        Some((h, true))
    } else {
        key.strip_prefix(ALL_POS).map(|h| (h, false))
    }
}

/// What the report records of an SAE it scored features of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaeInfo {
    /// What the user called it (its folder, or a release and layer).
    pub name: String,
    /// The TransformerLens hook it reads, e.g. `blocks.8.hook_resid_pre`.
    pub hook_name: String,
    /// `standard`, `jumprelu` or `topk`.
    pub architecture: String,
    pub d_in: usize,
    pub d_sae: usize,
    /// Neuronpedia's id of the SAE (`gpt2-small/8-res-jb`), when its cfg has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neuronpedia_id: Option<String>,
}

impl SaeInfo {
    /// What a report records of a loaded SAE.
    pub fn of(s: &crate::model::sae::Sae) -> SaeInfo {
        SaeInfo {
            name: s.name.clone(),
            hook_name: s.hook_name.clone(),
            architecture: s.architecture.name().to_string(),
            d_in: s.d_in,
            d_sae: s.d_sae,
            neuronpedia_id: s.neuronpedia_id.clone(),
        }
    }
}

/// One run's active features: every (position, feature) with a non-zero
/// `hook_sae_acts_post`, position-major, and its activation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActiveFeatures {
    pub indices: Vec<[usize; 2]>,
    pub values: Vec<f32>,
}

impl ActiveFeatures {
    /// The non-zero cells of a [T, d_sae] activation.
    pub fn of(acts: &[f32], d_sae: usize) -> ActiveFeatures {
        let mut a = ActiveFeatures::default();
        for (k, &v) in acts.iter().enumerate() {
            if v != 0.0 {
                a.indices.push([k / d_sae, k % d_sae]);
                a.values.push(v);
            }
        }
        a
    }

    /// Back to a dense [t, d_sae] activation.
    pub fn dense(&self, t: usize, d_sae: usize) -> Vec<f32> {
        let mut out = vec![0.0; t * d_sae];
        for (&[p, i], &v) in self.indices.iter().zip(&self.values) {
            if p < t && i < d_sae {
                out[p * d_sae + i] = v;
            }
        }
        out
    }
}

/// Both runs' active features of one SAE.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureRuns {
    pub clean: ActiveFeatures,
    pub corrupt: ActiveFeatures,
}

/// Serialises a feature map sparse when fewer than a third of its cells are
/// non-zero, else as nested arrays.
pub struct FeatureMapOut<'a>(pub &'a SiteMap);

impl Serialize for FeatureMapOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let m = self.0;
        let nonzero = m.values.iter().filter(|&&v| v != 0.0).count();
        if nonzero * 3 >= m.values.len() {
            return m.serialize(s);
        }
        #[derive(Serialize)]
        struct Sparse<'a> {
            shape: &'a [usize],
            indices: Vec<usize>,
            values: Vec<Option<f32>>,
        }
        let (indices, values) = m
            .values
            .iter()
            .enumerate()
            .filter(|(_, &v)| v != 0.0)
            .map(|(k, &v)| (k, v.is_finite().then_some(v)))
            .unzip();
        Sparse {
            shape: &m.shape,
            indices,
            values,
        }
        .serialize(s)
    }
}

/// Reads a feature map written dense (nested arrays) or sparse.
pub struct FeatureMapIn(pub SiteMap);

impl<'de> Deserialize<'de> for FeatureMapIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<FeatureMapIn, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Sparse {
            shape: Vec<usize>,
            indices: Vec<usize>,
            values: Vec<Option<f32>>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Sparse(Sparse),
            Dense(SiteMap),
        }
        match Either::deserialize(d)? {
            Either::Dense(m) => Ok(FeatureMapIn(m)),
            Either::Sparse(sp) => {
                let len: usize = sp.shape.iter().product();
                if sp.shape.is_empty() || sp.indices.len() != sp.values.len() {
                    return Err(serde::de::Error::custom(
                        "a sparse feature map needs a shape and as many indices as values",
                    ));
                }
                let mut m = SiteMap::zeros(sp.shape);
                for (k, v) in sp.indices.into_iter().zip(sp.values) {
                    if k >= len {
                        return Err(serde::de::Error::custom(format!(
                            "a sparse feature map's index {k} is outside its shape ({len} cells)"
                        )));
                    }
                    m.values[k] = v.unwrap_or(f32::NAN);
                }
                Ok(FeatureMapIn(m))
            }
        }
    }
}

/// The analysis of one SAE's feature maps over all positions: the same
/// correlations, asymmetry, latent sets, overlaps and top lists as for heads
/// and neurons, over the features that can score (`features`: those with a
/// non-zero cell in any of its maps; a feature equal in both runs scores 0
/// in every map and would only add ties at 0).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FeatureAnalysis {
    /// The features analysed, ascending.
    pub features: Vec<usize>,
    pub correlations: BTreeMap<String, Option<f64>>,
    #[serde(default)]
    pub correlations_raw: BTreeMap<String, Option<f64>>,
    /// asymmetry[method] over `features`, in their order.
    pub asymmetry: BTreeMap<MethodKey, Vec<f32>>,
    /// latent[method]: AND and OR features, as feature indices.
    pub latent: BTreeMap<MethodKey, FeatureSets>,
    pub overlap: BTreeMap<super::LatentKind, f64>,
    /// top[method][direction]: (feature, score), largest |score| first.
    pub top: BTreeMap<MethodKey, BTreeMap<Direction, Vec<(usize, f32)>>>,
}

/// Latent AND and OR features.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureSets {
    pub and: Vec<usize>,
    pub or: Vec<usize>,
}

/// Analyses every SAE's maps over all positions, keyed by hook name.
pub fn analyse_features(
    results: &BTreeMap<MethodKey, BTreeMap<Direction, Maps>>,
    percentile: f64,
    top: usize,
) -> BTreeMap<String, FeatureAnalysis> {
    let mut hooks: Vec<String> = results
        .values()
        .flat_map(|d| d.values())
        .flat_map(|m| m.features.keys())
        .filter_map(|k| match parse_feature_key(k) {
            Some((h, false)) => Some(h.to_string()),
            _ => None,
        })
        .collect();
    hooks.sort();
    hooks.dedup();
    hooks
        .into_iter()
        .map(|h| {
            let a = analyse_one(results, &feature_key(&h, false), percentile, top);
            (h, a)
        })
        .collect()
}

fn analyse_one(
    results: &BTreeMap<MethodKey, BTreeMap<Direction, Maps>>,
    key: &str,
    percentile: f64,
    top: usize,
) -> FeatureAnalysis {
    let maps = || {
        results.iter().flat_map(|(&m, dirs)| {
            dirs.iter()
                .filter_map(move |(&d, maps)| Some((m, d, maps.features.get(key)?)))
        })
    };
    let mut features: Vec<usize> = maps()
        .flat_map(|(_, _, map)| {
            map.values
                .iter()
                .enumerate()
                .filter(|(_, &v)| v != 0.0)
                .map(|(i, _)| i)
        })
        .collect();
    features.sort_unstable();
    features.dedup();
    // the features as one row of "heads", so that the analysis of heads and
    // neurons runs unchanged
    let mut restricted: BTreeMap<MethodKey, BTreeMap<Direction, Maps>> = BTreeMap::new();
    for (m, d, map) in maps() {
        let row: Vec<f32> = features.iter().map(|&i| map.values[i]).collect();
        restricted.entry(m).or_default().entry(d).or_default().heads = Some(vec![row]);
    }
    let mut a = analyse(&restricted, &[Component::Heads], percentile, top);
    let c = Component::Heads;
    let back = |sets: &[[usize; 2]]| sets.iter().map(|&[_, j]| features[j]).collect();
    FeatureAnalysis {
        correlations: a.correlations.remove(&c).unwrap_or_default(),
        correlations_raw: a.correlations_raw.remove(&c).unwrap_or_default(),
        asymmetry: a
            .asymmetry
            .into_iter()
            .filter_map(|(m, mut by)| Some((m, flatten(&by.remove(&c)?.0))))
            .collect(),
        latent: a
            .latent
            .into_iter()
            .filter_map(|(m, mut by)| {
                let LatentSets { and, or } = by.remove(&c)?;
                Some((
                    m,
                    FeatureSets {
                        and: back(&and),
                        or: back(&or),
                    },
                ))
            })
            .collect(),
        overlap: a.overlap.remove(&c).unwrap_or_default(),
        top: a
            .top
            .into_iter()
            .map(|(m, dirs)| {
                let dirs = dirs
                    .into_iter()
                    .filter_map(|(d, mut by)| {
                        let list = by.remove(&c)?;
                        Some((
                            d,
                            list.iter().map(|e| (features[e.index], e.score)).collect(),
                        ))
                    })
                    .collect();
                (m, dirs)
            })
            .collect(),
        features,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_and_dense_maps_round_trip() {
        let mut m = SiteMap::zeros(vec![3, 5]);
        m.values[7] = 0.5;
        m.values[14] = f32::NAN;
        let j = serde_json::to_string(&FeatureMapOut(&m)).unwrap();
        assert_eq!(j, r#"{"shape":[3,5],"indices":[7,14],"values":[0.5,null]}"#);
        let back: FeatureMapIn = serde_json::from_str(&j).unwrap();
        assert_eq!(back.0.shape, m.shape);
        assert_eq!(back.0.values[7], 0.5);
        assert!(back.0.values[14].is_nan());
        // dense when most cells are non-zero, and dense reads back
        let d = SiteMap {
            shape: vec![2],
            values: vec![1.0, 2.0],
        };
        let j = serde_json::to_string(&FeatureMapOut(&d)).unwrap();
        assert_eq!(j, "[1.0,2.0]");
        assert_eq!(serde_json::from_str::<FeatureMapIn>(&j).unwrap().0, d);
        for bad in [
            r#"{"shape":[2],"indices":[2],"values":[1]}"#,
            r#"{"shape":[2],"indices":[0,1],"values":[1]}"#,
        ] {
            assert!(serde_json::from_str::<FeatureMapIn>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_name_the_hook() {
        let k = feature_key("blocks.8.hook_resid_pre", true);
        assert_eq!(k, "sae_by_pos:blocks.8.hook_resid_pre");
        assert_eq!(
            parse_feature_key(&k),
            Some(("blocks.8.hook_resid_pre", true))
        );
        assert_eq!(parse_feature_key("sae:x"), Some(("x", false)));
        assert_eq!(parse_feature_key("resid_pre"), None);
    }

    #[test]
    fn active_features_round_trip() {
        let acts = [0.0, 1.5, 0.0, 0.0, 0.0, 2.0];
        let a = ActiveFeatures::of(&acts, 3);
        assert_eq!(a.indices, vec![[0, 1], [1, 2]]);
        assert_eq!(a.dense(2, 3), acts);
    }
}
