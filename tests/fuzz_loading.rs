//! Mutation fuzzing of the model-loading path (config.json, model.safetensors,
//! tokenizer.json): whatever the bytes, loading returns Ok or a clear Err and
//! never panics. Deterministic (seeded), bounded, part of `cargo test`; the
//! cargo-fuzz target in fuzz/ runs the same harness for as long as you like.
//! Each input is also loaded as the browser does, through a `WeightStream`
//! fed in random chunks, which must agree with the in-memory loader.
//! Inputs that once broke the loader live in tests/corpus/ and are replayed.

use crate::common::Rng;
use patchlab::model::published::Repo;
use patchlab::model::random::{tiny_checkpoint, tiny_published_checkpoint};
use patchlab::model::{Config, Model, ModelFiles, WeightStream};
use std::panic::{catch_unwind, AssertUnwindSafe};

fn seeds() -> (String, Vec<u8>, String) {
    tiny_checkpoint()
}

/// Every seed checkpoint: the typed layout, and the published layouts of
/// gpt2 (legacy tokenizer.json, mask buffers) and distilgpt2 (names
/// prefixed `transformer.`, two mask buffers).
fn all_seeds() -> Vec<(String, Vec<u8>, String)> {
    vec![
        tiny_checkpoint(),
        tiny_published_checkpoint(Repo::Gpt2),
        tiny_published_checkpoint(Repo::Distilgpt2),
    ]
}

/// Every weight's bits, in file order: what two loaders must agree on.
type Bits = Vec<u32>;

fn bits(m: &Model) -> Bits {
    m.weights
        .named()
        .iter()
        .flat_map(|(_, p)| p.data.iter().map(|x| x.to_bits()))
        .collect()
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// `Model::from_files`: Ok(the weights' bits, if it loaded), or Err(the
/// panic's message).
fn load(cfg: &[u8], st: &[u8], tok: &[u8]) -> Result<Option<Bits>, String> {
    let cfg = String::from_utf8_lossy(cfg);
    let tok = String::from_utf8_lossy(tok);
    catch_unwind(AssertUnwindSafe(|| {
        Model::from_files(
            "fuzz",
            ModelFiles {
                config_json: &cfg,
                safetensors: st,
                tokenizer_json: Some(&tok),
                vocab_merges: None,
            },
        )
        .ok()
        .map(|m| {
            // a loaded model must also tokenize without panicking
            let _ = m.tokenizer.encode("the theme", true);
            bits(&m)
        })
    }))
    .map_err(panic_text)
}

/// The same files loaded as the browser's worker does: the header (plus a
/// few data bytes, at random) starts a `WeightStream`, the rest arrives in
/// random chunks (1 byte to a few kB), then `Model::from_stream`.
fn load_streamed(rng: &mut Rng, cfg: &[u8], st: &[u8], tok: &[u8]) -> Result<Option<Bits>, String> {
    let cfg = String::from_utf8_lossy(cfg);
    let tok = String::from_utf8_lossy(tok);
    catch_unwind(AssertUnwindSafe(|| {
        let config = Config::from_json(&cfg).ok()?;
        let hs = WeightStream::header_size(st).ok()?;
        let mut at = (hs + rng.below(3) * rng.below(64)).min(st.len());
        if at < hs {
            return None;
        }
        let mut s = WeightStream::new(&config, &st[..at]).ok()?;
        while at < st.len() {
            let most = [1, 7, 300, 5000][rng.below(4)];
            let n = (1 + rng.below(most)).min(st.len() - at);
            s.push(&st[at..at + n]).ok()?;
            at += n;
        }
        let m = Model::from_stream("fuzz", s, Some(&tok), None).ok()?;
        Some(bits(&m))
    }))
    .map_err(panic_text)
}

/// Both loaders: no panic, and the same weights or both an error.
fn load_both(rng: &mut Rng, cfg: &[u8], st: &[u8], tok: &[u8]) -> Result<(), String> {
    let whole = load(cfg, st, tok)?;
    let streamed = load_streamed(rng, cfg, st, tok).map_err(|p| format!("streaming: {p}"))?;
    match (&whole, &streamed) {
        (Some(a), Some(b)) if a != b => Err("the streamed weights differ".into()),
        (Some(_), None) => Err("only the in-memory loader loaded it".into()),
        (None, Some(_)) => Err("only the stream loaded it".into()),
        _ => Ok(()),
    }
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.truncate(rng.below(v.len() + 1)),
            2 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, rng.next() as u8);
            }
            3 if v.len() > 16 => {
                // overwrite an early byte: headers and JSON keys live there
                let i = rng.below(v.len().min(256));
                v[i] = b"0123456789{}[]\",:-e.x "[rng.below(22)];
            }
            4 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.remove(i);
            }
            _ => {
                // splice a digit run into a number: huge shapes and offsets
                let i = rng.below(v.len().min(512) + 1);
                for _ in 0..rng.below(12) {
                    v.insert(i, b'9');
                }
            }
        }
    }
    v
}

