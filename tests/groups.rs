//! Sweeps over groups of prompt pairs (`patch_metrics_group`,
//! `path_gradients_group`, `analyze_group`): on the GPU, pairs of equal
//! token length share tail passes; every result must equal the pair's own
//! sweep. Pairs in a group differ in tokens, answers, first differing
//! position and length.

use crate::common::*;
use patchlab::attribution::run::{analyze_group, analyze_pair, Options};
use patchlab::attribution::{Direction, Method, Quiet};
use patchlab::engine::gpu::{GpuEngine, GpuOptions};
use patchlab::engine::{Component, Engine, LayerComponents, Metric, SweepPair};
use patchlab::model::random::random_weights;
use patchlab::report::{MethodKey, Prompts, Report};
use pollster::block_on;

/// Tolerance relative to the metric's scale: float noise of f32 tails.
const TOL: f32 = 2e-5;

/// (clean, corrupt, first differing position, metric) of a random pair of
/// `len` tokens that differ from `first_diff` on.
fn pair(rng: &mut Rng, len: usize, first_diff: usize) -> (Vec<u32>, Vec<u32>, usize, Metric) {
    let clean: Vec<u32> = (0..len).map(|_| rng.below(50257) as u32).collect();
    let mut corrupt = clean.clone();
    corrupt[first_diff] = (clean[first_diff] + 1 + rng.below(1000) as u32) % 50257;
    for t in corrupt.iter_mut().skip(first_diff + 1) {
        if rng.below(2) == 0 {
            *t = rng.below(50257) as u32;
        }
    }
    let correct = rng.below(50257) as u32;
    let incorrect = (correct + 1 + rng.below(100) as u32) % 50257;
    (
        clean,
        corrupt,
        first_diff,
        Metric::logit_diff(correct, incorrect),
    )
}

/// Runs of every pair (base = clean, other = corrupt).
async fn all_runs<E: Engine>(
    e: &E,
    pairs: &[(Vec<u32>, Vec<u32>, usize, Metric)],
) -> Vec<(E::Run, E::Run, usize)> {
    let mut out = Vec::new();
    for (c, k, first_diff, m) in pairs {
        let (rc, rk) = runs(e, c, k, m).await;
        out.push((rc, rk, *first_diff));
    }
    out
}

fn sweeps<R>(runs: &[(R, R, usize)]) -> Vec<SweepPair<'_, R>> {
    runs.iter()
        .map(|(b, o, first_diff)| SweepPair {
            base: b,
            other: o,
            first_diff: *first_diff,
        })
        .collect()
}

/// Every grouped sweep of `gpu` equals the pair's own, for each layer and
/// kind; path gradients are zero before each pair's own first difference.
async fn check_group(gpu: &GpuEngine, pairs: &[(Vec<u32>, Vec<u32>, usize, Metric)]) {
    let cfg = gpu.config().clone();
    let runs = all_runs(gpu, pairs).await;
    let group = sweeps(&runs);
    let alphas = [0.0, 0.3, 0.7, 1.0];
    let weights = [0.1, 0.4, 0.4, 0.1];
    for component in [Component::Heads, Component::Neurons] {
        for layer in 0..cfg.n_layers {
            let site = LayerComponents { layer, component };
            let n = component.count(&cfg);
            // an odd component range: the group's chunks need not align
            let comps = 1..n;
            let grouped = gpu
                .patch_metrics_group(&group, site, comps.clone())
                .await
                .unwrap();
            let paths = gpu
                .path_gradients_group(&group, site, &alphas, &weights)
                .await
                .unwrap();
            assert_eq!(grouped.len(), pairs.len());
            assert_eq!(paths.len(), pairs.len());
            for (i, (b, o, first_diff)) in runs.iter().enumerate() {
                let what = format!("pair {i} {} layer {layer}", component.name());
                let scale = gpu.metric(b).abs().max(gpu.metric(o).abs()).max(1.0);
                let own = gpu
                    .patch_metrics(b, o, site, comps.clone(), *first_diff)
                    .await
                    .unwrap();
                let e = max_diff_over(&grouped[i], &own, scale);
                assert!(e <= TOL, "{what}: AP metrics differ by {e:e}");
                let own = gpu
                    .path_gradients(b, o, site, &alphas, &weights, *first_diff)
                    .await
                    .unwrap();
                let e = max_diff_over(&paths[i].metrics, &own.metrics, scale);
                assert!(e <= TOL, "{what}: path metrics differ by {e:e}");
                let g = &paths[i].weighted_grad;
                assert_eq!(g.shape, own.weighted_grad.shape, "{what}");
                let width = g.shape[1];
                assert!(
                    g.data[..first_diff * width].iter().all(|&x| x == 0.0),
                    "{what}: gradient rows before the first difference must be zero"
                );
                let gs = max_abs(&own.weighted_grad.data).max(1e-6);
                let e = max_diff_over(&g.data, &own.weighted_grad.data, gs);
                assert!(e <= TOL, "{what}: weighted gradient differs by {e:e}");
            }
        }
    }
}

