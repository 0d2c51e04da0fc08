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

use super::Metric;
use crate::error::Result;
use crate::model::graph::Slot;
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

/// An engine that runs the edge graph's passes. Synchronous: only the CPU
/// engine implements it so far (a WebGPU implementation would make these
/// async, as [`Engine`](super::Engine)'s calls are).
pub trait GraphPasses {
    type GraphRun: GraphOutputs;

    /// The model the passes run.
    fn graph_config(&self) -> &Config;

    /// The forward pass of `tokens` over the edge graph, changed as `pass`
    /// says; checks its own arguments.
    fn graph_forward(
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
    fn edge_perturbations(
        &self,
        run: &Self::GraphRun,
        slot: Slot,
        first_diff: usize,
        deltas: &[f32],
    ) -> Result<Vec<f32>>;

    /// s[u, v] = Σ_pos Σ_d Δ_u · g_v for every pair of a node and a slot:
    /// `deltas` [n_forward, T·d], `grads` [n_backward, T·d] → [n_forward,
    /// n_backward].
    fn edge_products(
        &self,
        deltas: &[f32],
        grads: &[f32],
        nf: usize,
        nb: usize,
    ) -> Result<Vec<f32>>;
}
