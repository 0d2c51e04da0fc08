// For a gradient pass over a group of prompt pairs (batch element b belongs to
// pair b / per): acc[pair, i, :] += Σ_k w[w_off + k] · g[pair·per + k, i, :],
// for the n rows of each pair's acc; g has only the last m rows of every n
// (rows before get 0).

struct P {
    count: u32, per: u32, n: u32, m: u32,
    d: u32, w_off: u32, pad1: u32, pad2: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> acc: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = flat_group(wid, nwg) * WG + lid;
    if (e >= p.count) {
        return;
    }
    let c = e % p.d;
    let i = (e / p.d) % p.n;
    let pair = e / (p.d * p.n);
    if (i + p.m < p.n) {
        return;
    }
    let j = i + p.m - p.n;
    var s = 0.0;
    for (var k = 0u; k < p.per; k++) {
        let b = pair * p.per + k;
        s += g[(b * p.m + j) * p.d + c] * w[p.w_off + k];
    }
    acc[e] = acc[e] + s;
}
