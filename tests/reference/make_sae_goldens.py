#!/usr/bin/env python3
"""Feature-level attribution goldens for sparse autoencoders (SAEs), computed with SAELens itself.

    python make_sae_goldens.py --model DIR --tokenizer DIR --cases site_cases.json \
        --fixtures tests/fixtures/sae --out tests/golden/sae_model_a.json \
        [--ig-steps 50] [--seed 1] [--write-fixtures]

The model, tokens and metric are make_goldens.py's (load_tl, load_tokenizer,
prepare_case, make_metric): TransformerLens's default processing (fold_ln,
center_writing_weights, center_unembed, fold_value_biases). Its processed
weights are copied into a sae_lens.HookedSAETransformer (same cfg,
use_attn_result, use_hook_mlp_in).

The SAEs are the folders under --fixtures (FIXTURES below): one in the legacy
pre-6.0 layout of the published jbloom/GPT2-Small-SAEs-Reformatted folders
(cfg.json with hook_point / hook_point_layer / ..., sae_weights.safetensors,
sparsity.safetensors), five in the SAELens >= 6 layout written by
SAE.save_model. --write-fixtures (re)creates them first: random weights
(torch.manual_seed per fixture) with b_enc / threshold calibrated on the cases'
activations so that roughly 10-40 % of the features fire per token, plus a few
features that never fire on these prompts. Every SAE is read back with
SAE.load_from_disk(folder) (the legacy folder too: its cfg has no
sae_lens_version, so handle_config_defaulting converts it with
handle_pre_6_0_config, the same code path SAE.from_pretrained takes for
gpt2-small-res-jb) and attached alone with
HookedSAETransformer.add_sae(sae, use_error_term=True).

Per SAE, prompt pair and direction (base/other = clean/corrupt for
clean_to_corrupt, reversed for corrupt_to_clean), with f = the SAE's
hook_sae_acts_post [T, d_sae] of a run:

  ap_all [d_sae]        m(base run with f[:, i] := f_other[:, i]); the error term stays the base run's
  ap_by_pos [T, d_sae]  m(base run with f[p, i] := f_other[p, i]); entries with f_base == f_other are m_base
  atp_by_pos [T, d_sae] (f_other - f_base) * dm/df at the base run (float64 products); atp_all = sum over p
  ig_by_pos [T, d_sae]  captum LayerIntegratedGradients(layer=sae.hook_sae_acts_post, multiply_by_inputs=True),
                        inputs = f_other, baselines = f_base, 'gausslegendre', ig_steps; ig_all = sum over p

m = logits[0, -1, correct] - logits[0, -1, incorrect] (raw, not normalised). Also per
case: tokens, m of both runs, x = the hook activation the SAE read (hook_sae_input:
TransformerLens's processed value, hook_z flattened to [T, n_heads * d_head]) and f of
both runs. The format is in tests/reference/README.md ("SAE goldens").

Self-checks (printed, exit 1 on failure):
  (a) f := f_other at every feature and position AND hook_sae_error := the other run's
      error gives the same m as the plain model with the whole hook := the other run's x;
  (b) IG completeness: sum(ig_all) == m(base with f := f_other, base error) - m_base,
      captum's convergence delta small;
  (c) ap_all of every feature with f_base == f_other at all positions equals m_base;
  (d) logits of the HookedSAETransformer with the SAE(s) attached (error term; each SAE
      alone and all six at once) equal load_tl's HookedTransformer logits, and its
      log-probs equal HF GPT-2's;
  (e) x equals the plain model's cached hook value and f equals the encode written out
      by hand (standard / jumprelu / topk, with rescale_acts_by_decoder_norm);
  and the file round-trips through JSON.

Reference only: CI never runs this (it needs torch, ~GBs).
"""
import argparse
import copy
import json
import math
import os
import platform
import sys
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_goldens as mg  # noqa: E402  (sets torch threads to 1)

import captum  # noqa: E402
import sae_lens  # noqa: E402
from captum.attr import LayerIntegratedGradients  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from sae_lens import SAE, HookedSAETransformer  # noqa: E402
from sae_lens.saes.sae import SAEMetadata  # noqa: E402

# SAELens's deprecation / "no hook" chatter is not useful here
warnings.filterwarnings("ignore", category=DeprecationWarning)

