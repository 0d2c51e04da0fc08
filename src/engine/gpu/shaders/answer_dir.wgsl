// dir = wte[correct] − wte[incorrect], from the two rows copied into `rows`.

struct P {
    d: u32, pad0: u32, pad1: u32, pad2: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> rows: array<f32>;
@group(0) @binding(2) var<storage, read_write> dir: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let c = flat_group(wid, nwg) * WG + lid;
    if (c >= p.d) {
        return;
    }
    dir[c] = rows[c] - rows[p.d + c];
}
