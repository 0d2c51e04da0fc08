//! Typed wrappers around the kernels: one function per operation, turning
//! shapes into the uniform parameters and workgroup counts the WGSL expects.
//! Operands come as small named structs (a layer's weights with their shape,
//! the rows an op reads, a buffer from an offset) rather than as positional
//! numbers.

use super::context::{At, Enc, K};
use wgpu::Buffer;

/// Operand layout of one (batched) matrix product C = A · B (offsets,
/// strides and batch strides in f32).
#[derive(Clone, Copy, Debug)]
pub struct Mm {
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
    /// Where the bias starts, and how far it advances per batch element.
    pub bias_off: usize,
    pub bias_bs: usize,
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
            bias_off: 0,
            bias_bs: 0,
        }
    }
}

/// A linear layer's weights (GPT-2's Conv1D layout): x [rows, k] ↦
/// x · w + b, w [k, n], b [n].
pub(super) struct Linear {
    pub w: Buffer,
    pub b: Buffer,
    pub k: usize,
    pub n: usize,
}

/// A layer norm's weights over rows of width d, and its ε.
pub(super) struct Norm {
    pub w: Buffer,
    pub b: Buffer,
    pub d: usize,
    pub eps: f32,
}

/// What layer norm keeps for its backward pass: x̂ [rows, d] and rstd [rows].
#[derive(Clone, Copy)]
pub(super) struct LnTape<'a> {
    pub xhat: &'a Buffer,
    pub rstd: &'a Buffer,
}

/// Which rows of an array an op reads: `count` rows, row r at r·step + first.
#[derive(Clone, Copy)]
pub(super) struct Rows {
    pub count: usize,
    pub step: usize,
    pub first: usize,
}

impl Rows {
    /// The first `count` rows, in order.
    pub fn all(count: usize) -> Rows {
        Rows {
            count,
            step: 1,
            first: 0,
        }
    }
    /// The last row of each of `batch` elements of `m` rows (the last position).
    pub fn last_of(batch: usize, m: usize) -> Rows {
        Rows {
            count: batch,
            step: m,
            first: m - 1,
        }
    }
}

/// An array with one row for every `every` consecutive rows of an op (row
/// r of the op reads row r / every): the answer directions of a group, one
/// per prompt pair (every = batch elements per pair), or an ordinary array
/// (every = 1).
#[derive(Clone, Copy)]
pub(super) struct Shared<'a> {
    pub buf: &'a Buffer,
    pub every: usize,
}

impl<'a> Shared<'a> {
    /// One row for every row of the op.
    pub fn each(buf: &'a Buffer) -> Shared<'a> {
        Shared { buf, every: 1 }
    }
}

/// An array that holds only the last `last` of every `of` rows: the
/// gradient of a batch element's rows once the final block took only the
/// last position (last = 1), or of all of them (last = of).
#[derive(Clone, Copy)]
pub(super) struct LastRows<'a> {
    pub buf: &'a Buffer,
    pub of: usize,
    pub last: usize,
}

/// A row-major [rows, cols] matrix.
#[derive(Clone, Copy)]
pub(super) struct Matrix<'a> {
    pub buf: &'a Buffer,
    pub rows: usize,
    pub cols: usize,
}

fn u(x: usize) -> u32 {
    x as u32
}

