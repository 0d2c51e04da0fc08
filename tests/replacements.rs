//! `Engine::metric_with_replacements` (mean ablation: single heads and
//! neurons held at given values, everything downstream recomputed) on both
//! backends: against full-hook substitutions on the CPU, a check that later
//! layers are recomputed, GPU against CPU for both metrics, and bad input.
//! Small random models with GPT-2's real vocabulary and tokenizer.

use crate::common::*;
use patchlab::engine::cpu::CpuEngine;
use patchlab::engine::gpu::GpuEngine;
use patchlab::engine::{Array, Component, Engine, Metric, Replacement};
use patchlab::model::random::{random_weights, RandomSpec};
use patchlab::model::Tokenizer;
use pollster::block_on;

const IOI_CLEAN: &str = "When Mary and John went to the store, John gave a drink to";
const IOI_CORRUPT: &str = "When Mary and John went to the store, Mary gave a drink to";

/// The IOI pair (with BOS), of equal length.
fn ioi(tok: &Tokenizer) -> (Vec<u32>, Vec<u32>) {
    let c = tok.encode(IOI_CLEAN, true).unwrap();
    let k = tok.encode(IOI_CORRUPT, true).unwrap();
    assert_eq!(c.len(), k.len());
    assert_ne!(c, k);
    (c, k)
}

/// " Mary" − " John", as the tokenizer spells them.
fn logit_diff(tok: &Tokenizer) -> Metric {
    let id = |s: &str| tok.encode(s, false).unwrap()[0];
    Metric::logit_diff(id(" Mary"), id(" John"))
}

/// Component `index` of a hook_result [pos, heads, d] or hook_post [pos, d_mlp]
/// activation: [pos, d] or [pos].
fn slice(act: &Array, component: Component, index: usize) -> Vec<f32> {
    let (t, n) = (act.shape[0], act.shape[1]);
    let width = match component {
        Component::Heads => act.shape[2],
        Component::Neurons => 1,
    };
    (0..t)
        .flat_map(|p| act.data[(p * n + index) * width..][..width].iter().copied())
        .collect()
}

/// Replacements of every component of one kind in `layer` by `act`'s values.
fn replace_all(act: &Array, layer: usize, component: Component) -> Vec<Replacement> {
    (0..act.shape[1])
        .map(|index| Replacement {
            layer,
            component,
            index,
            values: slice(act, component, index),
        })
        .collect()
}

/// |a − b| relative to max(|b|, 1).
fn rel1(a: f32, b: f32) -> f32 {
    (a - b).abs() / b.abs().max(1.0)
}

#[test]
fn replacing_every_component_equals_substituting_the_hook() {
    block_on(async {
        let tok = tokenizer();
        let (clean, corrupt) = ioi(tok);
        let e = engine(&spec(3, 4, 64, 41));
        for metric in [logit_diff(tok), hot_metric(&e, &clean).await] {
            let c = e.run(&clean, &metric).await.unwrap();
            let k = e.run(&corrupt, &metric).await.unwrap();
            let m_clean = e.metric(&c);
            // no replacements: the plain forward
            let plain = e
                .metric_with_replacements(&clean, &metric, &[])
                .await
                .unwrap();
            assert!(rel1(plain, m_clean) <= 1e-6, "{plain} vs {m_clean}");
            let mut moved = 0f32;
            for component in [Component::Heads, Component::Neurons] {
                for layer in 0..3 {
                    let hook = component.hook(layer);
                    let other = e.activation(&k, &hook).await.unwrap();
                    let reps = replace_all(&other, layer, component);
                    let replaced = e
                        .metric_with_replacements(&clean, &metric, &reps)
                        .await
                        .unwrap();
                    let substituted = e
                        .metric_with_substitutions(&clean, &metric, &[(hook.clone(), other)])
                        .await
                        .unwrap();
                    assert!(
                        rel1(replaced, substituted) <= 1e-6,
                        "{component:?} L{layer}: replaced {replaced}, substituted {substituted}"
                    );
                    moved = moved.max(rel1(replaced, m_clean));
                    // the run's own values change nothing
                    let own = e.activation(&c, &hook).await.unwrap();
                    let reps = replace_all(&own, layer, component);
                    let same = e
                        .metric_with_replacements(&clean, &metric, &reps)
                        .await
                        .unwrap();
                    assert!(
                        rel1(same, m_clean) <= 1e-6,
                        "{component:?} L{layer}: own values give {same}, the run {m_clean}"
                    );
                }
            }
            // the corrupt values do move the metric (the test above can fail)
            assert!(moved > 1e-4, "{metric:?}: no replacement moves the metric");
        }
    })
}

