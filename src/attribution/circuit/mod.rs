//! Circuits: edge attribution patching (EAP), EAP with integrated gradients
//! on the inputs (EAP-IG), the reference's "clean-corrupted" variant, exact
//! edge patching, circuit selection and faithfulness, as `hannamw/EAP-IG`
//! defines them (docs/methods.md, "Circuits").
//!
//! The graph's small passes (one forward and backward per IG step, one
//! patched forward per faithfulness point) run on an engine's graph passes
//! ([`GraphPasses`], `host` below, the CPU or the GPU engine); exact edge patching's tails — one per
//! edge, 32,491 on GPT-2 small — run on the engine in use, batched like
//! neuron patching (`Engine::resid_metrics`).

pub mod select;

use super::{Observer, Pair, Tracker};
use crate::engine::graph::{EdgePatch, GraphOutputs, GraphPass, GraphPasses, Hold};
use crate::engine::{Engine, Start};
use crate::error::{Error, Result};
use crate::model::graph::{GraphLayout, Qkv, Slot};
use std::collections::BTreeMap;

pub use crate::report::circuit::{Ablation, EdgeMethod, FaithPoint, Select};
pub use select::{select, Circuit};

/// What to score.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeOptions {
    pub methods: Vec<EdgeMethod>,
    /// EAP-IG's steps (α_k = k / steps, k = 0 … steps − 1).
    pub steps: usize,
}

impl Default for EdgeOptions {
    fn default() -> Self {
        EdgeOptions {
            methods: vec![EdgeMethod::Eap, EdgeMethod::EapIg],
            steps: 5,
        }
    }
}

impl EdgeOptions {
    pub fn check(&self) -> Result<()> {
        if self.steps < 1 {
            return Err(Error::Input(
                "EAP-IG needs at least 1 step (--steps 5 is the paper's setting)".into(),
            ));
        }
        if self.methods.is_empty() {
            return Err(Error::Input("choose at least one edge method".into()));
        }
        Ok(())
    }
}

/// Edge scores of one or more pairs (their mean, as the reference averages
/// over a dataset): per method a dense [n_forward, n_backward] matrix in
/// the reference's layout, zero where there is no edge.
#[derive(Debug, Clone)]
pub struct EdgeScores {
    pub layout: GraphLayout,
    pub scores: BTreeMap<EdgeMethod, Vec<f32>>,
    /// Mean clean and corrupt metrics over the pairs.
    pub clean: f32,
    pub corrupt: f32,
    pub pairs: usize,
}

/// A pair's clean and corrupt graph runs (`R`: the graph engine's runs).
pub struct PairRuns<R> {
    pub pair: Pair,
    pub clean: R,
    pub corrupt: R,
}

impl<R: GraphOutputs> PairRuns<R> {
    /// Both runs of a pair (with slot gradients when `grad`).
    pub async fn new<G>(host: &G, pair: &Pair, grad: bool) -> Result<PairRuns<R>>
    where
        G: GraphPasses<GraphRun = R>,
    {
        PairRuns::with_grads(host, pair, grad, grad).await
    }

    /// Both runs, each with slot gradients or not.
    pub async fn with_grads<G>(
        host: &G,
        pair: &Pair,
        clean: bool,
        corrupt: bool,
    ) -> Result<PairRuns<R>>
    where
        G: GraphPasses<GraphRun = R>,
    {
        let pass = |grad| GraphPass {
            grad,
            ..GraphPass::default()
        };
        Ok(PairRuns {
            clean: host
                .graph_forward(&pair.clean, &pair.metric, pass(clean))
                .await?,
            corrupt: host
                .graph_forward(&pair.corrupt, &pair.metric, pass(corrupt))
                .await?,
            pair: pair.clone(),
        })
    }

    /// Δz = z(corrupt) − z(clean) of every node, [n_forward, T, d].
    pub fn deltas(&self) -> Vec<f32> {
        self.corrupt
            .outputs()
            .iter()
            .zip(self.clean.outputs())
            .map(|(c, k)| c - k)
            .collect()
    }
}

