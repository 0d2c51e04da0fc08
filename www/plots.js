// Canvas plots of patchlab reports: heatmaps (layer × head), neuron maps
// (layer × d_mlp, zoomable), scatter plots with a fit line and Pearson r,
// histograms (per-pair r of a dataset). Crisp on HiDPI (the backing store
// follows devicePixelRatio), hover tooltips, click to pin a component
// (shared by every plot through a Selection), shift-click (or a plain click
// in ablate mode) to add it to an Ablation set, PNG export. All text goes
// through textContent or fillText.

import { download, el } from "./dom.js";
import { npyBytes } from "./npy.js";

const FONT = "12px system-ui, -apple-system, 'Segoe UI', sans-serif";
const TITLE_FONT = "600 13px system-ui, -apple-system, 'Segoe UI', sans-serif";

// RdBu (ColorBrewer), blue for negative, red for positive, white at 0.
const STOPS = [
  [5, 48, 97],
  [33, 102, 172],
  [67, 147, 195],
  [146, 197, 222],
  [209, 229, 240],
  [247, 247, 247],
  [253, 219, 199],
  [244, 165, 130],
  [214, 96, 77],
  [178, 24, 43],
  [103, 0, 31],
];
const NAN_RGB = [170, 170, 170];
const MISSING_RGB = [236, 236, 240];

/** Colour of t ∈ [-1, 1] (clamped) as [r, g, b]. */
export function diverging(t) {
  if (!Number.isFinite(t)) return NAN_RGB;
  const x = (Math.max(-1, Math.min(1, t)) + 1) * 0.5 * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x));
  const f = x - i;
  const a = STOPS[i];
  const b = STOPS[i + 1];
  return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
}
const css = (c) => `rgb(${c[0] | 0},${c[1] | 0},${c[2] | 0})`;

/** Largest finite |v| of a map (rows may be missing while results stream in). */
export function maxAbs(rows) {
  let m = 0;
  for (const r of rows || []) {
    if (!r) continue;
    for (const v of r) if (v !== null && Number.isFinite(v) && Math.abs(v) > m) m = Math.abs(v);
  }
  return m;
}

const num = (v) => (v === null || v === undefined ? NaN : v);

/** Formats a score for tooltips and axes. */
export function fmt(v, digits = 4) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "undefined";
  if (v !== 0 && (Math.abs(v) >= 1e4 || Math.abs(v) < 1e-3)) return v.toExponential(digits - 1).replace("-", "−");
  return v.toFixed(digits).replace("-", "−");
}

/** Tick labels with as many decimals as the tick step needs. */
function tickLabel(ticks) {
  const step = ticks.length > 1 ? Math.abs(ticks[1] - ticks[0]) : 1;
  if (step < 1e-3 || step >= 1e5) return (t) => fmt(t, 2);
  const d = Math.max(0, Math.ceil(-Math.log10(step) + 1e-9) + (step / 10 ** Math.floor(Math.log10(step)) === 2.5 ? 1 : 0));
  return (t) => t.toFixed(d).replace("-", "−");
}

