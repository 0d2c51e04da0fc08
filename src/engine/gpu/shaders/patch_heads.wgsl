// Start rows of an AP sweep over heads, for a group of prompt pairs whose base
// arrays are stacked [pair, T, …] (T = fd + n): batch element b is head
// c0 + b % per of pair b / per, and row i is position fd + i:
// x = resid_mid[fd + i] + (result_other − result_base)[fd + i, head].

struct P {
    count: u32, n: u32, d: u32, heads: u32,
    fd: u32, c0: u32, per: u32, pad1: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> resid: array<f32>;
@group(0) @binding(2) var<storage, read> rb: array<f32>;
@group(0) @binding(3) var<storage, read> ro: array<f32>;
@group(0) @binding(4) var<storage, read_write> x: array<f32>;

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
    let row = (b / p.per) * (p.fd + p.n) + p.fd + r % p.n;
    let k = ((row * p.heads) + p.c0 + b % p.per) * p.d + c;
    x[e] = (ro[k] - rb[k]) + resid[row * p.d + c];
}
