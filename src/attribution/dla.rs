//! Direct logit attribution (TransformerLens `cache.stack_head_results` /
//! `cache.decompose_resid` through `cache.logit_attrs`): what each head, each
//! layer's attention and MLP output and the embeddings write along the
//! logit difference's direction, through ln_final with its scale frozen at
//! the run's own value, at every position.

use super::Tracker;
use crate::engine::Engine;
use crate::error::Result;
use crate::report::{DlaRun, SiteMap};

/// The components of `decompose_resid`, in its order: embed, pos_embed,
/// then each layer's attn_out and mlp_out.
pub fn layer_labels(n_layers: usize) -> Vec<String> {
    let mut out = vec!["embed".to_string(), "pos_embed".to_string()];
    for l in 0..n_layers {
        out.push(format!("{l}_attn_out"));
        out.push(format!("{l}_mlp_out"));
    }
    out
}

/// DLA of one run for the logit difference of `correct` − `incorrect`:
/// heads [layer, head, pos] and layer components [2 + 2·layers, pos], each
/// (c − mean(c)) · u / scale with u = w_f ⊙ (wte[correct] − wte[incorrect])
/// and scale = the run's `ln_final.hook_scale`. A head's output is its
/// `hook_result` less its value bias through W_O, as TransformerLens (which
/// folds the value biases into b_O) reports it; the layers' outputs carry
/// every bias. Returns the run's maps and c = b_f · (wte[correct] −
/// wte[incorrect]): at the last position Σ layers + c = m.
pub async fn direct_logit_attribution<E: Engine>(
    e: &E,
    run: &E::Run,
    (correct, incorrect): (u32, u32),
    track: &mut Tracker<'_>,
) -> Result<(DlaRun, f32)> {
    let cfg = e.config().clone();
    let (d, h, dh, nl) = (cfg.d_model, cfg.n_heads, cfg.d_head, cfg.n_layers);
    let (u, c) = e.logit_diff_direction(correct, incorrect).await?;
    let u_sum: f64 = u.iter().map(|&x| x as f64).sum();
    let scale = e.activation(run, "ln_final.hook_scale").await?.data;
    let t = scale.len();
    // (c − mean c) · u / scale of a d_model row
    let along = |row: &[f32], p: usize| -> f32 {
        let (mut dot, mut sum) = (0f64, 0f64);
        for (&x, &w) in row.iter().zip(&u) {
            dot += x as f64 * w as f64;
            sum += x as f64;
        }
        ((dot - sum / d as f64 * u_sum) / scale[p] as f64) as f32
    };
    let mut heads = SiteMap::zeros(vec![nl, h, t]);
    let mut layers = SiteMap::zeros(vec![2 + 2 * nl, t]);
    for (i, hook) in ["hook_embed", "hook_pos_embed"].into_iter().enumerate() {
        let a = e.activation(run, hook).await?.data;
        for p in 0..t {
            layers.values[i * t + p] = along(&a[p * d..(p + 1) * d], p);
        }
    }
    for l in 0..nl {
        track.pause().await?;
        let hw = e.head_weights(l).await?;
        // b_v[h] · W_O[h], the value bias's share of each head's output
        let bias_out: Vec<Vec<f32>> = (0..h)
            .map(|hh| {
                (0..d)
                    .map(|k| {
                        (0..dh)
                            .map(|j| {
                                hw.b_v[hh * dh + j] as f64
                                    * hw.w_o.data[(hh * dh + j) * d + k] as f64
                            })
                            .sum::<f64>() as f32
                    })
                    .collect()
            })
            .collect();
        let result = e
            .activation(run, &format!("blocks.{l}.attn.hook_result"))
            .await?
            .data;
        for hh in 0..h {
            for p in 0..t {
                let row: Vec<f32> = result[(p * h + hh) * d..(p * h + hh + 1) * d]
                    .iter()
                    .zip(&bias_out[hh])
                    .map(|(x, b)| x - b)
                    .collect();
                heads.values[(l * h + hh) * t + p] = along(&row, p);
            }
        }
        for (k, hook) in ["hook_attn_out", "hook_mlp_out"].into_iter().enumerate() {
            let a = e.activation(run, &format!("blocks.{l}.{hook}")).await?.data;
            let i = 2 + 2 * l + k;
            for p in 0..t {
                layers.values[i * t + p] = along(&a[p * d..(p + 1) * d], p);
            }
        }
    }
    Ok((DlaRun { heads, layers }, c))
}
