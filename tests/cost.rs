//! The cost model (`attribution::cost`) as the analysis uses it: progress
//! counts its FLOPs and ends at its total, and a work budget per engine
//! call splits AP's patches and IG's path points without changing a
//! number beyond float noise.

use crate::common::*;
use patchlab::app::{AnalyzeRequest, Backend, Engines, Session};
use patchlab::attribution::cost;
use patchlab::attribution::run::{analyze_pair, Options};
use patchlab::attribution::{Method, Observer, Pair, Pause, Progress};
use patchlab::engine::{Component, Engine, LayerComponents};
use patchlab::report::{Direction, MethodKey, PatchSite, Report};
use pollster::block_on;

fn opts() -> Options {
    Options {
        ig_steps: 6,
        sites: vec![PatchSite::ResidPre, PatchSite::Z],
        ..Options::default()
    }
}

fn opts_without_sites() -> Options {
    Options {
        sites: vec![],
        ..opts()
    }
}

/// The IOI pair's tokens and first differing position.
fn pair_shape(cfg: &patchlab::model::Config) -> (usize, usize) {
    let pair = Pair::from_prompts(tokenizer(), cfg, &ioi_prompts()).unwrap();
    (pair.clean.len(), pair.first_diff)
}

/// What an analysis told its observer.
#[derive(Default)]
struct Record {
    progress: Vec<(String, u64, u64)>,
    pauses: usize,
}

impl Observer for Record {
    fn progress(&mut self, p: &Progress<'_>) -> bool {
        self.progress.push((p.stage.to_string(), p.done, p.total));
        true
    }
    fn pause(&mut self) -> Option<Pause<'_>> {
        self.pauses += 1;
        None
    }
}

fn analyse(e: &impl Engine, o: &Options, rec: &mut Record) -> Report {
    block_on(analyze_pair(e, "m", tokenizer(), &ioi_prompts(), o, rec)).unwrap()
}

#[test]
fn progress_counts_the_estimated_flops_and_ends_at_the_total() {
    let e = engine(&spec(3, 4, 64, 7));
    let cfg = e.config().clone();
    let shape = [pair_shape(&cfg)];
    let o = opts();
    let mut rec = Record::default();
    analyse(&e, &o, &mut rec);
    let est = o.estimate(&cfg, &shape);
    let total = o.work(&cfg, &shape);
    assert_eq!(total, cost::units(est.tracked_flops()));
    assert!(rec.progress.iter().all(|p| p.2 == total));
    assert!(
        rec.progress.windows(2).all(|w| w[0].1 <= w[1].1),
        "monotone"
    );
    assert_eq!(rec.progress.last().unwrap().1, total);
    // before the reports' snap to the total, the steps added up to it (rounding apart)
    let before = rec.progress[rec.progress.len() - 2].1;
    assert!(total - before <= 64, "{before} of {total}");
    // every phase is in the estimate: both directions of each method and kind, the sites
    let phases = |m: &str| est.phases.iter().filter(|p| p.method == m).count();
    assert_eq!(
        (phases("ap"), phases("ig"), phases("atp"), phases("sites")),
        (4, 4, 4, 2)
    );
    // a neuron patch runs the same tail as a head patch one sublayer later: the kinds'
    // AP work is in the ratio of their counts, less the head's own layer's MLP
    let ap = |c: &str| {
        est.phases
            .iter()
            .filter(|p| p.method == "ap" && p.component == Some(c))
            .map(|p| p.flops)
            .sum::<f64>()
    };
    let ratio = ap("neurons") / ap("heads");
    let counts = (cfg.d_mlp / cfg.n_heads) as f64;
    assert!(
        ratio < counts && ratio > 0.5 * counts,
        "{ratio} vs {counts}"
    );
}

