//! Layer integrated gradients with captum's semantics (docs/methods.md,
//! "Integrated gradients (IG)"): a straight path in the target layer's
//! activation space, y(α) = y_b + α (y_o − y_b), attributions
//! (y_o − y_b) ⊙ Σ_k w_k ∂m/∂y|y(α_k).

use super::quadrature::{nodes_and_weights, Rule};
use super::{cost, Direction, LayerScores, Method, ScoreMap, Tracker};
use crate::engine::{Array, Component, Engine, LayerComponents, PathGrads, RunInfo, SweepPair};
use crate::error::Result;
use crate::model::Config;

/// IG scores of one component kind and the convergence delta per layer:
/// Σ attr − (m(y_o) − m(y_b)).
pub struct IgResult {
    pub scores: ScoreMap,
    pub convergence_delta: Vec<f32>,
}

/// IG of one component kind for each pair of a group (one result per pair,
/// in order); the pairs' gradient passes may be shared.
pub async fn integrated_gradients<E: Engine>(
    e: &E,
    pairs: &[SweepPair<'_, E::Run>],
    component: Component,
    (steps, rule): (usize, Rule),
    dir: Direction,
    track: &mut Tracker<'_>,
) -> Result<Vec<IgResult>> {
    let cfg = e.config();
    let (a, w) = nodes_and_weights(rule, steps)?;
    // one extra evaluation at α = 1 with weight 0 gives m(y_o) for the delta
    let mut alphas: Vec<f32> = a.iter().map(|&x| x as f32).collect();
    let mut weights: Vec<f32> = w.iter().map(|&x| x as f32).collect();
    alphas.push(1.0);
    weights.push(0.0);
    let stage = format!("IG {} {}", dir.name(), component.name());
    let mut out: Vec<IgResult> = pairs
        .iter()
        .map(|_| IgResult {
            scores: Vec::with_capacity(cfg.n_layers),
            convergence_delta: Vec::with_capacity(cfg.n_layers),
        })
        .collect();
    for layer in 0..cfg.n_layers {
        let site = LayerComponents { layer, component };
        let grads = path_in_calls(e, pairs, site, (&alphas, &weights), &stage, track).await?;
        let hook = component.hook(layer);
        // every pair's two activations with one read-back
        let reads: Vec<(&E::Run, &str)> = pairs
            .iter()
            .flat_map(|p| [(p.base, hook.as_str()), (p.other, hook.as_str())])
            .collect();
        let mut acts = e.activations(&reads).await?.into_iter();
        for (i, (p, g)) in pairs.iter().zip(grads).enumerate() {
            let (Some(yb), Some(yo)) = (acts.next(), acts.next()) else {
                unreachable!("two activations read per pair");
            };
            let (sums, total) = attribution_sums(&yb, &yo, &g.weighted_grad, component);
            // captum's reduction, kept by the report: mean over positions (and d_model for heads)
            let per_pos = yb.shape[0]
                * if component == Component::Heads {
                    yb.shape[2]
                } else {
                    1
                };
            let per_component: Vec<f32> =
                sums.iter().map(|s| (s / per_pos as f64) as f32).collect();
            let m_base = e.metric(p.base) as f64;
            let m_other_at_layer = *g.metrics.last().expect("α = 1 evaluated") as f64;
            out[i]
                .convergence_delta
                .push((total - (m_other_at_layer - m_base)) as f32);
            track.partial(&LayerScores {
                pair: i,
                method: Method::Ig,
                direction: dir,
                component,
                layer,
                scores: &per_component,
            });
            out[i].scores.push(per_component);
        }
    }
    Ok(out)
}

/// Σ_k w_k ∂m/∂y along the path and m at each point, for each pair: one
/// engine call, or as many as the observer's work budget asks for (the
/// points split in order, the weighted sums added in that order: float
/// noise apart, the same numbers).
async fn path_in_calls<E: Engine>(
    e: &E,
    pairs: &[SweepPair<'_, E::Run>],
    site: LayerComponents,
    (alphas, weights): (&[f32], &[f32]),
    stage: &str,
    track: &mut Tracker<'_>,
) -> Result<Vec<PathGrads>> {
    let cfg = e.config();
    let work = |f: fn(&Config, LayerComponents, usize, usize) -> f64| -> f64 {
        pairs
            .iter()
            .map(|p| {
                let t = p.base.tokens().len();
                f(cfg, site, t - p.first_diff, t)
            })
            .sum()
    };
    let per_point = work(cost::ig_point_flops);
    let after = work(|cfg, site, n, _| cost::ig_layer_flops(cfg, site, n));
    let per_call = cost::items_per_call(per_point, track.work_per_call(), alphas.len());
    let calls = alphas.len().div_ceil(per_call);
    let mut sums: Option<Vec<PathGrads>> = None;
    for (i, (a, w)) in alphas
        .chunks(per_call)
        .zip(weights.chunks(per_call))
        .enumerate()
    {
        track.pause().await?;
        let part = e.path_gradients_group(pairs, site, a, w).await?;
        sums = Some(match sums {
            None => part,
            Some(mut acc) => {
                for (s, p) in acc.iter_mut().zip(part) {
                    s.metrics.extend(p.metrics);
                    for (x, y) in s.weighted_grad.data.iter_mut().zip(p.weighted_grad.data) {
                        *x += y;
                    }
                }
                acc
            }
        });
        let done = per_point * a.len() as f64 + if i + 1 == calls { after } else { 0.0 };
        track.advance(stage, cost::units(done))?;
    }
    Ok(sums.unwrap_or_default())
}

/// attr = (y_o − y_b) ⊙ G summed per component — heads: over positions and
/// d_model; neurons: over positions — and the sum of every attribution (for
/// the completeness check). `grad` is [pos, d_model] for heads (shared by all
/// heads), [pos, d_mlp] for neurons.
pub fn attribution_sums(
    yb: &Array,
    yo: &Array,
    grad: &Array,
    component: Component,
) -> (Vec<f64>, f64) {
    let pos = yb.shape[0];
    match component {
        Component::Heads => {
            let (h, d) = (yb.shape[1], yb.shape[2]);
            let mut per = vec![0f64; h];
            for p in 0..pos {
                let g = &grad.data[p * d..(p + 1) * d];
                for (hi, acc) in per.iter_mut().enumerate() {
                    let o = (p * h + hi) * d;
                    let s: f64 = (0..d)
                        .map(|i| ((yo.data[o + i] - yb.data[o + i]) * g[i]) as f64)
                        .sum();
                    *acc += s;
                }
            }
            let total = per.iter().sum();
            (per, total)
        }
        Component::Neurons => {
            let n = yb.shape[1];
            let mut per = vec![0f64; n];
            for p in 0..pos {
                for (i, acc) in per.iter_mut().enumerate() {
                    let o = p * n + i;
                    *acc += ((yo.data[o] - yb.data[o]) * grad.data[o]) as f64;
                }
            }
            let total = per.iter().sum();
            (per, total)
        }
    }
}
