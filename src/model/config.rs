//! GPT-2 hyper-parameters, read from a Hugging Face `config.json`.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The shape of a GPT-2-family model. Field names follow TransformerLens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_model: usize,
    pub d_head: usize,
    pub d_mlp: usize,
    pub n_ctx: usize,
    pub d_vocab: usize,
    pub layer_norm_eps: f32,
}

/// The subset of Hugging Face's `GPT2Config` that decides the computation.
#[derive(Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    n_layer: Option<usize>,
    n_head: Option<usize>,
    n_embd: Option<usize>,
    n_positions: Option<usize>,
    n_ctx: Option<usize>,
    n_inner: Option<usize>,
    vocab_size: Option<usize>,
    layer_norm_epsilon: Option<f64>,
    activation_function: Option<String>,
    scale_attn_by_inverse_layer_idx: Option<bool>,
    scale_attn_weights: Option<bool>,
}

/// Sizes we refuse above: a corrupt config must not make us allocate terabytes.
const MAX_DIM: usize = 1 << 16;
const MAX_LAYERS: usize = 1024;

impl Config {
    /// Parses a Hugging Face GPT-2 `config.json`.
    pub fn from_json(text: &str) -> Result<Config> {
        let hf: HfConfig = serde_json::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        if let Some(t) = &hf.model_type {
            if t != "gpt2" {
                return Err(Error::Config(format!(
                    "model_type is {t:?}; patchlab runs GPT-2-family models only (model_type \"gpt2\")"
                )));
            }
        }
        let need = |v: Option<usize>, name: &str| {
            v.ok_or_else(|| {
                Error::Config(format!(
                    "field `{name}` is missing (is this a GPT-2 config?)"
                ))
            })
        };
        let n_layers = need(hf.n_layer, "n_layer")?;
        let n_heads = need(hf.n_head, "n_head")?;
        let d_model = need(hf.n_embd, "n_embd")?;
        let d_vocab = need(hf.vocab_size, "vocab_size")?;
        let n_ctx = need(hf.n_positions.or(hf.n_ctx), "n_positions")?;
        let d_mlp = hf.n_inner.unwrap_or(4 * d_model);
        if let Some(act) = &hf.activation_function {
            if act != "gelu_new" {
                return Err(Error::Config(format!(
                    "activation_function is {act:?}; only GPT-2's \"gelu_new\" is supported"
                )));
            }
        }
        if hf.scale_attn_by_inverse_layer_idx == Some(true) {
            return Err(Error::Config(
                "scale_attn_by_inverse_layer_idx = true is not supported (GPT-2 uses false)".into(),
            ));
        }
        if hf.scale_attn_weights == Some(false) {
            return Err(Error::Config(
                "scale_attn_weights = false is not supported (GPT-2 scales by 1/sqrt(d_head))"
                    .into(),
            ));
        }
        for (name, v) in [
            ("n_layer", n_layers),
            ("n_head", n_heads),
            ("n_embd", d_model),
            ("n_inner", d_mlp),
            ("n_positions", n_ctx),
        ] {
            if v == 0 || v > MAX_DIM || (name == "n_layer" && v > MAX_LAYERS) {
                return Err(Error::Config(format!("`{name}` = {v} is out of range")));
            }
        }
        if d_vocab == 0 || d_vocab > 1 << 20 {
            return Err(Error::Config(format!(
                "`vocab_size` = {d_vocab} is out of range"
            )));
        }
        if !d_model.is_multiple_of(n_heads) {
            return Err(Error::Config(format!(
                "n_embd ({d_model}) is not divisible by n_head ({n_heads})"
            )));
        }
        let eps = hf.layer_norm_epsilon.unwrap_or(1e-5);
        if !(eps > 0.0 && eps < 1.0) {
            return Err(Error::Config(format!(
                "layer_norm_epsilon = {eps} is out of range"
            )));
        }
        Ok(Config {
            n_layers,
            n_heads,
            d_model,
            d_head: d_model / n_heads,
            d_mlp,
            n_ctx,
            d_vocab,
            layer_norm_eps: eps as f32,
        })
    }

    /// The number of parameters (the unembedding is tied to `wte`, so
    /// counted once; mask buffers are not parameters).
    pub fn n_params(&self) -> u64 {
        let (d, m, l) = (self.d_model as u64, self.d_mlp as u64, self.n_layers as u64);
        let block = 2 * d // ln_1
            + d * 3 * d + 3 * d // c_attn
            + d * d + d // attn c_proj
            + 2 * d // ln_2
            + d * m + m // c_fc
            + m * d + d; // mlp c_proj
        (self.d_vocab as u64 + self.n_ctx as u64) * d + l * block + 2 * d
    }

    /// Bytes of the weights as the engines hold them (f32, whatever the
    /// file's dtype).
    pub fn weight_bytes(&self) -> u64 {
        4 * self.n_params()
    }

    /// The `config.json` Hugging Face writes for this shape.
    pub fn to_hf_json(&self) -> String {
        let v = serde_json::json!({
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "activation_function": "gelu_new",
            "n_layer": self.n_layers,
            "n_head": self.n_heads,
            "n_embd": self.d_model,
            "n_inner": if self.d_mlp == 4 * self.d_model { serde_json::Value::Null } else { self.d_mlp.into() },
            "n_positions": self.n_ctx,
            "n_ctx": self.n_ctx,
            "vocab_size": self.d_vocab,
            "layer_norm_epsilon": self.layer_norm_eps as f64,
            "bos_token_id": 50256,
            "eos_token_id": 50256,
            "attn_pdrop": 0.0, "embd_pdrop": 0.0, "resid_pdrop": 0.0,
            "scale_attn_weights": true,
            "scale_attn_by_inverse_layer_idx": false,
            "reorder_and_upcast_attn": false,
            "initializer_range": 0.02,
            "tie_word_embeddings": true,
        });
        serde_json::to_string_pretty(&v).expect("json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gpt2_small() {
        let c = Config::from_json(
            r#"{"model_type":"gpt2","n_layer":12,"n_head":12,"n_embd":768,"n_positions":1024,"vocab_size":50257,"layer_norm_epsilon":1e-5,"activation_function":"gelu_new","n_inner":null}"#,
        )
        .unwrap();
        assert_eq!(
            (c.n_layers, c.d_head, c.d_mlp, c.n_ctx),
            (12, 64, 3072, 1024)
        );
    }

    #[test]
    fn rejects_other_models_with_a_reason() {
        let e = Config::from_json(r#"{"model_type":"llama","n_layer":2}"#).unwrap_err();
        assert!(e.to_string().contains("llama"), "{e}");
        let e = Config::from_json(
            r#"{"n_layer":2,"n_head":3,"n_embd":64,"n_positions":8,"vocab_size":10}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not divisible"), "{e}");
        let e = Config::from_json("{not json").unwrap_err();
        assert!(e.to_string().starts_with("bad config.json"), "{e}");
    }

    #[test]
    fn round_trips_through_hf_json() {
        let c = Config {
            n_layers: 3,
            n_heads: 3,
            d_model: 48,
            d_head: 16,
            d_mlp: 192,
            n_ctx: 64,
            d_vocab: 50257,
            layer_norm_eps: 1e-5,
        };
        assert_eq!(Config::from_json(&c.to_hf_json()).unwrap(), c);
    }
}