DIRS = mg.DIRS
METHODS = ("ap_all", "ap_by_pos", "atp_all", "atp_by_pos", "ig_all", "ig_by_pos")

# name, layout, architecture, hook_name, d_sae, extra config, seed
FIXTURES = [
    ("legacy_standard_resid_pre_1", "legacy", "standard", "blocks.1.hook_resid_pre", 96, {}, 101),
    ("jumprelu_z_0", "v6", "jumprelu", "blocks.0.attn.hook_z", 80, {"reshape_activations": "hook_z"}, 102),
    ("topk_mlp_out_0", "v6", "topk", "blocks.0.hook_mlp_out", 72, {"k": 8}, 103),
    ("standard_resid_post_1", "v6", "standard", "blocks.1.hook_resid_post", 64, {"apply_b_dec_to_input": False}, 104),
    ("standard_attn_out_1", "v6", "standard", "blocks.1.hook_attn_out", 48, {}, 105),
    ("jumprelu_resid_mid_0", "v6", "jumprelu", "blocks.0.hook_resid_mid", 64, {}, 106),
    # normalize_activations "expected_average_only_in", as gpt2-small-mlp-tm's SAEs: trained on
    # activations scaled by norm_scaling_factor, which SAE.from_pretrained folds in from the yaml
    ("scaled_standard_mlp_out_1", "v6", "standard", "blocks.1.hook_mlp_out", 56,
     {"normalize_activations": "expected_average_only_in", "norm_scaling_factor": 1.7}, 107),
    # TopK choosing and decoding by the decoder rows' norms (rescale_acts_by_decoder_norm)
    ("topk_rescaled_resid_post_0", "v6", "topk", "blocks.0.hook_resid_post", 40,
     {"k": 6, "rescale_acts_by_decoder_norm": True}, 108),
]


# ----------------------------------------------------------------------------------------------
# model


def load_models(model_dir):
    """load_tl's HookedTransformer, HF GPT-2, and a HookedSAETransformer with the same
    cfg and the same (already processed) weights."""
    model, hf, loader = mg.load_tl(model_dir)
    sae_model = HookedSAETransformer(copy.deepcopy(model.cfg), move_to_device=True)
    sae_model.load_state_dict(model.state_dict(), strict=True)
    sae_model.set_use_attn_result(True)
    sae_model.set_use_hook_mlp_in(True)
    sae_model.eval()
    for p in sae_model.parameters():
        p.requires_grad_(False)
    return model, sae_model, hf, loader


def plain_hook_value(cache, hook_name):
    """The plain model's cached hook value as the SAE reads it, batch dim dropped: [T, d_in]."""
    v = cache[hook_name][0]
    return v.reshape(v.shape[0], -1)  # hook_z [T, H, d_head] -> [T, H * d_head]


# ----------------------------------------------------------------------------------------------
# fixtures


def legacy_cfg(hook_name, d_in, d_sae):
    """cfg.json of the published jbloom/GPT2-Small-SAEs-Reformatted folders (SAELens < 6):
    exactly their field set and order; values adapted to this SAE."""
    layer = int(hook_name.split(".")[1])
    return {
        "model_name": "gpt2-small",
        "hook_point": hook_name,
        "hook_point_layer": layer,
        "hook_point_head_index": None,
        "dataset_path": "Skylion007/openwebtext",
        "is_dataset_tokenized": False,
        "context_size": 128,
        "use_cached_activations": False,
        "cached_activations_path": f"activations/Skylion007_openwebtext/gpt2-small/{hook_name}",
        "d_in": d_in,
        "n_batches_in_buffer": 128,
        "total_training_tokens": 300000000,
        "store_batch_size": 32,
        "device": "mps",
        "seed": 42,
        "dtype": "torch.float32",
        "b_dec_init_method": "geometric_median",
        "expansion_factor": d_sae / d_in,
        "from_pretrained_path": None,
        "l1_coefficient": 8e-05,
        "lr": 0.0004,
        "lr_scheduler_name": None,
        "lr_warm_up_steps": 5000,
        "train_batch_size": 4096,
        "use_ghost_grads": False,
        "feature_sampling_window": 1000,
        "feature_sampling_method": None,
        "resample_batches": 1028,
        "feature_reinit_scale": 0.2,
        "dead_feature_window": 5000,
        "dead_feature_estimation_method": "no_fire",
        "dead_feature_threshold": 1e-08,
        "log_to_wandb": True,
        "wandb_project": "mats_sae_training_gpt2_small_resid_pre_5",
        "wandb_entity": None,
        "wandb_log_frequency": 100,
        "n_checkpoints": 10,
        "checkpoint_path": "checkpoints/y1t51byy",
        "d_sae": d_sae,
        "tokens_per_buffer": 67108864,
        "run_name": f"{d_sae}-L1-8e-05-LR-0.0004-Tokens-3.000e+08",
    }


