// out[b, i, :] = x[b, n − m + i, :]: the last m of every n rows (m = 1 gives
// the last position of each batch element).

struct P {
    count: u32, d: u32, n: u32, m: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

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
    let c = i % p.d;
    let r = i / p.d;
    let b = r / p.m;
    let j = r % p.m;
    out[i] = x[(b * p.n + p.n - p.m + j) * p.d + c];
}
