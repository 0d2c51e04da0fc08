// Canvas plots of patchlab reports: heatmaps (layer × head), neuron maps
// (layer × d_mlp, zoomable), scatter plots with a fit line and Pearson r,
// grouped bars, histograms (per-pair r of a dataset). Crisp on HiDPI (the
// backing store follows devicePixelRatio), hover tooltips, click to pin a
// component (shared by every plot through a Selection), shift-click (or a
// plain click in ablate mode) to add it to an Ablation set, PNG export.
// All text goes through textContent or fillText.
//
// The pieces live in plots/: scale.js (colours, number formats, ticks,
// Pearson r), selection.js (Selection, Ablation), plot.js (the base class,
// canvas sizing, fonts, shared drawing), and one module per plot.

export { css, diverging, fmt, maxAbs, pearson } from "./plots/scale.js";
export { Ablation, componentLabel, Selection } from "./plots/selection.js";
export { FONT, SMALL_FONT, sizeCanvas, startDrawing, verticalLabel } from "./plots/plot.js";
export { Heatmap } from "./plots/heatmap.js";
export { Bars } from "./plots/bars.js";
export { Scatter } from "./plots/scatter.js";
export { Histogram } from "./plots/histogram.js";
