//! Sparse-autoencoder features as components: AP, AtP and IG of every
//! feature of an SAE, over all positions and by position (docs/methods.md,
//! "SAE features").
//!
//! The SAE sits in the model with its error term (SAELens's
//! `use_error_term=True`): the hook's value is decode(f) + error, the error
//! fixed at the base run's, so the model's output is unchanged and changing
//! features by Δf changes the hook by Σᵢ Δfᵢ · W_dec[i]. Every SAE hook adds
//! to the residual stream at one point (`resid_*` are the stream itself;
//! `attn_out` and `mlp_out` add to it; `hook_z` does through W_O), so a
//! feature's change is the perturbation Δf[p, i] · rᵢ of the stream's row p,
//! with rᵢ = W_dec[i] (divided by its norm for a TopK SAE with
//! `rescale_acts_by_decoder_norm`, as SAELens decodes it; for `hook_z`:
//! Σ_h W_dec[i, h] · W_O[h]), and the
//! engine's residual tails (`resid_metrics`, `resid_gradients`) run it on
//! either backend. ∂m/∂f[p, i] = rᵢ · ∂m/∂(row p).
//!
//! The SAE encodes what it was trained on: TransformerLens's processed
//! activations. `center_writing_weights` makes `hook_resid_*`,
//! `hook_attn_out` and `hook_mlp_out` the plain values minus their mean over
//! d_model; `fold_value_biases` makes `hook_z` the plain z minus each head's
//! value bias. The stream's mean over d_model never reaches the metric
//! (every reader is a layer norm), so rᵢ acts the same on either stream.
//!
//! Rows before the first differing token are the same prompt prefix in both
//! runs, so their features are taken as equal there (Δf = 0): the tails
//! start at the first difference.

use super::cost::{self, tail_backward_flops, tail_flops};
use super::quadrature::nodes_and_weights;
use super::{Direction, Method, Tracker};
use crate::engine::{Engine, Start, SweepPair};
use crate::error::{Error, Result};
use crate::model::sae::{Sae, SaeSite};
use crate::model::Config;
use crate::report::{MethodKey, SiteMap};
use std::collections::BTreeMap;

/// Perturbations per engine call (each is [T − first_diff, d_model]).
const BATCH: usize = 256;

/// Where an SAE's change enters the residual stream.
pub fn sae_start(sae: &Sae) -> Start {
    match sae.site {
        SaeSite::ResidPre if sae.layer == 0 => Start::Embed,
        SaeSite::ResidPre => Start::Post(sae.layer - 1),
        SaeSite::ResidPost | SaeSite::MlpOut => Start::Post(sae.layer),
        SaeSite::ResidMid | SaeSite::AttnOut | SaeSite::Z => Start::Mid(sae.layer),
    }
}

/// The activation the SAE reads of a run, [T, d_in], in TransformerLens's
/// processed values (module docs).
pub async fn sae_input<E: Engine>(e: &E, run: &E::Run, sae: &Sae) -> Result<Vec<f32>> {
    hook_input(e, run, sae.site, sae.layer).await
}

/// The activation an SAE on `site` of `layer` would read of a run, [T,
/// d_in], in TransformerLens's processed values (module docs).
pub async fn hook_input<E: Engine>(
    e: &E,
    run: &E::Run,
    site: SaeSite,
    layer: usize,
) -> Result<Vec<f32>> {
    let cfg = e.config();
    if site == SaeSite::Z {
        let z = e
            .activation(run, &format!("blocks.{layer}.attn.hook_z"))
            .await?;
        let b_v = e.head_weights(layer).await?.b_v;
        let w = cfg.n_heads * cfg.d_head;
        return Ok(z
            .data
            .iter()
            .enumerate()
            .map(|(k, &v)| v - b_v[k % w])
            .collect());
    }
    let a = e.activation(run, &site.hook_name(layer)).await?;
    let d = cfg.d_model;
    let mut x = a.data;
    for row in x.chunks_mut(d) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        for v in row {
            *v = (*v as f64 - mean) as f32;
        }
    }
    Ok(x)
}

