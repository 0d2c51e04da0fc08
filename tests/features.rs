//! SAE features: invariants a shared mistake with the goldens could not
//! pass. Every AP cell equals the plain hooked forward with the hook's
//! activation changed by Δf · W_dec (no tails, no first-difference cut);
//! IG is complete; every feature plus the other run's error term is the
//! whole hook patched; swapping clean and corrupt swaps the directions and
//! AND / OR; the report round-trips; bad SAEs are refused before anything
//! runs; the CLI writes the maps.

use pollster::block_on;

use crate::common::golden::MODEL_A;
use crate::common::*;
use crate::golden_features::fixture;
use patchlab::attribution::features::{sae_features, sae_input};
use patchlab::attribution::run::{analyze_pair, Options};
use patchlab::attribution::{Pair, Quiet};
use patchlab::engine::{Array, Engine};
use patchlab::model::sae::SaeSite;
use patchlab::report::features::feature_key;
use patchlab::report::{Direction, MethodKey, Prompts, Report};
use serde::Deserialize;
use std::sync::Arc;

/// GPT-2's tokenizer, parsed once for this file's tests.
fn tok() -> &'static patchlab::model::Tokenizer {
    static TOK: std::sync::OnceLock<patchlab::model::Tokenizer> = std::sync::OnceLock::new();
    TOK.get_or_init(load_tokenizer)
}

fn feature_report<E: Engine>(e: &E, prompts: &Prompts, names: &[&str]) -> Report {
    let opts = Options {
        components: vec![],
        saes: names.iter().map(|n| Arc::new(fixture(n))).collect(),
        ig_steps: 20,
        ..Options::default()
    };
    block_on(analyze_pair(e, "m", tok(), prompts, &opts, &mut Quiet))
        .unwrap_or_else(|err| panic!("{err}"))
}

/// The hook's plain activation of the base run with `delta` ([T, d_in], in
/// the SAE's space) added: what TransformerLens's `run_with_hooks` would
/// substitute (the SAE space differs from the plain one by a per-row
/// constant, or per head by the value bias, neither of which a change sees).
fn patched(base: &Array, delta: &[f64]) -> Array {
    Array {
        shape: base.shape.clone(),
        data: base
            .data
            .iter()
            .zip(delta)
            .map(|(&x, &d)| (x as f64 + d) as f32)
            .collect(),
    }
}

