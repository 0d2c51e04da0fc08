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

use super::quadrature::{nodes_and_weights, Rule};
use super::{Direction, Tracker};
use crate::engine::attention::{head_attention, head_attention_backward, HeadInputs};
use crate::engine::{Engine, Start, SweepPair};
use crate::error::Result;
use crate::model::Config;
use crate::report::{Method, MethodKey, PatchSite, SiteMap};
use std::collections::BTreeMap;

/// Perturbations per engine call: bounds the host memory of one batch
/// (each is [T − first_diff, d_model]); the engine splits it into passes.
const BATCH: usize = 256;

/// The maps of one pair and direction: results[method][site].
pub type SiteResults = BTreeMap<MethodKey, BTreeMap<PatchSite, SiteMap>>;

/// Work units of the site maps of one pair and direction, for progress.
pub fn work(cfg: &Config, t: usize, sites: &[PatchSite], methods: &[Method], steps: usize) -> u64 {
    let per_layer: usize = sites
        .iter()
        .map(|s| {
            let cells: usize = s.shape(cfg, t)[1..].iter().product();
            methods
                .iter()
                .map(|m| match m {
                    Method::Ap => cells,
                    Method::Atp => 1,
                    Method::Ig => steps + 1,
                })
                .sum::<usize>()
        })
        .sum();
    (per_layer * cfg.n_layers) as u64
}

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

