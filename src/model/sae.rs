//! Sparse autoencoders (SAEs) for GPT-2, read the way SAELens reads them
//! (`SAE.load_from_disk`: a folder with `cfg.json` and
//! `sae_weights.safetensors`), and their encoder (`hook_sae_acts_post`).
//!
//! Two layouts of `cfg.json`, told apart as SAELens's
//! `handle_config_defaulting` does, by `sae_lens_version` (top level or in
//! `metadata`): absent or below 6.0 is the legacy layout, converted as
//! `handle_pre_6_0_config` converts it (`hook_point` → `hook_name`,
//! `hook_point_head_index` → `hook_head_index`, `activation_fn_str` →
//! `activation_fn`; `apply_b_dec_to_input` defaults to true, `architecture`
//! to `"standard"`, `reshape_activations` to `"hook_z"` where the hook name
//! contains `hook_z`; `activation_fn: "topk"` with `activation_fn_kwargs.k`
//! makes a TopK SAE; a boolean `normalize_activations` means
//! `"expected_average_only_in"` when true, `"none"` when false; null means
//! `"none"`), such as jbloom's GPT-2 small residual-stream SAEs; 6.0 and above
//! is the layout `SAE.save_model` writes (`architecture` at the top level,
//! the hook and the model in `metadata`).
//!
//! The weights are `W_enc` [d_in, d_sae], `W_dec` [d_sae, d_in], `b_enc`
//! [d_sae], `b_dec` [d_in] and, for JumpReLU, `threshold` [d_sae]; any other
//! tensor is refused, as SAELens's strict `load_state_dict` refuses it,
//! except a `scaling_factor` of ones, which SAELens drops. Tensors are cast
//! to the precision of `cfg.json`'s `dtype`, as SAELens casts them, and kept
//! as f32.
//!
//! Everything patchlab cannot encode exactly as SAELens does is refused with
//! a message that names the offending field: other architectures, per-head
//! SAEs, run-time input normalisation, hooks other than the six of
//! [`SaeSite`], non-GPT-2 models, and SAEs trained on activations of a
//! TransformerLens model whose weight processing differs, at the SAE's hook,
//! from the default processing the engine's activations have.

use super::config::Config;
use crate::error::{Error, Result};
use safetensors::{Dtype, SafeTensors};
use serde_json::{Map, Value};

/// `cfg.json` in the layout of SAELens before 6.0.
pub const LAYOUT_LEGACY: &str = "legacy";
/// `cfg.json` as SAELens 6 (`SAE.save_model`) writes it.
pub const LAYOUT_SAELENS6: &str = "saelens6";

/// The name SAELens gives an SAE's config file.
pub const SAE_CFG_FILE: &str = "cfg.json";
/// The name SAELens gives an SAE's weights file.
pub const SAE_WEIGHTS_FILE: &str = "sae_weights.safetensors";

/// The encoder's activation function, as SAELens's `architecture`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaeArchitecture {
    /// `relu(pre)`.
    Standard,
    /// `relu(pre) * (pre > threshold)`.
    JumpRelu,
    /// The k largest entries of `pre` (lowest index first among equals),
    /// each through `relu`; every other entry 0.
    TopK,
}

impl SaeArchitecture {
    /// SAELens's name for it.
    pub fn name(&self) -> &'static str {
        match self {
            SaeArchitecture::Standard => "standard",
            SaeArchitecture::JumpRelu => "jumprelu",
            SaeArchitecture::TopK => "topk",
        }
    }
}

/// Which TransformerLens hook an SAE reads, at which layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaeSite {
    /// `blocks.L.hook_resid_pre`
    ResidPre,
    /// `blocks.L.hook_resid_mid`
    ResidMid,
    /// `blocks.L.hook_resid_post`
    ResidPost,
    /// `blocks.L.hook_attn_out`
    AttnOut,
    /// `blocks.L.hook_mlp_out`
    MlpOut,
    /// `blocks.L.attn.hook_z`, the heads' outputs flattened head-major
    /// (`[n_heads, d_head]` → `n_heads * d_head`, einops'
    /// `(n_heads d_head)`), as SAELens's `reshape_activations: "hook_z"`
    /// flattens them.
    Z,
}

impl SaeSite {
    /// Every site, in the order the messages list them.
    pub const ALL: [SaeSite; 6] = [
        SaeSite::ResidPre,
        SaeSite::ResidMid,
        SaeSite::ResidPost,
        SaeSite::AttnOut,
        SaeSite::MlpOut,
        SaeSite::Z,
    ];

    /// The hook's name inside a block (`hook_resid_pre`, `attn.hook_z`, …).
    pub fn hook_suffix(&self) -> &'static str {
        match self {
            SaeSite::ResidPre => "hook_resid_pre",
            SaeSite::ResidMid => "hook_resid_mid",
            SaeSite::ResidPost => "hook_resid_post",
            SaeSite::AttnOut => "hook_attn_out",
            SaeSite::MlpOut => "hook_mlp_out",
            SaeSite::Z => "attn.hook_z",
        }
    }

    /// TransformerLens's full hook name at `layer`.
    pub fn hook_name(&self, layer: usize) -> String {
        format!("blocks.{layer}.{}", self.hook_suffix())
    }

    /// The layer and site of a TransformerLens hook name; `None` for any
    /// other hook.
    pub fn parse(hook: &str) -> Option<(usize, SaeSite)> {
        let rest = hook.strip_prefix("blocks.")?;
        let (layer, suffix) = rest.split_once('.')?;
        if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let layer: usize = layer.parse().ok()?;
        let site = SaeSite::ALL
            .into_iter()
            .find(|s| s.hook_suffix() == suffix)?;
        Some((layer, site))
    }
}

/// An SAE read from SAELens's files: its hook, its weights (f32, row-major)
/// and how it encodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Sae {
    /// The TransformerLens hook it reads, as in its cfg.json
    /// (`blocks.8.hook_resid_pre`).
    pub hook_name: String,
    pub layer: usize,
    pub site: SaeSite,
    pub architecture: SaeArchitecture,
    pub d_in: usize,
    pub d_sae: usize,
    /// [d_in, d_sae]
    pub w_enc: Vec<f32>,
    /// [d_sae, d_in]
    pub w_dec: Vec<f32>,
    /// [d_sae]
    pub b_enc: Vec<f32>,
    /// [d_in]
    pub b_dec: Vec<f32>,
    /// JumpReLU only: [d_sae].
    pub threshold: Option<Vec<f32>>,
    /// TopK only.
    pub k: Option<usize>,
    /// TopK only (SAELens's `rescale_acts_by_decoder_norm`): the
    /// pre-activations are multiplied by the norms of `W_dec`'s rows before
    /// the top k are chosen, and the activations keep that factor.
    pub rescale_acts_by_decoder_norm: bool,
    pub apply_b_dec_to_input: bool,
    /// [`LAYOUT_LEGACY`] or [`LAYOUT_SAELENS6`].
    pub layout: &'static str,
    pub neuronpedia_id: Option<String>,
    pub model_name: Option<String>,
    /// What the user gave (the folder's name, a label), for messages.
    pub name: String,
}

/// The dtypes SAELens's `DTYPE_MAP` knows, and the precision each casts the
/// weights to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Precision {
    F32,
    F64,
    F16,
    Bf16,
}

fn precision_of(dtype: &str) -> Option<Precision> {
    Some(match dtype {
        "float32" | "torch.float32" => Precision::F32,
        "float64" | "torch.float64" => Precision::F64,
        "float16" | "torch.float16" => Precision::F16,
        "bfloat16" | "torch.bfloat16" => Precision::Bf16,
        _ => return None,
    })
}

/// The config, converted to what SAELens 6 reads (`handle_config_defaulting`
/// then `SAEConfig.from_dict`), before it is checked.
struct Resolved<'a> {
    layout: &'static str,
    d_in: usize,
    d_sae: usize,
    dtype: String,
    apply_b_dec_to_input: bool,
    normalize_activations: String,
    reshape_activations: String,
    architecture: String,
    k: Option<usize>,
    rescale_acts_by_decoder_norm: bool,
    hook_name: String,
    hook_head_index: Option<&'a Value>,
    /// The legacy layout's `hook_point_layer`, to check against the hook.
    hook_layer: Option<&'a Value>,
    model_name: Option<String>,
    model_class_name: Option<String>,
    neuronpedia_id: Option<String>,
    model_from_pretrained_kwargs: Option<&'a Value>,
    finetuning_scaling_factor: bool,
}

/// The factor to fold into an `"expected_average_only_in"` SAE (which then
/// reads activations as they are), or None for any other SAE; a factor
/// that is not a positive finite number is refused.
fn scaling(name: &str, r: &mut Resolved<'_>, factor: Option<f64>) -> Result<Option<f64>> {
    match factor {
        Some(s) if !(s.is_finite() && s > 0.0) => Err(Error::Input(format!(
            "SAE {name}: norm_scaling_factor {s} is not a positive number"
        ))),
        Some(s) if r.normalize_activations == "expected_average_only_in" => {
            r.normalize_activations = "none".into();
            Ok(Some(s))
        }
        _ => Ok(None),
    }
}

/// `cfg.json` parsed as a JSON object.
fn parse_cfg(name: &str, cfg_json: &str) -> Result<Map<String, Value>> {
    let refuse = |m: String| Error::Input(format!("SAE {name}: {m}"));
    match serde_json::from_str(cfg_json) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => Err(refuse(format!("{SAE_CFG_FILE} is not a JSON object"))),
        Err(e) => Err(refuse(format!("{SAE_CFG_FILE} is not valid JSON ({e})"))),
    }
}

