//! What a device backend did, per kernel: dispatches, workgroups, FLOPs and
//! bytes (counted from each dispatch's shapes, whatever the adapter), with
//! the command submissions and read-backs; and a projection of that work
//! onto named GPUs (a model, labelled as one, never a measurement).

use serde::Serialize;

/// One kernel's work.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KernelCounts {
    /// The kernel's WGSL file name (`matmul`, `attn_tail`, …).
    pub name: &'static str,
    pub dispatches: u64,
    pub workgroups: u64,
    /// Floating-point operations (a multiply-add counts 2).
    pub flops: f64,
    /// Bytes the kernel must move: each operand read once and each result
    /// written once (a lower bound; re-reads that caches absorb are not
    /// counted).
    pub bytes: f64,
    /// Milliseconds, when the backend times its dispatches
    /// ([`DeviceProfile::timing`] says how).
    pub ms: f64,
}

impl std::ops::AddAssign<&KernelCounts> for KernelCounts {
    /// Adds another count of the same kernel (or of all of them, for a total).
    fn add_assign(&mut self, k: &KernelCounts) {
        self.dispatches += k.dispatches;
        self.workgroups += k.workgroups;
        self.flops += k.flops;
        self.bytes += k.bytes;
        self.ms += k.ms;
    }
}

/// A device backend's work since it started (or between two snapshots, see
/// [`DeviceProfile::since`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeviceProfile {
    /// The adapter's name.
    pub adapter: String,
    /// Every kernel, in one fixed order (those never dispatched included).
    pub kernels: Vec<KernelCounts>,
    /// Command submissions.
    pub submits: u64,
    /// Read-backs (each one submission and one mapping the host waits for).
    pub readbacks: u64,
    /// Whether `ms` holds each kernel's time (`timing` is not None).
    pub timed: bool,
    /// How the kernels' `ms` were taken (null: they were not; see
    /// [`Timing`]). Timing is asked for with `GpuOptions::timing`, natively
    /// also with the environment variable `PATCHLAB_GPU_PROFILE`.
    pub timing: Option<Timing>,
}

/// How a device backend times its kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Timing {
    /// The adapter's timestamp queries: every dispatch runs in a compute
    /// pass of its own whose start and end the GPU writes, in one
    /// submission as usual; the times are read back with the next read-back.
    Timestamps,
    /// Where the adapter has no timestamp queries (native only): every
    /// dispatch is submitted and waited for alone and the host's elapsed
    /// time around it is taken (submission and wake-up included).
    Elapsed,
}

impl Timing {
    /// What the times are, for a table's footnote.
    pub fn describe(self) -> &'static str {
        match self {
            Timing::Timestamps => {
                "the GPU's timestamp queries at the start and end of each dispatch (each in a compute pass of its own)"
            }
            Timing::Elapsed => {
                "the host's elapsed time per dispatch, each submitted and waited for alone (not timestamp queries)"
            }
        }
    }
}

impl DeviceProfile {
    /// The work done after `earlier` (a snapshot of the same engine).
    pub fn since(&self, earlier: &DeviceProfile) -> DeviceProfile {
        let kernels = self
            .kernels
            .iter()
            .zip(&earlier.kernels)
            .map(|(a, b)| KernelCounts {
                name: a.name,
                dispatches: a.dispatches - b.dispatches,
                workgroups: a.workgroups - b.workgroups,
                flops: a.flops - b.flops,
                bytes: a.bytes - b.bytes,
                ms: a.ms - b.ms,
            })
            .collect();
        DeviceProfile {
            adapter: self.adapter.clone(),
            kernels,
            submits: self.submits - earlier.submits,
            readbacks: self.readbacks - earlier.readbacks,
            timed: self.timed,
            timing: self.timing,
        }
    }

    /// All kernels together.
    pub fn total(&self) -> KernelCounts {
        self.kernels
            .iter()
            .fold(KernelCounts::default(), |mut t, k| {
                t += k;
                t
            })
    }

