//! The model's files on their way into wasm memory.

use super::js_err;
use crate::model::{Config, WeightStream};
use wasm_bindgen::prelude::*;

/// A `model.safetensors` on its way into wasm memory (`WeightStream` in
/// JavaScript): made from the file's header and the model's config.json, it
/// decodes each chunk pushed into the model's f32 tensors at once, so the
/// file's bytes are never held whole (one copy of the weights, not two);
/// `Lab.load_streamed` takes it when the whole file has arrived.
#[wasm_bindgen(js_name = WeightStream)]
pub struct WeightStreamJs {
    pub(super) inner: WeightStream,
}

#[wasm_bindgen(js_class = WeightStream)]
impl WeightStreamJs {
    /// How many bytes the header takes (its 8-byte length included) by the
    /// file's first 8 bytes.
    #[wasm_bindgen(js_name = headerSize)]
    pub fn header_size(prefix: &[u8]) -> Result<usize, JsValue> {
        WeightStream::header_size(prefix).map_err(js_err)
    }

    /// A stream for the model of `config_json` from the start of its file:
    /// `head` holds at least the whole header (`headerSize` bytes); bytes
    /// after it count as pushed. Fails on a header that is not a checkpoint
    /// of this model, or when memory for the weights runs out.
    #[wasm_bindgen(constructor)]
    pub fn new(config_json: &str, head: &[u8]) -> Result<WeightStreamJs, JsValue> {
        let config = Config::from_json(config_json).map_err(js_err)?;
        Ok(WeightStreamJs {
            inner: WeightStream::new(&config, head).map_err(js_err)?,
        })
    }

    /// Takes the next bytes of the file (a chunk of any size).
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), JsValue> {
        self.inner.push(chunk).map_err(js_err)
    }

    /// Bytes of the file received so far, header included.
    #[wasm_bindgen(getter)]
    pub fn received(&self) -> usize {
        self.inner.received()
    }

    /// The file's size by its header.
    #[wasm_bindgen(getter)]
    pub fn expected(&self) -> usize {
        self.inner.expected()
    }
}

/// Checks a model's `config.json` before anything else is downloaded: it
/// must describe a GPT-2-family model whose weights fit in this tab's
/// WebAssembly memory (`check_fits_in_browser`); otherwise an error with
/// the sizes, and no 500 MB download ends in an out-of-memory failure.
#[wasm_bindgen]
pub fn check_config(config_json: &str) -> Result<(), JsValue> {
    let config = Config::from_json(config_json).map_err(js_err)?;
    crate::model::check_fits_in_browser(&config).map_err(js_err)
}
