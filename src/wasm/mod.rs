//! WebAssembly bindings for the browser lab (`www/worker.js` is their one
//! caller; `www/patchlab.js` is the public JavaScript API built on them).
//!
//! - [`WeightStreamJs`] (`WeightStream` in JavaScript): the worker pushes
//!   `model.safetensors` into it chunk by chunk as it downloads, and each
//!   chunk is decoded straight into the model's tensors, so the file is never
//!   held whole, in JavaScript or in wasm, next to the weights.
//! - [`Lab`]: a loaded model with its engines; `tokenize`, `predict` (the top
//!   next tokens of one prompt) and `analyze` (the whole report of a pair, as
//!   `patchlab analyze --out -` writes it). Requests pick a backend: "cpu",
//!   "gpu" (WebGPU) or "auto" (WebGPU where the browser has `navigator.gpu`).
//!   The WebGPU engine starts on first use from a temporary copy of the CPU
//!   engine's weights; if it cannot start, the CPU computes instead, a
//!   progress stage says why, and the report's `backend` says "cpu".
//!   Datasets: `generate_dataset` (a seeded task), `import_pairs` (a CSV or
//!   JSONL file, bad rows listed by line) and `ablate` (the clean metric with
//!   heads / neurons mean-ablated to the pair's corrupt activations).
//! - [`summarize`]: the dataset tables of per-pair reports, exactly as
//!   `patchlab batch` writes summary.json; [`task_names`]: the generators.
//!
//! Errors reach JavaScript as `Error`s whose message is the crate's text.
//! Requests and results cross the boundary as JSON strings: one format for
//! the CLI, the page and exported files.

mod checks;
mod dataset;

use crate::attribution::ablation::{ablate_dataset, AblationSet, MeanActivations};
use crate::attribution::quadrature::Rule;
use crate::attribution::run::{analyze_group, share_groups, Options};
use crate::attribution::{
    parse_component, Direction, LayerScores, Method, Observer, Pair, Progress,
};
use crate::clock::now_ms;
use crate::dataset::{Format, Task};
use crate::engine::cpu::CpuEngine;
use crate::engine::gpu::{GpuEngine, GpuOptions};
use crate::engine::{Array, Component, Engine, Metric, PathGrads, Replacement, Site, SweepPair};
use crate::error::{Error, Result};
use crate::model::{Config, Model, Tokenizer, WeightStream};
use crate::report::summary::{summarize as summarize_reports, DatasetInfo};
use crate::report::{Prompts, Report};
use js_sys::{Float32Array, Function, Promise};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Range;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

fn js_err(e: Error) -> JsValue {
    JsError::new(&e.to_string()).into()
}

/// A `model.safetensors` on its way into wasm memory (`WeightStream` in
/// JavaScript): made from the file's header and the model's config.json, it
/// decodes each chunk pushed into the model's f32 tensors at once, so the
/// file's bytes are never held whole (one copy of the weights, not two);
/// [`Lab::load_streamed`] takes it when the whole file has arrived.
#[wasm_bindgen(js_name = WeightStream)]
pub struct WeightStreamJs {
    inner: WeightStream,
}

#[wasm_bindgen(js_class = WeightStream)]
impl WeightStreamJs {
    /// How many bytes the header takes (its 8-byte length included) by the
    /// file's first 8 bytes.
    #[wasm_bindgen(js_name = headerSize)]
    pub fn header_size(prefix: &[u8]) -> std::result::Result<usize, JsValue> {
        WeightStream::header_size(prefix).map_err(js_err)
    }

    /// A stream for the model of `config_json` from the start of its file:
    /// `head` holds at least the whole header (`headerSize` bytes); bytes
    /// after it count as pushed. Fails on a header that is not a checkpoint
    /// of this model, or when memory for the weights runs out.
    #[wasm_bindgen(constructor)]
    pub fn new(config_json: &str, head: &[u8]) -> std::result::Result<WeightStreamJs, JsValue> {
        let config = Config::from_json(config_json).map_err(js_err)?;
        Ok(WeightStreamJs {
            inner: WeightStream::new(&config, head).map_err(js_err)?,
        })
    }

    /// Takes the next bytes of the file (a chunk of any size).
    pub fn push(&mut self, chunk: &[u8]) -> std::result::Result<(), JsValue> {
        self.inner.push(chunk).map_err(js_err)
    }

    /// Bytes of the file received so far, header included.
    #[wasm_bindgen(getter)]
    pub fn received(&self) -> usize {
        self.inner.received()
    }

    /// The file's size by its header.
    #[wasm_bindgen(getter)]
    pub fn expected(&self) -> usize {
        self.inner.expected()
    }
}

/// The engine one request computes on.
enum Backend<'a> {
    Cpu(&'a CpuEngine),
    Gpu(Rc<GpuEngine>),
}

/// The WebGPU engine of a lab: started on the first request that wants it,
/// then kept (or its failure remembered, so that it is tried only once); a
/// lost device is started anew on the next request.
enum GpuState {
    Untried,
    Starting,
    Ready(Rc<GpuEngine>),
    Failed(String),
}

