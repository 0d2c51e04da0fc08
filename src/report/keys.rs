//! The report's keys: which method, direction and component kind a score
//! map, an asymmetry or a latent set belongs to. Maps keyed by them
//! serialise as the report always has: each key is its snake_case name, and
//! each enum's variants are declared in the order of their names, so the
//! derived `Ord` keeps the JSON's key order (the component kinds are
//! [`Component`]: heads, neurons).

use crate::engine::Component;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Scores of one component kind: [layer][component].
pub type ScoreMap = Vec<Vec<f32>>;

/// An attribution method that can be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Ap,
    Ig,
    Atp,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::Ap, Method::Ig, Method::Atp];
    pub fn name(self) -> &'static str {
        match self {
            Method::Ap => "ap",
            Method::Ig => "ig",
            Method::Atp => "atp",
        }
    }
    pub fn parse(s: &str) -> Result<Method> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| Error::Input(format!("unknown method {s:?}; choose from ap, ig, atp")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Noising: run the clean prompt, take activations from the corrupt run.
    CleanToCorrupt,
    /// Denoising: run the corrupt prompt, take activations from the clean run.
    CorruptToClean,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::CleanToCorrupt, Direction::CorruptToClean];
    pub fn name(self) -> &'static str {
        match self {
            Direction::CleanToCorrupt => "clean_to_corrupt",
            Direction::CorruptToClean => "corrupt_to_clean",
        }
    }
    pub fn parse(s: &str) -> Result<Direction> {
        Direction::ALL
            .into_iter()
            .find(|d| d.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                Error::Input(format!(
                    "unknown direction {s:?}; choose from clean_to_corrupt, corrupt_to_clean"
                ))
            })
    }
    /// (base, other) of a (clean, corrupt) pair of anything.
    pub fn order<T>(self, clean: T, corrupt: T) -> (T, T) {
        match self {
            Direction::CleanToCorrupt => (clean, corrupt),
            Direction::CorruptToClean => (corrupt, clean),
        }
    }
}

pub fn parse_component(s: &str) -> Result<Component> {
    match s.trim().to_ascii_lowercase().as_str() {
        "heads" | "head" => Ok(Component::Heads),
        "neurons" | "neuron" => Ok(Component::Neurons),
        _ => Err(Error::Input(format!(
            "unknown component kind {s:?}; choose from heads, neurons"
        ))),
    }
}

/// Whose score maps: a method's, or IG*, gap-normalised IG (derived from
/// IG's maps, on AP's scale). The report's `results` and `analysis` are keyed
/// by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MethodKey {
    Ap,
    Atp,
    Ig,
    IgNorm,
}

impl MethodKey {
    pub const ALL: [MethodKey; 4] = [
        MethodKey::Ap,
        MethodKey::Atp,
        MethodKey::Ig,
        MethodKey::IgNorm,
    ];
    pub fn name(self) -> &'static str {
        match self {
            MethodKey::Ap => "ap",
            MethodKey::Atp => "atp",
            MethodKey::Ig => "ig",
            MethodKey::IgNorm => "ig_norm",
        }
    }
}

impl From<Method> for MethodKey {
    fn from(m: Method) -> MethodKey {
        match m {
            Method::Ap => MethodKey::Ap,
            Method::Ig => MethodKey::Ig,
            Method::Atp => MethodKey::Atp,
        }
    }
}

/// Which latent set: AND (A > 0) or OR (A < 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatentKind {
    And,
    Or,
}

impl LatentKind {
    pub const ALL: [LatentKind; 2] = [LatentKind::And, LatentKind::Or];
    pub fn name(self) -> &'static str {
        match self {
            LatentKind::And => "and",
            LatentKind::Or => "or",
        }
    }
}

// `pad` so that width and alignment (`{m:3}`) apply, as to a string
impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl fmt::Display for MethodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl fmt::Display for LatentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;

    /// Each key serialises as its name and reads back from it, and the keys'
    /// order is their names' order (the order of the report's JSON keys).
    fn check<K>(all: &[K], name: impl Fn(&K) -> &'static str)
    where
        K: Serialize + DeserializeOwned + Ord + Copy + fmt::Debug,
    {
        for k in all {
            let json = serde_json::to_string(k).unwrap();
            assert_eq!(json, format!("\"{}\"", name(k)));
            assert_eq!(serde_json::from_str::<K>(&json).unwrap(), *k);
        }
        let mut by_key = all.to_vec();
        by_key.sort();
        let mut by_name = all.to_vec();
        by_name.sort_by_key(|k| name(k));
        assert_eq!(by_key, by_name);
    }

    #[test]
    fn keys_serialise_as_their_names_in_their_names_order() {
        check(&MethodKey::ALL, |k| k.name());
        check(&Direction::ALL, |k| k.name());
        check(&LatentKind::ALL, |k| k.name());
        check(&[Component::Heads, Component::Neurons], |k| k.name());
        // Method is no report key (its order is the order methods are listed
        // in), but it names a key
        for m in Method::ALL {
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
            assert_eq!(MethodKey::from(m).name(), m.name());
        }
        assert!(serde_json::from_str::<MethodKey>("\"ig-norm\"").is_err());
        assert_eq!(format!("[{:4}]", MethodKey::Ap), "[ap  ]");
    }
}
