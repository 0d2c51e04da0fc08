// Renders a patchlab report (or the partial results of a running analysis)
// as tabs of canvas plots: heads, neurons, scatter, latent, and the patching
// sites: residual stream (layer × position), head sites (q/k/v/pattern/z,
// by position), attention patterns, direct logit attribution. Shared by the
// lab page (app.js) and the <patch-lab> element (embed.js).
//
// ReportView is the frame (tabs, choices, the plots it keeps, the pinned
// component); each view's panels are in views/: scores.js (heads, neurons,
// scatter, latent), site-maps.js (residual stream, head sites, attention),
// dla.js, ablation.js (click-to-ablate), features.js (SAE features); what
// they read from a report is views/report.js (the SAE parts
// views/feature-maps.js), the exports views/exports.js.

import { Ablation, Bars, Heatmap, Scatter, Selection, componentLabel, fmt } from "./plots.js";
import { el, visibleText } from "./dom.js";
import { AblationPanel } from "./views/ablation.js";
import { renderDla, renderDlaHead } from "./views/dla.js";
import { DIR_NAMES, DIR_ORDER, FEATURES_LATER, get, hasSite, METHOD_NAMES, METHOD_ORDER, SITES_LATER, summaryText } from "./views/report.js";
import { featurePinItems, renderFeatures } from "./views/features.js";
import { parseFeatureKey, saeHooks } from "./views/feature-maps.js";
import { renderLatent, renderScatter, renderScores } from "./views/scores.js";
import { renderHeadSites, renderPattern, renderResid } from "./views/site-maps.js";

// what embedders and the tests read a report with
export { checkReport } from "./views/report.js";

export const VIEWS = [
  ["heads", "Heads"],
  ["neurons", "Neurons"],
  ["scatter", "Scatter"],
  ["latent", "Latent"],
  ["resid", "Residual stream"],
  ["head_sites", "Head sites"],
  ["pattern", "Attention"],
  ["dla", "DLA"],
  ["features", "Features"],
];
// each view's panels: render(view, report)
const PANELS = {
  heads: renderScores,
  neurons: renderScores,
  scatter: renderScatter,
  latent: renderLatent,
  resid: renderResid,
  head_sites: renderHeadSites,
  pattern: renderPattern,
  dla: renderDla,
  features: renderFeatures,
};
// the views that show partial results (or say when they will); the others wait for the whole report
const LIVE = new Set(["heads", "neurons", "scatter", "latent"]);
// the views where heads and neurons are clicked into the mean-ablation set (the panel shows only there)
const ABLATION_VIEWS = new Set(["heads", "neurons", "latent"]);
// the views with a "one colour scale" choice
const SHARED_SCALE = new Set(["heads", "neurons", "resid", "head_sites"]);
// other names a link or an embed may use for a view
const VIEW_ALIASES = { heads_by_pos: "head_sites", sites: "head_sites", attention: "pattern", residual: "resid", sae: "features", saes: "features" };
/** The view a name (from a URL or an attribute) means, or null. */
export function viewName(name) {
  const v = VIEW_ALIASES[name] || name;
  return VIEWS.some(([k]) => k === v) ? v : null;
}

const RESID = ["resid_pre", "resid_mid", "attn_out", "mlp_out"];
const HEAD_SITES = ["q", "k", "v", "pattern", "z", "q_by_pos", "k_by_pos", "v_by_pos", "z_by_pos", "pattern_by_dest"];

/**
 * The views a report has something for: a finished report by its data, a
 * running one by what it was asked for.
 */
