//! `patchlab ablate`, and the ablation `patchlab batch --ablate` runs after
//! its sweep: component sets held at their mean corrupt activation in every
//! pair of an output directory, written to ablation.json.

use super::outputs::{read_pairs, write_atomic};
use super::{load, progress_bar};
use clap::Args;
use indicatif::ProgressBar;
use patchlab::app::{ablation_sets, LoadedModel};
use patchlab::attribution::ablation::{ablate_dataset, AblationSet};
use patchlab::attribution::{Observer, Progress};
use patchlab::report::Report;
use patchlab::{Error, Result};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct AblateArgs {
    /// A `patchlab batch` or `patchlab merge` output directory; ablation.json is written into it.
    dir: PathBuf,
    /// The model directory the reports were computed with.
    #[arg(long)]
    model: PathBuf,
    /// A set of components to hold at their mean corrupt activation (repeatable): and:X or or:X
    /// with X = ig, ap, both (IG ∩ AP), either (IG ∪ AP), ig-only, ap-only — each pair's own
    /// latent AND / OR components — or fixed components such as h9.6,h9.9,n0.1234
    /// (h = head layer.head, n = neuron layer.index).
    #[arg(long = "set", required = true)]
    sets: Vec<String>,
    /// Compute backend: cpu, gpu, or auto (the GPU where one starts, else the CPU).
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// Mean-ablates each set (parsed by `app::ablation_sets`) in every pair
/// and writes `dir/ablation.json`.
pub(crate) fn run_ablation(
    l: &LoadedModel,
    dir: &Path,
    reports: &[(usize, Report)],
    sets: &[(String, AblationSet)],
    quiet: bool,
) -> Result<()> {
    let bar = progress_bar(
        quiet,
        ((sets.len() + 1) * reports.len()) as u64,
        "{spinner} {msg:40} [{bar:30}] {percent:>3}% ETA {eta}",
    );
    let mut obs = StepBar(bar);
    let abl = pollster::block_on(ablate_dataset(
        &l.engine,
        &l.tokenizer,
        reports,
        sets,
        &mut obs,
    ))?;
    obs.0.finish_and_clear();
    let path = dir.join("ablation.json");
    write_atomic(
        &path,
        &serde_json::to_string_pretty(&abl).expect("ablations serialise"),
    )?;
    let fmt = |st: &patchlab::report::summary::Stat| match (st.mean, st.std) {
        (Some(m), Some(sd)) => format!("{m:+.4} ± {sd:.4}"),
        _ => "undefined".to_string(),
    };
    for s in &abl.sets {
        println!(
            "ablate {:12} {} heads, {} neurons per pair: metric change {}, fraction retained {} (n {})",
            s.set,
            s.heads.mean.map_or("?".into(), |x| format!("{x:.1}")),
            s.neurons.mean.map_or("?".into(), |x| format!("{x:.1}")),
            fmt(&s.change),
            fmt(&s.retained),
            s.pairs.len()
        );
    }
    println!("ablations in {}", path.display());
    Ok(())
}

/// A bar that moves one step per step of the work.
struct StepBar(ProgressBar);

impl Observer for StepBar {
    fn progress(&mut self, p: &Progress<'_>) -> bool {
        self.0.inc(1);
        self.0.set_message(p.stage.to_string());
        true
    }
}

pub fn ablate(a: AblateArgs) -> Result<()> {
    // a bad set is refused before the model loads
    let sets = ablation_sets(&a.sets)?;
    let l = load(&a.model, &a.backend)?;
    let reports = read_pairs(&a.dir)?;
    if reports.is_empty() {
        return Err(Error::Input(format!(
            "{}/pairs/ holds no reports: run `patchlab batch` first",
            a.dir.display()
        )));
    }
    run_ablation(&l, &a.dir, &reports, &sets, a.quiet)
}
