//! Deterministic random-weight GPT-2 models in the official layout, for tests
//! and demos where real weights cannot be downloaded.
//!
//! Bit-identical on every machine: values come from integer arithmetic
//! (SplitMix64 → 24-bit uniforms) and one f32 multiply by a correctly rounded
//! scale, never from platform maths functions.

use super::config::Config;
use super::published::{legacy_tokenizer_json, Repo};
use super::weights::{tensor_specs, Param, Weights};

/// Shape options for a random model.
#[derive(Debug, Clone)]
pub struct RandomSpec {
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_model: usize,
    pub n_ctx: usize,
    pub seed: u64,
}

impl RandomSpec {
    pub fn config(&self) -> Config {
        Config {
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            d_model: self.d_model,
            d_head: self.d_model / self.n_heads,
            d_mlp: 4 * self.d_model,
            n_ctx: self.n_ctx,
            d_vocab: 50257,
            layer_norm_eps: 1e-5,
        }
    }
}

pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1), exactly representable.
    pub(crate) fn uniform(&mut self) -> f32 {
        ((self.next() >> 40) as f32) * (1.0 / 8_388_608.0) - 1.0
    }
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Standard deviation (and offset) of each tensor. Larger than GPT-2's 0.02
/// initialisation on purpose: attention scores of order ±3 give peaked,
/// position-dependent patterns, and logits of order ±2 give logit differences
/// far from zero, so every attribution method has something to find.
fn init(name: &str, cfg: &Config) -> (f32, f32) {
    let d = (cfg.d_model as f32).sqrt();
    let m = (cfg.d_mlp as f32).sqrt();
    let kind = name.rsplit_once('.').map_or(name, |(a, _)| a);
    let kind = kind.split('.').next_back().unwrap_or(kind);
    let is_bias = name.ends_with(".bias");
    match (kind, is_bias) {
        ("wte", _) => (1.5 / d, 0.0),
        ("wpe", _) => (1.0 / d, 0.0),
        ("ln_1" | "ln_2" | "ln_f", false) => (0.15, 1.0),
        ("ln_1" | "ln_2" | "ln_f", true) => (0.05, 0.0),
        ("c_attn", false) => (1.75 / d, 0.0),
        ("c_fc", false) => (1.0 / d, 0.0),
        ("c_proj", false) if name.contains(".mlp.") => (1.0 / m, 0.0),
        ("c_proj", false) => (1.0 / d, 0.0),
        (_, true) => (0.1, 0.0),
        _ => (1.0 / d, 0.0),
    }
}

fn random_param(name: &str, shape: Vec<usize>, cfg: &Config, seed: u64) -> Param {
    let (std, offset) = init(name, cfg);
    // uniform on [-a, a) has standard deviation a/√3
    let a = std * 3f32.sqrt();
    let mut rng = SplitMix64(seed ^ fnv1a(name));
    let n = shape.iter().product();
    let data = (0..n).map(|_| offset + a * rng.uniform()).collect();
    Param::new(shape, data)
}

/// A random GPT-2 with the given shape, identical for identical specs.
pub fn random_weights(spec: &RandomSpec) -> Weights {
    let cfg = spec.config();
    let params = tensor_specs(&cfg)
        .into_iter()
        .map(|(n, s)| random_param(&n, s, &cfg, spec.seed));
    Weights::from_spec_order(&cfg, params)
}

fn tiny_config() -> Config {
    Config {
        n_layers: 1,
        n_heads: 2,
        d_model: 8,
        d_head: 4,
        d_mlp: 32,
        n_ctx: 8,
        d_vocab: 300,
        layer_norm_eps: 1e-5,
    }
}

/// A valid tiny checkpoint (config.json, model.safetensors, tokenizer.json
/// with GPT-2's byte alphabet and two merges): the seed inputs of the
/// loader's fuzzing, in the layout our writers used to produce (a typed
/// tokenizer.json, no mask buffers).
pub fn tiny_checkpoint() -> (String, Vec<u8>, String) {
    let cfg = tiny_config();
    let mut bytes: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
    for (i, (name, shape)) in tensor_specs(&cfg).into_iter().enumerate() {
        let n: usize = shape.iter().product();
        let data: Vec<u8> = (0..n)
            .flat_map(|j| (((i * 31 + j) % 17) as f32 * 0.01).to_le_bytes())
            .collect();
        bytes.push((name, data, shape));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(n, b, s)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .expect("valid tiny checkpoint"),
            )
        })
        .collect();
    let st = safetensors::tensor::serialize(views, None).expect("valid tiny checkpoint");
    // GPT-2's byte alphabet as the vocabulary, a few merges, and <|endoftext|>
    let mut vocab = serde_json::Map::new();
    // GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100…
    let mut printable: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
    let mut extra = 256;
    for b in 0..256 {
        if !printable.contains(&b) {
            printable.push(extra);
            extra += 1;
        }
    }
    let alphabet: Vec<char> = printable.into_iter().filter_map(char::from_u32).collect();
    for (i, c) in alphabet.iter().enumerate() {
        vocab.insert(c.to_string(), (i as u64).into());
    }
    let n = vocab.len() as u64;
    vocab.insert("Ġt".into(), n.into());
    vocab.insert("he".into(), (n + 1).into());
    let tok = super::tokenizer::tokenizer_json_from_vocab_merges(
        &serde_json::Value::Object(vocab).to_string(),
        TINY_MERGES,
    )
    .expect("valid tiny checkpoint");
    (cfg.to_hf_json(), st, tok)
}

const TINY_MERGES: &str = "#version: 0.2\nĠ t\nh e\n";

/// The same tiny checkpoint in the layout the Hub publishes for `repo`
/// (legacy tokenizer.json, published config fields, tensor names and mask
/// buffers): the other seed inputs of the loader's fuzzing.
pub fn tiny_published_checkpoint(repo: Repo) -> (String, Vec<u8>, String) {
    let (cfg_json, st, tok) = tiny_checkpoint();
    let cfg = Config::from_json(&cfg_json).expect("valid tiny checkpoint");
    let weights = Weights::from_safetensors(&cfg, &st).expect("valid tiny checkpoint");
    let tok: serde_json::Value = serde_json::from_str(&tok).expect("valid tiny checkpoint");
    let vocab = tok["model"]["vocab"].to_string();
    (
        repo.config_json(&cfg).expect("valid tiny checkpoint"),
        repo.safetensors(&weights, &cfg)
            .expect("valid tiny checkpoint"),
        legacy_tokenizer_json(&vocab, TINY_MERGES).expect("valid tiny checkpoint"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniforms_stay_in_range_and_vary() {
        let mut r = SplitMix64(7);
        let xs: Vec<f32> = (0..10_000).map(|_| r.uniform()).collect();
        assert!(xs.iter().all(|x| (-1.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f32>() / xs.len() as f32;
        assert!(mean.abs() < 0.05, "{mean}");
    }

    #[test]
    fn seeds_give_different_models() {
        let s = |seed| RandomSpec {
            n_layers: 1,
            n_heads: 2,
            d_model: 8,
            n_ctx: 8,
            seed,
        };
        assert_ne!(
            random_weights(&s(1)).wte.data,
            random_weights(&s(2)).wte.data
        );
        assert_eq!(
            random_weights(&s(1)).wte.data,
            random_weights(&s(1)).wte.data
        );
    }
}