struct Inner {
    name: String,
    config: Config,
    tokenizer: Tokenizer,
    cpu: CpuEngine,
    gpu: RefCell<GpuState>,
}

/// Whether this browser context offers WebGPU (`navigator.gpu`, also in workers).
fn has_webgpu() -> bool {
    let global = js_sys::global();
    let Ok(nav) = js_sys::Reflect::get(&global, &JsValue::from_str("navigator")) else {
        return false;
    };
    if nav.is_undefined() || nav.is_null() {
        return false;
    }
    js_sys::Reflect::get(&nav, &JsValue::from_str("gpu"))
        .map(|g| !g.is_undefined() && !g.is_null())
        .unwrap_or(false)
}

impl Inner {
    /// The engine for a requested backend: "auto" (WebGPU where the browser
    /// has it, else the CPU), "cpu" or "gpu". When the WebGPU engine cannot
    /// start, the CPU engine computes instead and the second value says why.
    async fn backend(&self, choice: &str) -> Result<(Backend<'_>, Option<String>)> {
        let want_gpu = match choice {
            "" | "auto" => has_webgpu(),
            "cpu" => false,
            "gpu" | "webgpu" => true,
            other => {
                return Err(Error::Input(format!(
                    "unknown backend {other:?}; choose auto, cpu or gpu"
                )))
            }
        };
        if !want_gpu {
            return Ok((Backend::Cpu(&self.cpu), None));
        }
        // a lost device (driver reset, the browser reclaiming it): start anew
        if matches!(&*self.gpu.borrow(), GpuState::Ready(e) if e.is_lost()) {
            *self.gpu.borrow_mut() = GpuState::Untried;
        }
        let state = std::mem::replace(&mut *self.gpu.borrow_mut(), GpuState::Starting);
        let (state, out) = match state {
            GpuState::Ready(e) => (GpuState::Ready(e.clone()), Ok(e)),
            GpuState::Failed(why) => (GpuState::Failed(why.clone()), Err(why)),
            // another request is starting it: this one computes on the CPU
            GpuState::Starting => {
                return Ok((
                    Backend::Cpu(&self.cpu),
                    Some("the WebGPU engine is still starting; computing on the CPU".into()),
                ))
            }
            GpuState::Untried => match self.start_gpu().await {
                Ok(e) => {
                    let e = Rc::new(e);
                    (GpuState::Ready(e.clone()), Ok(e))
                }
                Err(e) => {
                    let why = e.to_string();
                    (GpuState::Failed(why.clone()), Err(why))
                }
            },
        };
        *self.gpu.borrow_mut() = state;
        Ok(match out {
            Ok(e) => (Backend::Gpu(e), None),
            Err(why) => (
                Backend::Cpu(&self.cpu),
                Some(format!(
                    "WebGPU is unavailable ({why}); computing on the CPU"
                )),
            ),
        })
    }

    /// Starts the WebGPU engine from the CPU engine's tensors, uploaded a
    /// tensor or a layer at a time (no second host copy of the model).
    async fn start_gpu(&self) -> Result<GpuEngine> {
        GpuEngine::from_source(self.config.clone(), &self.cpu, GpuOptions::default()).await
    }

    /// The backends this build offers.
    fn backends(&self) -> Vec<&'static str> {
        vec!["cpu", "gpu"]
    }

    /// The analysis of a group of pairs (one pair for `analyze`) on the
    /// request's backend, the event loop let in between engine calls.
    async fn analyze(
        &self,
        req: &Request,
        pairs: &[Prompts],
        mut obs: JsObserver,
        pause: Option<Function>,
    ) -> Result<Vec<Report>> {
        let opts = req.options()?;
        let (backend, note) = self
            .backend(req.backend.as_deref().unwrap_or("auto"))
            .await?;
        if let Some(note) = note {
            // say so in the progress (stage text, nothing done yet)
            obs.progress(&Progress {
                stage: &note,
                done: 0,
                total: 0,
            });
        }
        let (name, tok) = (&self.name, &self.tokenizer);
        match backend {
            Backend::Cpu(e) => {
                let e = Pausing::new(e, pause);
                analyze_group(&e, name, tok, pairs, &opts, &mut obs).await
            }
            Backend::Gpu(e) => {
                let e = Pausing::new(&*e, pause);
                analyze_group(&e, name, tok, pairs, &opts, &mut obs).await
            }
        }
    }
}

/// A loaded model and its engines.
#[wasm_bindgen]
pub struct Lab {
    inner: Rc<Inner>,
}

