// A batch of blocks plus (or minus) one shared block:
// out[i] = a[i] + sign · b[b_off + i % period] (a block is `period` values:
// an edge's changed input rows plus the run's own, or a recomputed output
// minus the run's).

struct P {
    count: u32, period: u32, b_off: u32, sign: f32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
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
    out[i] = a[i] + p.sign * b[p.b_off + i % p.period];
}
