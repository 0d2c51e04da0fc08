// The Features view: an SAE's features scored by AP, IG* and AtP
// (docs/methods.md, "SAE features"). Per SAE: a table of the top features
// by |score| of the chosen method and direction — each with a sparkline of
// its activation by position in both runs, its scores in both directions,
// its AND / OR mark and a link to its Neuronpedia page —, the feature ×
// position map of the by-position scores of those features, and IG* / AtP
// against AP over the features with Pearson r. Hover shows values, a click
// pins a feature (the pin box lists its scores). Exports: the table as
// CSV, the SAE's maps as .npy files (zip), every plot as PNG.
// It reads only the report, so it works live, results-only and in embeds.

import { download, el } from "../dom.js";
import { npyBytes, zip } from "../npy.js";
import { fmt } from "../plots.js";
import { csvField, mapExports } from "./exports.js";
import { activationsOf, featureKey, featureMap, featureNpyEntries, neuronpediaId, neuronpediaUrl, saeHooks, saeInfo } from "./feature-maps.js";
import { DIR_NAMES, DIR_ORDER, METHOD_NAMES, unitOf } from "./report.js";

// the methods a feature is ranked by (on AP's scale), in the selects' order
const RANK_METHODS = ["ap", "ig_norm", "atp"];
const TOP_CHOICES = [10, 20, 50, 100];
const CLEAN_COLOUR = "#2166ac";
const CORRUPT_COLOUR = "#d6604d";

const NOTE =
  "Each feature's score: the metric's change when that feature alone takes the other run's activation (AP: at every position at once, the SAE in the model with its error term, so nothing else changes), as a fraction of the gap m_base − m_other; " +
  "IG* integrates the gradient along the straight path of all features together, divided by the gap; AtP is the first-order estimate. " +
  "Features equal in both runs score exactly 0 and are left out. ▲ AND / ○ OR: the latent sets of the chosen method (as in the Latent view, over the features that can score).";

/** "blocks.8.hook_resid_pre — gpt2-small-res-jb/…" for the SAE select. */
function saeLabel(r, hook) {
  const s = saeInfo(r, hook);
  return s.name && s.name !== hook ? `${hook} (${s.name})` : hook;
}

/** The features of largest |score| in a dense map, largest first (0 and non-finite left out). */
export function topFeatures(values, n) {
  const idx = [];
  for (let i = 0; i < values.length; i++) if (Number.isFinite(values[i]) && values[i] !== 0) idx.push(i);
  idx.sort((a, b) => Math.abs(values[b]) - Math.abs(values[a]) || a - b);
  return idx.slice(0, n);
}

/** The Features view of the chosen SAE, method and direction. */
export function renderFeatures(view, r) {
  const hooks = saeHooks(r);
  if (!hooks.length) return view.empty("No SAE features in this report: load an SAE under “SAE features”, tick “Score SAE features” and run again (or pass saes to analyze()).");
  const hook = view.pick("hook", hooks, "SAE");
  view.select("hook", "SAE", hooks.map((h) => [h, saeLabel(r, h)]), hook, (v) => { view.state.hook = v; });
  const methods = RANK_METHODS.filter((x) => DIR_ORDER.some((d) => featureMap(r, x, d, hook)));
  if (!methods.length) return view.empty(`This report has no AP, IG* or AtP scores of ${hook}'s features.`);
  // raw IG (another view's choice) ranks as IG*, its normalised form
  if (view.state.method === "ig" && methods.includes("ig_norm")) view.state.method = "ig_norm";
  const x = view.pick("method", methods, "method", methods[0]);
  const dirs = DIR_ORDER.filter((d) => featureMap(r, x, d, hook));
  const d = view.pick("direction", dirs, "direction");
  view.select("method", "Rank by", methods.map((k) => [k, METHOD_NAMES[k]]), x, (v) => { view.state.method = v; });
  view.select("direction", "Direction", dirs.map((k) => [k, DIR_NAMES[k]]), d, (v) => { view.state.direction = v; });
  const top = TOP_CHOICES.includes(Number(view.state.top)) ? Number(view.state.top) : 20;
  view.select("top", "Features", TOP_CHOICES.map((k) => [String(k), `top ${k}`]), String(top), (v) => { view.state.top = Number(v); });

  const info = saeInfo(r, hook);
  const all = featureMap(r, x, d, hook);
  const features = topFeatures(all.values, top);
  const title = `${hook}: the top ${features.length} features by |${METHOD_NAMES[x]}|, ${DIR_NAMES[d]}`;
  const grid = view.section(`features-${hook}-${x}-${d}`, title, `${NOTE} SAE: ${info.name}, ${info.architecture}, d_sae ${info.d_sae}${info.neuronpedia_id ? `, Neuronpedia ${info.neuronpedia_id}` : ""}.`);
  grid.classList.add("wide");
  if (!features.length) {
    grid.append(el("p", "note", `Every feature of ${hook} scores 0 by ${METHOD_NAMES[x]} ${DIR_NAMES[d]}: no feature's activation differs between the runs from the first differing token on.`));
    return;
  }
  const table = featureTable(view, r, hook, x, d, features);
  grid.append(table.box);
  renderFeatureMaps(view, r, hook, x, d, features);
  renderFeatureScatter(view, r, hook);
}

