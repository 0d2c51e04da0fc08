// The views of heads' and neurons' scores: Heads and Neurons (one heatmap
// per method and direction, filled in as layers stream in), Scatter (IG*
// and AtP against AP) and Latent (the asymmetry across directions, with
// the AND and OR components marked).

import { maxAbs } from "../plots.js";
import { ASYM_ORDER, DIR_NAMES, DIR_ORDER, get, METHOD_NAMES, METHOD_ORDER, unitOf } from "./report.js";

// what AND and OR mean, for the Latent view's legend (docs/methods.md)
const LATENT_LEGEND =
  "S_cc is a component's score clean → corrupt (noising: the clean run with its corrupt activation patched in), S_ccl its score corrupt → clean (denoising: the corrupt run with its clean activation restored). " +
  "▲ AND (filled triangle, A > 0): matters when noising — patching in the corrupt value breaks the behaviour (S_cc ≈ −1) — but restoring it alone does not help (S_ccl ≈ 0). " +
  "○ OR (hollow circle, A < 0): restoring it alone brings the behaviour back (S_ccl ≈ −1), but noising it alone does not break it (S_cc ≈ 0).";

// what the Heads and Neurons maps' numbers are (docs/methods.md)
const SCORES_NOTE =
  "AP, AtP and IG* are fractions of the metric gap m_base − m_other: −1 moves the metric all the way to the other run's value, 0 leaves it. " +
  "IG is captum's raw attribution reduced to one number per component by means (over positions, and over d_model for a head): a mean per element, not on AP's scale, so its numbers are far smaller. " +
  "IG* (IG star) is the same attribution summed instead — over positions and d_model for a head (IG × positions × d_model), over positions for a neuron (IG × positions) — and divided by the gap, on AP's scale.";

const title = (c) => (c === "heads" ? "Heads" : "Neurons");

/** The methods, directions and component kinds a report has (or, while it runs, will have). */
function shown(r) {
  const methods = METHOD_ORDER.filter((x) => r.results[x] || (r.partial && r.settings.methods.includes(x)));
  const dirs = DIR_ORDER.filter((d) => methods.some((x) => get(r, x, d, "heads") || get(r, x, d, "neurons")) || (r.partial && r.settings.directions.includes(d)));
  const comps = r.settings?.components || ["heads", "neurons"];
  return { methods, dirs, comps };
}

/**
 * The view's "one colour scale" checkbox: panels of the same unit share the
 * largest |value| among them (fractions of the gap apart from raw IG), so
 * that colours compare across panels. Returns the scale of each unit, or
 * null when each panel has its own.
 */
export function sharedScaleToggle(view, maps) {
  if (!view.controls.querySelector("[data-control=shared]")) {
    view.checkbox(
      "shared",
      "one colour scale for the panels of each unit",
      "Off: each panel's colours span its own largest |value|. On: panels with the same unit (fraction of the gap; raw IG apart) share one scale, so equal colours mean equal numbers.",
    );
  }
  if (!view.state.shared) return null;
  const scales = {};
  for (const { unit, rows } of maps) scales[unit] = Math.max(scales[unit] || 0, maxAbs(rows.filter(Boolean)) || 0);
  return scales;
}

/** Heads or Neurons (view.view): a heatmap per method, a row of them per direction. */
export function renderScores(view, r) {
  const c = view.view;
  const m = r.model;
  const { methods, dirs, comps } = shown(r);
  if (!comps.includes(c)) return view.empty(`No ${c} in this run: turn on “${c}” and run again.`);
  const maps = [];
  for (const d of dirs) for (const x of methods) if (get(r, x, d, c)) maps.push({ unit: unitOf(x, c), rows: get(r, x, d, c) });
  const scales = sharedScaleToggle(view, maps);
  for (const d of dirs) {
    const grid = view.section(`${c}-${d}`, `${title(c)}, ${DIR_NAMES[d]}`, d === dirs[0] ? SCORES_NOTE : undefined);
    grid.classList.toggle("wide", c === "neurons");
    for (const x of methods) {
      const rows = get(r, x, d, c) || (r.partial ? new Array(m.n_layers).fill(null) : null);
      if (!rows) continue;
      view.heatmap(`${x}-${d}-${c}`, grid, {
        unit: unitOf(x, c),
        scale: scales ? scales[unitOf(x, c)] || 1 : null,
        title: `${METHOD_NAMES[x]} ${DIR_NAMES[d]}`,
        component: c,
        rows,
        layers: m.n_layers,
        cols: c === "heads" ? m.n_heads : m.d_mlp,
        valueName: METHOD_NAMES[x],
        onOpen: c === "heads" && r.patterns ? (l, h) => view.openHead(l, h) : undefined,
      });
    }
  }
}

