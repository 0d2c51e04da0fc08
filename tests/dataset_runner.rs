//! The dataset runner of `patchlab batch` and the page (`app::dataset`):
//! grouping, the default group size per backend, resume, the bad-pair
//! policy, progress and cancel, on a small random model.

use crate::common::*;
use patchlab::app::dataset::{
    default_group_size, DatasetObserver, PairOutcome, Plan, RunStats, Runner, GPU_GROUP_SIZE,
};
use patchlab::attribution::run::{analyze_pair, Options};
use patchlab::attribution::{LayerScores, Method, Observer, Pair, Pause, Progress, Quiet};
use patchlab::dataset::Task;
use patchlab::engine::cpu::CpuEngine;
use patchlab::engine::{Component, Engine};
use patchlab::error::{Error, Result};
use patchlab::model::Tokenizer;
use patchlab::report::{MethodKey, Prompts, Report};
use pollster::block_on;

/// Heads only, AP and a few IG steps: every step of the runner, quickly.
fn opts() -> Options {
    Options {
        methods: vec![Method::Ap, Method::Ig],
        components: vec![Component::Heads],
        ig_steps: 4,
        ..Options::default()
    }
}

/// What a run told its observer, in order.
#[derive(Default)]
struct Record {
    plan: Option<Plan>,
    groups: Vec<Vec<usize>>,
    /// (index, "kept" | "computed" | "bad", the report or the error text)
    outcomes: Vec<(usize, &'static str, Option<Report>, String)>,
    progress: Vec<(u64, u64)>,
    /// Pairs (dataset indices) whose partial scores arrived.
    partial: Vec<usize>,
    /// Cancel once this many outcomes have arrived.
    cancel_after: Option<usize>,
    /// Cancel at the first progress of a group's work.
    cancel_inside: bool,
    /// Times the runner asked for a pause (the browser's yield hook).
    pauses: usize,
}

impl Observer for Record {
    fn progress(&mut self, p: &Progress<'_>) -> bool {
        self.progress.push((p.done, p.total));
        let inside = self.cancel_inside && p.stage != "forward";
        let after = self.cancel_after.is_some_and(|n| self.outcomes.len() >= n);
        !(inside || after)
    }

    fn partial(&mut self, s: &LayerScores<'_>) {
        self.partial.push(s.pair);
    }

    fn pause(&mut self) -> Option<Pause<'_>> {
        self.pauses += 1;
        None
    }
}

impl DatasetObserver for Record {
    fn planned(&mut self, plan: &Plan) {
        self.plan = Some(plan.clone());
    }
    fn group(&mut self, g: &[usize]) {
        self.groups.push(g.to_vec());
    }
    fn pair(&mut self, index: usize, outcome: PairOutcome) -> Result<()> {
        self.outcomes.push(match outcome {
            PairOutcome::Kept(r) => (index, "kept", Some(r), String::new()),
            PairOutcome::Computed(r) => (index, "computed", Some(r), String::new()),
            PairOutcome::Bad(e) => (index, "bad", None, e.to_string()),
        });
        Ok(())
    }
}

struct Setup {
    engine: CpuEngine,
    tok: Tokenizer,
    opts: Options,
    pairs: Vec<Prompts>,
}

fn setup(n: usize) -> Setup {
    let tok = load_tokenizer();
    // the pairs of tests/cli.rs's grouped run: fewer (length, first difference) than pairs
    let pairs = Task::Ioi.generate(&tok, n, 5, true).unwrap();
    Setup {
        engine: engine(&spec(2, 4, 64, 1)),
        tok,
        opts: opts(),
        pairs,
    }
}

/// The analysis work (FLOPs, `cost`) of these pairs, each counted alone:
/// a group's count of the same pairs differs by its rounding only.
fn work_of(s: &Setup, pairs: &[usize]) -> u64 {
    let cfg = s.engine.config();
    pairs
        .iter()
        .map(|&i| {
            let p = Pair::from_prompts(&s.tok, cfg, &s.pairs[i]).unwrap();
            s.opts.work(cfg, &[(p.clean.len(), p.first_diff)])
        })
        .sum()
}

fn run(
    s: &Setup,
    group: Option<usize>,
    earlier: impl FnMut(usize) -> Option<Report>,
    obs: &mut Record,
) -> Result<RunStats> {
    let runner = Runner::new(&s.engine, "m", &s.tok, &s.opts, group)?;
    block_on(runner.run(&s.pairs, 0..s.pairs.len(), earlier, obs))
}

