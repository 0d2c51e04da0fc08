//! Fuzzes the model-loading path: `cargo +nightly fuzz run load_model`.
//! The first byte picks the file to replace (config.json, model.safetensors
//! or tokenizer.json); the others stay valid, so the fuzzer gets past the
//! first check. Any panic or hang is a bug: add the input to tests/corpus/.
#![no_main]

use libfuzzer_sys::fuzz_target;
use patchlab::model::random::tiny_checkpoint;
use patchlab::model::{Model, ModelFiles};
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static SEEDS: OnceLock<(String, Vec<u8>, String)> = OnceLock::new();
    let (cfg, st, tok) = SEEDS.get_or_init(tiny_checkpoint);
    let Some((&which, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let files = match which % 3 {
        0 => ModelFiles { config_json: &text, safetensors: st, tokenizer_json: Some(tok), vocab_merges: None },
        1 => ModelFiles { config_json: cfg, safetensors: rest, tokenizer_json: Some(tok), vocab_merges: None },
        _ => ModelFiles { config_json: cfg, safetensors: st, tokenizer_json: Some(&text), vocab_merges: None },
    };
    if let Ok(m) = Model::from_files("fuzz", files) {
        let _ = m.tokenizer.encode("the theme", true);
    }
});