fn f(x: usize) -> f64 {
    x as f64
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
            u(mm.bias_off),
            u(mm.a_off),
            u(mm.b_off),
            u(mm.c_off),
            u(mm.bias_bs),
            u(mm.a_bs),
            u(mm.b_bs),
            u(mm.c_bs),
            0,
        ];
        let bufs = [a, b, bias.unwrap_or(&dummy), res.unwrap_or(&dummy), c];
        let mnk = f(mm.m * mm.n * mm.k * mm.batch);
        let moved = mm.batch
            * (mm.m * mm.k + mm.k * mm.n + mm.m * mm.n * (1 + res.is_some() as usize))
            + bias.map_or(0, |_| mm.n);
        self.cost(2.0 * mnk, 4.0 * f(moved));
        if mm.m <= 16 {
            let groups = [mm.n.div_ceil(64), mm.m.div_ceil(4), mm.batch];
            self.run(K::MatmulSkinny, &params, &bufs, groups);
        } else if mm.m >= 128 && mm.n >= 128 && self.tiled_fits(&mm, a, b) {
            let groups = [mm.n.div_ceil(128), mm.m.div_ceil(128), mm.batch];
            self.run(K::MatmulTiled, &params, &bufs, groups);
        } else {
            let groups = [mm.n.div_ceil(64), mm.m.div_ceil(64), mm.batch];
            self.run(K::Matmul, &params, &bufs, groups);
        }
    }

    /// Whether `matmul_tiled` may run `mm`: it reads A and B as vec4, so
    /// their offsets, row strides and batch strides must be multiples of 4
    /// and both buffers whole vec4s (every buffer is, where the binding limit
    /// allows).
    fn tiled_fits(&self, mm: &Mm, a: &Buffer, b: &Buffer) -> bool {
        let batched = |bs: usize| if mm.batch > 1 { bs } else { 0 };
        self.gpu()
            .matmul_tiled
            .load(std::sync::atomic::Ordering::Relaxed)
            && [
                mm.a_off,
                mm.lda,
                batched(mm.a_bs),
                mm.b_off,
                mm.ldb,
                batched(mm.b_bs),
            ]
            .iter()
            .all(|x| x.is_multiple_of(4))
            && a.size().is_multiple_of(16)
            && b.size().is_multiple_of(16)
    }

    /// out[rows, n] = x[rows, k] · w + b (+ res).
    pub fn linear(
        &mut self,
        x: &Buffer,
        rows: usize,
        layer: &Linear,
        res: Option<&Buffer>,
        out: &Buffer,
    ) {
        let mm = Mm::plain(rows, layer.k, layer.n);
        self.matmul(mm, x, &layer.w, Some(&layer.b), res, out);
    }

    /// out[rows, k] = dy[rows, n] · wᵀ: the input gradient of `linear`.
    pub fn linear_backward(&mut self, dy: &Buffer, rows: usize, layer: &Linear, out: &Buffer) {
        let mm = Mm {
            ldb: layer.n,
            trans_b: true,
            ..Mm::plain(rows, layer.n, layer.k)
        };
        self.matmul(mm, dy, &layer.w, None, None, out);
    }

    /// Layer norm of the rows of x that `rows` picks into y [rows.count, d],
    /// keeping the tape.
    pub fn layer_norm(&mut self, x: &Buffer, rows: Rows, ln: &Norm, y: &Buffer, tape: LnTape) {
        let params = [
            u(rows.count),
            u(ln.d),
            u(rows.step),
            u(rows.first),
            ln.eps.to_bits(),
            0,
            0,
            0,
        ];
        let bufs = [x, &ln.w, &ln.b, y, tape.xhat, tape.rstd];
        self.cost(
            8.0 * f(rows.count * ln.d),
            4.0 * f(3 * rows.count * ln.d + rows.count + 2 * ln.d),
        );
        self.run_groups(K::LayerNorm, &params, &bufs, rows.count);
    }

    /// Layer norm's input gradient for `rows` rows, from dy (through ln's
    /// weight and the tape); `res` adds the gradient that reaches the same
    /// rows over the residual connection.
    pub fn layer_norm_backward(
        &mut self,
        dy: Shared,
        rows: usize,
        ln: &Norm,
        tape: LnTape,
        res: Option<LastRows>,
        out: &Buffer,
    ) {
        self.layer_norm_backward_rows(dy, rows, ln, tape, 1, res, out);
    }

    /// `layer_norm_backward` where each group of `tape_div` consecutive
    /// rows went through one forward row (its tape row r / tape_div): the
    /// gradients of several slots that read one layer norm's input.
    #[allow(clippy::too_many_arguments)]
    pub fn layer_norm_backward_rows(
        &mut self,
        dy: Shared,
        rows: usize,
        ln: &Norm,
        tape: LnTape,
        tape_div: usize,
        res: Option<LastRows>,
        out: &Buffer,
    ) {
        let dummy = self.dummy();
        let (rb, n, m) = match res {
            Some(r) => (r.buf, r.of, r.last),
            None => (&dummy, 1, 1),
        };
        // op row r reads dy row (r / every)·dy_step + dy_first
        let (dy_step, dy_first) = (1, 0);
        let params = [
            u(rows),
            u(ln.d),
            dy_step,
            dy_first,
            u(n),
            u(m),
            res.is_some() as u32,
            u(dy.every),
            u(tape_div),
            0,
            0,
            0,
        ];
        self.cost(
            10.0 * f(rows * ln.d),
            4.0 * f(rows * ln.d * (3 + res.is_some() as usize) + rows + ln.d),
        );
        self.run_groups(
            K::LayerNormBackward,
            &params,
            &[dy.buf, &ln.w, tape.xhat, tape.rstd, rb, out],
            rows,
        );
    }

    pub fn gelu(&mut self, x: &Buffer, count: usize, y: &Buffer) {
        self.cost(10.0 * f(count), 8.0 * f(count));
        self.run_elems(K::Gelu, &[u(count)], &[x, y], count);
    }

    pub fn gelu_backward(&mut self, pre: &Buffer, dpost: &Buffer, count: usize, dpre: &Buffer) {
        self.cost(15.0 * f(count), 12.0 * f(count));
        self.run_elems(K::GeluBackward, &[u(count)], &[pre, dpost, dpre], count);
    }

    /// out = a + b, elementwise (`bcast_add`'s kernel with one block).
    pub fn add(&mut self, a: &Buffer, b: &Buffer, count: usize, out: &Buffer) {
        self.cost(f(count), 12.0 * f(count));
        self.bcast(a, At::start(b), 1.0, count, count, out);
    }

    /// The last row of each of b's batch elements: out[e] = x[e·n + n − 1]
    /// (rows of width d).
    pub fn gather_last(&mut self, x: &Buffer, b: Batch, out: &Buffer) {
        let m = 1;
        let count = b.batch * m * b.d;
        self.cost(0.0, 8.0 * f(count));
        self.run_elems(
            K::GatherLast,
            &[u(count), u(b.d), u(b.n), u(m)],
            &[x, out],
            count,
        );
    }

    /// The logit difference of each row `rows` picks of y [.., d]: the dot
    /// product with its answer direction, written to out[off + r].
    pub fn metric(&mut self, y: &Buffer, rows: Rows, d: usize, dir: Shared, out: At) {
        let params = [
            u(rows.count),
            u(d),
            u(rows.step),
            u(rows.first),
            u(out.off),
            u(dir.every),
            0,
            0,
        ];
        self.cost(
            2.0 * f(rows.count * d),
            4.0 * f(2 * rows.count * d + rows.count),
        );
        self.run_groups(K::Metric, &params, &[y, dir.buf, out.buf], rows.count);
    }

    /// The probability difference of each row of full logits [rows, v]:
    /// out[off + r] = Σ_j s_j softmax(logits[r])_j; with `grad`, each row of
    /// the logits becomes ∂m/∂logits.
    pub fn prob_diff(&mut self, logits: Matrix, signs: &Buffer, grad: bool, out: At) {
        let params = [u(logits.rows), u(logits.cols), u(out.off), grad as u32];
        let bufs = [signs, logits.buf, out.buf];
        self.cost(
            4.0 * f(logits.rows * logits.cols),
            4.0 * f(logits.rows * logits.cols * (1 + grad as usize) + logits.cols),
        );
        self.run_groups(K::ProbDiff, &params, &bufs, logits.rows);
    }

    /// Overwrites the components `src.idx` of `dst` with `src`'s values.
    pub fn scatter(&mut self, src: &Scatter, dst: ComponentRows) {
        let count = dst.t * src.k * dst.width;
        self.cost(0.0, 8.0 * f(count));
        self.run_elems(
            K::Scatter,
            &[u(count), u(src.k), u(dst.width), u(dst.count)],
            &[&src.vals, &src.idx, dst.buf],
            count,
        );
    }

    fn dummy(&self) -> Buffer {
        self.gpu().dummy().clone()
    }
}