def v6_metadata(hook_name):
    """The metadata SAELens 6's LLM training runner sets (_set_sae_metadata)."""
    return SAEMetadata(
        model_name="gpt2-small",
        model_class_name="HookedTransformer",
        hook_name=hook_name,
        hook_head_index=None,
        dataset_path="Skylion007/openwebtext",
        context_size=128,
        seqpos_slice=(None,),
        model_from_pretrained_kwargs={},
        prepend_bos=True,
        exclude_special_tokens=False,
        sequence_separator_token="bos",
        disable_concat_sequences=False,
    )


def split_threshold(v, n_active):
    """A value with about n_active entries of v above it: the midpoint of the two sorted
    neighbours nearest that split whose gap is at least 1 % of v's spread, so that no
    activation lies within float noise of a threshold (v holds each shared prefix token
    twice, once per run, so equal neighbours are common)."""
    s = torch.sort(v).values
    k = len(s) - n_active
    if k <= 0:
        return float(s[0]) - 1.0
    if k >= len(s):
        return float(s[-1]) + 1.0
    margin = 0.01 * float(s[-1] - s[0])
    for off in range(len(s)):
        for j in (k - off, k + off):
            if 1 <= j < len(s) and float(s[j] - s[j - 1]) >= margin:
                return float((s[j - 1] + s[j]) / 2)
    return float(s[-1]) + 1.0