#[test]
fn a_work_budget_splits_engine_calls_and_changes_no_number() {
    let e = engine(&spec(3, 4, 64, 7));
    let cfg = e.config().clone();
    let ((t, fd), o) = (pair_shape(&cfg), opts_without_sites());
    let mut whole = Record::default();
    let a = analyse(&e, &o, &mut whole);
    // room for three IG points at layer 0 (the dearest), so every layer splits
    let first = LayerComponents {
        layer: 0,
        component: Component::Heads,
    };
    let budget = 3.0 * cost::ig_point_flops(&cfg, first, t - fd, t);
    let mut split = Record::default();
    let held = Options {
        work_per_call: Some(budget),
        ..o.clone()
    };
    let b = analyse(&e, &held, &mut split);
    assert!(
        split.pauses > whole.pauses + 2 * cfg.n_layers,
        "{} calls with the budget, {} without",
        split.pauses,
        whole.pauses
    );
    // no call did more than the budget (the last IG call of a neuron layer adds its W_outᵀ)
    let mlp_out = 2.0 * (t - fd) as f64 * (cfg.d_model * cfg.d_mlp) as f64;
    for w in split.progress.windows(2) {
        let step = (w[1].1 - w[0].1) as f64;
        if w[1].0.starts_with("AP") || w[1].0.starts_with("IG") {
            assert!(
                step <= budget + mlp_out + 1.0,
                "{}: {step} > {budget}",
                w[1].0
            );
        }
    }
    // AP and AtP: the same bits; IG: the same sums, added in another order
    for key in [MethodKey::Ap, MethodKey::Atp] {
        let (x, y) = (&a.results[&key], &b.results[&key]);
        assert_eq!(
            serde_json::to_value(x).unwrap(),
            serde_json::to_value(y).unwrap(),
            "{key:?}"
        );
    }
    for d in Direction::ALL {
        for c in [Component::Heads, Component::Neurons] {
            let map = |r: &Report| {
                let m = &r.results[&MethodKey::Ig][&d];
                match c {
                    Component::Heads => m.heads.clone().unwrap(),
                    Component::Neurons => m.neurons.clone().unwrap(),
                }
            };
            let (x, y) = (map(&a), map(&b));
            let (x, y) = (x.concat(), y.concat());
            assert!(
                rel_err(&x, &y) < 1e-5,
                "IG {d:?} {c:?}: {}",
                rel_err(&x, &y)
            );
        }
    }
    assert_eq!(a.analysis.latent, b.analysis.latent);
}

#[test]
fn on_the_gpu_a_work_budget_splits_calls_and_changes_no_number_beyond_float_noise() {
    let (_, gpu) = engines(&spec(3, 4, 64, 7));
    let (shape, o) = (pair_shape(gpu.config()), opts_without_sites());
    let (mut whole, mut split) = (Record::default(), Record::default());
    let a = analyse(&gpu, &o, &mut whole);
    let first = LayerComponents {
        layer: 0,
        component: Component::Neurons,
    };
    let (t, fd) = shape;
    let held = Options {
        work_per_call: Some(2.0 * cost::ig_point_flops(gpu.config(), first, t - fd, t)),
        ..o.clone()
    };
    let b = analyse(&gpu, &held, &mut split);
    assert!(split.pauses > whole.pauses + 2 * gpu.config().n_layers);
    for key in [MethodKey::Ap, MethodKey::Ig, MethodKey::Atp] {
        for d in Direction::ALL {
            let (x, y) = (&a.results[&key][&d], &b.results[&key][&d]);
            for (x, y) in [(&x.heads, &y.heads), (&x.neurons, &y.neurons)] {
                let (x, y) = (x.clone().unwrap().concat(), y.clone().unwrap().concat());
                assert!(rel_err(&x, &y) < 1e-5, "{key:?} {d:?}: {}", rel_err(&x, &y));
            }
        }
    }
}

