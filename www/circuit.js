// The Circuit tab's results (shared by the lab page and <patch-lab
// view="circuit">): a circuit report (edge attribution patching over GPT-2's
// edge graph, as hannamw/EAP-IG defines it) drawn as a layered graph on a
// canvas, a log-scale slider for the circuit's size that re-selects,
// re-prunes and (with a model) re-evaluates faithfulness, the faithfulness
// curves, the scatter of EAP / EAP-IG against exact edge patching, and the
// exports (the reference's graph JSON, the report, PNG, CSV). Also the lab
// page's Circuit form (CircuitTab). All user text (prompts, tokens, edge
// names) goes through textContent or fillText.

import { css, diverging, fmt, FONT, Scatter, sizeCanvas, SMALL_FONT, startDrawing, verticalLabel } from "./plots.js";
import { $, download, el, seconds } from "./dom.js";
import { stageText } from "./views/report.js";

const METHOD_COLOURS = { eap: "#1f77b4", "eap-ig": "#d62728", "clean-corrupted": "#2ca02c", exact: "#222" };
const METHOD_LABELS = { eap: "EAP", "eap-ig": "EAP-IG", "clean-corrupted": "clean-corrupted", exact: "exact" };
// q, k and v edges: their own dash (and port of the head)
const DASH = { q: [], k: [6, 3], v: [1.5, 2.5], "": [] };

/** Whether a parsed JSON value is a circuit report (what `patchlab circuit` writes). */
export function isCircuitReport(r) {
  return !!r && typeof r === "object" && Array.isArray(r.edges) && !!r.circuit && typeof r.scores === "object";
}

/** A circuit report checked enough to draw, or an Error saying what it is instead. */
export function checkCircuitReport(r) {
  if (!isCircuitReport(r)) {
    const what = r && typeof r === "object" && r.cfg && r.nodes ? "a graph file (Graph.to_json), not a circuit report" : "not a circuit report (it lacks edges, scores and circuit)";
    throw new Error(`${what}: load a circuit.json that patchlab circuit or the Circuit tab wrote`);
  }
  if (r.schema !== 1) throw new Error(`circuit report schema ${r.schema} is not the 1 this page reads`);
  const n = r.edges.length;
  for (const [m, s] of Object.entries(r.scores)) {
    if (!Array.isArray(s) || s.length !== n) throw new Error(`bad circuit report: ${s?.length} ${m} scores for ${n} edges`);
  }
  if (!r.model || !Number.isInteger(r.model.n_layers) || !Number.isInteger(r.model.n_heads)) throw new Error("bad circuit report: no model shape");
  return r;
}

/** "a3.h5" → {kind: "head", layer, head}; "m2" → {kind: "mlp", layer}; "input", "logits". */
export function parseNode(name) {
  let m = /^a(\d+)\.h(\d+)$/.exec(name);
  if (m) return { kind: "head", layer: Number(m[1]), head: Number(m[2]) };
  m = /^m(\d+)$/.exec(name);
  if (m) return { kind: "mlp", layer: Number(m[1]) };
  if (name === "input" || name === "logits") return { kind: name };
  return null;
}

/** "a0.h1->a1.h2<q>" → {from: "a0.h1", to: "a1.h2", port: "q"}. */
export function parseEdge(name) {
  const m = /^(.+?)->(.+?)(?:<([qkv])>)?$/.exec(name);
  return m ? { from: m[1], to: m[2], port: m[3] || "" } : null;
}

/** The slider's position (0 … 1000) ↔ a circuit size (1 … total), on a log scale. */
export const sliderToN = (v, total) => Math.max(1, Math.min(total, Math.round(Math.exp((Number(v) / 1000) * Math.log(Math.max(1, total))))));
export const nToSlider = (n, total) => (total > 1 ? Math.round((Math.log(Math.max(1, n)) / Math.log(total)) * 1000) : 1000);

/** The edges as CSV: name, every method's score, in_circuit (of `picked`, indices into report.edges). */
export function edgesCsv(report, picked) {
  const methods = Object.keys(report.scores);
  const inC = new Set(picked);
  const q = (s) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
  const rows = [["edge", ...methods, "in_circuit"].join(",")];
  report.edges.forEach((name, i) => {
    rows.push([q(name), ...methods.map((m) => {
      const v = report.scores[m][i];
      return v === null || !Number.isFinite(v) ? "" : String(v);
    }), inC.has(i) ? "1" : "0"].join(","));
  });
  return `${rows.join("\n")}\n`;
}

/** A canvas sized to w × h CSS pixels (crisp on HiDPI), cleared, text centred on its y. */
function canvasContext(canvas, w, h) {
  const dpr = sizeCanvas(canvas, w, h);
  const ctx = canvas.getContext("2d");
  startDrawing(ctx, w, h, dpr);
  ctx.textBaseline = "middle";
  return ctx;
}

function segmentDistance(px, py, x1, y1, x2, y2) {
  const dx = x2 - x1, dy = y2 - y1;
  const l2 = dx * dx + dy * dy;
  const t = l2 ? Math.max(0, Math.min(1, ((px - x1) * dx + (py - y1) * dy) / l2)) : 0;
  return Math.hypot(px - (x1 + t * dx), py - (y1 + t * dy));
}