fn same_results(a: &Report, b: &Report, what: &str) {
    assert_eq!(a.prompts, b.prompts, "{what}");
    assert_eq!(a.metric.clean, b.metric.clean, "{what}");
    let (x, y) = (&a.results[&MethodKey::Ap], &b.results[&MethodKey::Ap]);
    let (x, y) = (serde_json::to_value(x), serde_json::to_value(y));
    assert_eq!(x.unwrap(), y.unwrap(), "{what}: AP scores");
    assert_eq!(a.analysis.latent, b.analysis.latent, "{what}: latent sets");
}

#[test]
fn pairs_run_in_groups_of_equal_length_and_first_difference() {
    let s = setup(8);
    let mut rec = Record::default();
    let stats = run(&s, Some(3), |_| None, &mut rec).unwrap();
    assert_eq!(stats.computed, 8);
    let plan = rec.plan.clone().unwrap();
    assert_eq!(plan.group_size, 3);
    assert_eq!(plan.backend, "cpu");
    // the page's yield hook reaches the observer from inside every group
    assert!(rec.pauses >= rec.groups.len(), "{} pauses", rec.pauses);
    assert_eq!(plan.groups, rec.groups, "groups run as planned");
    // every pair once, at most 3 per group, one (length, first difference) per group
    let mut seen: Vec<usize> = plan.groups.concat();
    seen.sort_unstable();
    assert_eq!(seen, (0..8).collect::<Vec<_>>());
    let key = |i: usize| {
        let p = Pair::from_prompts(&s.tok, s.engine.config(), &s.pairs[i]).unwrap();
        (p.clean.len(), p.first_diff)
    };
    for g in &plan.groups {
        assert!(!g.is_empty() && g.len() <= 3, "{g:?}");
        assert!(g.iter().all(|&i| key(i) == key(g[0])), "{g:?}");
    }
    assert!(
        plan.groups.iter().any(|g| g.len() > 1),
        "some pairs share a group: {:?}",
        plan.groups
    );
    assert!(plan.groups.windows(2).all(|w| w[0][0] < w[1][0]), "ordered");
    // each computed report is the pair's own analysis, delivered under its index
    assert_eq!(rec.outcomes.len(), 8);
    for (i, kind, r, _) in &rec.outcomes {
        assert_eq!(*kind, "computed");
        let alone = block_on(analyze_pair(
            &s.engine,
            "m",
            &s.tok,
            &s.pairs[*i],
            &s.opts,
            &mut Quiet,
        ))
        .unwrap();
        same_results(r.as_ref().unwrap(), &alone, &format!("pair {i}"));
    }
    // partial results carry dataset indices, of the group in progress
    assert!(!rec.partial.is_empty());
    for &p in &rec.partial {
        assert!(p < 8);
    }
    // progress counts the whole run's work, up to its end
    let total = rec.progress[0].1;
    assert!(total.abs_diff(work_of(&s, &[0, 1, 2, 3, 4, 5, 6, 7])) <= 8);
    assert!(rec.progress.iter().all(|&(_, t)| t == total));
    assert!(
        rec.progress.windows(2).all(|w| w[0].0 <= w[1].0),
        "monotone"
    );
    assert_eq!(rec.progress.last().unwrap().0, total);
}

#[test]
fn the_default_group_size_follows_the_backend() {
    assert_eq!(default_group_size("gpu"), GPU_GROUP_SIZE);
    assert_eq!(default_group_size("cpu"), 1);
    let s = setup(1);
    let cpu = Runner::new(&s.engine, "m", &s.tok, &s.opts, None).unwrap();
    assert_eq!(cpu.group_size(), 1);
    let (_, gpu) = engines(&spec(2, 4, 64, 1));
    let gpu = Runner::new(&gpu, "m", &s.tok, &s.opts, None).unwrap();
    assert_eq!(gpu.group_size(), GPU_GROUP_SIZE);
    let e = Runner::new(&s.engine, "m", &s.tok, &s.opts, Some(0)).err();
    assert!(
        e.unwrap()
            .to_string()
            .contains("--group must be at least 1"),
        "a group of 0 is refused"
    );
    // options no pair can run with are the run's error, before any pair
    let none = Options {
        methods: vec![],
        ..opts()
    };
    assert!(Runner::new(&s.engine, "m", &s.tok, &none, None).is_err());
}

