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
//!   on the host, from the runs' cached q, k, v and pattern (one head of one
//!   layer, T × T), and `attn_out` changes by Δz · W_O[h].
//!
//! Nothing differs before the first differing token, so a perturbation that
//! is zero everywhere scores exactly 0 and is never run.

use super::quadrature::{nodes_and_weights, Rule};
use super::{Direction, Tracker};
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
    fd: usize,
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
        from_pos,
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
        fd: from_pos,
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
                        cx.atp(site, &acts, (&w_o[..], &b_v[..]), g)
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
        self.t - self.fd
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
        mut fill: impl FnMut(usize, &mut [f32]),
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
                fill(i, &mut batch[from..]);
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
                .resid_metrics(self.base, start, self.fd, &batch)
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
            .resid_gradients(self.base, start, self.fd, &zero)
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
        let (t, fd, d, h) = (self.t, self.fd, self.d(), self.cfg.n_heads);
        let start = start_of(site, l);
        if site.is_residual() {
            let delta = acts.delta(resid_hook(site));
            return self
                .patch(start, t, |p, block| {
                    if p >= fd {
                        let r = p - fd;
                        block[r * d..(r + 1) * d].copy_from_slice(&delta[p * d..(p + 1) * d]);
                    }
                })
                .await;
        }
        if matches!(site, PatchSite::Z | PatchSite::ZByPos) {
            // Δhook_result[p, h] is Δz[p, h] · W_O[h]
            let dr = acts.delta("attn.hook_result");
            let row = |p: usize, hh: usize| &dr[(p * h + hh) * d..(p * h + hh + 1) * d];
            return if site == PatchSite::Z {
                self.patch(start, h, |hh, block| {
                    for p in fd..t {
                        block[(p - fd) * d..(p - fd + 1) * d].copy_from_slice(row(p, hh));
                    }
                })
                .await
            } else {
                // [pos, head]
                self.patch(start, t * h, |i, block| {
                    let (p, hh) = (i / h, i % h);
                    if p >= fd {
                        block[(p - fd) * d..(p - fd + 1) * d].copy_from_slice(row(p, hh));
                    }
                })
                .await
            };
        }
        let input = input_of(site).expect("a head input site");
        let heads = HeadAttn::new(&self.cfg, t, acts, b_v);
        let count: usize = site.shape(&self.cfg, t)[1..].iter().product();
        self.patch(start, count, |i, block| {
            // the patched head, and which of its input's entries come from the other run
            let (hh, pick): (usize, Pick) = match site {
                PatchSite::Q | PatchSite::K | PatchSite::V | PatchSite::Pattern => (i, Pick::All),
                PatchSite::QByPos | PatchSite::KByPos | PatchSite::VByPos => {
                    (i % h, Pick::Row(i / h))
                }
                PatchSite::PatternByDest => (i / t, Pick::Row(i % t)),
                _ => (i / (t * t), Pick::Entry((i / t) % t, i % t)),
            };
            let dz = heads.patched_dz(hh, input, pick);
            add_head_output(block, &dz, w_o, hh, &self.cfg, t, fd);
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
    ) -> Vec<f32> {
        let (t, fd, d, h) = (self.t, self.fd, self.d(), self.cfg.n_heads);
        let norm = |v: f64| (v / self.gap) as f32;
        let grow = |p: usize| &g[(p - fd) * d..(p - fd + 1) * d];
        if site.is_residual() {
            let delta = acts.delta(resid_hook(site));
            return (0..t)
                .map(|p| {
                    if p < fd {
                        return 0.0;
                    }
                    norm(dot(&delta[p * d..(p + 1) * d], grow(p)))
                })
                .collect();
        }
        if matches!(site, PatchSite::Z | PatchSite::ZByPos) {
            let dr = acts.delta("attn.hook_result");
            let cell = |p: usize, hh: usize| {
                if p < fd {
                    return 0.0;
                }
                dot(&dr[(p * h + hh) * d..(p * h + hh + 1) * d], grow(p))
            };
            return if site == PatchSite::Z {
                (0..h)
                    .map(|hh| norm((fd..t).map(|p| cell(p, hh)).sum()))
                    .collect()
            } else {
                (0..t * h).map(|i| norm(cell(i / h, i % h))).collect()
            };
        }
        let input = input_of(site).expect("a head input site");
        let heads = HeadAttn::new(&self.cfg, t, acts, b_v);
        let gz = heads.grad_z(g, w_o, fd);
        // per head: Δx ⊙ ∂m/∂x at the base point, reduced like the site
        let mut per_head = Vec::with_capacity(h);
        for (hh, gz) in gz.iter().enumerate() {
            let (x_b, x_o) = heads.input(hh, input);
            let grad = heads.base_grad(hh, input, gz);
            let prod: Vec<f64> = x_o
                .iter()
                .zip(&x_b)
                .zip(&grad)
                .map(|((o, b), g)| (o - b) as f64 * *g as f64)
                .collect();
            per_head.push(prod);
        }
        reduce(site, &per_head, t, self.cfg.d_head, h)
            .into_iter()
            .map(norm)
            .collect()
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
        let (t, fd, d, h) = (self.t, self.fd, self.d(), self.cfg.n_heads);
        let (n, k) = (self.n(), alphas.len());
        let start = start_of(site, l);
        let Some(input) = input_of(site) else {
            let delta = acts.delta(ig_key(site));
            let rows = &delta[fd * d..];
            let deltas: Vec<f32> = alphas
                .iter()
                .flat_map(|&a| rows.iter().map(move |&v| a * v))
                .collect();
            let (_, grads) = self
                .e
                .resid_gradients(self.base, start, fd, &deltas)
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
        let heads = HeadAttn::new(&self.cfg, t, acts, b_v);
        let mut deltas = vec![0f32; k * n * d];
        for (ai, &a) in alphas.iter().enumerate() {
            let block = &mut deltas[ai * n * d..(ai + 1) * n * d];
            for hh in 0..h {
                let dz = heads.path_dz(hh, input, a);
                add_head_output(block, &dz, w_o, hh, &self.cfg, t, fd);
            }
        }
        let (_, grads) = self
            .e
            .resid_gradients(self.base, start, fd, &deltas)
            .await?;
        // Σ_k w_k ∂m/∂x(α_k), per head, then Δx ⊙ it
        let mut sums: Vec<Vec<f64>> = Vec::with_capacity(h);
        for (ai, (&a, &w)) in alphas.iter().zip(weights).enumerate() {
            let gz = heads.grad_z(&grads[ai * n * d..(ai + 1) * n * d], w_o, fd);
            for hh in 0..h {
                let g = heads.path_grad(hh, input, a, &gz[hh]);
                if ai == 0 {
                    sums.push(vec![0.0; g.len()]);
                }
                for (s, v) in sums[hh].iter_mut().zip(&g) {
                    *s += w as f64 * *v as f64;
                }
            }
        }
        let per_head = sums
            .iter()
            .enumerate()
            .map(|(hh, s)| {
                let (x_b, x_o) = heads.input(hh, input);
                x_o.iter()
                    .zip(&x_b)
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
        let (t, fd, d, h) = (self.t, self.fd, self.d(), self.cfg.n_heads);
        let per_head = match path {
            IgPath::Heads(per_head) => per_head,
            IgPath::Resid(g) => {
                let at = |a: &[f32], p: usize| dot(a, &g[(p - fd) * d..(p - fd + 1) * d]) as f32;
                return match site {
                    PatchSite::Z | PatchSite::ZByPos => {
                        let dr = acts.delta("attn.hook_result");
                        let cell = |p: usize, hh: usize| {
                            if p < fd {
                                0.0
                            } else {
                                at(&dr[(p * h + hh) * d..(p * h + hh + 1) * d], p)
                            }
                        };
                        if site == PatchSite::Z {
                            (0..h)
                                .map(|hh| (fd..t).map(|p| cell(p, hh) as f64).sum::<f64>() as f32)
                                .collect()
                        } else {
                            (0..t * h).map(|i| cell(i / h, i % h)).collect()
                        }
                    }
                    _ => {
                        let delta = acts.delta(resid_hook(site));
                        (0..t)
                            .map(|p| {
                                if p < fd {
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

/// One layer's attention, head by head, on the host: the runs' cached
/// q, k, v ([T, d_head] per head) and patterns ([T, T] per head).
struct HeadAttn {
    t: usize,
    dh: usize,
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
    scale: f32,
}

impl HeadAttn {
    fn new(cfg: &Config, t: usize, acts: &Acts, b_v: &[f32]) -> HeadAttn {
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
        HeadAttn {
            t,
            dh,
            q: both("attn.hook_q", &split),
            k: both("attn.hook_k", &split),
            v,
            pattern: both("attn.hook_pattern", &heads),
            v_pat,
            scale: 1.0 / (dh as f32).sqrt(),
        }
    }

    /// The base (0) and other (1) run's values of a head's input.
    fn input(&self, hh: usize, input: Input) -> (Vec<f32>, Vec<f32>) {
        let of = |a: &[Vec<Vec<f32>>; 2]| (a[0][hh].clone(), a[1][hh].clone());
        match input {
            Input::Q => of(&self.q),
            Input::K => of(&self.k),
            Input::V => of(&self.v),
            Input::Pattern => of(&self.pattern),
        }
    }

    /// Causal softmax(q kᵀ / √d_head), [T, T].
    fn softmax(&self, q: &[f32], k: &[f32]) -> Vec<f32> {
        let (t, dh) = (self.t, self.dh);
        let mut p = vec![0f32; t * t];
        for dst in 0..t {
            let row = &mut p[dst * t..(dst + 1) * t];
            let qd = &q[dst * dh..(dst + 1) * dh];
            for (src, r) in row.iter_mut().enumerate().take(dst + 1) {
                let ks = &k[src * dh..(src + 1) * dh];
                *r = qd.iter().zip(ks).map(|(a, b)| a * b).sum::<f32>() * self.scale;
            }
            let max = row[..=dst]
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max);
            let mut z = 0f32;
            for r in row[..=dst].iter_mut() {
                *r = (*r - max).exp();
                z += *r;
            }
            for r in row[..=dst].iter_mut() {
                *r /= z;
            }
        }
        p
    }

    /// z = pattern · v, [T, d_head].
    fn apply(&self, p: &[f32], v: &[f32]) -> Vec<f32> {
        let (t, dh) = (self.t, self.dh);
        let mut z = vec![0f32; t * dh];
        for dst in 0..t {
            for src in 0..=dst {
                let w = p[dst * t + src];
                if w != 0.0 {
                    for j in 0..dh {
                        z[dst * dh + j] += w * v[src * dh + j];
                    }
                }
            }
        }
        z
    }

    /// z of head `hh` from the given q, k, v (the pattern recomputed) or
    /// from the given pattern and v.
    fn z(&self, input: Input, q: &[f32], k: &[f32], v: &[f32], p: &[f32]) -> Vec<f32> {
        match input {
            Input::Pattern => self.apply(p, v),
            _ => self.apply(&self.softmax(q, k), v),
        }
    }

    /// The head's inputs with `x` in place of `input`'s base values.
    fn z_with(&self, hh: usize, input: Input, x: &[f32]) -> Vec<f32> {
        let (q, k, v, p) = (
            &self.q[0][hh],
            &self.k[0][hh],
            &self.v[0][hh],
            &self.pattern[0][hh],
        );
        match input {
            Input::Q => self.z(input, x, k, v, p),
            Input::K => self.z(input, q, x, v, p),
            Input::V => self.z(input, q, k, x, p),
            Input::Pattern => self.z(input, q, k, &self.v_pat[hh], x),
        }
    }

    /// Δz of head `hh` when the `pick`ed entries of `input` come from the
    /// other run, [T, d_head].
    fn patched_dz(&self, hh: usize, input: Input, pick: Pick) -> Vec<f32> {
        let (b, o) = self.input(hh, input);
        let width = b.len() / self.t;
        let mut x = b.clone();
        match pick {
            Pick::All => x.copy_from_slice(&o),
            Pick::Row(r) => {
                x[r * width..(r + 1) * width].copy_from_slice(&o[r * width..(r + 1) * width])
            }
            Pick::Entry(r, c) => x[r * width + c] = o[r * width + c],
        }
        if x == b {
            return vec![0.0; self.t * self.dh];
        }
        let (z0, z1) = (self.z_with(hh, input, &b), self.z_with(hh, input, &x));
        z1.iter().zip(&z0).map(|(a, b)| a - b).collect()
    }

    /// Δz of head `hh` at α on the straight path of `input`.
    fn path_dz(&self, hh: usize, input: Input, a: f32) -> Vec<f32> {
        let (b, o) = self.input(hh, input);
        let x: Vec<f32> = b.iter().zip(&o).map(|(b, o)| b + a * (o - b)).collect();
        let (z0, z1) = (self.z_with(hh, input, &b), self.z_with(hh, input, &x));
        z1.iter().zip(&z0).map(|(a, b)| a - b).collect()
    }

    /// ∂m/∂z per head, [T, d_head] (rows before `fd` zero), from ∂m/∂attn_out
    /// rows fd.. ([n, d]): ∂m/∂z[p, h] = W_O[h] ∂m/∂attn_out[p].
    fn grad_z(&self, g: &[f32], w_o: &[f32], fd: usize) -> Vec<Vec<f32>> {
        let (t, dh) = (self.t, self.dh);
        let d = g.len() / (t - fd);
        let h = w_o.len() / (dh * d);
        (0..h)
            .map(|hh| {
                let mut gz = vec![0f32; t * dh];
                for p in fd..t {
                    let gp = &g[(p - fd) * d..(p - fd + 1) * d];
                    for j in 0..dh {
                        let w = &w_o[(hh * dh + j) * d..(hh * dh + j + 1) * d];
                        gz[p * dh + j] = w.iter().zip(gp).map(|(a, b)| a * b).sum();
                    }
                }
                gz
            })
            .collect()
    }

    /// ∂m/∂(input) of head `hh` at the base run, given ∂m/∂z.
    fn base_grad(&self, hh: usize, input: Input, gz: &[f32]) -> Vec<f32> {
        let (q, k, v) = (&self.q[0][hh], &self.k[0][hh], &self.v[0][hh]);
        match input {
            Input::Pattern => {
                let p = &self.pattern[0][hh];
                self.backward(input, q, k, &self.v_pat[hh], p, gz)
            }
            _ => self.backward(input, q, k, v, &self.softmax(q, k), gz),
        }
    }

    /// ∂m/∂(input) of head `hh` at α on `input`'s straight path, given ∂m/∂z there.
    fn path_grad(&self, hh: usize, input: Input, a: f32, gz: &[f32]) -> Vec<f32> {
        let (b, o) = self.input(hh, input);
        let x: Vec<f32> = b.iter().zip(&o).map(|(b, o)| b + a * (o - b)).collect();
        let (mut q, mut k, mut v) = (
            self.q[0][hh].clone(),
            self.k[0][hh].clone(),
            self.v[0][hh].clone(),
        );
        let mut p = self.pattern[0][hh].clone();
        match input {
            Input::Q => q = x,
            Input::K => k = x,
            Input::V => v = x,
            Input::Pattern => p = x,
        }
        if input == Input::Pattern {
            return self.backward(input, &q, &k, &self.v_pat[hh], &p, gz);
        }
        p = self.softmax(&q, &k);
        self.backward(input, &q, &k, &v, &p, gz)
    }

    /// The backward of one head's attention from ∂m/∂z to ∂m/∂(input).
    fn backward(
        &self,
        input: Input,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        p: &[f32],
        gz: &[f32],
    ) -> Vec<f32> {
        let (t, dh) = (self.t, self.dh);
        // ∂m/∂pattern[dst, src] = gz[dst] · v[src]
        let mut dp = vec![0f32; t * t];
        for dst in 0..t {
            for src in 0..=dst {
                dp[dst * t + src] = (0..dh).map(|j| gz[dst * dh + j] * v[src * dh + j]).sum();
            }
        }
        match input {
            Input::Pattern => dp,
            Input::V => {
                // ∂m/∂v[src] = Σ_dst pattern[dst, src] gz[dst]
                let mut dv = vec![0f32; t * dh];
                for dst in 0..t {
                    for src in 0..=dst {
                        let w = p[dst * t + src];
                        for j in 0..dh {
                            dv[src * dh + j] += w * gz[dst * dh + j];
                        }
                    }
                }
                dv
            }
            Input::Q | Input::K => {
                // softmax backward, then the scaled dot products
                let mut ds = vec![0f32; t * t];
                for dst in 0..t {
                    let row = dst * t;
                    let s: f32 = (0..=dst).map(|src| p[row + src] * dp[row + src]).sum();
                    for src in 0..=dst {
                        ds[row + src] = p[row + src] * (dp[row + src] - s);
                    }
                }
                let mut out = vec![0f32; t * dh];
                for dst in 0..t {
                    for src in 0..=dst {
                        let g = ds[dst * t + src] * self.scale;
                        for j in 0..dh {
                            if input == Input::Q {
                                out[dst * dh + j] += g * k[src * dh + j];
                            } else {
                                out[src * dh + j] += g * q[dst * dh + j];
                            }
                        }
                    }
                }
                out
            }
        }
    }
}

/// Adds head `hh`'s Δz · W_O[hh] to the perturbation rows (positions fd..).
fn add_head_output(
    block: &mut [f32],
    dz: &[f32],
    w_o: &[f32],
    hh: usize,
    cfg: &Config,
    t: usize,
    fd: usize,
) {
    let (d, dh) = (cfg.d_model, cfg.d_head);
    for p in fd..t {
        let row = &mut block[(p - fd) * d..(p - fd + 1) * d];
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
