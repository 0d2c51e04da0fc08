//! `Lab`: a loaded model and its engines, and the computations on them.

use super::observer::JsObserver;
use super::reports::parse_reports;
use super::weights::WeightStreamJs;
use super::{from_js, js_err, json, to_js};
use crate::app::{AblateRequest, AnalyzeRequest, Backend, Engines, Session};
use crate::model::sae::Sae;
use crate::model::Model;
use crate::report::Report;
use js_sys::{Function, Promise};
use serde::Serialize;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// A loaded model and its engines.
#[wasm_bindgen]
pub struct Lab {
    pub(super) session: Rc<Session>,
}

/// Whether this browser context offers WebGPU (`navigator.gpu`, also in workers).
fn has_webgpu() -> bool {
    let global = js_sys::global();
    let navigator: JsValue = if let Some(w) = global.dyn_ref::<web_sys::WorkerGlobalScope>() {
        w.navigator().into()
    } else if let Some(w) = global.dyn_ref::<web_sys::Window>() {
        w.navigator().into()
    } else {
        return false;
    };
    // `Navigator.gpu` is among web-sys's unstable APIs: read it by name
    js_sys::Reflect::get(&navigator, &JsValue::from_str("gpu"))
        .is_ok_and(|g| !g.is_undefined() && !g.is_null())
}

/// Whether this build's CPU kernels use WebAssembly SIMD (`simd128`, set
/// in .cargo/config.toml): the page reports it, the benchmark prints it.
#[wasm_bindgen]
pub fn wasm_simd() -> bool {
    cfg!(target_feature = "simd128")
}

/// How many threads the CPU backend computes on: in the threaded build
/// (www/pkg-threads, shared memory) the size of the Web Worker pool that
/// `initThreadPool(n)` started; in the plain build (www/pkg) 1.
#[wasm_bindgen]
pub fn wasm_threads() -> usize {
    crate::app::cpu_threads()
}

/// Milliseconds per plain product [m, k] · [k, n] + bias on the CPU engine's
/// linear-layer kernel, on this build's threads (`patchlab bench`'s "plain
/// matmul" line, in the browser): the rate `scripts/bench-browser` reads the
/// page's timings against. m, k, n must be 1 to 4096.
#[wasm_bindgen]
pub fn cpu_matmul_ms(m: usize, k: usize, n: usize, reps: usize) -> Result<f64, JsValue> {
    if ![m, k, n].iter().all(|d| (1..=4096).contains(d)) {
        return Err(js_err(crate::error::Error::Input(format!(
            "cpu_matmul_ms: [{m}, {k}] · [{k}, {n}]: each dimension must be 1 to 4096"
        ))));
    }
    crate::app::time_cpu_matmul(m, k, n, reps.clamp(1, 100)).map_err(js_err)
}

/// `initThreadPool(n)`: starts n Web Workers on this module's shared memory
/// as the rayon pool the CPU backend splits its work over. Only in the
/// threaded build; the worker calls it once, before any computation.
#[cfg(target_feature = "atomics")]
pub use wasm_bindgen_rayon::init_thread_pool;

