//! The files of GPT-2-family checkpoints exactly as the Hugging Face Hub
//! publishes them: what users download, and so what the tests' random
//! models are written as. `docs/published-files.md` says where each fact
//! comes from and which ones are not confirmed against the Hub's files.
//!
//! The loader never relies on these writers: it reads any layout the Hub
//! has used (tensor names with or without `transformer.`, mask buffers or
//! none, typed or legacy `tokenizer.json`); these exist so that fixtures look
//! like the published files rather than like what our own code finds handy.

use super::config::Config;
use super::tokenizer::{BOS_ID, BOS_TEXT};
use super::weights::Weights;
use crate::error::{Error, Result};
use safetensors::Dtype;
use serde_json::{json, Value};

/// A published GPT-2-family repository whose file conventions we mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repo {
    Gpt2,
    Distilgpt2,
    Gpt2Medium,
    Gpt2Large,
    Gpt2Xl,
}

impl Repo {
    pub const ALL: [Repo; 5] = [
        Repo::Gpt2,
        Repo::Distilgpt2,
        Repo::Gpt2Medium,
        Repo::Gpt2Large,
        Repo::Gpt2Xl,
    ];

    /// The short name (`--like gpt2-medium`).
    pub fn name(self) -> &'static str {
        match self {
            Repo::Gpt2 => "gpt2",
            Repo::Distilgpt2 => "distilgpt2",
            Repo::Gpt2Medium => "gpt2-medium",
            Repo::Gpt2Large => "gpt2-large",
            Repo::Gpt2Xl => "gpt2-xl",
        }
    }

    /// The repository on the Hub.
    pub fn hub_id(self) -> &'static str {
        match self {
            Repo::Gpt2 => "openai-community/gpt2",
            Repo::Distilgpt2 => "distilbert/distilgpt2",
            Repo::Gpt2Medium => "openai-community/gpt2-medium",
            Repo::Gpt2Large => "openai-community/gpt2-large",
            Repo::Gpt2Xl => "openai-community/gpt2-xl",
        }
    }

    /// From a short name or a Hub id.
    pub fn parse(s: &str) -> Result<Repo> {
        Repo::ALL
            .into_iter()
            .find(|r| r.name() == s || r.hub_id() == s)
            .ok_or_else(|| {
                Error::Input(format!(
                    "unknown layout {s:?}; choose one of {}",
                    Repo::ALL.map(|r| r.name()).join(", ")
                ))
            })
    }

    /// The published shape: (layers, heads, d_model).
    pub fn shape(self) -> (usize, usize, usize) {
        match self {
            Repo::Gpt2 => (12, 12, 768),
            Repo::Distilgpt2 => (6, 12, 768),
            Repo::Gpt2Medium => (24, 16, 1024),
            Repo::Gpt2Large => (36, 20, 1280),
            Repo::Gpt2Xl => (48, 25, 1600),
        }
    }

    /// The published model's config (context 1024, GPT-2's vocabulary).
    pub fn config(self) -> Config {
        let (n_layers, n_heads, d_model) = self.shape();
        Config {
            n_layers,
            n_heads,
            d_model,
            d_head: d_model / n_heads,
            d_mlp: 4 * d_model,
            n_ctx: 1024,
            d_vocab: 50257,
            layer_norm_eps: 1e-5,
        }
    }

    /// What every tensor name starts with: distilgpt2 was saved from the
    /// whole `GPT2LMHeadModel` (`transformer.h.0…`), OpenAI's conversions
    /// from the bare `GPT2Model` (`h.0…`).
    pub fn tensor_prefix(self) -> &'static str {
        match self {
            Repo::Distilgpt2 => "transformer.",
            _ => "",
        }
    }

    /// The attention-mask buffers saved with each block, which the loader
    /// skips: `attn.bias` (the causal mask as F32 [1, 1, n_ctx, n_ctx]) in
    /// every published file, and `attn.masked_bias` (a scalar) in those
    /// saved by transformers versions that had it.
    pub fn mask_buffers(self) -> &'static [&'static str] {
        match self {
            Repo::Distilgpt2 => &["attn.bias", "attn.masked_bias"],
            _ => &["attn.bias"],
        }
    }

    /// The published `config.json` with the shape of `cfg`: the same fields
    /// (the loader ignores all but the shape, eps and the checks of
    /// `Config::from_json`), sorted and indented as transformers writes
    /// them, and no `n_inner` (d_mlp is 4·n_embd).
    pub fn config_json(self, cfg: &Config) -> Result<String> {
        if cfg.d_mlp != 4 * cfg.d_model {
            return Err(Error::Input(format!(
                "the published GPT-2 configs have no n_inner, so d_mlp must be 4·d_model ({}), not {}",
                4 * cfg.d_model,
                cfg.d_mlp
            )));
        }
        let mut v = json!({
            "activation_function": "gelu_new",
            "architectures": ["GPT2LMHeadModel"],
            "attn_pdrop": 0.1,
            "bos_token_id": BOS_ID,
            "embd_pdrop": 0.1,
            "eos_token_id": BOS_ID,
            "initializer_range": 0.02,
            // the f32 eps as written in decimal (1e-5, not 9.99999974e-6)
            "layer_norm_epsilon": cfg.layer_norm_eps.to_string().parse::<f64>().unwrap_or(1e-5),
            "model_type": "gpt2",
            "n_ctx": cfg.n_ctx,
            "n_embd": cfg.d_model,
            "n_head": cfg.n_heads,
            "n_layer": cfg.n_layers,
            "n_positions": cfg.n_ctx,
            "resid_pdrop": 0.1,
            "summary_activation": null,
            "summary_first_dropout": 0.1,
            "summary_proj_to_labels": true,
            "summary_type": "cls_index",
            "summary_use_proj": true,
            "task_specific_params": {"text-generation": {"do_sample": true, "max_length": 50}},
            "vocab_size": cfg.d_vocab,
        });
        let extra = match self {
            Repo::Gpt2 => json!({}),
            Repo::Gpt2Medium | Repo::Gpt2Large | Repo::Gpt2Xl => json!({
                "n_special": 0,
                "predict_special_tokens": true,
            }),
            // saved by transformers 2.x, which wrote every generation setting
            Repo::Distilgpt2 => json!({
                "_num_labels": 1,
                "id2label": {"0": "LABEL_0"},
                "label2id": {"LABEL_0": 0},
                "do_sample": false,
                "early_stopping": false,
                "is_decoder": false,
                "is_encoder_decoder": false,
                "length_penalty": 1.0,
                "max_length": 20,
                "min_length": 0,
                "no_repeat_ngram_size": 0,
                "num_beams": 1,
                "num_return_sequences": 1,
                "output_attentions": false,
                "output_hidden_states": false,
                "output_past": true,
                "pruned_heads": {},
                "repetition_penalty": 1.0,
                "temperature": 1.0,
                "top_k": 50,
                "top_p": 1.0,
                "torchscript": false,
                "use_bfloat16": false,
            }),
        };
        if let (Value::Object(all), Value::Object(more)) = (&mut v, extra) {
            all.extend(more);
        }
        // serde_json's maps are sorted, as transformers' sort_keys=True
        serde_json::to_string_pretty(&v).map_err(|e| Error::Io(format!("config.json: {e}")))
    }

    /// `model.safetensors` as published: F32, this repository's tensor
    /// names, Conv1D matrices as [in, out], the mask buffers, no `lm_head`
    /// (tied to `wte`) and `__metadata__ {"format": "pt"}`.
    pub fn safetensors(self, w: &Weights, cfg: &Config) -> Result<Vec<u8>> {
        let le = |data: &[f32]| -> Vec<u8> { data.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let n = cfg.n_ctx;
        let causal: Vec<f32> = (0..n * n)
            .map(|i| if i % n <= i / n { 1.0 } else { 0.0 })
            .collect();
        let mut tensors: Vec<(String, Vec<u8>, Vec<usize>)> = w
            .named()
            .into_iter()
            .map(|(name, p)| (name, le(&p.data), p.shape.clone()))
            .collect();
        for layer in 0..cfg.n_layers {
            for &b in self.mask_buffers() {
                let (data, shape) = match b {
                    "attn.bias" => (le(&causal), vec![1, 1, n, n]),
                    _ => (le(&[-10_000.0]), vec![]),
                };
                tensors.push((format!("h.{layer}.{b}"), data, shape));
            }
        }
        let views = tensors
            .iter()
            .map(|(name, bytes, shape)| {
                let view = safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), bytes)
                    .map_err(|e| Error::Io(format!("safetensors: {e}")))?;
                Ok((format!("{}{name}", self.tensor_prefix()), view))
            })
            .collect::<Result<Vec<_>>>()?;
        let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::tensor::serialize(views, Some(meta))
            .map_err(|e| Error::Io(format!("safetensors: {e}")))
    }
}