/**
 * The results of a circuit report. opts: method, select, edges (the
 * slider's first n); ops: {reevaluate(report, {method, select, n}) (null
 * without a model), reselect(report, {method, select, n}), graph(report,
 * {method, edges})}, each a Promise; onState() when the method, selection
 * or n change (for the URL); onNode(name) on a click on a node;
 * filenamePrefix for downloads.
 */
export class CircuitView {
  constructor(root, { method, select, edges, ops, onState, onNode, filenamePrefix = "patchlab-circuit" } = {}) {
    this.root = root;
    this.ops = ops || {};
    this.onState = onState;
    this.onNode = onNode;
    this.prefix = filenamePrefix;
    this.want = { method: method || null, select: select || null, n: Number.isInteger(edges) ? edges : null };
    this.report = null;
    this.current = null;
    this.gen = 0;
    this.evals = 0;
    this.summary = el("p", "summary");
    this.summary.setAttribute("aria-live", "polite");
    const controls = this.buildControls();
    this.error = el("p", "error");
    this.error.setAttribute("role", "alert");
    this.error.hidden = true;
    this.buildFigures();
    const exports = this.buildExports();
    const h = (t) => el("h3", null, t);
    this.curvesTitle = h("Faithfulness against circuit size");
    this.scatterTitle = h("Edge scores against exact edge patching");
    root.append(this.summary, controls, this.error, this.graphFigure, this.legend, exports, this.curvesTitle, this.curveFigure, this.scatterTitle, this.scatterBox);
    root.classList.add("circuit-view");
    this.listen();
    this.root.dataset.state = "empty";
  }

  /** The method and selection selects, the size slider and its number, the faithfulness. */
  buildControls() {
    const controls = el("div", "run-row circuit-controls");
    this.methodSel = el("select");
    this.methodSel.setAttribute("aria-label", "the circuit's method");
    this.selectSel = el("select");
    this.selectSel.setAttribute("aria-label", "selection");
    for (const [v, label] of [["greedy", "greedy"], ["topn", "top-n"]]) {
      const o = el("option", null, label);
      o.value = v;
      this.selectSel.append(o);
    }
    this.slider = el("input");
    this.slider.type = "range";
    this.slider.min = "0";
    this.slider.max = "1000";
    this.slider.step = "1";
    this.slider.className = "circuit-slider";
    this.slider.setAttribute("aria-label", "circuit size n (edges, log scale)");
    this.nInput = el("input");
    this.nInput.type = "number";
    this.nInput.min = "1";
    this.nInput.className = "circuit-n";
    this.nInput.setAttribute("aria-label", "circuit size n (edges)");
    this.faith = el("span", "circuit-faith");
    this.faith.setAttribute("aria-live", "polite");
    const lab = (text, input) => {
      const l = el("label", null, `${text} `);
      l.append(input);
      return l;
    };
    controls.append(lab("Scores", this.methodSel), lab("Selection", this.selectSel), lab("n", this.slider), this.nInput, this.faith);
    return controls;
  }

  /** The graph's canvas with its tooltip and legend, the curves' canvas, the scatter plots' grid. */
  buildFigures() {
    this.graphFigure = el("figure", "plot circuit-graph");
    this.canvas = el("canvas");
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute("aria-label", "the circuit as a layered graph");
    this.tooltip = el("div", "tooltip");
    this.tooltip.hidden = true;
    this.legend = el("p", "note circuit-legend");
    this.graphFigure.append(this.canvas, this.tooltip);

    this.curveCanvas = el("canvas");
    this.curveCanvas.setAttribute("role", "img");
    this.curveCanvas.setAttribute("aria-label", "faithfulness against circuit size");
    this.curveFigure = el("figure", "plot circuit-curves");
    this.curveFigure.append(this.curveCanvas);
    this.scatterBox = el("div", "plot-grid circuit-scatter");
  }

  /** The export buttons: the reference's graph JSON, the report, the graph as PNG, the edges as CSV. */
  buildExports() {
    const exports = el("div", "export");
    exports.append(el("span", null, "Export:"));
    this.exportButtons = {};
    for (const [key, label, f] of [
      ["graph", "Graph JSON", () => this.exportGraph()],
      ["report", "Circuit report JSON", () => this.report && download(`${this.prefix}.json`, JSON.stringify(this.report), "application/json")],
      ["png", "Graph PNG", () => this.canvas.toBlob((b) => b && download(`${this.prefix}-graph.png`, b), "image/png")],
      ["csv", "Edges CSV", () => this.report && download(`${this.prefix}-edges.csv`, edgesCsv(this.report, this.current?.edges || []), "text/csv")],
    ]) {
      const b = el("button", "small", label);
      b.type = "button";
      b.dataset.export = key;
      b.addEventListener("click", f);
      exports.append(b);
      this.exportButtons[key] = b;
    }
    return exports;
  }

  /** The controls, the graph's hover and clicks, and the view's size. */
  listen() {
    this.methodSel.addEventListener("change", () => this.choose());
    this.selectSel.addEventListener("change", () => this.choose());
    this.slider.addEventListener("input", () => {
      this.nInput.value = String(sliderToN(this.slider.value, this.total()));
      this.chooseSoon();
    });
    this.nInput.addEventListener("change", () => {
      this.slider.value = String(nToSlider(Number(this.nInput.value), this.total()));
      this.choose();
    });
    this.canvas.addEventListener("mousemove", (e) => this.hover(e));
    this.canvas.addEventListener("mouseleave", () => {
      this.tooltip.hidden = true;
      this.hot = null;
      this.drawGraph();
    });
    this.canvas.addEventListener("click", (e) => {
      const hit = this.hit(e);
      if (hit?.node && this.onNode) this.onNode(hit.node);
    });
    this.resize = new ResizeObserver(() => this.layout());
    this.resize.observe(this.root);
  }

