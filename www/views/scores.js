// The views of heads' and neurons' scores: Heads and Neurons (one heatmap
// per method and direction, filled in as layers stream in), Scatter (IG*
// and AtP against AP) and Latent (the asymmetry across directions, with
// the AND and OR components marked).

import { ASYM_ORDER, DIR_NAMES, DIR_ORDER, get, METHOD_NAMES, METHOD_ORDER } from "./report.js";

// what AND and OR mean, for the Latent view's legend (docs/methods.md)
const LATENT_LEGEND =
  "▲ AND (A > 0): matters when noising — patching in the corrupt value breaks the behaviour — but restoring it alone does not help. " +
  "● OR (A < 0): restoring it alone helps, but noising it alone does not break the behaviour.";

const title = (c) => (c === "heads" ? "Heads" : "Neurons");

/** The methods, directions and component kinds a report has (or, while it runs, will have). */
function shown(r) {
  const methods = METHOD_ORDER.filter((x) => r.results[x] || (r.partial && r.settings.methods.includes(x)));
  const dirs = DIR_ORDER.filter((d) => methods.some((x) => get(r, x, d, "heads") || get(r, x, d, "neurons")) || (r.partial && r.settings.directions.includes(d)));
  const comps = r.settings?.components || ["heads", "neurons"];
  return { methods, dirs, comps };
}

/** Heads or Neurons (view.view): a heatmap per method, a row of them per direction. */
export function renderScores(view, r) {
  const c = view.view;
  const m = r.model;
  const { methods, dirs, comps } = shown(r);
  if (!comps.includes(c)) return view.empty(`No ${c} in this run: turn on “${c}” and run again.`);
  for (const d of dirs) {
    const grid = view.section(`${c}-${d}`, `${title(c)}, ${DIR_NAMES[d]}`);
    grid.classList.toggle("wide", c === "neurons");
    for (const x of methods) {
      const rows = get(r, x, d, c) || (r.partial ? new Array(m.n_layers).fill(null) : null);
      if (!rows) continue;
      view.heatmap(`${x}-${d}-${c}`, grid, {
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
      "Each point is one component. The red line is the least-squares fit; the dotted line is y = x, where the two methods agree exactly (IG* is IG divided by the metric gap, on AP's scale, so points on the diagonal are where IG's straight-line path agrees with patching).",
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
      });
    }
  }
  if (!view.plots.size) view.empty("Latent components need both directions.");
}