export function viewsWithData(r) {
  if (!r) return new Set(VIEWS.map(([k]) => k));
  const comps = (c) => METHOD_ORDER.some((x) => DIR_ORDER.some((d) => get(r, x, d, c)));
  const out = new Set();
  if (r.partial) {
    const s = r.settings || {};
    for (const c of s.components || []) out.add(c);
    if ((s.components || []).length && (s.methods || []).includes("ap") && (s.methods || []).some((x) => x === "ig" || x === "atp")) out.add("scatter");
    if ((s.components || []).length && (s.directions || []).length === 2) out.add("latent");
    const sites = s.sites || [];
    if (sites.some((x) => RESID.includes(x))) out.add("resid");
    if (sites.some((x) => HEAD_SITES.includes(x))) out.add("head_sites");
    if (sites.length || s.dla) out.add("pattern");
    if (s.dla) out.add("dla");
    if ((s.saes || []).length) out.add("features");
    return out;
  }
  for (const c of ["heads", "neurons"]) if (comps(c)) out.add(c);
  const hasAp = ["heads", "neurons"].some((c) => DIR_ORDER.some((d) => get(r, "ap", d, c)));
  if (hasAp && ["ig_norm", "ig", "atp"].some((x) => ["heads", "neurons"].some((c) => DIR_ORDER.some((d) => get(r, x, d, c))))) out.add("scatter");
  if (r.analysis?.asymmetry && Object.values(r.analysis.asymmetry).some((m) => m && (m.heads || m.neurons))) out.add("latent");
  if (RESID.some((x) => hasSite(r, x))) out.add("resid");
  if (HEAD_SITES.some((x) => hasSite(r, x))) out.add("head_sites");
  if (r.patterns) out.add("pattern");
  if (r.dla) out.add("dla");
  if (saeHooks(r).length) out.add("features");
  return out;
}

export class ReportView {
  /**
   * root: element to render into. opts.view: the first tab; opts.site (the
   * residual-stream view's site), opts.head ("layer.head": the attention
   * and DLA views' head), opts.method and opts.direction (the head-site
   * maps', the patching-effect overlay's and the Features view's),
   * opts.overlay (the attention view's patching effect), opts.hook (the
   * Features view's SAE, by its hook name); opts.onView(name) is called when the user
   * switches tabs or changes one of these (urlState() has them);
   * opts.filenamePrefix for exported files; opts.ablate(request) →
   * Promise<{metric_clean, metric_corrupt, metric_ablated}> (PatchLab.ablate)
   * turns on click-to-ablate.
   */
  constructor(root, { view = "heads", site, head, method, direction, overlay, shared, hook, onView, filenamePrefix = "patchlab", ablate } = {}) {
    this.root = root;
    this.onView = onView;
    this.prefix = filenamePrefix;
    this.selection = new Selection();
    this.ablation = ablate ? new Ablation() : null;
    this.report = null;
    this.plots = new Map();
    this.state = { site: site || null, head: head || null, method: method || null, direction: direction || null, overlay: !!overlay, shared: !!shared, hook: hook || null };
    this.build(root);
    this.ablation?.on(() => this.renderPin());
    if (this.ablation) this.ablationPanel = new AblationPanel(this.ablationBox, this.ablation, ablate, () => this.report, () => ABLATION_VIEWS.has(this.view));
    this.view = viewName(view) || "heads";
    if (!viewName(view)) this.say(`There is no view ${JSON.stringify(String(view))}: showing Heads. The views: ${VIEWS.map(([k]) => k).join(", ")}.`);
    this.selection.on((p) => {
      this.renderPin();
      if (p?.component === "heads") {
        this.state.head = `${p.layer}.${p.index}`;
        if (this.view === "dla") renderDlaHead(this);
      }
    });
    this.markTabs();
  }

  /** The frame: summary, warnings, tabs, notice, ablation panel, controls, plots, pinned component. */
  build(root) {
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
  }

  /** A message about a bad choice (a view, site or head the report lacks), until the next choice. */
  say(text) {
    this.notice.textContent = text;
    this.notice.hidden = !text;
  }

