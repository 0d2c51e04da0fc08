//! The edge graph's passes ([`crate::model::graph`]) as an engine
//! capability: a forward in which every input slot (a head's q, k or v
//! input, an MLP's input, the logits) may read its own residual stream, the
//! gradient at every slot, and the change of a slot's node when one edge
//! into it is patched.
//!
//! These are the few, small passes of edge attribution (one per IG step,
//! one per faithfulness point); the circuit methods (`attribution::circuit`)
//! are written against [`GraphPasses`], and the app layer chooses the engine
//! that runs them. The 32,491 tails of exact edge patching run on any
//! [`Engine`](super::Engine) (`resid_metrics`), from the perturbations
//! [`GraphPasses::edge_perturbations`] builds.
//!
//! As with [`Engine`](super::Engine) and [`Compute`](super::Compute), a
//! backend implements [`GraphCompute`] (it only computes) and everything
//! else calls [`GraphPasses`], whose blanket impl checks each call once.

use super::checks::{check_layer, check_tokens};
use super::Metric;
use crate::error::{Error, Result};
use crate::model::graph::{GraphLayout, Slot};
use crate::model::Config;

/// The edges whose source's output is replaced, in a [`GraphPasses::graph_forward`].
pub struct EdgePatch<'a> {
    /// [n_forward, T − first_diff, d_model]: the outputs those edges carry
    /// instead at rows first_diff.. (the corrupt run's, for patching).
    pub values: &'a [f32],
    /// The first row `values` covers; earlier rows carry the run's own
    /// outputs (before the prompts' first difference they are the same).
    pub first_diff: usize,
    /// [n_forward, n_backward] row-major: 1 where edge u → v is patched,
    /// so that slot v reads x_v + values_u − (u's output in this run).
    pub patched: &'a [f32],
}

/// Outputs held at given values (EAP-IG-activations' interpolated nodes):
/// downstream reads them, and no gradient flows back through them.
#[derive(Debug, Clone, Copy)]
pub enum Hold<'a> {
    /// Every head of `layer`: [H, T, d_model] (their `hook_result`).
    Heads { layer: usize, values: &'a [f32] },
    /// The MLP of `layer`: [T, d_model] (`hook_mlp_out`).
    Mlp { layer: usize, values: &'a [f32] },
}

/// What a graph pass changes and returns; the default is the plain forward.
#[derive(Default)]
pub struct GraphPass<'a> {
    /// Replaces `hook_embed` ([T, d_model]): EAP-IG's interpolated inputs.
    pub embed: Option<&'a [f32]>,
    /// Patches edges (faithfulness, exact patching's reference loop).
    pub patch: Option<EdgePatch<'a>>,
    /// Holds one layer's heads or MLP at given outputs.
    pub hold: Option<Hold<'a>>,
    /// Also ∂m/∂(every slot's input); needs `patch` to be None (then all
    /// slots of a layer read the same stream).
    pub grad: bool,
}

/// What the circuit methods read of a graph run, whatever engine made it.
pub trait GraphOutputs {
    /// The metric of the run.
    fn metric(&self) -> f32;
    /// [n_forward, T, d_model]: each node's output (the input node's is
    /// `hook_embed`, as the reference reads it).
    fn outputs(&self) -> &[f32];
    /// [n_backward, T, d_model]: ∂m/∂(each slot's input), when the pass
    /// asked for them.
    fn grads(&self) -> Option<&[f32]>;
    /// The prompt's length T.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a backend implements for the graph's passes; the methods' meaning
/// is documented on [`GraphPasses`], which checks every call before it
/// reaches a backend. Async because the WebGPU backend in the browser may
/// only wait for the GPU by yielding; the CPU backend's futures are ready
/// at once.
#[allow(async_fn_in_trait)]
pub trait GraphCompute {
    type GraphRun: GraphOutputs;

