//! Typed wrappers around the kernels: one function per operation, turning
//! shapes into the uniform parameters and workgroup counts the WGSL expects.

use super::context::{Enc, K};
use wgpu::Buffer;

/// Operand layout of one (batched) matrix product C = A · B.
#[derive(Clone, Copy)]
pub(super) struct Mm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub a_off: usize,
    pub b_off: usize,
    pub c_off: usize,
    pub batch: usize,
    pub a_bs: usize,
    pub b_bs: usize,
    pub c_bs: usize,
    /// B is stored as [n, k] (C = A · Bᵀ of the stored matrix).
    pub trans_b: bool,
}

impl Mm {
    /// Row-major [m, k] · [k, n] → [m, n].
    pub fn plain(m: usize, k: usize, n: usize) -> Mm {
        Mm {
            m,
            n,
            k,
            lda: k,
            ldb: n,
            ldc: n,
            a_off: 0,
            b_off: 0,
            c_off: 0,
            batch: 1,
            a_bs: 0,
            b_bs: 0,
            c_bs: 0,
            trans_b: false,
        }
    }
}

fn u(x: usize) -> u32 {
    x as u32
}

impl Enc<'_> {
    /// C = A · B (+ bias) (+ residual, indexed like C).
    pub fn matmul(
        &mut self,
        mm: Mm,
        a: &Buffer,
        b: &Buffer,
        bias: Option<&Buffer>,
        res: Option<&Buffer>,
        c: &Buffer,
    ) {
        let flags = bias.is_some() as u32 | (res.is_some() as u32) << 1 | (mm.trans_b as u32) << 2;
        let dummy = self.dummy();
        let params = [
            u(mm.m),
            u(mm.n),
            u(mm.k),
            flags,
            u(mm.lda),
            u(mm.ldb),
            u(mm.ldc),
            0,
            u(mm.a_off),
            u(mm.b_off),
            u(mm.c_off),
            0,
            u(mm.a_bs),
            u(mm.b_bs),
            u(mm.c_bs),
            0,
        ];
        let bufs = [a, b, bias.unwrap_or(&dummy), res.unwrap_or(&dummy), c];
        if mm.m <= 16 {
            let groups = [mm.n.div_ceil(64), mm.m.div_ceil(4), mm.batch];
            self.run(K::MatmulSkinny, &params, &bufs, groups);
        } else {
            let groups = [mm.n.div_ceil(64), mm.m.div_ceil(64), mm.batch];
            self.run(K::Matmul, &params, &bufs, groups);
        }
    }

    /// out[rows, n] = x[rows, k] · w[k, n] + bias (+ res).
    #[allow(clippy::too_many_arguments)]
    pub fn linear(
        &mut self,
        x: &Buffer,
        rows: usize,
        k: usize,
        w: &Buffer,
        n: usize,
        bias: &Buffer,
        res: Option<&Buffer>,
        out: &Buffer,
    ) {
        self.matmul(Mm::plain(rows, k, n), x, w, Some(bias), res, out);
    }

    /// out[rows, k] = dy[rows, n] · wᵀ for w [k, n]: the input gradient of `linear`.
    pub fn linear_backward(
        &mut self,
        dy: &Buffer,
        rows: usize,
        n: usize,
        w: &Buffer,
        k: usize,
        out: &Buffer,
    ) {
        let mm = Mm {
            ldb: n,
            trans_b: true,
            ..Mm::plain(rows, n, k)
        };
        self.matmul(mm, dy, w, None, None, out);
    }

    /// Layer norm of `rows` rows (row r reads x row r·step + first).
    #[allow(clippy::too_many_arguments)]
    pub fn layer_norm(
        &mut self,
        x: &Buffer,
        rows: usize,
        d: usize,
        (step, first): (usize, usize),
        (w, b): (&Buffer, &Buffer),
        eps: f32,
        y: &Buffer,
        xhat: &Buffer,
        rstd: &Buffer,
    ) {
        let params = [u(rows), u(d), u(step), u(first), eps.to_bits(), 0, 0, 0];
        self.run_groups(K::LayerNorm, &params, &[x, w, b, y, xhat, rstd], rows);
    }

    /// Layer norm's input gradient; row r reads dy row (r / div)·step + first;
    /// `res` = (buffer, n, m) adds a residual that holds the last m of every n rows.
    #[allow(clippy::too_many_arguments)]
    pub fn layer_norm_backward(
        &mut self,
        dy: &Buffer,
        (dy_step, dy_first, dy_div): (usize, usize, usize),
        rows: usize,
        d: usize,
        w: &Buffer,
        xhat: &Buffer,
        rstd: &Buffer,
        res: Option<(&Buffer, usize, usize)>,
        out: &Buffer,
    ) {
        let dummy = self.dummy();
        let (rb, n, m) = res.unwrap_or((&dummy, 1, 1));
        let params = [
            u(rows),
            u(d),
            u(dy_step),
            u(dy_first),
            u(n),
            u(m),
            res.is_some() as u32,
            u(dy_div),
        ];
        self.run_groups(
            K::LayerNormBackward,
            &params,
            &[dy, w, xhat, rstd, rb, out],
            rows,
        );
    }

    pub fn gelu(&mut self, x: &Buffer, count: usize, y: &Buffer) {
        self.run_elems(K::Gelu, &[u(count)], &[x, y], count);
    }

    pub fn gelu_backward(&mut self, pre: &Buffer, dpost: &Buffer, count: usize, dpre: &Buffer) {
        self.run_elems(K::GeluBackward, &[u(count)], &[pre, dpost, dpre], count);
    }

    pub fn add(&mut self, a: &Buffer, b: &Buffer, count: usize, out: &Buffer) {
        self.run_elems(K::Add, &[u(count)], &[a, b, out], count);
    }

    /// out[b·m + i] = x[b·n + n − m + i] for rows of width d.
    pub fn gather_last(
        &mut self,
        x: &Buffer,
        batch: usize,
        n: usize,
        m: usize,
        d: usize,
        out: &Buffer,
    ) {
        let count = batch * m * d;
        self.run_elems(
            K::GatherLast,
            &[u(count), u(d), u(n), u(m)],
            &[x, out],
            count,
        );
    }

    /// m_b = y[b·step + first] · dir[b / per], written to out[out_off + b]
    /// (dir holds one answer direction per prompt pair of a group).
    #[allow(clippy::too_many_arguments)]
    pub fn metric(
        &mut self,
        y: &Buffer,
        rows: usize,
        d: usize,
        (step, first): (usize, usize),
        (dir, per): (&Buffer, usize),
        out: &Buffer,
        out_off: usize,
    ) {
        let params = [u(rows), u(d), u(step), u(first), u(out_off), u(per), 0, 0];
        self.run_groups(K::Metric, &params, &[y, dir, out], rows);
    }

    /// The probability difference of `rows` full logit rows ([rows, v]):
    /// out[out_off + r] = Σ_j s_j softmax(logits[r])_j; with `grad`, each row
    /// of `logits` becomes ∂m/∂logits.
    #[allow(clippy::too_many_arguments)]
    pub fn prob_diff(
        &mut self,
        logits: &Buffer,
        rows: usize,
        v: usize,
        signs: &Buffer,
        grad: bool,
        out: &Buffer,
        out_off: usize,
    ) {
        let params = [u(rows), u(v), u(out_off), grad as u32];
        self.run_groups(K::ProbDiff, &params, &[signs, logits, out], rows);
    }

    /// Overwrites components of `dst` [t, n, width] with `src` [t, k, width]:
    /// component j of `src` goes to component idx[j] (k distinct u32 indices).
    #[allow(clippy::too_many_arguments)]
    pub fn scatter(
        &mut self,
        src: &Buffer,
        idx: &Buffer,
        t: usize,
        k: usize,
        width: usize,
        n: usize,
        dst: &Buffer,
    ) {
        let count = t * k * width;
        self.run_elems(
            K::Scatter,
            &[u(count), u(k), u(width), u(n)],
            &[src, idx, dst],
            count,
        );
    }

    fn dummy(&self) -> Buffer {
        self.gpu().dummy().clone()
    }
}

