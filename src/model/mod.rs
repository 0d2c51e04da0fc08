//! The model: hyper-parameters, weights and tokenizer of a GPT-2 checkpoint.

pub mod config;
pub mod graph;
pub mod published;
pub mod random;
pub mod random_sae;
pub mod sae;
pub mod tokenizer;
pub mod weights;

pub use config::Config;
pub use tokenizer::{Token, Tokenizer};
pub use weights::{Param, WeightStream, Weights};

use crate::error::{Error, Result};

/// Everything a checkpoint directory holds, loaded and checked.
pub struct Model {
    pub name: String,
    pub config: Config,
    pub weights: Weights,
    pub tokenizer: Tokenizer,
}

/// Raw files of a checkpoint, as the browser or a directory hands them over.
pub struct ModelFiles<'a> {
    pub config_json: &'a str,
    pub safetensors: &'a [u8],
    /// Either `tokenizer.json` …
    pub tokenizer_json: Option<&'a str>,
    /// … or `vocab.json` + `merges.txt`.
    pub vocab_merges: Option<(&'a str, &'a str)>,
}

impl Model {
    pub fn from_files(name: &str, files: ModelFiles<'_>) -> Result<Model> {
        let config = Config::from_json(files.config_json)?;
        let tokenizer = tokenizer_for(&config, files.tokenizer_json, files.vocab_merges)?;
        let weights = Weights::from_safetensors(&config, files.safetensors)?;
        Ok(Model {
            name: name.to_string(),
            config,
            weights,
            tokenizer,
        })
    }

    /// A checkpoint whose `model.safetensors` went through a
    /// [`WeightStream`] (made with its config.json) as it arrived, so that
    /// the file was never held whole; the tokenizer files as in
    /// [`ModelFiles`]. Fails if the stream has not received the whole file.
    pub fn from_stream(
        name: &str,
        weights: WeightStream,
        tokenizer_json: Option<&str>,
        vocab_merges: Option<(&str, &str)>,
    ) -> Result<Model> {
        let config = weights.config().clone();
        let tokenizer = tokenizer_for(&config, tokenizer_json, vocab_merges)?;
        let weights = weights.finish()?;
        Ok(Model {
            name: name.to_string(),
            config,
            weights,
            tokenizer,
        })
    }

    /// Loads a checkpoint directory in the Hugging Face layout, or a Hub
    /// repository the Hugging Face cache holds ([`resolve_model_dir`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_dir(arg: &std::path::Path) -> Result<Model> {
        let dir = &resolve_model_dir(arg)?;
        let read = |f: &str| -> Result<Vec<u8>> {
            let p = dir.join(f);
            std::fs::read(&p).map_err(|e| Error::MissingFile {
                path: p.display().to_string(),
                hint: format!("{e}"),
            })
        };
        let text = |f: &str| -> Result<String> {
            String::from_utf8(read(f)?).map_err(|_| Error::Input(format!("{f} is not UTF-8 text")))
        };
        let config_json = text("config.json")?;
        let safetensors = read("model.safetensors")?;
        let tok_json = if dir.join("tokenizer.json").exists() {
            Some(text("tokenizer.json")?)
        } else {
            None
        };
        let vm = if tok_json.is_none() {
            Some((text("vocab.json")?, text("merges.txt")?))
        } else {
            None
        };
        // a cached repo is named by its id, not its snapshot's hash
        let name = if dir != arg {
            arg.display().to_string()
        } else {
            dir.file_name()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_else(|| dir.display().to_string())
        };
        Model::from_files(
            &name,
            ModelFiles {
                config_json: &config_json,
                safetensors: &safetensors,
                tokenizer_json: tok_json.as_deref(),
                vocab_merges: vm.as_ref().map(|(v, m)| (v.as_str(), m.as_str())),
            },
        )
    }
}

