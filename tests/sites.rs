//! TransformerLens's patching sites (resid_pre … pattern_dest_src) against
//! the plain hooked forward: AP cell by cell as `run_with_hooks` with the
//! hook's piece swapped in, IG's completeness per layer, AtP as the
//! directional derivative along each cell's change, and the GPU backend
//! against the CPU. The TransformerLens goldens are in `golden_sites`.

use pollster::block_on;

use crate::common::*;
use patchlab::attribution::quadrature::Rule;
use patchlab::attribution::sites::{site_scores, SiteAsk, SiteResults};
use patchlab::attribution::{Direction, Method, Quiet, Tracker};
use patchlab::engine::cpu::CpuEngine;
use patchlab::engine::{Array, Engine, Metric, SweepPair};
use patchlab::model::random::{random_weights, RandomSpec};
use patchlab::report::{MethodKey, PatchSite};

/// The hook a site's piece lives in and which of its entries one cell
/// (row-major index within a layer) takes from the other run.
fn cell_entries(
    site: PatchSite,
    t: usize,
    cell: usize,
    (h, dh, d): (usize, usize, usize),
) -> Vec<usize> {
    match site {
        PatchSite::ResidPre | PatchSite::ResidMid | PatchSite::AttnOut | PatchSite::MlpOut => {
            (cell * d..(cell + 1) * d).collect()
        }
        // [pos, head, d_head] hooks; cells [pos, head]
        PatchSite::ZByPos | PatchSite::QByPos | PatchSite::KByPos | PatchSite::VByPos => {
            let (p, hh) = (cell / h, cell % h);
            ((p * h + hh) * dh..(p * h + hh + 1) * dh).collect()
        }
        // cells [head], all positions
        PatchSite::Z | PatchSite::Q | PatchSite::K | PatchSite::V => (0..t)
            .flat_map(|p| (p * h + cell) * dh..(p * h + cell + 1) * dh)
            .collect(),
        // hook_pattern [head, dest, src]
        PatchSite::Pattern => (cell * t * t..(cell + 1) * t * t).collect(),
        PatchSite::PatternByDest => (cell * t..(cell + 1) * t).collect(),
        PatchSite::PatternDestSrc => vec![cell],
    }
}

struct Case {
    spec: RandomSpec,
    clean: Vec<u32>,
    corrupt: Vec<u32>,
}

impl Case {
    fn first_diff(&self) -> usize {
        self.clean
            .iter()
            .zip(&self.corrupt)
            .position(|(a, b)| a != b)
            .unwrap()
    }
}

fn sweep<'a, R>(base: &'a R, other: &'a R, first_diff: usize) -> SweepPair<'a, R> {
    SweepPair {
        base,
        other,
        first_diff,
    }
}

fn cases() -> Vec<Case> {
    let (clean, corrupt) = ioi_ids();
    // the first token differs (no BOS), and only the last one
    let first: Vec<u32> = clean[1..9].to_vec();
    let mut first_other = first.clone();
    first_other[0] = 8100;
    let mut last_other = first.clone();
    *last_other.last_mut().unwrap() = 13;
    vec![
        Case {
            spec: spec(2, 3, 24, 5),
            clean: clean[..12].to_vec(),
            corrupt: corrupt[..12].to_vec(),
        },
        Case {
            spec: spec(2, 2, 16, 6),
            clean: first.clone(),
            corrupt: first_other,
        },
        Case {
            spec: spec(1, 2, 16, 7),
            clean: first,
            corrupt: last_other,
        },
    ]
}

async fn scores<E: Engine>(
    e: &E,
    base: &E::Run,
    other: &E::Run,
    first_diff: usize,
    methods: &[Method],
) -> SiteResults {
    let ask = SiteAsk {
        sites: &PatchSite::ALL,
        methods,
        ig_steps: 50,
        ig_rule: Rule::GaussLegendre,
    };
    let pair = SweepPair {
        base,
        other,
        first_diff,
    };
    let mut q = Quiet;
    site_scores(
        e,
        pair,
        &ask,
        Direction::CleanToCorrupt,
        &mut Tracker::new(&mut q, 0),
    )
    .await
    .unwrap()
}