    fn graph_config(&self) -> &Config;
    async fn graph_forward(
        &self,
        tokens: &[u32],
        metric: &Metric,
        pass: GraphPass<'_>,
    ) -> Result<Self::GraphRun>;
    async fn edge_perturbations(
        &self,
        run: &Self::GraphRun,
        slot: Slot,
        first_diff: usize,
        deltas: &[f32],
    ) -> Result<Vec<f32>>;
    async fn edge_products(
        &self,
        deltas: &[f32],
        grads: &[f32],
        nf: usize,
        nb: usize,
    ) -> Result<Vec<f32>>;
    /// One gradient pass per embedding, one after another; a device
    /// backend runs them as one batch.
    async fn graph_gradients(
        &self,
        tokens: &[u32],
        metric: &Metric,
        embeds: &[f32],
    ) -> Result<Vec<Vec<f32>>> {
        let td = tokens.len() * GraphCompute::graph_config(self).d_model;
        let mut out = Vec::with_capacity(embeds.len() / td.max(1));
        for embed in embeds.chunks(td.max(1)) {
            let pass = GraphPass {
                embed: Some(embed),
                grad: true,
                ..GraphPass::default()
            };
            let run = self.graph_forward(tokens, metric, pass).await?;
            let g = run.grads().ok_or_else(|| {
                Error::Backend("a graph run without the slot gradients it was asked for".into())
            })?;
            out.push(g.to_vec());
        }
        Ok(out)
    }
    /// How many embeddings one `graph_gradients` call should take for a
    /// prompt of `t` tokens: 1 where passes cost nothing to launch (the
    /// CPU), as many as memory allows on a device.
    fn graph_batch(&self, _t: usize) -> usize {
        1
    }
}

/// The edge graph's passes, checked: what the circuit methods call.
#[allow(async_fn_in_trait)]
pub trait GraphPasses {
    type GraphRun: GraphOutputs;

    /// The model the passes run.
    fn graph_config(&self) -> &Config;

    /// The forward pass of `tokens` over the edge graph, changed as `pass`
    /// says.
    async fn graph_forward(
        &self,
        tokens: &[u32],
        metric: &Metric,
        pass: GraphPass<'_>,
    ) -> Result<Self::GraphRun>;

    /// The residual-stream perturbations, at rows `first_diff`..T, that
    /// patching each edge u → `slot` causes when u's output changes by
    /// `deltas`[u] ([n_u, T − first_diff, d], for u = 0..n_u), all other
    /// inputs as in `run`:
    ///
    /// - a head's q/k/v input: the head recomputed with that input changed,
    ///   (z′ − z)·W_O, [n_u, H, T − first_diff, d] for every head of the
    ///   layer, to add to `hook_resid_mid` of the layer;
    /// - an MLP's input: mlp(x + Δ) − mlp(x), [n_u, T − first_diff, d], to
    ///   add to `hook_resid_post`;
    /// - the logits: Δ itself, at the final `hook_resid_post`.
    async fn edge_perturbations(
        &self,
        run: &Self::GraphRun,
        slot: Slot,
        first_diff: usize,
        deltas: &[f32],
    ) -> Result<Vec<f32>>;

    /// s[u, v] = Σ_pos Σ_d Δ_u · g_v for every pair of a node and a slot:
    /// `deltas` [n_forward, T·d], `grads` [n_backward, T·d] → [n_forward,
    /// n_backward].
    async fn edge_products(
        &self,
        deltas: &[f32],
        grads: &[f32],
        nf: usize,
        nb: usize,
    ) -> Result<Vec<f32>>;

    /// ∂m/∂(every slot's input), [n_backward, T, d], of one gradient pass
    /// of `tokens` per embedding override in `embeds` ([k, T, d]: k passes,
    /// EAP-IG's path points), in order: what k `graph_forward` calls with
    /// `embed` and `grad` set return, in as few passes as the engine can.
    async fn graph_gradients(
        &self,
        tokens: &[u32],
        metric: &Metric,
        embeds: &[f32],
    ) -> Result<Vec<Vec<f32>>>;

    /// How many embeddings one `graph_gradients` call should take for a
    /// prompt of `t` tokens (callers split longer paths into such calls, to
    /// report progress and answer Cancel in between).
    fn graph_batch(&self, t: usize) -> usize;
}

impl<B: GraphCompute> GraphPasses for B {
    type GraphRun = B::GraphRun;

    fn graph_config(&self) -> &Config {
        GraphCompute::graph_config(self)
    }

    async fn graph_forward(
        &self,
        tokens: &[u32],
        metric: &Metric,
        pass: GraphPass<'_>,
    ) -> Result<B::GraphRun> {
        check_pass(GraphCompute::graph_config(self), tokens, metric, &pass)?;
        GraphCompute::graph_forward(self, tokens, metric, pass).await
    }

    async fn edge_perturbations(
        &self,
        run: &B::GraphRun,
        slot: Slot,
        first_diff: usize,
        deltas: &[f32],
    ) -> Result<Vec<f32>> {
        let cfg = GraphCompute::graph_config(self);
        check_perturbations(cfg, run.len(), slot, first_diff, deltas)?;
        GraphCompute::edge_perturbations(self, run, slot, first_diff, deltas).await
    }

