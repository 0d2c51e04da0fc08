// GPT-2's gelu_new, elementwise: y = 0.5·x·(1 + tanh(c·(x + a·x³))).

struct P {
    count: u32, pad0: u32, pad1: u32, pad2: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const GELU_C: f32 = 0.7978845608028654; // sqrt(2/π)
const GELU_A: f32 = 0.044715;

// tanh saturates to ±1 in f32 beyond |u| ≈ 9; clamping keeps every driver's
// exp-based tanh away from inf/inf.
fn tanh_safe(u: f32) -> f32 {
    return tanh(clamp(u, -10.0, 10.0));
}

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
    let v = x[i];
    let u = (v + v * v * v * GELU_A) * GELU_C;
    y[i] = (v * 0.5) * (tanh_safe(u) + 1.0);
}
