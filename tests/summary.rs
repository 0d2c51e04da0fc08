//! The dataset summary against numpy: tests/golden/summary/numpy.json was
//! computed by tests/reference/summary_numpy.py from the score maps of the
//! committed per-pair reports (regenerate with
//! tests/reference/regenerate_summary.sh); patchlab's summary of the same
//! reports must give the same per-pair values and statistics.

use patchlab::report::summary::{summarize, DatasetInfo, Stat, Summary};
use patchlab::report::{MethodKey, Report};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/summary")
}

fn reports() -> Vec<(usize, Report)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(golden_dir().join("pairs")).unwrap() {
        let p = e.unwrap().path();
        let index: usize = p.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let r = Report::from_json(&std::fs::read_to_string(&p).unwrap()).unwrap();
        out.push((index, r));
    }
    // shuffled on purpose: the summary sorts by dataset index
    out.reverse();
    out
}

fn summary() -> Summary {
    let info = DatasetInfo {
        source: "task:ioi".into(),
        seed: Some(0),
        total: 8,
    };
    summarize(info, &reports(), false).unwrap()
}

fn close(a: Option<f64>, b: &Value, what: &str) {
    match (a, b.as_f64()) {
        (None, None) => {}
        (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-12, "{what}: patchlab {x} numpy {y}"),
        _ => panic!("{what}: patchlab {a:?}, numpy {b}"),
    }
}

fn check_stat(s: &Stat, n: &Value, what: &str) {
    assert_eq!(s.n as u64, n["n"].as_u64().unwrap(), "{what}: n");
    let per = n["per_pair"].as_array().unwrap();
    assert_eq!(s.per_pair.len(), per.len(), "{what}: pairs");
    for (i, (a, b)) in s.per_pair.iter().zip(per).enumerate() {
        close(*a, b, &format!("{what} pair {i}"));
    }
    for f in ["mean", "std", "mean_abs", "min", "median", "max"] {
        let v = match f {
            "mean" => s.mean,
            "std" => s.std,
            "mean_abs" => s.mean_abs,
            "min" => s.min,
            "median" => s.median,
            _ => s.max,
        };
        close(v, &n[f], &format!("{what} {f}"));
    }
}

fn check_section(ours: &BTreeMap<String, BTreeMap<String, Stat>>, numpy: &Value, name: &str) {
    let numpy = numpy[name].as_object().unwrap();
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        numpy.keys().collect::<Vec<_>>(),
        "{name}: component kinds"
    );
    for (c, stats) in ours {
        let n = numpy[c].as_object().unwrap();
        assert_eq!(
            stats.keys().collect::<Vec<_>>(),
            n.keys().collect::<Vec<_>>(),
            "{name}.{c}: keys"
        );
        for (k, s) in stats {
            check_stat(s, &n[k], &format!("{name}.{c}.{k}"));
        }
    }
}

#[test]
fn summary_matches_numpy_on_the_committed_reports() {
    let numpy: Value =
        serde_json::from_str(&std::fs::read_to_string(golden_dir().join("numpy.json")).unwrap())
            .unwrap();
    let s = summary();
    assert_eq!(s.n_pairs, 8);
    assert!(s.missing.is_empty());
    assert_eq!(
        s.pairs.iter().map(|p| p.index).collect::<Vec<_>>(),
        (0..8).collect::<Vec<_>>()
    );
    check_section(&s.correlations, &numpy, "correlations");
    check_section(&s.correlations_raw, &numpy, "correlations_raw");
    check_section(&s.overlap, &numpy, "overlap");
    assert_eq!(
        serde_json::to_value(&s.excluded).unwrap(),
        numpy["excluded"],
        "pairs left out"
    );
    for which in ["clean", "corrupt"] {
        check_stat(&s.metric[which], &numpy["metric"][which], which);
    }
    // the main correlation tables are there
    for key in [
        "ig_norm_clean_to_corrupt__vs__ap_clean_to_corrupt",
        "ig_norm_corrupt_to_clean__vs__ap_corrupt_to_clean",
        "ig_norm_clean_to_corrupt__vs__ap_corrupt_to_clean",
        "asym_ig_norm__vs__asym_ap",
    ] {
        for c in ["heads", "neurons"] {
            assert!(s.correlations[c][key].mean.is_some(), "{c} {key}");
        }
    }
    for c in ["heads", "neurons"] {
        let raw = &s.correlations_raw[c]["ig_clean_to_corrupt__vs__ap_clean_to_corrupt"];
        assert!(raw.mean_abs.is_some(), "{c}: mean |r| of raw IG vs AP");
    }
    // a JSON round trip keeps the structure (floats to the last bit or two)
    let back = Summary::from_json(&s.to_json()).unwrap();
    assert_eq!(back.pairs.len(), s.pairs.len());
    assert_eq!(back.dataset, s.dataset);
    for (c, m) in &s.correlations {
        for (k, st) in m {
            assert_eq!(back.correlations[c][k].n, st.n, "{c} {k}");
        }
    }
}

