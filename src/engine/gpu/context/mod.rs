//! The device, its limits, the compiled kernels and the helpers every pass
//! uses: buffers, uniform parameters, dispatches and read-back (awaited, never
//! blocking in wasm).
//!
//! `kernels.rs` names and compiles the kernels, `device.rs` opens the device
//! and allocates on it (faults, error scopes, buffers), `encoder.rs` records
//! and submits a pass's work, `readback.rs` brings results back to the host.

mod device;
mod encoder;
mod kernels;
mod readback;

pub(super) use device::{is_oom, Gpu};
pub(super) use encoder::{At, Enc};
pub(super) use kernels::{ShaderSizes, K};
pub(super) use readback::Slice;