function niceTicks(lo, hi, n = 5) {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((s) => s * mag).find((s) => s >= step0) || step0;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

/** Pearson r of two arrays, ignoring pairs with a non-finite value. */
export function pearson(xs, ys) {
  let n = 0, sx = 0, sy = 0;
  for (let i = 0; i < xs.length; i++) {
    const x = num(xs[i]), y = num(ys[i]);
    if (Number.isFinite(x) && Number.isFinite(y)) { n++; sx += x; sy += y; }
  }
  if (n < 2) return null;
  const mx = sx / n, my = sy / n;
  let sxx = 0, syy = 0, sxy = 0;
  for (let i = 0; i < xs.length; i++) {
    const x = num(xs[i]), y = num(ys[i]);
    if (Number.isFinite(x) && Number.isFinite(y)) { sxx += (x - mx) ** 2; syy += (y - my) ** 2; sxy += (x - mx) * (y - my); }
  }
  if (sxx === 0 || syy === 0) return null;
  return { r: sxy / Math.sqrt(sxx * syy), slope: sxy / sxx, intercept: my - (sxy / sxx) * mx };
}

/** The pinned component, shared by all plots of a report. */
export class Selection {
  constructor() {
    this.pinned = null; // {component: "heads"|"neurons", layer, index}
    this.listeners = new Set();
  }
  toggle(p) {
    const same = this.pinned && p && this.pinned.component === p.component && this.pinned.layer === p.layer && this.pinned.index === p.index;
    this.pinned = same ? null : p;
    for (const f of this.listeners) f(this.pinned);
  }
  on(f) {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }
}

/**
 * The components chosen for mean ablation, shared by the heatmaps of a
 * report: shift-click toggles one; with `mode` on, a plain click does too.
 */
export class Ablation {
  constructor() {
    this.items = new Map(); // "heads:l:i" -> {component, layer, index}
    this.mode = false;
    this.listeners = new Set();
  }
  static key(p) {
    return `${p.component}:${p.layer}:${p.index}`;
  }
  has(component, layer, index) {
    return this.items.has(`${component}:${layer}:${index}`);
  }
  get size() {
    return this.items.size;
  }
  /** Items sorted by kind, layer, index. */
  list() {
    return [...this.items.values()].sort((a, b) => a.component.localeCompare(b.component) || a.layer - b.layer || a.index - b.index);
  }
  /** [[layer, index]] of one kind, as `PatchLab.ablate` takes them. */
  pairs(component) {
    return this.list().filter((p) => p.component === component).map((p) => [p.layer, p.index]);
  }
  toggle(p) {
    const k = Ablation.key(p);
    if (this.items.has(k)) this.items.delete(k);
    else this.items.set(k, { component: p.component, layer: p.layer, index: p.index });
    this.emit(true);
  }
  /** Replaces the set (items: [{component, layer, index}]). */
  set(items, changed = true) {
    this.items = new Map(items.map((p) => [Ablation.key(p), { component: p.component, layer: p.layer, index: p.index }]));
    this.emit(changed);
  }
  setMode(on) {
    this.mode = !!on;
    this.emit(false);
  }
  /** changed: whether the set itself changed (not only the mode). */
  emit(changed) {
    for (const f of this.listeners) f(changed);
  }
  on(f) {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }
}

export function componentLabel(component, layer, index) {
  return component === "heads" ? `L${layer} H${index}` : `L${layer} N${index}`;
}

/**
 * Base: a figure with a canvas, tooltip, PNG button (and CSV / npy buttons
 * when `exports` is given: {csv: () => text, npy: () => {shape, values}});
 * redraws on resize. A click on a point without a component to pin pins the
 * tooltip instead (click again or Escape to unpin).
 */
class Plot {
  constructor(parent, { title, selection, ablation, filename, height, exports }) {
    this.title = title;
    this.selection = selection;
    this.ablation = ablation || null;
    this.filename = filename || "patchlab-plot";
    this.fixedHeight = height;
    this.figure = el("figure", "plot");
    this.canvas = el("canvas");
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute("aria-label", title);
    this.tooltip = el("div", "tooltip");
    this.tooltip.hidden = true;
    const bar = el("div", "plot-tools");
    const png = el("button", "small", "PNG");
    png.type = "button";
    png.title = "Download this plot as a PNG image";
    png.addEventListener("click", () => this.downloadPng());
    bar.append(png);
    this.exports = exports;
    if (exports) {
      for (const [label, what, f] of [
        ["CSV", "its numbers as CSV", () => download(`${this.filename}.csv`, this.exports.csv(), "text/csv")],
        ["npy", "its map as a NumPy .npy file (float32, the map's shape)", () => {
          const { shape, values } = this.exports.npy();
          download(`${this.filename}.npy`, npyBytes(shape, values));
        }],
      ]) {
        const b = el("button", "small", label);
        b.type = "button";
        b.dataset.export = label.toLowerCase();
        b.title = `Download ${what}`;
        b.addEventListener("click", f);
        bar.append(b);
      }
    }
    this.tools = bar;
    this.figure.append(this.canvas, this.tooltip, bar);
    parent.append(this.figure);
    this.hover = null;
    this.tipPinned = false;
    this.canvas.addEventListener("mousemove", (e) => this.onMove(e));
    this.canvas.addEventListener("mouseleave", () => {
      if (this.tipPinned) return;
      this.hover = null;
      this.tooltip.hidden = true;
      this.draw();
    });
    this.onKey = (e) => { if (e.key === "Escape" && this.tipPinned) this.unpinTip(); };
    window.addEventListener("keydown", this.onKey);
    this.canvas.addEventListener("click", (e) => {
      if (this.tipPinned) return this.unpinTip();
      const h = this.hit(...this.pos(e));
      if (!h) return;
      if (!h.pin) {
        if (!h.lines) return;
        this.onMove(e);
        this.tipPinned = true;
        this.tooltip.classList.add("pinned");
        this.figure.dataset.tipPinned = "1";
        return;
      }
      if (this.ablation && (e.shiftKey || this.ablation.mode)) {
        this.ablation.toggle(h.pin);
        this.onMove(e); // the tooltip says what a click does now
      } else this.selection?.toggle(h.pin);
    });
    this.unsub = this.selection?.on(() => this.draw());
    this.unsubAblation = this.ablation?.on(() => this.draw());
    this.resize = new ResizeObserver(() => this.layout());
    this.resize.observe(this.figure);
  }

  pos(e) {
    const r = this.canvas.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  }

  unpinTip() {
    this.tipPinned = false;
    this.tooltip.classList.remove("pinned");
    delete this.figure.dataset.tipPinned;
    this.hover = null;
    this.tooltip.hidden = true;
    this.draw();
  }

  onMove(e) {
    if (this.tipPinned) return;
    const [x, y] = this.pos(e);
    const h = this.hit(x, y);
    this.hover = h;
    if (!h) {
      this.tooltip.hidden = true;
    } else {
      this.tooltip.replaceChildren(...h.lines.map((l, i) => el(i === 0 ? "strong" : "div", null, l)));
      // the exact number, for tests and for copying from the inspector
      if (h.value !== undefined) this.tooltip.dataset.value = String(h.value);
      else delete this.tooltip.dataset.value;
      this.tooltip.hidden = false;
      const w = this.figure.clientWidth;
      this.tooltip.style.left = `${Math.min(x + 14, w - 180)}px`;
      this.tooltip.style.top = `${y + 14}px`;
    }
    this.canvas.style.cursor = h && h.pin ? "pointer" : "default";
    this.draw();
  }

  /** Sizes the backing store to CSS size × devicePixelRatio, then draws. */
  layout() {
    const w = Math.max(160, Math.floor(this.figure.clientWidth));
    if (!this.figure.isConnected || this.figure.clientWidth === 0) return;
    const h = Math.round(this.heightFor(w));
    const dpr = window.devicePixelRatio || 1;
    if (this.w !== w || this.h !== h || this.dpr !== dpr) {
      this.w = w;
      this.h = h;
      this.dpr = dpr;
      this.canvas.style.width = `${w}px`;
      this.canvas.style.height = `${h}px`;
      this.canvas.width = Math.round(w * dpr);
      this.canvas.height = Math.round(h * dpr);
    }
    this.draw();
  }

  heightFor(w) {
    return this.fixedHeight || Math.min(360, w * 0.75);
  }

  draw() {
    if (!this.w) return;
    this.drawOn(this.canvas.getContext("2d"));
    this.canvas.dataset.drawn = String((Number(this.canvas.dataset.drawn) || 0) + 1);
  }

  /** Background, title and the plot itself on a context of the canvas's size. */
  drawOn(ctx) {
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, this.w, this.h);
    ctx.font = TITLE_FONT;
    ctx.fillStyle = "#111";
    ctx.textBaseline = "top";
    ctx.textAlign = "left";
    // the title stops short of the buttons
    ctx.fillText(this.title, 6, 4, Math.max(60, this.w - 16 - (this.tools.offsetWidth || 0)));
    ctx.font = FONT;
    this.paint(ctx);
  }

  downloadPng() {
    this.canvas.toBlob((blob) => {
      if (blob) download(`${this.filename}.png`, blob);
    }, "image/png");
  }

  destroy() {
    window.removeEventListener("keydown", this.onKey);
    this.resize.disconnect();
    this.unsub?.();
    this.unsubAblation?.();
    this.figure.remove();
  }
}