/// What `Lab.analyze` (one pair: clean, corrupt, correct, incorrect, bos,
/// metric) and `Lab.analyze_group` (`pairs`) accept (JSON). Field names match
/// `PatchLab.analyze`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Request {
    #[serde(default)]
    clean: Option<String>,
    #[serde(default)]
    corrupt: Option<String>,
    #[serde(default)]
    correct: Option<String>,
    #[serde(default)]
    incorrect: Option<String>,
    #[serde(default)]
    pairs: Option<Vec<Prompts>>,
    #[serde(default)]
    methods: Option<Vec<String>>,
    #[serde(default)]
    directions: Option<Vec<String>>,
    #[serde(default)]
    components: Option<Vec<String>>,
    #[serde(default)]
    bos: Option<bool>,
    #[serde(default)]
    ig_steps: Option<usize>,
    #[serde(default)]
    ig_rule: Option<String>,
    #[serde(default)]
    percentile: Option<f64>,
    #[serde(default)]
    backend: Option<String>,
    /// "logit_diff" (default) or "greater_than:YY".
    #[serde(default)]
    metric: Option<String>,
}

impl Request {
    fn parse(json: &str, what: &str) -> Result<Request> {
        serde_json::from_str(json).map_err(|e| Error::Input(format!("bad {what} request: {e}")))
    }

    /// The one pair of an `analyze` request.
    fn prompts(&self) -> Result<Prompts> {
        let field = |v: &Option<String>, name: &str| {
            v.clone()
                .ok_or_else(|| Error::Input(format!("bad analyze request: missing field `{name}`")))
        };
        if self.pairs.is_some() {
            return Err(Error::Input(
                "bad analyze request: `pairs` is for analyze_group".into(),
            ));
        }
        Ok(Prompts {
            clean: field(&self.clean, "clean")?,
            corrupt: field(&self.corrupt, "corrupt")?,
            correct: field(&self.correct, "correct")?,
            incorrect: field(&self.incorrect, "incorrect")?,
            bos: self.bos.unwrap_or(true),
            metric: self.metric.clone().unwrap_or_else(|| "logit_diff".into()),
        })
    }

    /// The pairs of an `analyze_group` request.
    fn pairs(&self) -> Result<&[Prompts]> {
        let single = [&self.clean, &self.corrupt, &self.correct, &self.incorrect];
        if single.iter().any(|x| x.is_some()) || self.bos.is_some() || self.metric.is_some() {
            return Err(Error::Input(
                "bad analyze_group request: give each pair's prompts, bos and metric in `pairs`"
                    .into(),
            ));
        }
        self.pairs
            .as_deref()
            .ok_or_else(|| Error::Input("bad analyze_group request: missing field `pairs`".into()))
    }

    fn options(&self) -> Result<Options> {
        let d = Options::default();
        fn list<T>(
            v: &Option<Vec<String>>,
            all: Vec<T>,
            p: fn(&str) -> Result<T>,
        ) -> Result<Vec<T>> {
            match v {
                None => Ok(all),
                Some(v) => v.iter().map(|s| p(s)).collect(),
            }
        }
        Ok(Options {
            methods: list(&self.methods, d.methods.clone(), Method::parse)?,
            directions: list(&self.directions, d.directions.clone(), Direction::parse)?,
            components: list(&self.components, d.components.clone(), parse_component)?,
            ig_steps: self.ig_steps.unwrap_or(d.ig_steps),
            ig_rule: match &self.ig_rule {
                Some(r) => Rule::parse(r)?,
                None => d.ig_rule,
            },
            percentile: self.percentile.unwrap_or(d.percentile),
            ..d
        })
    }
}

/// What `Lab.ablate` accepts (JSON): a pair and the components to hold at
/// the pair's corrupt activations.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AblateRequest {
    clean: String,
    corrupt: String,
    correct: String,
    incorrect: String,
    #[serde(default)]
    bos: Option<bool>,
    #[serde(default)]
    metric: Option<String>,
    /// [[layer, head]].
    #[serde(default)]
    heads: Vec<[usize; 2]>,
    /// [[layer, neuron]].
    #[serde(default)]
    neurons: Vec<[usize; 2]>,
    #[serde(default)]
    backend: Option<String>,
}

#[derive(Serialize)]
struct AblateOut {
    metric_clean: f32,
    metric_corrupt: f32,
    metric_ablated: f32,
    /// The engine that computed the three metrics: "cpu" or "gpu".
    backend: &'static str,
    /// Why the CPU computed instead of the GPU, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Serialize)]
struct BadRowOut<'a> {
    line: usize,
    reason: &'a str,
}

#[derive(Serialize)]
struct ImportOut<'a> {
    pairs: &'a [Prompts],
    bad: Vec<BadRowOut<'a>>,
}

/// The clean, corrupt and ablated metrics of a pair on one engine: the
/// same computation as [`crate::attribution::ablation::ablate_pair`], with
/// the corrupt run it needs for the mean also giving the corrupt metric.
async fn ablate_on<E: Engine>(
    e: &E,
    pair: &Pair,
    components: &BTreeMap<Component, Vec<[usize; 2]>>,
) -> Result<(f32, f32, f32)> {
    let clean = e.run(&pair.clean, &pair.metric).await?;
    let m_clean = e.metric(&clean);
    drop(clean);
    let corrupt = e.run(&pair.corrupt, &pair.metric).await?;
    let m_corrupt = e.metric(&corrupt);
    let mut means = MeanActivations::default();
    means.add(e, &corrupt, pair.corrupt.len()).await?;
    drop(corrupt);
    let reps = means.replacements(e.config(), pair.clean.len(), components)?;
    let m_ablated = e
        .metric_with_replacements(&pair.clean, &pair.metric, &reps)
        .await?;
    Ok((m_clean, m_corrupt, m_ablated))
}

