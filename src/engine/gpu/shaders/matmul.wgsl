// C = A · B (+ bias) (+ residual), tiled 64×64 with a 16-deep K step in
// workgroup memory; each of the 256 invocations accumulates a 4×4 block
// (four rows × one vec4 of columns) in f32.
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
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> c: array<f32>;

// where this batch element's bias starts (bias_off + z · bias_bs)
var<private> bias0: u32;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

// [BK][BM/4] and [BK][BN/4]: one vec4 holds four consecutive rows (A) or columns (B)
var<workgroup> ta: array<vec4<f32>, 256>;
var<workgroup> tb: array<vec4<f32>, 256>;

fn load_a(a0: u32, r: u32, k: u32) -> f32 {
    if (r < p.m && k < p.k) {
        return a[a0 + r * p.lda + k];
    }
    return 0.0;
}

fn load_b(b0: u32, k: u32, col: u32) -> f32 {
    if (col < p.n && k < p.k) {
        if ((p.flags & 4u) != 0u) {
            return b[b0 + col * p.ldb + k];
        }
        return b[b0 + k * p.ldb + col];
    }
    return 0.0;
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

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    let a0 = p.a_off + wid.z * p.a_bs;
    let b0 = p.b_off + wid.z * p.b_bs;
    let c0 = p.c_off + wid.z * p.c_bs;
    bias0 = p.bias_off + wid.z * p.bias_bs;
    let tx = lid % 16u; // columns 4·tx ..
    let ty = lid / 16u; // rows 4·ty ..
    let trans_b = (p.flags & 4u) != 0u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        for (var e = 0u; e < 4u; e++) {
            let idx = lid + e * 256u;
            // A: consecutive invocations read consecutive k of a row
            let ar = idx / BK;
            let ak = idx % BK;
            ta[ak * 16u + ar / 4u][ar % 4u] = load_a(a0, row0 + ar, k0 + ak);
            if (trans_b) {
                let bc = idx / BK;
                let bk = idx % BK;
                tb[bk * 16u + bc / 4u][bc % 4u] = load_b(b0, k0 + bk, col0 + bc);
            } else {
                let bk = idx / BN;
                let bc = idx % BN;
                tb[bk * 16u + bc / 4u][bc % 4u] = load_b(b0, k0 + bk, col0 + bc);
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let av = ta[kk * 16u + ty];
            let bv = tb[kk * 16u + tx];
            acc0 += av.x * bv;
            acc1 += av.y * bv;
            acc2 += av.z * bv;
            acc3 += av.w * bv;
        }
        workgroupBarrier();
    }
    let r = row0 + 4u * ty;
    let col = col0 + 4u * tx;
    store_row(c0, r, col, acc0);
    store_row(c0, r + 1u, col, acc1);
    store_row(c0, r + 2u, col, acc2);
    store_row(c0, r + 3u, col, acc3);
}
