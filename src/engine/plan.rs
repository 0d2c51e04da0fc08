//! How a tail pass runs, the same on every backend: where it starts, which
//! sublayers it runs in which order, and how many rows one pass takes.
//!
//! A sweep perturbs one layer's contribution to the residual stream and
//! needs the metric (and its gradient) of the rest of the network: the
//! *tail*. It starts at the residual stream the perturbed site adds to,
//! runs every later sublayer on the rows from the first differing position
//! on, and the final block only at the last position.

use super::{Component, LayerComponents};

// The pass sizes decide only how a sweep's batch is split into passes: each
// batch element's tail is the same maths in any pass. They are not
// number-neutral to the bit, though: a path-gradient sweep sums its weighted
// gradient pass by pass, so another split regroups float sums (checked on
// both backends: with 100 rows per pass, some IG gradients and AP metrics
// differ in the low bits). Changing them changes results by rounding only.

/// Rows (batch elements × positions) per tail pass on the CPU: large enough
/// for efficient matrix products, small enough to keep memory modest (also
/// in wasm, where the CPU backend is the fallback). Both backends started at
/// 3072; the CPU's was raised to 4096 in the commit that also made its gelu
/// cheaper (7774ef4, "CPU tail: cheaper gelu, larger passes").
pub const CPU_ROWS_PER_PASS: usize = 4096;

/// Rows (batch elements × positions) per tail pass on the GPU. It is 3072
/// because that was the CPU's value when the GPU backend was written
/// (commit 2953fb1, whose comment said "as on the CPU"); the CPU's later
/// change to 4096 was not carried over, and the history records no choice
/// of it for the GPU itself. It is one of three caps on a GPU pass
/// (`GpuEngine::capacity`; the others are the sweep's workspace memory and
/// one buffer binding): with GPT-2 small it is the one that binds for
/// forward-only sweeps (AP), while gradient sweeps (IG), whose tapes take
/// about eight times the memory per row, are held lower by the memory cap.
pub const GPU_ROWS_PER_PASS: usize = 3072;

/// A point of the residual stream: where a tail pass starts, or where a
/// backward pass reads the gradient at a block boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// `blocks.L.hook_resid_mid` (after attention): layer L's MLP runs next.
    Mid(usize),
    /// `blocks.L.hook_resid_post`: layer L+1 runs next.
    Post(usize),
    /// `blocks.0.hook_resid_pre`: the whole network runs.
    Embed,
}

impl Start {
    /// The residual stream a site adds to: heads add `attn_out` to
    /// resid_mid, neurons (through W_out) `mlp_out` to resid_post.
    pub fn of(which: LayerComponents) -> Start {
        match which.component {
            Component::Heads => Start::Mid(which.layer),
            Component::Neurons => Start::Post(which.layer),
        }
    }

    /// Where the point lies in the forward pass: earlier points have
    /// smaller orders (`blocks.0.hook_resid_pre` first).
    pub fn order(self) -> usize {
        match self {
            Start::Embed => 0,
            Start::Mid(l) => 2 * l + 1,
            Start::Post(l) => 2 * l + 2,
        }
    }

    /// The TransformerLens hook of this point.
    pub fn hook(self) -> String {
        match self {
            Start::Mid(l) => format!("blocks.{l}.hook_resid_mid"),
            Start::Post(l) => format!("blocks.{l}.hook_resid_post"),
            Start::Embed => "blocks.0.hook_resid_pre".to_string(),
        }
    }
}

/// One sublayer of a tail (with its residual connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Layer L's MLP: x + mlp(ln_2(x)).
    Mlp(usize),
    /// Layer L's attention: x + attn(ln_1(x)); with `last_only`, queries
    /// (and so outputs) at the last position only (the final block needs
    /// nothing else).
    Attn { layer: usize, last_only: bool },
}

impl Step {
    /// The layer this sublayer belongs to.
    pub fn layer(self) -> usize {
        match self {
            Step::Mlp(layer) | Step::Attn { layer, .. } => layer,
        }
    }
}

/// The sublayers a tail runs, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailPlan {
    /// The tail starts in the final block (at its MLP), so it keeps only the
    /// last row of the start rows before its first step.
    pub gather_first: bool,
    pub steps: Vec<Step>,
}

impl TailPlan {
    /// The tail of a model of `n_layers` layers from `start`.
    pub fn new(start: Start, n_layers: usize) -> TailPlan {
        let last = n_layers - 1;
        let (gather_first, mut steps, first) = match start {
            Start::Mid(l) => (l == last, vec![Step::Mlp(l)], l + 1),
            Start::Post(l) => (false, vec![], l + 1),
            Start::Embed => (false, vec![], 0),
        };
        for layer in first..=last {
            steps.push(Step::Attn {
                layer,
                last_only: layer == last,
            });
            steps.push(Step::Mlp(layer));
        }
        TailPlan {
            gather_first,
            steps,
        }
    }

    /// Rows per batch element entering each step, for start rows of n
    /// positions: n, or 1 once only the last position is left.
    pub fn step_rows(&self, n: usize) -> Vec<usize> {
        let mut m = if self.gather_first { 1 } else { n };
        self.steps
            .iter()
            .map(|s| {
                let rows = m;
                if let Step::Attn {
                    last_only: true, ..
                } = s
                {
                    m = 1;
                }
                rows
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_run_every_later_sublayer_once() {
        let attn = |layer, last_only| Step::Attn { layer, last_only };
        assert_eq!(
            TailPlan::new(Start::Mid(0), 2).steps,
            [Step::Mlp(0), attn(1, true), Step::Mlp(1)]
        );
        assert_eq!(
            TailPlan::new(Start::Post(0), 2).steps,
            [attn(1, true), Step::Mlp(1)]
        );
        assert_eq!(
            TailPlan::new(Start::Embed, 2).steps,
            [attn(0, false), Step::Mlp(0), attn(1, true), Step::Mlp(1)]
        );
        // from the final block's MLP: only that MLP, on the last row
        let p = TailPlan::new(Start::Mid(1), 2);
        assert!(p.gather_first);
        assert_eq!(p.steps, [Step::Mlp(1)]);
        assert_eq!(p.step_rows(5), [1]);
        // nothing after the final block's MLP
        assert!(TailPlan::new(Start::Post(1), 2).steps.is_empty());
        assert_eq!(TailPlan::new(Start::Embed, 2).step_rows(5), [5, 5, 5, 1]);
    }
}
