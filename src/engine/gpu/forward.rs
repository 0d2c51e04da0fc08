//! The full hooked forward pass of one prompt on the GPU: every
//! TransformerLens activation in its own buffer (kept for `activation` and the
//! tail passes), optional full-shape substitutions at any hook, and optional
//! replacements of single heads or neurons (mean ablation).

use super::context::Enc;
use super::ops::{Heads, Rows};
use super::GpuEngine;
use crate::engine::{split_hook, Component, Metric, Replacement};
use crate::error::Result;
use std::collections::{BTreeMap, HashMap};
use wgpu::Buffer;

/// How a hook's values sit in its buffer.
#[derive(Clone)]
pub(super) enum View {
    /// Exactly the hook's shape, row-major.
    Full,
    /// Columns off.. of rows with stride ld (q, k, v inside qkv).
    Cols { off: usize, ld: usize },
    /// The buffer holds rstd; the hook (`hook_scale`) is its reciprocal.
    Recip,
}

#[derive(Clone)]
pub(super) struct Hook {
    pub buf: Buffer,
    pub shape: Vec<usize>,
    pub view: View,
}

/// What the tail passes need of one layer of a run.
pub(super) struct LayerBufs {
    /// [pos, 3·d]: q | k | v.
    pub qkv: Buffer,
    pub resid_mid: Buffer,
    pub resid_post: Buffer,
    /// hook_result [pos, heads, d].
    pub result: Buffer,
    /// hook_post [pos, d_mlp].
    pub post: Buffer,
    pub attn_out: Buffer,
    pub mlp_out: Buffer,
}

/// How the metric is read from ln_final's output at the last position.
pub(super) enum Head {
    /// The logit difference: the dot product with wte[correct] − wte[incorrect].
    Dir(Buffer),
    /// The probability difference: every token's sign (+1 above, −1 below, 0).
    Signs(Buffer),
}

pub(super) struct Forward {
    /// ln_final.hook_normalized [pos, d].
    pub norm: Buffer,
    pub head: Head,
    /// The metric, one value.
    pub metric: Buffer,
    pub layers: Vec<LayerBufs>,
    pub hooks: HashMap<String, Hook>,
}

/// Components of one kind in one layer held at given values: `k` of them,
/// their values packed as [pos, k, width] (width d_model for heads, 1 for
/// neurons) and their distinct indices as u32.
pub(super) struct Scatter {
    pub vals: Buffer,
    pub idx: Buffer,
    pub k: usize,
}

/// Replacements of a forward by (layer, kind).
pub(super) type Replaced = HashMap<(usize, Component), Scatter>;

impl GpuEngine {
    /// Groups checked replacements by layer and kind and uploads each group
    /// as one block; of two replacements of the same component the later wins
    /// (as on the CPU, which applies them in order).
    pub(super) fn upload_replacements(&self, t: usize, reps: &[Replacement]) -> Result<Replaced> {
        let mut groups: BTreeMap<(usize, Component), BTreeMap<usize, &[f32]>> = BTreeMap::new();
        for r in reps {
            groups
                .entry((r.layer, r.component))
                .or_default()
                .insert(r.index, &r.values);
        }
        let mut out = HashMap::new();
        for ((layer, component), comps) in groups {
            let width = match component {
                Component::Heads => self.cfg.d_model,
                Component::Neurons => 1,
            };
            let k = comps.len();
            let mut vals = Vec::with_capacity(t * k * width);
            for p in 0..t {
                for v in comps.values() {
                    vals.extend_from_slice(&v[p * width..][..width]);
                }
            }
            let idx: Vec<u32> = comps.keys().map(|&i| i as u32).collect();
            let label = format!("replacements of {} {layer}", component.name());
            out.insert(
                (layer, component),
                Scatter {
                    vals: self.gpu.upload(&vals, &label)?,
                    idx: self.gpu.upload_u32(&idx, &label)?,
                    k,
                },
            );
        }
        Ok(out)
    }
}

/// Applies substitutions and records hooks as the forward produces them.
struct Hooker<'a> {
    subs: &'a HashMap<String, Buffer>,
    keep: bool,
    used: usize,
    hooks: HashMap<String, Hook>,
}

