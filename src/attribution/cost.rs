//! What an analysis costs before it runs (docs/performance.md, "Cost
//! model"): the matrix-product FLOPs of every phase, counted from the tail
//! plans the engines run, and the memory the two runs of a pair keep.
//!
//! The same counts are the units of progress, so a bar and its ETA move
//! with the work (a patch at layer 0 runs twelve blocks, one at layer 11
//! one), and `patchlab bench --estimate` prints them beside measured times. An engine call
//! can be held to a work budget (`run::Options::work_per_call`): AP's patches
//! and IG's path points are then split into calls of at most that many
//! FLOPs, so a host's pause (and with it Cancel) comes that often.

use super::Method;
use crate::engine::plan::{Step, TailPlan};
use crate::engine::{Component, LayerComponents, Start};
use crate::model::Config;
use crate::report::PatchSite;

/// Matrix-product FLOPs of one tail from `start` on `n` rows of a
/// `t`-token prompt: the plan's sublayers (attention: q, k, v and output
/// projections, scores and weighted values; MLP: both projections), the
/// final block's attention at the last row only.
pub fn tail_flops(cfg: &Config, start: Start, n: usize, t: usize) -> f64 {
    let (d, m, t) = (cfg.d_model as f64, cfg.d_mlp as f64, t as f64);
    let plan = TailPlan::new(start, cfg.n_layers);
    let mut f = 0.0;
    for (step, rows) in plan.steps.iter().zip(plan.step_rows(n)) {
        let rows = rows as f64;
        f += match *step {
            Step::Mlp(_) => rows * 2.0 * 2.0 * d * m,
            // keys and values of every row, queries and output of those kept
            Step::Attn { last_only, .. } => {
                let q = if last_only { 1.0 } else { rows };
                rows * 2.0 * 2.0 * d * d + q * (2.0 * 2.0 * d * d + 2.0 * 2.0 * t * d)
            }
        };
    }
    f
}

/// Matrix-product FLOPs of the backward of one tail (`tail_flops`'s
/// shape): only ∂m/∂input is needed, so every linear layer costs what its
/// forward does (dY·Wᵀ), and attention's two products with the scores
/// become four (∂P, ∂V, ∂Q, ∂K).
pub fn tail_backward_flops(cfg: &Config, start: Start, n: usize, t: usize) -> f64 {
    let (d, tf) = (cfg.d_model as f64, t as f64);
    let plan = TailPlan::new(start, cfg.n_layers);
    let mut scores = 0.0;
    for (step, rows) in plan.steps.iter().zip(plan.step_rows(n)) {
        if let Step::Attn { last_only, .. } = *step {
            let q = if last_only { 1.0 } else { rows as f64 };
            scores += q * 2.0 * 2.0 * tf * d;
        }
    }
    tail_flops(cfg, start, n, t) + scores
}

/// Matrix-product FLOPs of the cached forward of one `t`-token prompt.
pub fn forward_flops(cfg: &Config, t: usize) -> f64 {
    let (d, m, t) = (cfg.d_model as f64, cfg.d_mlp as f64, t as f64);
    cfg.n_layers as f64 * (t * (2.0 * 4.0 * d * d + 2.0 * 2.0 * d * m) + 2.0 * 2.0 * t * t * d)
}

/// One AP patch of a component of `which`: the tail from the layer's
/// residual point on the `n` rows from the first difference.
pub fn ap_patch_flops(cfg: &Config, which: LayerComponents, n: usize, t: usize) -> f64 {
    tail_flops(cfg, Start::of(which), n, t)
}

/// One point α of IG's path at `which`: the tail forward and backward.
pub fn ig_point_flops(cfg: &Config, which: LayerComponents, n: usize, t: usize) -> f64 {
    let start = Start::of(which);
    tail_flops(cfg, start, n, t) + tail_backward_flops(cfg, start, n, t)
}

/// What a layer's IG adds once after its path: neurons read ∂m/∂post =
/// ∂m/∂mlp_out · W_outᵀ.
pub fn ig_layer_flops(cfg: &Config, which: LayerComponents, n: usize) -> f64 {
    match which.component {
        Component::Heads => 0.0,
        Component::Neurons => 2.0 * n as f64 * cfg.d_model as f64 * cfg.d_mlp as f64,
    }
}

