//! The `patchlab` command line, end to end: files in, reports and errors out.

use crate::common::*;
use patchlab::report::{Direction, MethodKey, PatchSite};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

const CLEAN: &str = "When Mary and John went to the store, John gave a drink to";
const CORRUPT: &str = "When Mary and John went to the store, Mary gave a drink to";

/// A small random model written once by `patchlab random-model`.
fn model() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempdir("cli-model");
        random_model(&d, (2, 4, 64, 1), &["--n-ctx", "32"]);
        d
    })
}

/// The IOI pair's flags.
const PAIR: [&str; 8] = [
    "--clean",
    CLEAN,
    "--corrupt",
    CORRUPT,
    "--correct",
    " Mary",
    "--incorrect",
    " John",
];

fn analyze(extra: &[&str]) -> Output {
    let m = model().to_str().unwrap().to_string();
    let mut args = vec!["analyze", "--model", &m];
    args.extend(PAIR);
    args.push("--quiet");
    args.extend_from_slice(extra);
    patchlab(&args)
}

#[test]
fn random_model_is_bit_identical_for_a_seed() {
    let d = tempdir("cli-pinned");
    let out = random_model(&d, (2, 4, 64, 1), &[]);
    // pinned: the file in the published layout (mask buffers included) …
    assert!(
        out.contains("8932f17ed4150222924bc3c2c5ec3de22cf983c001ca605b7ba6c6843d73b85d"),
        "{out}"
    );
    // … whose weights are exactly those the goldens in tests/golden were
    // computed on (that file had the weights alone, in the plain layout)
    let weights = patchlab::model::Model::from_dir(&d).unwrap().weights;
    use sha2::Digest;
    assert_eq!(
        format!(
            "{:x}",
            sha2::Sha256::digest(weights.to_safetensors().unwrap())
        ),
        "51be8ebbfa9cd69b024b875dd85c91178fe1f017ac4ab80497c5a87a6807bc80"
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
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let r = report(out);
    assert_eq!(
        (
            r.schema,
            r.backend.as_str(),
            r.model.n_layers,
            r.model.n_heads
        ),
        (4, "cpu", 2, 4)
    );
    assert_eq!(r.tokens.first_diff, 10);
    assert_eq!(r.tokens.clean.len(), 15);
    for m in [MethodKey::Ap, MethodKey::Ig, MethodKey::Atp] {
        for d in Direction::ALL {
            let maps = &r.results[&m][&d];
            assert_eq!(maps.heads.as_ref().unwrap().len(), 2);
            assert_eq!(maps.neurons.as_ref().unwrap()[1].len(), 256);
        }
    }
    // the summary went to stderr, with the metric
    assert!(stderr.contains("metric"));
    // .npy files hold the same numbers
    let bytes = std::fs::read(npy.join("ap_clean_to_corrupt_heads.npy")).unwrap();
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let vals: Vec<f32> = bytes[10 + hlen..]
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let expect: Vec<f32> = r.results[&MethodKey::Ap][&Direction::CleanToCorrupt]
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
    let r = report(out);
    // IG and, derived from it, IG* (gap-normalised IG)
    assert_eq!(
        r.results.keys().collect::<Vec<_>>(),
        vec![&MethodKey::Ig, &MethodKey::IgNorm]
    );
    assert!(r.results[&MethodKey::Ig][&Direction::CorruptToClean]
        .neurons
        .is_none());
    assert_eq!(r.settings.ig_steps, 8);
    assert_eq!(r.settings.ig_rule, "riemann_trapezoid");
}

/// `--sites` takes site and bundle names: the report holds each map in its
/// shape, `--npy` writes it with that shape, and a wrong name or `--sites`
/// with `--components` is refused with what to write instead.
#[test]
fn sites_give_maps_in_their_shapes_and_npy_files() {
    let npy = tempdir("cli-sites-npy");
    let out = analyze(&[
        "--sites",
        "block_every,q_by_pos,pattern_dest_src,dla",
        "--methods",
        "ap,atp",
        "--out",
        "-",
        "--npy",
        npy.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let r = report(out);
    let t = r.tokens.clean.len();
    let maps = &r.results[&MethodKey::Ap][&Direction::CleanToCorrupt];
    assert!(maps.heads.is_none() && maps.neurons.is_none());
    let shape = |s: PatchSite| maps.sites[&s].shape.clone();
    assert_eq!(shape(PatchSite::ResidPre), vec![2, t]);
    assert_eq!(shape(PatchSite::MlpOut), vec![2, t]);
    assert_eq!(shape(PatchSite::QByPos), vec![2, t, 4]);
    assert_eq!(shape(PatchSite::PatternDestSrc), vec![2, 4, t, t]);
    assert!(r.dla.is_some() && r.patterns.is_some());
    assert!(
        stderr.contains("top ap  clean_to_corrupt resid_pre"),
        "{stderr}"
    );
    let bytes = std::fs::read(npy.join("atp_corrupt_to_clean_pattern_dest_src.npy")).unwrap();
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8_lossy(&bytes[10..10 + hlen]).to_string();
    assert!(
        header.contains(&format!("'shape': (2, 4, {t}, {t})")),
        "{header}"
    );
    let e = fails_with(analyze(&["--sites", "resid"]), "unknown site \"resid\"");
    assert!(e.contains("block_every"), "{e}");
    // a usage error (clap's exit code 2) naming both flags
    let out = analyze(&["--sites", "resid_pre", "--components", "heads"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("'--sites <SITES>' cannot be used with '--components"),
        "{err}"
    );
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
            [&PAIR[..], &["--methods", "ap,shap"]].concat(),
            "unknown method \"shap\"",
        ),
        (
            [&PAIR[..], &["--ig-steps", "0"]].concat(),
            "integration steps",
        ),
        ([&PAIR[..], &["--percentile", "90"]].concat(), "percentile"),
        (
            [&PAIR[..], &["--directions", "sideways"]].concat(),
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
    // GPT-2's tokenization of the IOI pair of docs/cli.md's example, after BOS
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
    let (cpu, gpu) = (report(cpu), report(gpu));
    assert_eq!(gpu.backend, "gpu");
    assert!((cpu.metric.clean - gpu.metric.clean).abs() < 1e-4);
    for m in [MethodKey::Ap, MethodKey::Ig, MethodKey::Atp] {
        for d in Direction::ALL {
            let a = cpu.results[&m][&d].heads.as_ref().unwrap().concat();
            let b = gpu.results[&m][&d].heads.as_ref().unwrap().concat();
            let scale = a.iter().fold(0f32, |s, x| s.max(x.abs())).max(1e-6);
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() <= 1e-3 * scale, "{m} {d}: cpu {x} gpu {y}");
            }
        }
    }
    fails_with(analyze(&["--backend", "tpu"]), "unknown backend \"tpu\"");
}

// ---- batch / merge ----

fn batch(dir: &Path, extra: &[&str]) -> Output {
    let m = model().to_str().unwrap().to_string();
    let d = dir.to_str().unwrap().to_string();
    let mut args = vec![
        "batch",
        "--model",
        &m,
        "--methods",
        "ap,ig",
        "--ig-steps",
        "6",
        "--out-dir",
        &d,
        "--quiet",
    ];
    args.extend_from_slice(extra);
    patchlab(&args)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Equal JSON up to float noise (1e-5 relative): the same computation in two processes.
fn same_json(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + x.abs().max(y.abs())),
                "{at}: {x} vs {y}"
            );
        }
        (Array(x), Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}: lengths");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                same_json(x, y, &format!("{at}[{i}]"));
            }
        }
        (Object(x), Object(y)) => {
            assert_eq!(
                x.keys().collect::<Vec<_>>(),
                y.keys().collect::<Vec<_>>(),
                "{at}: keys"
            );
            for (k, v) in x {
                same_json(v, &y[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

#[test]
fn batch_reports_equal_single_pair_runs_and_shards_merge_to_the_same_summary() {
    let all = tempdir("cli-batch-all");
    let out = ok(batch(&all, &["--task", "ioi", "--n", "5", "--seed", "3"]));
    assert!(out.contains("5 computed"), "{out}");
    assert!(out.contains("pairs/s"), "{out}");
    assert!(out.contains("IG* vs AP, clean→corrupt"), "{out}");

    // pair 2 of the batch is exactly `analyze` of its prompts
    let r2 = json(&all.join("pairs/0002.json"));
    let p = &r2["prompts"];
    let m = model().to_str().unwrap().to_string();
    let single = ok(patchlab(&[
        "analyze",
        "--model",
        &m,
        "--clean",
        p["clean"].as_str().unwrap(),
        "--corrupt",
        p["corrupt"].as_str().unwrap(),
        "--correct",
        p["correct"].as_str().unwrap(),
        "--incorrect",
        p["incorrect"].as_str().unwrap(),
        "--methods",
        "ap,ig",
        "--ig-steps",
        "6",
        "--quiet",
        "--out",
        "-",
    ]));
    let single: serde_json::Value = serde_json::from_str(&single).unwrap();
    for key in [
        "prompts",
        "tokens",
        "metric",
        "settings",
        "results",
        "ig_convergence_delta",
        "analysis",
    ] {
        same_json(&r2[key], &single[key], key);
    }

    // two shards, each missing the other's pairs, merge into the same summary
    let (s0, s1, merged) = (
        tempdir("cli-batch-s0"),
        tempdir("cli-batch-s1"),
        tempdir("cli-batch-m"),
    );
    let o0 = ok(batch(
        &s0,
        &["--task", "ioi", "--n", "5", "--seed", "3", "--shard", "0/2"],
    ));
    ok(batch(
        &s1,
        &["--task", "ioi", "--n", "5", "--seed", "3", "--shard", "1/2"],
    ));
    assert!(o0.contains("3 of 5 pairs have no report yet"), "{o0}");
    assert_eq!(
        json(&s0.join("summary.json"))["missing"],
        serde_json::json!([2, 3, 4])
    );
    let mo = ok(patchlab(&[
        "merge",
        s0.to_str().unwrap(),
        s1.to_str().unwrap(),
        "--out-dir",
        merged.to_str().unwrap(),
    ]));
    assert!(mo.contains("merged 5 pairs"), "{mo}");
    let (a, b) = (
        json(&all.join("summary.json")),
        json(&merged.join("summary.json")),
    );
    for key in [
        "dataset",
        "n_pairs",
        "missing",
        "pairs",
        "metric",
        "correlations",
        "overlap",
    ] {
        same_json(&a[key], &b[key], key);
    }

    // a second run keeps the finished reports
    let again = ok(batch(&all, &["--task", "ioi", "--n", "5", "--seed", "3"]));
    assert!(again.contains("0 computed, 5 kept"), "{again}");
    // reports made with other settings (here the IG rule) are not reused
    let other_rule = ok(batch(
        &all,
        &[
            "--task",
            "ioi",
            "--n",
            "5",
            "--seed",
            "3",
            "--ig-rule",
            "riemann_middle",
        ],
    ));
    assert!(other_rule.contains("5 computed, 0 kept"), "{other_rule}");

    // shards of different datasets are not merged
    let other = tempdir("cli-batch-other");
    ok(batch(&other, &["--task", "ioi", "--n", "2", "--seed", "4"]));
    let e = patchlab(&[
        "merge",
        s0.to_str().unwrap(),
        other.to_str().unwrap(),
        "--out-dir",
        merged.to_str().unwrap(),
    ]);
    fails_with(e, "merge shards of one dataset only");
}

#[test]
fn batch_on_the_gpu_in_groups_equals_one_pair_at_a_time() {
    let (one, grouped) = (tempdir("cli-batch-g1"), tempdir("cli-batch-g8"));
    let task = [
        "--task",
        "ioi",
        "--n",
        "8",
        "--seed",
        "5",
        "--backend",
        "gpu",
    ];
    let o1 = ok(batch(&one, &[&task[..], &["--group", "1"]].concat()));
    assert!(o1.contains("groups of up to 1 pairs"), "{o1}");
    let o8 = ok(batch(&grouped, &[&task[..], &["--group", "8"]].concat()));
    assert!(o8.contains("groups of up to 8 pairs"), "{o8}");
    // fewer distinct (length, first difference) than pairs: some groups share passes
    let keys: std::collections::BTreeSet<(usize, u64)> = (0..8)
        .map(|i| {
            let t = &json(&one.join(format!("pairs/{i:04}.json")))["tokens"];
            (
                t["clean"].as_array().unwrap().len(),
                t["first_diff"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(keys.len() < 8, "groups {keys:?}");
    let stderr_says = |dir: &Path| {
        let (m, d) = (model(), dir.to_str().unwrap().to_string());
        let head = ["batch", "--model", m.to_str().unwrap()];
        let tail = ["--methods", "ap", "--components", "heads", "--out-dir", &d];
        let o = patchlab(&[&head[..], &task[..], &tail[..]].concat());
        let out = ok(o.clone());
        (String::from_utf8_lossy(&o.stderr).to_string(), out)
    };
    let (err, out) = stderr_says(&tempdir("cli-batch-g-default"));
    assert!(
        err.contains(&format!("8 pairs to compute in {} group(s)", keys.len())),
        "{err}"
    );
    assert!(out.contains("kernel dispatches"), "{out}");
    for i in 0..8 {
        let path = format!("pairs/{i:04}.json");
        let (a, b) = (json(&one.join(&path)), json(&grouped.join(&path)));
        for key in [
            "prompts",
            "tokens",
            "metric",
            "results",
            "ig_convergence_delta",
        ] {
            same_json(&a[key], &b[key], &format!("pair {i} {key}"));
        }
    }
    fails_with(
        batch(&one, &[&task[..], &["--group", "0"]].concat()),
        "--group must be at least 1",
    );
}

#[test]
fn batch_file_rows_that_are_not_pairs_are_listed_and_skipped_only_on_request() {
    let dir = tempdir("cli-batch-file");
    let csv = dir.join("pairs.csv");
    std::fs::write(
        &csv,
        format!(
            "clean,corrupt,correct,incorrect\n\"{CLEAN}\",\"{CORRUPT}\",\" Mary\",\" John\"\n\"{CLEAN}\",\"When Mary and John went to the store, Johnathan gave a drink to\",\" Mary\",\" John\"\n"
        ),
    )
    .unwrap();
    let out_dir = dir.join("out");
    let f = csv.to_str().unwrap();
    let e = fails_with(batch(&out_dir, &["--file", f]), "line 3");
    assert!(e.contains("--skip-bad"), "{e}");
    let out = ok(batch(&out_dir, &["--file", f, "--skip-bad"]));
    assert!(out.contains("1 pairs"), "{out}");
    assert_eq!(
        json(&out_dir.join("summary.json"))["dataset"]["source"],
        "file:pairs.csv"
    );
    fails_with(batch(&out_dir, &["--task", "nope"]), "ioi");
    fails_with(
        batch(&out_dir, &["--task", "ioi", "--n", "2", "--shard", "2/2"]),
        "--shard",
    );
}

/// `batch --sites`: summary.json averages each site map's cells over the
/// pairs of one template; the pair of another template is named.
#[test]
fn batch_site_maps_average_aligned_pairs_and_name_the_others() {
    let dir = tempdir("cli-batch-sites");
    let csv = dir.join("pairs.csv");
    std::fs::write(
        &csv,
        format!(
            "clean,corrupt,correct,incorrect\n\"{CLEAN}\",\"{CORRUPT}\",\" Mary\",\" John\"\n\"Then John gave it to\",\"Then Mary gave it to\",\" Mary\",\" John\"\n\"When Mary and John went to the store, John gave a book to\",\"When Mary and John went to the store, Mary gave a book to\",\" Mary\",\" John\"\n"
        ),
    )
    .unwrap();
    let out_dir = dir.join("out");
    let f = csv.to_str().unwrap();
    let out = ok(batch(&out_dir, &["--file", f, "--sites", "resid_pre,q"]));
    assert!(
        out.contains("sites   2 pairs of 15 tokens (first difference at 10)"),
        "{out}"
    );
    assert!(
        out.contains("left out of the maps by position (positions would not line up): 1"),
        "{out}"
    );
    let s = json(&out_dir.join("summary.json"));
    assert_eq!(s["site_alignment"]["not_aligned"], serde_json::json!([1]));
    let st = &s["site_maps"]["ap"]["clean_to_corrupt"];
    assert_eq!(st["resid_pre"]["n"], 2);
    assert_eq!(st["q"]["n"], 3);
    assert_eq!(
        st["resid_pre"]["mean"].as_array().unwrap()[0]
            .as_array()
            .unwrap()
            .len(),
        15
    );
}

#[test]
fn batch_names_a_pair_the_model_cannot_take_runs_the_others_and_fails_at_the_end() {
    let dir = tempdir("cli-batch-bad-pair");
    let csv = dir.join("pairs.csv");
    // the middle row is a valid pair for the tokenizer, but longer than the
    // model's 32-token context: only the model refuses it
    let (long_clean, long_corrupt) = (CLEAN.repeat(3), CORRUPT.repeat(3));
    std::fs::write(
        &csv,
        format!(
            "clean,corrupt,correct,incorrect\n\"{CLEAN}\",\"{CORRUPT}\",\" Mary\",\" John\"\n\"{long_clean}\",\"{long_corrupt}\",\" Mary\",\" John\"\n\"{CORRUPT}\",\"{CLEAN}\",\" John\",\" Mary\"\n"
        ),
    )
    .unwrap();
    let out_dir = dir.join("out");
    let o = batch(&out_dir, &["--file", csv.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("pair 1: the clean prompt: "), "{err}");
    assert!(err.contains("context holds 32"), "{err}");
    assert!(
        err.contains("error: 1 of 3 pairs could not be analysed (pair 1,"),
        "{err}"
    );
    // the other pairs' reports and the summary are written
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        out.contains("2 computed, 0 kept from an earlier run, 1 bad"),
        "{out}"
    );
    assert!(out_dir.join("pairs/0000.json").exists());
    assert!(!out_dir.join("pairs/0001.json").exists());
    assert!(out_dir.join("pairs/0002.json").exists());
    let summary = json(&out_dir.join("summary.json"));
    assert_eq!(summary["n_pairs"], 2);
    assert_eq!(summary["missing"], serde_json::json!([1]));
}

#[test]
fn ablate_reports_the_metric_change_per_pair_and_on_average() {
    let dir = tempdir("cli-ablate");
    let out = ok(batch(
        &dir,
        &[
            "--task",
            "ioi",
            "--n",
            "3",
            "--ablate",
            "and:both",
            "--ablate",
            "h1.2,n0.5",
        ],
    ));
    assert!(out.contains("ablate and:both"), "{out}");
    let a = json(&dir.join("ablation.json"));
    assert_eq!(a["kind"], "patchlab-ablation");
    let fixed = &a["sets"][1];
    assert_eq!(fixed["set"], "h1.2,n0.5");
    assert_eq!(fixed["pairs"].as_array().unwrap().len(), 3);
    for p in fixed["pairs"].as_array().unwrap() {
        assert_eq!(
            (p["heads"].as_u64(), p["neurons"].as_u64()),
            (Some(1), Some(1))
        );
        let (c, ab, ch) = (
            p["metric_clean"].as_f64().unwrap(),
            p["metric_ablated"].as_f64().unwrap(),
            p["change"].as_f64().unwrap(),
        );
        assert!((ab - c - ch).abs() < 1e-5);
    }
    // the standalone command gives the same numbers from the reports
    let m = model().to_str().unwrap().to_string();
    ok(patchlab(&[
        "ablate",
        dir.to_str().unwrap(),
        "--model",
        &m,
        "--set",
        "h1.2,n0.5",
        "--quiet",
    ]));
    let again = json(&dir.join("ablation.json"));
    same_json(&again["sets"][0], fixed, "ablate");
    for (set, why) in [("xor:ig", "unknown latent set"), ("h9.0", "does not exist")] {
        let args = ["ablate", dir.to_str().unwrap(), "--model", &m, "--set", set];
        fails_with(patchlab(&args), why);
    }
}

/// `patchlab ablate` and the app's `Session::ablate_dataset` (the page's
/// Dataset tab) parse set specs in one place: a spec with surrounding spaces
/// gets the same label, and the same numbers, from both.
#[test]
fn ablate_labels_and_scores_a_set_as_the_app_does() {
    use patchlab::app::{Backend, Engines, Session};
    let dir = tempdir("cli-ablate-app");
    ok(batch(&dir, &["--task", "ioi", "--n", "2"]));
    let m = model().to_str().unwrap().to_string();
    let spec = "  h1.2, n0.5 ";
    let d = dir.to_str().unwrap();
    ok(patchlab(&[
        "ablate", d, "--model", &m, "--set", spec, "--quiet",
    ]));
    let cli = json(&dir.join("ablation.json"));
    assert_eq!(cli["sets"][0]["set"], "h1.2, n0.5");

    let model = patchlab::model::Model::from_dir(model()).unwrap();
    let session = Session {
        name: model.name,
        tokenizer: model.tokenizer,
        engines: Engines::load(model.config, model.weights, false).unwrap(),
        saes: Default::default(),
    };
    let reports: Vec<(usize, patchlab::report::Report)> = (0..2)
        .map(|i| {
            let text = std::fs::read_to_string(dir.join(format!("pairs/{i:04}.json"))).unwrap();
            (i, patchlab::report::Report::from_json(&text).unwrap())
        })
        .collect();
    let app = pollster::block_on(session.ablate_dataset(
        &reports,
        &[spec.to_string()],
        Backend::Cpu,
        &mut patchlab::attribution::Quiet,
    ))
    .unwrap();
    same_json(&cli, &serde_json::to_value(&app).unwrap(), "ablation");
}

#[test]
fn dataset_prints_a_task_as_jsonl_or_csv() {
    let m = model().to_str().unwrap().to_string();
    let out = ok(patchlab(&[
        "dataset", "--model", &m, "--task", "capitals", "--n", "3", "--format", "jsonl",
    ]));
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert!(r["correct"].as_str().unwrap().starts_with(' '), "{r}");
        assert_ne!(r["clean"], r["corrupt"]);
    }
    let csv = ok(patchlab(&[
        "dataset", "--model", &m, "--task", "capitals", "--n", "3",
    ]));
    assert!(csv.starts_with("clean,corrupt,correct,incorrect"), "{csv}");
    fails_with(
        patchlab(&["dataset", "--model", &m, "--task", "ioi", "--format", "xml"]),
        "csv or jsonl",
    );
}

fn circuit(out: &Path, extra: &[&str]) -> Output {
    let m = model().to_str().unwrap().to_string();
    let o = out.to_str().unwrap().to_string();
    let mut args = vec!["circuit", "--model", &m, "--out", &o, "--quiet"];
    args.extend_from_slice(extra);
    patchlab(&args)
}

#[test]
fn circuit_writes_the_report_the_reference_graph_file_and_the_curve() {
    use patchlab::model::graph::GraphLayout;
    use patchlab::report::circuit::{read_reference_graph_json, CircuitReport, EdgeMethod};
    let dir = tempdir("cli-circuit");
    let mut args = PAIR.to_vec();
    args.extend([
        "--method",
        "eap-ig",
        "--select",
        "topn",
        "--edges",
        "40",
        "--exact",
        "--curve-points",
        "5",
    ]);
    let stdout = ok(circuit(&dir, &args));
    assert!(stdout.contains("circuit: eap-ig topn n=40"), "{stdout}");
    assert!(stdout.contains("vs exact: eap-ig"), "{stdout}");
    let r = CircuitReport::from_json(&std::fs::read_to_string(dir.join("circuit.json")).unwrap())
        .unwrap();
    assert_eq!(r.graph.n_edges, 110);
    assert_eq!(r.edges.len(), 110);
    assert_eq!(
        r.scores.keys().copied().collect::<Vec<_>>(),
        vec![EdgeMethod::Eap, EdgeMethod::EapIg, EdgeMethod::Exact]
    );
    assert!(r.circuit.edges.len() <= 40 && !r.circuit.edges.is_empty());
    assert_eq!(r.curves[&EdgeMethod::Eap].len(), 5);
    assert_eq!(r.curves[&EdgeMethod::Eap].last().unwrap().n, 110);
    // every edge in: the clean run
    let all = r.curves[&EdgeMethod::Exact].last().unwrap();
    assert!((all.faithfulness - 1.0).abs() < 1e-4, "{all:?}");
    // the graph file reads back as the reference's layout, with the circuit's edges in it
    let layout = GraphLayout {
        n_layers: 2,
        n_heads: 4,
    };
    let text = std::fs::read_to_string(dir.join("graph.json")).unwrap();
    let (scores, in_graph) = read_reference_graph_json(&layout, 64, &text).unwrap();
    assert_eq!(scores, r.scores[&EdgeMethod::EapIg]);
    let picked: Vec<usize> = (0..110).filter(|&i| in_graph[i]).collect();
    assert_eq!(picked, r.circuit.edges);
    let csv = std::fs::read_to_string(dir.join("faithfulness.csv")).unwrap();
    assert!(
        csv.starts_with("method,n,edges,nodes,metric,faithfulness\neap,10,"),
        "{csv}"
    );
    // a graph file for another model is refused with both shapes
    let other = GraphLayout {
        n_layers: 3,
        n_heads: 4,
    };
    let e = read_reference_graph_json(&other, 64, &text)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("another model: 2 layers, 4 heads, d_model 64; the loaded model has 3 layers"),
        "{e}"
    );
}

#[test]
fn circuit_runs_a_dataset_and_refuses_bad_requests() {
    let dir = tempdir("cli-circuit-bad");
    let pairs = dir.join("pairs.csv");
    std::fs::write(
        &pairs,
        "clean,corrupt,correct,incorrect\n\
         Alice went to the park. Then Alice,Bob went to the park. Then Alice, went, was\n\
         Mary went to the shop. Then Mary,John went to the shop. Then Mary, went, was\n",
    )
    .unwrap();
    let p = pairs.to_str().unwrap();
    let out = ok(circuit(
        &dir.join("ds"),
        &[
            "--pairs",
            p,
            "--no-bos",
            "--edges",
            "20",
            "--curve-points",
            "0",
        ],
    ));
    assert!(out.contains("2 pairs (means)"), "{out}");
    let mut big = PAIR.to_vec();
    big.extend(["--edges", "111"]);
    fails_with(
        circuit(&dir.join("x"), &big),
        "a circuit of 111 edges was asked for, but this model's graph has only 110 edges",
    );
    let mut steps = PAIR.to_vec();
    steps.extend(["--steps", "0"]);
    fails_with(circuit(&dir.join("x"), &steps), "at least 1 step");
    let mut method = PAIR.to_vec();
    method.extend(["--method", "magic"]);
    fails_with(
        circuit(&dir.join("x"), &method),
        "unknown edge method \"magic\"",
    );
    std::fs::write(
        &pairs,
        "clean,corrupt,correct,incorrect\n\
         Alice went to the park. Then Alice,Bob went to the park. Then Alice, went, was\n\
         Alice went to the big park. Then Alice,Bob went to the big park. Then Alice, went, was\n",
    )
    .unwrap();
    fails_with(
        circuit(&dir.join("x"), &["--pairs", p, "--no-bos"]),
        "the pairs of one circuit must have the same number of tokens: pair 1 has 8 and pair 2 has 9",
    );
}
