//! The Greater-Than probability difference (engine::Metric::ProbDiff) on
//! both backends: fast paths against the plain hooked forward, gradients
//! against finite differences, GPU against CPU, the metric spec, and the CLI.
//! Small random models with GPT-2's real vocabulary and tokenizer.

use crate::common::*;
use patchlab::attribution::pair::{parse_metric, MetricSpec};
use patchlab::attribution::patching::replace_component;
use patchlab::engine::cpu::{CpuEngine, CpuRun};
use patchlab::engine::gpu::{GpuEngine, GpuOptions};
use patchlab::engine::{Component, Engine, LayerComponents, Metric};
use patchlab::model::random::{random_weights, RandomSpec};
use patchlab::model::Tokenizer;
use patchlab::report::{Direction, MethodKey};
use pollster::block_on;

const CLEAN: &str = "The war lasted from the year 1742 to the year 17";
const CORRUPT: &str = "The war lasted from the year 1701 to the year 17";

/// The Greater-Than pair (with BOS) and its first differing position.
fn greater_than_ids(tok: &Tokenizer) -> (Vec<u32>, Vec<u32>, usize) {
    let c = tok.encode(CLEAN, true).unwrap();
    let k = tok.encode(CORRUPT, true).unwrap();
    assert_eq!(c.len(), k.len());
    let first_diff = c.iter().zip(&k).position(|(a, b)| a != b).unwrap();
    (c, k, first_diff)
}

/// The metric of `greater_than:42` as the analysis builds it.
fn greater_than_42(tok: &Tokenizer) -> Metric {
    let correct = tok.encode("99", false).unwrap()[0];
    let incorrect = tok.encode("01", false).unwrap()[0];
    parse_metric("greater_than:42", tok, correct, incorrect).unwrap()
}

/// Softmax of one row of logits (f64).
fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = logits.iter().map(|&x| ((x - max) as f64).exp()).collect();
    let z: f64 = e.iter().sum();
    e.into_iter().map(|x| x / z).collect()
}

/// Probability mass on the metric's tokens: the scale its rounding errors
/// are relative to (m itself may cancel to much less).
fn mass(m: &Metric, logits: &[f32]) -> f32 {
    let Metric::ProbDiff { above, below } = m else {
        panic!("not a probability difference")
    };
    let p = softmax(logits);
    above
        .iter()
        .chain(below)
        .map(|&t| p[t as usize])
        .sum::<f64>() as f32
}

/// Patched metrics of every head and a spread of neurons, fast sweep
/// against one plain hooked forward each.
async fn check_patching(
    e: &CpuEngine,
    metric: &Metric,
    clean: &[u32],
    corrupt: &[u32],
    first_diff: usize,
) {
    let cfg = e.config().clone();
    let c = e.run(clean, metric).await.unwrap();
    let k = e.run(corrupt, metric).await.unwrap();
    for (base, other, base_tokens) in [(&c, &k, clean), (&k, &c, corrupt)] {
        let scale = mass(metric, &e.last_logits(base).await.unwrap());
        let m_base = e.metric(base);
        assert!(m_base.is_finite() && scale > 0.0);
        let mut moved = 0f32;
        for component in [Component::Heads, Component::Neurons] {
            let per = component.count(&cfg);
            let sample: Vec<usize> = if component == Component::Heads {
                (0..per).collect()
            } else {
                vec![0, 1, per / 3, per / 2 + 1, per - 1]
            };
            for layer in 0..cfg.n_layers {
                let site = LayerComponents { layer, component };
                let fast = e
                    .patch_metrics(base, other, site, 0..per, first_diff)
                    .await
                    .unwrap();
                assert_eq!(fast.len(), per);
                let hook = component.hook(layer);
                let (hb, ho) = (
                    e.activation(base, &hook).await.unwrap(),
                    e.activation(other, &hook).await.unwrap(),
                );
                for &i in &sample {
                    let mut patched = hb.clone();
                    replace_component(&mut patched, &ho, component, i);
                    let naive = e
                        .metric_with_substitutions(base_tokens, metric, &[(hook.clone(), patched)])
                        .await
                        .unwrap();
                    assert!(
                        (fast[i] - naive).abs() <= 1e-5 * scale,
                        "{component:?} L{layer} #{i}: fast {} naive {naive} (mass {scale})",
                        fast[i]
                    );
                    moved = moved.max((naive - m_base).abs() / scale);
                }
            }
        }
        // the patches change the metric far beyond the tolerance
        assert!(moved > 1e-3, "no patch moves the metric ({moved})");
    }
}

