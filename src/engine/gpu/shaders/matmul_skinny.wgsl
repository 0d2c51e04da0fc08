// The same product as matmul.wgsl for few rows (m ≤ 16: one prompt's tokens,
// the last position of a batch), where it is bound by reading B: no
// workgroup memory, each invocation one column × four rows, B read once per
// four rows with consecutive invocations on consecutive columns.

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

fn store(c0: u32, r: u32, col: u32, acc: f32) {
    if (r < p.m) {
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

// row r of A at k, or 0 past the last row
fn a_at(a0: u32, r: u32, k: u32) -> f32 {
    if (r < p.m) {
        return a[a0 + r * p.lda + k];
    }
    return 0.0;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let col = wid.x * 64u + lid;
    if (col >= p.n) {
        return;
    }
    let r0 = wid.y * 4u;
    let a0 = p.a_off + wid.z * p.a_bs;
    let b0 = p.b_off + wid.z * p.b_bs;
    let c0 = p.c_off + wid.z * p.c_bs;
    bias0 = p.bias_off + wid.z * p.bias_bs;
    var bk = b0 + col;
    var step = p.ldb;
    if ((p.flags & 4u) != 0u) {
        bk = b0 + col * p.ldb;
        step = 1u;
    }
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < p.k; k++) {
        let av = vec4<f32>(a_at(a0, r0, k), a_at(a0, r0 + 1u, k), a_at(a0, r0 + 2u, k), a_at(a0, r0 + 3u, k));
        acc += av * b[bk];
        bk += step;
    }
    store(c0, r0, col, acc.x);
    store(c0, r0 + 1u, col, acc.y);
    store(c0, r0 + 2u, col, acc.z);
    store(c0, r0 + 3u, col, acc.w);
}