/// The same model with each head's value bias moved into b_O, as
/// TransformerLens's `fold_value_biases` does: c_attn's V bias becomes
/// −ln_1.b · W_V (so v has no constant part) and b_O gains b_V · W_O. The
/// function is unchanged while attention rows sum to 1; a pattern entry
/// patched alone then weighs v without its bias, which is
/// TransformerLens's meaning of `pattern_dest_src`.
fn value_biases_folded(spec: &RandomSpec) -> CpuEngine {
    let mut w = random_weights(spec);
    let d = spec.d_model;
    for b in &mut w.blocks {
        let bias: Vec<f64> = (0..d)
            .map(|j| {
                let mut s = b.c_attn_b.data[2 * d + j] as f64;
                for i in 0..d {
                    s += b.ln_1_b.data[i] as f64 * b.c_attn_w.data[i * 3 * d + 2 * d + j] as f64;
                }
                s
            })
            .collect();
        for (j, &bj) in bias.iter().enumerate() {
            b.c_attn_b.data[2 * d + j] = (b.c_attn_b.data[2 * d + j] as f64 - bj) as f32;
        }
        for k in 0..d {
            let add: f64 = (0..d)
                .map(|j| bias[j] * b.c_proj_w.data[j * d + k] as f64)
                .sum();
            b.c_proj_b.data[k] = (b.c_proj_b.data[k] as f64 + add) as f32;
        }
    }
    CpuEngine::new(spec.config(), w).unwrap()
}

/// Every AP cell of every site equals the hooked forward with that piece
/// of the hook taken from the other run (on the model with its value biases
/// folded into b_O, as TransformerLens loads GPT-2); cells before the first
/// difference are exactly 0.
#[test]
fn ap_at_every_site_equals_the_hooked_forward() {
    block_on(async {
        for case in cases() {
            let e = engine(&case.spec);
            let folded = value_biases_folded(&case.spec);
            let cfg = e.config().clone();
            let first_diff = case.first_diff();
            for d in Direction::ALL {
                let (bt, ot) = d.order(&case.clean, &case.corrupt);
                let (base, other) = runs(&e, bt, ot, &ANSWERS).await;
                let (mb, mo) = (e.metric(&base), e.metric(&other));
                let ask = SiteAsk {
                    sites: &PatchSite::ALL,
                    methods: &[Method::Ap],
                    ig_steps: 1,
                    ig_rule: Rule::GaussLegendre,
                };
                let pair = SweepPair {
                    base: &base,
                    other: &other,
                    first_diff,
                };
                let mut q = Quiet;
                let got = site_scores(&e, pair, &ask, d, &mut Tracker::new(&mut q, 0))
                    .await
                    .unwrap();
                let ap = &got[&MethodKey::Ap];
                let (fb, fo) = runs(&folded, bt, ot, &ANSWERS).await;
                for site in PatchSite::ALL {
                    let map = &ap[&site];
                    assert_eq!(map.shape, site.shape(&cfg, bt.len()), "{site}");
                    let per_layer = map.values.len() / cfg.n_layers;
                    for l in 0..cfg.n_layers {
                        let hook = site.hook(l);
                        let (hb, ho) = (
                            folded.activation(&fb, &hook).await.unwrap(),
                            folded.activation(&fo, &hook).await.unwrap(),
                        );
                        for cell in 0..per_layer {
                            let mut v: Array = hb.clone();
                            let dims = (cfg.n_heads, cfg.d_head, cfg.d_model);
                            for i in cell_entries(site, bt.len(), cell, dims) {
                                v.data[i] = ho.data[i];
                            }
                            let got = map.values[l * per_layer + cell];
                            if v.data == hb.data {
                                assert_eq!(
                                    got, 0.0,
                                    "{d:?} {site} L{l} cell {cell}: nothing differs"
                                );
                                continue;
                            }
                            let m = folded
                                .metric_with_substitutions(bt, &ANSWERS, &[(hook.clone(), v)])
                                .await
                                .unwrap();
                            let want = (m - mb) / (mb - mo);
                            assert!(
                                ((got - want) * (mb - mo)).abs() <= 2e-5 * (1.0 + mb.abs()),
                                "{d:?} {site} L{l} cell {cell}: fast {got}, hooked forward {want}"
                            );
                        }
                    }
                }
            }
        }
    })
}

