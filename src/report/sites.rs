//! The sites of TransformerLens's patching module (`patching.get_act_patch_*`)
//! as report keys, and the n-dimensional score map each one fills.
//!
//! A site is a hook and how it is cut into patchable pieces: a residual
//! stream hook by (layer, position), a head's q / k / v / z by (layer, head)
//! over all positions or by (layer, position, head), an attention pattern by
//! (layer, head), by destination or by (destination, source). The maps have
//! TransformerLens's shapes, so `results.ap.clean_to_corrupt.resid_pre` reads
//! like `get_act_patch_resid_pre`'s tensor.

use crate::error::{Error, Result};
use crate::model::Config;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A patching site. Variants are declared in the order of their names, so
/// the derived `Ord` is the JSON's key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatchSite {
    /// `blocks.L.hook_attn_out[pos]`: [layer, pos].
    AttnOut,
    /// `blocks.L.attn.hook_k[:, :, h]`, all positions: [layer, head].
    K,
    /// `blocks.L.attn.hook_k[:, pos, h]`: [layer, pos, head].
    KByPos,
    /// `blocks.L.hook_mlp_out[pos]`: [layer, pos].
    MlpOut,
    /// `blocks.L.attn.hook_pattern[:, h]`, all of it: [layer, head].
    Pattern,
    /// `blocks.L.attn.hook_pattern[:, h, dest, :]`: [layer, head, dest].
    PatternByDest,
    /// `blocks.L.attn.hook_pattern[:, h, dest, src]`: [layer, head, dest, src].
    PatternDestSrc,
    /// `blocks.L.attn.hook_q[:, :, h]`, all positions: [layer, head].
    Q,
    /// `blocks.L.attn.hook_q[:, pos, h]`: [layer, pos, head].
    QByPos,
    /// `blocks.L.hook_resid_mid[pos]`: [layer, pos].
    ResidMid,
    /// `blocks.L.hook_resid_pre[pos]`: [layer, pos].
    ResidPre,
    /// `blocks.L.attn.hook_v[:, :, h]`, all positions: [layer, head].
    V,
    /// `blocks.L.attn.hook_v[:, pos, h]`: [layer, pos, head].
    VByPos,
    /// `blocks.L.attn.hook_z[:, :, h]`, all positions (a head's whole
    /// output, TransformerLens's `attn_head_out_all_pos`): [layer, head].
    Z,
    /// `blocks.L.attn.hook_z[:, pos, h]`: [layer, pos, head].
    ZByPos,
}

/// The bundles researchers ask for most, by name (TransformerLens's
/// `get_act_patch_block_every`, `…attn_head_all_pos_every`,
/// `…attn_head_by_pos_every`).
pub const BUNDLES: [(&str, &[PatchSite]); 3] = [
    (
        "block_every",
        &[PatchSite::ResidPre, PatchSite::AttnOut, PatchSite::MlpOut],
    ),
    (
        "head_every",
        &[
            PatchSite::Z,
            PatchSite::Q,
            PatchSite::K,
            PatchSite::V,
            PatchSite::Pattern,
        ],
    ),
    (
        "head_every_by_pos",
        &[
            PatchSite::ZByPos,
            PatchSite::QByPos,
            PatchSite::KByPos,
            PatchSite::VByPos,
            PatchSite::PatternByDest,
        ],
    ),
];

