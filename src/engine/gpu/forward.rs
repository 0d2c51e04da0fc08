//! The full hooked forward pass of one prompt on the GPU: every
//! TransformerLens activation in its own buffer (kept for `activation` and the
//! tail passes), optional full-shape substitutions at any hook, and optional
//! replacements of single heads or neurons (mean ablation).

use super::context::{At, Enc};
use super::ops::{Cols, ComponentRows, Heads, LnTape, Norm, Rows, Scatter, Shared};
use super::GpuEngine;
use crate::engine::{Component, Metric, Replacement};
use crate::error::Result;
use crate::model::Config;
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

/// How the metric is read from ln_final's output: the answer direction
/// [d_model], or every token's sign [d_vocab].
pub(super) type Readout = crate::engine::Readout<Buffer>;

pub(super) struct Forward {
    /// ln_final.hook_normalized [pos, d].
    pub norm: Buffer,
    pub readout: Readout,
    /// The metric, one value.
    pub metric: Buffer,
    pub layers: Vec<LayerBufs>,
    pub hooks: HashMap<String, Hook>,
}

/// Replacements of a forward by (layer, kind): values [pos, k, width] with
/// width d_model for heads, 1 for neurons.
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
            let width = component.width(&self.cfg);
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

/// What a forward changes and keeps.
#[derive(Default)]
pub(super) struct ForwardOpts {
    /// Full-shape substitutes by hook name (`metric_with_substitutions`).
    pub subs: HashMap<String, Buffer>,
    /// Components held at given values (`metric_with_replacements`).
    pub reps: Replaced,
    /// Keep every hook's buffer (a run, for `activation` and the tails).
    pub keep: bool,
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
    fn cols(&mut self, name: &str, qkv: &Buffer, off: usize, d: usize, shape: Vec<usize>) -> Cols {
        match self.record(name, qkv, shape, View::Cols { off, ld: 3 * d }) {
            Some(buf) => Cols { buf, off: 0, ld: d },
            None => Cols {
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

/// One forward being encoded: the encoder, the hooks recorded and
/// substituted so far, the replacements to apply, and the prompt's length.
struct Pass<'a, 'g> {
    enc: &'a mut Enc<'g>,
    hk: Hooker<'a>,
    reps: &'a Replaced,
    t: usize,
}

impl Pass<'_, '_> {
    /// Overwrites the replaced components of kind `c` in layer `l`'s
    /// hook_result or hook_post, `buf`.
    fn replace(&mut self, cfg: &Config, l: usize, c: Component, buf: &Buffer) {
        if let Some(r) = self.reps.get(&(l, c)) {
            let dst = ComponentRows {
                buf,
                t: self.t,
                count: c.count(cfg),
                width: c.width(cfg),
            };
            self.enc.scatter(r, dst);
        }
    }
}

/// What an attention sublayer of the forward leaves for the tails.
struct AttnBufs {
    qkv: Buffer,
    result: Buffer,
    attn_out: Buffer,
    resid_mid: Buffer,
}

/// What an MLP sublayer of the forward leaves for the tails.
struct MlpBufs {
    post: Buffer,
    mlp_out: Buffer,
    resid_post: Buffer,
}

impl GpuEngine {
    /// Encodes the hooked forward of `tokens`; with `opts.keep`, every
    /// hook's buffer is returned in `hooks`. The replaced components of each
    /// layer's hook_result and hook_post are overwritten as soon as the
    /// layer computes them (before its hook is recorded or substituted, and
    /// before anything reads it). Returns the number of substitutions used.
    pub(super) fn encode_forward(
        &self,
        enc: &mut Enc,
        tokens: &[u32],
        metric: &Metric,
        opts: &ForwardOpts,
    ) -> Result<(Forward, usize)> {
        let hk = Hooker {
            subs: &opts.subs,
            keep: opts.keep,
            used: 0,
            hooks: HashMap::new(),
        };
        let t = tokens.len();
        let mut p = Pass {
            enc,
            hk,
            reps: &opts.reps,
            t,
        };
        let mut x = self.fwd_embed(&mut p, tokens)?;
        let mut layers = Vec::with_capacity(self.cfg.n_layers);
        for l in 0..self.cfg.n_layers {
            let x_in = p.hk.full(
                &format!("blocks.{l}.hook_resid_pre"),
                &x,
                vec![t, self.cfg.d_model],
            );
            let attn = self.fwd_attention(&mut p, l, &x_in)?;
            let mlp = self.fwd_mlp(&mut p, l, &attn.resid_mid)?;
            x = mlp.resid_post.clone();
            layers.push(LayerBufs {
                qkv: attn.qkv,
                resid_mid: attn.resid_mid,
                resid_post: mlp.resid_post,
                result: attn.result,
                post: mlp.post,
                attn_out: attn.attn_out,
                mlp_out: mlp.mlp_out,
            });
        }
        let ln_f = &self.w.ln_f;
        let norm = self.fwd_layer_norm(&mut p, &x, ln_f, "ln_final")?;
        let (readout, value) = self.fwd_metric(p.enc, &norm, t, metric)?;
        Ok((
            Forward {
                norm,
                readout,
                metric: value,
                layers,
                hooks: p.hk.hooks,
            },
            p.hk.used,
        ))
    }

    /// hook_embed + hook_pos_embed: the residual stream entering block 0.
    fn fwd_embed(&self, p: &mut Pass, tokens: &[u32]) -> Result<Buffer> {
        let (g, w) = (&self.gpu, &self.w);
        let (t, d) = (p.t, self.cfg.d_model);
        let embed = g.buffer(t * d, "hook_embed")?;
        for (i, &tok) in tokens.iter().enumerate() {
            p.enc.copy(w.wte_row(tok, d), At::new(&embed, i * d), d);
        }
        let pos = g.buffer(t * d, "hook_pos_embed")?;
        p.enc.copy(At::start(&w.wpe), At::start(&pos), t * d);
        let embed = p.hk.full("hook_embed", &embed, vec![t, d]);
        let pos = p.hk.full("hook_pos_embed", &pos, vec![t, d]);
        let x = g.buffer(t * d, "resid")?;
        p.enc.add(&embed, &pos, t * d, &x);
        Ok(x)
    }

    /// A layer norm of all t rows with its hooks `{at}.hook_scale` and
    /// `{at}.hook_normalized` (at: `blocks.L.ln1`, `blocks.L.ln2` or
    /// `ln_final`); returns the normalized rows that flow on.
    fn fwd_layer_norm(&self, p: &mut Pass, x: &Buffer, ln: &Norm, at: &str) -> Result<Buffer> {
        let (g, t, d) = (&self.gpu, p.t, self.cfg.d_model);
        let label = at.rsplit('.').next().unwrap_or(at);
        let y = g.buffer(t * d, label)?;
        let xhat = g.buffer(t * d, "xhat")?;
        let rstd = g.buffer(t, "rstd")?;
        let tape = LnTape {
            xhat: &xhat,
            rstd: &rstd,
        };
        p.enc.layer_norm(x, Rows::all(t), ln, &y, tape);
        p.hk.scale(&format!("{at}.hook_scale"), &rstd, t);
        Ok(p.hk.full(&format!("{at}.hook_normalized"), &y, vec![t, d]))
    }

    /// Layer l's attention on the residual stream `x`:
    /// hook_result = each head's softmax(q kᵀ / √d_head) v · W_O[h],
    /// resid_mid = x + Σ_h hook_result + b_O.
    fn fwd_attention(&self, p: &mut Pass, l: usize, x: &Buffer) -> Result<AttnBufs> {
        let (g, b) = (&self.gpu, &self.w.blocks[l]);
        let c = &self.cfg;
        let (t, d, h, dh) = (p.t, c.d_model, c.n_heads, c.d_head);
        let hs = Heads { t, heads: h, dh };
        let name = |s: &str| format!("blocks.{l}.{s}");
        let ln1 = self.fwd_layer_norm(p, x, &b.ln_1, &name("ln1"))?;
        let qkv = g.buffer(t * 3 * d, "qkv")?;
        p.enc.linear(&ln1, t, &b.c_attn, None, &qkv);
        let q = p.hk.cols(&name("attn.hook_q"), &qkv, 0, d, vec![t, h, dh]);
        let k = p.hk.cols(&name("attn.hook_k"), &qkv, d, d, vec![t, h, dh]);
        let v =
            p.hk.cols(&name("attn.hook_v"), &qkv, 2 * d, d, vec![t, h, dh]);
        let scores = g.buffer(h * t * t, "scores")?;
        p.enc.attn_scores(hs, &q, &k, &scores);
        let scores =
            p.hk.full(&name("attn.hook_attn_scores"), &scores, vec![h, t, t]);
        let pattern = g.buffer(h * t * t, "pattern")?;
        p.enc.attn_softmax(hs, &scores, &pattern);
        let pattern =
            p.hk.full(&name("attn.hook_pattern"), &pattern, vec![h, t, t]);
        let z = g.buffer(t * d, "z")?;
        p.enc.attn_pv(hs, &pattern, &v, &z);
        let z = p.hk.full(&name("attn.hook_z"), &z, vec![t, h, dh]);
        let result = g.buffer(t * h * d, "result")?;
        p.enc.head_results(hs, &z, &b.c_proj.w, &result);
        p.replace(c, l, Component::Heads, &result);
        let result = p.hk.full(&name("attn.hook_result"), &result, vec![t, h, d]);
        let attn_out = g.buffer(t * d, "attn_out")?;
        p.enc.heads_sum(hs, &result, &b.c_proj.b, &attn_out);
        let attn_out = p.hk.full(&name("hook_attn_out"), &attn_out, vec![t, d]);
        let mid = g.buffer(t * d, "resid_mid")?;
        p.enc.add(x, &attn_out, t * d, &mid);
        let resid_mid = p.hk.full(&name("hook_resid_mid"), &mid, vec![t, d]);
        Ok(AttnBufs {
            qkv,
            result,
            attn_out,
            resid_mid,
        })
    }

    /// Layer l's MLP on resid_mid: hook_post = gelu(ln_2(x) · W_in + b_in),
    /// resid_post = x + hook_post · W_out + b_out.
    fn fwd_mlp(&self, p: &mut Pass, l: usize, mid: &Buffer) -> Result<MlpBufs> {
        let (g, b) = (&self.gpu, &self.w.blocks[l]);
        let (t, d, dm) = (p.t, self.cfg.d_model, self.cfg.d_mlp);
        let name = |s: &str| format!("blocks.{l}.{s}");
        // hook_mlp_in is the copy fed to ln_2; the skip path keeps resid_mid
        let mlp_in = p.hk.full(&name("hook_mlp_in"), mid, vec![t, d]);
        let ln2 = self.fwd_layer_norm(p, &mlp_in, &b.ln_2, &name("ln2"))?;
        let pre = g.buffer(t * dm, "pre")?;
        p.enc.linear(&ln2, t, &b.c_fc, None, &pre);
        let pre = p.hk.full(&name("mlp.hook_pre"), &pre, vec![t, dm]);
        let post = g.buffer(t * dm, "post")?;
        p.enc.gelu(&pre, t * dm, &post);
        p.replace(&self.cfg, l, Component::Neurons, &post);
        let post = p.hk.full(&name("mlp.hook_post"), &post, vec![t, dm]);
        let mlp_out = g.buffer(t * d, "mlp_out")?;
        p.enc.linear(&post, t, &b.mlp_proj, None, &mlp_out);
        let mlp_out = p.hk.full(&name("hook_mlp_out"), &mlp_out, vec![t, d]);
        let next = g.buffer(t * d, "resid_post")?;
        p.enc.add(mid, &mlp_out, t * d, &next);
        let resid_post = p.hk.full(&name("hook_resid_post"), &next, vec![t, d]);
        Ok(MlpBufs {
            post,
            mlp_out,
            resid_post,
        })
    }

    /// The metric's head and the metric itself (one value) from ln_final's
    /// output at the last of the t positions.
    fn fwd_metric(
        &self,
        enc: &mut Enc,
        norm: &Buffer,
        t: usize,
        metric: &Metric,
    ) -> Result<(Readout, Buffer)> {
        let readout = self.encode_readout(enc, metric)?;
        let value = self.gpu.buffer(1, "metric")?;
        let last = Rows::last_of(1, t);
        match &readout {
            Readout::Dir(dir) => enc.metric(
                norm,
                last,
                self.cfg.d_model,
                Shared::each(dir),
                At::start(&value),
            ),
            Readout::Signs(signs) => {
                let u = self.unembed_work(1, false)?;
                self.encode_prob_diff(enc, &u, norm, last, signs, At::start(&value));
            }
        }
        Ok((readout, value))
    }

    /// Puts what reads a checked metric on the device: for the logit
    /// difference wte[correct] − wte[incorrect], for the probability
    /// difference every token's sign.
    pub(super) fn encode_readout(&self, enc: &mut Enc, m: &Metric) -> Result<Readout> {
        let d = self.cfg.d_model;
        let dir = |correct, incorrect| {
            let rows = self.gpu.buffer(2 * d, "answer rows")?;
            for (i, id) in [correct, incorrect].into_iter().enumerate() {
                enc.copy(self.w.wte_row(id, d), At::new(&rows, i * d), d);
            }
            let dir = self.gpu.buffer(d, "answer direction")?;
            enc.answer_dir(&rows, d, &dir);
            Ok(dir)
        };
        let signs = |signs: Vec<f32>| self.gpu.upload(&signs, "metric signs");
        Readout::of(m, self.cfg.d_vocab, dir, signs)
    }
}
