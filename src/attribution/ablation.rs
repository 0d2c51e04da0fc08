//! Mean ablation of the components an analysis found (docs/cli.md, "Mean
//! ablation"): hold a set of heads (`hook_result[:, h, :]`) and
//! neurons (`hook_post[:, n]`) at their mean corrupt activation at every
//! position of the clean run, recompute everything downstream, and report
//! how the metric moves.
//!
//! The mean is taken per position over the corrupt prompts of the dataset
//! that have the same number of tokens (a per-position mean needs prompts
//! that line up position by position; grouping by length gives that
//! without padding). A length that occurs once uses that pair's own
//! corrupt activation.

use super::{pause, Observer, Pair, Progress};
use crate::engine::{check_component, Component, Engine, Replacement};
use crate::error::{Error, Result};
use crate::model::{Config, Tokenizer};
use crate::report::summary::Stat;
use crate::report::{LatentKind, MethodKey, Report};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How the IG and AP sets combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Ig,
    Ap,
    /// IG ∩ AP.
    Both,
    /// IG ∪ AP.
    Either,
    /// IG \ AP.
    IgOnly,
    /// AP \ IG.
    ApOnly,
}

/// A set of components to ablate.
#[derive(Debug, Clone, PartialEq)]
pub enum AblationSet {
    /// Taken from each pair's own report: e.g. `and:both`.
    Latent(LatentKind, Pick),
    /// The same components for every pair: heads as (layer, head), neurons as (layer, neuron).
    Fixed {
        heads: Vec<[usize; 2]>,
        neurons: Vec<[usize; 2]>,
    },
}

const SET_HELP: &str = "use and:X or or:X with X one of ig, ap, both, either, ig-only, ap-only \
     (the latent AND / OR components found by IG* (gap-normalised IG), by AP, by both, …), or a list of components \
     such as h9.6,h9.9,n0.1234 (h = head layer.head, n = neuron layer.index)";

