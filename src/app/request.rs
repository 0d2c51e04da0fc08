//! What a front end asks for: the analysis of a pair or a group of pairs
//! ([`AnalyzeRequest`]), the ablation of one pair ([`AblateRequest`]) and the
//! component sets of a dataset ablation ([`ablation_sets`]).
//! The CLI fills them from its flags, the page sends them as JavaScript
//! objects (`PatchLab.analyze`'s field names); a bad field is named in the
//! error.

use super::engine::Backend;
use crate::attribution::ablation::AblationSet;
use crate::attribution::quadrature::Rule;
use crate::attribution::run::Options;
use crate::attribution::{parse_component, Direction, Method};
use crate::engine::Component;
use crate::error::{Error, Result};
use crate::report::{PatchSite, Prompts};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The fields of a request object, taken one at a time so that an error can
/// say which field is bad; what is left at the end is unknown, and the names
/// taken are the ones the error lists as expected.
pub(crate) struct Fields {
    what: &'static str,
    map: Map<String, Value>,
    taken: Vec<&'static str>,
}

impl Fields {
    pub(crate) fn new(what: &'static str, map: Map<String, Value>) -> Fields {
        Fields {
            what,
            map,
            taken: Vec::new(),
        }
    }

    /// Field `name`, None when absent or null.
    pub(crate) fn get<T: DeserializeOwned>(&mut self, name: &'static str) -> Result<Option<T>> {
        self.taken.push(name);
        match self.map.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|e| Error::Input(format!("bad {} request: `{name}`: {e}", self.what))),
        }
    }

    fn require<T: DeserializeOwned>(&mut self, name: &'static str) -> Result<T> {
        self.get(name)?.ok_or_else(|| {
            Error::Input(format!("bad {} request: missing field `{name}`", self.what))
        })
    }

    /// Err for any field not taken.
    pub(crate) fn end(self) -> Result<()> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(Error::Input(format!(
                "bad {} request: unknown field `{k}`, expected one of {}",
                self.what,
                self.taken
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

/// A request object as a map of its fields.
pub(crate) fn object(what: &str, v: Value) -> Result<Map<String, Value>> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(Error::Input(format!(
            "bad {what} request: expected an object, not {other}"
        ))),
    }
}

/// `analyze` (one pair: clean, corrupt, correct, incorrect, bos, metric) or
/// `analyze_group` (`pairs`), with the analysis settings; every setting left
/// out takes its default ([`Options::default`]).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(try_from = "Value")]
pub struct AnalyzeRequest {
    pub clean: Option<String>,
    pub corrupt: Option<String>,
    pub correct: Option<String>,
    pub incorrect: Option<String>,
    pub bos: Option<bool>,
    /// "logit_diff" (default) or "greater_than:YY".
    pub metric: Option<String>,
    pub pairs: Option<Vec<Prompts>>,
    pub methods: Option<Vec<String>>,
    pub directions: Option<Vec<String>>,
    pub components: Option<Vec<String>>,
    /// Patching sites and bundles (`heads`, `neurons`, `resid_pre`, …,
    /// `block_every`); instead of `components`.
    pub sites: Option<Vec<String>>,
    pub ig_steps: Option<usize>,
    pub ig_rule: Option<String>,
    pub percentile: Option<f64>,
    pub backend: Option<String>,
    /// The loaded SAEs whose features to score, by hook name (`all`: every
    /// one loaded).
    pub saes: Option<Vec<String>>,
}

impl TryFrom<Value> for AnalyzeRequest {
    type Error = Error;

    /// The page's field names (camelCase: `igSteps`, `igRule`).
    fn try_from(v: Value) -> Result<AnalyzeRequest> {
        let mut f = Fields::new("analyze", object("analyze", v)?);
        let r = AnalyzeRequest {
            clean: f.get("clean")?,
            corrupt: f.get("corrupt")?,
            correct: f.get("correct")?,
            incorrect: f.get("incorrect")?,
            bos: f.get("bos")?,
            metric: f.get("metric")?,
            pairs: f.get("pairs")?,
            methods: f.get("methods")?,
            directions: f.get("directions")?,
            components: f.get("components")?,
            sites: f.get("sites")?,
            ig_steps: f.get("igSteps")?,
            ig_rule: f.get("igRule")?,
            percentile: f.get("percentile")?,
            backend: f.get("backend")?,
            saes: f.get("saes")?,
        };
        f.end()?;
        Ok(r)
    }
}

impl AnalyzeRequest {
    /// The one pair of an `analyze` request.
    pub fn prompts(&self) -> Result<Prompts> {
        let field = |v: &Option<String>, name: &str| {
            v.clone()
                .ok_or_else(|| Error::Input(format!("bad analyze request: missing field `{name}`")))
        };
        if self.pairs.is_some() {
            return Err(Error::Input(
                "bad analyze request: `pairs` is for analyze_group".into(),
            ));
        }
        Ok(Prompts {
            clean: field(&self.clean, "clean")?,
            corrupt: field(&self.corrupt, "corrupt")?,
            correct: field(&self.correct, "correct")?,
            incorrect: field(&self.incorrect, "incorrect")?,
            bos: self.bos.unwrap_or(true),
            metric: self.metric.clone().unwrap_or_else(|| "logit_diff".into()),
        })
    }

    /// The pairs of an `analyze_group` request.
    pub fn pairs(&self) -> Result<&[Prompts]> {
        let single = [&self.clean, &self.corrupt, &self.correct, &self.incorrect];
        if single.iter().any(|x| x.is_some()) || self.bos.is_some() || self.metric.is_some() {
            return Err(Error::Input(
                "bad analyze_group request: give each pair's prompts, bos and metric in `pairs`"
                    .into(),
            ));
        }
        self.pairs
            .as_deref()
            .ok_or_else(|| Error::Input("bad analyze_group request: missing field `pairs`".into()))
    }

    /// What to compute.
    pub fn options(&self) -> Result<Options> {
        let d = Options::default();
        fn list<T>(v: &Option<Vec<String>>, all: &[T], p: fn(&str) -> Result<T>) -> Result<Vec<T>>
        where
            T: Clone,
        {
            match v {
                None => Ok(all.to_vec()),
                Some(v) => v.iter().map(|s| p(s)).collect(),
            }
        }
        let (components, sites, dla) =
            match &self.sites {
                None => (
                    list(&self.components, &d.components, parse_component)?,
                    vec![],
                    false,
                ),
                Some(_) if self.components.is_some() => return Err(Error::Input(
                    "give either `components` or `sites` (sites may name heads and neurons too)"
                        .into(),
                )),
                Some(words) => split_sites(words)?,
            };
        Ok(Options {
            methods: list(&self.methods, &d.methods, Method::parse)?,
            directions: list(&self.directions, &d.directions, Direction::parse)?,
            components,
            sites,
            dla,
            ig_steps: self.ig_steps.unwrap_or(d.ig_steps),
            ig_rule: match &self.ig_rule {
                Some(r) => Rule::parse(r)?,
                None => d.ig_rule,
            },
            percentile: self.percentile.unwrap_or(d.percentile),
            ..d
        })
    }

    pub fn backend(&self) -> Result<Backend> {
        Backend::parse(self.backend.as_deref().unwrap_or("auto"))
    }
}

/// A list of site names into the component kinds it names (`heads`,
/// `neurons`) and the patching sites (`resid_pre`, …, bundles expanded).
pub fn split_sites(words: &[String]) -> Result<(Vec<Component>, Vec<PatchSite>, bool)> {
    let (mut comps, mut sites, mut dla) = (vec![], vec![], false);
    for w in words {
        if w.trim().eq_ignore_ascii_case("dla") {
            dla = true;
            continue;
        }
        match parse_component(w) {
            Ok(c) if !comps.contains(&c) => comps.push(c),
            Ok(_) => {}
            Err(_) => {
                for s in PatchSite::parse_list(w)? {
                    if !sites.contains(&s) {
                        sites.push(s);
                    }
                }
            }
        }
    }
    Ok((comps, sites, dla))
}

/// `ablate`: a pair and the components to hold at the pair's corrupt
/// activations.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "Value")]
pub struct AblateRequest {
    pub prompts: Prompts,
    /// [[layer, head]].
    pub heads: Vec<[usize; 2]>,
    /// [[layer, neuron]].
    pub neurons: Vec<[usize; 2]>,
    pub backend: Backend,
}

impl TryFrom<Value> for AblateRequest {
    type Error = Error;

    fn try_from(v: Value) -> Result<AblateRequest> {
        let mut f = Fields::new("ablate", object("ablate", v)?);
        let r = AblateRequest {
            prompts: Prompts {
                clean: f.require("clean")?,
                corrupt: f.require("corrupt")?,
                correct: f.require("correct")?,
                incorrect: f.require("incorrect")?,
                bos: f.get("bos")?.unwrap_or(true),
                metric: f.get("metric")?.unwrap_or_else(|| "logit_diff".into()),
            },
            heads: f.get("heads")?.unwrap_or_default(),
            neurons: f.get("neurons")?.unwrap_or_default(),
            backend: Backend::parse(f.get::<String>("backend")?.as_deref().unwrap_or("auto"))?,
        };
        f.end()?;
        Ok(r)
    }
}

impl AblateRequest {
    /// The components to hold, per kind.
    pub fn components(&self) -> BTreeMap<Component, Vec<[usize; 2]>> {
        BTreeMap::from([
            (Component::Heads, self.heads.clone()),
            (Component::Neurons, self.neurons.clone()),
        ])
    }
}

/// The component sets of a dataset ablation, from the specs a front end
/// was given ("and:both", "h9.6,n0.12", …; see `AblationSet::parse`), each
/// with its label in the ablation report: the spec without surrounding
/// spaces. Every front end parses sets here, so one spec gets one label.
pub fn ablation_sets(specs: &[String]) -> Result<Vec<(String, AblationSet)>> {
    specs
        .iter()
        .map(|s| Ok((s.trim().to_string(), AblationSet::parse(s)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn analyze(v: Value) -> Result<AnalyzeRequest> {
        AnalyzeRequest::try_from(v)
    }

    #[test]
    fn an_analyze_request_reads_the_page_fields() {
        let r = analyze(json!({
            "clean": "a", "corrupt": "b", "correct": " c", "incorrect": " d",
            "methods": ["ap"], "igSteps": 8, "igRule": "riemann_left", "percentile": 0.5,
            "backend": "cpu", "bos": null,
        }))
        .unwrap();
        let o = r.options().unwrap();
        assert_eq!(o.methods, vec![Method::Ap]);
        assert_eq!(o.ig_steps, 8);
        assert_eq!(o.ig_rule, Rule::RiemannLeft);
        assert_eq!(o.percentile, 0.5);
        assert_eq!(r.backend().unwrap(), Backend::Cpu);
        let p = r.prompts().unwrap();
        assert!(p.bos);
        assert_eq!(p.metric, "logit_diff");
        assert!(r.pairs().is_err());
        // through serde too, as from a JSON string
        let s: AnalyzeRequest = serde_json::from_str(r#"{"pairs": []}"#).unwrap();
        assert_eq!(s.pairs().unwrap().len(), 0);
    }

    #[test]
    fn errors_name_the_bad_field() {
        let e = analyze(json!({"igSteps": "ten"})).unwrap_err().to_string();
        assert!(e.contains("`igSteps`"), "{e}");
        let e = analyze(json!({"ig_steps": 3})).unwrap_err().to_string();
        assert!(e.contains("unknown field `ig_steps`"), "{e}");
        let e = analyze(json!({"clean": "a"}))
            .unwrap()
            .prompts()
            .unwrap_err();
        assert!(e.to_string().contains("missing field `corrupt`"), "{e}");
        let e = analyze(json!([1])).unwrap_err().to_string();
        assert!(e.contains("expected an object"), "{e}");
        let e = analyze(json!({"methods": ["shap"]})).unwrap().options();
        assert!(e.unwrap_err().to_string().contains("unknown method"));
        let e = analyze(json!({"backend": "tpu"})).unwrap().backend();
        assert!(e.unwrap_err().to_string().contains("unknown backend"));
        let e = serde_json::from_str::<AblateRequest>(r#"{"clean": "a"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `corrupt`"), "{e}");
        let a = json!({"clean": "a", "corrupt": "b", "correct": "c", "incorrect": "d",
            "heads": [[0, "x"]]});
        let e = AblateRequest::try_from(a).unwrap_err().to_string();
        assert!(e.contains("`heads`"), "{e}");
    }

    #[test]
    fn an_ablate_request_holds_its_components() {
        let r = AblateRequest::try_from(json!({
            "clean": "a", "corrupt": "b", "correct": "c", "incorrect": "d",
            "heads": [[1, 2]], "metric": "greater_than:42",
        }))
        .unwrap();
        assert_eq!(r.backend, Backend::Auto);
        assert_eq!(r.prompts.metric, "greater_than:42");
        let c = r.components();
        assert_eq!(c[&Component::Heads], vec![[1, 2]]);
        assert!(c[&Component::Neurons].is_empty());
    }
}