#[test]
fn replacements_recompute_later_layers() {
    block_on(async {
        let tok = tokenizer();
        let (clean, corrupt) = ioi(tok);
        let e = engine(&spec(2, 4, 64, 42));
        let metric = logit_diff(tok);
        let c = e.run(&clean, &metric).await.unwrap();
        let k = e.run(&corrupt, &metric).await.unwrap();
        let h0 = Component::Heads.hook(0);
        let (result_c, result_k) = (
            e.activation(&c, &h0).await.unwrap(),
            e.activation(&k, &h0).await.unwrap(),
        );
        // clean hook_result of layer 0 with head 1 at its corrupt values
        let values = slice(&result_k, Component::Heads, 1);
        let mut patched = result_c.clone();
        let (t, h, d) = (patched.shape[0], patched.shape[1], patched.shape[2]);
        for p in 0..t {
            patched.data[(p * h + 1) * d..][..d].copy_from_slice(&values[p * d..][..d]);
        }
        let rep = [Replacement {
            layer: 0,
            component: Component::Heads,
            index: 1,
            values,
        }];
        let replaced = e
            .metric_with_replacements(&clean, &metric, &rep)
            .await
            .unwrap();
        // substituting layer 0 alone recomputes layer 1: the same forward
        let recomputed = e
            .metric_with_substitutions(&clean, &metric, &[(h0.clone(), patched.clone())])
            .await
            .unwrap();
        assert!(
            rel1(replaced, recomputed) <= 1e-6,
            "replaced {replaced}, recomputed {recomputed}"
        );
        // holding layer 1's heads and neurons at their clean values (no
        // recomputation downstream) is a different forward
        let mut frozen = vec![(h0, patched)];
        for component in [Component::Heads, Component::Neurons] {
            let hook = component.hook(1);
            let v = e.activation(&c, &hook).await.unwrap();
            frozen.push((hook, v));
        }
        let naive = e
            .metric_with_substitutions(&clean, &metric, &frozen)
            .await
            .unwrap();
        let m_clean = e.metric(&c);
        assert!(
            (replaced - naive).abs() > 1e-2 * (replaced - m_clean).abs().max(1e-3),
            "layer 1 was not recomputed: replaced {replaced}, frozen {naive}, clean {m_clean}"
        );
        assert!(
            rel1(replaced, m_clean) > 1e-4,
            "the replacement does not move the metric"
        );
    })
}

/// Deterministic values in [−scale, scale].
fn noise(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32 * scale
        })
        .collect()
}

fn engines(s: &RandomSpec) -> (CpuEngine, GpuEngine) {
    let w = random_weights(s);
    let cpu = CpuEngine::new(s.config(), w.clone()).expect("cpu engine");
    let gpu = GpuEngine::new_blocking(s.config(), w).unwrap_or_else(|e| panic!("{e}"));
    (cpu, gpu)
}

/// Heads and neurons in several layers: two heads and three neurons in
/// layer 0, one neuron in layer 1, two heads, a neuron and a repeat
/// (the later one counts) in layer 2.
fn random_replacements(e: &CpuEngine, t: usize, seed: u64) -> Vec<Replacement> {
    let cfg = e.config();
    let (d, dm) = (cfg.d_model, cfg.d_mlp);
    let picks = [
        (0, Component::Heads, 1),
        (0, Component::Neurons, 0),
        (0, Component::Heads, 3),
        (0, Component::Neurons, dm / 2 + 1),
        (0, Component::Neurons, dm - 1),
        (1, Component::Neurons, 5),
        (2, Component::Heads, 2),
        (2, Component::Neurons, 100),
        (2, Component::Heads, 0),
        (2, Component::Heads, 2),
    ];
    picks
        .iter()
        .enumerate()
        .map(|(i, &(layer, component, index))| {
            let (len, scale) = match component {
                Component::Heads => (t * d, 0.5),
                Component::Neurons => (t, 2.0),
            };
            Replacement {
                layer,
                component,
                index,
                values: noise(len, seed + i as u64, scale),
            }
        })
        .collect()
}