/// A field's value, with JSON null read as absent (as SAELens's
/// `cfg.get(...)` and its metadata's attribute defaults read it).
fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

impl Sae {
    /// An SAE from its raw files (as the browser hands them over): the text
    /// of `cfg.json` and the bytes of `sae_weights.safetensors`.
    pub fn from_files(name: &str, cfg_json: &str, safetensors: &[u8]) -> Result<Sae> {
        Sae::from_files_scaled(name, cfg_json, safetensors, None)
    }

    /// [`Sae::from_files`] of an SAE whose `normalize_activations` is
    /// `"expected_average_only_in"`, with the `norm_scaling_factor` that
    /// SAELens's `pretrained_saes.yaml` gives it: folded in as
    /// `SAE.from_pretrained` folds it (`fold_activation_norm_scaling_factor`:
    /// W_enc · s, W_dec / s, b_dec / s), after which the SAE reads the
    /// activations as they are. The factor is ignored for any other SAE, as
    /// SAELens ignores it.
    pub fn from_files_scaled(
        name: &str,
        cfg_json: &str,
        safetensors: &[u8],
        norm_scaling_factor: Option<f64>,
    ) -> Result<Sae> {
        let refuse = |m: String| Error::Input(format!("SAE {name}: {m}"));
        let cfg = parse_cfg(name, cfg_json)?;
        let mut r = resolve(&cfg).map_err(refuse)?;
        let fold = scaling(name, &mut r, norm_scaling_factor)?;
        let mut sae = Sae::header(name, &r)?;
        let precision = precision_of(&r.dtype).expect("check_config checked the dtype");
        let arch = sae.architecture;
        let mut t = read_tensors(safetensors, &r, arch, precision).map_err(refuse)?;
        sae.w_enc = t.take("W_enc");
        sae.w_dec = t.take("W_dec");
        sae.b_enc = t.take("b_enc");
        sae.b_dec = t.take("b_dec");
        sae.threshold = (arch == SaeArchitecture::JumpRelu).then(|| t.take("threshold"));
        if let Some(s) = fold {
            // in f32, as torch's in-place products on the float32 tensors
            let s = s as f32;
            sae.w_enc.iter_mut().for_each(|w| *w *= s);
            sae.w_dec.iter_mut().for_each(|w| *w /= s);
            sae.b_dec.iter_mut().for_each(|b| *b /= s);
        }
        Ok(sae)
    }

    /// An SAE's `cfg.json` checked exactly as [`Sae::from_files`] checks
    /// it, without its weights: the hook, sizes and architecture of an SAE
    /// whose weight vectors are empty (what a page checks before it
    /// downloads the weights; [`Sae::weight_bytes`] says how large they are).
    pub fn from_config(
        name: &str,
        cfg_json: &str,
        norm_scaling_factor: Option<f64>,
    ) -> Result<Sae> {
        let cfg = parse_cfg(name, cfg_json)?;
        let mut r = resolve(&cfg).map_err(|m| Error::Input(format!("SAE {name}: {m}")))?;
        scaling(name, &mut r, norm_scaling_factor)?;
        Sae::header(name, &r)
    }

    /// Everything but the weights, from a resolved and checked cfg.
    fn header(name: &str, r: &Resolved<'_>) -> Result<Sae> {
        let (layer, site) =
            check_config(r).map_err(|m| Error::Input(format!("SAE {name}: {m}")))?;
        let arch = match r.architecture.as_str() {
            "standard" => SaeArchitecture::Standard,
            "jumprelu" => SaeArchitecture::JumpRelu,
            "topk" => SaeArchitecture::TopK,
            _ => unreachable!("check_config admits only these"),
        };
        Ok(Sae {
            hook_name: r.hook_name.clone(),
            layer,
            site,
            architecture: arch,
            d_in: r.d_in,
            d_sae: r.d_sae,
            w_enc: vec![],
            w_dec: vec![],
            b_enc: vec![],
            b_dec: vec![],
            threshold: None,
            k: if arch == SaeArchitecture::TopK {
                r.k
            } else {
                None
            },
            rescale_acts_by_decoder_norm: arch == SaeArchitecture::TopK
                && r.rescale_acts_by_decoder_norm,
            apply_b_dec_to_input: r.apply_b_dec_to_input,
            layout: r.layout,
            neuronpedia_id: r.neuronpedia_id.clone(),
            model_name: r.model_name.clone(),
            name: name.to_string(),
        })
    }

    /// Bytes the weights take in f32 once loaded, from the sizes alone (in
    /// u64: a cfg.json may claim more than a 32-bit address space holds).
    pub fn weight_bytes(&self) -> u64 {
        let (d_in, d_sae) = (self.d_in as u64, self.d_sae as u64);
        let threshold = if self.architecture == SaeArchitecture::JumpRelu {
            d_sae
        } else {
            0
        };
        4 * (2 * d_in * d_sae + d_sae + d_in + threshold)
    }

    /// An SAE from a folder holding `cfg.json` and
    /// `sae_weights.safetensors` (`sparsity.safetensors` and anything else
    /// there is ignored). A folder of another format (a PyTorch `.pt`
    /// checkpoint, sparsify's `sae.safetensors`, a folder of several SAEs)
    /// is refused with what to do instead.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_dir(dir: &std::path::Path) -> Result<Sae> {
        let shown = dir.display().to_string();
        let refuse = |m: String| Error::Input(format!("SAE {shown}: {m}"));
        if !dir.is_dir() {
            return Err(refuse(format!(
                "no such folder; pass the folder that holds the SAE's {SAE_CFG_FILE} and {SAE_WEIGHTS_FILE}"
            )));
        }
        let name = dir
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| shown.clone());
        let cfg_path = dir.join(SAE_CFG_FILE);
        let weights_path = dir.join(SAE_WEIGHTS_FILE);
        if !(cfg_path.is_file() && weights_path.is_file()) {
            return Err(refuse(explain_foreign_dir(dir, cfg_path.is_file())));
        }
        let cfg = std::fs::read(&cfg_path)
            .map_err(|e| refuse(format!("cannot read {SAE_CFG_FILE} ({e})")))?;
        let cfg = String::from_utf8(cfg)
            .map_err(|_| refuse(format!("{SAE_CFG_FILE} is not UTF-8 text")))?;
        let weights = std::fs::read(&weights_path)
            .map_err(|e| refuse(format!("cannot read {SAE_WEIGHTS_FILE} ({e})")))?;
        Sae::from_files(&name, &cfg, &weights)
    }

    /// Refuses an SAE that does not belong to a model of this shape: its
    /// `d_in` must be the hook's width (`d_model`; `n_heads * d_head` for
    /// `hook_z`) and its layer one of the model's.
    pub fn check_model(&self, cfg: &Config) -> Result<()> {
        let (width, what) = match self.site {
            SaeSite::Z => (
                cfg.n_heads * cfg.d_head,
                format!(
                    "n_heads * d_head = {} * {} = {}",
                    cfg.n_heads,
                    cfg.d_head,
                    cfg.n_heads * cfg.d_head
                ),
            ),
            _ => (cfg.d_model, format!("d_model = {}", cfg.d_model)),
        };
        if self.d_in != width {
            return Err(Error::Input(format!(
                "SAE {}: it reads {} with d_in = {}, but this model's {} has width {what}: the SAE was \
                 trained on another model (GPT-2 small has d_model = 768); load the model it belongs to, \
                 or an SAE for this one",
                self.name, self.hook_name, self.d_in, self.hook_name
            )));
        }
        if self.layer >= cfg.n_layers {
            return Err(Error::Input(format!(
                "SAE {}: it reads {} (layer {}), but this model has {} layers (0 to {}): the SAE was \
                 trained on a deeper model",
                self.name,
                self.hook_name,
                self.layer,
                cfg.n_layers,
                cfg.n_layers.saturating_sub(1)
            )));
        }
        Ok(())
    }

    /// `hook_sae_acts_post` for `rows` rows of the hook's activations `x`
    /// ([rows, d_in], row-major, TransformerLens's values at
    /// [`hook_name`](Sae::hook_name); for `hook_z` each row is
    /// `z[pos, head, :]` flattened head-major): SAELens's `encode`.
    /// `sae_in = x - b_dec` (if `apply_b_dec_to_input`), in f32;
    /// `pre = sae_in · W_enc + b_enc`, accumulated in f64 and rounded to
    /// f32 (as SAELens holds it); then the architecture's activation, in
    /// f32. Returns [rows, d_sae].
    ///
    /// Panics if `x` is not `rows * d_in` long.
    pub fn encode(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let (d_in, d_sae) = (self.d_in, self.d_sae);
        assert_eq!(
            x.len(),
            rows * d_in,
            "Sae::encode: x has {} values, not rows * d_in = {rows} * {d_in}",
            x.len()
        );
        const BLOCK: usize = 8;
        let norms = self
            .rescale_acts_by_decoder_norm
            .then(|| self.decoder_norms());
        let mut out = vec![0f32; rows * d_sae];
        let mut sae_in = vec![0f32; BLOCK * d_in];
        let mut acc = vec![0f64; BLOCK * d_sae];
        let mut pre = vec![0f32; d_sae];
        let mut order: Vec<usize> = Vec::new();
        for start in (0..rows).step_by(BLOCK) {
            let n = BLOCK.min(rows - start);
            for r in 0..n {
                let xr = &x[(start + r) * d_in..(start + r + 1) * d_in];
                let sr = &mut sae_in[r * d_in..(r + 1) * d_in];
                for ((s, &xi), &bi) in sr.iter_mut().zip(xr).zip(&self.b_dec) {
                    *s = if self.apply_b_dec_to_input {
                        xi - bi
                    } else {
                        xi
                    };
                }
            }
            acc[..n * d_sae].fill(0.0);
            for i in 0..d_in {
                let w = &self.w_enc[i * d_sae..(i + 1) * d_sae];
                for r in 0..n {
                    let xi = sae_in[r * d_in + i] as f64;
                    if xi == 0.0 {
                        continue;
                    }
                    for (a, &wj) in acc[r * d_sae..(r + 1) * d_sae].iter_mut().zip(w) {
                        *a += xi * wj as f64;
                    }
                }
            }
            for r in 0..n {
                for (j, p) in pre.iter_mut().enumerate() {
                    *p = (acc[r * d_sae + j] + self.b_enc[j] as f64) as f32;
                }
                if let Some(norms) = &norms {
                    for (p, &m) in pre.iter_mut().zip(norms) {
                        *p *= m;
                    }
                }
                let o = &mut out[(start + r) * d_sae..(start + r + 1) * d_sae];
                self.activate(&pre, o, &mut order);
            }
        }
        out
    }

    /// The activation function on one row of pre-activations.
    fn activate(&self, pre: &[f32], out: &mut [f32], order: &mut Vec<usize>) {
        let relu = |p: f32| if p > 0.0 { p } else { 0.0 };
        match self.architecture {
            SaeArchitecture::Standard => {
                for (o, &p) in out.iter_mut().zip(pre) {
                    *o = relu(p);
                }
            }
            SaeArchitecture::JumpRelu => {
                let th = self
                    .threshold
                    .as_deref()
                    .expect("a JumpReLU SAE has a threshold");
                for ((o, &p), &t) in out.iter_mut().zip(pre).zip(th) {
                    *o = if p > t { relu(p) } else { 0.0 };
                }
            }
            SaeArchitecture::TopK => {
                let k = self.k.expect("a TopK SAE has k").min(pre.len());
                out.fill(0.0);
                if k == 0 {
                    return;
                }
                order.clear();
                order.extend(0..pre.len());
                // larger first, the lower index first among equals
                let cmp = |a: &usize, b: &usize| pre[*b].total_cmp(&pre[*a]).then(a.cmp(b));
                if k < pre.len() {
                    order.select_nth_unstable_by(k - 1, cmp);
                }
                for &j in &order[..k] {
                    out[j] = relu(pre[j]);
                }
            }
        }
    }

    /// The L2 norm of each row of `W_dec`, in f32 as SAELens computes it
    /// (here accumulated in f64).
    fn decoder_norms(&self) -> Vec<f32> {
        self.w_dec
            .chunks_exact(self.d_in.max(1))
            .map(|row| {
                row.iter()
                    .map(|&v| (v as f64) * (v as f64))
                    .sum::<f64>()
                    .sqrt() as f32
            })
            .collect()
    }

    /// Bytes the weights take (f32).
    pub fn bytes(&self) -> usize {
        let n = self.w_enc.len()
            + self.w_dec.len()
            + self.b_enc.len()
            + self.b_dec.len()
            + self.threshold.as_ref().map_or(0, |t| t.len());
        n * std::mem::size_of::<f32>()
    }
}

