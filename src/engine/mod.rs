//! The engine: a GPT-2 forward/backward with TransformerLens hook points,
//! behind a small interface that every attribution method is written against.
//!
//! The interface is GPT-2 specific on purpose. Activation patching and
//! integrated gradients only ever change one layer's residual-stream
//! contribution (`attn_out` = Σ heads' `hook_result` + b_O, or `mlp_out` =
//! `hook_post` · W_out + b_out) and then need the rest of the network, so a
//! backend offers exactly that: run the tail of the model from a perturbed
//! layer for a batch of perturbations, forward only or with activation
//! gradients. Backends are free to make that fast (start at the patched layer,
//! skip positions before the first differing token, compute only the last
//! position in the final layer and, for the logit difference, only the two
//! answer logits).

pub mod attention;
pub mod checks;
pub mod cpu;
pub mod gpu;
pub mod graph;
pub mod hooks;
pub mod plan;
pub mod profile;

use crate::error::{Error, Result};
use crate::model::{Config, Param};
use std::ops::Range;

pub use checks::{
    check_component, check_components, check_layer, check_path, check_replacements, check_resid,
    check_sweep, check_tokens,
};
pub use hooks::{check_substitutions, split_hook};
pub use plan::Start;

/// A host array: row-major values and their shape.
pub type Array = Param;

/// Which kind of component a sweep is over.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    /// Attention heads: `blocks.L.attn.hook_result[:, h, :]`.
    Heads,
    /// MLP neurons: `blocks.L.mlp.hook_post[:, n]`.
    Neurons,
}

impl Component {
    pub fn name(self) -> &'static str {
        match self {
            Component::Heads => "heads",
            Component::Neurons => "neurons",
        }
    }
    /// What one component of this kind is called: "head" or "neuron".
    pub fn singular(self) -> &'static str {
        match self {
            Component::Heads => "head",
            Component::Neurons => "neuron",
        }
    }
    /// Number of components of this kind in one layer.
    pub fn count(self, cfg: &Config) -> usize {
        match self {
            Component::Heads => cfg.n_heads,
            Component::Neurons => cfg.d_mlp,
        }
    }
    /// The TransformerLens hook whose values define the components.
    pub fn hook(self, layer: usize) -> String {
        match self {
            Component::Heads => format!("blocks.{layer}.attn.hook_result"),
            Component::Neurons => format!("blocks.{layer}.mlp.hook_post"),
        }
    }
    /// The hook of a layer's whole contribution of this kind to the
    /// residual stream: `hook_attn_out` (Σ heads + b_O) or `hook_mlp_out`.
    pub fn out_hook(self, layer: usize) -> String {
        match self {
            Component::Heads => format!("blocks.{layer}.hook_attn_out"),
            Component::Neurons => format!("blocks.{layer}.hook_mlp_out"),
        }
    }
    /// The values of one component at one position: d_model for a head
    /// (its slice of `hook_result`), 1 for a neuron (of `hook_post`).
    pub fn width(self, cfg: &Config) -> usize {
        match self {
            Component::Heads => cfg.d_model,
            Component::Neurons => 1,
        }
    }
    /// The width of a row of ∂m/∂(the site's hook) as `path_gradients`
    /// returns it: d_model for heads (one [pos, d_model] array, the same for
    /// every head), d_mlp for neurons.
    pub fn grad_width(self, cfg: &Config) -> usize {
        match self {
            Component::Heads => cfg.d_model,
            Component::Neurons => cfg.d_mlp,
        }
    }
}

/// One layer's components of one kind: the heads or the neurons a sweep
/// runs over. (A TransformerLens patching site, where a perturbation is
/// made, is `report::PatchSite`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerComponents {
    pub layer: usize,
    pub component: Component,
}

