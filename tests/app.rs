//! The application layer (src/app): the engine enum computes what the
//! engine it wraps computes, a session answers requests as the methods do,
//! and the observer's pause comes before every heavy engine call and can
//! stop the work.

use crate::common::*;
use patchlab::app::{AblateRequest, AnalyzeRequest, AnyEngine, Backend, Engines, Session};
use patchlab::attribution::ablation::{ablate_dataset, AblationSet};
use patchlab::attribution::run::{analyze_pair, Options};
use patchlab::attribution::{Method, Observer, Pause, Quiet};
use patchlab::dataset::Task;
use patchlab::engine::Component;
use patchlab::report::{Prompts, Report};
use patchlab::Error;

/// Counts pauses; the pause number `stop_at` (1-based) fails with Cancelled.
struct Pauses {
    count: usize,
    stop_at: Option<usize>,
}

impl Observer for Pauses {
    fn pause(&mut self) -> Option<Pause<'_>> {
        self.count += 1;
        let stop = self.stop_at == Some(self.count);
        Some(Box::pin(async move {
            if stop {
                Err(Error::Cancelled)
            } else {
                Ok(())
            }
        }))
    }
}

/// Score maps compared as the report writes them.
fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap()
}

fn ioi_pair() -> Prompts {
    Task::Ioi
        .generate(tokenizer(), 1, 0, true)
        .unwrap()
        .remove(0)
}

fn heads_only() -> Options {
    Options {
        components: vec![Component::Heads],
        ig_steps: 4,
        ..Options::default()
    }
}

#[test]
fn the_observer_pauses_before_every_heavy_engine_call() {
    let s = spec(2, 4, 32, 7);
    let e = engine(&s);
    let tok = tokenizer();
    let pair = ioi_pair();
    let mut obs = Pauses {
        count: 0,
        stop_at: None,
    };
    pollster::block_on(analyze_pair(&e, "m", tok, &pair, &heads_only(), &mut obs)).unwrap();
    // two forwards, then per direction: AtP one backward for all layers,
    // IG and AP one call per layer (4 heads fit one AP chunk)
    let layers = s.n_layers;
    assert_eq!(obs.count, 2 + 2 * (1 + layers + layers));

    // a pause that fails stops the analysis with its error
    let mut obs = Pauses {
        count: 0,
        stop_at: Some(5),
    };
    let r = pollster::block_on(analyze_pair(&e, "m", tok, &pair, &heads_only(), &mut obs));
    assert!(matches!(r, Err(Error::Cancelled)), "{:?}", r.err());
    assert_eq!(obs.count, 5);
}

#[test]
fn ablating_a_dataset_pauses_before_every_forward() {
    let e = engine(&spec(2, 4, 32, 5));
    let tok = tokenizer();
    let pairs = Task::Ioi.generate(tok, 3, 1, true).unwrap();
    let opts = Options {
        methods: vec![Method::Atp],
        ..heads_only()
    };
    let reports: Vec<(usize, Report)> = pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let r = pollster::block_on(analyze_pair(&e, "m", tok, p, &opts, &mut Quiet));
            (i, r.unwrap())
        })
        .collect();
    let sets = [
        ("a".to_string(), AblationSet::parse("h0.1").unwrap()),
        ("b".to_string(), AblationSet::parse("h1.2,n0.3").unwrap()),
    ];
    let mut obs = Pauses {
        count: 0,
        stop_at: None,
    };
    let quiet = pollster::block_on(ablate_dataset(&e, tok, &reports, &sets, &mut Quiet)).unwrap();
    let paused = pollster::block_on(ablate_dataset(&e, tok, &reports, &sets, &mut obs)).unwrap();
    assert_eq!(paused, quiet);
    // one corrupt forward per pair, then one ablated forward per pair and set
    assert_eq!(obs.count, 3 + 3 * 2);
}

