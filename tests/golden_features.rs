//! SAE features against SAELens itself (tests/golden/sae_model_a.json,
//! tests/reference/make_sae_goldens.py): eight random SAEs in the layouts
//! users load (the legacy pre-6.0 cfg of the published GPT-2 small SAEs and
//! SAELens 6's `save_model` folders; standard, JumpReLU and TopK; on
//! resid_pre / resid_mid / resid_post, attn_out, mlp_out and hook_z; one
//! `expected_average_only_in` SAE with its norm_scaling_factor folded in as
//! `SAE.from_pretrained` folds it; a TopK SAE with
//! `rescale_acts_by_decoder_norm`), read
//! by SAELens's `SAE.load_from_disk` and spliced into TransformerLens 2.18's
//! `HookedSAETransformer` with the error term. Per SAE, four pairs (the
//! first difference mid-prompt, at 0, at the last token, at 1), both
//! directions: the hook's activation x, the features f, and every
//! feature's AP (over all positions and by position), AtP and IG, on the
//! CPU and on lavapipe.

use pollster::block_on;

use crate::common::golden::{flat, load, prompts, MODEL_A};
use crate::common::*;
use patchlab::attribution::features::{sae_features, sae_input};
use patchlab::attribution::run::{analyze_pair, Options};
use patchlab::attribution::Quiet;
use patchlab::engine::Engine;
use patchlab::model::published::Repo;
use patchlab::model::random::random_weights;
use patchlab::model::sae::Sae;
use patchlab::report::features::feature_key;
use patchlab::report::{Direction, MethodKey};
use serde_json::Value;
use sha2::Digest;
use std::sync::Arc;

const GOLDEN: &str = "sae_model_a.json";

fn golden() -> Value {
    let g = load(GOLDEN);
    let spec = MODEL_A.1;
    let published = format!(
        "{:x}",
        sha2::Sha256::digest(
            Repo::Gpt2
                .safetensors(&random_weights(&spec), &spec.config())
                .unwrap()
        )
    );
    assert_eq!(
        g["model"]["model_safetensors_sha256"].as_str().unwrap(),
        published,
        "random-model no longer writes the model {GOLDEN} was made from"
    );
    g
}

