// Logits of one row against one chunk of the (tied) unembedding:
// out[out_off + v] = x · wte_chunk[v] for the chunk's rows v.

struct P {
    count: u32, d: u32, x_off: u32, out_off: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let v = flat_group(wid, nwg) * WG + lid;
    if (v >= p.count) {
        return;
    }
    var s = 0.0;
    for (var c = 0u; c < p.d; c++) {
        s += x[p.x_off + c] * w[v * p.d + c];
    }
    out[p.out_off + v] = s;
}
