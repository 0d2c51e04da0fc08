//! The TransformerLens hook points every backend offers (one table, with
//! each hook's shape) and the checks of the arguments that name them.

use super::{check_tokens, Metric};
use crate::error::{Error, Result};
use crate::model::Config;

/// The shape of a hook's activation for a prompt of t tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// [t, d_model]: the residual stream and what is added to it.
    Model,
    /// [t, 1]: a layer norm's scale.
    Scale,
    /// [t, heads, d_head]: q, k, v and z.
    PerHead,
    /// [heads, t, t]: attention scores and pattern.
    Pattern,
    /// [t, heads, d_model]: each head's output.
    Result,
    /// [t, d_mlp]: the MLP's hidden layer.
    Mlp,
}

impl Shape {
    fn dims(self, cfg: &Config, t: usize) -> Vec<usize> {
        let (d, h, dh, dm) = (cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp);
        match self {
            Shape::Model => vec![t, d],
            Shape::Scale => vec![t, 1],
            Shape::PerHead => vec![t, h, dh],
            Shape::Pattern => vec![h, t, t],
            Shape::Result => vec![t, h, d],
            Shape::Mlp => vec![t, dm],
        }
    }
}

/// The hooks before the first block, in the order the forward produces them.
const EMBED_HOOKS: [(&str, Shape); 2] = [
    ("hook_embed", Shape::Model),
    ("hook_pos_embed", Shape::Model),
];

/// The hooks of every block (`blocks.L.` + name), in the order the forward
/// produces them.
const BLOCK_HOOKS: [(&str, Shape); 19] = [
    ("hook_resid_pre", Shape::Model),
    ("ln1.hook_scale", Shape::Scale),
    ("ln1.hook_normalized", Shape::Model),
    ("attn.hook_q", Shape::PerHead),
    ("attn.hook_k", Shape::PerHead),
    ("attn.hook_v", Shape::PerHead),
    ("attn.hook_attn_scores", Shape::Pattern),
    ("attn.hook_pattern", Shape::Pattern),
    ("attn.hook_z", Shape::PerHead),
    ("attn.hook_result", Shape::Result),
    ("hook_attn_out", Shape::Model),
    ("hook_resid_mid", Shape::Model),
    ("hook_mlp_in", Shape::Model),
    ("ln2.hook_scale", Shape::Scale),
    ("ln2.hook_normalized", Shape::Model),
    ("mlp.hook_pre", Shape::Mlp),
    ("mlp.hook_post", Shape::Mlp),
    ("hook_mlp_out", Shape::Model),
    ("hook_resid_post", Shape::Model),
];

/// The hooks after the last block, in the order the forward produces them.
const FINAL_HOOKS: [(&str, Shape); 2] = [
    ("ln_final.hook_scale", Shape::Scale),
    ("ln_final.hook_normalized", Shape::Model),
];

/// Every hook of a `t`-token forward with its shape, in the order the
/// forward produces them.
pub fn all_hooks(cfg: &Config, t: usize) -> Vec<(String, Vec<usize>)> {
    let named = |(name, s): &(&str, Shape)| (name.to_string(), s.dims(cfg, t));
    let blocks = (0..cfg.n_layers).flat_map(|l| {
        BLOCK_HOOKS
            .iter()
            .map(move |(name, s)| (format!("blocks.{l}.{name}"), s.dims(cfg, t)))
    });
    EMBED_HOOKS
        .iter()
        .map(named)
        .chain(blocks)
        .chain(FINAL_HOOKS.iter().map(named))
        .collect()
}

/// The shape of hook `name` of a `t`-token forward, or None for names the
/// forward does not produce.
pub fn hook_shape(cfg: &Config, t: usize, name: &str) -> Option<Vec<usize>> {
    let find = |table: &[(&str, Shape)], name: &str| {
        table
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.dims(cfg, t))
    };
    match split_hook(name) {
        Some((l, rest)) if l < cfg.n_layers => find(&BLOCK_HOOKS, rest),
        Some(_) => None,
        None => find(&EMBED_HOOKS, name).or_else(|| find(&FINAL_HOOKS, name)),
    }
}

/// Parses `blocks.L.<rest>` into (L, rest).
pub fn split_hook(hook: &str) -> Option<(usize, &str)> {
    let rest = hook.strip_prefix("blocks.")?;
    let (l, rest) = rest.split_once('.')?;
    Some((l.parse().ok()?, rest))
}

/// The error for a hook name no run has.
pub fn unknown_hook(name: &str) -> Error {
    Error::Input(format!("unknown hook `{name}`"))
}

/// Checks the arguments of `metric_with_substitutions`, for every backend:
/// the metric, the tokens, and that every substitute names a hook of this
/// model (`unknown hook` for a layer it lacks or a name outside the hook
/// families, `not found` for an unknown name in a known family) with the
/// activation's shape.
pub fn check_substitutions(
    cfg: &Config,
    tokens: &[u32],
    metric: &Metric,
    subs: &[(String, super::Array)],
) -> Result<()> {
    metric.check(cfg.d_vocab)?;
    check_tokens(cfg, tokens)?;
    for (i, (name, v)) in subs.iter().enumerate() {
        if subs[..i].iter().any(|(n, _)| n == name) {
            return Err(Error::Input(format!(
                "`{name}` is substituted twice: give each hook one value"
            )));
        }
        let known = matches!(name.as_str(), "hook_embed" | "hook_pos_embed")
            || name.starts_with("ln_final.")
            || split_hook(name).is_some_and(|(l, _)| l < cfg.n_layers);
        if !known {
            return Err(unknown_hook(name));
        }
        let Some(shape) = hook_shape(cfg, tokens.len(), name) else {
            return Err(Error::Input("a substituted hook name was not found".into()));
        };
        if v.shape != shape {
            return Err(Error::Input(format!(
                "substitute for `{name}` has shape {:?}, the activation {:?}",
                v.shape, shape
            )));
        }
    }
    Ok(())
}

/// After a backend's forward with substitutions: it met every substitute
/// (`used` of them). The names were checked against the hook table, so a
/// miss is the backend's fault, not the input's.
pub fn check_all_used(used: usize, subs: &[(String, super::Array)]) -> Result<()> {
    if used != subs.len() {
        return Err(Error::Backend(format!(
            "the forward met {used} of {} substituted hooks: a hook of the table is missing from it",
            subs.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cpu::CpuEngine;
    use crate::model::random::{random_weights, RandomSpec};

    /// The table is what the CPU forward (the reference) produces.
    #[test]
    fn the_table_is_the_forward_s_hooks() {
        let spec = RandomSpec {
            n_layers: 2,
            n_heads: 2,
            d_model: 16,
            n_ctx: 8,
            seed: 1,
        };
        let cfg = spec.config();
        let e = CpuEngine::new(cfg.clone(), random_weights(&spec)).unwrap();
        let mut seen = vec![];
        e.forward(&[1, 2, 3], &mut |name, t| {
            seen.push((name.to_string(), t.dims().to_vec()));
            Ok(t)
        })
        .unwrap();
        assert_eq!(seen, all_hooks(&cfg, 3));
        for (name, shape) in &seen {
            assert_eq!(hook_shape(&cfg, 3, name).as_ref(), Some(shape), "{name}");
        }
        for name in [
            "blocks.2.hook_resid_pre",
            "blocks.0.hook_nothing",
            "ln_final.x",
            "embed",
        ] {
            assert_eq!(hook_shape(&cfg, 3, name), None, "{name}");
        }
    }
}
