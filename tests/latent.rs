//! Latent components that mean the same thing for IG*, AP and AtP, for
//! either sign of the metric gap (docs/methods.md, "Analysis"). These tests
//! do not compare with a re-statement of our own formulas: they check
//! invariants that any correct analysis has (swapping clean and corrupt
//! swaps the directions and negates the asymmetry) and a hand-built case
//! whose answer is known.

use crate::common::{engines, ioi_prompts, spec, tokenizer};
use patchlab::attribution::run::{analyze_pair, Options};
use patchlab::attribution::{Direction, Method, Quiet};
use patchlab::engine::{Component, Engine};
use patchlab::report::{derive, LatentKind, Maps, MethodKey, Prompts, Report};
use std::collections::BTreeMap;

fn ioi(swapped: bool) -> Prompts {
    let p = ioi_prompts();
    if swapped {
        Prompts {
            clean: p.corrupt,
            corrupt: p.clean,
            ..p
        }
    } else {
        p
    }
}

fn opts() -> Options {
    Options {
        methods: vec![Method::Ap, Method::Ig, Method::Atp],
        directions: Direction::ALL.to_vec(),
        components: vec![Component::Heads, Component::Neurons],
        ig_steps: 6,
        ..Options::default()
    }
}

fn map(r: &Report, m: MethodKey, d: Direction, c: Component) -> &Vec<Vec<f32>> {
    r.results[&m][&d].get(c).unwrap()
}

fn close(a: &[Vec<f32>], b: &[Vec<f32>], what: &str) {
    let scale = a.iter().flatten().fold(1e-6f32, |s, x| s.max(x.abs()));
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        assert!((x - y).abs() <= 1e-5 * scale, "{what}: {x} vs {y}");
    }
}

async fn swap_invariance<E: Engine>(e: &E) {
    let tok = tokenizer();
    let o = opts();
    let r = analyze_pair(e, "m", tok, &ioi(false), &o, &mut Quiet)
        .await
        .unwrap();
    let s = analyze_pair(e, "m", tok, &ioi(true), &o, &mut Quiet)
        .await
        .unwrap();
    let what = format!("{} backend", e.backend());
    // the gap flips its sign
    assert_eq!(r.metric.clean, s.metric.corrupt, "{what}");
    assert_eq!(r.metric.corrupt, s.metric.clean, "{what}");
    let (cc, ccl) = (Direction::CleanToCorrupt, Direction::CorruptToClean);
    for c in [Component::Heads, Component::Neurons] {
        // the directions swap, for AP, AtP and IG* (raw IG too: same runs)
        for m in [
            MethodKey::Ap,
            MethodKey::Atp,
            MethodKey::Ig,
            MethodKey::IgNorm,
        ] {
            close(
                map(&s, m, cc, c),
                map(&r, m, ccl, c),
                &format!("{what} {m} {c:?} cc"),
            );
            close(
                map(&s, m, ccl, c),
                map(&r, m, cc, c),
                &format!("{what} {m} {c:?} ccl"),
            );
        }
        for m in [MethodKey::IgNorm, MethodKey::Ap, MethodKey::Atp] {
            // A → −A
            let a = &r.analysis.asymmetry[&m][&c].0;
            let b = &s.analysis.asymmetry[&m][&c].0;
            let neg: Vec<Vec<f32>> = a.iter().map(|r| r.iter().map(|x| -x).collect()).collect();
            close(b, &neg, &format!("{what} asymmetry {m} {c:?}"));
            // AND ↔ OR
            let (lr, ls) = (&r.analysis.latent[&m][&c], &s.analysis.latent[&m][&c]);
            assert_eq!(ls.and, lr.or, "{what} {m} {c:?}: AND(swapped) = OR");
            assert_eq!(ls.or, lr.and, "{what} {m} {c:?}: OR(swapped) = AND");
        }
        // and the comparisons do not depend on which prompt is called clean
        let (cc, ccl) = (cc.name(), ccl.name());
        for (key, v) in &r.analysis.correlations[&c] {
            let swapped_key = key.replace(cc, "@").replace(ccl, cc).replace('@', ccl);
            let w = s.analysis.correlations[&c]
                .get(&swapped_key)
                .or_else(|| {
                    // "x_ccl__vs__y_cc" is stored as "y_cc__vs__x_ccl" when
                    // the order of maps puts y first
                    let (a, b) = swapped_key.split_once("__vs__")?;
                    s.analysis.correlations[&c].get(&format!("{b}__vs__{a}"))
                })
                .unwrap_or_else(|| panic!("{what}: no {swapped_key}"));
            match (v, w) {
                (Some(v), Some(w)) => {
                    assert!((v - w).abs() < 1e-6, "{what} {c:?} {key}: {v} vs {w}")
                }
                _ => assert_eq!(v, w, "{what} {c:?} {key}"),
            }
        }
        let (or, os) = (&r.analysis.overlap[&c], &s.analysis.overlap[&c]);
        let (and, or_) = (&LatentKind::And, &LatentKind::Or);
        assert_eq!((or[and], or[or_]), (os[or_], os[and]), "{what} {c:?}");
    }
}

