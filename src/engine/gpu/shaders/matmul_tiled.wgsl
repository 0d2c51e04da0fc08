// The same product as matmul.wgsl for large ones (m and n ≥ 128), register
// tiled: 128×128 tiles with an 8-deep K step in workgroup memory, each of the
// 256 invocations accumulating an 8×8 block in f32 registers (rows 4·ty ..
// and 64 + 4·ty .., columns 4·tx .. and 64 + 4·tx ..). A and B are read from
// memory as vec4: four consecutive k of a row of A, four consecutive columns
// of a row of B (or, B transposed, four consecutive k of its row). The host
// picks this kernel only where that is aligned: A's and B's offsets, row
// strides and batch strides multiples of 4, both buffers whole vec4s.
// Per output the sum runs over k in order, as in matmul.wgsl.
// flags: 1 = add bias[col], 2 = C = residual + (A·B + bias) (residual indexed
// like C), 4 = B is stored transposed ([n, k] with row stride ldb).
// z of the dispatch is a batch index (offsets advance by a_bs, b_bs, c_bs,
// and the bias's by bias_bs).

struct P {
    m: u32, n: u32, k: u32, flags: u32,
    lda: u32, ldb: u32, ldc: u32, bias_off: u32,
    a_off: u32, b_off: u32, c_off: u32, bias_bs: u32,
    a_bs: u32, b_bs: u32, c_bs: u32, pad1: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> c: array<f32>;

// where this batch element's bias starts (bias_off + z · bias_bs)
var<private> bias0: u32;

const BM: u32 = 128u;
const BN: u32 = 128u;
const BK: u32 = 8u;

// [BK][BM/4] and [BK][BN/4]: one vec4 holds four consecutive rows (A) or columns (B)
var<workgroup> ta: array<vec4<f32>, 256>;
var<workgroup> tb: array<vec4<f32>, 256>;

// v (the elements first .. first + 3 of a row) with those at or past `end` zeroed
fn below(v: vec4<f32>, first: u32, end: u32) -> vec4<f32> {
    let i = vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u);
    return select(vec4<f32>(0.0), v, i < vec4<u32>(end));
}

// A's row r at k .. k + 3 (k a multiple of 4), zero past the last row or k
fn load_a(a0: u32, r: u32, k: u32) -> vec4<f32> {
    if (r < p.m && k < p.k) {
        return below(a[(a0 + r * p.lda + k) / 4u], k, p.k);
    }
    return vec4<f32>(0.0);
}

// B at k, columns col .. col + 3 (B not transposed), zero past n or k
fn load_b_row(b0: u32, k: u32, col: u32) -> vec4<f32> {
    if (k < p.k && col < p.n) {
        return below(b[(b0 + k * p.ldb + col) / 4u], col, p.n);
    }
    return vec4<f32>(0.0);
}

// B transposed: column col at k .. k + 3, zero past n or k
fn load_b_col(b0: u32, col: u32, k: u32) -> vec4<f32> {
    if (col < p.n && k < p.k) {
        return below(b[(b0 + col * p.ldb + k) / 4u], k, p.k);
    }
    return vec4<f32>(0.0);
}

fn store(c0: u32, r: u32, col: u32, acc: f32) {
    if (r < p.m && col < p.n) {
        var v = acc;
        if ((p.flags & 1u) != 0u) {
            v = v + bias[bias0 + col];
        }
        let o = c0 + r * p.ldc + col;
        if ((p.flags & 2u) != 0u) {
            v = res[o] + v;
        }
        c[o] = v;
    }
}

fn store_row(c0: u32, r: u32, col: u32, v: vec4<f32>) {
    store(c0, r, col, v.x);
    store(c0, r, col + 1u, v.y);
    store(c0, r, col + 2u, v.z);
    store(c0, r, col + 3u, v.w);
}

// row r's columns col .. col + 3 and col + 64 .. col + 67
fn store8(c0: u32, r: u32, col: u32, lo: vec4<f32>, hi: vec4<f32>) {
    store_row(c0, r, col, lo);
    store_row(c0, r, col + 64u, hi);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    let a0 = p.a_off + wid.z * p.a_bs;
    let b0 = p.b_off + wid.z * p.b_bs;
    let c0 = p.c_off + wid.z * p.c_bs;
    bias0 = p.bias_off + wid.z * p.bias_bs;
    let tx = lid % 16u;
    let ty = lid / 16u;
    let trans_b = (p.flags & 4u) != 0u;
    // each step this invocation loads A's row lr (or transposed B's column
    // lr) at k lk .. lk + 3, and B's row bk at columns 4·bq ..
    let lr = lid / 2u;
    let lk = (lid % 2u) * 4u;
    let lq = lr / 4u;
    let lc = lr % 4u;
    let bk = lid / 32u;
    let bq = lid % 32u;
    // acc[2i] holds row i's columns 4·tx .., acc[2i + 1] its columns 64 + 4·tx ..
    // (rows i < 4: 4·ty + i; i ≥ 4: 64 + 4·ty + i − 4)
    // (zero-initialised; indexed only by constants, so it can live in registers)
    var acc: array<vec4<f32>, 16>;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        let av = load_a(a0, row0 + lr, k0 + lk);
        ta[lk * 32u + lq][lc] = av.x;
        ta[(lk + 1u) * 32u + lq][lc] = av.y;
        ta[(lk + 2u) * 32u + lq][lc] = av.z;
        ta[(lk + 3u) * 32u + lq][lc] = av.w;
        if (trans_b) {
            let bv = load_b_col(b0, col0 + lr, k0 + lk);
            tb[lk * 32u + lq][lc] = bv.x;
            tb[(lk + 1u) * 32u + lq][lc] = bv.y;
            tb[(lk + 2u) * 32u + lq][lc] = bv.z;
            tb[(lk + 3u) * 32u + lq][lc] = bv.w;
        } else {
            tb[bk * 32u + bq] = load_b_row(b0, k0 + bk, col0 + 4u * bq);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let alo = ta[kk * 32u + ty];
            let ahi = ta[kk * 32u + 16u + ty];
            let blo = tb[kk * 32u + tx];
            let bhi = tb[kk * 32u + 16u + tx];
            acc[0] += alo.x * blo;
            acc[1] += alo.x * bhi;
            acc[2] += alo.y * blo;
            acc[3] += alo.y * bhi;
            acc[4] += alo.z * blo;
            acc[5] += alo.z * bhi;
            acc[6] += alo.w * blo;
            acc[7] += alo.w * bhi;
            acc[8] += ahi.x * blo;
            acc[9] += ahi.x * bhi;
            acc[10] += ahi.y * blo;
            acc[11] += ahi.y * bhi;
            acc[12] += ahi.z * blo;
            acc[13] += ahi.z * bhi;
            acc[14] += ahi.w * blo;
            acc[15] += ahi.w * bhi;
        }
        workgroupBarrier();
    }
    let col = col0 + 4u * tx;
    let r = row0 + 4u * ty;
    store8(c0, r, col, acc[0], acc[1]);
    store8(c0, r + 1u, col, acc[2], acc[3]);
    store8(c0, r + 2u, col, acc[4], acc[5]);
    store8(c0, r + 3u, col, acc[6], acc[7]);
    store8(c0, r + 64u, col, acc[8], acc[9]);
    store8(c0, r + 65u, col, acc[10], acc[11]);
    store8(c0, r + 66u, col, acc[12], acc[13]);
    store8(c0, r + 67u, col, acc[14], acc[15]);
}
