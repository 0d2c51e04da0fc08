//! Every patching site against TransformerLens 2.18's own
//! `patching.get_act_patch_*` (AP), torch autograd (AtP) and captum's
//! LayerIntegratedGradients on the site's hook (IG), from
//! tests/golden/sites_model_{a,b}.json (tests/reference/make_site_goldens.py):
//! with and without BOS, the first difference at 0, in the middle and at
//! the last token, both directions, on both backends.

use pollster::block_on;

use crate::common::golden::{flat, load, prompts, MODEL_A, MODEL_B};
use crate::common::*;
use patchlab::attribution::run::{analyze_pair, Options};
use patchlab::attribution::Quiet;
use patchlab::engine::Engine;
use patchlab::model::published::Repo;
use patchlab::model::random::{random_weights, RandomSpec};
use patchlab::report::{Direction, MethodKey, PatchSite, Report};
use serde_json::Value;
use sha2::Digest;

/// The site golden of a model and its `random-model` spec.
fn golden(spec: &RandomSpec, file: &str) -> Value {
    let g = load(file);
    let published = format!(
        "{:x}",
        sha2::Sha256::digest(
            Repo::Gpt2
                .safetensors(&random_weights(spec), &spec.config())
                .unwrap()
        )
    );
    assert_eq!(
        g["model"]["model_safetensors_sha256"].as_str().unwrap(),
        published,
        "random-model no longer writes the model {file} was made from"
    );
    g
}

fn values(v: &Value) -> (Vec<usize>, Vec<f32>) {
    let shape = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    (shape, flat(&v["values"]))
}

/// The report of a golden case with every site and no heads or neurons.
async fn site_report<E: Engine>(e: &E, g: &Value, case: &Value) -> Report {
    let opts = Options {
        components: vec![],
        sites: PatchSite::ALL.to_vec(),
        ig_steps: g["ig_steps"].as_u64().unwrap() as usize,
        ..Options::default()
    };
    analyze_pair(e, "golden", tokenizer(), &prompts(case), &opts, &mut Quiet)
        .await
        .unwrap()
}

