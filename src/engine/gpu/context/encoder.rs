//! One submission: kernels, copies and clears recorded first, then encoded
//! and submitted at once with all the kernels' parameters in one uniform
//! buffer.

use super::device::Gpu;
use super::kernels::K;
use super::readback::{oneshot, Stamps};
use crate::engine::profile::Timing;
use crate::error::Error;
use std::sync::atomic::Ordering;

/// A buffer from float `off` on: where an operand or a result starts.
#[derive(Clone, Copy)]
pub(in crate::engine::gpu) struct At<'a> {
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

impl Gpu {
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
pub(in crate::engine::gpu) struct Enc<'g> {
    gpu: &'g Gpu,
    ops: Vec<Op>,
    params: Vec<u32>,
    /// The next dispatch's (FLOPs, bytes), set by the op that records it.
    cost: (f64, f64),
}

impl<'g> Enc<'g> {
    pub fn new(gpu: &'g Gpu) -> Enc<'g> {
        Enc {
            gpu,
            ops: Vec::new(),
            params: Vec::new(),
            cost: (0.0, 0.0),
        }
    }

    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// The FLOPs and bytes of the next dispatch (what `DeviceProfile`
    /// counts): its op knows its shapes.
    pub fn cost(&mut self, flops: f64, bytes: f64) {
        self.cost = (flops, bytes);
    }

    /// Dispatches `groups` workgroups of kernel `k`; `bufs` bind to 1, 2, …
    pub fn run(&mut self, k: K, params: &[u32], bufs: &[&wgpu::Buffer], groups: [usize; 3]) {
        let (flops, bytes) = std::mem::take(&mut self.cost);
        if groups.contains(&0) {
            return;
        }
        {
            let mut stats = self.gpu.stats.lock().unwrap_or_else(|e| e.into_inner());
            let s = &mut stats[k as usize];
            s.dispatches += 1;
            s.workgroups += groups.iter().product::<usize>() as u64;
            s.flops += flops;
            s.bytes += bytes;
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
        // timed: every dispatch in a compute pass of its own
        let alone = gpu.timing.is_some();
        let n = self
            .ops
            .iter()
            .filter(|o| matches!(o, Op::Dispatch { .. }))
            .count();
        let mut stamps =
            (gpu.timing == Some(Timing::Timestamps) && n > 0).then(|| StampSets::new(gpu, n));
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
                Op::Dispatch { k, .. } => {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes: stamps.as_mut().map(|s| s.next(k)),
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
                        if alone {
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
                    if gpu.timing == Some(Timing::Elapsed) {
                        // each dispatch submitted and waited for on its own
                        let done = std::mem::replace(&mut enc, new_encoder());
                        let t = std::time::Instant::now();
                        gpu.queue.submit([done.finish()]);
                        let _ = gpu.device.poll(wgpu::PollType::wait_indefinitely());
                        let ms = t.elapsed().as_secs_f64() * 1e3;
                        if let (Ok(mut p), Some(k)) = (gpu.stats.lock(), last) {
                            p[k as usize].ms += ms;
                        }
                    }
                }
            }
        }
        let read = stamps.map(|s| s.resolve(gpu, &mut enc));
        gpu.queue.submit([enc.finish()]);
        gpu.submits.fetch_add(1, Ordering::Relaxed);
        if let Some((kernels, buf)) = read {
            let (tx, rx) = oneshot();
            buf.map_async(wgpu::MapMode::Read, .., move |r| tx.send(r));
            gpu.stamps
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Stamps {
                    kernels,
                    buf,
                    mapped: rx,
                });
        }
    }
}

/// A submission's timestamp query sets (`Timing::Timestamps`): a start and
/// an end query per dispatch, in sets of at most QUERY_SET_MAX_QUERIES.
struct StampSets {
    sets: Vec<wgpu::QuerySet>,
    /// Each dispatch's kernel, in order.
    kernels: Vec<K>,
    /// Queries of the whole submission (2 per dispatch).
    queries: u32,
}

/// Dispatches per query set.
const PAIRS_PER_SET: u32 = wgpu::QUERY_SET_MAX_QUERIES / 2;

impl StampSets {
    fn new(gpu: &Gpu, dispatches: usize) -> StampSets {
        let queries = 2 * dispatches as u32;
        let sets = (0..queries.div_ceil(2 * PAIRS_PER_SET))
            .map(|i| {
                let count = (queries - i * 2 * PAIRS_PER_SET).min(2 * PAIRS_PER_SET);
                gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("kernel times"),
                    ty: wgpu::QueryType::Timestamp,
                    count,
                })
            })
            .collect();
        StampSets {
            sets,
            kernels: Vec::with_capacity(dispatches),
            queries,
        }
    }

    /// The start and end queries of the next dispatch, of kernel `k`.
    fn next(&mut self, k: K) -> wgpu::ComputePassTimestampWrites<'_> {
        let i = self.kernels.len() as u32;
        self.kernels.push(k);
        let at = (i % PAIRS_PER_SET) * 2;
        wgpu::ComputePassTimestampWrites {
            query_set: &self.sets[(i / PAIRS_PER_SET) as usize],
            beginning_of_pass_write_index: Some(at),
            end_of_pass_write_index: Some(at + 1),
        }
    }

    /// Resolves every query set (each at an offset the resolve allows) and
    /// copies the ticks, 2 per dispatch in order, into a buffer to map:
    /// each dispatch's kernel and that buffer.
    fn resolve(self, gpu: &Gpu, enc: &mut wgpu::CommandEncoder) -> (Vec<K>, wgpu::Buffer) {
        let bytes = |q: u32| q as u64 * wgpu::QUERY_SIZE as u64;
        let set_bytes =
            bytes(2 * PAIRS_PER_SET).next_multiple_of(wgpu::QUERY_RESOLVE_BUFFER_ALIGNMENT);
        let total = bytes(self.queries).max(8);
        let resolved = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kernel times (resolved)"),
            size: set_bytes * (self.sets.len() as u64).max(1),
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let read = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kernel times"),
            size: total,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        for (i, set) in self.sets.iter().enumerate() {
            let first = i as u32 * 2 * PAIRS_PER_SET;
            let count = (self.queries - first).min(2 * PAIRS_PER_SET);
            let at = i as u64 * set_bytes;
            enc.resolve_query_set(set, 0..count, &resolved, at);
            enc.copy_buffer_to_buffer(&resolved, at, &read, bytes(first), Some(bytes(count)));
        }
        (self.kernels, read)
    }
}