def make_fixture_weights(arch, X, d_sae, extra, seed):
    """Random SAE weights for activations X [N, d_in] (all tokens of all cases, both runs)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    N, d_in = X.shape
    xs = float(X.std())
    apply_b_dec = extra.get("apply_b_dec_to_input", True)
    b_dec = (X.mean(0) + 0.1 * xs * torch.randn(d_in, generator=g)) if apply_b_dec else 0.3 * xs * torch.randn(d_in, generator=g)
    W_enc = torch.randn(d_in, d_sae, generator=g) / (math.sqrt(d_in) * xs)
    sae_in = X - b_dec if apply_b_dec else X
    pre0 = sae_in @ W_enc  # [N, d_sae]
    # decoder: rows near the encoder's columns, scaled to the activations' size
    W_dec = W_enc.T / W_enc.T.norm(dim=-1, keepdim=True) + 0.5 * torch.randn(d_sae, d_in, generator=g) / math.sqrt(d_in)
    W_dec = W_dec / W_dec.norm(dim=-1, keepdim=True)
    W_dec = W_dec * float(X.norm(dim=-1).mean()) / math.sqrt(0.25 * d_sae) * (0.5 + torch.rand(d_sae, 1, generator=g))
    state = {"W_enc": W_enc, "W_dec": W_dec, "b_dec": b_dec}
    # features that never fire on these prompts (dead), the others fire on 10-40 % of the tokens
    n_dead = max(2, d_sae // 24)
    dead = torch.randperm(d_sae, generator=g)[:n_dead]
    frac = 0.10 + 0.30 * torch.rand(d_sae, generator=g)
    if arch == "topk":
        state["b_enc"] = 0.1 * torch.randn(d_sae, generator=g)
        state["b_enc"][dead] = -float(pre0.abs().max()) - 10.0
    else:
        thr = torch.tensor([split_threshold(pre0[:, i], max(1, int(round(float(frac[i]) * N))))
                            for i in range(d_sae)])
        thr[dead] = pre0.max(0).values[dead] + 0.5
        if arch == "standard":
            state["b_enc"] = -thr
        elif arch == "jumprelu":
            theta = 0.1 + 0.4 * torch.rand(d_sae, generator=g)
            state["threshold"] = theta
            state["b_enc"] = theta - thr  # pre > theta  <=>  pre0 > thr
        else:
            raise ValueError(arch)
    return {k: v.float().contiguous() for k, v in state.items()}


def write_fixtures(model, toks_all, folder):
    """Creates the FIXTURES folders (see the module docstring)."""
    with torch.no_grad():
        caches = [model.run_with_cache(t)[1] for t in toks_all]
    for name, layout, arch, hook_name, d_sae, extra, seed in FIXTURES:
        X = torch.cat([plain_hook_value(c, hook_name) for c in caches])
        # an expected_average_only_in SAE was trained on activations times its factor
        X = X * extra.get("norm_scaling_factor", 1.0)
        d_in = X.shape[1]
        state = make_fixture_weights(arch, X, d_sae, extra, seed)
        out = os.path.join(folder, name)
        os.makedirs(out, exist_ok=True)
        for f in os.listdir(out):
            os.remove(os.path.join(out, f))
        if layout == "legacy":
            # the published layout, written as SAELens < 6 wrote it
            with open(os.path.join(out, "cfg.json"), "w") as f:
                json.dump(legacy_cfg(hook_name, d_in, d_sae), f)
            save_file({k: state[k] for k in ("W_enc", "W_dec", "b_enc", "b_dec")},
                      os.path.join(out, "sae_weights.safetensors"))
            sae_in = X - state["b_dec"]
            fires = torch.relu(sae_in @ state["W_enc"] + state["b_enc"]) > 0
            log_sparsity = torch.log10(fires.float().mean(0) + 1e-10)
            save_file({"sparsity": log_sparsity.float().contiguous()}, os.path.join(out, "sparsity.safetensors"))
        else:
            cfg = {"architecture": arch, "d_in": d_in, "d_sae": d_sae, "dtype": "float32", "device": "cpu",
                   "apply_b_dec_to_input": extra.get("apply_b_dec_to_input", True),
                   "normalize_activations": extra.get("normalize_activations", "none"),
                   "reshape_activations": extra.get("reshape_activations", "none")}
            if arch == "topk":
                cfg["k"] = extra["k"]
                cfg["rescale_acts_by_decoder_norm"] = extra.get("rescale_acts_by_decoder_norm", False)
            sae = SAE.from_dict(cfg)
            sae.cfg.metadata = v6_metadata(hook_name)
            sae.load_state_dict(state, strict=True)
            sae.save_model(out)
        print(f"  wrote fixture {out} ({layout}, {arch}, {hook_name}, d_in {d_in}, d_sae {d_sae})", flush=True)


# ----------------------------------------------------------------------------------------------
# checks


class Checks:
    def __init__(self):
        self.failures = []
        self.worst_ig = []

    def true(self, what, ok, detail=""):
        print(f"  [{'ok' if ok else 'FAIL'}] {what} {detail}".rstrip(), flush=True)
        if not ok:
            self.failures.append(f"{what} {detail}")

    def close(self, what, a, b, tol):
        a = torch.as_tensor(a).double()
        b = torch.as_tensor(b).double()
        if tuple(a.shape) != tuple(b.shape):
            self.true(what, False, f"shape {tuple(a.shape)} vs {tuple(b.shape)}")
            return
        d = float((a - b).abs().max()) if a.numel() else 0.0
        self.true(f"{what}: max |diff| {d:.3g} (tol {tol:.3g})", d <= tol)


def manual_encode(sae, x):
    """The encode of SAELens's StandardSAE / JumpReLUSAE / TopKSAE written out (x [T, d_in])."""
    cfg = sae.cfg
    sae_in = x - sae.b_dec * cfg.apply_b_dec_to_input
    pre = sae_in @ sae.W_enc + sae.b_enc
    arch = cfg.architecture()
    if arch == "standard":
        return torch.relu(pre)
    if arch == "jumprelu":
        return torch.relu(pre) * (pre > sae.threshold).to(pre.dtype)
    if arch == "topk":
        if getattr(cfg, "rescale_acts_by_decoder_norm", False):
            # chosen and kept scaled by the decoder rows' norms
            pre = pre * sae.W_dec.norm(dim=-1)
        vals, idx = torch.topk(pre, k=cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, idx, vals.relu())
    raise ValueError(arch)


# ----------------------------------------------------------------------------------------------
# methods


def hook_names(sae):
    h = sae.cfg.metadata.hook_name
    return h, f"{h}.hook_sae_input", f"{h}.hook_sae_acts_post", f"{h}.hook_sae_error"


