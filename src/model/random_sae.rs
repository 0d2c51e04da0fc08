//! Deterministic random SAEs in the published layout, for benchmarks and
//! tests: a standard (ReLU) SAE of any width on a hook, its biases set from
//! a sample of the hook's activations so that about `l0` features fire per
//! token, written as jbloom's GPT-2 small SAEs are published (SAELens's
//! legacy `cfg.json` and `sae_weights.safetensors`).

use super::random::SplitMix64;
use super::sae::{Sae, SaeArchitecture, SaeSite, LAYOUT_LEGACY};
use crate::error::{Error, Result};

/// What to make.
#[derive(Debug, Clone)]
pub struct RandomSaeSpec {
    /// `blocks.L.hook_…`, one of the hooks an SAE may read.
    pub hook_name: String,
    pub d_in: usize,
    pub d_sae: usize,
    /// Features active per token, on average over the sample.
    pub l0: f64,
    pub seed: u64,
}

/// A random standard SAE whose encoder biases give about `spec.l0` active
/// features per row of `sample` ([rows, d_in], the hook's activations as
/// the SAE reads them). Each feature's encoder column is a random unit
/// direction and its decoder row the same direction (unit norm, as the
/// published SAEs' decoders are); its bias is minus the
/// (1 − l0 / d_sae)-quantile of the sample's projections on it.
pub fn random_sae(spec: &RandomSaeSpec, sample: &[f32]) -> Result<Sae> {
    let (d, n) = (spec.d_in, spec.d_sae);
    let (layer, site) = SaeSite::parse(&spec.hook_name).ok_or_else(|| {
        Error::Input(format!(
            "an SAE cannot read `{}`; give one of blocks.L.hook_resid_pre, hook_resid_mid, hook_resid_post, hook_attn_out, hook_mlp_out, attn.hook_z",
            spec.hook_name
        ))
    })?;
    if d == 0 || n == 0 || sample.is_empty() || !sample.len().is_multiple_of(d) {
        return Err(Error::Input(format!(
            "a random SAE needs d_in, d_sae and a sample of [rows, {d}] activations"
        )));
    }
    if !(spec.l0 > 0.0 && spec.l0 < n as f64) {
        return Err(Error::Input(format!(
            "--l0 {} must be above 0 and below d_sae ({n})",
            spec.l0
        )));
    }
    let rows = sample.len() / d;
    let mut rng = SplitMix64(spec.seed ^ 0x5AE5_AE5A_E5AE_5AE5);
    let mut w_dec = vec![0f32; n * d];
    for row in w_dec.chunks_mut(d) {
        // a sum of uniforms is close enough to Gaussian for a direction
        for v in row.iter_mut() {
            *v = (0..4).map(|_| rng.uniform()).sum::<f32>();
        }
        let norm = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        row.iter_mut().for_each(|v| *v = (*v as f64 / norm) as f32);
    }
    let mut w_enc = vec![0f32; d * n];
    for i in 0..n {
        for k in 0..d {
            w_enc[k * n + i] = w_dec[i * d + k];
        }
    }
    // a feature fires where its projection is z standard deviations above
    // its mean over the sample: l0 / d_sae of the rows if the projections
    // were Gaussian (a quantile of a few dozen rows could not resolve 0.2 %)
    let z = normal_quantile(1.0 - spec.l0 / n as f64);
    let b_enc = (0..n)
        .map(|i| {
            let dir = &w_dec[i * d..(i + 1) * d];
            let proj: Vec<f64> = sample
                .chunks(d)
                .map(|x| x.iter().zip(dir).map(|(&a, &b)| a as f64 * b as f64).sum())
                .collect();
            let mean = proj.iter().sum::<f64>() / rows as f64;
            let var = proj.iter().map(|p| (p - mean) * (p - mean)).sum::<f64>() / rows as f64;
            -(mean + z * var.sqrt()) as f32
        })
        .collect();
    Ok(Sae {
        hook_name: spec.hook_name.clone(),
        layer,
        site,
        architecture: SaeArchitecture::Standard,
        d_in: d,
        d_sae: n,
        w_enc,
        w_dec,
        b_enc,
        b_dec: vec![0.0; d],
        threshold: None,
        k: None,
        rescale_acts_by_decoder_norm: false,
        apply_b_dec_to_input: false,
        layout: LAYOUT_LEGACY,
        neuronpedia_id: None,
        model_name: Some("gpt2-small".into()),
        name: format!("random-{n}-{}", spec.hook_name),
    })
}

