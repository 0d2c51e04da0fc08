//! The device, its limits, the compiled kernels and the helpers every pass
//! uses: buffers, uniform parameters, dispatches and read-back (awaited, never
//! blocking in wasm).

use crate::error::{Error, Result};
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// The kernels, one WGSL file each (shaders/*.wgsl).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum K {
    Matmul,
    MatmulSkinny,
    LayerNorm,
    LayerNormBackward,
    Gelu,
    GeluBackward,
    Add,
    HeadsSum,
    GatherLast,
    AttnScores,
    AttnSoftmax,
    AttnPv,
    AttnTail,
    AttnTailBackwardQ,
    AttnTailBackwardKv,
    PatchHeads,
    PatchNeurons,
    PatchPath,
    WeightedSum,
    Metric,
    AnswerDir,
    Logits,
    ProbDiff,
    Scatter,
}

impl K {
    const ALL: [K; 24] = [
        K::Matmul,
        K::MatmulSkinny,
        K::LayerNorm,
        K::LayerNormBackward,
        K::Gelu,
        K::GeluBackward,
        K::Add,
        K::HeadsSum,
        K::GatherLast,
        K::AttnScores,
        K::AttnSoftmax,
        K::AttnPv,
        K::AttnTail,
        K::AttnTailBackwardQ,
        K::AttnTailBackwardKv,
        K::PatchHeads,
        K::PatchNeurons,
        K::PatchPath,
        K::WeightedSum,
        K::Metric,
        K::AnswerDir,
        K::Logits,
        K::ProbDiff,
        K::Scatter,
    ];

    fn source(self) -> (&'static str, &'static str) {
        match self {
            K::Matmul => ("matmul", include_str!("shaders/matmul.wgsl")),
            K::MatmulSkinny => ("matmul_skinny", include_str!("shaders/matmul_skinny.wgsl")),
            K::LayerNorm => ("layer_norm", include_str!("shaders/layer_norm.wgsl")),
            K::LayerNormBackward => (
                "layer_norm_backward",
                include_str!("shaders/layer_norm_backward.wgsl"),
            ),
            K::Gelu => ("gelu", include_str!("shaders/gelu.wgsl")),
            K::GeluBackward => ("gelu_backward", include_str!("shaders/gelu_backward.wgsl")),
            K::Add => ("add", include_str!("shaders/add.wgsl")),
            K::HeadsSum => ("heads_sum", include_str!("shaders/heads_sum.wgsl")),
            K::GatherLast => ("gather_last", include_str!("shaders/gather_last.wgsl")),
            K::AttnScores => ("attn_scores", include_str!("shaders/attn_scores.wgsl")),
            K::AttnSoftmax => ("attn_softmax", include_str!("shaders/attn_softmax.wgsl")),
            K::AttnPv => ("attn_pv", include_str!("shaders/attn_pv.wgsl")),
            K::AttnTail => ("attn_tail", include_str!("shaders/attn_tail.wgsl")),
            K::AttnTailBackwardQ => (
                "attn_tail_backward_q",
                include_str!("shaders/attn_tail_backward_q.wgsl"),
            ),
            K::AttnTailBackwardKv => (
                "attn_tail_backward_kv",
                include_str!("shaders/attn_tail_backward_kv.wgsl"),
            ),
            K::PatchHeads => ("patch_heads", include_str!("shaders/patch_heads.wgsl")),
            K::PatchNeurons => ("patch_neurons", include_str!("shaders/patch_neurons.wgsl")),
            K::PatchPath => ("patch_path", include_str!("shaders/patch_path.wgsl")),
            K::WeightedSum => ("weighted_sum", include_str!("shaders/weighted_sum.wgsl")),
            K::Metric => ("metric", include_str!("shaders/metric.wgsl")),
            K::AnswerDir => ("answer_dir", include_str!("shaders/answer_dir.wgsl")),
            K::Logits => ("logits", include_str!("shaders/logits.wgsl")),
            K::ProbDiff => ("prob_diff", include_str!("shaders/prob_diff.wgsl")),
            K::Scatter => ("scatter", include_str!("shaders/scatter.wgsl")),
        }
    }
}

