// Tail attention, one workgroup per (query row, head, batch element): scores
// against the base run's keys for positions < fd and the batch element's own
// keys after, causal softmax, and z = P · V. Queries are the last nq of the
// n new rows (nq = 1 in the final block). With `record`, also writes the
// pattern row [batch, head, nq, T] for the backward pass.
// Rows of qn (new, [batch·n, 3·d]) and qb (base runs of a group of prompt
// pairs, [pair, T, 3·d]; element b belongs to pair b / per) hold q | k | v.

struct P {
    n: u32, nq: u32, fd: u32, heads: u32,
    dh: u32, d: u32, record: u32, scale: f32,
    per: u32, pad2: u32, pad3: u32, pad4: u32,
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> qn: array<f32>;
@group(0) @binding(2) var<storage, read> qb: array<f32>;
@group(0) @binding(3) var<storage, read_write> z: array<f32>;
@group(0) @binding(4) var<storage, read_write> pat: array<f32>;

var<workgroup> sq: array<f32, {{MAX_DH}}>;
var<workgroup> sc: array<f32, {{MAX_T}}>;
var<workgroup> red: array<f32, 64>;

// Start of key/value row j (absolute position) of batch element b, plus `col`.
fn kv_row(b: u32, j: u32, col: u32) -> f32 {
    let d3 = 3u * p.d;
    if (j < p.fd) {
        return qb[((b / p.per) * (p.fd + p.n) + j) * d3 + col];
    }
    return qn[(b * p.n + j - p.fd) * d3 + col];
}

fn reduce_max(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = wid.x;
    let h = wid.y;
    let b = wid.z;
    let qi = p.n - p.nq + i;
    let tq = p.fd + qi;
    let t = p.fd + p.n;
    let d3 = 3u * p.d;
    let hc = h * p.dh;
    for (var c = lid; c < p.dh; c += 64u) {
        sq[c] = qn[(b * p.n + qi) * d3 + hc + c];
    }
    workgroupBarrier();
    var mx = -3.0e38;
    for (var j = lid; j <= tq; j += 64u) {
        var s = 0.0;
        for (var c = 0u; c < p.dh; c++) {
            s += sq[c] * kv_row(b, j, p.d + hc + c);
        }
        s = s * p.scale;
        sc[j] = s;
        mx = max(mx, s);
    }
    mx = reduce_max(mx, lid);
    var sum = 0.0;
    for (var j = lid; j <= tq; j += 64u) {
        let e = exp(sc[j] - mx);
        sc[j] = e;
        sum += e;
    }
    let tot = reduce_sum(sum, lid);
    let p0 = ((b * p.heads + h) * p.nq + i) * t;
    for (var j = lid; j < t; j += 64u) {
        var pj = 0.0;
        if (j <= tq) {
            pj = sc[j] / tot;
            sc[j] = pj;
        }
        if (p.record != 0u) {
            pat[p0 + j] = pj;
        }
    }
    workgroupBarrier();
    for (var c = lid; c < p.dh; c += 64u) {
        var acc = 0.0;
        for (var j = 0u; j <= tq; j++) {
            acc += sc[j] * kv_row(b, j, 2u * p.d + hc + c);
        }
        z[(b * p.nq + i) * p.d + hc + c] = acc;
    }
}
