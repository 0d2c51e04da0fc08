//! The WebGPU backend against the CPU backend (and the TransformerLens +
//! captum goldens), natively. On machines without a GPU this runs on Mesa's
//! Vulkan driver (llvmpipe): `apt-get install mesa-vulkan-drivers libvulkan1`.
//! No test is skipped for lack of a GPU: without an adapter they fail with
//! the engine's error, which says what to install.

use crate::common::*;
use patchlab::engine::cpu::CpuEngine;
use patchlab::engine::gpu::{GpuEngine, GpuOptions};
use patchlab::engine::{Array, Component, Engine, LayerComponents, Metric};
use patchlab::model::random::{random_weights, RandomSpec};
use patchlab::report::analysis::flatten;
use patchlab::report::{Direction, MethodKey};
use pollster::block_on;

/// GPU vs CPU: relative to the array's scale, 2e-5 (f32 sums in another order).
const TOL: f32 = 2e-5;

fn close(gpu: &[f32], cpu: &[f32], what: &str) -> f32 {
    let e = rel_err(gpu, cpu);
    assert!(e <= TOL, "{what}: GPU differs from CPU by {e:e} (relative)");
    e
}

/// GPU vs CPU for values that are differences of metrics (AP, AtP): relative
/// to the metric's own scale, as tests/golden.rs does.
fn close_to(gpu: &[f32], cpu: &[f32], scale: f32, what: &str) -> f32 {
    let e = max_diff_over(gpu, cpu, scale);
    assert!(
        e <= TOL,
        "{what}: GPU differs from CPU by {e:e} (relative to {scale})"
    );
    e
}

/// Deterministic token ids.
fn tokens(len: usize, seed: u64) -> Vec<u32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 50257) as u32
        })
        .collect()
}

/// A pair of prompts of length t that first differ at first_diff (and at the end).
fn pair(t: usize, first_diff: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let a = tokens(t, seed);
    let mut b = a.clone();
    for (i, x) in b.iter_mut().enumerate().skip(first_diff) {
        if i == first_diff || i == t - 1 || i % 3 == 0 {
            *x = (*x + 7919) % 50257;
        }
    }
    (a, b)
}

const HOOKS: [&str; 21] = [
    "hook_resid_pre",
    "ln1.hook_scale",
    "ln1.hook_normalized",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_attn_scores",
    "attn.hook_pattern",
    "attn.hook_z",
    "attn.hook_result",
    "hook_attn_out",
    "hook_resid_mid",
    "hook_mlp_in",
    "ln2.hook_scale",
    "ln2.hook_normalized",
    "mlp.hook_pre",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
    "attn.hook_attn_scores",
    "attn.hook_pattern",
];

/// Forward metric, last logits and every hook of one prompt.
async fn check_forward(cpu: &CpuEngine, gpu: &GpuEngine, toks: &[u32], what: &str) -> f32 {
    let cr = cpu.run(toks, &ANSWERS).await.unwrap();
    let gr = gpu.run(toks, &ANSWERS).await.unwrap();
    let mut worst = close(
        &[gpu.metric(&gr)],
        &[cpu.metric(&cr)],
        &format!("{what} metric"),
    );
    let (cl, gl) = (
        cpu.last_logits(&cr).await.unwrap(),
        gpu.last_logits(&gr).await.unwrap(),
    );
    worst = worst.max(close(&gl, &cl, &format!("{what} last logits")));
    let n = cpu.config().n_layers;
    let mut names: Vec<String> = vec![
        "hook_embed".into(),
        "hook_pos_embed".into(),
        "ln_final.hook_scale".into(),
        "ln_final.hook_normalized".into(),
    ];
    for l in 0..n {
        names.extend(HOOKS.iter().map(|h| format!("blocks.{l}.{h}")));
    }
    for name in names {
        let c = cpu.activation(&cr, &name).await.unwrap();
        let g = gpu.activation(&gr, &name).await.unwrap();
        assert_eq!(g.shape, c.shape, "{what} {name} shape");
        worst = worst.max(close(&g.data, &c.data, &format!("{what} {name}")));
    }
    worst
}

/// AP for every head and a sample of neurons of every layer, and path
/// gradients (IG-style weights and AtP's single α = 0) for both kinds.
async fn check_sweeps(
    cpu: &CpuEngine,
    gpu: &GpuEngine,
    a: &[u32],
    b: &[u32],
    first_diff: usize,
    what: &str,
) -> f32 {
    let (cb, co) = (
        cpu.run(a, &ANSWERS).await.unwrap(),
        cpu.run(b, &ANSWERS).await.unwrap(),
    );
    let (gb, go) = (
        gpu.run(a, &ANSWERS).await.unwrap(),
        gpu.run(b, &ANSWERS).await.unwrap(),
    );
    let cfg = cpu.config().clone();
    let mut worst: f32 = 0.0;
    // AtP's gradients of every layer in one backward pass
    for component in [Component::Heads, Component::Neurons] {
        let c = cpu
            .base_gradients(&cb, &co, component, first_diff)
            .await
            .unwrap();
        let g = gpu
            .base_gradients(&gb, &go, component, first_diff)
            .await
            .unwrap();
        assert_eq!(g.len(), cfg.n_layers);
        for (layer, (g, c)) in g.iter().zip(&c).enumerate() {
            assert_eq!(g.shape, c.shape);
            let label = format!("{what} base gradients L{layer} {component:?}");
            worst = worst.max(close(&g.data, &c.data, &label));
        }
    }
    let alphas: Vec<f32> = (0..7).map(|k| (k as f32 + 0.5) / 7.0).collect();
    let weights: Vec<f32> = (0..7).map(|k| 0.1 + 0.01 * k as f32).collect();
    for layer in 0..cfg.n_layers {
        for component in [Component::Heads, Component::Neurons] {
            let site = LayerComponents { layer, component };
            let comps = match component {
                Component::Heads => 0..cfg.n_heads,
                // a sample that is not a multiple of any tile
                Component::Neurons => 3..(3 + 71).min(cfg.d_mlp),
            };
            let c = cpu
                .patch_metrics(&cb, &co, site, comps.clone(), first_diff)
                .await
                .unwrap();
            let g = gpu
                .patch_metrics(&gb, &go, site, comps, first_diff)
                .await
                .unwrap();
            worst = worst.max(close(&g, &c, &format!("{what} AP L{layer} {component:?}")));
            for (al, we) in [(&alphas[..], &weights[..]), (&[0.0][..], &[1.0][..])] {
                let c = cpu
                    .path_gradients(&cb, &co, site, al, we, first_diff)
                    .await
                    .unwrap();
                let g = gpu
                    .path_gradients(&gb, &go, site, al, we, first_diff)
                    .await
                    .unwrap();
                let label = format!("{what} path L{layer} {component:?} ({} α)", al.len());
                worst = worst.max(close(&g.metrics, &c.metrics, &format!("{label} metrics")));
                assert_eq!(g.weighted_grad.shape, c.weighted_grad.shape, "{label}");
                worst = worst.max(close(
                    &g.weighted_grad.data,
                    &c.weighted_grad.data,
                    &format!("{label} gradient"),
                ));
            }
        }
    }
    worst
}

