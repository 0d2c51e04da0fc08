// Renders a patchlab report (or the partial results of a running analysis)
// as tabs of canvas plots: heads, neurons, scatter, latent, and the patching
// sites: residual stream (layer × position), head sites (q/k/v/pattern/z,
// by position), attention patterns, direct logit attribution. Shared by the
// lab page (app.js) and the <patch-lab> element (embed.js).

import { Ablation, Bars, Heatmap, Scatter, Selection, componentLabel, fmt } from "./plots.js";
import { nestedShape } from "./npy.js";
import { el, visibleText } from "./dom.js";

export const VIEWS = [
  ["heads", "Heads"],
  ["neurons", "Neurons"],
  ["scatter", "Scatter"],
  ["latent", "Latent"],
  ["resid", "Residual stream"],
  ["head_sites", "Head sites"],
  ["pattern", "Attention"],
  ["dla", "DLA"],
];
// other names a link or an embed may use for a view
const VIEW_ALIASES = { heads_by_pos: "head_sites", sites: "head_sites", attention: "pattern", residual: "resid" };
/** The view a name (from a URL or an attribute) means, or null. */
export function viewName(name) {
  const v = VIEW_ALIASES[name] || name;
  return VIEWS.some(([k]) => k === v) ? v : null;
}

// The patching sites' axes (TransformerLens's shapes), by site name.
export const SITE_AXES = {
  resid_pre: ["layer", "pos"],
  resid_mid: ["layer", "pos"],
  attn_out: ["layer", "pos"],
  mlp_out: ["layer", "pos"],
  z: ["layer", "head"],
  q: ["layer", "head"],
  k: ["layer", "head"],
  v: ["layer", "head"],
  pattern: ["layer", "head"],
  z_by_pos: ["layer", "pos", "head"],
  q_by_pos: ["layer", "pos", "head"],
  k_by_pos: ["layer", "pos", "head"],
  v_by_pos: ["layer", "pos", "head"],
  pattern_by_dest: ["layer", "head", "pos"],
  pattern_dest_src: ["layer", "head", "pos", "pos"],
};
const RESID_SITES = ["resid_pre", "resid_mid", "attn_out", "mlp_out"];
const HEAD_GRID_SITES = ["q", "k", "v", "pattern", "z"];
const BY_POS_SITES = ["q_by_pos", "k_by_pos", "v_by_pos", "z_by_pos"];
const SITES_LATER = "Site maps, attention patterns and DLA appear when the analysis finishes (heads and neurons stream in while it runs).";
const SCALE_NOTE = "AP, AtP and IG* are on AP's scale, (m_patched − m_base) / (m_base − m_other): −1 moves the metric all the way to the other run's value; IG is raw. Positions before the first differing token (red, dashed line) are exactly 0.";
// ig_norm is IG* (gap-normalised IG, on AP's scale), derived from ig
const METHOD_NAMES = { ap: "AP", ig: "IG", ig_norm: "IG*", atp: "AtP" };
const DIR_NAMES = { clean_to_corrupt: "clean → corrupt", corrupt_to_clean: "corrupt → clean" };
const METHOD_ORDER = ["ap", "ig_norm", "ig", "atp"];
// the methods with an asymmetry and latent sets (all on AP's scale)
const ASYM_ORDER = ["ig_norm", "ap", "atp"];
// what AND and OR mean, for the Latent view's legend (docs/methods.md)
export const LATENT_LEGEND =
  "▲ AND (A > 0): matters when noising — patching in the corrupt value breaks the behaviour — but restoring it alone does not help. " +
  "● OR (A < 0): restoring it alone helps, but noising it alone does not break the behaviour.";
const DIR_ORDER = ["clean_to_corrupt", "corrupt_to_clean"];

const isNum = (v) => v === null || typeof v === "number";
/** Whether x is a nested array of numbers (or null) with these lengths (null: any length). */
function isMapOf(x, dims, k = 0) {
  if (k === dims.length) return isNum(x);
  return Array.isArray(x) && (dims[k] === null || x.length === dims[k]) && x.every((y) => isMapOf(y, dims, k + 1));
}

/**
 * Checks that an object read from a file or URL has the shape of a report
 * (numbers where numbers belong); nothing in it is ever evaluated.
 */