/** IG* and AtP against AP, per component kind and direction. */
export function renderScatter(view, r) {
  if (r.partial) return view.empty("Scatter plots appear when the run finishes.");
  if (r.schema === 1) return view.empty("This report was saved by an older patchlab (schema 1) and has no IG* (gap-normalised IG): recompute it to compare IG with AP on one scale.");
  const { dirs, comps } = shown(r);
  for (const c of comps) {
    const grid = view.section(
      `scatter-${c}`,
      `${title(c)}: IG* and AtP against AP`,
      "Each point is one component. The red line is the least-squares fit; the dotted line is y = x, where the two methods agree exactly. All three axes are fractions of the metric gap m_base − m_other: AP and AtP are, and IG* is IG's attribution summed over the component's elements (positions × d_model for a head, positions for a neuron) and divided by the gap. Raw IG, a mean per element, is not on this scale: IG* = IG × positions × d_model / gap for heads, IG × positions / gap for neurons. Points on the diagonal are where IG's straight-line path agrees with patching.",
    );
    for (const other of ["ig_norm", "atp"]) {
      for (const d of dirs) {
        const x = get(r, "ap", d, c), y = get(r, other, d, c);
        if (!x || !y) continue;
        const key = `${other}_${d}__vs__ap_${d}`;
        view.scatter(`scatter-${other}-${d}-${c}`, grid, {
          title: `${METHOD_NAMES[other]} vs AP, ${DIR_NAMES[d]}`,
          component: c,
          x,
          y,
          xLabel: `AP ${DIR_NAMES[d]}`,
          yLabel: `${METHOD_NAMES[other]} ${DIR_NAMES[d]}`,
          r: r.analysis?.correlations?.[c]?.[key],
          diagonal: true,
        });
      }
    }
  }
  if (!view.plots.size) view.empty("Scatter plots need AP and IG or AtP results.");
}

/** Each method's asymmetry A across directions, the latent sets marked. */
export function renderLatent(view, r) {
  if (r.partial) return view.empty("Latent components appear when the run finishes.");
  if (r.schema === 1) return view.empty("This report was saved by an older patchlab (schema 1), whose latent sets compared raw IG with AP (opposite meanings whenever m_clean > m_corrupt): recompute it for the latent components.");
  const m = r.model;
  const a = r.analysis || {};
  for (const c of shown(r).comps) {
    const ov = a.overlap?.[c];
    const top = `the top ${Math.round((1 - a.percentile) * 100)} % of |A|, A = (S_ccl − S_cc) / max|S_ccl − S_cc|`;
    const note = ov
      ? `${LATENT_LEGEND} Marked: ${top}. Overlap of IG*'s and AP's sets (Jaccard): AND ${ov.and.toFixed(3)}, OR ${ov.or.toFixed(3)}.`
      : `${LATENT_LEGEND} Marked: ${top}. (Overlaps need IG and AP in both directions.)`;
    const grid = view.section(`latent-${c}`, `${title(c)}: asymmetry across directions`, note);
    grid.classList.toggle("wide", c === "neurons");
    for (const x of ASYM_ORDER) {
      const rows = a.asymmetry?.[x]?.[c];
      if (!rows) continue;
      view.heatmap(`latent-${x}-${c}`, grid, {
        title: `${METHOD_NAMES[x]} asymmetry`,
        component: c,
        rows,
        layers: m.n_layers,
        cols: c === "heads" ? m.n_heads : m.d_mlp,
        marks: a.latent?.[x]?.[c] || null,
        valueName: "A",
        unit: "A (scaled to ±1)",
      });
    }
  }
  if (!view.plots.size) view.empty("Latent components need both directions.");
}