#[test]
fn an_engine_started_from_the_cpu_engine_equals_one_from_host_weights() {
    let s = spec(2, 4, 48, 11);
    let (cpu, from_cpu) = engines(&s);
    let from_weights = GpuEngine::new_blocking(s.config(), cpu.weights().unwrap()).unwrap();
    let (a, b) = pair(9, 4, 3);
    let m = Metric::logit_diff(5335, 1757);
    let x = pollster::block_on(runs(&from_cpu, &a, &b, &m));
    let y = pollster::block_on(runs(&from_weights, &a, &b, &m));
    // the same bits went up: the same numbers come out
    assert_eq!(
        from_cpu.metric(&x.0).to_bits(),
        from_weights.metric(&y.0).to_bits()
    );
    let hook = "blocks.1.mlp.hook_post";
    assert_eq!(
        pollster::block_on(from_cpu.activation(&x.1, hook)).unwrap(),
        pollster::block_on(from_weights.activation(&y.1, hook)).unwrap()
    );
}

#[test]
fn forward_matches_cpu_for_odd_shapes() {
    block_on(async {
        // d_model 48 (not a multiple of 64), d_head 16
        let (cpu, gpu) = engines(&spec(2, 3, 48, 11));
        let mut worst: f32 = 0.0;
        for t in [1, 7, 33] {
            worst =
                worst.max(check_forward(&cpu, &gpu, &tokens(t, t as u64), &format!("T={t}")).await);
        }
        eprintln!("forward: worst relative difference {worst:e}");
    })
}

#[test]
fn sweeps_match_cpu_for_odd_shapes() {
    block_on(async {
        let (cpu, gpu) = engines(&spec(3, 3, 48, 12));
        let mut worst: f32 = 0.0;
        // (length, first difference): a single token; differences from the
        // first position; in the middle; at the last position only
        for (t, first_diff) in [(1, 0), (7, 0), (7, 3), (7, 6), (33, 20), (33, 32)] {
            let (a, b) = pair(t, first_diff, 100 + t as u64);
            if first_diff == t - 1 {
                assert_eq!(a[..first_diff], b[..first_diff]);
            }
            worst = worst.max(
                check_sweeps(
                    &cpu,
                    &gpu,
                    &a,
                    &b,
                    first_diff,
                    &format!("T={t} first_diff={first_diff}"),
                )
                .await,
            );
        }
        // a single block: the tail from the MLP is also the final block
        let (cpu, gpu) = engines(&spec(1, 2, 32, 17));
        for (t, first_diff) in [(7, 3), (5, 4)] {
            let (a, b) = pair(t, first_diff, 200 + t as u64);
            worst = worst.max(
                check_sweeps(
                    &cpu,
                    &gpu,
                    &a,
                    &b,
                    first_diff,
                    &format!("1 layer T={t} first_diff={first_diff}"),
                )
                .await,
            );
        }
        eprintln!("sweeps: worst relative difference {worst:e}");
    })
}

#[test]
fn large_batches_span_several_passes() {
    block_on(async {
        // 4·64 = 256 neurons: with 33 − 2 = 31 rows per tail, one 3072-row
        // pass holds 99 of them, so the sweep takes three passes.
        let (cpu, gpu) = engines(&spec(2, 4, 64, 13));
        let (a, b) = pair(33, 2, 7);
        let (cb, co) = runs(&cpu, &a, &b, &ANSWERS).await;
        let (gb, go) = runs(&gpu, &a, &b, &ANSWERS).await;
        let site = LayerComponents {
            layer: 0,
            component: Component::Neurons,
        };
        let c = cpu.patch_metrics(&cb, &co, site, 0..256, 2).await.unwrap();
        let g = gpu.patch_metrics(&gb, &go, site, 0..256, 2).await.unwrap();
        close(&g, &c, "AP over 256 neurons");
        // 150 path steps (several recording passes)
        let alphas: Vec<f32> = (0..150).map(|k| k as f32 / 149.0).collect();
        let weights = vec![1.0 / 150.0; 150];
        for component in [Component::Heads, Component::Neurons] {
            let site = LayerComponents {
                layer: 0,
                component,
            };
            let c = cpu
                .path_gradients(&cb, &co, site, &alphas, &weights, 2)
                .await
                .unwrap();
            let g = gpu
                .path_gradients(&gb, &go, site, &alphas, &weights, 2)
                .await
                .unwrap();
            close(&g.metrics, &c.metrics, "150-step path metrics");
            close(
                &g.weighted_grad.data,
                &c.weighted_grad.data,
                "150-step path gradient",
            );
        }
    })
}