#[test]
fn every_cell_equals_the_hooked_forward_and_ig_is_complete() {
    let e = engine(&MODEL_A.1);
    let prompts = ioi_prompts();
    let pair = Pair::from_prompts(tok(), e.config(), &prompts).unwrap();
    let (clean, corrupt) = block_on(runs(&e, &pair.clean, &pair.corrupt, &pair.metric));
    for name in [
        "legacy_standard_resid_pre_1",
        "jumprelu_z_0",
        "topk_mlp_out_0",
        "standard_attn_out_1",
    ] {
        let sae = fixture(name);
        let r = feature_report(&e, &prompts, &[name]);
        let (ds, di, fd) = (sae.d_sae, sae.d_in, pair.first_diff);
        let t = pair.clean.len();
        let hook = match sae.site {
            SaeSite::Z => format!("blocks.{}.attn.hook_z", sae.layer),
            _ => sae.hook_name.clone(),
        };
        for d in Direction::ALL {
            let (base, other, tokens) = match d {
                Direction::CleanToCorrupt => (&clean, &corrupt, &pair.clean),
                Direction::CorruptToClean => (&corrupt, &clean, &pair.corrupt),
            };
            let (mb, mo) = (e.metric(base), e.metric(other));
            let gap = mb - mo;
            let scale = 1.0 + mb.abs().max(mo.abs());
            let x_plain = block_on(e.activation(base, &hook)).unwrap();
            let fb = block_on(sae_features(&e, base, &sae)).unwrap();
            let fo = block_on(sae_features(&e, other, &sae)).unwrap();
            let m_of = |delta: &[f64]| {
                block_on(e.metric_with_substitutions(
                    tokens,
                    &pair.metric,
                    &[(hook.clone(), patched(&x_plain, delta))],
                ))
                .unwrap()
            };
            // Δx of feature i at positions `ps`
            let delta = |i: usize, ps: &mut dyn Iterator<Item = usize>| {
                let mut dx = vec![0f64; t * di];
                for p in ps {
                    let df = (fo[p * ds + i] - fb[p * ds + i]) as f64;
                    for k in 0..di {
                        dx[p * di + k] += df * sae.w_dec[i * di + k] as f64;
                    }
                }
                dx
            };
            let what = format!("{name} {}", d.name());
            let ap = &r.results[&MethodKey::Ap][&d];
            let all = &ap.features[&feature_key(&sae.hook_name, false)];
            let by_pos = &ap.features[&feature_key(&sae.hook_name, true)];
            let mut changed = 0;
            for i in 0..ds {
                let moves = (fd..t).any(|p| fo[p * ds + i] != fb[p * ds + i]);
                if !moves {
                    assert_eq!(all.values[i], 0.0, "{what} feature {i} does not change");
                    continue;
                }
                changed += 1;
                let m = m_of(&delta(i, &mut (fd..t)));
                let ours = mb + all.values[i] * gap;
                assert!(
                    (ours - m).abs() <= 1e-4 * scale,
                    "{what} AP feature {i}: ours {ours}, hooked forward {m}"
                );
                // one cell by position per feature: its largest change
                let p = (fd..t)
                    .max_by(|&a, &b| {
                        let g = |p: usize| (fo[p * ds + i] - fb[p * ds + i]).abs();
                        g(a).total_cmp(&g(b))
                    })
                    .unwrap();
                let m = m_of(&delta(i, &mut std::iter::once(p)));
                let ours = mb + by_pos.values[p * ds + i] * gap;
                assert!(
                    (ours - m).abs() <= 1e-4 * scale,
                    "{what} AP feature {i} at {p}: ours {ours}, hooked forward {m}"
                );
            }
            assert!(changed > 3, "{what}: only {changed} features change");
            // IG is complete: Σ attr = m(every feature moved, base error) − m_base
            let mut every = vec![0f64; t * di];
            for i in 0..ds {
                for (a, b) in every.iter_mut().zip(delta(i, &mut (fd..t))) {
                    *a += b;
                }
            }
            let m_all = m_of(&every);
            let ig = &r.results[&MethodKey::Ig][&d].features[&feature_key(&sae.hook_name, false)];
            let sum: f64 = ig.values.iter().map(|&v| v as f64).sum();
            assert!(
                (sum - (m_all - mb) as f64).abs() <= 1e-3 * scale as f64,
                "{what}: Σ IG {sum} vs m(all features) − m_base {}",
                m_all - mb
            );
            // every feature and the other run's error term: the whole hook patched
            let xb = block_on(sae_input(&e, base, &sae)).unwrap();
            let xo = block_on(sae_input(&e, other, &sae)).unwrap();
            let decode = |f: &[f32], p: usize, k: usize| {
                sae.b_dec[k] as f64
                    + (0..ds)
                        .map(|i| f[p * ds + i] as f64 * sae.w_dec[i * di + k] as f64)
                        .sum::<f64>()
            };
            let mut with_error = every.clone();
            for p in fd..t {
                for k in 0..di {
                    let e_o = xo[p * di + k] as f64 - decode(&fo, p, k);
                    let e_b = xb[p * di + k] as f64 - decode(&fb, p, k);
                    with_error[p * di + k] += e_o - e_b;
                }
            }
            let m_whole = {
                let x_other = block_on(e.activation(other, &hook)).unwrap();
                let mut whole = x_plain.clone();
                let row = di;
                whole.data[fd * row..].copy_from_slice(&x_other.data[fd * row..]);
                block_on(e.metric_with_substitutions(
                    tokens,
                    &pair.metric,
                    &[(hook.clone(), whole)],
                ))
                .unwrap()
            };
            let m = m_of(&with_error);
            assert!(
                (m - m_whole).abs() <= 1e-4 * scale,
                "{what}: every feature + the other error {m}, the hook patched whole {m_whole}"
            );
        }
    }
}