  total() {
    return this.report ? this.report.edges.length : 1;
  }

  /** The view's choices for the URL: {method, select, n}. */
  state() {
    return { method: this.methodSel.value, select: this.selectSel.value, n: Number(this.nInput.value) };
  }

  say(message) {
    this.error.textContent = message || "";
    this.error.hidden = !message;
  }

  /** Shows a circuit report (checked: an Error is shown, never a blank panel). */
  update(report) {
    try {
      checkCircuitReport(report);
    } catch (e) {
      this.report = null;
      this.say(e.message);
      this.root.dataset.state = "error";
      return;
    }
    this.report = report;
    this.gen++;
    this.say("");
    const s = report.settings || {};
    const methods = Object.keys(report.scores);
    this.methodSel.replaceChildren(...methods.map((m) => {
      const o = el("option", null, METHOD_LABELS[m] || m);
      o.value = m;
      return o;
    }));
    const method = methods.includes(this.want.method) ? this.want.method : methods.includes(s.method) ? s.method : methods[0];
    this.methodSel.value = method;
    this.selectSel.value = ["greedy", "topn"].includes(this.want.select) ? this.want.select : s.select || "greedy";
    const total = report.edges.length;
    this.nInput.max = String(total);
    let n = this.want.n ?? s.edges ?? Math.min(200, total);
    if (n > total || n < 1) {
      this.say(`A circuit of ${n} edges was asked for, but this graph has ${total} edges: showing ${Math.max(1, Math.min(total, n))}.`);
      n = Math.max(1, Math.min(total, n));
    }
    this.nInput.value = String(n);
    this.slider.value = String(nToSlider(n, total));
    this.maxAbs = {};
    for (const [m, sc] of Object.entries(report.scores)) this.maxAbs[m] = sc.reduce((a, v) => (v !== null && Number.isFinite(v) ? Math.max(a, Math.abs(v)) : a), 0) || 1;
    this.parsed = report.edges.map(parseEdge);
    const tokens = report.tokens?.clean?.length;
    const pairs = report.pairs?.length || 0;
    this.summary.textContent = `${report.model.name}: ${report.graph?.n_edges ?? total} edges between ${report.graph?.n_forward ?? "?"} nodes; ${pairs} pair${pairs === 1 ? "" : "s"}${tokens ? ` of ${tokens} tokens` : ""}; methods ${Object.keys(report.scores).map((m) => METHOD_LABELS[m] || m).join(", ")} (EAP-IG with ${s.steps} steps); metric clean ${fmt(report.metric?.clean)}, corrupt ${fmt(report.metric?.corrupt)}; computed on ${s.backend}${report.timings_ms?.scores !== undefined ? ` (scores in ${seconds(report.timings_ms.scores)})` : ""}.`;
    this.legend.textContent = "Rows: the input at the bottom, then each layer's attention heads and MLP, the logits at the top. Edges are coloured by the sign of their score (red positive, blue negative; the colour scale of the other plots) and drawn wider for larger |score|; an edge into a head ends at its q (left, solid), k (middle, dashed) or v (right, dotted) port. Hover an edge for its scores; click a head or MLP to open it in the Single pair tab.";
    const unchanged = method === s.method && this.selectSel.value === s.select && n === s.edges;
    this.current = unchanged ? report.circuit : null;
    this.root.dataset.state = unchanged ? "ready" : "evaluating";
    this.showFaith();
    this.layout();
    if (!unchanged) this.choose(false);
  }