/// GPT-2's `tokenizer.json` as published: a legacy file whose `model` has
/// no `type` (keys `dropout, unk_token, continuing_subword_prefix,
/// end_of_word_suffix, fuse_unk, vocab, merges`), merges as `"a b"`
/// strings, ByteLevel pre-tokenizer, post-processor and decoder written
/// before they had `use_regex`, and `<|endoftext|>` as the one added token;
/// keys in the published order, the vocabulary in id order.
pub fn legacy_tokenizer_json(vocab_json: &str, merges_txt: &str) -> Result<String> {
    let vocab: serde_json::Map<String, Value> = serde_json::from_str(vocab_json).map_err(|e| {
        Error::Tokenizer(format!(
            "vocab.json is not a JSON object of token → id: {e}"
        ))
    })?;
    let mut by_id = Vec::with_capacity(vocab.len());
    for (token, id) in &vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| Error::Tokenizer(format!("vocab.json gives {token:?} the id {id}")))?;
        by_id.push((id, token));
    }
    by_id.sort();
    let text = |s: &str| Value::String(s.to_string()).to_string();
    let entries: Vec<String> = by_id
        .iter()
        .map(|(id, token)| format!("{}:{id}", text(token)))
        .collect();
    let merges: Vec<String> = merges_txt
        .lines()
        .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
        .map(text)
        .collect();
    let added = if vocab.get(BOS_TEXT).and_then(Value::as_u64) == Some(BOS_ID as u64) {
        format!(
            r#"{{"id":{BOS_ID},"special":true,"content":{},"single_word":false,"lstrip":false,"rstrip":false,"normalized":true}}"#,
            text(BOS_TEXT)
        )
    } else {
        String::new()
    };
    Ok(format!(
        concat!(
            r#"{{"version":"1.0","truncation":null,"padding":null,"added_tokens":[{added}],"normalizer":null,"#,
            r#""pre_tokenizer":{{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true}},"#,
            r#""post_processor":{{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false}},"#,
            r#""decoder":{{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true}},"#,
            r#""model":{{"dropout":null,"unk_token":null,"continuing_subword_prefix":"","end_of_word_suffix":"","fuse_unk":false,"#,
            r#""vocab":{{{vocab}}},"merges":[{merges}]}}}}"#
        ),
        added = added,
        vocab = entries.join(","),
        merges = merges.join(","),
    ))
}