/// Each run's `hook_sae_acts_post`, [T, d_sae].
pub async fn sae_features<E: Engine>(e: &E, run: &E::Run, sae: &Sae) -> Result<Vec<f32>> {
    let x = sae_input(e, run, sae).await?;
    let rows = x.len() / sae.d_in;
    Ok(sae.encode(&x, rows))
}

/// One SAE's maps of one method: over all positions [d_sae] and by
/// position [T, d_sae].
pub struct FeatureMaps {
    pub all: SiteMap,
    pub by_pos: SiteMap,
}

/// What to compute for the features.
pub struct FeatureAsk<'a> {
    pub methods: &'a [Method],
    pub ig_steps: usize,
    pub ig_rule: super::quadrature::Rule,
}

/// One pair's features of one SAE in one direction, with what every method
/// needs.
struct Ctx<'a, E: Engine> {
    e: &'a E,
    base: &'a E::Run,
    start: Start,
    t: usize,
    first_diff: usize,
    d: usize,
    d_sae: usize,
    m_base: f32,
    /// m_base − m_other.
    gap: f64,
    /// Δf, [T, d_sae] (0 before the first difference).
    df: Vec<f32>,
    /// The features that change at some position, ascending, with their
    /// direction in the residual stream rᵢ ([d_model] each).
    active: Vec<(usize, Vec<f32>)>,
    cfg: Config,
}

/// Scores every feature of `sae` with every asked method, for one pair in
/// one direction; `f_base` / `f_other` are the runs' features [T, d_sae].
/// AP and AtP are normalised by m_base − m_other; IG is the raw sum of the
/// attributions (IG* is derived from it by the report).
pub async fn feature_scores<E: Engine>(
    e: &E,
    pair: SweepPair<'_, E::Run>,
    sae: &Sae,
    (f_base, f_other): (&[f32], &[f32]),
    ask: &FeatureAsk<'_>,
    dir: Direction,
    track: &mut Tracker<'_>,
) -> Result<BTreeMap<MethodKey, FeatureMaps>> {
    let SweepPair {
        base,
        other,
        first_diff,
    } = pair;
    let cfg = e.config().clone();
    let ds = sae.d_sae;
    let t = f_base.len() / ds;
    if f_other.len() != f_base.len() || t * ds != f_base.len() {
        return Err(Error::Input(format!(
            "the runs' features of {} are not both [tokens, {ds}]",
            sae.name
        )));
    }
    let df: Vec<f32> = (0..t * ds)
        .map(|k| {
            if k / ds < first_diff {
                0.0
            } else {
                f_other[k] - f_base[k]
            }
        })
        .collect();
    let mut changed = vec![false; ds];
    for (k, &v) in df.iter().enumerate() {
        if v != 0.0 {
            changed[k % ds] = true;
        }
    }
    let w_o = if sae.site == SaeSite::Z {
        e.head_weights(sae.layer).await?.w_o.data
    } else {
        vec![]
    };
    let active = (0..ds)
        .filter(|&i| changed[i])
        .map(|i| (i, resid_direction(sae, &cfg, i, &w_o)))
        .collect();
    let (m_base, m_other) = (e.metric(base), e.metric(other));
    let cx = Ctx {
        e,
        base,
        start: sae_start(sae),
        t,
        first_diff,
        d: cfg.d_model,
        d_sae: ds,
        m_base,
        gap: m_base as f64 - m_other as f64,
        df,
        active,
        cfg,
    };
    let (alphas, weights) = nodes_and_weights(ask.ig_rule, ask.ig_steps)?;
    let mut out = BTreeMap::new();
    for &m in ask.methods {
        let stage = format!("{} {} features of {}", m.name(), dir.name(), sae.hook_name);
        if cx.active.is_empty() {
            // no feature differs between the runs: every score is 0
            out.insert(m.into(), cx.attribute(&[], true));
            continue;
        }
        let maps = match m {
            Method::Ap => cx.ap(track, &stage).await?,
            Method::Atp => {
                let g = cx.gradients(&[0.0], &[1.0], track, &stage).await?;
                cx.attribute(&g, true)
            }
            Method::Ig => {
                let g = cx.gradients(&alphas, &weights, track, &stage).await?;
                cx.attribute(&g, false)
            }
        };
        out.insert(m.into(), maps);
    }
    Ok(out)
}