  chooseSoon() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.choose(), 150);
  }

  /** Re-selects (and with a model re-evaluates) the circuit of the current method, selection and n. */
  async choose(user = true) {
    clearTimeout(this.timer);
    const r = this.report;
    if (!r) return;
    const total = r.edges.length;
    const n = Number(this.nInput.value);
    const { method, select } = { method: this.methodSel.value, select: this.selectSel.value };
    this.want = { method, select, n };
    if (user) this.onState?.();
    if (!Number.isInteger(n) || n < 1 || n > total) {
      this.say(`n must be a whole number of edges from 1 to ${total} (this graph's edges), not ${this.nInput.value || "empty"}.`);
      // no circuit is selected now: the graph and its tooltips must not show the last one as current
      this.gen++;
      this.current = null;
      this.showFaith();
      this.drawGraph();
      this.refreshTooltip();
      this.root.dataset.state = "error";
      return;
    }
    const gen = ++this.gen;
    this.root.dataset.state = "evaluating";
    this.faith.textContent = "evaluating…";
    let choice = null;
    let problem = "";
    if (this.ops.reevaluate) {
      try {
        choice = await this.ops.reevaluate(r, { method, select, n });
      } catch (e) {
        problem = `Could not re-evaluate the circuit on the loaded model: ${e.message}. The selection below is the report's scores' only (faithfulness unknown).`;
      }
    }
    if (!choice) {
      try {
        choice = await this.ops.reselect(r, { method, select, n });
      } catch (e) {
        if (gen !== this.gen) return;
        this.say(`${problem ? `${problem} ` : ""}Could not select the circuit: ${e.message}`);
        this.root.dataset.state = "error";
        return;
      }
    }
    if (gen !== this.gen) return;
    this.say(problem);
    this.current = choice;
    this.evals++;
    this.showFaith();
    this.drawGraph();
    this.refreshTooltip();
    this.drawCurves();
    this.drawScatter();
    this.root.dataset.evals = String(this.evals);
    this.root.dataset.state = "ready";
  }

  /** A tooltip left open (the mouse still over the graph while n changes) says what holds for the new circuit. */
  refreshTooltip() {
    if (!this.tooltip.hidden && this.lastHover) this.hover(this.lastHover);
  }

  showFaith() {
    const c = this.current;
    const f = c?.faithfulness;
    const known = f && f.faithfulness !== null && Number.isFinite(f.faithfulness);
    this.root.dataset.n = String(f?.n ?? this.nInput.value);
    this.root.dataset.faithfulness = known ? String(f.faithfulness) : "";
    if (!c) {
      this.faith.textContent = "";
      return;
    }
    const kept = `${c.edges.length} edges and ${c.nodes.length} upstream nodes after pruning`;
    this.faith.textContent = known
      ? `${kept}; faithfulness ${fmt(f.faithfulness, 3)} (metric ${fmt(f.metric, 3)})`
      : `${kept}; faithfulness unknown (no model loaded: the selection only)`;
  }

  // ---------- the graph ----------

  layout() {
    if (!this.report || !this.root.isConnected) return;
    const w = Math.max(360, Math.floor(this.graphFigure.clientWidth || this.root.clientWidth || 800));
    const { n_layers: L } = this.report.model;
    const rows = 2 * L + 2;
    const rowH = Math.max(26, Math.min(48, 640 / rows));
    this.geo = { w, h: Math.round(rows * rowH + 40), rowH, rows, left: 70, right: 16, top: 24 };
    this.drawGraph();
    this.drawCurves();
    this.drawScatter();
  }

  /** Where node `name` is drawn: {x, y, w, h}. */
  nodeBox(name) {
    const g = this.geo;
    const { n_layers: L, n_heads: H } = this.report.model;
    const p = parseNode(name);
    const pw = g.w - g.left - g.right;
    const rowY = (row) => g.top + (g.rows - 1 - row) * g.rowH + g.rowH / 2;
    const bw = Math.max(6, Math.min(34, (pw / H) * 0.8));
    const bh = Math.min(16, g.rowH * 0.45);
    if (!p) return null;
    if (p.kind === "head") return { x: g.left + ((p.head + 0.5) * pw) / H, y: rowY(1 + 2 * p.layer), w: bw, h: bh };
    if (p.kind === "mlp") return { x: g.left + pw / 2, y: rowY(2 + 2 * p.layer), w: Math.max(bw, 40), h: bh };
    if (p.kind === "input") return { x: g.left + pw / 2, y: rowY(0), w: 60, h: bh };
    return { x: g.left + pw / 2, y: rowY(2 * L + 1), w: 60, h: bh };
  }

  /** The segment of edge i: from the top of its source to its target's port. */
  segment(i) {
    const e = this.parsed[i];
    if (!e) return null;
    const a = this.nodeBox(e.from);
    const b = this.nodeBox(e.to);
    if (!a || !b) return null;
    const dx = e.port === "q" ? -b.w / 3 : e.port === "v" ? b.w / 3 : 0;
    return [a.x, a.y - a.h / 2, b.x + dx, b.y + b.h / 2];
  }

  drawGraph() {
    const r = this.report;
    const g = this.geo;
    if (!r || !g) return;
    const ctx = canvasContext(this.canvas, g.w, g.h);
    const { n_layers: L, n_heads: H } = r.model;
    const method = this.methodSel.value;
    const scores = r.scores[method] || [];
    const scale = this.maxAbs[method] || 1;
    const picked = this.current ? this.current.edges : [];
    const inNodes = new Set([...(this.current?.nodes || []), "logits"]);
    // row labels
    ctx.fillStyle = "#666";
    ctx.textAlign = "left";
    const labelAt = (name, text) => ctx.fillText(text, 6, this.nodeBox(name).y);
    labelAt("input", "input");
    for (let l = 0; l < L; l++) {
      labelAt(`a${l}.h0`, `L${l} attn`);
      labelAt(`m${l}`, `L${l} MLP`);
    }
    labelAt("logits", "logits");
    // edges, weakest first (the strongest on top)
    const order = [...picked].sort((a, b) => Math.abs(scores[a] || 0) - Math.abs(scores[b] || 0));
    this.drawn = [];
    for (const i of order) {
      const seg = this.segment(i);
      if (!seg) continue;
      const v = scores[i];
      const t = v === null || !Number.isFinite(v) ? NaN : v / scale;
      ctx.strokeStyle = css(diverging(Number.isFinite(t) ? Math.sign(t) * (0.35 + 0.65 * Math.abs(t)) : t));
      ctx.lineWidth = 0.6 + 4 * Math.min(1, Math.abs(t) || 0) + (this.hot === i ? 2 : 0);
      ctx.setLineDash(DASH[this.parsed[i].port]);
      ctx.beginPath();
      ctx.moveTo(seg[0], seg[1]);
      ctx.lineTo(seg[2], seg[3]);
      ctx.stroke();
      this.drawn.push([i, ...seg]);
    }
    ctx.setLineDash([]);
    // nodes
    const names = ["input", "logits"];
    for (let l = 0; l < L; l++) {
      for (let h = 0; h < H; h++) names.push(`a${l}.h${h}`);
      names.push(`m${l}`);
    }
    ctx.textAlign = "center";
    for (const name of names) {
      const b = this.nodeBox(name);
      const on = inNodes.has(name);
      ctx.fillStyle = on ? "#fff" : "#f3f3f5";
      ctx.strokeStyle = on ? "#222" : "#ccc";
      ctx.lineWidth = on ? 1.4 : 0.8;
      ctx.fillRect(b.x - b.w / 2, b.y - b.h / 2, b.w, b.h);
      ctx.strokeRect(b.x - b.w / 2, b.y - b.h / 2, b.w, b.h);
      if (b.w >= 28 || name === "input" || name === "logits" || name.startsWith("m")) {
        ctx.font = SMALL_FONT;
        ctx.fillStyle = on ? "#111" : "#999";
        ctx.fillText(name, b.x, b.y, b.w - 2);
        ctx.font = FONT;
      }
      if (on && name.startsWith("a") && b.w >= 14) {
        // the q, k and v ports
        ctx.fillStyle = "#222";
        for (const dx of [-b.w / 3, 0, b.w / 3]) ctx.fillRect(b.x + dx - 1, b.y + b.h / 2 - 1, 2, 2);
      }
    }
    this.drawLegend(ctx, method, scale);
    // where tests (and curious readers) can find edges and nodes
    this.canvas.dataset.edges = String(this.drawn.length);
    this.canvas.dataset.edgePoints = JSON.stringify(this.drawn.slice(-50).map(([i, x1, y1, x2, y2]) => [i, (x1 + x2) / 2, (y1 + y2) / 2]));
    this.canvas.dataset.nodePoints = JSON.stringify(Object.fromEntries(names.filter((n) => inNodes.has(n)).map((n) => [n, [this.nodeBox(n).x, this.nodeBox(n).y]])));
    this.canvas.dataset.drawn = String((Number(this.canvas.dataset.drawn) || 0) + 1);
  }

  /** Under the graph: the q / k / v dashes, the colours of the signs, the method and its scale. */
  drawLegend(ctx, method, scale) {
    ctx.textAlign = "left";
    const g = this.geo;
    let x = g.left;
    const y = g.h - 10;
    for (const [port, label] of [["q", "→ q"], ["k", "→ k"], ["v", "→ v"]]) {
      ctx.strokeStyle = "#444";
      ctx.lineWidth = 1.6;
      ctx.setLineDash(DASH[port]);
      ctx.beginPath();
      ctx.moveTo(x, y);
      ctx.lineTo(x + 26, y);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = "#444";
      ctx.fillText(label, x + 30, y);
      x += 70;
    }
    for (const [t, label] of [[1, "positive"], [-1, "negative"]]) {
      ctx.fillStyle = css(diverging(t * 0.8));
      ctx.fillRect(x, y - 4, 18, 8);
      ctx.fillStyle = "#444";
      ctx.fillText(label, x + 22, y);
      x += 90;
    }
    ctx.fillText(`${METHOD_LABELS[method] || method} scores, |score| up to ${fmt(scale, 3)}`, x, y);
  }

  hit(e) {
    if (!this.report || !this.geo) return null;
    const rect = this.canvas.getBoundingClientRect();
    const x = e.clientX - rect.left, y = e.clientY - rect.top;
    const { n_layers: L, n_heads: H } = this.report.model;
    const names = ["input", "logits"];
    for (let l = 0; l < L; l++) {
      for (let h = 0; h < H; h++) names.push(`a${l}.h${h}`);
      names.push(`m${l}`);
    }
    for (const name of names) {
      const b = this.nodeBox(name);
      if (Math.abs(x - b.x) <= b.w / 2 && Math.abs(y - b.y) <= b.h / 2) return { node: name };
    }
    let best = null, bestD = 6;
    for (const [i, x1, y1, x2, y2] of this.drawn || []) {
      const d = segmentDistance(x, y, x1, y1, x2, y2);
      if (d <= bestD) {
        bestD = d;
        best = i;
      }
    }
    return best === null ? null : { edge: best, x, y };
  }

  hover(e) {
    this.lastHover = { clientX: e.clientX, clientY: e.clientY };
    const h = this.hit(e);
    const rect = this.canvas.getBoundingClientRect();
    const x = e.clientX - rect.left, y = e.clientY - rect.top;
    const hot = h?.edge ?? null;
    if (!h) {
      this.tooltip.hidden = true;
      this.canvas.style.cursor = "default";
    } else {
      const r = this.report;
      const lines = [];
      if (h.node) {
        const p = parseNode(h.node);
        lines.push(h.node, p?.kind === "head" ? `attention head ${p.layer}.${p.head}: click to open it in the Single pair tab` : p?.kind === "mlp" ? `layer ${p.layer}'s MLP: click to open its neurons in the Single pair tab` : "");
      } else {
        lines.push(r.edges[h.edge]);
        for (const [m, s] of Object.entries(r.scores)) lines.push(`${METHOD_LABELS[m] || m}: ${fmt(s[h.edge])}`);
        lines.push(!this.current ? "no circuit selected" : this.current.edges.includes(h.edge) ? "in the circuit" : this.current.edges.length ? "not in the circuit" : "not in the circuit (it has no edges)");
      }
      this.tooltip.replaceChildren(...lines.filter(Boolean).map((l, i) => el(i === 0 ? "strong" : "div", null, l)));
      if (h.edge !== undefined) this.tooltip.dataset.edge = String(h.edge);
      else delete this.tooltip.dataset.edge;
      this.tooltip.hidden = false;
      this.tooltip.style.left = `${Math.min(x + 14, this.geo.w - 200)}px`;
      this.tooltip.style.top = `${y + 14}px`;
      this.canvas.style.cursor = h.node && this.onNode ? "pointer" : "default";
    }
    if (hot !== this.hot) {
      this.hot = hot;
      this.drawGraph();
    }
  }

  // ---------- curves and scatter ----------

  drawCurves() {
    const r = this.report;
    if (!r || !this.geo) return;
    const curves = Object.entries(r.curves || {}).filter(([, pts]) => pts.length);
    this.curvesTitle.hidden = this.curveFigure.hidden = !curves.length;
    if (!curves.length) return;
    const w = this.geo.w, h = 300;
    const ctx = canvasContext(this.curveCanvas, w, h);
    const left = 60, right = 130, top = 16, bottom = 40;
    const pw = w - left - right, ph = h - top - bottom;
    const total = r.edges.length;
    const fin = (v) => v !== null && Number.isFinite(v);
    const ys = curves.flatMap(([, pts]) => pts.map((p) => p.faithfulness).filter(fin));
    const lo = Math.min(0, ...ys), hi = Math.max(1, ...ys);
    const X = (n) => left + (total > 1 ? (Math.log(Math.max(1, n)) / Math.log(total)) * pw : pw);
    const Y = (v) => top + ((hi - v) / (hi - lo || 1)) * ph;
    // axes and grid
    ctx.strokeStyle = "#ddd";
    ctx.lineWidth = 1;
    ctx.fillStyle = "#555";
    ctx.textAlign = "right";
    for (const v of [lo, 0, 0.5, 1, hi].filter((v, i, a) => a.indexOf(v) === i && v >= lo && v <= hi)) {
      ctx.beginPath();
      ctx.moveTo(left, Y(v));
      ctx.lineTo(left + pw, Y(v));
      ctx.stroke();
      ctx.fillText(fmt(v, 2), left - 6, Y(v));
    }
    ctx.textAlign = "center";
    for (let d = 1; d <= total * 1.0001; d *= 10) {
      ctx.beginPath();
      ctx.moveTo(X(d), top);
      ctx.lineTo(X(d), top + ph);
      ctx.stroke();
      ctx.fillText(String(d), X(d), top + ph + 12);
    }
    ctx.fillText(`edges (log scale, up to ${total})`, left + pw / 2, h - 10);
    verticalLabel(ctx, "faithfulness", 14, top + ph / 2);
    // the current n
    const n = this.current?.faithfulness?.n ?? Number(this.nInput.value);
    ctx.strokeStyle = "#888";
    ctx.setLineDash([4, 3]);
    ctx.beginPath();
    ctx.moveTo(X(n), top);
    ctx.lineTo(X(n), top + ph);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = "#333";
    ctx.fillText(`n = ${n}`, Math.min(X(n), left + pw - 20), top - 6);
    // a line per method, and the legend
    ctx.textAlign = "left";
    curves.forEach(([m, pts], k) => {
      ctx.strokeStyle = ctx.fillStyle = METHOD_COLOURS[m] || "#777";
      ctx.lineWidth = 2;
      ctx.beginPath();
      let started = false;
      for (const p of pts) {
        if (!fin(p.faithfulness)) continue;
        if (started) ctx.lineTo(X(p.n), Y(p.faithfulness));
        else ctx.moveTo(X(p.n), Y(p.faithfulness));
        started = true;
      }
      ctx.stroke();
      for (const p of pts) if (fin(p.faithfulness)) ctx.fillRect(X(p.n) - 2, Y(p.faithfulness) - 2, 4, 4);
      ctx.fillRect(left + pw + 12, top + 10 + k * 18, 14, 3);
      ctx.fillStyle = "#222";
      ctx.fillText(METHOD_LABELS[m] || m, left + pw + 30, top + 11 + k * 18);
    });
    // the current circuit's own point
    const f = this.current?.faithfulness;
    if (f && fin(f.faithfulness)) {
      ctx.fillStyle = "#000";
      ctx.beginPath();
      ctx.arc(X(f.n), Y(f.faithfulness), 4, 0, 2 * Math.PI);
      ctx.fill();
    }
    this.curveCanvas.dataset.methods = curves.map(([m]) => m).join(",");
    this.curveCanvas.dataset.drawn = String((Number(this.curveCanvas.dataset.drawn) || 0) + 1);
  }

  /** EAP's and EAP-IG's scores against exact patching's, one point per edge, the circuit's edges in red. */
  drawScatter() {
    const r = this.report;
    if (!r || !this.geo) return;
    if (this.scatterReport !== r) {
      const exact = r.scores.exact;
      const others = exact ? ["eap", "eap-ig"].filter((m) => r.scores[m]) : [];
      this.scatterTitle.hidden = this.scatterBox.hidden = !others.length;
      for (const p of this.scatters || []) p.destroy();
      this.scatters = others.map((m) => this.edgeScatter(r, m));
      this.scatterReport = r;
      this.scatterCircuit = undefined;
    }
    if (this.scatterCircuit === this.current) return;
    this.scatterCircuit = this.current;
    const inC = new Set(this.current?.edges || []);
    for (const p of this.scatters) p.setHighlight((_, i) => inC.has(i));
  }

  /** One method's scores against exact patching's; the report's Pearson r where it has one. */
  edgeScatter(r, m) {
    const fin = (v) => v !== null && Number.isFinite(v);
    const saved = r.correlations?.[m]?.pearson;
    const label = METHOD_LABELS[m];
    const p = new Scatter(this.scatterBox, {
      title: `${label} vs exact`,
      x: [r.scores.exact],
      y: [r.scores[m]],
      xLabel: "exact score",
      yLabel: `${label} score`,
      r: fin(saved) ? saved : undefined,
      fitLine: false,
      label: (_, i) => r.edges[i],
      highlight: () => false,
      height: 300,
      filename: `${this.prefix}-scatter-${m}`,
    });
    const rr = fin(saved) ? saved : p.fit?.r;
    p.canvas.dataset.method = m;
    p.canvas.dataset.r = fin(rr) ? String(rr) : "";
    return p;
  }

  async exportGraph() {
    const r = this.report;
    if (!r || !this.current) return;
    try {
      const text = await this.ops.graph(r, { method: this.methodSel.value, edges: this.current.edges });
      download(`${this.prefix}-graph.json`, text, "application/json");
    } catch (e) {
      this.say(`Could not write the graph file: ${e.message}`);
    }
  }

  destroy() {
    this.resize.disconnect();
    clearTimeout(this.timer);
    for (const p of this.scatters || []) p.destroy();
  }
}

