//! `Lab.run_dataset`: the page's Dataset tab runs the crate's dataset runner
//! ([`crate::app::dataset`], the one `patchlab batch` uses), with every
//! pair's outcome streamed to JavaScript as it arrives.

use super::lab::Lab;
use super::observer::JsObserver;
use super::reports::parse_reports;
use super::{from_js, js_err, json};
use crate::app::dataset::{DatasetObserver, PairOutcome, Plan};
use crate::app::AnalyzeRequest;
use crate::attribution::{LayerScores, Observer, Pause, Progress};
use crate::error::Result;
use crate::report::Report;
use js_sys::{Function, Promise};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// Forwards a run's events to `on_event(kind, index, text)`, its progress
/// and pauses to a [`JsObserver`].
struct JsDataset {
    progress: JsObserver,
    on_event: Option<Function>,
    /// The engine that computes, once the plan says.
    backend: Option<&'static str>,
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

    fn pause(&mut self) -> Option<Pause<'_>> {
        self.progress.pause()
    }
}

impl DatasetObserver for JsDataset {
    fn planned(&mut self, plan: &Plan) {
        self.backend = Some(plan.backend);
        self.event("plan", None, &json(&PlanOut::from(plan)));
    }

    fn group(&mut self, group: &[usize]) {
        self.event("group", None, &json(group));
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

#[derive(Serialize)]
struct PlanOut<'a> {
    groups: &'a [Vec<usize>],
    kept: usize,
    bad: usize,
    group_size: usize,
    backend: &'static str,
}

impl<'a> From<&'a Plan> for PlanOut<'a> {
    fn from(p: &'a Plan) -> Self {
        PlanOut {
            groups: &p.groups,
            kept: p.kept,
            bad: p.bad,
            group_size: p.group_size,
            backend: p.backend,
        }
    }
}

#[derive(Serialize)]
struct RunOut<'a> {
    computed: usize,
    kept: usize,
    bad: &'a [usize],
    backend: Option<&'static str>,
}

#[wasm_bindgen]
impl Lab {
    /// Runs a whole dataset through the crate's dataset runner (the one of
    /// `patchlab batch`) and resolves to JSON `{computed, kept, bad: [index], backend}`.
    ///
    /// - `request`: as `analyze_group`'s (`pairs`, the options, `backend`).
    /// - `group`: pairs per group; by default 16 on WebGPU, 1 on the CPU.
    /// - `reports_json`: reports of an earlier run (a JSON array in dataset
    ///   order, null for a pair without one): a pair whose report has the
    ///   same prompts, model and settings is kept, not computed again.
    /// - `on_progress(stage, done, total)`: work over the whole run;
    ///   returning `false` cancels (between groups or inside one) and the
    ///   promise rejects with "cancelled".
    /// - `on_event(kind, index, text)`: "plan" (text: JSON `{groups, kept,
    ///   bad, group_size, backend}`, before any work), "group" (text: JSON of
    ///   the indices that start now), "pair" (text: the report JSON), "kept"
    ///   (an earlier report stands), "bad" (text: why the pair could not be
    ///   analysed; the run goes on).
    /// - `pause`: as in `analyze`.
    pub fn run_dataset(
        &self,
        request: JsValue,
        group: Option<usize>,
        reports_json: Option<String>,
        on_progress: Option<Function>,
        on_event: Option<Function>,
        pause: Option<Function>,
    ) -> Promise {
        let session = self.session.clone();
        future_to_promise(async move {
            let req: AnalyzeRequest = from_js(request, "bad run_dataset request")?;
            let n = req.pairs().map_err(js_err)?.len();
            let mut earlier: Vec<Option<Report>> = vec![None; n];
            if let Some(text) = reports_json {
                for (i, r) in parse_reports(&text).map_err(js_err)? {
                    if let Some(slot) = earlier.get_mut(i) {
                        *slot = Some(r);
                    }
                }
            }
            let mut obs = JsDataset {
                progress: JsObserver::new(on_progress, None, pause),
                on_event,
                backend: None,
            };
            let stats = session
                .run_dataset(&req, group, earlier, &mut obs)
                .await
                .map_err(js_err)?;
            Ok(JsValue::from_str(&json(&RunOut {
                computed: stats.computed,
                kept: stats.kept,
                bad: &stats.bad,
                backend: obs.backend,
            })))
        })
    }
}
