// Input gradient of layer norm, one workgroup per row:
// dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)), dx̂ = dy ⊙ w.
// Row r reads dy row (r / dy_div)·dy_step + dy_first (step 0 broadcasts one
// row; dy_div > 1 gives each group of dy_div rows one dy row).
// Row r reads the tape (x̂, rstd) of row r / tape_div: tape_div > 1 gives
// each group of tape_div rows one forward row (several gradients through
// one layer norm).
// flags & 1: out = res + dx, where the residual holds only the last res_m of
// every n rows (the rows a last-position-only layer produced); others get dx.

struct P {
    rows: u32, d: u32, dy_step: u32, dy_first: u32,
    n: u32, res_m: u32, flags: u32, dy_div: u32,
    tape_div: u32, pad0: u32, pad1: u32, pad2: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> xhat: array<f32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
@group(0) @binding(5) var<storage, read> res: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;

var<workgroup> red1: array<f32, 256>;
var<workgroup> red2: array<f32, 256>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = flat_group(wid, nwg);
    if (r >= p.rows) {
        return;
    }
    let d = p.d;
    let g0 = ((r / p.dy_div) * p.dy_step + p.dy_first) * d;
    let x0 = (r / p.tape_div) * d;
    let o0 = r * d;
    var s1 = 0.0;
    var s2 = 0.0;
    for (var c = lid; c < d; c += WG) {
        let g = dy[g0 + c] * w[c];
        s1 += g;
        s2 += g * xhat[x0 + c];
    }
    red1[lid] = s1;
    red2[lid] = s2;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red1[lid] += red1[lid + s];
            red2[lid] += red2[lid + s];
        }
        workgroupBarrier();
    }
    let m1 = red1[0] / f32(d);
    let m2 = red2[0] / f32(d);
    let rs = rstd[r / p.tape_div];
    let b = r / p.n;
    let i = r % p.n;
    let has_res = (p.flags & 1u) != 0u && i + p.res_m >= p.n;
    let r0 = (b * p.res_m + i + p.res_m - p.n) * d;
    for (var c = lid; c < d; c += WG) {
        let g = dy[g0 + c] * w[c];
        var v = (g - m1 - xhat[x0 + c] * m2) * rs;
        if (has_res) {
            v = res[r0 + c] + v;
        }
        dx[o0 + c] = v;
    }
}