/// Checks that a dataset's pairs can share one graph: the reference pads a
/// batch to one length, which changes what each position means; the lab
/// asks for equal lengths instead.
pub fn check_pairs(pairs: &[Pair]) -> Result<()> {
    let Some(first) = pairs.first() else {
        return Err(Error::Input("no prompt pairs to score".into()));
    };
    if let Some((i, p)) = pairs
        .iter()
        .enumerate()
        .find(|(_, p)| p.clean.len() != first.clean.len())
    {
        return Err(Error::Input(format!(
            "the pairs of one circuit must have the same number of tokens: pair 1 has {} and pair {} has {}; \
             use a template whose prompts tokenize to one length, or score the pairs separately",
            first.clean.len(),
            i + 1,
            p.clean.len()
        )));
    }
    Ok(())
}

/// Work units of scoring `pairs` pairs of `t` tokens: one per graph pass,
/// one per exact tail.
pub fn work(layout: &GraphLayout, opts: &EdgeOptions, pairs: usize) -> u64 {
    let mut per = 2u64;
    for m in &opts.methods {
        per += match m {
            EdgeMethod::EapIg => opts.steps as u64,
            EdgeMethod::EapIgActivations => ((1 + 2 * layout.n_layers) * opts.steps) as u64,
            EdgeMethod::Exact => layout.n_edges() as u64 / 64,
            _ => 0,
        };
    }
    per * pairs as u64
}

/// Scores every edge of the graph for each pair and method; the mean over pairs.
pub async fn score_edges<E: Engine, G: GraphPasses>(
    engine: &E,
    host: &G,
    pairs: &[Pair],
    opts: &EdgeOptions,
    obs: &mut dyn Observer,
) -> Result<EdgeScores> {
    opts.check()?;
    check_pairs(pairs)?;
    let layout = GraphLayout::new(host.graph_config());
    let (nf, nb) = (layout.n_forward(), layout.n_backward());
    let mut tracker = Tracker::new(obs, work(&layout, opts, pairs.len()));
    let mut sums: BTreeMap<EdgeMethod, Vec<f64>> = opts
        .methods
        .iter()
        .map(|&m| (m, vec![0.0; nf * nb]))
        .collect();
    let (mut clean, mut corrupt) = (0f64, 0f64);
    // EAP needs the clean run's slot gradients, clean-corrupted both runs'
    let has = |m: EdgeMethod| opts.methods.contains(&m);
    let grad_clean = has(EdgeMethod::Eap) || has(EdgeMethod::CleanCorrupted);
    let grad_corrupt = has(EdgeMethod::CleanCorrupted);
    for pair in pairs {
        tracker.pause().await?;
        let runs = PairRuns::with_grads(host, pair, grad_clean, grad_corrupt).await?;
        tracker.advance("edges: clean and corrupt runs", 2)?;
        clean += runs.clean.metric() as f64;
        corrupt += runs.corrupt.metric() as f64;
        let delta = runs.deltas();
        for &method in &opts.methods {
            let s = match method {
                EdgeMethod::Eap => {
                    host.edge_products(&delta, grads(&runs.clean)?, nf, nb)
                        .await?
                }
                EdgeMethod::CleanCorrupted => {
                    let mean: Vec<f32> = grads(&runs.clean)?
                        .iter()
                        .zip(grads(&runs.corrupt)?)
                        .map(|(a, b)| (a + b) / 2.0)
                        .collect();
                    host.edge_products(&delta, &mean, nf, nb).await?
                }
                EdgeMethod::EapIg => {
                    let g = ig_input_gradients(host, &runs, opts.steps, &mut tracker).await?;
                    host.edge_products(&delta, &g, nf, nb).await?
                }
                EdgeMethod::EapIgActivations => {
                    let g = ig_activation_gradients(host, &runs, opts.steps, &mut tracker).await?;
                    host.edge_products(&delta, &g, nf, nb).await?
                }
                EdgeMethod::Exact => {
                    exact_scores(engine, host, &runs, &delta, &mut tracker).await?
                }
            };
            let sum = sums.get_mut(&method).expect("a sum per method");
            for (i, (acc, v)) in sum.iter_mut().zip(s).enumerate() {
                if layout.is_edge(i / nb, i % nb) {
                    *acc += v as f64;
                }
            }
        }
    }
    let n = pairs.len() as f64;
    Ok(EdgeScores {
        scores: sums
            .into_iter()
            .map(|(m, s)| (m, s.into_iter().map(|v| (v / n) as f32).collect()))
            .collect(),
        layout,
        clean: (clean / n) as f32,
        corrupt: (corrupt / n) as f32,
        pairs: pairs.len(),
    })
}

