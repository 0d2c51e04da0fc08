//! WebAssembly bindings for the browser lab (`www/worker.js` is their one
//! caller; `www/patchlab.js` is the public JavaScript API built on them).
//! Each export converts its arguments, calls the application layer
//! ([`crate::app`]) and converts the result.
//!
//! - [`weights`]: `WeightStream`, which the worker pushes `model.safetensors`
//!   into chunk by chunk as it downloads (never holding the file whole), and
//!   `check_config`.
//! - [`lab`]: `Lab`, a loaded model with its engines: `info`, `tokenize`,
//!   `predict`, `analyze`, `analyze_group`, `ablate`, `ablate_dataset`.
//!   Requests pick a backend: "cpu", "gpu" (WebGPU) or "auto" (WebGPU where
//!   the browser has `navigator.gpu`); see [`crate::app::Engines`].
//! - [`pairs`]: datasets of prompt pairs: `task_names`, `generate_dataset`,
//!   `import_pairs`, `group_pairs`, `pairs_csv`.
//! - [`reports`]: `summarize` (the dataset tables, as `patchlab batch` writes
//!   summary.json) and `upgrade_report`.
//! - [`observer`]: progress, partial results and pauses, to JavaScript.
//!
//! Errors reach JavaScript as `Error`s whose message is the crate's text.
//! Requests and small answers cross as JavaScript objects
//! (`serde-wasm-bindgen`); reports, and answers with f32 values, as JSON
//! strings (f32s written as their shortest decimal, exactly as in reports:
//! one format for the CLI, the page and exported files); a layer's scores
//! as a `Float32Array`.

mod checks;
mod circuit;
mod dataset;
pub mod lab;
pub mod observer;
pub mod pairs;
pub mod reports;
pub mod weights;

use crate::error::Error;
use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::prelude::*;

fn js_err(e: Error) -> JsValue {
    JsError::new(&e.to_string()).into()
}

/// A JavaScript value as `T`; `what` starts the error ("bad ablate request").
fn from_js<T: DeserializeOwned>(v: JsValue, what: &str) -> Result<T, JsValue> {
    serde_wasm_bindgen::from_value(v).map_err(|e| js_err(Error::Input(format!("{what}: {e}"))))
}

/// `v` as a plain JavaScript object (maps as objects, as JSON has them).
fn to_js<T: Serialize + ?Sized>(v: &T) -> Result<JsValue, JsValue> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| {
            js_err(Error::Backend(format!(
                "cannot hand a result to JavaScript: {e}"
            )))
        })
}

/// JSON text, for results that keep the report's number format.
fn json<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serialises")
}

/// A seed from JavaScript (a number): a non-negative integer below 2^53.
fn seed_of(seed: f64) -> crate::Result<u64> {
    if seed.is_finite() && seed >= 0.0 && seed.fract() == 0.0 && seed < 9007199254740992.0 {
        Ok(seed as u64)
    } else {
        Err(Error::Input(format!(
            "the seed must be a whole number from 0 to 2^53 − 1, not {seed}"
        )))
    }
}
