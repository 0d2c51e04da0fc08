//! The report's JSON, byte for byte. The fixtures in tests/fixtures/reports
//! pin the serialisation that patchlab produced at commit 384bd8c, before the
//! report's keys were typed (how they were made is in
//! tests/fixtures/reports/README.md): a report written or read back now
//! must have exactly those bytes.
//!
//! The reports computed here come from the CPU backend, whose arithmetic is
//! deterministic for a given build and machine; the round trips and the
//! re-derived analyses use no engine at all.

use crate::common::golden::{load, MODEL_A, MODEL_B};
use crate::common::{fails_with, ok, patchlab, random_model, tempdir};
use patchlab::model::random::RandomSpec;
use patchlab::report::Report;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reports")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fixtures of the goldens' cases: (file name, golden file, case index).
fn golden_fixtures() -> Vec<(String, &'static str, usize)> {
    let mut out = vec![];
    for (golden, _) in [MODEL_A, MODEL_B] {
        let model = golden.trim_end_matches(".json");
        let n = load(golden)["cases"].as_array().unwrap().len();
        for i in 0..n {
            out.push((format!("{model}_{i}.json"), golden, i));
        }
    }
    assert_eq!(out.len(), 14, "the goldens have 7 cases each");
    out
}

/// The text with the one thing a rerun changes, the measured `timings_ms`,
/// left out.
fn without_timings(s: &str) -> String {
    let start = s.find("\"timings_ms\":{").expect("a report has timings_ms");
    let end = start + s[start..].find('}').expect("timings_ms is closed");
    format!("{}{}", &s[..start], &s[end + 1..])
}

/// Equal texts, or a failure that shows where they part.
fn same_bytes(ours: &str, want: &str, what: &str) {
    if ours == want {
        return;
    }
    let at = ours
        .bytes()
        .zip(want.bytes())
        .position(|(a, b)| a != b)
        .unwrap_or(ours.len().min(want.len()));
    let around = |s: &str| {
        let (mut from, mut to) = (at.saturating_sub(120), (at + 120).min(s.len()));
        while !s.is_char_boundary(from) {
            from -= 1;
        }
        while !s.is_char_boundary(to) {
            to += 1;
        }
        s[from..to].to_string()
    };
    panic!(
        "{what}: the bytes differ from byte {at} on (lengths {} and {})\nours: …{}…\nwant: …{}…",
        ours.len(),
        want.len(),
        around(ours),
        around(want)
    );
}

/// `patchlab analyze` of every golden case, on the `random-model` of its
/// golden, writes the fixture's bytes (its timings aside).
#[test]
fn analyze_writes_the_reports_it_wrote_before_the_typed_keys() {
    let root = tempdir("report-bytes");
    for (golden, spec) in [MODEL_A, MODEL_B] {
        let RandomSpec {
            n_layers,
            n_heads,
            d_model,
            n_ctx,
            seed,
        } = spec;
        // the report names the model by its directory
        let model = root.join(golden.trim_end_matches(".json"));
        let n_ctx = n_ctx.to_string();
        random_model(
            &model,
            (n_layers, n_heads, d_model, seed),
            &["--n-ctx", &n_ctx],
        );
        let g = load(golden);
        let (steps, p) = (g["ig_steps"].to_string(), g["percentile"].to_string());
        for (i, case) in g["cases"].as_array().unwrap().iter().enumerate() {
            let name = format!("{}_{i}.json", golden.trim_end_matches(".json"));
            let out = root.join(&name);
            let s = |k: &str| case[k].as_str().unwrap();
            let mut args = vec![
                "analyze",
                "--model",
                model.to_str().unwrap(),
                "--clean",
                s("clean"),
                "--corrupt",
                s("corrupt"),
                "--correct",
                s("correct"),
                "--incorrect",
                s("incorrect"),
                "--ig-steps",
                &steps,
                "--percentile",
                &p,
                "--quiet",
                "--out",
                out.to_str().unwrap(),
            ];
            if !case["bos"].as_bool().unwrap() {
                args.push("--no-bos");
            }
            ok(patchlab(&args));
            same_bytes(
                &without_timings(&read(&out)),
                &without_timings(&read(&fixtures().join(&name))),
                &name,
            );
        }
    }
}

/// Every fixture reads back and writes the same bytes again, the schema-1
/// upgrades included.
#[test]
fn reports_read_back_write_the_same_bytes() {
    let mut files: Vec<PathBuf> = golden_fixtures()
        .into_iter()
        .map(|(name, _, _)| fixtures().join(name))
        .collect();
    for i in 0..8 {
        files.push(fixtures().join(format!("schema1_upgraded/{i:04}.json")));
    }
    for f in files {
        let text = read(&f);
        let r = Report::from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        same_bytes(&r.to_json(), &text, &f.display().to_string());
    }
}