/// A buffer from float `off` on: where an operand or a result starts.
#[derive(Clone, Copy)]
pub(super) struct At<'a> {
    pub buf: &'a wgpu::Buffer,
    pub off: usize,
}

impl<'a> At<'a> {
    pub fn new(buf: &'a wgpu::Buffer, off: usize) -> At<'a> {
        At { buf, off }
    }
    /// The buffer from its first float.
    pub fn start(buf: &'a wgpu::Buffer) -> At<'a> {
        At { buf, off: 0 }
    }
}

/// `len` floats of a buffer from float `off` on (what `read` brings back).
#[derive(Clone, Copy)]
pub(super) struct Slice<'a> {
    pub buf: &'a wgpu::Buffer,
    pub off: usize,
    pub len: usize,
}

impl<'a> Slice<'a> {
    /// The first `len` floats of a buffer.
    pub fn first(buf: &'a wgpu::Buffer, len: usize) -> Slice<'a> {
        Slice { buf, off: 0, len }
    }
}

/// A kernel's parameters in a submission's uniform buffer: `len` u32 from
/// u32 `at` on.
#[derive(Clone, Copy)]
struct ParamBlock {
    at: usize,
    len: usize,
}

/// Invocations per workgroup of the one-dimensional kernels (WG in common.wgsl).
const WG: usize = 256;
/// Workgroups per dispatch dimension that every WebGPU device accepts.
const MAX_GROUPS: usize = 65_535;

/// Sizes the attention kernels' workgroup arrays are compiled for.
#[derive(Clone, Copy)]
pub(super) struct ShaderSizes {
    pub max_t: usize,
    pub max_dh: usize,
}

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
pub(super) const OOM: &str = "the GPU ran out of memory";

/// Whether an error is the device running out of memory.
pub(super) fn is_oom(e: &Error) -> bool {
    matches!(e, Error::Backend(m) if m.starts_with(OOM))
}

/// An error scope's result that has not settled yet (in the browser; natively
/// scopes settle at once), with what was being done.
#[cfg(not(target_arch = "wasm32"))]
type Settling = Pin<Box<dyn Future<Output = Option<wgpu::Error>> + Send>>;
#[cfg(target_arch = "wasm32")]
type Settling = Pin<Box<dyn Future<Output = Option<wgpu::Error>>>>;

/// Polls a future once, without waiting.
fn poll_now<F: Future + ?Sized>(f: Pin<&mut F>) -> Option<F::Output> {
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
fn size(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

pub(super) struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub limits: wgpu::Limits,
    pub adapter: String,
    pipelines: Vec<(wgpu::ComputePipeline, wgpu::BindGroupLayout)>,
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
    /// Per kernel (milliseconds, dispatches) when PATCHLAB_GPU_PROFILE is set
    /// (native only): every dispatch is then submitted and waited for alone.
    profile: Option<Mutex<Vec<(f64, u64)>>>,
    /// Command submissions and kernel dispatches since the device opened.
    submits: AtomicU64,
    dispatches: AtomicU64,
}

fn backend_err(what: impl std::fmt::Display) -> Error {
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

/// Compiles every kernel (common.wgsl first, the workgroup arrays sized by
/// `sizes`): its pipeline and bind group layout, in `K::ALL`'s order.
async fn compile_kernels(
    device: &wgpu::Device,
    sizes: ShaderSizes,
) -> Result<Vec<(wgpu::ComputePipeline, wgpu::BindGroupLayout)>> {
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let common = include_str!("shaders/common.wgsl");
    let pipelines = K::ALL
        .iter()
        .map(|k| {
            let (name, src) = k.source();
            let src = format!("{common}\n{src}")
                .replace("{{MAX_T}}", &sizes.max_t.to_string())
                .replace("{{MAX_DH}}", &sizes.max_dh.to_string());
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(Cow::Owned(src)),
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
            let layout = pipeline.get_bind_group_layout(0);
            (pipeline, layout)
        })
        .collect();
    if let Some(e) = scope.pop().await {
        return Err(backend_err(format!("compiling the kernels: {e}")));
    }
    Ok(pipelines)
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

impl Gpu {
    /// Opens the adapter; `max_binding` (bytes) caps the buffer size we use
    /// below the device's own limit.
    pub async fn new(sizes: ShaderSizes, max_binding: Option<u64>) -> Result<Gpu> {
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
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("patchlab"),
                required_features: wgpu::Features::empty(),
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
            profile: (cfg!(not(target_arch = "wasm32"))
                && std::env::var_os("PATCHLAB_GPU_PROFILE").is_some())
            .then(|| Mutex::new(vec![(0.0, 0); K::ALL.len()])),
        })
    }

    /// (command submissions, kernel dispatches) since the device opened.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.submits.load(Ordering::Relaxed),
            self.dispatches.load(Ordering::Relaxed),
        )
    }

