//! `Lab.run_dataset`: the page's Dataset tab runs the crate's dataset runner
//! ([`crate::app::dataset`], the one `patchlab batch` uses), with every
//! pair's outcome streamed to JavaScript as it arrives.

use super::{js_err, parse_reports, Backend, Inner, JsObserver, Lab, Pausing, Request};
use crate::app::dataset::{DatasetObserver, PairOutcome, Plan, RunStats, Runner};
use crate::attribution::run::Options;
use crate::attribution::{LayerScores, Observer, Progress};
use crate::engine::Engine;
use crate::error::Result;
use crate::report::{Prompts, Report};
use js_sys::{Function, Promise};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// Forwards a run's events to `on_event(kind, index, text)`.
struct JsDataset {
    progress: JsObserver,
    on_event: Option<Function>,
    backend: &'static str,
    note: Option<String>,
}

impl JsDataset {
    fn event(&self, kind: &str, index: Option<usize>, text: &str) {
        if let Some(f) = &self.on_event {
            let index = index.map_or(JsValue::NULL, |i| JsValue::from_f64(i as f64));
            let _ = f.call3(
                &JsValue::NULL,
                &JsValue::from_str(kind),
                &index,
                &JsValue::from_str(text),
            );
        }
    }
}

impl Observer for JsDataset {
    fn progress(&mut self, p: &Progress<'_>) -> bool {
        self.progress.progress(p)
    }

    fn partial(&mut self, s: &LayerScores<'_>) {
        self.progress.partial(s);
    }
}

#[derive(Serialize)]
struct PlanOut<'a> {
    groups: &'a [Vec<usize>],
    kept: usize,
    bad: usize,
    group_size: usize,
    backend: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'a str>,
}

#[derive(Serialize)]
struct RunOut<'a> {
    computed: usize,
    kept: usize,
    bad: &'a [usize],
    backend: &'static str,
}

impl DatasetObserver for JsDataset {
    fn planned(&mut self, plan: &Plan) {
        let out = PlanOut {
            groups: &plan.groups,
            kept: plan.kept,
            bad: plan.bad,
            group_size: plan.group_size,
            backend: self.backend,
            note: self.note.as_deref(),
        };
        self.event("plan", None, &serde_json::to_string(&out).expect("json"));
    }

    fn group(&mut self, group: &[usize]) {
        self.event("group", None, &serde_json::to_string(group).expect("json"));
    }

    fn pair(&mut self, index: usize, outcome: PairOutcome) -> Result<()> {
        match outcome {
            PairOutcome::Computed(r) => self.event("pair", Some(index), &r.to_json()),
            // the caller has these reports already
            PairOutcome::Kept(_) => self.event("kept", Some(index), ""),
            PairOutcome::Bad(e) => self.event("bad", Some(index), &e.to_string()),
        }
        Ok(())
    }
}

/// A run on one engine (the engine made to pause by the caller).
async fn run_on<E: Engine>(
    e: &E,
    inner: &Inner,
    pairs: &[Prompts],
    opts: &Options,
    group: Option<usize>,
    mut earlier: Vec<Option<Report>>,
    obs: &mut JsDataset,
) -> Result<RunStats> {
    let runner = Runner::new(e, &inner.name, &inner.tokenizer, opts, group)?;
    let take = |i: usize| earlier.get_mut(i).and_then(Option::take);
    runner.run(pairs, 0..pairs.len(), take, obs).await
}

#[wasm_bindgen]
impl Lab {
    /// Runs a whole dataset through the crate's dataset runner (the one of
    /// `patchlab batch`) and resolves to JSON `{computed, kept, bad: [index],
    /// backend}`.
    ///
    /// - `request`: JSON as `analyze_group`'s (`pairs`, the options, `backend`).
    /// - `group`: pairs per group; by default 16 on WebGPU, 1 on the CPU.
    /// - `reports_json`: reports of an earlier run (a JSON array in dataset
    ///   order, null for a pair without one): a pair whose report has the
    ///   same prompts, model and settings is kept, not computed again.
    /// - `on_progress(stage, done, total)`: work over the whole run;
    ///   returning `false` cancels (between groups or inside one) and the
    ///   promise rejects with "cancelled".
    /// - `on_event(kind, index, text)`: "plan" (text: JSON `{groups, kept,
    ///   bad, group_size, backend, note?}`, before any work), "group" (text:
    ///   JSON of the indices that start now), "pair" (text: the report JSON),
    ///   "kept" (an earlier report stands), "bad" (text: why the pair could
    ///   not be analysed; the run goes on).
    /// - `pause`: as in `analyze`.
    pub fn run_dataset(
        &self,
        request: &str,
        group: Option<usize>,
        reports_json: Option<String>,
        on_progress: Option<Function>,
        on_event: Option<Function>,
        pause: Option<Function>,
    ) -> Promise {
        let inner = self.inner.clone();
        let request = request.to_string();
        future_to_promise(async move {
            let req = Request::parse(&request, "run_dataset").map_err(js_err)?;
            let pairs = req.pairs().map_err(js_err)?;
            let opts = req.options().map_err(js_err)?;
            let mut earlier: Vec<Option<Report>> = vec![None; pairs.len()];
            if let Some(json) = reports_json {
                for (i, r) in parse_reports(&json).map_err(js_err)? {
                    if let Some(slot) = earlier.get_mut(i) {
                        *slot = Some(r);
                    }
                }
            }
            let (backend, note) = inner
                .backend(req.backend.as_deref().unwrap_or("auto"))
                .await
                .map_err(js_err)?;
            let mut obs = JsDataset {
                progress: JsObserver {
                    on_progress,
                    on_partial: None,
                },
                on_event,
                backend: match backend {
                    Backend::Cpu(_) => "cpu",
                    Backend::Gpu(_) => "gpu",
                },
                note,
            };
            if let Some(note) = obs.note.clone() {
                // say so in the progress, as `analyze` does
                obs.progress(&Progress {
                    stage: &note,
                    done: 0,
                    total: 0,
                });
            }
            let stats = match backend {
                Backend::Cpu(e) => {
                    let e = Pausing::new(e, pause);
                    run_on(&e, &inner, pairs, &opts, group, earlier, &mut obs).await
                }
                Backend::Gpu(e) => {
                    let e = Pausing::new(&*e, pause);
                    run_on(&e, &inner, pairs, &opts, group, earlier, &mut obs).await
                }
            }
            .map_err(js_err)?;
            let out = RunOut {
                computed: stats.computed,
                kept: stats.kept,
                bad: &stats.bad,
                backend: obs.backend,
            };
            Ok(JsValue::from_str(
                &serde_json::to_string(&out).expect("json"),
            ))
        })
    }
}
