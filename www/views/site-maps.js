// The views of TransformerLens's patching sites: Residual stream (layer ×
// position), Head sites (q / k / v / pattern / z, all positions or by
// position, and the pattern by destination) and Attention (a head's
// patterns, with pattern_dest_src's patching effect as an overlay).

import { componentLabel } from "../plots.js";
import { visibleText } from "../dom.js";
import { HEAD, LAYER, mapExports } from "./exports.js";
import { sharedScaleToggle } from "./scores.js";
import { DIR_NAMES, DIR_ORDER, get, hasSite, METHOD_NAMES, METHOD_ORDER, unitOf } from "./report.js";

const RESID_SITES = ["resid_pre", "resid_mid", "attn_out", "mlp_out"];
const HEAD_GRID_SITES = ["q", "k", "v", "pattern", "z"];
const BY_POS_SITES = ["q_by_pos", "k_by_pos", "v_by_pos", "z_by_pos"];
const SCALE_NOTE = "AP, AtP and IG* are fractions of the metric gap, (m_patched − m_base) / (m_base − m_other): −1 moves the metric all the way to the other run's value; IG is raw, captum's attribution summed over the site's piece (IG* is that sum divided by the gap). Positions before the first differing token (red, dashed line) are exactly 0.";

/** The chosen residual-stream site's map, per direction and method. */
export function renderResid(view, r) {
  const sites = RESID_SITES.filter((x) => hasSite(r, x));
  if (!sites.length) return view.empty("No residual-stream maps in this report: tick resid_pre, resid_mid, attn_out or mlp_out under Sites and run again.");
  const site = view.pick("site", sites, "site");
  view.select("site", "Site", sites.map((x) => [x, x]), site, (v) => { view.state.site = v; });
  const maps = [];
  for (const d of DIR_ORDER) for (const x of METHOD_ORDER) if (Array.isArray(get(r, x, d, site))) maps.push({ unit: unitOf(x, site), rows: get(r, x, d, site) });
  const scales = sharedScaleToggle(view, maps);
  for (const d of DIR_ORDER) {
    const methods = METHOD_ORDER.filter((x) => Array.isArray(get(r, x, d, site)));
    if (!methods.length) continue;
    const grid = view.section(`resid-${site}-${d}`, `${site} (layer × position), ${DIR_NAMES[d]}`, SCALE_NOTE);
    grid.classList.add("positions");
    for (const x of methods) {
      const rows = get(r, x, d, site);
      view.posMap(`${x}-${d}-${site}`, grid, { title: `${METHOD_NAMES[x]} ${site}, ${DIR_NAMES[d]}`, rows, valueName: METHOD_NAMES[x], unit: unitOf(x, site), scale: scales ? scales[unitOf(x, site)] || 1 : null, exports: mapExports(rows, [LAYER, view.posAxis()], x) });
    }
  }
}

/** The head sites of the chosen method and direction: layer × head grids, then head-by-position maps. */
export function renderHeadSites(view, r) {
  const m = r.model;
  const grids = HEAD_GRID_SITES.filter((x) => hasSite(r, x));
  const byPos = BY_POS_SITES.filter((x) => hasSite(r, x));
  const dest = hasSite(r, "pattern_by_dest") ? ["pattern_by_dest"] : [];
  if (!grids.length && !byPos.length && !dest.length) return view.empty("No head sites in this report: tick q, k, v, pattern or z (all positions or by position) under Sites and run again.");
  const [x, d] = view.pickMethodDir(r, [...grids, ...byPos, ...dest]);
  const name = `${METHOD_NAMES[x]} ${DIR_NAMES[d]}`;
  const open = r.patterns ? (l, h) => view.openHead(l, h) : undefined;
  const have = (list) => list.filter((site) => Array.isArray(get(r, x, d, site)));
  const gridScales = sharedScaleToggle(view, have(grids).map((site) => ({ unit: unitOf(x, site), rows: get(r, x, d, site) })));
  if (have(grids).length) {
    const grid = view.section(`hs-grid-${x}-${d}`, `Heads, every position patched: ${name}`, `Each head's query, key, value, pattern and z patched at all positions at once. ${open ? "Double-click a head for its attention pattern." : ""}`);
    for (const site of have(grids)) {
      const rows = get(r, x, d, site);
      view.heatmap(`${x}-${d}-${site}`, grid, { title: `${site}: ${name}`, component: "heads", rows, layers: m.n_layers, cols: m.n_heads, valueName: `${METHOD_NAMES[x]} ${site}`, unit: unitOf(x, site), scale: gridScales ? gridScales[unitOf(x, site)] || 1 : null, ablation: null, onOpen: open, exports: mapExports(rows, [LAYER, HEAD], x) });
    }
  }
  if (have(byPos).length) {
    const grid = view.section(`hs-pos-${x}-${d}`, `Heads by position: ${name}`, `One row per head (layer · head), one column per position. ${SCALE_NOTE}`);
    grid.classList.add("positions");
    for (const site of have(byPos)) {
      const map = get(r, x, d, site); // [layer][pos][head]
      const rows = [];
      for (const layer of map) for (let h = 0; h < m.n_heads; h++) rows.push(layer.map((pos) => pos[h]));
      view.posMap(`${x}-${d}-${site}`, grid, { title: `${site}: ${name}`, ...headRows(view, r, rows, site), valueName: `${METHOD_NAMES[x]} ${site}`, unit: unitOf(x, site), exports: mapExports(map, [LAYER, view.posAxis(), HEAD], x) });
    }
  }
  if (have(dest).length) {
    const grid = view.section(`hs-dest-${x}-${d}`, `Attention pattern by destination: ${name}`, "Each head's pattern patched at one destination (query) position: a row per head, a column per destination.");
    const map = get(r, x, d, "pattern_by_dest"); // [layer][head][dest]
    view.posMap(`${x}-${d}-pattern_by_dest`, grid, { title: `pattern_by_dest: ${name}`, ...headRows(view, r, map.flat(1), "pattern_by_dest"), valueName: `${METHOD_NAMES[x]} pattern`, unit: unitOf(x, "pattern_by_dest"), exports: mapExports(map, [LAYER, HEAD, view.posAxis("dest")], x) });
  }
}

