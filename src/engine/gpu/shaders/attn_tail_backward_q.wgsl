// Backward of tail attention, part 1, one workgroup per (query row, head,
// batch element): dP = dZ · Vᵀ, dS = (dP − Σ dP ⊙ P) ⊙ P / sqrt(d_head)
// (written to ds [batch, head, nq, T] for part 2), and dQ = dS · K into the q
// columns of dqkv [batch·n, 3·d].

struct P {
    n: u32, nq: u32, fd: u32, heads: u32,
    dh: u32, d: u32, pad0: u32, scale: f32,
    per: u32, pad2: u32, pad3: u32, pad4: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> dz: array<f32>;
@group(0) @binding(2) var<storage, read> pat: array<f32>;
@group(0) @binding(3) var<storage, read> qn: array<f32>;
@group(0) @binding(4) var<storage, read> qb: array<f32>;
@group(0) @binding(5) var<storage, read_write> ds: array<f32>;
@group(0) @binding(6) var<storage, read_write> dqkv: array<f32>;

var<workgroup> sdz: array<f32, {{MAX_DH}}>;
var<workgroup> sc: array<f32, {{MAX_T}}>;
var<workgroup> red: array<f32, 64>;

fn kv_row(b: u32, j: u32, col: u32) -> f32 {
    let d3 = 3u * p.d;
    if (j < p.fd) {
        return qb[((b / p.per) * (p.fd + p.n) + j) * d3 + col];
    }
    return qn[(b * p.n + j - p.fd) * d3 + col];
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = wid.x;
    let h = wid.y;
    let b = wid.z;
    let qi = p.n - p.nq + i;
    let tq = p.fd + qi;
    let t = p.fd + p.n;
    let hc = h * p.dh;
    for (var c = lid; c < p.dh; c += 64u) {
        sdz[c] = dz[(b * p.nq + i) * p.d + hc + c];
    }
    workgroupBarrier();
    let p0 = ((b * p.heads + h) * p.nq + i) * t;
    var acc = 0.0;
    for (var j = lid; j <= tq; j += 64u) {
        var s = 0.0;
        for (var c = 0u; c < p.dh; c++) {
            s += sdz[c] * kv_row(b, j, 2u * p.d + hc + c);
        }
        sc[j] = s;
        acc += s * pat[p0 + j];
    }
    red[lid] = acc;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let tot = red[0];
    for (var j = lid; j < t; j += 64u) {
        var g = 0.0;
        if (j <= tq) {
            g = (sc[j] - tot) * pat[p0 + j] * p.scale;
            sc[j] = g;
        }
        ds[p0 + j] = g;
    }
    workgroupBarrier();
    for (var c = lid; c < p.dh; c += 64u) {
        var g = 0.0;
        for (var j = 0u; j <= tq; j++) {
            g += sc[j] * kv_row(b, j, p.d + hc + c);
        }
        dqkv[(b * p.n + qi) * 3u * p.d + hc + c] = g;
    }
}