#[test]
fn small_buffers_split_the_embedding_and_the_passes() {
    block_on(async {
        // 1 MiB buffers: wte (50257 × 48 f32, 9.6 MB) in 10 chunks of 5461
        // rows, and tails of at most 1365 rows per pass
        let s = spec(2, 3, 48, 16);
        let w = random_weights(&s);
        let cpu = CpuEngine::new(s.config(), w.clone()).unwrap();
        let opts = GpuOptions {
            max_buffer_bytes: Some(1 << 20),
            ..GpuOptions::default()
        };
        let gpu = GpuEngine::with_options(s.config(), w, opts).await.unwrap();
        let answers = Metric::LogitDiff {
            correct: 50256,
            incorrect: 5461,
        };
        let a: Vec<u32> = vec![50256, 0, 5460, 5461, 5462, 43690, 30000, 12, 50255, 49000];
        let mut b = a.clone();
        b[3] = 16383;
        b[9] = 1;
        let (cb, co) = runs(&cpu, &a, &b, &answers).await;
        let (gb, go) = runs(&gpu, &a, &b, &answers).await;
        close(&[gpu.metric(&gb)], &[cpu.metric(&cb)], "metric");
        close(
            &gpu.last_logits(&gb).await.unwrap(),
            &cpu.last_logits(&cb).await.unwrap(),
            "last logits",
        );
        let e = (
            gpu.activation(&gb, "hook_embed").await.unwrap(),
            cpu.activation(&cb, "hook_embed").await.unwrap(),
        );
        assert_eq!(e.0.data, e.1.data, "embedding rows from every chunk");
        let m = cpu.metric(&cb).abs().max(cpu.metric(&co).abs()).max(1.0);
        for component in [Component::Heads, Component::Neurons] {
            let site = LayerComponents {
                layer: 0,
                component,
            };
            let n = component.count(cpu.config());
            let c = cpu.patch_metrics(&cb, &co, site, 0..n, 3).await.unwrap();
            let g = gpu.patch_metrics(&gb, &go, site, 0..n, 3).await.unwrap();
            close_to(&g, &c, m, "AP");
            let alphas: Vec<f32> = (0..300).map(|k| k as f32 / 299.0).collect();
            let weights = vec![1.0 / 300.0; 300];
            let c = cpu
                .path_gradients(&cb, &co, site, &alphas, &weights, 3)
                .await
                .unwrap();
            let g = gpu
                .path_gradients(&gb, &go, site, &alphas, &weights, 3)
                .await
                .unwrap();
            close(&g.metrics, &c.metrics, "path metrics");
            close(
                &g.weighted_grad.data,
                &c.weighted_grad.data,
                "path gradient",
            );
        }
    })
}

#[test]
fn substitutions_match_cpu() {
    block_on(async {
        let (cpu, gpu) = engines(&spec(2, 3, 48, 14));
        let (a, b) = pair(9, 4, 5);
        let other = cpu.run(&b, &ANSWERS).await.unwrap();
        // the metric with substitutions on both backends, compared
        let both = |subs: Vec<(String, Array)>, what: String| {
            let (cpu, gpu, a) = (&cpu, &gpu, &a);
            async move {
                let c = cpu.metric_with_substitutions(a, &ANSWERS, &subs).await;
                let g = gpu.metric_with_substitutions(a, &ANSWERS, &subs).await;
                close(&[g.unwrap()], &[c.unwrap()], &what);
            }
        };
        both(vec![], "plain metric".into()).await;
        for hook in [
            "hook_embed",
            "blocks.0.hook_resid_pre",
            "blocks.0.attn.hook_q",
            "blocks.0.attn.hook_k",
            "blocks.1.attn.hook_v",
            "blocks.0.attn.hook_attn_scores",
            "blocks.1.attn.hook_pattern",
            "blocks.0.attn.hook_z",
            "blocks.1.attn.hook_result",
            "blocks.0.hook_attn_out",
            "blocks.1.hook_resid_mid",
            "blocks.0.hook_mlp_in",
            "blocks.1.ln2.hook_normalized",
            "blocks.0.mlp.hook_pre",
            "blocks.1.mlp.hook_post",
            "blocks.0.hook_mlp_out",
            "blocks.0.hook_resid_post",
            "ln_final.hook_normalized",
        ] {
            let v = cpu.activation(&other, hook).await.unwrap();
            both(
                vec![(hook.to_string(), v)],
                format!("metric with {hook} substituted"),
            )
            .await;
        }
        // two at once, in hook order
        let mut subs = vec![];
        for hook in ["blocks.0.attn.hook_z", "blocks.1.mlp.hook_post"] {
            subs.push((
                hook.to_string(),
                cpu.activation(&other, hook).await.unwrap(),
            ));
        }
        both(subs, "metric with two substitutions".into()).await;
        // the same errors as the CPU backend
        for (hook, needle) in [
            ("blocks.0.hook_nothing", "not found"),
            ("blocks.9.hook_resid_pre", "unknown hook"),
            ("blocks.0.hook_resid_pre", "shape"),
        ] {
            let bad = vec![(hook.to_string(), Array::new(vec![1], vec![0.0]))];
            let e = gpu
                .metric_with_substitutions(&a, &ANSWERS, &bad)
                .await
                .unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
        }
    })
}