impl AblationSet {
    pub fn parse(s: &str) -> Result<AblationSet> {
        let bad = |why: String| Error::Input(format!("ablation set {s:?}: {why}; {SET_HELP}"));
        if let Some((which, pick)) = s.split_once(':') {
            let which = match which {
                "and" => LatentKind::And,
                "or" => LatentKind::Or,
                w => return Err(bad(format!("unknown latent set `{w}`"))),
            };
            let pick = match pick {
                "ig" => Pick::Ig,
                "ap" => Pick::Ap,
                "both" => Pick::Both,
                "either" => Pick::Either,
                "ig-only" => Pick::IgOnly,
                "ap-only" => Pick::ApOnly,
                p => return Err(bad(format!("unknown choice `{p}`"))),
            };
            return Ok(AblationSet::Latent(which, pick));
        }
        let (mut heads, mut neurons) = (Vec::new(), Vec::new());
        for item in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            let (kind, rest) = item.split_at(1);
            let (l, i) = rest.split_once('.').ok_or_else(|| {
                bad(format!(
                    "`{item}` is not h<layer>.<head> or n<layer>.<neuron>"
                ))
            })?;
            let parse = |x: &str| {
                x.parse::<usize>()
                    .map_err(|_| bad(format!("`{item}`: `{x}` is not a number")))
            };
            let c = [parse(l)?, parse(i)?];
            match kind {
                "h" => heads.push(c),
                "n" => neurons.push(c),
                _ => return Err(bad(format!("`{item}` starts with neither h nor n"))),
            }
        }
        if heads.is_empty() && neurons.is_empty() {
            return Err(bad("no components given".into()));
        }
        Ok(AblationSet::Fixed { heads, neurons })
    }

    /// The components of this set for one pair, per kind.
    pub fn select(&self, report: &Report) -> Result<BTreeMap<Component, Vec<[usize; 2]>>> {
        let mut out = BTreeMap::new();
        match self {
            AblationSet::Fixed { heads, neurons } => {
                out.insert(Component::Heads, heads.clone());
                out.insert(Component::Neurons, neurons.clone());
            }
            AblationSet::Latent(which, pick) => {
                for c in [Component::Heads, Component::Neurons] {
                    let get = |method: MethodKey| -> Option<BTreeSet<[usize; 2]>> {
                        let l = report.analysis.latent.get(&method)?.get(&c)?;
                        Some(l.get(*which).iter().copied().collect())
                    };
                    // IG's latent sets are those of IG*, on AP's scale, so
                    // that `both` intersects like with like
                    let (ig, ap) = (get(MethodKey::IgNorm), get(MethodKey::Ap));
                    if ig.is_none() && ap.is_none() {
                        continue;
                    }
                    let need = |x: Option<BTreeSet<[usize; 2]>>, m: &str| {
                        x.ok_or_else(|| {
                            Error::Input(format!(
                                "the reports have no latent {m} {} sets: run the batch with --methods including {m} and both directions",
                                c.name()
                            ))
                        })
                    };
                    let set: BTreeSet<[usize; 2]> = match pick {
                        Pick::Ig => need(ig, "ig")?,
                        Pick::Ap => need(ap, "ap")?,
                        Pick::Both => need(ig, "ig")?
                            .intersection(&need(ap, "ap")?)
                            .copied()
                            .collect(),
                        Pick::Either => need(ig, "ig")?.union(&need(ap, "ap")?).copied().collect(),
                        Pick::IgOnly => need(ig, "ig")?
                            .difference(&need(ap, "ap")?)
                            .copied()
                            .collect(),
                        Pick::ApOnly => need(ap, "ap")?
                            .difference(&need(ig, "ig")?)
                            .copied()
                            .collect(),
                    };
                    out.insert(c, set.into_iter().collect());
                }
                if out.is_empty() {
                    return Err(Error::Input(
                        "the reports have no latent components: run with --methods ap,ig and both directions".into(),
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// Per-position sums of every layer's `hook_result` and `hook_post` over the
/// corrupt runs of one prompt length.
struct Sums {
    count: usize,
    /// Per layer: [pos, heads, d_model] and [pos, d_mlp], flattened.
    result: Vec<Vec<f64>>,
    post: Vec<Vec<f64>>,
}

/// Mean corrupt activations, by prompt length.
#[derive(Default)]
pub struct MeanActivations {
    by_len: BTreeMap<usize, Sums>,
}

impl MeanActivations {
    /// Adds one pair's corrupt run.
    pub async fn add<E: Engine>(&mut self, e: &E, corrupt: &E::Run, n_tokens: usize) -> Result<()> {
        let n = e.config().n_layers;
        let mut result = Vec::with_capacity(n);
        let mut post = Vec::with_capacity(n);
        for l in 0..n {
            result.push(e.activation(corrupt, &Component::Heads.hook(l)).await?.data);
            post.push(
                e.activation(corrupt, &Component::Neurons.hook(l))
                    .await?
                    .data,
            );
        }
        let s = self.by_len.entry(n_tokens).or_insert_with(|| Sums {
            count: 0,
            result: result.iter().map(|v| vec![0.0; v.len()]).collect(),
            post: post.iter().map(|v| vec![0.0; v.len()]).collect(),
        });
        s.count += 1;
        for (acc, v) in s
            .result
            .iter_mut()
            .zip(&result)
            .chain(s.post.iter_mut().zip(&post))
        {
            for (a, &x) in acc.iter_mut().zip(v) {
                *a += x as f64;
            }
        }
        Ok(())
    }

    /// Pairs added for prompts of `n_tokens` tokens.
    pub fn count(&self, n_tokens: usize) -> usize {
        self.by_len.get(&n_tokens).map_or(0, |s| s.count)
    }

    /// The replacements that hold `components` at their mean for a prompt of `t` tokens.
    pub fn replacements(
        &self,
        cfg: &Config,
        t: usize,
        components: &BTreeMap<Component, Vec<[usize; 2]>>,
    ) -> Result<Vec<Replacement>> {
        let s = self.by_len.get(&t).ok_or_else(|| {
            Error::Input(format!(
                "no corrupt prompt of {t} tokens to take a mean from"
            ))
        })?;
        let k = s.count as f64;
        let mut out = Vec::new();
        for (&c, list) in components {
            for &[layer, index] in list {
                check_component(cfg, c, layer, index)?;
                let values: Vec<f32> = match c {
                    Component::Heads => {
                        let (h, d) = (cfg.n_heads, cfg.d_model);
                        (0..t)
                            .flat_map(|p| {
                                let row = &s.result[layer][(p * h + index) * d..][..d];
                                row.iter().map(move |&x| (x / k) as f32)
                            })
                            .collect()
                    }
                    Component::Neurons => (0..t)
                        .map(|p| (s.post[layer][p * cfg.d_mlp + index] / k) as f32)
                        .collect(),
                };
                out.push(Replacement {
                    layer,
                    component: c,
                    index,
                    values,
                });
            }
        }
        Ok(out)
    }
}

/// A pair's metrics with and without an ablation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ablated {
    pub metric_clean: f32,
    pub metric_corrupt: f32,
    /// The clean prompt's metric with the components held.
    pub metric_ablated: f32,
}

/// The clean prompt's metric with `components` held at the pair's own
/// corrupt activations (a dataset of one pair), and the clean and corrupt
/// metrics on the same engine: the page's click-to-ablate.
pub async fn ablate_pair<E: Engine>(
    e: &E,
    pair: &Pair,
    components: &BTreeMap<Component, Vec<[usize; 2]>>,
) -> Result<Ablated> {
    let clean = e.run(&pair.clean, &pair.metric).await?;
    let metric_clean = e.metric(&clean);
    drop(clean);
    let mut means = MeanActivations::default();
    let corrupt = e.run(&pair.corrupt, &pair.metric).await?;
    let metric_corrupt = e.metric(&corrupt);
    means.add(e, &corrupt, pair.corrupt.len()).await?;
    drop(corrupt);
    let reps = means.replacements(e.config(), pair.clean.len(), components)?;
    let metric_ablated = e
        .metric_with_replacements(&pair.clean, &pair.metric, &reps)
        .await?;
    Ok(Ablated {
        metric_clean,
        metric_corrupt,
        metric_ablated,
    })
}

/// One pair's ablation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairAblation {
    pub index: usize,
    pub heads: usize,
    pub neurons: usize,
    pub metric_clean: f32,
    pub metric_corrupt: f32,
    pub metric_ablated: f32,
    /// metric_ablated − metric_clean.
    pub change: f32,
    /// (metric_ablated − metric_corrupt) / (metric_clean − metric_corrupt):
    /// 1 = the ablation changed nothing, 0 = as bad as the corrupt prompt.
    pub retained: Option<f64>,
}

/// One set's ablation over a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetAblation {
    pub set: String,
    pub pairs: Vec<PairAblation>,
    pub change: Stat,
    pub retained: Stat,
    /// Components ablated per pair, heads and neurons.
    pub heads: Stat,
    pub neurons: Stat,
}

/// The file `patchlab ablate` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblationReport {
    pub kind: String,
    /// How the replacement values were made.
    pub mean: String,
    pub sets: Vec<SetAblation>,
}

/// Tells the observer of step `done` of `total`; Err(Cancelled) if it says stop.
fn step(obs: &mut dyn Observer, stage: &str, done: usize, total: usize) -> Result<()> {
    let p = Progress {
        stage,
        done: done as u64,
        total: total as u64,
    };
    if obs.progress(&p) {
        Ok(())
    } else {
        Err(Error::Cancelled)
    }
}

/// Ablates every set on every pair `(dataset index, report)`; the mean
/// corrupt activations come from all the pairs given. The observer hears
/// each step (pair k of n, per stage) and may pause before each engine call.
pub async fn ablate_dataset<E: Engine>(
    e: &E,
    tok: &Tokenizer,
    reports: &[(usize, Report)],
    sets: &[(String, AblationSet)],
    obs: &mut dyn Observer,
) -> Result<AblationReport> {
    let cfg = e.config().clone();
    let pairs: Vec<Pair> = reports
        .iter()
        .map(|(i, r)| {
            Pair::from_prompts(tok, &cfg, &r.prompts)
                .map_err(|err| Error::Input(format!("pair {i}: {err}")))
        })
        .collect::<Result<_>>()?;
    let mut means = MeanActivations::default();
    for (k, p) in pairs.iter().enumerate() {
        step(obs, "mean corrupt activations", k, pairs.len())?;
        pause(obs).await?;
        let run = e.run(&p.corrupt, &p.metric).await?;
        means.add(e, &run, p.corrupt.len()).await?;
    }
    let mut out = Vec::new();
    for (name, set) in sets {
        let mut rows = Vec::with_capacity(pairs.len());
        for (k, ((index, report), pair)) in reports.iter().zip(&pairs).enumerate() {
            step(obs, &format!("ablating {name}"), k, pairs.len())?;
            let comps = set.select(report)?;
            let reps = means.replacements(&cfg, pair.clean.len(), &comps)?;
            pause(obs).await?;
            let ablated = e
                .metric_with_replacements(&pair.clean, &pair.metric, &reps)
                .await?;
            let (mc, mk) = (report.metric.clean, report.metric.corrupt);
            let gap = (mc - mk) as f64;
            rows.push(PairAblation {
                index: *index,
                heads: comps.get(&Component::Heads).map_or(0, Vec::len),
                neurons: comps.get(&Component::Neurons).map_or(0, Vec::len),
                metric_clean: mc,
                metric_corrupt: mk,
                metric_ablated: ablated,
                change: ablated - mc,
                retained: (gap != 0.0).then(|| (ablated as f64 - mk as f64) / gap),
            });
        }
        let stat =
            |f: &dyn Fn(&PairAblation) -> Option<f64>| Stat::of(rows.iter().map(f).collect());
        out.push(SetAblation {
            set: name.clone(),
            change: stat(&|r| Some(r.change as f64)),
            retained: stat(&|r| r.retained),
            heads: stat(&|r| Some(r.heads as f64)),
            neurons: stat(&|r| Some(r.neurons as f64)),
            pairs: rows,
        });
    }
    Ok(AblationReport {
        kind: "patchlab-ablation".into(),
        mean: "per position, over the corrupt prompts with the same number of tokens".into(),
        sets: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sets_and_explains_bad_ones() {
        assert_eq!(
            AblationSet::parse("and:both").unwrap(),
            AblationSet::Latent(LatentKind::And, Pick::Both)
        );
        assert_eq!(
            AblationSet::parse("h9.6, n0.12").unwrap(),
            AblationSet::Fixed {
                heads: vec![[9, 6]],
                neurons: vec![[0, 12]]
            }
        );
        for bad in ["xor:ig", "and:all", "h9", "q1.2", "h1.x", ""] {
            let e = AblationSet::parse(bad).unwrap_err().to_string();
            assert!(e.contains("and:X"), "{bad}: {e}");
        }
    }
}
