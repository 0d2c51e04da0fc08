//! `patchlab circuit`: edge attribution (EAP, EAP-IG, exact edge patching),
//! the circuit and its faithfulness, for a prompt pair or a dataset.

use super::dataset::{load_pairs, Source};
use super::progress_bar;
use clap::Args;
use indicatif::ProgressBar;
use patchlab::app::circuit::{evaluate_graph_file, graph_file, run_circuit, CircuitRequest};
use patchlab::app::{AnyEngine, Backend, Engines};
use patchlab::attribution::{Observer, Progress};
use patchlab::model::Model;
use patchlab::report::circuit::{Ablation, CircuitReport, EdgeMethod};
use patchlab::report::Prompts;
use patchlab::{Error, Result};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct CircuitArgs {
    /// Model directory (config.json, model.safetensors, tokenizer.json), or a Hub repo id that the
    /// Hugging Face cache holds.
    #[arg(long)]
    model: PathBuf,
    /// The clean prompt (one pair; or use --task / --pairs for a dataset).
    #[arg(long, required_unless_present_any = ["task", "pairs"], conflicts_with_all = ["task", "pairs"])]
    clean: Option<String>,
    /// The corrupt prompt; as many tokens as the clean one.
    #[arg(long, requires = "clean")]
    corrupt: Option<String>,
    /// The answer the clean prompt favours (one token, mind the leading space).
    #[arg(long, allow_hyphen_values = true, requires = "clean")]
    correct: Option<String>,
    /// The answer the corrupt prompt favours.
    #[arg(long, allow_hyphen_values = true, requires = "clean")]
    incorrect: Option<String>,
    /// A generated task (ioi, ioi-third, greater-than, capitals, agreement): scores are the mean
    /// over its pairs, which must all have one token length.
    #[arg(long, conflicts_with = "pairs")]
    task: Option<String>,
    /// Pairs to generate for --task.
    #[arg(long, default_value_t = 20)]
    n: usize,
    /// Seed of the --task generator.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A CSV (header: clean,corrupt,correct,incorrect[,metric]) or JSONL file of pairs.
    #[arg(long)]
    pairs: Option<PathBuf>,
    /// Skip the rows of --pairs that are not valid pairs.
    #[arg(long)]
    skip_bad: bool,
    /// The circuit's method: eap-ig (EAP with integrated gradients on the inputs), eap,
    /// eap-ig-activations, clean-corrupted, or exact (implies --exact). EAP and EAP-IG are
    /// always scored.
    #[arg(long, default_value = "eap-ig")]
    method: String,
    /// EAP-IG's steps (α = k / steps, k = 0 … steps − 1).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// How edges are chosen: greedy (from the logits up) or topn (largest |score|); both pruned.
    #[arg(long, default_value = "greedy")]
    select: String,
    /// The circuit's size in edges, before pruning (default 200, or every edge of a smaller graph).
    #[arg(long)]
    edges: Option<usize>,
    /// Also score every edge by exact edge patching (one tail pass per edge: 32,491 on GPT-2
    /// small) and print each method's correlation with it.
    #[arg(long)]
    exact: bool,
    /// What edges outside the circuit carry in faithfulness runs: patching (the corrupt
    /// prompt's outputs) or mean-positional (each node's output averaged, position by position,
    /// over the dataset's clean prompts; needs --task or --pairs).
    #[arg(long, default_value = "patching")]
    ablation: String,
    /// Points of each faithfulness curve (0: none).
    #[arg(long, default_value_t = 12)]
    curve_points: usize,
    /// Do not prepend the BOS token <|endoftext|>.
    #[arg(long)]
    no_bos: bool,
    /// The metric: logit_diff, or greater_than:YY.
    #[arg(long, default_value = "logit_diff")]
    metric: String,
    /// Where exact patching's tails run: cpu, gpu or auto (the graph's own few passes always run
    /// on the CPU).
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Instead of scoring: the faithfulness on the pair(s) of the circuit that a graph file
    /// (the reference's Graph.to_json layout, from this tool or from EAP-IG) marks in_graph.
    #[arg(long)]
    graph: Option<PathBuf>,
    /// Output directory: circuit.json (the report the page reads), graph.json (the reference's
    /// Graph.to_json layout, which EAP-IG tooling reads) and faithfulness.csv.
    #[arg(long, required_unless_present = "graph")]
    out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

struct Bar(ProgressBar);

impl Observer for Bar {
    fn progress(&mut self, p: &Progress<'_>) -> bool {
        self.0.set_length(p.total.max(1));
        self.0.set_position(p.done);
        self.0.set_message(p.stage.to_string());
        true
    }
}

/// The engine the circuit computes on (the graph's passes and exact
/// patching's tails). `--backend gpu` fails when the GPU does.
fn engine(model: &Path, backend: &str) -> Result<(String, patchlab::model::Tokenizer, AnyEngine)> {
    let Model {
        name,
        config,
        weights,
        tokenizer,
    } = Model::from_dir(model)?;
    let backend = Backend::parse(backend)?;
    let engines = Engines::load(config, weights, backend != Backend::Cpu)?;
    let (engine, note) = pollster::block_on(engines.get(backend));
    if let Some(fallback) = note {
        if backend == Backend::Gpu {
            return Err(Error::Backend(fallback.unavailable()));
        }
        eprintln!("{fallback}");
    }
    Ok((name, tokenizer, engine))
}

pub fn circuit(a: CircuitArgs) -> Result<()> {
    let (name, tok, engine) = engine(&a.model, &a.backend)?;
    let pairs = match &a.clean {
        Some(clean) => {
            let need = |v: &Option<String>, flag: &str| {
                v.clone()
                    .ok_or_else(|| Error::Input(format!("--clean needs {flag} too")))
            };
            vec![Prompts {
                clean: clean.clone(),
                corrupt: need(&a.corrupt, "--corrupt")?,
                correct: need(&a.correct, "--correct")?,
                incorrect: need(&a.incorrect, "--incorrect")?,
                bos: !a.no_bos,
                metric: a.metric.clone(),
            }]
        }
        None => {
            let source = Source {
                task: a.task.as_deref(),
                n: a.n,
                seed: a.seed,
                file: a.pairs.as_deref(),
                skip_bad: a.skip_bad,
                bos: !a.no_bos,
            };
            load_pairs(&source, &tok)?.0
        }
    };
    if let Some(path) = &a.graph {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Io(format!("cannot read {}: {e}", path.display())))?;
        let ablation = Ablation::parse(&a.ablation)?;
        let f = pollster::block_on(evaluate_graph_file(&engine, &tok, &pairs, &text, ablation))
            .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
        println!(
            "{}: {} edges, {} nodes after pruning; m(C) {:.4}, faithfulness {:.4}",
            path.display(),
            f.edges,
            f.nodes,
            f.metric,
            f.faithfulness
        );
        return Ok(());
    }
    let out = a.out.as_ref().expect("clap requires --out without --graph");
    let method = EdgeMethod::parse(&a.method)?;
    let req = CircuitRequest {
        pairs,
        method: Some(a.method.clone()),
        steps: Some(a.steps),
        select: Some(a.select.clone()),
        edges: a.edges,
        exact: Some(a.exact || method == EdgeMethod::Exact),
        curve_points: Some(a.curve_points),
        ablation: Some(a.ablation.clone()),
        backend: None,
    };
    let bar = progress_bar(
        a.quiet,
        1,
        "{spinner} {msg:32} [{bar:30}] {percent:>3}% elapsed {elapsed} ETA {eta}",
    );
    let mut obs = Bar(bar);
    let report = pollster::block_on(run_circuit(&engine, &engine, &name, &tok, &req, &mut obs))?;
    obs.0.finish_and_clear();
    write_outputs(out, &report)?;
    print!("{}", summary(&report));
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text)
        .map_err(|e| Error::Io(format!("cannot write {}: {e}", path.display())))
}