#[test]
fn bad_inputs_are_errors_and_the_engine_recovers() {
    block_on(async {
        let (_, gpu) = engines(&spec(1, 2, 32, 15));
        assert!(gpu.run(&[], &ANSWERS).await.is_err());
        assert!(gpu.run(&[60000], &ANSWERS).await.is_err());
        let bad = Metric::LogitDiff {
            correct: 99999,
            incorrect: 1,
        };
        assert!(gpu.run(&[1, 2], &bad).await.is_err());
        let (a, b) = pair(5, 1, 3);
        let (ra, rb) = runs(&gpu, &a, &b, &ANSWERS).await;
        let site = LayerComponents {
            layer: 0,
            component: Component::Heads,
        };
        assert!(gpu.patch_metrics(&ra, &rb, site, 0..3, 1).await.is_err());
        assert!(gpu.patch_metrics(&ra, &ra, site, 0..2, 5).await.is_err());
        assert!(gpu.activation(&ra, "blocks.0.hook_nothing").await.is_err());
        // still works
        assert_eq!(
            gpu.patch_metrics(&ra, &rb, site, 0..2, 1)
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(gpu.backend(), "gpu");
        // natively the engine can be shared between threads, like the CPU one
        fn send_sync<T: Send + Sync>(_: &T) {}
        send_sync(&gpu);
    })
}

/// The whole analysis on the GPU backend: against the TransformerLens +
/// captum goldens with tests/golden.rs's check and tolerances
/// (tests/common/golden.rs), and every report number against the CPU
/// engine's.
async fn check_reports((file, spec): (&str, RandomSpec)) {
    let (cpu, gpu) = engines(&spec);
    let rgs = golden::check_golden(&gpu, file, &spec).await;
    let rcs = golden::reports(&cpu, &golden::load(file)).await;
    for (ci, (rg, rc)) in rgs.iter().zip(&rcs).enumerate() {
        let what = format!("{file} case {ci}");
        assert_eq!(rg.backend, "gpu");
        let (mc, mk) = (rg.metric.clean, rg.metric.corrupt);
        close(
            &[mc, mk],
            &[rc.metric.clean, rc.metric.corrupt],
            &format!("{what} metric"),
        );
        for run in ["clean", "corrupt"] {
            close(
                &rg.metric.logprobs[run],
                &rc.metric.logprobs[run],
                &format!("{what} logprobs"),
            );
        }
        for (method, dirs) in &rc.results {
            for (dir, maps) in dirs {
                let denom = if *dir == Direction::CleanToCorrupt {
                    mc - mk
                } else {
                    mk - mc
                };
                let ours = &rg.results[method][dir];
                for (kind, og, oc) in [
                    ("heads", &ours.heads, &maps.heads),
                    ("neurons", &ours.neurons, &maps.neurons),
                ] {
                    let (og, oc) = (flatten(og.as_ref().unwrap()), flatten(oc.as_ref().unwrap()));
                    let label = format!("{what} {method} {dir} {kind} vs CPU");
                    if *method == MethodKey::Ig {
                        close(&og, &oc, &label);
                    } else {
                        // normalised by m_base − m_other: compare un-normalised values
                        let un = |v: &[f32]| v.iter().map(|x| x * denom).collect::<Vec<_>>();
                        close_to(&un(&og), &un(&oc), mc.abs().max(mk.abs()).max(1.0), &label);
                    }
                }
            }
        }
        for dir in Direction::ALL {
            let (a, b) = (
                &rg.ig_convergence_delta[&dir],
                &rc.ig_convergence_delta[&dir],
            );
            for (x, y) in [(&a.heads, &b.heads), (&a.neurons, &b.neurons)] {
                let (x, y) = (x.as_ref().unwrap(), y.as_ref().unwrap());
                golden::close(x, y, 1e-4, &format!("{what} ig delta {dir} vs CPU"));
            }
        }
        for (kind, corr) in &rc.analysis.correlations {
            for (key, v) in corr {
                let o = rg.analysis.correlations[kind][key];
                match (o, v) {
                    (Some(a), Some(b)) => {
                        assert!(
                            (a - b).abs() < 1e-4,
                            "{what} corr {kind:?} {key}: {a} vs {b}"
                        )
                    }
                    (a, b) => assert!(a.is_none() && b.is_none(), "{what} corr {kind:?} {key}"),
                }
            }
        }
    }
}

#[test]
fn analysis_matches_cpu_and_goldens_model_a() {
    block_on(check_reports(golden::MODEL_A))
}

#[test]
fn analysis_matches_cpu_and_goldens_model_b() {
    block_on(check_reports(golden::MODEL_B))
}

/// Timings on a GPT-2-small-shaped random model (12 layers, 12 heads,
/// d_model 768) and the IOI pair (15 tokens, first difference at 10), GPU
/// backend next to the CPU backend, each result checked against the CPU's:
/// `cargo test --release --test integration gpu_backend::timing -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark (minutes on llvmpipe), not a check"]
fn timing_gpt2_small_shape() {
    use std::time::Instant;
    block_on(async {
        let s = RandomSpec {
            n_layers: 12,
            n_heads: 12,
            d_model: 768,
            n_ctx: 1024,
            seed: 3,
        };
        let t = Instant::now();
        let (cpu, gpu) = engines(&s);
        eprintln!(
            "adapter: {}; engines built in {:.1} s",
            gpu.adapter(),
            t.elapsed().as_secs_f64()
        );
        let (a, b) = ioi_ids();
        let first_diff = 10;
        let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
        for m in [16, 1024] {
            let t = gpu.time_matmul(m, 768, 3072, 3).await.unwrap();
            let flop = 2.0 * m as f64 * 768.0 * 3072.0;
            eprintln!(
                "matmul [{m}, 768]·[768, 3072]: {t:.1} ms, {:.2} GFLOP/s",
                flop / t / 1e6
            );
        }
        let report = |label: &str, tg: f64, tc: f64| {
            eprintln!("{label:<36} gpu {tg:>9.1} ms   cpu {tc:>9.1} ms");
        };
        let t = Instant::now();
        let (gb, go) = runs(&gpu, &a, &b, &ANSWERS).await;
        let tg = ms(t) / 2.0;
        let t = Instant::now();
        let (cb, co) = runs(&cpu, &a, &b, &ANSWERS).await;
        report("forward (one prompt)", tg, ms(t) / 2.0);
        if let Some(p) = gpu.kernel_profile() {
            eprint!("{p}");
        }
        if std::env::var_os("PATCHLAB_FORWARD_ONLY").is_some() {
            return;
        }
        macro_rules! both {
            ($label:expr, |$e:ident, $b:ident, $o:ident| $body:expr) => {{
                let t = Instant::now();
                let r = {
                    let ($e, $b, $o) = (&gpu, &gb, &go);
                    $body
                };
                let tg = ms(t);
                let t = Instant::now();
                let r2 = {
                    let ($e, $b, $o) = (&cpu, &cb, &co);
                    $body
                };
                report(&$label, tg, ms(t));
                (r, r2)
            }};
        }
        let (g, c) = both!("AP heads (144, one direction)", |e, base, other| {
            let mut v = vec![];
            for layer in 0..12 {
                let site = LayerComponents {
                    layer,
                    component: Component::Heads,
                };
                v.extend(
                    e.patch_metrics(base, other, site, 0..12, first_diff)
                        .await
                        .unwrap(),
                );
            }
            v
        });
        close(&g, &c, "AP heads");
        for layer in [0, 11] {
            let (g, c) = both!(
                format!("AP neurons, layer {layer}, 256 of 3072"),
                |e, base, other| {
                    let site = LayerComponents {
                        layer,
                        component: Component::Neurons,
                    };
                    e.patch_metrics(base, other, site, 0..256, first_diff)
                        .await
                        .unwrap()
                }
            );
            let m = gpu.metric(&gb).abs().max(gpu.metric(&go).abs()).max(1.0);
            close_to(&g, &c, m, "AP neurons");
        }
        for component in [Component::Heads, Component::Neurons] {
            let (g, c) = both!(
                format!("AtP gradients {component:?}, 12 layers"),
                |e, base, other| e
                    .base_gradients(base, other, component, first_diff)
                    .await
                    .unwrap()
            );
            for (g, c) in g.iter().zip(&c) {
                close(&g.data, &c.data, "AtP gradients");
            }
        }
        let alphas: Vec<f32> = (0..50).map(|k| (k as f32 + 0.5) / 50.0).collect();
        let weights = vec![0.02; 50];
        for component in [Component::Heads, Component::Neurons] {
            let (g, c) = both!(
                format!("IG {component:?}, layer 0, 50 steps"),
                |e, base, other| {
                    let site = LayerComponents {
                        layer: 0,
                        component,
                    };
                    e.path_gradients(base, other, site, &alphas, &weights, first_diff)
                        .await
                        .unwrap()
                        .weighted_grad
                        .data
                }
            );
            close(&g, &c, "IG gradient");
        }
    })
}

/// The edge graph's passes on the GPU against the CPU engine's: the plain
/// forward with slot gradients, an embedding override, held heads and a
/// held MLP (no gradient through them), an edge patch from a first
/// difference > 0, the probability difference's gradient, every kind of
/// edge perturbation and the edge products.
#[test]
fn graph_passes_agree_with_the_cpu() {
    use patchlab::engine::graph::{EdgePatch, GraphOutputs, GraphPass, GraphPasses, Hold};
    use patchlab::model::graph::{GraphLayout, Qkv, Slot};
    let spec = crate::common::golden::MODEL_B.1;
    let (cpu, gpu) = engines(&spec);
    let cfg = spec.config();
    let layout = GraphLayout::new(&cfg);
    let (nf, nb) = (layout.n_forward(), layout.n_backward());
    let (t, first_diff) = (9, 3);
    let (clean, corrupt) = pair(t, first_diff, 11);
    let d = cfg.d_model;
    let td = t * d;
    let metrics = [
        Metric::logit_diff(clean[1], corrupt[2]),
        Metric::ProbDiff {
            above: vec![5, 17, 300],
            below: vec![9, 40_000],
        },
    ];
    block_on(async {
        for metric in &metrics {
            let plain = |grad| GraphPass {
                grad,
                ..GraphPass::default()
            };
            let c0 = cpu
                .graph_forward(&clean, metric, plain(true))
                .await
                .unwrap();
            let g0 = gpu
                .graph_forward(&clean, metric, plain(true))
                .await
                .unwrap();
            let other = cpu
                .graph_forward(&corrupt, metric, plain(false))
                .await
                .unwrap();
            let check = |what: &str, g: &dyn GraphOutputs, c: &dyn GraphOutputs| {
                let scale = c.metric().abs().max(1e-3);
                assert!(
                    (g.metric() - c.metric()).abs() <= 2e-5 * scale.max(1.0),
                    "{what}: metric {} vs {}",
                    g.metric(),
                    c.metric()
                );
                close(g.outputs(), c.outputs(), &format!("{what}: node outputs"));
                match (g.grads(), c.grads()) {
                    (Some(a), Some(b)) => {
                        close(a, b, &format!("{what}: slot gradients"));
                    }
                    (None, None) => {}
                    _ => panic!("{what}: gradients on one engine only"),
                }
            };
            check("plain", &g0, &c0);
            // EAP-IG's interpolated embedding
            let embed: Vec<f32> = c0.outputs()[..td]
                .iter()
                .zip(&other.outputs()[..td])
                .map(|(a, b)| 0.3 * a + 0.7 * b)
                .collect();
            let with_embed = |embed| GraphPass {
                embed: Some(embed),
                grad: true,
                ..GraphPass::default()
            };
            check(
                "embedding override",
                &gpu.graph_forward(&clean, metric, with_embed(&embed))
                    .await
                    .unwrap(),
                &cpu.graph_forward(&clean, metric, with_embed(&embed))
                    .await
                    .unwrap(),
            );
            // EAP-IG's path, its points' passes side by side on the GPU:
            // each as its own pass gives, on either engine
            let alphas = [0.0f32, 0.2, 0.45, 0.7, 0.95];
            let embeds: Vec<f32> = alphas
                .iter()
                .flat_map(|&a| {
                    let (c, o) = (&c0.outputs()[..td], &other.outputs()[..td]);
                    c.iter().zip(o).map(move |(c, o)| o + a * (c - o))
                })
                .collect();
            assert!(gpu.graph_batch(t) >= alphas.len(), "one batched pass");
            let batched = gpu.graph_gradients(&clean, metric, &embeds).await.unwrap();
            let on_cpu = cpu.graph_gradients(&clean, metric, &embeds).await.unwrap();
            assert_eq!((batched.len(), on_cpu.len()), (alphas.len(), alphas.len()));
            for (i, e) in embeds.chunks(td).enumerate() {
                let one = gpu
                    .graph_forward(&clean, metric, with_embed(e))
                    .await
                    .unwrap();
                let one = one.grads().unwrap();
                close(
                    &batched[i],
                    one,
                    &format!("batched pass {i} vs its own pass"),
                );
                close(
                    &batched[i],
                    &on_cpu[i],
                    &format!("batched pass {i} vs the CPU"),
                );
            }
            // EAP-IG-activations' held nodes
            let heads =
                layout.forward_index(patchlab::model::graph::Node::Head { layer: 1, head: 0 });
            let held: Vec<f32> = other.outputs()[heads * td..(heads + cfg.n_heads) * td].to_vec();
            let mlp = layout.forward_index(patchlab::model::graph::Node::Mlp { layer: 2 });
            let held_mlp: Vec<f32> = other.outputs()[mlp * td..(mlp + 1) * td].to_vec();
            for (what, hold) in [
                (
                    "held heads",
                    Hold::Heads {
                        layer: 1,
                        values: &held,
                    },
                ),
                (
                    "held MLP",
                    Hold::Mlp {
                        layer: 2,
                        values: &held_mlp,
                    },
                ),
            ] {
                let pass = || GraphPass {
                    hold: Some(hold),
                    grad: true,
                    ..GraphPass::default()
                };
                check(
                    what,
                    &gpu.graph_forward(&clean, metric, pass()).await.unwrap(),
                    &cpu.graph_forward(&clean, metric, pass()).await.unwrap(),
                );
            }
            // faithfulness: every other edge patched from the first difference on
            let values: Vec<f32> = other
                .outputs()
                .chunks(td)
                .flat_map(|node| node[first_diff * d..].iter().copied())
                .collect();
            let mut patched = vec![0f32; nf * nb];
            for (i, e) in layout.edges().into_iter().enumerate() {
                if i % 2 == 0 {
                    patched[e.from * nb + e.to] = 1.0;
                }
            }
            let pass = || GraphPass {
                patch: Some(EdgePatch {
                    values: &values,
                    first_diff,
                    patched: &patched,
                }),
                ..GraphPass::default()
            };
            check(
                "edge patch",
                &gpu.graph_forward(&clean, metric, pass()).await.unwrap(),
                &cpu.graph_forward(&clean, metric, pass()).await.unwrap(),
            );
            // exact patching's perturbations of every slot kind
            let n_u = 4;
            let deltas: Vec<f32> = (0..n_u * (t - first_diff) * d)
                .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.5)
                .collect();
            let mut slots = vec![Slot::Logits, Slot::Mlp { layer: 0 }, Slot::Mlp { layer: 2 }];
            for qkv in Qkv::ALL {
                slots.push(Slot::Head {
                    layer: 1,
                    head: 0,
                    qkv,
                });
            }
            for slot in slots {
                let a = gpu
                    .edge_perturbations(&g0, slot, first_diff, &deltas)
                    .await
                    .unwrap();
                let b = cpu
                    .edge_perturbations(&c0, slot, first_diff, &deltas)
                    .await
                    .unwrap();
                close(&a, &b, &format!("perturbations of {slot:?}"));
            }
            // EAP's products
            let delta: Vec<f32> = other
                .outputs()
                .iter()
                .zip(c0.outputs())
                .map(|(a, b)| a - b)
                .collect();
            let grads = c0.grads().unwrap();
            close(
                &gpu.edge_products(&delta, grads, nf, nb).await.unwrap(),
                &cpu.edge_products(&delta, grads, nf, nb).await.unwrap(),
                "edge products",
            );
        }
        // checked in front of both engines alike
        let bad = GraphPass {
            embed: Some(&[1.0; 3]),
            ..GraphPass::default()
        };
        let e = gpu
            .graph_forward(&clean, &metrics[0], bad)
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("embedding override needs"), "{e}");
    });
}

