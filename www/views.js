// Renders a patchlab report (or the partial results of a running analysis)
// as tabs of canvas plots: heads, neurons, scatter, latent. Shared by the
// lab page (app.js) and the <patch-lab> element (embed.js).

import { Ablation, Heatmap, Scatter, Selection, componentLabel, fmt } from "./plots.js";
import { el } from "./dom.js";

export const VIEWS = [
  ["heads", "Heads"],
  ["neurons", "Neurons"],
  ["scatter", "Scatter"],
  ["latent", "Latent"],
];
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
  for (const [meth, dirs] of Object.entries(r.results)) {
    for (const [dir, maps] of Object.entries(dirs || {})) {
      for (const [comp, rows] of Object.entries(maps || {})) {
        const cols = comp === "heads" ? m.n_heads : m.d_mlp;
        if (!Array.isArray(rows) || rows.length !== m.n_layers || rows.some((row) => !Array.isArray(row) || row.length !== cols || !row.every(isNum))) {
          bad(`results.${meth}.${dir}.${comp} is not a ${m.n_layers} × ${cols} map of numbers`);
        }
      }
    }
  }
  return r;
}

/** An empty report-shaped object that partial results fill in. */
export function partialReport(info, request) {
  return {
    partial: true,
    model: { name: info.name, n_layers: info.n_layers, n_heads: info.n_heads, d_mlp: info.d_mlp },
    settings: {
      methods: request.methods || ["ap", "ig", "atp"],
      directions: request.directions || DIR_ORDER,
      components: request.components || ["heads", "neurons"],
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
  if (r.partial) return "Computing… heads first, then neurons.";
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
   * root: element to render into. opts.view: the first tab; opts.onView(name)
   * is called when the user switches tabs; opts.filenamePrefix for PNGs;
   * opts.ablate(request) → Promise<{metric_clean, metric_corrupt,
   * metric_ablated}> (PatchLab.ablate) turns on click-to-ablate.
   */
  constructor(root, { view = "heads", onView, filenamePrefix = "patchlab", ablate } = {}) {
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
    this.tabs = el("div", "tabs");
    this.tabs.setAttribute("role", "tablist");
    this.pinBox = el("div", "pinned");
    this.pinBox.hidden = true;
    this.body = el("div", "view-body");
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
    root.append(this.summary, this.warnings, this.tabs, this.pinBox, this.ablationBox, this.body);
    this.view = VIEWS.some(([k]) => k === view) ? view : "heads";
    this.selection.on(() => this.renderPin());
    if (this.ablation) {
      this.buildAblation();
      this.ablation.on((changed) => {
        this.renderAblation();
        if (changed) this.runAblation();
      });
    }
    this.markTabs();
  }

  setView(view, user = false) {
    if (!VIEWS.some(([k]) => k === view) || view === this.view) return;
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
      p = new Heatmap(parent, { ...opts, selection: this.selection, ablation: this.ablation, filename: `${this.prefix}-${key}` });
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
    }
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
    this.pinBox.hidden = false;
  }
}

/** A CSV of every score map: method, direction, component, layer, index, score. */
export function reportCsv(r) {
  const lines = ["method,direction,component,layer,index,score"];
  for (const [m, dirs] of Object.entries(r.results || {})) {
    for (const [d, maps] of Object.entries(dirs)) {
      for (const [c, rows] of Object.entries(maps)) {
        rows.forEach((row, l) => row.forEach((v, i) => lines.push(`${m},${d},${c},${l},${i},${v === null ? "" : v}`)));
      }
    }
  }
  return `${lines.join("\n")}\n`;
}