/// A seed from JavaScript (a number): a non-negative integer below 2^53.
fn seed_of(seed: f64) -> Result<u64> {
    if seed.is_finite() && seed >= 0.0 && seed.fract() == 0.0 && seed < 9007199254740992.0 {
        Ok(seed as u64)
    } else {
        Err(Error::Input(format!(
            "the seed must be a whole number from 0 to 2^53 − 1, not {seed}"
        )))
    }
}

/// The names of the generated tasks (`ioi`, `ioi-third`, …), as JSON.
#[wasm_bindgen]
pub fn task_names() -> String {
    serde_json::to_string(&Task::ALL.map(Task::name)).expect("json")
}

/// The dataset summary of per-pair reports, exactly as `patchlab batch`
/// writes `summary.json`.
///
/// - `reports_json`: a JSON array of reports (as `Lab.analyze` returns them)
///   in dataset order; `null` marks a pair without a report (not run yet,
///   cancelled, failed), which the summary lists under `missing`. The score
///   maps (`results`) are not needed and may be left out.
/// - `source`: "task:ioi", "file:pairs.csv", …; `seed`: the generator's seed
///   (tasks only); `total`: pairs in the whole dataset.
/// - `include_small_gap`: count pairs with a `small_gap` warning in the
///   correlations and overlaps (left out by default, as `patchlab batch`).
#[wasm_bindgen]
pub fn summarize(
    reports_json: &str,
    source: &str,
    seed: Option<f64>,
    total: usize,
    include_small_gap: Option<bool>,
) -> std::result::Result<String, JsValue> {
    let reports = parse_reports(reports_json).map_err(js_err)?;
    let info = DatasetInfo {
        source: source.to_string(),
        seed: seed.map(seed_of).transpose().map_err(js_err)?,
        total,
    };
    Ok(
        summarize_reports(info, &reports, include_small_gap.unwrap_or(false))
            .map_err(js_err)?
            .to_json(),
    )
}

/// A saved report (any schema this build reads) as this schema's JSON: a
/// schema-1 report gets its IG*, analysis and warnings derived from its
/// scores (`Report::from_json`). Needs no model, so results-only embeds
/// render old exports too.
#[wasm_bindgen]
pub fn upgrade_report(report_json: &str) -> std::result::Result<String, JsValue> {
    Ok(Report::from_json(report_json).map_err(js_err)?.to_json())
}

/// (dataset index, report) of a JSON array of reports in dataset order, where
/// null marks a pair without one; the score maps (`results`) may be left out.
fn parse_reports(reports_json: &str) -> Result<Vec<(usize, Report)>> {
    let values: Vec<serde_json::Value> = serde_json::from_str(reports_json)
        .map_err(|e| Error::Input(format!("not an array of reports: {e}")))?;
    let mut reports = Vec::with_capacity(values.len());
    for (i, mut v) in values.into_iter().enumerate() {
        if v.is_null() {
            continue;
        }
        let old = v.get("schema").and_then(|s| s.as_u64()) == Some(1);
        if old
            && v.get("results")
                .is_none_or(|r| r.as_object().is_none_or(|o| o.is_empty()))
        {
            return Err(Error::Input(format!(
                "pair {i} is a schema-1 report without its score maps: its analysis is derived from them, so pass the whole report"
            )));
        }
        if let Some(o) = v.as_object_mut() {
            o.entry("results").or_insert_with(|| serde_json::json!({}));
        }
        // a schema-1 report is brought up to date from its scores
        let r: Report = if old {
            Report::from_json(&v.to_string())
        } else {
            serde_json::from_value(v).map_err(|e| Error::Input(e.to_string()))
        }
        .map_err(|e| Error::Input(format!("pair {i} is not a patchlab report: {e}")))?;
        reports.push((i, r));
    }
    Ok(reports)
}

/// A dataset as a CSV file that `import_pairs` and `patchlab batch --file`
/// read back (`pairs_json`: a JSON array of prompts).
/// Checks a model's `config.json` before anything else is downloaded: it
/// must describe a GPT-2-family model whose weights fit in this tab's
/// WebAssembly memory (`check_fits_in_browser`); otherwise an error with
/// the sizes, and no 500 MB download ends in an out-of-memory failure.
#[wasm_bindgen]
pub fn check_config(config_json: &str) -> std::result::Result<(), JsValue> {
    let config = Config::from_json(config_json).map_err(js_err)?;
    crate::model::check_fits_in_browser(&config).map_err(js_err)
}

#[wasm_bindgen]
pub fn pairs_csv(pairs_json: &str) -> std::result::Result<String, JsValue> {
    let pairs: Vec<Prompts> = serde_json::from_str(pairs_json)
        .map_err(|e| js_err(Error::Input(format!("not an array of pairs: {e}"))))?;
    Ok(crate::dataset::to_csv(&pairs))
}