/// The GPU engine's device work, counted per dispatch: every phase's
/// dispatch count is pinned (a change to the passes shows here first and
/// must be deliberate: update the numbers and docs/performance.md's
/// profile), with how many of them are the register-tiled matrix product
/// (`matmul_tiled`, m and n ≥ 128), and a forward's matrix-product FLOPs
/// equal the model's arithmetic (24·T·L·d² for the linear layers and W_O).
#[test]
fn device_work_is_counted_per_phase() {
    use patchlab::attribution::atp::attribution_patching;
    use patchlab::attribution::integrated_gradients::integrated_gradients;
    use patchlab::attribution::patching::activation_patching;
    use patchlab::attribution::quadrature::Rule;
    use patchlab::attribution::sites::{site_scores, SiteAsk};
    use patchlab::attribution::{Method, Quiet, Tracker};
    use patchlab::engine::graph::{GraphPass, GraphPasses};
    use patchlab::engine::profile::DeviceProfile;
    use patchlab::engine::SweepPair;
    use patchlab::report::PatchSite;
    let spec = crate::common::golden::MODEL_A.1;
    let (_, gpu) = engines(&spec);
    let cfg = spec.config();
    let (t, first_diff) = (9, 3);
    let (a, b) = pair(t, first_diff, 5);
    let m = Metric::logit_diff(a[1], b[2]);
    let snap = || {
        gpu.device_profile()
            .expect("the GPU engine counts its work")
    };
    let kernel = |p: &DeviceProfile, name: &str| {
        p.kernels
            .iter()
            .find(|k| k.name == name)
            .cloned()
            .unwrap_or_default()
    };
    block_on(async {
        let mut got = Vec::new();
        let s0 = snap();
        let (ra, rb) = runs(&gpu, &a, &b, &m).await;
        let fwd = snap().since(&s0);
        got.push((
            "forward ×2",
            fwd.total().dispatches,
            fwd.submits,
            fwd.readbacks,
            kernel(&fwd, "matmul_tiled").dispatches,
        ));
        let l = cfg.n_layers as f64;
        let d = cfg.d_model as f64;
        let mm = ["matmul", "matmul_skinny", "matmul_tiled"]
            .iter()
            .map(|k| kernel(&fwd, k).flops)
            .sum::<f64>();
        let want = 2.0 * 24.0 * t as f64 * l * d * d;
        assert!(
            (mm - want).abs() <= 1e-9 * want,
            "a forward's matrix products: {mm} FLOPs counted, {want} expected"
        );
        let sweep = SweepPair {
            base: &ra,
            other: &rb,
            first_diff,
        };
        let dir = Direction::CleanToCorrupt;
        let mut q = Quiet;
        let mut phase = |name: &'static str, before: DeviceProfile| {
            let w = snap().since(&before);
            let tiled = kernel(&w, "matmul_tiled").dispatches;
            got.push((name, w.total().dispatches, w.submits, w.readbacks, tiled));
        };
        let s = snap();
        activation_patching(
            &gpu,
            &[sweep],
            Component::Heads,
            dir,
            &mut Tracker::new(&mut q, 0),
        )
        .await
        .unwrap();
        phase("AP heads", s);
        let s = snap();
        let rule = (8, Rule::GaussLegendre);
        integrated_gradients(
            &gpu,
            &[sweep],
            Component::Neurons,
            rule,
            dir,
            &mut Tracker::new(&mut q, 0),
        )
        .await
        .unwrap();
        phase("IG neurons", s);
        let s = snap();
        attribution_patching(
            &gpu,
            &[sweep],
            Component::Heads,
            dir,
            &mut Tracker::new(&mut q, 0),
        )
        .await
        .unwrap();
        phase("AtP heads", s);
        let s = snap();
        let pass = GraphPass {
            grad: true,
            ..GraphPass::default()
        };
        gpu.graph_forward(&a, &m, pass).await.unwrap();
        phase("graph pass with gradients", s);
        // EAP-IG's 5 path points in one pass
        let s = snap();
        let embeds = vec![0.01f32; 5 * t * cfg.d_model];
        let g = gpu.graph_gradients(&a, &m, &embeds).await.unwrap();
        assert_eq!(g.len(), 5);
        phase("graph gradients, 5 embeddings", s);
        // enough rows (steps × positions) for the register-tiled kernel
        let s = snap();
        integrated_gradients(
            &gpu,
            &[sweep],
            Component::Neurons,
            (32, Rule::GaussLegendre),
            dir,
            &mut Tracker::new(&mut q, 0),
        )
        .await
        .unwrap();
        phase("IG neurons, 32 steps", s);
        // the sites share passes by the point where they enter the stream
        let s = snap();
        let sites = [
            PatchSite::ResidPre,
            PatchSite::AttnOut,
            PatchSite::MlpOut,
            PatchSite::Z,
        ];
        let ask = SiteAsk {
            sites: &sites,
            methods: &[Method::Ap, Method::Atp],
            ig_steps: 1,
            ig_rule: Rule::GaussLegendre,
        };
        site_scores(&gpu, sweep, &ask, dir, &mut Tracker::new(&mut q, 0))
            .await
            .unwrap();
        phase("sites AP + AtP", s);
        // (phase, dispatches, submissions, read-backs, of the dispatches
        // those of the register-tiled matrix product)
        let pinned = vec![
            ("forward ×2", 60, 2, 2, 0),
            ("AP heads", 24, 2, 2, 0),
            ("IG neurons", 30, 2, 4, 0),
            ("AtP heads", 31, 1, 2, 0),
            ("graph pass with gradients", 51, 1, 1, 0),
            ("graph gradients, 5 embeddings", 51, 1, 1, 0),
            ("IG neurons, 32 steps", 30, 2, 4, 1),
            ("sites AP + AtP", 102, 6, 11, 0),
        ];
        assert_eq!(got, pinned, "device work per phase changed");
    });
}