#[test]
fn prob_diff_fast_patching_equals_the_naive_loop() {
    block_on(async {
        let tok = tokenizer();
        let (clean, corrupt, first_diff) = greater_than_ids(tok);
        let e = engine(&spec(2, 4, 64, 21));
        check_patching(&e, &greater_than_42(tok), &clean, &corrupt, first_diff).await;
        let hot = hot_metric(&e, &clean).await;
        check_patching(&e, &hot, &clean, &corrupt, first_diff).await;
        // odd shapes: d_model 48, three layers, prompts differing at the last token only
        let e = engine(&spec(3, 3, 48, 22));
        let mut late = clean.clone();
        *late.last_mut().unwrap() = tok.encode(" 18", false).unwrap()[0];
        let hot = hot_metric(&e, &clean).await;
        check_patching(&e, &hot, &clean, &late, clean.len() - 1).await;
    })
}

/// The run's metric is Σ_above p − Σ_below p of its own last logits, and the
/// plain forward gives the same.
#[test]
fn prob_diff_is_the_probability_difference_of_the_last_logits() {
    block_on(async {
        let tok = tokenizer();
        let (clean, _, _) = greater_than_ids(tok);
        let e = engine(&spec(2, 4, 64, 23));
        for metric in [greater_than_42(tok), hot_metric(&e, &clean).await] {
            let run = e.run(&clean, &metric).await.unwrap();
            let logits = e.last_logits(&run).await.unwrap();
            let p = softmax(&logits);
            let Metric::ProbDiff { above, below } = &metric else {
                unreachable!()
            };
            let want = above.iter().map(|&t| p[t as usize]).sum::<f64>()
                - below.iter().map(|&t| p[t as usize]).sum::<f64>();
            let scale = mass(&metric, &logits);
            assert!(((e.metric(&run) as f64) - want).abs() <= 1e-6 * scale as f64);
            let plain = e
                .metric_with_substitutions(&clean, &metric, &[])
                .await
                .unwrap();
            assert!((plain - e.metric(&run)).abs() <= 1e-6 * scale);
        }
    })
}

