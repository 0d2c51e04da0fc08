// A residual stream plus n arrays added to it (a layer's heads, or a
// gradient's slots): out[t, c] = a[t, c] + Σ_{h < n} src[off + h·hs + t·ts + c]
// (+ bias[c] when flags & 1). flags & 2: no stream, the sum starts from 0
// (hook_attn_out = Σ_h hook_result[:, h] + b_O).

struct P {
    count: u32, d: u32, n: u32, hs: u32,
    ts: u32, off: u32, flags: u32, pad0: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

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
    let t = i / p.d;
    let c = i % p.d;
    var s = 0.0;
    if ((p.flags & 2u) == 0u) {
        s = a[i];
    }
    for (var h = 0u; h < p.n; h++) {
        s += src[p.off + h * p.hs + t * p.ts + c];
    }
    if ((p.flags & 1u) != 0u) {
        s += bias[c];
    }
    out[i] = s;
}