#[test]
fn gpu_replacements_agree_with_cpu() {
    block_on(async {
        let tok = tokenizer();
        let s = spec(3, 4, 64, 43);
        let (cpu, gpu) = engines(&s);
        let (clean, corrupt) = ioi(tok);
        for metric in [logit_diff(tok), hot_metric(&cpu, &clean).await] {
            let run = cpu.run(&clean, &metric).await.unwrap();
            let m_clean = cpu.metric(&run);
            // the scale of the metric's rounding: logits, or probability mass
            let logits = cpu.last_logits(&run).await.unwrap();
            let scale = match &metric {
                Metric::LogitDiff { .. } => logits.iter().fold(1f32, |m, x| m.max(x.abs())),
                Metric::ProbDiff { .. } => 1.0,
            };
            let k = cpu.run(&corrupt, &metric).await.unwrap();
            let mut cases = vec![
                vec![],
                random_replacements(&cpu, clean.len(), 7),
                random_replacements(&cpu, clean.len(), 8),
            ];
            // every head of layer 1 and every neuron of layer 0 at corrupt values
            let mut all = replace_all(
                &cpu.activation(&k, &Component::Heads.hook(1)).await.unwrap(),
                1,
                Component::Heads,
            );
            all.extend(replace_all(
                &cpu.activation(&k, &Component::Neurons.hook(0))
                    .await
                    .unwrap(),
                0,
                Component::Neurons,
            ));
            cases.push(all);
            for (i, reps) in cases.iter().enumerate() {
                let a = gpu
                    .metric_with_replacements(&clean, &metric, reps)
                    .await
                    .unwrap();
                let b = cpu
                    .metric_with_replacements(&clean, &metric, reps)
                    .await
                    .unwrap();
                let e = (a - b).abs() / scale;
                assert!(
                    e <= 1e-5,
                    "case {i} ({} replacements): GPU {a}, CPU {b}, {e:e} relative to {scale}",
                    reps.len()
                );
                if !reps.is_empty() {
                    assert!(
                        (b - m_clean).abs() > 1e-3 * scale,
                        "case {i}: the replacements do not move the metric ({b} vs {m_clean})"
                    );
                }
            }
            // the GPU engine's runs are untouched by replaced forwards
            let g = gpu.run(&clean, &metric).await.unwrap();
            assert!((gpu.metric(&g) - m_clean).abs() <= 1e-5 * scale);
        }
    })
}

#[test]
fn bad_replacements_are_errors_on_both_backends() {
    block_on(async {
        let tok = tokenizer();
        let s = spec(2, 2, 32, 44);
        let (cpu, gpu) = engines(&s);
        let (clean, _) = ioi(tok);
        let metric = logit_diff(tok);
        let (t, d, dm) = (clean.len(), s.d_model, 4 * s.d_model);
        let rep = |layer, component, index, len| Replacement {
            layer,
            component,
            index,
            values: vec![0.5; len],
        };
        let cases = [
            (
                rep(0, Component::Heads, 2, t * d),
                "head 0.2 does not exist: the model has 2 layers of 2 heads".to_string(),
            ),
            (
                rep(1, Component::Neurons, dm, t),
                format!("neuron 1.{dm} does not exist: the model has 2 layers of {dm} neurons"),
            ),
            (
                rep(2, Component::Heads, 0, t * d),
                "head 2.0 does not exist".to_string(),
            ),
            (
                rep(1, Component::Heads, 1, t * d - 1),
                format!(
                    "the replacement of head 1.1 has {} values; a {t}-token prompt needs {}",
                    t * d - 1,
                    t * d
                ),
            ),
            (
                rep(0, Component::Neurons, 3, t * d),
                format!(
                    "the replacement of neuron 0.3 has {} values; a {t}-token prompt needs {t}",
                    t * d
                ),
            ),
        ];
        let good = [rep(0, Component::Neurons, 1, t)];
        for (bad, needle) in &cases {
            // a bad replacement after a good one fails the whole call
            let reps = [good[0].clone(), bad.clone()];
            for err in [
                cpu.metric_with_replacements(&clean, &metric, &reps)
                    .await
                    .err(),
                gpu.metric_with_replacements(&clean, &metric, &reps)
                    .await
                    .err(),
            ] {
                let err = err.expect("an error").to_string();
                assert!(err.contains(needle.as_str()), "{bad:?}: {err}");
            }
        }
        // bad metrics and tokens are checked too
        let bad_metric = Metric::logit_diff(1, 60000);
        for err in [
            cpu.metric_with_replacements(&clean, &bad_metric, &good)
                .await
                .err(),
            gpu.metric_with_replacements(&clean, &bad_metric, &good)
                .await
                .err(),
        ] {
            let err = err.expect("an error").to_string();
            assert!(err.contains("outside the model's vocabulary"), "{err}");
        }
        for err in [
            cpu.metric_with_replacements(&[], &metric, &[]).await.err(),
            gpu.metric_with_replacements(&[], &metric, &[]).await.err(),
        ] {
            assert!(err.is_some(), "an empty prompt is accepted");
        }
        // and the engines still work
        let (a, b) = (
            gpu.metric_with_replacements(&clean, &metric, &good)
                .await
                .unwrap(),
            cpu.metric_with_replacements(&clean, &metric, &good)
                .await
                .unwrap(),
        );
        assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} vs {b}");
    })
}
