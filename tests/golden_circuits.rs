//! Circuits against the EAP-IG reference implementation itself
//! (hannamw/EAP-IG 795f560 on TransformerLens), from
//! tests/golden/circuits_model_{a,b}.json (tests/reference/make_circuit_goldens.py):
//! every edge's EAP, EAP-IG and EAP-IG-activations (5 steps), clean-corrupted
//! and exact score,
//! the top-n and greedy circuits at three sizes with their faithfulness,
//! a dataset's mean scores and its circuits under mean-positional ablation,
//! and the graph file's layout.

use pollster::block_on;
use std::collections::BTreeSet;

use crate::common::golden::{flat, load, MODEL_A, MODEL_B};
use crate::common::*;
use patchlab::attribution::circuit::{
    faithfulness, score_edges, select, Ablation, EdgeMethod, EdgeOptions, EdgeScores, FaithRuns,
    Select,
};
use patchlab::attribution::{Pair, Quiet};
use patchlab::engine::cpu::CpuEngine;
use patchlab::engine::graph::GraphPasses;
use patchlab::engine::Engine;
use patchlab::model::graph::GraphLayout;
use patchlab::model::random::{random_weights, RandomSpec};
use patchlab::report::circuit::{edge_list, read_reference_graph_json, reference_graph_json};
use serde_json::Value;

fn pair(cfg: &patchlab::model::Config, case: &Value) -> Pair {
    let s = |k: &str| case[k].as_str().unwrap();
    Pair::new(
        tokenizer(),
        cfg,
        s("clean"),
        s("corrupt"),
        s("correct"),
        s("incorrect"),
        case["bos"].as_bool().unwrap(),
    )
    .unwrap()
}

fn all_methods(g: &Value) -> EdgeOptions {
    EdgeOptions {
        methods: EdgeMethod::ALL.to_vec(),
        steps: g["steps"].as_u64().unwrap() as usize,
    }
}

/// Largest |a − b| over the largest |b| (at least 1e-3: scores of a
/// random model are O(0.1)).
fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-3f32, |m, x| m.max(x.abs()));
    let diff: Vec<f32> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    max_abs(&diff) / scale
}

fn names(layout: &GraphLayout, picked: &[bool]) -> BTreeSet<String> {
    layout
        .edges()
        .into_iter()
        .filter(|e| picked[e.from * layout.n_backward() + e.to])
        .map(|e| layout.edge_name(e))
        .collect()
}