#[derive(Serialize)]
struct ModelInfoOut<'a> {
    name: &'a str,
    n_layers: usize,
    n_heads: usize,
    d_model: usize,
    d_head: usize,
    d_mlp: usize,
    n_ctx: usize,
    d_vocab: usize,
    backends: Vec<&'static str>,
}

#[derive(Serialize)]
struct PredictionOut {
    id: u32,
    text: String,
    logit: f32,
    prob: f32,
}

#[wasm_bindgen]
impl Lab {
    /// Loads a checkpoint whose `model.safetensors` went through `weights`
    /// (made with its `config.json`; consumed), with either `tokenizer.json`
    /// or `vocab.json` + `merges.txt`. Fails if the stream did not receive
    /// the whole file.
    pub fn load_streamed(
        name: &str,
        weights: WeightStreamJs,
        tokenizer_json: Option<String>,
        vocab_json: Option<String>,
        merges_txt: Option<String>,
    ) -> std::result::Result<Lab, JsValue> {
        let vm = match (vocab_json.as_deref(), merges_txt.as_deref()) {
            (Some(v), Some(m)) => Some((v, m)),
            _ => None,
        };
        let model = Model::from_stream(name, weights.inner, tokenizer_json.as_deref(), vm)
            .map_err(js_err)?;
        let Model {
            name,
            config,
            weights,
            tokenizer,
        } = model;
        // the engine takes the tensors' memory over: still one copy
        let cpu = CpuEngine::new(config.clone(), weights).map_err(js_err)?;
        Ok(Lab {
            inner: Rc::new(Inner {
                name,
                config,
                tokenizer,
                cpu,
                gpu: RefCell::new(GpuState::Untried),
            }),
        })
    }

    /// The model's name and shape, and the backends this build offers (JSON).
    pub fn info(&self) -> String {
        let c = &self.inner.config;
        serde_json::to_string(&ModelInfoOut {
            name: &self.inner.name,
            n_layers: c.n_layers,
            n_heads: c.n_heads,
            d_model: c.d_model,
            d_head: c.d_head,
            d_mlp: c.d_mlp,
            n_ctx: c.n_ctx,
            d_vocab: c.d_vocab,
            backends: self.inner.backends(),
        })
        .expect("json")
    }

    /// Tokens of `text` as JSON `[{"id", "text"}]`, BOS first when `bos`.
    pub fn tokenize(&self, text: &str, bos: bool) -> std::result::Result<String, JsValue> {
        let t = &self.inner.tokenizer;
        let ids = t.encode(text, bos).map_err(js_err)?;
        Ok(serde_json::to_string(&t.tokens(&ids)).expect("json"))
    }

    /// The `k` most likely next tokens after `text` (JSON
    /// `[{"id", "text", "logit", "prob"}]`), as the report's predictions.
    pub fn predict(&self, text: &str, bos: bool, k: usize, backend: Option<String>) -> Promise {
        let inner = self.inner.clone();
        let text = text.to_string();
        future_to_promise(async move {
            let ids = inner.tokenizer.encode(&text, bos).map_err(js_err)?;
            let (engine, _) = inner
                .backend(backend.as_deref().unwrap_or("auto"))
                .await
                .map_err(js_err)?;
            let logits = match engine {
                Backend::Cpu(e) => last_logits(e, &ids).await,
                Backend::Gpu(e) => last_logits(&*e, &ids).await,
            }
            .map_err(js_err)?;
            Ok(JsValue::from_str(&top_k_json(&inner.tokenizer, &logits, k)))
        })
    }

    /// `n` pairs of a generated task (`task_names()`), the same for the same
    /// seed: a JSON array of prompts `{clean, corrupt, correct, incorrect,
    /// bos, metric}`, each checked with this model's tokenizer.
    pub fn generate_dataset(
        &self,
        task: &str,
        n: usize,
        seed: f64,
        bos: bool,
    ) -> std::result::Result<String, JsValue> {
        let task = Task::from_name(task).map_err(js_err)?;
        if n == 0 {
            return Err(js_err(Error::Input("ask for at least one pair".into())));
        }
        let seed = seed_of(seed).map_err(js_err)?;
        let pairs = task
            .generate(&self.inner.tokenizer, n, seed, bos)
            .map_err(js_err)?;
        Ok(serde_json::to_string(&pairs).expect("json"))
    }

    /// Reads a pair file (`filename` ends in .csv or .jsonl and says which):
    /// JSON `{"pairs": [prompts], "bad": [{"line", "reason"}]}`. Bad rows are
    /// listed, never dropped silently; a file without valid rows is an error.
    pub fn import_pairs(
        &self,
        text: &str,
        filename: &str,
        bos: bool,
    ) -> std::result::Result<String, JsValue> {
        let format = Format::from_path(filename).map_err(js_err)?;
        let r = crate::dataset::import(text, format, &self.inner.tokenizer, bos).map_err(js_err)?;
        let out = ImportOut {
            pairs: &r.pairs,
            bad: r
                .bad
                .iter()
                .map(|b| BadRowOut {
                    line: b.line,
                    reason: &b.reason,
                })
                .collect(),
        };
        Ok(serde_json::to_string(&out).expect("json"))
    }