/// The metric m of a run, read at the last position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metric {
    /// logits[last, correct] − logits[last, incorrect] (docs/methods.md,
    /// "The metric and the directions").
    LogitDiff { correct: u32, incorrect: u32 },
    /// Σ_{t ∈ above} p_t − Σ_{t ∈ below} p_t, with p = softmax over the whole
    /// vocabulary at the last position (the Greater-Than task's metric).
    ProbDiff { above: Vec<u32>, below: Vec<u32> },
}

impl Metric {
    /// The logit difference of two answer tokens.
    pub fn logit_diff(correct: u32, incorrect: u32) -> Metric {
        Metric::LogitDiff { correct, incorrect }
    }

    /// Checks the token ids against a vocabulary of `d_vocab` tokens: in the
    /// vocabulary; for ProbDiff both sets non-empty, without repeats and disjoint.
    pub fn check(&self, d_vocab: usize) -> Result<()> {
        let outside = |id: u32, what: &str| {
            Error::Input(format!(
                "{what} token id {id} is outside the model's vocabulary of {d_vocab}"
            ))
        };
        match self {
            Metric::LogitDiff { correct, incorrect } => {
                for id in [*correct, *incorrect] {
                    if id as usize >= d_vocab {
                        return Err(outside(id, "answer"));
                    }
                }
            }
            Metric::ProbDiff { above, below } => {
                let mut seen = vec![0u8; d_vocab];
                for (set, name, mark) in [(above, "above", 1u8), (below, "below", 2u8)] {
                    if set.is_empty() {
                        return Err(Error::Input(format!(
                            "the probability-difference metric needs at least one `{name}` token"
                        )));
                    }
                    for &id in set {
                        let slot = seen
                            .get_mut(id as usize)
                            .ok_or_else(|| outside(id, &format!("`{name}`")))?;
                        match *slot {
                            0 => *slot = mark,
                            m if m == mark => {
                                return Err(Error::Input(format!(
                                    "token id {id} appears twice in the `{name}` set of the probability-difference metric"
                                )))
                            }
                            _ => {
                                return Err(Error::Input(format!(
                                    "token id {id} is in both the `above` and the `below` set of the probability-difference metric: the sets must be disjoint"
                                )))
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The metric from the full logits of the last position (`logits` is
    /// overwritten for ProbDiff). Call `check` first.
    pub fn of_logits(&self, logits: &mut [f32]) -> f32 {
        match self {
            Metric::LogitDiff { correct, incorrect } => {
                logits[*correct as usize] - logits[*incorrect as usize]
            }
            Metric::ProbDiff { .. } => prob_diff_row(logits, &self.signs(logits.len()), false),
        }
    }

    /// ProbDiff's sign of every vocabulary token: +1 above, −1 below, 0
    /// otherwise (empty for LogitDiff). Call `check` first.
    pub fn signs(&self, d_vocab: usize) -> Vec<f32> {
        match self {
            Metric::LogitDiff { .. } => vec![],
            Metric::ProbDiff { above, below } => {
                let mut s = vec![0.0; d_vocab];
                for &t in above {
                    s[t as usize] = 1.0;
                }
                for &t in below {
                    s[t as usize] = -1.0;
                }
                s
            }
        }
    }
}

/// How a backend reads the metric from ln_final's output at the last
/// position, with its own types: `D` the answer direction, `S` the signs.
#[derive(Clone)]
pub enum Readout<D, S = D> {
    /// The logit difference: one dot product with wte[correct] − wte[incorrect].
    Dir(D),
    /// The probability difference: every token's sign (+1 above, −1 below,
    /// 0), read against the full logits.
    Signs(S),
}

impl<D, S> Readout<D, S> {
    /// The head of a checked `metric` (its ids are within the `d_vocab`
    /// tokens): `dir(correct, incorrect)` for the logit difference,
    /// `signs(every token's sign)` for the probability difference.
    pub fn of(
        metric: &Metric,
        d_vocab: usize,
        dir: impl FnOnce(u32, u32) -> Result<D>,
        signs: impl FnOnce(Vec<f32>) -> Result<S>,
    ) -> Result<Readout<D, S>> {
        Ok(match *metric {
            Metric::LogitDiff { correct, incorrect } => Readout::Dir(dir(correct, incorrect)?),
            Metric::ProbDiff { .. } => Readout::Signs(signs(metric.signs(d_vocab))?),
        })
    }

    /// Whether the metric needs the full logits (the probability difference).
    pub fn is_signs(&self) -> bool {
        matches!(self, Readout::Signs(_))
    }
}

/// ProbDiff from one row of logits, with the sums in f64: returns m and,
/// with `grad`, overwrites `logits` by ∂m/∂logit_j = p_j (s_j − m).
pub fn prob_diff_row(logits: &mut [f32], signs: &[f32], grad: bool) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (mut z, mut s) = (0.0f64, 0.0f64);
    for (x, &sg) in logits.iter_mut().zip(signs) {
        let e = (*x - max).exp();
        *x = e;
        z += e as f64;
        s += (sg * e) as f64;
    }
    let m = s / z;
    if grad {
        let (rz, mf) = ((1.0 / z) as f32, m as f32);
        for (x, &sg) in logits.iter_mut().zip(signs) {
            *x = *x * rz * (sg - mf);
        }
    }
    m as f32
}

/// What a path-gradient call returns.
#[derive(Debug, Clone)]
pub struct PathGrads {
    /// The metric at each α.
    pub metrics: Vec<f32>,
    /// Σ_k weight_k · ∂m/∂y at y(α_k), where y is the site's hook
    /// (`hook_result`: the gradient is the same for every head, so one
    /// [pos, d_model] array; `hook_post`: [pos, d_mlp]). Rows before
    /// `first_diff` are zero: the perturbation is zero there.
    pub weighted_grad: Array,
}
/// What a backend implements: GPT-2's forward, sweeps and gradients,
/// computed only. Every argument has passed [`Engine`]'s checks
/// ([`checks`]) before a method here is called, so a backend neither checks
/// nor re-words bad input. The methods' meaning is documented here;
/// [`Engine`] has the same calls, checked, and is what everything outside
/// the backends calls.
///
/// `Run` holds one prompt's forward pass (all activations the methods need,
/// wherever the backend keeps them). Methods are async because a WebGPU
/// backend in the browser may only wait for the GPU by yielding; the CPU
/// backend's futures are ready at once. The grouped sweeps' defaults run
/// the pairs one after another; a backend may share passes among them.
#[allow(async_fn_in_trait)]
pub trait Compute {
    type Run: RunInfo;

    fn config(&self) -> &Config;
    /// "cpu" or "gpu".
    fn backend(&self) -> &'static str;
    /// (command submissions, kernel dispatches) since the engine was made,
    /// for backends that submit work to a device (None for the CPU).
    fn device_counts(&self) -> Option<(u64, u64)> {
        None
    }
    /// Every kernel's work since the engine was made (None for the CPU).
    fn device_profile(&self) -> Option<profile::DeviceProfile> {
        None
    }

    /// Forward pass of one prompt, caching its activations; `metric` is the
    /// metric this run and every sweep from it (as the base) measure.
    async fn run(&self, tokens: &[u32], metric: &Metric) -> Result<Self::Run>;
    /// Logits at the last position (all of the vocabulary).
    async fn last_logits(&self, run: &Self::Run) -> Result<Vec<f32>>;
    /// Any cached TransformerLens activation of a run, e.g. `blocks.0.attn.hook_z`.
    async fn activation(&self, run: &Self::Run, hook: &str) -> Result<Array>;
    /// Several activations, of one run or of several, in the order asked:
    /// a device backend brings them back with one read-back (one wait for
    /// the device instead of one per activation).
    async fn activations(&self, reads: &[(&Self::Run, &str)]) -> Result<Vec<Array>> {
        let mut out = Vec::with_capacity(reads.len());
        for &(run, hook) in reads {
            out.push(self.activation(run, hook).await?);
        }
        Ok(out)
    }

    /// Activation patching: for each component c in `components` of `which`,
    /// the metric of the base run with c's activation replaced by the other
    /// run's at positions ≥ `first_diff` (earlier positions are equal in both).
    async fn patch_metrics(
        &self,
        base: &Self::Run,
        other: &Self::Run,
        which: LayerComponents,
        components: Range<usize>,
        first_diff: usize,
    ) -> Result<Vec<f32>>;

    /// Gradients along the straight path y(α) = y_base + α (y_other − y_base)
    /// of the whole site (all heads or all neurons of the layer).
    async fn path_gradients(
        &self,
        base: &Self::Run,
        other: &Self::Run,
        which: LayerComponents,
        alphas: &[f32],
        weights: &[f32],
        first_diff: usize,
    ) -> Result<PathGrads>;

    /// `patch_metrics` for several prompt pairs at once (one result per pair,
    /// in order): a backend may run the pairs' tails in shared passes (the
    /// GPU does, for pairs of equal token length). This default runs them
    /// one after another.
    async fn patch_metrics_group(
        &self,
        pairs: &[SweepPair<'_, Self::Run>],
        which: LayerComponents,
        components: Range<usize>,
    ) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(pairs.len());
        for p in pairs {
            out.push(
                self.patch_metrics(p.base, p.other, which, components.clone(), p.first_diff)
                    .await?,
            );
        }
        Ok(out)
    }

    /// `path_gradients` for several prompt pairs at once (same α and
    /// weights for all), as `patch_metrics_group` is to `patch_metrics`.
    async fn path_gradients_group(
        &self,
        pairs: &[SweepPair<'_, Self::Run>],
        which: LayerComponents,
        alphas: &[f32],
        weights: &[f32],
    ) -> Result<Vec<PathGrads>> {
        let mut out = Vec::with_capacity(pairs.len());
        for p in pairs {
            out.push(
                self.path_gradients(p.base, p.other, which, alphas, weights, p.first_diff)
                    .await?,
            );
        }
        Ok(out)
    }

    /// ∂m/∂y at the base run for every layer's site hook of one kind
    /// (`[pos, d_model]` for heads, `[pos, d_mlp]` for neurons), as
    /// `path_gradients` at α = 0 gives them. Backends should do it in one
    /// backward pass; this default takes one tail pass per layer.
    async fn base_gradients(
        &self,
        base: &Self::Run,
        other: &Self::Run,
        component: Component,
        first_diff: usize,
    ) -> Result<Vec<Array>> {
        let mut out = Vec::with_capacity(self.config().n_layers);
        for layer in 0..self.config().n_layers {
            let which = LayerComponents { layer, component };
            out.push(
                self.path_gradients(base, other, which, &[0.0], &[1.0], first_diff)
                    .await?
                    .weighted_grad,
            );
        }
        Ok(out)
    }

    /// Residual-stream patching: the metric of the base run with its
    /// residual stream at `start` (rows `first_diff`..T) changed by each of a
    /// batch of perturbations. `deltas` holds k of them, each
    /// [T − first_diff, d_model], one after another; rows before `first_diff`
    /// stay the base run's. Every site of TransformerLens's patching module
    /// acts on the rest of the network through such a change (a position of
    /// `resid_pre`, of `attn_out`, a head's `z`, a recomputed attention
    /// head's output), so the methods build the perturbations and the
    /// backend runs the tails, batched like `patch_metrics`.
    async fn resid_metrics(
        &self,
        base: &Self::Run,
        start: Start,
        first_diff: usize,
        deltas: &[f32],
    ) -> Result<Vec<f32>>;

    /// `resid_metrics` with gradients: the metric of each perturbation and
    /// ∂m/∂(the residual rows at `start`) at that point, [k, T − first_diff,
    /// d_model] one after another.
    async fn resid_gradients(
        &self,
        base: &Self::Run,
        start: Start,
        first_diff: usize,
        deltas: &[f32],
    ) -> Result<(Vec<f32>, Vec<f32>)>;

    /// ∂m/∂(the residual rows first_diff.. at each of `starts`) at the base
    /// run, [T − first_diff, d_model] each, in the order asked: what
    /// `resid_gradients` of a zero perturbation gives at each start. A
    /// backend that can read the gradient on its way down (the GPU) runs
    /// one tail from the earliest start and one backward for all of them;
    /// the default runs one per start.
    async fn resid_base_gradients(
        &self,
        base: &Self::Run,
        first_diff: usize,
        starts: &[Start],
    ) -> Result<Vec<Vec<f32>>> {
        let n = (base.tokens().len() - first_diff) * self.config().d_model;
        let zero = vec![0.0; n];
        let mut out = Vec::with_capacity(starts.len());
        for &start in starts {
            let (_, g) = self.resid_gradients(base, start, first_diff, &zero).await?;
            out.push(g);
        }
        Ok(out)
    }

    /// The logit difference as read from the final residual stream at a
    /// position: u = w_f ⊙ (wte[correct] − wte[incorrect]) and c = b_f ·
    /// (wte[correct] − wte[incorrect]) (ln_final's weight and bias), so that
    /// m = x̂ · u + c with x̂ the centred final residual over its
    /// `ln_final.hook_scale`. Direct logit attribution reads components along u.
    async fn logit_diff_direction(&self, correct: u32, incorrect: u32) -> Result<(Vec<f32>, f32)>;

    /// What the methods that change one head's attention need of layer
    /// `layer`'s weights ([`HeadWeights`]).
    async fn head_weights(&self, layer: usize) -> Result<HeadWeights>;

    /// The metric of a forward in which some components are held at given
    /// values at every position (mean ablation), everything downstream of
    /// them recomputed. Components of one kind in one layer may be replaced
    /// together; the others keep their computed activations.
    async fn metric_with_replacements(
        &self,
        tokens: &[u32],
        metric: &Metric,
        replacements: &[Replacement],
    ) -> Result<f32>;

    /// The plain hooked forward (TransformerLens `run_with_hooks`): the metric
    /// with the given hook activations replaced by full-shape values. Used by
    /// the reference (naive) loop and tests, never by the fast paths.
    async fn metric_with_substitutions(
        &self,
        tokens: &[u32],
        metric: &Metric,
        substitutions: &[(String, Array)],
    ) -> Result<f32>;
}

/// What a run tells the engine's checks, whatever backend made it.
pub trait RunInfo {
    /// The prompt's token ids.
    fn tokens(&self) -> &[u32];
    /// The metric this run and every sweep from it (as the base) measure.
    fn metric_def(&self) -> &Metric;
    /// The metric's value on this run, computed by its forward pass.
    fn metric(&self) -> f32;
}

/// The interface every attribution method is written against: the calls of
/// [`Compute`] (documented there), each checked once here before it reaches
/// a backend. It is implemented for every backend by the blanket impl
/// below, so no backend can skip a check and no check is written twice.
#[allow(async_fn_in_trait)]
pub trait Engine {
    type Run: RunInfo;

    fn config(&self) -> &Config;
    /// "cpu" or "gpu".
    fn backend(&self) -> &'static str;
    /// (command submissions, kernel dispatches) since the engine was made,
    /// for backends that submit work to a device (None for the CPU).
    fn device_counts(&self) -> Option<(u64, u64)>;
    /// Every kernel's work since the engine was made: dispatches,
    /// workgroups, FLOPs, bytes, submissions, read-backs (None for the CPU).
    fn device_profile(&self) -> Option<profile::DeviceProfile>;
    /// The metric of a run (e.g. logits[last, correct] − logits[last,
    /// incorrect]): the run holds it, so it cannot be read wrongly.
    fn metric(&self, run: &Self::Run) -> f32 {
        run.metric()
    }

    async fn run(&self, tokens: &[u32], metric: &Metric) -> Result<Self::Run>;
    async fn last_logits(&self, run: &Self::Run) -> Result<Vec<f32>>;
    async fn activation(&self, run: &Self::Run, hook: &str) -> Result<Array>;
    async fn activations(&self, reads: &[(&Self::Run, &str)]) -> Result<Vec<Array>>;
    async fn patch_metrics(
        &self,
        base: &Self::Run,
        other: &Self::Run,
        which: LayerComponents,
        components: Range<usize>,
        first_diff: usize,
    ) -> Result<Vec<f32>>;
    async fn path_gradients(
        &self,
        base: &Self::Run,
        other: &Self::Run,
        which: LayerComponents,
        alphas: &[f32],
        weights: &[f32],
        first_diff: usize,
    ) -> Result<PathGrads>;
    async fn patch_metrics_group(
        &self,
        pairs: &[SweepPair<'_, Self::Run>],
        which: LayerComponents,
        components: Range<usize>,
    ) -> Result<Vec<Vec<f32>>>;
    async fn path_gradients_group(
        &self,
        pairs: &[SweepPair<'_, Self::Run>],
        which: LayerComponents,
        alphas: &[f32],
        weights: &[f32],
    ) -> Result<Vec<PathGrads>>;
    async fn base_gradients(
        &self,
        base: &Self::Run,
        other: &Self::Run,
        component: Component,
        first_diff: usize,
    ) -> Result<Vec<Array>>;
    async fn resid_metrics(
        &self,
        base: &Self::Run,
        start: Start,
        first_diff: usize,
        deltas: &[f32],
    ) -> Result<Vec<f32>>;
    async fn resid_gradients(
        &self,
        base: &Self::Run,
        start: Start,
        first_diff: usize,
        deltas: &[f32],
    ) -> Result<(Vec<f32>, Vec<f32>)>;
    async fn resid_base_gradients(
        &self,
        base: &Self::Run,
        first_diff: usize,
        starts: &[Start],
    ) -> Result<Vec<Vec<f32>>>;
    async fn logit_diff_direction(&self, correct: u32, incorrect: u32) -> Result<(Vec<f32>, f32)>;
    async fn head_weights(&self, layer: usize) -> Result<HeadWeights>;
    async fn metric_with_replacements(
        &self,
        tokens: &[u32],
        metric: &Metric,
        replacements: &[Replacement],
    ) -> Result<f32>;
    async fn metric_with_substitutions(
        &self,
        tokens: &[u32],
        metric: &Metric,
        substitutions: &[(String, Array)],
    ) -> Result<f32>;
}

/// The checks, in front of every backend.
impl<B: Compute> Engine for B {
    type Run = B::Run;

    fn config(&self) -> &Config {
        Compute::config(self)
    }

    fn backend(&self) -> &'static str {
        Compute::backend(self)
    }

    fn device_counts(&self) -> Option<(u64, u64)> {
        Compute::device_counts(self)
    }

    fn device_profile(&self) -> Option<profile::DeviceProfile> {
        Compute::device_profile(self)
    }

    async fn run(&self, tokens: &[u32], metric: &Metric) -> Result<B::Run> {
        let cfg = Compute::config(self);
        check_tokens(cfg, tokens)?;
        metric.check(cfg.d_vocab)?;
        Compute::run(self, tokens, metric).await
    }

    async fn last_logits(&self, run: &B::Run) -> Result<Vec<f32>> {
        Compute::last_logits(self, run).await
    }

    async fn activation(&self, run: &B::Run, hook: &str) -> Result<Array> {
        Compute::activation(self, run, hook).await
    }

    async fn activations(&self, reads: &[(&B::Run, &str)]) -> Result<Vec<Array>> {
        Compute::activations(self, reads).await
    }

    async fn patch_metrics(
        &self,
        base: &B::Run,
        other: &B::Run,
        which: LayerComponents,
        components: Range<usize>,
        first_diff: usize,
    ) -> Result<Vec<f32>> {
        let cfg = Compute::config(self);
        check_sweep(cfg, base, other, which, first_diff)?;
        check_components(cfg, which, &components)?;
        Compute::patch_metrics(self, base, other, which, components, first_diff).await
    }

    async fn path_gradients(
        &self,
        base: &B::Run,
        other: &B::Run,
        which: LayerComponents,
        alphas: &[f32],
        weights: &[f32],
        first_diff: usize,
    ) -> Result<PathGrads> {
        check_sweep(Compute::config(self), base, other, which, first_diff)?;
        check_path(alphas, weights)?;
        Compute::path_gradients(self, base, other, which, alphas, weights, first_diff).await
    }

    async fn patch_metrics_group(
        &self,
        pairs: &[SweepPair<'_, B::Run>],
        which: LayerComponents,
        components: Range<usize>,
    ) -> Result<Vec<Vec<f32>>> {
        let cfg = Compute::config(self);
        for p in pairs {
            check_sweep(cfg, p.base, p.other, which, p.first_diff)?;
        }
        check_components(cfg, which, &components)?;
        Compute::patch_metrics_group(self, pairs, which, components).await
    }

    async fn path_gradients_group(
        &self,
        pairs: &[SweepPair<'_, B::Run>],
        which: LayerComponents,
        alphas: &[f32],
        weights: &[f32],
    ) -> Result<Vec<PathGrads>> {
        for p in pairs {
            check_sweep(Compute::config(self), p.base, p.other, which, p.first_diff)?;
        }
        check_path(alphas, weights)?;
        Compute::path_gradients_group(self, pairs, which, alphas, weights).await
    }

    async fn base_gradients(
        &self,
        base: &B::Run,
        other: &B::Run,
        component: Component,
        first_diff: usize,
    ) -> Result<Vec<Array>> {
        let which = LayerComponents {
            layer: 0,
            component,
        };
        check_sweep(Compute::config(self), base, other, which, first_diff)?;
        Compute::base_gradients(self, base, other, component, first_diff).await
    }

    async fn resid_metrics(
        &self,
        base: &B::Run,
        start: Start,
        first_diff: usize,
        deltas: &[f32],
    ) -> Result<Vec<f32>> {
        if check_resid(
            Compute::config(self),
            base.tokens(),
            start,
            first_diff,
            deltas,
        )? == 0
        {
            return Ok(vec![]);
        }
        Compute::resid_metrics(self, base, start, first_diff, deltas).await
    }

    async fn resid_gradients(
        &self,
        base: &B::Run,
        start: Start,
        first_diff: usize,
        deltas: &[f32],
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        if check_resid(
            Compute::config(self),
            base.tokens(),
            start,
            first_diff,
            deltas,
        )? == 0
        {
            return Ok((vec![], vec![]));
        }
        Compute::resid_gradients(self, base, start, first_diff, deltas).await
    }

    async fn resid_base_gradients(
        &self,
        base: &B::Run,
        first_diff: usize,
        starts: &[Start],
    ) -> Result<Vec<Vec<f32>>> {
        let cfg = Compute::config(self);
        for &start in starts {
            check_resid(cfg, base.tokens(), start, first_diff, &[])?;
        }
        if starts.is_empty() {
            return Ok(vec![]);
        }
        Compute::resid_base_gradients(self, base, first_diff, starts).await
    }

    async fn logit_diff_direction(&self, correct: u32, incorrect: u32) -> Result<(Vec<f32>, f32)> {
        Metric::logit_diff(correct, incorrect).check(Compute::config(self).d_vocab)?;
        Compute::logit_diff_direction(self, correct, incorrect).await
    }

    async fn head_weights(&self, layer: usize) -> Result<HeadWeights> {
        check_layer(Compute::config(self), layer)?;
        Compute::head_weights(self, layer).await
    }

    async fn metric_with_replacements(
        &self,
        tokens: &[u32],
        metric: &Metric,
        replacements: &[Replacement],
    ) -> Result<f32> {
        check_replacements(Compute::config(self), tokens, metric, replacements)?;
        Compute::metric_with_replacements(self, tokens, metric, replacements).await
    }

    async fn metric_with_substitutions(
        &self,
        tokens: &[u32],
        metric: &Metric,
        substitutions: &[(String, Array)],
    ) -> Result<f32> {
        check_substitutions(Compute::config(self), tokens, metric, substitutions)?;
        Compute::metric_with_substitutions(self, tokens, metric, substitutions).await
    }
}

/// One prompt pair of a grouped sweep: the base run, the run whose
/// activations are patched in, and the first position where they differ.
pub struct SweepPair<'r, R> {
    pub base: &'r R,
    pub other: &'r R,
    pub first_diff: usize,
}

impl<R> Clone for SweepPair<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<R> Copy for SweepPair<'_, R> {}

/// One component held at fixed values at every position of a forward: a
/// head's slice `hook_result[:, index, :]` (`values` is [pos, d_model]) or a
/// neuron's column `hook_post[:, index]` (`values` is [pos]).
#[derive(Debug, Clone, PartialEq)]
pub struct Replacement {
    pub layer: usize,
    pub component: Component,
    pub index: usize,
    pub values: Vec<f32>,
}
/// What the methods that change a head's z (its q, k, v or pattern) need of
/// a layer's weights.
#[derive(Debug, Clone)]
pub struct HeadWeights {
    /// W_O as [heads, d_head, d_model]: a head's `hook_z` times its W_O is
    /// its `hook_result`.
    pub w_o: Array,
    /// Each head's value bias, [heads · d_head]: c_attn's V bias plus ln_1's
    /// bias through W_V, the part of every `hook_v` row that does not
    /// depend on the input (TransformerLens folds it into b_O, so a patched
    /// attention weight does not scale it).
    pub b_v: Vec<f32>,
}

impl HeadWeights {
    /// From a block's host weights: W_O = c_proj's weight, b_v = c_attn.b[V]
    /// + ln_1.b · c_attn.w[:, V] (summed in f64).
    pub fn of(
        cfg: &Config,
        ln_1_b: &[f32],
        c_attn_w: &[f32],
        c_attn_b: &[f32],
        c_proj_w: Vec<f32>,
    ) -> HeadWeights {
        let d = cfg.d_model;
        let b_v = (0..d)
            .map(|j| {
                let mut s = c_attn_b[2 * d + j] as f64;
                for (i, &b) in ln_1_b.iter().enumerate() {
                    s += b as f64 * c_attn_w[i * 3 * d + 2 * d + j] as f64;
                }
                s as f32
            })
            .collect();
        HeadWeights {
            w_o: Array::new(vec![cfg.n_heads, cfg.d_head, d], c_proj_w),
            b_v,
        }
    }
}

/// u and c of `Engine::logit_diff_direction` from host rows (sums in f64).
pub fn logit_diff_direction(
    w_f: &[f32],
    b_f: &[f32],
    correct: &[f32],
    incorrect: &[f32],
) -> (Vec<f32>, f32) {
    let diff: Vec<f64> = correct
        .iter()
        .zip(incorrect)
        .map(|(&a, &b)| a as f64 - b as f64)
        .collect();
    let u = diff
        .iter()
        .zip(w_f)
        .map(|(d, &w)| (d * w as f64) as f32)
        .collect();
    let c = diff
        .iter()
        .zip(b_f)
        .map(|(d, &b)| d * b as f64)
        .sum::<f64>() as f32;
    (u, c)
}
