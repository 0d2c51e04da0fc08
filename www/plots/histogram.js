// A histogram of per-pair values (the Dataset tab's Pearson r per pair).

import { Plot } from "./plot.js";
import { css, diverging, fmt, niceTicks, tickLabel } from "./scale.js";

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
    g.xOf = (v) => g.left + ((v - lo) / (hi - lo)) * g.pw;
    g.max = Math.max(1, ...this.counts);
    ctx.fillStyle = "#fafafa";
    ctx.fillRect(g.left, g.top, g.pw, g.ph);
    this.paintBars(ctx, g);
    this.paintStats(ctx, g);
    this.paintAxes(ctx, g);
  }

  /** The bars, coloured by the value they hold (the heatmaps' scale), the hovered one shaded, and the baseline. */
  paintBars(ctx, g) {
    const [lo, hi] = this.range;
    const bw = g.pw / this.bins;
    for (let k = 0; k < this.bins; k++) {
      if (!this.counts[k]) continue;
      const mid = lo + ((k + 0.5) / this.bins) * (hi - lo);
      const t = lo < 0 ? mid / Math.max(Math.abs(lo), Math.abs(hi)) : 0.25 + 0.75 * ((mid - lo) / (hi - lo));
      const h = (this.counts[k] / g.max) * g.ph;
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
  }

  /** The mean (solid) and median (dashed). */
  paintStats(ctx, g) {
    for (const [key, dash, colour] of [["mean", [], "#b2182b"], ["median", [4, 3], "#2166ac"]]) {
      const v = this.stat?.[key];
      if (v === null || v === undefined || !Number.isFinite(v)) continue;
      ctx.strokeStyle = colour;
      ctx.lineWidth = 2;
      ctx.setLineDash(dash);
      ctx.beginPath();
      ctx.moveTo(g.xOf(v), g.top - 2);
      ctx.lineTo(g.xOf(v), g.top + g.ph);
      ctx.stroke();
      ctx.setLineDash([]);
    }
  }

  /** Value ticks and the axis's title under the bars, whole counts beside them. */
  paintAxes(ctx, g) {
    const [lo, hi] = this.range;
    ctx.fillStyle = "#333";
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const xt = niceTicks(lo, hi, 4);
    const xl = tickLabel(xt);
    for (const t of xt) {
      ctx.fillRect(g.xOf(t), g.top + g.ph, 1, 4);
      ctx.fillText(xl(t), g.xOf(t), g.top + g.ph + 5);
    }
    const extra = this.undefinedCount ? ` (${this.undefinedCount} undefined)` : "";
    ctx.fillText(`${this.xLabel}${extra} — mean ━ median ┅`, g.left + g.pw / 2, g.top + g.ph + 19, g.pw);
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const yt = niceTicks(0, g.max, 3).filter((t) => Number.isInteger(t));
    for (const t of yt) {
      const y = g.top + g.ph - (t / g.max) * g.ph;
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