#[test]
fn a_missing_pair_is_listed_and_duplicates_are_refused() {
    let mut r = reports();
    r.retain(|(i, _)| *i != 5);
    let info = DatasetInfo {
        source: "task:ioi".into(),
        seed: Some(0),
        total: 8,
    };
    let s = summarize(info.clone(), &r, false).unwrap();
    assert_eq!(s.missing, vec![5]);
    assert_eq!(s.n_pairs, 7);
    let mut dup = reports();
    dup.push(dup[0].clone());
    let e = summarize(info.clone(), &dup, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("appears twice"), "{e}");
    let mut other = reports();
    other[1].1.settings.ig_steps = 99;
    let e = summarize(info, &other, false).unwrap_err().to_string();
    assert!(e.contains("different settings"), "{e}");
}

/// A report written and read back is the same report, bit for bit, so a
/// summary of reports read from files (merge, the page's summarize) equals
/// the one computed from them in memory. serde_json needs `float_roundtrip`
/// for that: its fast float parser may be one ulp off.
#[test]
fn reports_survive_json_bit_for_bit() {
    let (_, mut r) = reports().remove(0);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // timings-like values: milliseconds with all 53 bits used
        let v = (x >> 11) as f64 / (1u64 << 53) as f64 * 10f64.powi(i % 9 - 3);
        r.timings_ms.insert(format!("t{i}"), v);
    }
    let back = Report::from_json(&r.to_json()).unwrap();
    for (k, v) in &r.timings_ms {
        assert_eq!(
            v.to_bits(),
            back.timings_ms[k].to_bits(),
            "{k}: {v} read back as {}",
            back.timings_ms[k]
        );
    }
    assert_eq!(back.to_json(), r.to_json());
}

/// A pair whose metric barely differs between its prompts gets a warning and
/// is left out of the correlations and overlaps (listed in `excluded`), unless
/// the summary is asked to include it.
#[test]
fn pairs_with_a_small_gap_are_left_out_unless_included() {
    let mut r = reports();
    let k = r.iter().position(|(i, _)| *i == 3).unwrap();
    let rep = &mut r[k].1;
    rep.metric.corrupt = rep.metric.clean + 1e-5;
    patchlab::report::derive(rep, 10);
    assert_eq!(rep.warnings.len(), 1);
    assert_eq!(rep.warnings[0].code, "small_gap");
    assert!(
        rep.warnings[0]
            .message
            .starts_with("the metric barely differs between the prompts"),
        "{}",
        rep.warnings[0].message
    );
    let info = DatasetInfo {
        source: "task:ioi".into(),
        seed: Some(0),
        total: 8,
    };
    let out = summarize(info.clone(), &r, false).unwrap();
    assert_eq!(out.excluded, vec![3]);
    assert!(!out.include_small_gap);
    let key = "ig_norm_clean_to_corrupt__vs__ap_clean_to_corrupt";
    let st = &out.correlations["neurons"][key];
    assert_eq!(st.n, 7);
    assert_eq!(st.per_pair[3], None);
    assert_eq!(out.overlap["neurons"]["and"].per_pair[3], None);
    assert_eq!(out.pairs[3].warnings, vec!["small_gap".to_string()]);
    // the metrics are still averaged over every pair
    assert_eq!(out.metric["clean"].n, 8);
    let all = summarize(info, &r, true).unwrap();
    assert!(all.excluded.is_empty() && all.include_small_gap);
    assert_eq!(all.correlations["neurons"][key].n, 8);
}

/// The committed reports are schema 1 (no IG*, the old asymmetry): read
/// back, they are brought up to the current schema from their scores,
/// exactly as a new report is built.
#[test]
fn schema_1_reports_are_upgraded_from_their_scores() {
    let path = golden_dir().join("pairs/0000.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["schema"], 1);
    assert!(v["results"].get("ig_norm").is_none());
    let r = Report::from_json(&text).unwrap();
    assert_eq!(r.schema, patchlab::report::SCHEMA);
    assert!(r.results.contains_key(&MethodKey::IgNorm));
    assert!(r.analysis.latent.contains_key(&MethodKey::IgNorm));
    assert!(!r.analysis.correlations_raw.is_empty());
    // the same derivation as a report built now: derive again, same JSON
    let mut again = r.clone();
    patchlab::report::derive(&mut again, 10);
    assert_eq!(again.to_json(), r.to_json());
    // a schema this build does not know is refused with a reason
    let future = text.replacen("\"schema\":1", "\"schema\":5", 1);
    let e = Report::from_json(&future).unwrap_err().to_string();
    assert!(e.contains("report schema 5 is not supported"), "{e}");
}
