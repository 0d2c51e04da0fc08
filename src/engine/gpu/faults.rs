//! Device loss and out-of-memory, as callers and tests see them. A lost
//! device (driver reset, the browser reclaiming it, `Device::destroy`) makes
//! every later call fail at once with "the GPU device was lost (reason): …";
//! the caller then creates a new `GpuEngine` (or computes on the CPU). An
//! allocation the device refuses is an error naming the buffer, and sweeps
//! whose batch is sized from memory retry once with half the batch.

use super::GpuEngine;
use crate::error::Result;

impl GpuEngine {
    /// Whether the device is lost: every call fails; create a new engine.
    pub fn is_lost(&self) -> bool {
        self.gpu.is_lost()
    }

    /// Test hook: destroys the device as a driver reset would lose it.
    #[doc(hidden)]
    pub fn simulate_device_loss(&self) {
        self.free_workspace();
        self.gpu.lose_device();
    }

    /// Test hook: buffers above `bytes` fail as if the device were out of
    /// memory (None: the device's own limits again).
    #[doc(hidden)]
    pub fn simulate_memory_limit(&self, bytes: Option<u64>) {
        self.gpu.limit_allocations(bytes);
    }

    /// Test hook: allocates (and frees) one storage buffer of `bytes` without
    /// our size checks, so that the device itself refuses what it cannot hold.
    #[doc(hidden)]
    pub fn try_allocate(&self, bytes: u64) -> Result<()> {
        self.gpu.raw_buffer(bytes, "test allocation").map(drop)
    }
}
