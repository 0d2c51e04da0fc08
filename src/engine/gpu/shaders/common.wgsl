// Prepended to every kernel by the Rust side (src/engine/gpu/context.rs).

// Invocations per workgroup of the one-dimensional kernels.
const WG: u32 = 256u;

// The index of a workgroup in a (possibly two-dimensional) dispatch of a
// one-dimensional range: large ranges are split over y (65,535 per dimension).
fn flat_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}
