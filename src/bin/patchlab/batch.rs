//! `patchlab batch`: a dataset of prompt pairs through the per-pair
//! analysis, one report per pair plus the summary tables; shards of one
//! dataset run anywhere and `patchlab merge` joins them afterwards.

use super::ablate::run_ablation;
use super::dataset::{load_pairs, Source};
use super::outputs::{io, pair_path, summary_table, write_atomic};
use super::{load, progress_bar, split_list};
use clap::Args;
use indicatif::ProgressBar;
use patchlab::app::dataset::{DatasetObserver, PairOutcome, Plan, Runner};
use patchlab::app::{ablation_sets, AnalyzeRequest, LoadedModel};
use patchlab::attribution::ablation::AblationSet;
use patchlab::attribution::run::Options;
use patchlab::attribution::{Observer, Progress};
use patchlab::clock::now_ms;
use patchlab::engine::Engine;
use patchlab::report::summary::{summarize, DatasetInfo};
use patchlab::report::{Prompts, Report};
use patchlab::{Error, Result};
use std::path::{Path, PathBuf};

/// The analysis options shared by `analyze` and `batch`.
#[derive(Args, Clone)]
pub struct MethodArgs {
    /// Methods, comma-separated: ap (activation patching), ig (integrated gradients), atp (attribution patching).
    #[arg(long, default_value = "ap,ig,atp")]
    pub methods: String,
    /// Component kinds, comma-separated: heads, neurons (each head's or neuron's output over all positions).
    #[arg(long, default_value = "heads,neurons", conflicts_with = "sites")]
    pub components: String,
    /// Patching sites, comma-separated, instead of --components: heads, neurons, resid_pre,
    /// resid_mid, attn_out, mlp_out (by layer × position), z, q, k, v, pattern (by layer × head),
    /// z_by_pos, q_by_pos, k_by_pos, v_by_pos (layer × position × head), pattern_by_dest
    /// (layer × head × destination), pattern_dest_src (layer × head × destination × source), or
    /// the bundles block_every (resid_pre, attn_out, mlp_out), head_every (z, q, k, v, pattern)
    /// and head_every_by_pos; dla adds direct logit attribution (logit-difference metric).
    /// docs/methods.md ("Patching sites") defines each one.
    #[arg(long)]
    pub sites: Option<String>,
    /// Directions, comma-separated: clean_to_corrupt, corrupt_to_clean.
    #[arg(long, default_value = "clean_to_corrupt,corrupt_to_clean")]
    pub directions: String,
    /// Integration steps of integrated gradients.
    #[arg(long, default_value_t = 50)]
    pub ig_steps: usize,
    /// Integration rule: gausslegendre (captum's default), riemann_left, riemann_right, riemann_middle, riemann_trapezoid.
    #[arg(long, default_value = "gausslegendre")]
    pub ig_rule: String,
    /// Quantile that marks latent (AND / OR) components: 0.9 = top 10 %.
    #[arg(long, default_value_t = 0.9)]
    pub percentile: f64,
    /// Also score every feature of this sparse autoencoder: a SAELens folder (cfg.json +
    /// sae_weights.safetensors, the layout of SAELens's releases for GPT-2 small, e.g. a layer
    /// folder of jbloom/GPT2-Small-SAEs-Reformatted). Repeat for several hooks. With
    /// --components none only the features are scored. docs/methods.md ("SAE features").
    #[arg(long = "sae", value_name = "DIR")]
    pub saes: Vec<PathBuf>,
}

impl MethodArgs {
    /// The analysis settings of a request.
    pub fn request(&self) -> AnalyzeRequest {
        AnalyzeRequest {
            methods: Some(split_list(&self.methods)),
            directions: Some(split_list(&self.directions)),
            components: match self.sites {
                Some(_) => None,
                None if self.components.trim() == "none" => Some(vec![]),
                None => Some(split_list(&self.components)),
            },
            sites: self.sites.as_deref().map(split_list),
            ig_steps: Some(self.ig_steps),
            ig_rule: Some(self.ig_rule.clone()),
            percentile: Some(self.percentile),
            ..AnalyzeRequest::default()
        }
    }

    pub fn options(&self) -> Result<Options> {
        let mut opts = self.request().options()?;
        opts.saes = self.load_saes()?;
        Ok(opts)
    }

    /// The `--sae` folders, loaded and checked.
    pub fn load_saes(&self) -> Result<Vec<std::sync::Arc<patchlab::model::sae::Sae>>> {
        self.saes
            .iter()
            .map(|dir| patchlab::model::sae::Sae::load_dir(dir).map(std::sync::Arc::new))
            .collect()
    }
}