impl PatchSite {
    pub const ALL: [PatchSite; 15] = [
        PatchSite::ResidPre,
        PatchSite::ResidMid,
        PatchSite::AttnOut,
        PatchSite::MlpOut,
        PatchSite::Z,
        PatchSite::ZByPos,
        PatchSite::Q,
        PatchSite::K,
        PatchSite::V,
        PatchSite::QByPos,
        PatchSite::KByPos,
        PatchSite::VByPos,
        PatchSite::Pattern,
        PatchSite::PatternByDest,
        PatchSite::PatternDestSrc,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PatchSite::AttnOut => "attn_out",
            PatchSite::K => "k",
            PatchSite::KByPos => "k_by_pos",
            PatchSite::MlpOut => "mlp_out",
            PatchSite::Pattern => "pattern",
            PatchSite::PatternByDest => "pattern_by_dest",
            PatchSite::PatternDestSrc => "pattern_dest_src",
            PatchSite::Q => "q",
            PatchSite::QByPos => "q_by_pos",
            PatchSite::ResidMid => "resid_mid",
            PatchSite::ResidPre => "resid_pre",
            PatchSite::V => "v",
            PatchSite::VByPos => "v_by_pos",
            PatchSite::Z => "z",
            PatchSite::ZByPos => "z_by_pos",
        }
    }

    /// The TransformerLens hook of layer `layer` that the site patches.
    pub fn hook(self, layer: usize) -> String {
        let name = match self {
            PatchSite::ResidPre => "hook_resid_pre",
            PatchSite::ResidMid => "hook_resid_mid",
            PatchSite::AttnOut => "hook_attn_out",
            PatchSite::MlpOut => "hook_mlp_out",
            PatchSite::Z | PatchSite::ZByPos => "attn.hook_z",
            PatchSite::Q | PatchSite::QByPos => "attn.hook_q",
            PatchSite::K | PatchSite::KByPos => "attn.hook_k",
            PatchSite::V | PatchSite::VByPos => "attn.hook_v",
            PatchSite::Pattern | PatchSite::PatternByDest | PatchSite::PatternDestSrc => {
                "attn.hook_pattern"
            }
        };
        format!("blocks.{layer}.{name}")
    }

    /// The map's shape for a model and a prompt of `t` tokens
    /// (TransformerLens's).
    pub fn shape(self, cfg: &Config, t: usize) -> Vec<usize> {
        let (l, h) = (cfg.n_layers, cfg.n_heads);
        self.axes()
            .iter()
            .map(|&a| match a {
                "layer" => l,
                "head" => h,
                _ => t,
            })
            .collect()
    }

    /// What the axes of the map are, for labels and exports.
    pub fn axes(self) -> &'static [&'static str] {
        match self {
            PatchSite::ResidPre | PatchSite::ResidMid | PatchSite::AttnOut | PatchSite::MlpOut => {
                &["layer", "pos"]
            }
            PatchSite::ZByPos | PatchSite::QByPos | PatchSite::KByPos | PatchSite::VByPos => {
                &["layer", "pos", "head"]
            }
            PatchSite::Z | PatchSite::Q | PatchSite::K | PatchSite::V | PatchSite::Pattern => {
                &["layer", "head"]
            }
            PatchSite::PatternByDest => &["layer", "head", "dest"],
            PatchSite::PatternDestSrc => &["layer", "head", "dest", "src"],
        }
    }

    /// A residual stream site ([layer, pos]).
    pub fn is_residual(self) -> bool {
        matches!(
            self,
            PatchSite::ResidPre | PatchSite::ResidMid | PatchSite::AttnOut | PatchSite::MlpOut
        )
    }

    /// A site name or a bundle name, as `--sites` takes them.
    pub fn parse_list(list: &str) -> Result<Vec<PatchSite>> {
        let mut out = Vec::new();
        for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let w = word.to_ascii_lowercase();
            let found: Vec<PatchSite> = match BUNDLES.iter().find(|(n, _)| *n == w) {
                Some((_, sites)) => sites.to_vec(),
                None => match PatchSite::ALL.iter().find(|s| s.name() == w) {
                    Some(&s) => vec![s],
                    None => return Err(unknown_site(word)),
                },
            };
            for s in found {
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
        Ok(out)
    }
}

fn unknown_site(word: &str) -> Error {
    let names: Vec<&str> = PatchSite::ALL.iter().map(|s| s.name()).collect();
    let bundles: Vec<&str> = BUNDLES.iter().map(|(n, _)| *n).collect();
    Error::Input(format!(
        "unknown site {word:?}; choose from heads, neurons, {}, dla (direct logit attribution) or the bundles {}",
        names.join(", "),
        bundles.join(", ")
    ))
}

impl std::fmt::Display for PatchSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An n-dimensional score map, row-major. In JSON it is nested arrays of
/// its shape (non-finite values as `null`, read back as NaN), as
/// `tensor.tolist()` would write it.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteMap {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl SiteMap {
    pub fn zeros(shape: Vec<usize>) -> SiteMap {
        let len = shape.iter().product();
        SiteMap {
            shape,
            values: vec![0.0; len],
        }
    }

    /// The same map with every value mapped.
    pub fn map(&self, f: impl Fn(f32) -> f32) -> SiteMap {
        SiteMap {
            shape: self.shape.clone(),
            values: self.values.iter().map(|&v| f(v)).collect(),
        }
    }
}