fn grads(run: &impl GraphOutputs) -> Result<&[f32]> {
    run.grads().ok_or_else(|| {
        Error::Backend("a graph run without the slot gradients it was asked for".into())
    })
}

/// EAP-IG's gradient: the mean over k = 0 … steps − 1 of ∂m/∂x_v at the
/// clean prompt with `hook_embed` = e_corrupt + (k / steps)(e_clean − e_corrupt).
async fn ig_input_gradients<G: GraphPasses>(
    host: &G,
    runs: &PairRuns<G::GraphRun>,
    steps: usize,
    tracker: &mut Tracker<'_>,
) -> Result<Vec<f32>> {
    let t = runs.clean.len();
    let td = t * host.graph_config().d_model;
    let (e_clean, e_corrupt) = (&runs.clean.outputs()[..td], &runs.corrupt.outputs()[..td]);
    let mut sum = GradSum::default();
    // as many steps per call as the engine batches into one pass
    let per_call = host.graph_batch(t);
    let all: Vec<usize> = (0..steps).collect();
    for ks in all.chunks(per_call) {
        tracker.pause().await?;
        let embeds: Vec<f32> = ks
            .iter()
            .flat_map(|&k| {
                let alpha = k as f32 / steps as f32;
                e_corrupt
                    .iter()
                    .zip(e_clean)
                    .map(move |(c, k)| c + alpha * (k - c))
            })
            .collect();
        let grads = host
            .graph_gradients(&runs.pair.clean, &runs.pair.metric, &embeds)
            .await?;
        for g in &grads {
            sum.add_grads(g);
        }
        tracker.advance("edges: EAP-IG steps", ks.len() as u64)?;
    }
    Ok(sum.mean())
}

/// EAP-IG-activations' gradient, as the reference computes it: for each
/// node of [input, layer 0's heads, MLP 0, layer 1's heads, …] and each
/// k = 1 … steps, the clean prompt with that node's output held at
/// α·z(clean) + (1 − α)·z(corrupt), α = k / steps (no gradient through the
/// held node); the mean of ∂m/∂x_v over all (1 + 2L)·steps passes.
async fn ig_activation_gradients<G: GraphPasses>(
    host: &G,
    runs: &PairRuns<G::GraphRun>,
    steps: usize,
    tracker: &mut Tracker<'_>,
) -> Result<Vec<f32>> {
    let cfg = host.graph_config();
    let layout = GraphLayout::new(cfg);
    let td = runs.clean.len() * cfg.d_model;
    // the outputs of forward nodes i..j, [j − i, T, d]
    let span = |o: &[f32], i: usize, j: usize| o[i * td..j * td].to_vec();
    let mut nodes = vec![(0usize, 1usize, None)];
    for layer in 0..cfg.n_layers {
        let first = layout.forward_index(crate::model::graph::Node::Head { layer, head: 0 });
        nodes.push((first, first + cfg.n_heads, Some((layer, true))));
        let mlp = layout.forward_index(crate::model::graph::Node::Mlp { layer });
        nodes.push((mlp, mlp + 1, Some((layer, false))));
    }
    let mut sum = GradSum::default();
    for (i, j, which) in nodes {
        let (clean, corrupt) = (
            span(runs.clean.outputs(), i, j),
            span(runs.corrupt.outputs(), i, j),
        );
        for k in 1..=steps {
            tracker.pause().await?;
            let alpha = k as f32 / steps as f32;
            let values: Vec<f32> = clean
                .iter()
                .zip(&corrupt)
                .map(|(c, k)| alpha * c + (1.0 - alpha) * k)
                .collect();
            let pass = match which {
                None => GraphPass {
                    embed: Some(&values),
                    grad: true,
                    ..GraphPass::default()
                },
                Some((layer, heads)) => GraphPass {
                    hold: Some(if heads {
                        Hold::Heads {
                            layer,
                            values: &values,
                        }
                    } else {
                        Hold::Mlp {
                            layer,
                            values: &values,
                        }
                    }),
                    grad: true,
                    ..GraphPass::default()
                },
            };
            sum.add(
                &host
                    .graph_forward(&runs.pair.clean, &runs.pair.metric, pass)
                    .await?,
            )?;
            tracker.advance("edges: EAP-IG-activations steps", 1)?;
        }
    }
    Ok(sum.mean())
}