/// ∂m/∂y of `path_gradients` at α = 0 and α = 0.7 against central
/// differences of the plain hooked forward at y(α).
#[test]
fn prob_diff_path_gradients_match_finite_differences() {
    block_on(async {
        let tok = tokenizer();
        let (clean, corrupt, first_diff) = greater_than_ids(tok);
        let s = spec(2, 4, 64, 24);
        let e = engine(&s);
        let metric = hot_metric(&e, &clean).await;
        let c = e.run(&clean, &metric).await.unwrap();
        let k = e.run(&corrupt, &metric).await.unwrap();
        let t = clean.len();
        for component in [Component::Heads, Component::Neurons] {
            for layer in 0..s.n_layers {
                let site = LayerComponents { layer, component };
                let hook = component.hook(layer);
                let (yb, yo) = (
                    e.activation(&c, &hook).await.unwrap(),
                    e.activation(&k, &hook).await.unwrap(),
                );
                for alpha in [0.0f32, 0.7] {
                    let pg = e
                        .path_gradients(&c, &k, site, &[alpha], &[1.0], first_diff)
                        .await
                        .unwrap();
                    let g = &pg.weighted_grad;
                    let width = g.shape[1];
                    let gmax = max_abs(&g.data);
                    assert!(gmax > 1e-4, "{component:?} L{layer}: gradient {gmax}");
                    let mut ya = yb.clone();
                    for (v, (b, o)) in ya.data.iter_mut().zip(yb.data.iter().zip(&yo.data)) {
                        *v = b + alpha * (o - b);
                    }
                    let m_alpha = e
                        .metric_with_substitutions(&clean, &metric, &[(hook.clone(), ya.clone())])
                        .await
                        .unwrap();
                    assert!(
                        (pg.metrics[0] - m_alpha).abs() <= 1e-5,
                        "{component:?} L{layer} α {alpha}"
                    );
                    // the largest entries of the last row, and some others
                    let last = &g.data[(t - 1) * width..t * width];
                    let top = (0..width)
                        .max_by(|&a, &b| last[a].abs().total_cmp(&last[b].abs()))
                        .unwrap();
                    for (pos, j) in [
                        (t - 1, top),
                        (t - 1, 3),
                        (first_diff, 5),
                        (first_diff + 1, width - 1),
                    ] {
                        // heads: head 1's output along d_model coordinate j
                        let idx = match component {
                            Component::Heads => (pos * s.n_heads + 1) * s.d_model + j,
                            Component::Neurons => pos * width + j,
                        };
                        let numeric =
                            central_difference(&e, &clean, &metric, &hook, &ya, idx, 1e-2).await;
                        let analytic = g.data[pos * width + j];
                        assert!(
                            (numeric - analytic).abs() <= 1e-2 * gmax,
                            "{component:?} L{layer} α {alpha} pos {pos} #{j}: numeric {numeric} analytic {analytic} (max |g| {gmax})"
                        );
                    }
                    assert!(g.data[..first_diff * width].iter().all(|&x| x == 0.0));
                }
            }
        }
    })
}

/// AtP's one-pass gradients for every layer equal the per-layer path
/// gradients at α = 0.
#[test]
fn prob_diff_base_gradients_equal_path_gradients_at_zero() {
    block_on(async {
        let tok = tokenizer();
        let (clean, corrupt, first_diff) = greater_than_ids(tok);
        let e = engine(&spec(3, 3, 48, 25));
        let metric = hot_metric(&e, &clean).await;
        let c = e.run(&clean, &metric).await.unwrap();
        let k = e.run(&corrupt, &metric).await.unwrap();
        for component in [Component::Heads, Component::Neurons] {
            let all = e
                .base_gradients(&c, &k, component, first_diff)
                .await
                .unwrap();
            assert_eq!(all.len(), 3);
            for (layer, g) in all.iter().enumerate() {
                let site = LayerComponents { layer, component };
                let one = e
                    .path_gradients(&c, &k, site, &[0.0], &[1.0], first_diff)
                    .await
                    .unwrap()
                    .weighted_grad;
                assert_eq!(g.shape, one.shape);
                let scale = max_abs(&one.data);
                assert!(scale > 1e-4);
                for (a, b) in g.data.iter().zip(&one.data) {
                    assert!(
                        (a - b).abs() <= 1e-5 * scale,
                        "{component:?} L{layer}: {a} vs {b}"
                    );
                }
            }
        }
    })
}

