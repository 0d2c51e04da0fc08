//! One error type for the whole crate. Every message says what was wrong and,
//! where there is one, how to fix it: these strings reach CLI users and the page.

use std::fmt;

#[derive(Debug)]
pub enum Error {
    /// A file the model directory must contain is missing or unreadable.
    MissingFile { path: String, hint: String },
    /// config.json is unreadable or describes something that is not GPT-2.
    Config(String),
    /// The safetensors file is truncated, corrupt or foreign.
    Safetensors(String),
    /// A tensor the model needs is absent.
    MissingTensor { name: String },
    /// A tensor has the wrong shape.
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// Tokenizer files are unreadable or inconsistent with the model.
    Tokenizer(String),
    /// The user's input (prompts, answers, options) cannot be used as given.
    Input(String),
    /// The computation was cancelled by the caller.
    Cancelled,
    /// A backend failed (device lost, out of memory, kernel error).
    Backend(String),
    /// Writing an output file failed.
    Io(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MissingFile { path, hint } => write!(f, "missing file {path}: {hint}"),
            Error::Config(m) => write!(f, "bad config.json: {m}"),
            Error::Safetensors(m) => write!(f, "bad model.safetensors: {m}"),
            Error::MissingTensor { name } => write!(
                f,
                "model.safetensors has no tensor `{name}` (is this a GPT-2 checkpoint in the Hugging Face layout?)"
            ),
            Error::Shape {
                name,
                expected,
                found,
            } => write!(
                f,
                "tensor `{name}` has shape {found:?}, but config.json implies {expected:?}"
            ),
            Error::Tokenizer(m) => write!(f, "tokenizer: {m}"),
            Error::Input(m) => write!(f, "{m}"),
            Error::Cancelled => write!(f, "cancelled"),
            Error::Backend(m) => write!(f, "backend error: {m}"),
            Error::Io(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Backend(format!("candle: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, Error>;