/// Shape of a batch of tail rows: `batch` elements of `n` rows (positions
/// fd..fd+n), queries on the last `nq` of them; element b belongs to prompt
/// pair b / per (whose base keys and values are row block b / per of the
/// stacked base qkv).
#[derive(Clone, Copy)]
pub(super) struct AttnShape {
    pub batch: usize,
    pub per: usize,
    pub n: usize,
    pub nq: usize,
    pub fd: usize,
    pub heads: usize,
    pub dh: usize,
    pub d: usize,
}

impl AttnShape {
    fn params(&self, third: u32, scale: f32) -> [u32; 12] {
        [
            u(self.n),
            u(self.nq),
            u(self.fd),
            u(self.heads),
            u(self.dh),
            u(self.d),
            third,
            scale.to_bits(),
            u(self.per),
            0,
            0,
            0,
        ]
    }
    fn scale(&self) -> f32 {
        (1.0 / (self.dh as f64).sqrt()) as f32
    }
}

impl Enc<'_> {
    /// Tail attention: z [batch·nq, d] (and the pattern tape when `pat` is given).
    pub fn attn_tail(
        &mut self,
        s: AttnShape,
        qkv: &Buffer,
        base_qkv: &Buffer,
        z: &Buffer,
        pat: Option<&Buffer>,
    ) {
        let out = self.gpu().dummy_out().clone();
        let params = s.params(pat.is_some() as u32, s.scale());
        self.run(
            K::AttnTail,
            &params,
            &[qkv, base_qkv, z, pat.unwrap_or(&out)],
            [s.nq, s.heads, s.batch],
        );
    }

    /// Tail attention backward: dqkv [batch·n, 3d] from dz [batch·nq, d].
    #[allow(clippy::too_many_arguments)]
    pub fn attn_tail_backward(
        &mut self,
        s: AttnShape,
        dz: &Buffer,
        pat: &Buffer,
        qkv: &Buffer,
        base_qkv: &Buffer,
        ds: &Buffer,
        dqkv: &Buffer,
    ) {
        if s.nq < s.n {
            self.clear(dqkv);
        }
        self.run(
            K::AttnTailBackwardQ,
            &s.params(0, s.scale()),
            &[dz, pat, qkv, base_qkv, ds, dqkv],
            [s.nq, s.heads, s.batch],
        );
        self.run(
            K::AttnTailBackwardKv,
            &s.params(0, 0.0),
            &[ds, pat, dz, qkv, dqkv],
            [s.n, s.heads, s.batch],
        );
    }
}

