//! Progress, partial results and pauses of a computation, to JavaScript.

use crate::attribution::{LayerScores, Observer, Pause, Progress};
use crate::clock::now_ms;
use crate::error::Error;
use js_sys::{Float32Array, Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// Longest stretch of computation between two pauses.
const PAUSE_EVERY_MS: f64 = 30.0;

/// Forwards progress and partial results to JavaScript callbacks, and lets
/// the event loop run between engine calls: the CPU engine's futures are
/// ready at once, so without the pauses a worker could not receive
/// "cancel" while it computes.
pub struct JsObserver {
    /// `(stage, done, total)`; returning `false` (or throwing) cancels.
    on_progress: Option<Function>,
    /// `(method, direction, component, layer, Float32Array)`.
    on_partial: Option<Function>,
    /// Returns a Promise to await (at most every `PAUSE_EVERY_MS`).
    pause: Option<Function>,
    last_pause: f64,
}

impl JsObserver {
    pub fn new(
        on_progress: Option<Function>,
        on_partial: Option<Function>,
        pause: Option<Function>,
    ) -> JsObserver {
        JsObserver {
            on_progress,
            on_partial,
            pause,
            last_pause: now_ms(),
        }
    }
}

fn pause_failed(e: JsValue) -> Error {
    Error::Backend(format!("pause callback failed: {e:?}"))
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

    fn pause(&mut self) -> Option<Pause<'_>> {
        if now_ms() - self.last_pause < PAUSE_EVERY_MS {
            return None;
        }
        let called = self.pause.as_ref()?.call0(&JsValue::NULL);
        Some(Box::pin(async move {
            if let Ok(p) = called.map_err(pause_failed)?.dyn_into::<Promise>() {
                JsFuture::from(p).await.map_err(pause_failed)?;
            }
            self.last_pause = now_ms();
            Ok(())
        }))
    }
}