@torch.no_grad()
def batched_feature_patches(model, base_tokens, acts_name, f_other, patches, metric):
    """patches: list of (positions or None, feature); copy b gets f[pos, feat] := f_other[pos, feat].
    Returns the raw metric of every copy (float64)."""
    T = base_tokens.shape[1]
    bs = mg.chunk_size(T, model.cfg.d_vocab)
    out = torch.empty(len(patches), dtype=torch.float64)
    for start in range(0, len(patches), bs):
        chunk = patches[start:start + bs]
        b_all = torch.arange(len(chunk))
        pos_b, pos_p, feat_i = [], [], []
        for b, (pos, i) in enumerate(chunk):
            ps = range(T) if pos is None else [pos]
            for p in ps:
                pos_b.append(b)
                pos_p.append(p)
                feat_i.append(i)
        pos_b, pos_p, feat_i = torch.tensor(pos_b), torch.tensor(pos_p), torch.tensor(feat_i)

        def hook(act, hook):
            act = act.clone()
            act[pos_b, pos_p, feat_i] = f_other[pos_p, feat_i]
            return act

        logits = model.run_with_hooks(base_tokens.expand(len(b_all), -1), fwd_hooks=[(acts_name, hook)])
        out[start:start + len(chunk)] = metric(logits).double()
    return out


def atp(model, base_tokens, acts_name, f_base, f_other, metric):
    saved = {}

    def leaf(act, hook):
        saved["f"] = act.detach().requires_grad_(True)
        return saved["f"]

    with torch.enable_grad():
        logits = model.run_with_hooks(base_tokens, fwd_hooks=[(acts_name, leaf)])
        (g,) = torch.autograd.grad(metric(logits)[0], saved["f"])
    prod = (f_other.double() - f_base.double()) * g[0].double()  # [T, d_sae]
    return prod


def integrated_gradients(model, sae, base_tokens, f_base, f_other, metric, n_steps):
    hp = sae.hook_sae_acts_post

    def forward_fn(x):
        # the replacement must run BEFORE captum's forward hook on the same HookPoint (captum
        # registers its hook first, then calls forward_fn): prepend=True (see make_site_goldens.py)
        hp.add_hook(lambda act, hook: x, prepend=True)
        try:
            logits = model(base_tokens.expand(x.shape[0], -1))
        finally:
            hp.remove_hooks("fwd")
        return metric(logits)

    lig = LayerIntegratedGradients(forward_fn, hp, multiply_by_inputs=True)
    with torch.enable_grad():
        attr, delta = lig.attribute(
            inputs=f_other.unsqueeze(0).clone(),
            baselines=f_base.unsqueeze(0).clone(),
            n_steps=n_steps,
            method="gausslegendre",
            return_convergence_delta=True,
        )
    with torch.no_grad():
        gap = float(forward_fn(f_other.unsqueeze(0))[0] - forward_fn(f_base.unsqueeze(0))[0])
    return attr.detach()[0].double(), float(delta.reshape(-1)[0]), gap


# ----------------------------------------------------------------------------------------------