/** The table of the top features, with its CSV and npy exports and a line that says what the mouse is over. */
function featureTable(view, r, hook, x, d, features) {
  const T = r.tokens.clean.length;
  const tokens = r.tokens.clean;
  const info = saeInfo(r, hook);
  const np = neuronpediaId(info);
  const key = featureKey(hook);
  const latent = r.analysis?.features?.[hook]?.latent?.[x] || {};
  const and = new Set(latent.and || []), or = new Set(latent.or || []);
  const clean = activationsOf(r, hook, "clean", features, T);
  const corrupt = activationsOf(r, hook, "corrupt", features, T);
  const score = (f, dir) => featureMap(r, x, dir, hook)?.values[f];
  const rows = features.map((f) => ({
    f,
    scores: DIR_ORDER.map((dir) => score(f, dir)),
    mark: and.has(f) ? "and" : or.has(f) ? "or" : null,
    clean: clean.get(f),
    corrupt: corrupt.get(f),
    url: np ? neuronpediaUrl(np, f) : null,
  }));

  const box = el("div", "feature-table-box");
  const tools = el("div", "feature-tools");
  tools.append(el("span", "hint", "Export: "));
  const csv = el("button", "small", "CSV");
  csv.type = "button";
  csv.dataset.export = "features-csv";
  csv.title = "Download this table as CSV";
  const name = `${view.prefix}-features-${hook.replace(/[^\w.-]+/g, "_")}`;
  csv.addEventListener("click", () => download(`${name}.csv`, featureTableCsv(r, hook, x, rows), "text/csv"));
  const npy = el("button", "small", "Maps as .npy (zip)");
  npy.type = "button";
  npy.dataset.export = "features-npy";
  npy.title = `Download every map of ${hook} (each method and direction, all positions [d_sae] and by position [T, d_sae]) as .npy files, as patchlab analyze --npy names them`;
  npy.addEventListener("click", () => download(`${name}.zip`, zip(featureNpyEntries(r, npyBytes, [hook]))));
  tools.append(csv, " ", npy);

  const status = el("p", "note feature-hover");
  status.setAttribute("aria-live", "polite");
  status.textContent = "Hover a sparkline for the activations at a position; click a row to pin its feature.";

  const table = el("table", "feature-table");
  table.dataset.hook = hook;
  const head = el("tr");
  const legend = el("th", null, "activation by position: ");
  legend.append(el("span", "legend-clean", "clean"), " / ", el("span", "legend-corrupt", "corrupt"));
  head.append(el("th", null, "feature"), legend);
  for (const dir of DIR_ORDER) head.append(el("th", dir === d ? "chosen" : null, `${METHOD_NAMES[x]} ${DIR_NAMES[dir]}`));
  head.append(el("th", null, "latent"), el("th", null, "Neuronpedia"));
  const thead = el("thead");
  thead.append(head);
  const tbody = el("tbody");
  for (const row of rows) {
    const tr = el("tr");
    tr.dataset.feature = String(row.f);
    const spark = sparkline(row, tokens, r.tokens.first_diff, (p) => {
      status.textContent = p === null
        ? "Hover a sparkline for the activations at a position; click a row to pin its feature."
        : `feature ${row.f} · position ${p} ${JSON.stringify(tokens[p].text)}: clean ${fmt(row.clean[p], 5)}, corrupt ${fmt(row.corrupt[p], 5)}`;
    });
    const sparkCell = el("td", "spark");
    sparkCell.append(spark);
    tr.append(el("td", "feature-index", String(row.f)), sparkCell);
    row.scores.forEach((v, k) => {
      const td = el("td", `num${DIR_ORDER[k] === d ? " chosen" : ""}`, v === undefined ? "—" : fmt(v, 4));
      td.dataset.direction = DIR_ORDER[k];
      if (v !== undefined) td.dataset.value = String(v);
      tr.append(td);
    });
    const mark = el("td", `latent${row.mark ? ` ${row.mark}` : ""}`, row.mark === "and" ? "▲ AND" : row.mark === "or" ? "○ OR" : "");
    tr.append(mark);
    const link = el("td", "neuronpedia");
    if (row.url) {
      const a = el("a", null, `${np}/${row.f} ↗`);
      a.href = row.url;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      link.append(a);
    } else link.textContent = "—";
    tr.append(link);
    tr.addEventListener("click", (e) => {
      if (e.target.closest("a")) return; // the link opens Neuronpedia, no pin
      view.selection.toggle({ component: key, layer: 0, index: row.f });
    });
    tbody.append(tr);
  }
  table.append(thead, tbody);
  const mark = () => {
    const p = view.selection.pinned;
    for (const tr of tbody.children) tr.classList.toggle("pinned-row", !!p && p.component === key && String(p.index) === tr.dataset.feature);
  };
  view.featureUnsub?.();
  view.featureUnsub = view.selection.on(mark);
  mark();
  const wrap = el("div", "feature-table-wrap");
  wrap.append(table);
  box.append(tools, wrap, status);
  return { box, rows };
}

