#!/usr/bin/env python3
"""The analysis of one prompt pair (docs/methods.md, "Analysis"), written
independently of patchlab with numpy, from a pair's score maps alone:

- IG* = Σ_{pos, d} attr / (m_base − m_other): raw IG × T × d_model / gap for
  heads, × T / gap for neurons;
- Pearson r of every two maps on AP's scale (IG*, AtP, AP), and the raw-IG
  correlations (`correlations_raw`: raw IG against raw IG, AtP and AP);
- asymmetry A = (S_ccl − S_cc) / max|S_ccl − S_cc| for IG*, AP and AtP, and
  the correlations of the asymmetries;
- latent sets: AND = {A > 0, |A| ≥ q}, OR = {A < 0, |A| ≥ q}, q the
  numpy-linear p-quantile of |A|; the Jaccard overlaps of IG*'s and AP's sets;
- the small-gap flag: |m_clean − m_corrupt| < 1e-3 · max(1, |m_clean|, |m_corrupt|).

f32 where patchlab computes in f32 (the maps, IG*, A), f64 elsewhere, so that
the summary test can compare to 1e-12.

As a script it rewrites the `analysis` section of a TransformerLens + captum
golden (tests/golden/model_*.json) from that file's own maps:

    python analysis_numpy.py tests/golden/model_a.json
"""
import json
import sys

import numpy as np

DIRS = ("clean_to_corrupt", "corrupt_to_clean")
SCALED = [("ig_norm", d) for d in DIRS] + [("atp", d) for d in DIRS] + [("ap", d) for d in DIRS]
RAW = [("ig", d) for d in DIRS]
ASYM = ("ig_norm", "ap", "atp")


def as_array(m):
    return np.array([[np.nan if x is None else x for x in row] for row in m], dtype=np.float32)


def pearson(a, b):
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return None
    return float(np.corrcoef(a, b)[0, 1])


def ig_norm(ig, averaged_over, gap):
    k = np.float64(averaged_over) / np.float64(np.float32(gap))
    return (ig.astype(np.float64) * k).astype(np.float32)


def asymmetry(cc, ccl):
    d = (ccl - cc).astype(np.float32)
    fin = np.isfinite(d)
    m = np.float32(np.abs(d[fin]).max()) if fin.any() else np.float32(0)
    if m > 0:
        out = (d / m).astype(np.float32)
    else:
        out = np.zeros_like(d)
    out[~fin] = np.nan
    return out


def latent_sets(a, p):
    fin = np.isfinite(a)
    if not fin.any():
        return set(), set()
    q = np.quantile(np.abs(a[fin]).astype(np.float64), p)
    big = fin & (np.abs(a).astype(np.float64) >= q) & (a != 0)
    and_ = {(int(l), int(i)) for l, i in np.argwhere(big & (a > 0))}
    or_ = {(int(l), int(i)) for l, i in np.argwhere(big & (a < 0))}
    return and_, or_


def jaccard(x, y):
    u = x | y
    return 1.0 if not u else len(x & y) / len(u)


def small_gap(mc, mk):
    mc, mk = float(np.float32(mc)), float(np.float32(mk))
    return not abs(mc - mk) >= 1e-3 * max(1.0, abs(mc), abs(mk))