/** Per-head rows (layer · head) of a head-by-position map, for the small multiples. */
function headRows(view, r, rows, site) {
  const H = r.model.n_heads;
  const labels = [];
  for (let l = 0; l < r.model.n_layers; l++) for (let h = 0; h < H; h++) labels.push(`L${l} H${h}`);
  const rowName = (i) => componentLabel("heads", Math.floor(i / H), i % H);
  return {
    rows,
    rowLabels: labels,
    rowName,
    yLabel: "layer · head",
    onOpen: r.patterns ? (i) => view.openHead(Math.floor(i / H), i % H) : undefined,
    xLabel: site === "pattern_by_dest" ? "destination" : "position",
  };
}

/** A destination × source map of one head (causal: the upper triangle left blank). */
function destSrc(view, key, grid, { run, rows, title, valueName, ...opts }) {
  const tokens = view.report.tokens[run];
  return view.posMap(key, grid, {
    title,
    rows,
    run,
    rowLabels: tokens.map((t) => visibleText(t.text)),
    rowName: (i) => `destination ${i} ${JSON.stringify(tokens[i].text)} ←`,
    yLabel: "destination",
    xLabel: "source",
    blank: (i, j) => j > i,
    valueName,
    exports: mapExports(rows, [view.posAxis("dest", run), view.posAxis("src", run)], valueName.replace(/\W+/g, "_")),
    ...opts,
  });
}

/** The chosen head's clean and corrupt patterns and their difference, and the patching-effect overlay. */
export function renderPattern(view, r) {
  if (!r.patterns) return view.empty("This report has no attention patterns: they come with any patching site or DLA (tick one under Sites and run again).");
  const top = r.analysis?.top?.ap?.clean_to_corrupt?.heads?.[0];
  const [l, h] = view.pickHead(r, top ? [top.layer, top.index] : [0, 0]);
  const label = componentLabel("heads", l, h);
  const clean = r.patterns.clean[l][h], corrupt = r.patterns.corrupt[l][h];
  const diff = clean.map((row, i) => row.map((v, j) => (v === null || corrupt[i][j] === null ? null : v - corrupt[i][j])));
  const grid = view.section(`pattern-${l}-${h}`, `Attention pattern of ${label}`, "Rows: destination (query) positions; columns: source (key) positions; the masked upper triangle is blank. Hover a cell for its weight (click keeps the tooltip).");
  destSrc(view, `pattern-clean-${l}-${h}`, grid, { run: "clean", rows: clean, title: `${label} clean pattern`, valueName: "attention (clean)", unit: "attention weight", sequential: true, scale: 1 });
  destSrc(view, `pattern-corrupt-${l}-${h}`, grid, { run: "corrupt", rows: corrupt, title: `${label} corrupt pattern`, valueName: "attention (corrupt)", unit: "attention weight", sequential: true, scale: 1 });
  destSrc(view, `pattern-diff-${l}-${h}`, grid, { run: "clean", rows: diff, title: `${label} clean − corrupt`, valueName: "clean − corrupt", unit: "weight difference" });
  if (hasSite(r, "pattern_dest_src")) renderPatternEffect(view, r, l, h, label);
}

/** A checkbox for pattern_dest_src's map of the head; when on, that map (method and direction selects). */
function renderPatternEffect(view, r, l, h, label) {
  view.checkbox("overlay", "patching effect (pattern_dest_src)");
  if (!view.state.overlay) return;
  const [x, d] = view.pickMethodDir(r, ["pattern_dest_src"]);
  const rows = get(r, x, d, "pattern_dest_src")[l][h];
  const effect = view.section(`pattern-effect-${x}-${d}-${l}-${h}`, `Patching effect of each attention weight of ${label}: ${METHOD_NAMES[x]} ${DIR_NAMES[d]}`, `The metric's change when this one weight (destination, source) is patched. ${SCALE_NOTE}`);
  destSrc(view, `pattern-effect-${x}-${d}-${l}-${h}`, effect, { run: "clean", rows, title: `${label} ${METHOD_NAMES[x]} ${DIR_NAMES[d]}`, valueName: `${METHOD_NAMES[x]} pattern_dest_src`, unit: unitOf(x, "pattern_dest_src") });
}
