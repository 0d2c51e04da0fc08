//! `WeightStream`, the browser's way of reading model.safetensors as it
//! downloads: whatever the chunks (1 byte, primes, split inside a value, the
//! whole file), the weights are bit-identical to `Weights::from_safetensors`
//! and to values decoded here independently, for F32, F16 and BF16 files,
//! with or without the `transformer.` prefix and with tensors the model does
//! not use; a truncated, over-long or foreign file gets a clear error.

use crate::common::Rng;
use patchlab::model::random::{random_weights, RandomSpec};
use patchlab::model::weights::tensor_specs;
use patchlab::model::{Config, Model, ModelFiles, WeightStream, Weights};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

fn small_config() -> Config {
    Config {
        n_layers: 2,
        n_heads: 2,
        d_model: 8,
        d_head: 4,
        d_mlp: 32,
        n_ctx: 8,
        d_vocab: 40,
        layer_norm_eps: 1e-5,
    }
}

/// One tensor of a file: name, dtype, shape, bytes.
type Entry = (String, Dtype, Vec<usize>, Vec<u8>);

/// The bytes of `x` in `dtype` (F32, F16 or BF16).
fn encode(dtype: Dtype, xs: &[f32]) -> Vec<u8> {
    match dtype {
        Dtype::F32 => xs.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Dtype::F16 => xs
            .iter()
            .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
            .collect(),
        Dtype::BF16 => xs
            .iter()
            .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
            .collect(),
        d => panic!("no encoder for {d:?}"),
    }
}

/// What a reader must make of `x` stored in `dtype`, decoded here without
/// patchlab's code.
fn stored(dtype: Dtype, x: f32) -> f32 {
    match dtype {
        Dtype::F32 => x,
        Dtype::F16 => half::f16::from_f32(x).to_f32(),
        Dtype::BF16 => half::bf16::from_f32(x).to_f32(),
        d => panic!("no decoder for {d:?}"),
    }
}

/// A checkpoint of `cfg` with random values (wide-ranging, signed, with
/// subnormals and ±0), every needed tensor in `dtype`, names prefixed or not,
/// plus tensors the model does not use when `extras`. Returns the file and
/// the expected values in `tensor_specs` order.
fn checkpoint(
    cfg: &Config,
    dtype: Dtype,
    prefix: bool,
    extras: bool,
    seed: u64,
) -> (Vec<u8>, Vec<Vec<f32>>) {
    let mut rng = Rng(seed);
    let mut entries: Vec<Entry> = Vec::new();
    let mut want = Vec::new();
    for (name, shape) in tensor_specs(cfg) {
        let n: usize = shape.iter().product();
        let xs: Vec<f32> = (0..n)
            .map(|_| match rng.below(20) {
                0 => 0.0,
                1 => -0.0,
                2 => f32::from_bits(rng.next() as u32 & 0x807f_ffff), // subnormal
                _ => (rng.next() as i32 as f32) * 2f32.powi(rng.below(40) as i32 - 50),
            })
            .collect();
        want.push(xs.iter().map(|&x| stored(dtype, x)).collect());
        let name = if prefix {
            format!("transformer.{name}")
        } else {
            name
        };
        entries.push((name, dtype, shape, encode(dtype, &xs)));
    }
    if extras {
        // what Hugging Face's GPT-2 files hold besides the weights
        for l in 0..cfg.n_layers {
            let p = if prefix { "transformer." } else { "" };
            entries.push((
                format!("{p}h.{l}.attn.bias"),
                Dtype::U8,
                vec![1, 1, cfg.n_ctx, cfg.n_ctx],
                (0..cfg.n_ctx * cfg.n_ctx).map(|i| (i % 3) as u8).collect(),
            ));
            entries.push((
                format!("{p}h.{l}.attn.masked_bias"),
                Dtype::F64,
                vec![],
                (-1e4f64).to_le_bytes().to_vec(),
            ));
        }
        entries.push(("lm_head.weight".into(), Dtype::F32, vec![3], vec![7; 12]));
    }
    (serialize(&entries), want)
}

fn serialize(entries: &[Entry]) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = entries
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::tensor::serialize(views, None).unwrap()
}

fn header_size(bytes: &[u8]) -> usize {
    WeightStream::header_size(&bytes[..8]).unwrap()
}

/// Streams `bytes`: the header plus `extra` bytes to `new`, then chunks of
/// the sizes `chunk` gives (called with the bytes still to come).
fn stream(
    cfg: &Config,
    bytes: &[u8],
    extra: usize,
    mut chunk: impl FnMut(usize) -> usize,
) -> patchlab::Result<Weights> {
    let first = (header_size(bytes) + extra).min(bytes.len());
    let mut s = WeightStream::new(cfg, &bytes[..first])?;
    let mut at = first;
    while at < bytes.len() {
        let n = chunk(bytes.len() - at).clamp(1, bytes.len() - at);
        s.push(&bytes[at..at + n])?;
        at += n;
        assert_eq!(s.received(), at);
    }
    s.finish()
}

