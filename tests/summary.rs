//! The dataset summary against numpy: tests/golden/summary/numpy.json was
//! computed by tests/reference/summary_numpy.py from the score maps of the
//! committed per-pair reports (regenerate with
//! tests/reference/regenerate_summary.sh); patchlab's summary of the same
//! reports must give the same per-pair values and statistics.

use patchlab::report::summary::{summarize, DatasetInfo, Stat, Summary};
use patchlab::report::Report;
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
    summarize(info, &reports()).unwrap()
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
    for f in ["mean", "std", "min", "median", "max"] {
        let v = match f {
            "mean" => s.mean,
            "std" => s.std,
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
    check_section(&s.overlap, &numpy, "overlap");
    for which in ["clean", "corrupt"] {
        check_stat(&s.metric[which], &numpy["metric"][which], which);
    }
    // the tables the notebook reports are there
    for key in [
        "ig_clean_to_corrupt__vs__ap_clean_to_corrupt",
        "ig_corrupt_to_clean__vs__ap_corrupt_to_clean",
        "ig_clean_to_corrupt__vs__ap_corrupt_to_clean",
        "asym_ig__vs__asym_ap",
    ] {
        for c in ["heads", "neurons"] {
            assert!(s.correlations[c][key].mean.is_some(), "{c} {key}");
        }
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
    let s = summarize(info.clone(), &r).unwrap();
    assert_eq!(s.missing, vec![5]);
    assert_eq!(s.n_pairs, 7);
    let mut dup = reports();
    dup.push(dup[0].clone());
    let e = summarize(info.clone(), &dup).unwrap_err().to_string();
    assert!(e.contains("appears twice"), "{e}");
    let mut other = reports();
    other[1].1.settings.ig_steps = 99;
    let e = summarize(info, &other).unwrap_err().to_string();
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
