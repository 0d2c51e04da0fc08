//! `patchlab merge`: the output directories of `patchlab batch --shard`
//! runs joined into one, with the summary recomputed over every pair.

use super::outputs::{io, pair_path, read_pairs, summary_table, write_atomic};
use clap::Args;
use patchlab::report::summary::{summarize, DatasetInfo, Summary};
use patchlab::report::Report;
use patchlab::{Error, Result};
use std::path::PathBuf;

#[derive(Args)]
pub struct MergeArgs {
    /// Output directories of `patchlab batch` runs (shards of one dataset).
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Where the merged pairs/ and summary.json go (may be one of the inputs).
    #[arg(long)]
    out_dir: PathBuf,
    /// Count pairs with a `small_gap` warning in the correlations and overlaps (as batch's flag).
    #[arg(long)]
    include_small_gap: bool,
}

pub fn merge(a: MergeArgs) -> Result<()> {
    let mut info: Option<DatasetInfo> = None;
    let mut all: Vec<(usize, Report)> = Vec::new();
    for dir in &a.dirs {
        let path = dir.join("summary.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::Input(format!(
                "{} is not a finished `patchlab batch` output ({}: {e})",
                dir.display(),
                path.display()
            ))
        })?;
        let dataset = Summary::dataset_of(&text)
            .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
        match &info {
            None => info = Some(dataset.clone()),
            Some(i) if *i != dataset => {
                return Err(Error::Input(format!(
                    "{} holds dataset {:?} (seed {:?}, {} pairs) but {} holds {:?} (seed {:?}, {} pairs): merge shards of one dataset only",
                    a.dirs[0].display(),
                    i.source,
                    i.seed,
                    i.total,
                    dir.display(),
                    dataset.source,
                    dataset.seed,
                    dataset.total
                )))
            }
            Some(_) => {}
        }
        for (index, r) in read_pairs(dir)? {
            match all.iter().find(|(i, _)| *i == index) {
                Some((_, prev)) if prev.prompts != r.prompts => {
                    return Err(Error::Input(format!(
                        "pair {index} differs between the inputs ({} has another prompt pair): they are not shards of one dataset",
                        dir.display()
                    )))
                }
                Some(_) => {}
                None => all.push((index, r)),
            }
        }
    }
    let info = info.expect("clap requires one directory");
    all.sort_by_key(|(i, _)| *i);
    let summary = summarize(info, &all, a.include_small_gap)?;
    let pdir = a.out_dir.join("pairs");
    std::fs::create_dir_all(&pdir).map_err(|e| io(&pdir, e))?;
    for (index, r) in &all {
        let path = pair_path(&a.out_dir, *index);
        if !path.exists() {
            write_atomic(&path, &r.to_json())?;
        }
    }
    write_atomic(&a.out_dir.join("summary.json"), &summary.to_json())?;
    println!(
        "merged {} pairs from {} directories into {}",
        all.len(),
        a.dirs.len(),
        a.out_dir.display()
    );
    print!("{}", summary_table(&summary));
    Ok(())
}