/** A small canvas: the feature's activation at each position, clean and corrupt; onHover(position | null). */
function sparkline(row, tokens, firstDiff, onHover) {
  const W = 150, H = 30, T = tokens.length;
  const c = el("canvas", "sparkline");
  const dpr = window.devicePixelRatio || 1;
  c.width = Math.round(W * dpr);
  c.height = Math.round(H * dpr);
  c.style.width = `${W}px`;
  c.style.height = `${H}px`;
  c.setAttribute("role", "img");
  c.setAttribute("aria-label", `feature ${row.f}: activation by position, clean and corrupt`);
  const finite = (v) => (Number.isFinite(v) ? v : 0);
  const hi = Math.max(1e-12, ...row.clean.map(finite), ...row.corrupt.map(finite));
  const lo = Math.min(0, ...row.clean.map(finite), ...row.corrupt.map(finite));
  const px = (p) => (T > 1 ? 3 + (p / (T - 1)) * (W - 6) : W / 2);
  const py = (v) => H - 3 - ((finite(v) - lo) / (hi - lo)) * (H - 6);
  const draw = (hover) => {
    const ctx = c.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, W, H);
    if (Number.isInteger(firstDiff) && firstDiff < T) {
      // the positions from the first differing token on (the earlier ones are the same prefix)
      ctx.fillStyle = "#f6f0f0";
      ctx.fillRect(px(firstDiff) - 1, 0, W - px(firstDiff) + 1, H);
    }
    ctx.strokeStyle = "#ddd";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(0, py(0) + 0.5);
    ctx.lineTo(W, py(0) + 0.5);
    ctx.stroke();
    for (const [values, colour, width] of [[row.corrupt, CORRUPT_COLOUR, 1.5], [row.clean, CLEAN_COLOUR, 1.5]]) {
      ctx.strokeStyle = colour;
      ctx.lineWidth = width;
      ctx.beginPath();
      values.forEach((v, p) => (p ? ctx.lineTo(px(p), py(v)) : ctx.moveTo(px(p), py(v))));
      ctx.stroke();
    }
    if (hover !== null) {
      ctx.strokeStyle = "#555";
      ctx.beginPath();
      ctx.moveTo(px(hover) + 0.5, 0);
      ctx.lineTo(px(hover) + 0.5, H);
      ctx.stroke();
    }
    c.dataset.drawn = String((Number(c.dataset.drawn) || 0) + 1);
  };
  // the numbers drawn, for tests and the inspector
  c.dataset.clean = JSON.stringify(Array.from(row.clean));
  c.dataset.corrupt = JSON.stringify(Array.from(row.corrupt));
  draw(null);
  c.addEventListener("mousemove", (e) => {
    const b = c.getBoundingClientRect();
    const p = Math.max(0, Math.min(T - 1, Math.round(((e.clientX - b.left - 3) / (W - 6)) * (T - 1))));
    draw(p);
    onHover(p);
  });
  c.addEventListener("mouseleave", () => {
    draw(null);
    onHover(null);
  });
  return c;
}

