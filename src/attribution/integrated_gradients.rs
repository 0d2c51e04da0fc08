//! Layer integrated gradients with captum's semantics (docs/methods.md,
//! "Integrated gradients (IG)"): a straight path in the target layer's
//! activation space, y(α) = y_b + α (y_o − y_b), attributions
//! (y_o − y_b) ⊙ Σ_k w_k ∂m/∂y|y(α_k).

use super::quadrature::{nodes_and_weights, Rule};
use super::{Direction, LayerScores, Method, ScoreMap, Tracker};
use crate::engine::{Array, Component, Engine, LayerComponents, SweepPair};
use crate::error::Result;

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
        track.pause().await?;
        let grads = e
            .path_gradients_group(pairs, site, &alphas, &weights)
            .await?;
        let hook = component.hook(layer);
        for (i, (p, g)) in pairs.iter().zip(grads).enumerate() {
            let (yb, yo) = (
                e.activation(p.base, &hook).await?,
                e.activation(p.other, &hook).await?,
            );
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
        track.advance(&stage, (pairs.len() * 3 * alphas.len()) as u64)?;
    }
    Ok(out)
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