/// Whether `version` (SAELens's `sae_lens_version`) is 6.0.0-rc.0 or later,
/// as `packaging.version.Version` orders them: the release numbers, then,
/// for 6.0.0 itself, its pre-release tag (alphas, betas and dev releases
/// come before rc.0; release candidates and the release itself do not).
fn is_saelens6(version: &str) -> std::result::Result<bool, String> {
    let v = version
        .trim()
        .trim_start_matches(['v', 'V'])
        .to_ascii_lowercase();
    let mut release: Vec<u64> = Vec::new();
    let mut rest = v.as_str();
    loop {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            break;
        }
        let Ok(n) = rest[..digits].parse() else { break };
        release.push(n);
        rest = &rest[digits..];
        match rest.strip_prefix('.') {
            Some(r) if r.starts_with(|c: char| c.is_ascii_digit()) => rest = r,
            _ => break,
        }
    }
    let Some(&major) = release.first() else {
        return Err(format!(
            "{SAE_CFG_FILE}'s sae_lens_version {version:?} is not a version number"
        ));
    };
    if major != 6 || release[1..].iter().any(|&n| n > 0) {
        return Ok(major >= 6);
    }
    let tag = rest.trim_start_matches(['.', '-', '_']);
    let early = ["a", "b", "dev"].iter().any(|p| tag.starts_with(p));
    Ok(!early)
}

fn as_usize(v: &Value, key: &str) -> std::result::Result<usize, String> {
    v.as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("{SAE_CFG_FILE}'s {key} is {v}, not a whole number"))
}

fn as_string(v: Option<&Value>) -> Option<String> {
    v.map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// `cfg.json` converted as SAELens converts it.
fn resolve(obj: &Map<String, Value>) -> std::result::Result<Resolved<'_>, String> {
    let meta = field(obj, "metadata").and_then(|m| m.as_object());
    let version = field(obj, "sae_lens_version")
        .filter(|v| v.as_str() != Some(""))
        .or_else(|| meta.and_then(|m| field(m, "sae_lens_version")))
        .filter(|v| v.as_str() != Some(""));
    let saelens6 = match version {
        None => false,
        Some(Value::String(s)) => is_saelens6(s)?,
        Some(other) => is_saelens6(&other.to_string())?,
    };
    let need = |key: &str| {
        field(obj, key)
            .ok_or_else(|| format!("{SAE_CFG_FILE} has no {key}"))
            .and_then(|v| as_usize(v, key))
    };
    let d_in = need("d_in")?;
    let d_sae = need("d_sae")?;
    let dtype = match field(obj, "dtype") {
        None => "float32".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => return Err(format!("{SAE_CFG_FILE}'s dtype is {v}, not a dtype name")),
    };
    let apply_b_dec_to_input = match obj.get("apply_b_dec_to_input") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(format!(
                "{SAE_CFG_FILE}'s apply_b_dec_to_input is {v}, not true or false"
            ))
        }
    };
    let string_field = |key: &str| -> std::result::Result<Option<String>, String> {
        match field(obj, key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(format!("{SAE_CFG_FILE}'s {key} is {v}, not a string")),
        }
    };
    // the LLM metadata: SAELens 6 keeps it in `metadata`, the legacy layout
    // at the top level (the top level is read for SAELens 6 too, where
    // `metadata` lacks a key)
    let meta_field = |key: &str| -> Option<&Value> {
        if saelens6 {
            meta.and_then(|m| field(m, key)).or_else(|| field(obj, key))
        } else {
            field(obj, key)
        }
    };
    let either = |new: &str, old: &str| -> std::result::Result<Option<&Value>, String> {
        match (meta_field(new), field(obj, old)) {
            (Some(a), Some(b)) if a != b && !saelens6 => Err(format!(
                "{SAE_CFG_FILE} has both {new} ({a}) and {old} ({b}); they must agree"
            )),
            (Some(a), _) => Ok(Some(a)),
            (None, b) => Ok(b),
        }
    };
    let hook_name = match either("hook_name", "hook_point")? {
        Some(Value::String(s)) => s.clone(),
        Some(v) => {
            return Err(format!(
                "{SAE_CFG_FILE}'s hook_name is {v}, not a hook name"
            ))
        }
        None => {
            return Err(format!(
                "{SAE_CFG_FILE} names no hook (no {})",
                if saelens6 {
                    "metadata.hook_name"
                } else {
                    "hook_point or hook_name"
                }
            ))
        }
    };
    let hook_head_index = either("hook_head_index", "hook_point_head_index")?;
    let hook_layer = if saelens6 {
        None
    } else {
        field(obj, "hook_point_layer").or_else(|| field(obj, "hook_layer"))
    };

    let normalize_activations = match obj.get("normalize_activations") {
        None => "none".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) if !saelens6 => if *b {
            "expected_average_only_in"
        } else {
            "none"
        }
        .to_string(),
        Some(Value::Null) if !saelens6 => "none".to_string(),
        Some(v) => {
            return Err(format!(
                "{SAE_CFG_FILE}'s normalize_activations is {v}, not one of \"none\", \
                 \"expected_average_only_in\", \"constant_norm_rescale\", \"layer_norm\""
            ))
        }
    };
    let reshape_activations = match string_field("reshape_activations")? {
        Some(s) => s,
        None if !saelens6 && hook_name.contains("hook_z") => "hook_z".to_string(),
        None => "none".to_string(),
    };

    let mut architecture = string_field("architecture")?;
    let mut k = None;
    if saelens6 {
        if architecture.is_none() {
            return Err(format!(
                "{SAE_CFG_FILE} has sae_lens_version 6 or later but no architecture"
            ));
        }
    } else {
        // `activation_fn_str` is renamed `activation_fn`
        let act = string_field("activation_fn_str")?
            .or(string_field("activation_fn")?)
            .unwrap_or_else(|| "relu".to_string());
        let kwargs_k = field(obj, "activation_fn_kwargs")
            .and_then(|kw| kw.as_object())
            .and_then(|kw| field(kw, "k"));
        match act.as_str() {
            "relu" => {}
            "topk" => match kwargs_k {
                Some(v) => {
                    architecture = Some("topk".to_string());
                    k = Some(as_usize(v, "activation_fn_kwargs.k")?);
                }
                None => {
                    return Err(format!(
                        "{SAE_CFG_FILE}'s activation_fn is \"topk\" but activation_fn_kwargs has no k; \
                         SAELens would read it as a ReLU SAE, which it is not"
                    ))
                }
            },
            other => {
                return Err(format!(
                    "{SAE_CFG_FILE}'s activation_fn is {other:?}; patchlab reads \"relu\" and \"topk\" \
                     SAEs only (SAELens 6 would silently read it as a ReLU SAE)"
                ))
            }
        }
    }
    let architecture = architecture.unwrap_or_else(|| "standard".to_string());
    if architecture == "topk" && k.is_none() {
        k = match field(obj, "k") {
            Some(v) => Some(as_usize(v, "k")?),
            None => Some(100), // TopKSAEConfig's default
        };
    }
    let rescale_acts_by_decoder_norm = match field(obj, "rescale_acts_by_decoder_norm") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(format!(
                "{SAE_CFG_FILE}'s rescale_acts_by_decoder_norm is {v}, not true or false"
            ))
        }
    };
    let finetuning_scaling_factor = matches!(
        field(obj, "finetuning_scaling_factor"),
        Some(Value::Bool(true))
    );
    Ok(Resolved {
        layout: if saelens6 {
            LAYOUT_SAELENS6
        } else {
            LAYOUT_LEGACY
        },
        d_in,
        d_sae,
        dtype,
        apply_b_dec_to_input,
        normalize_activations,
        reshape_activations,
        architecture,
        k,
        rescale_acts_by_decoder_norm,
        hook_name,
        hook_head_index,
        hook_layer,
        model_name: as_string(meta_field("model_name")),
        model_class_name: as_string(meta_field("model_class_name")),
        neuronpedia_id: as_string(meta_field("neuronpedia_id")),
        model_from_pretrained_kwargs: meta_field("model_from_pretrained_kwargs"),
        finetuning_scaling_factor,
    })
}