#[test]
fn gpu_groups_equal_each_pair_on_its_own() {
    let s = spec(3, 4, 64, 31);
    let (_, gpu) = engines(&s);
    let mut rng = Rng(0x5eed_1234);
    // three sets by length: 12 tokens with first differences in the middle
    // and at the last token (the group starts at 5 and reads the base keys
    // before it), 9 tokens with one pair differing from the first token, and
    // a pair of 20 on its own
    let pairs = vec![
        pair(&mut rng, 12, 5),
        pair(&mut rng, 9, 0),
        pair(&mut rng, 9, 3),
        pair(&mut rng, 12, 11),
        pair(&mut rng, 12, 7),
        pair(&mut rng, 20, 2),
    ];
    block_on(check_group(&gpu, &pairs));
}

#[test]
fn gpu_groups_larger_than_a_pass_are_taken_in_parts() {
    // 64 KiB buffers hold the tails of only a few batch elements, fewer than
    // the group's pairs
    let s = spec(2, 3, 48, 7);
    let gpu = block_on(GpuEngine::with_options(
        s.config(),
        random_weights(&s),
        GpuOptions {
            max_buffer_bytes: Some(1 << 16),
            ..GpuOptions::default()
        },
    ))
    .unwrap();
    let mut rng = Rng(99);
    let pairs: Vec<_> = (0..14).map(|i| pair(&mut rng, 10, 1 + i % 8)).collect();
    block_on(check_group(&gpu, &pairs));
}

#[test]
fn gpu_probability_difference_groups_share_passes_only_with_equal_token_sets() {
    let s = spec(2, 4, 64, 12);
    let (cpu, gpu) = engines(&s);
    let mut rng = Rng(4242);
    let mut pairs: Vec<_> = (0..4).map(|i| pair(&mut rng, 11, 2 + i)).collect();
    let hot = block_on(hot_metric(&cpu, &pairs[0].0));
    let other = Metric::ProbDiff {
        above: vec![10, 11, 12, 13],
        below: vec![20, 21, 22],
    };
    for (i, p) in pairs.iter_mut().enumerate() {
        p.3 = if i == 2 { other.clone() } else { hot.clone() };
    }
    block_on(check_group(&gpu, &pairs));
}

#[test]
fn cpu_groups_equal_each_pair_on_its_own() {
    let s = spec(2, 3, 48, 5);
    let cpu = engine(&s);
    let mut rng = Rng(777);
    let pairs = vec![
        pair(&mut rng, 8, 2),
        pair(&mut rng, 8, 5),
        pair(&mut rng, 6, 1),
    ];
    block_on(async {
        let runs = all_runs(&cpu, &pairs).await;
        let group = sweeps(&runs);
        let site = LayerComponents {
            layer: 1,
            component: Component::Heads,
        };
        let grouped = cpu.patch_metrics_group(&group, site, 0..3).await.unwrap();
        for (i, (b, o, first_diff)) in runs.iter().enumerate() {
            let own = cpu
                .patch_metrics(b, o, site, 0..3, *first_diff)
                .await
                .unwrap();
            assert_eq!(grouped[i], own, "pair {i}");
        }
    });
}