#[test]
fn seeds_load() {
    let mut bits = Vec::new();
    for (c, s, t) in all_seeds() {
        let m = Model::from_files(
            "seed",
            ModelFiles {
                config_json: &c,
                safetensors: &s,
                tokenizer_json: Some(&t),
                vocab_merges: None,
            },
        );
        assert!(m.is_ok(), "{:?}", m.err());
        let whole = load(c.as_bytes(), &s, t.as_bytes()).unwrap();
        let streamed = load_streamed(&mut Rng(1), c.as_bytes(), &s, t.as_bytes()).unwrap();
        assert!(whole.is_some() && whole == streamed);
        bits.push(whole);
    }
    // the same weights in every layout
    assert!(bits.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn mutated_inputs_never_panic() {
    let seeds: Vec<_> = all_seeds()
        .into_iter()
        .map(|(c, s, t)| (c.into_bytes(), s, t.into_bytes()))
        .collect();
    let iterations: usize = std::env::var("PATCHLAB_FUZZ_ITERS")
        .ok()
        .and_then(|x| x.parse().ok())
        .unwrap_or(2000);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..iterations {
        // each file of each seed layout in turn
        let (c, s, t) = &seeds[(i / 3) % seeds.len()];
        let (mc, ms, mt) = match i % 3 {
            0 => (mutate(&mut rng, c), s.clone(), t.clone()),
            1 => (c.clone(), mutate(&mut rng, s), t.clone()),
            _ => (c.clone(), s.clone(), mutate(&mut rng, t)),
        };
        let t = std::time::Instant::now();
        let r = load_both(&mut rng, &mc, &ms, &mt);
        let secs = t.elapsed().as_secs_f64();
        if secs > 1.0 {
            eprintln!("iteration {i} took {secs:.1}s");
            let dir = std::env::temp_dir().join(format!("patchlab-fuzz-slow-{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("config.json"), &mc).unwrap();
            std::fs::write(dir.join("model.safetensors"), &ms).unwrap();
            std::fs::write(dir.join("tokenizer.json"), &mt).unwrap();
            // a loader that takes this long on a few kilobytes is a hang waiting to happen
            assert!(
                secs < 10.0,
                "iteration {i} took {secs:.1}s; inputs saved in {}",
                dir.display()
            );
        }
        if let Err(msg) = r {
            let dir = std::env::temp_dir().join(format!("patchlab-fuzz-crash-{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("config.json"), &mc).unwrap();
            std::fs::write(dir.join("model.safetensors"), &ms).unwrap();
            std::fs::write(dir.join("tokenizer.json"), &mt).unwrap();
            panic!(
                "iteration {i} failed ({msg}); inputs saved in {}",
                dir.display()
            );
        }
    }
}

#[test]
fn corpus_of_past_crashes_loads_without_panic() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let (c, s, t) = seeds();
    let mut rng = Rng(0x0DDB_1A5E_5BAD_5EED);
    let mut n = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let p = entry.unwrap().path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let bytes = std::fs::read(&p).unwrap();
        let started = std::time::Instant::now();
        let r = if name.starts_with("config") {
            load_both(&mut rng, &bytes, &s, t.as_bytes())
        } else if name.starts_with("safetensors") {
            load_both(&mut rng, c.as_bytes(), &bytes, t.as_bytes())
        } else if name.starts_with("tokenizer") {
            load_both(&mut rng, c.as_bytes(), &s, &bytes)
        } else {
            continue;
        };
        assert!(r.is_ok(), "{name}: {:?}", r.err());
        assert!(
            started.elapsed().as_secs_f64() < 10.0,
            "{name} took {:?}",
            started.elapsed()
        );
        n += 1;
    }
    assert!(n > 0, "the corpus is empty");
}

/// The header checks are safetensors' own, word for word: on mutated files,
/// `Weights::from_safetensors` fails exactly when `SafeTensors::deserialize`
/// does, with its message (the size check adds the byte counts).
#[test]
fn header_checks_match_safetensors() {
    let (c, s, _) = seeds();
    let cfg = Config::from_json(&c).unwrap();
    let mut rng = Rng(0xC0FF_EE00_1234_5678);
    let (mut refused, mut loaded) = (0, 0);
    for i in 0..3000 {
        let ms = mutate(&mut rng, &s);
        let ours = patchlab::model::Weights::from_safetensors(&cfg, &ms);
        match safetensors::SafeTensors::deserialize(&ms) {
            Ok(_) => {
                // only a model-level complaint is left: names, shapes, dtypes
                if let Err(e) = &ours {
                    let e = e.to_string();
                    assert!(
                        e.contains("has no tensor")
                            || e.contains("has shape")
                            || e.contains("patchlab reads F32, F16 and BF16"),
                        "iteration {i}: safetensors reads it, patchlab says {e}"
                    );
                } else {
                    loaded += 1;
                }
            }
            Err(want) => {
                refused += 1;
                let got = match ours {
                    Ok(_) => {
                        panic!("iteration {i}: safetensors refuses it ({want}), patchlab loads it")
                    }
                    Err(e) => e.to_string(),
                };
                let want = want.to_string();
                // a name picked among tensors with equal offsets may differ
                let stem = |m: &str| m.split('`').next().unwrap_or(m).to_string();
                let head = stem(&want);
                assert!(
                    got.starts_with(&format!("bad model.safetensors: {head}")),
                    "iteration {i}: safetensors says {want:?}, patchlab {got:?}"
                );
            }
        }
    }
    assert!(
        refused > 100 && loaded > 100,
        "{refused} refused, {loaded} loaded"
    );
}
