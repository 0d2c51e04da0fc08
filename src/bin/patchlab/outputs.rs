//! The files of a `patchlab batch` output directory (pairs/NNNN.json,
//! summary.json, ablation.json) as batch, merge and ablate read and write
//! them, and the summary table batch and merge print.

use patchlab::report::summary::Summary;
use patchlab::report::Report;
use patchlab::{Error, Result};
use std::path::{Path, PathBuf};

pub(crate) fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io(format!("{}: {e}", path.display()))
}

pub(crate) fn pair_path(dir: &Path, index: usize) -> PathBuf {
    dir.join("pairs").join(format!("{index:04}.json"))
}

/// Writes through a temporary file so a killed run never leaves half a report.
pub(crate) fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

/// Reads every per-pair report of a batch output directory.
pub fn read_pairs(dir: &Path) -> Result<Vec<(usize, Report)>> {
    let pdir = dir.join("pairs");
    let entries = std::fs::read_dir(&pdir).map_err(|e| {
        Error::Input(format!(
            "{} is not a `patchlab batch` output directory (no pairs/ in it: {e})",
            dir.display()
        ))
    })?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| io(&pdir, e))?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let Some(index) = name
            .strip_suffix(".json")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        let report = Report::from_json(&text)
            .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
        out.push((index, report));
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out)
}

/// The summary's main correlations, one line each (summary.json has every pair of maps).
pub fn summary_table(s: &Summary) -> String {
    const KEYS: [(&str, &str); 8] = [
        (
            "ig_norm_clean_to_corrupt__vs__ap_clean_to_corrupt",
            "IG* vs AP, clean→corrupt",
        ),
        (
            "ig_norm_corrupt_to_clean__vs__ap_corrupt_to_clean",
            "IG* vs AP, corrupt→clean",
        ),
        (
            "ig_norm_clean_to_corrupt__vs__ap_corrupt_to_clean",
            "IG* clean→corrupt vs AP corrupt→clean",
        ),
        (
            "ig_norm_corrupt_to_clean__vs__ap_clean_to_corrupt",
            "IG* corrupt→clean vs AP clean→corrupt",
        ),
        (
            "atp_clean_to_corrupt__vs__ap_clean_to_corrupt",
            "AtP vs AP, clean→corrupt",
        ),
        (
            "atp_corrupt_to_clean__vs__ap_corrupt_to_clean",
            "AtP vs AP, corrupt→clean",
        ),
        ("asym_ig_norm__vs__asym_ap", "IG* asymmetry vs AP asymmetry"),
        ("asym_atp__vs__asym_ap", "AtP asymmetry vs AP asymmetry"),
    ];
    let fmt = |st: &patchlab::report::summary::Stat| match (st.mean, st.std, st.median) {
        (Some(m), Some(sd), Some(med)) => format!(
            "{m:+.4} ± {sd:.4}  median {med:+.4}  mean|r| {:.4}  (n {})",
            st.mean_abs.unwrap_or(f64::NAN),
            st.n
        ),
        _ => "undefined".to_string(),
    };
    let mut out = String::new();
    for (which, m) in &s.metric {
        out += &format!("metric  {which:7} {:46} {}\n", "", fmt(m));
    }
    for (c, corr) in &s.correlations {
        for (key, label) in KEYS {
            if let Some(st) = corr.get(key) {
                out += &format!("pearson {c:7} {label:46} {}\n", fmt(st));
            }
        }
    }
    for (c, ov) in &s.overlap {
        for (k, st) in ov {
            let label = format!("Jaccard of IG*'s and AP's {} components", k.to_uppercase());
            out += &format!("overlap {c:7} {label:46} {}\n", fmt(st));
        }
    }
    if let Some(al) = &s.site_alignment {
        out += &format!(
            "sites   {} pairs of {} tokens (first difference at {}) averaged in the maps by position (summary.json site_maps: mean and std per cell)\n",
            al.aligned.len(),
            al.n_tokens,
            al.first_diff
        );
        if !al.not_aligned.is_empty() {
            let list: Vec<String> = al.not_aligned.iter().map(|i| i.to_string()).collect();
            out += &format!(
                "sites   {} pairs of another template left out of the maps by position (positions would not line up): {}\n",
                al.not_aligned.len(),
                list.join(", ")
            );
        }
    }
    if !s.excluded.is_empty() {
        out += &format!(
            "{} of {} pairs left out of the correlations, overlaps and site maps: their metric barely differs between the prompts (small_gap; --include-small-gap counts them)\n",
            s.excluded.len(),
            s.n_pairs
        );
    }
    if !s.missing.is_empty() {
        out += &format!(
            "{} of {} pairs have no report yet (other shards?): merge the shards' directories with `patchlab merge`\n",
            s.missing.len(),
            s.dataset.total
        );
    }
    out
}
