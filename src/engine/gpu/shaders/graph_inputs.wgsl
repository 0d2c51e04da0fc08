// Every slot's own residual stream in a patched graph pass:
// out[s, j] = x[j] + corr[s, j − fd_off] for j ≥ fd_off, x[j] before
// (j over the T·d values of one stream; the patch changes only the rows
// from the prompts' first difference on, fd_off = first_diff · d).

struct P {
    count: u32, td: u32, fd_off: u32, nd: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> corr: array<f32>;
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
    let s = i / p.td;
    let j = i % p.td;
    var v = x[j];
    if (j >= p.fd_off) {
        v += corr[s * p.nd + j - p.fd_off];
    }
    out[i] = v;
}
