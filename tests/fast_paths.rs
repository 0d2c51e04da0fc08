//! The fast paths (tail passes, batched, positions ≥ first difference, last
//! position only in the final layer) against the plain hooked forward.

use pollster::block_on;

use crate::common::*;
use patchlab::attribution::patching::{activation_patching, activation_patching_naive};
use patchlab::attribution::{Direction, Quiet, Tracker};
use patchlab::engine::{Component, Engine, LayerComponents, Metric, SweepPair};

/// AP from the fast sweep equals the plain per-component loop to float noise.
async fn check_ap(
    spec: &patchlab::model::random::RandomSpec,
    clean: &[u32],
    corrupt: &[u32],
    answers: &Metric,
) {
    let e = engine(spec);
    let cfg = e.config().clone();
    let first_diff = clean.iter().zip(corrupt).position(|(a, b)| a != b).unwrap();
    let c = e.run(clean, answers).await.unwrap();
    let k = e.run(corrupt, answers).await.unwrap();
    for d in Direction::ALL {
        let (base, other) = d.order(&c, &k);
        let base_tokens = d.order(clean, corrupt).0;
        let denom = e.metric(base) - e.metric(other);
        for comp in [Component::Heads, Component::Neurons] {
            let mut q = Quiet;
            let sweep = [SweepPair {
                base,
                other,
                first_diff,
            }];
            let fast = activation_patching(&e, &sweep, comp, d, &mut Tracker::new(&mut q, 0))
                .await
                .unwrap()
                .remove(0);
            // all heads; for neurons a spread-out sample including the edges
            let per = comp.count(&cfg);
            let sample: Vec<(usize, usize)> = (0..cfg.n_layers)
                .flat_map(|l| {
                    let idx: Vec<usize> = if comp == Component::Heads {
                        (0..per).collect()
                    } else {
                        vec![0, 1, per / 3, per / 2 + 1, per - 1]
                    };
                    idx.into_iter().map(move |i| (l, i))
                })
                .collect();
            let naive = activation_patching_naive(
                &e,
                base_tokens,
                answers,
                base,
                other,
                comp,
                Some(&sample),
            )
            .await
            .unwrap();
            for ((l, i), s) in naive {
                // compare the patched metrics, whose scale is the metric's
                let (mf, mn) = (fast[l][i] * denom, s * denom);
                assert!(
                    (mf - mn).abs() <= 2e-5 * (1.0 + e.metric(base).abs()),
                    "{:?} {:?} L{l} #{i}: fast {mf} naive {mn} (denominator {denom})",
                    d,
                    comp
                );
            }
        }
    }
}

#[test]
fn ap_fast_equals_naive_loop_on_ioi() {
    block_on(async {
        let (clean, corrupt) = ioi_ids();
        check_ap(&spec(2, 4, 64, 1), &clean, &corrupt, &ANSWERS).await;
    })
}

#[test]
fn ap_fast_equals_naive_loop_odd_shapes_and_positions() {
    block_on(async {
        // d_model 48 (not a multiple of 64), three layers; prompts differing at the
        // first token (nothing to skip), at the last token only, and length 1
        let s = spec(3, 3, 48, 2);
        let a = vec![464, 3139, 286, 4881, 318, 7, 33];
        let (mut first, mut last) = (a.clone(), a.clone());
        first[0] = 818;
        *last.last_mut().unwrap() = 40;
        let m = Metric::logit_diff(6342, 10598);
        for (a, b) in [(&a[..], &first[..]), (&a, &last), (&[464], &[818])] {
            check_ap(&s, a, b, &m).await;
        }
    })
}

#[test]
fn thirty_three_token_prompts_batch_across_passes() {
    block_on(async {
        // 33 positions with a late difference and a single layer
        let s = spec(1, 2, 32, 3);
        let a: Vec<u32> = (0..33).map(|i| 100 + 37 * i).collect();
        let mut b = a.clone();
        b[20] = 9999;
        check_ap(&s, &a, &b, &Metric::logit_diff(11, 13)).await;
    })
}

/// ∂m/∂hook at the base run, checked element by element against central
/// differences of the plain hooked forward.
#[test]
fn gradients_match_finite_differences() {
    block_on(async {
        let s = spec(2, 4, 64, 5);
        let e = engine(&s);
        let (clean, corrupt) = ioi_ids();
        let c = e.run(&clean, &ANSWERS).await.unwrap();
        let k = e.run(&corrupt, &ANSWERS).await.unwrap();
        let first_diff = 10;
        for comp in [Component::Heads, Component::Neurons] {
            for layer in 0..2 {
                let site = LayerComponents {
                    layer,
                    component: comp,
                };
                let g = e
                    .path_gradients(&c, &k, site, &[0.0], &[1.0], first_diff)
                    .await
                    .unwrap()
                    .weighted_grad;
                let hook = comp.hook(layer);
                let base = e.activation(&c, &hook).await.unwrap();
                let width = g.shape[1];
                for (pos, j) in [(10, 0), (12, 5), (14, 7), (14, width - 1)] {
                    // heads: perturb head 1's output along d_model coordinate j
                    let idx = match comp {
                        Component::Heads => (pos * s.n_heads + 1) * s.d_model + j,
                        Component::Neurons => pos * width + j,
                    };
                    let numeric =
                        central_difference(&e, &clean, &ANSWERS, &hook, &base, idx, 1e-2).await;
                    let analytic = g.data[pos * width + j];
                    assert!(
                        (numeric - analytic).abs() < 2e-3 * (1.0 + analytic.abs()),
                        "{comp:?} L{layer} pos {pos} #{j}: numeric {numeric} analytic {analytic}"
                    );
                }
                // rows before the first difference carry no gradient (their Δ is zero)
                assert!(g.data[..first_diff * width].iter().all(|&x| x == 0.0));
            }
        }
    })
}

