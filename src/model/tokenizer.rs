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
    /// From the text of a Hugging Face `tokenizer.json`: a current (typed)
    /// file, or a legacy one whose `model` has no `type`, like the one
    /// published for GPT-2 (docs/published-files.md). Tokenizers that are
    /// not byte-level BPE are refused by name.
    pub fn from_tokenizer_json(text: &str) -> Result<Tokenizer> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::Tokenizer(format!("tokenizer.json is not valid JSON: {e}")))?;
        let model = check_byte_level_bpe(&v)?;
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

/// The kind of model a `tokenizer.json` holds: its `model.type`, or for a
/// legacy file without one, the kind its fields show, recognised as the
/// Hugging Face tokenizers library's upgrade pass and transformers.js do:
/// `merges` makes a BPE (GPT-2's published file has `continuing_subword_prefix`
/// too, so merges are looked at first), then `continuing_subword_prefix` or
/// `max_input_chars_per_word` a WordPiece, a vocabulary that is a list of
/// [token, score] pairs a Unigram, and anything else a WordLevel.
fn model_kind(model: &serde_json::Map<String, serde_json::Value>) -> Result<String> {
    match model.get("type") {
        Some(serde_json::Value::String(t)) => return Ok(t.clone()),
        Some(serde_json::Value::Null) | None => {}
        Some(other) => {
            return Err(Error::Tokenizer(format!(
                "tokenizer.json's model.type is {other}, not a name such as \"BPE\": the file is corrupt"
            )))
        }
    }
    let kind = if model.contains_key("merges") {
        "BPE"
    } else if model.contains_key("continuing_subword_prefix")
        || model.contains_key("max_input_chars_per_word")
    {
        "WordPiece"
    } else if model.get("vocab").is_some_and(|v| v.is_array()) || model.contains_key("unk_id") {
        "Unigram"
    } else {
        "WordLevel"
    };
    Ok(kind.to_string())
}

/// What a tokenizer of another kind is known as, for the message refusing it.
fn known_as(kind: &str) -> &'static str {
    match kind {
        "WordPiece" => " (BERT's kind)",
        "Unigram" => " (SentencePiece's kind: T5, XLNet, ALBERT)",
        "WordLevel" => " (a whole-word vocabulary)",
        _ => "",
    }
}

/// Checks that a parsed `tokenizer.json` holds a byte-level BPE, the
/// tokenizer of every GPT-2-family model, and returns its `model` object.
fn check_byte_level_bpe(v: &serde_json::Value) -> Result<&serde_json::Value> {
    const FIX: &str =
        "use the tokenizer.json of the GPT-2 checkpoint itself, or its vocab.json and merges.txt";
    let model = v
        .get("model")
        .filter(|m| m.is_object())
        .ok_or_else(|| {
            Error::Tokenizer(
                "tokenizer.json has no `model` object: it is not a Hugging Face tokenizer file, or it is cut short"
                    .into(),
            )
        })?;
    let kind = model_kind(model.as_object().expect("an object"))?;
    if kind != "BPE" {
        return Err(Error::Tokenizer(format!(
            "tokenizer.json holds a {kind} tokenizer{}, but GPT-2-family models use byte-level BPE: {FIX}",
            known_as(&kind)
        )));
    }
    // GPT-2's BPE works on bytes: its pre-tokenizer is ByteLevel (alone or
    // in a Sequence); a BPE over characters (SentencePiece style) is another
    // model's tokenizer
    let is_byte_level =
        |p: &serde_json::Value| p.get("type").and_then(|t| t.as_str()) == Some("ByteLevel");
    let pre = v.get("pre_tokenizer").filter(|p| !p.is_null());
    let byte_level = pre.is_some_and(|p| {
        is_byte_level(p)
            || p.get("pretokenizers")
                .and_then(|s| s.as_array())
                .is_some_and(|s| s.iter().any(is_byte_level))
    });
    if !byte_level {
        let what = match pre.and_then(|p| p.get("type")).and_then(|t| t.as_str()) {
            Some(t) => format!("its pre-tokenizer is {t}, not ByteLevel"),
            None => "it has no ByteLevel pre-tokenizer".to_string(),
        };
        return Err(Error::Tokenizer(format!(
            "tokenizer.json holds a BPE tokenizer, but not a byte-level one ({what}); GPT-2-family models use byte-level BPE: {FIX}"
        )));
    }
    let Some(vocab) = model.get("vocab").and_then(|v| v.as_object()) else {
        return Err(Error::Tokenizer(
            "tokenizer.json's model.vocab is missing or not an object of token → id".into(),
        ));
    };
    // one id per token: with two, which one the tokenizer keeps is up to
    // hashing (found by fuzzing: the same file loaded or not, run to run)
    let mut owner = std::collections::HashMap::with_capacity(vocab.len());
    for (token, id) in vocab {
        let Some(n) = id.as_u64() else {
            return Err(Error::Tokenizer(format!(
                "tokenizer.json's model.vocab gives {token:?} the id {}, not a whole number: the file is corrupt",
                short(id)
            )));
        };
        if let Some(other) = owner.insert(n, token) {
            let (a, b) = if other < token {
                (other, token)
            } else {
                (token, other)
            };
            return Err(Error::Tokenizer(format!(
                "tokenizer.json's model.vocab gives the id {n} to both {a:?} and {b:?}: the file is corrupt"
            )));
        }
    }
    // GPT-2 marks no subword: a prefix or suffix here is a corrupt file (and
    // the tokenizers crate slices merges by the prefix's length unchecked)
    for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
        match model.get(key) {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(s)) if s.is_empty() => {}
            Some(other) => {
                return Err(Error::Tokenizer(format!(
                    "tokenizer.json's model.{key} is {}, but GPT-2's byte-level BPE has none: the file is corrupt",
                    short(other)
                )))
            }
        }
    }
    let Some(serde_json::Value::Array(merges)) = model.get("merges") else {
        return Err(Error::Tokenizer(
            "tokenizer.json's model.merges is missing or not a list: the file is corrupt".into(),
        ));
    };
    // every merge joins two tokens of the vocabulary into a third (the
    // library checks this too, but panics first on some broken files)
    for (i, m) in merges.iter().enumerate() {
        let pair = match m {
            serde_json::Value::String(s) => s.split_once(' ').filter(|(_, b)| !b.contains(' ')),
            serde_json::Value::Array(a) => match a.as_slice() {
                [serde_json::Value::String(x), serde_json::Value::String(y)] => {
                    Some((x.as_str(), y.as_str()))
                }
                _ => None,
            },
            _ => None,
        };
        let Some((a, b)) = pair else {
            return Err(Error::Tokenizer(format!(
                "tokenizer.json's model.merges[{i}] is {}, not a pair of tokens (\"a b\" or [\"a\", \"b\"]): the file is corrupt",
                short(m)
            )));
        };
        let joined = format!("{a}{b}");
        let missing = [a, b, joined.as_str()]
            .into_iter()
            .find(|t| !vocab.contains_key(*t))
            .map(str::to_string);
        if let Some(missing) = missing {
            return Err(Error::Tokenizer(format!(
                "tokenizer.json's model.merges[{i}] ({}) needs the token {missing:?}, which model.vocab does not have: the file is corrupt",
                short(m)
            )));
        }
    }
    Ok(model)
}

/// A JSON value for a message, cut to a readable length.
fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
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
