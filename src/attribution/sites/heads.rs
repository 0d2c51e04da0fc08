//! A layer's heads recomputed on the host with one input changed (q, k, v
//! or the pattern), for the sites that patch a head's input.

use super::*;

/// Which entries of a head's input come from the other run.
#[derive(Clone, Copy)]
pub(super) enum Pick {
    All,
    /// One position (q, k, v) or one destination row (pattern).
    Row(usize),
    /// One (destination, source) entry of the pattern.
    Entry(usize, usize),
}

/// One layer's heads recomputed with their `input` changed, from the runs'
/// cached q, k, v ([T, d_head] per head) and patterns ([T, T] per head):
/// many variants per call of `engine::attention`, the attention the
/// engine's forward runs.
pub(super) struct HeadAttn {
    t: usize,
    dh: usize,
    input: Input,
    q: [Vec<Vec<f32>>; 2],
    k: [Vec<Vec<f32>>; 2],
    v: [Vec<Vec<f32>>; 2],
    pattern: [Vec<Vec<f32>>; 2],
    /// The base run's v without the value bias, per head: what a patched
    /// pattern weighs. TransformerLens (fold_value_biases, as
    /// `from_pretrained` loads GPT-2) keeps the value bias in b_O, so a
    /// pattern entry patched alone (its row no longer sums to 1) does not
    /// scale it; for whole rows the two are the same.
    v_pat: Vec<Vec<f32>>,
    /// Every head's z at the base run, computed as the variants' are (for a
    /// pattern, from `v_pat`), so that Δz compares like with like.
    z_base: Vec<Vec<f32>>,
}

/// Head variants per call of `engine::attention`: enough to share a call's
/// fixed cost, few enough to bound its memory.
pub(super) const HEADS_PER_CALL: usize = 64;

impl HeadAttn {
    pub(super) fn new(
        cfg: &Config,
        t: usize,
        acts: &Acts,
        b_v: &[f32],
        input: Input,
    ) -> Result<HeadAttn> {
        let (h, dh) = (cfg.n_heads, cfg.d_head);
        // [T, H, dh] → per head [T, dh]
        let split = |a: &[f32]| -> Vec<Vec<f32>> {
            (0..h)
                .map(|hh| {
                    (0..t)
                        .flat_map(|p| a[(p * h + hh) * dh..(p * h + hh + 1) * dh].iter().copied())
                        .collect()
                })
                .collect()
        };
        let heads = |a: &[f32]| -> Vec<Vec<f32>> { a.chunks(t * t).map(<[f32]>::to_vec).collect() };
        let both =
            |name: &str, f: &dyn Fn(&[f32]) -> Vec<Vec<f32>>| [f(acts.b(name)), f(acts.o(name))];
        let v = both("attn.hook_v", &split);
        let v_pat = v[0]
            .iter()
            .enumerate()
            .map(|(hh, vh)| {
                let b = &b_v[hh * dh..(hh + 1) * dh];
                vh.iter().enumerate().map(|(i, x)| x - b[i % dh]).collect()
            })
            .collect();
        let mut heads = HeadAttn {
            t,
            dh,
            input,
            q: both("attn.hook_q", &split),
            k: both("attn.hook_k", &split),
            v,
            pattern: both("attn.hook_pattern", &heads),
            v_pat,
            z_base: Vec::new(),
        };
        let base: Vec<(usize, &[f32])> = (0..h).map(|hh| (hh, heads.input(hh).0)).collect();
        heads.z_base = heads.z(&base)?;
        Ok(heads)
    }

    /// The base (0) and other (1) run's values of head `hh`'s input.
    pub(super) fn input(&self, hh: usize) -> (&[f32], &[f32]) {
        let runs = match self.input {
            Input::Q => &self.q,
            Input::K => &self.k,
            Input::V => &self.v,
            Input::Pattern => &self.pattern,
        };
        (&runs[0][hh], &runs[1][hh])
    }

    /// Calls `f` with the inputs of `variants`: (head, x) is head `hh` of
    /// the base run with x as its input. A pattern replaces the computed
    /// one and weighs v without its bias (`v_pat`); a q, k or v leaves the
    /// pattern to be computed.
    pub(super) fn with_inputs<R>(
        &self,
        variants: &[(usize, &[f32])],
        f: impl FnOnce(HeadInputs) -> Result<R>,
    ) -> Result<R> {
        let (mut q, mut k, mut v, mut pattern) = (vec![], vec![], vec![], vec![]);
        for &(hh, x) in variants {
            let (mut qh, mut kh, mut vh) =
                (&self.q[0][hh][..], &self.k[0][hh][..], &self.v[0][hh][..]);
            match self.input {
                Input::Q => qh = x,
                Input::K => kh = x,
                Input::V => vh = x,
                Input::Pattern => {
                    vh = &self.v_pat[hh];
                    pattern.extend_from_slice(x);
                }
            }
            q.extend_from_slice(qh);
            k.extend_from_slice(kh);
            v.extend_from_slice(vh);
        }
        f(HeadInputs {
            heads: variants.len(),
            t: self.t,
            q: &q,
            k: &k,
            v: &v,
            pattern: (self.input == Input::Pattern).then_some(&pattern[..]),
        })
    }

    /// z of each variant, [T, d_head] each.
    pub(super) fn z(&self, variants: &[(usize, &[f32])]) -> Result<Vec<Vec<f32>>> {
        let z = self.with_inputs(variants, head_attention)?;
        Ok(z.chunks(self.t * self.dh).map(<[f32]>::to_vec).collect())
    }

