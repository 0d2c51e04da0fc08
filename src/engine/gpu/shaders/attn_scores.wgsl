// Full forward: hook_attn_scores[h, i, j] = q_i · k_j / sqrt(d_head) for j ≤ i,
// −inf above the diagonal. q and k are read as rows with an offset and a row
// stride, so they can be the packed qkv buffer or substituted [pos, d] arrays.

struct P {
    t: u32, heads: u32, dh: u32, count: u32,
    q_off: u32, q_ld: u32, k_off: u32, k_ld: u32,
    scale: f32, ninf: u32, pad0: u32, pad1: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read_write> scores: array<f32>;

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
    let tt = p.t * p.t;
    let h = i / tt;
    let qi = (i % tt) / p.t;
    let j = i % p.t;
    if (j > qi) {
        scores[i] = bitcast<f32>(p.ninf);
        return;
    }
    let q0 = p.q_off + qi * p.q_ld + h * p.dh;
    let k0 = p.k_off + j * p.k_ld + h * p.dh;
    var s = 0.0;
    for (var c = 0u; c < p.dh; c++) {
        s += q[q0 + c] * k[k0 + c];
    }
    scores[i] = s * p.scale;
}