/// AtP of one component kind: one tail from the embeddings, forward and
/// backward, read at every block (neurons through W_outᵀ).
pub fn atp_flops(cfg: &Config, c: Component, n: usize, t: usize) -> f64 {
    let out = (0..cfg.n_layers)
        .map(|layer| {
            ig_layer_flops(
                cfg,
                LayerComponents {
                    layer,
                    component: c,
                },
                n,
            )
        })
        .sum::<f64>();
    tail_flops(cfg, Start::Embed, n, t) + tail_backward_flops(cfg, Start::Embed, n, t) + out
}

/// The residual point a patching site's perturbation enters at layer `l`.
pub fn site_start(site: PatchSite, l: usize) -> Start {
    match site {
        PatchSite::ResidPre if l == 0 => Start::Embed,
        PatchSite::ResidPre => Start::Post(l - 1),
        PatchSite::MlpOut => Start::Post(l),
        _ => Start::Mid(l),
    }
}

/// Tails AP of a patching site runs in one layer: the cells at or after
/// the first differing position (the others score 0 without a run).
pub fn site_ap_tails(cfg: &Config, site: PatchSite, t: usize, first_diff: usize) -> usize {
    let (h, n) = (cfg.n_heads, t - first_diff);
    match site {
        PatchSite::ResidPre | PatchSite::ResidMid | PatchSite::AttnOut | PatchSite::MlpOut => n,
        PatchSite::Z | PatchSite::Q | PatchSite::K | PatchSite::V | PatchSite::Pattern => h,
        PatchSite::PatternDestSrc => h * (first_diff..t).map(|d| d + 1).sum::<usize>(),
        _ => h * n,
    }
}

/// One method at one patching site in one layer: AP's tails, or a tail
/// forward and backward for AtP (once) and IG (per path point).
pub fn site_layer_flops(cfg: &Config, at: SiteLayer, t: usize, first_diff: usize) -> f64 {
    let n = t - first_diff;
    let start = site_start(at.site, at.layer);
    let grad = || tail_flops(cfg, start, n, t) + tail_backward_flops(cfg, start, n, t);
    match at.method {
        Method::Ap => {
            site_ap_tails(cfg, at.site, t, first_diff) as f64 * tail_flops(cfg, start, n, t)
        }
        Method::Atp => grad(),
        Method::Ig => (at.ig_steps + 1) as f64 * grad(),
    }
}

/// One method at one patching site in one layer.
#[derive(Debug, Clone, Copy)]
pub struct SiteLayer {
    pub site: PatchSite,
    pub method: Method,
    pub layer: usize,
    pub ig_steps: usize,
}

/// Bytes the CPU engine keeps for one cached run of a `t`-token prompt:
/// every hook of every block (heads' results and the attention scores and
/// pattern grow fastest), and each block's keys and values once more.
pub fn run_bytes(cfg: &Config, t: usize) -> f64 {
    let (d, m, h, t) = (
        cfg.d_model as f64,
        cfg.d_mlp as f64,
        cfg.n_heads as f64,
        t as f64,
    );
    // resid_pre, ln1, q, k, v, z, attn_out, resid_mid, ln2, mlp_out,
    // resid_post: d each; result: h·d; keys and values again: 2·d
    let per_layer = t * d * (11.0 + h + 2.0) + 2.0 * t * m + 2.0 * h * t * t + 2.0 * t;
    4.0 * (cfg.n_layers as f64 * per_layer + 2.0 * t * d)
}

/// The cost of one phase of an analysis: a method of a component kind (or
/// the patching sites, or the two cached forwards) in one direction.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PhaseCost {
    /// "forward", "ap", "ig", "atp" or "sites".
    pub method: &'static str,
    /// "heads" or "neurons"; absent for the forwards and the sites.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<&'static str>,
    /// "clean_to_corrupt" or "corrupt_to_clean"; absent for the forwards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<&'static str>,
    pub flops: f64,
}

/// What the analysis of a group of pairs will cost, before it runs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub phases: Vec<PhaseCost>,
    /// Σ of the phases' FLOPs.
    pub flops: f64,
    /// Bytes the pairs' cached runs keep (two a pair) on the CPU engine.
    pub run_bytes: f64,
}