/// The gradient at every residual point from one backward
/// (`resid_base_gradients`, asked in no particular order) equals one
/// `resid_gradients` tail per point, on the GPU and against the CPU, for
/// both metrics.
#[test]
fn residual_gradients_at_every_point_from_one_backward() {
    use patchlab::engine::Start;
    let spec = crate::common::golden::MODEL_A.1;
    let (cpu, gpu) = engines(&spec);
    let layers = spec.config().n_layers;
    let (t, first_diff) = (9, 3);
    let (a, b) = pair(t, first_diff, 13);
    let mut starts = vec![Start::Embed];
    for l in (0..layers).rev() {
        starts.extend([Start::Post(l), Start::Mid(l)]);
    }
    let zero = vec![0.0; (t - first_diff) * spec.config().d_model];
    let metrics = [
        Metric::logit_diff(a[1], b[2]),
        Metric::ProbDiff {
            above: vec![5, 17],
            below: vec![9],
        },
    ];
    block_on(async {
        for metric in &metrics {
            let (ga, _) = runs(&gpu, &a, &b, metric).await;
            let (ca, _) = runs(&cpu, &a, &b, metric).await;
            let before = gpu.device_counts().unwrap().0;
            let all = gpu
                .resid_base_gradients(&ga, first_diff, &starts)
                .await
                .unwrap();
            assert_eq!(gpu.device_counts().unwrap().0 - before, 1, "one submission");
            let on_cpu = cpu
                .resid_base_gradients(&ca, first_diff, &starts)
                .await
                .unwrap();
            for (i, &start) in starts.iter().enumerate() {
                let (_, one) = gpu
                    .resid_gradients(&ga, start, first_diff, &zero)
                    .await
                    .unwrap();
                let what = format!("{metric:?} {start:?}");
                close(
                    &all[i],
                    &one,
                    &format!("{what}: one backward vs its own tail"),
                );
                close(&all[i], &on_cpu[i], &format!("{what}: GPU vs CPU"));
            }
        }
        // a point past the model is refused before any work
        let (ga, _) = runs(&gpu, &a, &b, &metrics[0]).await;
        let err = gpu
            .resid_base_gradients(&ga, first_diff, &[Start::Mid(layers)])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("layer"), "{err}");
    })
}

