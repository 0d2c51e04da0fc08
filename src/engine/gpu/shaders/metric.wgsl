// The logit difference from the final layer norm's output, one workgroup per
// batch element: m_b = y[b·step + first] · (wte[correct] − wte[incorrect]),
// with the answer direction of b's prompt pair (dir is [pairs, d]; element b
// belongs to pair b / per).

struct P {
    rows: u32, d: u32, step: u32, first: u32,
    out_off: u32, per: u32, pad1: u32, pad2: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> dir: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<f32, 256>;

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
    let y0 = (r * p.step + p.first) * p.d;
    let d0 = (r / p.per) * p.d;
    var s = 0.0;
    for (var c = lid; c < p.d; c += WG) {
        s += y[y0 + c] * dir[d0 + c];
    }
    red[lid] = s;
    workgroupBarrier();
    for (var k = 128u; k > 0u; k >>= 1u) {
        if (lid < k) {
            red[lid] += red[lid + k];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[p.out_off + r] = red[0];
    }
}
