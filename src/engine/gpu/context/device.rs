//! The device: opening it, its limits and faults (validation errors, out of
//! memory, loss), the error scopes every allocation and submission runs in,
//! and buffers.

use super::kernels::{compile_kernels, ShaderSizes, K};
use super::readback::Stamps;
use crate::engine::profile::{DeviceProfile, KernelCounts, Timing};
use crate::error::{Error, Result};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// What went wrong on the device since the last check (validation errors,
/// out of memory, device loss), collected from wgpu's callbacks and error
/// scopes, as the messages users see.
#[derive(Default)]
struct Faults {
    errors: Vec<String>,
    /// The device-lost callback's reason and message.
    lost: Option<(String, String)>,
}

/// How every out-of-memory message starts (sweeps retry smaller on it).
const OOM: &str = "the GPU ran out of memory";

/// Whether an error is the device running out of memory.
pub(in crate::engine::gpu) fn is_oom(e: &Error) -> bool {
    matches!(e, Error::Backend(m) if m.starts_with(OOM))
}

/// An error scope's result that has not settled yet (in the browser; natively
/// scopes settle at once), with what was being done.
#[cfg(not(target_arch = "wasm32"))]
type Settling = Pin<Box<dyn Future<Output = Option<wgpu::Error>> + Send>>;
#[cfg(target_arch = "wasm32")]
type Settling = Pin<Box<dyn Future<Output = Option<wgpu::Error>>>>;

/// Polls a future once, without waiting.
pub(super) fn poll_now<F: Future + ?Sized>(f: Pin<&mut F>) -> Option<F::Output> {
    match f.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// The message of a device error met while doing `what`, on one line.
fn describe(e: &wgpu::Error, what: &str) -> String {
    let text = e.to_string();
    let text = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "Caused by:")
        .collect::<Vec<_>>()
        .join(": ");
    match e {
        wgpu::Error::OutOfMemory { .. } => format!(
            "{OOM} while {what} ({text}); try a shorter prompt, fewer components at once or the CPU backend"
        ),
        _ => format!("WebGPU error while {what}: {text}"),
    }
}

/// A size for messages: "64.0 KiB", "3.0 MiB", "256.0 GiB".
pub(super) fn size(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

pub(in crate::engine::gpu) struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub limits: wgpu::Limits,
    pub adapter: String,
    pub(super) pipelines: Vec<(wgpu::ComputePipeline, wgpu::BindGroupLayout)>,
    /// Bound where a kernel's optional input is unused (read-only).
    dummy: wgpu::Buffer,
    /// Bound where a kernel's optional output is unused.
    dummy_out: wgpu::Buffer,
    faults: Arc<Mutex<Faults>>,
    /// Error scopes the browser has not settled yet; `read` awaits them.
    settling: Mutex<Vec<(String, Settling)>>,
    /// Test hook: buffers above this many bytes fail as out of memory
    /// (u64::MAX: no limit but the device's).
    alloc_limit: AtomicU64,
    /// Per kernel (K::ALL's order): dispatches, workgroups, FLOPs and bytes
    /// of every dispatch recorded, and its time when `timing`.
    pub(super) stats: Mutex<Vec<KernelCounts>>,
    /// How dispatches are timed, if they are: with timestamp queries every
    /// dispatch gets a compute pass of its own and the submission resolves
    /// its queries into `stamps`; elapsed (native only), every dispatch is
    /// submitted and waited for alone.
    pub(super) timing: Option<Timing>,
    /// Timestamp queries resolved and being mapped, not yet added to
    /// `stats` (`read` adds them: every submission is followed by one).
    pub(super) stamps: Mutex<Vec<Stamps>>,
    /// Read-backs since the device opened.
    pub(super) readbacks: AtomicU64,
    /// Command submissions and kernel dispatches since the device opened.
    pub(super) submits: AtomicU64,
    pub(super) dispatches: AtomicU64,
    /// Whether large products may use the register-tiled kernel
    /// (`matmul_tiled`); off only to compare it with `matmul` (bench).
    pub(in crate::engine::gpu) matmul_tiled: AtomicBool,
}

pub(super) fn backend_err(what: impl std::fmt::Display) -> Error {
    Error::Backend(format!("WebGPU: {what}"))
}