  /** The view's choices for the URL: {site, head, method, direction, overlay, hook}, those it uses. */
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
    if (v === "features") {
      if (s.hook) out.hook = s.hook;
      if (s.method) out.method = s.method;
      if (s.direction) out.direction = s.direction;
    }
    if (s.shared && SHARED_SCALE.has(v)) out.shared = "1";
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
    this.ablationPanel?.render();
    if (user) this.onView?.(view);
  }

  markTabs() {
    // only the views this report has something for (and the one asked for, which says what it lacks)
    const has = viewsWithData(this.report);
    for (const [k, b] of this.tabButtons) {
      b.hidden = !has.has(k) && k !== this.view;
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
    if (fresh) this.ablationPanel?.reset();
    this.summary.textContent = summaryText(report);
    this.markTabs();
    const warnings = (report && !report.partial && report.warnings) || [];
    this.warnings.textContent = warnings.map((w) => `⚠ ${w.message}`).join(" ");
    this.warnings.hidden = !warnings.length;
    this.render();
    this.renderPin();
    this.ablationPanel?.render();
  }

  /** The grid of a titled section (with a note): made once per key until the plots are cleared. */
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

  /** The heatmap of this key: its rows updated in place, or a new one in parent. */
  heatmap(key, parent, opts) {
    let p = this.plots.get(key);
    if (p) {
      if (opts.scale !== undefined) p.fixedScale = opts.scale || null;
      p.setRows(opts.rows, opts.marks);
    }
    else {
      p = new Heatmap(parent, { selection: this.selection, ablation: this.ablation, ...opts, filename: `${this.prefix}-${key}` });
      p.figure.dataset.key = key;
      this.plots.set(key, p);
    }
    return p;
  }

  /** The scatter plot of this key: its points updated in place, or a new one in parent. */
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

  /** New grouped bars under this key. */
  bars(key, parent, opts) {
    const p = new Bars(parent, { ...opts, filename: `${this.prefix}-${key}` });
    p.figure.dataset.key = key;
    this.plots.set(key, p);
    return p;
  }

  /** Says why a view has nothing to show (once). */
  empty(text) {
    if (!this.body.querySelector(".empty")) this.body.append(el("p", "empty note", text));
  }

  render() {
    const r = this.report;
    if (!r) return;
    if (r.partial && !LIVE.has(this.view)) return this.empty(this.view === "features" ? FEATURES_LATER : SITES_LATER);
    PANELS[this.view](this, r);
  }

  // ---------- what the panels share: choices and position maps ----------

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

  /** A labelled checkbox in the view's controls, bound to state[name]. */
  checkbox(name, text, title) {
    const wrap = el("label", "view-select");
    const box = el("input");
    box.type = "checkbox";
    box.dataset.control = name;
    box.checked = !!this.state[name];
    box.addEventListener("change", () => {
      this.state[name] = box.checked;
      this.changed();
    });
    wrap.append(box, document.createTextNode(` ${text}`));
    if (title) wrap.title = title;
    this.controls.append(wrap);
    return box;
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

  /** The pinned component's value in every map. */
  renderPin() {
    const p = this.selection.pinned;
    const r = this.report;
    if (!p || !r) {
      this.pinBox.hidden = true;
      return;
    }
    const feature = parseFeatureKey(p.component);
    if (feature) return this.renderFeaturePin(r, feature.hook, p);
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
    // the touch equivalent of shift-click: a tap pins, this button ablates
    if (this.ablation && !r.partial && r.prompts && (p.component === "heads" || p.component === "neurons")) {
      const on = this.ablation.has(p.component, p.layer, p.index);
      const b = el("button", "small", on ? "Take out of the ablation set" : "Add to the ablation set");
      b.type = "button";
      b.dataset.action = "ablate-pinned";
      b.addEventListener("click", () => this.ablation.toggle(p));
      this.pinBox.append(" ", b);
    }
    if (p.component === "heads" && r.patterns) {
      const open = el("button", "small", "Attention pattern");
      open.type = "button";
      open.dataset.open = "pattern";
      open.addEventListener("click", () => this.openHead(p.layer, p.index));
      this.pinBox.append(" ", open);
    }
    this.pinBox.hidden = false;
  }

  /** The pinned SAE feature's scores. */
  renderFeaturePin(r, hook, p) {
    const head = el("strong", null, `Pinned feature ${p.index} of ${hook}`);
    const unpin = el("button", "small", "Unpin");
    unpin.type = "button";
    unpin.addEventListener("click", () => this.selection.toggle(null));
    this.pinBox.replaceChildren(head, el("span", null, ` — ${featurePinItems(r, hook, p.index).join(" · ")} `), unpin);
    this.pinBox.hidden = false;
  }
}