/** A diverging (or, for maps ≥ 0, sequential) colour bar with ticks, drawn at (x, y, w, h). */
function colourBar(ctx, x, y, w, h, scale, canvas, sequential = false) {
  for (let i = 0; i < h; i++) {
    const t = 1 - i / (h - 1);
    ctx.fillStyle = css(diverging(sequential ? t : 2 * t - 1));
    ctx.fillRect(x, y + i, w, 1);
  }
  ctx.strokeStyle = "#888";
  ctx.lineWidth = 1;
  ctx.strokeRect(x + 0.5, y + 0.5, w - 1, h - 1);
  ctx.fillStyle = "#333";
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  const short = (v) => (Math.abs(v) >= 0.01 && Math.abs(v) < 1e4 ? v.toFixed(2) : v.toExponential(1)).replace("-", "−");
  const ends = sequential ? [short(scale), short(scale / 2), "0"] : [short(scale), "0", short(-scale)];
  for (const [t, label] of [[0, ends[0]], [0.5, ends[1]], [1, ends[2]]]) {
    const ty = y + t * (h - 1);
    ctx.fillRect(x + w, ty, 3, 1);
    ctx.fillText(label, x + w + 5, ty);
  }
  canvas.dataset.colorbar = [x, y, w, h].map(Math.round).join(",");
}

/**
 * Labels (token texts) written upwards under their columns of width cw from
 * x = left, hanging from y: every one that fits, and the marked one (the
 * first differing position) in bold red.
 */
function columnLabels(ctx, labels, left, cw, y, maxWidth, mark) {
  const step = Math.ceil(13 / cw);
  ctx.save();
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let i = 0; i < labels.length; i++) {
    const on = i === mark;
    if (i % step && !on) continue;
    ctx.save();
    ctx.translate(left + (i + 0.5) * cw, y);
    ctx.rotate(-Math.PI / 2);
    ctx.font = on ? `600 ${FONT}` : FONT;
    ctx.fillStyle = on ? "#b2182b" : "#333";
    ctx.fillText(labels[i], 0, 0, maxWidth);
    ctx.restore();
  }
  ctx.restore();
}

const KEEP_TIP = "click: keep this tooltip (again or Esc: let go)";

let measurer = null;
/** The widest of some labels in the plots' font, in CSS pixels. */
function labelWidth(labels) {
  measurer ||= document.createElement("canvas").getContext("2d");
  measurer.font = FONT;
  let w = 0;
  for (const t of labels) w = Math.max(w, measurer.measureText(t).width);
  return w;
}

/**
 * A layer × component heatmap. For neurons (many columns) each pixel column
 * shows the component of largest |score| in its bin; the wheel zooms, a
 * drag pans and a double-click resets. Any other component is a map of
 * discrete cells like heads, with optional labels: rowLabels / colLabels
 * (token texts, drawn with fillText), xLabel / yLabel, firstDiff (a column
 * to mark), blank(row, col) (cells left empty, e.g. a causal pattern's upper
 * triangle), sequential (maps ≥ 0: white to red), scale (a fixed colour
 * scale), info(row, col, value) (the tooltip's lines), pinFor(row, col)
 * (the component a click pins; none: the click pins the tooltip) and
 * onOpen(row, col) (a double-click on a cell).
 */
export class Heatmap extends Plot {
  constructor(parent, opts) {
    super(parent, opts);
    this.component = opts.component; // "heads" | "neurons" | any other name: discrete cells
    this.discrete = this.component !== "neurons";
    this.rows = opts.rows || [];
    this.layers = opts.layers;
    this.cols = opts.cols;
    this.marks = opts.marks || null; // {and: [[l, i]], or: [[l, i]]}
    this.valueName = opts.valueName || "score";
    this.rowLabels = opts.rowLabels || null;
    this.colLabels = opts.colLabels || null;
    this.xLabel = opts.xLabel || (this.component === "heads" ? "head" : "");
    this.yLabel = opts.yLabel || "layer";
    this.firstDiff = Number.isInteger(opts.firstDiff) ? opts.firstDiff : null;
    this.blank = opts.blank || null;
    this.sequential = !!opts.sequential;
    this.fixedScale = opts.scale || null;
    this.info = opts.info || null;
    this.pinFor = opts.pinFor || null;
    this.onOpen = opts.onOpen || null;
    this.view = [0, this.cols];
    this.cells = null;
    if (this.rowLabels) this.rowLabelW = labelWidth(this.rowLabels);
    if (this.colLabels) {
      this.colLabelW = Math.min(96, labelWidth(this.colLabels));
      this.canvas.dataset.colLabels = JSON.stringify(this.colLabels);
    }
    if (this.rowLabels) this.canvas.dataset.rowLabels = JSON.stringify(this.rowLabels);
    this.canvas.dataset.cols = String(this.cols);
    this.canvas.dataset.rows = String(this.layers);
    if (this.firstDiff !== null) this.canvas.dataset.firstDiff = String(this.firstDiff);
    if (this.component === "neurons") {
      this.canvas.addEventListener("wheel", (e) => this.onWheel(e), { passive: false });
      this.canvas.addEventListener("mousedown", (e) => this.onDrag(e));
      this.canvas.addEventListener("dblclick", () => { this.view = [0, this.cols]; this.draw(); });
    } else if (this.onOpen) {
      this.canvas.addEventListener("dblclick", (e) => {
        const h = this.hit(...this.pos(e));
        if (h?.cell) this.onOpen(...h.cell);
      });
    }
    this.layout();
  }

  setRows(rows, marks) {
    this.rows = rows;
    if (marks !== undefined) this.marks = marks;
    this.draw();
  }

  margins() {
    return {
      left: this.rowLabels ? Math.max(44, 26 + this.rowLabelW) : 44,
      top: 30,
      right: 84,
      bottom: this.colLabels ? 22 + this.colLabelW : 34,
    };
  }

  geometry() {
    const { left, top, right, bottom } = this.margins();
    const pw = Math.max(40, this.w - left - right);
    const ph = Math.max(20, this.h - top - bottom);
    return { left, top, pw, ph, rowH: ph / this.layers };
  }

