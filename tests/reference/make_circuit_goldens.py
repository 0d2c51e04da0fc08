#!/usr/bin/env python3
"""Golden reference values for patchlab's circuits, computed with the EAP-IG
reference implementation itself (hannamw/EAP-IG, commit 795f560, package
`eap` 2.0.0) on TransformerLens.

    python make_circuit_goldens.py --eap-src DIR --model DIR --tokenizer DIR \
        --cases circuit_cases.json --out circuits_model_X.json [--seed N]

DIR of --eap-src is the repository's `src` folder (it holds `eap/`). Model
loading, tokenization and the metric are make_goldens.py's. The reference
needs two adaptations to run here, neither of which touches its arithmetic:
  - its `tokenize_plus` (which tokenizes strings and prepends BOS) is replaced
    by one that takes the cases' token ids as they are (with or without BOS);
  - its score matrices are allocated with device='cuda'; a `torch` proxy in
    its modules drops that argument so that they live on the CPU.

Per case (one prompt pair) and per dataset (several pairs of one length, a
batch of one pair each, as the reference averages) it writes:
  scores      per method (EAP, EAP-IG-inputs and EAP-IG-activations with --steps, clean-corrupted,
              exact): the score of every edge, in Graph.edges order (names in
              `edges`)
  baseline    evaluate_baseline's clean and corrupt metrics (means)
  circuits    for topn and greedy, several n, per method: the edges and nodes
              in the graph after selection + prune, and evaluate_graph's
              metric (mean) with the normalised faithfulness
  circuits_mean  (datasets) EAP-IG's circuits under evaluate_graph's 'mean-positional'
              intervention, the means taken over the dataset's clean prompts
  graph_json  Graph.to_json of one selection, to pin the file layout

Reference only: CI never runs this (it needs torch).
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_goldens as mg  # noqa: E402


def load_eap(src):
    sys.path.insert(0, src)
    import eap.attribute as attribute
    import eap.evaluate as evaluate
    import eap.utils as utils
    from eap.graph import Graph

    def tokenize_plus(model, inputs, max_length=None):
        tokens = torch.tensor(inputs, dtype=torch.long)
        attention_mask = torch.ones_like(tokens)
        input_lengths = attention_mask.sum(1)
        return tokens, attention_mask, input_lengths, tokens.shape[1]

    class CpuTorch:
        def __getattr__(self, k):
            return getattr(torch, k)

        def zeros(self, *a, **kw):
            kw.pop("device", None)
            return torch.zeros(*a, **kw)

    for m in (attribute, evaluate, utils):
        m.tokenize_plus = tokenize_plus
        m.torch = CpuTorch()
    return attribute, evaluate, Graph


def make_metric():
    def metric(logits, clean_logits, input_lengths, labels):
        idx = input_lengths - 1
        rows = torch.arange(logits.shape[0])
        last = logits[rows, idx]
        c = torch.tensor([l[0] for l in labels])
        i = torch.tensor([l[1] for l in labels])
        return (last[rows, c] - last[rows, i]).sum()

    return metric


METHODS = ["EAP", "EAP-IG-inputs", "EAP-IG-activations", "clean-corrupted", "exact"]
NAMES = {"EAP": "eap", "EAP-IG-inputs": "eap-ig", "EAP-IG-activations": "eap-ig-activations", "clean-corrupted": "clean-corrupted", "exact": "exact"}


def run(model, attribute, evaluate, Graph, pairs, steps, sizes, mean=False):
    """pairs: [(clean ids, corrupt ids, (correct, incorrect))]"""
    metric = make_metric()
    loader = [([c], [k], [ans]) for c, k, ans in pairs]
    out = {"scores": {}}
    clean = evaluate.evaluate_baseline(model, loader, metric, quiet=True).mean().item()
    corrupt = evaluate.evaluate_baseline(model, loader, metric, run_corrupted=True, quiet=True).mean().item()
    out["baseline"] = {"clean": clean, "corrupt": corrupt}
    graphs = {}
    for method in METHODS:
        g = Graph.from_model(model)
        kw = {"ig_steps": steps} if method.startswith("EAP-IG") else {}
        attribute.attribute(model, g, loader, metric, method, quiet=True, **kw)
        out["scores"][NAMES[method]] = [mg.f32(e.score) for e in g.edges.values()]
        out["edges"] = list(g.edges.keys())
        graphs[method] = g
    def circuits(g, key, name, **intervention):
        """topn and greedy circuits of each size, pruned, with evaluate_graph's faithfulness"""
        for how in ["topn", "greedy"]:
            for n in sizes:
                if how == "topn":
                    g.apply_topn(n, absolute=True)
                else:
                    g.apply_greedy(n, absolute=True)
                m = evaluate.evaluate_graph(model, g, loader, metric, quiet=True, **intervention).mean().item()
                out.setdefault(key, {}).setdefault(name, {}).setdefault(how, []).append({
                    "n": n,
                    "edges": [e_name for e_name, e in g.edges.items() if e.in_graph],
                    "nodes": [n_name for n_name, nd in g.nodes.items() if nd.in_graph],
                    "metric": m,
                    "faithfulness": (m - corrupt) / (clean - corrupt),
                })

    for method in ["EAP", "EAP-IG-inputs", "exact"]:
        circuits(graphs[method], "circuits", NAMES[method])
    if mean:
        # mean ablation: each node's output averaged per position over the pairs' clean prompts
        # (the reference's 'mean-positional' with the same dataloader as the means' data)
        circuits(graphs["EAP-IG-inputs"], "circuits_mean", "eap-ig", intervention="mean-positional",
                 intervention_dataloader=loader)
    g = graphs["EAP-IG-inputs"]
    g.apply_topn(sizes[1], absolute=True)
    with tempfile.TemporaryDirectory() as d:
        g.to_json(os.path.join(d, "g.json"))
        with open(os.path.join(d, "g.json")) as f:
            out["graph_json"] = json.load(f)
    out["graph_json_n"] = sizes[1]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eap-src", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokenizer", default=None)
    ap.add_argument("--cases", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    attribute, evaluate, Graph = load_eap(args.eap_src)
    model, _hf, loader = mg.load_tl(args.model)
    model.set_use_split_qkv_input(True)
    # the reference backpropagates to its hooks through the parameters' graph
    for p in model.parameters():
        p.requires_grad_(True)
    tok = mg.load_tokenizer(args.tokenizer or args.model)
    with open(args.cases) as f:
        spec = json.load(f)
    n_edges = len(Graph.from_model(model).edges)
    sizes = [5, 20, min(60, n_edges)]
    t0 = time.time()

    def prep(case):
        clean, corrupt, fd, answers = mg.prepare_case(tok, case, model.cfg.n_ctx)
        return clean, corrupt, fd, tuple(answers)

    cases = []
    for case in spec["cases"]:
        clean, corrupt, fd, ans = prep(case)
        r = run(model, attribute, evaluate, Graph, [(clean, corrupt, ans)], args.steps, sizes)
        cases.append({"case": case, "clean_tokens": clean, "corrupt_tokens": corrupt, "first_diff": fd, **r})
        print(f"case {case['clean']!r}: {time.time() - t0:.1f}s", flush=True)
    datasets = []
    for ds in spec["datasets"]:
        ps = [prep(c) for c in ds]
        if len({len(p[0]) for p in ps}) != 1:
            raise SystemExit(f"a dataset's pairs must tokenize to one length: {ds}")
        r = run(model, attribute, evaluate, Graph, [(c, k, a) for c, k, _, a in ps], args.steps, sizes, mean=True)
        datasets.append({"pairs": ds, **r})
        print(f"dataset of {len(ds)}: {time.time() - t0:.1f}s", flush=True)
    cfg = model.cfg
    golden = {
        "generator": (
            f"tests/reference/make_circuit_goldens.py: hannamw/EAP-IG 795f560 (eap 2.0.0) attribute(method=EAP | "
            f"EAP-IG-inputs | EAP-IG-activations (ig_steps={args.steps}) | clean-corrupted | exact, intervention='patching', "
            "aggregation='sum'), Graph.apply_topn / apply_greedy (absolute=True, prune), evaluate_graph, "
            f"evaluate_baseline, Graph.to_json; torch {torch.__version__}, transformer_lens "
            f"{mg._dist_version('transformer-lens')}, python {platform.python_version()}; model: make_goldens.load_tl "
            f"({loader}) + set_use_split_qkv_input(True), parameters requiring grad; metric: logits[last, correct] - logits[last, incorrect]"
        ),
        "model": {
            "n_layers": cfg.n_layers,
            "n_heads": cfg.n_heads,
            "d_model": cfg.d_model,
            "seed": args.seed,
            "model_safetensors_sha256": mg.sha256_file(os.path.join(args.model, "model.safetensors")),
        },
        "steps": args.steps,
        "sizes": sizes,
        "cases": cases,
        "datasets": datasets,
    }
    with open(args.out, "w") as f:
        json.dump(golden, f, separators=(",", ":"))
    print(f"wrote {args.out} ({time.time() - t0:.1f}s)")


if __name__ == "__main__":
    main()
