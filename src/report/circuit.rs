//! The circuit report (`patchlab circuit`, the page's Circuit tab, its
//! exports and embeds), its vocabulary, and the reference's graph file:
//! `hannamw/EAP-IG`'s `Graph.to_json` layout, written and read.

use super::{ModelInfo, Prompts, Tokens};
use crate::error::{Error, Result};
use crate::model::graph::GraphLayout;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The circuit report's schema.
pub const CIRCUIT_SCHEMA: u32 = 1;

/// A way to score edges (docs/methods.md, "Circuits").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EdgeMethod {
    /// Δz_u · ∂m/∂x_v at the clean run (the reference's `EAP`).
    #[serde(rename = "eap")]
    Eap,
    /// The gradient averaged over `steps` runs whose input embeddings go
    /// from corrupt to clean (`EAP-IG-inputs`).
    #[serde(rename = "eap-ig")]
    EapIg,
    /// The gradient averaged over runs with one node's output (the input,
    /// a layer's heads, an MLP) held between corrupt and clean, for every
    /// node and step (`EAP-IG-activations`).
    #[serde(rename = "eap-ig-activations")]
    EapIgActivations,
    /// The gradient averaged over the clean and the corrupt run (`clean-corrupted`).
    #[serde(rename = "clean-corrupted")]
    CleanCorrupted,
    /// The metric change when only edge u → v is patched (`exact`).
    #[serde(rename = "exact")]
    Exact,
}

impl EdgeMethod {
    pub const ALL: [EdgeMethod; 5] = [
        EdgeMethod::Eap,
        EdgeMethod::EapIg,
        EdgeMethod::EapIgActivations,
        EdgeMethod::CleanCorrupted,
        EdgeMethod::Exact,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EdgeMethod::Eap => "eap",
            EdgeMethod::EapIg => "eap-ig",
            EdgeMethod::EapIgActivations => "eap-ig-activations",
            EdgeMethod::CleanCorrupted => "clean-corrupted",
            EdgeMethod::Exact => "exact",
        }
    }

    /// Also takes the reference's names (`EAP`, `EAP-IG-inputs`).
    pub fn parse(s: &str) -> Result<EdgeMethod> {
        let s = s.trim().to_ascii_lowercase();
        let s = if s == "eap-ig-inputs" { "eap-ig" } else { &s };
        EdgeMethod::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                Error::Input(format!(
                    "unknown edge method {s:?}; choose eap, eap-ig, eap-ig-activations, clean-corrupted or exact"
                ))
            })
    }
}

/// How a circuit's edges are chosen from scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Select {
    /// The n edges of largest |score| (`Graph.apply_topn`).
    Topn,
    /// From the logits up, the best edge into a node already in the
    /// circuit (`Graph.apply_greedy`).
    Greedy,
}

impl Select {
    pub fn parse(s: &str) -> Result<Select> {
        match s.trim().to_ascii_lowercase().as_str() {
            "topn" | "top-n" => Ok(Select::Topn),
            "greedy" => Ok(Select::Greedy),
            other => Err(Error::Input(format!(
                "unknown selection {other:?}; choose greedy or topn"
            ))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Select::Topn => "topn",
            Select::Greedy => "greedy",
        }
    }
}

/// What the edges outside a circuit carry in a faithfulness run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ablation {
    /// The corrupt prompt's outputs (the reference's `patching`).
    #[default]
    Patching,
    /// Each node's output averaged, position by position, over the pairs'
    /// clean prompts (the reference's `mean-positional`).
    MeanPositional,
}

impl Ablation {
    pub fn parse(s: &str) -> Result<Ablation> {
        match s.trim().to_ascii_lowercase().as_str() {
            "patching" => Ok(Ablation::Patching),
            "mean-positional" | "mean" => Ok(Ablation::MeanPositional),
            other => Err(Error::Input(format!(
                "unknown ablation {other:?}; choose patching or mean-positional"
            ))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Ablation::Patching => "patching",
            Ablation::MeanPositional => "mean-positional",
        }
    }
}

/// One circuit's faithfulness (a point of a curve).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FaithPoint {
    /// Edges asked for.
    pub n: usize,
    /// Edges and upstream nodes kept after pruning.
    pub edges: usize,
    pub nodes: usize,
    /// m(C): the clean prompts with every edge outside the circuit patched
    /// (the mean over pairs).
    pub metric: f32,
    /// (m(C) − m_corrupt) / (m_clean − m_corrupt).
    pub faithfulness: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CircuitSettings {
    /// The methods scored (`scores`' keys).
    pub methods: Vec<EdgeMethod>,
    /// EAP-IG's steps.
    pub steps: usize,
    /// The circuit's method, selection and size.
    pub method: EdgeMethod,
    pub select: Select,
    pub edges: usize,
    /// Points of each faithfulness curve.
    pub curve_points: usize,
    /// What edges outside the circuit carry.
    #[serde(default)]
    pub ablation: Ablation,
    pub backend: String,
}

/// The graph's sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphSizes {
    pub n_forward: usize,
    pub n_backward: usize,
    pub n_edges: usize,
}

