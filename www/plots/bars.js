// Grouped bars (direct logit attribution by component or position).

import { columnLabels, KEEP_TIP, labelWidth, Plot, verticalLabel } from "./plot.js";
import { fmt, niceTicks, num, tickLabel } from "./scale.js";

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

  /** A swatch and name per series, under the title. */
  paintLegend(ctx) {
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
  }

  paint(ctx) {
    const g = this.geometry();
    this.canvas.dataset.plot = [g.left, g.top, g.pw, g.ph].join(",");
    const n = this.categories.length;
    const gw = g.pw / n;
    const bw = Math.max(1, (gw * 0.8) / this.series.length);
    const y = (v) => g.top + ((this.hi - v) / (this.hi - this.lo)) * g.ph;
    this.paintLegend(ctx);
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
    verticalLabel(ctx, this.yLabel, 11, g.top + g.ph / 2);
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