/**
 * The lab page's Circuit tab: the form (the single-pair prompts, or the
 * Dataset tab's pairs), Run / Cancel with progress and ETA, "Open
 * circuit.json…", and the results in a CircuitView. host: {lab() (the
 * loaded PatchLab or null), tools() (CircuitTools for a page without a
 * model), pairPrompts() ({clean, corrupt, correct, incorrect, bos,
 * metric}), datasetPairs() (the Dataset tab's pairs or null),
 * busy() (another tab runs), onBusy(), onState(), openNode(name, report)}.
 */
export class CircuitTab {
  constructor(host, params) {
    this.host = host;
    this.running = null;
    this.runs = 0;
    const method = params.get("circuit_method");
    if (["eap-ig", "eap", "clean-corrupted", "exact"].includes(method)) $("c-method").value = method;
    if (["greedy", "topn"].includes(params.get("circuit_select"))) $("c-select").value = params.get("circuit_select");
    const edges = Number(params.get("edges"));
    if (params.has("edges") && Number.isInteger(edges)) $("c-edges").value = String(edges);
    const steps = Number(params.get("circuit_steps"));
    if (params.has("circuit_steps") && Number.isInteger(steps)) $("c-steps").value = String(steps);
    $("c-exact").checked = params.get("exact") === "1";
    $("c-use-dataset").checked = params.get("use_dataset") === "1";
    this.urlWant = params.has("edges") || params.has("circuit_method") || params.has("circuit_select")
      ? { method: method || undefined, select: params.get("circuit_select") || undefined, n: params.has("edges") && Number.isInteger(edges) ? edges : undefined }
      : null;
    this.view = new CircuitView($("circuit-view"), {
      method: method || undefined,
      select: params.get("circuit_select") || undefined,
      edges: params.has("edges") && Number.isInteger(edges) ? edges : undefined,
      ops: this.ops(),
      onState: () => {
        const s = this.view.state();
        if (Number.isInteger(s.n) && s.n >= 1) $("c-edges").value = String(s.n);
        host.onState();
      },
      onNode: (name) => host.openNode(name, this.view.report),
    });
    $("c-run").addEventListener("click", () => this.run());
    $("c-cancel").addEventListener("click", () => {
      if (this.running) {
        $("c-text").textContent = "Cancelling…";
        this.running.abort();
      }
    });
    $("c-open").addEventListener("click", () => $("c-file").click());
    $("c-file").addEventListener("change", async () => {
      const f = $("c-file").files[0];
      $("c-file").value = "";
      if (f) this.showText(await f.text(), f.name);
    });
    for (const id of ["c-method", "c-select", "c-edges", "c-steps", "c-exact", "c-use-dataset"]) $(id).addEventListener("change", () => {
      this.describe();
      host.onState();
    });
    this.describe();
  }