/// Every file of a published-layout checkpoint with `w`'s weights: name and
/// bytes (config.json, model.safetensors, tokenizer.json, vocab.json,
/// merges.txt).
pub fn checkpoint_files(
    repo: Repo,
    cfg: &Config,
    w: &Weights,
    vocab_json: &str,
    merges_txt: &str,
) -> Result<Vec<(&'static str, Vec<u8>)>> {
    Ok(vec![
        ("config.json", repo.config_json(cfg)?.into_bytes()),
        ("model.safetensors", repo.safetensors(w, cfg)?),
        (
            "tokenizer.json",
            legacy_tokenizer_json(vocab_json, merges_txt)?.into_bytes(),
        ),
        ("vocab.json", vocab_json.as_bytes().to_vec()),
        ("merges.txt", merges_txt.as_bytes().to_vec()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_shapes_have_the_published_parameter_counts() {
        // the counts of the published models (GPT-2 paper, model cards)
        let want = [
            (Repo::Gpt2, 124_439_808),
            (Repo::Distilgpt2, 81_912_576),
            (Repo::Gpt2Medium, 354_823_168),
            (Repo::Gpt2Large, 774_030_080),
            (Repo::Gpt2Xl, 1_557_611_200),
        ];
        for (repo, n) in want {
            assert_eq!(repo.config().n_params(), n, "{}", repo.name());
        }
    }

    #[test]
    fn config_json_has_the_published_fields_and_no_n_inner() {
        let cfg = Repo::Gpt2.config();
        let text = Repo::Gpt2.config_json(&cfg).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert!(!keys.contains(&"n_inner"), "{keys:?}");
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "not sorted: {keys:?}");
        assert_eq!(Config::from_json(&text).unwrap(), cfg);
        for repo in Repo::ALL {
            assert_eq!(
                Config::from_json(&repo.config_json(&repo.config()).unwrap()).unwrap(),
                repo.config()
            );
        }
    }

    #[test]
    fn parse_takes_names_and_hub_ids() {
        assert_eq!(Repo::parse("gpt2-medium").unwrap(), Repo::Gpt2Medium);
        assert_eq!(
            Repo::parse("distilbert/distilgpt2").unwrap(),
            Repo::Distilgpt2
        );
        let e = Repo::parse("gpt3").unwrap_err().to_string();
        assert!(e.contains("gpt2, distilgpt2, gpt2-medium"), "{e}");
    }
}