def pair_analysis(results, mc, mk, n_tokens, d_model, percentile, components):
    """results[method][direction][component] = map (lists); returns the derived IG*
    maps and the analysis, keyed as a patchlab report."""
    mc32, mk32 = np.float32(mc), np.float32(mk)
    gaps = {"clean_to_corrupt": mc32 - mk32, "corrupt_to_clean": mk32 - mc32}
    maps = {}
    for m, dirs in results.items():
        for d, comps in dirs.items():
            for c, x in comps.items():
                if x is not None:
                    maps[(m, d, c)] = as_array(x)
    norm = {}
    for (m, d, c), x in list(maps.items()):
        if m == "ig":
            n = n_tokens * d_model if c == "heads" else n_tokens
            maps[("ig_norm", d, c)] = norm.setdefault(d, {})[c] = ig_norm(x, n, gaps[d])
    out = {"correlations": {}, "correlations_raw": {}, "asymmetry": {}, "latent": {}, "overlap": {}}
    for c in components:
        def pairs(order, extra):
            corr = {}
            for i, (m1, d1) in enumerate(order):
                for m2, d2 in list(order[i + 1:]) + list(extra):
                    x, y = maps.get((m1, d1, c)), maps.get((m2, d2, c))
                    if x is not None and y is not None:
                        corr[f"{m1}_{d1}__vs__{m2}_{d2}"] = pearson(x, y)
            return corr

        corr = pairs(SCALED, [])
        raw = pairs(RAW, SCALED[2:])
        asym = {}
        for m in ASYM:
            cc, ccl = maps.get((m, DIRS[0], c)), maps.get((m, DIRS[1], c))
            if cc is not None and ccl is not None:
                asym[m] = asymmetry(cc, ccl)
        for x, y in (("ig_norm", "ap"), ("atp", "ap"), ("ig_norm", "atp")):
            if x in asym and y in asym:
                corr[f"asym_{x}__vs__asym_{y}"] = pearson(asym[x], asym[y])
        out["correlations"][c] = corr
        if raw:
            out["correlations_raw"][c] = raw
        sets = {}
        for m, a in asym.items():
            sets[m] = latent_sets(a, percentile)
            out["asymmetry"].setdefault(m, {})[c] = f32list(a)
            out["latent"].setdefault(m, {})[c] = {
                "and": sorted(list(p) for p in sets[m][0]),
                "or": sorted(list(p) for p in sets[m][1]),
            }
        if "ig_norm" in sets and "ap" in sets:
            out["overlap"][c] = {
                "and": jaccard(sets["ig_norm"][0], sets["ap"][0]),
                "or": jaccard(sets["ig_norm"][1], sets["ap"][1]),
            }
    ig_norm_maps = {d: {c: f32list(m) for c, m in cs.items()} for d, cs in norm.items()}
    return ig_norm_maps, out, small_gap(mc, mk)


def f32list(a):
    """A float32 map as nested lists of the shortest decimals that round-trip (null for NaN)."""
    return [[None if not np.isfinite(x) else float(str(np.float32(x))) for x in row] for row in a]


def first(v):
    return v[0] if isinstance(v, list) else v


def main():
    path = sys.argv[1]
    with open(path) as f:
        g = json.load(f)
    d_model = g["model"]["d_model"]
    p = g["percentile"]
    for c in g["cases"]:
        mc, mk = first(c["metric"]["clean"]), first(c["metric"]["corrupt"])
        comps = sorted({k for dirs in c["results"].values() for cs in dirs.values() for k in cs})
        ig_maps, analysis, flagged = pair_analysis(
            c["results"], mc, mk, len(c["tokens"]["clean"]), d_model, p, comps
        )
        analysis["percentile"] = p
        del analysis["asymmetry"]  # the test checks the sets, with its own ties
        c["ig_norm"] = ig_maps
        c["analysis"] = analysis
        c["small_gap"] = flagged
    note = (
        "analysis (schema 2, docs/methods.md), rewritten by tests/reference/analysis_numpy.py with numpy "
        "from this file's own maps: ig_norm = IG x T x d_model / (m_base - m_other) for heads, "
        "IG x T / (m_base - m_other) for neurons; correlations: Pearson r of the maps on AP's scale "
        "(ig_norm, atp, ap) and of the asymmetries, correlations_raw: raw IG against raw IG, AtP and AP; "
        "asymmetry A = (S_ccl - S_cc)/max|S_ccl - S_cc| for ig_norm, ap, atp; latent AND = {A > 0, "
        "|A| >= q}, OR = {A < 0, |A| >= q}, q numpy's linear p-quantile of |A|; overlap = Jaccard of "
        "ig_norm's and ap's sets (1 when both are empty); small_gap = |m_clean - m_corrupt| < "
        "1e-3 max(1, |m_clean|, |m_corrupt|)."
    )
    g["notes"] = [n for n in g["notes"] if not n.startswith("analysis")] + [note]
    with open(path, "w") as f:
        json.dump(g, f, separators=(",", ":"))
    print(f"{path}: analysis of {len(g['cases'])} cases rewritten")


if __name__ == "__main__":
    main()