#[test]
fn swapping_clean_and_corrupt_swaps_directions_and_latent_sets() {
    let e = engine(&MODEL_A.1);
    let p = ioi_prompts();
    let swapped = Prompts {
        clean: p.corrupt.clone(),
        corrupt: p.clean.clone(),
        correct: p.incorrect.clone(),
        incorrect: p.correct.clone(),
        ..p.clone()
    };
    let names = ["legacy_standard_resid_pre_1", "topk_mlp_out_0"];
    let a = feature_report(&e, &p, &names);
    let b = feature_report(&e, &swapped, &names);
    for hook in ["blocks.1.hook_resid_pre", "blocks.0.hook_mlp_out"] {
        assert_eq!(a.features[hook].clean, b.features[hook].corrupt);
        assert_eq!(a.features[hook].corrupt, b.features[hook].clean);
        for m in [MethodKey::Ap, MethodKey::Atp, MethodKey::IgNorm] {
            for by_pos in [false, true] {
                let k = feature_key(hook, by_pos);
                let (x, y) = (
                    &a.results[&m][&Direction::CleanToCorrupt].features[&k],
                    &b.results[&m][&Direction::CorruptToClean].features[&k],
                );
                for (u, v) in x.values.iter().zip(&y.values) {
                    assert!(
                        (u - v).abs() <= 1e-6 * (1.0 + u.abs()),
                        "{m:?} {k}: {u} vs {v}"
                    );
                }
            }
        }
        let (fa, fb) = (&a.analysis.features[hook], &b.analysis.features[hook]);
        assert_eq!(fa.features, fb.features);
        assert!(!fa.features.is_empty());
        for m in [MethodKey::Ap, MethodKey::IgNorm] {
            assert_eq!(fa.latent[&m].and, fb.latent[&m].or, "{hook} {m:?}");
            assert_eq!(fa.latent[&m].or, fb.latent[&m].and, "{hook} {m:?}");
            for (u, v) in fa.asymmetry[&m].iter().zip(&fb.asymmetry[&m]) {
                assert!((u + v).abs() <= 1e-5, "{hook} {m:?} asymmetry {u} vs {v}");
            }
        }
        assert!(fa
            .correlations
            .contains_key("ig_norm_clean_to_corrupt__vs__ap_clean_to_corrupt"));
    }
}

#[test]
fn reports_with_features_round_trip_sparse() {
    let e = engine(&MODEL_A.1);
    let r = feature_report(&e, &ioi_prompts(), &["jumprelu_z_0"]);
    let json = r.to_json();
    assert!(
        json.contains("\"sae_by_pos:blocks.0.attn.hook_z\":{\"shape\""),
        "sparse by-position maps"
    );
    assert!(json.contains("\"schema\":4"));
    let back = Report::from_json(&json).unwrap();
    assert_eq!(back.features, r.features);
    assert_eq!(back.settings.saes, r.settings.saes);
    for (m, dirs) in &r.results {
        for (d, maps) in dirs {
            let again = &back.results[m][d].features;
            assert_eq!(again.len(), maps.features.len());
            for (k, v) in &maps.features {
                assert_eq!(again[k].shape, v.shape, "{k}");
                assert_eq!(again[k].values, v.values, "{k}");
            }
        }
    }
    assert_eq!(back.to_json(), json);
}