    /// Adds the work of `other` (a later phase of the same engine).
    pub fn add(&mut self, other: &DeviceProfile) {
        for (a, k) in self.kernels.iter_mut().zip(&other.kernels) {
            *a += k;
        }
        self.submits += other.submits;
        self.readbacks += other.readbacks;
    }

    /// The kernels that ran, the most FLOPs first.
    pub fn busy(&self) -> Vec<&KernelCounts> {
        let mut v: Vec<&KernelCounts> = self.kernels.iter().filter(|k| k.dispatches > 0).collect();
        v.sort_by(|a, b| {
            b.flops
                .total_cmp(&a.flops)
                .then(b.bytes.total_cmp(&a.bytes))
        });
        v
    }
}

/// A GPU to project onto: its f32 rate (no tensor cores) and memory bandwidth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuSpec {
    pub name: &'static str,
    pub tflops: f64,
    pub gbytes_per_s: f64,
}

/// The GPUs `patchlab bench --profile` projects onto (vendors' figures).
pub const GPUS: [GpuSpec; 3] = [
    GpuSpec {
        name: "H100 SXM",
        tflops: 67.0,
        gbytes_per_s: 3350.0,
    },
    GpuSpec {
        name: "RTX 4090",
        tflops: 82.6,
        gbytes_per_s: 1008.0,
    },
    GpuSpec {
        name: "Apple M2",
        tflops: 3.6,
        gbytes_per_s: 100.0,
    },
];

/// What bounds a projected phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Compute,
    Memory,
    Dispatch,
}

impl Bound {
    pub fn name(self) -> &'static str {
        match self {
            Bound::Compute => "compute",
            Bound::Memory => "memory",
            Bound::Dispatch => "dispatch",
        }
    }
}

/// The projected time of `work` on `gpu`: the largest of its compute
/// bound (FLOPs at the peak rate), memory bound (bytes at the bandwidth)
/// and dispatch bound (`dispatch_us` per dispatch and per read-back), with
/// which one it is. Milliseconds. A model of the work's lower bound, not a
/// measurement: real kernels reach a fraction of either peak.
pub fn project(work: &DeviceProfile, gpu: &GpuSpec, dispatch_us: f64) -> (f64, Bound) {
    let t = work.total();
    let compute = t.flops / (gpu.tflops * 1e12) * 1e3;
    let memory = t.bytes / (gpu.gbytes_per_s * 1e9) * 1e3;
    let dispatch = (t.dispatches + work.readbacks) as f64 * dispatch_us / 1e3;
    [
        (compute, Bound::Compute),
        (memory, Bound::Memory),
        (dispatch, Bound::Dispatch),
    ]
    .into_iter()
    .fold(
        (0.0, Bound::Compute),
        |best, x| if x.0 > best.0 { x } else { best },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(flops: f64, bytes: f64, dispatches: u64) -> DeviceProfile {
        DeviceProfile {
            kernels: vec![KernelCounts {
                name: "matmul",
                dispatches,
                flops,
                bytes,
                ..KernelCounts::default()
            }],
            ..DeviceProfile::default()
        }
    }

    #[test]
    fn the_projection_is_the_largest_bound() {
        let h100 = &GPUS[0];
        // 67 GFLOP at 67 TFLOP/s: 1 ms, above 1 MB / 3.35 TB/s and 10 dispatches
        let (ms, b) = project(&work(67e9, 1e6, 10), h100, 5.0);
        assert!((ms - 1.0).abs() < 1e-9 && b == Bound::Compute);
        let (ms, b) = project(&work(1e6, 3.35e9, 10), h100, 5.0);
        assert!((ms - 1.0).abs() < 1e-9 && b == Bound::Memory);
        let (ms, b) = project(&work(1e6, 1e6, 200), h100, 5.0);
        assert!((ms - 1.0).abs() < 1e-9 && b == Bound::Dispatch);
    }

    #[test]
    fn since_subtracts_a_snapshot() {
        let a = work(10.0, 20.0, 3);
        let b = work(4.0, 5.0, 1);
        let d = a.since(&b);
        assert_eq!(d.total().dispatches, 2);
        assert_eq!(d.total().flops, 6.0);
        assert_eq!(d.total().bytes, 15.0);
    }
}