#[test]
fn the_estimate_grows_with_the_prompt_and_names_the_memory_of_long_ones() {
    let cfg = engine(&spec(2, 4, 64, 1)).config().clone();
    let o = Options::default();
    let short = o.estimate(&cfg, &[(16, 8)]);
    let long = o.estimate(&cfg, &[(512, 8)]);
    // the tails run on the rows from the first difference: 63× the rows (the final
    // block's queries are one row whatever the prompt)
    assert!(
        long.flops > 32.0 * short.flops,
        "{} vs {}",
        long.flops,
        short.flops
    );
    // attention's scores and pattern grow with t²: beyond linear
    assert!(long.run_bytes > 32.0 * short.run_bytes);
    // a method left out costs nothing
    let ap_only = Options {
        methods: vec![Method::Ap],
        ..Options::default()
    };
    let e = ap_only.estimate(&cfg, &[(16, 8)]);
    assert!(e
        .phases
        .iter()
        .all(|p| p.method == "ap" || p.method == "forward"));
    assert!(e.flops < short.flops);
}

fn session() -> Session {
    Session {
        name: "m".into(),
        tokenizer: load_tokenizer(),
        engines: Engines::new(engine(&spec(3, 4, 64, 7)), false),
        saes: Default::default(),
    }
}

fn request(extra: serde_json::Value) -> AnalyzeRequest {
    let p = ioi_prompts();
    let mut v = serde_json::json!({
        "clean": p.clean, "corrupt": p.corrupt, "correct": p.correct,
        "incorrect": p.incorrect, "igSteps": 6,
    });
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(v).unwrap()
}

#[test]
fn a_session_estimates_in_seconds_once_calibrated_and_then_holds_calls_to_its_rate() {
    let s = session();
    let req = request(serde_json::json!({}));
    let before = s.estimate(&req).unwrap();
    assert_eq!(before.backend, "cpu");
    assert!(before.seconds.is_none(), "no rate before calibration");
    assert_eq!(before.pairs, [[15, 10]]);
    // the progress of the run it estimates counts the same FLOPs
    let mut rec = Record::default();
    let r = block_on(s.analyze(&req, &mut rec)).unwrap();
    let total = cost::units(before.estimate.tracked_flops());
    assert_eq!(rec.progress.last().unwrap().1, total);

    let c = block_on(s.calibrate(Backend::Cpu)).unwrap();
    assert_eq!(c.backend, "cpu");
    assert!(c.flops > 0.0 && c.ms > 0.0 && c.flops_per_s > 0.0, "{c:?}");
    let after = s.estimate(&req).unwrap();
    let secs = after.seconds.unwrap();
    assert!((secs - after.estimate.flops / c.flops_per_s).abs() <= 1e-9 * secs);
    // a calibrated engine's calls are held to 0.3 s at its rate: the same numbers
    let mut held = Record::default();
    let again = block_on(s.analyze(&req, &mut held)).unwrap();
    assert_eq!(
        json(&again.results[&MethodKey::Ap]),
        json(&r.results[&MethodKey::Ap])
    );
    // a bad request is refused by the estimate as by the analysis
    let bad = request(serde_json::json!({"correct": " Mary Mary"}));
    let e = s.estimate(&bad).unwrap_err().to_string();
    assert!(e.contains("exactly one token"), "{e}");
}

#[test]
fn a_pair_too_long_for_webassembly_is_refused_with_the_length_that_fits() {
    let s = session();
    let cfg = s.config().clone();
    let req = request(serde_json::json!({}));
    let mut cost = s.estimate(&req).unwrap();
    // natively there is no limit
    assert!(cost.memory_limit.is_none());
    cost.check_memory(&cfg).unwrap();
    // a limit between the model with runs of 10 tokens and of 11
    let at = |t: usize| cfg.weight_bytes() as f64 + 2.0 * cost::run_bytes(&cfg, t);
    cost.memory_limit = Some(0.5 * (at(10) + at(11)));
    let e = cost.check_memory(&cfg).unwrap_err().to_string();
    assert!(e.contains("at most 10 tokens"), "{e}");
    assert!(e.contains("patchlab analyze"), "{e}");
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap()
}