/// The list of hooks patchlab reads, for messages.
fn supported_hooks() -> String {
    SaeSite::ALL
        .iter()
        .map(|s| format!("blocks.L.{}", s.hook_suffix()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The checks of everything in the config; the hook's layer and site.
fn check_config(r: &Resolved<'_>) -> std::result::Result<(usize, SaeSite), String> {
    match r.architecture.as_str() {
        "standard" | "jumprelu" | "topk" => {}
        "gated" => {
            return Err(
                "its architecture is \"gated\"; patchlab encodes standard (ReLU), jumprelu and topk \
                 SAEs only"
                    .into(),
            )
        }
        a @ ("batchtopk" | "matryoshka_batchtopk") => {
            return Err(format!(
                "its architecture is {a:?}, a SAELens training checkpoint that SAELens itself cannot \
                 load for inference; save it with TrainingSAE.save_inference_model, which writes it as \
                 a jumprelu SAE, and load that"
            ))
        }
        a @ ("transcoder" | "skip_transcoder" | "jumprelu_transcoder") => {
            return Err(format!(
                "its architecture is {a:?}: a transcoder maps one hook to another and is not an SAE; \
                 patchlab reads standard, jumprelu and topk SAEs"
            ))
        }
        a => {
            return Err(format!(
                "its architecture is {a:?}, which patchlab does not know; it reads standard, jumprelu \
                 and topk SAEs"
            ))
        }
    }
    let Some((layer, site)) = SaeSite::parse(&r.hook_name) else {
        return Err(format!(
            "it reads the hook {}, which patchlab does not compute; it reads SAEs on {}",
            r.hook_name,
            supported_hooks()
        ));
    };
    if let Some(h) = r.hook_head_index {
        return Err(format!(
            "it reads one head of {} (hook_head_index {h}); per-head SAEs are not supported, only \
             SAEs on the whole hook",
            r.hook_name
        ));
    }
    if let Some(l) = r.hook_layer {
        if l.as_u64() != Some(layer as u64) {
            return Err(format!(
                "its hook_point_layer is {l} but its hook {} is in layer {layer}; the config \
                 contradicts itself",
                r.hook_name
            ));
        }
    }
    if let Some(m) = &r.model_name {
        let last = m.rsplit('/').next().unwrap_or(m).to_ascii_lowercase();
        if !last.contains("gpt2") {
            return Err(format!(
                "it was trained on the model {m:?} (model_name); patchlab runs GPT-2 models only"
            ));
        }
    }
    if let Some(c) = &r.model_class_name {
        if c != "HookedTransformer" && c != "HookedSAETransformer" {
            return Err(format!(
                "it was trained on a {c} model (model_class_name); patchlab reads SAEs trained on \
                 TransformerLens's HookedTransformer"
            ));
        }
    }
    match r.normalize_activations.as_str() {
        "none" => {}
        "expected_average_only_in" => {
            return Err(
                "its normalize_activations is \"expected_average_only_in\": it expects activations \
                 scaled by a constant (norm_scaling_factor) that its folder does not hold (SAELens \
                 folds it in from pretrained_saes.yaml in SAE.from_pretrained only). Load it from its \
                 release (the page passes the yaml's factor), or fold it with SAELens \
                 (SAE.from_pretrained(release, sae_id).save_model(DIR)) and load the saved folder"
                    .into(),
            )
        }
        "constant_norm_rescale" => {
            return Err(
                "its normalize_activations is \"constant_norm_rescale\": it rescales every activation \
                 vector to norm sqrt(d_in) at run time, which patchlab's encoder does not do"
                    .into(),
            )
        }
        "layer_norm" => {
            return Err(
                "its normalize_activations is \"layer_norm\": it layer-normalises every activation \
                 vector at run time (as OpenAI's v5 GPT-2 SAEs do), which patchlab's encoder does not do"
                    .into(),
            )
        }
        other => {
            return Err(format!(
                "its normalize_activations is {other:?}, not one of \"none\", \
                 \"expected_average_only_in\", \"constant_norm_rescale\", \"layer_norm\""
            ))
        }
    }
    match r.reshape_activations.as_str() {
        "none" => {}
        "hook_z" if site == SaeSite::Z => {}
        "hook_z" => {
            return Err(format!(
            "its reshape_activations is \"hook_z\" but it reads {}; SAELens allows that reshape \
                 only on attn.hook_z",
            r.hook_name
        ))
        }
        other => {
            return Err(format!(
                "its reshape_activations is {other:?}, not \"none\" or \"hook_z\""
            ))
        }
    }
    if precision_of(&r.dtype).is_none() {
        return Err(format!(
            "its dtype is {:?}, which SAELens does not know (float32, float64, float16, bfloat16, \
             optionally with a torch. prefix)",
            r.dtype
        ));
    }
    check_processing(r, site)?;
    if r.d_in == 0 || r.d_sae == 0 {
        return Err(format!(
            "its d_in is {} and d_sae {}; both must be at least 1",
            r.d_in, r.d_sae
        ));
    }
    if r.d_in.checked_mul(r.d_sae).is_none() {
        return Err(format!(
            "its d_in {} times d_sae {} is too large",
            r.d_in, r.d_sae
        ));
    }
    if let Some(k) = r.k {
        if k > r.d_sae {
            return Err(format!(
                "its k is {k}, more than its d_sae {}; a TopK SAE keeps at most d_sae latents",
                r.d_sae
            ));
        }
    }
    Ok((layer, site))
}

/// TransformerLens's weight processing, as it changes the activations at
/// the SAE's hook. SAELens trains on
/// `HookedTransformer.from_pretrained_no_processing(**model_from_pretrained_kwargs)`
/// (and warns that the model must be loaded that way whenever the kwargs are
/// not empty), so a non-empty `model_from_pretrained_kwargs` means every
/// processing step it does not turn on was off; absent or empty means the
/// SAE predates that (it was trained on `from_pretrained`'s default
/// processing), which is what patchlab's activations have. Only the steps
/// that change this hook's values matter: `center_writing_weights` for the
/// residual stream, `hook_attn_out` and `hook_mlp_out` (they are
/// mean-centred), `fold_value_biases` and `refactor_factored_attn_matrices`
/// for `attn.hook_z`; `fold_ln` and `center_unembed` change none of them.
fn check_processing(r: &Resolved<'_>, site: SaeSite) -> std::result::Result<(), String> {
    let kwargs = match r.model_from_pretrained_kwargs {
        None => return Ok(()),
        Some(Value::Object(m)) if m.is_empty() => return Ok(()),
        Some(Value::Object(m)) => m,
        Some(v) => {
            return Err(format!(
                "its model_from_pretrained_kwargs is {v}, not an object of keyword arguments"
            ))
        }
    };
    let flag = |key: &str| -> std::result::Result<bool, String> {
        match field(kwargs, key) {
            None => Ok(false), // from_pretrained_no_processing turns it off
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(format!(
                "its model_from_pretrained_kwargs.{key} is {v}, not true or false"
            )),
        }
    };
    let shown = Value::Object(kwargs.clone()).to_string();
    let trained = format!(
        "it was trained on HookedTransformer.from_pretrained_no_processing(**{shown}) (its \
         model_from_pretrained_kwargs: SAELens trains on an unprocessed model with only these steps \
         turned on)"
    );
    let default = "patchlab's activations have TransformerLens's default processing \
                   (from_pretrained: fold_ln, center_writing_weights, fold_value_biases)";
    match site {
        SaeSite::Z => {
            if !flag("fold_value_biases")? {
                return Err(format!(
                    "{trained}, so fold_value_biases was off and its {} includes the value biases b_V, \
                     while {default}, whose hook_z leaves b_V out. Use an SAE trained with \
                     fold_value_biases=True",
                    r.hook_name
                ));
            }
            if flag("refactor_factored_attn_matrices")? {
                return Err(format!(
                    "{trained}, so refactor_factored_attn_matrices was on and its {} differs from the \
                     values of {default}",
                    r.hook_name
                ));
            }
        }
        _ => {
            if !flag("center_writing_weights")? {
                return Err(format!(
                    "{trained}, so center_writing_weights was off and its {} is not mean-centred, while \
                     {default}, which centres it. Use an SAE trained with center_writing_weights=True \
                     (such as jbloom's gpt2-small-res-jb)",
                    r.hook_name
                ));
            }
        }
    }
    Ok(())
}

/// The SAE's tensors, read from `sae_weights.safetensors`.
struct Tensors(Vec<(&'static str, Vec<f32>)>);

impl Tensors {
    fn take(&mut self, name: &str) -> Vec<f32> {
        let i = self
            .0
            .iter()
            .position(|(n, _)| *n == name)
            .expect("read_tensors read every tensor the architecture needs");
        self.0.swap_remove(i).1
    }
}

/// Reads and checks the tensors the architecture needs, as SAELens's
/// `read_sae_components_from_disk` and strict `load_state_dict` would.
fn read_tensors(
    bytes: &[u8],
    r: &Resolved<'_>,
    arch: SaeArchitecture,
    precision: Precision,
) -> std::result::Result<Tensors, String> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        format!("{SAE_WEIGHTS_FILE} is not a readable safetensors file ({e}); download it again")
    })?;
    let (d_in, d_sae) = (r.d_in, r.d_sae);
    let mut need: Vec<(&'static str, Vec<usize>)> = vec![
        ("W_enc", vec![d_in, d_sae]),
        ("W_dec", vec![d_sae, d_in]),
        ("b_enc", vec![d_sae]),
        ("b_dec", vec![d_in]),
    ];
    if arch == SaeArchitecture::JumpRelu {
        need.push(("threshold", vec![d_sae]));
    }
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();

    // SAELens drops a scaling_factor of ones; any other is a fine-tuning
    // scale its inference SAEs cannot load
    if names.iter().any(|n| n == "scaling_factor") {
        let v = decode(&st, "scaling_factor", precision)?;
        if v.iter().any(|&s| s != 1.0) {
            return Err(format!(
                "{SAE_WEIGHTS_FILE} holds a scaling_factor that is not all ones{}: a fine-tuning \
                 scale SAELens 6 cannot load into an inference SAE, and patchlab does not apply",
                if r.finetuning_scaling_factor {
                    " (finetuning_scaling_factor is true)"
                } else {
                    ""
                }
            ));
        }
    }
    if arch == SaeArchitecture::JumpRelu
        && names.iter().any(|n| n == "log_threshold")
        && !names.iter().any(|n| n == "threshold")
    {
        return Err(format!(
            "{SAE_WEIGHTS_FILE} holds log_threshold, JumpReLU's training parameter, and no threshold; \
             SAELens saves threshold = exp(log_threshold) (SAE.save_model, \
             TrainingSAE.save_inference_model) and its SAE.load_from_disk cannot read this file. Save \
             it with SAELens and load that"
        ));
    }
    let unexpected: Vec<&String> = names
        .iter()
        .filter(|n| *n != "scaling_factor" && !need.iter().any(|(m, _)| m == n))
        .collect();
    if !unexpected.is_empty() {
        let list = unexpected
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(format!(
            "{SAE_WEIGHTS_FILE} holds {list}, which a {} SAE does not have (SAELens's load_state_dict \
             refuses them too); it holds {}",
            arch.name(),
            need.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ));
    }
    let mut out = Vec::with_capacity(need.len());
    for (name, shape) in need {
        let Ok(view) = st.tensor(name) else {
            return Err(format!(
                "{SAE_WEIGHTS_FILE} has no tensor `{name}`, which a {} SAE needs (shape {shape:?} for \
                 d_in = {d_in}, d_sae = {d_sae})",
                arch.name()
            ));
        };
        if view.shape() != shape.as_slice() {
            return Err(format!(
                "{SAE_WEIGHTS_FILE}'s tensor `{name}` has shape {:?}, but {SAE_CFG_FILE}'s d_in = {d_in}, \
                 d_sae = {d_sae} imply {shape:?}",
                view.shape()
            ));
        }
        let values = decode(&st, name, precision)?;
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "{SAE_WEIGHTS_FILE}'s tensor `{name}` holds {} at flat index {i}; the file is corrupt \
                 or the SAE diverged in training",
                values[i]
            ));
        }
        out.push((name, values));
    }
    Ok(Tensors(out))
}