/// Largest |a − b| relative to `scale`.
async fn check_gpu_against_cpu(s: &RandomSpec, opts: GpuOptions, tok: &Tokenizer) {
    let w = random_weights(s);
    let cpu = CpuEngine::new(s.config(), w.clone()).unwrap();
    let gpu = GpuEngine::with_options(s.config(), w, opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (clean, corrupt, first_diff) = greater_than_ids(tok);
    for metric in [greater_than_42(tok), hot_metric(&cpu, &clean).await] {
        let (cc, ck): (CpuRun, CpuRun) = (
            cpu.run(&clean, &metric).await.unwrap(),
            cpu.run(&corrupt, &metric).await.unwrap(),
        );
        let (gc, gk) = (
            gpu.run(&clean, &metric).await.unwrap(),
            gpu.run(&corrupt, &metric).await.unwrap(),
        );
        let scale = mass(&metric, &cpu.last_logits(&cc).await.unwrap())
            .max(mass(&metric, &cpu.last_logits(&ck).await.unwrap()));
        let tol = 1e-5;
        let e = max_diff_over(
            &[gpu.metric(&gc), gpu.metric(&gk)],
            &[cpu.metric(&cc), cpu.metric(&ck)],
            scale,
        );
        assert!(e <= tol, "run metric: {e:e}");
        let plain = gpu
            .metric_with_substitutions(&clean, &metric, &[])
            .await
            .unwrap();
        assert!((plain - cpu.metric(&cc)).abs() <= tol * scale);
        for component in [Component::Heads, Component::Neurons] {
            let n = component.count(cpu.config());
            for layer in 0..s.n_layers {
                let site = LayerComponents { layer, component };
                let (a, b) = (
                    gpu.patch_metrics(&gc, &gk, site, 0..n, first_diff)
                        .await
                        .unwrap(),
                    cpu.patch_metrics(&cc, &ck, site, 0..n, first_diff)
                        .await
                        .unwrap(),
                );
                let e = max_diff_over(&a, &b, scale);
                assert!(e <= tol, "{component:?} L{layer} patch metrics: {e:e}");
                let alphas = [0.0, 0.3, 0.6, 1.0];
                let weights = [0.1, 0.2, 0.3, 0.4];
                let (a, b) = (
                    gpu.path_gradients(&gk, &gc, site, &alphas, &weights, first_diff)
                        .await
                        .unwrap(),
                    cpu.path_gradients(&ck, &cc, site, &alphas, &weights, first_diff)
                        .await
                        .unwrap(),
                );
                let e = max_diff_over(&a.metrics, &b.metrics, scale);
                assert!(e <= tol, "{component:?} L{layer} path metrics: {e:e}");
                let gscale = max_abs(&b.weighted_grad.data);
                assert!(gscale > 0.0);
                let e = max_diff_over(&a.weighted_grad.data, &b.weighted_grad.data, gscale);
                assert!(e <= 2e-5, "{component:?} L{layer} path gradient: {e:e}");
            }
            let (a, b) = (
                gpu.base_gradients(&gc, &gk, component, first_diff)
                    .await
                    .unwrap(),
                cpu.base_gradients(&cc, &ck, component, first_diff)
                    .await
                    .unwrap(),
            );
            for (l, (a, b)) in a.iter().zip(&b).enumerate() {
                let gscale = max_abs(&b.data);
                let e = max_diff_over(&a.data, &b.data, gscale);
                assert!(e <= 2e-5, "{component:?} L{l} base gradients: {e:e}");
            }
        }
    }
}

#[test]
fn prob_diff_gpu_agrees_with_cpu() {
    block_on(async {
        let tok = tokenizer();
        check_gpu_against_cpu(&spec(2, 4, 64, 26), GpuOptions::default(), tok).await;
    })
}

#[test]
fn prob_diff_gpu_agrees_with_cpu_in_small_buffers() {
    block_on(async {
        // 1 MiB buffers: wte in 10 chunks of 5461 rows (an odd number: the
        // gradient's running sum ends in the second buffer), logits in
        // groups of 5 rows, several groups per batch
        let tok = tokenizer();
        let opts = GpuOptions {
            max_buffer_bytes: Some(1 << 20),
            ..GpuOptions::default()
        };
        check_gpu_against_cpu(&spec(2, 3, 48, 27), opts, tok).await;
    })
}

#[test]
fn bad_metrics_are_errors_on_both_backends() {
    block_on(async {
        let s = spec(1, 2, 32, 28);
        let w = random_weights(&s);
        let cpu = CpuEngine::new(s.config(), w.clone()).unwrap();
        let gpu = GpuEngine::new(s.config(), w)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let pd = |above: Vec<u32>, below: Vec<u32>| Metric::ProbDiff { above, below };
        let cases = [
            (pd(vec![], vec![1]), "at least one `above` token"),
            (pd(vec![1], vec![]), "at least one `below` token"),
            (pd(vec![1, 2], vec![3, 2]), "disjoint"),
            (pd(vec![1, 1], vec![3]), "twice"),
            (pd(vec![1], vec![50257]), "outside the model's vocabulary"),
            (
                Metric::logit_diff(1, 60000),
                "outside the model's vocabulary",
            ),
        ];
        let toks = [50256, 464, 1175];
        for (m, needle) in &cases {
            for err in [
                cpu.run(&toks, m).await.err(),
                gpu.run(&toks, m).await.err(),
                cpu.metric_with_substitutions(&toks, m, &[]).await.err(),
                gpu.metric_with_substitutions(&toks, m, &[]).await.err(),
            ] {
                let err = err.expect("an error").to_string();
                assert!(err.contains(needle), "{m:?}: {err}");
            }
        }
        // the two runs of a sweep must measure the same metric
        let good = pd(vec![1, 2], vec![3]);
        let other = [50256, 464, 1176];
        let site = LayerComponents {
            layer: 0,
            component: Component::Heads,
        };
        let (a, b) = (
            cpu.run(&toks, &good).await.unwrap(),
            cpu.run(&other, &ANSWERS).await.unwrap(),
        );
        let err = cpu.patch_metrics(&a, &b, site, 0..2, 2).await.unwrap_err();
        assert!(err.to_string().contains("different metrics"), "{err}");
        let (a, b) = (
            gpu.run(&toks, &good).await.unwrap(),
            gpu.run(&other, &ANSWERS).await.unwrap(),
        );
        let err = gpu.patch_metrics(&a, &b, site, 0..2, 2).await.unwrap_err();
        assert!(err.to_string().contains("different metrics"), "{err}");
        // and the engine still works
        let b = gpu.run(&other, &good).await.unwrap();
        assert_eq!(
            gpu.patch_metrics(&a, &b, site, 0..2, 2)
                .await
                .unwrap()
                .len(),
            2
        );
    })
}

#[test]
fn metric_specs_parse_or_say_what_is_wrong() {
    let tok = tokenizer();
    assert_eq!(
        MetricSpec::parse("logit_diff").unwrap(),
        MetricSpec::LogitDiff
    );
    assert_eq!(
        MetricSpec::parse(" greater_than:07 ").unwrap(),
        MetricSpec::GreaterThan(7)
    );
    assert_eq!(MetricSpec::GreaterThan(7).name(), "greater_than:07");
    assert_eq!(MetricSpec::GreaterThan(42).name(), "greater_than:42");
    assert_eq!(MetricSpec::LogitDiff.name(), "logit_diff");
    assert_eq!(
        parse_metric("logit_diff", tok, 5335, 1757).unwrap(),
        Metric::logit_diff(5335, 1757)
    );
    // greater_than:42: "43".."99" above, "00".."42" below, as GPT-2 tokens
    let Metric::ProbDiff { above, below } =
        parse_metric("greater_than:42", tok, 5335, 1757).unwrap()
    else {
        panic!("greater_than is a probability difference")
    };
    assert_eq!((above.len(), below.len()), (57, 43));
    let text = |ids: &[u32]| ids.iter().map(|&t| tok.token_text(t)).collect::<Vec<_>>();
    assert_eq!(text(&above[..2]), ["43", "44"]);
    assert_eq!(text(&above[56..]), ["99"]);
    assert_eq!(text(&below[..2]), ["00", "01"]);
    assert_eq!(text(&below[42..]), ["42"]);
    let Metric::ProbDiff { above, below } = parse_metric("greater_than:00", tok, 1, 2).unwrap()
    else {
        panic!()
    };
    assert_eq!((above.len(), below.len()), (99, 1));
    // errors
    let err = |spec: &str| parse_metric(spec, tok, 5335, 1757).unwrap_err().to_string();
    assert_eq!(
        err("foo"),
        "unknown metric `foo`: use logit_diff or greater_than:YY"
    );
    assert!(err("greater_than").contains("unknown metric `greater_than`"));
    for bad in [
        "greater_than:",
        "greater_than:5",
        "greater_than:99",
        "greater_than:4a",
        "greater_than:+4",
        "greater_than:123",
    ] {
        let e = err(bad);
        assert!(e.contains("two digits YY, 00 to 98"), "{bad}: {e}");
    }
    // a vocabulary of single bytes only (GPT-2's byte-to-unicode map, no merges)
    let mut bytes: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
    let mut extra = 0;
    let mut chars: Vec<(u32, char)> = bytes
        .iter()
        .map(|&b| (b, char::from_u32(b).unwrap()))
        .collect();
    for b in 0..256u32 {
        if !bytes.contains(&b) {
            bytes.push(b);
            chars.push((b, char::from_u32(256 + extra).unwrap()));
            extra += 1;
        }
    }
    chars.sort();
    let mut vocab: serde_json::Map<String, serde_json::Value> = chars
        .iter()
        .map(|&(b, c)| (c.to_string(), b.into()))
        .collect();
    vocab.insert("<|endoftext|>".into(), 256.into());
    let small = Tokenizer::from_vocab_merges(
        &serde_json::Value::Object(vocab).to_string(),
        "#version: 0.2\n",
    )
    .unwrap();
    let e = parse_metric("greater_than:42", &small, 1, 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"00\" into 2 tokens, [0][0]"), "{e}");
}