/// The residual stream point a residual site of layer `l` perturbs.
fn start_of(site: PatchSite, l: usize) -> Start {
    match site {
        PatchSite::ResidPre if l == 0 => Start::Embed,
        PatchSite::ResidPre => Start::Post(l - 1),
        PatchSite::MlpOut => Start::Post(l),
        _ => Start::Mid(l),
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
            // the gradients at the base run, one backward per start point
            let mut base_grads: Vec<(Start, Vec<f32>)> = Vec::new();
            // IG's paths, one per hook, shared by the sites on it
            let mut ig_paths: Vec<(&str, IgPath)> = Vec::new();
            for &site in sites {
                track.pause().await?;
                let cells = match m {
                    Method::Ap => cx.ap(site, l, &acts, (&w_o[..], &b_v[..])).await?,
                    Method::Atp => {
                        let start = start_of(site, l);
                        if !base_grads.iter().any(|(s, _)| *s == start) {
                            let g = cx.base_gradient(start).await?;
                            base_grads.push((start, g));
                        }
                        let g = &base_grads
                            .iter()
                            .find(|(s, _)| *s == start)
                            .expect("just added")
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
                let units = match m {
                    Method::Ap => per_layer as u64,
                    Method::Atp => 1,
                    Method::Ig => path.0.len() as u64 + 1,
                };
                track.advance(&stage, units)?;
            }
        }
    }
    Ok(out)
}

impl<E: Engine> Ctx<'_, E> {
    fn n(&self) -> usize {
        self.t - self.first_diff
    }
    fn d(&self) -> usize {
        self.cfg.d_model
    }

    async fn acts(&self, l: usize) -> Result<Acts> {
        const NAMES: [&str; 9] = [
            "hook_resid_pre",
            "hook_resid_mid",
            "hook_attn_out",
            "hook_mlp_out",
            "attn.hook_result",
            "attn.hook_q",
            "attn.hook_k",
            "attn.hook_v",
            "attn.hook_pattern",
        ];
        let mut acts = Acts {
            base: BTreeMap::new(),
            other: BTreeMap::new(),
        };
        for name in NAMES {
            let hook = format!("blocks.{l}.{name}");
            acts.base
                .insert(name, self.e.activation(self.base, &hook).await?.data);
            acts.other
                .insert(name, self.e.activation(self.other, &hook).await?.data);
        }
        Ok(acts)
    }

    /// (m − m_base) / (m_base − m_other), in f64 as AP's maps are.
    fn normalise(&self, m: f32) -> f32 {
        ((m as f64 - self.m_base as f64) / self.gap) as f32
    }

    /// The metrics of perturbations at `start`, each filled in by `fill(i,
    /// block)` ([n, d] rows from the first differing position, zeroed
    /// first), normalised; a perturbation that stays zero scores 0 unrun.
    async fn patch(
        &self,
        start: Start,
        count: usize,
        mut fill: impl FnMut(usize, &mut [f32]) -> Result<()>,
    ) -> Result<Vec<f32>> {
        let block = self.n() * self.d();
        let mut scores = vec![0.0; count];
        let mut i = 0;
        while i < count {
            let mut batch = Vec::with_capacity(BATCH * block);
            let mut which = Vec::with_capacity(BATCH);
            while i < count && which.len() < BATCH {
                let from = batch.len();
                batch.resize(from + block, 0.0);
                fill(i, &mut batch[from..])?;
                if batch[from..].iter().any(|&v| v != 0.0) {
                    which.push(i);
                } else {
                    batch.truncate(from);
                }
                i += 1;
            }
            if which.is_empty() {
                continue;
            }
            let ms = self
                .e
                .resid_metrics(self.base, start, self.first_diff, &batch)
                .await?;
            for (&j, m) in which.iter().zip(ms) {
                scores[j] = self.normalise(m);
            }
        }
        Ok(scores)
    }

    /// ∂m/∂(the residual rows at `start`) at the base run, [n, d].
    async fn base_gradient(&self, start: Start) -> Result<Vec<f32>> {
        let zero = vec![0.0; self.n() * self.d()];
        Ok(self
            .e
            .resid_gradients(self.base, start, self.first_diff, &zero)
            .await?
            .1)
    }

    /// AP of one layer of `site`: the layer's cells, row-major.
    async fn ap(
        &self,
        site: PatchSite,
        l: usize,
        acts: &Acts,
        (w_o, b_v): (&[f32], &[f32]),
    ) -> Result<Vec<f32>> {
        let (t, first_diff, d, h) = (self.t, self.first_diff, self.d(), self.cfg.n_heads);
        let start = start_of(site, l);
        if site.is_residual() {
            let delta = acts.delta(resid_hook(site));
            return self
                .patch(start, t, |p, block| {
                    if p >= first_diff {
                        let r = p - first_diff;
                        block[r * d..(r + 1) * d].copy_from_slice(&delta[p * d..(p + 1) * d]);
                    }
                    Ok(())
                })
                .await;
        }
        if matches!(site, PatchSite::Z | PatchSite::ZByPos) {
            // Δhook_result[p, h] is Δz[p, h] · W_O[h]
            let dr = acts.delta("attn.hook_result");
            let row = |p: usize, hh: usize| &dr[(p * h + hh) * d..(p * h + hh + 1) * d];
            return if site == PatchSite::Z {
                self.patch(start, h, |hh, block| {
                    for p in first_diff..t {
                        block[(p - first_diff) * d..(p - first_diff + 1) * d]
                            .copy_from_slice(row(p, hh));
                    }
                    Ok(())
                })
                .await
            } else {
                // [pos, head]
                self.patch(start, t * h, |i, block| {
                    let (p, hh) = (i / h, i % h);
                    if p >= first_diff {
                        block[(p - first_diff) * d..(p - first_diff + 1) * d]
                            .copy_from_slice(row(p, hh));
                    }
                    Ok(())
                })
                .await
            };
        }
        let input = input_of(site).expect("a head input site");
        let heads = HeadAttn::new(&self.cfg, t, acts, b_v, input)?;
        let count: usize = site.shape(&self.cfg, t)[1..].iter().product();
        // each cell's head, and which of its input's entries come from the other run
        let cells: Vec<(usize, Pick)> = (0..count)
            .map(|i| match site {
                PatchSite::Q | PatchSite::K | PatchSite::V | PatchSite::Pattern => (i, Pick::All),
                PatchSite::QByPos | PatchSite::KByPos | PatchSite::VByPos => {
                    (i % h, Pick::Row(i / h))
                }
                PatchSite::PatternByDest => (i / t, Pick::Row(i % t)),
                _ => (i / (t * t), Pick::Entry((i / t) % t, i % t)),
            })
            .collect();
        // the cells' Δz, HEADS_PER_CALL at a time: (first cell, Δz of each)
        let mut dz: (usize, Vec<Vec<f32>>) = (0, Vec::new());
        self.patch(start, count, |i, block| {
            if !(dz.0..dz.0 + dz.1.len()).contains(&i) {
                let end = count.min(i + HEADS_PER_CALL);
                dz = (i, heads.patched_dz(&cells[i..end])?);
            }
            let hh = cells[i].0;
            add_head_output(block, &dz.1[i - dz.0], w_o, hh, &self.cfg, t, first_diff);
            Ok(())
        })
        .await
    }

    /// AtP of one layer of `site`: Σ (a_other − a_base) · ∂m/∂a at the base
    /// run over the site's cell, normalised. `g` is ∂m/∂(the start rows).
    fn atp(
        &self,
        site: PatchSite,
        acts: &Acts,
        (w_o, b_v): (&[f32], &[f32]),
        g: &[f32],
    ) -> Result<Vec<f32>> {
        let (t, first_diff, d, h) = (self.t, self.first_diff, self.d(), self.cfg.n_heads);
        let norm = |v: f64| (v / self.gap) as f32;
        let grow = |p: usize| &g[(p - first_diff) * d..(p - first_diff + 1) * d];
        if site.is_residual() {
            let delta = acts.delta(resid_hook(site));
            return Ok((0..t)
                .map(|p| {
                    if p < first_diff {
                        return 0.0;
                    }
                    norm(dot(&delta[p * d..(p + 1) * d], grow(p)))
                })
                .collect());
        }
        if matches!(site, PatchSite::Z | PatchSite::ZByPos) {
            let dr = acts.delta("attn.hook_result");
            let cell = |p: usize, hh: usize| {
                if p < first_diff {
                    return 0.0;
                }
                dot(&dr[(p * h + hh) * d..(p * h + hh + 1) * d], grow(p))
            };
            return Ok(if site == PatchSite::Z {
                (0..h)
                    .map(|hh| norm((first_diff..t).map(|p| cell(p, hh)).sum()))
                    .collect()
            } else {
                (0..t * h).map(|i| norm(cell(i / h, i % h))).collect()
            });
        }
        let input = input_of(site).expect("a head input site");
        let heads = HeadAttn::new(&self.cfg, t, acts, b_v, input)?;
        let grads = heads.base_grads(&heads.grad_z(g, w_o, first_diff))?;
        // per head: Δx ⊙ ∂m/∂x at the base point, reduced like the site
        let mut per_head = Vec::with_capacity(h);
        for (hh, grad) in grads.iter().enumerate() {
            let (x_b, x_o) = heads.input(hh);
            let prod: Vec<f64> = x_o
                .iter()
                .zip(x_b)
                .zip(grad)
                .map(|((o, b), g)| (o - b) as f64 * *g as f64)
                .collect();
            per_head.push(prod);
        }
        Ok(reduce(site, &per_head, t, self.cfg.d_head, h)
            .into_iter()
            .map(norm)
            .collect())
    }

    /// One layer's IG path of the hook `site` lies on (captum
    /// LayerIntegratedGradients with that hook as the layer: all of the
    /// layer's cells on one straight path), before it is cut into cells:
    /// sites on the same hook share it (q and q_by_pos; attn_out, z and
    /// z_by_pos, whose path is attn_out's as Σ_h Δhook_result = Δattn_out).
    async fn ig_path(
        &self,
        site: PatchSite,
        l: usize,
        acts: &Acts,
        (w_o, b_v): (&[f32], &[f32]),
        (alphas, weights): &(Vec<f32>, Vec<f32>),
    ) -> Result<IgPath> {
        let (t, first_diff, d, h) = (self.t, self.first_diff, self.d(), self.cfg.n_heads);
        let (n, k) = (self.n(), alphas.len());
        let start = start_of(site, l);
        let Some(input) = input_of(site) else {
            let delta = acts.delta(ig_key(site));
            let rows = &delta[first_diff * d..];
            let deltas: Vec<f32> = alphas
                .iter()
                .flat_map(|&a| rows.iter().map(move |&v| a * v))
                .collect();
            let (_, grads) = self
                .e
                .resid_gradients(self.base, start, first_diff, &deltas)
                .await?;
            // G = Σ_k w_k ∂m/∂x at α_k, [n, d]
            let mut gsum = vec![0f64; n * d];
            for (gk, &w) in grads.chunks(n * d).zip(weights) {
                for (s, &v) in gsum.iter_mut().zip(gk) {
                    *s += w as f64 * v as f64;
                }
            }
            return Ok(IgPath::Resid(gsum.iter().map(|&v| v as f32).collect()));
        };
        // a head input of the layer (all heads, all positions) on the path
        let heads = HeadAttn::new(&self.cfg, t, acts, b_v, input)?;
        let mut deltas = vec![0f32; k * n * d];
        for (ai, &a) in alphas.iter().enumerate() {
            let block = &mut deltas[ai * n * d..(ai + 1) * n * d];
            for (hh, dz) in heads.path_dz(a)?.iter().enumerate() {
                add_head_output(block, dz, w_o, hh, &self.cfg, t, first_diff);
            }
        }
        let (_, grads) = self
            .e
            .resid_gradients(self.base, start, first_diff, &deltas)
            .await?;
        // Σ_k w_k ∂m/∂x(α_k), per head, then Δx ⊙ it
        let mut sums: Vec<Vec<f64>> = Vec::with_capacity(h);
        for (ai, (&a, &w)) in alphas.iter().zip(weights).enumerate() {
            let gz = heads.grad_z(&grads[ai * n * d..(ai + 1) * n * d], w_o, first_diff);
            for (hh, g) in heads.path_grads(a, &gz)?.iter().enumerate() {
                if ai == 0 {
                    sums.push(vec![0.0; g.len()]);
                }
                for (s, v) in sums[hh].iter_mut().zip(g) {
                    *s += w as f64 * *v as f64;
                }
            }
        }
        let per_head = sums
            .iter()
            .enumerate()
            .map(|(hh, s)| {
                let (x_b, x_o) = heads.input(hh);
                x_o.iter()
                    .zip(x_b)
                    .zip(s)
                    .map(|((o, b), g)| (o - b) as f64 * (*g as f32) as f64)
                    .collect()
            })
            .collect();
        Ok(IgPath::Heads(per_head))
    }

    /// Raw layer IG of one layer of `site` from its hook's path: the
    /// attributions summed over each cell.
    fn ig_cells(&self, site: PatchSite, acts: &Acts, path: &IgPath) -> Vec<f32> {
        let (t, first_diff, d, h) = (self.t, self.first_diff, self.d(), self.cfg.n_heads);
        let per_head = match path {
            IgPath::Heads(per_head) => per_head,
            IgPath::Resid(g) => {
                let at = |a: &[f32], p: usize| {
                    dot(a, &g[(p - first_diff) * d..(p - first_diff + 1) * d]) as f32
                };
                return match site {
                    PatchSite::Z | PatchSite::ZByPos => {
                        let dr = acts.delta("attn.hook_result");
                        let cell = |p: usize, hh: usize| {
                            if p < first_diff {
                                0.0
                            } else {
                                at(&dr[(p * h + hh) * d..(p * h + hh + 1) * d], p)
                            }
                        };
                        if site == PatchSite::Z {
                            (0..h)
                                .map(|hh| {
                                    (first_diff..t).map(|p| cell(p, hh) as f64).sum::<f64>() as f32
                                })
                                .collect()
                        } else {
                            (0..t * h).map(|i| cell(i / h, i % h)).collect()
                        }
                    }
                    _ => {
                        let delta = acts.delta(resid_hook(site));
                        (0..t)
                            .map(|p| {
                                if p < first_diff {
                                    0.0
                                } else {
                                    at(&delta[p * d..(p + 1) * d], p)
                                }
                            })
                            .collect()
                    }
                };
            }
        };
        reduce(site, per_head, t, self.cfg.d_head, h)
            .into_iter()
            .map(|v| v as f32)
            .collect()
    }
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

/// Which entries of a head's input come from the other run.
#[derive(Clone, Copy)]
enum Pick {
    All,
    /// One position (q, k, v) or one destination row (pattern).
    Row(usize),
    /// One (destination, source) entry of the pattern.
    Entry(usize, usize),
}

/// One layer's heads recomputed with their `input` changed, from the runs'
/// cached q, k, v ([T, d_head] per head) and patterns ([T, T] per head):
/// many variants per call of `engine::attention`, the attention the
/// engine's forward runs.
struct HeadAttn {
    t: usize,
    dh: usize,
    input: Input,
    q: [Vec<Vec<f32>>; 2],
    k: [Vec<Vec<f32>>; 2],
    v: [Vec<Vec<f32>>; 2],
    pattern: [Vec<Vec<f32>>; 2],
    /// The base run's v without the value bias, per head: what a patched
    /// pattern weighs. TransformerLens (fold_value_biases, as
    /// `from_pretrained` loads GPT-2) keeps the value bias in b_O, so a
    /// pattern entry patched alone (its row no longer sums to 1) does not
    /// scale it; for whole rows the two are the same.
    v_pat: Vec<Vec<f32>>,
    /// Every head's z at the base run, computed as the variants' are (for a
    /// pattern, from `v_pat`), so that Δz compares like with like.
    z_base: Vec<Vec<f32>>,
}

/// Head variants per call of `engine::attention`: enough to share a call's
/// fixed cost, few enough to bound its memory.
const HEADS_PER_CALL: usize = 64;

impl HeadAttn {
    fn new(cfg: &Config, t: usize, acts: &Acts, b_v: &[f32], input: Input) -> Result<HeadAttn> {
        let (h, dh) = (cfg.n_heads, cfg.d_head);
        // [T, H, dh] → per head [T, dh]
        let split = |a: &[f32]| -> Vec<Vec<f32>> {
            (0..h)
                .map(|hh| {
                    (0..t)
                        .flat_map(|p| a[(p * h + hh) * dh..(p * h + hh + 1) * dh].iter().copied())
                        .collect()
                })
                .collect()
        };
        let heads = |a: &[f32]| -> Vec<Vec<f32>> { a.chunks(t * t).map(<[f32]>::to_vec).collect() };
        let both =
            |name: &str, f: &dyn Fn(&[f32]) -> Vec<Vec<f32>>| [f(acts.b(name)), f(acts.o(name))];
        let v = both("attn.hook_v", &split);
        let v_pat = v[0]
            .iter()
            .enumerate()
            .map(|(hh, vh)| {
                let b = &b_v[hh * dh..(hh + 1) * dh];
                vh.iter().enumerate().map(|(i, x)| x - b[i % dh]).collect()
            })
            .collect();
        let mut heads = HeadAttn {
            t,
            dh,
            input,
            q: both("attn.hook_q", &split),
            k: both("attn.hook_k", &split),
            v,
            pattern: both("attn.hook_pattern", &heads),
            v_pat,
            z_base: Vec::new(),
        };
        let base: Vec<(usize, &[f32])> = (0..h).map(|hh| (hh, heads.input(hh).0)).collect();
        heads.z_base = heads.z(&base)?;
        Ok(heads)
    }

    /// The base (0) and other (1) run's values of head `hh`'s input.
    fn input(&self, hh: usize) -> (&[f32], &[f32]) {
        let runs = match self.input {
            Input::Q => &self.q,
            Input::K => &self.k,
            Input::V => &self.v,
            Input::Pattern => &self.pattern,
        };
        (&runs[0][hh], &runs[1][hh])
    }

    /// Calls `f` with the inputs of `variants`: (head, x) is head `hh` of
    /// the base run with x as its input. A pattern replaces the computed
    /// one and weighs v without its bias (`v_pat`); a q, k or v leaves the
    /// pattern to be computed.
    fn with_inputs<R>(
        &self,
        variants: &[(usize, &[f32])],
        f: impl FnOnce(HeadInputs) -> Result<R>,
    ) -> Result<R> {
        let (mut q, mut k, mut v, mut pattern) = (vec![], vec![], vec![], vec![]);
        for &(hh, x) in variants {
            let (mut qh, mut kh, mut vh) =
                (&self.q[0][hh][..], &self.k[0][hh][..], &self.v[0][hh][..]);
            match self.input {
                Input::Q => qh = x,
                Input::K => kh = x,
                Input::V => vh = x,
                Input::Pattern => {
                    vh = &self.v_pat[hh];
                    pattern.extend_from_slice(x);
                }
            }
            q.extend_from_slice(qh);
            k.extend_from_slice(kh);
            v.extend_from_slice(vh);
        }
        f(HeadInputs {
            heads: variants.len(),
            t: self.t,
            q: &q,
            k: &k,
            v: &v,
            pattern: (self.input == Input::Pattern).then_some(&pattern[..]),
        })
    }

    /// z of each variant, [T, d_head] each.
    fn z(&self, variants: &[(usize, &[f32])]) -> Result<Vec<Vec<f32>>> {
        let z = self.with_inputs(variants, head_attention)?;
        Ok(z.chunks(self.t * self.dh).map(<[f32]>::to_vec).collect())
    }

    /// z′ − z of each variant.
    fn dz(&self, variants: &[(usize, &[f32])]) -> Result<Vec<Vec<f32>>> {
        let z = self.z(variants)?;
        Ok(z.iter()
            .zip(variants)
            .map(|(z1, &(hh, _))| {
                z1.iter()
                    .zip(&self.z_base[hh])
                    .map(|(a, b)| a - b)
                    .collect()
            })
            .collect())
    }

    /// ∂m/∂(input) of each variant, given its ∂m/∂z.
    fn grads(&self, variants: &[(usize, &[f32])], gz: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        let gz: Vec<f32> = gz.concat();
        let g = self.with_inputs(variants, |x| head_attention_backward(x, &gz))?;
        let g = match self.input {
            Input::Q => g.q,
            Input::K => g.k,
            Input::V => g.v,
            Input::Pattern => g.pattern,
        };
        Ok(g.chunks(g.len() / variants.len())
            .map(<[f32]>::to_vec)
            .collect())
    }

    /// Δz of each cell (a head, and which entries of its input come from
    /// the other run), [T, d_head] each; a cell whose entries are the same
    /// in both runs is 0, computed by no call.
    fn patched_dz(&self, cells: &[(usize, Pick)]) -> Result<Vec<Vec<f32>>> {
        let mut out = vec![vec![0.0; self.t * self.dh]; cells.len()];
        let mut changed = Vec::with_capacity(cells.len());
        let mut xs = Vec::with_capacity(cells.len());
        for (i, &(hh, pick)) in cells.iter().enumerate() {
            let (b, o) = self.input(hh);
            let width = b.len() / self.t;
            let mut x = b.to_vec();
            match pick {
                Pick::All => x.copy_from_slice(o),
                Pick::Row(r) => {
                    x[r * width..(r + 1) * width].copy_from_slice(&o[r * width..(r + 1) * width])
                }
                Pick::Entry(r, c) => x[r * width + c] = o[r * width + c],
            }
            if x != b {
                changed.push(i);
                xs.push((hh, x));
            }
        }
        if changed.is_empty() {
            return Ok(out);
        }
        let variants: Vec<(usize, &[f32])> = xs.iter().map(|(hh, x)| (*hh, &x[..])).collect();
        for (i, dz) in changed.into_iter().zip(self.dz(&variants)?) {
            out[i] = dz;
        }
        Ok(out)
    }

    /// Every head's input at α on its straight path from the base run's
    /// value to the other run's.
    fn on_path(&self, a: f32) -> Vec<Vec<f32>> {
        (0..self.z_base.len())
            .map(|hh| {
                let (b, o) = self.input(hh);
                b.iter().zip(o).map(|(b, o)| b + a * (o - b)).collect()
            })
            .collect()
    }

    /// Δz of every head at α on the input's straight path.
    fn path_dz(&self, a: f32) -> Result<Vec<Vec<f32>>> {
        let xs = self.on_path(a);
        self.dz(&xs.iter().map(Vec::as_slice).enumerate().collect::<Vec<_>>())
    }

    /// ∂m/∂z per head, [T, d_head] (rows before `first_diff` zero), from ∂m/∂attn_out
    /// rows first_diff.. ([n, d]): ∂m/∂z[p, h] = W_O[h] ∂m/∂attn_out[p].
    fn grad_z(&self, g: &[f32], w_o: &[f32], first_diff: usize) -> Vec<Vec<f32>> {
        let (t, dh) = (self.t, self.dh);
        let d = g.len() / (t - first_diff);
        let h = w_o.len() / (dh * d);
        (0..h)
            .map(|hh| {
                let mut gz = vec![0f32; t * dh];
                for p in first_diff..t {
                    let gp = &g[(p - first_diff) * d..(p - first_diff + 1) * d];
                    for j in 0..dh {
                        let w = &w_o[(hh * dh + j) * d..(hh * dh + j + 1) * d];
                        gz[p * dh + j] = w.iter().zip(gp).map(|(a, b)| a * b).sum();
                    }
                }
                gz
            })
            .collect()
    }

    /// ∂m/∂(input) of every head at the base run, given each head's ∂m/∂z.
    fn base_grads(&self, gz: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        let base: Vec<(usize, &[f32])> = (0..gz.len()).map(|hh| (hh, self.input(hh).0)).collect();
        self.grads(&base, gz)
    }

    /// ∂m/∂(input) of every head at α on the input's straight path, given
    /// each head's ∂m/∂z there.
    fn path_grads(&self, a: f32, gz: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        let xs = self.on_path(a);
        self.grads(
            &xs.iter().map(Vec::as_slice).enumerate().collect::<Vec<_>>(),
            gz,
        )
    }
}

/// Adds head `hh`'s Δz · W_O[hh] to the perturbation rows (positions first_diff..).
fn add_head_output(
    block: &mut [f32],
    dz: &[f32],
    w_o: &[f32],
    hh: usize,
    cfg: &Config,
    t: usize,
    first_diff: usize,
) {
    let (d, dh) = (cfg.d_model, cfg.d_head);
    for p in first_diff..t {
        let row = &mut block[(p - first_diff) * d..(p - first_diff + 1) * d];
        for j in 0..dh {
            let z = dz[p * dh + j];
            if z != 0.0 {
                let w = &w_o[(hh * dh + j) * d..(hh * dh + j + 1) * d];
                for (r, &wv) in row.iter_mut().zip(w) {
                    *r += z * wv;
                }
            }
        }
    }
}
