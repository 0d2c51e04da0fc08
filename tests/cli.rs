//! The `patchlab` command line, end to end: files in, reports and errors out.

mod common;

use common::*;
use patchlab::report::Report;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const CLEAN: &str = "When Mary and John went to the store, John gave a drink to";
const CORRUPT: &str = "When Mary and John went to the store, Mary gave a drink to";

fn patchlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patchlab"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run patchlab")
}

/// A small random model written once by `patchlab random-model`.
fn model() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempdir("cli-model");
        let out = patchlab(&[
            "random-model",
            "--layers",
            "2",
            "--heads",
            "4",
            "--d-model",
            "64",
            "--seed",
            "1",
            "--n-ctx",
            "32",
            "--out",
            d.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        d
    })
}

fn analyze(extra: &[&str]) -> Output {
    let m = model().to_str().unwrap().to_string();
    let mut args = vec![
        "analyze",
        "--model",
        &m,
        "--clean",
        CLEAN,
        "--corrupt",
        CORRUPT,
        "--correct",
        " Mary",
        "--incorrect",
        " John",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    patchlab(&args)
}

/// A failing run: exit code 1, one `error:` line saying `needle`, no panic.
fn fails_with(out: Output, needle: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    err
}

#[test]
fn random_model_is_bit_identical_for_a_seed() {
    let d = tempdir("cli-pinned");
    let out = patchlab(&[
        "random-model",
        "--layers",
        "2",
        "--heads",
        "4",
        "--d-model",
        "64",
        "--seed",
        "1",
        "--out",
        d.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    // pinned: the goldens in tests/golden were computed on exactly this file
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("51be8ebbfa9cd69b024b875dd85c91178fe1f017ac4ab80497c5a87a6807bc80"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "vocab.json",
        "merges.txt",
    ] {
        assert!(d.join(f).exists(), "{f}");
    }
}

#[test]
fn analyze_writes_the_report_to_stdout_and_npy_files() {
    let npy = tempdir("cli-npy");
    let out = analyze(&["--out", "-", "--npy", npy.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = Report::from_json(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(
        (
            r.schema,
            r.backend.as_str(),
            r.model.n_layers,
            r.model.n_heads
        ),
        (1, "cpu", 2, 4)
    );
    assert_eq!(r.tokens.first_diff, 10);
    assert_eq!(r.tokens.clean.len(), 15);
    for m in ["ap", "ig", "atp"] {
        for d in ["clean_to_corrupt", "corrupt_to_clean"] {
            let maps = &r.results[m][d];
            assert_eq!(maps.heads.as_ref().unwrap().len(), 2);
            assert_eq!(maps.neurons.as_ref().unwrap()[1].len(), 256);
        }
    }
    // the summary went to stderr, with the metric
    assert!(String::from_utf8_lossy(&out.stderr).contains("metric"));
    // .npy files hold the same numbers
    let bytes = std::fs::read(npy.join("ap_clean_to_corrupt_heads.npy")).unwrap();
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let vals: Vec<f32> = bytes[10 + hlen..]
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let expect: Vec<f32> = r.results["ap"]["clean_to_corrupt"]
        .heads
        .as_ref()
        .unwrap()
        .concat();
    assert_eq!(vals, expect);
    assert!(npy
        .join("ig_convergence_delta_corrupt_to_clean_neurons.npy")
        .exists());
}

#[test]
fn subsets_of_methods_directions_and_components() {
    let out = analyze(&[
        "--out",
        "-",
        "--methods",
        "ig",
        "--directions",
        "corrupt_to_clean",
        "--components",
        "heads",
        "--ig-steps",
        "8",
        "--ig-rule",
        "riemann_trapezoid",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = Report::from_json(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(r.results.keys().collect::<Vec<_>>(), vec!["ig"]);
    assert!(r.results["ig"]["corrupt_to_clean"].neurons.is_none());
    assert_eq!(r.settings.ig_steps, 8);
    assert_eq!(r.settings.ig_rule, "riemann_trapezoid");
}

#[test]
fn unequal_lengths_show_both_tokenizations() {
    let m = model().to_str().unwrap().to_string();
    let out = patchlab(&[
        "analyze",
        "--model",
        &m,
        "--clean",
        "When Mary went",
        "--corrupt",
        "When Mary and John went",
        "--correct",
        " Mary",
        "--incorrect",
        " John",
    ]);
    let err = fails_with(out, "same number of tokens");
    assert!(
        err.contains("[When][ Mary][ went]") && err.contains("[ and][ John]"),
        "{err}"
    );
}

#[test]
fn multi_token_answers_show_their_tokens() {
    let m = model().to_str().unwrap().to_string();
    let out = patchlab(&[
        "analyze",
        "--model",
        &m,
        "--clean",
        CLEAN,
        "--corrupt",
        CORRUPT,
        "--correct",
        " Maryanne Smith",
        "--incorrect",
        " John",
    ]);
    fails_with(out, "is 3 tokens");
    let out = patchlab(&[
        "analyze",
        "--model",
        &m,
        "--clean",
        CLEAN,
        "--corrupt",
        CORRUPT,
        "--correct",
        "Sacramento",
        "--incorrect",
        " John",
    ]);
    fails_with(out, "did you mean \" Sacramento\" with a leading space?");
}

#[test]
fn bad_inputs_get_clear_errors() {
    let m = model().to_str().unwrap().to_string();
    let long = "word ".repeat(40);
    let long2 = "text ".repeat(40);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--clean",
                &long,
                "--corrupt",
                &long2,
                "--correct",
                " a",
                "--incorrect",
                " b",
            ],
            "context holds 32",
        ),
        (
            vec![
                "--clean",
                "",
                "--corrupt",
                "",
                "--correct",
                " a",
                "--incorrect",
                " b",
                "--no-bos",
            ],
            "prompt is empty",
        ),
        (
            vec![
                "--clean",
                CLEAN,
                "--corrupt",
                CLEAN,
                "--correct",
                " Mary",
                "--incorrect",
                " John",
            ],
            "nothing to patch",
        ),
        (
            vec![
                "--clean",
                CLEAN,
                "--corrupt",
                CORRUPT,
                "--correct",
                " Mary",
                "--incorrect",
                " Mary",
            ],
            "same token",
        ),
        (
            vec![
                "--clean",
                CLEAN,
                "--corrupt",
                CORRUPT,
                "--correct",
                "",
                "--incorrect",
                " John",
            ],
            "answer is empty",
        ),
        (
            vec![
                "--clean",
                CLEAN,
                "--corrupt",
                CORRUPT,
                "--correct",
                " Mary",
                "--incorrect",
                " John",
                "--methods",
                "ap,shap",
            ],
            "unknown method \"shap\"",
        ),
        (
            vec![
                "--clean",
                CLEAN,
                "--corrupt",
                CORRUPT,
                "--correct",
                " Mary",
                "--incorrect",
                " John",
                "--ig-steps",
                "0",
            ],
            "integration steps",
        ),
        (
            vec![
                "--clean",
                CLEAN,
                "--corrupt",
                CORRUPT,
                "--correct",
                " Mary",
                "--incorrect",
                " John",
                "--percentile",
                "90",
            ],
            "percentile",
        ),
        (
            vec![
                "--clean",
                CLEAN,
                "--corrupt",
                CORRUPT,
                "--correct",
                " Mary",
                "--incorrect",
                " John",
                "--directions",
                "sideways",
            ],
            "unknown direction",
        ),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["analyze", "--model", &m];
        args.extend(extra);
        fails_with(patchlab(&args), needle);
    }
}

/// Copies the test model with one file replaced or removed.
fn broken_model(name: &str, file: &str, contents: Option<Vec<u8>>) -> PathBuf {
    let d = tempdir(name);
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(model().join(f), d.join(f)).unwrap();
    }
    match contents {
        Some(b) => std::fs::write(d.join(file), b).unwrap(),
        None => std::fs::remove_file(d.join(file)).unwrap(),
    }
    d
}

#[test]
fn broken_model_files_are_named_in_errors() {
    let st = std::fs::read(model().join("model.safetensors")).unwrap();
    let cfg = std::fs::read_to_string(model().join("config.json")).unwrap();
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            broken_model("no-st", "model.safetensors", None),
            "missing file",
        ),
        (
            broken_model(
                "trunc-st",
                "model.safetensors",
                Some(st[..st.len() / 2].to_vec()),
            ),
            "bad model.safetensors",
        ),
        (
            broken_model(
                "junk-st",
                "model.safetensors",
                Some(b"this is not a safetensors file".to_vec()),
            ),
            "bad model.safetensors",
        ),
        (broken_model("no-cfg", "config.json", None), "config.json"),
        (
            broken_model(
                "llama",
                "config.json",
                Some(cfg.replace("\"gpt2\"", "\"llama\"").into_bytes()),
            ),
            "llama",
        ),
        (
            broken_model(
                "shape",
                "config.json",
                Some(cfg.replace("\"n_embd\": 64", "\"n_embd\": 32").into_bytes()),
            ),
            "has shape [50257, 64], but config.json implies [50257, 32]",
        ),
        (
            broken_model(
                "layers",
                "config.json",
                Some(cfg.replace("\"n_layer\": 2", "\"n_layer\": 3").into_bytes()),
            ),
            "no tensor `h.2.ln_1.weight`",
        ),
        (
            broken_model(
                "tok",
                "tokenizer.json",
                Some(b"{\"model\": {\"type\": \"WordPiece\"}}".to_vec()),
            ),
            "BPE",
        ),
    ];
    for (dir, needle) in cases {
        let d = dir.to_str().unwrap().to_string();
        let out = patchlab(&[
            "analyze",
            "--model",
            &d,
            "--clean",
            "a",
            "--corrupt",
            "b",
            "--correct",
            " a",
            "--incorrect",
            " b",
        ]);
        fails_with(out, needle);
    }
    fails_with(
        patchlab(&["tokenize", "--model", "/nonexistent", "x"]),
        "missing file",
    );
}

#[test]
fn tokenize_shows_ids_and_texts() {
    let m = model().to_str().unwrap().to_string();
    let out = patchlab(&["tokenize", "--model", &m, "--json", CLEAN]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<u64> = v[0]["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    // NOTES.md's reference tokenization, after BOS
    assert_eq!(
        ids,
        vec![50256, 2215, 5335, 290, 1757, 1816, 284, 262, 3650, 11, 1757, 2921, 257, 4144, 284]
    );
    assert_eq!(v[0]["tokens"][2]["text"], " Mary");
    let _ = vocab_dir();
}

#[test]
fn gpu_backend_gives_the_cpu_numbers() {
    let cpu = analyze(&["--out", "-", "--components", "heads", "--ig-steps", "10"]);
    let gpu = analyze(&[
        "--out",
        "-",
        "--components",
        "heads",
        "--ig-steps",
        "10",
        "--backend",
        "gpu",
    ]);
    assert!(
        gpu.status.success(),
        "{}",
        String::from_utf8_lossy(&gpu.stderr)
    );
    let cpu = Report::from_json(&String::from_utf8(cpu.stdout).unwrap()).unwrap();
    let gpu = Report::from_json(&String::from_utf8(gpu.stdout).unwrap()).unwrap();
    assert_eq!(gpu.backend, "gpu");
    assert!((cpu.metric.clean - gpu.metric.clean).abs() < 1e-4);
    for m in ["ap", "ig", "atp"] {
        for d in ["clean_to_corrupt", "corrupt_to_clean"] {
            let a = cpu.results[m][d].heads.as_ref().unwrap().concat();
            let b = gpu.results[m][d].heads.as_ref().unwrap().concat();
            let scale = a.iter().fold(0f32, |s, x| s.max(x.abs())).max(1e-6);
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() <= 1e-3 * scale, "{m} {d}: cpu {x} gpu {y}");
            }
        }
    }
    fails_with(analyze(&["--backend", "tpu"]), "unknown backend \"tpu\"");
}
