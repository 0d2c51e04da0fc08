// Start rows of an AP sweep over neurons: for batch element b (neuron c0 + b)
// and row i (position fd + i),
// x = resid_post[fd + i] + (post_other − post_base)[fd + i, c0 + b] · W_out[c0 + b].

struct P {
    count: u32, n: u32, d: u32, d_mlp: u32,
    fd: u32, c0: u32, pad0: u32, pad1: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> resid: array<f32>;
@group(0) @binding(2) var<storage, read> pb: array<f32>;
@group(0) @binding(3) var<storage, read> po: array<f32>;
@group(0) @binding(4) var<storage, read> w_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> x: array<f32>;

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
    let r = e / p.d;
    let b = r / p.n;
    let pos = p.fd + r % p.n;
    let k = pos * p.d_mlp + p.c0 + b;
    x[e] = ((po[k] - pb[k]) * w_out[(p.c0 + b) * p.d + c]) + resid[pos * p.d + c];
}