/// Shape of a batch of tail rows: `batch` elements of `n` rows (positions
/// first_diff..first_diff+n), queries on the last `nq` of them; element b belongs to prompt
/// pair b / per (whose base keys and values are row block b / per of the
/// stacked base qkv).
#[derive(Clone, Copy)]
pub(super) struct AttnShape {
    pub batch: usize,
    pub per: usize,
    pub n: usize,
    pub nq: usize,
    pub first_diff: usize,
    pub heads: usize,
    pub dh: usize,
    pub d: usize,
}

impl AttnShape {
    fn params(&self, third: u32, scale: f32) -> [u32; 12] {
        [
            u(self.n),
            u(self.nq),
            u(self.first_diff),
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

/// Components of one kind in one layer held at given values: `k` of them,
/// their values packed as [pos, k, width] and their distinct indices as u32.
pub(super) struct Scatter {
    pub vals: Buffer,
    pub idx: Buffer,
    pub k: usize,
}

/// A [t, count, width] array: `count` components at each of t positions
/// (hook_result: heads of width d_model; hook_post: neurons of width 1).
#[derive(Clone, Copy)]
pub(super) struct ComponentRows<'a> {
    pub buf: &'a Buffer,
    pub t: usize,
    pub count: usize,
    pub width: usize,
}

/// The buffers of the tail attention's backward.
pub(super) struct AttnGrads<'a> {
    /// ∂m/∂z [batch·nq, d] (in).
    pub dz: &'a Buffer,
    /// The forward's tapes: its pattern [batch, heads, nq, T] and its
    /// q | k | v [batch·n, 3d].
    pub pattern: &'a Buffer,
    pub qkv: &'a Buffer,
    /// The stacked base q | k | v (keys and values of the positions < first_diff).
    pub base_qkv: &'a Buffer,
    /// Scratch: ∂m/∂scores [batch, heads, nq, T].
    pub ds: &'a Buffer,
    /// ∂m/∂(q | k | v) [batch·n, 3d] (out).
    pub dqkv: &'a Buffer,
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
        self.cost(
            4.0 * f(s.batch * s.heads * s.nq * (s.first_diff + s.n) * s.dh),
            4.0 * f(s.batch * (s.n * 3 * s.d + s.nq * s.d)
                + s.first_diff * 2 * s.d
                + pat.map_or(0, |_| s.batch * s.heads * s.nq * (s.first_diff + s.n))),
        );
        self.run(
            K::AttnTail,
            &params,
            &[qkv, base_qkv, z, pat.unwrap_or(&out)],
            [s.nq, s.heads, s.batch],
        );
    }

