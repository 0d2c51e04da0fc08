//! Circuit invariants that a mistake shared with the reference would break:
//! exact edge patching's batched tails equal the naive loop (one patched
//! graph forward per edge); the full circuit is the clean run and the empty
//! one the corrupt run; bad requests get clear errors.

use pollster::block_on;

use crate::common::golden::MODEL_B;
use crate::common::*;
use patchlab::attribution::circuit::{
    faithfulness, score_edges, select, Circuit, EdgeMethod, EdgeOptions, PairRuns, Select,
};
use patchlab::attribution::{Pair, Quiet};
use patchlab::engine::cpu::{CpuEngine, EdgePatch};
use patchlab::model::graph::GraphLayout;
use patchlab::model::random::random_weights;

fn setup() -> (CpuEngine, Pair) {
    let spec = MODEL_B.1;
    let host = CpuEngine::new(spec.config(), random_weights(&spec)).unwrap();
    let p = Pair::new(
        &tokenizer(),
        &spec.config(),
        "When Mary and John went to the store, John gave a drink to",
        "When Mary and John went to the store, Mary gave a drink to",
        " Mary",
        " John",
        true,
    )
    .unwrap();
    (host, p)
}

#[test]
fn exact_edge_patching_equals_the_naive_loop() {
    let (host, p) = setup();
    let layout = GraphLayout::new(&MODEL_B.1.config());
    let opts = EdgeOptions {
        methods: vec![EdgeMethod::Exact],
        steps: 1,
    };
    let fast = block_on(score_edges(&host, &host, std::slice::from_ref(&p), &opts, &mut Quiet)).unwrap();
    let fast = &fast.scores[&EdgeMethod::Exact];
    let runs = PairRuns::new(&host, &p, false).unwrap();
    let nb = layout.n_backward();
    let mut worst = 0f32;
    for e in layout.edges() {
        let mut patched = vec![0f32; layout.n_forward() * nb];
        patched[e.from * nb + e.to] = 1.0;
        let m = host
            .graph_forward(
                &p.clean,
                &p.metric,
                None,
                Some(EdgePatch {
                    values: &runs.corrupt.outputs,
                    patched: &patched,
                }),
                false,
            )
            .unwrap()
            .metric;
        worst = worst.max((fast[e.from * nb + e.to] - (m - runs.clean.metric)).abs());
    }
    assert!(worst < 1e-4, "batched tails vs naive loop: {worst}");
}

#[test]
fn the_full_circuit_is_the_clean_run_and_the_empty_one_the_corrupt_run() {
    let (host, p) = setup();
    let layout = GraphLayout::new(&MODEL_B.1.config());
    let runs = [PairRuns::new(&host, &p, false).unwrap()];
    let nb = layout.n_backward();
    let mut all = Circuit {
        edges: vec![false; layout.n_forward() * nb],
        nodes: vec![true; layout.n_forward()],
    };
    for e in layout.edges() {
        all.edges[e.from * nb + e.to] = true;
    }
    let f = faithfulness(&host, &runs, &all, layout.n_edges()).unwrap();
    assert!((f.metric - runs[0].clean.metric).abs() < 1e-5, "{f:?}");
    let none = Circuit {
        edges: vec![false; layout.n_forward() * nb],
        nodes: vec![false; layout.n_forward()],
    };
    let f = faithfulness(&host, &runs, &none, 0).unwrap();
    assert!((f.metric - runs[0].corrupt.metric).abs() < 1e-4, "{f:?}");
    assert!(f.faithfulness.abs() < 1e-3, "{f:?}");
}

#[test]
fn swapping_clean_and_corrupt_negates_the_deltas_of_exact_logit_edges() {
    // an edge into the logits adds Δz_u to the final stream only: patching
    // it in the swapped pair adds −Δz_u to the corrupt run's stream, so the
    // two exact scores are the metric's changes of opposite perturbations
    let (host, p) = setup();
    let swapped = Pair {
        clean: p.corrupt.clone(),
        corrupt: p.clean.clone(),
        ..p.clone()
    };
    let opts = EdgeOptions {
        methods: vec![EdgeMethod::Eap, EdgeMethod::Exact],
        steps: 1,
    };
    let a = block_on(score_edges(&host, &host, std::slice::from_ref(&p), &opts, &mut Quiet)).unwrap();
    let b = block_on(score_edges(&host, &host, &[swapped], &opts, &mut Quiet)).unwrap();
    assert!((a.clean - b.corrupt).abs() < 1e-6 && (a.corrupt - b.clean).abs() < 1e-6);
    let layout = &a.layout;
    let nb = layout.n_backward();
    // the full-graph faithfulness baseline: Σ over logit edges' exact scores is not additive,
    // but the input → logits edge patches the whole embedding difference into the final stream:
    // m(clean + Δ) − m(clean) and m(corrupt − Δ) − m(corrupt) have opposite signs when m is
    // monotone along that line, which LayerNorm does not promise; so check the exact identity
    // instead: EAP of the swapped pair is −Δ·∇m at the other run
    let eap_a = &a.scores[&EdgeMethod::Eap];
    let eap_b = &b.scores[&EdgeMethod::Eap];
    let runs = PairRuns::new(&host, &p, true).unwrap();
    let delta = runs.deltas();
    let (nf, _) = (layout.n_forward(), nb);
    let at_corrupt = CpuEngine::edge_products(&delta, runs.corrupt.grads.as_deref().unwrap(), nf, nb).unwrap();
    for e in layout.edges() {
        let i = e.from * nb + e.to;
        assert!((eap_b[i] + at_corrupt[i]).abs() < 1e-4 * (1.0 + at_corrupt[i].abs()), "{}", layout.edge_name(e));
        let _ = eap_a[i];
    }
}

#[test]
fn bad_requests_get_clear_errors() {
    let (host, p) = setup();
    let layout = GraphLayout::new(&MODEL_B.1.config());
    let zero = vec![0f32; layout.n_forward() * layout.n_backward()];
    let e = select(&layout, &zero, Select::Greedy, layout.n_edges() + 1).unwrap_err().to_string();
    assert!(e.contains("only 172 edges"), "{e}");
    let opts = EdgeOptions {
        methods: vec![EdgeMethod::EapIg],
        steps: 0,
    };
    let e = block_on(score_edges(&host, &host, &[p.clone()], &opts, &mut Quiet)).unwrap_err().to_string();
    assert!(e.contains("at least 1 step"), "{e}");
    let short = Pair::new(
        &tokenizer(),
        &MODEL_B.1.config(),
        "Alice went to the park. Then Alice",
        "Bob went to the park. Then Alice",
        " went",
        " was",
        false,
    )
    .unwrap();
    let opts = EdgeOptions::default();
    let e = block_on(score_edges(&host, &host, &[p, short], &opts, &mut Quiet)).unwrap_err().to_string();
    assert!(e.contains("same number of tokens"), "{e}");
}
