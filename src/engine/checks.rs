//! The engine's input checks: every argument of an [`Engine`](super::Engine)
//! call is checked here, in front of the backends, once; a backend's
//! [`Compute`](super::Compute) methods only compute.

use super::{Component, LayerComponents, Metric, Replacement, RunInfo, Start};
use crate::error::{Error, Result};
use crate::model::Config;
use std::ops::Range;

/// Checks that layer `layer` exists.
pub fn check_layer(cfg: &Config, layer: usize) -> Result<()> {
    if layer >= cfg.n_layers {
        return Err(Error::Input(format!(
            "layer {layer} does not exist: the model has {} layers",
            cfg.n_layers
        )));
    }
    Ok(())
}

/// Checks that head or neuron `layer.index` exists in the model.
pub fn check_component(cfg: &Config, c: Component, layer: usize, index: usize) -> Result<()> {
    if layer >= cfg.n_layers || index >= c.count(cfg) {
        return Err(Error::Input(format!(
            "{} {layer}.{index} does not exist: the model has {} layers of {} {}",
            c.singular(),
            cfg.n_layers,
            c.count(cfg),
            c.name()
        )));
    }
    Ok(())
}

/// Checks the arguments of `metric_with_replacements`, for every backend.
pub fn check_replacements(
    cfg: &Config,
    tokens: &[u32],
    metric: &Metric,
    reps: &[Replacement],
) -> Result<()> {
    metric.check(cfg.d_vocab)?;
    check_tokens(cfg, tokens)?;
    let t = tokens.len();
    for r in reps {
        check_component(cfg, r.component, r.layer, r.index)?;
        let kind = r.component.singular();
        let want = t * r.component.width(cfg);
        if r.values.len() != want {
            return Err(Error::Input(format!(
                "the replacement of {kind} {}.{} has {} values; a {t}-token prompt needs {want}",
                r.layer,
                r.index,
                r.values.len()
            )));
        }
    }
    Ok(())
}

/// Checks a token sequence against the model before it reaches a backend.
pub fn check_tokens(cfg: &Config, tokens: &[u32]) -> Result<()> {
    if tokens.is_empty() {
        return Err(Error::Input(
            "the prompt has no tokens: type some text (or keep the BOS token)".into(),
        ));
    }
    if tokens.len() > cfg.n_ctx {
        return Err(Error::Input(format!(
            "the prompt has {} tokens but the model's context holds {}: shorten it",
            tokens.len(),
            cfg.n_ctx
        )));
    }
    if let Some(t) = tokens.iter().find(|&&t| t as usize >= cfg.d_vocab) {
        return Err(Error::Input(format!(
            "token id {t} is outside the model's vocabulary of {}",
            cfg.d_vocab
        )));
    }
    Ok(())
}

/// Checks the arguments of a sweep over two runs, for every backend: equal
/// lengths, something to patch at `first_diff`, the site's layer, one metric.
pub fn check_sweep(
    cfg: &Config,
    base: &impl RunInfo,
    other: &impl RunInfo,
    which: LayerComponents,
    first_diff: usize,
) -> Result<()> {
    if base.tokens().len() != other.tokens().len() {
        return Err(Error::Input("the two runs have different lengths".into()));
    }
    if first_diff >= base.tokens().len() {
        return Err(Error::Input(
            "the clean and corrupt prompts are identical: there is nothing to patch".into(),
        ));
    }
    check_layer(cfg, which.layer)?;
    if base.metric_def() != other.metric_def() {
        return Err(Error::Input(
            "the two runs were made with different metrics: run both prompts with the same one"
                .into(),
        ));
    }
    Ok(())
}

/// Checks that `components` lie within one layer's components of the site's kind.
pub fn check_components(
    cfg: &Config,
    which: LayerComponents,
    components: &Range<usize>,
) -> Result<()> {
    let count = which.component.count(cfg);
    if components.end > count {
        return Err(Error::Input(format!(
            "component {} does not exist ({} per layer)",
            components.end - 1,
            count
        )));
    }
    Ok(())
}

/// Checks that path_gradients' α and weights pair up.
pub fn check_path(alphas: &[f32], weights: &[f32]) -> Result<()> {
    if alphas.len() != weights.len() {
        return Err(Error::Input("alphas and weights differ in length".into()));
    }
    Ok(())
}

/// Checks the arguments of `resid_metrics` / `resid_gradients`, for every
/// backend: the start point exists, something follows `first_diff`, and the
/// perturbations are whole [T − first_diff, d_model] blocks. Returns k.
pub fn check_resid(
    cfg: &Config,
    tokens: &[u32],
    start: Start,
    first_diff: usize,
    deltas: &[f32],
) -> Result<usize> {
    let layer = match start {
        Start::Mid(l) | Start::Post(l) => l,
        Start::Embed => 0,
    };
    check_layer(cfg, layer)?;
    if first_diff >= tokens.len() {
        return Err(Error::Input(format!(
            "position {first_diff} is past the {}-token prompt",
            tokens.len()
        )));
    }
    let block = (tokens.len() - first_diff) * cfg.d_model;
    if !deltas.len().is_multiple_of(block) {
        return Err(Error::Input(format!(
            "{} perturbation values are not whole blocks of {block} (positions {first_diff}.. × d_model)",
            deltas.len()
        )));
    }
    Ok(deltas.len() / block)
}
