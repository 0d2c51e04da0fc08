//! Attribution patching (SPEC "AtP"): the first-order estimate of activation
//! patching, (a_other − a_base) · ∂m/∂a at the base run, normalised like AP.

use super::integrated_gradients::attribution_sums;
use super::{Direction, Method, ScoreMap, Tracker};
use crate::engine::{Component, Engine, Site};
use crate::error::Result;

pub async fn attribution_patching<E: Engine>(
    e: &E,
    base: &E::Run,
    other: &E::Run,
    component: Component,
    first_diff: usize,
    dir: Direction,
    track: &mut Tracker<'_>,
) -> Result<ScoreMap> {
    let cfg = e.config();
    let denom = (e.metric(base) - e.metric(other)) as f64;
    let stage = format!("AtP {} {}", dir.name(), component.name());
    let mut map = Vec::with_capacity(cfg.n_layers);
    for layer in 0..cfg.n_layers {
        let site = Site { layer, component };
        let g = e
            .path_gradients(base, other, site, &[0.0], &[1.0], first_diff)
            .await?;
        let hook = component.hook(layer);
        let (yb, yo) = (
            e.activation(base, &hook).await?,
            e.activation(other, &hook).await?,
        );
        let (sums, _) = attribution_sums(&yb, &yo, &g.weighted_grad, component);
        let row: Vec<f32> = sums.iter().map(|s| (s / denom) as f32).collect();
        track.partial(Method::Atp, dir, component, layer, &row);
        map.push(row);
        track.advance(&stage, 3)?;
    }
    Ok(map)
}
