//! Read-back: slices of device buffers copied to a mapped buffer and
//! brought to the host (natively by polling the device, in wasm by awaiting
//! the browser).

use super::device::{backend_err, size, Gpu};
use super::kernels::K;
use crate::error::Result;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// `len` floats of a buffer from float `off` on (what `read` brings back).
#[derive(Clone, Copy)]
pub(in crate::engine::gpu) struct Slice<'a> {
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

impl Gpu {
    /// Reads slices of buffers back to the host with one submission and one
    /// mapping.
    pub async fn read(&self, ranges: &[Slice<'_>]) -> Result<Vec<Vec<f32>>> {
        let total: usize = ranges.iter().map(|r| r.len).sum();
        self.readbacks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
            super::device::poll_now(Pin::new(&mut rx)).ok_or_else(|| {
                backend_err("the GPU finished its work but the read-back never completed")
            })?
        };
        #[cfg(target_arch = "wasm32")]
        let mapped = rx.await;
        self.settle().await;
        self.add_stamps().await;
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

/// One submission's timestamp queries (`Timing::Timestamps`), resolved and
/// copied into a buffer being mapped: a (start, end) pair of ticks per
/// dispatch, in the order of `kernels`.
pub(in crate::engine::gpu) struct Stamps {
    /// Each dispatch's kernel.
    pub kernels: Vec<K>,
    /// 2 × 8 bytes per dispatch, mapped for reading once `mapped` has sent.
    pub buf: wgpu::Buffer,
    pub mapped: Receiver<std::result::Result<(), wgpu::BufferAsyncError>>,
}

impl Gpu {
    /// Adds the timestamps of earlier submissions to their kernels' times.
    /// Called by `read`, which follows every submission: natively after the
    /// device was waited for (every earlier mapping is then done), in the
    /// browser awaiting each mapping. A kernel's time is end − start, 0
    /// where a driver writes an end before the start.
    pub(super) async fn add_stamps(&self) {
        let pending = std::mem::take(&mut *self.stamps.lock().unwrap_or_else(|e| e.into_inner()));
        if pending.is_empty() {
            return;
        }
        // nanoseconds per tick
        let period = self.queue.get_timestamp_period() as f64;
        let mut left = Vec::new();
        for mut s in pending {
            #[cfg(not(target_arch = "wasm32"))]
            let mapped = match super::device::poll_now(Pin::new(&mut s.mapped)) {
                Some(m) => m,
                None => {
                    // not done yet (the device was lost, or a later read
                    // comes first): the next read tries again
                    left.push(s);
                    continue;
                }
            };
            #[cfg(target_arch = "wasm32")]
            let mapped = (&mut s.mapped).await;
            // an error (the submission failed) is reported by `check`
            if mapped.is_err() {
                continue;
            }
            if let Ok(view) = s.buf.get_mapped_range(..) {
                let ticks: Vec<u64> = view
                    .chunks_exact(8)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect();
                let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
                for (k, t) in s.kernels.iter().zip(ticks.chunks_exact(2)) {
                    stats[*k as usize].ms += t[1].saturating_sub(t[0]) as f64 * period / 1e6;
                }
            }
            s.buf.unmap();
        }
        if !left.is_empty() {
            let mut stamps = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
            left.append(&mut stamps);
            *stamps = left;
        }
    }
}

/// A single-value channel: wgpu's map callback sends, the caller awaits.
struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

pub(super) struct Sender<T>(Arc<Mutex<Slot<T>>>);
pub(in crate::engine::gpu) struct Receiver<T>(Arc<Mutex<Slot<T>>>);

pub(super) fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let s = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
    }));
    (Sender(s.clone()), Receiver(s))
}

impl<T> Sender<T> {
    pub(super) fn send(self, v: T) {
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