    async fn edge_products(
        &self,
        deltas: &[f32],
        grads: &[f32],
        nf: usize,
        nb: usize,
    ) -> Result<Vec<f32>> {
        check_products(deltas, grads, nf, nb)?;
        GraphCompute::edge_products(self, deltas, grads, nf, nb).await
    }

    async fn graph_gradients(
        &self,
        tokens: &[u32],
        metric: &Metric,
        embeds: &[f32],
    ) -> Result<Vec<Vec<f32>>> {
        let cfg = GraphCompute::graph_config(self);
        check_tokens(cfg, tokens)?;
        metric.check(cfg.d_vocab)?;
        let td = tokens.len() * cfg.d_model;
        if embeds.is_empty() || !embeds.len().is_multiple_of(td) {
            return Err(Error::Input(format!(
                "embedding overrides need [k, {}, {}] values (got {})",
                tokens.len(),
                cfg.d_model,
                embeds.len()
            )));
        }
        GraphCompute::graph_gradients(self, tokens, metric, embeds).await
    }

    fn graph_batch(&self, t: usize) -> usize {
        GraphCompute::graph_batch(self, t).max(1)
    }
}

/// A graph pass's arguments: the prompt, the metric, and the sizes of
/// everything the pass replaces.
fn check_pass(cfg: &Config, tokens: &[u32], metric: &Metric, pass: &GraphPass) -> Result<()> {
    check_tokens(cfg, tokens)?;
    metric.check(cfg.d_vocab)?;
    let g = GraphLayout::new(cfg);
    let (t, d, h) = (tokens.len(), cfg.d_model, cfg.n_heads);
    if pass.grad && pass.patch.is_some() {
        return Err(Error::Input(
            "slot gradients are defined for the unpatched graph only".into(),
        ));
    }
    if let Some(e) = pass.embed {
        if e.len() != t * d {
            return Err(Error::Input(format!(
                "an embedding override needs {t}×{d} values (got {})",
                e.len()
            )));
        }
    }
    if let Some(p) = &pass.patch {
        let (nf, nb) = (g.n_forward(), g.n_backward());
        let rows = t.saturating_sub(p.first_diff);
        if rows == 0 || p.values.len() != nf * rows * d || p.patched.len() != nf * nb {
            return Err(Error::Input(format!(
                "an edge patch needs {nf}×{rows}×{d} values (rows {}..{t}) and a {nf}×{nb} mask (got {} and {})",
                p.first_diff,
                p.values.len(),
                p.patched.len()
            )));
        }
    }
    if let Some(hold) = pass.hold {
        let (layer, values, shape) = match hold {
            Hold::Heads { layer, values } => (layer, values, vec![h, t, d]),
            Hold::Mlp { layer, values } => (layer, values, vec![t, d]),
        };
        check_layer(cfg, layer)?;
        let n: usize = shape.iter().product();
        if values.len() != n {
            return Err(Error::Input(format!(
                "held outputs need {shape:?} = {n} values (got {})",
                values.len()
            )));
        }
    }
    Ok(())
}

/// Edge perturbations' arguments: a slot of the model, rows to perturb,
/// whole [n_u, T − first_diff, d] deltas.
fn check_perturbations(
    cfg: &Config,
    t: usize,
    slot: Slot,
    first_diff: usize,
    deltas: &[f32],
) -> Result<()> {
    match slot {
        Slot::Head { layer, head, .. } => {
            check_layer(cfg, layer)?;
            if head >= cfg.n_heads {
                return Err(Error::Input(format!(
                    "head {head} does not exist (the model has {} heads)",
                    cfg.n_heads
                )));
            }
        }
        Slot::Mlp { layer } => check_layer(cfg, layer)?,
        Slot::Logits => {}
    }
    let (n, d) = (t.saturating_sub(first_diff), cfg.d_model);
    if n == 0 || deltas.is_empty() || !deltas.len().is_multiple_of(n * d) {
        return Err(Error::Input(format!(
            "edge perturbations need [n_u, {n}, {d}] deltas (got {} values)",
            deltas.len()
        )));
    }
    Ok(())
}

/// Edge products' arguments: [n_forward, k] and [n_backward, k].
fn check_products(deltas: &[f32], grads: &[f32], nf: usize, nb: usize) -> Result<()> {
    if nf == 0
        || nb == 0
        || deltas.is_empty()
        || !deltas.len().is_multiple_of(nf)
        || grads.len() != nb * (deltas.len() / nf)
    {
        return Err(Error::Input(
            "edge products need [n_forward, k] and [n_backward, k]".into(),
        ));
    }
    Ok(())
}