fn write_outputs(dir: &Path, r: &CircuitReport) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Io(format!("cannot create {}: {e}", dir.display())))?;
    let json = serde_json::to_string(r)
        .map_err(|e| Error::Io(format!("cannot serialise the report: {e}")))?;
    write(&dir.join("circuit.json"), &json)?;
    write(
        &dir.join("graph.json"),
        &graph_file(r, r.settings.method, &r.circuit.edges)?,
    )?;
    let mut csv = String::from("method,n,edges,nodes,metric,faithfulness\n");
    for (m, points) in &r.curves {
        for p in points {
            csv.push_str(&format!(
                "{},{},{},{},{},{}\n",
                m.name(),
                p.n,
                p.edges,
                p.nodes,
                p.metric,
                p.faithfulness
            ));
        }
    }
    write(&dir.join("faithfulness.csv"), &csv)
}

/// What the terminal shows: the baseline, the circuit, its largest edges,
/// the curves and the correlations with exact patching.
pub fn summary(r: &CircuitReport) -> String {
    let mut s = String::new();
    let pairs = if r.pairs.len() == 1 {
        "1 pair".to_string()
    } else {
        format!("{} pairs (means)", r.pairs.len())
    };
    s.push_str(&format!(
        "{}: {} edges ({} upstream nodes, {} input slots); {pairs}; m_clean {:.4} m_corrupt {:.4}\n",
        r.model.name, r.graph.n_edges, r.graph.n_forward, r.graph.n_backward, r.metric.clean, r.metric.corrupt
    ));
    let f = &r.circuit.faithfulness;
    s.push_str(&format!(
        "circuit: {} {} n={} → {} edges, {} nodes after pruning; m(C) {:.4}, faithfulness {:.4} ({})\n",
        r.settings.method.name(),
        r.settings.select.name(),
        f.n,
        f.edges,
        f.nodes,
        f.metric,
        f.faithfulness,
        r.settings.ablation.name()
    ));
    let scores = &r.scores[&r.settings.method];
    let mut top: Vec<usize> = r.circuit.edges.clone();
    top.sort_by(|&a, &b| scores[b].abs().total_cmp(&scores[a].abs()));
    s.push_str("largest edges of the circuit:\n");
    for &i in top.iter().take(10) {
        s.push_str(&format!("  {:>12.5}  {}\n", scores[i], r.edges[i]));
    }
    for (m, points) in &r.curves {
        let line: Vec<String> = points
            .iter()
            .map(|p| format!("{}:{:.3}", p.n, p.faithfulness))
            .collect();
        s.push_str(&format!(
            "faithfulness {:<15} {}\n",
            m.name(),
            line.join(" ")
        ));
    }
    for (m, c) in &r.correlations {
        let f = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.4}"));
        s.push_str(&format!(
            "vs exact: {:<15} pearson {} spearman {}\n",
            m.name(),
            f(c.pearson),
            f(c.spearman)
        ));
    }
    s
}