/// The limits a device must offer the kernels compiled for `sizes`: (name,
/// what the adapter offers, what we need).
fn needed_limits(limits: &wgpu::Limits, sizes: ShaderSizes) -> [(&'static str, usize, usize); 4] {
    [
        (
            "max_storage_buffers_per_shader_stage",
            limits.max_storage_buffers_per_shader_stage as usize,
            6,
        ),
        (
            "max_compute_invocations_per_workgroup",
            limits.max_compute_invocations_per_workgroup as usize,
            256,
        ),
        (
            "max_compute_workgroup_size_x",
            limits.max_compute_workgroup_size_x as usize,
            256,
        ),
        (
            "max_compute_workgroup_storage_size",
            limits.max_compute_workgroup_storage_size as usize,
            4 * (sizes.max_t + sizes.max_dh + 64).max(2048),
        ),
    ]
}

/// Keeps the device's uncaptured errors and its loss in `faults`.
fn watch_faults(device: &wgpu::Device, faults: &Arc<Mutex<Faults>>) {
    let f = faults.clone();
    device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
        if let Ok(mut f) = f.lock() {
            f.errors.push(describe(&e, "computing"));
        }
    }));
    let f = faults.clone();
    device.set_device_lost_callback(move |reason, msg| {
        if let Ok(mut f) = f.lock() {
            f.lost = Some((format!("{reason:?}"), msg));
        }
    });
}

/// The timing PATCHLAB_GPU_PROFILE asks for (native only): "elapsed", or
/// timestamps for any other value.
fn timing_from_env() -> Option<Timing> {
    if cfg!(target_arch = "wasm32") {
        return None;
    }
    let v = std::env::var_os("PATCHLAB_GPU_PROFILE")?;
    Some(if v == "elapsed" {
        Timing::Elapsed
    } else {
        Timing::Timestamps
    })
}

/// The timing used for the timing `wanted` where the adapter does (or does
/// not) offer timestamp queries: timestamps where asked for and offered,
/// else elapsed time natively, none in the browser (it cannot wait for one
/// dispatch).
fn pick_timing(wanted: Option<Timing>, timestamps: bool) -> Option<Timing> {
    match wanted? {
        Timing::Timestamps if timestamps => Some(Timing::Timestamps),
        _ if cfg!(target_arch = "wasm32") => None,
        _ => Some(Timing::Elapsed),
    }
}