/// AP (un-normalised: the patched metric) within 1e-4 of the metric's
/// scale, AtP within 1e-4 of it, IG within 1e-4 of the map's scale; cells
/// before the first difference exactly 0.
async fn check<E: Engine>(e: &E, file: &str, g: &Value) {
    let cases = g["cases"].as_array().unwrap();
    for (ci, c) in cases.iter().enumerate() {
        let r = site_report(e, g, c).await;
        let ids: Vec<u64> = r.tokens.clean.iter().map(|t| t.id as u64).collect();
        let want: Vec<u64> = c["clean_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        assert_eq!(ids, want, "{file} case {ci}");
        let first_diff = c["first_diff"].as_u64().unwrap() as usize;
        assert_eq!(r.tokens.first_diff, first_diff);
        let (mc, mk) = (r.metric.clean, r.metric.corrupt);
        for d in Direction::ALL {
            let (mb, mo) = d.order(mc, mk);
            let gap = mb - mo;
            let scale = 1.0 + mb.abs().max(mo.abs());
            for site in PatchSite::ALL {
                let what = format!("{file} case {ci} {} {} {site}", e.backend(), d.name());
                let (gshape, gap_vals) = values(&c["ap"][d.name()][site.name()]);
                let ours = &r.results[&MethodKey::Ap][&d].sites[&site];
                assert_eq!(ours.shape, gshape, "{what}: shape");
                for (i, (&a, &want)) in ours.values.iter().zip(&gap_vals).enumerate() {
                    let patched = mb + a * gap;
                    assert!(
                        (patched - want).abs() <= 1e-4 * scale,
                        "{what} AP[{i}]: our patched metric {patched}, TransformerLens {want}"
                    );
                }
                // nothing differs before the first differing token
                if site.is_residual() {
                    let t = gshape[1];
                    for l in 0..gshape[0] {
                        for p in 0..first_diff {
                            assert_eq!(ours.values[l * t + p], 0.0, "{what} L{l} pos {p}");
                        }
                    }
                }
                let (_, gatp) = values(&c["atp"][d.name()][site.name()]);
                let ours = &r.results[&MethodKey::Atp][&d].sites[&site];
                for (i, (&a, &want)) in ours.values.iter().zip(&gatp).enumerate() {
                    assert!(
                        (a * gap - want).abs() <= 1e-4 * scale,
                        "{what} AtP[{i}]: ours {}, torch {want}",
                        a * gap
                    );
                }
                let (_, gig) = values(&c["ig"][d.name()][site.name()]);
                let ours = &r.results[&MethodKey::Ig][&d].sites[&site];
                let ig_scale = max_abs(&gig).max(1e-3);
                for (i, (&a, &want)) in ours.values.iter().zip(&gig).enumerate() {
                    assert!(
                        (a - want).abs() <= 1e-4 * ig_scale,
                        "{what} IG[{i}]: ours {a}, captum {want} (map scale {ig_scale})"
                    );
                }
                // IG* is IG over the gap
                let norm = &r.results[&MethodKey::IgNorm][&d].sites[&site];
                assert_eq!(norm.shape, ours.shape);
            }
        }
    }
}

#[test]
fn sites_match_transformer_lens_model_a() {
    let spec = MODEL_A.1;
    let g = golden(&spec, "sites_model_a.json");
    block_on(check(&engine(&spec), "sites_model_a.json", &g));
}

#[test]
fn sites_match_transformer_lens_model_b() {
    let spec = MODEL_B.1;
    let g = golden(&spec, "sites_model_b.json");
    block_on(check(&engine(&spec), "sites_model_b.json", &g));
}

#[test]
fn gpu_sites_match_transformer_lens_model_a() {
    let spec = MODEL_A.1;
    let g = golden(&spec, "sites_model_a.json");
    let (_, gpu) = engines(&spec);
    block_on(check(&gpu, "sites_model_a.json", &g));
}

/// Direct logit attribution of both runs against TransformerLens's
/// `logit_attrs` of `stack_head_results` and `decompose_resid` (within 1e-4
/// of the map's scale), and at the last position Σ layers + bias = m.
async fn check_dla<E: Engine>(e: &E, file: &str, g: &Value) {
    for (ci, c) in g["cases"].as_array().unwrap().iter().enumerate() {
        let opts = Options {
            components: vec![],
            dla: true,
            ..Options::default()
        };
        let r = analyze_pair(e, "golden", tokenizer(), &prompts(c), &opts, &mut Quiet)
            .await
            .unwrap();
        let dla = r.dla.as_ref().expect("DLA was asked for");
        let labels: Vec<&str> = c["dla"]["clean"]["layers"]["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(dla.labels, labels, "{file}");
        for (run, ours, m) in [
            ("clean", &dla.clean, r.metric.clean),
            ("corrupt", &dla.corrupt, r.metric.corrupt),
        ] {
            let what = format!("{file} case {ci} {} {run}", e.backend());
            for (part, map) in [("heads", &ours.heads), ("layers", &ours.layers)] {
                let (shape, want) = values(&c["dla"][run][part]);
                assert_eq!(map.shape, shape, "{what} {part}");
                let scale = max_abs(&want).max(1e-3);
                for (i, (&a, &b)) in map.values.iter().zip(&want).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-4 * scale,
                        "{what} DLA {part}[{i}]: ours {a}, TransformerLens {b}"
                    );
                }
            }
            let t = ours.layers.shape[1];
            let last: f32 = (0..ours.layers.shape[0])
                .map(|i| ours.layers.values[i * t + t - 1])
                .sum();
            assert!(
                (last + dla.bias - m).abs() <= 1e-4 * (1.0 + m.abs()),
                "{what}: Σ layers {last} + bias {} ≠ m {m}",
                dla.bias
            );
        }
    }
}

#[test]
fn dla_matches_transformer_lens() {
    for ((file, spec), gpu) in [
        (("sites_model_a.json", MODEL_A.1), false),
        (("sites_model_b.json", MODEL_B.1), false),
        (("sites_model_a.json", MODEL_A.1), true),
    ] {
        let g = golden(&spec, file);
        if gpu {
            block_on(check_dla(&engines(&spec).1, file, &g));
        } else {
            block_on(check_dla(&engine(&spec), file, &g));
        }
    }
}