/// The reports of `group` analysed together and of each pair alone.
async fn group_and_alone<E: Engine>(
    e: &E,
    tok: &patchlab::model::Tokenizer,
    group: &[Prompts],
    opts: &Options,
) -> (Vec<Report>, Vec<Report>) {
    let together = analyze_group(e, "m", tok, group, opts, &mut Quiet)
        .await
        .unwrap();
    let mut alone = Vec::new();
    for q in group {
        alone.push(
            analyze_pair(e, "m", tok, q, opts, &mut Quiet)
                .await
                .unwrap(),
        );
    }
    (together, alone)
}

#[test]
fn a_group_analysis_equals_each_pair_analysed_alone() {
    let s = spec(2, 4, 64, 3);
    let (cpu, gpu) = engines(&s);
    let tok = tokenizer();
    let p = |clean: &str, corrupt: &str, correct: &str, incorrect: &str| Prompts {
        clean: clean.into(),
        corrupt: corrupt.into(),
        correct: correct.into(),
        incorrect: incorrect.into(),
        bos: true,
        metric: "logit_diff".into(),
    };
    // two of equal length that differ at different positions, one longer
    let group = vec![
        p(
            "When Mary and John went to the store, John gave a drink to",
            "When Mary and John went to the store, Mary gave a drink to",
            " Mary",
            " John",
        ),
        p(
            "When Anna and Paul went to the park, Paul gave a book to",
            "When Anna and Dave went to the park, Paul gave a book to",
            " Anna",
            " Paul",
        ),
        p(
            "The capital of France is the city of",
            "The capital of Italy is the city of",
            " Paris",
            " Rome",
        ),
    ];
    let opts = Options {
        ig_steps: 6,
        ..Options::default()
    };
    block_on(async {
        for backend in ["cpu", "gpu"] {
            let (grouped, alone) = if backend == "cpu" {
                group_and_alone(&cpu, tok, &group, &opts).await
            } else {
                group_and_alone(&gpu, tok, &group, &opts).await
            };
            assert_eq!(grouped.len(), 3);
            for (i, (g, a)) in grouped.iter().zip(&alone).enumerate() {
                assert_eq!(g.prompts, a.prompts, "{backend} pair {i}: order kept");
                assert_eq!(g.tokens.first_diff, a.tokens.first_diff);
                assert_eq!(g.metric.clean, a.metric.clean);
                for m in [Method::Ap, Method::Ig, Method::Atp] {
                    for d in Direction::ALL {
                        for c in [Component::Heads, Component::Neurons] {
                            let m_key = MethodKey::from(m);
                            let x = g.results[&m_key][&d].get(c).unwrap().concat();
                            let y = a.results[&m_key][&d].get(c).unwrap().concat();
                            let scale = max_abs(&y).max(1e-3);
                            let e = max_diff_over(&x, &y, scale);
                            assert!(
                                e <= 1e-4,
                                "{backend} pair {i} {} {} {}: differs by {e:e}",
                                m.name(),
                                d.name(),
                                c.name()
                            );
                        }
                    }
                }
                assert_eq!(
                    g.analysis.latent, a.analysis.latent,
                    "{backend} pair {i}: latent sets"
                );
            }
        }
        // a bad pair in a group is named
        let mut bad = group.clone();
        bad[1].corrupt = bad[1].clean.clone();
        let err = analyze_group(&cpu, "m", tok, &bad, &opts, &mut Quiet)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("pair 2 of the group"), "{err}");
    });
}
