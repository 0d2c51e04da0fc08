//! patchlab against TransformerLens + captum: goldens written by
//! tests/reference/make_goldens.py on models from `patchlab random-model`,
//! regenerated here bit for bit and compared with the tolerances of
//! docs/testing.md, "How we know it is right" (tests/common/golden.rs;
//! tests/gpu_backend.rs runs the same check on the GPU backend).

use crate::common::golden::{check_golden, MODEL_A, MODEL_B};
use patchlab::engine::cpu::CpuEngine;
use patchlab::model::random::{random_weights, RandomSpec};
use pollster::block_on;

fn check_cpu((file, spec): (&str, RandomSpec)) {
    let e = CpuEngine::new(spec.config(), random_weights(&spec)).unwrap();
    block_on(check_golden(&e, file, &spec));
}

#[test]
fn golden_model_a_two_layers_four_heads() {
    check_cpu(MODEL_A)
}

#[test]
fn golden_model_b_three_layers_d_model_48() {
    check_cpu(MODEL_B)
}