/// A running sum of slot gradients.
#[derive(Default)]
struct GradSum {
    sum: Vec<f32>,
    n: usize,
}

impl GradSum {
    fn add(&mut self, run: &impl GraphOutputs) -> Result<()> {
        self.add_grads(grads(run)?);
        Ok(())
    }
    fn add_grads(&mut self, g: &[f32]) {
        if self.sum.is_empty() {
            self.sum = g.to_vec();
        } else {
            self.sum.iter_mut().zip(g).for_each(|(s, v)| *s += v);
        }
        self.n += 1;
    }
    fn mean(self) -> Vec<f32> {
        let n = self.n.max(1) as f32;
        self.sum.into_iter().map(|v| v / n).collect()
    }
}

/// Perturbations per engine call: up to 1024, fewer for long prompts, so
/// that a batch of them ([k, T − first_diff, d_model] floats) stays under 64 MB.
fn edges_per_call(rows: usize, d_model: usize) -> usize {
    ((16 << 20) / (rows * d_model).max(1)).clamp(1, 1024)
}

/// Exact edge patching: for every edge u → v, m(clean with x_v += Δz_u) − m(clean).
async fn exact_scores<E: Engine, G: GraphPasses>(
    engine: &E,
    host: &G,
    runs: &PairRuns<G::GraphRun>,
    delta: &[f32],
    tracker: &mut Tracker<'_>,
) -> Result<Vec<f32>> {
    let cfg = host.graph_config();
    let layout = GraphLayout::new(cfg);
    let (t, d, h) = (runs.clean.len(), cfg.d_model, cfg.n_heads);
    let first_diff = runs.pair.first_diff;
    let nb = layout.n_backward();
    tracker.pause().await?;
    let base = engine.run(&runs.pair.clean, &runs.pair.metric).await?;
    let m0 = engine.metric(&base);
    // Δz_u at rows first_diff..T, nodes 0..k, [k, n, d]
    let rows = |from: usize, to: usize| -> Vec<f32> {
        (from..to)
            .flat_map(|u| {
                delta[(u * t + first_diff) * d..(u + 1) * t * d]
                    .iter()
                    .copied()
            })
            .collect()
    };
    let mut out = vec![0f32; layout.n_forward() * nb];
    // one slot kind at a time: (slot, start, slots fed per upstream node)
    let mut kinds = Vec::new();
    for layer in 0..cfg.n_layers {
        for qkv in Qkv::ALL {
            kinds.push((
                Slot::Head {
                    layer,
                    head: 0,
                    qkv,
                },
                Start::Mid(layer),
                h,
            ));
        }
        kinds.push((Slot::Mlp { layer }, Start::Post(layer), 1));
    }
    kinds.push((Slot::Logits, Start::Post(cfg.n_layers - 1), 1));
    for (slot, start, per_node) in kinds {
        let prev = layout.prev_index(slot);
        let chunk = (edges_per_call(t - first_diff, d) / per_node).max(1);
        for u0 in (0..prev).step_by(chunk) {
            let u1 = (u0 + chunk).min(prev);
            tracker.pause().await?;
            let p = host
                .edge_perturbations(&runs.clean, slot, first_diff, &rows(u0, u1))
                .await?;
            let ms = engine.resid_metrics(&base, start, first_diff, &p).await?;
            debug_assert_eq!(ms.len(), (u1 - u0) * per_node);
            for (i, m) in ms.into_iter().enumerate() {
                let (u, j) = (u0 + i / per_node, i % per_node);
                let v = match slot {
                    Slot::Head { layer, qkv, .. } => layout.backward_index(Slot::Head {
                        layer,
                        head: j,
                        qkv,
                    }),
                    other => layout.backward_index(other),
                };
                out[u * nb + v] = m - m0;
            }
            tracker.advance("edges: exact patching", ((u1 - u0) * per_node / 64) as u64)?;
        }
    }
    Ok(out)
}

/// What faithfulness runs need of a dataset, and no more (a dataset's
/// full runs would not fit a browser tab): each pair's two metrics and the
/// values the edges outside a circuit carry — its corrupt run's outputs
/// from the first difference on (`patching`), or every node's mean output
/// over the pairs' clean prompts (`mean-positional`, computed once).
pub struct FaithRuns {
    items: Vec<FaithPair>,
    means: Option<Vec<f32>>,
}

