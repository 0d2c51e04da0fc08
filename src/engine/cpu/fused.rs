//! Fused element-wise kernels for the hot layers (GELU, layer norm, and their
//! backward passes). candle runs each tensor operation as its own pass over
//! memory; gelu_new alone would be nine passes over [rows, d_mlp]. One pass
//! each, split over the cores, roughly halves a tail pass's time.

use crate::error::{Error, Result};
use candle_core::{Device, Layout, Storage, Tensor};

/// How many threads the CPU backend computes on. Natively: every core for
/// the element-wise kernels, candle's own count (physical cores,
/// `RAYON_NUM_THREADS`) for the matrix products. In the threaded browser
/// build (`target_feature = "atomics"`): the rayon pool of Web Workers the
/// page started (`initThreadPool`). In the plain browser build: 1.
pub fn threads() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    return std::thread::available_parallelism().map_or(1, |n| n.get());
    #[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
    return rayon::current_num_threads();
    #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
    return 1;
}

fn matmul_threads() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    return candle_core::utils::get_num_threads();
    #[cfg(target_arch = "wasm32")]
    return threads();
}

/// a [m, k] · b [k, n] with gemm, the kernels behind candle's own matmul,
/// split over `matmul_threads()` threads (gemm's partitioning: blocks of the
/// output, never of k, so every element sums in the same order whatever the
/// thread count). Called directly because candle takes its thread count from
/// num_cpus, which is 1 in the browser even when the page has a thread pool.
pub(super) fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let ((m, k), (k2, n)) = (a.dims2()?, b.dims2()?);
    if k != k2 {
        return Err(Error::Backend(format!(
            "matmul: [{m}, {k}] · [{k2}, {n}]: the inner dimensions differ"
        )));
    }
    let mut dst = vec![0f32; m * n];
    if m > 0 && n > 0 && k > 0 {
        let (sa, la) = a.storage_and_layout();
        let (sb, lb) = b.storage_and_layout();
        let (pa, a_rs, a_cs) = operand(&sa, la)?;
        let (pb, b_rs, b_cs) = operand(&sb, lb)?;
        let threads = matmul_threads();
        let parallelism = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: dst holds m·n elements written with row stride n; `operand`
        // checked that a and b hold every element their strides reach, and
        // the read guards sa, sb keep both storages alive until gemm returns.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                1,
                n as isize,
                false,
                pa,
                a_cs,
                a_rs,
                pb,
                b_cs,
                b_rs,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
    }
    Ok(Tensor::from_vec(dst, (m, n), &Device::Cpu)?)
}

/// The first element, row stride and column stride of a 2-d f32 CPU tensor.
fn operand(storage: &Storage, layout: &Layout) -> Result<(*const f32, isize, isize)> {
    let Storage::Cpu(cpu) = storage else {
        return Err(Error::Backend("matmul: a tensor is not on the CPU".into()));
    };
    let data = cpu.as_slice::<f32>()?;
    let (dims, st) = (layout.dims(), layout.stride());
    let last = layout.start_offset() + (dims[0] - 1) * st[0] + (dims[1] - 1) * st[1];
    if last >= data.len() {
        return Err(Error::Backend(
            "matmul: a tensor's layout runs past its storage".into(),
        ));
    }
    Ok((
        data[layout.start_offset()..].as_ptr(),
        st[0] as isize,
        st[1] as isize,
    ))
}

/// Runs `f(first_row, rows_out…)` over disjoint row ranges on every thread
/// (`threads()`).
pub(super) fn par_rows<F>(rows: usize, cols: usize, outs: &mut [&mut [f32]], f: F)
where
    F: Fn(usize, &mut [&mut [f32]]) + Sync,
{
    let threads = threads().min(rows.max(1));
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
    #[cfg(not(target_arch = "wasm32"))]
    std::thread::scope(|s| {
        for (i, mut c) in chunks.into_iter().enumerate() {
            let f = &f;
            s.spawn(move || f(i * per, &mut c));
        }
    });
    // Web Workers cannot be spawned from Rust: the pool's threads take the chunks
    #[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
    rayon::scope(|s| {
        for (i, mut c) in chunks.into_iter().enumerate() {
            let f = &f;
            s.spawn(move |_| f(i * per, &mut c));
        }
    });
    // the plain browser build has one thread, so the early return above is
    // always taken; this only keeps the build's code paths whole
    #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
    for (i, mut c) in chunks.into_iter().enumerate() {
        f(i * per, &mut c);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic, irregular values in [-1, 1): the high bits of a
    /// multiplicative hash of (seed, index).
    fn values_for(n: usize, seed: u64) -> Vec<f32> {
        let hash = |i: u64| (i ^ seed << 32).wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        (0..n as u64)
            .map(|i| hash(i) as f32 / (1u64 << 23) as f32 - 1.0)
            .collect()
    }

    /// The product in f64, one plain loop per element.
    fn naive(a: &[Vec<f32>], b: &[Vec<f32>]) -> Vec<f64> {
        let (m, k, n) = (a.len(), b.len(), b[0].len());
        let mut out = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| a[i][p] as f64 * b[p][j] as f64).sum();
            }
        }
        out
    }

    fn rows(t: &Tensor) -> Vec<Vec<f32>> {
        t.to_vec2::<f32>().unwrap()
    }

    // Shapes big enough for gemm to split the output over threads, and odd
    // enough to leave partial blocks; operands as the engine passes them: a
    // row slice of a larger tensor, a transposed weight (`w.t()`, not copied).
    #[test]
    fn matmul_matches_a_plain_loop_for_every_layout_the_engine_uses() {
        let (m, k, n) = (67, 301, 259);
        let big = Tensor::from_vec(values_for((m + 5) * k, 1), (m + 5, k), &Device::Cpu).unwrap();
        let a = big.narrow(0, 3, m).unwrap(); // starts at an offset
        let b = Tensor::from_vec(values_for(k * n, 2), (k, n), &Device::Cpu).unwrap();
        let w = Tensor::from_vec(values_for(n * k, 3), (n, k), &Device::Cpu).unwrap();
        let wt = w.t().unwrap(); // [k, n], column-major
        for (rhs, what) in [(&b, "contiguous"), (&wt, "transposed")] {
            let got = matmul(&a, rhs).unwrap();
            assert_eq!(got.dims(), &[m, n]);
            let want = naive(&rows(&a), &rows(&rhs.contiguous().unwrap()));
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let worst = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (*g as f64 - w).abs())
                .fold(0f64, f64::max);
            // f32 rounding of 301-term sums: ~1e-5 of the largest entry; a
            // wrong stride or offset would be off by the entries themselves
            let scale = want.iter().fold(1f64, |m, w| m.max(w.abs()));
            assert!(
                worst < 1e-4 * scale,
                "{what}: largest difference {worst} (scale {scale})"
            );
            // and bit for bit what candle's own matmul gives
            let candle = a
                .matmul(rhs)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert_eq!(got, candle, "{what}: differs from candle's matmul");
        }
    }

    #[test]
    fn matmul_refuses_operands_that_do_not_fit() {
        let a = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros((4, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
        let e = matmul(&a, &b).unwrap_err().to_string();
        assert!(e.contains("[2, 3] · [4, 5]"), "{e}");
        // empty products are empty, not an error
        let z = Tensor::zeros((0, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let c = Tensor::zeros((3, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert_eq!(matmul(&z, &c).unwrap().dims(), &[0, 5]);
    }
}