/// The analysis derived again from a fixture's own maps is the one it has.
#[test]
fn derived_analysis_is_the_one_written_before() {
    for (name, golden, _) in golden_fixtures() {
        let text = read(&fixtures().join(&name));
        let mut r = Report::from_json(&text).unwrap();
        patchlab::report::derive(&mut r, 10);
        same_bytes(&r.to_json(), &text, &format!("{name} ({golden})"));
    }
}

/// A schema-1 report is brought up to the current schema with the bytes the upgrade
/// gave before the typed keys.
#[test]
fn schema_1_reports_upgrade_to_the_same_bytes() {
    let pairs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/summary/pairs");
    for i in 0..8 {
        let old = read(&pairs.join(format!("{i:04}.json")));
        assert!(
            old.contains("\"schema\":1,"),
            "pair {i} is a schema-1 report"
        );
        let r = Report::from_json(&old).unwrap();
        let want = read(&fixtures().join(format!("schema1_upgraded/{i:04}.json")));
        same_bytes(&r.to_json(), &want, &format!("schema-1 pair {i}"));
    }
}

/// A schema-2 report (no site maps) and a schema-3 report (no SAE
/// features) read as they are: only the schema number changes when one is
/// written again.
#[test]
fn schema_2_and_3_reports_read_as_they_are() {
    for (name, _, _) in golden_fixtures() {
        let text = read(&fixtures().join(&name));
        for schema in [2, 3] {
            let old = text.replacen("\"schema\":4,", &format!("\"schema\":{schema},"), 1);
            assert_ne!(old, text, "{name} has the current schema");
            let r = Report::from_json(&old).unwrap();
            same_bytes(&r.to_json(), &text, &format!("{name} as schema {schema}"));
        }
    }
}

/// A key the report does not have is refused with its name, not skipped.
#[test]
fn unknown_report_keys_are_refused_by_name() {
    let text = read(&fixtures().join("model_a_0.json"));
    for (from, to, name) in [
        ("\"results\":{\"ap\":", "\"results\":{\"apx\":", "apx"),
        (
            "\"ig_convergence_delta\":{\"clean_to_corrupt\":",
            "\"ig_convergence_delta\":{\"clean2corrupt\":",
            "clean2corrupt",
        ),
        ("\"overlap\":{\"heads\":", "\"overlap\":{\"head\":", "head"),
    ] {
        assert_eq!(text.matches(from).count(), 1, "{from}");
        let e = Report::from_json(&text.replacen(from, to, 1))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not a patchlab report") && e.contains(&format!("unknown variant `{name}`")),
            "{e}"
        );
    }
}

/// `patchlab slim`: the maps it keeps, every score within its rounding of
/// the full report's, marked with `precision`; idempotent; bad lists and
/// digit counts refused. The full report stays unmarked.
#[test]
fn slim_reports_keep_what_they_say_rounded_and_marked() {
    let full_path = fixtures().join("model_b_0.json");
    let full = Report::from_json(&read(&full_path)).unwrap();
    assert!(full.precision.is_none() && !full.to_json().contains("\"precision\""));
    let dir = tempdir("slim");
    let out = dir.join("slim.json");
    let (fp, op) = (full_path.to_str().unwrap(), out.to_str().unwrap());
    let said = ok(patchlab(&[
        "slim", fp, "--keep", "heads", "--digits", "4", "--out", op,
    ]));
    assert!(said.contains("bytes"), "{said}");
    let text = read(&out);
    let slim = Report::from_json(&text).unwrap();
    let p = slim.precision.as_ref().expect("a slim report says so");
    assert_eq!(
        (p.significant_digits, p.kept.clone()),
        (4, vec!["heads".to_string()])
    );
    assert!(
        text.len() * 2 < full.to_json().len(),
        "{} vs {}",
        text.len(),
        full.to_json().len()
    );
    let mut checked = 0;
    for (m, per_dir) in &full.results {
        for (d, maps) in per_dir {
            let got = &slim.results[m][d];
            assert!(got.neurons.is_none(), "{m:?} {d:?} kept neurons");
            let (a, b) = (got.heads.as_ref().unwrap(), maps.heads.as_ref().unwrap());
            for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
                assert!(
                    (x - y).abs() <= 5e-4 * y.abs() + 1e-30 || (x.is_nan() && y.is_nan()),
                    "{m:?} {d:?}: {x} is not {y} to 4 digits"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0);
    assert!(!slim
        .analysis
        .correlations
        .contains_key(&patchlab::engine::Component::Neurons));
    assert_eq!(slim.tokens, full.tokens, "token ids are not rounded");
    // slimming a slim report again changes nothing
    let again = dir.join("again.json");
    ok(patchlab(&[
        "slim",
        op,
        "--keep",
        "heads",
        "--out",
        again.to_str().unwrap(),
    ]));
    assert_eq!(read(&again), text);
    fails_with(
        patchlab(&["slim", fp, "--keep", "headz", "--out", op]),
        "headz",
    );
    fails_with(
        patchlab(&["slim", fp, "--keep", "patterns", "--out", op]),
        "at least one map",
    );
    fails_with(
        patchlab(&["slim", fp, "--digits", "0", "--out", op]),
        "significant digits",
    );
}