impl Hooker<'_> {
    /// Registers `buf` as hook `name`; returns what flows on (the substitute, if any).
    fn full(&mut self, name: &str, buf: &Buffer, shape: Vec<usize>) -> Buffer {
        self.record(name, buf, shape, View::Full)
            .unwrap_or_else(|| buf.clone())
    }

    fn record(
        &mut self,
        name: &str,
        buf: &Buffer,
        shape: Vec<usize>,
        view: View,
    ) -> Option<Buffer> {
        if self.keep {
            self.hooks.insert(
                name.to_string(),
                Hook {
                    buf: buf.clone(),
                    shape,
                    view,
                },
            );
        }
        let sub = self.subs.get(name).cloned();
        self.used += sub.is_some() as usize;
        sub
    }

    /// q, k or v: columns of qkv, or a substituted [pos, d] array.
    fn cols(&mut self, name: &str, qkv: &Buffer, off: usize, d: usize, shape: Vec<usize>) -> Rows {
        match self.record(name, qkv, shape, View::Cols { off, ld: 3 * d }) {
            Some(buf) => Rows { buf, off: 0, ld: d },
            None => Rows {
                buf: qkv.clone(),
                off,
                ld: 3 * d,
            },
        }
    }

    /// hook_scale: readable, but (as in the CPU backend) a substitute changes nothing.
    fn scale(&mut self, name: &str, rstd: &Buffer, t: usize) {
        self.record(name, rstd, vec![t, 1], View::Recip);
    }
}

/// The shape of every hook of a `t`-token forward, or None for names we do not produce.
pub(super) fn hook_shape(cfg: &crate::model::Config, t: usize, name: &str) -> Option<Vec<usize>> {
    let (d, h, dh, dm) = (cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp);
    match name {
        "hook_embed" | "hook_pos_embed" | "ln_final.hook_normalized" => return Some(vec![t, d]),
        "ln_final.hook_scale" => return Some(vec![t, 1]),
        _ => {}
    }
    let (l, rest) = split_hook(name)?;
    if l >= cfg.n_layers {
        return None;
    }
    Some(match rest {
        "hook_resid_pre"
        | "hook_resid_mid"
        | "hook_resid_post"
        | "hook_attn_out"
        | "hook_mlp_in"
        | "hook_mlp_out"
        | "ln1.hook_normalized"
        | "ln2.hook_normalized" => {
            vec![t, d]
        }
        "ln1.hook_scale" | "ln2.hook_scale" => vec![t, 1],
        "attn.hook_q" | "attn.hook_k" | "attn.hook_v" | "attn.hook_z" => vec![t, h, dh],
        "attn.hook_attn_scores" | "attn.hook_pattern" => vec![h, t, t],
        "attn.hook_result" => vec![t, h, d],
        "mlp.hook_pre" | "mlp.hook_post" => vec![t, dm],
        _ => return None,
    })
}