    /// Time per kernel since the engine started, when profiling (see `profile`).
    pub fn profile_report(&self) -> Option<String> {
        let p = self.profile.as_ref()?.lock().ok()?;
        let mut rows: Vec<_> = K::ALL
            .iter()
            .zip(p.iter())
            .filter(|(_, t)| t.1 > 0)
            .collect();
        rows.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
        Some(
            rows.iter()
                .map(|(k, (ms, n))| {
                    format!("{:<24} {:>10.1} ms {:>8} dispatches\n", k.source().0, ms, n)
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
    fn scoped<T>(&self, what: impl Fn() -> String, f: impl FnOnce() -> T) -> Result<T> {
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
    async fn settle(&self) {
        let pending = std::mem::take(&mut *self.settling.lock().unwrap_or_else(|e| e.into_inner()));
        for (what, s) in pending {
            if let Some(e) = s.await {
                self.record(describe(&e, &what));
            }
        }
    }

    /// Keeps an error for the next `check`.
    fn record(&self, msg: String) {
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
        Ok((len.max(4) * 4) as u64)
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

    /// Binds a kernel's parameters (their block of the submission's uniform
    /// buffer) and storage buffers (bindings 1, 2, …).
    fn bind_group(
        &self,
        k: K,
        uniforms: &wgpu::Buffer,
        params: ParamBlock,
        bufs: &[wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: uniforms,
                offset: (params.at * 4) as u64,
                size: std::num::NonZeroU64::new((params.len * 4) as u64),
            }),
        }];
        entries.extend(bufs.iter().enumerate().map(|(i, b)| wgpu::BindGroupEntry {
            binding: i as u32 + 1,
            resource: b.as_entire_binding(),
        }));
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(k.source().0),
            layout: &self.pipelines[k as usize].1,
            entries: &entries,
        })
    }

    /// Reads slices of buffers back to the host with one submission and one
    /// mapping.
    pub async fn read(&self, ranges: &[Slice<'_>]) -> Result<Vec<Vec<f32>>> {
        let total: usize = ranges.iter().map(|r| r.len).sum();
        let staging = self.scoped(
            || {
                format!(
                    "allocating the read-back buffer ({})",
                    size(total as u64 * 4)
                )
            },
            || {
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("read-back"),
                    size: (total.max(1) * 4) as u64,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            },
        )?;
        let (tx, rx) = oneshot();
        self.scoped(
            || "reading results back".into(),
            || {
                let mut enc = self
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("read"),
                    });
                let mut at = 0;
                for r in ranges {
                    if r.len > 0 {
                        enc.copy_buffer_to_buffer(
                            r.buf,
                            (r.off * 4) as u64,
                            &staging,
                            (at * 4) as u64,
                            Some((r.len * 4) as u64),
                        );
                    }
                    at += r.len;
                }
                self.queue.submit([enc.finish()]);
                staging.map_async(wgpu::MapMode::Read, .., move |r| tx.send(r));
            },
        )?;
        // natively: wait for the device here, then the mapping is done (or
        // the device is gone), so nothing below can wait forever
        #[cfg(not(target_arch = "wasm32"))]
        let mapped = {
            let waited = self.device.poll(wgpu::PollType::wait_indefinitely());
            self.alive()?;
            waited.map_err(|e| backend_err(format!("waiting for the GPU: {e}")))?;
            let mut rx = rx;
            poll_now(Pin::new(&mut rx)).ok_or_else(|| {
                backend_err("the GPU finished its work but the read-back never completed")
            })?
        };
        #[cfg(target_arch = "wasm32")]
        let mapped = rx.await;
        self.settle().await;
        self.check()?;
        mapped.map_err(|e| backend_err(format!("reading results back: {e}")))?;
        let out = {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| backend_err(format!("reading results back: {e}")))?;
            let all: &[f32] = bytemuck::cast_slice(&view);
            let mut at = 0;
            ranges
                .iter()
                .map(|r| {
                    let v = all[at..at + r.len].to_vec();
                    at += r.len;
                    v
                })
                .collect()
        };
        staging.unmap();
        Ok(out)
    }
}

