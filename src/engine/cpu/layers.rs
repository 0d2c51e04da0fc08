//! GPT-2's layers on candle tensors, forward and backward (activation
//! gradients only), one small function each so the maths stays visible.

use super::fused;
use super::CpuBlock;
use crate::error::Result;
use crate::model::Config;
use candle_core::{Device, Tensor, D};

/// What layer norm keeps for its backward pass.
pub(super) struct LnTape {
    pub xhat: Tensor,
    pub rstd: Tensor,
}

/// y = γ ⊙ (x − μ)/σ + β over the last dimension, σ = sqrt(var + eps).
pub(super) fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<(Tensor, LnTape)> {
    let (y, xhat, rstd) = fused::layer_norm(&x.contiguous()?, w, b, eps)?;
    Ok((y, LnTape { xhat, rstd }))
}

/// dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)), with dx̂ = dy ⊙ γ.
pub(super) fn layer_norm_backward(dy: &Tensor, w: &Tensor, t: &LnTape) -> Result<Tensor> {
    fused::layer_norm_backward(&dy.contiguous()?, w, &t.xhat, &t.rstd)
}

/// x · W + b for x of shape [..., in] and a Conv1D weight W [in, out].
pub(super) fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let y = matmul_rows(x, w)?;
    Ok(y.broadcast_add(b)?)
}

/// x · W for x of shape [..., in] and W [in, out] (any strides: `w.t()` is
/// not copied).
pub(super) fn matmul_rows(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let mut dims = x.dims().to_vec();
    let k = dims.pop().expect("at least 1-d");
    let rows: usize = dims.iter().product();
    let y = fused::matmul(&x.reshape((rows, k))?, w)?;
    dims.push(w.dim(1)?);
    Ok(y.reshape(dims)?)
}

/// x · Wᵀ for x of shape [..., out]: the input gradient of `linear`.
pub(super) fn matmul_rows_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    matmul_rows(x, &w.t()?)
}

/// GPT-2's gelu_new: 0.5·x·(1 + tanh(c·(x + a·x³))).
pub(super) fn gelu_new(x: &Tensor) -> Result<Tensor> {
    fused::gelu_new(&x.contiguous()?)
}