fn node_names(layout: &GraphLayout, nodes: &[bool]) -> BTreeSet<String> {
    let mut s: BTreeSet<String> = (0..layout.n_forward())
        .filter(|&i| nodes[i])
        .map(|i| layout.node_name(layout.node(i)))
        .collect();
    s.insert("logits".into());
    s
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// One golden entry (a case or a dataset) against scores computed here.
fn check_entry(
    host: &impl GraphPasses,
    what: &str,
    entry: &Value,
    pairs: &[Pair],
    ours: &EdgeScores,
) {
    let layout = &ours.layout;
    let golden_names: Vec<String> = entry["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    let our_names: Vec<String> = layout
        .edges()
        .into_iter()
        .map(|e| layout.edge_name(e))
        .collect();
    assert_eq!(our_names, golden_names, "{what}: edge names and order");
    let b = &entry["baseline"];
    assert!(
        (ours.clean - b["clean"].as_f64().unwrap() as f32).abs() < 1e-4,
        "{what}"
    );
    assert!(
        (ours.corrupt - b["corrupt"].as_f64().unwrap() as f32).abs() < 1e-4,
        "{what}"
    );
    for m in EdgeMethod::ALL {
        let want = flat(&entry["scores"][m.name()]);
        let got = edge_list(layout, &ours.scores[&m]);
        let err = rel_err(&got, &want);
        assert!(
            err < 2e-4,
            "{what}: {} scores differ by {err} of their scale",
            m.name()
        );
    }

    let mut kinds = vec![("circuits", Ablation::Patching)];
    if entry.get("circuits_mean").is_some() {
        kinds.push(("circuits_mean", Ablation::MeanPositional));
    }
    for (key, ablation) in kinds {
        let runs = block_on(FaithRuns::new(host, pairs, ablation)).unwrap();
        for (m, per_how) in entry[key].as_object().unwrap() {
            let m = EdgeMethod::parse(m).unwrap();
            for (how, points) in per_how.as_object().unwrap() {
                let how = Select::parse(how).unwrap();
                for p in points.as_array().unwrap() {
                    let n = p["n"].as_u64().unwrap() as usize;
                    let c = select(layout, &ours.scores[&m], how, n).unwrap();
                    let at = format!(
                        "{what}: {} {} n={n} ({})",
                        m.name(),
                        how.name(),
                        ablation.name()
                    );
                    assert_eq!(names(layout, &c.edges), strings(&p["edges"]), "{at}: edges");
                    assert_eq!(
                        node_names(layout, &c.nodes),
                        strings(&p["nodes"]),
                        "{at}: nodes"
                    );
                    let f = block_on(faithfulness(host, &runs, &c, n)).unwrap();
                    let want = p["metric"].as_f64().unwrap() as f32;
                    assert!(
                        (f.metric - want).abs() < 1e-4,
                        "{at}: m(C) {} vs {want}",
                        f.metric
                    );
                    let wf = p["faithfulness"].as_f64().unwrap() as f32;
                    assert!(
                        (f.faithfulness - wf).abs() < 1e-3,
                        "{at}: faithfulness {} vs {wf}",
                        f.faithfulness
                    );
                }
            }
        }
    }
}

fn check_model(file: &str, spec: &RandomSpec) {
    let host = CpuEngine::new(spec.config(), random_weights(spec)).unwrap();
    check_model_on(&host, file, spec);
}

/// Every golden case and dataset of `file`, computed wholly on `host`
/// (the graph's passes and exact patching's tails).
fn check_model_on<E: Engine + GraphPasses>(host: &E, file: &str, spec: &RandomSpec) {
    let g = load(file);
    let cfg = spec.config();
    let opts = all_methods(&g);
    for (ci, case) in g["cases"].as_array().unwrap().iter().enumerate() {
        let p = pair(&cfg, &case["case"]);
        let want: Vec<u32> = case["clean_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(p.clean, want, "{file} case {ci}");
        let ours = scores(host, std::slice::from_ref(&p), &opts);
        check_entry(host, &format!("{file} case {ci}"), case, &[p], &ours);
        // the graph file: the reference's layout, read back by the reference's rules
        let layout = &ours.layout;
        let n = case["graph_json_n"].as_u64().unwrap() as usize;
        let scores = &ours.scores[&EdgeMethod::EapIg];
        let c = select(layout, scores, Select::Topn, n).unwrap();
        let per_edge = edge_list(layout, scores);
        let in_edges: Vec<bool> = layout
            .edges()
            .iter()
            .map(|e| c.edges[e.from * layout.n_backward() + e.to])
            .collect();
        let text = reference_graph_json(layout, cfg.d_model, &per_edge, &in_edges, &c.nodes);
        let ours_v: Value = serde_json::from_str(&text).unwrap();
        let want = &case["graph_json"];
        assert_eq!(ours_v["cfg"], want["cfg"]);
        assert_eq!(
            ours_v["nodes"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<BTreeSet<_>>(),
            want["nodes"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<BTreeSet<_>>()
        );
        for (k, v) in want["nodes"].as_object().unwrap() {
            assert_eq!(ours_v["nodes"][k]["in_graph"], v["in_graph"], "node {k}");
        }
        for (k, v) in want["edges"].as_object().unwrap() {
            assert_eq!(ours_v["edges"][k]["in_graph"], v["in_graph"], "edge {k}");
            let (a, b) = (
                ours_v["edges"][k]["score"].as_f64().unwrap(),
                v["score"].as_f64().unwrap(),
            );
            assert!(
                (a - b).abs() < 2e-4 * (1.0f64).max(b.abs()),
                "edge {k}: {a} vs {b}"
            );
        }
        let (back, back_in) =
            read_reference_graph_json(layout, cfg.d_model, &serde_json::to_string(want).unwrap())
                .unwrap();
        assert_eq!(back_in, in_edges);
        assert!(rel_err(&per_edge, &back) < 2e-4);
    }
    for (di, ds) in g["datasets"].as_array().unwrap().iter().enumerate() {
        let pairs: Vec<Pair> = ds["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| pair(&cfg, c))
            .collect();
        let ours = scores(host, &pairs, &opts);
        check_entry(host, &format!("{file} dataset {di}"), ds, &pairs, &ours);
    }
}

#[test]
fn circuits_match_the_eap_ig_reference_model_a() {
    check_model("circuits_model_a.json", &MODEL_A.1);
}

#[test]
fn circuits_match_the_eap_ig_reference_model_b() {
    check_model("circuits_model_b.json", &MODEL_B.1);
}

/// Every method, circuit and faithfulness point wholly on the GPU engine
/// (its graph passes and tails; lavapipe in CI) against the reference.
#[test]
fn gpu_circuits_match_the_eap_ig_reference_model_a() {
    let (_, gpu) = engines(&MODEL_A.1);
    check_model_on(&gpu, "circuits_model_a.json", &MODEL_A.1);
}

/// Exact edge patching's tails on the GPU engine (lavapipe in CI) against the reference.
#[test]
fn gpu_exact_edge_patching_matches_the_reference_model_a() {
    let (file, spec) = (MODEL_A.0.replace("model_a", "circuits_model_a"), MODEL_A.1);
    let g = load(&file);
    let (host, gpu) = engines(&spec);
    let opts = EdgeOptions {
        methods: vec![EdgeMethod::Exact],
        steps: 1,
    };
    for case in g["cases"].as_array().unwrap() {
        let p = pair(&spec.config(), &case["case"]);
        let ours = block_on(score_edges(&gpu, &host, &[p], &opts, &mut Quiet)).unwrap();
        let got = edge_list(&ours.layout, &ours.scores[&EdgeMethod::Exact]);
        let err = rel_err(&got, &flat(&case["scores"]["exact"]));
        assert!(err < 2e-4, "gpu exact: {err}");
        assert_eq!(gpu.backend(), "gpu");
    }
}
