// Layer norm over the last dimension, one workgroup per row:
// y = x̂ ⊙ w + b, x̂ = (x − μ) · rstd, rstd = 1/sqrt(var + eps). Also writes x̂
// and rstd (the backward pass's tape). Row r reads input row r·step + first,
// so the final layer norm can take the last row of each batch element.

struct P {
    rows: u32, d: u32, step: u32, first: u32,
    eps: f32, pad0: u32, pad1: u32, pad2: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> xhat: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd: array<f32>;

var<workgroup> red: array<f32, 256>;

fn sum_all(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let t = red[0];
    workgroupBarrier();
    return t;
}

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = flat_group(wid, nwg);
    if (r >= p.rows) {
        return;
    }
    let d = p.d;
    let src = (r * p.step + p.first) * d;
    var s = 0.0;
    for (var c = lid; c < d; c += WG) {
        s += x[src + c];
    }
    let mean = sum_all(s, lid) / f32(d);
    var s2 = 0.0;
    for (var c = lid; c < d; c += WG) {
        let xc = x[src + c] - mean;
        s2 += xc * xc;
    }
    let var_ = sum_all(s2, lid) / f32(d);
    let rs = 1.0 / sqrt(var_ + p.eps);
    let dst = r * d;
    for (var c = lid; c < d; c += WG) {
        let xh = (x[src + c] - mean) * rs;
        xhat[dst + c] = xh;
        y[dst + c] = xh * w[c] + bias[c];
    }
    if (lid == 0u) {
        rstd[r] = rs;
    }
}
