//! Mean ablation (attribution::ablation): the replacement values are the
//! per-position mean corrupt activation over pairs of one length, the sets
//! combine IG's and AP's latent components as documented, and the ablated
//! metric equals an independent computation with full-hook substitution.

use crate::common::*;
use patchlab::attribution::ablation::{ablate_dataset, AblationSet, Pick};
use patchlab::attribution::run::{analyze_pair, Options};
use patchlab::attribution::{Direction, Method, Quiet};
use patchlab::dataset::Task;
use patchlab::engine::{Component, Engine};
use patchlab::report::{LatentKind, MethodKey, Prompts, Report};
use std::collections::BTreeSet;

fn reports(
    e: &patchlab::engine::cpu::CpuEngine,
    pairs: &[Prompts],
    methods: Vec<Method>,
) -> Vec<(usize, Report)> {
    let tok = tokenizer();
    let opts = Options {
        methods,
        directions: Direction::ALL.to_vec(),
        components: vec![Component::Heads, Component::Neurons],
        ig_steps: 4,
        ..Options::default()
    };
    pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let r = pollster::block_on(analyze_pair(e, "m", tok, p, &opts, &mut Quiet)).unwrap();
            (i, r)
        })
        .collect()
}

/// IOI pairs that all have the same number of tokens, so one mean covers them.
fn same_length_pairs(k: usize) -> Vec<Prompts> {
    let tok = tokenizer();
    let all = Task::Ioi.generate(tok, 60, 0, true).unwrap();
    let len = |p: &Prompts| tok.encode(&p.clean, true).unwrap().len();
    let target = len(&all[0]);
    let same: Vec<Prompts> = all
        .into_iter()
        .filter(|p| len(p) == target)
        .take(k)
        .collect();
    assert_eq!(same.len(), k, "not enough IOI pairs of {target} tokens");
    same
}