def run_sae_case(model, plain, hf, sae, tok, case, n_steps, checks):
    hook, in_name, acts_name, err_name = hook_names(sae)
    clean, corrupt, first_diff, (correct, incorrect) = mg.prepare_case(tok, case, model.cfg.n_ctx)
    metric = mg.make_metric(correct, incorrect)
    T = len(clean)
    toks = {"clean": torch.tensor([clean]), "corrupt": torch.tensor([corrupt])}
    x, f, err, ms = {}, {}, {}, {}
    with torch.no_grad():
        for k in ("clean", "corrupt"):
            logits, cache = model.run_with_cache(toks[k], names_filter=[in_name, acts_name, err_name])
            x[k], f[k], err[k] = cache[in_name][0], cache[acts_name][0], cache[err_name][0]
            ms[k] = float(metric(logits)[0])
            # (d) the SAE with its error term leaves the model's output unchanged
            pl, pcache = plain.run_with_cache(toks[k])
            checks.close(f"(d) {k}: logits with the SAE (error term) vs load_tl's model", logits, pl, 1e-4)
            hl = hf(toks[k]).logits
            checks.close(f"(d) {k}: log_softmax with the SAE vs HF GPT-2", torch.log_softmax(logits, -1),
                         torch.log_softmax(hl, -1), 2e-4)
            # (e) x is the processed hook value; f is the encode written out
            checks.close(f"(e) {k}: hook_sae_input vs the plain model's {hook}", x[k],
                         plain_hook_value(pcache, hook), 1e-6)
            checks.close(f"(e) {k}: f vs the encode written out", f[k], manual_encode(sae, x[k]), 1e-5)
    out = {
        "clean": case["clean"],
        "corrupt": case["corrupt"],
        "correct": case["correct"],
        "incorrect": case["incorrect"],
        "bos": bool(case["bos"]),
        "clean_tokens": clean,
        "corrupt_tokens": corrupt,
        "first_diff": first_diff,
        "m_clean": mg.f32(ms["clean"]),
        "m_corrupt": mg.f32(ms["corrupt"]),
        "x": {k: mg.f32_nested(x[k]) for k in ("clean", "corrupt")},
        "f": {k: mg.f32_nested(f[k]) for k in ("clean", "corrupt")},
    }
    for meth in METHODS:
        out[meth] = {}
    out["ig_convergence_delta"] = {}
    scale = max(1.0, abs(ms["clean"]), abs(ms["corrupt"]))
    d_sae = f["clean"].shape[1]
    stats = {"active": {k: (f[k] > 0).float().mean().item() for k in ("clean", "corrupt")},
             "differ": (f["clean"] != f["corrupt"]).float().mean().item(),
             "one_run_only": ((f["clean"] > 0) != (f["corrupt"] > 0)).any(0).sum().item()}
    timings = {}
    for direction in DIRS:
        base, other = ("clean", "corrupt") if direction == "clean_to_corrupt" else ("corrupt", "clean")
        m_base = ms[base]
        fb, fo = f[base], f[other]
        t0 = time.time()
        ap_all = batched_feature_patches(model, toks[base], acts_name, fo, [(None, i) for i in range(d_sae)], metric)
        differ = (fb != fo)
        pairs = [(p, i) for p in range(T) for i in range(d_sae) if bool(differ[p, i])]
        ap_by_pos = torch.full((T, d_sae), m_base, dtype=torch.float64)
        if pairs:
            vals = batched_feature_patches(model, toks[base], acts_name, fo, pairs, metric)
            for (p, i), v in zip(pairs, vals):
                ap_by_pos[p, i] = v
        t1 = time.time()
        atp_by_pos = atp(model, toks[base], acts_name, fb, fo, metric)
        t2 = time.time()
        ig_by_pos, delta, gap = integrated_gradients(model, sae, toks[base], fb, fo, metric, n_steps)
        t3 = time.time()
        timings[direction] = (t1 - t0, t2 - t1, t3 - t2, len(pairs))
        maps = {"ap_all": ap_all, "ap_by_pos": ap_by_pos, "atp_all": atp_by_pos.sum(0), "atp_by_pos": atp_by_pos,
                "ig_all": ig_by_pos.sum(0), "ig_by_pos": ig_by_pos}
        for meth, v in maps.items():
            want = [d_sae] if meth.endswith("_all") else [T, d_sae]
            checks.true(f"{direction}: {meth} shape {list(v.shape)}", list(v.shape) == want)
            out[meth][direction] = mg.f32_nested(v)
        out["ig_convergence_delta"][direction] = mg.f32(delta)

        # (a) all features + the other run's error == the whole hook patched in the plain model
        with torch.no_grad():
            lg = model.run_with_hooks(toks[base], fwd_hooks=[
                (acts_name, lambda a, hook: fo.unsqueeze(0).expand_as(a).clone()),
                (err_name, lambda a, hook: err[other].unsqueeze(0).expand_as(a).clone())])
            m_sae = float(metric(lg)[0])
            def whole(a, hook, xo=x[other]):  # x is [T, d_in]; hook_z is [1, T, H, d_head]
                return xo.reshape(a.shape[1:]).unsqueeze(0).clone()

            lp = plain.run_with_hooks(toks[base], fwd_hooks=[(hook, whole)])
            m_plain = float(metric(lp)[0])
        checks.close(f"(a) {direction}: f := f_other and error := error_other vs {hook} := x_other (m)",
                     m_sae, m_plain, 1e-4)
        # (b) IG completeness
        with torch.no_grad():
            lg = model.run_with_hooks(toks[base], fwd_hooks=[
                (acts_name, lambda a, hook: fo.unsqueeze(0).expand_as(a).clone())])
            gap2 = float(metric(lg)[0]) - m_base
        checks.close(f"(b) {direction}: captum's gap vs m(f := f_other) - m_base", gap, gap2, 1e-5 * scale)
        s = float(ig_by_pos.sum())
        rel = abs(s - gap2) / max(1.0, abs(gap2))
        checks.worst_ig.append((rel, f"{sae.cfg.metadata.hook_name} {case['clean']!r} {direction}"))
        checks.true(f"(b) {direction}: sum(ig_all) {s:.6g} vs gap {gap2:.6g}, captum delta {delta:.3g}",
                    rel <= 1e-3 and abs(delta) <= 1e-3 * max(1.0, abs(gap2)))
        # (c) features equal in both runs at every position: ap_all == m_base
        same = (~differ).all(0)
        idx = torch.nonzero(same).flatten()
        if len(idx):
            checks.close(f"(c) {direction}: ap_all of the {len(idx)} features equal in both runs vs m_base",
                         ap_all[idx], torch.full((len(idx),), m_base, dtype=torch.float64), 1e-5 * scale)
        else:
            checks.true(f"(c) {direction}: some feature is equal in both runs", False)
        # causality: before first_diff both runs are the same, so ap_by_pos is m_base there
        checks.true(f"{direction}: f_base == f_other before first_diff ({first_diff}), ap_by_pos there == m_base",
                    not bool(differ[:first_diff].any()) and bool((ap_by_pos[:first_diff] == m_base).all()))
    return out, timings, stats


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="GPT-2 checkpoint dir (HF layout), shape A")
    ap.add_argument("--tokenizer", default=None, help="dir with vocab.json+merges.txt or encoder.json+vocab.bpe")
    ap.add_argument("--cases", required=True)
    ap.add_argument("--fixtures", required=True, help="folder of the SAE fixtures (tests/fixtures/sae)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--ig-steps", type=int, default=50)
    ap.add_argument("--seed", type=int, default=None, help="the checkpoint's --seed (recorded only)")
    ap.add_argument("--write-fixtures", action="store_true", help="(re)create the fixtures first")
    args = ap.parse_args()

    t_start = time.time()
    plain, model, hf, loader = load_models(args.model)
    tok = mg.load_tokenizer(args.tokenizer or args.model)
    with open(args.cases) as f:
        cases = json.load(f)
    cfg = model.cfg
    print(f"model {args.model}: {cfg.n_layers} layers, {cfg.n_heads} heads, d_model {cfg.d_model} ({loader}); "
          f"{len(cases)} cases; sae_lens {sae_lens.__version__}", flush=True)
    checks = Checks()

    prepared = [mg.prepare_case(tok, c, cfg.n_ctx) for c in cases]
    if args.write_fixtures:
        toks_all = [torch.tensor([t]) for c, k, _, _ in prepared for t in (c, k)]
        write_fixtures(plain, toks_all, args.fixtures)

    # (d) plain model vs HookedSAETransformer without SAEs, and with all SAEs attached at once
    saes = []
    for spec in FIXTURES:
        sae = SAE.load_from_disk(os.path.join(args.fixtures, spec[0]), device="cpu")
        if "norm_scaling_factor" in spec[5]:
            # what SAE.from_pretrained does with the yaml's norm_scaling_factor
            sae.fold_activation_norm_scaling_factor(spec[5]["norm_scaling_factor"])
        sae.eval()
        for p in sae.parameters():
            p.requires_grad_(False)
        checks.true(f"{spec[0]}: loaded as {type(sae).__name__} ({sae.cfg.architecture()}, "
                    f"{sae.cfg.metadata.hook_name}, d_sae {sae.cfg.d_sae})",
                    sae.cfg.architecture() == spec[2] and sae.cfg.metadata.hook_name == spec[3]
                    and sae.cfg.d_sae == spec[4])
        saes.append(sae)
    with torch.no_grad():
        for ci, (c, k, _, _) in enumerate(prepared):
            for t in (c, k):
                t = torch.tensor([t])
                want = plain(t)
                checks.close(f"(d) case {ci}: HookedSAETransformer (no SAE) vs load_tl's model", model(t), want, 0.0)
                for sae in saes:
                    model.add_sae(sae, use_error_term=True)
                checks.close(f"(d) case {ci}: all {len(saes)} SAEs attached (error term) vs load_tl's model",
                             model(t), want, 1e-4)
                model.reset_saes()

    out_saes = []
    for spec, sae in zip(FIXTURES, saes):
        name = spec[0]
        print(f"== {name}", flush=True)
        model.reset_saes()
        model.add_sae(sae, use_error_term=True)
        cases_out = []
        for i, case in enumerate(cases):
            t0 = time.time()
            out, tm, st = run_sae_case(model, plain, hf, sae, tok, case, args.ig_steps, checks)
            cases_out.append(out)
            print(f"  {name} case {i} ({len(out['clean_tokens'])} tokens, m_clean {out['m_clean']:.4g}, m_corrupt "
                  f"{out['m_corrupt']:.4g}): active clean {st['active']['clean']:.0%} corrupt "
                  f"{st['active']['corrupt']:.0%}, entries differing {st['differ']:.0%}, features active in one "
                  f"run only {st['one_run_only']}; {time.time() - t0:.1f}s "
                  + " ".join(f"{d}: ap {a:.1f}s ({n} by_pos) atp {b:.2f}s ig {c:.1f}s" for d, (a, b, c, n) in tm.items()),
                  flush=True)
        model.reset_saes()
        entry = {"name": name, "layout": spec[1], "hook_name": sae.cfg.metadata.hook_name,
                 "architecture": sae.cfg.architecture(), "d_sae": sae.cfg.d_sae, "cases": cases_out}
        if "norm_scaling_factor" in spec[5]:
            entry["norm_scaling_factor"] = spec[5]["norm_scaling_factor"]
        out_saes.append(entry)

    generator = (
        f"tests/reference/make_sae_goldens.py: torch {torch.__version__}, transformer_lens "
        f"{mg._dist_version('transformer-lens')}, sae_lens {sae_lens.__version__}, captum {captum.__version__}, "
        f"python {platform.python_version()}; model: make_goldens.load_tl weights in a sae_lens.HookedSAETransformer; "
        "SAEs: sae_lens.SAE.load_from_disk, HookedSAETransformer.add_sae(sae, use_error_term=True), one at a time; "
        "f = <hook>.hook_sae_acts_post; ap: raw patched metric (HookedSAETransformer.run_with_hooks, batched copies); "
        "atp: (f_other - f_base) * dm/df (float64); ig: captum.attr.LayerIntegratedGradients(layer="
        "sae.hook_sae_acts_post, multiply_by_inputs=True, method='gausslegendre'), replacement hook added with "
        "HookPoint.add_hook(prepend=True)"
    )
    golden = {
        "generator": generator,
        "model": {
            "n_layers": cfg.n_layers,
            "n_heads": cfg.n_heads,
            "d_model": cfg.d_model,
            "seed": args.seed,
            "model_safetensors_sha256": mg.sha256_file(os.path.join(args.model, "model.safetensors")),
        },
        "ig_steps": args.ig_steps,
        "saes": out_saes,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write('{"generator":' + json.dumps(golden["generator"]) + ',\n"model":'
                + json.dumps(golden["model"], separators=(",", ":")) + ',\n"ig_steps":'
                + str(golden["ig_steps"]) + ',\n"saes":[\n')
        parts = []
        for s in out_saes:
            head = {k: v for k, v in s.items() if k != "cases"}
            parts.append(json.dumps(head, separators=(",", ":"))[:-1] + ',"cases":[\n'
                         + ",\n".join(json.dumps(c, separators=(",", ":"), allow_nan=False) for c in s["cases"])
                         + "\n]}")
        f.write(",\n".join(parts))
        f.write("\n]}\n")
    with open(args.out) as f:
        back = json.load(f)
    checks.true("JSON round trip", back == json.loads(json.dumps(golden)))
    worst = max(checks.worst_ig) if checks.worst_ig else (0.0, "")
    print(f"worst IG |sum - gap|/max(1,|gap|): {worst[0]:.3g} at {worst[1]}")
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB) in {time.time() - t_start:.1f}s", flush=True)
    if checks.failures:
        print(f"SELF-CHECK FAILED ({len(checks.failures)}):\n  " + "\n  ".join(checks.failures))
        sys.exit(1)
    print("self-checks passed")


if __name__ == "__main__":
    main()
