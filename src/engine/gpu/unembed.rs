//! The probability-difference metric on the GPU: the full logits of the last
//! position (ln_final's output · wteᵀ, one tiled product per chunk of the
//! token embedding), a softmax reduction per row (`prob_diff.wgsl`), and its
//! backward ∂m/∂norm = ∂m/∂logits · wte. Rows go through in groups small
//! enough that their [rows, d_vocab] logits fit one buffer binding.

use super::context::{At, Enc};
use super::ops::{Matrix, Mm, Rows};
use super::GpuEngine;
use crate::error::Result;
use wgpu::Buffer;

/// Device memory for one group of logit rows.
const LOGIT_BYTES: usize = 64 << 20;

/// Buffers of the probability difference for up to `cap` rows.
pub(super) struct Unembed {
    /// [rows, d_vocab]: logits, then ∂m/∂logits.
    logits: Buffer,
    /// Rows per group.
    rows: usize,
    /// ∂m/∂(ln_final's output) [cap, d], written in turn over the embedding's
    /// chunks (each adds its part to the other's sum); None: forward only.
    dn: Option<[Buffer; 2]>,
}

impl GpuEngine {
    /// Buffers for `cap` rows; with `record`, for the gradient too.
    pub(super) fn unembed_work(&self, cap: usize, record: bool) -> Result<Unembed> {
        let (v, d) = (self.cfg.d_vocab, self.cfg.d_model);
        let rows = cap
            .min(self.gpu.max_floats() / v)
            .min(LOGIT_BYTES / (4 * v))
            .max(1);
        let g = &self.gpu;
        let dn = if record {
            Some([
                g.buffer(cap * d, "d ln_final")?,
                g.buffer(cap * d, "d ln_final")?,
            ])
        } else {
            None
        };
        Ok(Unembed {
            logits: g.buffer(rows * v, "logits")?,
            rows,
            dn,
        })
    }

    /// Where the last `encode_prob_diff` of a recording workspace left
    /// ∂m/∂norm ([rows, d]).
    pub(super) fn prob_diff_grad<'u>(&self, u: &'u Unembed) -> &'u Buffer {
        let dn = u.dn.as_ref().expect("a recording workspace");
        &dn[(self.w.wte.len() - 1) % 2]
    }

    /// The probability difference of the rows of ln_final's output `norm`
    /// [.., d] that `rows` picks, written to `metrics` (one per row); with a
    /// recording workspace also ∂m/∂norm (see `prob_diff_grad`).
    pub(super) fn encode_prob_diff(
        &self,
        enc: &mut Enc,
        u: &Unembed,
        norm: &Buffer,
        rows: Rows,
        signs: &Buffer,
        metrics: At,
    ) {
        let (v, d) = (self.cfg.d_vocab, self.cfg.d_model);
        let chunk_rows = self.w.wte_rows;
        let mut r0 = 0;
        while r0 < rows.count {
            let k = u.rows.min(rows.count - r0);
            // logits[:, first_v ..] = norm rows · wte_chunkᵀ
            for (i, chunk) in self.w.wte.iter().enumerate() {
                let first_v = i * chunk_rows;
                let mm = Mm {
                    lda: rows.step * d,
                    ldb: d,
                    ldc: v,
                    a_off: (rows.first + r0 * rows.step) * d,
                    c_off: first_v,
                    trans_b: true,
                    ..Mm::plain(k, d, chunk_rows.min(v - first_v))
                };
                enc.matmul(mm, norm, chunk, None, None, &u.logits);
            }
            let logits = Matrix {
                buf: &u.logits,
                rows: k,
                cols: v,
            };
            let out = At::new(metrics.buf, metrics.off + r0);
            enc.prob_diff(logits, signs, u.dn.is_some(), out);
            if let Some(dn) = &u.dn {
                // ∂m/∂norm rows = Σ_chunks ∂m/∂logits[:, chunk] · wte_chunk
                for (i, chunk) in self.w.wte.iter().enumerate() {
                    let first_v = i * chunk_rows;
                    let mm = Mm {
                        lda: v,
                        a_off: first_v,
                        c_off: r0 * d,
                        ..Mm::plain(k, chunk_rows.min(v - first_v), d)
                    };
                    let prev = (i > 0).then(|| &dn[(i - 1) % 2]);
                    enc.matmul(mm, &u.logits, chunk, None, prev, &dn[i % 2]);
                }
            }
            r0 += k;
        }
    }
}