/// The chosen circuit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CircuitChoice {
    /// Indices into [`CircuitReport::edges`].
    pub edges: Vec<usize>,
    /// Upstream nodes kept (`input`, `a3.h5`, `m2`), in graph order.
    pub nodes: Vec<String>,
    pub faithfulness: FaithPoint,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EdgeCorrelation {
    pub pearson: Option<f64>,
    pub spearman: Option<f64>,
}

/// What `patchlab circuit` writes (circuit.json) and the Circuit tab shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CircuitReport {
    pub schema: u32,
    pub model: ModelInfo,
    /// The prompt pairs (one, or a dataset's).
    pub pairs: Vec<Prompts>,
    /// The first pair's tokens.
    pub tokens: Tokens,
    pub settings: CircuitSettings,
    /// Mean clean and corrupt metrics over the pairs.
    pub metric: Baseline,
    pub graph: GraphSizes,
    /// Every edge's name, in the reference's order (`a9.h6->a10.h7<q>`).
    pub edges: Vec<String>,
    /// scores[method][i]: edge i's score (the mean over pairs).
    pub scores: BTreeMap<EdgeMethod, Vec<f32>>,
    pub circuit: CircuitChoice,
    /// Faithfulness against circuit size, per method, with the circuit's selection.
    pub curves: BTreeMap<EdgeMethod, Vec<FaithPoint>>,
    /// Each method's scores against exact edge patching's (when computed).
    pub correlations: BTreeMap<EdgeMethod, EdgeCorrelation>,
    #[serde(default)]
    pub timings_ms: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub clean: f32,
    pub corrupt: f32,
}

impl CircuitReport {
    /// Reads a circuit report, refusing other files with a clear message.
    pub fn from_json(text: &str) -> Result<CircuitReport> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::Input(format!("not a circuit report (bad JSON: {e})")))?;
        if v.get("edges").is_none() || v.get("circuit").is_none() {
            return Err(Error::Input(
                "not a circuit report: it lacks `edges` and `circuit` (an analysis report or a graph \
                 file? load a circuit.json that `patchlab circuit` or the Circuit tab wrote)"
                    .into(),
            ));
        }
        let r: CircuitReport = serde_json::from_value(v)
            .map_err(|e| Error::Input(format!("bad circuit report: {e}")))?;
        if r.schema != CIRCUIT_SCHEMA {
            return Err(Error::Input(format!(
                "circuit report schema {} is not the {CIRCUIT_SCHEMA} this version reads",
                r.schema
            )));
        }
        for (m, s) in &r.scores {
            if s.len() != r.edges.len() {
                return Err(Error::Input(format!(
                    "bad circuit report: {} scores of {} for {} edges",
                    s.len(),
                    m.name(),
                    r.edges.len()
                )));
            }
        }
        Ok(r)
    }
}