/** The table as CSV: one line per feature shown, every method and direction's score over all positions, the latent marks, the peak activations and the Neuronpedia page. */
export function featureTableCsv(r, hook, x, rows) {
  const methods = RANK_METHODS.filter((m) => DIR_ORDER.some((d) => featureMap(r, m, d, hook)));
  const cols = methods.flatMap((m) => DIR_ORDER.filter((d) => featureMap(r, m, d, hook)).map((d) => [m, d]));
  const header = ["hook", "feature", ...cols.map(([m, d]) => `${m}_${d}`), `latent_${x}`, "max_activation_clean", "max_activation_corrupt", "neuronpedia"];
  const lines = [header.join(",")];
  const peak = (a) => a.reduce((m, v) => (Number.isFinite(v) && v > m ? v : m), 0);
  for (const row of rows) {
    const scores = cols.map(([m, d]) => {
      const v = featureMap(r, m, d, hook).values[row.f];
      return Number.isFinite(v) ? String(v) : "";
    });
    lines.push([csvField(hook), row.f, ...scores, row.mark || "", peak(row.clean), peak(row.corrupt), row.url || ""].join(","));
  }
  return `${lines.join("\n")}\n`;
}

/** The by-position map of the top features: a row per feature, a column per position. */
function renderFeatureMaps(view, r, hook, x, d, features) {
  const byPos = featureMap(r, x, d, hook, true);
  if (!byPos) return;
  const [T, ds] = byPos.shape;
  const rows = features.map((f) => {
    const out = new Array(T);
    for (let p = 0; p < T; p++) out[p] = byPos.values[p * ds + f];
    return out;
  });
  const key = featureKey(hook);
  const grid = view.section(`features-map-${hook}-${x}-${d}`, `${hook}: the top features by position, ${METHOD_NAMES[x]} ${DIR_NAMES[d]}`, "Each cell: the feature patched at that position only (sae_by_pos). Positions before the first differing token (red, dashed line) are the same prefix in both runs and score 0. Click a cell to pin its feature.");
  grid.classList.add("positions");
  view.posMap(`features-bypos-${x}-${d}-${hook}`, grid, {
    title: `${METHOD_NAMES[x]} ${DIR_NAMES[d]} by position, ${hook}`,
    rows,
    rowLabels: features.map((f) => `f${f}`),
    rowName: (i) => `feature ${features[i]}`,
    yLabel: "feature",
    valueName: `${METHOD_NAMES[x]} (by position)`,
    unit: unitOf(x, "sae"),
    pinFor: (i) => ({ component: key, layer: 0, index: features[i] }),
    exports: mapExports(rows, [{ name: "rank", labels: features.map(String), labelName: "feature" }, view.posAxis()], x),
  });
}

/** IG* and AtP against AP over the analysed features, per direction, with the report's Pearson r. */
function renderFeatureScatter(view, r, hook) {
  const a = r.analysis?.features?.[hook];
  const analysed = a?.features;
  const key = featureKey(hook);
  const ds = saeInfo(r, hook).d_sae;
  const only = (m) => {
    // the analysed features' scores; every other feature NaN (not drawn)
    const out = new Array(ds).fill(NaN);
    const list = analysed || [...m.values.keys()];
    for (const f of list) out[f] = m.values[f];
    return [out];
  };
  let grid = null;
  for (const other of ["ig_norm", "atp"]) {
    for (const d of DIR_ORDER) {
      const xm = featureMap(r, "ap", d, hook), ym = featureMap(r, other, d, hook);
      if (!xm || !ym) continue;
      grid ||= view.section(`features-scatter-${hook}`, `${hook}: IG* and AtP against AP, feature by feature`, `Each point is one feature that can score (${analysed ? analysed.length : "all"} of ${ds}); the red line is the least-squares fit, the dotted line y = x. All axes are fractions of the gap m_base − m_other. r is the report's (analysis.features).`);
      view.scatter(`features-scatter-${other}-${d}-${hook}`, grid, {
        title: `${METHOD_NAMES[other]} vs AP, ${DIR_NAMES[d]} (${hook})`,
        component: key,
        x: only(xm),
        y: only(ym),
        label: (_l, i) => `feature ${i}`,
        xLabel: `AP ${DIR_NAMES[d]}`,
        yLabel: `${METHOD_NAMES[other]} ${DIR_NAMES[d]}`,
        r: a?.correlations?.[`${other}_${d}__vs__ap_${d}`],
        diagonal: true,
      });
    }
  }
}

/** The pin box's line of a pinned feature: its scores in every map of the report. */
export function featurePinItems(r, hook, f) {
  const items = [];
  for (const x of [...RANK_METHODS, "ig"]) {
    for (const d of DIR_ORDER) {
      const m = featureMap(r, x, d, hook);
      if (m && f < m.values.length) items.push(`${METHOD_NAMES[x]} ${DIR_NAMES[d]}: ${fmt(m.values[f], 5)}`);
    }
  }
  return items;
}
