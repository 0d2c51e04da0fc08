// Backward of tail attention, part 2, one workgroup per (new key row, head,
// batch element): dK_j = Σ_i dS[i, j] · q_i and dV_j = Σ_i P[i, j] · dz_i into
// the k and v columns of dqkv. Keys before fd belong to the base run and get
// no gradient (they are the same for every perturbation).

struct P {
    n: u32, nq: u32, fd: u32, heads: u32,
    dh: u32, d: u32, pad0: u32, pad1: u32,
    per: u32, pad2: u32, pad3: u32, pad4: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> ds: array<f32>;
@group(0) @binding(2) var<storage, read> pat: array<f32>;
@group(0) @binding(3) var<storage, read> dz: array<f32>;
@group(0) @binding(4) var<storage, read> qn: array<f32>;
@group(0) @binding(5) var<storage, read_write> dqkv: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let j = wid.x;
    let h = wid.y;
    let b = wid.z;
    let tj = p.fd + j;
    let t = p.fd + p.n;
    let d3 = 3u * p.d;
    let hc = h * p.dh;
    for (var c = lid; c < p.dh; c += 64u) {
        var gk = 0.0;
        var gv = 0.0;
        for (var i = 0u; i < p.nq; i++) {
            let qi = p.n - p.nq + i;
            if (p.fd + qi >= tj) {
                let e = ((b * p.heads + h) * p.nq + i) * t + tj;
                gk += ds[e] * qn[(b * p.n + qi) * d3 + hc + c];
                gv += pat[e] * dz[(b * p.nq + i) * p.d + hc + c];
            }
        }
        let o = (b * p.n + j) * d3 + hc + c;
        dqkv[o + p.d] = gk;
        dqkv[o + 2u * p.d] = gv;
    }
}