impl Estimate {
    /// FLOPs of the phases that progress counts: all but the forwards,
    /// which run before the first progress report.
    pub fn tracked_flops(&self) -> f64 {
        self.phases
            .iter()
            .filter(|p| p.method != "forward")
            .map(|p| p.flops)
            .sum()
    }
}

/// The analysis's work for one pair: the component phases in the order
/// `run` runs them, the sites, and the forwards first.
pub fn estimate(cfg: &Config, opts: &super::run::Options, pairs: &[(usize, usize)]) -> Estimate {
    let mut phases = vec![PhaseCost {
        method: "forward",
        component: None,
        direction: None,
        flops: pairs
            .iter()
            .map(|&(t, _)| 2.0 * forward_flops(cfg, t))
            .sum(),
    }];
    for (c, m) in opts.component_phases() {
        for &d in &opts.directions {
            let flops = pairs
                .iter()
                .map(|&(t, fd)| method_flops(cfg, m, c, opts.ig_steps, t, fd))
                .sum();
            phases.push(PhaseCost {
                method: m.name(),
                component: Some(c.name()),
                direction: Some(d.name()),
                flops,
            });
        }
    }
    if !opts.sites.is_empty() {
        for &d in &opts.directions {
            let flops = pairs
                .iter()
                .map(|&(t, fd)| sites_flops(cfg, opts, t, fd))
                .sum();
            phases.push(PhaseCost {
                method: "sites",
                component: None,
                direction: Some(d.name()),
                flops,
            });
        }
    }
    if !opts.saes.is_empty() {
        // the changed features are known only once both runs are encoded:
        // AP assumes a typical count (`features::ASSUMED_CELLS_PER_POSITION`)
        for &d in &opts.directions {
            let flops = pairs
                .iter()
                .flat_map(|&shape| {
                    opts.saes.iter().map(move |sae| {
                        super::features::assumed_feature_flops(
                            cfg,
                            sae,
                            &opts.methods,
                            opts.ig_steps,
                            shape,
                        )
                    })
                })
                .sum();
            phases.push(PhaseCost {
                method: "features",
                component: None,
                direction: Some(d.name()),
                flops,
            });
        }
    }
    Estimate {
        flops: phases.iter().map(|p| p.flops).sum(),
        phases,
        run_bytes: pairs.iter().map(|&(t, _)| 2.0 * run_bytes(cfg, t)).sum(),
    }
}

/// One method of one component kind over every layer, one direction.
pub fn method_flops(
    cfg: &Config,
    m: Method,
    c: Component,
    steps: usize,
    t: usize,
    fd: usize,
) -> f64 {
    let n = t - fd;
    let layers = (0..cfg.n_layers).map(|layer| LayerComponents {
        layer,
        component: c,
    });
    match m {
        Method::Ap => layers
            .map(|w| c.count(cfg) as f64 * ap_patch_flops(cfg, w, n, t))
            .sum(),
        Method::Ig => layers
            .map(|w| (steps + 1) as f64 * ig_point_flops(cfg, w, n, t) + ig_layer_flops(cfg, w, n))
            .sum(),
        Method::Atp => atp_flops(cfg, c, n, t),
    }
}

/// Every requested method at every requested patching site, one direction.
pub fn sites_flops(cfg: &Config, opts: &super::run::Options, t: usize, fd: usize) -> f64 {
    let mut f = 0.0;
    for &site in &opts.sites {
        for &method in &opts.methods {
            for layer in 0..cfg.n_layers {
                let at = SiteLayer {
                    site,
                    method,
                    layer,
                    ig_steps: opts.ig_steps,
                };
                f += site_layer_flops(cfg, at, t, fd);
            }
        }
    }
    f
}

/// How many of a call's items fit a work budget: at least one, at most
/// `max`; all of them (up to `max`) without a budget.
pub fn items_per_call(per_item: f64, budget: Option<f64>, max: usize) -> usize {
    match budget {
        Some(b) if per_item > 0.0 => ((b / per_item).floor() as usize).clamp(1, max.max(1)),
        _ => max.max(1),
    }
}

/// Progress units of FLOPs (u64 holds 1.8e19; GPT-2 small's full
/// analysis is ~1e14).
pub fn units(flops: f64) -> u64 {
    flops.round().max(0.0) as u64
}
