//! The fast paths on the GPU: the model *tail* from a perturbed layer for a
//! batch of perturbations (rows ≥ the first differing position only, prefix
//! keys/values from the base run, the final block at the last position only,
//! the two answer logits only — or, for the probability difference, the full
//! logits of the last position), forward and with activation gradients.
//! Runs the steps of `engine::plan::TailPlan`, as the CPU backend's `tail` does.
//!
//! This module holds the types the sweeps share; `work.rs` sizes and caches
//! the workspace, `encode.rs` records one tail pass forward and backward,
//! `group.rs` runs the sweeps over a group of prompt pairs (patches, paths)
//! and `one_run.rs` those over one base run (base gradients, residual
//! perturbations).

mod encode;
mod group;
mod one_run;
mod work;

use super::forward::{Forward, Readout};
use super::ops::{Batch, LnTape};
use super::unembed::Unembed;
use crate::engine::plan::TailPlan;
use wgpu::Buffer;

/// Tape buffers of one sublayer (gradient passes only).
struct Tape {
    xhat: Buffer,
    rstd: Buffer,
    /// MLP: hook_pre [rows, d_mlp]; attention: qkv [rows, 3·d].
    act: Buffer,
    /// Attention: the pattern [batch, heads, nq, T].
    pat: Option<Buffer>,
}

impl Tape {
    /// The sublayer's layer norm tape.
    fn ln(&self) -> LnTape<'_> {
        LnTape {
            xhat: &self.xhat,
            rstd: &self.rstd,
        }
    }
}

/// What a workspace was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct WorkKey {
    /// Batch elements per pass.
    pub cap: usize,
    /// Rows per batch element (positions first_diff..T).
    pub n: usize,
    /// Tokens of the prompts.
    pub t: usize,
    /// Whether it keeps tapes for gradients.
    pub record: bool,
    /// Whether it forms full logits (the probability difference).
    pub logits: bool,
}

/// Buffers of a sweep, sized for `cap` batch elements of n rows.
pub(super) struct Work {
    x: [Buffer; 2],
    ln: Buffer,
    xhat: Buffer,
    rstd: Buffer,
    qkv: Buffer,
    z: Buffer,
    xl: Buffer,
    hid: Buffer,
    post: Buffer,
    norm: Buffer,
    xhat_f: Buffer,
    rstd_f: Buffer,
    grad: Option<GradWork>,
    /// The probability difference's buffers (None for the logit difference).
    unembed: Option<Unembed>,
}

struct GradWork {
    tapes: Vec<Tape>,
    g: [Buffer; 2],
    dz: Buffer,
    dh: Buffer,
    dqkv: Buffer,
    ds: Buffer,
}

/// The rows a group's tails run on: prompts of t tokens, positions first_diff..t.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    pub t: usize,
    pub first_diff: usize,
}

impl Window {
    /// Rows per tail.
    pub fn n(self) -> usize {
        self.t - self.first_diff
    }
}

/// The straight path of a path-gradient sweep: its α and their weights.
#[derive(Clone, Copy)]
pub(super) struct Path<'a> {
    pub alphas: &'a [f32],
    pub weights: &'a [f32],
}

/// A pair of a grouped sweep: the base run and the run patched in.
#[derive(Clone, Copy)]
pub(super) struct RunPair<'a> {
    pub base: &'a Forward,
    pub other: &'a Forward,
}

/// One tail pass being encoded: the workspace, the base side, the steps and
/// the batch.
struct Pass<'a> {
    ws: &'a Work,
    base: &'a Stacked,
    plan: &'a TailPlan,
    b: Batch,
}

impl<'a> Pass<'a> {
    /// The tape of step `si` (gradient passes): a tail's steps are the last
    /// ones of the longest tail.
    fn tape(&self, si: usize) -> Option<&'a Tape> {
        let steps = self.plan.steps.len();
        self.ws
            .grad
            .as_ref()
            .map(|g| &g.tapes[g.tapes.len() - steps + si])
    }
}

/// One step of a tail pass: its layer, the rows per batch element entering
/// it, where it reads and where it writes (residual rows forward, gradients
/// backward), and its tape (gradient passes).
#[derive(Clone, Copy)]
struct StepIo<'a> {
    layer: usize,
    m: usize,
    input: &'a Buffer,
    output: &'a Buffer,
    tape: Option<&'a Tape>,
}

/// The base side of a sweep over a group of prompt pairs of one token length
/// T: each layer's q | k | v of the pairs' base runs, stacked [pair, T, 3·d],
/// and how the metric is read (the answer directions stacked [pair, d], or
/// the probability difference's signs, which the group shares). A group of
/// one uses its run's own buffers.
pub(super) struct Stacked {
    qkv: Vec<Buffer>,
    readout: Readout,
}

impl Stacked {
    /// One run's own buffers.
    fn of(run: &Forward) -> Stacked {
        Stacked {
            qkv: run.layers.iter().map(|l| l.qkv.clone()).collect(),
            readout: run.readout.clone(),
        }
    }
}