#[derive(Args)]
pub struct BatchArgs {
    /// Model directory (config.json, model.safetensors, tokenizer.json), or a Hub repo id that the
    /// Hugging Face cache holds (openai-community/gpt2, after `huggingface-cli download`).
    #[arg(long)]
    model: PathBuf,
    /// A generated task: ioi, ioi-third, greater-than, capitals, agreement.
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    task: Option<String>,
    /// Pairs to generate for --task.
    #[arg(long, default_value_t = 100)]
    n: usize,
    /// Seed of the --task generator (the same seed gives the same pairs).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A CSV (header: clean,corrupt,correct,incorrect[,metric]) or JSONL file of pairs.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Skip the rows of --file that are not valid pairs (each is listed). Without it such a file is refused.
    #[arg(long)]
    skip_bad: bool,
    /// Run only slice I of N (0-based, e.g. 2/8) of the dataset; `patchlab merge` joins the slices.
    #[arg(long)]
    shard: Option<String>,
    #[command(flatten)]
    methods: MethodArgs,
    /// Do not prepend the BOS token <|endoftext|>.
    #[arg(long)]
    no_bos: bool,
    /// Compute backend: cpu, gpu, or auto (the GPU where one starts, else the CPU).
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Output directory: pairs/NNNN.json (one report per pair) and summary.json.
    #[arg(long)]
    out_dir: PathBuf,
    /// Pairs analysed together: pairs of equal token length and first differing token share the
    /// engine's passes (on the GPU, one tail pass holds patches of several pairs). Default: 16 with --backend gpu, 1 with
    /// cpu (where pairs gain nothing from sharing). An interrupted run loses at most one group.
    #[arg(long)]
    group: Option<usize>,
    /// Recompute pairs whose report already exists in --out-dir (by default such reports are kept
    /// when their prompts and settings match, so an interrupted run resumes).
    #[arg(long)]
    force: bool,
    /// After the sweep, mean-ablate these component sets in every pair (repeatable; see
    /// `patchlab ablate --help`) and write ablation.json.
    #[arg(long = "ablate")]
    ablate: Vec<String>,
    /// Count pairs whose metric barely differs between the prompts (a `small_gap` warning) in
    /// the summary's correlations and overlaps; by default they are left out and listed.
    #[arg(long)]
    include_small_gap: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// Parses "I/N" into the index range of slice I of a dataset of `total` pairs.
pub fn shard_range(spec: &str, total: usize) -> Result<(usize, usize, std::ops::Range<usize>)> {
    let bad = || {
        Error::Input(format!(
            "--shard {spec:?} is not I/N with 0 ≤ I < N (e.g. 0/4 for the first of four slices)"
        ))
    };
    let (i, n) = spec.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    // contiguous slices whose sizes differ by at most one
    Ok((i, n, i * total / n..(i + 1) * total / n))
}

/// The dataset of a batch run, and where it came from.
fn load_dataset(
    a: &BatchArgs,
    tok: &patchlab::model::Tokenizer,
) -> Result<(Vec<Prompts>, DatasetInfo)> {
    let source = Source {
        task: a.task.as_deref(),
        n: a.n,
        seed: a.seed,
        file: a.file.as_deref(),
        skip_bad: a.skip_bad,
        bos: !a.no_bos,
    };
    load_pairs(&source, tok)
}

/// Where a batch run's outcomes go: each computed report to its file as
/// it arrives, every report kept for the summary, each bad pair printed;
/// progress to a bar over the pairs to compute.
struct BatchOut<'a> {
    dir: &'a Path,
    bar: ProgressBar,
    quiet: bool,
    /// What the bar says of the group in progress.
    label: String,
    reports: Vec<(usize, Report)>,
}

impl Observer for BatchOut<'_> {
    fn progress(&mut self, p: &Progress<'_>) -> bool {
        self.bar.set_length(p.total);
        self.bar.set_position(p.done);
        self.bar.set_message(format!("{} {}", self.label, p.stage));
        true
    }
}

impl DatasetObserver for BatchOut<'_> {
    fn planned(&mut self, plan: &Plan) {
        let n: usize = plan.groups.iter().map(Vec::len).sum();
        if plan.group_size > 1 && n > 0 && !self.quiet {
            eprintln!(
                "{n} pairs to compute in {} group(s) of equal token length and first difference (at most {} per group)",
                plan.groups.len(),
                plan.group_size
            );
        }
    }

    fn group(&mut self, g: &[usize]) {
        self.label = match g {
            [one] => format!("pair {}", one + 1),
            _ => format!("{} pairs from {}", g.len(), g[0] + 1),
        };
    }

    fn pair(&mut self, index: usize, outcome: PairOutcome) -> Result<()> {
        match outcome {
            PairOutcome::Kept(r) => self.reports.push((index, r)),
            PairOutcome::Computed(r) => {
                write_atomic(&pair_path(self.dir, index), &r.to_json())?;
                self.reports.push((index, r));
            }
            PairOutcome::Bad(e) => self.bar.suspend(|| eprintln!("pair {index}: {e}")),
        }
        Ok(())
    }
}

struct Batch {
    args: BatchArgs,
    opts: Options,
    /// The sets of --ablate.
    ablate: Vec<(String, AblationSet)>,
}

