//! Device loss and out-of-memory on the WebGPU backend (natively, on
//! lavapipe where there is no GPU): clear errors, no hang, no panic, and a
//! later run works.

use crate::common::*;
use patchlab::engine::cpu::CpuEngine;
use patchlab::engine::gpu::GpuEngine;
use patchlab::engine::{Component, Engine, LayerComponents};
use patchlab::model::random::random_weights;
use pollster::block_on;
use std::time::{Duration, Instant};

/// GPU and CPU values agree relative to the CPU values' scale.
fn agree(gpu: &[f32], cpu: &[f32], what: &str) {
    let e = max_diff_over(gpu, cpu, max_abs(cpu).max(1e-6));
    assert!(e <= 2e-5, "{what}: GPU differs from CPU by {e:e}");
}

/// AP over some heads on both engines, compared.
async fn check_ap(cpu: &CpuEngine, gpu: &GpuEngine, what: &str) {
    let (a, b) = ioi_ids();
    let site = LayerComponents {
        layer: 0,
        component: Component::Heads,
    };
    let (ca, cb) = runs(cpu, &a, &b, &ANSWERS).await;
    let (ga, gb) = runs(gpu, &a, &b, &ANSWERS).await;
    agree(
        &[gpu.metric(&ga)],
        &[cpu.metric(&ca)],
        &format!("{what}: metric"),
    );
    let n = cpu.config().n_heads;
    agree(
        &gpu.patch_metrics(&ga, &gb, site, 0..n, 10).await.unwrap(),
        &cpu.patch_metrics(&ca, &cb, site, 0..n, 10).await.unwrap(),
        &format!("{what}: AP"),
    );
}

#[test]
fn a_lost_device_fails_every_call_at_once_and_a_new_engine_works() {
    block_on(async {
        let s = spec(2, 3, 48, 31);
        let (cpu, gpu) = engines(&s);
        let (a, b) = ioi_ids();
        let (ra, rb) = runs(&gpu, &a, &b, &ANSWERS).await;
        assert!(!gpu.is_lost());
        gpu.simulate_device_loss();
        assert!(gpu.is_lost());
        let t = Instant::now();
        let site = LayerComponents {
            layer: 1,
            component: Component::Neurons,
        };
        let errors = [
            gpu.run(&a, &ANSWERS).await.err(),
            gpu.metric_with_substitutions(&a, &ANSWERS, &[]).await.err(),
            gpu.last_logits(&ra).await.err(),
            gpu.activation(&ra, "blocks.0.hook_resid_pre").await.err(),
            gpu.patch_metrics(&ra, &rb, site, 0..20, 10).await.err(),
            gpu.path_gradients(&ra, &rb, site, &[0.5], &[1.0], 10)
                .await
                .err(),
            gpu.base_gradients(&ra, &rb, Component::Heads, 10)
                .await
                .err(),
        ];
        for e in errors {
            let e = e.expect("a lost device is an error").to_string();
            assert!(
                e.contains("the GPU device was lost (") && e.contains("create a new GPU engine"),
                "{e}"
            );
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the errors took {:?}",
            t.elapsed()
        );
        drop((ra, rb, gpu));
        // a fresh engine works and gives the CPU's numbers
        let gpu = GpuEngine::new_blocking(s.config(), random_weights(&s)).unwrap();
        assert!(!gpu.is_lost());
        check_ap(&cpu, &gpu, "new engine").await;
    })
}

#[test]
fn allocations_beyond_the_device_are_clear_errors() {
    block_on(async {
        let (cpu, gpu) = engines(&spec(2, 3, 48, 32));
        // far over max_buffer_size: the device refuses it
        let e = gpu.try_allocate(1 << 48).unwrap_err().to_string();
        assert!(e.contains("allocating `test allocation`"), "{e}");
        assert!(!e.contains("panicked"), "{e}");
        // everything still works
        assert!(!gpu.is_lost());
        check_ap(&cpu, &gpu, "after a refused allocation").await;
    })
}

#[test]
fn a_sweep_out_of_memory_retries_with_half_the_batch_then_fails_clearly() {
    block_on(async {
        // 256 neurons, tails of 33 − 2 = 31 rows: 99 patches per pass, whose
        // hidden activations take 3 MB; with buffers capped at 2 MiB as if
        // the device had no more, the sweep retries with 49 per pass
        let (cpu, gpu) = engines(&spec(2, 4, 64, 33));
        let a: Vec<u32> = (0..33).map(|i| 100 + 37 * i).collect();
        let mut b = a.clone();
        for x in b.iter_mut().skip(2).step_by(3) {
            *x += 1;
        }
        let (ca, cb) = runs(&cpu, &a, &b, &ANSWERS).await;
        let (ga, gb) = runs(&gpu, &a, &b, &ANSWERS).await;
        let site = LayerComponents {
            layer: 0,
            component: Component::Neurons,
        };
        let alphas: Vec<f32> = (0..120).map(|k| k as f32 / 119.0).collect();
        let weights = vec![1.0 / 120.0; 120];
        let want_ap = cpu.patch_metrics(&ca, &cb, site, 0..256, 2).await.unwrap();
        let want_ig = cpu
            .path_gradients(&ca, &cb, site, &alphas, &weights, 2)
            .await
            .unwrap();
        gpu.simulate_memory_limit(Some(2 << 20));
        let ap = gpu.patch_metrics(&ga, &gb, site, 0..256, 2).await.unwrap();
        agree(&ap, &want_ap, "AP after a retry");
        let ig = gpu
            .path_gradients(&ga, &gb, site, &alphas, &weights, 2)
            .await
            .unwrap();
        agree(&ig.metrics, &want_ig.metrics, "path metrics after a retry");
        agree(
            &ig.weighted_grad.data,
            &want_ig.weighted_grad.data,
            "path gradient after a retry",
        );
        // too little even for half the batch, or for one forward: a clear error
        gpu.simulate_memory_limit(Some(64 << 10));
        let e = gpu
            .patch_metrics(&ga, &gb, site, 0..256, 2)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the GPU ran out of memory while allocating"),
            "{e}"
        );
        gpu.simulate_memory_limit(Some(1 << 10));
        let e = gpu
            .run(&a, &ANSWERS)
            .await
            .err()
            .expect("an error")
            .to_string();
        assert!(
            e.contains("the GPU ran out of memory while allocating"),
            "{e}"
        );
        // with the memory back, the same engine works again
        gpu.simulate_memory_limit(None);
        let ap = gpu.patch_metrics(&ga, &gb, site, 0..256, 2).await.unwrap();
        agree(&ap, &want_ap, "AP with the memory back");
    })
}
