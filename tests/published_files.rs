//! The checkpoint files users have: the legacy (untyped) `tokenizer.json`
//! published for GPT-2, the published config.json and model.safetensors of
//! the GPT-2 family (docs/published-files.md), and tokenizer files of other
//! kinds, which are refused by name.
//!
//! Tokenization goldens come from two independent implementations
//! (tests/reference/make_tokenizer_goldens.py: Hugging Face `tokenizers`
//! reading the published-layout file, equal to OpenAI's `tiktoken`).

use crate::common::{fails_with, ok, patchlab, random_model, report, tempdir, vocab_dir};
use patchlab::model::published::{legacy_tokenizer_json, Repo};
use patchlab::model::tokenizer::tokenizer_json_from_vocab_merges;
use patchlab::model::{Model, Tokenizer};
use serde_json::Value;

fn vocab_files() -> (String, String) {
    let d = vocab_dir();
    (
        std::fs::read_to_string(d.join("encoder.json")).unwrap(),
        std::fs::read_to_string(d.join("vocab.bpe")).unwrap(),
    )
}

/// The three ways a GPT-2 tokenizer reaches us: the published legacy
/// tokenizer.json, a typed one (what current `tokenizers` writes), and
/// vocab.json + merges.txt.
fn three_tokenizers() -> Vec<(&'static str, Tokenizer)> {
    let (vocab, merges) = vocab_files();
    vec![
        (
            "legacy tokenizer.json",
            Tokenizer::from_tokenizer_json(&legacy_tokenizer_json(&vocab, &merges).unwrap())
                .unwrap(),
        ),
        (
            "typed tokenizer.json",
            Tokenizer::from_tokenizer_json(
                &tokenizer_json_from_vocab_merges(&vocab, &merges).unwrap(),
            )
            .unwrap(),
        ),
        (
            "vocab.json + merges.txt",
            Tokenizer::from_vocab_merges(&vocab, &merges).unwrap(),
        ),
    ]
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

#[test]
fn every_gpt2_tokenizer_file_tokenizes_like_tokenizers_and_tiktoken() {
    let g: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/tokenizer.json"),
        )
        .unwrap(),
    )
    .unwrap();
    // the goldens were made from the same vocabulary files
    let d = vocab_dir();
    assert_eq!(
        sha256(&std::fs::read(d.join("encoder.json")).unwrap()),
        g["encoder_json_sha256"].as_str().unwrap()
    );
    assert_eq!(
        sha256(&std::fs::read(d.join("vocab.bpe")).unwrap()),
        g["vocab_bpe_sha256"].as_str().unwrap()
    );
    let cases = g["cases"].as_array().unwrap();
    assert!(cases.len() >= 30);
    for (how, tok) in three_tokenizers() {
        assert_eq!(tok.vocab_size(), 50257, "{how}");
        for c in cases {
            let text = c["text"].as_str().unwrap();
            let want: Vec<u32> = c["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(tok.encode(text, false).unwrap(), want, "{how}: {text:?}");
            let mut with_bos = vec![50256];
            with_bos.extend(&want);
            assert_eq!(tok.encode(text, true).unwrap(), with_bos, "{how}: {text:?}");
        }
        assert_eq!(tok.token_text(5335), " Mary", "{how}");
        assert_eq!(tok.token_text(50256), "<|endoftext|>", "{how}");
    }
}