  /** The view's engine calls: the loaded model's worker, or (none loaded) a model-less worker. */
  ops() {
    const host = this.host;
    return {
      reevaluate: null,
      reselect: (r, o) => (host.lab() || host.tools()).reselectCircuit(r, o),
      graph: (r, o) => (host.lab() || host.tools()).circuitGraph(r, o),
    };
  }

  isRunning() {
    return !!this.running;
  }

  /** URL parameters of the tab's state. */
  urlState() {
    const out = { circuit_method: $("c-method").value, circuit_select: $("c-select").value, edges: $("c-edges").value };
    if (this.view.report) {
      const s = this.view.state();
      out.circuit_select = s.select;
      if (Number.isInteger(s.n)) out.edges = String(s.n);
    }
    if (Number($("c-steps").value) !== 5) out.circuit_steps = $("c-steps").value;
    if ($("c-exact").checked) out.exact = "1";
    if ($("c-use-dataset").checked) out.use_dataset = "1";
    return out;
  }

  error(message) {
    $("c-error").textContent = message || "";
    $("c-error").hidden = !message;
  }

  /** What Run will send, in words (the prompts as text, never markup). */
  describe() {
    const lab = this.host.lab();
    const p = this.host.pairPrompts();
    const ds = $("c-use-dataset").checked ? this.host.datasetPairs() : null;
    $("c-source").textContent = $("c-use-dataset").checked
      ? ds ? `The Dataset tab's ${ds.length} pairs (scores averaged over them; they must all have the same token length).` : "The Dataset tab has no pairs yet: generate or upload them there first."
      : `The Single pair tab's prompts: clean ${JSON.stringify(p.clean)}, corrupt ${JSON.stringify(p.corrupt)}, answers ${JSON.stringify(p.correct)} / ${JSON.stringify(p.incorrect)}, metric ${p.metric}${p.bos ? "" : ", no BOS"}.`;
    $("c-run").disabled = !lab || !!this.running || this.host.busy();
    $("c-cancel").disabled = !this.running;
  }