impl Batch {
    fn run(self, l: LoadedModel) -> Result<()> {
        let a = &self.args;
        let (pairs, info) = load_dataset(a, &l.tokenizer)?;
        let (range, shard) = match &a.shard {
            Some(s) => {
                let (i, n, r) = shard_range(s, pairs.len())?;
                (r, format!("{i}/{n}"))
            }
            None => (0..pairs.len(), "0/1".to_string()),
        };
        let runner = Runner::new(&l.engine, &l.name, &l.tokenizer, &self.opts, a.group)?;
        let pair_dir = a.out_dir.join("pairs");
        std::fs::create_dir_all(&pair_dir).map_err(|e| io(&pair_dir, e))?;
        let bar = progress_bar(
            a.quiet,
            0,
            "{spinner} {msg:40} [{bar:30}] {percent:>3}% elapsed {elapsed} ETA {eta}",
        );
        let mut out = BatchOut {
            dir: &a.out_dir,
            bar,
            quiet: a.quiet,
            label: String::new(),
            reports: Vec::with_capacity(range.len()),
        };
        // reports of an earlier run into this directory, unless --force
        let earlier = |index| {
            if a.force {
                return None;
            }
            let text = std::fs::read_to_string(pair_path(&a.out_dir, index)).ok()?;
            Report::from_json(&text).ok()
        };
        let t0 = now_ms();
        let counts0 = l.engine.device_counts();
        let stats = pollster::block_on(runner.run(&pairs, range.clone(), earlier, &mut out))?;
        out.bar.finish_and_clear();
        let secs = (now_ms() - t0) / 1000.0;
        let (computed, group) = (stats.computed, runner.group_size());
        let mut reports = out.reports;
        reports.sort_by_key(|(i, _)| *i);
        // nothing to summarise: the bad pairs are the story
        if reports.is_empty() && !stats.bad.is_empty() {
            return Err(bad_pairs(&stats.bad, range.len()));
        }
        let summary = summarize(info, &reports, a.include_small_gap)?;
        write_atomic(&a.out_dir.join("summary.json"), &summary.to_json())?;
        println!(
            "{} pairs (shard {shard}, dataset {}{}): {computed} computed, {} kept from an earlier run{}",
            range.len(),
            summary.dataset.source,
            summary.dataset.seed.map(|s| format!(" seed {s}")).unwrap_or_default(),
            stats.kept,
            match stats.bad.len() {
                0 => String::new(),
                n => format!(", {n} bad (listed above)"),
            }
        );
        if computed > 0 {
            println!(
                "{:.1} s on {} (groups of up to {group} pairs): {:.4} pairs/s, {:.2} s per pair",
                secs,
                l.engine.backend(),
                computed as f64 / secs,
                secs / computed as f64
            );
            if let (Some((s0, d0)), Some((s1, d1))) = (counts0, l.engine.device_counts()) {
                let per = |x: u64| x as f64 / computed as f64;
                println!(
                    "device work: {} submissions, {} kernel dispatches ({:.0} and {:.0} per pair)",
                    s1 - s0,
                    d1 - d0,
                    per(s1 - s0),
                    per(d1 - d0)
                );
            }
        }
        print!("{}", summary_table(&summary));
        println!(
            "reports in {}/pairs/, tables in {}/summary.json",
            a.out_dir.display(),
            a.out_dir.display()
        );
        if !self.ablate.is_empty() {
            run_ablation(&l, &a.out_dir, &reports, &self.ablate, a.quiet)?;
        }
        if stats.bad.is_empty() {
            Ok(())
        } else {
            Err(bad_pairs(&stats.bad, range.len()))
        }
    }
}

/// The error a run with bad pairs ends with, after its outputs are written.
fn bad_pairs(bad: &[usize], of: usize) -> Error {
    let mut list = bad.to_vec();
    list.sort_unstable();
    let list: Vec<String> = list.iter().map(usize::to_string).collect();
    Error::Input(format!(
        "{} of {of} pairs could not be analysed (pair {}, each listed above with the reason)",
        bad.len(),
        list.join(", ")
    ))
}

pub fn batch(a: BatchArgs) -> Result<()> {
    let opts = a.methods.options()?;
    // a bad set is refused before the model loads
    let ablate = ablation_sets(&a.ablate)?;
    let l = load(&a.model, &a.backend)?;
    Batch {
        args: a,
        opts,
        ablate,
    }
    .run(l)
}

#[cfg(test)]
mod tests {
    use super::shard_range;

    #[test]
    fn shards_cover_the_dataset_once() {
        for total in [0, 1, 7, 100] {
            for n in 1..=9 {
                let mut seen = vec![0; total];
                for i in 0..n {
                    let (_, _, r) = shard_range(&format!("{i}/{n}"), total).unwrap();
                    for k in r {
                        seen[k] += 1;
                    }
                }
                assert!(seen.iter().all(|&c| c == 1), "total {total} n {n}");
            }
        }
        assert!(shard_range("3/3", 10).is_err());
        assert!(shard_range("1", 10).is_err());
        assert!(shard_range("0/0", 10).is_err());
    }
}
