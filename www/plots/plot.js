// The base of every canvas plot (a figure with its canvas, tooltip and
// download buttons; crisp on HiDPI, redrawn on resize), the plots' fonts
// and the pieces several plots draw: a colour bar, rotated labels, an
// axis title. All text goes through textContent or fillText.

import { download, el } from "../dom.js";
import { npyBytes } from "../npy.js";
import { css, diverging } from "./scale.js";

export const FONT = "12px system-ui, -apple-system, 'Segoe UI', sans-serif";
export const TITLE_FONT = "600 13px system-ui, -apple-system, 'Segoe UI', sans-serif";
export const SMALL_FONT = "10px system-ui, -apple-system, 'Segoe UI', sans-serif";

/** The tooltip's last line where a click keeps the tooltip (nothing to pin). */
export const KEEP_TIP = "click: keep this tooltip (again or Esc: let go)";

/**
 * Sizes a canvas to w × h CSS pixels with a backing store of
 * w × h × devicePixelRatio, so it stays crisp on HiDPI screens; returns
 * that ratio.
 */
export function sizeCanvas(canvas, w, h, dpr = window.devicePixelRatio || 1) {
  canvas.style.width = `${w}px`;
  canvas.style.height = `${h}px`;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  return dpr;
}

/** Starts a drawing: coordinates in CSS pixels, a white w × h background, the plots' font. */
export function startDrawing(ctx, w, h, dpr) {
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, w, h);
  ctx.font = FONT;
}

/** An axis title written upwards, centred on (x, y). */
export function verticalLabel(ctx, text, x, y) {
  ctx.save();
  ctx.translate(x, y);
  ctx.rotate(-Math.PI / 2);
  ctx.textAlign = "center";
  ctx.fillText(text, 0, 0);
  ctx.restore();
}

/**
 * Base: a figure with a canvas, tooltip, PNG button (and CSV / npy buttons
 * when `exports` is given: {csv: () => text, npy: () => {shape, values}});
 * redraws on resize. A click on a point without a component to pin pins the
 * tooltip instead (click again or Escape to unpin). A subclass draws in
 * paint(ctx) and says what is under the mouse in hit(x, y): {lines,
 * value?, pin?} or null.
 */
export class Plot {
  constructor(parent, { title, selection, ablation, filename, height, exports }) {
    this.title = title;
    this.selection = selection;
    this.ablation = ablation || null;
    this.filename = filename || "patchlab-plot";
    this.fixedHeight = height;
    this.exports = exports;
    this.figure = el("figure", "plot");
    this.canvas = el("canvas");
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute("aria-label", title);
    this.tooltip = el("div", "tooltip");
    this.tooltip.hidden = true;
    this.tools = this.toolBar();
    this.figure.append(this.canvas, this.tooltip, this.tools);
    parent.append(this.figure);
    this.hover = null;
    this.tipPinned = false;
    this.listen();
  }

  /** The PNG button, and CSV / npy when the plot has exports. */
  toolBar() {
    const bar = el("div", "plot-tools");
    const png = el("button", "small", "PNG");
    png.type = "button";
    png.title = "Download this plot as a PNG image";
    png.addEventListener("click", () => this.downloadPng());
    bar.append(png);
    if (!this.exports) return bar;
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
    return bar;
  }

  /** Mouse, Escape, the shared selection and ablation set, and the figure's size. */
  listen() {
    this.canvas.addEventListener("mousemove", (e) => this.onMove(e));
    this.canvas.addEventListener("mouseleave", () => {
      if (this.tipPinned) return;
      this.hover = null;
      this.tooltip.hidden = true;
      this.draw();
    });
    this.onKey = (e) => { if (e.key === "Escape" && this.tipPinned) this.unpinTip(); };
    window.addEventListener("keydown", this.onKey);
    this.canvas.addEventListener("click", (e) => this.onClick(e));
    this.unsub = this.selection?.on(() => this.draw());
    this.unsubAblation = this.ablation?.on(() => this.draw());
    this.resize = new ResizeObserver(() => this.layout());
    this.resize.observe(this.figure);
  }

  /** A click pins a component, toggles it in the ablation set, or keeps the tooltip. */
  onClick(e) {
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

  /** Sizes the canvas to the figure's width (and heightFor it), then draws. */
  layout() {
    const w = Math.max(160, Math.floor(this.figure.clientWidth));
    if (!this.figure.isConnected || this.figure.clientWidth === 0) return;
    const h = Math.round(this.heightFor(w));
    const dpr = window.devicePixelRatio || 1;
    // resizing clears the canvas: only when the size changed
    if (this.w !== w || this.h !== h || this.dpr !== dpr) {
      this.w = w;
      this.h = h;
      this.dpr = sizeCanvas(this.canvas, w, h, dpr);
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
    startDrawing(ctx, this.w, this.h, this.dpr);
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
export function colourBar(ctx, x, y, w, h, scale, canvas, sequential = false, unit = "") {
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
  // the unit, written upwards beside the ticks; the scale (|value| at the ends), for tests
  canvas.dataset.unit = unit;
  canvas.dataset.scale = String(scale);
  if (unit) {
    ctx.save();
    ctx.font = SMALL_FONT;
    ctx.fillStyle = "#555";
    ctx.translate(x + w + 54, y + h / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(unit, 0, 0, Math.max(40, h));
    ctx.restore();
  }
}

/**
 * Labels (token texts) written upwards under their columns of width cw from
 * x = left, hanging from y: every one that fits, and the marked one (the
 * first differing position) in bold red.
 */
export function columnLabels(ctx, labels, left, cw, y, maxWidth, mark) {
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

let measurer = null;
/** The widest of some labels in the plots' font, in CSS pixels. */
export function labelWidth(labels) {
  measurer ||= document.createElement("canvas").getContext("2d");
  measurer.font = FONT;
  let w = 0;
  for (const t of labels) w = Math.max(w, measurer.measureText(t).width);
  return w;
}