/// A tensor's values, cast to the cfg's dtype as SAELens casts them, as f32.
fn decode(
    st: &SafeTensors<'_>,
    name: &str,
    precision: Precision,
) -> std::result::Result<Vec<f32>, String> {
    let view = st
        .tensor(name)
        .map_err(|e| format!("{SAE_WEIGHTS_FILE}: tensor `{name}`: {e}"))?;
    let data = view.data();
    let values: Vec<f32> = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(format!(
                "{SAE_WEIGHTS_FILE}'s tensor `{name}` has dtype {other:?}; SAE weights must be \
                 F32, F64, F16 or BF16"
            ))
        }
    };
    Ok(match precision {
        Precision::F32 | Precision::F64 => values,
        Precision::F16 => values
            .into_iter()
            .map(|v| half::f16::from_f32(v).to_f32())
            .collect(),
        Precision::Bf16 => values
            .into_iter()
            .map(|v| half::bf16::from_f32(v).to_f32())
            .collect(),
    })
}

/// Why a folder without `cfg.json` + `sae_weights.safetensors` cannot be
/// read, and what to do.
#[cfg(not(target_arch = "wasm32"))]
fn explain_foreign_dir(dir: &std::path::Path, has_cfg: bool) -> String {
    let mut files: Vec<String> = Vec::new();
    let mut sae_dirs: Vec<String> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            let n = e.file_name().to_string_lossy().to_string();
            if p.is_dir() {
                if p.join(SAE_CFG_FILE).is_file() {
                    sae_dirs.push(n);
                }
            } else {
                files.push(n);
            }
        }
    }
    files.sort();
    sae_dirs.sort();
    let convert =
        "Convert it with SAELens (`SAE.from_pretrained(release, sae_id).save_model(DIR)`, which \
                   writes cfg.json and sae_weights.safetensors) and load DIR";
    if let Some(pt) = files.iter().find(|f| {
        let l = f.to_ascii_lowercase();
        l.ends_with(".pt") || l.ends_with(".pth") || l.ends_with(".ckpt") || l.ends_with(".bin")
    }) {
        return format!(
            "the folder holds a PyTorch checkpoint ({pt}) and no {SAE_CFG_FILE} + {SAE_WEIGHTS_FILE}: \
             patchlab reads SAELens's safetensors layout only and never unpickles PyTorch files. {convert}"
        );
    }
    if has_cfg && files.iter().any(|f| f == "sae.safetensors") {
        return format!(
            "the folder holds sae.safetensors (EleutherAI sparsify's layout), not {SAE_WEIGHTS_FILE}. \
             {convert}"
        );
    }
    if !sae_dirs.is_empty() {
        let shown: Vec<&str> = sae_dirs.iter().take(4).map(|s| s.as_str()).collect();
        return format!(
            "the folder holds several SAEs ({}{}); pass one of their folders",
            shown.join(", "),
            if sae_dirs.len() > 4 { ", …" } else { "" }
        );
    }
    if let Some(f) = files.iter().find(|f| f.ends_with(".npz")) {
        return format!(
            "the folder holds {f} and no {SAE_CFG_FILE} + {SAE_WEIGHTS_FILE}: patchlab reads SAELens's \
             safetensors layout only. {convert}"
        );
    }
    let missing = if has_cfg {
        SAE_WEIGHTS_FILE
    } else {
        SAE_CFG_FILE
    };
    format!(
        "the folder has no {missing}; an SAE folder as SAELens saves it holds {SAE_CFG_FILE} and \
         {SAE_WEIGHTS_FILE}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;
    use serde_json::json;

    const D_IN: usize = 4;
    const D_SAE: usize = 6;

    /// A safetensors file as torch's `save_file` writes it.
    fn st(tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .iter()
            .map(|(n, s, v)| {
                let b = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                (n.to_string(), s.clone(), b)
            })
            .collect();
        let views: Vec<(String, TensorView<'_>)> = bytes
            .iter()
            .map(|(n, s, b)| {
                (
                    n.clone(),
                    TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
                )
            })
            .collect();
        let meta = [("format".to_string(), "pt".to_string())]
            .into_iter()
            .collect();
        safetensors::tensor::serialize(views, Some(meta)).unwrap()
    }

    fn w_enc() -> Vec<f32> {
        vec![
            1., 0., 0., 0., 1., -1., //
            0., 1., 0., 0., 1., 0., //
            0., 0., 1., 0., 0., 1., //
            0., 0., 0., 1., 0., 0., //
        ]
    }

    /// Rows of norms 1, 2, 5, 1, 0.5, 1.
    fn w_dec() -> Vec<f32> {
        vec![
            1., 0., 0., 0., //
            0., 2., 0., 0., //
            0., 0., 3., 4., //
            1., 0., 0., 0., //
            0., 0., 0., 0.5, //
            0., 1., 0., 0., //
        ]
    }

    const B_ENC: [f32; D_SAE] = [0., -1., 0.5, 0., 0., 0.];
    const B_DEC: [f32; D_IN] = [0.5, 0., 0., 0.];

    fn weights(extra: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
        let mut t = vec![
            ("W_enc", vec![D_IN, D_SAE], w_enc()),
            ("W_dec", vec![D_SAE, D_IN], w_dec()),
            ("b_enc", vec![D_SAE], B_ENC.to_vec()),
            ("b_dec", vec![D_IN], B_DEC.to_vec()),
        ];
        t.extend(extra.iter().cloned());
        st(&t)
    }

    /// x, three rows; with b_dec subtracted they are [1, 2, -1, 3],
    /// [0, -2, 1, 0] and [-1, -1, -1, -1], whose pre-activations are
    /// [1, 1, -0.5, 3, 3, -2], [0, -3, 1.5, 0, -2, 1], [-1, -2, -0.5, -1, -2, 0].
    const X: [f32; 12] = [
        1.5, 2., -1., 3., //
        0.5, -2., 1., 0., //
        -0.5, -1., -1., -1., //
    ];

    /// jbloom/GPT2-Small-SAEs-Reformatted's cfg.json (every field the
    /// published file has), at tiny sizes.
    fn legacy_cfg() -> Value {
        json!({
            "model_name": "gpt2-small",
            "hook_point": "blocks.1.hook_resid_pre",
            "hook_point_layer": 1,
            "hook_point_head_index": null,
            "dataset_path": "Skylion007/openwebtext",
            "is_dataset_tokenized": false,
            "context_size": 128,
            "use_cached_activations": false,
            "cached_activations_path": "activations/Skylion007_openwebtext/gpt2-small/blocks.1.hook_resid_pre",
            "d_in": D_IN,
            "n_batches_in_buffer": 128,
            "total_training_tokens": 300000000,
            "store_batch_size": 32,
            "device": "mps",
            "seed": 42,
            "dtype": "torch.float32",
            "b_dec_init_method": "geometric_median",
            "expansion_factor": 32,
            "from_pretrained_path": null,
            "l1_coefficient": 8e-05,
            "lr": 0.0004,
            "lr_scheduler_name": null,
            "lr_warm_up_steps": 5000,
            "train_batch_size": 4096,
            "use_ghost_grads": false,
            "feature_sampling_window": 1000,
            "feature_sampling_method": null,
            "resample_batches": 1028,
            "feature_reinit_scale": 0.2,
            "dead_feature_window": 5000,
            "dead_feature_estimation_method": "no_fire",
            "dead_feature_threshold": 1e-08,
            "log_to_wandb": true,
            "wandb_project": "mats_sae_training_gpt2_small_resid_pre_5",
            "wandb_entity": null,
            "wandb_log_frequency": 100,
            "n_checkpoints": 10,
            "checkpoint_path": "checkpoints/y1t51byy",
            "d_sae": D_SAE,
            "tokens_per_buffer": 67108864,
            "run_name": "24576-L1-8e-05-LR-0.0004-Tokens-3.000e+08"
        })
    }

    /// cfg.json as SAELens 6's `SAE.save_model` writes it (`to_dict`: the
    /// dataclass fields, then `metadata`, the architecture's own fields and
    /// `architecture`), with the metadata a training run sets.
    fn v6_cfg(architecture: &str, hook: &str) -> Value {
        let mut c = json!({
            "d_in": D_IN,
            "d_sae": D_SAE,
            "dtype": "float32",
            "device": "cpu",
            "apply_b_dec_to_input": true,
            "normalize_activations": "none",
            "reshape_activations": if hook.ends_with("hook_z") { "hook_z" } else { "none" },
            "metadata": {
                "sae_lens_version": "6.18.0",
                "sae_lens_training_version": "6.18.0",
                "dataset_path": "Skylion007/openwebtext",
                "hook_name": hook,
                "model_name": "gpt2",
                "model_class_name": "HookedTransformer",
                "hook_head_index": null,
                "context_size": 128,
                "seqpos_slice": [null],
                "model_from_pretrained_kwargs": {"center_writing_weights": true, "fold_value_biases": true},
                "prepend_bos": true,
                "exclude_special_tokens": false,
                "sequence_separator_token": "bos",
                "disable_concat_sequences": false,
                "neuronpedia_id": "gpt2-small/8-test"
            },
            "architecture": architecture
        });
        if architecture == "topk" {
            c["k"] = json!(2);
            c["rescale_acts_by_decoder_norm"] = json!(false);
        }
        c
    }

    fn load(cfg: &Value, weights: &[u8]) -> Result<Sae> {
        Sae::from_files("test-sae", &cfg.to_string(), weights)
    }

    fn refusal(cfg: &Value, weights: &[u8]) -> String {
        match load(cfg, weights) {
            Ok(_) => panic!("loaded {cfg}"),
            Err(e @ Error::Input(_)) => e.to_string(),
            Err(e) => panic!("not an Input error: {e:?}"),
        }
    }

    fn assert_close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-6,
                "at {i}: {g} vs {w}\n{got:?}\n{want:?}"
            );
        }
    }

    #[test]
    fn the_legacy_jbloom_layout_loads_as_a_standard_sae() {
        let sae = load(&legacy_cfg(), &weights(&[])).unwrap();
        assert_eq!(sae.layout, LAYOUT_LEGACY);
        assert_eq!(sae.hook_name, "blocks.1.hook_resid_pre");
        assert_eq!((sae.layer, sae.site), (1, SaeSite::ResidPre));
        assert_eq!(sae.architecture, SaeArchitecture::Standard);
        assert_eq!(sae.architecture.name(), "standard");
        assert_eq!((sae.d_in, sae.d_sae), (D_IN, D_SAE));
        assert!(sae.apply_b_dec_to_input, "legacy default");
        assert_eq!(sae.model_name.as_deref(), Some("gpt2-small"));
        assert_eq!(sae.neuronpedia_id, None);
        assert_eq!((sae.threshold.clone(), sae.k), (None, None));
        assert_eq!(sae.w_enc, w_enc());
        assert_eq!(sae.w_dec, w_dec());
        assert_eq!(sae.name, "test-sae");
        assert_eq!(sae.bytes(), 4 * (2 * D_IN * D_SAE + D_IN + D_SAE));
        // relu(pre)
        assert_close(
            &sae.encode(&X, 3),
            &[
                1., 1., 0., 3., 3., 0., //
                0., 0., 1.5, 0., 0., 1., //
                0., 0., 0., 0., 0., 0., //
            ],
        );
        assert!(sae.encode(&[], 0).is_empty());
    }

    #[test]
    fn the_yaml_override_of_gpt2_small_res_jb_is_accepted() {
        let mut c = legacy_cfg();
        c["model_from_pretrained_kwargs"] = json!({"center_writing_weights": true});
        c["neuronpedia_id"] = json!("gpt2-small/1-res-jb");
        let sae = load(&c, &weights(&[])).unwrap();
        assert_eq!(sae.neuronpedia_id.as_deref(), Some("gpt2-small/1-res-jb"));
    }

    #[test]
    fn without_apply_b_dec_to_input_x_is_encoded_as_is() {
        let mut c = legacy_cfg();
        c["apply_b_dec_to_input"] = json!(false);
        let sae = load(&c, &weights(&[])).unwrap();
        // pre = [1.5, 1, -0.5, 3, 3.5, -2.5]
        assert_close(&sae.encode(&X[..4], 1), &[1.5, 1., 0., 3., 3.5, 0.]);
    }

    #[test]
    fn a_legacy_topk_config_becomes_a_topk_sae() {
        let mut c = legacy_cfg();
        c["activation_fn_str"] = json!("topk");
        c["activation_fn_kwargs"] = json!({"k": 2});
        let sae = load(&c, &weights(&[])).unwrap();
        assert_eq!(sae.architecture, SaeArchitecture::TopK);
        assert_eq!(sae.k, Some(2));
        c["activation_fn_kwargs"] = json!({});
        assert!(refusal(&c, &weights(&[])).contains("activation_fn_kwargs has no k"));
        c["activation_fn_str"] = json!("tanh-relu");
        assert!(refusal(&c, &weights(&[])).contains("\"tanh-relu\""));
    }

    #[test]
    fn a_legacy_hook_z_config_defaults_to_the_hook_z_reshape() {
        let mut c = legacy_cfg();
        c["hook_point"] = json!("blocks.3.attn.hook_z");
        c["hook_point_layer"] = json!(3);
        let sae = load(&c, &weights(&[])).unwrap();
        assert_eq!((sae.layer, sae.site), (3, SaeSite::Z));
    }

    #[test]
    fn saelens6_standard_loads_with_its_metadata() {
        let c = v6_cfg("standard", "blocks.8.hook_resid_post");
        let sae = load(&c, &weights(&[])).unwrap();
        assert_eq!(sae.layout, LAYOUT_SAELENS6);
        assert_eq!((sae.layer, sae.site), (8, SaeSite::ResidPost));
        assert_eq!(sae.model_name.as_deref(), Some("gpt2"));
        assert_eq!(sae.neuronpedia_id.as_deref(), Some("gpt2-small/8-test"));
        assert_close(&sae.encode(&X[4..8], 1), &[0., 0., 1.5, 0., 0., 1.]);
    }

    #[test]
    fn saelens6_jumprelu_zeroes_pre_activations_at_or_below_the_threshold() {
        let mut c = v6_cfg("jumprelu", "blocks.2.hook_mlp_out");
        // the version in the top level, as some writers put it
        c["sae_lens_version"] = json!("6.0.0");
        let th = vec![1., 0.5, 0., 3., 2.5, -5.];
        let sae = load(&c, &weights(&[("threshold", vec![D_SAE], th.clone())])).unwrap();
        assert_eq!(sae.architecture, SaeArchitecture::JumpRelu);
        assert_eq!(sae.threshold.as_deref(), Some(&th[..]));
        assert_eq!(sae.bytes(), 4 * (2 * D_IN * D_SAE + D_IN + 2 * D_SAE));
        // pre [1, 1, -0.5, 3, 3, -2]: 1 = threshold 1 and 3 = threshold 3
        // are off; -2 > -5 is relu'd to 0
        assert_close(
            &sae.encode(&X, 3),
            &[
                0., 1., 0., 0., 3., 0., //
                0., 0., 1.5, 0., 0., 1., //
                0., 0., 0., 0., 0., 0., //
            ],
        );
        // a jumprelu SAE without its threshold
        let e = refusal(&c, &weights(&[]));
        assert!(e.contains("no tensor `threshold`"), "{e}");
        // log_threshold (the training parameter) is not what SAELens saves
        let e = refusal(
            &c,
            &weights(&[("log_threshold", vec![D_SAE], vec![0.; D_SAE])]),
        );
        assert!(e.contains("log_threshold"), "{e}");
    }

    #[test]
    fn saelens6_topk_keeps_the_k_largest_then_relus_them() {
        let c = v6_cfg("topk", "blocks.0.hook_attn_out");
        let sae = load(&c, &weights(&[])).unwrap();
        assert_eq!(sae.architecture, SaeArchitecture::TopK);
        assert_eq!(sae.k, Some(2));
        // row 3's top two are 0 and -0.5: relu makes them 0
        assert_close(
            &sae.encode(&X, 3),
            &[
                0., 0., 0., 3., 3., 0., //
                0., 0., 1.5, 0., 0., 1., //
                0., 0., 0., 0., 0., 0., //
            ],
        );
        // k = 3 in row 1: 3, 3, then the tie 1 (index 0) vs 1 (index 1):
        // the lower index wins
        let mut c3 = c.clone();
        c3["k"] = json!(3);
        let sae3 = load(&c3, &weights(&[])).unwrap();
        assert_close(&sae3.encode(&X[..4], 1), &[1., 0., 0., 3., 3., 0.]);
        // rescaled by the decoder's row norms [1, 2, 5, 1, 0.5, 1]:
        // pre [1, 2, -2.5, 3, 1.5, -2] → top two 3 (3) and 2 (1)
        let mut cr = c.clone();
        cr["rescale_acts_by_decoder_norm"] = json!(true);
        let sr = load(&cr, &weights(&[])).unwrap();
        assert!(sr.rescale_acts_by_decoder_norm);
        assert_close(&sr.encode(&X[..4], 1), &[0., 2., 0., 3., 0., 0.]);
        // k absent: TopKSAEConfig's default 100, more than d_sae here
        let mut cd = c.clone();
        cd.as_object_mut().unwrap().remove("k");
        let e = refusal(&cd, &weights(&[]));
        assert!(e.contains("k is 100"), "{e}");
        // k = d_sae keeps all, relu'd
        cd["k"] = json!(D_SAE);
        let all = load(&cd, &weights(&[])).unwrap();
        assert_close(&all.encode(&X[..4], 1), &[1., 1., 0., 3., 3., 0.]);
    }

    #[test]
    fn saelens6_hook_z_reads_the_flattened_heads() {
        let c = v6_cfg("standard", "blocks.5.attn.hook_z");
        let sae = load(&c, &weights(&[])).unwrap();
        assert_eq!((sae.layer, sae.site), (5, SaeSite::Z));
        assert_eq!(sae.hook_name, SaeSite::Z.hook_name(5));
        // hook_z reshape on another hook
        let mut bad = v6_cfg("standard", "blocks.5.hook_resid_pre");
        bad["reshape_activations"] = json!("hook_z");
        let e = refusal(&bad, &weights(&[]));
        assert!(
            e.contains("reshape_activations is \"hook_z\"")
                && e.contains("blocks.5.hook_resid_pre"),
            "{e}"
        );
        // hook_z trained without fold_value_biases
        let mut nofold = c.clone();
        nofold["metadata"]["model_from_pretrained_kwargs"] =
            json!({"center_writing_weights": true});
        let e = refusal(&nofold, &weights(&[]));
        assert!(e.contains("fold_value_biases"), "{e}");
        // the hook-z-kk SAEs, converted by SAELens: no kwargs
        let mut kk = c.clone();
        kk["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("model_from_pretrained_kwargs");
        assert!(load(&kk, &weights(&[])).is_ok());
    }

    #[test]
    fn check_model_refuses_another_width_or_a_missing_layer() {
        let gpt2 = super::super::published::Repo::Gpt2.config();
        let mut sae = load(&legacy_cfg(), &weights(&[])).unwrap();
        let e = sae.check_model(&gpt2).unwrap_err().to_string();
        assert!(e.contains("d_in = 4") && e.contains("d_model = 768"), "{e}");
        let mut small = gpt2.clone();
        small.d_model = D_IN;
        small.n_heads = 2;
        small.d_head = 2;
        small.n_layers = 2;
        sae.check_model(&small).unwrap();
        sae.layer = 2;
        sae.hook_name = "blocks.2.hook_resid_pre".into();
        let e = sae.check_model(&small).unwrap_err().to_string();
        assert!(e.contains("layer 2") && e.contains("2 layers"), "{e}");
        sae.layer = 1;
        sae.site = SaeSite::Z;
        small.d_head = 1;
        let e = sae.check_model(&small).unwrap_err().to_string();
        assert!(e.contains("n_heads * d_head = 2 * 1 = 2"), "{e}");
    }

    #[test]
    fn hooks_other_than_the_six_are_refused_by_name() {
        for hook in [
            "blocks.0.hook_mlp_in",
            "blocks.0.mlp.hook_post",
            "blocks.0.ln1.hook_normalized",
            "hook_embed",
            "blocks.x.hook_resid_pre",
        ] {
            let mut c = legacy_cfg();
            c["hook_point"] = json!(hook);
            c.as_object_mut().unwrap().remove("hook_point_layer");
            let e = refusal(&c, &weights(&[]));
            assert!(
                e.contains(hook) && e.contains("blocks.L.attn.hook_z"),
                "{e}"
            );
        }
        let mut c = legacy_cfg();
        c["hook_point_layer"] = json!(2);
        assert!(refusal(&c, &weights(&[])).contains("hook_point_layer is 2"));
    }

    #[test]
    fn per_head_saes_are_refused() {
        let mut c = legacy_cfg();
        c["hook_point"] = json!("blocks.1.attn.hook_z");
        c["hook_point_head_index"] = json!(3);
        let e = refusal(&c, &weights(&[]));
        assert!(e.contains("hook_head_index 3"), "{e}");
        let mut c6 = v6_cfg("standard", "blocks.1.attn.hook_z");
        c6["metadata"]["hook_head_index"] = json!(0);
        assert!(refusal(&c6, &weights(&[])).contains("hook_head_index 0"));
    }

    #[test]
    fn run_time_normalisation_is_refused_by_mode() {
        for mode in [
            "expected_average_only_in",
            "constant_norm_rescale",
            "layer_norm",
            "bogus",
        ] {
            let mut c = v6_cfg("standard", "blocks.1.hook_resid_pre");
            c["normalize_activations"] = json!(mode);
            let e = refusal(&c, &weights(&[]));
            assert!(e.contains(&format!("\"{mode}\"")), "{e}");
        }
        // legacy: true means expected_average_only_in, false and null none
        let mut c = legacy_cfg();
        c["normalize_activations"] = json!(true);
        assert!(refusal(&c, &weights(&[])).contains("expected_average_only_in"));
        for ok in [json!(false), json!(null), json!("none")] {
            c["normalize_activations"] = ok;
            assert!(load(&c, &weights(&[])).is_ok());
        }
    }

    #[test]
    fn other_architectures_are_refused_by_name() {
        for arch in ["gated", "batchtopk", "transcoder", "sparse_magic"] {
            let c = v6_cfg(arch, "blocks.1.hook_resid_pre");
            let e = refusal(&c, &weights(&[]));
            assert!(e.contains(&format!("\"{arch}\"")), "{e}");
        }
        let mut c = v6_cfg("standard", "blocks.1.hook_resid_pre");
        c.as_object_mut().unwrap().remove("architecture");
        assert!(refusal(&c, &weights(&[])).contains("no architecture"));
    }

    #[test]
    fn other_models_and_processing_are_refused() {
        let mut c = legacy_cfg();
        c["model_name"] = json!("pythia-70m-deduped");
        assert!(refusal(&c, &weights(&[])).contains("\"pythia-70m-deduped\""));
        for ok in ["gpt2", "openai-community/gpt2", "gpt2-small"] {
            c["model_name"] = json!(ok);
            assert!(load(&c, &weights(&[])).is_ok(), "{ok}");
        }
        // SAELens's training default: an unprocessed model
        let mut c6 = v6_cfg("standard", "blocks.1.hook_resid_pre");
        c6["metadata"]["model_from_pretrained_kwargs"] = json!({"center_writing_weights": false});
        let e = refusal(&c6, &weights(&[]));
        assert!(
            e.contains("center_writing_weights") && e.contains("blocks.1.hook_resid_pre"),
            "{e}"
        );
        // fold_ln does not change the residual stream
        c6["metadata"]["model_from_pretrained_kwargs"] =
            json!({"center_writing_weights": true, "fold_ln": false});
        assert!(load(&c6, &weights(&[])).is_ok());
        c6["metadata"]["model_from_pretrained_kwargs"] = json!({});
        assert!(load(&c6, &weights(&[])).is_ok());
        c6["metadata"]["model_class_name"] = json!("AutoModelForCausalLM");
        assert!(refusal(&c6, &weights(&[])).contains("AutoModelForCausalLM"));
    }

    #[test]
    fn bad_tensors_are_refused_by_name() {
        let c = legacy_cfg();
        // missing
        let short = st(&[
            ("W_enc", vec![D_IN, D_SAE], w_enc()),
            ("b_enc", vec![D_SAE], B_ENC.to_vec()),
            ("b_dec", vec![D_IN], B_DEC.to_vec()),
        ]);
        let e = refusal(&c, &short);
        assert!(
            e.contains("no tensor `W_dec`") && e.contains("[6, 4]"),
            "{e}"
        );
        // wrong shape (transposed)
        let t = st(&[
            ("W_enc", vec![D_SAE, D_IN], w_enc()),
            ("W_dec", vec![D_SAE, D_IN], w_dec()),
            ("b_enc", vec![D_SAE], B_ENC.to_vec()),
            ("b_dec", vec![D_IN], B_DEC.to_vec()),
        ]);
        let e = refusal(&c, &t);
        assert!(
            e.contains("`W_enc` has shape [6, 4]") && e.contains("imply [4, 6]"),
            "{e}"
        );
        // not finite
        let mut b = B_ENC.to_vec();
        b[2] = f32::NAN;
        let t = st(&[
            ("W_enc", vec![D_IN, D_SAE], w_enc()),
            ("W_dec", vec![D_SAE, D_IN], w_dec()),
            ("b_enc", vec![D_SAE], b),
            ("b_dec", vec![D_IN], B_DEC.to_vec()),
        ]);
        let e = refusal(&c, &t);
        assert!(e.contains("`b_enc` holds NaN at flat index 2"), "{e}");
        // a gated SAE's tensors under a standard cfg
        let e = refusal(&c, &weights(&[("b_gate", vec![D_SAE], vec![0.; D_SAE])]));
        assert!(e.contains("`b_gate`"), "{e}");
        // a scaling_factor of ones is dropped, any other refused
        assert!(load(
            &c,
            &weights(&[("scaling_factor", vec![D_SAE], vec![1.; D_SAE])])
        )
        .is_ok());
        let e = refusal(
            &c,
            &weights(&[("scaling_factor", vec![D_SAE], vec![2.; D_SAE])]),
        );
        assert!(e.contains("scaling_factor"), "{e}");
        // not safetensors, not JSON
        assert!(refusal(&c, b"nonsense").contains(SAE_WEIGHTS_FILE));
        let e = Sae::from_files("x", "{", &weights(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid JSON"), "{e}");
    }

    #[test]
    fn dtypes_are_read_as_saelens_casts_them() {
        let mut c = legacy_cfg();
        c["dtype"] = json!("torch.bfloat16");
        let mut w = w_enc();
        w[0] = 1.001; // bf16 keeps 8 bits of mantissa: 1.0
        let t = st(&[
            ("W_enc", vec![D_IN, D_SAE], w),
            ("W_dec", vec![D_SAE, D_IN], w_dec()),
            ("b_enc", vec![D_SAE], B_ENC.to_vec()),
            ("b_dec", vec![D_IN], B_DEC.to_vec()),
        ]);
        assert_eq!(load(&c, &t).unwrap().w_enc[0], 1.0);
        c["dtype"] = json!("float32");
        assert_eq!(load(&c, &t).unwrap().w_enc[0], 1.001);
        c["dtype"] = json!("int8");
        assert!(refusal(&c, &t).contains("\"int8\""));
    }

    #[test]
    fn saelens_versions_are_ordered_as_packaging_orders_them() {
        for (v, six) in [
            ("6.0.0", true),
            ("6.18.0", true),
            ("6.0.0-rc.0", true),
            ("6.0.0rc1", true),
            ("7.1", true),
            ("5.10.3", false),
            ("3.13.1", false),
            ("6.0.0a1", false),
            ("6.0.0.dev0", false),
        ] {
            assert_eq!(is_saelens6(v), Ok(six), "{v}");
        }
        assert!(is_saelens6("latest").is_err());
    }

    /// The SAELens-written folders of tests/fixtures/sae (named
    /// `<architecture>_<site>_<layer>`, `legacy_` first for the legacy
    /// layout), where the checkout has them.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn the_saelens_written_fixtures_load() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sae");
        let Ok(entries) = std::fs::read_dir(&root) else {
            return;
        };
        for e in entries.flatten() {
            let dir = e.path();
            if !dir.join(SAE_CFG_FILE).is_file() {
                continue;
            }
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(rest) = name.strip_prefix("scaled_") {
                // expected_average_only_in: refused without its factor, loaded with it
                let err = Sae::load_dir(&dir).unwrap_err().to_string();
                assert!(err.contains("expected_average_only_in"), "{name}: {err}");
                let cfg = std::fs::read_to_string(dir.join(SAE_CFG_FILE)).unwrap();
                let w = std::fs::read(dir.join(SAE_WEIGHTS_FILE)).unwrap();
                let plain = Sae::from_files_scaled(&name, &cfg, &w, Some(1.0)).unwrap();
                let folded = Sae::from_files_scaled(&name, &cfg, &w, Some(2.0)).unwrap();
                assert!(rest.starts_with(folded.architecture.name()), "{name}");
                // W_enc · s, W_dec / s, b_dec / s
                assert_eq!(folded.w_enc[5], plain.w_enc[5] * 2.0);
                assert_eq!(folded.w_dec[5], plain.w_dec[5] / 2.0);
                assert_eq!(folded.b_dec[3], plain.b_dec[3] / 2.0);
                continue;
            }
            let sae = Sae::load_dir(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
            let legacy = name.starts_with("legacy_");
            assert_eq!(
                sae.layout,
                if legacy {
                    LAYOUT_LEGACY
                } else {
                    LAYOUT_SAELENS6
                },
                "{name}"
            );
            let rest = name.strip_prefix("legacy_").unwrap_or(&name);
            assert!(rest.starts_with(sae.architecture.name()), "{name}");
            assert!(
                sae.hook_name.starts_with(&format!("blocks.{}.", sae.layer)),
                "{name}"
            );
            assert_eq!(sae.name, name);
            let x: Vec<f32> = (0..3 * sae.d_in)
                .map(|i| ((i * 7919) % 13) as f32 - 6.0)
                .collect();
            let f = sae.encode(&x, 3);
            assert_eq!(f.len(), 3 * sae.d_sae);
            assert!(f.iter().all(|v| v.is_finite() && *v >= 0.0), "{name}");
            if let Some(k) = sae.k {
                for row in f.chunks(sae.d_sae) {
                    assert!(row.iter().filter(|v| **v > 0.0).count() <= k, "{name}");
                }
            }
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("patchlab-sae-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn load_dir_reads_a_saelens_folder_and_refuses_others() {
        let root = temp_dir("dir");
        let good = root.join("blocks.1.hook_resid_pre");
        std::fs::create_dir_all(&good).unwrap();
        std::fs::write(good.join(SAE_CFG_FILE), legacy_cfg().to_string()).unwrap();
        std::fs::write(good.join(SAE_WEIGHTS_FILE), weights(&[])).unwrap();
        std::fs::write(good.join("sparsity.safetensors"), b"ignored").unwrap();
        let sae = Sae::load_dir(&good).unwrap();
        assert_eq!(sae.name, "blocks.1.hook_resid_pre");
        // the release's folder: several SAEs
        let e = Sae::load_dir(&root).unwrap_err().to_string();
        assert!(
            e.contains("several SAEs") && e.contains("blocks.1.hook_resid_pre"),
            "{e}"
        );
        // a PyTorch checkpoint
        let pt = root.join("kk");
        std::fs::create_dir_all(&pt).unwrap();
        let ckpt = "gpt2-small_L0_Hcat_z_lr1.20e-03_l11.80e+00_ds24576_bs4096_dc1.00e-06_rsanthropic_rie25000_nr4_v9.pt";
        std::fs::write(pt.join(ckpt), b"pickle").unwrap();
        let e = Sae::load_dir(&pt).unwrap_err().to_string();
        assert!(e.contains(ckpt) && e.contains("save_model"), "{e}");
        // sparsify
        let sp = root.join("sparsify");
        std::fs::create_dir_all(&sp).unwrap();
        std::fs::write(sp.join(SAE_CFG_FILE), "{}").unwrap();
        std::fs::write(sp.join("sae.safetensors"), b"").unwrap();
        let e = Sae::load_dir(&sp).unwrap_err().to_string();
        assert!(e.contains("sae.safetensors"), "{e}");
        // nothing
        let e = Sae::load_dir(&root.join("absent")).unwrap_err().to_string();
        assert!(e.contains("no such folder"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
