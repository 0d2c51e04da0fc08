//! `patchlab bench --backend gpu --profile`: each phase of one pair's
//! analysis once, with the device work it took (dispatches, workgroups,
//! FLOPs, bytes, submissions, read-backs; kernel times where timed, from
//! timestamp queries where the adapter offers them), the
//! kernels that did it, and a projection of that work onto named GPUs.

use patchlab::attribution::circuit::{score_edges, EdgeMethod, EdgeOptions};
use patchlab::attribution::patching::activation_patching;
use patchlab::attribution::sites::{site_scores, SiteAsk};
use patchlab::attribution::{
    atp::attribution_patching, integrated_gradients::integrated_gradients,
};
use patchlab::attribution::{quadrature::Rule, Direction, Method, Pair, Quiet, Tracker};
use patchlab::clock::now_ms;
use patchlab::engine::graph::GraphPasses;
use patchlab::engine::profile::{project, DeviceProfile, Timing, GPUS};
use patchlab::engine::{Component, Engine, SweepPair};
use patchlab::report::PatchSite;
use patchlab::{Error, Result};

/// One phase's work and wall-clock time.
pub struct Phase {
    pub name: &'static str,
    pub work: DeviceProfile,
    pub wall_ms: f64,
}

/// Per-dispatch costs of the projection, microseconds.
pub struct DispatchCosts {
    pub native_us: f64,
    pub browser_us: f64,
}

fn snapshot<E: Engine>(e: &E) -> Result<DeviceProfile> {
    e.device_profile().ok_or_else(|| {
        Error::Input(
            "--profile counts a device's work: use it with --backend gpu (the CPU engine has no kernels to count)"
                .into(),
        )
    })
}

/// Runs each phase of `pair`'s analysis once on `e` (both directions, as
/// `patchlab analyze` does), recording the device work of each.
pub async fn profile_phases<E: Engine + GraphPasses>(
    e: &E,
    pair: &Pair,
    ig_steps: usize,
) -> Result<Vec<Phase>> {
    let mut phases = Vec::new();
    let mut before = snapshot(e)?;
    let mut t0 = now_ms();
    let mut done = |name: &'static str, before: &mut DeviceProfile, t0: &mut f64| -> Result<()> {
        let now = snapshot(e)?;
        phases.push(Phase {
            name,
            work: now.since(before),
            wall_ms: now_ms() - *t0,
        });
        *before = now;
        *t0 = now_ms();
        Ok(())
    };
    let clean = e.run(&pair.clean, &pair.metric).await?;
    let corrupt = e.run(&pair.corrupt, &pair.metric).await?;
    done("forward (both prompts, cached)", &mut before, &mut t0)?;
    let mut q = Quiet;
    let sweeps = |d: Direction| {
        let (base, other) = d.order(&clean, &corrupt);
        SweepPair {
            base,
            other,
            first_diff: pair.first_diff,
        }
    };
    for c in [Component::Heads, Component::Neurons] {
        for d in Direction::ALL {
            let mut tr = Tracker::new(&mut q, 0);
            activation_patching(e, &[sweeps(d)], c, d, &mut tr).await?;
        }
        let name = match c {
            Component::Heads => "AP heads",
            Component::Neurons => "AP neurons",
        };
        done(name, &mut before, &mut t0)?;
    }
    for c in [Component::Heads, Component::Neurons] {
        for d in Direction::ALL {
            let mut tr = Tracker::new(&mut q, 0);
            let rule = (ig_steps, Rule::GaussLegendre);
            integrated_gradients(e, &[sweeps(d)], c, rule, d, &mut tr).await?;
        }
        let name = match c {
            Component::Heads => "IG heads",
            Component::Neurons => "IG neurons",
        };
        done(name, &mut before, &mut t0)?;
    }
    for d in Direction::ALL {
        let mut tr = Tracker::new(&mut q, 0);
        for c in [Component::Heads, Component::Neurons] {
            attribution_patching(e, &[sweeps(d)], c, d, &mut tr).await?;
        }
    }
    done("AtP heads + neurons", &mut before, &mut t0)?;
    let sites = [
        PatchSite::ResidPre,
        PatchSite::AttnOut,
        PatchSite::MlpOut,
        PatchSite::Z,
    ];
    let ask = SiteAsk {
        sites: &sites,
        methods: &[Method::Ap, Method::Atp],
        ig_steps,
        ig_rule: Rule::GaussLegendre,
    };
    let d = Direction::CleanToCorrupt;
    let mut tr = Tracker::new(&mut q, 0);
    site_scores(e, sweeps(d), &ask, d, &mut tr).await?;
    done(
        "sites: resid_pre, attn_out, mlp_out, z (AP + AtP)",
        &mut before,
        &mut t0,
    )?;
    let opts = EdgeOptions {
        methods: vec![EdgeMethod::Eap, EdgeMethod::EapIg],
        steps: 5,
    };
    score_edges(e, e, std::slice::from_ref(pair), &opts, &mut q).await?;
    done(
        "circuit passes: EAP + EAP-IG (5 steps)",
        &mut before,
        &mut t0,
    )?;
    Ok(phases)
}

