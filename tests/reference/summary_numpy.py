#!/usr/bin/env python3
"""Recomputes a `patchlab batch` summary with numpy, from the per-pair score
maps alone (not from the reports' own analysis), as an independent check of
src/report/summary.rs and src/attribution/analysis.rs.

    python summary_numpy.py BATCH_OUT_DIR OUT.json

For every pair, the analysis of analysis_numpy.py (IG*, correlations on AP's
scale and raw, asymmetries, signed latent sets, Jaccard overlaps, the
small-gap flag). Pairs with a small gap are left out of the correlations and
overlaps (their per_pair values are null) and listed in `excluded`. Then per
statistic: per_pair, n, mean, std (numpy.std, ddof 0), mean of |value|, min,
median and max over the defined values. The test tests/summary.rs compares
this file with patchlab's summary of the same reports.
"""
import glob
import json
import os
import sys

import numpy as np

from analysis_numpy import pair_analysis


def stat(values):
    d = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if len(d) == 0:
        return {"per_pair": values, "n": 0, "mean": None, "std": None, "mean_abs": None,
                "min": None, "median": None, "max": None}
    return {"per_pair": values, "n": int(len(d)), "mean": float(d.mean()), "std": float(d.std()),
            "mean_abs": float(np.abs(d).mean()), "min": float(d.min()),
            "median": float(np.median(d)), "max": float(d.max())}


def pair_stats(r):
    comps = r["settings"]["components"]
    _, a, small = pair_analysis(
        r["results"], r["metric"]["clean"], r["metric"]["corrupt"], len(r["tokens"]["clean"]),
        r["model"]["d_model"], r["settings"]["percentile"], comps,
    )
    out = {"correlations": a["correlations"], "correlations_raw": a["correlations_raw"],
           "overlap": a["overlap"], "small_gap": small}
    if small:
        # left out: every value reads as undefined
        for section in ("correlations", "correlations_raw", "overlap"):
            out[section] = {c: {k: None for k in m} for c, m in out[section].items()}
    return out


def main():
    src, dst = sys.argv[1], sys.argv[2]
    files = sorted(glob.glob(os.path.join(src, "pairs", "*.json")))
    reports = [json.load(open(f)) for f in files]
    indices = [int(os.path.splitext(os.path.basename(f))[0]) for f in files]
    per = [pair_stats(r) for r in reports]
    summary = {"n_pairs": len(reports), "correlations": {}, "correlations_raw": {}, "overlap": {},
               "metric": {}, "excluded": [i for i, s in zip(indices, per) if s["small_gap"]]}
    for section in ("correlations", "correlations_raw", "overlap"):
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
    print(f"{dst}: {len(reports)} pairs, {len(summary['excluded'])} left out (small gap)")


if __name__ == "__main__":
    main()
