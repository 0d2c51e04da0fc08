//! GPT-2 weights from the official Hugging Face checkpoint layout
//! (`model.safetensors`, Conv1D matrices stored as [in, out]).

use super::config::Config;
use crate::error::{Error, Result};
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype, SafeTensorError};
use std::collections::HashMap;

/// A host tensor: row-major f32 values and their shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Param {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Param {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Param { shape, data }
    }
}

/// One transformer block. Matrices are [in, out] as in Hugging Face's Conv1D.
#[derive(Debug, Clone)]
pub struct Block {
    pub ln_1_w: Param,
    pub ln_1_b: Param,
    /// [d_model, 3·d_model]: Q, K, V side by side, heads contiguous inside each.
    pub c_attn_w: Param,
    pub c_attn_b: Param,
    /// [d_model, d_model]: rows h·d_head..(h+1)·d_head are head h's W_O.
    pub c_proj_w: Param,
    pub c_proj_b: Param,
    pub ln_2_w: Param,
    pub ln_2_b: Param,
    pub c_fc_w: Param,
    pub c_fc_b: Param,
    pub mlp_proj_w: Param,
    pub mlp_proj_b: Param,
}

#[derive(Debug, Clone)]
pub struct Weights {
    pub wte: Param,
    pub wpe: Param,
    pub blocks: Vec<Block>,
    pub ln_f_w: Param,
    pub ln_f_b: Param,
}

impl Weights {
    /// The weights from their tensors in `tensor_specs` order.
    pub fn from_spec_order(cfg: &Config, tensors: impl IntoIterator<Item = Param>) -> Weights {
        let mut it = tensors.into_iter();
        let mut next = || it.next().expect("one tensor per spec");
        let wte = next();
        let wpe = next();
        let blocks = (0..cfg.n_layers)
            .map(|_| Block {
                ln_1_w: next(),
                ln_1_b: next(),
                c_attn_w: next(),
                c_attn_b: next(),
                c_proj_w: next(),
                c_proj_b: next(),
                ln_2_w: next(),
                ln_2_b: next(),
                c_fc_w: next(),
                c_fc_b: next(),
                mlp_proj_w: next(),
                mlp_proj_b: next(),
            })
            .collect();
        let ln_f_w = next();
        let ln_f_b = next();
        Weights {
            wte,
            wpe,
            blocks,
            ln_f_w,
            ln_f_b,
        }
    }
}

/// The weights of a model, handed out a tensor or a layer at a time, so that
/// a backend built from another one (the GPU engine from the CPU engine's
/// tensors) never needs a second host copy of all of them.
pub trait WeightSource {
    fn wte(&self) -> crate::Result<std::borrow::Cow<'_, Param>>;
    fn wpe(&self) -> crate::Result<std::borrow::Cow<'_, Param>>;
    /// ln_f's weight and bias.
    fn ln_f(&self) -> crate::Result<(std::borrow::Cow<'_, Param>, std::borrow::Cow<'_, Param>)>;
    fn block(&self, layer: usize) -> crate::Result<std::borrow::Cow<'_, Block>>;
}

impl WeightSource for Weights {
    fn wte(&self) -> crate::Result<std::borrow::Cow<'_, Param>> {
        Ok(std::borrow::Cow::Borrowed(&self.wte))
    }
    fn wpe(&self) -> crate::Result<std::borrow::Cow<'_, Param>> {
        Ok(std::borrow::Cow::Borrowed(&self.wpe))
    }
    fn ln_f(&self) -> crate::Result<(std::borrow::Cow<'_, Param>, std::borrow::Cow<'_, Param>)> {
        Ok((
            std::borrow::Cow::Borrowed(&self.ln_f_w),
            std::borrow::Cow::Borrowed(&self.ln_f_b),
        ))
    }
    fn block(&self, layer: usize) -> crate::Result<std::borrow::Cow<'_, Block>> {
        self.blocks
            .get(layer)
            .map(std::borrow::Cow::Borrowed)
            .ok_or_else(|| crate::Error::Input(format!("layer {layer} does not exist")))
    }
}