/// rᵢ: feature i's decoder row as a change of the residual stream.
fn resid_direction(sae: &Sae, cfg: &Config, i: usize, w_o: &[f32]) -> Vec<f32> {
    let mut row = sae.w_dec[i * sae.d_in..(i + 1) * sae.d_in].to_vec();
    if sae.rescale_acts_by_decoder_norm {
        // SAELens's TopK decodes f / ‖W_dec[i]‖ · W_dec[i] then
        let norm = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v = (*v as f64 / norm) as f32);
        }
    }
    if sae.site != SaeSite::Z {
        return row;
    }
    // hook_z is [pos, head, d_head] flattened head-major; W_O is [head, d_head, d_model]
    let d = cfg.d_model;
    let mut r = vec![0f64; d];
    for (k, &w) in row.iter().enumerate() {
        if w != 0.0 {
            let wo = &w_o[k * d..(k + 1) * d];
            for (acc, &v) in r.iter_mut().zip(wo) {
                *acc += w as f64 * v as f64;
            }
        }
    }
    r.into_iter().map(|v| v as f32).collect()
}

/// Changed (position, feature) cells per differing position that an
/// estimate before the runs assumes: what a `gpt2-small-res-jb`-shaped SAE
/// with about 60 active features per token gives on the IOI pair
/// (docs/performance.md, "SAE features"). The run's own count replaces it
/// once both runs are encoded.
pub const ASSUMED_CELLS_PER_POSITION: usize = 100;

/// The work of a [`feature_scores`] call before the runs exist, in FLOPs:
/// AtP and IG exactly, AP for [`ASSUMED_CELLS_PER_POSITION`] changed cells
/// per differing position (as many changed features, at most d_sae).
pub fn assumed_feature_flops(
    cfg: &Config,
    sae: &Sae,
    methods: &[Method],
    ig_steps: usize,
    (t, first_diff): (usize, usize),
) -> f64 {
    let start = sae_start(sae);
    let per_row = ASSUMED_CELLS_PER_POSITION.min(sae.d_sae);
    let cells: f64 = (first_diff..t)
        .map(|p| per_row as f64 * tail_flops(cfg, start, t - p, t))
        .sum();
    let feats = (per_row * (t - first_diff)).min(sae.d_sae);
    methods_flops(cfg, sae, methods, ig_steps, (t, first_diff), (feats, cells))
}

/// The FLOPs of `methods` on one SAE's features, given AP's work: `feats`
/// tails over all positions and `cell_flops` for the by-position cells;
/// AtP is one backward, IG one per path point.
fn methods_flops(
    cfg: &Config,
    sae: &Sae,
    methods: &[Method],
    ig_steps: usize,
    (t, first_diff): (usize, usize),
    (feats, cell_flops): (usize, f64),
) -> f64 {
    let (start, n) = (sae_start(sae), t - first_diff);
    let fwd = tail_flops(cfg, start, n, t);
    let grad = fwd + tail_backward_flops(cfg, start, n, t);
    methods
        .iter()
        .map(|m| match m {
            Method::Ap => feats as f64 * fwd + cell_flops,
            Method::Atp => grad,
            Method::Ig => ig_steps as f64 * grad,
        })
        .sum()
}