/// The matrix-product kernels (`matmul_tiled` for m, n ≥ 128 where A and B
/// are vec4-aligned, `matmul` otherwise, `matmul_skinny` for m ≤ 16) against
/// an f64 reference on shapes with ragged edges (m, n, k not multiples of
/// the tiles), transposed B, bias and residual, batches and offsets; C's
/// elements outside the product are left as they were.
#[test]
fn matmul_kernels_match_an_f64_reference() {
    use patchlab::engine::gpu::MatmulLayout as Mm;
    let (_, gpu) = engines(&spec(1, 2, 32, 41));
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut rand = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    };
    struct Case {
        mm: Mm,
        bias: bool,
        res: bool,
        tiled: bool,
        kernel: &'static str,
    }
    let plain = |m, k, n| Mm::plain(m, k, n);
    let cases = [
        // plain, tile-sized rows, bias
        Case {
            mm: plain(256, 64, 128),
            bias: true,
            res: false,
            tiled: true,
            kernel: "matmul_tiled",
        },
        // ragged m, n and k (row strides padded to vec4s), bias + residual
        Case {
            mm: Mm {
                lda: 40,
                ldb: 136,
                ldc: 135,
                ..plain(130, 37, 133)
            },
            bias: true,
            res: true,
            tiled: true,
            kernel: "matmul_tiled",
        },
        // the same by the 64×64 kernel
        Case {
            mm: Mm {
                lda: 40,
                ldb: 136,
                ldc: 135,
                ..plain(130, 37, 133)
            },
            bias: true,
            res: true,
            tiled: false,
            kernel: "matmul",
        },
        // transposed B, a batch with offsets and a bias per element, long k
        Case {
            mm: Mm {
                lda: 304,
                ldb: 300,
                ldc: 131,
                a_off: 8,
                b_off: 4,
                c_off: 3,
                batch: 3,
                a_bs: 150 * 304 + 4,
                b_bs: 129 * 300 + 8,
                c_bs: 150 * 131 + 5,
                trans_b: true,
                bias_off: 2,
                bias_bs: 131,
                ..plain(150, 299, 129)
            },
            bias: true,
            res: true,
            tiled: true,
            kernel: "matmul_tiled",
        },
        // A not vec4-aligned: the 64×64 kernel
        Case {
            mm: Mm {
                a_off: 1,
                ..plain(200, 45, 160)
            },
            bias: false,
            res: true,
            tiled: true,
            kernel: "matmul",
        },
        // too few rows for the register tiles
        Case {
            mm: Mm {
                trans_b: true,
                ldb: 70,
                ..plain(100, 70, 300)
            },
            bias: true,
            res: false,
            tiled: true,
            kernel: "matmul",
        },
        // one prompt's rows
        Case {
            mm: plain(13, 96, 200),
            bias: true,
            res: true,
            tiled: true,
            kernel: "matmul_skinny",
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let mm = case.mm;
        let last = mm.batch - 1;
        let a_len = mm.a_off + last * mm.a_bs + (mm.m - 1) * mm.lda + mm.k;
        let b_len = mm.b_off
            + last * mm.b_bs
            + if mm.trans_b {
                (mm.n - 1) * mm.ldb + mm.k
            } else {
                (mm.k - 1) * mm.ldb + mm.n
            };
        let c_len = mm.c_off + last * mm.c_bs + (mm.m - 1) * mm.ldc + mm.n;
        let bias_len = mm.bias_off + last * mm.bias_bs + mm.n;
        let (a, b, bias, res) = (rand(a_len), rand(b_len), rand(bias_len), rand(c_len));
        let c0 = vec![7.0f32; c_len];
        gpu.set_matmul_tiled(case.tiled);
        let (got, kernel) = block_on(gpu.run_matmul(
            mm,
            &a,
            &b,
            case.bias.then_some(&bias[..]),
            case.res.then_some(&res[..]),
            &c0,
        ))
        .unwrap();
        gpu.set_matmul_tiled(true);
        assert_eq!(kernel, case.kernel, "case {i}: {mm:?}");
        let mut want: Vec<f64> = c0.iter().map(|&v| v as f64).collect();
        for z in 0..mm.batch {
            for r in 0..mm.m {
                for col in 0..mm.n {
                    let mut s = 0.0f64;
                    for k in 0..mm.k {
                        let av = a[mm.a_off + z * mm.a_bs + r * mm.lda + k] as f64;
                        let bi = mm.b_off
                            + z * mm.b_bs
                            + if mm.trans_b {
                                col * mm.ldb + k
                            } else {
                                k * mm.ldb + col
                            };
                        s += av * b[bi] as f64;
                    }
                    if case.bias {
                        s += bias[mm.bias_off + z * mm.bias_bs + col] as f64;
                    }
                    let o = mm.c_off + z * mm.c_bs + r * mm.ldc + col;
                    if case.res {
                        s += res[o] as f64;
                    }
                    want[o] = s;
                }
            }
        }
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(&want)
            .map(|(&g, &w)| (g as f64 - w).abs())
            .fold(0.0, f64::max)
            / scale;
        assert!(
            err <= 1e-5,
            "case {i} ({kernel}): GPU differs from the f64 reference by {err:e} (relative)"
        );
    }
}