    /// Tail attention backward: g.dqkv [batch·n, 3d] from g.dz [batch·nq, d].
    pub fn attn_tail_backward(&mut self, s: AttnShape, g: AttnGrads) {
        if s.nq < s.n {
            self.clear(g.dqkv);
        }
        self.cost(
            4.0 * f(s.batch * s.heads * s.nq * (s.first_diff + s.n) * s.dh),
            4.0 * f(s.batch
                * (s.nq * s.d
                    + 2 * s.heads * s.nq * (s.first_diff + s.n)
                    + s.n * 3 * s.d
                    + s.nq * s.d)),
        );
        self.run(
            K::AttnTailBackwardQ,
            &s.params(0, s.scale()),
            &[g.dz, g.pattern, g.qkv, g.base_qkv, g.ds, g.dqkv],
            [s.nq, s.heads, s.batch],
        );
        self.cost(
            4.0 * f(s.batch * s.heads * s.nq * s.n * s.dh),
            4.0 * f(s.batch
                * (2 * s.heads * s.nq * (s.first_diff + s.n)
                    + s.nq * s.d
                    + s.n * 3 * s.d
                    + s.n * 2 * s.d)),
        );
        self.run(
            K::AttnTailBackwardKv,
            &s.params(0, 0.0),
            &[g.ds, g.pattern, g.dz, g.qkv, g.dqkv],
            [s.n, s.heads, s.batch],
        );
    }
}