/// IG is complete: per layer and hook, the sum of a site's cells is the
/// metric with the whole layer's hook taken from the other run minus the
/// base metric; AtP is the directional derivative along each cell's change.
#[test]
fn ig_is_complete_and_atp_is_the_first_order_term() {
    block_on(async {
        let case = &cases()[0];
        let e = engine(&case.spec);
        let cfg = e.config().clone();
        let first_diff = case.first_diff();
        let (base, other) = runs(&e, &case.clean, &case.corrupt, &ANSWERS).await;
        let (mb, mo) = (e.metric(&base), e.metric(&other));
        let got = scores(&e, &base, &other, first_diff, &[Method::Ig, Method::Atp]).await;
        for site in PatchSite::ALL {
            let ig = &got[&MethodKey::Ig][&site];
            let atp = &got[&MethodKey::Atp][&site];
            let per_layer = ig.values.len() / cfg.n_layers;
            for l in 0..cfg.n_layers {
                let hook = site.hook(l);
                let ho = e.activation(&other, &hook).await.unwrap();
                let whole = e
                    .metric_with_substitutions(&case.clean, &ANSWERS, &[(hook.clone(), ho.clone())])
                    .await
                    .unwrap();
                let sum: f32 = ig.values[l * per_layer..(l + 1) * per_layer].iter().sum();
                assert!(
                    (sum - (whole - mb)).abs() <= 1e-3 * (1.0 + (whole - mb).abs()),
                    "{site} L{l}: Σ IG {sum}, m(patched) − m_base {}",
                    whole - mb
                );
                // AtP: d/dε m(a_base + ε Δa_cell) at 0, for a few cells
                let hb = e.activation(&base, &hook).await.unwrap();
                for cell in [0, per_layer / 2, per_layer - 1] {
                    let dims = (cfg.n_heads, cfg.d_head, cfg.d_model);
                    let idx = cell_entries(site, case.clean.len(), cell, dims);
                    let eps = 1e-2f32;
                    let mut m = [0f32; 2];
                    for (slot, sign) in [(0, 1.0f32), (1, -1.0)] {
                        let mut v = hb.clone();
                        for &i in &idx {
                            v.data[i] += sign * eps * (ho.data[i] - hb.data[i]);
                        }
                        m[slot] = e
                            .metric_with_substitutions(&case.clean, &ANSWERS, &[(hook.clone(), v)])
                            .await
                            .unwrap();
                    }
                    let want = (m[0] - m[1]) / (2.0 * eps) / (mb - mo);
                    let have = atp.values[l * per_layer + cell];
                    assert!(
                        (have - want).abs() <= 2e-2 * have.abs().max(want.abs()) + 2e-3,
                        "{site} L{l} cell {cell}: AtP {have}, directional derivative {want}"
                    );
                }
            }
        }
    })
}

/// The WebGPU backend gives every site's AP, AtP and IG as the CPU does
/// (lavapipe in CI), the probability-difference metric included.
#[test]
fn gpu_site_scores_equal_cpu() {
    block_on(async {
        for (case, prob) in cases().iter().zip([false, true, false]) {
            let (cpu, gpu) = engines(&case.spec);
            let first_diff = case.first_diff();
            let metric: Metric = if prob {
                hot_metric(&cpu, &case.clean).await
            } else {
                ANSWERS
            };
            let (cb, co) = runs(&cpu, &case.clean, &case.corrupt, &metric).await;
            let (gb, go) = runs(&gpu, &case.clean, &case.corrupt, &metric).await;
            let all = [Method::Ap, Method::Atp, Method::Ig];
            let c = scores(&cpu, &cb, &co, first_diff, &all).await;
            let g = scores(&gpu, &gb, &go, first_diff, &all).await;
            for (m, sites) in &c {
                for (site, map) in sites {
                    let other = &g[m][site];
                    assert_eq!(other.shape, map.shape);
                    let scale = max_abs(&map.values).max(1e-3);
                    let diff = max_diff_over(&map.values, &other.values, scale);
                    assert!(
                        diff <= 2e-4,
                        "{m:?} {site}: GPU differs from CPU by {diff} of the map's scale {scale}"
                    );
                }
            }
        }
    })
}

