// Full forward: hook_pattern = causal softmax of each row of hook_attn_scores
// [heads·pos, pos]; one workgroup per row, entries above the diagonal are 0.

struct P {
    rows: u32, t: u32, pad0: u32, pad1: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> scores: array<f32>;
@group(0) @binding(2) var<storage, read_write> pattern: array<f32>;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = flat_group(wid, nwg);
    if (row >= p.rows) {
        return;
    }
    let qi = row % p.t;
    let base = row * p.t;
    var mx = -3.0e38;
    for (var j = lid; j <= qi; j += WG) {
        mx = max(mx, scores[base + j]);
    }
    red[lid] = mx;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    mx = red[0];
    workgroupBarrier();
    var sum = 0.0;
    for (var j = lid; j <= qi; j += WG) {
        let e = exp(scores[base + j] - mx);
        pattern[base + j] = e;
        sum += e;
    }
    red[lid] = sum;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let tot = red[0];
    for (var j = lid; j < p.t; j += WG) {
        if (j <= qi) {
            pattern[base + j] = pattern[base + j] / tot;
        } else {
            pattern[base + j] = 0.0;
        }
    }
}
