//! `patchlab dataset`, and where the pairs of every dataset subcommand
//! (`batch`, `circuit`) come from: a generated task or a CSV / JSONL file.

use super::outputs::io;
use clap::Args;
use patchlab::dataset::{self, Format, Task};
use patchlab::report::summary::DatasetInfo;
use patchlab::report::Prompts;
use patchlab::{Error, Result};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct DatasetArgs {
    /// Model directory or cached Hub repo id (only its tokenizer is read, to check every pair).
    #[arg(long)]
    model: PathBuf,
    /// ioi, ioi-third, greater-than, capitals, agreement.
    #[arg(long)]
    task: String,
    #[arg(long, default_value_t = 100)]
    n: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// csv or jsonl.
    #[arg(long, default_value = "csv")]
    format: String,
}

/// Prints a generated dataset, to inspect it or edit it into a --file.
pub fn dataset(a: DatasetArgs) -> Result<()> {
    let tok = super::load_tokenizer(&a.model)?;
    let pairs = Task::from_name(&a.task)?.generate(&tok, a.n, a.seed, true)?;
    match a.format.as_str() {
        "csv" => print!("{}", dataset::to_csv(&pairs)),
        "jsonl" => print!("{}", dataset::to_jsonl(&pairs)),
        f => {
            return Err(Error::Input(format!(
                "unknown --format {f:?}: use csv or jsonl"
            )))
        }
    }
    Ok(())
}

/// Where a dataset's pairs come from: a generated task, or a file.
pub(crate) struct Source<'a> {
    pub task: Option<&'a str>,
    pub n: usize,
    pub seed: u64,
    pub file: Option<&'a Path>,
    pub skip_bad: bool,
    pub bos: bool,
}

/// The pairs of a task or file, refusing a file with bad rows unless `skip_bad`.
pub(crate) fn load_pairs(
    a: &Source<'_>,
    tok: &patchlab::model::Tokenizer,
) -> Result<(Vec<Prompts>, DatasetInfo)> {
    let bos = a.bos;
    if let Some(task) = a.task {
        let task = Task::from_name(task)?;
        let pairs = task.generate(tok, a.n, a.seed, bos)?;
        let info = DatasetInfo {
            source: format!("task:{}", task.name()),
            seed: Some(a.seed),
            total: pairs.len(),
        };
        return Ok((pairs, info));
    }
    let path = a
        .file
        .ok_or_else(|| Error::Input("give a task (--task) or a file of pairs".into()))?;
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    let format = Format::from_path(&path.to_string_lossy())?;
    let imported = dataset::import(&text, format, tok, bos)?;
    if !imported.bad.is_empty() {
        let list: Vec<String> = imported
            .bad
            .iter()
            .map(|b| format!("  line {}: {}", b.line, b.reason))
            .collect();
        if !a.skip_bad {
            return Err(Error::Input(format!(
                "{} has {} invalid row(s):\n{}\nfix them, or pass --skip-bad to run the {} valid pairs without them",
                path.display(),
                imported.bad.len(),
                list.join("\n"),
                imported.pairs.len()
            )));
        }
        eprintln!(
            "skipping {} invalid row(s) of {} (--skip-bad):\n{}",
            imported.bad.len(),
            path.display(),
            list.join("\n")
        );
    }
    if imported.pairs.is_empty() {
        return Err(Error::Input(format!(
            "{} has no valid pairs",
            path.display()
        )));
    }
    let info = DatasetInfo {
        source: format!(
            "file:{}",
            path.file_name().unwrap_or_default().to_string_lossy()
        ),
        seed: None,
        total: imported.pairs.len(),
    };
    Ok((imported.pairs, info))
}