/// The work AP of a [`feature_scores`] call will do, in FLOPs, from the
/// runs' features: one tail per changed feature and one per changed cell.
pub fn feature_flops(
    cfg: &Config,
    sae: &Sae,
    methods: &[Method],
    ig_steps: usize,
    (t, first_diff): (usize, usize),
    (f_base, f_other): (&[f32], &[f32]),
) -> f64 {
    let ds = sae.d_sae;
    let start = sae_start(sae);
    let (mut cell_flops, mut changed) = (0.0, vec![false; ds]);
    for k in first_diff * ds..(t * ds).min(f_base.len()) {
        if f_other[k] != f_base[k] {
            // a cell's tail starts at its position
            cell_flops += tail_flops(cfg, start, t - k / ds, t);
            changed[k % ds] = true;
        }
    }
    let feats = changed.iter().filter(|&&c| c).count();
    methods_flops(
        cfg,
        sae,
        methods,
        ig_steps,
        (t, first_diff),
        (feats, cell_flops),
    )
}

impl<E: Engine> Ctx<'_, E> {
    fn n(&self) -> usize {
        self.t - self.first_diff
    }

    fn grad_flops(&self, points: usize) -> f64 {
        let (n, t) = (self.n(), self.t);
        points as f64
            * (tail_flops(&self.cfg, self.start, n, t)
                + tail_backward_flops(&self.cfg, self.start, n, t))
    }

    /// (m − m_base) / (m_base − m_other), in f64.
    fn normalise(&self, m: f32) -> f32 {
        ((m as f64 - self.m_base as f64) / self.gap) as f32
    }

    /// AP: every changed feature over all positions, then every changed
    /// (position, feature) cell, batched; everything else scores 0 unrun. A
    /// cell at position p changes nothing before p, so its tail starts
    /// there (the rows before are the base run's).
    async fn ap(&self, track: &mut Tracker<'_>, stage: &str) -> Result<FeatureMaps> {
        let (t, fd, ds) = (self.t, self.first_diff, self.d_sae);
        let mut all = SiteMap::zeros(vec![ds]);
        let mut by_pos = SiteMap::zeros(vec![t, ds]);
        // (first patched row, the active features patched there, all positions?)
        let mut groups: Vec<(usize, Vec<usize>, bool)> =
            vec![(fd, (0..self.active.len()).collect(), true)];
        for p in fd..t {
            let here: Vec<usize> = (0..self.active.len())
                .filter(|&a| self.df[p * ds + self.active[a].0] != 0.0)
                .collect();
            groups.push((p, here, false));
        }
        for (from, feats, whole) in groups {
            let rows: Vec<usize> = if whole { (fd..t).collect() } else { vec![from] };
            let scores = self.patch_rows(from, &feats, &rows, track, stage).await?;
            for (&a, m) in feats.iter().zip(scores) {
                let i = self.active[a].0;
                if whole {
                    all.values[i] = m;
                } else {
                    by_pos.values[from * ds + i] = m;
                }
            }
        }
        Ok(FeatureMaps { all, by_pos })
    }

    /// The normalised metric of each active feature `feats[j]` changed by
    /// Δf at `rows`, the tails starting at row `from`, batched.
    async fn patch_rows(
        &self,
        from: usize,
        feats: &[usize],
        rows: &[usize],
        track: &mut Tracker<'_>,
        stage: &str,
    ) -> Result<Vec<f32>> {
        let (t, d, ds) = (self.t, self.d, self.d_sae);
        let block = (t - from) * d;
        let per_tail = tail_flops(&self.cfg, self.start, t - from, t);
        let per_call = cost::items_per_call(per_tail, track.work_per_call(), BATCH);
        let mut out = Vec::with_capacity(feats.len());
        for chunk in feats.chunks(per_call) {
            let mut deltas = vec![0f32; chunk.len() * block];
            for (&a, blk) in chunk.iter().zip(deltas.chunks_mut(block)) {
                let (i, r) = (self.active[a].0, &self.active[a].1);
                for &p in rows {
                    let v = self.df[p * ds + i];
                    if v != 0.0 {
                        let row = &mut blk[(p - from) * d..(p - from + 1) * d];
                        for (o, &x) in row.iter_mut().zip(r) {
                            *o = v * x;
                        }
                    }
                }
            }
            track.pause().await?;
            let ms = self
                .e
                .resid_metrics(self.base, self.start, from, &deltas)
                .await?;
            out.extend(ms.into_iter().map(|m| self.normalise(m)));
            track.advance(stage, cost::units(chunk.len() as f64 * per_tail))?;
        }
        Ok(out)
    }

    /// Σ_k w_k ∂m/∂(the stream's rows at the start) along the straight path
    /// base + α_k R, R = Σᵢ Δf[:, i] rᵢ (all features moving together, the
    /// error term fixed), [n, d_model] f64.
    async fn gradients(
        &self,
        alphas: &[f64],
        weights: &[f64],
        track: &mut Tracker<'_>,
        stage: &str,
    ) -> Result<Vec<f64>> {
        let (fd, d, ds) = (self.first_diff, self.d, self.d_sae);
        let block = self.n() * d;
        let mut full = vec![0f64; block];
        for (i, r) in &self.active {
            for p in fd..self.t {
                let v = self.df[p * ds + i] as f64;
                if v != 0.0 {
                    let row = &mut full[(p - fd) * d..(p - fd + 1) * d];
                    for (o, &x) in row.iter_mut().zip(r) {
                        *o += v * x as f64;
                    }
                }
            }
        }
        // the path's points in calls of the work budget, their weighted
        // gradients summed in order
        let per_call =
            cost::items_per_call(self.grad_flops(1), track.work_per_call(), alphas.len());
        let mut g = vec![0f64; block];
        for (a_chunk, w_chunk) in alphas.chunks(per_call).zip(weights.chunks(per_call)) {
            let mut deltas = Vec::with_capacity(a_chunk.len() * block);
            for &a in a_chunk {
                deltas.extend(full.iter().map(|&v| (a as f32 as f64 * v) as f32));
            }
            track.pause().await?;
            let (_, grads) = self
                .e
                .resid_gradients(self.base, self.start, fd, &deltas)
                .await?;
            for (k, &w) in w_chunk.iter().enumerate() {
                for (acc, &x) in g.iter_mut().zip(&grads[k * block..(k + 1) * block]) {
                    *acc += w as f32 as f64 * x as f64;
                }
            }
            track.advance(stage, cost::units(self.grad_flops(a_chunk.len())))?;
        }
        Ok(g)
    }

    /// attr[p, i] = Δf[p, i] · (rᵢ · g[p]) by position and summed over
    /// positions; normalised by the gap for AtP, raw for IG.
    fn attribute(&self, g: &[f64], normalise: bool) -> FeatureMaps {
        let (t, fd, d, ds) = (self.t, self.first_diff, self.d, self.d_sae);
        let mut all = vec![0f64; ds];
        let mut by_pos = SiteMap::zeros(vec![t, ds]);
        let scale = if normalise { 1.0 / self.gap } else { 1.0 };
        for (i, r) in &self.active {
            for p in fd..t {
                let v = self.df[p * ds + i] as f64;
                if v == 0.0 {
                    continue;
                }
                let gp = &g[(p - fd) * d..(p - fd + 1) * d];
                let dot: f64 = gp.iter().zip(r).map(|(&a, &b)| a * b as f64).sum();
                let cell = v * dot;
                by_pos.values[p * ds + i] = (cell * scale) as f32;
                all[*i] += cell;
            }
        }
        FeatureMaps {
            all: SiteMap {
                shape: vec![ds],
                // a feature that never changed is exactly 0, whatever the gap
                values: all
                    .into_iter()
                    .map(|v| if v == 0.0 { 0.0 } else { (v * scale) as f32 })
                    .collect(),
            },
            by_pos,
        }
    }
}
