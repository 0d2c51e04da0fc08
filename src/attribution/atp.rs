//! Attribution patching (SPEC "AtP"): the first-order estimate of activation
//! patching, (a_other − a_base) · ∂m/∂a at the base run, normalised like AP.

use super::integrated_gradients::attribution_sums;
use super::{Direction, Method, ScoreMap, Tracker};
use crate::engine::{Component, Engine};
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
    // one forward and one backward for all layers
    let grads = e.base_gradients(base, other, component, first_diff).await?;
    for (layer, g) in grads.iter().enumerate() {
        let hook = component.hook(layer);
        let (yb, yo) = (
            e.activation(base, &hook).await?,
            e.activation(other, &hook).await?,
        );
        let (sums, _) = attribution_sums(&yb, &yo, g, component);
        let row: Vec<f32> = sums.iter().map(|s| (s / denom) as f32).collect();
        track.partial(Method::Atp, dir, component, layer, &row);
        map.push(row);
        track.advance(&stage, 3)?;
    }
    Ok(map)
}