/// The legacy file we write for fixtures has the published structure, key
/// for key (docs/published-files.md), so the loader is tested on it.
#[test]
fn the_fixture_tokenizer_json_has_the_published_structure() {
    let (vocab, merges) = vocab_files();
    let text = legacy_tokenizer_json(&vocab, &merges).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    // key order as published (serde_json sorts its maps, so read the text)
    let order = |keys: &[&str], within: &str| {
        let at: Vec<usize> = keys
            .iter()
            .map(|k| {
                within
                    .find(&format!("\"{k}\":"))
                    .unwrap_or_else(|| panic!("no {k}"))
            })
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{keys:?} out of order");
    };
    let top = [
        "version",
        "truncation",
        "padding",
        "added_tokens",
        "normalizer",
        "pre_tokenizer",
        "post_processor",
        "decoder",
        "model",
    ];
    assert_eq!(v.as_object().unwrap().len(), top.len());
    order(&top, &text);
    let model = v["model"].as_object().unwrap();
    let mut keys: Vec<&str> = model.keys().map(|k| k.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "continuing_subword_prefix",
            "dropout",
            "end_of_word_suffix",
            "fuse_unk",
            "merges",
            "unk_token",
            "vocab"
        ],
        "the published model object has no `type`"
    );
    let m = &text[text.find("\"model\":").unwrap()..];
    order(
        &[
            "dropout",
            "unk_token",
            "continuing_subword_prefix",
            "end_of_word_suffix",
            "fuse_unk",
            "vocab",
            "merges",
        ],
        m,
    );
    for part in ["pre_tokenizer", "post_processor", "decoder"] {
        assert_eq!(v[part]["type"], "ByteLevel", "{part}");
    }
    let merges = v["model"]["merges"].as_array().unwrap();
    assert_eq!(merges.len(), 50000);
    assert_eq!(merges[0], "Ġ t");
    assert!(merges.iter().all(|m| m.is_string()));
    assert_eq!(
        v["added_tokens"],
        serde_json::json!([{"id": 50256, "special": true, "content": "<|endoftext|>",
            "single_word": false, "lstrip": false, "rstrip": false, "normalized": true}])
    );
    assert_eq!(v["model"]["vocab"].as_object().unwrap().len(), 50257);
    // the vocabulary in id order
    assert!(m.find("\"!\":0").unwrap() < m.find("\"\\\"\":1").unwrap());
}

/// A tokenizer.json of another kind, typed and as a legacy file.
fn refused(json: &str, needle: &str) {
    let e = match Tokenizer::from_tokenizer_json(json) {
        Ok(_) => panic!("loaded: {json}"),
        Err(e) => e.to_string(),
    };
    assert!(e.starts_with("tokenizer: "), "{e}");
    assert!(e.contains(needle), "expected {needle:?} in {e:?}");
}

const BYTE_LEVEL: &str =
    r#""pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true}"#;