/// A row-major array read as rows of some width at `off` with row stride `ld`
/// (q, k and v inside the packed qkv buffer, or substituted [pos, d] arrays).
#[derive(Clone)]
pub(super) struct Rows {
    pub buf: Buffer,
    pub off: usize,
    pub ld: usize,
}

/// Shape of one prompt's full attention.
#[derive(Clone, Copy)]
pub(super) struct Heads {
    pub t: usize,
    pub heads: usize,
    pub dh: usize,
}

impl Enc<'_> {
    /// hook_attn_scores [heads, t, t] (−inf above the diagonal).
    pub fn attn_scores(&mut self, s: Heads, q: &Rows, k: &Rows, out: &Buffer) {
        let count = s.heads * s.t * s.t;
        let scale = (1.0 / (s.dh as f64).sqrt()) as f32;
        let params = [
            u(s.t),
            u(s.heads),
            u(s.dh),
            u(count),
            u(q.off),
            u(q.ld),
            u(k.off),
            u(k.ld),
            scale.to_bits(),
            f32::NEG_INFINITY.to_bits(),
            0,
            0,
        ];
        self.run_elems(K::AttnScores, &params, &[&q.buf, &k.buf, out], count);
    }

    /// hook_pattern from hook_attn_scores.
    pub fn attn_softmax(&mut self, s: Heads, scores: &Buffer, out: &Buffer) {
        let rows = s.heads * s.t;
        self.run_groups(K::AttnSoftmax, &[u(rows), u(s.t)], &[scores, out], rows);
    }

    /// hook_z [t, d] from hook_pattern and v.
    pub fn attn_pv(&mut self, s: Heads, pattern: &Buffer, v: &Rows, out: &Buffer) {
        let count = s.t * s.heads * s.dh;
        let params = [
            u(s.t),
            u(s.heads),
            u(s.dh),
            u(count),
            u(v.off),
            u(v.ld),
            0,
            0,
        ];
        self.run_elems(K::AttnPv, &params, &[pattern, &v.buf, out], count);
    }

    /// hook_result [t, heads, d]: each head's z_h · W_O[h].
    pub fn head_results(&mut self, s: Heads, d: usize, z: &Buffer, w_o: &Buffer, out: &Buffer) {
        let mm = Mm {
            m: s.t,
            n: d,
            k: s.dh,
            lda: d,
            ldb: d,
            ldc: s.heads * d,
            a_off: 0,
            b_off: 0,
            c_off: 0,
            batch: s.heads,
            a_bs: s.dh,
            b_bs: s.dh * d,
            c_bs: d,
            trans_b: false,
        };
        self.matmul(mm, z, w_o, None, None, out);
    }

    /// hook_attn_out = Σ_h hook_result[:, h] + b_O.
    pub fn heads_sum(&mut self, s: Heads, d: usize, result: &Buffer, bias: &Buffer, out: &Buffer) {
        let count = s.t * d;
        self.run_elems(
            K::HeadsSum,
            &[u(count), u(d), u(s.heads)],
            &[result, bias, out],
            count,
        );
    }

    /// dir = rows[0] − rows[1].
    pub fn answer_dir(&mut self, rows: &Buffer, d: usize, dir: &Buffer) {
        self.run_elems(K::AnswerDir, &[u(d)], &[rows, dir], d);
    }

    /// out[out_off + v] = x[x_off..] · w[v] for the `count` rows of w.
    #[allow(clippy::too_many_arguments)]
    pub fn logits(
        &mut self,
        x: &Buffer,
        x_off: usize,
        w: &Buffer,
        count: usize,
        d: usize,
        out: &Buffer,
        out_off: usize,
    ) {
        self.run_elems(
            K::Logits,
            &[u(count), u(d), u(x_off), u(out_off)],
            &[x, w, out],
            count,
        );
    }
}

