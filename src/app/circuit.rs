//! Circuits for every front end: the request (`patchlab circuit`'s flags,
//! the Circuit tab's form), the report it yields, and the re-selection of
//! the Circuit tab's slider.

use super::request::{object, Fields};
use crate::attribution::circuit::{
    curve_sizes, faithfulness, score_edges, select, Ablation, Circuit, EdgeMethod, EdgeOptions,
    EdgeScores, FaithRuns, Select,
};
use crate::attribution::{Observer, Pair, Progress};
use crate::clock::now_ms;
use crate::engine::graph::GraphPasses;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::graph::GraphLayout;
use crate::model::Tokenizer;
use crate::report::analysis::{pearson, spearman};
use crate::report::circuit::{
    dense, edge_list, read_reference_graph_json, reference_graph_json, Baseline, CircuitChoice,
    CircuitReport, CircuitSettings, EdgeCorrelation, FaithPoint, GraphSizes, CIRCUIT_SCHEMA,
};
use crate::report::{ModelInfo, Prompts};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The circuit's size when none is asked for (the `--edges 200` of docs/cli.md's examples).
pub const DEFAULT_EDGES: usize = 200;
/// Points of each faithfulness curve.
pub const DEFAULT_CURVE_POINTS: usize = 12;

/// A circuit request; every setting left out takes its default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(try_from = "Value")]
pub struct CircuitRequest {
    /// The pairs (one for a single prompt pair; a dataset's otherwise).
    pub pairs: Vec<Prompts>,
    /// The circuit's method: eap, eap-ig (default), clean-corrupted or exact.
    pub method: Option<String>,
    /// EAP-IG's steps (5).
    pub steps: Option<usize>,
    /// greedy (default) or topn.
    pub select: Option<String>,
    /// The circuit's edges (200, or every edge of a smaller graph).
    pub edges: Option<usize>,
    /// Also score every edge by exact patching (and correlate the others with it).
    pub exact: Option<bool>,
    /// Points of each faithfulness curve (12; 0 for none).
    pub curve_points: Option<usize>,
    /// What edges outside the circuit carry: patching (default) or mean-positional.
    pub ablation: Option<String>,
    pub backend: Option<String>,
}

impl TryFrom<Value> for CircuitRequest {
    type Error = Error;

    /// The page's names: `pairs`, `method`, `steps`, `select`, `edges`,
    /// `exact`, `curvePoints`, `ablation`, `backend`.
    fn try_from(v: Value) -> Result<CircuitRequest> {
        let mut f = Fields::new("circuit", object("circuit", v)?);
        let r = CircuitRequest {
            pairs: f
                .get("pairs")?
                .ok_or_else(|| Error::Input("bad circuit request: missing field `pairs`".into()))?,
            method: f.get("method")?,
            steps: f.get("steps")?,
            select: f.get("select")?,
            edges: f.get("edges")?,
            exact: f.get("exact")?,
            curve_points: f.get("curvePoints")?,
            ablation: f.get("ablation")?,
            backend: f.get("backend")?,
        };
        f.end()?;
        Ok(r)
    }
}

/// A request's settings, checked.
struct Plan {
    ablation: Ablation,
    method: EdgeMethod,
    select: Select,
    edges: usize,
    curve_points: usize,
    opts: EdgeOptions,
}

impl CircuitRequest {
    fn plan(&self, layout: &GraphLayout) -> Result<Plan> {
        let method = EdgeMethod::parse(self.method.as_deref().unwrap_or("eap-ig"))?;
        let select = Select::parse(self.select.as_deref().unwrap_or("greedy"))?;
        let total = layout.n_edges();
        let edges = self.edges.unwrap_or(DEFAULT_EDGES.min(total));
        if edges > total {
            return Err(Error::Input(format!(
                "a circuit of {edges} edges was asked for, but this model's graph has only {total} edges"
            )));
        }
        // EAP and EAP-IG always (the curves compare them), the circuit's
        // method, and exact patching when asked for
        let mut methods = vec![EdgeMethod::Eap, EdgeMethod::EapIg, method];
        if self.exact == Some(true) {
            methods.push(EdgeMethod::Exact);
        }
        methods.sort();
        methods.dedup();
        let opts = EdgeOptions {
            methods,
            steps: self.steps.unwrap_or(5),
        };
        opts.check()?;
        Ok(Plan {
            ablation: Ablation::parse(self.ablation.as_deref().unwrap_or("patching"))?,
            method,
            select,
            edges,
            curve_points: self.curve_points.unwrap_or(DEFAULT_CURVE_POINTS),
            opts,
        })
    }
}

/// The checked pairs of a request.
fn pairs(tok: &Tokenizer, cfg: &crate::model::Config, prompts: &[Prompts]) -> Result<Vec<Pair>> {
    if prompts.is_empty() {
        return Err(Error::Input(
            "a circuit needs at least one prompt pair".into(),
        ));
    }
    prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Pair::from_prompts(tok, cfg, p).map_err(|e| {
                if prompts.len() == 1 {
                    e
                } else {
                    Error::Input(format!("pair {}: {e}", i + 1))
                }
            })
        })
        .collect()
}

