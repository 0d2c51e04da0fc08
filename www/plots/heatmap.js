// The heatmap: a layer × component map (heads, neurons) or any map of
// discrete cells (positions, destination × source), with a colour bar,
// labels, marks of latent components and of the ablation set, hover and pin.

import { colourBar, columnLabels, KEEP_TIP, labelWidth, Plot, verticalLabel } from "./plot.js";
import { css, diverging, fmt, maxAbs, MISSING_RGB, niceTicks, num } from "./scale.js";
import { componentLabel } from "./selection.js";

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
    // what the colour bar's numbers are (e.g. "fraction of the metric gap")
    this.unit = opts.unit || "";
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
      right: this.unit ? 92 : 84,
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

  /** The cells, the marks, the axes, the colour bar and the hover / pin outlines. */
  paint(ctx) {
    const g = this.geometry();
    this.canvas.dataset.plot = [g.left, g.top, g.pw, g.ph].join(",");
    this.scale = this.fixedScale || maxAbs(this.rows) || 1;
    if (this.discrete) this.paintCells(ctx, g);
    else this.paintBins(ctx, g);
    this.paintLatent(ctx, g);
    this.paintAblated(ctx, g);
    this.paintRowAxis(ctx, g);
    this.paintColAxis(ctx, g);
    colourBar(ctx, g.left + g.pw + 12, g.top, 14, Math.max(40, g.ph), this.scale, this.canvas, this.sequential, this.unit);
    this.paintOutlines(ctx, g);
  }

  /** One rectangle per cell (rows not computed yet in grey), with thin white grid lines where cells are wide. */
  paintCells(ctx, g) {
    const cw = g.pw / this.cols;
    for (let l = 0; l < this.layers; l++) {
      const row = this.rows[l];
      for (let h = 0; h < this.cols; h++) {
        if (this.blank?.(l, h)) continue;
        ctx.fillStyle = css(row ? diverging(num(row[h]) / this.scale) : MISSING_RGB);
        ctx.fillRect(g.left + h * cw, g.top + l * g.rowH, Math.ceil(cw), Math.ceil(g.rowH));
      }
    }
    if (cw > 6) {
      ctx.strokeStyle = "rgba(255,255,255,0.6)";
      ctx.lineWidth = 1;
      for (let h = 1; h < this.cols; h++) { ctx.beginPath(); ctx.moveTo(g.left + h * cw, g.top); ctx.lineTo(g.left + h * cw, g.top + g.ph); ctx.stroke(); }
      for (let l = 1; l < this.layers; l++) { ctx.beginPath(); ctx.moveTo(g.left, g.top + l * g.rowH); ctx.lineTo(g.left + g.pw, g.top + l * g.rowH); ctx.stroke(); }
    }
  }

  /** Neurons: one pixel column per device pixel, coloured by the largest |score| of the columns it covers. */
  paintBins(ctx, g) {
    const [a, b] = this.view;
    const dpr = this.dpr;
    const W = Math.max(1, Math.round(g.pw * dpr));
    const img = ctx.createImageData(W, 1);
    for (let l = 0; l < this.layers; l++) {
      const row = this.rows[l];
      for (let px = 0; px < W; px++) {
        const c0 = Math.floor(a + (px / W) * (b - a));
        const c1 = Math.max(c0 + 1, Math.floor(a + ((px + 1) / W) * (b - a)));
        const rgb = row ? diverging(this.binBest(row, c0, Math.min(c1, this.cols))[0] / this.scale) : MISSING_RGB;
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

  /** The x of column i's centre in the current view. */
  colX(g, i) {
    const [a, b] = this.view;
    return g.left + ((i + 0.5 - a) / (b - a)) * g.pw;
  }

  /** A marker's size: `share` of a cell's smaller side, from 3 to `most` pixels. */
  markSize(g, most, share) {
    const [a, b] = this.view;
    return Math.max(3, Math.min(most, Math.min(g.rowH, g.pw / Math.max(1, b - a)) * share));
  }

  /** Latent components: ▲ AND, ○ OR (the drawn ones are listed on the canvas, "L.i L.i …"). */
  paintLatent(ctx, g) {
    const [a, b] = this.view;
    const drawn = { and: [], or: [] };
    for (const kind of this.marks ? ["and", "or"] : []) {
      for (const [l, i] of this.marks[kind] || []) {
        if (i < a || i >= b) continue;
        drawn[kind].push(`${l}.${i}`);
        const x = this.colX(g, i), y = g.top + (l + 0.5) * g.rowH;
        const r = this.markSize(g, 8, 0.3);
        ctx.lineWidth = 1.5;
        ctx.beginPath();
        if (kind === "and") {
          // ▲ a filled triangle, outlined in white
          ctx.moveTo(x, y - r); ctx.lineTo(x + r, y + r); ctx.lineTo(x - r, y + r); ctx.closePath();
          ctx.fillStyle = "#111";
          ctx.strokeStyle = "#fff";
          ctx.fill();
          ctx.stroke();
        } else {
          // ○ a hollow circle: a dark ring with a white halo, the cell's colour inside
          ctx.arc(x, y, r, 0, Math.PI * 2);
          ctx.strokeStyle = "#fff";
          ctx.lineWidth = 3;
          ctx.stroke();
          ctx.strokeStyle = "#111";
          ctx.lineWidth = 1.5;
          ctx.stroke();
        }
      }
    }
    this.canvas.dataset.marksAnd = drawn.and.join(" ");
    this.canvas.dataset.marksOr = drawn.or.join(" ");
  }

  /** Components in the ablation set: a cross. */
  paintAblated(ctx, g) {
    if (!this.ablation || !this.ablation.size) return;
    const [a, b] = this.view;
    const r = this.markSize(g, 9, 0.32);
    ctx.lineCap = "round";
    for (const p of this.ablation.list()) {
      if (p.component !== this.component || p.index < a || p.index >= b || p.layer >= this.layers) continue;
      const x = this.colX(g, p.index), y = g.top + (p.layer + 0.5) * g.rowH;
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

  /** Row labels (layers, or rowLabels) as many as fit, and the y axis's title. */
  paintRowAxis(ctx, g) {
    ctx.fillStyle = "#333";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const every = Math.ceil(12 / g.rowH);
    const rowLabel = (l) => (this.rowLabels ? this.rowLabels[l] : String(l));
    for (let l = 0; l < this.layers; l += every) ctx.fillText(rowLabel(l), g.left - 6, g.top + (l + 0.5) * g.rowH, g.left - 18);
    verticalLabel(ctx, this.yLabel, 10, g.top + g.ph / 2);
  }

  /** Column labels: tokens, cell indices, or (neurons) ticks of the zoomed range. */
  paintColAxis(ctx, g) {
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    if (this.colLabels) return this.paintColLabels(ctx, g);
    if (this.discrete) {
      const cw = g.pw / this.cols;
      const step = Math.ceil(18 / cw);
      for (let h = 0; h < this.cols; h += step) ctx.fillText(String(h), g.left + (h + 0.5) * cw, g.top + g.ph + 3);
      ctx.fillText(this.xLabel, g.left + g.pw / 2, g.top + g.ph + 17);
      return;
    }
    const [a, b] = this.view;
    for (const t of niceTicks(a, b, 6)) {
      const x = g.left + ((t - a) / (b - a)) * g.pw;
      if (x < g.left - 1 || x > g.left + g.pw + 1) continue;
      ctx.fillRect(x, g.top + g.ph, 1, 3);
      ctx.fillText(String(Math.round(t)), x, g.top + g.ph + 4);
    }
    const zoom = b - a < this.cols ? ` (neurons ${Math.round(a)}–${Math.round(b) - 1}; double-click to reset)` : " (wheel to zoom, drag to pan)";
    ctx.fillText(`neuron${zoom}`, g.left + g.pw / 2, g.top + g.ph + 18);
  }

  /** The pinned component's outline (black) and the hovered cell's (grey). */
  paintOutlines(ctx, g) {
    const [a, b] = this.view;
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

  /** The cell [row, column] under (x, y), or null (outside, or a blank cell). */
  cellAt(x, y) {
    const g = this.geometry();
    if (x < g.left || x >= g.left + g.pw || y < g.top || y >= g.top + g.ph) return null;
    const l = Math.floor((y - g.top) / g.rowH);
    let i;
    const row = this.rows[l];
    if (this.discrete) i = Math.floor(((x - g.left) / g.pw) * this.cols);
    else {
      // a pixel column covering several neurons stands for the one drawn: its largest |score|
      const [a, b] = this.view;
      const per = (b - a) / (g.pw * this.dpr);
      const c0 = this.columnAt(x);
      i = per > 1 && row ? this.binBest(row, c0, Math.min(this.cols, Math.ceil(c0 + per)))[1] : c0;
    }
    if (l < 0 || l >= this.layers || i < 0 || i >= this.cols || this.blank?.(l, i)) return null;
    return [l, i];
  }

  hit(x, y) {
    const cell = this.cellAt(x, y);
    if (!cell) return null;
    const [l, i] = cell;
    const row = this.rows[l];
    const v = row ? row[i] : undefined;
    if (this.info) {
      const pin = this.pinFor ? this.pinFor(l, i) : null;
      const lines = this.info(l, i, v);
      if (pin) lines.push(this.selection?.pinned ? "click: pin / unpin" : "click to pin");
      else lines.push(KEEP_TIP);
      if (this.onOpen) lines.push("double-click: the head's attention pattern");
      return { lines, cell, pin, value: v };
    }
    return { lines: this.componentTip(l, i, row, v), cell, pin: { component: this.component, layer: l, index: i }, value: v };
  }

  /** A component's tooltip: its name and score, whether it is latent or ablated, and what a click does. */
  componentTip(l, i, row, v) {
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
    return lines;
  }
}
