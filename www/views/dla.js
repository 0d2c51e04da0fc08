// The DLA view: direct logit attribution at the last position (components
// and heads), one head's at every position, and every component's at every
// position.

import { componentLabel, fmt } from "../plots.js";
import { visibleText } from "../dom.js";
import { csvField, HEAD, LAYER, mapExports } from "./exports.js";
import { metricLabel } from "./report.js";

const RUNS = [["clean", "#b2182b"], ["corrupt", "#2166ac"]];

export function renderDla(view, r) {
  const metric = r.metric?.name ?? r.prompts?.metric ?? "logit_diff";
  if (!r.dla) {
    return view.empty(metric !== "logit_diff"
      ? `DLA is defined for the logit-difference metric; this report's metric is ${metric}.`
      : "No direct logit attribution in this report: tick DLA under Sites and run again.");
  }
  renderLastPosition(view, r);
  view.dlaHeadGrid = view.section("dla-head", "One head's DLA at every position");
  renderDlaHead(view);
  renderPositions(view, r);
}

/** Every component's DLA at the last position (bars), and the heads' (a heatmap per run). */
function renderLastPosition(view, r) {
  const dla = r.dla, m = r.model;
  const last = r.tokens.clean.length - 1;
  const at = (run) => dla[run].layers.map((row) => row[last]);
  const bars = view.section("dla-bars", "Direct logit attribution at the last position",
    `Each component's direct contribution to ${metricLabel(r)} at the last position; their sum plus the bias (${fmt(dla.bias, 4)}) is the metric: clean ${fmt(r.metric.clean, 4)}, corrupt ${fmt(r.metric.corrupt, 4)}.`);
  view.bars("dla-layers", bars, {
    title: "Components at the last position",
    categories: dla.labels,
    series: RUNS.map(([run, colour]) => ({ name: run, values: at(run), colour })),
    yLabel: "DLA",
    exports: {
      csv: () => `component,clean,corrupt\n${dla.labels.map((c, k) => `${csvField(c)},${at("clean")[k]},${at("corrupt")[k]}`).join("\n")}\n`,
      npy: () => ({ shape: [2, dla.labels.length], values: [...at("clean"), ...at("corrupt")] }),
    },
  });
  const heads = view.section("dla-heads", "Heads' direct logit attribution at the last position", `Click a head for its DLA at every position (below)${r.patterns ? "; double-click for its attention pattern" : ""}.`);
  for (const run of ["clean", "corrupt"]) {
    const rows = dla[run].heads.map((l) => l.map((h) => h[last]));
    view.heatmap(`dla-heads-${run}`, heads, { title: `Heads' DLA, ${run}`, component: "heads", rows, layers: m.n_layers, cols: m.n_heads, valueName: `DLA (${run})`, unit: "logit difference", ablation: null, onOpen: r.patterns ? (l, h) => view.openHead(l, h) : undefined, exports: mapExports(rows, [LAYER, HEAD], "dla") });
  }
}

/** Every component's DLA at every position, a map per run. */
function renderPositions(view, r) {
  const dla = r.dla;
  const comps = view.section("dla-pos", "Components' DLA at every position", "The same decomposition at each position (the logit difference read off there).");
  comps.classList.add("positions");
  for (const run of ["clean", "corrupt"]) {
    const rows = dla[run].layers;
    view.posMap(`dla-layers-${run}`, comps, { title: `Components' DLA, ${run}`, rows, run, rowLabels: dla.labels, rowName: (k) => dla.labels[k], yLabel: "component", valueName: `DLA (${run})`, unit: "logit difference", exports: mapExports(rows, [{ name: "component", labels: dla.labels, labelName: "label" }, view.posAxis("pos", run)], "dla") });
  }
}

/** The head with the largest |DLA| at the last position (clean run). */
function strongestHead(r) {
  const last = r.tokens.clean.length - 1;
  let best = [0, 0], bv = -1;
  r.dla.clean.heads.forEach((row, l) => row.forEach((v, h) => { if (Math.abs(v[last] ?? 0) > bv) { bv = Math.abs(v[last] ?? 0); best = [l, h]; } }));
  return best;
}

/** The per-position DLA of the chosen head (the pinned one, or state.head, or the strongest). */
export function renderDlaHead(view) {
  const r = view.report;
  if (!r?.dla || !view.dlaHeadGrid?.isConnected) return;
  const p = view.plots.get("dla-head");
  const [l, h] = view.pickHead(r, strongestHead(r), !p);
  const select = view.controls.querySelector("select[data-control=head]");
  if (select) select.value = view.state.head;
  const series = RUNS.map(([run, colour]) => ({ name: run, values: r.dla[run].heads[l][h], colour }));
  const title = `${componentLabel("heads", l, h)}: DLA at every position`;
  const toks = r.tokens.clean.map((t) => visibleText(t.text));
  const exports = {
    csv: () => `pos,token,clean,corrupt\n${r.tokens.clean.map((t, i) => `${i},${csvField(t.text)},${series[0].values[i]},${series[1].values[i]}`).join("\n")}\n`,
    npy: () => ({ shape: [2, toks.length], values: [...series[0].values, ...series[1].values] }),
  };
  if (p) {
    p.title = title;
    p.canvas.setAttribute("aria-label", title);
    p.exports = exports;
    p.setData(toks, series);
  } else view.bars("dla-head", view.dlaHeadGrid, { title, categories: toks, series, yLabel: "DLA", mark: r.tokens.first_diff, exports });
}