#[test]
fn mismatched_or_duplicate_saes_are_refused_before_anything_runs() {
    // a 64-wide SAE on a 48-wide model
    let e = engine(&MODEL_B_SPEC);
    let opts = Options {
        components: vec![],
        saes: vec![Arc::new(fixture("standard_resid_post_1"))],
        ..Options::default()
    };
    let err = block_on(analyze_pair(
        &e,
        "m",
        tok(),
        &ioi_prompts(),
        &opts,
        &mut Quiet,
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("64") && err.contains("48"), "{err}");
    // two SAEs on one hook
    let e = engine(&MODEL_A.1);
    let sae = Arc::new(fixture("standard_resid_post_1"));
    let opts = Options {
        components: vec![],
        saes: vec![sae.clone(), sae],
        ..Options::default()
    };
    let err = block_on(analyze_pair(
        &e,
        "m",
        tok(),
        &ioi_prompts(),
        &opts,
        &mut Quiet,
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("blocks.1.hook_resid_post") && err.contains("one SAE per hook"),
        "{err}"
    );
}

const MODEL_B_SPEC: patchlab::model::random::RandomSpec = crate::common::golden::MODEL_B.1;

#[test]
fn cli_scores_features_and_writes_them() {
    let d = tempdir("sae-cli");
    random_model(&d.join("m"), (2, 4, 64, 1), &["--n-ctx", "32"]);
    let model = d.join("m");
    let npy = d.join("npy");
    let sae = "tests/fixtures/sae/legacy_standard_resid_pre_1";
    let out = patchlab(&[
        "analyze",
        "--model",
        model.to_str().unwrap(),
        "--clean",
        "When Mary and John went to the store, John gave a drink to",
        "--corrupt",
        "When Mary and John went to the store, Mary gave a drink to",
        "--correct",
        " Mary",
        "--incorrect",
        " John",
        "--components",
        "none",
        "--sae",
        sae,
        "--ig-steps",
        "10",
        "--npy",
        npy.to_str().unwrap(),
        "--out",
        "-",
        "--quiet",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let r = report(out);
    assert!(
        stderr.contains("blocks.1.hook_resid_pre (standard, 96 features)"),
        "{stderr}"
    );
    assert_eq!(r.settings.saes[0].name, "legacy_standard_resid_pre_1");
    assert!(r.results[&MethodKey::Ap][&Direction::CleanToCorrupt]
        .features
        .contains_key("sae:blocks.1.hook_resid_pre"));
    assert!(r.results[&MethodKey::Ap][&Direction::CleanToCorrupt]
        .heads
        .is_none());
    for f in [
        "ap_clean_to_corrupt_sae_blocks.1.hook_resid_pre.npy",
        "ig_norm_corrupt_to_clean_sae_by_pos_blocks.1.hook_resid_pre.npy",
    ] {
        assert!(npy.join(f).exists(), "{f}");
    }
    // a folder without an SAE, and a mismatched SAE, are clear errors
    let bad = patchlab(&[
        "analyze",
        "--model",
        model.to_str().unwrap(),
        "--clean",
        "a b",
        "--corrupt",
        "a c",
        "--correct",
        " x",
        "--incorrect",
        " y",
        "--sae",
        "tests/fixtures/sae",
    ]);
    fails_with(bad, "holds several SAEs");
}

#[test]
fn batch_averages_feature_maps_over_the_pairs() {
    let d = tempdir("sae-batch");
    random_model(&d.join("m"), (2, 4, 64, 1), &["--n-ctx", "64"]);
    let out = d.join("out");
    ok(patchlab(&[
        "batch",
        "--model",
        d.join("m").to_str().unwrap(),
        "--task",
        "ioi",
        "--n",
        "4",
        "--seed",
        "3",
        "--components",
        "none",
        "--sae",
        "tests/fixtures/sae/standard_resid_post_1",
        "--methods",
        "ap,atp",
        "--out-dir",
        out.to_str().unwrap(),
        "--quiet",
        "--include-small-gap",
    ]));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let reports: Vec<Report> = (0..4)
        .map(|i| {
            Report::from_json(
                &std::fs::read_to_string(out.join(format!("pairs/{i:04}.json"))).unwrap(),
            )
            .unwrap()
        })
        .collect();
    let key = "sae:blocks.1.hook_resid_post";
    let stats = &summary["feature_maps"]["ap"]["clean_to_corrupt"][key];
    assert_eq!(stats["n"], 4, "{stats}");
    let mean = patchlab::report::features::FeatureMapIn::deserialize(&stats["mean"])
        .unwrap()
        .0;
    for i in 0..mean.values.len() {
        let want: f64 = reports
            .iter()
            .map(|r| {
                r.results[&MethodKey::Ap][&Direction::CleanToCorrupt].features[key].values[i] as f64
            })
            .sum::<f64>()
            / 4.0;
        assert!(
            (mean.values[i] as f64 - want).abs() < 1e-6,
            "feature {i}: {} vs {want}",
            mean.values[i]
        );
    }
    // by position: only the pairs whose positions align
    let by_pos =
        &summary["feature_maps"]["ap"]["clean_to_corrupt"]["sae_by_pos:blocks.1.hook_resid_post"];
    let aligned = summary["site_alignment"]["aligned"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(by_pos["n"].as_u64().unwrap() as usize, aligned);
}

#[test]
fn slim_reports_keep_features_only_when_asked() {
    let e = engine(&MODEL_A.1);
    let r = feature_report(&e, &ioi_prompts(), &["topk_mlp_out_0"]);
    let keep = patchlab::report::slim::Keep::parse("features").unwrap();
    let s = Report::from_json(&patchlab::report::slim::slim(&r, &keep, 4).unwrap()).unwrap();
    assert_eq!(s.settings.saes, r.settings.saes);
    assert!(!s.analysis.features.is_empty());
    let k = feature_key("blocks.0.hook_mlp_out", true);
    let (a, b) = (
        &r.results[&MethodKey::Ap][&Direction::CleanToCorrupt].features[&k],
        &s.results[&MethodKey::Ap][&Direction::CleanToCorrupt].features[&k],
    );
    for (x, y) in a.values.iter().zip(&b.values) {
        assert!((x - y).abs() <= 1e-3 * x.abs().max(1e-6), "{x} vs {y}");
    }
    let keep = patchlab::report::slim::Keep::parse("heads").unwrap();
    let r2 = {
        let opts = Options {
            components: vec![patchlab::engine::Component::Heads],
            saes: vec![Arc::new(fixture("topk_mlp_out_0"))],
            ig_steps: 5,
            ..Options::default()
        };
        block_on(analyze_pair(
            &e,
            "m",
            tok(),
            &ioi_prompts(),
            &opts,
            &mut Quiet,
        ))
        .unwrap()
    };
    let s = Report::from_json(&patchlab::report::slim::slim(&r2, &keep, 4).unwrap()).unwrap();
    assert!(s.features.is_empty() && s.settings.saes.is_empty() && s.analysis.features.is_empty());
    assert!(s.results[&MethodKey::Ap][&Direction::CleanToCorrupt]
        .features
        .is_empty());
}

/// Records every progress report.
struct Record(Vec<(String, u64, u64)>);
impl patchlab::attribution::Observer for Record {
    fn progress(&mut self, p: &patchlab::attribution::Progress<'_>) -> bool {
        self.0.push((p.stage.to_string(), p.done, p.total));
        true
    }
}

#[test]
fn the_estimate_assumes_a_typical_count_and_progress_ends_at_the_work_done() {
    let e = engine(&MODEL_A.1);
    let prompts = ioi_prompts();
    let pair = Pair::from_prompts(tok(), e.config(), &prompts).unwrap();
    let opts = Options {
        components: vec![],
        saes: vec![Arc::new(fixture("legacy_standard_resid_pre_1"))],
        ig_steps: 10,
        ..Options::default()
    };
    let shapes = [(pair.clean.len(), pair.first_diff)];
    let est = opts.estimate(e.config(), &shapes);
    let features: Vec<_> = est
        .phases
        .iter()
        .filter(|p| p.method == "features")
        .collect();
    assert_eq!(features.len(), 2, "{:?}", est.phases);
    assert!(features.iter().all(|p| p.flops > 0.0));
    let mut rec = Record(vec![]);
    block_on(analyze_pair(&e, "m", tok(), &prompts, &opts, &mut rec)).unwrap();
    let first_total = rec.0.first().unwrap().2;
    assert_eq!(first_total, opts.work(e.config(), &shapes));
    let (_, done, total) = rec.0.last().unwrap().clone();
    assert_eq!(done, total);
    for w in rec.0.windows(2) {
        assert!(
            w[1].1 >= w[0].1,
            "progress went back: {:?} → {:?}",
            w[0],
            w[1]
        );
    }
    assert!(rec
        .0
        .iter()
        .any(|(s, _, _)| s.contains("features of blocks.1.hook_resid_pre")));
}

#[test]
fn a_work_budget_splits_feature_calls_and_changes_no_number() {
    let e = engine(&MODEL_A.1);
    let names = ["jumprelu_z_0"];
    let whole = feature_report(&e, &ioi_prompts(), &names);
    let opts = Options {
        components: vec![],
        saes: vec![Arc::new(fixture(names[0]))],
        ig_steps: 20,
        // a few tails per call
        work_per_call: Some(2e6),
        ..Options::default()
    };
    let split = block_on(analyze_pair(
        &e,
        "m",
        tok(),
        &ioi_prompts(),
        &opts,
        &mut Quiet,
    ))
    .unwrap();
    for (m, dirs) in &whole.results {
        for (d, maps) in dirs {
            for (k, a) in &maps.features {
                let b = &split.results[m][d].features[k];
                for (x, y) in a.values.iter().zip(&b.values) {
                    if *m == MethodKey::Ap {
                        assert_eq!(x, y, "{m:?} {k}: AP keeps its bits");
                    } else {
                        assert!(
                            (x - y).abs() <= 1e-5 * (1.0 + x.abs()),
                            "{m:?} {d:?} {k}: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }
}
