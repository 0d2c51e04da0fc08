// A scatter plot of two score maps of the same items (components, or a
// circuit's edges), with a least-squares line and Pearson r.

import { KEEP_TIP, Plot, verticalLabel } from "./plot.js";
import { fmt, niceTicks, num, pearson, tickLabel } from "./scale.js";
import { componentLabel } from "./selection.js";

/**
 * A scatter plot of two score maps ([layer][index], or one row of any
 * items) with a least-squares line and Pearson r. opts: x, y (the maps),
 * xLabel, yLabel, r (the report's r, drawn instead of the points' own),
 * diagonal (the y = x line), fitLine (default true), component (what a
 * click pins; null: the points are not components and a click keeps the
 * tooltip), label(l, i) (a point's name; default the component's), and
 * highlight(l, i) (points drawn red over the others, in grey).
 */
export class Scatter extends Plot {
  constructor(parent, opts) {
    super(parent, opts);
    this.component = opts.component ?? null;
    this.xLabel = opts.xLabel;
    this.yLabel = opts.yLabel;
    this.r = opts.r; // from the report, when present
    this.diagonal = !!opts.diagonal; // the y = x line (both axes on one scale)
    this.fitLine = opts.fitLine ?? true;
    this.label = opts.label || ((l, i) => componentLabel(this.component, l, i));
    this.highlight = opts.highlight || null;
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

  /** Which points to draw red: highlight(l, i) → boolean, or null for none. */
  setHighlight(highlight) {
    this.highlight = highlight;
    this.version++;
    this.draw();
  }

  /** The layer and index of the k-th point. */
  item(k) {
    const id = this.ids[k];
    return [Math.floor(id / 1e6), id % 1e6];
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
    this.paintAxes(ctx, g);
    ctx.save();
    ctx.beginPath();
    ctx.rect(g.left, g.top, g.pw, g.ph);
    ctx.clip();
    this.paintZeroLines(ctx, g);
    this.paintPoints(ctx, g);
    if (this.diagonal) this.paintDiagonal(ctx, g);
    if (this.fit && this.fitLine) this.paintFit(ctx, g);
    ctx.restore();
    const r = this.r !== undefined && this.r !== null ? this.r : this.fit ? this.fit.r : null;
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    ctx.fillStyle = "#111";
    ctx.fillText(`Pearson r = ${r === null ? "undefined" : fmt(r, 4)}   n = ${this.xs.length}`, 6, 24);
  }

  /** Ticks and titles of both axes. */
  paintAxes(ctx, g) {
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
    verticalLabel(ctx, this.yLabel, 11, g.top + g.ph / 2);
  }

  /** Dashed x = 0 and y = 0 where they are in range. */
  paintZeroLines(ctx, g) {
    ctx.strokeStyle = "#bbb";
    ctx.setLineDash([4, 4]);
    ctx.beginPath();
    if (this.xr[0] < 0 && this.xr[1] > 0) { ctx.moveTo(this.sx(g, 0), g.top); ctx.lineTo(this.sx(g, 0), g.top + g.ph); }
    if (this.yr[0] < 0 && this.yr[1] > 0) { ctx.moveTo(g.left, this.sy(g, 0)); ctx.lineTo(g.left + g.pw, this.sy(g, 0)); }
    ctx.stroke();
    ctx.setLineDash([]);
  }

  /** Points: small squares, translucent when many; highlighted ones red, over the rest in grey. */
  paintPoints(ctx, g) {
    const n = this.xs.length;
    const size = n > 5000 ? 2 : n > 500 ? 3 : 5;
    const dot = (k) => ctx.fillRect(this.sx(g, this.xs[k]) - size / 2, this.sy(g, this.ys[k]) - size / 2, size, size);
    if (!this.highlight) {
      ctx.fillStyle = n > 5000 ? "rgba(33,102,172,0.35)" : "rgba(33,102,172,0.75)";
      for (let k = 0; k < n; k++) dot(k);
      return;
    }
    const on = [];
    ctx.fillStyle = "rgba(80,80,80,0.35)";
    for (let k = 0; k < n; k++) {
      if (this.highlight(...this.item(k))) on.push(k);
      else dot(k);
    }
    ctx.fillStyle = "rgba(178,24,43,0.8)";
    for (const k of on) dot(k);
  }

  /** y = x: where the two methods agree exactly. */
  paintDiagonal(ctx, g) {
    const lo = Math.max(this.xr[0], this.yr[0]), hi = Math.min(this.xr[1], this.yr[1]);
    if (!(hi > lo)) return;
    ctx.strokeStyle = "#555";
    ctx.lineWidth = 1;
    ctx.setLineDash([2, 3]);
    ctx.beginPath();
    ctx.moveTo(this.sx(g, lo), this.sy(g, lo));
    ctx.lineTo(this.sx(g, hi), this.sy(g, hi));
    ctx.stroke();
    ctx.setLineDash([]);
  }

  /** The least-squares line y = intercept + slope · x. */
  paintFit(ctx, g) {
    const y = (x) => this.fit.intercept + this.fit.slope * x;
    ctx.strokeStyle = "#b2182b";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    ctx.moveTo(this.sx(g, this.xr[0]), this.sy(g, y(this.xr[0])));
    ctx.lineTo(this.sx(g, this.xr[1]), this.sy(g, y(this.xr[1])));
    ctx.stroke();
  }

  /** The pinned component (black ring) and the hovered point (grey ring). */
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
    if (p && this.component && p.component === this.component) {
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
    const [l, i] = this.item(best);
    const lines = [this.label(l, i), `${this.xLabel}: ${fmt(this.xs[best], 6)}`, `${this.yLabel}: ${fmt(this.ys[best], 6)}`];
    if (!this.component) return { k: best, lines: [...lines, KEEP_TIP] };
    return { k: best, lines: [...lines, "click to pin"], pin: { component: this.component, layer: l, index: i } };
  }
}
