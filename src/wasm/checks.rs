//! Checks the page makes on its inputs before it computes, with the engine's
//! own parsers: the page never keeps a second copy of a rule that could
//! drift from the engine's (as a regex accepting `greater_than:99` did).

use crate::attribution::pair::MetricSpec;
use wasm_bindgen::prelude::*;

/// A metric spec as the engine reads it (`logit_diff`, `greater_than:YY`):
/// its normalised name (trimmed, as reports carry it), or an `Error` whose
/// message is the engine's, saying what is wrong and what it takes.
#[wasm_bindgen]
pub fn parse_metric_spec(spec: &str) -> Result<String, JsValue> {
    MetricSpec::parse(spec)
        .map(|m| m.name())
        .map_err(|e| JsError::new(&e.to_string()).into())
}