/// The directory a `--model` argument names: the directory itself, or, for
/// a Hub repository id (`openai-community/gpt2`, or a legacy one such as
/// `gpt2`) that is no directory here, its snapshot in the Hugging Face
/// cache (`$HF_HUB_CACHE`, `$HF_HOME/hub` or `~/.cache/huggingface/hub`, as
/// `huggingface-cli download` fills it), at the revision `refs/main` names.
#[cfg(not(target_arch = "wasm32"))]
pub fn resolve_model_dir(arg: &std::path::Path) -> Result<std::path::PathBuf> {
    use std::path::PathBuf;
    if arg.is_dir() {
        return Ok(arg.to_path_buf());
    }
    let text = arg.to_string_lossy();
    let is_repo_id = {
        let parts: Vec<&str> = text.split('/').collect();
        parts.len() <= 2
            && parts.iter().all(|p| {
                !p.is_empty()
                    && !p.starts_with('.')
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            })
    };
    let not_found = |hint: String| Error::MissingFile {
        path: text.to_string(),
        hint,
    };
    if !is_repo_id {
        return Err(not_found(
            "not a directory; pass a folder holding config.json, model.safetensors and tokenizer.json".into(),
        ));
    }
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let cache = env("HF_HUB_CACHE")
        .or_else(|| env("HF_HOME").map(|h| h.join("hub")))
        .or_else(|| env("XDG_CACHE_HOME").map(|c| c.join("huggingface/hub")))
        .or_else(|| env("HOME").map(|h| h.join(".cache/huggingface/hub")))
        .unwrap_or_else(|| PathBuf::from(".cache/huggingface/hub"));
    let repo = cache.join(format!("models--{}", text.replace('/', "--")));
    let snapshots = repo.join("snapshots");
    let by_ref = std::fs::read_to_string(repo.join("refs/main"))
        .ok()
        .map(|rev| snapshots.join(rev.trim()));
    let only = || -> Option<PathBuf> {
        let mut all: Vec<PathBuf> = std::fs::read_dir(&snapshots)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        (all.len() == 1).then(|| all.remove(0))
    };
    match by_ref.filter(|d| d.is_dir()).or_else(only) {
        Some(dir) => Ok(dir),
        None => Err(not_found(format!(
            "neither a directory here nor a model in the Hugging Face cache ({}). Download it first, e.g. \
             `huggingface-cli download {text} config.json model.safetensors tokenizer.json`, or pass the \
             checkpoint's directory",
            cache.display()
        ))),
    }
}

/// The tokenizer of a checkpoint: `tokenizer.json`, else `vocab.json` +
/// `merges.txt`, checked against the model's vocabulary size.
fn tokenizer_for(
    config: &Config,
    tokenizer_json: Option<&str>,
    vocab_merges: Option<(&str, &str)>,
) -> Result<Tokenizer> {
    let tokenizer = match (tokenizer_json, vocab_merges) {
        (Some(t), _) => Tokenizer::from_tokenizer_json(t)?,
        (None, Some((v, m))) => Tokenizer::from_vocab_merges(v, m)?,
        (None, None) => {
            return Err(Error::MissingFile {
                path: "tokenizer.json".into(),
                hint: "the model needs tokenizer.json, or vocab.json and merges.txt".into(),
            })
        }
    };
    if tokenizer.vocab_size() > config.d_vocab {
        return Err(Error::Tokenizer(format!(
            "the tokenizer has {} tokens but the model only {} (vocab_size in config.json): they do not belong together",
            tokenizer.vocab_size(),
            config.d_vocab
        )));
    }
    Ok(tokenizer)
}

/// The most memory a browser gives one WebAssembly (wasm32) instance: 4 GiB.
pub const WASM_MEMORY_BYTES: u64 = 4 << 30;

/// What the lab keeps beside the weights in WebAssembly memory: the code,
/// the tokenizer, the runs' caches and the batches of patches.
pub const BROWSER_WORKING_BYTES: u64 = 512 << 20;

/// Whether a model of this shape can be loaded in a browser tab, where the
/// weights live as f32 in WebAssembly memory (4 GiB at most); an error with
/// the sizes otherwise. The page asks this of config.json before it
/// downloads anything else.
pub fn check_fits_in_browser(cfg: &Config) -> Result<()> {
    let need = cfg.weight_bytes();
    let room = WASM_MEMORY_BYTES - BROWSER_WORKING_BYTES;
    if need <= room {
        return Ok(());
    }
    Err(Error::Input(format!(
        "this model is too large for a browser tab: its {} parameters take {} as f32, but WebAssembly \
         gives a page at most {} (4 GiB), of which the lab needs {} for its computations, so {} for \
         the weights. Run it with the command line (patchlab analyze --model DIR) instead, or load a \
         smaller model (GPT-2 small, medium and large fit)",
        thousands(cfg.n_params()),
        gb(need),
        gb(WASM_MEMORY_BYTES),
        gb(BROWSER_WORKING_BYTES),
        gb(room)
    )))
}

/// Bytes in GB, as the page writes them.
fn gb(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

/// 1557611200 → "1,557,611,200".
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::published::Repo;
    use super::*;

    #[test]
    fn the_published_models_up_to_large_fit_in_a_browser_and_xl_does_not() {
        for repo in [
            Repo::Gpt2,
            Repo::Distilgpt2,
            Repo::Gpt2Medium,
            Repo::Gpt2Large,
        ] {
            assert!(
                check_fits_in_browser(&repo.config()).is_ok(),
                "{}",
                repo.name()
            );
        }
        let e = check_fits_in_browser(&Repo::Gpt2Xl.config())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("this model is too large for a browser tab: its 1,557,611,200 parameters take 6.23 GB as f32, but WebAssembly gives a page at most 4.29 GB (4 GiB), of which the lab needs 0.54 GB for its computations, so 3.76 GB for the weights."),
            "{e}"
        );
    }
}