#[test]
fn cli_analyze_with_the_greater_than_metric() {
    let d = tempdir("metric-model");
    random_model(&d, (2, 2, 32, 3), &["--n-ctx", "32"]);
    let analyze = |metric: &str| {
        patchlab(&[
            "analyze",
            "--model",
            d.to_str().unwrap(),
            "--clean",
            CLEAN,
            "--corrupt",
            CORRUPT,
            "--correct",
            "99",
            "--incorrect",
            "01",
            "--methods",
            "ap,atp",
            "--components",
            "heads",
            "--metric",
            metric,
            "--quiet",
            "--out",
            "-",
        ])
    };
    let out = analyze("greater_than:42");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let r = report(out);
    assert_eq!(r.metric.name, "greater_than:42");
    assert_eq!(r.prompts.metric, "greater_than:42");
    assert!(stderr.contains("p(year > 42) − p(year ≤ 42)"), "{stderr}");
    // a probability difference, and the log-probabilities still of the answers
    assert!(r.metric.clean.abs() <= 1.0 && r.metric.clean != r.metric.corrupt);
    let p = r.predictions["clean"][0].prob;
    assert!(p > 0.0 && p < 1.0);
    assert_eq!(r.tokens.correct.text, "99");
    let lp = r.metric.logprobs["clean"];
    assert!(lp[0] < 0.0 && lp[1] < 0.0);
    // AP scores normalised by the metric gap: finite
    let heads = r.results[&MethodKey::Ap][&Direction::CleanToCorrupt]
        .heads
        .as_ref()
        .unwrap();
    assert!(heads.iter().flatten().all(|x| x.is_finite()));
    // the default is the logit difference
    let out = analyze("logit_diff");
    let r = report(out);
    assert_eq!(r.metric.name, "logit_diff");
    // an unknown metric: a clear error
    let out = analyze("foo");
    fails_with(
        out,
        "unknown metric `foo`: use logit_diff or greater_than:YY",
    );
    // --help documents it
    let out = patchlab(&["analyze", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--metric") && help.contains("greater_than:YY"),
        "{help}"
    );
}
