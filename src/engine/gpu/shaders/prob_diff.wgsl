// The probability difference of the Greater-Than task from full logit rows,
// one workgroup per row: with p = softmax(logits[r]) over the vocabulary and
// s_j = +1 (above), −1 (below) or 0, out[out_off + r] = m = Σ_j s_j p_j.
// flags & 1: logits[r] is overwritten by the backward seed
// ∂m/∂logit_j = p_j (s_j − m).

struct P {
    rows: u32, v: u32, out_off: u32, flags: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> signs: array<f32>;
@group(0) @binding(2) var<storage, read_write> logits: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> red1: array<f32, 256>;
var<workgroup> red2: array<f32, 256>;

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
    let l0 = r * p.v;
    // the row's maximum
    var mx = -3.4028234663852886e38;
    for (var c = lid; c < p.v; c += WG) {
        mx = max(mx, logits[l0 + c]);
    }
    red1[lid] = mx;
    workgroupBarrier();
    for (var k = 128u; k > 0u; k >>= 1u) {
        if (lid < k) {
            red1[lid] = max(red1[lid], red1[lid + k]);
        }
        workgroupBarrier();
    }
    let top = red1[0];
    workgroupBarrier();
    // Σ e_j and Σ s_j e_j, e_j = exp(logit_j − max)
    var z = 0.0;
    var s = 0.0;
    for (var c = lid; c < p.v; c += WG) {
        let e = exp(logits[l0 + c] - top);
        z += e;
        s += signs[c] * e;
    }
    red1[lid] = z;
    red2[lid] = s;
    workgroupBarrier();
    for (var k = 128u; k > 0u; k >>= 1u) {
        if (lid < k) {
            red1[lid] += red1[lid + k];
            red2[lid] += red2[lid + k];
        }
        workgroupBarrier();
    }
    let rz = 1.0 / red1[0];
    let m = red2[0] * rz;
    if (lid == 0u) {
        out[p.out_off + r] = m;
    }
    if ((p.flags & 1u) != 0u) {
        for (var c = lid; c < p.v; c += WG) {
            let pj = exp(logits[l0 + c] - top) * rz;
            logits[l0 + c] = pj * (signs[c] - m);
        }
    }
}