    /// z′ − z of each variant.
    pub(super) fn dz(&self, variants: &[(usize, &[f32])]) -> Result<Vec<Vec<f32>>> {
        let z = self.z(variants)?;
        Ok(z.iter()
            .zip(variants)
            .map(|(z1, &(hh, _))| {
                z1.iter()
                    .zip(&self.z_base[hh])
                    .map(|(a, b)| a - b)
                    .collect()
            })
            .collect())
    }

    /// ∂m/∂(input) of each variant, given its ∂m/∂z.
    pub(super) fn grads(
        &self,
        variants: &[(usize, &[f32])],
        gz: &[Vec<f32>],
    ) -> Result<Vec<Vec<f32>>> {
        let gz: Vec<f32> = gz.concat();
        let g = self.with_inputs(variants, |x| head_attention_backward(x, &gz))?;
        let g = match self.input {
            Input::Q => g.q,
            Input::K => g.k,
            Input::V => g.v,
            Input::Pattern => g.pattern,
        };
        Ok(g.chunks(g.len() / variants.len())
            .map(<[f32]>::to_vec)
            .collect())
    }

    /// Δz of each cell (a head, and which entries of its input come from
    /// the other run), [T, d_head] each; a cell whose entries are the same
    /// in both runs is 0, computed by no call.
    pub(super) fn patched_dz(&self, cells: &[(usize, Pick)]) -> Result<Vec<Vec<f32>>> {
        let mut out = vec![vec![0.0; self.t * self.dh]; cells.len()];
        let mut changed = Vec::with_capacity(cells.len());
        let mut xs = Vec::with_capacity(cells.len());
        for (i, &(hh, pick)) in cells.iter().enumerate() {
            let (b, o) = self.input(hh);
            let width = b.len() / self.t;
            let mut x = b.to_vec();
            match pick {
                Pick::All => x.copy_from_slice(o),
                Pick::Row(r) => {
                    x[r * width..(r + 1) * width].copy_from_slice(&o[r * width..(r + 1) * width])
                }
                Pick::Entry(r, c) => x[r * width + c] = o[r * width + c],
            }
            if x != b {
                changed.push(i);
                xs.push((hh, x));
            }
        }
        if changed.is_empty() {
            return Ok(out);
        }
        let variants: Vec<(usize, &[f32])> = xs.iter().map(|(hh, x)| (*hh, &x[..])).collect();
        for (i, dz) in changed.into_iter().zip(self.dz(&variants)?) {
            out[i] = dz;
        }
        Ok(out)
    }

    /// Every head's input at α on its straight path from the base run's
    /// value to the other run's.
    pub(super) fn on_path(&self, a: f32) -> Vec<Vec<f32>> {
        (0..self.z_base.len())
            .map(|hh| {
                let (b, o) = self.input(hh);
                b.iter().zip(o).map(|(b, o)| b + a * (o - b)).collect()
            })
            .collect()
    }

    /// Δz of every head at α on the input's straight path.
    pub(super) fn path_dz(&self, a: f32) -> Result<Vec<Vec<f32>>> {
        let xs = self.on_path(a);
        self.dz(&xs.iter().map(Vec::as_slice).enumerate().collect::<Vec<_>>())
    }

    /// ∂m/∂z per head, [T, d_head] (rows before `first_diff` zero), from ∂m/∂attn_out
    /// rows first_diff.. ([n, d]): ∂m/∂z[p, h] = W_O[h] ∂m/∂attn_out[p].
    pub(super) fn grad_z(&self, g: &[f32], w_o: &[f32], first_diff: usize) -> Vec<Vec<f32>> {
        let (t, dh) = (self.t, self.dh);
        let d = g.len() / (t - first_diff);
        let h = w_o.len() / (dh * d);
        (0..h)
            .map(|hh| {
                let mut gz = vec![0f32; t * dh];
                for p in first_diff..t {
                    let gp = &g[(p - first_diff) * d..(p - first_diff + 1) * d];
                    for j in 0..dh {
                        let w = &w_o[(hh * dh + j) * d..(hh * dh + j + 1) * d];
                        gz[p * dh + j] = w.iter().zip(gp).map(|(a, b)| a * b).sum();
                    }
                }
                gz
            })
            .collect()
    }

    /// ∂m/∂(input) of every head at the base run, given each head's ∂m/∂z.
    pub(super) fn base_grads(&self, gz: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        let base: Vec<(usize, &[f32])> = (0..gz.len()).map(|hh| (hh, self.input(hh).0)).collect();
        self.grads(&base, gz)
    }

    /// ∂m/∂(input) of every head at α on the input's straight path, given
    /// each head's ∂m/∂z there.
    pub(super) fn path_grads(&self, a: f32, gz: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        let xs = self.on_path(a);
        self.grads(
            &xs.iter().map(Vec::as_slice).enumerate().collect::<Vec<_>>(),
            gz,
        )
    }
}

/// Adds head `hh`'s Δz · W_O[hh] to the perturbation rows (positions first_diff..).
pub(super) fn add_head_output(
    block: &mut [f32],
    dz: &[f32],
    w_o: &[f32],
    hh: usize,
    cfg: &Config,
    t: usize,
    first_diff: usize,
) {
    let (d, dh) = (cfg.d_model, cfg.d_head);
    for p in first_diff..t {
        let row = &mut block[(p - first_diff) * d..(p - first_diff + 1) * d];
        for j in 0..dh {
            let z = dz[p * dh + j];
            if z != 0.0 {
                let w = &w_o[(hh * dh + j) * d..(hh * dh + j + 1) * d];
                for (r, &wv) in row.iter_mut().zip(w) {
                    *r += z * wv;
                }
            }
        }
    }
}