    /// The clean metric with heads and neurons mean-ablated to the pair's own
    /// corrupt activations (a dataset of one pair), and the clean and corrupt
    /// metrics on the same engine. Resolves to JSON `{metric_clean,
    /// metric_corrupt, metric_ablated, backend}`. When the WebGPU engine
    /// cannot ablate, the CPU engine computes and `note` says why.
    pub fn ablate(&self, request: &str) -> Promise {
        let inner = self.inner.clone();
        let request = request.to_string();
        future_to_promise(async move {
            let req: AblateRequest = serde_json::from_str(&request)
                .map_err(|e| js_err(Error::Input(format!("bad ablate request: {e}"))))?;
            let tok = &inner.tokenizer;
            let pair = Pair::new(
                tok,
                &inner.config,
                &req.clean,
                &req.corrupt,
                &req.correct,
                &req.incorrect,
                req.bos.unwrap_or(true),
            )
            .and_then(|p| p.with_metric(tok, req.metric.as_deref().unwrap_or("logit_diff")))
            .map_err(js_err)?;
            let components = BTreeMap::from([
                (Component::Heads, req.heads),
                (Component::Neurons, req.neurons),
            ]);
            let (backend, mut note) = inner
                .backend(req.backend.as_deref().unwrap_or("auto"))
                .await
                .map_err(js_err)?;
            let (m, used) = match backend {
                Backend::Cpu(e) => (ablate_on(e, &pair, &components).await, "cpu"),
                Backend::Gpu(e) => match ablate_on(&*e, &pair, &components).await {
                    Ok(m) => (Ok(m), "gpu"),
                    // the CPU engine computes instead (and repeats the
                    // error if the request itself is bad)
                    Err(err) => {
                        note = Some(format!(
                            "the WebGPU engine could not ablate ({err}); computed on the CPU"
                        ));
                        (ablate_on(&inner.cpu, &pair, &components).await, "cpu")
                    }
                },
            };
            let (metric_clean, metric_corrupt, metric_ablated) = m.map_err(js_err)?;
            let out = AblateOut {
                metric_clean,
                metric_corrupt,
                metric_ablated,
                backend: used,
                note,
            };
            Ok(JsValue::from_str(
                &serde_json::to_string(&out).expect("json"),
            ))
        })
    }

    /// Runs the analysis of one prompt pair and resolves to the report JSON.
    ///
    /// - `request`: JSON of [`Request`] (prompts, answers, methods, …).
    /// - `on_progress(stage, done, total)`: returning `false` cancels; the
    ///   promise then rejects with "cancelled".
    /// - `on_partial(method, direction, component, layer, Float32Array)`:
    ///   one layer's scores as soon as they exist (heads come first).
    /// - `pause()`: returns a Promise; awaited between engine calls (at most
    ///   every ~30 ms) so that the worker can receive a cancel message.
    pub fn analyze(
        &self,
        request: &str,
        on_progress: Option<Function>,
        on_partial: Option<Function>,
        pause: Option<Function>,
    ) -> Promise {
        let inner = self.inner.clone();
        let request = request.to_string();
        future_to_promise(async move {
            let req = Request::parse(&request, "analyze").map_err(js_err)?;
            let prompts = req.prompts().map_err(js_err)?;
            let obs = JsObserver {
                on_progress,
                on_partial,
            };
            let mut reports = inner
                .analyze(&req, std::slice::from_ref(&prompts), obs, pause)
                .await
                .map_err(js_err)?;
            let report = reports.pop().expect("one report per pair");
            Ok(JsValue::from_str(&report.to_json()))
        })
    }