/// The official tensor names (without the optional `transformer.` prefix) and
/// their shapes for a given config, in file order.
pub fn tensor_specs(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    let (d, m) = (cfg.d_model, cfg.d_mlp);
    let mut v = vec![
        ("wte.weight".to_string(), vec![cfg.d_vocab, d]),
        ("wpe.weight".to_string(), vec![cfg.n_ctx, d]),
    ];
    for i in 0..cfg.n_layers {
        let p = |s: &str| format!("h.{i}.{s}");
        v.extend([
            (p("ln_1.weight"), vec![d]),
            (p("ln_1.bias"), vec![d]),
            (p("attn.c_attn.weight"), vec![d, 3 * d]),
            (p("attn.c_attn.bias"), vec![3 * d]),
            (p("attn.c_proj.weight"), vec![d, d]),
            (p("attn.c_proj.bias"), vec![d]),
            (p("ln_2.weight"), vec![d]),
            (p("ln_2.bias"), vec![d]),
            (p("mlp.c_fc.weight"), vec![d, m]),
            (p("mlp.c_fc.bias"), vec![m]),
            (p("mlp.c_proj.weight"), vec![m, d]),
            (p("mlp.c_proj.bias"), vec![d]),
        ]);
    }
    v.push(("ln_f.weight".to_string(), vec![d]));
    v.push(("ln_f.bias".to_string(), vec![d]));
    v
}

impl Weights {
    /// Reads and checks every tensor of a GPT-2 checkpoint held in memory
    /// (through [`WeightStream`], in one push).
    pub fn from_safetensors(cfg: &Config, bytes: &[u8]) -> Result<Weights> {
        let header = Header::parse(bytes)?;
        // the whole file is here: its size is checked before the tensors,
        // as safetensors' own reader does
        if bytes.len() != header.file_len {
            return Err(incomplete(bytes.len(), header.file_len));
        }
        let data = &bytes[header.data_start..];
        let mut stream = WeightStream::from_header(cfg, header)?;
        stream.push(data)?;
        stream.finish()
    }

    /// Every tensor with its official name, in file order.
    pub fn named(&self) -> Vec<(String, &Param)> {
        let mut v = vec![
            ("wte.weight".to_string(), &self.wte),
            ("wpe.weight".to_string(), &self.wpe),
        ];
        for (i, b) in self.blocks.iter().enumerate() {
            let p = |s: &str| format!("h.{i}.{s}");
            v.extend([
                (p("ln_1.weight"), &b.ln_1_w),
                (p("ln_1.bias"), &b.ln_1_b),
                (p("attn.c_attn.weight"), &b.c_attn_w),
                (p("attn.c_attn.bias"), &b.c_attn_b),
                (p("attn.c_proj.weight"), &b.c_proj_w),
                (p("attn.c_proj.bias"), &b.c_proj_b),
                (p("ln_2.weight"), &b.ln_2_w),
                (p("ln_2.bias"), &b.ln_2_b),
                (p("mlp.c_fc.weight"), &b.c_fc_w),
                (p("mlp.c_fc.bias"), &b.c_fc_b),
                (p("mlp.c_proj.weight"), &b.mlp_proj_w),
                (p("mlp.c_proj.bias"), &b.mlp_proj_b),
            ]);
        }
        v.push(("ln_f.weight".to_string(), &self.ln_f_w));
        v.push(("ln_f.bias".to_string(), &self.ln_f_b));
        v
    }

