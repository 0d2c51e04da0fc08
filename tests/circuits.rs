//! Circuit invariants that a mistake shared with the reference would break:
//! exact edge patching's batched tails equal the naive loop (one patched
//! graph forward per edge); the full circuit is the clean run and the empty
//! one the corrupt run; bad requests get clear errors.

use pollster::block_on;

use crate::common::golden::MODEL_B;
use crate::common::*;
use patchlab::attribution::circuit::{
    faithfulness, score_edges, select, Ablation, Circuit, EdgeMethod, EdgeOptions, FaithRuns,
    PairRuns, Select,
};
use patchlab::attribution::{Pair, Quiet};
use patchlab::engine::cpu::CpuEngine;
use patchlab::engine::graph::{EdgePatch, GraphOutputs, GraphPass, GraphPasses};
use patchlab::model::graph::GraphLayout;
use patchlab::model::random::random_weights;

fn setup() -> (CpuEngine, Pair) {
    let spec = MODEL_B.1;
    let host = CpuEngine::new(spec.config(), random_weights(&spec)).unwrap();
    let p = Pair::new(
        tokenizer(),
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
    let fast = scores(&host, std::slice::from_ref(&p), &opts);
    let fast = &fast.scores[&EdgeMethod::Exact];
    let runs = block_on(PairRuns::new(&host, &p, false)).unwrap();
    let nb = layout.n_backward();
    let mut worst = 0f32;
    for e in layout.edges() {
        let mut patched = vec![0f32; layout.n_forward() * nb];
        patched[e.from * nb + e.to] = 1.0;
        let pass = GraphPass {
            patch: Some(EdgePatch {
                values: runs.corrupt.outputs(),
                first_diff: 0,
                patched: &patched,
            }),
            ..GraphPass::default()
        };
        let m = block_on(host.graph_forward(&p.clean, &p.metric, pass))
            .unwrap()
            .metric();
        worst = worst.max((fast[e.from * nb + e.to] - (m - runs.clean.metric())).abs());
    }
    assert!(worst < 1e-4, "batched tails vs naive loop: {worst}");
}

#[test]
fn the_full_circuit_is_the_clean_run_and_the_empty_one_the_corrupt_run() {
    let (host, p) = setup();
    let layout = GraphLayout::new(&MODEL_B.1.config());
    let runs = block_on(FaithRuns::new(
        &host,
        std::slice::from_ref(&p),
        Ablation::Patching,
    ))
    .unwrap();
    let own = block_on(PairRuns::new(&host, &p, false)).unwrap();
    let nb = layout.n_backward();
    let mut all = Circuit {
        edges: vec![false; layout.n_forward() * nb],
        nodes: vec![true; layout.n_forward()],
    };
    for e in layout.edges() {
        all.edges[e.from * nb + e.to] = true;
    }
    let f = block_on(faithfulness(&host, &runs, &all, layout.n_edges())).unwrap();
    assert!((f.metric - own.clean.metric()).abs() < 1e-5, "{f:?}");
    let none = Circuit {
        edges: vec![false; layout.n_forward() * nb],
        nodes: vec![false; layout.n_forward()],
    };
    let f = block_on(faithfulness(&host, &runs, &none, 0)).unwrap();
    assert!((f.metric - own.corrupt.metric()).abs() < 1e-4, "{f:?}");
    assert!(f.faithfulness.abs() < 1e-3, "{f:?}");
}

#[test]
fn eap_of_the_swapped_pair_is_minus_delta_times_the_corrupt_runs_gradient() {
    // swapping the prompts flips Δz and moves the gradient to the other
    // run: a sign or run mistake shared with the reference would show here
    let (host, p) = setup();
    let swapped = Pair {
        clean: p.corrupt.clone(),
        corrupt: p.clean.clone(),
        ..p.clone()
    };
    let opts = EdgeOptions {
        methods: vec![EdgeMethod::Eap],
        steps: 1,
    };
    let b = scores(&host, &[swapped], &opts);
    let layout = &b.layout;
    let (nf, nb) = (layout.n_forward(), layout.n_backward());
    let runs = block_on(PairRuns::new(&host, &p, true)).unwrap();
    assert!(
        (b.clean - runs.corrupt.metric()).abs() < 1e-6
            && (b.corrupt - runs.clean.metric()).abs() < 1e-6
    );
    let at_corrupt =
        block_on(host.edge_products(&runs.deltas(), runs.corrupt.grads().unwrap(), nf, nb))
            .unwrap();
    let eap = &b.scores[&EdgeMethod::Eap];
    for e in layout.edges() {
        let i = e.from * nb + e.to;
        assert!(
            (eap[i] + at_corrupt[i]).abs() < 1e-4 * (1.0 + at_corrupt[i].abs()),
            "{}",
            layout.edge_name(e)
        );
    }
}

#[test]
fn bad_requests_get_clear_errors() {
    let (host, p) = setup();
    let layout = GraphLayout::new(&MODEL_B.1.config());
    let zero = vec![0f32; layout.n_forward() * layout.n_backward()];
    let e = select(&layout, &zero, Select::Greedy, layout.n_edges() + 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("only 172 edges"), "{e}");
    let opts = EdgeOptions {
        methods: vec![EdgeMethod::EapIg],
        steps: 0,
    };
    let e = block_on(score_edges(
        &host,
        &host,
        std::slice::from_ref(&p),
        &opts,
        &mut Quiet,
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("at least 1 step"), "{e}");
    let short = Pair::new(
        tokenizer(),
        &MODEL_B.1.config(),
        "Alice went to the park. Then Alice",
        "Bob went to the park. Then Alice",
        " went",
        " was",
        false,
    )
    .unwrap();
    let opts = EdgeOptions::default();
    let e = block_on(score_edges(&host, &host, &[p, short], &opts, &mut Quiet))
        .unwrap_err()
        .to_string();
    assert!(e.contains("same number of tokens"), "{e}");
}