#[test]
fn the_engine_enum_gives_the_cpu_engines_report() {
    let s = spec(2, 4, 32, 9);
    let tok = tokenizer();
    let pair = ioi_pair();
    let opts = heads_only();
    let direct = pollster::block_on(analyze_pair(
        &engine(&s),
        "m",
        tok,
        &pair,
        &opts,
        &mut Quiet,
    ));
    let any = AnyEngine::cpu(engine(&s));
    let via = pollster::block_on(analyze_pair(&any, "m", tok, &pair, &opts, &mut Quiet));
    let (direct, via) = (direct.unwrap(), via.unwrap());
    assert_eq!(via.backend, "cpu");
    assert_eq!(json(&via.results), json(&direct.results));
    assert_eq!(via.metric, direct.metric);
    assert_eq!(json(&via.analysis), json(&direct.analysis));
}

fn session(seed: u64) -> Session {
    Session {
        name: "m".into(),
        tokenizer: load_tokenizer(),
        engines: Engines::new(engine(&spec(2, 4, 32, seed)), false),
        saes: Default::default(),
    }
}

#[test]
fn a_session_answers_requests_as_the_methods_do() {
    let sess = session(11);
    let pair = ioi_pair();
    let req: AnalyzeRequest = serde_json::from_value(serde_json::json!({
        "clean": pair.clean, "corrupt": pair.corrupt,
        "correct": pair.correct, "incorrect": pair.incorrect,
        "components": ["heads"], "igSteps": 4, "backend": "auto",
    }))
    .unwrap();
    let got = pollster::block_on(sess.analyze(&req, &mut Quiet)).unwrap();
    let want = pollster::block_on(analyze_pair(
        &engine(&spec(2, 4, 32, 11)),
        "m",
        tokenizer(),
        &pair,
        &heads_only(),
        &mut Quiet,
    ))
    .unwrap();
    // "auto" without a GPU in the host is the CPU
    assert_eq!(got.backend, "cpu");
    assert_eq!(sess.engines.resolve(Backend::Auto), Backend::Cpu);
    assert_eq!(sess.engines.default_group_size(Backend::Auto), 1);
    assert_eq!(sess.engines.default_group_size(Backend::Gpu), 16);
    assert_eq!(json(&got.results), json(&want.results));
    assert_eq!(got.prompts, want.prompts);

    let group: AnalyzeRequest = serde_json::from_value(serde_json::json!({
        "pairs": [pair, pair], "components": ["heads"], "igSteps": 4,
    }))
    .unwrap();
    let two = pollster::block_on(sess.analyze_group(&group, &mut Quiet)).unwrap();
    assert_eq!(two.len(), 2);
    assert_eq!(json(&two[1].results), json(&want.results));

    // ablating nothing leaves the clean metric; the three come from one engine
    let abl: AblateRequest = serde_json::from_value(serde_json::json!({
        "clean": pair.clean, "corrupt": pair.corrupt,
        "correct": pair.correct, "incorrect": pair.incorrect,
        "backend": "cpu",
    }))
    .unwrap();
    let out = pollster::block_on(sess.ablate(&abl)).unwrap();
    assert_eq!(out.backend, "cpu");
    assert!(out.note.is_none());
    assert_eq!(out.metrics.metric_clean, want.metric.clean);
    assert_eq!(out.metrics.metric_corrupt, want.metric.corrupt);
    let d = (out.metrics.metric_ablated - want.metric.clean).abs();
    assert!(d < 1e-5, "{out:?}");

    // a bad request names its field
    let bad = serde_json::from_value::<AnalyzeRequest>(serde_json::json!({"igSteps": -1}));
    assert!(bad.unwrap_err().to_string().contains("`igSteps`"));
    let e = pollster::block_on(sess.analyze_group(&req, &mut Quiet)).unwrap_err();
    assert!(e.to_string().contains("in `pairs`"), "{e}");
}

#[test]
fn a_session_refuses_empty_ablations() {
    let sess = session(3);
    let e =
        pollster::block_on(sess.ablate_dataset(&[], &["h0.1".into()], Backend::Cpu, &mut Quiet));
    assert!(e.unwrap_err().to_string().contains("no finished pairs"));
}
