// dpre = dpost ⊙ gelu_new'(pre), with
// gelu_new'(x) = 0.5·(1 + t) + 0.5·x·(1 − t²)·c·(1 + 3a·x²), t = tanh(c·(x + a·x³)).

struct P {
    count: u32, pad0: u32, pad1: u32, pad2: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> pre: array<f32>;
@group(0) @binding(2) var<storage, read> dpost: array<f32>;
@group(0) @binding(3) var<storage, read_write> dpre: array<f32>;

const GELU_C: f32 = 0.7978845608028654;
const GELU_A: f32 = 0.044715;

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
    let x = pre[i];
    let x2 = x * x;
    let t = tanh(clamp((x + x * x2 * GELU_A) * GELU_C, -10.0, 10.0));
    let left = (t + 1.0) * 0.5;
    let du = (x2 * (3.0 * GELU_A) + 1.0) * GELU_C;
    let right = ((x * 0.5) * (1.0 - t * t)) * du;
    dpre[i] = dpost[i] * (left + right);
}