  heightFor(w) {
    if (this.fixedHeight) return this.fixedHeight;
    const { left, top, right, bottom } = this.margins();
    const cellW = (w - left - right) / (this.discrete ? this.cols : 64);
    const most = 640 / this.layers; // tall maps (a row per head) stay on screen
    const least = Math.min(this.colLabels ? 14 : 8, most); // maps with token columns: rows tall enough to hover
    const rowH = this.discrete ? Math.max(least, Math.min(30, cellW, most)) : Math.max(8, Math.min(36, 240 / this.layers));
    return top + bottom + rowH * this.layers;
  }

  onWheel(e) {
    e.preventDefault();
    const g = this.geometry();
    const [x] = this.pos(e);
    const [a, b] = this.view;
    const f = Math.min(1, Math.max(0, (x - g.left) / g.pw));
    const center = a + f * (b - a);
    const span = Math.min(this.cols, Math.max(16, (b - a) * (e.deltaY > 0 ? 1.25 : 0.8)));
    let na = center - f * span;
    na = Math.max(0, Math.min(this.cols - span, na));
    this.view = [na, na + span];
    this.draw();
  }

  onDrag(e) {
    const g = this.geometry();
    const x0 = e.clientX;
    const [a, b] = this.view;
    const move = (ev) => {
      const d = ((ev.clientX - x0) / g.pw) * (b - a);
      const na = Math.max(0, Math.min(this.cols - (b - a), a - d));
      this.view = [na, na + (b - a)];
      this.draw();
    };
    const up = () => { window.removeEventListener("mousemove", move); window.removeEventListener("mouseup", up); };
    window.addEventListener("mousemove", move);
    window.addEventListener("mouseup", up);
  }

  /** The component shown at pixel column px (device-independent x). */
  columnAt(x) {
    const g = this.geometry();
    const [a, b] = this.view;
    return Math.floor(a + ((x - g.left) / g.pw) * (b - a));
  }

  binBest(row, c0, c1) {
    let best = NaN, bi = c0;
    for (let c = c0; c < c1; c++) {
      const v = num(row[c]);
      if (Number.isFinite(v) && !(Math.abs(v) <= Math.abs(best))) { best = v; bi = c; }
    }
    return [best, bi];
  }

