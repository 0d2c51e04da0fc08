//! Activation patching, attribution patching and layer integrated gradients
//! at TransformerLens's patching sites (`report::PatchSite`): the residual
//! stream by (layer, position), a head's z / q / k / v over all positions or
//! by position, and its attention pattern whole, by destination or by
//! (destination, source). docs/methods.md defines every score.
//!
//! Every site changes the rest of the network through the residual stream
//! at one point, so each patch becomes a perturbation of the base run's
//! residual rows there and the engine runs the tails (`resid_metrics`,
//! `resid_gradients`), batched:
//! - `resid_pre` / `resid_mid` / `attn_out` / `mlp_out` at a position: that
//!   row of the stream changes by the other run's minus the base run's value;
//! - a head's z: `attn_out` changes by Δz · W_O[h] (= Δ`hook_result`);
//! - a head's q, k, v or pattern: the head's attention is recomputed here,
//!   on the host (`engine::attention`), from the runs' cached q, k, v and
//!   pattern (one head of one layer, T × T), and `attn_out` changes by
//!   Δz · W_O[h].
//!
//! Nothing differs before the first differing token, so a perturbation that
//! is zero everywhere scores exactly 0 and is never run.

use super::cost::{self, site_start};
use super::quadrature::{nodes_and_weights, Rule};
use super::{Direction, Tracker};
use crate::engine::attention::{head_attention, head_attention_backward, HeadInputs};
use crate::engine::{Engine, Start, SweepPair};
use crate::error::Result;
use crate::model::Config;
use crate::report::{Method, MethodKey, PatchSite, SiteMap};
use std::collections::BTreeMap;

mod heads;
mod methods;
mod queue;

use heads::{add_head_output, HeadAttn, Pick, HEADS_PER_CALL};
use queue::{ApCells, ApQueue};

/// Perturbations per engine call: bounds the host memory of one batch
/// (each is [T − first_diff, d_model]); the engine splits it into passes.
const BATCH: usize = 256;

/// The maps of one pair and direction: results[method][site].
pub type SiteResults = BTreeMap<MethodKey, BTreeMap<PatchSite, SiteMap>>;

/// One pair's runs in one direction, with what every site needs.
struct Ctx<'a, E: Engine> {
    e: &'a E,
    base: &'a E::Run,
    other: &'a E::Run,
    cfg: Config,
    t: usize,
    first_diff: usize,
    m_base: f32,
    /// m_base − m_other.
    gap: f64,
}

/// A layer's activations of both runs, fetched once.
struct Acts {
    base: BTreeMap<&'static str, Vec<f32>>,
    other: BTreeMap<&'static str, Vec<f32>>,
}

impl Acts {
    fn b(&self, name: &str) -> &[f32] {
        &self.base[name]
    }
    fn o(&self, name: &str) -> &[f32] {
        &self.other[name]
    }
    fn delta(&self, name: &str) -> Vec<f32> {
        self.o(name)
            .iter()
            .zip(self.b(name))
            .map(|(o, b)| o - b)
            .collect()
    }
}

/// The hook (of `Acts`) a residual site reads.
fn resid_hook(site: PatchSite) -> &'static str {
    match site {
        PatchSite::ResidPre => "hook_resid_pre",
        PatchSite::ResidMid => "hook_resid_mid",
        PatchSite::AttnOut => "hook_attn_out",
        _ => "hook_mlp_out",
    }
}

/// The attention input a head site changes.
#[derive(Clone, Copy, PartialEq)]
enum Input {
    Q,
    K,
    V,
    Pattern,
}

fn input_of(site: PatchSite) -> Option<Input> {
    match site {
        PatchSite::Q | PatchSite::QByPos => Some(Input::Q),
        PatchSite::K | PatchSite::KByPos => Some(Input::K),
        PatchSite::V | PatchSite::VByPos => Some(Input::V),
        PatchSite::Pattern | PatchSite::PatternByDest | PatchSite::PatternDestSrc => {
            Some(Input::Pattern)
        }
        _ => None,
    }
}

/// What to compute at the sites.
#[derive(Debug, Clone, Copy)]
pub struct SiteAsk<'a> {
    pub sites: &'a [PatchSite],
    pub methods: &'a [Method],
    pub ig_steps: usize,
    pub ig_rule: Rule,
}

