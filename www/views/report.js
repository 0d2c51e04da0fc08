// What the views read from a report: the methods' and directions' names and
// order, its maps, the check that a file is a report, the partial report
// that streamed results fill in, and the one-line summary.

import { componentLabel, fmt } from "../plots.js";
import { SITE_AXES } from "../sites.js";
import { checkFeatureParts } from "./feature-maps.js";

// ig_norm is IG* (gap-normalised IG, on AP's scale), derived from ig
export const METHOD_NAMES = { ap: "AP", ig: "IG", ig_norm: "IG*", atp: "AtP" };
export const DIR_NAMES = { clean_to_corrupt: "clean → corrupt", corrupt_to_clean: "corrupt → clean" };
export const METHOD_ORDER = ["ap", "ig_norm", "ig", "atp"];
export const DIR_ORDER = ["clean_to_corrupt", "corrupt_to_clean"];
// the methods with an asymmetry and latent sets (all on AP's scale)
export const ASYM_ORDER = ["ig_norm", "ap", "atp"];
/**
 * What a map's numbers are, for its colour bar: AP, AtP and IG* are
 * fractions of the metric gap m_base − m_other; raw IG is a mean per element
 * for heads and neurons and a sum over the piece for patching sites
 * (docs/methods.md).
 */
export function unitOf(method, site = "heads") {
  if (method !== "ig") return "fraction of gap";
  return site === "heads" || site === "neurons" ? "raw IG (mean)" : "raw IG (sum)";
}
export const SITES_LATER = "Site maps, attention patterns and DLA appear when the analysis finishes (heads and neurons stream in while it runs).";
export const FEATURES_LATER = "SAE features appear when the analysis finishes (heads and neurons stream in while it runs).";

const STAGE_METHODS = { AP: "activation patching (AP)", IG: "integrated gradients (IG)", AtP: "attribution patching (AtP)" };
/**
 * The engine's progress stage in words: "AP clean_to_corrupt heads" is
 * "activation patching (AP), clean → corrupt, heads"; "forward" the clean
 * and corrupt runs.
 */
export function stageText(stage) {
  const s = String(stage ?? "");
  if (s === "forward") return "clean and corrupt runs";
  const m = /^(AP|IG|AtP) (\S+) (.+)$/.exec(s);
  if (m && DIR_NAMES[m[2]]) return `${STAGE_METHODS[m[1]]}, ${DIR_NAMES[m[2]]}, ${m[3]}`;
  return s.replace(/clean_to_corrupt|corrupt_to_clean/g, (d) => DIR_NAMES[d]).replace(/_/g, " ");
}

/** A report's map of method m, direction d, component or site c (undefined: none). */
export const get = (r, m, d, c) => r?.results?.[m]?.[d]?.[c];

/** Whether a report has a site's map for some method and direction. */
export const hasSite = (r, site) => METHOD_ORDER.some((x) => DIR_ORDER.some((d) => Array.isArray(get(r, x, d, site))));

const isNum = (v) => v === null || typeof v === "number";
/** Whether x is a nested array of numbers (or null) with these lengths (null: any length). */
function isMapOf(x, dims, k = 0) {
  if (k === dims.length) return isNum(x);
  return Array.isArray(x) && (dims[k] === null || x.length === dims[k]) && x.every((y) => isMapOf(y, dims, k + 1));
}

const bad = (what) => {
  throw new Error(`not a patchlab report: ${what}`);
};

/**
 * Checks that an object read from a file or URL has the shape of a report
 * (numbers where numbers belong); nothing in it is ever evaluated.
 */
export function checkReport(r) {
  if (!r || typeof r !== "object") bad("not a JSON object");
  if (![1, 2, 3, 4].includes(r.schema)) bad(`schema ${JSON.stringify(r.schema)} is not supported (this page reads schemas 1 to 4)`);
  const m = r.model || {};
  for (const k of ["n_layers", "n_heads", "d_mlp"]) if (!Number.isInteger(m[k]) || m[k] < 1 || m[k] > 1e6) bad(`model.${k}`);
  if (!r.results || typeof r.results !== "object") bad("no results");
  const n = Array.isArray(r.tokens?.clean) ? r.tokens.clean.length : null;
  if (n !== null && !r.tokens.clean.every((t) => t && typeof t.text === "string")) bad("tokens.clean");
  checkResults(r, n);
  checkFeatureParts(r, n, bad);
  if (r.dla !== undefined || r.patterns !== undefined) checkDlaAndPatterns(r, n);
  return r;
}

