//! Mutation fuzzing of the model-loading path (config.json, model.safetensors,
//! tokenizer.json): whatever the bytes, loading returns Ok or a clear Err and
//! never panics. Deterministic (seeded), bounded, part of `cargo test`; the
//! cargo-fuzz target in fuzz/ runs the same harness for as long as you like.
//! Inputs that once broke the loader live in tests/corpus/ and are replayed.

use patchlab::model::random::tiny_checkpoint;
use patchlab::model::{Model, ModelFiles};
use std::panic::{catch_unwind, AssertUnwindSafe};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seeds() -> (String, Vec<u8>, String) {
    tiny_checkpoint()
}

fn load(cfg: &[u8], st: &[u8], tok: &[u8]) -> Result<(), String> {
    let cfg = String::from_utf8_lossy(cfg);
    let tok = String::from_utf8_lossy(tok);
    match catch_unwind(AssertUnwindSafe(|| {
        Model::from_files(
            "fuzz",
            ModelFiles {
                config_json: &cfg,
                safetensors: st,
                tokenizer_json: Some(&tok),
                vocab_merges: None,
            },
        )
        .map(|m| {
            // a loaded model must also tokenize without panicking
            let _ = m.tokenizer.encode("the theme", true);
        })
    })) {
        Ok(_) => Ok(()),
        Err(p) => Err(p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()),
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
    let (c, s, t) = seeds();
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
}

#[test]
fn mutated_inputs_never_panic() {
    let (c, s, t) = seeds();
    let (c, s, t) = (c.into_bytes(), s, t.into_bytes());
    let iterations: usize = std::env::var("PATCHLAB_FUZZ_ITERS")
        .ok()
        .and_then(|x| x.parse().ok())
        .unwrap_or(2000);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..iterations {
        let (mc, ms, mt) = match i % 3 {
            0 => (mutate(&mut rng, &c), s.clone(), t.clone()),
            1 => (c.clone(), mutate(&mut rng, &s), t.clone()),
            _ => (c.clone(), s.clone(), mutate(&mut rng, &t)),
        };
        let t = std::time::Instant::now();
        let r = load(&mc, &ms, &mt);
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
                "iteration {i} panicked ({msg}); inputs saved in {}",
                dir.display()
            );
        }
    }
}

#[test]
fn corpus_of_past_crashes_loads_without_panic() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let (c, s, t) = seeds();
    let mut n = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let p = entry.unwrap().path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let bytes = std::fs::read(&p).unwrap();
        let started = std::time::Instant::now();
        let r = if name.starts_with("config") {
            load(&bytes, &s, t.as_bytes())
        } else if name.starts_with("safetensors") {
            load(c.as_bytes(), &bytes, t.as_bytes())
        } else if name.starts_with("tokenizer") {
            load(c.as_bytes(), &s, &bytes)
        } else {
            continue;
        };
        assert!(r.is_ok(), "{name} panicked: {:?}", r.err());
        assert!(
            started.elapsed().as_secs_f64() < 10.0,
            "{name} took {:?}",
            started.elapsed()
        );
        n += 1;
    }
    assert!(n > 0, "the corpus is empty");
}