/// Sites that enter the residual stream at the same point share the
/// engine's passes (every site of a layer but resid_pre and mlp_out at its
/// resid_mid; mlp_out of layer l with resid_pre of layer l + 1): each site
/// asked alone, run in passes of its own, gives the map it gets among all
/// the others, on both engines.
#[test]
fn sites_sharing_passes_score_as_each_site_alone() {
    block_on(async {
        let case = &cases()[0];
        let (cpu, gpu) = engines(&case.spec);
        let first_diff = case.first_diff();
        let methods = [Method::Ap, Method::Atp];
        let (cb, co) = runs(&cpu, &case.clean, &case.corrupt, &ANSWERS).await;
        let (gb, go) = runs(&gpu, &case.clean, &case.corrupt, &ANSWERS).await;
        let together = [
            scores(&cpu, &cb, &co, first_diff, &methods).await,
            scores(&gpu, &gb, &go, first_diff, &methods).await,
        ];
        for site in PatchSite::ALL {
            let ask = SiteAsk {
                sites: &[site],
                methods: &methods,
                ig_steps: 1,
                ig_rule: Rule::GaussLegendre,
            };
            let mut q = Quiet;
            let mut tr = Tracker::new(&mut q, 0);
            let dir = Direction::CleanToCorrupt;
            let alone = [
                site_scores(&cpu, sweep(&cb, &co, first_diff), &ask, dir, &mut tr)
                    .await
                    .unwrap(),
                site_scores(&gpu, sweep(&gb, &go, first_diff), &ask, dir, &mut tr)
                    .await
                    .unwrap(),
            ];
            for (engine, (a, t)) in ["cpu", "gpu"].iter().zip(alone.iter().zip(&together)) {
                for m in [MethodKey::Ap, MethodKey::Atp] {
                    let (a, t) = (&a[&m][&site].values, &t[&m][&site].values);
                    let scale = max_abs(t).max(1e-3);
                    let diff = max_diff_over(a, t, scale);
                    assert!(
                        diff <= 1e-5,
                        "{engine} {m:?} {site}: alone and among the others differ by {diff} of {scale}"
                    );
                }
            }
        }
    })
}

/// A dataset's site maps: each cell's mean and std over the pairs; maps
/// with a position axis only over the pairs of the most common template
/// (token count and first difference), the others listed; maps without one
/// over every pair.
#[test]
fn dataset_site_maps_average_aligned_pairs_only() {
    use patchlab::attribution::run::{analyze_pair, Options};
    use patchlab::report::summary::{summarize, DatasetInfo};
    use patchlab::report::Prompts;
    block_on(async {
        let e = engine(&spec(2, 2, 16, 9));
        let tok = tokenizer();
        let pair = |clean: &str, corrupt: &str| Prompts {
            clean: clean.into(),
            corrupt: corrupt.into(),
            correct: " Mary".into(),
            incorrect: " John".into(),
            bos: true,
            metric: "logit_diff".into(),
        };
        let pairs = [
            pair(
                "When Mary and John went out, John gave it to",
                "When Mary and John went out, Mary gave it to",
            ),
            pair(
                "When Anna and John went out, John gave it to",
                "When Anna and John went out, Anna gave it to",
            ),
            // another template: other length and first difference
            pair("Then John gave it to", "Then Mary gave it to"),
            pair(
                "When Kate and John went out, John gave it to",
                "When Kate and John went out, Kate gave it to",
            ),
        ];
        let opts = Options {
            components: vec![],
            sites: vec![PatchSite::ResidPre, PatchSite::Q],
            methods: vec![Method::Ap],
            ..Options::default()
        };
        let mut reports = vec![];
        for (i, p) in pairs.iter().enumerate() {
            let r = analyze_pair(&e, "m", tok, p, &opts, &mut Quiet)
                .await
                .unwrap();
            reports.push((i, r));
        }
        let info = DatasetInfo {
            source: "test".into(),
            seed: None,
            total: 4,
        };
        let s = summarize(info, &reports, true).unwrap();
        let al = s.site_alignment.as_ref().unwrap();
        assert_eq!(
            (al.aligned.clone(), al.not_aligned.clone()),
            (vec![0, 1, 3], vec![2])
        );
        assert_eq!(al.n_tokens, reports[0].1.tokens.clean.len());
        let d = Direction::CleanToCorrupt;
        for (site, members) in [
            (PatchSite::ResidPre, vec![0, 1, 3]),
            (PatchSite::Q, vec![0, 1, 2, 3]),
        ] {
            let st = &s.site_maps[&MethodKey::Ap][&d][&site];
            assert_eq!(st.n, members.len(), "{site}");
            for c in 0..st.mean.values.len() {
                let v: Vec<f64> = members
                    .iter()
                    .map(|&i| {
                        reports[i].1.results[&MethodKey::Ap][&d].sites[&site].values[c] as f64
                    })
                    .collect();
                let mu = v.iter().sum::<f64>() / v.len() as f64;
                let sd = (v.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
                assert!(
                    (st.mean.values[c] as f64 - mu).abs() < 1e-6,
                    "{site} cell {c}"
                );
                assert!(
                    (st.std.values[c] as f64 - sd).abs() < 1e-6,
                    "{site} cell {c}"
                );
            }
        }
        // the summary's JSON reads back
        let back = patchlab::report::summary::Summary::from_json(&s.to_json()).unwrap();
        assert_eq!(back.site_alignment, s.site_alignment);
    })
}
