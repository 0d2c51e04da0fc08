//! `patchlab slim`: a report cut down for a figure in a post — the maps it
//! shows, scores rounded to a few significant digits, marked as such.

use clap::Args;
use patchlab::report::slim::{slim, Keep};
use patchlab::report::Report;
use patchlab::{Error, Result};
use std::path::PathBuf;

#[derive(Args)]
pub struct SlimArgs {
    /// A report written by `patchlab analyze` (or exported by the lab).
    report: PathBuf,
    /// The maps to keep, comma-separated: heads, neurons, patterns, dla, features (SAE features), and patching sites or
    /// bundles (as --sites takes them).
    #[arg(long, default_value = "heads")]
    keep: String,
    /// Significant digits of every score (what the eye reads off a colour scale: 4).
    #[arg(long, default_value_t = 4)]
    digits: u32,
    /// Where the slim report goes.
    #[arg(long, short)]
    out: PathBuf,
}

pub fn slim_report(a: SlimArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.report)
        .map_err(|e| Error::Io(format!("cannot read {}: {e}", a.report.display())))?;
    let r = Report::from_json(&text)
        .map_err(|e| Error::Input(format!("{}: {e}", a.report.display())))?;
    let keep = Keep::parse(&a.keep)?;
    let out = slim(&r, &keep, a.digits)?;
    std::fs::write(&a.out, &out)
        .map_err(|e| Error::Io(format!("cannot write {}: {e}", a.out.display())))?;
    let full = r.to_json().len();
    println!(
        "{}: {} bytes ({} of the compact full report's {full}), keeping {}, {} significant digits",
        a.out.display(),
        out.len(),
        format_args!("{:.1} %", 100.0 * out.len() as f64 / full as f64),
        a.keep,
        a.digits
    );
    Ok(())
}
