//! GPT-2's byte-level BPE, through the `tokenizers` crate, loaded from either a
//! Hugging Face `tokenizer.json` or the classic `vocab.json` + `merges.txt`.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// `<|endoftext|>`, which TransformerLens prepends as BOS.
pub const BOS_ID: u32 = 50256;
pub const BOS_TEXT: &str = "<|endoftext|>";

/// A token as shown to users: its id and the text it stands for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    pub id: u32,
    pub text: String,
}

pub struct Tokenizer {
    inner: tokenizers::pipeline::PipelineTokenizer,
    vocab_size: usize,
}

impl Tokenizer {
    /// From the text of a Hugging Face `tokenizer.json`.
    pub fn from_tokenizer_json(text: &str) -> Result<Tokenizer> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::Tokenizer(format!("tokenizer.json is not valid JSON: {e}")))?;
        let model = v
            .get("model")
            .filter(|m| m.get("type").and_then(|t| t.as_str()) == Some("BPE"))
            .ok_or_else(|| {
                Error::Tokenizer(
                    "tokenizer.json does not hold a BPE model (GPT-2 uses byte-level BPE)".into(),
                )
            })?;
        // ids run 0..n; added tokens usually repeat an id of the vocabulary
        let ids = |v: Option<&serde_json::Value>| -> Vec<u64> {
            match v {
                Some(serde_json::Value::Object(o)) => {
                    o.values().filter_map(|x| x.as_u64()).collect()
                }
                Some(serde_json::Value::Array(a)) => {
                    a.iter().filter_map(|t| t.get("id")?.as_u64()).collect()
                }
                _ => Vec::new(),
            }
        };
        let mut all = ids(model.get("vocab"));
        if all.is_empty() {
            return Err(Error::Tokenizer(
                "tokenizer.json has an empty or missing model.vocab".into(),
            ));
        }
        all.extend(ids(v.get("added_tokens")));
        all.sort_unstable();
        all.dedup();
        let max_id = *all.last().expect("non-empty");
        // the tokenizer allocates a table up to the largest id: a corrupt id
        // (found by fuzzing: 999999999) would cost gigabytes and minutes
        if max_id >= 2 * all.len() as u64 + 1024 {
            return Err(Error::Tokenizer(format!(
                "tokenizer.json has token id {max_id} but only {} tokens: the file is corrupt",
                all.len()
            )));
        }
        let vocab_size = max_id as usize + 1;
        let canonical = tokenizers::canonicalize_str(text)
            .map_err(|e| Error::Tokenizer(format!("tokenizer.json could not be read: {e}")))?;
        let inner = tokenizers::from_json(&canonical)
            .map_err(|e| Error::Tokenizer(format!("tokenizer.json could not be loaded: {e}")))?;
        Ok(Tokenizer { inner, vocab_size })
    }

    /// From `vocab.json` and `merges.txt` (GPT-2's original files).
    pub fn from_vocab_merges(vocab_json: &str, merges_txt: &str) -> Result<Tokenizer> {
        Self::from_tokenizer_json(&tokenizer_json_from_vocab_merges(vocab_json, merges_txt)?)
    }

    /// Number of ids the tokenizer can produce.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Token ids of `text`, with BOS prepended when `bos`.
    pub fn encode(&self, text: &str, bos: bool) -> Result<Vec<u32>> {
        let opts = tokenizers::pipeline::EncodeOptions {
            add_special_tokens: false,
            ..Default::default()
        };
        let enc = self
            .inner
            .encode(text, &opts)
            .wait()
            .map_err(|e| Error::Tokenizer(format!("could not tokenize {text:?}: {e}")))?;
        let mut ids = Vec::with_capacity(enc.first().map_or(0, |e| e.ids().len()) + 1);
        if bos {
            ids.push(BOS_ID);
        }
        for e in &enc {
            ids.extend(e.ids().iter().map(|t| t.id()));
        }
        Ok(ids)
    }

    /// The text of one token (a lone byte of a multi-byte character shows as U+FFFD).
    pub fn token_text(&self, id: u32) -> String {
        if id == BOS_ID {
            return BOS_TEXT.to_string();
        }
        self.inner
            .decode(&[id], false)
            .unwrap_or_else(|_| format!("<{id}>"))
    }

    /// Ids with their texts, for display.
    pub fn tokens(&self, ids: &[u32]) -> Vec<Token> {
        ids.iter()
            .map(|&id| Token {
                id,
                text: self.token_text(id),
            })
            .collect()
    }
}

/// Builds the `tokenizer.json` Hugging Face ships for GPT-2 from the original
/// vocabulary and merge list.
pub fn tokenizer_json_from_vocab_merges(vocab_json: &str, merges_txt: &str) -> Result<String> {
    let vocab: serde_json::Map<String, serde_json::Value> = serde_json::from_str(vocab_json)
        .map_err(|e| {
            Error::Tokenizer(format!(
                "vocab.json is not a JSON object of token → id: {e}"
            ))
        })?;
    if vocab.values().any(|v| !v.is_u64()) {
        return Err(Error::Tokenizer("vocab.json has a non-integer id".into()));
    }
    let merges: Vec<&str> = merges_txt
        .lines()
        .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
        .collect();
    if let Some(bad) = merges.iter().find(|l| l.split(' ').count() != 2) {
        return Err(Error::Tokenizer(format!(
            "merges.txt line {bad:?} is not two space-separated tokens"
        )));
    }
    let has_eot = vocab.get(BOS_TEXT).and_then(|v| v.as_u64()) == Some(BOS_ID as u64);
    let added = if has_eot {
        serde_json::json!([{"id": BOS_ID, "content": BOS_TEXT, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": true, "special": true}])
    } else {
        serde_json::json!([])
    };
    let doc = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges}
    });
    Ok(doc.to_string())
}