/// A row-major array read as rows of some width at `off` with row stride `ld`
/// (q, k and v inside the packed qkv buffer, or substituted [pos, d] arrays).
#[derive(Clone)]
pub(super) struct Cols {
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

impl Heads {
    /// d_model (the GPU backend requires heads · d_head = d_model).
    fn d(&self) -> usize {
        self.heads * self.dh
    }
}

impl Enc<'_> {
    /// hook_attn_scores [heads, t, t] (−inf above the diagonal).
    pub fn attn_scores(&mut self, s: Heads, q: &Cols, k: &Cols, out: &Buffer) {
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
        self.cost(2.0 * f(count * s.dh), 4.0 * f(2 * s.t * s.d() + count));
        self.run_elems(K::AttnScores, &params, &[&q.buf, &k.buf, out], count);
    }

    /// hook_pattern from hook_attn_scores.
    pub fn attn_softmax(&mut self, s: Heads, scores: &Buffer, out: &Buffer) {
        let rows = s.heads * s.t;
        self.cost(5.0 * f(rows * s.t), 8.0 * f(rows * s.t));
        self.run_groups(K::AttnSoftmax, &[u(rows), u(s.t)], &[scores, out], rows);
    }

    /// hook_z [t, d] from hook_pattern and v.
    pub fn attn_pv(&mut self, s: Heads, pattern: &Buffer, v: &Cols, out: &Buffer) {
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
        self.cost(
            2.0 * f(count * s.t),
            4.0 * f(s.heads * s.t * s.t + 2 * count),
        );
        self.run_elems(K::AttnPv, &params, &[pattern, &v.buf, out], count);
    }

    /// hook_result [t, heads, d]: each head's z_h · W_O[h].
    pub fn head_results(&mut self, s: Heads, z: &Buffer, w_o: &Buffer, out: &Buffer) {
        let d = s.d();
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
            ..Mm::plain(s.t, s.dh, d)
        };
        self.matmul(mm, z, w_o, None, None, out);
    }

    /// hook_attn_out = Σ_h hook_result[:, h] + b_O (`graph_sum`'s kernel
    /// with no stream to add to).
    pub fn heads_sum(&mut self, s: Heads, result: &Buffer, bias: &Buffer, out: &Buffer) {
        let d = s.d();
        let count = s.t * d;
        self.cost(f(count * s.heads), 4.0 * f(count * (s.heads + 1) + d));
        let heads = Strided {
            buf: result,
            n: s.heads,
            off: 0,
            hs: d,
            ts: s.heads * d,
        };
        self.strided_sum(None, heads, Some(bias), count, d, out);
    }

    /// dir = rows[0] − rows[1].
    pub fn answer_dir(&mut self, rows: &Buffer, d: usize, dir: &Buffer) {
        self.cost(f(d), 12.0 * f(d));
        self.run_elems(K::AnswerDir, &[u(d)], &[rows, dir], d);
    }

    /// out[off + v] = x · w[v] for every row v of w [rows, d] (x: the d
    /// floats from x.off).
    pub fn logits(&mut self, x: At, w: Matrix, out: At) {
        self.cost(
            2.0 * f(w.rows * w.cols),
            4.0 * f(w.rows * w.cols + w.cols + w.rows),
        );
        self.run_elems(
            K::Logits,
            &[u(w.rows), u(w.cols), u(x.off), u(out.off)],
            &[x.buf, w.buf, out.buf],
            w.rows,
        );
    }
}