  paint(ctx) {
    const g = this.geometry();
    this.canvas.dataset.plot = [g.left, g.top, g.pw, g.ph].join(",");
    const scale = this.fixedScale || maxAbs(this.rows) || 1;
    this.scale = scale;
    const [a, b] = this.view;
    // cells
    if (this.discrete) {
      const cw = g.pw / this.cols;
      for (let l = 0; l < this.layers; l++) {
        const row = this.rows[l];
        for (let h = 0; h < this.cols; h++) {
          if (this.blank?.(l, h)) continue;
          ctx.fillStyle = css(row ? diverging(num(row[h]) / scale) : MISSING_RGB);
          ctx.fillRect(g.left + h * cw, g.top + l * g.rowH, Math.ceil(cw), Math.ceil(g.rowH));
        }
      }
      if (cw > 6) {
        ctx.strokeStyle = "rgba(255,255,255,0.6)";
        ctx.lineWidth = 1;
        for (let h = 1; h < this.cols; h++) { ctx.beginPath(); ctx.moveTo(g.left + h * cw, g.top); ctx.lineTo(g.left + h * cw, g.top + g.ph); ctx.stroke(); }
        for (let l = 1; l < this.layers; l++) { ctx.beginPath(); ctx.moveTo(g.left, g.top + l * g.rowH); ctx.lineTo(g.left + g.pw, g.top + l * g.rowH); ctx.stroke(); }
      }
    } else {
      // one pixel column per device pixel
      const dpr = this.dpr;
      const W = Math.max(1, Math.round(g.pw * dpr));
      const img = ctx.createImageData(W, 1);
      for (let l = 0; l < this.layers; l++) {
        const row = this.rows[l];
        for (let px = 0; px < W; px++) {
          const c0 = Math.floor(a + (px / W) * (b - a));
          const c1 = Math.max(c0 + 1, Math.floor(a + ((px + 1) / W) * (b - a)));
          const rgb = row ? diverging(this.binBest(row, c0, Math.min(c1, this.cols))[0] / scale) : MISSING_RGB;
          img.data[px * 4] = rgb[0];
          img.data[px * 4 + 1] = rgb[1];
          img.data[px * 4 + 2] = rgb[2];
          img.data[px * 4 + 3] = 255;
        }
        const y0 = Math.round((g.top + l * g.rowH) * dpr);
        const y1 = Math.round((g.top + (l + 1) * g.rowH) * dpr);
        for (let y = y0; y < y1; y++) ctx.putImageData(img, Math.round(g.left * dpr), y);
      }
    }
    // marks of latent components (the drawn ones are listed on the canvas, "L.i L.i …")
    const drawn = { and: [], or: [] };
    if (this.marks) {
      const colX = (i) => g.left + ((i + 0.5 - a) / (b - a)) * g.pw;
      for (const [kind, list] of [["and", this.marks.and || []], ["or", this.marks.or || []]]) {
        for (const [l, i] of list) {
          if (i < a || i >= b) continue;
          drawn[kind].push(`${l}.${i}`);
          const x = colX(i), y = g.top + (l + 0.5) * g.rowH;
          const r = Math.max(3, Math.min(8, Math.min(g.rowH, g.pw / Math.max(1, b - a)) * 0.3));
          ctx.lineWidth = 1.5;
          ctx.beginPath();
          if (kind === "and") { ctx.moveTo(x, y - r); ctx.lineTo(x + r, y + r); ctx.lineTo(x - r, y + r); ctx.closePath(); }
          else ctx.arc(x, y, r, 0, Math.PI * 2);
          ctx.fillStyle = kind === "and" ? "#111" : "#fff";
          ctx.strokeStyle = kind === "and" ? "#fff" : "#111";
          ctx.fill();
          ctx.stroke();
        }
      }
    }
    this.canvas.dataset.marksAnd = drawn.and.join(" ");
    this.canvas.dataset.marksOr = drawn.or.join(" ");
    // components in the ablation set: a cross
    if (this.ablation && this.ablation.size) {
      const colX = (i) => g.left + ((i + 0.5 - a) / (b - a)) * g.pw;
      const r = Math.max(3, Math.min(9, Math.min(g.rowH, g.pw / Math.max(1, b - a)) * 0.32));
      ctx.lineCap = "round";
      for (const p of this.ablation.list()) {
        if (p.component !== this.component || p.index < a || p.index >= b || p.layer >= this.layers) continue;
        const x = colX(p.index), y = g.top + (p.layer + 0.5) * g.rowH;
        for (const [colour, width] of [["#fff", 4.5], ["#111", 2]]) {
          ctx.strokeStyle = colour;
          ctx.lineWidth = width;
          ctx.beginPath();
          ctx.moveTo(x - r, y - r); ctx.lineTo(x + r, y + r);
          ctx.moveTo(x + r, y - r); ctx.lineTo(x - r, y + r);
          ctx.stroke();
        }
      }
      ctx.lineCap = "butt";
    }
    // axes
    ctx.fillStyle = "#333";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const every = Math.ceil(12 / g.rowH);
    const rowLabel = (l) => (this.rowLabels ? this.rowLabels[l] : String(l));
    for (let l = 0; l < this.layers; l += every) ctx.fillText(rowLabel(l), g.left - 6, g.top + (l + 0.5) * g.rowH, g.left - 18);
    ctx.save();
    ctx.translate(10, g.top + g.ph / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillText(this.yLabel, 0, 0);
    ctx.restore();
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    if (this.colLabels) this.paintColLabels(ctx, g);
    else if (this.discrete) {
      const cw = g.pw / this.cols;
      const step = Math.ceil(18 / cw);
      for (let h = 0; h < this.cols; h += step) ctx.fillText(String(h), g.left + (h + 0.5) * cw, g.top + g.ph + 3);
      ctx.fillText(this.xLabel, g.left + g.pw / 2, g.top + g.ph + 17);
    } else {
      for (const t of niceTicks(a, b, 6)) {
        const x = g.left + ((t - a) / (b - a)) * g.pw;
        if (x < g.left - 1 || x > g.left + g.pw + 1) continue;
        ctx.fillRect(x, g.top + g.ph, 1, 3);
        ctx.fillText(String(Math.round(t)), x, g.top + g.ph + 4);
      }
      const zoom = b - a < this.cols ? ` (neurons ${Math.round(a)}–${Math.round(b) - 1}; double-click to reset)` : " (wheel to zoom, drag to pan)";
      ctx.fillText(`neuron${zoom}`, g.left + g.pw / 2, g.top + g.ph + 18);
    }
    colourBar(ctx, g.left + g.pw + 12, g.top, 14, Math.max(40, g.ph), scale, this.canvas, this.sequential);
    // hover and pin outlines
    const outline = (l, i, colour, width) => {
      let x, w;
      if (this.discrete) { w = g.pw / this.cols; x = g.left + i * w; }
      else { w = Math.max(3, g.pw / (b - a)); x = g.left + ((i - a) / (b - a)) * g.pw - w / 2 + g.pw / (b - a) / 2; }
      ctx.strokeStyle = colour;
      ctx.lineWidth = width;
      ctx.strokeRect(x + 1, g.top + l * g.rowH + 1, w - 2, g.rowH - 2);
    };
    const p = this.selection?.pinned;
    if (p && p.component === this.component && p.index >= a && p.index < b) outline(p.layer, p.index, "#000", 2.5);
    if (this.hover && this.hover.cell) outline(this.hover.cell[0], this.hover.cell[1], "#555", 1.5);
  }

  /** Column labels (tokens) written upwards under their cells; the first differing position in bold red, with a marker. */
  paintColLabels(ctx, g) {
    const cw = g.pw / this.cols;
    columnLabels(ctx, this.colLabels, g.left, cw, g.top + g.ph + 4, this.colLabelW, this.firstDiff);
    ctx.fillText(this.xLabel, g.left + g.pw / 2, g.top + g.ph + 8 + this.colLabelW);
    if (this.firstDiff !== null && this.firstDiff < this.cols) {
      // a dashed line before the first differing position (earlier ones are not patched) and a marker above it
      const x = g.left + this.firstDiff * cw;
      ctx.strokeStyle = "#b2182b";
      ctx.lineWidth = 1.5;
      ctx.setLineDash([3, 3]);
      ctx.beginPath();
      ctx.moveTo(x, g.top - 2);
      ctx.lineTo(x, g.top + g.ph + 2);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = "#b2182b";
      const cx = x + cw / 2;
      ctx.beginPath();
      ctx.moveTo(cx - 5, g.top - 9);
      ctx.lineTo(cx + 5, g.top - 9);
      ctx.lineTo(cx, g.top - 2);
      ctx.closePath();
      ctx.fill();
      ctx.fillStyle = "#333";
    }
  }

  hit(x, y) {
    const g = this.geometry();
    if (x < g.left || x >= g.left + g.pw || y < g.top || y >= g.top + g.ph) return null;
    const l = Math.floor((y - g.top) / g.rowH);
    let i;
    const row = this.rows[l];
    if (this.discrete) i = Math.floor(((x - g.left) / g.pw) * this.cols);
    else {
      const [a, b] = this.view;
      const per = (b - a) / (g.pw * this.dpr);
      const c0 = this.columnAt(x);
      i = per > 1 && row ? this.binBest(row, c0, Math.min(this.cols, Math.ceil(c0 + per)))[1] : c0;
    }
    if (l < 0 || l >= this.layers || i < 0 || i >= this.cols || this.blank?.(l, i)) return null;
    const v = row ? row[i] : undefined;
    if (this.info) {
      const pin = this.pinFor ? this.pinFor(l, i) : null;
      const lines = this.info(l, i, v);
      if (pin) lines.push(this.selection?.pinned ? "click: pin / unpin" : "click to pin");
      else lines.push(KEEP_TIP);
      if (this.onOpen) lines.push("double-click: the head's attention pattern");
      return { lines, cell: [l, i], pin, value: v };
    }
    const lines = [componentLabel(this.component, l, i), `${this.valueName} ${row ? fmt(v, 6) : "(not computed yet)"}`];
    if (this.marks) {
      if ((this.marks.and || []).some(([a, b]) => a === l && b === i)) lines.push("AND component");
      if ((this.marks.or || []).some(([a, b]) => a === l && b === i)) lines.push("OR component");
    }
    if (this.ablation) {
      const on = this.ablation.has(this.component, l, i);
      if (on) lines.push("in the ablation set");
      lines.push(this.ablation.mode
        ? `click: ${on ? "restore" : "ablate"} (ablate mode)`
        : `click: pin / unpin · shift-click: ${on ? "restore" : "ablate"}`);
    } else lines.push(this.selection?.pinned ? "click: pin / unpin" : "click to pin");
    if (this.onOpen) lines.push("double-click: attention pattern");
    return { lines, cell: [l, i], pin: { component: this.component, layer: l, index: i }, value: v };
  }
}

/**
 * Grouped bars: one group per category (labels drawn upwards, with
 * fillText), one bar per series ({name, values, colour}); hover a group for
 * its numbers, click to keep the tooltip.
 */
export class Bars extends Plot {
  constructor(parent, opts) {
    super(parent, { height: 260, ...opts });
    this.yLabel = opts.yLabel || "";
    this.markCategory = Number.isInteger(opts.mark) ? opts.mark : null;
    this.setData(opts.categories, opts.series, false);
    this.layout();
  }