impl Gpu {
    /// Opens the adapter; `max_binding` (bytes) caps the buffer size we use
    /// below the device's own limit. `timing`: how to time the kernels, if
    /// at all (natively PATCHLAB_GPU_PROFILE also asks for it: "elapsed"
    /// for elapsed time, any other value for timestamps); timestamps fall
    /// back to elapsed time natively where the adapter lacks
    /// TIMESTAMP_QUERY, and to no timing in the browser (which cannot wait).
    pub async fn new(
        sizes: ShaderSizes,
        max_binding: Option<u64>,
        timing: Option<Timing>,
    ) -> Result<Gpu> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                Error::Backend(format!(
                    "no WebGPU adapter ({e}). In the browser, use one with WebGPU or the CPU backend; \
                     natively, install a Vulkan driver (Debian: `apt-get install mesa-vulkan-drivers libvulkan1`)"
                ))
            })?;
        let info = adapter.get_info();
        let adapter_name = format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type);
        let limits = adapter.limits();
        let mut ours = limits.clone();
        if let Some(m) = max_binding {
            ours.max_storage_buffer_binding_size = ours.max_storage_buffer_binding_size.min(m);
        }
        for (what, have, need) in needed_limits(&limits, sizes) {
            if have < need {
                return Err(Error::Backend(format!(
                    "the WebGPU adapter {adapter_name} offers {what} = {have}, this model needs {need}: use the CPU backend"
                )));
            }
        }
        let timing = pick_timing(
            timing.or_else(timing_from_env),
            adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY),
        );
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("patchlab"),
                required_features: if timing == Some(Timing::Timestamps) {
                    wgpu::Features::TIMESTAMP_QUERY
                } else {
                    wgpu::Features::empty()
                },
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| backend_err(format!("requesting a device from {adapter_name}: {e}")))?;
        let faults = Arc::new(Mutex::new(Faults::default()));
        watch_faults(&device, &faults);
        let pipelines = compile_kernels(&device, sizes).await?;
        let small = |label: &str| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        Ok(Gpu {
            dummy: small("dummy"),
            dummy_out: small("dummy_out"),
            device,
            queue,
            adapter: adapter_name,
            limits: ours,
            pipelines,
            faults,
            settling: Mutex::new(Vec::new()),
            alloc_limit: AtomicU64::new(u64::MAX),
            submits: AtomicU64::new(0),
            dispatches: AtomicU64::new(0),
            stats: Mutex::new(
                K::ALL
                    .iter()
                    .map(|k| KernelCounts {
                        name: k.source().0,
                        ..KernelCounts::default()
                    })
                    .collect(),
            ),
            timing,
            stamps: Mutex::new(Vec::new()),
            readbacks: AtomicU64::new(0),
            matmul_tiled: AtomicBool::new(true),
        })
    }

    /// (command submissions, kernel dispatches) since the device opened.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.submits.load(Ordering::Relaxed),
            self.dispatches.load(Ordering::Relaxed),
        )
    }

    /// Every kernel's work since the device opened, with the submissions
    /// and read-backs. Timestamp times count as of the last read-back
    /// (`read` adds them; every computation ends with one, so a snapshot
    /// after it has all of its times).
    pub fn profile(&self, adapter: &str) -> DeviceProfile {
        let kernels = self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        DeviceProfile {
            adapter: adapter.to_string(),
            kernels,
            submits: self.submits.load(Ordering::Relaxed),
            readbacks: self.readbacks.load(Ordering::Relaxed),
            timed: self.timing.is_some(),
            timing: self.timing,
        }
    }

    /// Time per kernel since the engine started, when timed (see `timing`),
    /// as of the last read-back.
    pub fn profile_report(&self) -> Option<String> {
        self.timing?;
        let p = self.profile("");
        let mut rows: Vec<_> = p.kernels.iter().filter(|k| k.dispatches > 0).collect();
        rows.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        Some(
            rows.iter()
                .map(|k| {
                    format!(
                        "{:<24} {:>10.1} ms {:>8} dispatches\n",
                        k.name, k.ms, k.dispatches
                    )
                })
                .collect(),
        )
    }

    /// Reports (and clears) what went wrong on the device since the last check.
    pub fn check(&self) -> Result<()> {
        self.alive()?;
        let mut f = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        if !f.errors.is_empty() {
            let mut errs = std::mem::take(&mut f.errors);
            // out of memory first: callers retry smaller on it
            errs.sort_by_key(|e| !e.starts_with(OOM));
            return Err(Error::Backend(errs.join("; ")));
        }
        Ok(())
    }

    /// An error once the device is lost (the device-lost callback ran): every
    /// call then fails at once with it.
    pub fn alive(&self) -> Result<()> {
        let f = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        match &f.lost {
            Some((reason, msg)) => Err(Error::Backend(format!(
                "the GPU device was lost ({reason}): {}; create a new GPU engine (load the model again) or use the CPU backend",
                if msg.is_empty() { "no details" } else { msg }
            ))),
            None => Ok(()),
        }
    }

    /// Whether the device is lost.
    pub fn is_lost(&self) -> bool {
        self.alive().is_err()
    }

    /// Destroys the device, as a driver reset would lose it (tests), and
    /// lets wgpu report the loss.
    pub fn lose_device(&self) {
        self.device.destroy();
        #[cfg(not(target_arch = "wasm32"))]
        let _ = self.device.poll(wgpu::PollType::Poll);
    }

    /// Test hook: buffers above `bytes` fail as out of memory (None: only the
    /// device's limits).
    pub fn limit_allocations(&self, bytes: Option<u64>) {
        self.alloc_limit
            .store(bytes.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Runs `f` (allocations, a submission) inside out-of-memory and
    /// validation error scopes. Natively the scopes settle at once and their
    /// error is returned; in the browser they settle later and `read` reports
    /// them. A lost device fails before `f` runs.
    pub(super) fn scoped<T>(&self, what: impl Fn() -> String, f: impl FnOnce() -> T) -> Result<T> {
        self.alive()?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let invalid = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        // in reverse order of pushing
        let scopes = [invalid.pop(), oom.pop()];
        let mut err = None;
        for s in scopes {
            let mut s: Settling = Box::pin(s);
            match poll_now(s.as_mut()) {
                Some(Some(e)) => err = err.or(Some(describe(&e, &what()))),
                Some(None) => {}
                None => self
                    .settling
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((what(), s)),
            }
        }
        self.alive()?;
        match err {
            Some(e) => Err(Error::Backend(e)),
            None => Ok(out),
        }
    }

    /// Waits for the error scopes still settling and records their errors.
    pub(super) async fn settle(&self) {
        let pending = std::mem::take(&mut *self.settling.lock().unwrap_or_else(|e| e.into_inner()));
        for (what, s) in pending {
            if let Some(e) = s.await {
                self.record(describe(&e, &what));
            }
        }
    }

    /// Keeps an error for the next `check`.
    pub(super) fn record(&self, msg: String) {
        self.faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .errors
            .push(msg);
    }

    /// A raw storage buffer of `bytes`, in error scopes: a clear error when
    /// the device cannot allocate it (no size check of ours).
    pub fn raw_buffer(&self, bytes: u64, label: &str) -> Result<wgpu::Buffer> {
        if bytes > self.alloc_limit.load(Ordering::Relaxed) {
            return Err(Error::Backend(format!(
                "{OOM} while allocating `{label}` ({}; the test limit is {}); try a shorter prompt, fewer components at once or the CPU backend",
                size(bytes),
                size(self.alloc_limit.load(Ordering::Relaxed))
            )));
        }
        self.scoped(
            || format!("allocating `{label}` ({})", size(bytes)),
            || {
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: bytes,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            },
        )
    }

    /// The largest f32 array one buffer binding may hold.
    pub fn max_floats(&self) -> usize {
        let b = self
            .limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size);
        (b / 4) as usize
    }

    fn check_size(&self, len: usize, label: &str) -> Result<u64> {
        if len > self.max_floats() {
            return Err(Error::Backend(format!(
                "`{label}` needs {} in one buffer but this WebGPU device binds at most {} \
                 (max_storage_buffer_binding_size): use a shorter prompt or the CPU backend",
                size(len as u64 * 4),
                size(self.max_floats() as u64 * 4)
            )));
        }
        // whole vec4s where the limit allows (matmul_tiled reads A and B as vec4)
        let len = len.max(4);
        let whole = len.next_multiple_of(4);
        Ok((if whole <= self.max_floats() {
            whole
        } else {
            len
        } * 4) as u64)
    }

    /// An uninitialised storage buffer of `len` f32.
    pub fn buffer(&self, len: usize, label: &str) -> Result<wgpu::Buffer> {
        let size = self.check_size(len, label)?;
        self.raw_buffer(size, label)
    }

    /// A storage buffer holding `data`.
    pub fn upload(&self, data: &[f32], label: &str) -> Result<wgpu::Buffer> {
        let size = self.check_size(data.len(), label)?;
        self.upload_bytes(bytemuck::cast_slice(data), size, label)
    }

    /// A storage buffer holding the u32 `data` (indices for the kernels).
    pub fn upload_u32(&self, data: &[u32], label: &str) -> Result<wgpu::Buffer> {
        let size = self.check_size(data.len(), label)?;
        self.upload_bytes(bytemuck::cast_slice(data), size, label)
    }

    /// A buffer of `size` bytes (≥ the data, a multiple of 4) starting with
    /// `bytes`, written through the queue (an allocation that fails is an
    /// error, not a mapping of nothing).
    fn upload_bytes(&self, bytes: &[u8], size: u64, label: &str) -> Result<wgpu::Buffer> {
        let buf = self.raw_buffer(size, label)?;
        if !bytes.is_empty() {
            self.scoped(
                || format!("uploading `{label}`"),
                || self.queue.write_buffer(&buf, 0, bytes),
            )?;
        }
        Ok(buf)
    }

    pub fn dummy(&self) -> &wgpu::Buffer {
        &self.dummy
    }

    pub fn dummy_out(&self) -> &wgpu::Buffer {
        &self.dummy_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(not(target_arch = "wasm32"))]
    fn timestamps_where_offered_else_elapsed_time() {
        let (ts, el) = (Some(Timing::Timestamps), Some(Timing::Elapsed));
        assert_eq!(pick_timing(ts, true), ts);
        assert_eq!(pick_timing(ts, false), el);
        assert_eq!(pick_timing(el, true), el);
        assert_eq!(pick_timing(None, true), None);
    }
}