/// Kernel times (`GpuOptions::timing`): with timestamps asked for, the
/// adapter's timestamp queries where it offers TIMESTAMP_QUERY (Mesa's
/// lavapipe does), else elapsed time per dispatch; with elapsed time asked
/// for, that. Either way every kernel that ran has a time (≥ 0, finite)
/// and their sum is positive, as of the read-back that ended the work;
/// `since` keeps the timing. More dispatches than one query set holds
/// (2048 pairs) in one submission are timed too. No speed is assumed.
#[test]
fn kernels_are_timed_with_timestamps_where_the_adapter_offers_them() {
    use patchlab::engine::profile::Timing;
    let s = spec(2, 4, 48, 13);
    let cpu = CpuEngine::new(s.config(), random_weights(&s)).unwrap();
    let offered = block_on(async {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .expect("a WebGPU adapter");
        adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY)
    });
    eprintln!("the adapter offers timestamp queries: {offered}");
    let (a, b) = pair(9, 3, 7);
    let m = Metric::logit_diff(a[1], b[2]);
    for wanted in [Timing::Timestamps, Timing::Elapsed] {
        let opts = GpuOptions {
            timing: Some(wanted),
            ..GpuOptions::default()
        };
        let gpu = block_on(GpuEngine::from_source(s.config(), &cpu, opts)).unwrap();
        let expect = if wanted == Timing::Timestamps && offered {
            Timing::Timestamps
        } else {
            Timing::Elapsed
        };
        let p0 = gpu.device_profile().unwrap();
        assert_eq!((p0.timing, p0.timed), (Some(expect), true));
        block_on(runs(&gpu, &a, &b, &m));
        let p = gpu.device_profile().unwrap().since(&p0);
        assert_eq!(p.timing, Some(expect), "since keeps the timing");
        let ran: Vec<_> = p.kernels.iter().filter(|k| k.dispatches > 0).collect();
        assert!(ran.len() > 3, "{ran:?}");
        for k in &ran {
            assert!(k.ms.is_finite() && k.ms >= 0.0, "{wanted:?}: {k:?}");
        }
        assert!(p.total().ms > 0.0, "{wanted:?}: {ran:?}");
        let idle: f64 = p
            .kernels
            .iter()
            .filter(|k| k.dispatches == 0)
            .map(|k| k.ms)
            .sum();
        assert_eq!(idle, 0.0, "kernels that did not run have no time");
        eprintln!(
            "{wanted:?} → {expect:?}: two forwards, {} dispatches, {:.3} ms of kernels ({} kernels)",
            p.total().dispatches,
            p.total().ms,
            ran.len()
        );
        if expect == Timing::Timestamps {
            // 2100 products in one submission: two query sets
            let before = gpu.device_profile().unwrap();
            block_on(gpu.time_matmul(4, 8, 4, 2100)).unwrap();
            let p = gpu.device_profile().unwrap().since(&before);
            let t = p.total();
            assert_eq!(t.dispatches, 2101);
            assert!(t.ms > 0.0, "{t:?}");
            eprintln!("2101 small products: {:.3} ms of kernels", t.ms);
        }
    }
    // not asked for: no times (unless PATCHLAB_GPU_PROFILE asks for them)
    if std::env::var_os("PATCHLAB_GPU_PROFILE").is_none() {
        let gpu = block_on(GpuEngine::from_source(
            s.config(),
            &cpu,
            GpuOptions::default(),
        ))
        .unwrap();
        block_on(runs(&gpu, &a, &b, &m));
        let p = gpu.device_profile().unwrap();
        assert_eq!((p.timing, p.timed, p.total().ms), (None, false, 0.0));
    }
}