export function checkReport(r) {
  const bad = (what) => {
    throw new Error(`not a patchlab report: ${what}`);
  };
  if (!r || typeof r !== "object") bad("not a JSON object");
  if (![1, 2, 3].includes(r.schema)) bad(`schema ${JSON.stringify(r.schema)} is not supported (this page reads schemas 1 to 3)`);
  const m = r.model || {};
  for (const k of ["n_layers", "n_heads", "d_mlp"]) if (!Number.isInteger(m[k]) || m[k] < 1 || m[k] > 1e6) bad(`model.${k}`);
  if (!r.results || typeof r.results !== "object") bad("no results");
  const n = Array.isArray(r.tokens?.clean) ? r.tokens.clean.length : null;
  if (n !== null && !r.tokens.clean.every((t) => t && typeof t.text === "string")) bad("tokens.clean");
  const sizes = { layer: m.n_layers, head: m.n_heads, pos: n };
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
  if (r.dla !== undefined || r.patterns !== undefined) {
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
  return r;
}

/** Whether a report has a site's map for some method and direction. */
const hasSite = (r, site) => METHOD_ORDER.some((x) => DIR_ORDER.some((d) => Array.isArray(get(r, x, d, site))));

/** A CSV field: quoted when it holds a comma, quote, newline or outer space. */
function csvField(v) {
  const t = String(v);
  return /[",\r\n]|^\s|\s$/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
}

/**
 * The CSV and npy exports of a nested map (a plot's `exports`): axes are
 * [{name, labels}] from the outermost level in; an axis with labels (the
 * tokens) gets a second column, `token` (or labelName).
 */
export function mapExports(map, axes, valueName = "value") {
  return {
    csv: () => {
      const head = axes.flatMap((a) => (a.labels ? [a.name, a.labelName || "token"] : [a.name]));
      const lines = [[...head, valueName].map(csvField).join(",")];
      const walk = (x, idx) => {
        if (idx.length === axes.length) {
          const cells = idx.flatMap((i, k) => (axes[k].labels ? [i, csvField(axes[k].labels[i])] : [i]));
          lines.push([...cells, x === null || x === undefined ? "" : x].join(","));
        } else x.forEach((y, i) => walk(y, [...idx, i]));
      };
      walk(map, []);
      return `${lines.join("\n")}\n`;
    },
    npy: () => ({ shape: nestedShape(map), values: map.flat(Infinity) }),
  };
}
const LAYER = { name: "layer" };
const HEAD = { name: "head" };

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

const get = (r, m, d, c) => r?.results?.[m]?.[d]?.[c];

/**
 * What the report's metric measures, as `patchlab analyze` prints it: the
 * answers' logit difference, or Greater-Than's probability difference of the
 * two-digit years above and at-or-below YY. A name this page does not know
 * is shown as it is rather than mislabelled.
 */
function metricLabel(r) {
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

export class ReportView {
  /**
   * root: element to render into. opts.view: the first tab; opts.site (the
   * residual-stream view's site), opts.head ("layer.head": the attention
   * and DLA views' head), opts.method and opts.direction (the head-site
   * maps' and the patching-effect overlay's), opts.overlay (the attention
   * view's patching effect); opts.onView(name) is called when the user
   * switches tabs or changes one of these (urlState() has them);
   * opts.filenamePrefix for exported files; opts.ablate(request) →
   * Promise<{metric_clean, metric_corrupt, metric_ablated}> (PatchLab.ablate)
   * turns on click-to-ablate.
   */
  constructor(root, { view = "heads", site, head, method, direction, overlay, onView, filenamePrefix = "patchlab", ablate } = {}) {
    this.root = root;
    this.onView = onView;
    this.prefix = filenamePrefix;
    this.selection = new Selection();
    this.ablateFn = ablate || null;
    this.ablation = this.ablateFn ? new Ablation() : null;
    this.report = null;
    this.plots = new Map();
    this.summary = el("p", "summary");
    this.summary.setAttribute("aria-live", "polite");
    // the report's warnings (a metric gap too small for normalised scores)
    this.warnings = el("p", "warning report-warnings");
    this.warnings.hidden = true;
    this.state = { site: site || null, head: head || null, method: method || null, direction: direction || null, overlay: !!overlay };
    this.tabs = el("div", "tabs");
    this.tabs.setAttribute("role", "tablist");
    this.pinBox = el("div", "pinned");
    this.pinBox.hidden = true;
    this.body = el("div", "view-body");
    // the view's selects (site, method, direction, head) and what it says about bad choices
    this.controls = el("div", "view-controls");
    this.notice = el("p", "warning view-notice");
    this.notice.hidden = true;
    this.tabButtons = new Map();
    for (const [key, label] of VIEWS) {
      const b = el("button", "tab", label);
      b.type = "button";
      b.dataset.view = key;
      b.setAttribute("role", "tab");
      b.addEventListener("click", () => this.setView(key, true));
      this.tabs.append(b);
      this.tabButtons.set(key, b);
    }
    this.ablationBox = el("div", "ablation");
    this.ablationBox.hidden = true;
    // the pinned component comes after the plots (sticky at the window's bottom): pinning moves no plot, so a double-click's second click lands where the first did
    root.append(this.summary, this.warnings, this.tabs, this.notice, this.ablationBox, this.controls, this.body, this.pinBox);
    this.view = viewName(view) || "heads";
    if (!viewName(view)) this.say(`There is no view ${JSON.stringify(String(view))}: showing Heads. The views: ${VIEWS.map(([k]) => k).join(", ")}.`);
    this.selection.on((p) => {
      this.renderPin();
      if (p?.component === "heads") {
        this.state.head = `${p.layer}.${p.index}`;
        if (this.view === "dla") this.renderDlaHead();
      }
    });
    if (this.ablation) {
      this.buildAblation();
      this.ablation.on((changed) => {
        this.renderAblation();
        if (changed) this.runAblation();
      });
    }
    this.markTabs();
  }

  /** A message about a bad choice (a view, site or head the report lacks), until the next choice. */
  say(text) {
    this.notice.textContent = text;
    this.notice.hidden = !text;
  }

  /** The view's choices for the URL: {site, head, method, direction, overlay}, those it uses. */
  urlState() {
    const s = this.state, v = this.view;
    const out = {};
    if (v === "resid" && s.site) out.site = s.site;
    if ((v === "pattern" || v === "dla") && s.head) out.head = s.head;
    if (v === "head_sites" || (v === "pattern" && s.overlay)) {
      if (s.method) out.method = s.method;
      if (s.direction) out.direction = s.direction;
    }
    if (v === "pattern" && s.overlay) out.overlay = "1";
    return out;
  }

  /** Redraws the view after one of its choices changed. */
  changed() {
    this.say("");
    this.clearPlots();
    this.render();
    this.onView?.(this.view);
  }

  /** Opens the attention pattern of a head (a double-click on a head cell, the pin box's button). */
  openHead(layer, head) {
    this.state.head = `${layer}.${head}`;
    if (this.view === "pattern") this.changed();
    else this.setView("pattern", true);
  }

  setView(view, user = false) {
    if (!VIEWS.some(([k]) => k === view) || view === this.view) return;
    if (user) this.say("");
    this.view = view;
    this.markTabs();
    this.clearPlots();
    this.render();
    if (user) this.onView?.(view);
  }

  markTabs() {
    for (const [k, b] of this.tabButtons) {
      b.setAttribute("aria-selected", String(k === this.view));
      b.classList.toggle("active", k === this.view);
    }
  }

  clearPlots() {
    for (const p of this.plots.values()) p.destroy();
    this.plots.clear();
    this.body.replaceChildren();
    this.controls.replaceChildren();
    this.sections = new Map();
  }

  /** Shows a report; the same (partial) object again updates plots in place. */
  update(report) {
    const fresh = report !== this.report;
    if (fresh) this.clearPlots();
    this.report = report;
    if (fresh && this.ablation) {
      this.ablResult = null;
      this.ablError = null;
      this.ablation.set([], false);
    }
    this.summary.textContent = summaryText(report);
    const warnings = (report && !report.partial && report.warnings) || [];
    this.warnings.textContent = warnings.map((w) => `⚠ ${w.message}`).join(" ");
    this.warnings.hidden = !warnings.length;
    this.render();
    this.renderPin();
    this.renderAblation();
  }

  section(key, title, note) {
    this.sections ||= new Map();
    let s = this.sections.get(key);
    if (!s) {
      s = el("section", "plot-section");
      const h = el("h3", null, title);
      s.append(h);
      if (note) s.append(el("p", "note", note));
      const grid = el("div", "plot-grid");
      s.append(grid);
      s.grid = grid;
      this.body.append(s);
      this.sections.set(key, s);
    }
    return s.grid;
  }

  heatmap(key, parent, opts) {
    let p = this.plots.get(key);
    if (p) p.setRows(opts.rows, opts.marks);
    else {
      p = new Heatmap(parent, { selection: this.selection, ablation: this.ablation, ...opts, filename: `${this.prefix}-${key}` });
      p.figure.dataset.key = key;
      this.plots.set(key, p);
    }
    return p;
  }

  scatter(key, parent, opts) {
    let p = this.plots.get(key);
    if (p) {
      p.r = opts.r;
      p.setData(opts.x, opts.y);
    } else {
      p = new Scatter(parent, { ...opts, selection: this.selection, filename: `${this.prefix}-${key}` });
      p.figure.dataset.key = key;
      this.plots.set(key, p);
    }
    return p;
  }

  render() {
    const r = this.report;
    if (!r) return;
    const m = r.model;
    const methods = METHOD_ORDER.filter((x) => r.results[x] || (r.partial && r.settings.methods.includes(x)));
    const dirs = DIR_ORDER.filter((d) => methods.some((x) => get(r, x, d, "heads") || get(r, x, d, "neurons")) || (r.partial && r.settings.directions.includes(d)));
    const comps = r.settings?.components || ["heads", "neurons"];
    const empty = (text) => {
      if (!this.body.querySelector(".empty")) this.body.append(el("p", "empty note", text));
    };
    if (this.view === "heads" || this.view === "neurons") {
      const c = this.view;
      if (!comps.includes(c)) return empty(`No ${c} in this run: turn on “${c}” and run again.`);
      for (const d of dirs) {
        const grid = this.section(`${c}-${d}`, `${c === "heads" ? "Heads" : "Neurons"}, ${DIR_NAMES[d]}`);
        grid.classList.toggle("wide", c === "neurons");
        for (const x of methods) {
          const rows = get(r, x, d, c) || (r.partial ? new Array(m.n_layers).fill(null) : null);
          if (!rows) continue;
          this.heatmap(`${x}-${d}-${c}`, grid, {
            title: `${METHOD_NAMES[x]} ${DIR_NAMES[d]}`,
            component: c,
            rows,
            layers: m.n_layers,
            cols: c === "heads" ? m.n_heads : m.d_mlp,
            valueName: METHOD_NAMES[x],
            onOpen: c === "heads" && r.patterns ? (l, h) => this.openHead(l, h) : undefined,
          });
        }
      }
    } else if (this.view === "scatter") {
      if (r.partial) return empty("Scatter plots appear when the run finishes.");
      if (r.schema === 1) return empty("This report was saved by an older patchlab (schema 1) and has no IG* (gap-normalised IG): recompute it to compare IG with AP on one scale.");
      for (const c of comps) {
        const grid = this.section(
          `scatter-${c}`,
          `${c === "heads" ? "Heads" : "Neurons"}: IG* and AtP against AP`,
          "Each point is one component. The red line is the least-squares fit; the dotted line is y = x, where the two methods agree exactly (IG* is IG divided by the metric gap, on AP's scale, so points on the diagonal are where IG's straight-line path agrees with patching).",
        );
        for (const other of ["ig_norm", "atp"]) {
          for (const d of dirs) {
            const x = get(r, "ap", d, c), y = get(r, other, d, c);
            if (!x || !y) continue;
            const key = `${other}_${d}__vs__ap_${d}`;
            this.scatter(`scatter-${other}-${d}-${c}`, grid, {
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
      if (!this.plots.size) empty("Scatter plots need AP and IG or AtP results.");
    } else if (this.view === "latent") {
      if (r.partial) return empty("Latent components appear when the run finishes.");
      if (r.schema === 1) return empty("This report was saved by an older patchlab (schema 1), whose latent sets compared raw IG with AP (opposite meanings whenever m_clean > m_corrupt): recompute it for the latent components.");
      const a = r.analysis || {};
      for (const c of comps) {
        const ov = a.overlap?.[c];
        const top = `the top ${Math.round((1 - a.percentile) * 100)} % of |A|, A = (S_ccl − S_cc) / max|S_ccl − S_cc|`;
        const note = ov
          ? `${LATENT_LEGEND} Marked: ${top}. Overlap of IG*'s and AP's sets (Jaccard): AND ${ov.and.toFixed(3)}, OR ${ov.or.toFixed(3)}.`
          : `${LATENT_LEGEND} Marked: ${top}. (Overlaps need IG and AP in both directions.)`;
        const grid = this.section(`latent-${c}`, `${c === "heads" ? "Heads" : "Neurons"}: asymmetry across directions`, note);
        grid.classList.toggle("wide", c === "neurons");
        for (const x of ASYM_ORDER) {
          const rows = a.asymmetry?.[x]?.[c];
          if (!rows) continue;
          this.heatmap(`latent-${x}-${c}`, grid, {
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
      if (!this.plots.size) empty("Latent components need both directions.");
    } else if (r.partial) empty(SITES_LATER);
    else if (this.view === "resid") this.renderResid(r, empty);
    else if (this.view === "head_sites") this.renderHeadSites(r, empty);
    else if (this.view === "pattern") this.renderPattern(r, empty);
    else if (this.view === "dla") this.renderDla(r, empty);
  }

  // ---------- the patching sites, attention patterns, DLA ----------

  /** A labelled select in the view's controls; onChange(value) after the state changed. */
  select(name, label, options, value, onChange) {
    const wrap = el("label", "view-select", `${label} `);
    const s = el("select");
    s.name = name;
    s.dataset.control = name;
    for (const [v, text] of options) {
      const o = el("option", null, text);
      o.value = v;
      s.append(o);
    }
    s.value = value;
    s.addEventListener("change", () => {
      onChange(s.value);
      this.changed();
    });
    wrap.append(s);
    this.controls.append(wrap);
    return s;
  }

  /** The clean tokens as an axis (labels: their texts), for exports. */
  posAxis(name = "pos", run = "clean") {
    return { name, labels: this.report.tokens[run].map((t) => t.text), labelName: name === "pos" ? "token" : `${name}_token` };
  }

  /** One of the choices, or the first option with a message when the chosen one is not in the report. */
  pick(key, options, what, fallback = options[0]) {
    const want = this.state[key];
    if (want && !options.includes(want)) this.say(`This report has no ${what} ${JSON.stringify(String(want))} (it has ${options.join(", ")}): showing ${fallback}.`);
    if (!want || !options.includes(want)) this.state[key] = fallback;
    return this.state[key];
  }

  /** Method and direction selects over the methods and directions that have one of these sites. */
  pickMethodDir(r, sites) {
    const has = (x, d) => sites.some((s) => Array.isArray(get(r, x, d, s)));
    const methods = METHOD_ORDER.filter((x) => DIR_ORDER.some((d) => has(x, d)));
    const x = this.pick("method", methods, "method", methods.includes("ap") ? "ap" : methods[0]);
    const dirs = DIR_ORDER.filter((d) => has(x, d));
    const d = this.pick("direction", dirs, "direction");
    this.select("method", "Method", methods.map((k) => [k, METHOD_NAMES[k]]), x, (v) => { this.state.method = v; });
    this.select("direction", "Direction", dirs.map((k) => [k, DIR_NAMES[k]]), d, (v) => { this.state.direction = v; });
    return [x, d];
  }

  /** The chosen head [layer, head] (state.head, "layer.head"), with a head select; a bad one gets a message. */
  pickHead(r, fallback, withSelect = true) {
    const { n_layers: L, n_heads: H } = r.model;
    const m = /^(\d+)\.(\d+)$/.exec(this.state.head || "");
    let lh = m ? [Number(m[1]), Number(m[2])] : null;
    if (this.state.head && !(lh && lh[0] < L && lh[1] < H)) {
      this.say(`There is no head ${JSON.stringify(String(this.state.head))} in this model (${L} layers × ${H} heads; write layer.head, e.g. 0.1): showing ${componentLabel("heads", ...fallback)}.`);
      lh = null;
    }
    lh ||= fallback;
    this.state.head = `${lh[0]}.${lh[1]}`;
    if (!withSelect) return lh;
    const options = [];
    for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) options.push([`${l}.${h}`, componentLabel("heads", l, h)]);
    this.select("head", "Head", options, this.state.head, (v) => { this.state.head = v; });
    return lh;
  }

  /** A heatmap whose columns are the positions (clean tokens), the first differing one marked. */
  posMap(key, grid, { rows, rowName = (l) => `layer ${l}`, run = "clean", xLabel = "position", valueName, ...opts }) {
    const toks = this.report.tokens[run];
    return this.heatmap(key, grid, {
      component: "positions",
      rows,
      layers: rows.length,
      cols: toks.length,
      colLabels: toks.map((t) => visibleText(t.text)),
      xLabel: `${xLabel} (${run} tokens)`,
      firstDiff: this.report.tokens.first_diff,
      valueName,
      ablation: null,
      info: (l, p, v) => [`${rowName(l)} · ${xLabel} ${p} ${JSON.stringify(toks[p].text)}`, `${valueName} ${fmt(v, 6)}`],
      ...opts,
    });
  }

  /** Per-head rows (layer · head) of a head-by-position map, for the small multiples. */
  headRows(r, rows, site) {
    const H = r.model.n_heads;
    const labels = [];
    for (let l = 0; l < r.model.n_layers; l++) for (let h = 0; h < H; h++) labels.push(`L${l} H${h}`);
    const rowName = (i) => componentLabel("heads", Math.floor(i / H), i % H);
    return {
      rows,
      rowLabels: labels,
      rowName,
      yLabel: "layer · head",
      onOpen: r.patterns ? (i) => this.openHead(Math.floor(i / H), i % H) : undefined,
      xLabel: site === "pattern_by_dest" ? "destination" : "position",
    };
  }

  renderResid(r, empty) {
    const sites = RESID_SITES.filter((x) => hasSite(r, x));
    if (!sites.length) return empty("No residual-stream maps in this report: tick resid_pre, resid_mid, attn_out or mlp_out under Sites and run again.");
    const site = this.pick("site", sites, "site");
    this.select("site", "Site", sites.map((x) => [x, x]), site, (v) => { this.state.site = v; });
    for (const d of DIR_ORDER) {
      const methods = METHOD_ORDER.filter((x) => Array.isArray(get(r, x, d, site)));
      if (!methods.length) continue;
      const grid = this.section(`resid-${site}-${d}`, `${site} (layer × position), ${DIR_NAMES[d]}`, SCALE_NOTE);
      grid.classList.add("positions");
      for (const x of methods) {
        const rows = get(r, x, d, site);
        this.posMap(`${x}-${d}-${site}`, grid, { title: `${METHOD_NAMES[x]} ${site}, ${DIR_NAMES[d]}`, rows, valueName: METHOD_NAMES[x], exports: mapExports(rows, [LAYER, this.posAxis()], x) });
      }
    }
  }

  renderHeadSites(r, empty) {
    const m = r.model;
    const grids = HEAD_GRID_SITES.filter((x) => hasSite(r, x));
    const byPos = BY_POS_SITES.filter((x) => hasSite(r, x));
    const dest = hasSite(r, "pattern_by_dest") ? ["pattern_by_dest"] : [];
    if (!grids.length && !byPos.length && !dest.length) return empty("No head sites in this report: tick q, k, v, pattern or z (all positions or by position) under Sites and run again.");
    const [x, d] = this.pickMethodDir(r, [...grids, ...byPos, ...dest]);
    const name = `${METHOD_NAMES[x]} ${DIR_NAMES[d]}`;
    const open = r.patterns ? (l, h) => this.openHead(l, h) : undefined;
    const have = (list) => list.filter((site) => Array.isArray(get(r, x, d, site)));
    if (have(grids).length) {
      const grid = this.section(`hs-grid-${x}-${d}`, `Heads, every position patched: ${name}`, `Each head's query, key, value, pattern and z patched at all positions at once. ${open ? "Double-click a head for its attention pattern." : ""}`);
      for (const site of have(grids)) {
        const rows = get(r, x, d, site);
        this.heatmap(`${x}-${d}-${site}`, grid, { title: `${site}: ${name}`, component: "heads", rows, layers: m.n_layers, cols: m.n_heads, valueName: `${METHOD_NAMES[x]} ${site}`, ablation: null, onOpen: open, exports: mapExports(rows, [LAYER, HEAD], x) });
      }
    }
    if (have(byPos).length) {
      const grid = this.section(`hs-pos-${x}-${d}`, `Heads by position: ${name}`, `One row per head (layer · head), one column per position. ${SCALE_NOTE}`);
      grid.classList.add("positions");
      for (const site of have(byPos)) {
        const map = get(r, x, d, site); // [layer][pos][head]
        const rows = [];
        for (const layer of map) for (let h = 0; h < m.n_heads; h++) rows.push(layer.map((pos) => pos[h]));
        this.posMap(`${x}-${d}-${site}`, grid, { title: `${site}: ${name}`, ...this.headRows(r, rows, site), valueName: `${METHOD_NAMES[x]} ${site}`, exports: mapExports(map, [LAYER, this.posAxis(), HEAD], x) });
      }
    }
    if (have(dest).length) {
      const grid = this.section(`hs-dest-${x}-${d}`, `Attention pattern by destination: ${name}`, "Each head's pattern patched at one destination (query) position: a row per head, a column per destination.");
      const map = get(r, x, d, "pattern_by_dest"); // [layer][head][dest]
      this.posMap(`${x}-${d}-pattern_by_dest`, grid, { title: `pattern_by_dest: ${name}`, ...this.headRows(r, map.flat(1), "pattern_by_dest"), valueName: `${METHOD_NAMES[x]} pattern`, exports: mapExports(map, [LAYER, HEAD, this.posAxis("dest")], x) });
    }
  }

  /** A destination × source map of one head (causal: the upper triangle left blank). */
  destSrc(key, grid, { run, rows, title, valueName, ...opts }) {
    return this.posMap(key, grid, {
      title,
      rows,
      run,
      rowLabels: this.report.tokens[run].map((t) => visibleText(t.text)),
      rowName: (i) => `destination ${i} ${JSON.stringify(this.report.tokens[run][i].text)} ←`,
      yLabel: "destination",
      xLabel: "source",
      blank: (i, j) => j > i,
      valueName,
      exports: mapExports(rows, [this.posAxis("dest", run), this.posAxis("src", run)], valueName.replace(/\W+/g, "_")),
      ...opts,
    });
  }

  renderPattern(r, empty) {
    if (!r.patterns) return empty("This report has no attention patterns: they come with any patching site or DLA (tick one under Sites and run again).");
    const top = r.analysis?.top?.ap?.clean_to_corrupt?.heads?.[0];
    const [l, h] = this.pickHead(r, top ? [top.layer, top.index] : [0, 0]);
    const label = componentLabel("heads", l, h);
    const clean = r.patterns.clean[l][h], corrupt = r.patterns.corrupt[l][h];
    const diff = clean.map((row, i) => row.map((v, j) => (v === null || corrupt[i][j] === null ? null : v - corrupt[i][j])));
    const grid = this.section(`pattern-${l}-${h}`, `Attention pattern of ${label}`, "Rows: destination (query) positions; columns: source (key) positions; the masked upper triangle is blank. Hover a cell for its weight (click keeps the tooltip).");
    this.destSrc(`pattern-clean-${l}-${h}`, grid, { run: "clean", rows: clean, title: `${label} clean pattern`, valueName: "attention (clean)", sequential: true, scale: 1 });
    this.destSrc(`pattern-corrupt-${l}-${h}`, grid, { run: "corrupt", rows: corrupt, title: `${label} corrupt pattern`, valueName: "attention (corrupt)", sequential: true, scale: 1 });
    this.destSrc(`pattern-diff-${l}-${h}`, grid, { run: "clean", rows: diff, title: `${label} clean − corrupt`, valueName: "clean − corrupt" });
    if (!hasSite(r, "pattern_dest_src")) return;
    const toggle = el("label", "view-select");
    const box = el("input");
    box.type = "checkbox";
    box.dataset.control = "overlay";
    box.checked = this.state.overlay;
    box.addEventListener("change", () => {
      this.state.overlay = box.checked;
      this.changed();
    });
    toggle.append(box, document.createTextNode(" patching effect (pattern_dest_src)"));
    this.controls.append(toggle);
    if (!this.state.overlay) return;
    const [x, d] = this.pickMethodDir(r, ["pattern_dest_src"]);
    const rows = get(r, x, d, "pattern_dest_src")[l][h];
    const effect = this.section(`pattern-effect-${x}-${d}-${l}-${h}`, `Patching effect of each attention weight of ${label}: ${METHOD_NAMES[x]} ${DIR_NAMES[d]}`, `The metric's change when this one weight (destination, source) is patched. ${SCALE_NOTE}`);
    this.destSrc(`pattern-effect-${x}-${d}-${l}-${h}`, effect, { run: "clean", rows, title: `${label} ${METHOD_NAMES[x]} ${DIR_NAMES[d]}`, valueName: `${METHOD_NAMES[x]} pattern_dest_src` });
  }

  renderDla(r, empty) {
    const metric = r.metric?.name ?? r.prompts?.metric ?? "logit_diff";
    if (!r.dla) {
      return empty(metric !== "logit_diff"
        ? `DLA is defined for the logit-difference metric; this report's metric is ${metric}.`
        : "No direct logit attribution in this report: tick DLA under Sites and run again.");
    }
    const dla = r.dla, m = r.model;
    const last = r.tokens.clean.length - 1;
    const at = (run) => dla[run].layers.map((row) => row[last]);
    const bars = this.section("dla-bars", "Direct logit attribution at the last position",
      `Each component's direct contribution to ${metricLabel(r)} at the last position; their sum plus the bias (${fmt(dla.bias, 4)}) is the metric: clean ${fmt(r.metric.clean, 4)}, corrupt ${fmt(r.metric.corrupt, 4)}.`);
    this.bars("dla-layers", bars, {
      title: "Components at the last position",
      categories: dla.labels,
      series: [{ name: "clean", values: at("clean"), colour: "#b2182b" }, { name: "corrupt", values: at("corrupt"), colour: "#2166ac" }],
      yLabel: "DLA",
      exports: {
        csv: () => `component,clean,corrupt\n${dla.labels.map((c, k) => `${csvField(c)},${at("clean")[k]},${at("corrupt")[k]}`).join("\n")}\n`,
        npy: () => ({ shape: [2, dla.labels.length], values: [...at("clean"), ...at("corrupt")] }),
      },
    });
    const heads = this.section("dla-heads", "Heads' direct logit attribution at the last position", `Click a head for its DLA at every position (below)${r.patterns ? "; double-click for its attention pattern" : ""}.`);
    for (const run of ["clean", "corrupt"]) {
      const rows = dla[run].heads.map((l) => l.map((h) => h[last]));
      this.heatmap(`dla-heads-${run}`, heads, { title: `Heads' DLA, ${run}`, component: "heads", rows, layers: m.n_layers, cols: m.n_heads, valueName: `DLA (${run})`, ablation: null, onOpen: r.patterns ? (l, h) => this.openHead(l, h) : undefined, exports: mapExports(rows, [LAYER, HEAD], "dla") });
    }
    this.dlaHeadGrid = this.section("dla-head", "One head's DLA at every position");
    this.renderDlaHead();
    const comps = this.section("dla-pos", "Components' DLA at every position", "The same decomposition at each position (the logit difference read off there).");
    comps.classList.add("positions");
    for (const run of ["clean", "corrupt"]) {
      const rows = dla[run].layers;
      this.posMap(`dla-layers-${run}`, comps, { title: `Components' DLA, ${run}`, rows, run, rowLabels: dla.labels, rowName: (k) => dla.labels[k], yLabel: "component", valueName: `DLA (${run})`, exports: mapExports(rows, [{ name: "component", labels: dla.labels, labelName: "label" }, this.posAxis("pos", run)], "dla") });
    }
  }

  /** The per-position DLA of the chosen head (the pinned one, or state.head, or the largest at the last position). */
  renderDlaHead() {
    const r = this.report;
    if (!r?.dla || !this.dlaHeadGrid?.isConnected) return;
    const last = r.tokens.clean.length - 1;
    let best = [0, 0], bv = -1;
    r.dla.clean.heads.forEach((row, l) => row.forEach((v, h) => { if (Math.abs(v[last] ?? 0) > bv) { bv = Math.abs(v[last] ?? 0); best = [l, h]; } }));
    const p = this.plots.get("dla-head");
    const [l, h] = this.pickHead(r, best, !p);
    const select = this.controls.querySelector("select[data-control=head]");
    if (select) select.value = this.state.head;
    const series = ["clean", "corrupt"].map((run, k) => ({ name: run, values: r.dla[run].heads[l][h], colour: k ? "#2166ac" : "#b2182b" }));
    const title = `${componentLabel("heads", l, h)}: DLA at every position`;
    const toks = r.tokens.clean.map((t) => visibleText(t.text));
    const exports = {
      csv: () => `pos,token,clean,corrupt\n${r.tokens.clean.map((t, i) => `${i},${csvField(t.text)},${series[0].values[i]},${series[1].values[i]}`).join("\n")}\n`,
      npy: () => ({ shape: [2, toks.length], values: [...series[0].values, ...series[1].values] }),
    };
    if (p) {
      p.title = title;
      p.canvas.setAttribute("aria-label", title);
      p.exports = exports;
      p.setData(toks, series);
    } else this.bars("dla-head", this.dlaHeadGrid, { title, categories: toks, series, yLabel: "DLA", mark: r.tokens.first_diff, exports });
  }

  bars(key, parent, opts) {
    const p = new Bars(parent, { ...opts, filename: `${this.prefix}-${key}` });
    p.figure.dataset.key = key;
    this.plots.set(key, p);
    return p;
  }

  // ---------- click-to-ablate ----------

  /** The ablation panel's fixed parts: mode toggle, fill buttons, set list, metrics. */
  buildAblation() {
    const box = this.ablationBox;
    const head = el("div", "ablation-head");
    head.append(el("strong", null, "Mean ablation"));
    const mode = el("label", "ablate-mode");
    this.modeBox = el("input");
    this.modeBox.type = "checkbox";
    this.modeBox.addEventListener("change", () => this.ablation.setMode(this.modeBox.checked));
    mode.append(this.modeBox, document.createTextNode(" Ablate mode"));
    head.append(mode, el("span", "hint", "Shift-click a head or neuron in a heatmap to add it to the set or take it out; in Ablate mode a plain click does the same (otherwise a click pins). Ablated components are held at their corrupt-run activations; ✕ marks them."));
    const fill = el("div", "ablate-fill");
    fill.append(el("span", "hint", "Fill from the latent components: "));
    this.fillButtons = [];
    for (const [which, label] of [["and", "AND"], ["or", "OR"]]) {
      const group = el("span", "fill-group");
      group.append(el("span", null, `${label}: `));
      for (const [pick, text, title] of [["ig", "IG*", "found by IG* (gap-normalised IG)"], ["ap", "AP", "found by AP"], ["both", "both", "found by IG* and by AP (IG* ∩ AP)"]]) {
        const b = el("button", "small", text);
        b.type = "button";
        b.dataset.fill = `${which}:${pick}`;
        b.title = `The ${label} components ${title}, heads and neurons`;
        b.addEventListener("click", () => this.ablation.set(this.latentSet(which, pick)));
        this.fillButtons.push(b);
        group.append(b);
      }
      fill.append(group);
    }
    const clear = el("button", "small ablate-clear", "Clear");
    clear.type = "button";
    clear.addEventListener("click", () => this.ablation.set([]));
    fill.append(clear);
    this.setBox = el("div", "ablate-set");
    this.metricsBox = el("p", "ablate-metrics");
    this.metricsBox.setAttribute("aria-live", "polite");
    box.append(head, fill, this.setBox, this.metricsBox);
  }

  /** The report's latent components of one kind (and / or) found by IG* ("ig"), AP or both. */
  latentSet(which, pick) {
    const lat = this.report?.analysis?.latent || {};
    const out = [];
    for (const c of ["heads", "neurons"]) {
      const get = (m) => lat[m]?.[c]?.[which];
      const ig = get("ig_norm"), ap = get("ap");
      let list;
      if (pick === "ig") list = ig;
      else if (pick === "ap") list = ap;
      else if (ig && ap) {
        const inAp = new Set(ap.map(([l, i]) => `${l}:${i}`));
        list = ig.filter(([l, i]) => inAp.has(`${l}:${i}`));
      }
      for (const [layer, index] of list || []) out.push({ component: c, layer, index });
    }
    return out;
  }

  /** Recomputes the ablated metric for the current set; one request at a time, the latest set wins. */
  async runAblation() {
    if (!this.ablateFn || !this.report || this.report.partial) return;
    if (this.ablRunning) {
      this.ablDirty = true;
      return;
    }
    this.ablRunning = true;
    this.renderAblation();
    try {
      do {
        this.ablDirty = false;
        const report = this.report;
        const p = report.prompts;
        const heads = this.ablation.pairs("heads"), neurons = this.ablation.pairs("neurons");
        let res = null, err = null;
        try {
          res = await this.ablateFn({ clean: p.clean, corrupt: p.corrupt, correct: p.correct, incorrect: p.incorrect, bos: p.bos, metric: p.metric || "logit_diff", heads, neurons });
        } catch (e) {
          err = e;
        }
        if (report !== this.report) break;
        if (!this.ablDirty) {
          this.ablResult = res && { ...res, heads: heads.length, neurons: neurons.length };
          this.ablError = err;
          this.ablCount = (this.ablCount || 0) + 1;
        }
      } while (this.ablDirty);
    } finally {
      this.ablRunning = false;
      this.renderAblation();
    }
  }

  renderAblation() {
    if (!this.ablation) return;
    const r = this.report;
    const box = this.ablationBox;
    if (!r || r.partial || !r.prompts) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    this.modeBox.checked = this.ablation.mode;
    for (const b of this.fillButtons) {
      const [which, pick] = b.dataset.fill.split(":");
      const lat = r.analysis?.latent || {};
      const has = (m) => ["heads", "neurons"].some((c) => Array.isArray(lat[m]?.[c]?.[which]));
      const key = pick === "ig" ? "ig_norm" : pick;
      b.disabled = pick === "both" ? !(has("ig_norm") && has("ap")) : !has(key);
    }
    const items = this.ablation.list();
    const chips = items.map((p) => {
      const c = el("button", "small ablate-item", `${componentLabel(p.component, p.layer, p.index)} ✕`);
      c.type = "button";
      c.title = "Take it out of the ablation set";
      c.dataset.component = p.component;
      c.addEventListener("click", () => this.ablation.toggle(p));
      return c;
    });
    this.setBox.replaceChildren(el("span", "hint", items.length ? `Ablation set (${items.length}): ` : "Ablation set: empty."), ...chips);
    // metrics: from the last ablation, or the report's until there is one
    const res = this.ablResult;
    const mc = res ? res.metric_clean : r.metric?.clean;
    const mk = res ? res.metric_corrupt : r.metric?.corrupt;
    const parts = [`clean m = ${fmt(mc, 4)}`, `corrupt m = ${fmt(mk, 4)}`];
    const ablated = el("strong", "ablated");
    if (this.ablRunning) ablated.textContent = "ablated m = computing…";
    else if (this.ablError) ablated.textContent = `ablation failed: ${this.ablError.message}`;
    else if (res) {
      const gap = res.metric_clean - res.metric_corrupt;
      const kept = gap !== 0 ? (res.metric_ablated - res.metric_corrupt) / gap : null;
      ablated.textContent = `ablated m = ${fmt(res.metric_ablated, 4)} · retained (m_abl − m_corrupt) / (m_clean − m_corrupt) = ${kept === null ? "undefined" : fmt(kept, 3)}`;
      box.dataset.ablated = String(res.metric_ablated);
      box.dataset.clean = String(res.metric_clean);
      box.dataset.corrupt = String(res.metric_corrupt);
      box.dataset.retained = kept === null ? "" : String(kept);
    } else ablated.textContent = "ablated m = (choose components)";
    if (!res || this.ablError) for (const k of ["ablated", "clean", "corrupt", "retained"]) delete box.dataset[k];
    box.dataset.state = this.ablRunning ? "computing" : this.ablError ? "error" : res ? "done" : "idle";
    box.dataset.count = String(this.ablCount || 0);
    this.metricsBox.replaceChildren(document.createTextNode(`${parts.join(" · ")} · `), ablated);
    if (res) {
      const how = el("span", "hint", ` (${res.heads} heads, ${res.neurons} neurons; computed on the ${res.backend === "gpu" ? "GPU" : "CPU"})`);
      if (res.note) how.title = res.note;
      this.metricsBox.append(how);
    }
  }

  /** The pinned component's value in every map. */
  renderPin() {
    const p = this.selection.pinned;
    const r = this.report;
    if (!p || !r) {
      this.pinBox.hidden = true;
      return;
    }
    const items = [];
    for (const x of METHOD_ORDER) {
      for (const d of DIR_ORDER) {
        const rows = get(r, x, d, p.component);
        if (rows && rows[p.layer]) items.push(`${METHOD_NAMES[x]} ${DIR_NAMES[d]}: ${fmt(rows[p.layer][p.index], 5)}`);
      }
    }
    const head = el("strong", null, `Pinned ${componentLabel(p.component, p.layer, p.index)}`);
    const unpin = el("button", "small", "Unpin");
    unpin.type = "button";
    unpin.addEventListener("click", () => this.selection.toggle(null));
    this.pinBox.replaceChildren(head, el("span", null, ` — ${items.join(" · ")} `), unpin);
    if (p.component === "heads" && r.patterns) {
      const open = el("button", "small", "Attention pattern");
      open.type = "button";
      open.dataset.open = "pattern";
      open.addEventListener("click", () => this.openHead(p.layer, p.index));
      this.pinBox.append(" ", open);
    }
    this.pinBox.hidden = false;
  }
}

/**
 * A CSV of every score map: method, direction, component, layer, index,
 * score. A patching site's map has one line per entry too: its component
 * is the site's name and its index the rest of the entry's indices joined
 * by ":" (resid_pre: pos; z_by_pos: pos:head; pattern_dest_src: head:dest:src).
 */
export function reportCsv(r) {
  const lines = ["method,direction,component,layer,index,score"];
  for (const [m, dirs] of Object.entries(r.results || {})) {
    for (const [d, maps] of Object.entries(dirs)) {
      for (const [c, rows] of Object.entries(maps)) {
        if (c !== "heads" && c !== "neurons" && !SITE_AXES[c]) continue;
        const walk = (x, idx) => {
          if (Array.isArray(x)) x.forEach((y, i) => walk(y, [...idx, i]));
          else lines.push(`${m},${d},${c},${idx[0]},${idx.slice(1).join(":")},${x === null ? "" : x}`);
        };
        walk(rows, []);
      }
    }
  }
  return `${lines.join("\n")}\n`;
}