    /// Serialises the weights as an official-layout `model.safetensors` (F32).
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let named = self.named();
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = named
            .iter()
            .map(|(n, p)| {
                let mut b = Vec::with_capacity(p.data.len() * 4);
                for x in &p.data {
                    b.extend_from_slice(&x.to_le_bytes());
                }
                (n.clone(), b, p.shape.clone())
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
            .iter()
            .map(|(n, b, s)| {
                let v = safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b)
                    .map_err(|e| Error::Io(format!("safetensors: {e}")))?;
                Ok((n.clone(), v))
            })
            .collect::<Result<_>>()?;
        let mut meta = std::collections::HashMap::new();
        meta.insert("format".to_string(), "pt".to_string());
        safetensors::tensor::serialize(views, Some(meta))
            .map_err(|e| Error::Io(format!("safetensors: {e}")))
    }
}

/// The size of the length field that starts a safetensors file.
const N_LEN: usize = 8;
/// The largest header safetensors accepts (its `MAX_HEADER_SIZE`).
const MAX_HEADER: usize = 100_000_000;
/// What every message about an unreadable file ends with.
const HINT: &str = "the file is truncated, corrupt or not a safetensors file; download it again";

fn bad_file(e: SafeTensorError) -> Error {
    Error::Safetensors(format!("{e} ({HINT})"))
}

/// A file of another size than its header says.
fn incomplete(got: usize, expected: usize) -> Error {
    Error::Safetensors(format!(
        "{}: {got} bytes where its header says {expected} ({HINT})",
        SafeTensorError::MetadataIncompleteBuffer
    ))
}

/// safetensors' header layout: its private `HashMetadata`, same name and
/// serde attributes, so that the same JSON errors come out word for word.
#[derive(serde::Deserialize)]
struct HashMetadata {
    #[serde(rename = "__metadata__")]
    metadata: Option<HashMap<String, String>>,
    #[serde(flatten)]
    tensors: HashMap<String, TensorInfo>,
}

/// A checked safetensors header: the checks of `SafeTensors::read_metadata`
/// but the last (the file's size), which a stream can make only at its end.
struct Header {
    metadata: Metadata,
    /// Where the tensors' data starts in the file (8 + the JSON's length).
    data_start: usize,
    /// The whole file's size by the header.
    file_len: usize,
}

impl Header {
    /// How many bytes the header takes (with its 8-byte length) by the
    /// file's first 8 bytes.
    fn size(prefix: &[u8]) -> Result<usize> {
        let Some(len) = prefix.get(..N_LEN) else {
            return Err(bad_file(SafeTensorError::HeaderTooSmall));
        };
        let n = u64::from_le_bytes(len.try_into().expect("8 bytes"));
        let n = usize::try_from(n).map_err(|_| bad_file(SafeTensorError::HeaderTooLarge))?;
        if n > MAX_HEADER {
            return Err(bad_file(SafeTensorError::HeaderTooLarge));
        }
        n.checked_add(N_LEN)
            .ok_or_else(|| bad_file(SafeTensorError::InvalidHeaderLength))
    }

    /// Parses and checks the header at the start of `bytes` (which may go on
    /// into the data).
    fn parse(bytes: &[u8]) -> Result<Header> {
        let data_start = Header::size(bytes)?;
        let Some(json) = bytes.get(N_LEN..data_start) else {
            return Err(bad_file(SafeTensorError::InvalidHeaderLength));
        };
        let text =
            std::str::from_utf8(json).map_err(|e| bad_file(SafeTensorError::InvalidHeader(e)))?;
        let header: HashMetadata = serde_json::from_str(text)
            .map_err(|e| bad_file(SafeTensorError::InvalidHeaderDeserialization(e)))?;
        let mut tensors: Vec<(String, TensorInfo)> = header.tensors.into_iter().collect();
        tensors.sort_by_key(|(_, a)| a.data_offsets);
        // checks that the offsets are contiguous from 0 and match each
        // tensor's shape and dtype
        let metadata = Metadata::new(header.metadata, tensors).map_err(bad_file)?;
        let file_len = metadata
            .data_len()
            .checked_add(data_start)
            .ok_or_else(|| bad_file(SafeTensorError::ValidationOverflow))?;
        Ok(Header {
            metadata,
            data_start,
            file_len,
        })
    }
}

