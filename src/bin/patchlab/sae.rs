//! `patchlab random-sae` and `patchlab bench --sae`: a random SAE in the
//! published layout, and the time to score every feature of one.

use super::load;
use clap::Args;
use patchlab::attribution::features::{hook_input, sae_features};
use patchlab::attribution::run::{analyze_pair, Options};
use patchlab::attribution::{Pair, Quiet};
use patchlab::engine::Engine;
use patchlab::model::random_sae::{legacy_files, random_sae, RandomSaeSpec};
use patchlab::model::sae::{Sae, SaeSite};
use patchlab::report::{Direction, MethodKey, Prompts};
use patchlab::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Args)]
pub struct RandomSaeArgs {
    /// The model whose activations set the biases (a model directory).
    #[arg(long)]
    model: PathBuf,
    /// The hook it reads: blocks.L.hook_resid_pre, hook_resid_mid, hook_resid_post,
    /// hook_attn_out, hook_mlp_out or attn.hook_z.
    #[arg(long, default_value = "blocks.8.hook_resid_pre")]
    hook: String,
    /// Features (24576 is gpt2-small-res-jb's width).
    #[arg(long, default_value_t = 24576)]
    d_sae: usize,
    /// Features active per token, on average over the calibration prompts.
    #[arg(long, default_value_t = 50.0)]
    l0: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder (cfg.json + sae_weights.safetensors, jbloom's legacy layout).
    #[arg(long)]
    out: PathBuf,
}

/// Texts whose activations calibrate a random SAE's biases.
const CALIBRATION: [&str; 4] = [
    "When Mary and John went to the store, John gave a drink to Mary",
    "The war lasted from the year 1732 to the year 1789, and then",
    "The capital of France is Paris, and the capital of Italy is Rome",
    "After the meeting, the keys to the old cabinet were on the table",
];

pub fn random(a: RandomSaeArgs) -> Result<()> {
    let l = load(&a.model, "cpu")?;
    let cfg = l.engine.config().clone();
    let (layer, site) = SaeSite::parse(&a.hook).ok_or_else(|| {
        Error::Input(format!(
            "--hook {}: an SAE reads blocks.L.hook_resid_pre, hook_resid_mid, hook_resid_post, hook_attn_out, hook_mlp_out or attn.hook_z",
            a.hook
        ))
    })?;
    if layer >= cfg.n_layers {
        return Err(Error::Input(format!(
            "--hook {}: the model has layers 0..{}",
            a.hook,
            cfg.n_layers - 1
        )));
    }
    let mut sample = Vec::new();
    for text in CALIBRATION {
        let ids = l.tokenizer.encode(text, true)?;
        let run = pollster::block_on(
            l.engine
                .run(&ids, &patchlab::engine::Metric::logit_diff(0, 0)),
        )?;
        // the BOS row is no token of the text
        let x = pollster::block_on(hook_input(&l.engine, &run, site, layer))?;
        let d_in = x.len() / ids.len();
        sample.extend_from_slice(&x[d_in..]);
    }
    let d_in = match site {
        SaeSite::Z => cfg.n_heads * cfg.d_head,
        _ => cfg.d_model,
    };
    let spec = RandomSaeSpec {
        hook_name: a.hook.clone(),
        d_in,
        d_sae: a.d_sae,
        l0: a.l0,
        seed: a.seed,
    };
    let sae = random_sae(&spec, &sample)?;
    write(&sae, &a.out)?;
    println!(
        "random SAE on {} ({} features, about {} active per token) written to {}",
        a.hook,
        a.d_sae,
        a.l0,
        a.out.display()
    );
    Ok(())
}

fn write(sae: &Sae, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out)
        .map_err(|e| Error::Io(format!("cannot create {}: {e}", out.display())))?;
    for (name, bytes) in legacy_files(sae)? {
        let p = out.join(name);
        std::fs::write(&p, bytes)
            .map_err(|e| Error::Io(format!("cannot write {}: {e}", p.display())))?;
    }
    Ok(())
}

/// Scores every feature of `sae` on the IOI pair (AP, AtP and IG over all
/// positions and by position, both directions) and prints what ran and how
/// long it took.
pub fn bench_features<E: Engine>(
    e: &E,
    tokenizer: &patchlab::model::Tokenizer,
    sae: Sae,
    ig_steps: usize,
) -> Result<()> {
    let prompts = Prompts {
        clean: super::bench::CLEAN.into(),
        corrupt: super::bench::CORRUPT.into(),
        correct: " Mary".into(),
        incorrect: " John".into(),
        bos: true,
        metric: "logit_diff".into(),
    };
    let cfg = e.config().clone();
    let pair = Pair::from_prompts(tokenizer, &cfg, &prompts)?;
    let sae = Arc::new(sae);
    let (t, fd, ds) = (pair.clean.len(), pair.first_diff, sae.d_sae);
    let (clean, corrupt) = pollster::block_on(async {
        let c = e.run(&pair.clean, &pair.metric).await?;
        let k = e.run(&pair.corrupt, &pair.metric).await?;
        Ok::<_, Error>((
            sae_features(e, &c, &sae).await?,
            sae_features(e, &k, &sae).await?,
        ))
    })?;
    let active = |f: &[f32]| f.iter().filter(|&&v| v != 0.0).count() as f64 / t as f64;
    let (mut feats, mut cells) = (vec![false; ds], 0usize);
    for k in fd * ds..t * ds {
        if clean[k] != corrupt[k] {
            cells += 1;
            feats[k % ds] = true;
        }
    }
    let feats = feats.iter().filter(|&&x| x).count();
    println!(
        "patchlab bench --sae — backend {}, {} ({} layers, d_model {}), {t} tokens, rows from position {fd}",
        e.backend(),
        sae.hook_name,
        cfg.n_layers,
        cfg.d_model
    );
    println!(
        "SAE {} ({}, {ds} features): {:.1} active per token clean, {:.1} corrupt; {feats} features and {cells} (position, feature) cells differ",
        sae.name,
        sae.architecture.name(),
        active(&clean),
        active(&corrupt)
    );
    println!(
        "tails per direction: AP {} ({feats} over all positions + {cells} by position), AtP 1 backward, IG {ig_steps} path points",
        feats + cells
    );
    let opts = Options {
        components: vec![],
        saes: vec![sae.clone()],
        ig_steps,
        ..Options::default()
    };
    let t0 = std::time::Instant::now();
    let r = pollster::block_on(analyze_pair(
        e, "bench", tokenizer, &prompts, &opts, &mut Quiet,
    ))?;
    let total = t0.elapsed().as_secs_f64();
    println!(
        "AP + AtP + IG ({ig_steps} steps), all positions and by position, both directions: {total:.2} s (forwards and encoding included; report timings: {})",
        r.timings_ms
            .iter()
            .map(|(k, v)| format!("{k} {:.0} ms", v))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(a) = r.analysis.features.get(&sae.hook_name) {
        let key = "ig_norm_clean_to_corrupt__vs__ap_clean_to_corrupt";
        if let Some(Some(rv)) = a.correlations.get(key) {
            println!(
                "r(IG*, AP) over the {} features that differ, clean_to_corrupt: {rv:.3}",
                a.features.len()
            );
        }
    }
    let _ = (MethodKey::Ap, Direction::CleanToCorrupt);
    Ok(())
}