/// Softmax over the last dimension (masked entries are −inf and become 0).
fn softmax_last(s: &Tensor) -> Result<Tensor> {
    let m = s.max_keepdim(D::Minus1)?;
    let e = s.broadcast_sub(&m)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

/// dS = P ⊙ (dP − Σ_j dP ⊙ P).
fn softmax_backward(p: &Tensor, dp: &Tensor) -> Result<Tensor> {
    let s = (dp * p)?.sum_keepdim(D::Minus1)?;
    Ok((dp.broadcast_sub(&s)? * p)?)
}

/// Additive causal mask [rows, keys] for query positions q0..q0+rows.
fn causal_mask(rows: usize, q0: usize, keys: usize) -> Result<Tensor> {
    let m: Vec<f32> = (0..rows)
        .flat_map(|i| (0..keys).map(move |j| if j <= q0 + i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Ok(Tensor::from_vec(m, (rows, keys), &Device::Cpu)?)
}

fn attn_scale(d_head: usize) -> f64 {
    1.0 / (d_head as f64).sqrt()
}

/// [pos, heads, d_head] → [heads, pos, d_head].
pub(super) fn heads_first(t: &Tensor) -> Result<Tensor> {
    Ok(t.transpose(0, 1)?.contiguous()?)
}

/// What the MLP keeps for its backward pass.
pub(super) struct MlpTape {
    ln_2_w: Tensor,
    ln: LnTape,
    pre: Tensor,
    c_fc_w: Tensor,
    mlp_proj_w: Tensor,
}

/// x + W_out·gelu(W_in·ln_2(x) + b_in) + b_out, on rows [batch, rows, d].
pub(super) fn mlp(
    b: &CpuBlock,
    x: &Tensor,
    eps: f64,
    record: bool,
) -> Result<(Tensor, Option<MlpTape>)> {
    let (out, tape) = mlp_branch(b, x, eps, record)?;
    Ok(((x + out)?, tape))
}

/// The MLP's output alone (`hook_mlp_out`), without the residual.
pub(super) fn mlp_branch(
    b: &CpuBlock,
    x: &Tensor,
    eps: f64,
    record: bool,
) -> Result<(Tensor, Option<MlpTape>)> {
    let (h, ln) = layer_norm(x, &b.ln_2_w, &b.ln_2_b, eps)?;
    let pre = linear(&h, &b.c_fc_w, &b.c_fc_b)?;
    let y = linear(&gelu_new(&pre)?, &b.mlp_proj_w, &b.mlp_proj_b)?;
    let tape = record.then(|| MlpTape {
        ln_2_w: b.ln_2_w.clone(),
        ln,
        pre,
        c_fc_w: b.c_fc_w.clone(),
        mlp_proj_w: b.mlp_proj_w.clone(),
    });
    Ok((y, tape))
}

pub(super) fn mlp_backward(t: &MlpTape, dy: &Tensor) -> Result<Tensor> {
    Ok((dy + mlp_branch_backward(t, dy)?)?)
}

/// ∂m/∂x through the MLP alone (the gradient at `hook_mlp_in`).
pub(super) fn mlp_branch_backward(t: &MlpTape, dy: &Tensor) -> Result<Tensor> {
    let dpost = matmul_rows_t(dy, &t.mlp_proj_w)?;
    let dpre = fused::gelu_new_backward(&t.pre, &dpost.contiguous()?)?;
    let dh = matmul_rows_t(&dpre, &t.c_fc_w)?;
    layer_norm_backward(&dh, &t.ln_2_w, &t.ln)
}

/// A hook on an activation of attention (`attn.hook_attn_scores`,
/// `attn.hook_pattern`): returns it, possibly replaced.
pub(in crate::engine) type Hook<'a> = &'a mut dyn FnMut(&str, Tensor) -> Result<Tensor>;

/// The hook that replaces nothing.
pub(in crate::engine) fn unhooked(_: &str, t: Tensor) -> Result<Tensor> {
    Ok(t)
}

/// What attention keeps for its backward pass: its inputs and the pattern
/// it weighed v with.
pub(in crate::engine) struct AttentionTape {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    pattern: Tensor,
}

/// Causal attention, for any leading dimensions (heads, a batch):
///
/// ```text
/// scores  = q kᵀ / √d_head, −∞ where the key comes after the query
/// pattern = softmax(scores) over the keys
/// z       = pattern · v
/// ```
///
/// q [..., nq, d_head] holds the queries of positions q0..q0 + nq, k and v
/// [..., T, d_head] the keys and values of positions 0..T. `hook` sees the
/// scores and the pattern and may replace them (a replaced pattern is what
/// z weighs v with, and what the backward differentiates).
pub(in crate::engine) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    q0: usize,
    hook: Hook,
) -> Result<(Tensor, AttentionTape)> {
    let (nq, t, d_head) = (q.dim(D::Minus2)?, k.dim(D::Minus2)?, q.dim(D::Minus1)?);
    let scores = (q.matmul(&k.t()?.contiguous()?)? * attn_scale(d_head))?
        .broadcast_add(&causal_mask(nq, q0, t)?)?;
    let scores = hook("attn.hook_attn_scores", scores)?;
    let pattern = hook("attn.hook_pattern", softmax_last(&scores)?)?;
    let z = pattern.matmul(v)?;
    let tape = AttentionTape {
        q: q.clone(),
        k: k.clone(),
        v: v.clone(),
        pattern,
    };
    Ok((z, tape))
}

/// ∂m/∂ of attention's inputs, each shaped like its input.
pub(in crate::engine) struct AttentionGrads {
    pub q: Tensor,
    pub k: Tensor,
    pub v: Tensor,
    pub pattern: Tensor,
}

/// Backward of `attention` from ∂m/∂z [..., nq, d_head]:
///
/// ```text
/// dpattern = dz vᵀ
/// dv       = patternᵀ dz
/// dscores  = pattern ⊙ (dpattern − Σ_keys dpattern ⊙ pattern) / √d_head
/// dq       = dscores k
/// dk       = dscoresᵀ q
/// ```
pub(in crate::engine) fn attention_backward(
    t: &AttentionTape,
    dz: &Tensor,
) -> Result<AttentionGrads> {
    let scale = attn_scale(t.q.dim(D::Minus1)?);
    let dpattern = dz.matmul(&t.v.t()?.contiguous()?)?;
    let dv = t.pattern.t()?.contiguous()?.matmul(dz)?;
    let dscores = (softmax_backward(&t.pattern, &dpattern)? * scale)?;
    let dq = dscores.matmul(&t.k)?;
    let dk = dscores.t()?.contiguous()?.matmul(&t.q)?;
    Ok(AttentionGrads {
        q: dq,
        k: dk,
        v: dv,
        pattern: dpattern,
    })
}

/// What the attention sublayer of a tail keeps for its backward pass.
pub(super) struct AttnTailTape {
    ln_1_w: Tensor,
    ln: LnTape,
    c_attn_w: Tensor,
    c_proj_w: Tensor,
    attn: AttentionTape,
    first_diff: usize,
    n: usize,
    last_only: bool,
}

/// The positions before a tail's rows: the base run's keys and values
/// ([heads, pos, d_head]), of which positions < `first_diff` are read (they are the
/// same for every perturbation).
pub(super) struct Prefix<'a> {
    pub keys: &'a Tensor,
    pub values: &'a Tensor,
    pub first_diff: usize,
}

/// Attention sublayer plus residual on the rows first_diff..T of a batch
/// x [batch, n, d]: keys and values of positions < first_diff come from the base run.
/// With `last_only`, only the last position's output is computed (the final
/// block needs nothing else); with `record`, the tape is kept.
pub(super) fn attention_tail(
    b: &CpuBlock,
    x: &Tensor,
    prefix: Prefix,
    last_only: bool,
    record: bool,
    cfg: &Config,
) -> Result<(Tensor, Option<AttnTailTape>)> {
    let (bs, n, d) = x.dims3()?;
    let first_diff = prefix.first_diff;
    let (h, dh, t) = (cfg.n_heads, cfg.d_head, first_diff + n);
    let eps = cfg.layer_norm_eps as f64;
    let (ln_x, ln) = layer_norm(x, &b.ln_1_w, &b.ln_1_b, eps)?;
    let qkv = linear(&ln_x, &b.c_attn_w, &b.c_attn_b)?;
    let split = |i: usize| -> Result<Tensor> {
        Ok(qkv
            .narrow(2, i * d, d)?
            .reshape((bs, n, h, dh))?
            .transpose(1, 2)?
            .contiguous()?)
    };
    let with_prefix = |base: &Tensor, new: Tensor| -> Result<Tensor> {
        if first_diff == 0 {
            return Ok(new);
        }
        let prefix = base
            .narrow(1, 0, first_diff)?
            .unsqueeze(0)?
            .broadcast_as((bs, h, first_diff, dh))?;
        Ok(Tensor::cat(&[&prefix, &new], 2)?.contiguous()?)
    };
    let k = with_prefix(prefix.keys, split(1)?)?; // [bs, h, t, dh]
    let v = with_prefix(prefix.values, split(2)?)?;
    let (q, q0, nq) = if last_only {
        (split(0)?.narrow(2, n - 1, 1)?.contiguous()?, t - 1, 1)
    } else {
        (split(0)?, first_diff, n)
    };
    let (z, attn) = attention(&q, &k, &v, q0, &mut unhooked)?;
    let z = z.transpose(1, 2)?.contiguous()?.reshape((bs, nq, d))?;
    let attn_out = linear(&z, &b.c_proj_w, &b.c_proj_b)?;
    let x_rows = if last_only {
        x.narrow(1, n - 1, 1)?
    } else {
        x.clone()
    };
    let y = (x_rows + attn_out)?;
    let tape = record.then(|| AttnTailTape {
        ln_1_w: b.ln_1_w.clone(),
        ln,
        c_attn_w: b.c_attn_w.clone(),
        c_proj_w: b.c_proj_w.clone(),
        attn,
        first_diff,
        n,
        last_only,
    });
    Ok((y, tape))
}

/// Backward of `attention_tail`: from ∂m/∂y [batch, nq, d] to ∂m/∂x [batch, n, d].
pub(super) fn attention_tail_backward(t: &AttnTailTape, dy: &Tensor) -> Result<Tensor> {
    let (bs, nq, d) = dy.dims3()?;
    let (_, h, _, dh) = t.attn.k.dims4()?;
    let n = t.n;
    let dz = matmul_rows_t(dy, &t.c_proj_w)?
        .reshape((bs, nq, h, dh))?
        .transpose(1, 2)?
        .contiguous()?; // [bs, h, nq, dh]
    let g = attention_backward(&t.attn, &dz)?;
    // the prefix's keys and values are the base run's: no gradient reaches x
    let dk = g.k.narrow(2, t.first_diff, n)?;
    let dv = g.v.narrow(2, t.first_diff, n)?;
    let dq = if t.last_only {
        g.q.pad_with_zeros(2, n - 1, 0)?
    } else {
        g.q
    };
    let rows =
        |x: Tensor| -> Result<Tensor> { Ok(x.transpose(1, 2)?.contiguous()?.reshape((bs, n, d))?) };
    let dqkv = Tensor::cat(&[&rows(dq)?, &rows(dk)?, &rows(dv)?], 2)?;
    let dln = matmul_rows_t(&dqkv, &t.c_attn_w)?;
    let dx = layer_norm_backward(&dln, &t.ln_1_w, &t.ln)?;
    let dres = if t.last_only {
        dy.pad_with_zeros(1, n - 1, 0)?
    } else {
        dy.clone()
    };
    Ok((dx + dres)?)
}