/// Bit for bit (NaN-safe, and −0 ≠ +0).
fn bits(w: &Weights) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    w.named()
        .into_iter()
        .map(|(n, p)| {
            (
                n,
                p.shape.clone(),
                p.data.iter().map(|x| x.to_bits()).collect(),
            )
        })
        .collect()
}

fn assert_values(w: &Weights, want: &[Vec<f32>]) {
    let named = w.named();
    assert_eq!(named.len(), want.len());
    for ((name, p), want) in named.iter().zip(want) {
        let got: Vec<u32> = p.data.iter().map(|x| x.to_bits()).collect();
        let want: Vec<u32> = want.iter().map(|x| x.to_bits()).collect();
        assert_eq!(got, want, "values of {name}");
    }
}

/// A way to cut a file: its name, and the size of the next chunk.
type Chunking = (String, Box<dyn FnMut(usize) -> usize>);

/// Chunkings: fixed sizes (1 byte, 2, 3, primes, whole), random sizes.
fn chunkings(len: usize) -> Vec<Chunking> {
    let mut v: Vec<Chunking> = Vec::new();
    for n in [1usize, 2, 3, 5, 7, 13, 4093, 65536] {
        v.push((format!("chunks of {n}"), Box::new(move |_| n)));
    }
    v.push(("one chunk".into(), Box::new(move |_| len)));
    for seed in [1u64, 2, 3] {
        let mut rng = Rng(0x5eed ^ seed);
        v.push((
            format!("random chunks, seed {seed}"),
            Box::new(move |_| {
                let most = if rng.below(4) == 0 { 3000 } else { 17 };
                1 + rng.below(most)
            }),
        ));
    }
    v
}

#[test]
fn any_chunking_gives_the_same_weights_as_the_whole_file() {
    let cfg = small_config();
    for (case, (dtype, prefix, extras)) in [
        (Dtype::F32, false, false),
        (Dtype::F32, true, true),
        (Dtype::F16, false, true),
        (Dtype::F16, true, false),
        (Dtype::BF16, false, true),
        (Dtype::BF16, true, true),
    ]
    .into_iter()
    .enumerate()
    {
        let (file, want) = checkpoint(&cfg, dtype, prefix, extras, 7 + case as u64);
        let whole = Weights::from_safetensors(&cfg, &file).unwrap();
        assert_values(&whole, &want);
        let whole = bits(&whole);
        let hs = header_size(&file);
        let s = WeightStream::new(&cfg, &file[..hs]).unwrap();
        assert_eq!((s.received(), s.expected()), (hs, file.len()));
        for extra in [0, 1, 3, 1000, file.len()] {
            for (how, chunk) in chunkings(file.len()) {
                let w = stream(&cfg, &file, extra, chunk).unwrap_or_else(|e| {
                    panic!("{dtype:?} prefix {prefix} extras {extras}, {how}, {extra} extra: {e}")
                });
                assert!(
                    bits(&w) == whole,
                    "{dtype:?} prefix {prefix} extras {extras}, {how}, {extra} extra bytes with the header: weights differ"
                );
            }
        }
    }
}

#[test]
fn a_random_gpt2_streams_bit_identically_to_model_from_files() {
    let spec = RandomSpec {
        n_layers: 2,
        n_heads: 4,
        d_model: 16,
        n_ctx: 32,
        seed: 11,
    };
    let cfg = spec.config();
    let weights = random_weights(&spec);
    let file = weights.to_safetensors().unwrap();
    // the tiny checkpoint's tokenizer fits any vocabulary of 300 or more
    let (_, _, tok) = patchlab::model::random::tiny_checkpoint();
    let cfg_json = cfg.to_hf_json();
    let from_files = Model::from_files(
        "m",
        ModelFiles {
            config_json: &cfg_json,
            safetensors: &file,
            tokenizer_json: Some(&tok),
            vocab_merges: None,
        },
    )
    .unwrap();
    assert_eq!(bits(&from_files.weights), bits(&weights));
    for (how, mut chunk) in chunkings(file.len()).into_iter().skip(3) {
        let hs = header_size(&file);
        let mut s = WeightStream::new(&cfg, &file[..hs]).unwrap();
        let mut at = hs;
        while at < file.len() {
            let n = chunk(file.len() - at).clamp(1, file.len() - at);
            s.push(&file[at..at + n]).unwrap();
            at += n;
        }
        let m = Model::from_stream("m", s, Some(&tok), None).unwrap();
        assert_eq!(m.config, from_files.config);
        assert!(bits(&m.weights) == bits(&from_files.weights), "{how}");
    }
}

