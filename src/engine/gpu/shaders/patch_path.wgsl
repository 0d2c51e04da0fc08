// Start rows of an integrated-gradients batch, for a group of prompt pairs
// whose base arrays are stacked [pair, T, d] (T = fd + n): batch element b is
// step a_off + b % per of pair b / per, and row i is position fd + i:
// x = resid[fd + i] + α[step] · (out_other − out_base)[fd + i], where out is
// the site's whole contribution (attn_out or mlp_out).

struct P {
    count: u32, n: u32, d: u32, fd: u32,
    a_off: u32, per: u32, pad1: u32, pad2: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> resid: array<f32>;
@group(0) @binding(2) var<storage, read> ob: array<f32>;
@group(0) @binding(3) var<storage, read> oo: array<f32>;
@group(0) @binding(4) var<storage, read> alpha: array<f32>;
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
    let k = ((b / p.per) * (p.fd + p.n) + p.fd + r % p.n) * p.d + c;
    x[e] = ((oo[k] - ob[k]) * alpha[p.a_off + b % p.per]) + resid[k];
}