    /// Mean ablation over a dataset, as `patchlab ablate` computes it (the
    /// same object as its ablation.json): every set of `sets_json` (a JSON
    /// array of specs: "and:both", "or:ig-only", "h9.6,n0.12", …) is held at
    /// the per-position mean corrupt activation of the pairs of equal token
    /// length, in every pair of `reports_json` (reports in dataset order, null
    /// for a pair without one; score maps not needed). `on_progress(stage,
    /// done, total)` returning false cancels; `pause` as in `analyze`.
    pub fn ablate_dataset(
        &self,
        reports_json: &str,
        sets_json: &str,
        backend: Option<String>,
        on_progress: Option<Function>,
        pause: Option<Function>,
    ) -> Promise {
        let inner = self.inner.clone();
        let (reports_json, sets_json) = (reports_json.to_string(), sets_json.to_string());
        future_to_promise(async move {
            let reports = parse_reports(&reports_json).map_err(js_err)?;
            if reports.is_empty() {
                return Err(js_err(Error::Input(
                    "no finished pairs to ablate: run the dataset first".into(),
                )));
            }
            let specs: Vec<String> = serde_json::from_str(&sets_json).map_err(|e| {
                js_err(Error::Input(format!(
                    "sets must be an array of strings: {e}"
                )))
            })?;
            if specs.is_empty() {
                return Err(js_err(Error::Input(
                    "choose at least one set of components to ablate".into(),
                )));
            }
            let sets = specs
                .iter()
                .map(|s| Ok((s.trim().to_string(), AblationSet::parse(s)?)))
                .collect::<Result<Vec<_>>>()
                .map_err(js_err)?;
            let (engine, _) = inner
                .backend(backend.as_deref().unwrap_or("auto"))
                .await
                .map_err(js_err)?;
            let mut obs = JsObserver {
                on_progress,
                on_partial: None,
            };
            let progress = |stage: &str, done: usize, total: usize| {
                let p = Progress {
                    stage,
                    done: done as u64,
                    total: total as u64,
                };
                if obs.progress(&p) {
                    Ok(())
                } else {
                    Err(Error::Cancelled)
                }
            };
            let tok = &inner.tokenizer;
            let out = match engine {
                Backend::Cpu(e) => {
                    let e = Pausing::new(e, pause);
                    ablate_dataset(&e, tok, &reports, &sets, progress).await
                }
                Backend::Gpu(e) => {
                    let e = Pausing::new(&*e, pause);
                    ablate_dataset(&e, tok, &reports, &sets, progress).await
                }
            }
            .map_err(js_err)?;
            Ok(JsValue::from_str(
                &serde_json::to_string(&out).expect("ablations serialise"),
            ))
        })
    }

    /// Groups for `analyze_group`: JSON `{"groups": [[index, …]], "bad":
    /// [{"index", "error"}]}` — at most `size` (default: as on WebGPU) pairs of `pairs_json` (an
    /// array of prompts) per group, each group of equal token length and first
    /// differing position, so that the WebGPU engine shares its passes among
    /// them; pairs that are not valid are listed apart with the reason.
    pub fn group_pairs(
        &self,
        pairs_json: &str,
        size: Option<usize>,
    ) -> std::result::Result<String, JsValue> {
        let pairs: Vec<Prompts> = serde_json::from_str(pairs_json)
            .map_err(|e| js_err(Error::Input(format!("not an array of prompt pairs: {e}"))))?;
        let size = size.unwrap_or(crate::app::dataset::GPU_GROUP_SIZE);
        let (groups, bad) = share_groups(&self.inner.tokenizer, &self.inner.config, &pairs, size);
        let bad: Vec<serde_json::Value> = bad
            .into_iter()
            .map(|(i, e)| serde_json::json!({"index": i, "error": e.to_string()}))
            .collect();
        Ok(serde_json::json!({"groups": groups, "bad": bad}).to_string())
    }

    /// Analyses several prompt pairs together and resolves to a JSON array
    /// of their reports, in order — each equal to `analyze` of the pair. On
    /// WebGPU, pairs of equal token length and first difference (see
    /// `group_pairs`) share their passes. `on_progress` and `pause` as in
    /// `analyze` (progress counts the whole group's work).
    pub fn analyze_group(
        &self,
        request: &str,
        on_progress: Option<Function>,
        pause: Option<Function>,
    ) -> Promise {
        let inner = self.inner.clone();
        let request = request.to_string();
        future_to_promise(async move {
            let req = Request::parse(&request, "analyze_group").map_err(js_err)?;
            let pairs = req.pairs().map_err(js_err)?;
            let obs = JsObserver {
                on_progress,
                on_partial: None,
            };
            let reports = inner
                .analyze(&req, pairs, obs, pause)
                .await
                .map_err(js_err)?;
            let json: Vec<String> = reports.iter().map(Report::to_json).collect();
            Ok(JsValue::from_str(&format!("[{}]", json.join(","))))
        })
    }
}

async fn last_logits<E: Engine>(e: &E, ids: &[u32]) -> Result<Vec<f32>> {
    let run = e.run(ids, &Metric::logit_diff(0, 0)).await?;
    e.last_logits(&run).await
}

/// The top `k` tokens with softmax probabilities, as `analyze_pair` reports them.
fn top_k_json(tok: &Tokenizer, logits: &[f32], k: usize) -> String {
    let n = logits.len().min(tok.vocab_size().max(1));
    let max = logits[..n]
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let z: f64 = logits.iter().map(|&x| ((x - max) as f64).exp()).sum();
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| {
        logits[b]
            .partial_cmp(&logits[a])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    idx.truncate(k);
    let out: Vec<PredictionOut> = idx
        .into_iter()
        .map(|i| PredictionOut {
            id: i as u32,
            text: tok.token_text(i as u32),
            logit: logits[i],
            prob: (((logits[i] - max) as f64).exp() / z) as f32,
        })
        .collect();
    serde_json::to_string(&out).expect("json")
}

/// Forwards progress and partial results to JavaScript callbacks.
struct JsObserver {
    on_progress: Option<Function>,
    on_partial: Option<Function>,
}

impl Observer for JsObserver {
    fn progress(&mut self, p: &Progress<'_>) -> bool {
        let Some(f) = &self.on_progress else {
            return true;
        };
        let r = f.call3(
            &JsValue::NULL,
            &JsValue::from_str(p.stage),
            &JsValue::from_f64(p.done as f64),
            &JsValue::from_f64(p.total as f64),
        );
        // only an explicit `false` (or a throwing callback) cancels
        match r {
            Ok(v) => v.as_bool() != Some(false),
            Err(_) => false,
        }
    }

    fn partial(&mut self, s: &LayerScores<'_>) {
        if let Some(f) = &self.on_partial {
            let args = js_sys::Array::of5(
                &JsValue::from_str(s.method.name()),
                &JsValue::from_str(s.direction.name()),
                &JsValue::from_str(s.component.name()),
                &JsValue::from_f64(s.layer as f64),
                &Float32Array::from(s.scores),
            );
            let _ = f.apply(&JsValue::NULL, &args);
        }
    }
}

/// An engine that lets the JavaScript event loop run between the heavy calls
/// of another engine (the CPU engine's futures are ready at once, so without
/// this a worker could not receive "cancel" while it computes).
struct Pausing<'a, E> {
    inner: &'a E,
    pause: Option<Function>,
    last: std::cell::Cell<f64>,
}