/// Computes every requested method at every requested site for one pair
/// in one direction. AP and AtP are normalised by m_base − m_other; IG is
/// the raw sum of captum's attributions over the site's cells (IG* is
/// derived from it by the report).
pub async fn site_scores<E: Engine>(
    e: &E,
    pair: SweepPair<'_, E::Run>,
    ask: &SiteAsk<'_>,
    dir: Direction,
    track: &mut Tracker<'_>,
) -> Result<SiteResults> {
    let SweepPair {
        base,
        other,
        first_diff,
    } = pair;
    let (sites, methods) = (ask.sites, ask.methods);
    let cfg = e.config().clone();
    let t = e.activation(base, "blocks.0.hook_resid_pre").await?.shape[0];
    let (m_base, m_other) = (e.metric(base), e.metric(other));
    let cx = Ctx {
        e,
        base,
        other,
        t,
        first_diff,
        m_base,
        gap: m_base as f64 - m_other as f64,
        cfg,
    };
    let mut out = SiteResults::new();
    let (alphas, weights) = nodes_and_weights(ask.ig_rule, ask.ig_steps)?;
    let path = (
        alphas.iter().map(|&a| a as f32).collect::<Vec<_>>(),
        weights.iter().map(|&w| w as f32).collect::<Vec<_>>(),
    );
    // AtP's gradients at the base run, at every point where a site starts,
    // from one backward (mlp_out at layer l starts where resid_pre at
    // layer l + 1 does)
    let mut base_grads: Vec<(Start, Vec<f32>)> = Vec::new();
    if methods.contains(&Method::Atp) {
        let mut starts: Vec<Start> = Vec::new();
        for l in 0..cx.cfg.n_layers {
            for &site in sites {
                let start = site_start(site, l);
                if !starts.contains(&start) {
                    starts.push(start);
                }
            }
        }
        track.pause().await?;
        let grads = e.resid_base_gradients(base, first_diff, &starts).await?;
        base_grads = starts.into_iter().zip(grads).collect();
    }
    // AP's perturbations, run by start point (queue.rs)
    let mut queue = ApQueue::default();
    for l in 0..cx.cfg.n_layers {
        let acts = cx.acts(l).await?;
        let (w_o, b_v) = if sites.iter().any(|s| !s.is_residual()) {
            let hw = e.head_weights(l).await?;
            (hw.w_o.data, hw.b_v)
        } else {
            (vec![], vec![])
        };
        for &m in methods {
            let stage = format!("{} {} sites, layer {l}", m.name(), dir.name());
            // IG's paths, one per hook, shared by the sites on it
            let mut ig_paths: Vec<(&str, IgPath)> = Vec::new();
            for &site in sites {
                track.pause().await?;
                let at = cost::SiteLayer {
                    site,
                    method: m,
                    layer: l,
                    ig_steps: ask.ig_steps,
                };
                let units = cost::units(cost::site_layer_flops(&cx.cfg, at, t, first_diff));
                let cells = match m {
                    Method::Ap => {
                        let weights = (&w_o[..], &b_v[..]);
                        let todo = (units, stage.as_str());
                        cx.ap((site, l), &acts, weights, todo, &mut queue, &mut out, track)
                            .await?;
                        continue;
                    }
                    Method::Atp => {
                        let start = site_start(site, l);
                        let g = &base_grads
                            .iter()
                            .find(|(s, _)| *s == start)
                            .expect("every site's start point")
                            .1;
                        cx.atp(site, &acts, (&w_o[..], &b_v[..]), g)?
                    }
                    Method::Ig => {
                        let key = ig_key(site);
                        if !ig_paths.iter().any(|(k, _)| *k == key) {
                            let weights = (&w_o[..], &b_v[..]);
                            let p = cx.ig_path(site, l, &acts, weights, &path).await?;
                            ig_paths.push((key, p));
                        }
                        let p = &ig_paths
                            .iter()
                            .find(|(k, _)| *k == key)
                            .expect("just added")
                            .1;
                        cx.ig_cells(site, &acts, p)
                    }
                };
                let map = out
                    .entry(m.into())
                    .or_default()
                    .entry(site)
                    .or_insert_with(|| SiteMap::zeros(site.shape(&cx.cfg, t)));
                let per_layer = cells.len();
                map.values[l * per_layer..(l + 1) * per_layer].copy_from_slice(&cells);
                track.advance(&stage, units)?;
            }
        }
        // the points of this layer's sites are done with
        base_grads.retain(|(s, _)| s.order() > Start::Mid(l).order());
        let later = |s: Start| s == Start::Post(l);
        queue.flush(&cx, |s| !later(s), &mut out, track).await?;
    }
    queue.flush(&cx, |_| true, &mut out, track).await?;
    Ok(out)
}

/// One layer's IG path of a hook: Σ_k w_k ∂m/∂(start rows) for the
/// residual stream ([n, d]), or per head Δx ⊙ Σ_k w_k ∂m/∂x for a head input.
enum IgPath {
    Resid(Vec<f32>),
    Heads(Vec<Vec<f64>>),
}

/// The hook whose IG path a site's cells are cut from.
fn ig_key(site: PatchSite) -> &'static str {
    match site {
        PatchSite::Z | PatchSite::ZByPos | PatchSite::AttnOut => "hook_attn_out",
        PatchSite::Q | PatchSite::QByPos => "attn.hook_q",
        PatchSite::K | PatchSite::KByPos => "attn.hook_k",
        PatchSite::V | PatchSite::VByPos => "attn.hook_v",
        PatchSite::Pattern | PatchSite::PatternByDest | PatchSite::PatternDestSrc => {
            "attn.hook_pattern"
        }
        s => resid_hook(s),
    }
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// Reduces per-head products (x ⊙ g over a head's input: [T, d_head] for
/// q / k / v, [T, T] for the pattern) to one layer's cells of `site`.
fn reduce(site: PatchSite, per_head: &[Vec<f64>], t: usize, dh: usize, h: usize) -> Vec<f64> {
    let row_sum = |v: &[f64], p: usize, w: usize| v[p * w..(p + 1) * w].iter().sum::<f64>();
    match site {
        PatchSite::Q | PatchSite::K | PatchSite::V | PatchSite::Pattern => {
            per_head.iter().map(|v| v.iter().sum()).collect()
        }
        PatchSite::QByPos | PatchSite::KByPos | PatchSite::VByPos => (0..t * h)
            .map(|i| row_sum(&per_head[i % h], i / h, dh))
            .collect(),
        PatchSite::PatternByDest => (0..h * t)
            .map(|i| row_sum(&per_head[i / t], i % t, t))
            .collect(),
        _ => per_head.iter().flat_map(|v| v.iter().copied()).collect(),
    }
}