  /** The form, checked: a request for PatchLab.circuit, or an Error. */
  request() {
    const steps = Number($("c-steps").value);
    const edges = Number($("c-edges").value);
    if (!Number.isInteger(steps) || steps < 1) throw new Error(`EAP-IG's steps must be a whole number, at least 1 (not ${$("c-steps").value || "empty"}).`);
    if (!Number.isInteger(edges) || edges < 1) throw new Error(`The circuit's edges n must be a whole number, at least 1 (not ${$("c-edges").value || "empty"}).`);
    let pairs;
    if ($("c-use-dataset").checked) {
      pairs = this.host.datasetPairs();
      if (!pairs || !pairs.length) throw new Error("The Dataset tab has no pairs yet: generate or upload them there first (or untick \"use the Dataset tab's pairs\").");
    } else pairs = [this.host.pairPrompts()];
    return { pairs, method: $("c-method").value, steps, select: $("c-select").value, edges, exact: $("c-exact").checked, backend: $("c-backend").value };
  }

  async run() {
    const lab = this.host.lab();
    if (!lab || this.running || this.host.busy()) return;
    this.error("");
    let req;
    try {
      req = this.request();
    } catch (e) {
      this.error(e.message);
      document.body.dataset.circuitErrors = String((Number(document.body.dataset.circuitErrors) || 0) + 1);
      return;
    }
    const ctrl = new AbortController();
    this.running = ctrl;
    this.host.onBusy();
    this.describe();
    $("c-progress").hidden = false;
    $("c-progress").value = 0;
    $("c-text").textContent = "Starting…";
    try {
      const report = await lab.circuit({
        ...req,
        signal: ctrl.signal,
        onProgress: (p) => {
          $("c-progress").value = p.fraction;
          $("c-text").textContent = `${stageText(p.stage)} — ${Math.round(p.fraction * 100)} % · ${seconds(p.elapsedMs)} elapsed · ETA ${seconds(p.etaMs)}`;
        },
      });
      $("c-progress").value = 1;
      $("c-text").textContent = `Done in ${seconds(Object.values(report.timings_ms || {}).reduce((a, b) => a + b, 0))}.`;
      this.show(report, null);
      this.runs++;
      document.body.dataset.circuitRuns = String(this.runs);
    } catch (e) {
      $("c-progress").hidden = true;
      if (e.name === "AbortError") $("c-text").textContent = "Cancelled.";
      else {
        $("c-text").textContent = "";
        this.error(e.message);
      }
      document.body.dataset.circuitErrors = String((Number(document.body.dataset.circuitErrors) || 0) + 1);
    } finally {
      this.running = null;
      this.host.onBusy();
      this.describe();
    }
  }