/// A nested JSON array of numbers (or nulls).
#[derive(Deserialize)]
#[serde(untagged)]
enum Nested {
    Num(Option<f32>),
    List(Vec<Nested>),
}

impl Serialize for SiteMap {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        struct Level<'a>(&'a [usize], &'a [f32]);
        impl Serialize for Level<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                let Level(shape, values) = *self;
                let mut seq = s.serialize_seq(Some(shape[0]))?;
                if shape.len() == 1 {
                    for &v in values {
                        seq.serialize_element(&v.is_finite().then_some(v))?;
                    }
                } else {
                    let inner: usize = shape[1..].iter().product();
                    for i in 0..shape[0] {
                        seq.serialize_element(&Level(
                            &shape[1..],
                            &values[i * inner..(i + 1) * inner],
                        ))?;
                    }
                }
                seq.end()
            }
        }
        if self.shape.is_empty() {
            return s.serialize_seq(Some(0))?.end();
        }
        Level(&self.shape, &self.values).serialize(s)
    }
}

impl<'de> Deserialize<'de> for SiteMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<SiteMap, D::Error> {
        fn walk(n: &Nested, depth: usize, shape: &mut Vec<usize>, out: &mut Vec<f32>) -> bool {
            match n {
                Nested::Num(v) => {
                    if depth != shape.len() {
                        return false;
                    }
                    out.push(v.unwrap_or(f32::NAN));
                    true
                }
                Nested::List(items) => {
                    if depth == shape.len() {
                        if !out.is_empty() {
                            return false; // deeper here than before
                        }
                        shape.push(items.len());
                    } else if depth > shape.len() || shape[depth] != items.len() {
                        return false;
                    }
                    items.iter().all(|i| walk(i, depth + 1, shape, out))
                }
            }
        }
        let n = Nested::deserialize(d)?;
        let (mut shape, mut values) = (Vec::new(), Vec::new());
        if !walk(&n, 0, &mut shape, &mut values) || shape.is_empty() || shape.contains(&0) {
            return Err(serde::de::Error::custom(
                "a site map must be nested arrays of numbers of one rectangular shape",
            ));
        }
        if values.len() != shape.iter().product::<usize>() {
            return Err(serde::de::Error::custom(
                "a site map's arrays are not all of the same length",
            ));
        }
        Ok(SiteMap { shape, values })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_are_in_name_order_and_parse_back() {
        let mut names: Vec<&str> = PatchSite::ALL.iter().map(|s| s.name()).collect();
        let mut sorted = PatchSite::ALL;
        sorted.sort();
        let by_ord: Vec<&str> = sorted.iter().map(|s| s.name()).collect();
        names.sort();
        assert_eq!(by_ord, names);
        for s in PatchSite::ALL {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
            assert_eq!(PatchSite::parse_list(s.name()).unwrap(), vec![s]);
        }
        assert_eq!(
            PatchSite::parse_list("block_every, resid_pre,q").unwrap(),
            vec![
                PatchSite::ResidPre,
                PatchSite::AttnOut,
                PatchSite::MlpOut,
                PatchSite::Q
            ]
        );
        let e = PatchSite::parse_list("resid").unwrap_err().to_string();
        assert!(
            e.contains("unknown site \"resid\"") && e.contains("block_every"),
            "{e}"
        );
    }

    #[test]
    fn maps_are_nested_arrays_and_read_back() {
        let m = SiteMap {
            shape: vec![2, 1, 3],
            values: vec![1.0, f32::NAN, 3.5, -4.0, 0.0, 6.25],
        };
        let j = serde_json::to_string(&m).unwrap();
        assert_eq!(j, "[[[1.0,null,3.5]],[[-4.0,0.0,6.25]]]");
        let back: SiteMap = serde_json::from_str(&j).unwrap();
        assert_eq!(back.shape, m.shape);
        assert!(back.values[1].is_nan());
        assert_eq!(back.values[5], 6.25);
        for bad in ["[[1,2],[3]]", "[[1,2],3]", "[1,[2]]", "3", "[]", "[[]]x"] {
            assert!(serde_json::from_str::<SiteMap>(bad).is_err(), "{bad}");
        }
    }
}