fn message(r: patchlab::Result<Weights>) -> String {
    match r {
        Ok(_) => panic!("loaded a broken file"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_truncated_file_gets_the_same_clear_error_either_way() {
    let cfg = small_config();
    let (file, _) = checkpoint(&cfg, Dtype::F16, false, true, 3);
    let hs = header_size(&file);
    // inside the data, inside a value, at the last byte
    for cut in [hs, hs + 1, hs + 101, file.len() / 2, file.len() - 1] {
        let short = &file[..cut];
        let whole = message(Weights::from_safetensors(&cfg, short));
        let streamed = message(stream(&cfg, short, 0, |_| 5));
        assert_eq!(streamed, whole, "cut at {cut}");
        assert!(
            streamed.starts_with("bad model.safetensors: ")
                && streamed.contains(&format!("{cut} bytes where its header says {}", file.len()))
                && streamed.contains("truncated"),
            "{streamed}"
        );
    }
    // inside the header: `new` cannot start
    for cut in [0, 7, 8, hs - 1] {
        let whole = message(Weights::from_safetensors(&cfg, &file[..cut]));
        assert!(whole.starts_with("bad model.safetensors: "), "{whole}");
        let streamed = match WeightStream::new(&cfg, &file[..cut]) {
            Ok(_) => panic!("a stream from {cut} bytes of header"),
            Err(e) => e.to_string(),
        };
        assert_eq!(streamed, whole, "cut at {cut}");
    }
}

#[test]
fn an_over_long_file_is_refused_as_it_arrives() {
    let cfg = small_config();
    let (mut file, _) = checkpoint(&cfg, Dtype::F32, false, false, 4);
    let len = file.len();
    file.extend_from_slice(b"trailing bytes");
    let whole = message(Weights::from_safetensors(&cfg, &file));
    assert!(
        whole.contains(&format!("{} bytes where its header says {len}", len + 14)),
        "{whole}"
    );
    let hs = header_size(&file);
    let mut s = WeightStream::new(&cfg, &file[..hs]).unwrap();
    s.push(&file[hs..len - 3]).unwrap();
    let e = s.push(&file[len - 3..len + 1]).unwrap_err().to_string();
    assert!(
        e.starts_with("bad model.safetensors: the file goes on past the")
            && e.contains(&format!("{len} bytes its header gives")),
        "{e}"
    );
    // also when the header comes with too much
    assert!(WeightStream::new(&cfg, &file).is_err());
}

#[test]
fn foreign_and_mismatched_files_are_refused_at_the_header() {
    let cfg = small_config();
    let (file, _) = checkpoint(&cfg, Dtype::F32, true, false, 5);
    let refuse = |bytes: &[u8], cfg: &Config, needle: &str| {
        let whole = message(Weights::from_safetensors(cfg, bytes));
        assert!(whole.contains(needle), "{whole} lacks {needle:?}");
        // the stream says the same from the header alone
        let hs = WeightStream::header_size(bytes).map(|n| n.min(bytes.len()));
        let streamed = match hs {
            Err(e) => e.to_string(),
            Ok(hs) => match WeightStream::new(cfg, &bytes[..hs]) {
                Ok(_) => panic!("a stream from a bad header ({needle})"),
                Err(e) => e.to_string(),
            },
        };
        assert_eq!(streamed, whole);
    };
    refuse(
        b"this is not a safetensors file",
        &cfg,
        "bad model.safetensors",
    );
    refuse(
        b"{\"model\": {\"type\": \"BPE\"}}",
        &cfg,
        "header too large",
    );
    refuse(b"short", &cfg, "header too small");
    let mut json = 20u64.to_le_bytes().to_vec();
    json.extend_from_slice(b"{\"a\": not json at al");
    refuse(&json, &cfg, "invalid JSON in header");
    // a model of another shape
    let mut wide = cfg.clone();
    wide.d_model = 16;
    wide.d_head = 8;
    refuse(
        &file,
        &wide,
        "tensor `transformer.wte.weight` has shape [40, 8], but config.json implies [40, 16]",
    );
    let mut deep = cfg.clone();
    deep.n_layers = 3;
    refuse(&file, &deep, "no tensor `transformer.h.2.ln_1.weight`");
    // a needed tensor in a dtype patchlab does not read
    let mut entries: Vec<Entry> = tensor_specs(&cfg)
        .into_iter()
        .map(|(n, s)| {
            let k: usize = s.iter().product();
            (n, Dtype::F32, s, vec![0; 4 * k])
        })
        .collect();
    let k = entries[3].3.len();
    entries[3].1 = Dtype::I32;
    entries[3].3 = vec![1; k];
    refuse(
        &serialize(&entries),
        &cfg,
        "tensor `h.0.ln_1.bias` has dtype I32; patchlab reads F32, F16 and BF16",
    );
    // offsets that leave a gap
    let hs = header_size(&file);
    let text = String::from_utf8(file[8..hs].to_vec()).unwrap();
    let gap = text.replacen("\"data_offsets\":[0,", "\"data_offsets\":[4,", 1);
    assert_ne!(gap, text);
    let mut bad = (gap.len() as u64).to_le_bytes().to_vec();
    bad.extend_from_slice(gap.as_bytes());
    bad.extend_from_slice(&file[hs..]);
    refuse(&bad, &cfg, "invalid offset for tensor");
}