  /** Shows a report (computed here, or saved: `source` names it). */
  show(report, source) {
    let lab = this.host.lab();
    const ops = this.ops();
    const m = report.model || {};
    const i = lab?.info;
    if (i && (m.n_layers !== i.n_layers || m.n_heads !== i.n_heads || m.d_model !== i.d_model)) {
      // the loaded model cannot re-evaluate another model's circuit
      this.error(`${source || "This report"} is a circuit report of another model (${m.name}: ${m.n_layers} layers, ${m.n_heads} heads, d_model ${m.d_model}); the loaded model has ${i.n_layers} layers, ${i.n_heads} heads, d_model ${i.d_model}. It is shown as saved: the slider re-selects its edges without faithfulness.`);
      lab = null;
    }
    if (lab) ops.reevaluate = (r, o) => lab.reevaluateCircuit(r, o);
    this.view.ops = ops;
    // a saved report opened by a link shows the link's choices; anything else its own
    const s = report.settings || {};
    this.view.want = source && this.urlWant ? this.urlWant : { method: s.method, select: s.select, n: s.edges };
    this.urlWant = null;
    $("circuit-results").hidden = false;
    $("c-banner").textContent = source ? `${source}: a saved circuit report of ${report.model?.name}${lab ? "" : this.host.lab() ? "" : "; no model is loaded, so the slider re-selects without faithfulness"}.` : "";
    $("c-banner").hidden = !source;
    this.view.update(report);
    this.host.onState();
  }

  /** A saved circuit report's text (a file, ?report=): shown, or an error saying why not. */
  showText(text, source) {
    this.error("");
    let r;
    try {
      r = checkCircuitReport(JSON.parse(text));
    } catch (e) {
      this.error(`Could not show ${source}: ${e.message}`);
      return false;
    }
    this.show(r, source);
    return true;
  }
}