#[test]
fn swapping_clean_and_corrupt_swaps_directions_and_latent_sets_on_both_backends() {
    for (layers, heads, d, seed) in [(2, 4, 32, 11), (3, 3, 48, 12), (1, 2, 16, 13)] {
        let (cpu, gpu) = engines(&spec(layers, heads, d, seed));
        pollster::block_on(swap_invariance(&cpu));
        pollster::block_on(swap_invariance(&gpu));
    }
}

/// A report to hold hand-made maps: one real report (for its bookkeeping),
/// with heads only, one layer of ten, and the given metrics.
fn synthetic(m_clean: f32, m_corrupt: f32) -> Report {
    let (cpu, _) = engines(&spec(1, 2, 16, 21));
    let tok = tokenizer();
    let mut r = pollster::block_on(analyze_pair(
        &cpu,
        "m",
        tok,
        &ioi(false),
        &Options {
            components: vec![Component::Heads],
            ig_steps: 2,
            ..opts()
        },
        &mut Quiet,
    ))
    .unwrap();
    r.metric.clean = m_clean;
    r.metric.corrupt = m_corrupt;
    r
}

/// Component 0 is necessary only: noising it (clean → corrupt) breaks the
/// behaviour (AP_cc = −1), restoring it alone (corrupt → clean) does
/// nothing (AP_ccl = 0). Component 1 is sufficient only: the reverse. The
/// others matter a little, as much either way. IG is built as captum's raw
/// means would be in the linear regime (raw = AP × gap / (T · d_model), with
/// the gap m_base − m_other of each direction), for both signs of the gap:
/// component 0 must be in AND and component 1 in OR for AP and for IG*.
#[test]
fn a_necessary_only_and_a_sufficient_only_component_land_in_and_and_or() {
    let mut ap_cc = vec![-1.0f32, 0.0];
    let mut ap_ccl = vec![0.0f32, -1.0];
    for k in 2..10 {
        let v = -0.02 * k as f32;
        ap_cc.push(v);
        ap_ccl.push(v);
    }
    for (m_clean, m_corrupt) in [(2.5f32, 0.5f32), (0.5, 2.5), (-1.0, 3.0)] {
        let mut r = synthetic(m_clean, m_corrupt);
        let n = (r.tokens.clean.len() * r.model.d_model) as f32;
        let gap = m_clean - m_corrupt;
        let raw = |ap: &[f32], g: f32| vec![ap.iter().map(|x| x * g / n).collect::<Vec<_>>()];
        let heads = |m: Vec<Vec<f32>>| Maps {
            heads: Some(m),
            ..Maps::default()
        };
        let (cc, ccl) = (Direction::CleanToCorrupt, Direction::CorruptToClean);
        r.results = BTreeMap::from([
            (
                MethodKey::Ap,
                BTreeMap::from([
                    (cc, heads(vec![ap_cc.clone()])),
                    (ccl, heads(vec![ap_ccl.clone()])),
                ]),
            ),
            (
                MethodKey::Ig,
                BTreeMap::from([
                    (cc, heads(raw(&ap_cc, gap))),
                    (ccl, heads(raw(&ap_ccl, -gap))),
                ]),
            ),
        ]);
        derive(&mut r, 10);
        let what = format!("gap {gap}");
        for m in [MethodKey::Ap, MethodKey::IgNorm] {
            let l = &r.analysis.latent[&m][&Component::Heads];
            assert!(l.and.contains(&[0, 0]), "{what}: {m} AND {:?}", l.and);
            assert!(l.or.contains(&[0, 1]), "{what}: {m} OR {:?}", l.or);
            assert!(
                !l.and.contains(&[0, 1]) && !l.or.contains(&[0, 0]),
                "{what}: {m}"
            );
        }
        // IG* is AP here, to float noise, whatever the sign of the gap
        let a = &r.results[&MethodKey::IgNorm][&cc].heads.as_ref().unwrap()[0];
        for (x, y) in a.iter().zip(&ap_cc) {
            assert!((x - y).abs() < 1e-5, "{what}: IG* {x} vs AP {y}");
        }
        let heads = &Component::Heads;
        assert_eq!(r.analysis.overlap[heads][&LatentKind::And], 1.0, "{what}");
        let corr = r.analysis.correlations[heads]["asym_ig_norm__vs__asym_ap"].unwrap();
        assert!((corr - 1.0).abs() < 1e-6, "{what}: {corr}");
        // raw IG's r against AP carries the gap's sign (docs/methods.md, "Analysis")
        let raw_r = r.analysis.correlations_raw[heads]
            ["ig_clean_to_corrupt__vs__ap_clean_to_corrupt"]
            .unwrap();
        assert!(
            (raw_r - gap.signum() as f64).abs() < 1e-6,
            "{what}: raw r {raw_r}"
        );
    }
}
