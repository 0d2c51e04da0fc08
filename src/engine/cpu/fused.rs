//! Fused element-wise kernels for the hot layers (GELU, layer norm, and their
//! backward passes). candle runs each tensor operation as its own pass over
//! memory; gelu_new alone would be nine passes over [rows, d_mlp]. One pass
//! each, split over the cores, roughly halves a tail pass's time.

use crate::error::Result;
use candle_core::{Device, Tensor};

/// Runs `f(first_row, rows_out…)` over disjoint row ranges on every core.
pub(super) fn par_rows<F>(rows: usize, cols: usize, outs: &mut [&mut [f32]], f: F)
where
    F: Fn(usize, &mut [&mut [f32]]) + Sync,
{
    #[cfg(not(target_arch = "wasm32"))]
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(rows.max(1));
    #[cfg(target_arch = "wasm32")]
    let threads = 1;
    if threads <= 1 || rows * cols < 1 << 15 {
        f(0, outs);
        return;
    }
    let per = rows.div_ceil(threads);
    // split every output into the same row chunks
    let mut chunks: Vec<Vec<&mut [f32]>> = (0..threads).map(|_| Vec::new()).collect();
    for out in outs.iter_mut() {
        let width = out.len() / rows;
        for (i, c) in out.chunks_mut(per * width).enumerate() {
            chunks[i].push(c);
        }
    }
    std::thread::scope(|s| {
        for (i, mut c) in chunks.into_iter().enumerate() {
            let f = &f;
            s.spawn(move || f(i * per, &mut c));
        }
    });
}

fn values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

fn tensor(v: Vec<f32>, like: &Tensor) -> Result<Tensor> {
    Ok(Tensor::from_vec(v, like.dims(), &Device::Cpu)?)
}

const GELU_C: f32 = 0.797_884_6; // sqrt(2/π)
const GELU_A: f32 = 0.044_715;

/// gelu_new(x) = 0.5·x·(1 + tanh(c·(x + a·x³))).
pub(super) fn gelu_new(x: &Tensor) -> Result<Tensor> {
    let xs = values(x)?;
    let mut y = vec![0f32; xs.len()];
    let cols = *x.dims().last().unwrap_or(&1);
    let rows = xs.len() / cols.max(1);
    par_rows(rows, cols, &mut [&mut y], |r0, out| {
        let o = r0 * cols;
        for (i, y) in out[0].iter_mut().enumerate() {
            let x = xs[o + i];
            *y = 0.5 * x * (1.0 + (GELU_C * (x + GELU_A * x * x * x)).tanh());
        }
    });
    tensor(y, x)
}

/// dy ⊙ gelu_new'(x), with gelu_new'(x) = 0.5·(1 + t) + 0.5·x·(1 − t²)·c·(1 + 3a·x²).
pub(super) fn gelu_new_backward(x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let (xs, ds) = (values(x)?, values(dy)?);
    let mut dx = vec![0f32; xs.len()];
    let cols = *x.dims().last().unwrap_or(&1);
    let rows = xs.len() / cols.max(1);
    par_rows(rows, cols, &mut [&mut dx], |r0, out| {
        let o = r0 * cols;
        for (i, g) in out[0].iter_mut().enumerate() {
            let x = xs[o + i];
            let t = (GELU_C * (x + GELU_A * x * x * x)).tanh();
            let d =
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * x * x);
            *g = ds[o + i] * d;
        }
    });
    tensor(dx, x)
}

/// Layer norm over the last dimension: (y, x̂, rstd) with rstd of shape [..., 1].
pub(super) fn layer_norm(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (xs, ws, bs) = (values(x)?, values(w)?, values(b)?);
    let d = ws.len();
    let rows = xs.len() / d;
    let (mut y, mut xhat, mut rstd) =
        (vec![0f32; xs.len()], vec![0f32; xs.len()], vec![0f32; rows]);
    par_rows(rows, d, &mut [&mut y, &mut xhat, &mut rstd], |r0, out| {
        let n = out[2].len();
        for r in 0..n {
            let row = &xs[(r0 + r) * d..(r0 + r + 1) * d];
            let mu = row.iter().sum::<f32>() / d as f32;
            let var = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f32>() / d as f32;
            let rs = 1.0 / (var + eps as f32).sqrt();
            out[2][r] = rs;
            for j in 0..d {
                let h = (row[j] - mu) * rs;
                out[1][r * d + j] = h;
                out[0][r * d + j] = h * ws[j] + bs[j];
            }
        }
    });
    let mut rdims = x.dims().to_vec();
    *rdims.last_mut().expect("at least 1-d") = 1;
    Ok((
        tensor(y, x)?,
        tensor(xhat, x)?,
        Tensor::from_vec(rstd, rdims, &Device::Cpu)?,
    ))
}

/// dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)), dx̂ = dy ⊙ γ.
pub(super) fn layer_norm_backward(
    dy: &Tensor,
    w: &Tensor,
    xhat: &Tensor,
    rstd: &Tensor,
) -> Result<Tensor> {
    let (ds, ws, hs, rs) = (values(dy)?, values(w)?, values(xhat)?, values(rstd)?);
    let d = ws.len();
    let rows = ds.len() / d;
    let mut dx = vec![0f32; ds.len()];
    par_rows(rows, d, &mut [&mut dx], |r0, out| {
        let n = out[0].len() / d;
        for r in 0..n {
            let o = (r0 + r) * d;
            let (mut m1, mut m2) = (0f32, 0f32);
            for j in 0..d {
                let g = ds[o + j] * ws[j];
                m1 += g;
                m2 += g * hs[o + j];
            }
            m1 /= d as f32;
            m2 /= d as f32;
            for j in 0..d {
                let g = ds[o + j] * ws[j];
                out[0][r * d + j] = rs[r0 + r] * (g - m1 - hs[o + j] * m2);
            }
        }
    });
    tensor(dx, dy)
}
