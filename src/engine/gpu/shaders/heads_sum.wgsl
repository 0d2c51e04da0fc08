// attn_out[t, :] = Σ_h hook_result[t, h, :] + b_O (the full forward's
// hook_attn_out, computed from the possibly substituted per-head results).

struct P {
    count: u32, d: u32, heads: u32, pad0: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> result: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

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
    let t = i / p.d;
    let c = i % p.d;
    var s = 0.0;
    for (var h = 0u; h < p.heads; h++) {
        s += result[(t * p.heads + h) * p.d + c];
    }
    out[i] = s + bias[c];
}