/// Where one tensor the model needs lies in the data, and its values so far.
struct Slot {
    /// Byte range in the data section (after the header).
    start: usize,
    end: usize,
    dtype: Dtype,
    /// Index into the stream's tensors (their `tensor_specs` order).
    tensor: usize,
}

/// A `model.safetensors` read as it arrives, a chunk at a time: each byte
/// is decoded straight into its tensor's f32 values, so that the file is
/// never held whole next to the weights (the browser's peak memory is one
/// copy of the model, not two).
///
/// Made from the file's header ([`WeightStream::header_size`] says how
/// many bytes that is), which is checked as [`Weights::from_safetensors`]
/// checks it: the safetensors layout (offsets contiguous and in range, sizes
/// matching shapes and dtypes), every tensor the config needs present
/// (with or without the `transformer.` prefix) with its shape and a dtype of
/// F32, F16 or BF16. The values of every needed tensor are allocated then;
/// [`WeightStream::push`] takes the rest of the file in chunks of any size
/// (split anywhere, even inside a value), skipping the data of tensors the
/// model does not use (attention-mask buffers, …); [`WeightStream::finish`]
/// checks that the whole file arrived and returns the weights.
pub struct WeightStream {
    cfg: Config,
    /// Needed tensors in the order of their data.
    slots: Vec<Slot>,
    /// Values in `tensor_specs` order; each filled from the front.
    tensors: Vec<Param>,
    /// The first slot not yet complete.
    cursor: usize,
    /// Data bytes received (after the header) and expected.
    pos: usize,
    data_len: usize,
    data_start: usize,
    /// The first bytes of a value split between two pushes.
    carry: [u8; 4],
    carry_len: usize,
}

impl WeightStream {
    /// How many bytes the header takes, 8-byte length included, by the
    /// first 8 bytes of the file (fewer, or a length safetensors refuses: an error).
    pub fn header_size(prefix: &[u8]) -> Result<usize> {
        Header::size(prefix)
    }

    /// A stream for a model of shape `cfg`, from the start of its file:
    /// `head` holds at least the whole header; bytes after it are data, as
    /// if pushed. Fails (before any data) on a header that is not a
    /// checkpoint of this model, or when memory for the weights runs out.
    pub fn new(cfg: &Config, head: &[u8]) -> Result<WeightStream> {
        let header = Header::parse(head)?;
        let rest = &head[header.data_start..];
        let mut s = WeightStream::from_header(cfg, header)?;
        s.push(rest)?;
        Ok(s)
    }

    fn from_header(cfg: &Config, header: Header) -> Result<WeightStream> {
        let meta = &header.metadata;
        let tensors = meta.tensors();
        let prefixed = tensors.keys().any(|n| n.starts_with("transformer."));
        let specs = tensor_specs(cfg);
        // every check before any allocation
        let mut slots = Vec::with_capacity(specs.len());
        for (i, (name, shape)) in specs.iter().enumerate() {
            let full = if prefixed {
                format!("transformer.{name}")
            } else {
                name.clone()
            };
            let Some(info) = tensors.get(&full) else {
                return Err(Error::MissingTensor { name: full });
            };
            if info.shape != *shape {
                return Err(Error::Shape {
                    name: full,
                    expected: shape.clone(),
                    found: info.shape.clone(),
                });
            }
            if !matches!(info.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
                return Err(Error::Safetensors(format!(
                    "tensor `{full}` has dtype {:?}; patchlab reads F32, F16 and BF16",
                    info.dtype
                )));
            }
            let (start, end) = info.data_offsets;
            slots.push(Slot {
                start,
                end,
                dtype: info.dtype,
                tensor: i,
            });
        }
        slots.sort_by_key(|s| (s.start, s.end));
        let mut params = Vec::with_capacity(specs.len());
        for (name, shape) in specs {
            let n: usize = shape.iter().product();
            let mut data = Vec::new();
            data.try_reserve_exact(n).map_err(|_| {
                Error::Backend(format!(
                    "cannot allocate {} bytes for tensor `{name}`: out of memory (in a browser, WebAssembly has 4 GiB at most; close other tabs or use a smaller model)",
                    n.saturating_mul(4)
                ))
            })?;
            params.push(Param { shape, data });
        }
        Ok(WeightStream {
            cfg: cfg.clone(),
            slots,
            tensors: params,
            cursor: 0,
            pos: 0,
            data_len: meta.data_len(),
            data_start: header.data_start,
            carry: [0; 4],
            carry_len: 0,
        })
    }

