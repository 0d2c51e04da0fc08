// Replaces components of a [t, n, width] activation (hook_result: n heads of
// width d_model; hook_post: n = d_mlp neurons of width 1) with an uploaded
// block [t, k, width]: for position p, replaced component j and column c,
// dst[(p · n + idx[j]) · width + c] = src[(p · k + j) · width + c].
// The indices are distinct, so no two invocations write the same element.

struct P {
    count: u32, k: u32, width: u32, n: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

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
    let c = e % p.width;
    let r = e / p.width;
    let j = r % p.k;
    let pos = r / p.k;
    dst[(pos * p.n + idx[j]) * p.width + c] = src[e];
}