#[test]
fn other_tokenizer_kinds_are_refused_by_name() {
    let fix =
        "use the tokenizer.json of the GPT-2 checkpoint itself, or its vocab.json and merges.txt";
    // BERT (WordPiece): typed, and legacy as bert-base-uncased publishes it
    let wordpiece = r###"{"unk_token":"[UNK]","continuing_subword_prefix":"##","max_input_chars_per_word":100,"vocab":{"[UNK]":0,"a":1}}"###;
    for model in [
        wordpiece.to_string(),
        wordpiece.replacen('{', r#"{"type":"WordPiece","#, 1),
    ] {
        refused(
            &format!(r#"{{"pre_tokenizer":{{"type":"BertPreTokenizer"}},"model":{model}}}"#),
            &format!("tokenizer.json holds a WordPiece tokenizer (BERT's kind), but GPT-2-family models use byte-level BPE: {fix}"),
        );
    }
    // T5 (Unigram): vocab of [token, score] pairs, typed and untyped
    let unigram = r#"{"unk_id":0,"vocab":[["<unk>",0.0],["▁a",-1.5]]}"#;
    for model in [
        unigram.to_string(),
        unigram.replacen('{', r#"{"type":"Unigram","#, 1),
    ] {
        refused(
            &format!(r#"{{"pre_tokenizer":{{"type":"Metaspace"}},"model":{model}}}"#),
            "holds a Unigram tokenizer (SentencePiece's kind: T5, XLNet, ALBERT)",
        );
    }
    refused(
        r#"{"model":{"type":"WordLevel","vocab":{"a":0},"unk_token":"a"}}"#,
        "holds a WordLevel tokenizer (a whole-word vocabulary)",
    );
    refused(
        r#"{"model":{"vocab":{"a":0},"unk_token":"a"}}"#,
        "holds a WordLevel tokenizer",
    );
    // a BPE over characters (SentencePiece style, as Llama's)
    refused(
        r#"{"pre_tokenizer":{"type":"Metaspace","replacement":"▁"},"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"],"byte_fallback":true}}"#,
        "holds a BPE tokenizer, but not a byte-level one (its pre-tokenizer is Metaspace, not ByteLevel)",
    );
    refused(
        r#"{"pre_tokenizer":null,"model":{"vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]}}"#,
        "not a byte-level one (it has no ByteLevel pre-tokenizer)",
    );
}

#[test]
fn malformed_tokenizer_files_are_refused_with_a_reason() {
    refused("{\"model\": ", "tokenizer.json is not valid JSON");
    refused("[1, 2]", "has no `model` object");
    refused(r#"{"model": "BPE"}"#, "has no `model` object");
    refused(
        &format!(r#"{{{BYTE_LEVEL},"model":{{"type":7,"vocab":{{}},"merges":[]}}}}"#),
        "model.type is 7, not a name",
    );
    refused(
        &format!(
            r#"{{{BYTE_LEVEL},"model":{{"vocab":{{"a":0,"b":1,"ab":2}},"merges":["a b", "abc", "c d"]}}}}"#
        ),
        "model.merges[1] is \"abc\", not a pair of tokens",
    );
    refused(
        &format!(r#"{{{BYTE_LEVEL},"model":{{"vocab":{{"a":0,"b":1}},"merges":{{"a":"b"}}}}}}"#),
        "model.merges is missing or not a list",
    );
    refused(
        &format!(r#"{{{BYTE_LEVEL},"model":{{"vocab":{{"a":0,"b":1}},"merges":[["a","b"]]}}}}"#),
        "model.merges[0] ([\"a\",\"b\"]) needs the token \"ab\", which model.vocab does not have",
    );
    // found by fuzzing: a prefix longer than a merged token made the
    // tokenizers crate subtract past zero
    refused(
        &format!(
            r#"{{{BYTE_LEVEL},"model":{{"continuing_subword_prefix":"99","vocab":{{"a":0,"b":1,"ab":2}},"merges":["a b"]}}}}"#
        ),
        "model.continuing_subword_prefix is \"99\", but GPT-2's byte-level BPE has none",
    );
    refused(
        &format!(r#"{{{BYTE_LEVEL},"model":{{"type":"BPE","vocab":[1,2],"merges":[]}}}}"#),
        "model.vocab is missing or not an object",
    );
    refused(
        &format!(r#"{{{BYTE_LEVEL},"model":{{"vocab":{{}},"merges":[]}}}}"#),
        "empty or missing model.vocab",
    );
    // two tokens with one id (found by fuzzing: the tokenizers crate kept
    // one or the other at random)
    refused(
        &format!(r#"{{{BYTE_LEVEL},"model":{{"vocab":{{"a":0,"b":1,"«":1}},"merges":[]}}}}"#),
        "model.vocab gives the id 1 to both \"b\" and \"«\": the file is corrupt",
    );
    refused(
        &format!(r#"{{{BYTE_LEVEL},"model":{{"vocab":{{"a":0,"b":1.5}},"merges":[]}}}}"#),
        "model.vocab gives \"b\" the id 1.5, not a whole number",
    );
    // a ByteLevel inside a Sequence is byte-level too
    let (vocab, merges) = vocab_files();
    let legacy = legacy_tokenizer_json(&vocab, &merges).unwrap();
    let seq = legacy.replace(
        r#""pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true}"#,
        r#""pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true}]}"#,
    );
    assert_ne!(seq, legacy);
    let t = Tokenizer::from_tokenizer_json(&seq).unwrap();
    assert_eq!(t.encode(" Mary", false).unwrap(), [5335]);
}

/// `patchlab random-model --like R` writes R's published files; each loads
/// through the CLI, and the same weights give the same report whatever the
/// layout (names with or without `transformer.`, mask buffers, config fields).
#[test]
fn published_layouts_of_the_family_load_in_the_cli_and_agree() {
    let mut reports = Vec::new();
    for like in ["gpt2", "distilgpt2", "gpt2-medium"] {
        let dir = tempdir(&format!("layout-{like}"));
        let out = random_model(&dir, (2, 4, 64, 3), &["--n-ctx", "32", "--like", like]);
        let repo = Repo::parse(like).unwrap();
        assert!(
            out.contains(&format!("in the layout of {}", repo.hub_id())),
            "{out}"
        );
        // the files are the published ones, checked against the published facts
        let tok: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer.json")).unwrap())
                .unwrap();
        assert!(
            tok["model"].get("type").is_none(),
            "{like}: typed tokenizer.json"
        );
        let cfg: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        assert!(cfg.get("n_inner").is_none(), "{like}: n_inner");
        assert_eq!(cfg["layer_norm_epsilon"], 1e-5, "{like}");
        let st = std::fs::read(dir.join("model.safetensors")).unwrap();
        let file = safetensors::SafeTensors::deserialize(&st).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&st).unwrap();
        assert_eq!(
            meta.metadata()
                .as_ref()
                .and_then(|m| m.get("format"))
                .map(String::as_str),
            Some("pt")
        );
        let p = repo.tensor_prefix();
        let names = file.names();
        assert!(names.iter().all(|n| n.starts_with(p)), "{like}: {names:?}");
        assert!(!names.iter().any(|n| n.contains("lm_head")), "{like}");
        let c_attn = file.tensor(&format!("{p}h.1.attn.c_attn.weight")).unwrap();
        assert_eq!(c_attn.shape(), [64, 192], "{like}: Conv1D [in, out]");
        let mask = file.tensor(&format!("{p}h.0.attn.bias")).unwrap();
        assert_eq!(mask.shape(), [1, 1, 32, 32], "{like}");
        let m: Vec<f32> = mask
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!((m[0], m[1], m[32], m[33]), (1.0, 0.0, 1.0, 1.0), "causal");
        let model = Model::from_dir(&dir).unwrap();
        assert_eq!(model.config.d_mlp, 256);
        let args = [
            "analyze",
            "--model",
            dir.to_str().unwrap(),
            "--clean",
            "When Mary and John went to the store, John gave a drink to",
            "--corrupt",
            "When Mary and John went to the store, Mary gave a drink to",
            "--correct",
            " Mary",
            "--incorrect",
            " John",
            "--methods",
            "ap,atp",
            "--quiet",
            "--out",
            "-",
        ];
        reports.push((like, report(patchlab(&args))));
        let _ = ok(patchlab(&[
            "tokenize",
            "--model",
            dir.to_str().unwrap(),
            " Mary",
        ]));
        std::fs::remove_dir_all(&dir).ok();
    }
    let (_, first) = &reports[0];
    for (like, r) in &reports[1..] {
        assert_eq!(r.metric.clean, first.metric.clean, "{like}");
        assert_eq!(
            serde_json::to_value(&r.results).unwrap(),
            serde_json::to_value(&first.results).unwrap(),
            "{like}"
        );
    }
}

#[test]
fn random_model_refuses_an_unknown_layout() {
    let dir = tempdir("layout-bad");
    fails_with(
        patchlab(&[
            "random-model",
            "--like",
            "gpt-j",
            "--out",
            dir.to_str().unwrap(),
        ]),
        "unknown layout \"gpt-j\"; choose one of gpt2, distilgpt2, gpt2-medium, gpt2-large, gpt2-xl",
    );
}

/// `--model openai-community/gpt2` reads the Hugging Face cache as
/// `huggingface-cli download` leaves it: `refs/main` names the snapshot,
/// whose files are links into `blobs/`.
#[test]
fn a_hub_repo_id_loads_from_the_hugging_face_cache() {
    let root = tempdir("hf-cache");
    let src = root.join("src");
    random_model(&src, (1, 2, 16, 4), &["--n-ctx", "32"]);
    let repo = root.join("hub/models--openai-community--gpt2");
    let rev = "607a30d783dfa663caf39e06633721c8d4cfcd7e";
    let snap = repo.join("snapshots").join(rev);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), rev).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        let bytes = std::fs::read(src.join(f)).unwrap();
        let blob = sha256(&bytes);
        std::fs::write(repo.join("blobs").join(&blob), bytes).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{blob}"), snap.join(f)).unwrap();
    }
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_patchlab"))
            .args(args)
            .env("HF_HUB_CACHE", root.join("hub"))
            .output()
            .unwrap()
    };
    let out = ok(run(&[
        "tokenize",
        "--model",
        "openai-community/gpt2",
        "--json",
        " Mary",
    ]));
    assert!(out.contains("5335"), "{out}");
    let r = report(run(&[
        "analyze",
        "--model",
        "openai-community/gpt2",
        "--clean",
        "The capital of France is",
        "--corrupt",
        "The capital of Italy is",
        "--correct",
        " Paris",
        "--incorrect",
        " Rome",
        "--methods",
        "ap",
        "--components",
        "heads",
        "--quiet",
        "--out",
        "-",
    ]));
    assert_eq!(r.model.name, "openai-community/gpt2");
    let e = fails_with(
        run(&["tokenize", "--model", "openai-community/gpt2-medium", "x"]),
        "missing file openai-community/gpt2-medium: neither a directory here nor a model in the Hugging Face cache",
    );
    assert!(
        e.contains("huggingface-cli download openai-community/gpt2-medium config.json model.safetensors tokenizer.json"),
        "{e}"
    );
    fails_with(
        run(&["tokenize", "--model", "no/such/dir", "x"]),
        "missing file no/such/dir: not a directory; pass a folder holding config.json",
    );
    std::fs::remove_dir_all(&root).ok();
}