/// The standard normal's p-quantile, by bisection on its tail (Abramowitz
/// and Stegun 7.1.26's erfc, error below 1.5e-7).
fn normal_quantile(p: f64) -> f64 {
    let upper_tail = |z: f64| {
        let x = z / std::f64::consts::SQRT_2;
        let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
        let poly = t
            * (0.254_829_592
                + t * (-0.284_496_736
                    + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
        let erfc = poly * (-x * x).exp();
        0.5 * if x >= 0.0 { erfc } else { 2.0 - erfc }
    };
    let (mut lo, mut hi) = (-10.0, 10.0);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if 1.0 - upper_tail(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The files of a standard SAE in the layout of jbloom's published GPT-2
/// small SAEs: (`cfg.json`, `sae_weights.safetensors`).
pub fn legacy_files(sae: &Sae) -> Result<[(&'static str, Vec<u8>); 2]> {
    if sae.architecture != SaeArchitecture::Standard || sae.b_dec.iter().any(|&b| b != 0.0) {
        return Err(Error::Input(
            "only a standard SAE without a decoder bias is written in the legacy layout".into(),
        ));
    }
    let cfg = serde_json::json!({
        "model_name": "gpt2-small",
        "hook_point": sae.hook_name,
        "hook_point_layer": sae.layer,
        "hook_point_head_index": null,
        "dataset_path": "random",
        "is_dataset_tokenized": false,
        "context_size": 128,
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": "torch.float32",
        "device": "cpu",
        "apply_b_dec_to_input": sae.apply_b_dec_to_input,
        "expansion_factor": sae.d_sae as f64 / sae.d_in as f64,
    });
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let tensors = [
        ("W_enc", vec![sae.d_in, sae.d_sae], bytes(&sae.w_enc)),
        ("W_dec", vec![sae.d_sae, sae.d_in], bytes(&sae.w_dec)),
        ("b_enc", vec![sae.d_sae], bytes(&sae.b_enc)),
        ("b_dec", vec![sae.d_in], bytes(&sae.b_dec)),
    ];
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .map_err(|e| Error::Input(format!("tensor {name}: {e}")))?;
            Ok((name.to_string(), view))
        })
        .collect::<Result<_>>()?;
    let st = safetensors::tensor::serialize(views, None)
        .map_err(|e| Error::Input(format!("cannot write the SAE's weights: {e}")))?;
    Ok([
        ("cfg.json", serde_json::to_vec_pretty(&cfg).expect("json")),
        ("sae_weights.safetensors", st),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantiles() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959_964),
            (0.998, 2.878_162),
            (0.1, -1.281_552),
        ] {
            assert!(
                (normal_quantile(p) - z).abs() < 1e-4,
                "{p}: {}",
                normal_quantile(p)
            );
        }
    }

    #[test]
    fn written_files_read_back_as_the_same_sae() {
        let sample: Vec<f32> = (0..64 * 8)
            .map(|k| ((k * 37 % 101) as f32 - 50.0) / 10.0)
            .collect();
        let spec = RandomSaeSpec {
            hook_name: "blocks.1.hook_resid_pre".into(),
            d_in: 8,
            d_sae: 32,
            l0: 4.0,
            seed: 3,
        };
        let sae = random_sae(&spec, &sample).unwrap();
        let [(_, cfg), (_, st)] = legacy_files(&sae).unwrap();
        let back = Sae::from_files(&sae.name, std::str::from_utf8(&cfg).unwrap(), &st).unwrap();
        assert_eq!(back.w_enc, sae.w_enc);
        assert_eq!(back.w_dec, sae.w_dec);
        assert_eq!(back.b_enc, sae.b_enc);
        assert_eq!(back.layout, LAYOUT_LEGACY);
        let f = back.encode(&sample, 64);
        let l0 = f.iter().filter(|&&v| v != 0.0).count() as f64 / 64.0;
        assert!(l0 > 1.0 && l0 < 12.0, "l0 {l0}");
    }
}