/** Every score map: heads and neurons layer × component, a site's map its axes' lengths. */
function checkResults(r, n) {
  const m = r.model;
  const sizes = { layer: m.n_layers, head: m.n_heads, pos: n, dest: n, src: n };
  for (const [meth, dirs] of Object.entries(r.results)) {
    for (const [dir, maps] of Object.entries(dirs || {})) {
      for (const [comp, rows] of Object.entries(maps || {})) {
        const axes = SITE_AXES[comp];
        if (axes) {
          if (n === null) bad(`results.${meth}.${dir}.${comp} needs the report's tokens`);
          if (!isMapOf(rows, axes.map((a) => sizes[a]))) bad(`results.${meth}.${dir}.${comp} is not a ${axes.join(" × ")} map of numbers`);
          continue;
        }
        if (comp !== "heads" && comp !== "neurons") continue; // a newer patchlab's map: not shown
        const cols = comp === "heads" ? m.n_heads : m.d_mlp;
        if (!Array.isArray(rows) || rows.length !== m.n_layers || rows.some((row) => !Array.isArray(row) || row.length !== cols || !row.every(isNum))) {
          bad(`results.${meth}.${dir}.${comp} is not a ${m.n_layers} × ${cols} map of numbers`);
        }
      }
    }
  }
}

/** Direct logit attribution (per component and per head, at every position) and the attention patterns. */
function checkDlaAndPatterns(r, n) {
  const m = r.model;
  if (n === null) bad("dla and patterns need the report's tokens");
  const k = 2 + 2 * m.n_layers;
  if (r.dla !== undefined) {
    const d = r.dla || {};
    if (!Array.isArray(d.labels) || d.labels.length !== k || !d.labels.every((x) => typeof x === "string") || typeof d.bias !== "number") bad("dla.labels / dla.bias");
    for (const run of ["clean", "corrupt"]) {
      if (!isMapOf(d[run]?.heads, [m.n_layers, m.n_heads, n]) || !isMapOf(d[run]?.layers, [k, n])) bad(`dla.${run} is not heads [layer][head][pos] and layers [component][pos] of numbers`);
    }
  }
  if (r.patterns !== undefined) {
    for (const run of ["clean", "corrupt"]) if (!isMapOf(r.patterns?.[run], [m.n_layers, m.n_heads, n, n])) bad(`patterns.${run} is not a layer × head × dest × src map of numbers`);
  }
}

/** An empty report-shaped object that partial results fill in. */
export function partialReport(info, request) {
  return {
    partial: true,
    model: { name: info.name, n_layers: info.n_layers, n_heads: info.n_heads, d_mlp: info.d_mlp },
    settings: {
      methods: request.methods || ["ap", "ig", "atp"],
      directions: request.directions || DIR_ORDER,
      components: request.components || (request.sites ? request.sites.filter((s) => s === "heads" || s === "neurons") : ["heads", "neurons"]),
      sites: (request.sites || []).filter((s) => s !== "heads" && s !== "neurons" && s !== "dla"),
      dla: (request.sites || []).includes("dla"),
      // the SAEs asked for (hook names or "all"); the report lists them as SAEs
      saes: request.saes || [],
    },
    results: {},
  };
}

/** Adds one layer's scores (a partial message) to a partial report. */
export function addPartial(r, { method, direction, component, layer, scores }) {
  const maps = ((r.results[method] ||= {})[direction] ||= {});
  const rows = (maps[component] ||= new Array(r.model.n_layers).fill(null));
  rows[layer] = Array.from(scores);
}

/**
 * What the report's metric measures, as `patchlab analyze` prints it: the
 * answers' logit difference, or Greater-Than's probability difference of the
 * two-digit years above and at-or-below YY. A name this page does not know
 * is shown as it is rather than mislabelled.
 */
export function metricLabel(r) {
  const name = r.metric?.name ?? r.prompts?.metric ?? "logit_diff";
  if (name === "logit_diff") return `logit[${r.tokens.correct.text}] − logit[${r.tokens.incorrect.text}]`;
  const yy = name.startsWith("greater_than:") ? name.slice("greater_than:".length) : null;
  return yy === null ? `metric ${name}` : `p(year > ${yy}) − p(year ≤ ${yy})`;
}

/** One line: metrics, top components, correlations, backend and timing. */
export function summaryText(r) {
  if (!r) return "";
  if (r.partial) return `Computing… heads first, then neurons.${r.settings?.sites?.length || r.settings?.dla ? ` ${SITES_LATER}` : ""}`;
  const parts = [];
  parts.push(`${metricLabel(r)}: clean ${fmt(r.metric.clean, 3)}, corrupt ${fmt(r.metric.corrupt, 3)}`);
  const top = r.analysis?.top || {};
  for (const m of ["ap", "ig_norm"]) {
    const list = top[m]?.clean_to_corrupt?.heads;
    if (list && list.length) parts.push(`top ${METHOD_NAMES[m]} heads: ${list.slice(0, 3).map((e) => `${componentLabel("heads", e.layer, e.index)} ${fmt(e.score, 3)}`).join(", ")}`);
  }
  const corr = r.analysis?.correlations || {};
  for (const c of ["heads", "neurons"]) {
    const v = corr[c]?.ig_norm_clean_to_corrupt__vs__ap_clean_to_corrupt;
    if (v !== undefined) parts.push(`r(IG*, AP) ${c} ${v === null ? "undefined" : fmt(v, 3)}`);
  }
  const ms = r.timings_ms?.total;
  parts.push(`backend ${r.backend}${ms !== undefined ? `, ${(ms / 1000).toFixed(2)} s` : ""}`);
  return parts.join(" · ");
}
