//! A model directory loaded for a native front end (the CLI): its name, its
//! tokenizer and its weights in the engine of the chosen backend. The
//! browser loads through [`Engines`](super::Engines), which starts the GPU
//! engine on first use.

use super::engine::{AnyEngine, Backend, GpuFallback};
use crate::error::Result;
use crate::model::{Model, Tokenizer};
use std::path::Path;

/// A model directory's name and tokenizer, and its weights in an engine.
pub struct LoadedModel {
    pub name: String,
    pub tokenizer: Tokenizer,
    pub engine: AnyEngine,
}

impl LoadedModel {
    /// Loads a model directory (or a cached Hub repo id) on `backend`;
    /// with `Auto`, the fallback says why the CPU computes instead of the GPU.
    pub fn from_dir(dir: &Path, backend: Backend) -> Result<(LoadedModel, Option<GpuFallback>)> {
        let Model {
            name,
            config,
            weights,
            tokenizer,
        } = Model::from_dir(dir)?;
        let (engine, note) = AnyEngine::load(config, weights, backend)?;
        Ok((
            LoadedModel {
                name,
                tokenizer,
                engine,
            },
            note,
        ))
    }
}