/// The graph file of the reference (`Graph.to_json`): `cfg`, `nodes`
/// (name → in_graph) and `edges` (name → score, in_graph), in the
/// reference's order. `scores` and `in_edges` follow [`GraphLayout::edges`];
/// `in_nodes` the forward indices (the logits are always in).
pub fn reference_graph_json(
    layout: &GraphLayout,
    d_model: usize,
    scores: &[f32],
    in_edges: &[bool],
    in_nodes: &[bool],
) -> String {
    let q = |s: &str| serde_json::to_string(s).expect("a string serialises");
    let mut out = format!(
        "{{\"cfg\": {{\"n_layers\": {}, \"n_heads\": {}, \"parallel_attn_mlp\": false, \"d_model\": {d_model}}}, \"nodes\": {{",
        layout.n_layers, layout.n_heads
    );
    let mut names: Vec<(String, bool)> = (0..layout.n_forward())
        .map(|i| (layout.node_name(layout.node(i)), in_nodes[i]))
        .collect();
    names.push(("logits".into(), true));
    let nodes: Vec<String> = names
        .iter()
        .map(|(n, b)| format!("{}: {{\"in_graph\": {b}}}", q(n)))
        .collect();
    out.push_str(&nodes.join(", "));
    out.push_str("}, \"edges\": {");
    let edges: Vec<String> = layout
        .edges()
        .into_iter()
        .zip(scores)
        .zip(in_edges)
        .map(|((e, s), b)| {
            let score = if s.is_finite() {
                serde_json::to_string(s).expect("a float serialises")
            } else {
                "NaN".into()
            };
            format!(
                "{}: {{\"score\": {score}, \"in_graph\": {b}}}",
                q(&layout.edge_name(e))
            )
        })
        .collect();
    out.push_str(&edges.join(", "));
    out.push_str("}}");
    out
}

/// A reference graph file read back: each edge's score and in_graph, in
/// [`GraphLayout::edges`] order. Refuses a graph of another model shape.
pub fn read_reference_graph_json(
    layout: &GraphLayout,
    d_model: usize,
    text: &str,
) -> Result<(Vec<f32>, Vec<bool>)> {
    // the reference writes NaN for unscored edges, which strict JSON lacks
    let text = text.replace("NaN", "null");
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Input(format!("not a graph file (bad JSON: {e})")))?;
    let (Some(cfg), Some(edges)) = (v.get("cfg"), v.get("edges").and_then(|e| e.as_object()))
    else {
        return Err(Error::Input(
            "not a graph file: Graph.to_json writes `cfg`, `nodes` and `edges`".into(),
        ));
    };
    let num = |k: &str| cfg.get(k).and_then(|x| x.as_u64()).map(|x| x as usize);
    let theirs = (num("n_layers"), num("n_heads"), num("d_model"));
    if theirs != (Some(layout.n_layers), Some(layout.n_heads), Some(d_model)) {
        let show = |x: Option<usize>| x.map_or("?".to_string(), |x| x.to_string());
        return Err(Error::Input(format!(
            "this graph file is for another model: {} layers, {} heads, d_model {}; the loaded model has \
             {} layers, {} heads, d_model {}",
            show(theirs.0),
            show(theirs.1),
            show(theirs.2),
            layout.n_layers,
            layout.n_heads,
            d_model
        )));
    }
    if cfg.get("parallel_attn_mlp").and_then(|x| x.as_bool()) == Some(true) {
        return Err(Error::Input(
            "this graph file is for a model with parallel attention and MLP; GPT-2's are sequential".into(),
        ));
    }
    let all = layout.edges();
    let mut index = std::collections::HashMap::with_capacity(all.len());
    for (i, e) in all.iter().enumerate() {
        index.insert(layout.edge_name(*e), i);
    }
    let mut scores = vec![f32::NAN; all.len()];
    let mut in_graph = vec![false; all.len()];
    for (name, info) in edges {
        let &i = index.get(name.as_str()).ok_or_else(|| {
            Error::Input(format!(
                "the graph file's edge {name:?} is not an edge of this model"
            ))
        })?;
        scores[i] = info
            .get("score")
            .and_then(|s| s.as_f64())
            .map_or(f32::NAN, |s| s as f32);
        in_graph[i] = info
            .get("in_graph")
            .and_then(|b| b.as_bool())
            .unwrap_or(false);
    }
    Ok((scores, in_graph))
}

/// Per-edge scores (layout order) from a dense [n_forward × n_backward] matrix.
pub fn edge_list(layout: &GraphLayout, dense: &[f32]) -> Vec<f32> {
    let nb = layout.n_backward();
    layout
        .edges()
        .iter()
        .map(|e| dense[e.from * nb + e.to])
        .collect()
}

/// A dense [n_forward × n_backward] matrix from per-edge values (layout order).
pub fn dense<T: Copy>(layout: &GraphLayout, per_edge: &[T], zero: T) -> Vec<T> {
    let nb = layout.n_backward();
    let mut out = vec![zero; layout.n_forward() * nb];
    for (e, &v) in layout.edges().iter().zip(per_edge) {
        out[e.from * nb + e.to] = v;
    }
    out
}