/// Longest stretch of computation between two pauses.
const PAUSE_EVERY_MS: f64 = 30.0;

impl<'a, E> Pausing<'a, E> {
    fn new(inner: &'a E, pause: Option<Function>) -> Self {
        Pausing {
            inner,
            pause,
            last: std::cell::Cell::new(now_ms()),
        }
    }

    async fn maybe_pause(&self) -> Result<()> {
        let Some(f) = &self.pause else {
            return Ok(());
        };
        if now_ms() - self.last.get() < PAUSE_EVERY_MS {
            return Ok(());
        }
        let p = f
            .call0(&JsValue::NULL)
            .map_err(|e| Error::Backend(format!("pause callback failed: {e:?}")))?;
        if let Ok(p) = p.dyn_into::<Promise>() {
            JsFuture::from(p)
                .await
                .map_err(|e| Error::Backend(format!("pause callback failed: {e:?}")))?;
        }
        self.last.set(now_ms());
        Ok(())
    }
}

impl<E: Engine> Engine for Pausing<'_, E> {
    type Run = E::Run;

    fn config(&self) -> &Config {
        self.inner.config()
    }
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn run(&self, tokens: &[u32], metric: &Metric) -> Result<Self::Run> {
        self.maybe_pause().await?;
        self.inner.run(tokens, metric).await
    }
    fn metric(&self, run: &Self::Run) -> f32 {
        self.inner.metric(run)
    }
    async fn last_logits(&self, run: &Self::Run) -> Result<Vec<f32>> {
        self.inner.last_logits(run).await
    }
    async fn activation(&self, run: &Self::Run, hook: &str) -> Result<Array> {
        self.inner.activation(run, hook).await
    }
    async fn patch_metrics(
        &self,
        base: &Self::Run,
        other: &Self::Run,
        site: Site,
        components: Range<usize>,
        from_pos: usize,
    ) -> Result<Vec<f32>> {
        self.maybe_pause().await?;
        self.inner
            .patch_metrics(base, other, site, components, from_pos)
            .await
    }
    async fn path_gradients(
        &self,
        base: &Self::Run,
        other: &Self::Run,
        site: Site,
        alphas: &[f32],
        weights: &[f32],
        from_pos: usize,
    ) -> Result<PathGrads> {
        self.maybe_pause().await?;
        self.inner
            .path_gradients(base, other, site, alphas, weights, from_pos)
            .await
    }
    async fn patch_metrics_group(
        &self,
        pairs: &[SweepPair<'_, Self::Run>],
        site: Site,
        components: Range<usize>,
    ) -> Result<Vec<Vec<f32>>> {
        self.maybe_pause().await?;
        self.inner
            .patch_metrics_group(pairs, site, components)
            .await
    }
    async fn path_gradients_group(
        &self,
        pairs: &[SweepPair<'_, Self::Run>],
        site: Site,
        alphas: &[f32],
        weights: &[f32],
    ) -> Result<Vec<PathGrads>> {
        self.maybe_pause().await?;
        self.inner
            .path_gradients_group(pairs, site, alphas, weights)
            .await
    }
    async fn base_gradients(
        &self,
        base: &Self::Run,
        other: &Self::Run,
        component: Component,
        from_pos: usize,
    ) -> Result<Vec<Array>> {
        self.maybe_pause().await?;
        self.inner
            .base_gradients(base, other, component, from_pos)
            .await
    }
    async fn metric_with_replacements(
        &self,
        tokens: &[u32],
        metric: &Metric,
        replacements: &[Replacement],
    ) -> Result<f32> {
        self.maybe_pause().await?;
        self.inner
            .metric_with_replacements(tokens, metric, replacements)
            .await
    }
    async fn metric_with_substitutions(
        &self,
        tokens: &[u32],
        metric: &Metric,
        substitutions: &[(String, Array)],
    ) -> Result<f32> {
        self.inner
            .metric_with_substitutions(tokens, metric, substitutions)
            .await
    }
}