/// Scores the request's pairs, picks the circuit, measures its
/// faithfulness and every method's curve: the circuit report. `engine`
/// runs exact patching's tails; `host` the graph's own passes (the front
/// ends give the same engine for both).
pub async fn run_circuit<E: Engine, G: GraphPasses>(
    engine: &E,
    host: &G,
    model_name: &str,
    tok: &Tokenizer,
    req: &CircuitRequest,
    obs: &mut dyn Observer,
) -> Result<CircuitReport> {
    let cfg = host.graph_config().clone();
    let layout = GraphLayout::new(&cfg);
    let plan = req.plan(&layout)?;
    let pairs = pairs(tok, &cfg, &req.pairs)?;
    let mut timings = BTreeMap::new();
    let t0 = now_ms();
    let scores = score_edges(engine, host, &pairs, &plan.opts, obs).await?;
    timings.insert("scores".to_string(), now_ms() - t0);
    let t1 = now_ms();
    let runs = FaithRuns::new(host, &pairs, plan.ablation).await?;
    let (circuit, point) = pick(host, &runs, &scores, plan.method, plan.select, plan.edges).await?;
    let sizes = if plan.curve_points == 0 {
        vec![]
    } else {
        curve_sizes(layout.n_edges(), plan.curve_points)
    };
    let mut curves = BTreeMap::new();
    let total = (sizes.len() * scores.scores.len()) as u64;
    let mut done = 0;
    for &m in scores.scores.keys() {
        let mut points = Vec::with_capacity(sizes.len());
        for &n in &sizes {
            points.push(pick(host, &runs, &scores, m, plan.select, n).await?.1);
            done += 1;
            if !obs.progress(&Progress {
                stage: "circuit: faithfulness curves",
                done,
                total,
            }) {
                return Err(Error::Cancelled);
            }
        }
        curves.insert(m, points);
    }
    timings.insert("faithfulness".to_string(), now_ms() - t1);
    let lists: BTreeMap<EdgeMethod, Vec<f32>> = scores
        .scores
        .iter()
        .map(|(&m, s)| (m, edge_list(&layout, s)))
        .collect();
    let correlations = match lists.get(&EdgeMethod::Exact) {
        Some(exact) => lists
            .iter()
            .filter(|(&m, _)| m != EdgeMethod::Exact)
            .map(|(&m, s)| {
                (
                    m,
                    EdgeCorrelation {
                        pearson: pearson(s, exact),
                        spearman: spearman(s, exact),
                    },
                )
            })
            .collect(),
        None => BTreeMap::new(),
    };
    Ok(CircuitReport {
        schema: CIRCUIT_SCHEMA,
        model: ModelInfo::of(model_name, &cfg),
        pairs: req.pairs.clone(),
        tokens: pairs[0].tokens(tok),
        settings: CircuitSettings {
            methods: plan.opts.methods.clone(),
            steps: plan.opts.steps,
            method: plan.method,
            select: plan.select,
            edges: plan.edges,
            curve_points: plan.curve_points,
            ablation: plan.ablation,
            backend: engine.backend().to_string(),
        },
        metric: Baseline {
            clean: scores.clean,
            corrupt: scores.corrupt,
        },
        graph: GraphSizes {
            n_forward: layout.n_forward(),
            n_backward: layout.n_backward(),
            n_edges: layout.n_edges(),
        },
        edges: layout
            .edges()
            .into_iter()
            .map(|e| layout.edge_name(e))
            .collect(),
        scores: lists,
        circuit: choice(&layout, &circuit, point),
        curves,
        correlations,
        timings_ms: timings,
    })
}

/// Selects and evaluates one circuit.
async fn pick(
    host: &impl GraphPasses,
    runs: &FaithRuns,
    scores: &EdgeScores,
    method: EdgeMethod,
    how: Select,
    n: usize,
) -> Result<(Circuit, FaithPoint)> {
    let s = scores
        .scores
        .get(&method)
        .ok_or_else(|| Error::Input(format!("the {} scores were not computed", method.name())))?;
    let c = select(&scores.layout, s, how, n)?;
    let f = faithfulness(host, runs, &c, n).await?;
    Ok((c, f))
}

fn choice(layout: &GraphLayout, c: &Circuit, point: FaithPoint) -> CircuitChoice {
    let nb = layout.n_backward();
    CircuitChoice {
        edges: layout
            .edges()
            .iter()
            .enumerate()
            .filter(|(_, e)| c.edges[e.from * nb + e.to])
            .map(|(i, _)| i)
            .collect(),
        nodes: (0..layout.n_forward())
            .filter(|&i| c.nodes[i])
            .map(|i| layout.node_name(layout.node(i)))
            .collect(),
        faithfulness: point,
    }
}