  setData(categories, series, redraw = true) {
    this.categories = categories;
    this.series = series;
    this.labelW = Math.min(96, labelWidth(categories));
    const vals = series.flatMap((s) => s.values.map(num)).filter(Number.isFinite);
    this.lo = Math.min(0, ...vals);
    this.hi = Math.max(0, ...vals);
    if (!(this.hi > this.lo)) this.hi = this.lo + 1;
    this.canvas.dataset.categories = String(categories.length);
    if (redraw) this.draw();
  }

  geometry() {
    const left = 58, top = 40, right = 12, bottom = 12 + this.labelW;
    return { left, top, pw: Math.max(40, this.w - left - right), ph: Math.max(40, this.h - top - bottom) };
  }

  paint(ctx) {
    const g = this.geometry();
    this.canvas.dataset.plot = [g.left, g.top, g.pw, g.ph].join(",");
    const n = this.categories.length;
    const gw = g.pw / n;
    const bw = Math.max(1, (gw * 0.8) / this.series.length);
    const y = (v) => g.top + ((this.hi - v) / (this.hi - this.lo)) * g.ph;
    // legend
    ctx.textBaseline = "middle";
    ctx.textAlign = "left";
    let lx = 6;
    for (const s of this.series) {
      ctx.fillStyle = s.colour;
      ctx.fillRect(lx, 24, 10, 10);
      ctx.fillStyle = "#333";
      ctx.fillText(s.name, lx + 14, 29);
      lx += 24 + ctx.measureText(s.name).width;
    }
    if (this.hover && this.hover.group !== undefined) {
      ctx.fillStyle = "rgba(0,0,0,0.07)";
      ctx.fillRect(g.left + this.hover.group * gw, g.top, gw, g.ph);
    }
    this.series.forEach((s, k) => {
      ctx.fillStyle = s.colour;
      for (let i = 0; i < n; i++) {
        const v = num(s.values[i]);
        if (!Number.isFinite(v)) continue;
        const x = g.left + i * gw + gw * 0.1 + k * bw;
        ctx.fillRect(x, Math.min(y(v), y(0)), Math.max(1, bw - 1), Math.abs(y(v) - y(0)));
      }
    });
    // zero line and axes
    ctx.fillStyle = "#333";
    ctx.fillRect(g.left, Math.round(y(0)), g.pw, 1);
    ctx.textAlign = "right";
    const yt = niceTicks(this.lo, this.hi, 4);
    const yl = tickLabel(yt);
    for (const t of yt) {
      ctx.fillRect(g.left - 4, y(t), 4, 1);
      ctx.fillText(yl(t), g.left - 6, y(t));
    }
    ctx.save();
    ctx.translate(11, g.top + g.ph / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillText(this.yLabel, 0, 0);
    ctx.restore();
    columnLabels(ctx, this.categories, g.left, gw, g.top + g.ph + 4, this.labelW, this.markCategory);
  }

  hit(x, y) {
    const g = this.geometry();
    if (x < g.left || x >= g.left + g.pw || y < g.top || y > g.top + g.ph + this.labelW) return null;
    const i = Math.floor(((x - g.left) / g.pw) * this.categories.length);
    if (i < 0 || i >= this.categories.length) return null;
    const lines = [this.categories[i], ...this.series.map((s) => `${s.name}: ${fmt(num(s.values[i]), 6)}`), KEEP_TIP];
    return { group: i, lines, value: this.series.map((s) => s.values[i]).join(",") };
  }
}

/** A scatter plot of two score maps of the same components, with a least-squares line and Pearson r. */
export class Scatter extends Plot {
  constructor(parent, opts) {
    super(parent, opts);
    this.component = opts.component;
    this.xLabel = opts.xLabel;
    this.yLabel = opts.yLabel;
    this.r = opts.r; // from the report, when present
    this.diagonal = !!opts.diagonal; // the y = x line (both axes on one scale)
    this.setData(opts.x, opts.y, false);
    this.layout();
  }

  setData(xRows, yRows, redraw = true) {
    const xs = [], ys = [], ids = [];
    for (let l = 0; l < (xRows || []).length; l++) {
      const xr = xRows[l], yr = yRows && yRows[l];
      if (!xr || !yr) continue;
      for (let i = 0; i < xr.length; i++) {
        const x = num(xr[i]), y = num(yr[i]);
        if (Number.isFinite(x) && Number.isFinite(y)) { xs.push(x); ys.push(y); ids.push(l * 1e6 + i); }
      }
    }
    this.xs = Float64Array.from(xs);
    this.ys = Float64Array.from(ys);
    this.ids = ids;
    this.fit = pearson(this.xs, this.ys);
    const ext = (a) => {
      let lo = Infinity, hi = -Infinity;
      for (const v of a) { if (v < lo) lo = v; if (v > hi) hi = v; }
      if (!(hi > lo)) { lo = (Number.isFinite(lo) ? lo : 0) - 1; hi = lo + 2; }
      const pad = (hi - lo) * 0.06;
      return [lo - pad, hi + pad];
    };
    this.xr = ext(this.xs);
    this.yr = ext(this.ys);
    this.version = (this.version || 0) + 1;
    if (redraw) this.draw();
  }