#[test]
fn a_rerun_keeps_the_reports_of_the_same_pairs_and_settings() {
    let s = setup(3);
    let mut first = Record::default();
    run(&s, None, |_| None, &mut first).unwrap();
    let reports: Vec<Report> = first.outcomes.into_iter().map(|o| o.2.unwrap()).collect();
    // all kept: nothing computed, no group run
    let mut again = Record::default();
    let stats = run(&s, None, |i| Some(reports[i].clone()), &mut again).unwrap();
    assert_eq!((stats.kept, stats.computed), (3, 0));
    assert!(again.groups.is_empty());
    assert_eq!(again.plan.unwrap().kept, 3);
    assert!(again.outcomes.iter().all(|o| o.1 == "kept"));
    // one report missing, one of another pair, one of the other settings:
    // only the matching one is kept
    let mut other_pair = reports[0].clone();
    other_pair.prompts = s.pairs[2].clone();
    let earlier = [None, Some(other_pair), Some(reports[2].clone())];
    let mut rec = Record::default();
    let stats = run(&s, None, |i| earlier[i].clone(), &mut rec).unwrap();
    assert_eq!((stats.kept, stats.computed), (1, 2));
    let kinds: Vec<(usize, &str)> = rec.outcomes.iter().map(|o| (o.0, o.1)).collect();
    assert_eq!(kinds, [(2, "kept"), (0, "computed"), (1, "computed")]);
    let other_steps = Setup {
        opts: Options {
            ig_steps: 5,
            ..opts()
        },
        ..setup(3)
    };
    let stats = run(
        &other_steps,
        None,
        |i| Some(reports[i].clone()),
        &mut Record::default(),
    );
    assert_eq!(
        stats.unwrap().kept,
        0,
        "reports of other settings are recomputed"
    );
    let runner = Runner::new(&s.engine, "other model", &s.tok, &s.opts, None).unwrap();
    assert!(!runner.reusable(&s.pairs[0], &reports[0]), "another model");
}

#[test]
fn a_bad_pair_is_reported_and_the_run_goes_on() {
    let mut s = setup(4);
    // valid for the tokenizer, but longer than the model's 64-token context
    s.pairs[1].clean = s.pairs[1].clean.repeat(8);
    s.pairs[1].corrupt = s.pairs[1].corrupt.repeat(8);
    // nothing to patch
    s.pairs[2].corrupt = s.pairs[2].clean.clone();
    let mut rec = Record::default();
    let stats = run(&s, Some(2), |_| None, &mut rec).unwrap();
    assert_eq!(stats.bad, [1, 2]);
    assert_eq!(stats.computed, 2);
    assert_eq!(rec.plan.as_ref().unwrap().bad, 2);
    let bad: Vec<&str> = rec
        .outcomes
        .iter()
        .filter(|o| o.1 == "bad")
        .map(|o| o.3.as_str())
        .collect();
    assert_eq!(bad.len(), 2);
    assert!(bad[0].contains("context"), "{}", bad[0]);
    assert!(bad[1].contains("nothing to patch"), "{}", bad[1]);
    let computed: Vec<usize> = rec
        .outcomes
        .iter()
        .filter(|o| o.1 == "computed")
        .map(|o| o.0)
        .collect();
    assert_eq!(computed, [0, 3]);
    // progress counts only the pairs there is work for
    let total = rec.progress[0].1;
    assert!(total.abs_diff(work_of(&s, &[0, 3])) <= 2);
    assert_eq!(*rec.progress.last().unwrap(), (total, total));
}

#[test]
fn cancel_stops_between_groups_or_inside_one_and_keeps_what_was_delivered() {
    let s = setup(4);
    let mut rec = Record {
        cancel_after: Some(2),
        ..Record::default()
    };
    let e = run(&s, None, |_| None, &mut rec).unwrap_err();
    assert!(matches!(e, Error::Cancelled), "{e}");
    assert_eq!(rec.groups.len(), 2, "no group starts after the cancel");
    let done: Vec<usize> = rec.outcomes.iter().map(|o| o.0).collect();
    assert_eq!(done, [0, 1]);

    let mut rec = Record {
        cancel_inside: true,
        ..Record::default()
    };
    let e = run(&s, Some(4), |_| None, &mut rec).unwrap_err();
    assert!(matches!(e, Error::Cancelled), "{e}");
    assert_eq!(rec.groups.len(), 1);
    assert!(
        rec.outcomes.is_empty(),
        "the cancelled group delivers nothing"
    );
}