enum Op {
    Dispatch {
        k: K,
        params: ParamBlock,
        bufs: Vec<wgpu::Buffer>,
        groups: [u32; 3],
    },
    Copy {
        src: wgpu::Buffer,
        so: u64,
        dst: wgpu::Buffer,
        d_o: u64,
        bytes: u64,
    },
    Clear(wgpu::Buffer),
}

/// One submission, recorded first and encoded at `submit`: kernels in
/// compute passes, copies between them, and all the kernels' parameters in
/// one uniform buffer.
pub(super) struct Enc<'g> {
    gpu: &'g Gpu,
    ops: Vec<Op>,
    params: Vec<u32>,
}

impl<'g> Enc<'g> {
    pub fn new(gpu: &'g Gpu) -> Enc<'g> {
        Enc {
            gpu,
            ops: Vec::new(),
            params: Vec::new(),
        }
    }

    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// Dispatches `groups` workgroups of kernel `k`; `bufs` bind to 1, 2, …
    pub fn run(&mut self, k: K, params: &[u32], bufs: &[&wgpu::Buffer], groups: [usize; 3]) {
        if groups.contains(&0) {
            return;
        }
        debug_assert!(groups.iter().all(|&g| g <= MAX_GROUPS), "{k:?} {groups:?}");
        // each block starts at the device's uniform offset alignment
        let align = (self.gpu.limits.min_uniform_buffer_offset_alignment as usize / 4).max(4);
        let at = self.params.len().div_ceil(align) * align;
        let len = params.len().div_ceil(4).max(1) * 4;
        self.params.resize(at, 0);
        self.params.extend_from_slice(params);
        self.params.resize(at + len, 0);
        self.ops.push(Op::Dispatch {
            k,
            params: ParamBlock { at, len },
            bufs: bufs.iter().map(|&b| b.clone()).collect(),
            groups: groups.map(|g| g as u32),
        });
    }

    /// One workgroup per item (rows), split over x and y.
    pub fn run_groups(&mut self, k: K, params: &[u32], bufs: &[&wgpu::Buffer], n: usize) {
        let x = n.min(MAX_GROUPS);
        self.run(k, params, bufs, [x, n.div_ceil(x.max(1)), 1]);
    }

    /// One invocation per element of a `count`-element range.
    pub fn run_elems(&mut self, k: K, params: &[u32], bufs: &[&wgpu::Buffer], count: usize) {
        self.run_groups(k, params, bufs, count.div_ceil(WG));
    }

    /// Copies `len` f32 from `from` to `to`.
    pub fn copy(&mut self, from: At, to: At, len: usize) {
        if len > 0 {
            self.ops.push(Op::Copy {
                src: from.buf.clone(),
                so: (from.off * 4) as u64,
                dst: to.buf.clone(),
                d_o: (to.off * 4) as u64,
                bytes: (len * 4) as u64,
            });
        }
    }

    pub fn clear(&mut self, buf: &wgpu::Buffer) {
        self.ops.push(Op::Clear(buf.clone()));
    }

    /// Encodes and submits everything recorded. Nothing is submitted to a
    /// lost device; errors (out of memory, validation) are kept for the
    /// `read` that follows every submission.
    pub fn submit(self) {
        let gpu = self.gpu;
        if let Err(e) = gpu.scoped(|| "running the kernels".into(), || self.encode_submit()) {
            if !gpu.is_lost() {
                gpu.record(match e {
                    Error::Backend(m) => m,
                    other => other.to_string(),
                });
            }
        }
    }

    fn encode_submit(self) {
        let gpu = self.gpu;
        let mut params = self.params;
        params.resize(params.len().max(4), 0);
        let pbuf = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: (params.len() * 4) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        gpu.queue
            .write_buffer(&pbuf, 0, bytemuck::cast_slice(&params));
        let new_encoder = || {
            gpu.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("patchlab"),
                })
        };
        let mut enc = new_encoder();
        let mut ops = self.ops.into_iter().peekable();
        while let Some(op) = ops.next() {
            match op {
                Op::Copy {
                    src,
                    so,
                    dst,
                    d_o,
                    bytes,
                } => enc.copy_buffer_to_buffer(&src, so, &dst, d_o, Some(bytes)),
                Op::Clear(b) => enc.clear_buffer(&b, 0, None),
                Op::Dispatch { .. } => {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes: None,
                    });
                    let mut next = Some(op);
                    let mut last = None;
                    while let Some(Op::Dispatch {
                        k,
                        params,
                        bufs,
                        groups,
                    }) = next
                    {
                        let bg = gpu.bind_group(k, &pbuf, params, &bufs);
                        pass.set_pipeline(&gpu.pipelines[k as usize].0);
                        pass.set_bind_group(0, &bg, &[]);
                        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                        gpu.dispatches.fetch_add(1, Ordering::Relaxed);
                        last = Some(k);
                        next = None;
                        if gpu.profile.is_some() {
                            break;
                        }
                        if matches!(ops.peek(), Some(Op::Dispatch { .. })) {
                            next = ops.next();
                        }
                    }
                    drop(pass);
                    #[cfg(target_arch = "wasm32")]
                    let _ = last;
                    #[cfg(not(target_arch = "wasm32"))]
                    if let Some(p) = &gpu.profile {
                        // each dispatch submitted and waited for on its own
                        let done = std::mem::replace(&mut enc, new_encoder());
                        let t = std::time::Instant::now();
                        gpu.queue.submit([done.finish()]);
                        let _ = gpu.device.poll(wgpu::PollType::wait_indefinitely());
                        let ms = t.elapsed().as_secs_f64() * 1e3;
                        if let (Ok(mut p), Some(k)) = (p.lock(), last) {
                            p[k as usize].0 += ms;
                            p[k as usize].1 += 1;
                        }
                    }
                }
            }
        }
        gpu.queue.submit([enc.finish()]);
        gpu.submits.fetch_add(1, Ordering::Relaxed);
    }
}

/// A single-value channel: wgpu's map callback sends, the caller awaits.
struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

struct Sender<T>(Arc<Mutex<Slot<T>>>);
struct Receiver<T>(Arc<Mutex<Slot<T>>>);

fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let s = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
    }));
    (Sender(s.clone()), Receiver(s))
}

impl<T> Sender<T> {
    fn send(self, v: T) {
        let waker = {
            let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
            s.value = Some(v);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match s.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
