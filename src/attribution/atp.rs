//! Attribution patching (docs/methods.md, "Attribution patching (AtP)"): the
//! first-order estimate of activation patching, (a_other − a_base) · ∂m/∂a
//! at the base run, normalised like AP.

use super::integrated_gradients::attribution_sums;
use super::{
    cost, layer_activations, layers_per_read, Direction, LayerScores, Method, ScoreMap, Tracker,
};
use crate::engine::{Component, Engine, RunInfo, SweepPair};
use crate::error::Result;

/// AtP of one component kind for each pair of a group (one map per pair).
pub async fn attribution_patching<E: Engine>(
    e: &E,
    pairs: &[SweepPair<'_, E::Run>],
    component: Component,
    dir: Direction,
    track: &mut Tracker<'_>,
) -> Result<Vec<ScoreMap>> {
    let cfg = e.config();
    let stage = format!("AtP {} {}", dir.name(), component.name());
    let mut maps = Vec::with_capacity(pairs.len());
    for (i, p) in pairs.iter().enumerate() {
        let denom = (e.metric(p.base) - e.metric(p.other)) as f64;
        let mut map = Vec::with_capacity(cfg.n_layers);
        // one forward and one backward for all layers
        track.pause().await?;
        let grads = e
            .base_gradients(p.base, p.other, component, p.first_diff)
            .await?;
        let t = p.base.tokens().len();
        let per_layer = cost::atp_flops(cfg, component, t - p.first_diff, t) / cfg.n_layers as f64;
        // both runs' activations, as many layers per read-back as fit
        let chunk = layers_per_read(cfg, component, 2, t);
        let mut acts = Vec::new().into_iter();
        for (layer, g) in grads.iter().enumerate() {
            if layer % chunk == 0 {
                let layers = layer..(layer + chunk).min(cfg.n_layers);
                acts = layer_activations(e, p.base, p.other, component, layers)
                    .await?
                    .into_iter();
            }
            let (yb, yo) = acts.next().expect("read with its chunk");
            let (sums, _) = attribution_sums(&yb, &yo, g, component);
            let row: Vec<f32> = sums.iter().map(|s| (s / denom) as f32).collect();
            track.partial(&LayerScores {
                pair: i,
                method: Method::Atp,
                direction: dir,
                component,
                layer,
                scores: &row,
            });
            map.push(row);
            track.advance(&stage, cost::units(per_layer))?;
        }
        maps.push(map);
    }
    Ok(maps)
}