/// Where the perturbed rows of a sweep come from: `batch` elements of `n`
/// rows (positions first_diff..), rows of width d. The elements are `per` consecutive
/// ones for each prompt pair of a group (batch = pairs · per), and the base
/// arrays they read are stacked [pair, first_diff + n, …].
#[derive(Clone, Copy)]
pub(super) struct Batch {
    pub batch: usize,
    pub per: usize,
    pub n: usize,
    pub d: usize,
    pub first_diff: usize,
}

impl Batch {
    /// `per` elements for each of `pairs` prompt pairs.
    pub fn new(pairs: usize, per: usize, n: usize, d: usize, first_diff: usize) -> Batch {
        Batch {
            batch: pairs * per,
            per,
            n,
            d,
            first_diff,
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

/// Where a group's tails at one site start, each stacked over the group's
/// prompt pairs: the residual stream the site adds to (resid_mid for heads,
/// resid_post for neurons) and the base and the other runs' activation at
/// the site.
pub(super) struct SiteStack {
    pub resid: Buffer,
    pub base: Buffer,
    pub other: Buffer,
}

/// The components a batch patches, of a layer of `per_layer`: batch element
/// e of each pair patches component `first + e`.
#[derive(Clone, Copy)]
pub(super) struct Patched {
    pub first: usize,
    pub per_layer: usize,
}

impl Enc<'_> {
    /// Start rows for heads first.. of every pair: resid + Δhook_result[:, h].
    pub fn patch_heads(&mut self, b: Batch, heads: Patched, site: &SiteStack, out: &Buffer) {
        let params = [
            u(b.count()),
            u(b.n),
            u(b.d),
            u(heads.per_layer),
            u(b.first_diff),
            u(heads.first),
            u(b.per),
            0,
        ];
        let bufs = [&site.resid, &site.base, &site.other, out];
        self.cost(3.0 * f(b.count()), 16.0 * f(b.count()));
        self.run_elems(K::PatchHeads, &params, &bufs, b.count());
    }

    /// Start rows for neurons first.. of every pair: resid + Δhook_post[:, c] · W_out[c].
    pub fn patch_neurons(
        &mut self,
        b: Batch,
        neurons: Patched,
        site: &SiteStack,
        w_out: &Buffer,
        out: &Buffer,
    ) {
        let params = [
            u(b.count()),
            u(b.n),
            u(b.d),
            u(neurons.per_layer),
            u(b.first_diff),
            u(neurons.first),
            u(b.per),
            0,
        ];
        let bufs = [&site.resid, &site.base, &site.other, w_out, out];
        self.cost(4.0 * f(b.count()), 20.0 * f(b.count()));
        self.run_elems(K::PatchNeurons, &params, &bufs, b.count());
    }

    /// Start rows along the path: resid + α[alpha.off + e % per] · Δout of
    /// element e's pair (Δout: other − base of the site's whole contribution).
    pub fn patch_path(&mut self, b: Batch, site: &SiteStack, alpha: At, out: &Buffer) {
        let params = [
            u(b.count()),
            u(b.n),
            u(b.d),
            u(b.first_diff),
            u(alpha.off),
            u(b.per),
            0,
            0,
        ];
        let bufs = [&site.resid, &site.base, &site.other, alpha.buf, out];
        self.cost(4.0 * f(b.count()), 16.0 * f(b.count()));
        self.run_elems(K::PatchPath, &params, &bufs, b.count());
    }

    /// acc[pair, n, d] += Σ_k w[w.off + k] · g[pair·per + k], for the rows
    /// of each element that g holds (the last g.last of its n).
    pub fn weighted_sum(&mut self, g: LastRows, b: Batch, w: At, acc: &Buffer) {
        debug_assert_eq!(g.of, b.n, "g holds rows of the batch's elements");
        let count = b.pairs() * b.n * b.d;
        let params = [
            u(count),
            u(b.per),
            u(b.n),
            u(g.last),
            u(b.d),
            u(w.off),
            0,
            0,
        ];
        self.cost(
            2.0 * f(count * g.last / g.of.max(1) * b.per),
            4.0 * f(count * g.last / g.of.max(1) * b.per + 2 * count),
        );
        self.run_elems(K::WeightedSum, &params, &[g.buf, w.buf, acc], count);
    }
}

/// Arrays added to a residual stream in [`Enc::graph_sum`]: `n` of them,
/// element (h, t, c) at off + h·hs + t·ts + c.
#[derive(Clone, Copy)]
pub(super) struct Strided<'a> {
    pub buf: &'a Buffer,
    pub n: usize,
    pub off: usize,
    pub hs: usize,
    pub ts: usize,
}

/// `slots` residual streams of t rows of width d, each changed from row
/// `first_diff` on.
#[derive(Clone, Copy)]
pub(super) struct Streams {
    pub slots: usize,
    pub t: usize,
    pub d: usize,
    pub first_diff: usize,
}

impl Enc<'_> {
    /// out[s, j] = x[j] + corr[s, j − first_diff·d] for j ≥ first_diff·d
    /// (x[j] before), for every stream s.
    pub fn graph_inputs(&mut self, x: &Buffer, corr: &Buffer, s: Streams, out: &Buffer) {
        let (t, d, first_diff) = (s.t, s.d, s.first_diff);
        let count = s.slots * t * d;
        let params = [
            u(count),
            u(t * d),
            u(first_diff * d),
            u((t - first_diff) * d),
        ];
        self.cost(f(count), 4.0 * f(2 * count + t * d));
        self.run_elems(K::GraphInputs, &params, &[x, corr, out], count);
    }