  geometry() {
    const left = 72, top = 44, right = 14, bottom = 38;
    return { left, top, pw: Math.max(40, this.w - left - right), ph: Math.max(40, this.h - top - bottom) };
  }

  /** Points, axes and fit are drawn once into a cache; hover and pin on top (no stutter with 36,864 points). */
  draw() {
    if (!this.w) return;
    const key = `${this.canvas.width}x${this.canvas.height}:${this.version}:${this.r}`;
    if (this.cacheKey !== key) {
      this.cache ||= document.createElement("canvas");
      this.cache.width = this.canvas.width;
      this.cache.height = this.canvas.height;
      this.drawOn(this.cache.getContext("2d"));
      this.cacheKey = key;
    }
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.drawImage(this.cache, 0, 0);
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    this.paintMarks(ctx, this.geometry());
    this.canvas.dataset.drawn = String((Number(this.canvas.dataset.drawn) || 0) + 1);
  }

  sx(g, x) { return g.left + ((x - this.xr[0]) / (this.xr[1] - this.xr[0])) * g.pw; }
  sy(g, y) { return g.top + g.ph - ((y - this.yr[0]) / (this.yr[1] - this.yr[0])) * g.ph; }

  paint(ctx) {
    const g = this.geometry();
    ctx.fillStyle = "#fafafa";
    ctx.fillRect(g.left, g.top, g.pw, g.ph);
    ctx.strokeStyle = "#ccc";
    ctx.strokeRect(g.left + 0.5, g.top + 0.5, g.pw - 1, g.ph - 1);
    ctx.fillStyle = "#333";
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const xt = niceTicks(...this.xr);
    const xl = tickLabel(xt);
    for (const t of xt) {
      const x = this.sx(g, t);
      ctx.fillRect(x, g.top + g.ph, 1, 4);
      ctx.fillText(xl(t), x, g.top + g.ph + 5);
    }
    ctx.fillText(this.xLabel, g.left + g.pw / 2, g.top + g.ph + 20);
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const yt = niceTicks(...this.yr);
    const yl = tickLabel(yt);
    for (const t of yt) {
      const y = this.sy(g, t);
      ctx.fillRect(g.left - 4, y, 4, 1);
      ctx.fillText(yl(t), g.left - 6, y);
    }
    ctx.save();
    ctx.translate(11, g.top + g.ph / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillText(this.yLabel, 0, 0);
    ctx.restore();
    ctx.save();
    ctx.beginPath();
    ctx.rect(g.left, g.top, g.pw, g.ph);
    ctx.clip();
    // zero lines
    ctx.strokeStyle = "#bbb";
    ctx.setLineDash([4, 4]);
    ctx.beginPath();
    if (this.xr[0] < 0 && this.xr[1] > 0) { ctx.moveTo(this.sx(g, 0), g.top); ctx.lineTo(this.sx(g, 0), g.top + g.ph); }
    if (this.yr[0] < 0 && this.yr[1] > 0) { ctx.moveTo(g.left, this.sy(g, 0)); ctx.lineTo(g.left + g.pw, this.sy(g, 0)); }
    ctx.stroke();
    ctx.setLineDash([]);
    // points: small squares, translucent when many
    const n = this.xs.length;
    const size = n > 5000 ? 2 : n > 500 ? 3 : 5;
    ctx.fillStyle = n > 5000 ? "rgba(33,102,172,0.35)" : "rgba(33,102,172,0.75)";
    for (let i = 0; i < n; i++) ctx.fillRect(this.sx(g, this.xs[i]) - size / 2, this.sy(g, this.ys[i]) - size / 2, size, size);
    // y = x: where the two methods agree exactly
    if (this.diagonal) {
      const lo = Math.max(this.xr[0], this.yr[0]), hi = Math.min(this.xr[1], this.yr[1]);
      if (hi > lo) {
        ctx.strokeStyle = "#555";
        ctx.lineWidth = 1;
        ctx.setLineDash([2, 3]);
        ctx.beginPath();
        ctx.moveTo(this.sx(g, lo), this.sy(g, lo));
        ctx.lineTo(this.sx(g, hi), this.sy(g, hi));
        ctx.stroke();
        ctx.setLineDash([]);
      }
    }
    // fit line
    if (this.fit) {
      ctx.strokeStyle = "#b2182b";
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.moveTo(this.sx(g, this.xr[0]), this.sy(g, this.fit.intercept + this.fit.slope * this.xr[0]));
      ctx.lineTo(this.sx(g, this.xr[1]), this.sy(g, this.fit.intercept + this.fit.slope * this.xr[1]));
      ctx.stroke();
    }
    ctx.restore();
    // r
    const r = this.r !== undefined && this.r !== null ? this.r : this.fit ? this.fit.r : null;
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    ctx.fillStyle = "#111";
    ctx.fillText(`Pearson r = ${r === null ? "undefined" : fmt(r, 4)}   n = ${n}`, 6, 24);
  }

  paintMarks(ctx, g) {
    ctx.save();
    ctx.beginPath();
    ctx.rect(g.left, g.top, g.pw, g.ph);
    ctx.clip();
    const mark = (idx, colour, r) => {
      ctx.strokeStyle = colour;
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.arc(this.sx(g, this.xs[idx]), this.sy(g, this.ys[idx]), r, 0, Math.PI * 2);
      ctx.stroke();
    };
    const p = this.selection?.pinned;
    if (p && p.component === this.component) {
      const k = this.ids.indexOf(p.layer * 1e6 + p.index);
      if (k >= 0) mark(k, "#000", 7);
    }
    if (this.hover && this.hover.k !== undefined) mark(this.hover.k, "#555", 5);
    ctx.restore();
  }

  hit(x, y) {
    const g = this.geometry();
    if (x < g.left || x > g.left + g.pw || y < g.top || y > g.top + g.ph) return null;
    let best = -1, bd = 64;
    for (let i = 0; i < this.xs.length; i++) {
      const dx = this.sx(g, this.xs[i]) - x, dy = this.sy(g, this.ys[i]) - y;
      const d = dx * dx + dy * dy;
      if (d < bd) { bd = d; best = i; }
    }
    if (best < 0) return null;
    const id = this.ids[best];
    const l = Math.floor(id / 1e6), i = id % 1e6;
    return {
      k: best,
      lines: [componentLabel(this.component, l, i), `${this.xLabel}: ${fmt(this.xs[best], 6)}`, `${this.yLabel}: ${fmt(this.ys[best], 6)}`, "click to pin"],
      pin: { component: this.component, layer: l, index: i },
    };
  }
}

/**
 * A histogram of per-pair values (e.g. Pearson r over a dataset) on a fixed
 * range, with the mean and median marked; hover a bar for its range and count.
 */
export class Histogram extends Plot {
  constructor(parent, opts) {
    super(parent, { height: 190, ...opts });
    this.range = opts.range || [-1, 1];
    this.bins = opts.bins || 20;
    this.xLabel = opts.xLabel || "";
    this.setValues(opts.values, opts.stat, false);
    this.layout();
  }

