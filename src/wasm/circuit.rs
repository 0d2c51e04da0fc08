//! Circuits: `Lab.circuit` and `Lab.reevaluate_circuit` (on the loaded
//! model), `reselect_circuit` and `circuit_graph_json` (no model needed:
//! results-only pages and exports).

use super::lab::Lab;
use super::observer::JsObserver;
use super::{from_js, js_err, json};
use crate::app::circuit::{reselect, CircuitRequest};
use crate::report::circuit::{CircuitReport, EdgeMethod};
use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

#[wasm_bindgen]
impl Lab {
    /// Scores every edge of the graph for `request.pairs` (one pair, or a
    /// dataset's pairs of one token length), picks the circuit and resolves
    /// to the circuit report's JSON. `request`: `{pairs: [{clean, corrupt,
    /// correct, incorrect, bos, metric}], method, steps, select, edges,
    /// exact, curvePoints, backend}` ([`CircuitRequest`]). `on_progress` and
    /// `pause` as in `analyze`.
    pub fn circuit(
        &self,
        request: JsValue,
        on_progress: Option<Function>,
        pause: Option<Function>,
    ) -> Promise {
        let session = self.session.clone();
        future_to_promise(async move {
            let req: CircuitRequest = from_js(request, "bad circuit request")?;
            let mut obs = JsObserver::new(on_progress, None, pause);
            let report = session.circuit(&req, &mut obs).await.map_err(js_err)?;
            Ok(JsValue::from_str(&json(&report)))
        })
    }

    /// The circuit of `n` edges that the report's `method` scores select
    /// with `select` ("greedy" or "topn"), pruned, with its faithfulness on
    /// this model: JSON `{edges, nodes, faithfulness: {n, edges, nodes,
    /// metric, faithfulness}}` (edges index the report's `edges`), resolved
    /// by the returned promise.
    pub fn reevaluate_circuit(
        &self,
        report_json: String,
        method: String,
        select: String,
        n: usize,
    ) -> Promise {
        let session = self.session.clone();
        future_to_promise(async move {
            let r = CircuitReport::from_json(&report_json).map_err(js_err)?;
            let c = session
                .reevaluate_circuit(&r, &method, &select, n)
                .await
                .map_err(js_err)?;
            Ok(JsValue::from_str(&json(&c)))
        })
    }
}

/// `Lab.reevaluate_circuit` without a model: the selection only (its
/// faithfulness is null).
#[wasm_bindgen]
pub fn reselect_circuit(
    report_json: &str,
    method: &str,
    select: &str,
    n: usize,
) -> Result<String, JsValue> {
    let r = CircuitReport::from_json(report_json).map_err(js_err)?;
    Ok(json(&reselect(&r, method, select, n).map_err(js_err)?))
}

/// The report's `method` scores and a circuit (`edges`: indices into the
/// report's edges, as JSON) as the reference's graph file
/// (`Graph.to_json`), which EAP-IG tooling reads.
#[wasm_bindgen]
pub fn circuit_graph_json(
    report_json: &str,
    method: &str,
    edges_json: &str,
) -> Result<String, JsValue> {
    let r = CircuitReport::from_json(report_json).map_err(js_err)?;
    let m = EdgeMethod::parse(method).map_err(js_err)?;
    let picked: Vec<usize> = serde_json::from_str(edges_json).map_err(|e| {
        js_err(crate::Error::Input(format!(
            "edges must be a JSON array of indices: {e}"
        )))
    })?;
    crate::app::circuit::graph_file(&r, m, &picked).map_err(js_err)
}