/// Where the perturbed rows of a sweep come from: `batch` elements of `n`
/// rows (positions fd..), rows of width d. The elements are `per` consecutive
/// ones for each prompt pair of a group (batch = pairs · per), and the base
/// arrays they read are stacked [pair, fd + n, …].
#[derive(Clone, Copy)]
pub(super) struct Batch {
    pub batch: usize,
    pub per: usize,
    pub n: usize,
    pub d: usize,
    pub fd: usize,
}

impl Batch {
    /// `per` elements for each of `pairs` prompt pairs.
    pub fn new(pairs: usize, per: usize, n: usize, d: usize, fd: usize) -> Batch {
        Batch {
            batch: pairs * per,
            per,
            n,
            d,
            fd,
        }
    }
    fn count(&self) -> usize {
        self.batch * self.n * self.d
    }
    /// Prompt pairs in the batch.
    pub fn pairs(&self) -> usize {
        self.batch / self.per
    }
}

impl Enc<'_> {
    /// Start rows for heads c0..c0+per of every pair: resid + Δhook_result[:, c].
    #[allow(clippy::too_many_arguments)]
    pub fn patch_heads(
        &mut self,
        b: Batch,
        heads: usize,
        c0: usize,
        resid: &Buffer,
        rb: &Buffer,
        ro: &Buffer,
        out: &Buffer,
    ) {
        let params = [
            u(b.count()),
            u(b.n),
            u(b.d),
            u(heads),
            u(b.fd),
            u(c0),
            u(b.per),
            0,
        ];
        self.run_elems(K::PatchHeads, &params, &[resid, rb, ro, out], b.count());
    }

    /// Start rows for neurons c0..c0+per of every pair: resid + Δhook_post[:, c] · W_out[c].
    #[allow(clippy::too_many_arguments)]
    pub fn patch_neurons(
        &mut self,
        b: Batch,
        d_mlp: usize,
        c0: usize,
        resid: &Buffer,
        pb: &Buffer,
        po: &Buffer,
        w_out: &Buffer,
        out: &Buffer,
    ) {
        let params = [
            u(b.count()),
            u(b.n),
            u(b.d),
            u(d_mlp),
            u(b.fd),
            u(c0),
            u(b.per),
            0,
        ];
        self.run_elems(
            K::PatchNeurons,
            &params,
            &[resid, pb, po, w_out, out],
            b.count(),
        );
    }

    /// Start rows along the path: resid + α[a_off + b % per] · Δout of b's pair.
    #[allow(clippy::too_many_arguments)]
    pub fn patch_path(
        &mut self,
        b: Batch,
        resid: &Buffer,
        ob: &Buffer,
        oo: &Buffer,
        alpha: &Buffer,
        a_off: usize,
        out: &Buffer,
    ) {
        let params = [
            u(b.count()),
            u(b.n),
            u(b.d),
            u(b.fd),
            u(a_off),
            u(b.per),
            0,
            0,
        ];
        self.run_elems(
            K::PatchPath,
            &params,
            &[resid, ob, oo, alpha, out],
            b.count(),
        );
    }

    /// acc[pair, n, d] += Σ_k w[w_off + k] · g[pair·per + k] (g holds the last
    /// m of the n rows).
    #[allow(clippy::too_many_arguments)]
    pub fn weighted_sum(
        &mut self,
        g: &Buffer,
        m: usize,
        b: Batch,
        w: &Buffer,
        w_off: usize,
        acc: &Buffer,
    ) {
        let count = b.pairs() * b.n * b.d;
        let params = [u(count), u(b.per), u(b.n), u(m), u(b.d), u(w_off), 0, 0];
        self.run_elems(K::WeightedSum, &params, &[g, w, acc], count);
    }
}
