//! AP, AtP and IG at one layer's sites: the perturbations each site's
//! patches make of the residual stream, run by the engine's tails.

use super::*;

impl<E: Engine> Ctx<'_, E> {
    pub(super) fn n(&self) -> usize {
        self.t - self.first_diff
    }
    pub(super) fn d(&self) -> usize {
        self.cfg.d_model
    }

    pub(super) async fn acts(&self, l: usize) -> Result<Acts> {
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
        let hooks = NAMES.map(|name| format!("blocks.{l}.{name}"));
        // both runs' activations with one read-back
        let reads: Vec<(&E::Run, &str)> = hooks
            .iter()
            .flat_map(|h| [(self.base, h.as_str()), (self.other, h.as_str())])
            .collect();
        let mut read = self.e.activations(&reads).await?.into_iter();
        let mut acts = Acts {
            base: BTreeMap::new(),
            other: BTreeMap::new(),
        };
        for name in NAMES {
            if let (Some(b), Some(o)) = (read.next(), read.next()) {
                acts.base.insert(name, b.data);
                acts.other.insert(name, o.data);
            }
        }
        Ok(acts)
    }

    /// (m − m_base) / (m_base − m_other), in f64 as AP's maps are.
    pub(super) fn normalise(&self, m: f32) -> f32 {
        ((m as f64 - self.m_base as f64) / self.gap) as f32
    }

    /// AP of one layer of `site` (its cells, row-major), queued in `q`
    /// with the perturbations of the sites that start where it does; `q`
    /// writes the scores into `out` and advances `track` by `units` once
    /// they have all run.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn ap(
        &self,
        (site, l): (PatchSite, usize),
        acts: &Acts,
        (w_o, b_v): (&[f32], &[f32]),
        (units, stage): (u64, &str),
        q: &mut ApQueue,
        out: &mut SiteResults,
        track: &mut Tracker<'_>,
    ) -> Result<()> {
        let (t, first_diff, d, h) = (self.t, self.first_diff, self.d(), self.cfg.n_heads);
        let start = site_start(site, l);
        let job = |count: usize| ApCells {
            site,
            layer: l,
            start,
            count,
            units,
            stage: stage.to_string(),
        };
        if site.is_residual() {
            let delta = acts.delta(resid_hook(site));
            return q
                .add(self, job(t), out, track, |p, block| {
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
                q.add(self, job(h), out, track, |hh, block| {
                    for p in first_diff..t {
                        block[(p - first_diff) * d..(p - first_diff + 1) * d]
                            .copy_from_slice(row(p, hh));
                    }
                    Ok(())
                })
                .await
            } else {
                // [pos, head]
                q.add(self, job(t * h), out, track, |i, block| {
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
        q.add(self, job(count), out, track, |i, block| {
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
    pub(super) fn atp(
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
    pub(super) async fn ig_path(
        &self,
        site: PatchSite,
        l: usize,
        acts: &Acts,
        (w_o, b_v): (&[f32], &[f32]),
        (alphas, weights): &(Vec<f32>, Vec<f32>),
    ) -> Result<IgPath> {
        let (t, first_diff, d, h) = (self.t, self.first_diff, self.d(), self.cfg.n_heads);
        let (n, k) = (self.n(), alphas.len());
        let start = site_start(site, l);
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
    pub(super) fn ig_cells(&self, site: PatchSite, acts: &Acts, path: &IgPath) -> Vec<f32> {
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