    /// The model's shape (as given to [`WeightStream::new`]).
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Bytes of the file received so far, header included.
    pub fn received(&self) -> usize {
        self.data_start + self.pos
    }

    /// The file's size by its header.
    pub fn expected(&self) -> usize {
        self.data_start + self.data_len
    }

    /// Takes the next bytes of the file. Bytes beyond the size the header
    /// gives are an error.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<()> {
        if bytes.len() > self.data_len - self.pos {
            return Err(Error::Safetensors(format!(
                "the file goes on past the {} bytes its header gives ({HINT})",
                self.expected()
            )));
        }
        while !bytes.is_empty() {
            while self
                .slots
                .get(self.cursor)
                .is_some_and(|s| s.end <= self.pos)
            {
                self.cursor += 1;
            }
            let (take, slot) = match self.slots.get(self.cursor) {
                Some(s) if s.start <= self.pos => (s.end - self.pos, Some(self.cursor)),
                // data of a tensor the model does not use
                Some(s) => (s.start - self.pos, None),
                None => (bytes.len(), None),
            };
            let (now, rest) = bytes.split_at(take.min(bytes.len()));
            if let Some(i) = slot {
                self.decode(i, now);
            }
            self.pos += now.len();
            bytes = rest;
        }
        Ok(())
    }

    /// Appends the values in `bytes` (the next bytes of slot `i`'s data) to
    /// its tensor, keeping a value split at the end for the next push.
    fn decode(&mut self, i: usize, mut bytes: &[u8]) {
        let dtype = self.slots[i].dtype;
        let data = &mut self.tensors[self.slots[i].tensor].data;
        let size = dtype.bitsize() / 8;
        if self.carry_len > 0 {
            let take = (size - self.carry_len).min(bytes.len());
            self.carry[self.carry_len..self.carry_len + take].copy_from_slice(&bytes[..take]);
            self.carry_len += take;
            bytes = &bytes[take..];
            if self.carry_len < size {
                return;
            }
            data.push(value(dtype, &self.carry[..size]));
            self.carry_len = 0;
        }
        let whole = bytes.len() / size * size;
        let (values, tail) = bytes.split_at(whole);
        match dtype {
            Dtype::F32 => data.extend(
                values
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
            Dtype::F16 => data.extend(
                values
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
            ),
            _ => data.extend(
                values
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()),
            ),
        }
        self.carry[..tail.len()].copy_from_slice(tail);
        self.carry_len = tail.len();
    }

    /// The weights, once the whole file has arrived; a file that stopped
    /// short is an error.
    pub fn finish(self) -> Result<Weights> {
        if self.pos != self.data_len {
            return Err(incomplete(self.received(), self.expected()));
        }
        debug_assert!(self
            .tensors
            .iter()
            .all(|p| p.data.len() == p.shape.iter().product::<usize>()));
        Ok(Weights::from_spec_order(&self.cfg, self.tensors))
    }
}

/// One value of a supported dtype from its little-endian bytes.
fn value(dtype: Dtype, b: &[u8]) -> f32 {
    match dtype {
        Dtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        Dtype::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
        _ => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
    }
}