/// The report's scores of `method` as a dense matrix of the model's graph.
fn report_scores(
    layout: &GraphLayout,
    r: &CircuitReport,
    method: EdgeMethod,
) -> Result<EdgeScores> {
    if r.graph.n_edges != layout.n_edges()
        || r.model.n_layers != layout.n_layers
        || r.model.n_heads != layout.n_heads
    {
        return Err(Error::Input(format!(
            "this circuit report is for another model ({} layers, {} heads); the loaded one has {} layers, {} heads",
            r.model.n_layers, r.model.n_heads, layout.n_layers, layout.n_heads
        )));
    }
    let s = r.scores.get(&method).ok_or_else(|| {
        Error::Input(format!(
            "this circuit report has no {} scores (it has {})",
            method.name(),
            r.scores
                .keys()
                .map(|m| m.name())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    Ok(EdgeScores {
        layout: layout.clone(),
        scores: BTreeMap::from([(method, dense(layout, s, 0.0))]),
        clean: r.metric.clean,
        corrupt: r.metric.corrupt,
        pairs: r.pairs.len(),
    })
}

/// The circuit of `n` edges a report's scores select, without a model
/// (results-only pages): edges and nodes, no faithfulness.
pub fn reselect(r: &CircuitReport, method: &str, how: &str, n: usize) -> Result<CircuitChoice> {
    let layout = GraphLayout {
        n_layers: r.model.n_layers,
        n_heads: r.model.n_heads,
    };
    let method = EdgeMethod::parse(method)?;
    let scores = report_scores(&layout, r, method)?;
    let c = select(&layout, &scores.scores[&method], Select::parse(how)?, n)?;
    let point = FaithPoint {
        n,
        edges: c.n_edges(),
        nodes: c.n_nodes(),
        metric: f32::NAN,
        faithfulness: f32::NAN,
    };
    Ok(choice(&layout, &c, point))
}

/// [`reselect`] with the faithfulness of the new circuit, on the loaded
/// model (the Circuit tab's slider).
pub async fn reevaluate(
    host: &impl GraphPasses,
    tok: &Tokenizer,
    r: &CircuitReport,
    method: &str,
    how: &str,
    n: usize,
) -> Result<CircuitChoice> {
    let cfg = host.graph_config();
    let layout = GraphLayout::new(cfg);
    let method = EdgeMethod::parse(method)?;
    let scores = report_scores(&layout, r, method)?;
    let pairs = pairs(tok, cfg, &r.pairs)?;
    let runs = FaithRuns::new(host, &pairs, r.settings.ablation).await?;
    let (c, point) = pick(host, &runs, &scores, method, Select::parse(how)?, n).await?;
    Ok(choice(&layout, &c, point))
}

/// The reference's graph file (`Graph.to_json`) of a report's `method`
/// scores with the circuit `picked` (indices into the report's edges).
pub fn graph_file(r: &CircuitReport, method: EdgeMethod, picked: &[usize]) -> Result<String> {
    let layout = GraphLayout {
        n_layers: r.model.n_layers,
        n_heads: r.model.n_heads,
    };
    let scores = report_scores(&layout, r, method)?;
    let n = r.edges.len();
    let mut in_edges = vec![false; n];
    for &i in picked {
        *in_edges.get_mut(i).ok_or_else(|| {
            Error::Input(format!(
                "edge index {i} is out of range (the graph has {n} edges)"
            ))
        })? = true;
    }
    let mut c = Circuit {
        edges: dense(&layout, &in_edges, false),
        nodes: vec![false; layout.n_forward()],
    };
    crate::attribution::circuit::select::prune(&layout, &mut c);
    let kept: Vec<bool> = layout
        .edges()
        .iter()
        .map(|e| c.edges[e.from * layout.n_backward() + e.to])
        .collect();
    Ok(reference_graph_json(
        &layout,
        r.model.d_model,
        &edge_list(&layout, &scores.scores[&method]),
        &kept,
        &c.nodes,
    ))
}

/// The faithfulness on `prompts` of the circuit a reference graph file
/// (`Graph.to_json`, from the lab or from EAP-IG) marks in_graph, pruned
/// as the reference's `evaluate_graph` prunes it. Refuses a file of another
/// model shape.
pub async fn evaluate_graph_file(
    host: &impl GraphPasses,
    tok: &Tokenizer,
    prompts: &[Prompts],
    text: &str,
    ablation: Ablation,
) -> Result<FaithPoint> {
    let cfg = host.graph_config();
    let layout = GraphLayout::new(cfg);
    let (_, in_graph) = read_reference_graph_json(&layout, cfg.d_model, text)?;
    let pairs = pairs(tok, cfg, prompts)?;
    let runs = FaithRuns::new(host, &pairs, ablation).await?;
    let mut c = Circuit {
        edges: dense(&layout, &in_graph, false),
        nodes: vec![false; layout.n_forward()],
    };
    let n = c.n_edges();
    crate::attribution::circuit::select::prune(&layout, &mut c);
    faithfulness(host, &runs, &c, n).await
}
