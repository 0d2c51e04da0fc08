//! The kernels, one WGSL file each, and their compilation.

use super::device::backend_err;
use crate::error::Result;
use std::borrow::Cow;

/// The kernels, one WGSL file each (shaders/*.wgsl).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(in crate::engine::gpu) enum K {
    Matmul,
    MatmulSkinny,
    MatmulTiled,
    LayerNorm,
    LayerNormBackward,
    Gelu,
    GeluBackward,
    GatherLast,
    AttnScores,
    AttnSoftmax,
    AttnPv,
    AttnTail,
    AttnTailBackwardQ,
    AttnTailBackwardKv,
    PatchHeads,
    PatchNeurons,
    PatchPath,
    WeightedSum,
    Metric,
    AnswerDir,
    Logits,
    ProbDiff,
    Scatter,
    GraphInputs,
    GraphSum,
    BcastAdd,
}

impl K {
    pub(super) const ALL: [K; 26] = [
        K::Matmul,
        K::MatmulSkinny,
        K::MatmulTiled,
        K::LayerNorm,
        K::LayerNormBackward,
        K::Gelu,
        K::GeluBackward,
        K::GatherLast,
        K::AttnScores,
        K::AttnSoftmax,
        K::AttnPv,
        K::AttnTail,
        K::AttnTailBackwardQ,
        K::AttnTailBackwardKv,
        K::PatchHeads,
        K::PatchNeurons,
        K::PatchPath,
        K::WeightedSum,
        K::Metric,
        K::AnswerDir,
        K::Logits,
        K::ProbDiff,
        K::Scatter,
        K::GraphInputs,
        K::GraphSum,
        K::BcastAdd,
    ];

    pub(super) fn source(self) -> (&'static str, &'static str) {
        match self {
            K::Matmul => ("matmul", include_str!("../shaders/matmul.wgsl")),
            K::MatmulSkinny => (
                "matmul_skinny",
                include_str!("../shaders/matmul_skinny.wgsl"),
            ),
            K::MatmulTiled => ("matmul_tiled", include_str!("../shaders/matmul_tiled.wgsl")),
            K::LayerNorm => ("layer_norm", include_str!("../shaders/layer_norm.wgsl")),
            K::LayerNormBackward => (
                "layer_norm_backward",
                include_str!("../shaders/layer_norm_backward.wgsl"),
            ),
            K::Gelu => ("gelu", include_str!("../shaders/gelu.wgsl")),
            K::GeluBackward => (
                "gelu_backward",
                include_str!("../shaders/gelu_backward.wgsl"),
            ),
            K::GatherLast => ("gather_last", include_str!("../shaders/gather_last.wgsl")),
            K::AttnScores => ("attn_scores", include_str!("../shaders/attn_scores.wgsl")),
            K::AttnSoftmax => ("attn_softmax", include_str!("../shaders/attn_softmax.wgsl")),
            K::AttnPv => ("attn_pv", include_str!("../shaders/attn_pv.wgsl")),
            K::AttnTail => ("attn_tail", include_str!("../shaders/attn_tail.wgsl")),
            K::AttnTailBackwardQ => (
                "attn_tail_backward_q",
                include_str!("../shaders/attn_tail_backward_q.wgsl"),
            ),
            K::AttnTailBackwardKv => (
                "attn_tail_backward_kv",
                include_str!("../shaders/attn_tail_backward_kv.wgsl"),
            ),
            K::PatchHeads => ("patch_heads", include_str!("../shaders/patch_heads.wgsl")),
            K::PatchNeurons => (
                "patch_neurons",
                include_str!("../shaders/patch_neurons.wgsl"),
            ),
            K::PatchPath => ("patch_path", include_str!("../shaders/patch_path.wgsl")),
            K::WeightedSum => ("weighted_sum", include_str!("../shaders/weighted_sum.wgsl")),
            K::Metric => ("metric", include_str!("../shaders/metric.wgsl")),
            K::AnswerDir => ("answer_dir", include_str!("../shaders/answer_dir.wgsl")),
            K::Logits => ("logits", include_str!("../shaders/logits.wgsl")),
            K::ProbDiff => ("prob_diff", include_str!("../shaders/prob_diff.wgsl")),
            K::Scatter => ("scatter", include_str!("../shaders/scatter.wgsl")),
            K::GraphInputs => ("graph_inputs", include_str!("../shaders/graph_inputs.wgsl")),
            K::GraphSum => ("graph_sum", include_str!("../shaders/graph_sum.wgsl")),
            K::BcastAdd => ("bcast_add", include_str!("../shaders/bcast_add.wgsl")),
        }
    }
}

/// Sizes the attention kernels' workgroup arrays are compiled for.
#[derive(Clone, Copy)]
pub(in crate::engine::gpu) struct ShaderSizes {
    pub max_t: usize,
    pub max_dh: usize,
}

/// Compiles every kernel (common.wgsl first, the workgroup arrays sized by
/// `sizes`): its pipeline and bind group layout, in `K::ALL`'s order.
pub(super) async fn compile_kernels(
    device: &wgpu::Device,
    sizes: ShaderSizes,
) -> Result<Vec<(wgpu::ComputePipeline, wgpu::BindGroupLayout)>> {
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let common = include_str!("../shaders/common.wgsl");
    let pipelines = K::ALL
        .iter()
        .map(|k| {
            let (name, src) = k.source();
            let src = format!("{common}\n{src}")
                .replace("{{MAX_T}}", &sizes.max_t.to_string())
                .replace("{{MAX_DH}}", &sizes.max_dh.to_string());
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(Cow::Owned(src)),
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
            let layout = pipeline.get_bind_group_layout(0);
            (pipeline, layout)
        })
        .collect();
    if let Some(e) = scope.pop().await {
        return Err(backend_err(format!("compiling the kernels: {e}")));
    }
    Ok(pipelines)
}
