//! The model: hyper-parameters, weights and tokenizer of a GPT-2 checkpoint.

pub mod config;
pub mod random;
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

    /// Loads a checkpoint directory in the Hugging Face layout.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_dir(dir: &std::path::Path) -> Result<Model> {
        if !dir.is_dir() {
            return Err(Error::MissingFile {
                path: dir.display().to_string(),
                hint: "not a directory; pass a folder holding config.json, model.safetensors and tokenizer.json".into(),
            });
        }
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
        let name = dir
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| dir.display().to_string());
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
