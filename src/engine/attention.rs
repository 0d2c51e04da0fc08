//! Attention heads on host slices, for the methods that recompute a head
//! outside a forward (a patched q, k, v or pattern: `attribution::sites`),
//! whichever engine made the runs. It is the CPU backend's `attention` and
//! `attention_backward` (`cpu/layers.rs`) on a batch of heads, so that
//! attention is written once.

use super::cpu::layers::{attention, attention_backward, unhooked, AttentionTape};
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};

/// A batch of `heads` heads' inputs, row-major: q, k and v [heads, T,
/// d_head] and, optionally, patterns [heads, T, T] that replace
/// softmax(q kᵀ/√d_head) as a hook on `hook_pattern` would (z is then
/// pattern · v, whatever q and k are).
#[derive(Debug, Clone, Copy)]
pub struct HeadInputs<'a> {
    pub heads: usize,
    pub t: usize,
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub pattern: Option<&'a [f32]>,
}

/// ∂m/∂ of the heads' inputs, each shaped like its input ([heads, T,
/// d_head] for q, k and v, [heads, T, T] for the pattern).
#[derive(Debug, Clone)]
pub struct HeadGrads {
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    pub pattern: Vec<f32>,
}

/// z [heads, T, d_head].
pub fn head_attention(x: HeadInputs) -> Result<Vec<f32>> {
    let (z, _) = forward(&x)?;
    host(z)
}

/// ∂m/∂(each input) from ∂m/∂z [heads, T, d_head]. A given pattern does
/// not depend on q and k, so their gradients are then 0.
pub fn head_attention_backward(x: HeadInputs, dz: &[f32]) -> Result<HeadGrads> {
    let (_, tape) = forward(&x)?;
    let dz = Tensor::from_slice(dz, (x.heads, x.t, d_head(&x)?), &Device::Cpu)?;
    let g = attention_backward(&tape, &dz)?;
    let (q, k) = match x.pattern {
        None => (host(g.q)?, host(g.k)?),
        Some(_) => (vec![0.0; x.q.len()], vec![0.0; x.k.len()]),
    };
    Ok(HeadGrads {
        q,
        k,
        v: host(g.v)?,
        pattern: host(g.pattern)?,
    })
}

fn d_head(x: &HeadInputs) -> Result<usize> {
    let rows = x.heads * x.t;
    let dh = x.q.len() / rows.max(1);
    let sizes_fit = rows > 0
        && dh > 0
        && [x.q, x.k, x.v].iter().all(|a| a.len() == rows * dh)
        && x.pattern.is_none_or(|p| p.len() == rows * x.t);
    if !sizes_fit {
        return Err(Error::Input(format!(
            "{} heads' attention needs q, k, v of {}×T×d_head and patterns of {}×T×T values (T = {}; got {}, {}, {} and {:?})",
            x.heads,
            x.heads,
            x.heads,
            x.t,
            x.q.len(),
            x.k.len(),
            x.v.len(),
            x.pattern.map(<[f32]>::len)
        )));
    }
    Ok(dh)
}

fn forward(x: &HeadInputs) -> Result<(Tensor, AttentionTape)> {
    let (b, t, dh) = (x.heads, x.t, d_head(x)?);
    let dev = &Device::Cpu;
    let rows = |a: &[f32]| Tensor::from_slice(a, (b, t, dh), dev);
    let (q, k, v) = (rows(x.q)?, rows(x.k)?, rows(x.v)?);
    match x.pattern {
        None => attention(&q, &k, &v, 0, &mut unhooked),
        Some(p) => {
            let given = Tensor::from_slice(p, (b, t, t), dev)?;
            attention(&q, &k, &v, 0, &mut |name, a| {
                Ok(if name == "attn.hook_pattern" {
                    given.clone()
                } else {
                    a
                })
            })
        }
    }
}

fn host(a: Tensor) -> Result<Vec<f32>> {
    Ok(a.flatten_all()?.to_vec1::<f32>()?)
}