  /** values: per-pair numbers (null: undefined for that pair); stat: {mean, median}. */
  setValues(values, stat, redraw = true) {
    const [lo, hi] = this.range;
    this.counts = new Array(this.bins).fill(0);
    this.values = (values || []).filter((v) => v !== null && v !== undefined && Number.isFinite(v));
    this.undefinedCount = (values || []).length - this.values.length;
    for (const v of this.values) {
      const k = Math.min(this.bins - 1, Math.max(0, Math.floor(((v - lo) / (hi - lo)) * this.bins)));
      this.counts[k]++;
    }
    this.stat = stat || null;
    if (redraw) this.draw();
  }

  geometry() {
    const left = 36, top = 26, right = 12, bottom = 34;
    return { left, top, pw: Math.max(40, this.w - left - right), ph: Math.max(30, this.h - top - bottom) };
  }

  paint(ctx) {
    const g = this.geometry();
    const [lo, hi] = this.range;
    const max = Math.max(1, ...this.counts);
    const bw = g.pw / this.bins;
    ctx.fillStyle = "#fafafa";
    ctx.fillRect(g.left, g.top, g.pw, g.ph);
    // bars, coloured by the value they hold (the heatmaps' scale)
    for (let k = 0; k < this.bins; k++) {
      if (!this.counts[k]) continue;
      const mid = lo + ((k + 0.5) / this.bins) * (hi - lo);
      const t = lo < 0 ? mid / Math.max(Math.abs(lo), Math.abs(hi)) : 0.25 + 0.75 * ((mid - lo) / (hi - lo));
      const h = (this.counts[k] / max) * g.ph;
      ctx.fillStyle = css(diverging(t));
      ctx.fillRect(g.left + k * bw + 0.5, g.top + g.ph - h, Math.max(1, bw - 1), h);
      ctx.strokeStyle = "#555";
      ctx.lineWidth = 1;
      ctx.strokeRect(g.left + k * bw + 0.5, g.top + g.ph - h + 0.5, Math.max(1, bw - 1), h - 0.5);
    }
    if (this.hover && this.hover.bin !== undefined) {
      ctx.fillStyle = "rgba(0,0,0,0.08)";
      ctx.fillRect(g.left + this.hover.bin * bw, g.top, bw, g.ph);
    }
    ctx.strokeStyle = "#999";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(g.left, g.top + g.ph + 0.5);
    ctx.lineTo(g.left + g.pw, g.top + g.ph + 0.5);
    ctx.stroke();
    // mean (solid) and median (dashed)
    const xOf = (v) => g.left + ((v - lo) / (hi - lo)) * g.pw;
    for (const [key, dash, colour] of [["mean", [], "#b2182b"], ["median", [4, 3], "#2166ac"]]) {
      const v = this.stat?.[key];
      if (v === null || v === undefined || !Number.isFinite(v)) continue;
      ctx.strokeStyle = colour;
      ctx.lineWidth = 2;
      ctx.setLineDash(dash);
      ctx.beginPath();
      ctx.moveTo(xOf(v), g.top - 2);
      ctx.lineTo(xOf(v), g.top + g.ph);
      ctx.stroke();
      ctx.setLineDash([]);
    }
    // axes
    ctx.fillStyle = "#333";
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const xt = niceTicks(lo, hi, 4);
    const xl = tickLabel(xt);
    for (const t of xt) {
      ctx.fillRect(xOf(t), g.top + g.ph, 1, 4);
      ctx.fillText(xl(t), xOf(t), g.top + g.ph + 5);
    }
    const extra = this.undefinedCount ? ` (${this.undefinedCount} undefined)` : "";
    ctx.fillText(`${this.xLabel}${extra} — mean ━ median ┅`, g.left + g.pw / 2, g.top + g.ph + 19, g.pw);
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const yt = niceTicks(0, max, 3).filter((t) => Number.isInteger(t));
    for (const t of yt) {
      const y = g.top + g.ph - (t / max) * g.ph;
      ctx.fillRect(g.left - 3, y, 3, 1);
      ctx.fillText(String(t), g.left - 5, y);
    }
  }

  hit(x, y) {
    const g = this.geometry();
    if (x < g.left || x >= g.left + g.pw || y < g.top - 4 || y > g.top + g.ph) return null;
    const [lo, hi] = this.range;
    const k = Math.floor(((x - g.left) / g.pw) * this.bins);
    if (k < 0 || k >= this.bins) return null;
    const a = lo + (k / this.bins) * (hi - lo), b = lo + ((k + 1) / this.bins) * (hi - lo);
    const lines = [`${fmt(a, 2)} to ${fmt(b, 2)}: ${this.counts[k]} pair${this.counts[k] === 1 ? "" : "s"}`];
    if (this.stat) lines.push(`mean ${fmt(this.stat.mean, 4)}, median ${fmt(this.stat.median, 4)}, n ${this.stat.n}`);
    return { bin: k, lines };
  }
}
