// Full forward: hook_z[i, h, :] = Σ_{j ≤ i} pattern[h, i, j] · v[j, h, :],
// written as [pos, d_model]; v is read with an offset and a row stride.

struct P {
    t: u32, heads: u32, dh: u32, count: u32,
    v_off: u32, v_ld: u32, pad0: u32, pad1: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> pattern: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> z: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_group(wid, nwg) * WG + lid;
    if (i >= p.count) {
        return;
    }
    let d = p.heads * p.dh;
    let qi = i / d;
    let h = (i % d) / p.dh;
    let c = i % p.dh;
    let p0 = (h * p.t + qi) * p.t;
    var s = 0.0;
    for (var j = 0u; j <= qi; j++) {
        s += pattern[p0 + j] * v[p.v_off + j * p.v_ld + h * p.dh + c];
    }
    z[i] = s;
}
