//! A report slimmed for a figure in a post: only the maps the figure shows,
//! every score rounded to a few significant digits, and marked as such
//! (`precision`), so that nothing mistakes it for the full report.

use super::{Precision, Report};
use crate::engine::Component;
use crate::error::{Error, Result};
use crate::report::PatchSite;
use serde_json::Value;

/// What a slim report keeps besides the prompts, tokens, metric, settings
/// and predictions (always kept: the figure's labels and summary read them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keep {
    pub heads: bool,
    pub neurons: bool,
    pub sites: Vec<PatchSite>,
    /// The attention patterns of both runs (the pattern viewer).
    pub patterns: bool,
    /// Direct logit attribution.
    pub dla: bool,
    /// SAE features: their maps, active features and analysis.
    pub features: bool,
}

impl Keep {
    /// A comma-separated list: `heads`, `neurons`, `patterns`, `dla`, site
    /// names and bundles (as `--sites` takes them).
    pub fn parse(list: &str) -> Result<Keep> {
        let mut keep = Keep {
            heads: false,
            neurons: false,
            sites: Vec::new(),
            patterns: false,
            dla: false,
            features: false,
        };
        let mut rest = Vec::new();
        for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "heads" => keep.heads = true,
                "neurons" => keep.neurons = true,
                "patterns" => keep.patterns = true,
                "dla" => keep.dla = true,
                "features" => keep.features = true,
                other => rest.push(other),
            }
        }
        keep.sites = PatchSite::parse_list(&rest.join(",")).map_err(|e| {
            Error::Input(format!(
                "{e} (a slim report keeps heads, neurons, patterns, dla, features and patching sites)"
            ))
        })?;
        if !keep.heads && !keep.neurons && keep.sites.is_empty() && !keep.features {
            return Err(Error::Input(
                "a slim report needs at least one map to keep: heads, neurons, features or a patching site (e.g. --keep heads)"
                    .into(),
            ));
        }
        Ok(keep)
    }

    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for (on, name) in [
            (self.heads, "heads"),
            (self.neurons, "neurons"),
            (self.patterns, "patterns"),
            (self.dla, "dla"),
            (self.features, "features"),
        ] {
            if on {
                v.push(name.into());
            }
        }
        v.extend(self.sites.iter().map(|s| s.name().to_string()));
        v
    }

    fn component(&self, c: Component) -> bool {
        match c {
            Component::Heads => self.heads,
            Component::Neurons => self.neurons,
        }
    }
}

/// `x` rounded to `digits` significant decimal digits.
pub fn round_to(x: f64, digits: u32) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    format!("{:.*e}", digits.saturating_sub(1) as usize, x)
        .parse()
        .unwrap_or(x)
}

/// Rounds every non-integer number in `v` (scores, metrics, correlations;
/// token ids, positions and counts are integers and stay exact).
fn round_all(v: &mut Value, digits: u32) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(x) = n.as_f64() {
                if let Some(r) = serde_json::Number::from_f64(round_to(x, digits)) {
                    *n = r;
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| round_all(x, digits)),
        Value::Object(o) => o.values_mut().for_each(|x| round_all(x, digits)),
        _ => {}
    }
}

/// The slim report of `r`: the maps `keep` names (with their analysis),
/// every score rounded to `digits` significant digits (1 to 9), marked with
/// `precision`. Its JSON is compact.
pub fn slim(r: &Report, keep: &Keep, digits: u32) -> Result<String> {
    if !(1..=9).contains(&digits) {
        return Err(Error::Input(format!(
            "--digits {digits}: choose 1 to 9 significant digits (4 is what the eye reads off a colour scale)"
        )));
    }
    let mut s = r.clone();
    for per_dir in s.results.values_mut() {
        for maps in per_dir.values_mut() {
            if !keep.heads {
                maps.heads = None;
            }
            if !keep.neurons {
                maps.neurons = None;
            }
            maps.sites.retain(|site, _| keep.sites.contains(site));
            if !keep.features {
                maps.features.clear();
            }
        }
    }
    if !keep.features {
        s.features.clear();
        s.settings.saes.clear();
        s.analysis.features.clear();
    }
    s.settings.sites.retain(|site| keep.sites.contains(site));
    let a = &mut s.analysis;
    a.correlations.retain(|c, _| keep.component(*c));
    a.correlations_raw.retain(|c, _| keep.component(*c));
    a.overlap.retain(|c, _| keep.component(*c));
    for m in a.asymmetry.values_mut() {
        m.retain(|c, _| keep.component(*c));
    }
    for m in a.latent.values_mut() {
        m.retain(|c, _| keep.component(*c));
    }
    for d in a.top.values_mut().flat_map(|m| m.values_mut()) {
        d.retain(|c, _| keep.component(*c));
    }
    for d in s.ig_convergence_delta.values_mut() {
        if !keep.heads {
            d.heads = None;
        }
        if !keep.neurons {
            d.neurons = None;
        }
    }
    if !keep.patterns {
        s.patterns = None;
    }
    if !keep.dla {
        s.dla = None;
    }
    s.precision = Some(Precision {
        significant_digits: digits,
        kept: keep.names(),
    });
    let mut v = serde_json::to_value(&s).expect("reports serialise");
    round_all(&mut v, digits);
    Ok(serde_json::to_string(&v).expect("JSON values serialise"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_significant_digits() {
        assert_eq!(round_to(0.123456, 4), 0.1235);
        assert_eq!(round_to(-12345.678, 4), -12350.0);
        assert_eq!(round_to(3.0e-7, 4), 3.0e-7);
        assert_eq!(round_to(0.0, 4), 0.0);
        assert!(round_to(f64::NAN, 4).is_nan());
    }

    #[test]
    fn keep_lists_are_checked() {
        let k = Keep::parse("heads, z").unwrap();
        assert!(k.heads && !k.neurons && k.sites == vec![PatchSite::Z]);
        assert!(Keep::parse("patterns").is_err());
        let e = Keep::parse("heads,nonsense").unwrap_err().to_string();
        assert!(e.contains("nonsense"), "{e}");
    }
}
