//! Fuzzes the model-loading path: `cargo +nightly fuzz run load_model`.
//! The first byte picks the file to replace (config.json, model.safetensors
//! or tokenizer.json) and the seed layout the others come from (the typed
//! one, or the published gpt2 / distilgpt2 layouts with the legacy
//! tokenizer.json and mask buffers); they stay valid, so the fuzzer gets
//! past the first check. Any panic or hang is a bug: add the input to tests/corpus/.
//! The weights are also streamed through a `WeightStream` in chunks of 1 to
//! 64 bytes (the input's length picks the size), as the browser reads them:
//! it must agree with the in-memory loader.
#![no_main]

use libfuzzer_sys::fuzz_target;
use patchlab::model::published::Repo;
use patchlab::model::random::{tiny_checkpoint, tiny_published_checkpoint};
use patchlab::model::{Config, Model, ModelFiles, WeightStream, Weights};
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    type Seed = (String, Vec<u8>, String);
    static SEEDS: OnceLock<[Seed; 3]> = OnceLock::new();
    let seeds = SEEDS.get_or_init(|| {
        [tiny_checkpoint(), tiny_published_checkpoint(Repo::Gpt2), tiny_published_checkpoint(Repo::Distilgpt2)]
    });
    let Some((&which, rest)) = data.split_first() else { return };
    let (cfg, st, tok) = &seeds[(which as usize / 3) % 3];
    let text = String::from_utf8_lossy(rest);
    let files = match which % 3 {
        0 => ModelFiles { config_json: &text, safetensors: st, tokenizer_json: Some(tok), vocab_merges: None },
        1 => ModelFiles { config_json: cfg, safetensors: rest, tokenizer_json: Some(tok), vocab_merges: None },
        _ => ModelFiles { config_json: cfg, safetensors: st, tokenizer_json: Some(&text), vocab_merges: None },
    };
    let config = files.config_json;
    let safetensors = files.safetensors;
    let whole = Model::from_files("fuzz", files).ok().map(|m| {
        let _ = m.tokenizer.encode("the theme", true);
        m.weights
    });
    let Ok(cfg) = Config::from_json(config) else { return };
    let streamed = stream(&cfg, safetensors, 1 + data.len() % 64);
    if let Some(w) = whole {
        let bits = |w: &Weights| -> Vec<u32> {
            w.named().iter().flat_map(|(_, p)| p.data.iter().map(|x| x.to_bits())).collect()
        };
        let s = streamed.expect("the stream refuses what the in-memory loader loads");
        assert!(bits(&s) == bits(&w), "the streamed weights differ");
    }
});

fn stream(cfg: &Config, st: &[u8], chunk: usize) -> Option<Weights> {
    let hs = WeightStream::header_size(st).ok()?;
    let mut s = WeightStream::new(cfg, st.get(..hs)?).ok()?;
    for c in st[hs..].chunks(chunk) {
        s.push(c).ok()?;
    }
    s.finish().ok()
}