/// Prints the phases, the busiest kernels and the projection.
pub fn print_profile(phases: &[Phase], costs: &DispatchCosts) {
    let Some(first) = phases.first() else {
        return;
    };
    let timing = first.work.timing;
    let timed = timing.is_some();
    println!(
        "device work per phase on {} (counted from each dispatch's shapes; bytes: each operand read once, each result written once)",
        first.work.adapter
    );
    println!(
        "{:<50} {:>10} {:>12} {:>10} {:>10} {:>8} {:>10} {:>10} {:>10}",
        "phase",
        "dispatches",
        "workgroups",
        "GFLOP",
        "MB",
        "submits",
        "read-backs",
        "wall s",
        "kernel s"
    );
    let mut all = phases[0].work.clone();
    for (i, p) in phases.iter().enumerate() {
        let t = p.work.total();
        println!(
            "{:<50} {:>10} {:>12} {:>10.2} {:>10.1} {:>8} {:>10} {:>10.3} {:>10}",
            p.name,
            t.dispatches,
            t.workgroups,
            t.flops / 1e9,
            t.bytes / 1e6,
            p.work.submits,
            p.work.readbacks,
            p.wall_ms / 1e3,
            if timed {
                format!("{:.3}", t.ms / 1e3)
            } else {
                "–".into()
            }
        );
        if i > 0 {
            all.add(&p.work);
        }
    }
    match timing {
        Some(t @ Timing::Timestamps) => println!(
            "(kernel s: {}; the wall times include that split)",
            t.describe()
        ),
        Some(t @ Timing::Elapsed) => println!(
            "(kernel s: {}; the wall times include those waits)",
            t.describe()
        ),
        None => println!(
            "(kernel s: set PATCHLAB_GPU_PROFILE=1 to time each kernel, with the adapter's timestamp queries where it \
             offers them, else the elapsed time of each dispatch submitted alone; PATCHLAB_GPU_PROFILE=elapsed for the latter)"
        ),
    }
    println!("\nkernels over all phases, most FLOPs first");
    println!(
        "{:<24} {:>10} {:>12} {:>10} {:>10} {:>8} {:>10}",
        "kernel", "dispatches", "workgroups", "GFLOP", "MB", "FLOP/B", "kernel s"
    );
    for k in all.busy() {
        println!(
            "{:<24} {:>10} {:>12} {:>10.2} {:>10.1} {:>8.1} {:>10}",
            k.name,
            k.dispatches,
            k.workgroups,
            k.flops / 1e9,
            k.bytes / 1e6,
            k.flops / k.bytes.max(1.0),
            if timed {
                format!("{:.3}", k.ms / 1e3)
            } else {
                "–".into()
            }
        );
    }
    println!(
        "\nPROJECTION (a model, not a measurement): each phase's time on a GPU as the largest of its compute bound \
         (FLOPs at the f32 peak), memory bound (bytes at the bandwidth) and dispatch bound ({} µs per dispatch and \
         read-back natively, {} µs in a browser); real kernels reach a fraction of either peak",
        costs.native_us, costs.browser_us
    );
    print!("{:<50}", "phase");
    for g in &GPUS {
        print!(
            " {:>24}",
            format!("{} ({} TF, {} GB/s)", g.name, g.tflops, g.gbytes_per_s)
        );
    }
    println!(" {:>24}", "Apple M2 in a browser");
    let row = |name: &str, work: &DeviceProfile| {
        print!("{name:<50}");
        for g in &GPUS {
            let (ms, b) = project(work, g, costs.native_us);
            print!(" {:>24}", format!("{ms:.2} ms {}", b.name()));
        }
        let (ms, b) = project(work, &GPUS[2], costs.browser_us);
        println!(" {:>24}", format!("{ms:.2} ms {}", b.name()));
    };
    for p in phases {
        row(p.name, &p.work);
    }
    // the phases run one after another: their projections add up
    print!("{:<50}", "all of the above (the phases' sum)");
    for g in &GPUS {
        let ms: f64 = phases
            .iter()
            .map(|p| project(&p.work, g, costs.native_us).0)
            .sum();
        print!(" {:>24}", format!("{ms:.2} ms"));
    }
    let ms: f64 = phases
        .iter()
        .map(|p| project(&p.work, &GPUS[2], costs.browser_us).0)
        .sum();
    println!(" {:>24}", format!("{ms:.2} ms"));
}

/// The phases' counts as JSON (what `scripts/gpu-figures` keeps under `bench/`).
pub fn write_json(
    path: &std::path::Path,
    phases: &[Phase],
    cfg: &patchlab::model::Config,
    pair: &Pair,
) -> Result<()> {
    let kernels = |w: &DeviceProfile| -> Vec<serde_json::Value> {
        w.busy()
            .iter()
            .map(|k| {
                serde_json::json!({
                    "kernel": k.name, "dispatches": k.dispatches, "workgroups": k.workgroups,
                    "flops": k.flops, "bytes": k.bytes, "ms": if w.timed { Some(k.ms) } else { None },
                })
            })
            .collect()
    };
    let v = serde_json::json!({
        "adapter": phases.first().map(|p| p.work.adapter.clone()),
        "model": { "n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "d_model": cfg.d_model },
        "tokens": pair.clean.len(),
        "first_diff": pair.first_diff,
        "timed": phases.first().is_some_and(|p| p.work.timed),
        // "timestamps", "elapsed" or null (see Timing)
        "timing": phases.first().and_then(|p| p.work.timing),
        "phases": phases.iter().map(|p| serde_json::json!({
            "phase": p.name,
            "wall_ms": p.wall_ms,
            "submits": p.work.submits,
            "readbacks": p.work.readbacks,
            "kernels": kernels(&p.work),
        })).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&v).expect("JSON of numbers and names");
    std::fs::write(path, text)
        .map_err(|e| Error::Io(format!("cannot write {}: {e}", path.display())))
}
