#!/usr/bin/env python3
"""Recomputes a `patchlab batch` summary with numpy, from the per-pair score
maps alone (not from the reports' own analysis), as an independent check of
src/report/summary.rs and src/attribution/analysis.rs.

    python summary_numpy.py BATCH_OUT_DIR OUT.json

For every pair: Pearson r of every two score maps (NaN/inf ignored), the IG
and AP asymmetry maps (SPEC "Analysis"), their correlation, the latent AND /
OR sets (signed p-quantile, numpy's linear interpolation) and the Jaccard
overlap of IG's and AP's sets. Then per statistic: per_pair, n, mean and std
(numpy.std, ddof 0) over the defined values. The test tests/summary.rs
compares this file with patchlab's summary of the same reports.
"""
import glob
import json
import os
import sys

import numpy as np

MAP_ORDER = [
    ("ig", "clean_to_corrupt"),
    ("ig", "corrupt_to_clean"),
    ("atp", "clean_to_corrupt"),
    ("atp", "corrupt_to_clean"),
    ("ap", "clean_to_corrupt"),
    ("ap", "corrupt_to_clean"),
]


def as_array(m):
    return np.array([[np.nan if x is None else x for x in row] for row in m], dtype=np.float32)


def pearson(a, b):
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return None
    return float(np.corrcoef(a, b)[0, 1])


def asymmetry(method, cc, ccl):
    s = (ccl + cc) if method == "ig" else (ccl - cc)
    s = s.astype(np.float32)
    return (s / np.float32(s[np.isfinite(s)].max())).astype(np.float32)


def signed_set(m, p):
    v = m[np.isfinite(m)].astype(np.float64)
    if len(v) == 0:
        return set()
    q = np.quantile(v, p)
    idx = np.argwhere(np.isfinite(m) & (m.astype(np.float64) >= q))
    return {(int(l), int(i)) for l, i in idx}


def jaccard(x, y):
    u = x | y
    return 1.0 if not u else len(x & y) / len(u)


def stat(values):
    d = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if len(d) == 0:
        return {"per_pair": values, "n": 0, "mean": None, "std": None,
                "min": None, "median": None, "max": None}
    return {"per_pair": values, "n": int(len(d)), "mean": float(d.mean()), "std": float(d.std()),
            "min": float(d.min()), "median": float(np.median(d)), "max": float(d.max())}


def pair_stats(r):
    p = r["analysis"]["percentile"]
    out = {"correlations": {}, "overlap": {}}
    for comp in r["settings"]["components"]:
        maps = {}
        for m, d in MAP_ORDER:
            x = r["results"].get(m, {}).get(d, {}).get(comp)
            if x is not None:
                maps[(m, d)] = as_array(x)
        corr = {}
        for i, k1 in enumerate(MAP_ORDER):
            for k2 in MAP_ORDER[i + 1:]:
                if k1 in maps and k2 in maps:
                    corr[f"{k1[0]}_{k1[1]}__vs__{k2[0]}_{k2[1]}"] = pearson(maps[k1], maps[k2])
        asym = {}
        for m in ("ap", "ig", "atp"):
            cc, ccl = maps.get((m, "clean_to_corrupt")), maps.get((m, "corrupt_to_clean"))
            if cc is not None and ccl is not None:
                asym[m] = asymmetry(m, cc, ccl)
        if "ig" in asym and "ap" in asym:
            corr["asym_ig__vs__asym_ap"] = pearson(asym["ig"], asym["ap"])
            ov = {}
            for which, sign in (("and", 1), ("or", -1)):
                ov[which] = jaccard(signed_set(sign * asym["ig"], p), signed_set(sign * asym["ap"], p))
            out["overlap"][comp] = ov
        out["correlations"][comp] = corr
    return out


def main():
    src, dst = sys.argv[1], sys.argv[2]
    files = sorted(glob.glob(os.path.join(src, "pairs", "*.json")))
    reports = [json.load(open(f)) for f in files]
    per = [pair_stats(r) for r in reports]
    summary = {"n_pairs": len(reports), "correlations": {}, "overlap": {}, "metric": {}}
    for section in ("correlations", "overlap"):
        comps = sorted({c for s in per for c in s[section]})
        for c in comps:
            keys = sorted({k for s in per for k in s[section].get(c, {})})
            summary[section][c] = {
                k: stat([s[section].get(c, {}).get(k) for s in per]) for k in keys
            }
    for which in ("clean", "corrupt"):
        summary["metric"][which] = stat([float(np.float32(r["metric"][which])) for r in reports])
    with open(dst, "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
    print(f"{dst}: {len(reports)} pairs")


if __name__ == "__main__":
    main()