#[test]
fn one_layer_ablation_equals_full_substitution_with_the_mean() {
    let e = engine(&spec(2, 4, 32, 5));
    let tok = tokenizer();
    let pairs = same_length_pairs(3);
    let reps = reports(&e, &pairs, vec![Method::Atp]);
    // heads and neurons separately: a substitution of the whole hook is the
    // same forward only when nothing upstream of it changed
    let sets = [
        (
            "heads".to_string(),
            AblationSet::parse("h0.1,h0.3").unwrap(),
        ),
        ("neurons".to_string(), AblationSet::parse("n0.7").unwrap()),
    ];
    let out = pollster::block_on(ablate_dataset(&e, tok, &reps, &sets, &mut Quiet)).unwrap();
    let (head_rows, neuron_rows) = (&out.sets[0].pairs, &out.sets[1].pairs);
    assert_eq!((head_rows.len(), neuron_rows.len()), (3, 3));

    // the mean corrupt hook_result / hook_post of layer 0, by hand
    let runs: Vec<_> = pairs
        .iter()
        .map(|p| {
            let ids = tok.encode(&p.corrupt, true).unwrap();
            pollster::block_on(e.run(&ids, &ANSWERS)).unwrap()
        })
        .collect();
    let act = |hook: &str| -> Vec<Vec<f32>> {
        runs.iter()
            .map(|r| pollster::block_on(e.activation(r, hook)).unwrap().data)
            .collect()
    };
    let mean = |v: Vec<Vec<f32>>| -> Vec<f32> {
        let n = v.len() as f32;
        (0..v[0].len())
            .map(|i| v.iter().map(|x| x[i]).sum::<f32>() / n)
            .collect()
    };
    let (mean_result, mean_post) = (
        mean(act("blocks.0.attn.hook_result")),
        mean(act("blocks.0.mlp.hook_post")),
    );
    let (h, d, dm) = (4, 32, 128);
    for (k, p) in pairs.iter().enumerate() {
        let ids = tok.encode(&p.clean, true).unwrap();
        let metric = patchlab::attribution::Pair::new(
            tok,
            e.config(),
            &p.clean,
            &p.corrupt,
            &p.correct,
            &p.incorrect,
            true,
        )
        .unwrap()
        .metric;
        let clean = pollster::block_on(e.run(&ids, &metric)).unwrap();
        let mut result =
            pollster::block_on(e.activation(&clean, "blocks.0.attn.hook_result")).unwrap();
        let mut post = pollster::block_on(e.activation(&clean, "blocks.0.mlp.hook_post")).unwrap();
        for pos in 0..ids.len() {
            for head in [1, 3] {
                let at = (pos * h + head) * d;
                result.data[at..at + d].copy_from_slice(&mean_result[at..at + d]);
            }
            post.data[pos * dm + 7] = mean_post[pos * dm + 7];
        }
        let sub = |name: &str, v: patchlab::engine::Array| {
            pollster::block_on(e.metric_with_substitutions(&ids, &metric, &[(name.into(), v)]))
                .unwrap()
        };
        let checks = [
            (
                &head_rows[k],
                sub("blocks.0.attn.hook_result", result),
                (2, 0),
            ),
            (&neuron_rows[k], sub("blocks.0.mlp.hook_post", post), (0, 1)),
        ];
        for (row, want, counts) in checks {
            assert!(
                (row.metric_ablated - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "ablated {} vs substituted {want}",
                row.metric_ablated
            );
            assert!((row.metric_clean - e.metric(&clean)).abs() < 1e-6);
            assert_eq!((row.heads, row.neurons), counts);
            assert!((row.change - (row.metric_ablated - row.metric_clean)).abs() < 1e-6);
        }
    }
    // the ablation moved the metric (a test of a no-op would pass otherwise)
    for rows in [head_rows, neuron_rows] {
        assert!(rows.iter().any(|r| r.change.abs() > 1e-5), "{rows:?}");
    }
}

#[test]
fn latent_sets_combine_ig_and_ap_as_documented() {
    let e = engine(&spec(2, 4, 32, 6));
    let tok = tokenizer();
    let pairs = same_length_pairs(1);
    let reps = reports(&e, &pairs, vec![Method::Ap, Method::Ig]);
    let r = &reps[0].1;
    for (c, cname) in [(Component::Heads, "heads"), (Component::Neurons, "neurons")] {
        for (which, w) in [(LatentKind::And, "and"), (LatentKind::Or, "or")] {
            let get = |m: MethodKey| -> BTreeSet<[usize; 2]> {
                let l = &r.analysis.latent[&m][&c];
                (if w == "and" { &l.and } else { &l.or })
                    .iter()
                    .copied()
                    .collect()
            };
            // `ig` picks IG*'s sets: on AP's scale, like with like
            let (ig, ap) = (get(MethodKey::IgNorm), get(MethodKey::Ap));
            for (pick, want) in [
                (Pick::Ig, ig.clone()),
                (Pick::Ap, ap.clone()),
                (Pick::Both, ig.intersection(&ap).copied().collect()),
                (Pick::Either, ig.union(&ap).copied().collect()),
                (Pick::IgOnly, ig.difference(&ap).copied().collect()),
                (Pick::ApOnly, ap.difference(&ig).copied().collect()),
            ] {
                let got = AblationSet::Latent(which, pick).select(r).unwrap();
                let got: BTreeSet<[usize; 2]> = got[&c].iter().copied().collect();
                assert_eq!(got, want, "{cname} {w} {pick:?}");
            }
        }
    }
    // the pair's latent sets are not all empty (else the test proves little)
    assert!(!r.analysis.latent[&MethodKey::IgNorm][&Component::Neurons]
        .and
        .is_empty());
    // an AtP-only report has no IG/AP sets to pick from
    let atp = reports(&e, &pairs, vec![Method::Atp]);
    let err = AblationSet::Latent(LatentKind::And, Pick::Both)
        .select(&atp[0].1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--methods"), "{err}");
    // out-of-range fixed components are refused with the model's shape
    let bad = pollster::block_on(ablate_dataset(
        &e,
        tok,
        &reps,
        &[("x".into(), AblationSet::parse("h7.0").unwrap())],
        &mut Quiet,
    ))
    .unwrap_err()
    .to_string();
    assert!(bad.contains("does not exist"), "{bad}");
}