impl GpuEngine {
    /// Encodes the hooked forward of `tokens`; with `keep`, every hook's
    /// buffer is returned in `hooks`. The replaced components of each
    /// layer's hook_result and hook_post are overwritten as soon as the
    /// layer computes them (before its hook is recorded or substituted, and
    /// before anything reads it). Returns the number of substitutions used.
    pub(super) fn encode_forward(
        &self,
        enc: &mut Enc,
        tokens: &[u32],
        metric: &Metric,
        subs: &HashMap<String, Buffer>,
        reps: &Replaced,
        keep: bool,
    ) -> Result<(Forward, usize)> {
        let g = &self.gpu;
        let w = &self.w;
        let cfg = &self.cfg;
        let (t, d, h, dh, dm) = (
            tokens.len(),
            cfg.d_model,
            cfg.n_heads,
            cfg.d_head,
            cfg.d_mlp,
        );
        let eps = cfg.layer_norm_eps;
        let hs = Heads { t, heads: h, dh };
        let mut hk = Hooker {
            subs,
            keep,
            used: 0,
            hooks: HashMap::new(),
        };
        let name = |l: usize, s: &str| format!("blocks.{l}.{s}");
        let replace = |enc: &mut Enc, l: usize, c: Component, buf: &Buffer| {
            if let Some(r) = reps.get(&(l, c)) {
                let (n, width) = match c {
                    Component::Heads => (h, d),
                    Component::Neurons => (dm, 1),
                };
                enc.scatter(&r.vals, &r.idx, t, r.k, width, n, buf);
            }
        };

        let embed = g.buffer(t * d, "hook_embed")?;
        for (i, &tok) in tokens.iter().enumerate() {
            let (chunk, row) = (tok as usize / w.wte_rows, tok as usize % w.wte_rows);
            enc.copy(&w.wte[chunk], row * d, &embed, i * d, d);
        }
        let pos = g.buffer(t * d, "hook_pos_embed")?;
        enc.copy(&w.wpe, 0, &pos, 0, t * d);
        let embed = hk.full("hook_embed", &embed, vec![t, d]);
        let pos = hk.full("hook_pos_embed", &pos, vec![t, d]);
        let mut x = g.buffer(t * d, "resid")?;
        enc.add(&embed, &pos, t * d, &x);

        let mut layers = Vec::with_capacity(cfg.n_layers);
        for (l, b) in w.blocks.iter().enumerate() {
            let x_in = hk.full(&name(l, "hook_resid_pre"), &x, vec![t, d]);
            let ln1 = g.buffer(t * d, "ln1")?;
            let xhat = g.buffer(t * d, "xhat")?;
            let rstd1 = g.buffer(t, "rstd")?;
            enc.layer_norm(
                &x_in,
                t,
                d,
                (1, 0),
                (&b.ln_1_w, &b.ln_1_b),
                eps,
                &ln1,
                &xhat,
                &rstd1,
            );
            hk.scale(&name(l, "ln1.hook_scale"), &rstd1, t);
            let ln1 = hk.full(&name(l, "ln1.hook_normalized"), &ln1, vec![t, d]);
            let qkv = g.buffer(t * 3 * d, "qkv")?;
            enc.linear(&ln1, t, d, &b.c_attn_w, 3 * d, &b.c_attn_b, None, &qkv);
            let q = hk.cols(&name(l, "attn.hook_q"), &qkv, 0, d, vec![t, h, dh]);
            let k = hk.cols(&name(l, "attn.hook_k"), &qkv, d, d, vec![t, h, dh]);
            let v = hk.cols(&name(l, "attn.hook_v"), &qkv, 2 * d, d, vec![t, h, dh]);
            let scores = g.buffer(h * t * t, "scores")?;
            enc.attn_scores(hs, &q, &k, &scores);
            let scores = hk.full(&name(l, "attn.hook_attn_scores"), &scores, vec![h, t, t]);
            let pattern = g.buffer(h * t * t, "pattern")?;
            enc.attn_softmax(hs, &scores, &pattern);
            let pattern = hk.full(&name(l, "attn.hook_pattern"), &pattern, vec![h, t, t]);
            let z = g.buffer(t * d, "z")?;
            enc.attn_pv(hs, &pattern, &v, &z);
            let z = hk.full(&name(l, "attn.hook_z"), &z, vec![t, h, dh]);
            let result = g.buffer(t * h * d, "result")?;
            enc.head_results(hs, d, &z, &b.c_proj_w, &result);
            replace(enc, l, Component::Heads, &result);
            let result = hk.full(&name(l, "attn.hook_result"), &result, vec![t, h, d]);
            let attn_out = g.buffer(t * d, "attn_out")?;
            enc.heads_sum(hs, d, &result, &b.c_proj_b, &attn_out);
            let attn_out = hk.full(&name(l, "hook_attn_out"), &attn_out, vec![t, d]);
            let mid = g.buffer(t * d, "resid_mid")?;
            enc.add(&x_in, &attn_out, t * d, &mid);
            let mid = hk.full(&name(l, "hook_resid_mid"), &mid, vec![t, d]);
            // hook_mlp_in is the copy fed to ln_2; the skip path keeps resid_mid
            let mlp_in = hk.full(&name(l, "hook_mlp_in"), &mid, vec![t, d]);
            let ln2 = g.buffer(t * d, "ln2")?;
            let xhat2 = g.buffer(t * d, "xhat")?;
            let rstd2 = g.buffer(t, "rstd")?;
            enc.layer_norm(
                &mlp_in,
                t,
                d,
                (1, 0),
                (&b.ln_2_w, &b.ln_2_b),
                eps,
                &ln2,
                &xhat2,
                &rstd2,
            );
            hk.scale(&name(l, "ln2.hook_scale"), &rstd2, t);
            let ln2 = hk.full(&name(l, "ln2.hook_normalized"), &ln2, vec![t, d]);
            let pre = g.buffer(t * dm, "pre")?;
            enc.linear(&ln2, t, d, &b.c_fc_w, dm, &b.c_fc_b, None, &pre);
            let pre = hk.full(&name(l, "mlp.hook_pre"), &pre, vec![t, dm]);
            let post = g.buffer(t * dm, "post")?;
            enc.gelu(&pre, t * dm, &post);
            replace(enc, l, Component::Neurons, &post);
            let post = hk.full(&name(l, "mlp.hook_post"), &post, vec![t, dm]);
            let mlp_out = g.buffer(t * d, "mlp_out")?;
            enc.linear(
                &post,
                t,
                dm,
                &b.mlp_proj_w,
                d,
                &b.mlp_proj_b,
                None,
                &mlp_out,
            );
            let mlp_out = hk.full(&name(l, "hook_mlp_out"), &mlp_out, vec![t, d]);
            let next = g.buffer(t * d, "resid_post")?;
            enc.add(&mid, &mlp_out, t * d, &next);
            x = hk.full(&name(l, "hook_resid_post"), &next, vec![t, d]);
            layers.push(LayerBufs {
                qkv,
                resid_mid: mid,
                resid_post: x.clone(),
                result,
                post,
                attn_out,
                mlp_out,
            });
        }
        let norm = g.buffer(t * d, "ln_final")?;
        let xhat = g.buffer(t * d, "xhat")?;
        let rstd = g.buffer(t, "rstd")?;
        enc.layer_norm(
            &x,
            t,
            d,
            (1, 0),
            (&w.ln_f_w, &w.ln_f_b),
            eps,
            &norm,
            &xhat,
            &rstd,
        );
        hk.scale("ln_final.hook_scale", &rstd, t);
        let norm = hk.full("ln_final.hook_normalized", &norm, vec![t, d]);

        let head = self.encode_head(enc, metric)?;
        let value = g.buffer(1, "metric")?;
        match &head {
            Head::Dir(dir) => enc.metric(&norm, 1, d, (1, t - 1), (dir, 1), &value, 0),
            Head::Signs(signs) => {
                let u = self.unembed_work(1, false)?;
                self.encode_prob_diff(enc, &u, &norm, 1, t - 1, signs, &value, 0);
            }
        }
        let used = hk.used;
        Ok((
            Forward {
                norm,
                head,
                metric: value,
                layers,
                hooks: hk.hooks,
            },
            used,
        ))
    }

    /// Checks a metric and puts what reads it on the device: for the logit
    /// difference wte[correct] − wte[incorrect], for the probability
    /// difference every token's sign.
    pub(super) fn encode_head(&self, enc: &mut Enc, m: &Metric) -> Result<Head> {
        m.check(self.cfg.d_vocab)?;
        let (correct, incorrect) = match *m {
            Metric::LogitDiff { correct, incorrect } => (correct, incorrect),
            Metric::ProbDiff { .. } => {
                let signs = m.signs(self.cfg.d_vocab);
                return Ok(Head::Signs(self.gpu.upload(&signs, "metric signs")?));
            }
        };
        let d = self.cfg.d_model;
        let rows = self.gpu.buffer(2 * d, "answer rows")?;
        for (i, id) in [correct, incorrect].into_iter().enumerate() {
            let (chunk, row) = (id as usize / self.w.wte_rows, id as usize % self.w.wte_rows);
            enc.copy(&self.w.wte[chunk], row * d, &rows, i * d, d);
        }
        let dir = self.gpu.buffer(d, "answer direction")?;
        enc.answer_dir(&rows, d, &dir);
        Ok(Head::Dir(dir))
    }
}