/// The end of the IG path (α = 1) is the base run with the whole layer's
/// target replaced by the other run's values.
#[test]
fn path_end_is_the_whole_layer_substitution() {
    block_on(async {
        let s = spec(2, 4, 64, 6);
        let e = engine(&s);
        let (clean, corrupt) = ioi_ids();
        let c = e.run(&clean, &ANSWERS).await.unwrap();
        let k = e.run(&corrupt, &ANSWERS).await.unwrap();
        for comp in [Component::Heads, Component::Neurons] {
            for layer in 0..2 {
                let site = LayerComponents {
                    layer,
                    component: comp,
                };
                let g = e
                    .path_gradients(&c, &k, site, &[0.0, 1.0], &[0.0, 0.0], 10)
                    .await
                    .unwrap();
                let hook = comp.hook(layer);
                let naive = e
                    .metric_with_substitutions(
                        &clean,
                        &ANSWERS,
                        &[(hook.clone(), e.activation(&k, &hook).await.unwrap())],
                    )
                    .await
                    .unwrap();
                assert!(
                    (g.metrics[1] - naive).abs() < 2e-5 * (1.0 + naive.abs()),
                    "{comp:?} L{layer}"
                );
                assert!((g.metrics[0] - e.metric(&c)).abs() < 2e-5 * (1.0 + naive.abs()));
            }
        }
    })
}

/// captum's input hooks: substituting `hook_z` (heads) or `hook_mlp_in`
/// (neurons) with the other run's values lands on the same end point as the
/// target-space path at α = 1 — the skip path of `hook_mlp_in` stays base.
#[test]
fn input_hook_substitution_reaches_the_path_end() {
    block_on(async {
        let s = spec(3, 3, 48, 9);
        let e = engine(&s);
        let (clean, corrupt) = ioi_ids();
        let c = e.run(&clean, &ANSWERS).await.unwrap();
        let k = e.run(&corrupt, &ANSWERS).await.unwrap();
        for (comp, input) in [
            (Component::Heads, "attn.hook_z"),
            (Component::Neurons, "hook_mlp_in"),
        ] {
            for layer in 0..3 {
                let site = LayerComponents {
                    layer,
                    component: comp,
                };
                let end = e
                    .path_gradients(&c, &k, site, &[1.0], &[0.0], 10)
                    .await
                    .unwrap()
                    .metrics[0];
                let hook = format!("blocks.{layer}.{input}");
                let v = e.activation(&k, &hook).await.unwrap();
                let m = e
                    .metric_with_substitutions(&clean, &ANSWERS, &[(hook, v)])
                    .await
                    .unwrap();
                assert!(
                    (end - m).abs() < 2e-5 * (1.0 + m.abs()),
                    "{comp:?} L{layer}: {end} vs {m}"
                );
                // and it is not a no-op
                assert!((m - e.metric(&c)).abs() > 1e-4, "{comp:?} L{layer}");
            }
        }
    })
}

/// AtP's one-pass gradients for all layers equal the per-layer path
/// gradients at α = 0.
#[test]
fn one_pass_base_gradients_equal_per_layer_tails() {
    block_on(async {
        let s = spec(3, 3, 48, 4);
        let e = engine(&s);
        let (clean, corrupt) = ioi_ids();
        let c = e.run(&clean, &ANSWERS).await.unwrap();
        let k = e.run(&corrupt, &ANSWERS).await.unwrap();
        for comp in [Component::Heads, Component::Neurons] {
            let all = e.base_gradients(&c, &k, comp, 10).await.unwrap();
            for (layer, g) in all.iter().enumerate() {
                let site = LayerComponents {
                    layer,
                    component: comp,
                };
                let one = e
                    .path_gradients(&c, &k, site, &[0.0], &[1.0], 10)
                    .await
                    .unwrap()
                    .weighted_grad;
                assert_eq!(g.shape, one.shape);
                let scale = one.data.iter().fold(0f32, |m, x| m.max(x.abs()));
                for (a, b) in g.data.iter().zip(&one.data) {
                    assert!(
                        (a - b).abs() <= 1e-5 * (1.0 + scale),
                        "{comp:?} L{layer}: {a} vs {b}"
                    );
                }
            }
        }
    })
}