fn backend(name: Option<String>) -> Result<Backend, JsValue> {
    Backend::parse(name.as_deref().unwrap_or("auto")).map_err(js_err)
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

#[wasm_bindgen]
impl Lab {
    /// Loads a checkpoint whose `model.safetensors` went through `weights`
    /// (made with its `config.json`; consumed), with either `tokenizer.json`
    /// or `vocab.json` + `merges.txt`. Fails if the stream did not receive
    /// the whole file. `gpu`: whether "auto" computes on WebGPU (the page
    /// says no where the only adapter is a software one, such as
    /// SwiftShader); by default, wherever the browser offers WebGPU.
    pub fn load_streamed(
        name: &str,
        weights: WeightStreamJs,
        tokenizer_json: Option<String>,
        vocab_json: Option<String>,
        merges_txt: Option<String>,
        gpu: Option<bool>,
    ) -> Result<Lab, JsValue> {
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
        // the CPU engine takes the tensors' memory over: still one copy
        let engines =
            Engines::load(config, weights, gpu.unwrap_or_else(has_webgpu)).map_err(js_err)?;
        Ok(Lab {
            session: Rc::new(Session {
                name,
                tokenizer,
                engines,
                saes: Default::default(),
            }),
        })
    }

    /// Loads a sparse autoencoder from SAELens's files (`cfg.json` text and
    /// `sae_weights.safetensors` bytes) for this model, replacing the one on
    /// its hook; `name` labels it in reports. Resolves nothing: returns JSON
    /// `{name, hook_name, architecture, d_in, d_sae, neuronpedia_id?}`, or
    /// throws saying why the SAE does not fit (its size, its hook, its
    /// layout, the memory left).
    ///
    /// `norm_scaling_factor`: the factor SAELens's `pretrained_saes.yaml`
    /// gives an SAE whose `normalize_activations` is
    /// `"expected_average_only_in"` (folded in as `SAE.from_pretrained`
    /// does; ignored for other SAEs).
    pub fn load_sae(
        &self,
        name: &str,
        cfg_json: &str,
        weights: &[u8],
        norm_scaling_factor: Option<f64>,
    ) -> Result<String, JsValue> {
        let sae =
            Sae::from_files_scaled(name, cfg_json, weights, norm_scaling_factor).map_err(js_err)?;
        let info = self.session.add_sae(sae).map_err(js_err)?;
        Ok(json(&info))
    }

    /// Bytes of SAE weights (4 · d_sae · d_in · 2 for GPT-2's) that still
    /// fit beside the model and the loaded SAEs, the one on `replacing`
    /// freed: check before downloading one.
    pub fn sae_room(&self, replacing: Option<String>) -> f64 {
        self.session
            .sae_room(replacing.as_deref())
            .unwrap_or(f64::INFINITY)
    }

    /// Checks an SAE's `cfg.json` for this model and the memory left,
    /// before its weights download: throws what `load_sae` would refuse
    /// from the config alone; returns JSON `{sae: {name, hook_name,
    /// architecture, d_in, d_sae, neuronpedia_id?}, bytes}` (the weights'
    /// size in memory).
    pub fn check_sae(
        &self,
        name: &str,
        cfg_json: &str,
        norm_scaling_factor: Option<f64>,
    ) -> Result<String, JsValue> {
        let (sae, bytes) = self
            .session
            .check_sae(name, cfg_json, norm_scaling_factor)
            .map_err(js_err)?;
        Ok(json(&serde_json::json!({ "sae": sae, "bytes": bytes })))
    }

    /// Removes the SAE on `hook_name`; false if none was loaded there.
    pub fn remove_sae(&self, hook_name: &str) -> bool {
        self.session.remove_sae(hook_name)
    }

    /// The loaded SAEs as JSON `[{name, hook_name, architecture, d_in, d_sae, neuronpedia_id?}]`.
    pub fn saes(&self) -> String {
        json(&self.session.sae_infos())
    }

    /// The model's name and shape, and the backends this build offers.
    pub fn info(&self) -> Result<JsValue, JsValue> {
        let s = &self.session;
        let c = s.config();
        to_js(&ModelInfoOut {
            name: &s.name,
            n_layers: c.n_layers,
            n_heads: c.n_heads,
            d_model: c.d_model,
            d_head: c.d_head,
            d_mlp: c.d_mlp,
            n_ctx: c.n_ctx,
            d_vocab: c.d_vocab,
            backends: s.backends(),
        })
    }

    /// The WebGPU engine's work since it started, per kernel (dispatches,
    /// workgroups, FLOPs, bytes) with the submissions and read-backs, as
    /// `patchlab bench --profile` counts it: `{adapter, kernels: [{name,
    /// dispatches, workgroups, flops, bytes, ms}], submits, readbacks,
    /// timed, timing}`, or null before anything ran on WebGPU. Kernel times
    /// (`ms`) are taken after `time_gpu_kernels(true)` where the adapter
    /// offers timestamp queries (`timing` "timestamps"); else `timing` is
    /// null, `timed` false and every `ms` 0. The times are those of the
    /// work up to its last read-back (every computation ends with one).
    pub fn gpu_profile(&self) -> Result<JsValue, JsValue> {
        match self.session.engines.gpu_profile() {
            Some(p) => to_js(&p),
            None => Ok(JsValue::NULL),
        }
    }

    /// Whether the WebGPU engine times its kernels with the adapter's
    /// timestamp queries (where it offers them; `gpu_profile`'s `ms`): call
    /// it before anything runs on WebGPU (the engine starts on first use).
    /// Returns false where the engine has already started (then the setting
    /// applies only to an engine started anew after a lost device).
    pub fn time_gpu_kernels(&self, on: bool) -> bool {
        let timing = on.then_some(crate::engine::profile::Timing::Timestamps);
        self.session.engines.set_gpu_timing(timing)
    }

    /// Times a small real workload (the heads' IG path at the
    /// next-to-last layer; every layer on a GPU) on the engine for `backend` ("auto", "cpu", "gpu")
    /// and keeps its rate: `estimate` then says seconds, and analyses on
    /// that engine pause about every 0.3 s of work so that Cancel answers.
    /// Resolves to JSON `{backend, flops_per_s, flops, ms}`.
    pub fn calibrate(&self, backend: Option<String>) -> Promise {
        let session = self.session.clone();
        future_to_promise(async move {
            let b = self::backend(backend)?;
            let c = session.calibrate(b).await.map_err(js_err)?;
            Ok(JsValue::from_str(&json(&c)))
        })
    }

    /// What `analyze` (or `analyze_group`, with `pairs`) of `request` will
    /// cost on the engine it would run on: JSON `{backend, pairs: [[tokens,
    /// first_diff]], phases: [{method, component?, direction?, flops}],
    /// flops, run_bytes, memory_bytes, memory_limit?, flops_per_s?,
    /// seconds?}` (seconds once that engine was calibrated). A request the
    /// analysis would refuse is refused here in the same words.
    pub fn estimate(&self, request: JsValue) -> Result<String, JsValue> {
        let req: AnalyzeRequest = from_js(request, "bad analyze request")?;
        let cost = self.session.estimate(&req).map_err(js_err)?;
        Ok(json(&cost))
    }

    /// Tokens of `text` as `[{id, text}]`, BOS first when `bos`.
    pub fn tokenize(&self, text: &str, bos: bool) -> Result<JsValue, JsValue> {
        let t = &self.session.tokenizer;
        let ids = t.encode(text, bos).map_err(js_err)?;
        to_js(&t.tokens(&ids))
    }

    /// The `k` most likely next tokens after `text` (JSON
    /// `[{"id", "text", "logit", "prob"}]`), as the report's predictions.
    pub fn predict(&self, text: &str, bos: bool, k: usize, backend: Option<String>) -> Promise {
        let session = self.session.clone();
        let text = text.to_string();
        future_to_promise(async move {
            let b = self::backend(backend)?;
            let top = session.predict(&text, bos, k, b).await.map_err(js_err)?;
            Ok(JsValue::from_str(&json(&top)))
        })
    }

    /// Runs the analysis of one prompt pair and resolves to the report JSON.
    ///
    /// - `request`: `{clean, corrupt, correct, incorrect, bos, metric,
    ///   methods, directions, components, igSteps, igRule, percentile,
    ///   backend}` ([`AnalyzeRequest`]).
    /// - `on_progress(stage, done, total)`: returning `false` cancels; the
    ///   promise then rejects with "cancelled".
    /// - `on_partial(method, direction, component, layer, Float32Array)`:
    ///   one layer's scores as soon as they exist (heads come first).
    /// - `pause()`: returns a Promise; awaited between engine calls (at most
    ///   every ~30 ms) so that the worker can receive a cancel message.
    pub fn analyze(
        &self,
        request: JsValue,
        on_progress: Option<Function>,
        on_partial: Option<Function>,
        pause: Option<Function>,
    ) -> Promise {
        let session = self.session.clone();
        future_to_promise(async move {
            let req: AnalyzeRequest = from_js(request, "bad analyze request")?;
            let mut obs = JsObserver::new(on_progress, on_partial, pause);
            let report = session.analyze(&req, &mut obs).await.map_err(js_err)?;
            Ok(JsValue::from_str(&report.to_json()))
        })
    }

    /// Analyses several prompt pairs together (`request.pairs`, with the
    /// settings of `analyze`) and resolves to a JSON array of their reports,
    /// in order — each equal to `analyze` of the pair. On WebGPU, pairs of
    /// equal token length and first difference (see `group_pairs`) share
    /// their passes. `on_progress` and `pause` as in `analyze` (progress
    /// counts the whole group's work).
    pub fn analyze_group(
        &self,
        request: JsValue,
        on_progress: Option<Function>,
        pause: Option<Function>,
    ) -> Promise {
        let session = self.session.clone();
        future_to_promise(async move {
            let req: AnalyzeRequest = from_js(request, "bad analyze_group request")?;
            let mut obs = JsObserver::new(on_progress, None, pause);
            let reports = session
                .analyze_group(&req, &mut obs)
                .await
                .map_err(js_err)?;
            let json: Vec<String> = reports.iter().map(Report::to_json).collect();
            Ok(JsValue::from_str(&format!("[{}]", json.join(","))))
        })
    }

    /// The clean metric with heads and neurons mean-ablated to the pair's own
    /// corrupt activations (a dataset of one pair), and the clean and corrupt
    /// metrics on the same engine. `request`: `{clean, corrupt, correct,
    /// incorrect, bos, metric, heads: [[layer, head]], neurons: [[layer,
    /// neuron]], backend}`. Resolves to JSON `{metric_clean, metric_corrupt,
    /// metric_ablated, backend}`. When the WebGPU engine cannot ablate, the
    /// CPU engine computes and `note` says why.
    pub fn ablate(&self, request: JsValue) -> Promise {
        let session = self.session.clone();
        future_to_promise(async move {
            let req: AblateRequest = from_js(request, "bad ablate request")?;
            let out = session.ablate(&req).await.map_err(js_err)?;
            Ok(JsValue::from_str(&json(&out)))
        })
    }

    /// Mean ablation over a dataset, as `patchlab ablate` computes it (the
    /// same object as its ablation.json, as JSON): every set of `sets` (an
    /// array of specs: "and:both", "or:ig-only", "h9.6,n0.12", …) is held at
    /// the per-position mean corrupt activation of the pairs of equal token
    /// length, in every pair of `reports_json` (reports in dataset order, null
    /// for a pair without one; score maps not needed). `on_progress(stage,
    /// done, total)` returning false cancels; `pause` as in `analyze`.
    pub fn ablate_dataset(
        &self,
        reports_json: &str,
        sets: JsValue,
        backend: Option<String>,
        on_progress: Option<Function>,
        pause: Option<Function>,
    ) -> Promise {
        let session = self.session.clone();
        let reports_json = reports_json.to_string();
        future_to_promise(async move {
            let reports = parse_reports(&reports_json).map_err(js_err)?;
            let specs: Vec<String> = from_js(sets, "sets must be an array of strings")?;
            let b = self::backend(backend)?;
            let mut obs = JsObserver::new(on_progress, None, pause);
            let out = session
                .ablate_dataset(&reports, &specs, b, &mut obs)
                .await
                .map_err(js_err)?;
            Ok(JsValue::from_str(&json(&out)))
        })
    }
}