/// A fixture SAE folder of tests/fixtures/sae.
pub fn fixture(name: &str) -> Sae {
    let dir = format!("{}/tests/fixtures/sae/{name}", env!("CARGO_MANIFEST_DIR"));
    Sae::load_dir(std::path::Path::new(&dir)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A fixture SAE read from its files with a `norm_scaling_factor` (what
/// the page passes for a release whose yaml gives one).
fn fixture_scaled(name: &str, factor: f64) -> Sae {
    let dir = format!("{}/tests/fixtures/sae/{name}", env!("CARGO_MANIFEST_DIR"));
    let cfg = std::fs::read_to_string(format!("{dir}/cfg.json")).unwrap();
    let w = std::fs::read(format!("{dir}/sae_weights.safetensors")).unwrap();
    Sae::from_files_scaled(name, &cfg, &w, Some(factor)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn close(ours: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(ours.len(), want.len(), "{what}: length");
    for (i, (&a, &b)) in ours.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= tol, "{what}[{i}]: ours {a}, SAELens {b}");
    }
}

async fn check<E: Engine>(e: &E) {
    let g = golden();
    // the BPE tables load once (each load parses GPT-2's whole vocabulary)
    let tok = tokenizer();
    let steps = g["ig_steps"].as_u64().unwrap() as usize;
    for s in g["saes"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        let sae = Arc::new(match s["norm_scaling_factor"].as_f64() {
            // expected_average_only_in, folded as SAE.from_pretrained folds it
            Some(f) => fixture_scaled(name, f),
            None => fixture(name),
        });
        assert_eq!(sae.hook_name, s["hook_name"].as_str().unwrap(), "{name}");
        assert_eq!(sae.architecture.name(), s["architecture"].as_str().unwrap());
        let ds = sae.d_sae;
        for (ci, c) in s["cases"].as_array().unwrap().iter().enumerate() {
            let what = format!("{name} case {ci} {}", e.backend());
            let opts = Options {
                components: vec![],
                saes: vec![sae.clone()],
                ig_steps: steps,
                ..Options::default()
            };
            let r = analyze_pair(e, "golden", tok, &prompts(c), &opts, &mut Quiet)
                .await
                .unwrap_or_else(|err| panic!("{what}: {err}"));
            let fd = c["first_diff"].as_u64().unwrap() as usize;
            assert_eq!(r.tokens.first_diff, fd, "{what}");
            let t = r.tokens.clean.len();
            // the hook's activation (TransformerLens's processed values) and the features
            let (clean, corrupt) = {
                let p = patchlab::attribution::Pair::from_prompts(tok, e.config(), &prompts(c))
                    .unwrap();
                runs(e, &p.clean, &p.corrupt, &p.metric).await
            };
            for (run, handle) in [("clean", &clean), ("corrupt", &corrupt)] {
                let x = sae_input(e, handle, &sae).await.unwrap();
                let want = flat(&c["x"][run]);
                let scale = max_abs(&want).max(1.0);
                close(&x, &want, 1e-4 * scale, &format!("{what} x {run}"));
                let f = sae_features(e, handle, &sae).await.unwrap();
                let want = flat(&c["f"][run]);
                let scale = max_abs(&want).max(1.0);
                close(&f, &want, 2e-4 * scale, &format!("{what} f {run}"));
                // the report's active features are these
                let active = &r.features[&sae.hook_name];
                let listed = if run == "clean" {
                    &active.clean
                } else {
                    &active.corrupt
                };
                assert_eq!(listed.dense(t, ds), f, "{what} active features {run}");
            }
            let (mc, mk) = (r.metric.clean, r.metric.corrupt);
            for d in Direction::ALL {
                let (mb, mo) = d.order(mc, mk);
                let gap = mb - mo;
                let scale = 1.0 + mb.abs().max(mo.abs());
                let w = format!("{what} {}", d.name());
                for by_pos in [false, true] {
                    let key = feature_key(&sae.hook_name, by_pos);
                    let shape = if by_pos { vec![t, ds] } else { vec![ds] };
                    let suffix = if by_pos { "by_pos" } else { "all" };
                    let ap = &r.results[&MethodKey::Ap][&d].features[&key];
                    assert_eq!(ap.shape, shape, "{w} {key}");
                    let want = flat(&c[format!("ap_{suffix}")][d.name()]);
                    let patched: Vec<f32> = ap.values.iter().map(|&a| mb + a * gap).collect();
                    close(&patched, &want, 1e-4 * scale, &format!("{w} AP {key}"));
                    let atp = &r.results[&MethodKey::Atp][&d].features[&key];
                    let want = flat(&c[format!("atp_{suffix}")][d.name()]);
                    let raw: Vec<f32> = atp.values.iter().map(|&a| a * gap).collect();
                    close(&raw, &want, 1e-4 * scale, &format!("{w} AtP {key}"));
                    let ig = &r.results[&MethodKey::Ig][&d].features[&key];
                    let want = flat(&c[format!("ig_{suffix}")][d.name()]);
                    let ig_scale = max_abs(&want).max(1e-3);
                    close(&ig.values, &want, 1e-4 * ig_scale, &format!("{w} IG {key}"));
                    // IG* is IG over the gap
                    let norm = &r.results[&MethodKey::IgNorm][&d].features[&key];
                    for (&n, &i) in norm.values.iter().zip(&ig.values) {
                        assert!((n - i / gap).abs() <= 1e-5 * (1.0 + (i / gap).abs()), "{w}");
                    }
                    // nothing is patched before the first differing token
                    if by_pos {
                        for m in [ap, atp, ig] {
                            assert!(m.values[..fd * ds].iter().all(|&v| v == 0.0), "{w}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn features_match_saelens() {
    block_on(check(&engine(&MODEL_A.1)));
}

#[test]
fn gpu_features_match_saelens() {
    let (_, gpu) = engines(&MODEL_A.1);
    block_on(check(&gpu));
}
