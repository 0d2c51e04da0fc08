//! Activation patching (docs/methods.md, "Activation patching (AP)"): the
//! fast sweep and the plain per-component loop it is checked against.

use super::{cost, Direction, LayerScores, Method, ScoreMap, Tracker};
use crate::engine::{Array, Component, Engine, LayerComponents, Metric, RunInfo, SweepPair};
use crate::error::Result;

/// Components per engine call at most; the observer's work budget may ask
/// for fewer (`cost::items_per_call`).
const CHUNK: usize = 512;

/// AP(L, c) = (m_patched − m_base) / (m_base − m_other) for every component
/// of one kind, for each pair of a group (one map per pair, in order), via
/// the engine's batched tail passes (which the pairs may share).
pub async fn activation_patching<E: Engine>(
    e: &E,
    pairs: &[SweepPair<'_, E::Run>],
    component: Component,
    dir: Direction,
    track: &mut Tracker<'_>,
) -> Result<Vec<ScoreMap>> {
    let cfg = e.config();
    let norm: Vec<(f32, f32)> = pairs
        .iter()
        .map(|p| {
            let (m_base, m_other) = (e.metric(p.base), e.metric(p.other));
            (m_base, m_base - m_other)
        })
        .collect();
    let count = component.count(cfg);
    let stage = format!("AP {} {}", dir.name(), component.name());
    let mut maps = vec![Vec::with_capacity(cfg.n_layers); pairs.len()];
    for layer in 0..cfg.n_layers {
        let site = LayerComponents { layer, component };
        // one patch of every pair: the work of a component in this call
        let per_patch: f64 = pairs
            .iter()
            .map(|p| {
                let t = p.base.tokens().len();
                cost::ap_patch_flops(cfg, site, t - p.first_diff, t)
            })
            .sum();
        let per_call = cost::items_per_call(per_patch, track.work_per_call(), CHUNK);
        let mut rows = vec![Vec::with_capacity(count); pairs.len()];
        let mut c = 0;
        while c < count {
            let end = (c + per_call).min(count);
            track.pause().await?;
            let ms = e.patch_metrics_group(pairs, site, c..end).await?;
            for ((row, m), &(m_base, denom)) in rows.iter_mut().zip(ms).zip(&norm) {
                row.extend(m.into_iter().map(|m| (m - m_base) / denom));
            }
            track.advance(&stage, cost::units(per_patch * (end - c) as f64))?;
            c = end;
        }
        for (i, (map, row)) in maps.iter_mut().zip(rows).enumerate() {
            track.partial(&LayerScores {
                pair: i,
                method: Method::Ap,
                direction: dir,
                component,
                layer,
                scores: &row,
            });
            map.push(row);
        }
    }
    Ok(maps)
}

/// The plain per-component loop: one full hooked forward per component, the
/// component replaced at every position. The reference the fast path is
/// tested against, and the baseline of the benchmark. `components` limits
/// the loop to some (layer, index) pairs; `None` does them all.
pub async fn activation_patching_naive<E: Engine>(
    e: &E,
    base_tokens: &[u32],
    metric: &Metric,
    base: &E::Run,
    other: &E::Run,
    component: Component,
    only: Option<&[(usize, usize)]>,
) -> Result<Vec<((usize, usize), f32)>> {
    let cfg = e.config();
    let (m_base, m_other) = (e.metric(base), e.metric(other));
    let all: Vec<(usize, usize)> = (0..cfg.n_layers)
        .flat_map(|l| (0..component.count(cfg)).map(move |c| (l, c)))
        .collect();
    let list = only.map_or(all, |o| o.to_vec());
    let mut out = Vec::with_capacity(list.len());
    let mut cache: Option<(usize, Array, Array)> = None;
    for (layer, c) in list {
        let hook = component.hook(layer);
        if cache.as_ref().map(|x| x.0) != Some(layer) {
            cache = Some((
                layer,
                e.activation(base, &hook).await?,
                e.activation(other, &hook).await?,
            ));
        }
        let (_, b, o) = cache.as_ref().expect("set above");
        let mut patched = b.clone();
        replace_component(&mut patched, o, component, c);
        let m = e
            .metric_with_substitutions(base_tokens, metric, &[(hook, patched)])
            .await?;
        out.push(((layer, c), (m - m_base) / (m_base - m_other)));
    }
    Ok(out)
}

/// Copies component `c` of `src` into `dst` at every position:
/// `hook_result[:, c, :]` for heads, `hook_post[:, c]` for neurons.
pub fn replace_component(dst: &mut Array, src: &Array, component: Component, c: usize) {
    let positions = dst.shape[0];
    match component {
        Component::Heads => {
            let (h, d) = (dst.shape[1], dst.shape[2]);
            for p in 0..positions {
                let o = (p * h + c) * d;
                dst.data[o..o + d].copy_from_slice(&src.data[o..o + d]);
            }
        }
        Component::Neurons => {
            let n = dst.shape[1];
            for p in 0..positions {
                dst.data[p * n + c] = src.data[p * n + c];
            }
        }
    }
}
