//! GPT-2 weights from the official Hugging Face checkpoint layout
//! (`model.safetensors`, Conv1D matrices stored as [in, out]).

use super::config::Config;
use crate::error::{Error, Result};
use safetensors::{Dtype, SafeTensors};

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
    /// Reads and checks every tensor of a GPT-2 checkpoint held in memory.
    pub fn from_safetensors(cfg: &Config, bytes: &[u8]) -> Result<Weights> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            Error::Safetensors(format!(
                "{e} (the file is truncated, corrupt or not a safetensors file; download it again)"
            ))
        })?;
        let prefixed = st.names().iter().any(|n| n.starts_with("transformer."));
        let take = |name: &str, shape: Vec<usize>| -> Result<Param> {
            let full = if prefixed {
                format!("transformer.{name}")
            } else {
                name.to_string()
            };
            let view = st
                .tensor(&full)
                .map_err(|_| Error::MissingTensor { name: full.clone() })?;
            if view.shape() != shape.as_slice() {
                return Err(Error::Shape {
                    name: full,
                    expected: shape,
                    found: view.shape().to_vec(),
                });
            }
            let data = to_f32(view.dtype(), view.data()).ok_or_else(|| {
                Error::Safetensors(format!(
                    "tensor `{full}` has dtype {:?}; patchlab reads F32, F16 and BF16",
                    view.dtype()
                ))
            })?;
            Ok(Param::new(shape, data))
        };
        let mut it = tensor_specs(cfg).into_iter();
        let mut next = || {
            let (n, s) = it.next().expect("spec list matches the fields below");
            take(&n, s)
        };
        let wte = next()?;
        let wpe = next()?;
        let mut blocks = Vec::with_capacity(cfg.n_layers);
        for _ in 0..cfg.n_layers {
            blocks.push(Block {
                ln_1_w: next()?,
                ln_1_b: next()?,
                c_attn_w: next()?,
                c_attn_b: next()?,
                c_proj_w: next()?,
                c_proj_b: next()?,
                ln_2_w: next()?,
                ln_2_b: next()?,
                c_fc_w: next()?,
                c_fc_b: next()?,
                mlp_proj_w: next()?,
                mlp_proj_b: next()?,
            });
        }
        let ln_f_w = next()?;
        let ln_f_b = next()?;
        Ok(Weights {
            wte,
            wpe,
            blocks,
            ln_f_w,
            ln_f_b,
        })
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

fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    match dtype {
        Dtype::F32 => Some(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        Dtype::F16 => Some(
            bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        ),
        Dtype::BF16 => Some(
            bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        ),
        _ => None,
    }
}