    /// out[t, c] = a[t, c] + Σ_h src(h, t, c) (+ bias[c]) for t·d values
    /// (rows of width d).
    pub fn graph_sum(
        &mut self,
        a: &Buffer,
        src: Strided,
        bias: Option<&Buffer>,
        count: usize,
        d: usize,
        out: &Buffer,
    ) {
        self.cost(f(count * src.n), 4.0 * f(count * (src.n + 2)));
        self.strided_sum(Some(a), src, bias, count, d, out);
    }

    /// The graph_sum kernel; without `a` the sum starts from 0. The caller
    /// sets the dispatch's cost.
    fn strided_sum(
        &mut self,
        a: Option<&Buffer>,
        src: Strided,
        bias: Option<&Buffer>,
        count: usize,
        d: usize,
        out: &Buffer,
    ) {
        let dummy = self.dummy();
        let flags = bias.is_some() as u32 | (a.is_none() as u32) << 1;
        let params = [
            u(count),
            u(d),
            u(src.n),
            u(src.hs),
            u(src.ts),
            u(src.off),
            flags,
            0,
        ];
        let bufs = [a.unwrap_or(&dummy), src.buf, bias.unwrap_or(&dummy), out];
        self.run_elems(K::GraphSum, &params, &bufs, count);
    }

    /// out[i] = a[i] + sign · b[b.off + i % period], for `count` values.
    pub fn bcast_add(
        &mut self,
        a: &Buffer,
        b: At,
        sign: f32,
        period: usize,
        count: usize,
        out: &Buffer,
    ) {
        self.cost(2.0 * f(count), 4.0 * f(2 * count + period));
        self.bcast(a, b, sign, period, count, out);
    }

    /// The bcast_add kernel; the caller sets the dispatch's cost.
    fn bcast(&mut self, a: &Buffer, b: At, sign: f32, period: usize, count: usize, out: &Buffer) {
        let params = [u(count), u(period), u(b.off), sign.to_bits()];
        self.run_elems(K::BcastAdd, &params, &[a, b.buf, out], count);
    }
}
