//! Reports read back: the dataset summary, schema upgrades and slim reports.

use super::{js_err, seed_of};
use crate::error::{Error, Result};
use crate::report::summary::{summarize as summarize_reports, DatasetInfo};
use crate::report::Report;
use wasm_bindgen::prelude::*;

/// The dataset summary of per-pair reports, exactly as `patchlab batch`
/// writes `summary.json`.
///
/// - `reports_json`: a JSON array of reports (as `Lab.analyze` returns them)
///   in dataset order; `null` marks a pair without a report (not run yet,
///   cancelled, failed), which the summary lists under `missing`. The score
///   maps (`results`) are not needed and may be left out.
/// - `source`: "task:ioi", "file:pairs.csv", …; `seed`: the generator's seed
///   (tasks only); `total`: pairs in the whole dataset.
/// - `include_small_gap`: count pairs with a `small_gap` warning in the
///   correlations and overlaps (left out by default, as `patchlab batch`).
#[wasm_bindgen]
pub fn summarize(
    reports_json: &str,
    source: &str,
    seed: Option<f64>,
    total: usize,
    include_small_gap: Option<bool>,
) -> std::result::Result<String, JsValue> {
    let reports = parse_reports(reports_json).map_err(js_err)?;
    let info = DatasetInfo {
        source: source.to_string(),
        seed: seed.map(seed_of).transpose().map_err(js_err)?,
        total,
    };
    Ok(
        summarize_reports(info, &reports, include_small_gap.unwrap_or(false))
            .map_err(js_err)?
            .to_json(),
    )
}

/// A saved report (any schema this build reads) as this schema's JSON: a
/// schema-1 report gets its IG*, analysis and warnings derived from its
/// scores (`Report::from_json`). Needs no model, so results-only embeds
/// render old exports too.
#[wasm_bindgen]
pub fn upgrade_report(report_json: &str) -> std::result::Result<String, JsValue> {
    Ok(Report::from_json(report_json).map_err(js_err)?.to_json())
}

/// A report cut down for a figure in a post (`patchlab slim`): only the
/// maps `keep` names ("heads", "neurons", "patterns", "dla", sites;
/// comma-separated), every score rounded to `digits` significant digits,
/// marked with `precision`. Needs no model.
#[wasm_bindgen]
pub fn slim_report(
    report_json: &str,
    keep: &str,
    digits: u32,
) -> std::result::Result<String, JsValue> {
    let r = Report::from_json(report_json).map_err(js_err)?;
    let keep = crate::report::slim::Keep::parse(keep).map_err(js_err)?;
    crate::report::slim::slim(&r, &keep, digits).map_err(js_err)
}

/// (dataset index, report) of a JSON array of reports in dataset order, where
/// null marks a pair without one; the score maps (`results`) may be left out.
pub(super) fn parse_reports(reports_json: &str) -> Result<Vec<(usize, Report)>> {
    let values: Vec<serde_json::Value> = serde_json::from_str(reports_json)
        .map_err(|e| Error::Input(format!("not an array of reports: {e}")))?;
    let mut reports = Vec::with_capacity(values.len());
    for (i, mut v) in values.into_iter().enumerate() {
        if v.is_null() {
            continue;
        }
        let old = v.get("schema").and_then(|s| s.as_u64()) == Some(1);
        if old
            && v.get("results")
                .is_none_or(|r| r.as_object().is_none_or(|o| o.is_empty()))
        {
            return Err(Error::Input(format!(
                "pair {i} is a schema-1 report without its score maps: its analysis is derived from them, so pass the whole report"
            )));
        }
        if let Some(o) = v.as_object_mut() {
            o.entry("results").or_insert_with(|| serde_json::json!({}));
        }
        // a schema-1 report is brought up to date from its scores
        let r: Report = if old {
            Report::from_json(&v.to_string())
        } else {
            serde_json::from_value(v).map_err(|e| Error::Input(e.to_string()))
        }
        .map_err(|e| Error::Input(format!("pair {i} is not a patchlab report: {e}")))?;
        reports.push((i, r));
    }
    Ok(reports)
}