struct FaithPair {
    pair: Pair,
    clean: f32,
    corrupt: f32,
    /// [n_forward, T − first_diff, d]; empty under mean ablation.
    values: Vec<f32>,
}

impl FaithRuns {
    pub async fn new(
        host: &impl GraphPasses,
        pairs: &[Pair],
        ablation: Ablation,
    ) -> Result<FaithRuns> {
        check_pairs(pairs)?;
        if ablation == Ablation::MeanPositional && pairs.len() < 2 {
            return Err(Error::Input(
                "mean ablation needs a dataset: the mean over one pair's clean prompt is that prompt itself, \
                 so every circuit would be fully faithful; use several pairs (--task / --pairs) or patching"
                    .into(),
            ));
        }
        let d = host.graph_config().d_model;
        let mut items = Vec::with_capacity(pairs.len());
        let mut sum: Vec<f64> = Vec::new();
        for pair in pairs {
            let runs = PairRuns::new(host, pair, false).await?;
            let values = match ablation {
                Ablation::Patching => {
                    let (t, first_diff) = (runs.corrupt.len(), pair.first_diff);
                    runs.corrupt
                        .outputs()
                        .chunks(t * d)
                        .flat_map(|node| node[first_diff * d..].iter().copied())
                        .collect()
                }
                Ablation::MeanPositional => {
                    if sum.is_empty() {
                        sum = vec![0.0; runs.clean.outputs().len()];
                    }
                    sum.iter_mut()
                        .zip(runs.clean.outputs())
                        .for_each(|(s, &v)| *s += v as f64);
                    Vec::new()
                }
            };
            items.push(FaithPair {
                pair: pair.clone(),
                clean: runs.clean.metric(),
                corrupt: runs.corrupt.metric(),
                values,
            });
        }
        let k = pairs.len() as f64;
        let means = (ablation == Ablation::MeanPositional)
            .then(|| sum.into_iter().map(|v| (v / k) as f32).collect());
        Ok(FaithRuns { items, means })
    }
}

/// Runs the circuit's patched forward for every pair.
pub async fn faithfulness(
    host: &impl GraphPasses,
    runs: &FaithRuns,
    circuit: &Circuit,
    n: usize,
) -> Result<FaithPoint> {
    let layout = GraphLayout::new(host.graph_config());
    let nb = layout.n_backward();
    let patched: Vec<f32> = circuit
        .edges
        .iter()
        .enumerate()
        .map(|(i, &inside)| {
            if !inside && layout.is_edge(i / nb, i % nb) {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let (mut m, mut clean, mut corrupt) = (0f64, 0f64, 0f64);
    for r in &runs.items {
        let patch = match &runs.means {
            Some(means) => EdgePatch {
                values: means,
                first_diff: 0,
                patched: &patched,
            },
            None => EdgePatch {
                values: &r.values,
                first_diff: r.pair.first_diff,
                patched: &patched,
            },
        };
        let pass = GraphPass {
            patch: Some(patch),
            ..GraphPass::default()
        };
        m += host
            .graph_forward(&r.pair.clean, &r.pair.metric, pass)
            .await?
            .metric() as f64;
        clean += r.clean as f64;
        corrupt += r.corrupt as f64;
    }
    let k = runs.items.len().max(1) as f64;
    let (m, clean, corrupt) = (m / k, clean / k, corrupt / k);
    Ok(FaithPoint {
        n,
        edges: circuit.n_edges(),
        nodes: circuit.n_nodes(),
        metric: m as f32,
        faithfulness: ((m - corrupt) / (clean - corrupt)) as f32,
    })
}

/// The circuit sizes of a faithfulness curve: 10 to every edge, log-spaced
/// (`points` of them, fewer where sizes coincide).
pub fn curve_sizes(n_edges: usize, points: usize) -> Vec<usize> {
    let lo = 10.min(n_edges).max(1) as f64;
    let hi = n_edges as f64;
    let k = points.max(2);
    let mut out: Vec<usize> = (0..k)
        .map(|i| (lo * (hi / lo).powf(i as f64 / (k - 1) as f64)).round() as usize)
        .map(|n| n.clamp(1, n_edges))
        .collect();
    out.dedup();
    out
}
