#!/usr/bin/env python3
"""Golden reference values for patchlab's patching sites, computed with TransformerLens + captum.

    python make_site_goldens.py --model DIR --tokenizer DIR --cases site_cases.json \
        --out sites_model_X.json [--ig-steps 50] [--seed N]

Model loading, tokenization and the metric are make_goldens.py's (load_tl,
load_tokenizer, prepare_case, make_metric): the checkpoint is processed exactly
as HookedTransformer.from_pretrained does (fold_ln, center_writing_weights,
center_unembed, fold_value_biases). Per prompt pair and direction it writes,
for every site of SITES:

  ap   raw patched metrics from transformer_lens.patching.get_act_patch_* (not normalised)
  atp  sum over the feature dim of (a_other - a_base) * dm/da at the base run (raw)
  ig   captum LayerIntegratedGradients on the site's hook module, reduced like atp (raw)

and, per run, TransformerLens's direct logit attribution (stack_head_results /
decompose_resid through ActivationCache.logit_attrs). The format is in
tests/reference/README.md ("Site goldens").

Self-checks (printed, exit 1 on failure): get_act_patch_block_every and
get_act_patch_attn_head_{all_pos,by_pos}_every equal the stacks of the
individual functions; captum's convergence delta is small; the layer DLA at
the last position sums to m - (b_U[correct] - b_U[incorrect]).

Reference only: CI never runs this (it needs torch, ~GBs).
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_goldens as mg  # noqa: E402  (sets torch threads to 1)

import captum  # noqa: E402
import transformer_lens  # noqa: E402
import transformer_lens.patching as tlp  # noqa: E402
from captum.attr import LayerIntegratedGradients  # noqa: E402

# generic_activation_patch wraps its loop in tqdm; keep the log readable
tlp.tqdm = lambda it, *a, **k: it

DIRS = mg.DIRS
# site -> (TL patching function, hook inside blocks.L, reduction kind)
SITES = {
    "resid_pre": (tlp.get_act_patch_resid_pre, "hook_resid_pre", "resid"),
    "resid_mid": (tlp.get_act_patch_resid_mid, "hook_resid_mid", "resid"),
    "attn_out": (tlp.get_act_patch_attn_out, "hook_attn_out", "resid"),
    "mlp_out": (tlp.get_act_patch_mlp_out, "hook_mlp_out", "resid"),
    "z_by_pos": (tlp.get_act_patch_attn_head_out_by_pos, "attn.hook_z", "head_by_pos"),
    "z": (tlp.get_act_patch_attn_head_out_all_pos, "attn.hook_z", "head_all_pos"),
    "q_by_pos": (tlp.get_act_patch_attn_head_q_by_pos, "attn.hook_q", "head_by_pos"),
    "k_by_pos": (tlp.get_act_patch_attn_head_k_by_pos, "attn.hook_k", "head_by_pos"),
    "v_by_pos": (tlp.get_act_patch_attn_head_v_by_pos, "attn.hook_v", "head_by_pos"),
    "q": (tlp.get_act_patch_attn_head_q_all_pos, "attn.hook_q", "head_all_pos"),
    "k": (tlp.get_act_patch_attn_head_k_all_pos, "attn.hook_k", "head_all_pos"),
    "v": (tlp.get_act_patch_attn_head_v_all_pos, "attn.hook_v", "head_all_pos"),
    "pattern": (tlp.get_act_patch_attn_head_pattern_all_pos, "attn.hook_pattern", "pattern_all"),
    "pattern_by_dest": (tlp.get_act_patch_attn_head_pattern_by_pos, "attn.hook_pattern", "pattern_by_dest"),
    "pattern_dest_src": (tlp.get_act_patch_attn_head_pattern_dest_src_pos, "attn.hook_pattern", "pattern_dest_src"),
}
# the hooks behind the sites, in a fixed order
HOOKS = list(dict.fromkeys(h for _, h, _ in SITES.values()))


def expected_shape(kind, L, H, T):
    return {
        "resid": [L, T],
        "head_by_pos": [L, T, H],
        "head_all_pos": [L, H],
        "pattern_all": [L, H],
        "pattern_by_dest": [L, H, T],
        "pattern_dest_src": [L, H, T, T],
    }[kind]


def reduce_product(kind, p):
    """p = elementwise product for one layer, batch dim dropped:
    resid [T, d_model]; z/q/k/v [T, H, d_head]; pattern [H, dest, src]."""
    if kind == "resid":
        return p.sum(-1)  # [T]
    if kind == "head_by_pos":
        return p.sum(-1)  # [T, H]
    if kind == "head_all_pos":
        return p.sum(dim=(0, 2))  # [H]
    if kind == "pattern_all":
        return p.sum(dim=(1, 2))  # [H]
    if kind == "pattern_by_dest":
        return p.sum(-1)  # [H, dest]
    if kind == "pattern_dest_src":
        return p  # [H, dest, src]
    raise ValueError(kind)


def site_maps(products):
    """products: {hook: [per-layer product tensors]} -> {site: [L, ...] float64 tensor}."""
    return {
        site: torch.stack([reduce_product(kind, p) for p in products[hook]])
        for site, (_, hook, kind) in SITES.items()
    }


def encode(t):
    arr = t.detach().cpu().numpy().astype(np.float32)
    return {"shape": list(arr.shape), "values": [mg.f32(v) for v in arr.ravel()]}


# ----------------------------------------------------------------------------------------------
# the three methods


@torch.no_grad()
def act_patching(model, base_tokens, other_cache, metric, checks):
    scalar = lambda logits: metric(logits)[0]  # noqa: E731  raw m of the batch-1 run
    out = {}
    for site, (fn, _, _) in SITES.items():
        out[site] = fn(model, base_tokens, other_cache, scalar)
    # TL's "every" helpers against the stacks of the individual functions
    block = tlp.get_act_patch_block_every(model, base_tokens, other_cache, scalar)
    want = torch.stack([out["resid_pre"], out["attn_out"], out["mlp_out"]])
    checks.diff("get_act_patch_block_every vs stack(resid_pre, attn_out, mlp_out)", block, want)
    allpos = tlp.get_act_patch_attn_head_all_pos_every(model, base_tokens, other_cache, scalar)
    want = torch.stack([out["z"], out["q"], out["k"], out["v"], out["pattern"]])
    checks.diff("get_act_patch_attn_head_all_pos_every vs stack(z, q, k, v, pattern)", allpos, want)
    bypos = tlp.get_act_patch_attn_head_by_pos_every(model, base_tokens, other_cache, scalar)
    want = torch.stack([out["z_by_pos"], out["q_by_pos"], out["k_by_pos"], out["v_by_pos"],
                        out["pattern_by_dest"].permute(0, 2, 1)])
    checks.diff("get_act_patch_attn_head_by_pos_every vs stack(z/q/k/v_by_pos, pattern_by_dest^T)", bypos, want)
    return out


def attribution_patching(model, base_tokens, other_cache, metric):
    L = model.cfg.n_layers
    names = [mg.hook_name(l, h) for l in range(L) for h in HOOKS]
    acts = {}

    def save(act, hook):
        acts[hook.name] = act

    def grad_root(act, hook):  # parameters are frozen: start the graph at the embedding
        return act.detach().requires_grad_(True)

    with torch.enable_grad():
        logits = model.run_with_hooks(base_tokens, fwd_hooks=[("hook_embed", grad_root)] + [(n, save) for n in names])
        m = metric(logits)[0]
        grads = dict(zip(names, torch.autograd.grad(m, [acts[n] for n in names])))
    products = {
        h: [((other_cache[mg.hook_name(l, h)][0].double() - acts[mg.hook_name(l, h)][0].detach().double())
             * grads[mg.hook_name(l, h)][0].double()) for l in range(L)]
        for h in HOOKS
    }
    return site_maps(products)


def hook_module(model, layer, hook):
    mod = model.blocks[layer]
    for part in hook.split("."):
        mod = getattr(mod, part)
    return mod


def integrated_gradients(model, base_tokens, base_cache, other_cache, metric, n_steps, checks, direction):
    L = model.cfg.n_layers
    products = {h: [] for h in HOOKS}
    worst = (0.0, None)
    for hook in HOOKS:
        for layer in range(L):
            hp = hook_module(model, layer, hook)

            def forward_fn(x, hp=hp):
                # The replacement hook must run BEFORE captum's forward hook on the same module
                # (captum registers its hook first, then calls forward_fn): prepend=True. Otherwise
                # captum would read/replace the base activation and TL would then overwrite it.
                hp.add_hook(lambda act, hook: x, prepend=True)
                try:
                    logits = model(base_tokens.expand(x.shape[0], -1))
                finally:
                    hp.remove_hooks("fwd")
                return metric(logits)

            lig = LayerIntegratedGradients(forward_fn, hp, multiply_by_inputs=True)
            hn = mg.hook_name(layer, hook)
            with torch.enable_grad():
                attr, delta = lig.attribute(
                    inputs=other_cache[hn].clone(),
                    baselines=base_cache[hn].clone(),
                    n_steps=n_steps,
                    method="gausslegendre",
                    return_convergence_delta=True,
                )
            products[hook].append(attr.detach()[0].double())
            # completeness: sum(attr) == f(other) - f(base) up to quadrature error
            with torch.no_grad():
                gap = float(forward_fn(other_cache[hn])[0] - forward_fn(base_cache[hn])[0])
            d = abs(float(delta.reshape(-1)[0]))
            rel = d / max(1.0, abs(gap))
            if rel >= worst[0]:
                worst = (rel, f"{hn} (delta {d:.3g}, gap {gap:.4g}, sum attr {float(attr.double().sum()):.6g})")
    checks.worst_ig.append((worst[0], f"{direction}: {worst[1]}"))
    checks.true(f"{direction}: captum convergence |delta| / max(1, |gap|) <= 1e-3 (worst {worst[0]:.3g}: {worst[1]})",
                worst[0] <= 1e-3)
    return site_maps(products)


# ----------------------------------------------------------------------------------------------
# direct logit attribution


@torch.no_grad()
def dla(model, cache, correct, incorrect, m, checks, run):
    cfg = model.cfg
    L, H = cfg.n_layers, cfg.n_heads
    stack, head_labels = cache.stack_head_results(layer=-1, pos_slice=None, return_labels=True)
    heads = cache.logit_attrs(stack, tokens=correct, incorrect_tokens=incorrect, pos_slice=None)  # [L*H, 1, T]
    want_labels = [f"L{l}H{h}" for l in range(L) for h in range(H)]
    checks.true(f"{run}: stack_head_results labels are L{{l}}H{{h}}, layer-major", head_labels == want_labels,
                f"{head_labels}")
    T = heads.shape[-1]
    heads = heads[:, 0, :].reshape(L, H, T)
    comps, labels = cache.decompose_resid(layer=-1, pos_slice=None, return_labels=True)
    layers = cache.logit_attrs(comps, tokens=correct, incorrect_tokens=incorrect, pos_slice=None)[:, 0, :]
    checks.true(f"{run}: decompose_resid gives 2 + 2L components", layers.shape[0] == 2 + 2 * L, f"{labels}")
    scale = cache["ln_final.hook_scale"][0, :, 0]
    b_U = model.unembed.b_U
    want = m - float(b_U[correct] - b_U[incorrect])
    got = float(layers[:, -1].double().sum())
    checks.diff(f"{run}: sum of layer DLA at the last position vs m - (b_U[correct] - b_U[incorrect])",
                torch.tensor(got), torch.tensor(want), tol=1e-4 * max(1.0, abs(m)))
    return {
        "heads": encode(heads),
        "layers": {"labels": labels, **encode(layers)},
        "scale": [mg.f32(v) for v in scale],
    }


# ----------------------------------------------------------------------------------------------


class Checks:
    def __init__(self):
        self.failures = []
        self.worst_ig = []

    def true(self, what, ok, detail=""):
        print(f"  [{'ok' if ok else 'FAIL'}] {what} {detail}".rstrip(), flush=True)
        if not ok:
            self.failures.append(f"{what} {detail}")

    def diff(self, what, a, b, tol=1e-5):
        if tuple(a.shape) != tuple(b.shape):
            self.true(what, False, f"shape {tuple(a.shape)} vs {tuple(b.shape)}")
            return
        d = float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
        self.true(f"{what}: max |diff| {d:.3g}", d <= tol)


def run_case(model, tok, case, n_steps, checks):
    cfg = model.cfg
    L, H = cfg.n_layers, cfg.n_heads
    clean, corrupt, first_diff, (correct, incorrect) = mg.prepare_case(tok, case, cfg.n_ctx)
    metric = mg.make_metric(correct, incorrect)
    T = len(clean)
    toks = {"clean": torch.tensor([clean]), "corrupt": torch.tensor([corrupt])}
    caches, ms = {}, {}
    with torch.no_grad():
        for k in ("clean", "corrupt"):
            logits, caches[k] = model.run_with_cache(toks[k])
            ms[k] = float(metric(logits)[0])
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
        "ap": {},
        "atp": {},
        "ig": {},
    }
    timings = {}
    for direction in DIRS:
        base, other = ("clean", "corrupt") if direction == "clean_to_corrupt" else ("corrupt", "clean")
        t0 = time.time()
        ap = act_patching(model, toks[base], caches[other], metric, checks)
        t1 = time.time()
        atp = attribution_patching(model, toks[base], caches[other], metric)
        t2 = time.time()
        ig = integrated_gradients(model, toks[base], caches[base], caches[other], metric, n_steps, checks, direction)
        t3 = time.time()
        timings[direction] = (t1 - t0, t2 - t1, t3 - t2)
        bad = []
        for meth, maps in (("ap", ap), ("atp", atp), ("ig", ig)):
            for site, (_, _, kind) in SITES.items():
                want = expected_shape(kind, L, H, T)
                if list(maps[site].shape) != want:
                    bad.append(f"{meth} {site}: {list(maps[site].shape)} != {want}")
            out[meth][direction] = {site: encode(maps[site]) for site in SITES}
        checks.true(f"{direction}: every ap/atp/ig map has the table's shape", not bad, "; ".join(bad))
        # no patch at all changes nothing: a sanity anchor for the raw AP values
        checks.true(f"{direction}: ap resid_pre before first_diff equals m_base",
                    bool(torch.allclose(ap["resid_pre"][:, :first_diff],
                                        torch.full_like(ap["resid_pre"][:, :first_diff], ms[base]), atol=1e-4)))
    out["dla"] = {k: dla(model, caches[k], correct, incorrect, ms[k], checks, k) for k in ("clean", "corrupt")}
    return out, timings


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="GPT-2 checkpoint dir (HF layout)")
    ap.add_argument("--tokenizer", default=None, help="dir with vocab.json+merges.txt or encoder.json+vocab.bpe "
                    "(default: --model)")
    ap.add_argument("--cases", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ig-steps", type=int, default=50)
    ap.add_argument("--seed", type=int, default=None,
                    help="the --seed the checkpoint was made with (recorded only; config.json lacks it)")
    args = ap.parse_args()

    t_start = time.time()
    model, _hf, loader = mg.load_tl(args.model)
    tok = mg.load_tokenizer(args.tokenizer or args.model)
    with open(args.cases) as f:
        cases = json.load(f)
    cfg = model.cfg
    print(f"model {args.model}: {cfg.n_layers} layers, {cfg.n_heads} heads, d_model {cfg.d_model} ({loader}); "
          f"{len(cases)} cases", flush=True)

    checks = Checks()
    out_cases = []
    for i, case in enumerate(cases):
        t0 = time.time()
        print(f"case {i}: {case['clean']!r} (bos={case['bos']})", flush=True)
        out, tm = run_case(model, tok, case, args.ig_steps, checks)
        out_cases.append(out)
        print(f"case {i} ({len(out['clean_tokens'])} tokens, first_diff {out['first_diff']}, m_clean "
              f"{out['m_clean']:.4g}, m_corrupt {out['m_corrupt']:.4g}): {time.time() - t0:.1f}s "
              + " ".join(f"{d}: ap {a:.1f}s atp {b:.2f}s ig {c:.1f}s" for d, (a, b, c) in tm.items()), flush=True)

    generator = (
        f"tests/reference/make_site_goldens.py: torch {torch.__version__}, transformer_lens "
        f"{mg._dist_version('transformer-lens')}, captum {captum.__version__}, python {platform.python_version()}; "
        "model: make_goldens.load_tl (" + loader + " -> convert_gpt2_weights -> load_and_process_state_dict("
        "fold_ln, center_writing_weights, center_unembed, fold_value_biases), use_attn_result, use_hook_mlp_in); "
        "ap: transformer_lens.patching.get_act_patch_{resid_pre,resid_mid,attn_out,mlp_out,"
        "attn_head_out_by_pos,attn_head_out_all_pos,attn_head_{q,k,v}_by_pos,attn_head_{q,k,v}_all_pos,"
        "attn_head_pattern_all_pos,attn_head_pattern_by_pos,attn_head_pattern_dest_src_pos} with the raw metric; "
        "atp: torch.autograd.grad through HookedTransformer.run_with_hooks; "
        "ig: captum.attr.LayerIntegratedGradients(layer=the site's HookPoint, multiply_by_inputs=True, "
        "method='gausslegendre'), replacement hook added with HookPoint.add_hook(prepend=True); "
        "atp/ig reduced in float64; "
        "dla: ActivationCache.stack_head_results / decompose_resid(layer=-1, pos_slice=None) -> "
        "ActivationCache.logit_attrs(tokens=correct, incorrect_tokens=incorrect), ln_final.hook_scale"
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
        "cases": out_cases,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write('{"generator":' + json.dumps(golden["generator"]) + ',\n"model":'
                + json.dumps(golden["model"], separators=(",", ":")) + ',\n"ig_steps":'
                + str(golden["ig_steps"]) + ',\n"cases":[\n')
        f.write(",\n".join(json.dumps(c, separators=(",", ":"), allow_nan=False) for c in out_cases))
        f.write("\n]}\n")
    with open(args.out) as f:  # the file is valid JSON and round-trips
        back = json.load(f)
    checks.true("JSON round trip", back == json.loads(json.dumps(golden)))
    worst = max(checks.worst_ig) if checks.worst_ig else (0.0, "")
    print(f"worst IG convergence |delta|/max(1,|gap|): {worst[0]:.3g} at {worst[1]}")
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB) in {time.time() - t_start:.1f}s", flush=True)
    if checks.failures:
        print(f"SELF-CHECK FAILED ({len(checks.failures)}):\n  " + "\n  ".join(checks.failures))
        sys.exit(1)
    print("self-checks passed")


if __name__ == "__main__":
    main()
