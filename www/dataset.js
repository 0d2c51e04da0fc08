// The lab's Dataset tab: pairs from a seeded task generator or an uploaded
// CSV / JSONL file (bad rows are listed by line and skipped only when the
// user agrees), run through PatchLab.runDataset (the engine's dataset
// runner, as `patchlab batch`: one pair at a time on the CPU, with WebGPU in
// groups of pairs of equal token length, which share the GPU's passes), with
// progress, ETA and Cancel. As pairs finish, the summary tables
// (PatchLab.summarize: the summary.json of `patchlab batch`, not recomputed
// here), histograms of per-pair r and the list of pairs appear; a finished
// pair opens in the single-pair views with its report. User text (prompts
// from files) only ever reaches the page through textContent.

import { summaryInput } from "./patchlab.js";
import { isPositionAxis, SITE_AXES } from "./sites.js";
import { Heatmap, Histogram, fmt } from "./plots.js";
import { $, download, el, seconds, visibleText } from "./dom.js";
import { stageText, unitOf } from "./views/report.js";
import { denseFeatureMap, neuronpediaId, neuronpediaUrl, parseFeatureKey } from "./views/feature-maps.js";

/**
 * The summary's main correlation rows: [key, label, histogram title or null].
 * IG* is gap-normalised IG, on AP's scale (docs/methods.md): its r with AP
 * does not flip sign with the gap m_clean − m_corrupt, as raw IG's does.
 */
const CORR_ROWS = [
  ["ig_norm_clean_to_corrupt__vs__ap_clean_to_corrupt", "IG* vs AP, clean → corrupt", "IG* vs AP, clean → corrupt"],
  ["ig_norm_corrupt_to_clean__vs__ap_corrupt_to_clean", "IG* vs AP, corrupt → clean", "IG* vs AP, corrupt → clean"],
  ["ig_norm_clean_to_corrupt__vs__ap_corrupt_to_clean", "IG* clean → corrupt vs AP corrupt → clean (cross-direction)", "IG* c→k vs AP k→c (cross)"],
  ["ig_norm_corrupt_to_clean__vs__ap_clean_to_corrupt", "IG* corrupt → clean vs AP clean → corrupt (cross-direction)", "IG* k→c vs AP c→k (cross)"],
  ["asym_ig_norm__vs__asym_ap", "Asymmetry: IG* vs AP", "asymmetry, IG* vs AP"],
  ["atp_clean_to_corrupt__vs__ap_clean_to_corrupt", "AtP vs AP, clean → corrupt", "AtP vs AP, clean → corrupt"],
  ["atp_corrupt_to_clean__vs__ap_corrupt_to_clean", "AtP vs AP, corrupt → clean", "AtP vs AP, corrupt → clean"],
  ["asym_atp__vs__asym_ap", "Asymmetry: AtP vs AP", null],
  ["ap_clean_to_corrupt__vs__ap_corrupt_to_clean", "AP across directions", null],
  ["ig_norm_clean_to_corrupt__vs__ig_norm_corrupt_to_clean", "IG* across directions", null],
];
const OVERLAP_ROWS = [
  ["and", "Jaccard of latent AND sets (IG* vs AP)"],
  ["or", "Jaccard of latent OR sets (IG* vs AP)"],
];
const COMPONENT_NAMES = { heads: "Heads", neurons: "Neurons" };

/** "mean ± std", mean of |value| (the average |r|), median, "min – max", n of a summary Stat. */
function statCells(s) {
  if (!s || !s.n) return ["undefined", "—", "—", "—", String(s ? s.n : 0)];
  const abs = s.mean_abs === undefined || s.mean_abs === null ? "—" : fmt(s.mean_abs, 4);
  return [`${fmt(s.mean, 4)} ± ${fmt(s.std, 4)}`, abs, fmt(s.median, 4), `${fmt(s.min, 3)} – ${fmt(s.max, 3)}`, String(s.n)];
}

export class DatasetTab {
  /**
   * lab(): the loaded PatchLab or null; pairBusy(): whether a single-pair run
   * is going; onBusy(running): the tab's run started or ended;
   * openPair(report, index): show a finished pair in the single-pair views.
   */
  constructor({ lab, pairBusy, onBusy, openPair, saes }) {
    this.lab = lab;
    this.saes = saes; // the SAE box's request (saes: ["all"] when ticked and loaded)
    this.pairBusy = pairBusy;
    this.onBusy = onBusy;
    this.openPair = openPair;
    this.data = null; // {pairs, source, seed, key, label}
    this.reports = [];
    this.inputs = []; // per pair: the report as summarize() takes it (JSON), or null
    this.state = []; // per pair: "pending" | "running" | "done" | "error" | "cancelled"
    this.errors = [];
    this.summary = null;
    this.running = null;
    this.hists = new Map();
    this.runs = 0;
    this.summarizing = null; // the summary refresh in progress (summaryLater)
    this.summaryStale = false;
    this.ablation = null; // the ablation.json object of the sets ablated so far
    this.ablating = null; // AbortController of the ablation in progress

    $("ds-generate").addEventListener("click", () => this.generate());
    $("ds-upload").addEventListener("click", () => $("ds-file").click());
    $("ds-file").addEventListener("change", async () => {
      const f = $("ds-file").files[0];
      $("ds-file").value = ""; // the same file again is a new upload
      if (f) await this.upload(f);
    });
    $("ds-run").addEventListener("click", () => this.run());
    $("ds-cancel").addEventListener("click", () => {
      if (this.running) {
        $("ds-text").textContent = "Cancelling…";
        this.running.abort();
      }
      this.ablating?.abort();
    });
    // counting small-gap pairs or not only changes the tables
    $("ds-include-small-gap").addEventListener("change", () => this.refreshSummary());
    $("ds-abl-set").addEventListener("change", () => {
      $("ds-abl-custom").hidden = $("ds-abl-set").value !== "custom";
      if (!$("ds-abl-custom").hidden) $("ds-abl-custom").focus();
    });
    $("ds-abl-run").addEventListener("click", () => this.ablate());
    $("ds-abl-custom").addEventListener("keydown", (e) => {
      if (e.key === "Enter") this.ablate();
    });
    $("ds-export-ablation").addEventListener("click", () => {
      if (this.ablation) download("patchlab-ablation.json", `${JSON.stringify(this.ablation, null, 2)}\n`, "application/json");
    });
    $("ds-export-summary").addEventListener("click", () => {
      if (this.summary) download("patchlab-summary.json", `${JSON.stringify(this.summary, null, 2)}\n`, "application/json");
    });
    $("ds-export-csv").addEventListener("click", async () => {
      const lab = this.lab();
      if (!lab || !this.data) return;
      try {
        download("patchlab-pairs.csv", await lab.pairsCsv(this.data.pairs), "text/csv");
      } catch (e) {
        this.error(e.message);
      }
    });
    for (const box of document.querySelectorAll("#dataset input[name], #ds-ig-steps")) box.addEventListener("change", () => this.update());
    this.update();
  }

  isRunning() {
    return !!this.running;
  }

  error(message) {
    $("ds-error").textContent = message;
    $("ds-error").hidden = !message;
  }

  checked(name) {
    return [...document.querySelectorAll(`input[name=ds-${name}]`)].filter((b) => b.checked).map((b) => b.value);
  }

  /** The analysis options of a run (the request fields besides the pair). */
  options() {
    const sites = this.checked("sites");
    const components = this.checked("components");
    return {
      methods: this.checked("methods"),
      directions: this.checked("directions"),
      // sites replace components in a request (and may name heads and neurons)
      ...(sites.length ? { sites: [...components, ...sites] } : { components }),
      igSteps: Number($("ds-ig-steps").value),
      // the SAE box's "Score SAE features" (saes: ["all"]), as for one pair
      ...(this.saes?.() ? { saes: this.saes() } : {}),
    };
  }

  /** Why the IG steps cannot be used (IG needs at least one point on its path), or "". */
  static stepsProblem(o) {
    if (!o.methods.includes("ig") || (Number.isInteger(o.igSteps) && o.igSteps >= 1 && o.igSteps <= 1000)) return "";
    return `IG steps must be a whole number from 1 to 1000 (50 is usual), not ${JSON.stringify($("ds-ig-steps").value)}: integrated gradients needs at least one point on its path.`;
  }

  /** Whether the options ask for something to compute. */
  static hasWork(o) {
    return o.methods.length && o.directions.length && ((o.sites || o.components).length || o.saes?.length);
  }

  taskKey() {
    return `task:${$("ds-task").value}|${$("ds-n").value}|${$("ds-seed").value}`;
  }

  /** Enables the buttons that can act now. */
  update() {
    const lab = this.lab();
    const o = this.options();
    const steps = DatasetTab.stepsProblem(o);
    const choices = DatasetTab.hasWork(o) && !steps;
    $("ds-run").disabled = !lab || !!this.running || !!this.ablating || this.pairBusy() || !choices;
    $("ds-cancel").disabled = !this.running && !this.ablating;
    $("ds-abl-run").disabled = !lab || !!this.running || !!this.ablating || this.pairBusy() || !this.inputs.some(Boolean);
    $("ds-export-ablation").disabled = !this.ablation;
    $("ds-generate").disabled = !lab || !!this.running;
    $("ds-upload").disabled = !lab || !!this.running;
    $("ds-export-summary").disabled = !this.summary;
    $("ds-export-csv").disabled = !this.data;
    if (steps && !this.running) this.error(steps);
    else if (!choices && !this.running) this.error("Choose at least one method, one direction and one component kind.");
    else if (/^Choose at least|^IG steps must/.test($("ds-error").textContent)) this.error("");
  }

  /** Offers the page's tasks once a model is loaded. */
  async modelReady() {
    const lab = this.lab();
    if (lab) {
      try {
        const names = await lab.taskNames();
        const sel = $("ds-task");
        const current = sel.value;
        sel.replaceChildren(...names.map((n) => {
          const o = el("option", null, n);
          o.value = n;
          return o;
        }));
        if (names.includes(current)) sel.value = current;
      } catch {
        // keep the static list
      }
    }
    this.update();
  }

  /** A new model: results of the old one no longer apply. */
  modelChanged() {
    this.running?.abort();
    this.data = null;
    this.clearResults();
    $("ds-results").hidden = true;
    $("ds-info").textContent = "No pairs yet: generate a task or upload a file (Run generates the task as set).";
    this.update();
  }

  clearResults() {
    const n = this.data ? this.data.pairs.length : 0;
    this.reports = new Array(n).fill(null);
    this.inputs = new Array(n).fill(null);
    this.state = new Array(n).fill("pending");
    this.errors = new Array(n).fill(null);
    this.summary = null;
    this.ablation = null;
    $("ds-abl-results").replaceChildren();
    $("ds-abl-text").textContent = "";
    $("ds-abl-error").hidden = true;
    for (const h of this.hists.values()) h.destroy();
    this.hists.clear();
    $("ds-hists").replaceChildren();
    $("ds-tables").replaceChildren();
    $("ds-summary").hidden = true;
  }

  setData(data) {
    this.data = data;
    this.clearResults();
    $("ds-info").textContent = data.label;
    this.renderPairs();
    $("ds-results").hidden = false;
    $("ds-progress").hidden = true;
    $("ds-text").textContent = "";
    this.update();
  }

  async generate() {
    const lab = this.lab();
    if (!lab || this.running) return false;
    this.error("");
    const task = $("ds-task").value;
    const n = Number($("ds-n").value);
    const seed = Number($("ds-seed").value);
    if (!Number.isInteger(n) || n < 1 || n > 100000) {
      this.error("n must be a whole number of pairs from 1 to 100000.");
      return false;
    }
    if (!Number.isInteger(seed) || seed < 0) {
      this.error("The seed must be a whole number, 0 or more.");
      return false;
    }
    $("ds-info").textContent = `Generating ${n} pairs of ${task}…`;
    let pairs;
    try {
      pairs = await lab.generateDataset({ task, n, seed, bos: $("ds-bos").checked });
    } catch (e) {
      $("ds-info").textContent = "";
      this.error(e.message);
      return false;
    }
    this.setData({ pairs, source: `task:${task}`, seed, key: this.taskKey(), label: `${pairs.length} pairs of the ${task} task, seed ${seed}.` });
    return true;
  }

  async upload(file) {
    const lab = this.lab();
    if (!lab || this.running) return false;
    this.error("");
    let res;
    try {
      res = await lab.importPairs(await file.text(), { filename: file.name, bos: $("ds-bos").checked });
    } catch (e) {
      this.error(`${file.name}: ${e.message}`);
      return false;
    }
    if (res.bad.length && !(await this.confirmBad(file.name, res))) {
      $("ds-info").textContent = `${file.name} was not used: fix its invalid rows, or upload it again and agree to skip them.`;
      return false;
    }
    const skipped = res.bad.length ? ` (${res.bad.length} invalid row${res.bad.length === 1 ? "" : "s"} skipped: line${res.bad.length === 1 ? "" : "s"} ${res.bad.map((b) => b.line).join(", ")})` : "";
    this.setData({ pairs: res.pairs, source: `file:${file.name}`, seed: null, key: null, label: `${res.pairs.length} pairs from ${file.name}${skipped}.` });
    return true;
  }

  /** Lists the bad rows in a dialog; resolves true only if the user agrees to skip them. */
  confirmBad(name, res) {
    const dialog = $("ds-bad-dialog");
    const k = res.bad.length;
    $("ds-bad-text").textContent = `${name}: ${k} row${k === 1 ? " is" : "s are"} not a valid pair and would be left out; ${res.pairs.length} valid pair${res.pairs.length === 1 ? "" : "s"} remain.`;
    $("ds-bad-list").replaceChildren(...res.bad.map((b) => {
      const li = el("li");
      li.dataset.line = String(b.line);
      li.append(el("strong", null, `line ${b.line}: `), document.createTextNode(b.reason));
      return li;
    }));
    $("ds-bad-skip").textContent = `Skip ${k === 1 ? "it" : "them"} and use the ${res.pairs.length} valid pair${res.pairs.length === 1 ? "" : "s"}`;
    return new Promise((resolve) => {
      const done = (ok) => {
        $("ds-bad-skip").removeEventListener("click", yes);
        $("ds-bad-cancel").removeEventListener("click", no);
        dialog.removeEventListener("cancel", no);
        if (dialog.open) dialog.close();
        resolve(ok);
      };
      const yes = () => done(true);
      const no = () => done(false);
      $("ds-bad-skip").addEventListener("click", yes);
      $("ds-bad-cancel").addEventListener("click", no);
      dialog.addEventListener("cancel", no);
      dialog.showModal();
    });
  }

  async run() {
    if (this.running || this.pairBusy()) return;
    const lab = this.lab();
    if (!lab) return;
    this.error("");
    const opts = this.options();
    if (!DatasetTab.hasWork(opts)) return this.update();
    // the task as set now, unless these pairs came from it (or from a file)
    if (!this.data || (this.data.key && this.data.key !== this.taskKey())) {
      if (!(await this.generate())) return;
    }
    const bos = $("ds-bos").checked;
    const data = this.data;
    data.pairs = data.pairs.map((p) => ({ ...p, bos }));
    this.clearResults();
    this.renderPairs();
    const ctrl = new AbortController();
    this.running = ctrl;
    this.onBusy(true);
    this.update();
    const n = data.pairs.length;
    const t0 = performance.now();
    $("ds-progress").hidden = false;
    $("ds-progress").value = 0;
    $("ds-text").textContent = `Pair 1 of ${n}…`;
    // the engine's dataset runner (that of `patchlab batch`) groups the
    // pairs, streams each outcome and says when a group starts
    let label = `Pair 1 of ${n}`;
    let group = [];
    let done = 0;
    let cancelled = false;
    const mark = (ks, state) => {
      for (const k of ks) {
        this.state[k] = state;
        this.renderRow(k);
      }
    };
    try {
      await lab.runDataset({
        pairs: data.pairs,
        ...opts,
        signal: ctrl.signal,
        onPlan: (plan) => {
          document.body.dataset.datasetGroups = String(plan.groups.length);
        },
        onGroup: (g) => {
          group = g;
          label = g.length === 1 ? `Pair ${g[0] + 1} of ${n}` : `Pairs ${g[0] + 1}… (${g.length} together) of ${n}`;
          mark(g, "running");
        },
        onProgress: (pr) => {
          $("ds-progress").value = pr.fraction;
          $("ds-text").textContent = `${label}: ${stageText(pr.stage)} — ${Math.round(pr.fraction * 100)} % · ${seconds(pr.elapsedMs)} elapsed · ETA ${seconds(pr.etaMs)}`;
        },
        onPair: ({ index: k, status, report, error }) => {
          if (status === "done") {
            this.reports[k] = report;
            this.inputs[k] = summaryInput(report);
            done++;
          } else this.errors[k] = error;
          mark([k], status);
          if (status === "done") this.summaryLater();
        },
      });
    } catch (e) {
      const left = group.filter((k) => this.state[k] === "running");
      if (e.name === "AbortError") {
        cancelled = true;
        mark(left, "cancelled");
      } else {
        // not about one pair (those are reported and passed over): the run stops
        this.error(e.message);
        for (const k of left) this.errors[k] = e.message;
        mark(left, "error");
      }
    } finally {
      // the tables hold every finished pair before the run counts as over
      await this.summarizing;
      this.running = null;
      this.onBusy(false);
      this.update();
    }
    const ms = performance.now() - t0;
    const failed = this.state.filter((s) => s === "error").length;
    $("ds-progress").value = done / n;
    if (cancelled) {
      $("ds-progress").hidden = true;
      $("ds-text").textContent = `Cancelled after ${done} of ${n} pairs${done ? "; the tables show the finished pairs" : ""}.`;
    } else {
      $("ds-text").textContent = `Done: ${done} of ${n} pairs in ${seconds(ms)} (${seconds(ms / Math.max(1, done + failed))} per pair)${failed ? `; ${failed} failed (see the list)` : ""}.`;
    }
    this.runs++;
    document.body.dataset.datasetRuns = String(this.runs);
  }

  /**
   * Redraws the summary after pairs finish, one summarize() at a time (the
   * pairs that finish meanwhile join the next); this.summarizing settles
   * once the tables hold every finished pair.
   */
  summaryLater() {
    this.summaryStale = true;
    this.summarizing ??= (async () => {
      while (this.summaryStale) {
        this.summaryStale = false;
        await this.refreshSummary();
      }
      this.summarizing = null;
    })();
  }

  /**
   * Mean-ablates the chosen set in every finished pair (PatchLab.ablateDataset,
   * the numbers of `patchlab ablate`) and adds or replaces its row in the
   * ablation table.
   */
  async ablate() {
    const lab = this.lab();
    if (!lab || this.running || this.ablating || this.pairBusy() || !this.inputs.some(Boolean)) return;
    const choice = $("ds-abl-set").value;
    const spec = choice === "custom" ? $("ds-abl-custom").value.trim() : choice;
    const fail = (m) => {
      $("ds-abl-error").textContent = m;
      $("ds-abl-error").hidden = !m;
    };
    fail("");
    if (!spec) return fail("Type the components to ablate, e.g. h9.6,h9.9,n0.1234 (h = head layer.head, n = neuron layer.index).");
    const ctrl = new AbortController();
    this.ablating = ctrl;
    this.onBusy(true);
    this.update();
    const t0 = performance.now();
    $("ds-abl-text").textContent = `Ablating ${spec}…`;
    try {
      const out = await lab.ablateDataset(this.inputsJson(), [spec], {
        signal: ctrl.signal,
        onProgress: (p) => {
          $("ds-abl-text").textContent = `${stageText(p.stage)}: ${p.done} of ${p.total} pairs`;
        },
      });
      const sets = (this.ablation?.sets || []).filter((x) => x.set !== out.sets[0].set);
      this.ablation = { ...out, sets: [...sets, ...out.sets] };
      this.renderAblation();
      $("ds-abl-text").textContent = `Ablated ${spec} in ${out.sets[0].pairs.length} pairs (${seconds(performance.now() - t0)}).`;
    } catch (e) {
      $("ds-abl-text").textContent = "";
      if (e.name === "AbortError") $("ds-abl-text").textContent = "Ablation cancelled.";
      else fail(e.message);
    } finally {
      this.ablating = null;
      this.onBusy(false);
      this.update();
      document.body.dataset.datasetAblations = String(Number(document.body.dataset.datasetAblations || 0) + 1);
    }
  }

  renderAblation() {
    const t = el("table", "ds-table");
    t.append(el("caption", null, "Mean ablation (per pair, then mean ± std)"));
    const head = el("tr");
    for (const h of ["set", "heads / pair", "neurons / pair", "metric change", "fraction retained", "n"]) head.append(el("th", null, h));
    const thead = el("thead");
    thead.append(head);
    const body = el("tbody");
    const ms = (st) => (st && st.n ? `${fmt(st.mean, 4)} ± ${fmt(st.std, 4)}` : "undefined");
    for (const x of this.ablation?.sets || []) {
      const tr = el("tr");
      tr.dataset.set = x.set;
      tr.append(el("th", null, x.set));
      for (const c of [x.heads.n ? fmt(x.heads.mean, 3) : "—", x.neurons.n ? fmt(x.neurons.mean, 3) : "—", ms(x.change), ms(x.retained), String(x.retained.n)]) tr.append(el("td", null, c));
      body.append(tr);
    }
    t.append(thead, body);
    $("ds-abl-results").replaceChildren(t);
  }

  /** The finished pairs' reports as summarize() and ablateDataset() take them (JSON, null for the others). */
  inputsJson() {
    return `[${this.inputs.map((x) => x || "null").join(",")}]`;
  }

  /** Asks the engine for the summary of the finished pairs, then redraws the tables and histograms. */
  async refreshSummary() {
    const lab = this.lab();
    if (!lab || !this.inputs.some(Boolean)) return;
    const d = this.data;
    try {
      this.summary = await lab.summarize(this.inputsJson(), { source: d.source, seed: d.seed ?? undefined, total: d.pairs.length, includeSmallGap: $("ds-include-small-gap").checked });
    } catch (e) {
      this.error(`Could not summarise the pairs: ${e.message}`);
      return;
    }
    this.renderSummary();
    this.update();
  }

  renderSummary() {
    const s = this.summary;
    if (!s) return;
    $("ds-summary").hidden = false;
    const tables = [];
    const table = (caption, rows) => {
      const t = el("table", "ds-table");
      t.append(el("caption", null, caption));
      const head = el("tr");
      for (const h of ["", "mean ± std", "mean |·|", "median", "min – max", "n"]) head.append(el("th", null, h));
      const thead = el("thead");
      thead.append(head);
      const body = el("tbody");
      for (const [key, label, stat] of rows) {
        const tr = el("tr");
        tr.dataset.key = key;
        tr.append(el("th", null, label));
        for (const c of statCells(stat)) tr.append(el("td", null, c));
        body.append(tr);
      }
      t.append(thead, body);
      tables.push(t);
    };
    const missing = s.missing.length ? `, ${s.missing.length} not (yet) computed` : "";
    const left = s.excluded?.length
      ? ` — ${s.excluded.length} pair${s.excluded.length === 1 ? "" : "s"} left out of the correlations and overlaps: the metric barely differs between the prompts (small gap)`
      : "";
    table(`Metric (${s.n_pairs} pair${s.n_pairs === 1 ? "" : "s"}${missing})`, [
      ["metric.clean", "metric, clean prompt", s.metric?.clean],
      ["metric.corrupt", "metric, corrupt prompt", s.metric?.corrupt],
    ]);
    const comps = ["heads", "neurons"].filter((c) => s.correlations?.[c] || s.overlap?.[c]);
    for (const c of comps) {
      const corr = s.correlations?.[c] || {};
      const rows = CORR_ROWS.filter(([k]) => corr[k]).map(([k, label]) => [`${c}.${k}`, `r: ${label}`, corr[k]]);
      for (const [k, label] of OVERLAP_ROWS) if (s.overlap?.[c]?.[k]) rows.push([`${c}.overlap.${k}`, label, s.overlap[c][k]]);
      table(`${COMPONENT_NAMES[c]}${left}`, rows);
      for (const [k, , hist] of CORR_ROWS) {
        if (!hist || !corr[k]) continue;
        const key = `${c}:${k}`;
        let h = this.hists.get(key);
        if (h) h.setValues(corr[k].per_pair, corr[k]);
        else {
          h = new Histogram($("ds-hists"), {
            title: `${COMPONENT_NAMES[c]}: ${hist}`,
            values: corr[k].per_pair,
            stat: corr[k],
            range: [-1, 1],
            bins: 20,
            xLabel: "Pearson r per pair",
            filename: `patchlab-hist-${c}-${k}`,
          });
          h.figure.dataset.key = key;
          this.hists.set(key, h);
        }
      }
    }
    $("ds-tables").replaceChildren(...tables);
    this.renderSiteMaps();
    this.renderFeatureMeans();
  }

  /** Each SAE's features by mean |AP| over the pairs (summary.feature_maps), with every method's and direction's mean ± std. */
  renderFeatureMeans() {
    const s = this.summary;
    const fm = s.feature_maps || {};
    const hooks = [...new Set(Object.values(fm).flatMap((dirs) => Object.values(dirs).flatMap((maps) => Object.keys(maps))))]
      .map((k) => parseFeatureKey(k))
      .filter((p) => p && !p.byPos)
      .map((p) => p.hook);
    $("ds-features").hidden = !hooks.length;
    if (!hooks.length) return;
    const select = $("ds-feature-sae");
    const keep = hooks.includes(select.value) ? select.value : hooks[0];
    select.replaceChildren(...hooks.map((h) => {
      const o = el("option", null, h);
      o.value = h;
      return o;
    }));
    select.value = keep;
    select.onchange = () => this.renderFeatureMeans();
    const key = `sae:${keep}`;
    // the columns: every method and direction the summary has, AP first
    const cols = [];
    for (const m of ["ap", "ig_norm", "atp"]) for (const d of ["clean_to_corrupt", "corrupt_to_clean"]) if (fm[m]?.[d]?.[key]) cols.push([m, d, fm[m][d][key]]);
    if (!cols.length) return;
    const dense = cols.map(([, , st]) => [denseFeatureMap(st.mean), denseFeatureMap(st.std)]);
    const [rankMean] = dense[0];
    const order = [...rankMean.values.keys()].filter((i) => rankMean.values[i] !== 0).sort((a, b) => Math.abs(rankMean.values[b]) - Math.abs(rankMean.values[a])).slice(0, 25);
    const info = this.reports.find((r) => r)?.settings?.saes?.find((x) => x.hook_name === keep);
    const np = neuronpediaId(info);
    const names = { ap: "AP", ig_norm: "IG*", atp: "AtP" };
    const head = el("tr");
    for (const h of ["feature", ...cols.map(([m, d]) => `${names[m]} ${d === "clean_to_corrupt" ? "c→k" : "k→c"}`), "n", "Neuronpedia"]) head.append(el("th", null, h));
    const thead = el("thead");
    thead.append(head);
    const body = el("tbody");
    for (const f of order) {
      const tr = el("tr");
      tr.dataset.feature = String(f);
      tr.append(el("td", null, String(f)));
      for (const [mean, std] of dense) tr.append(el("td", null, `${fmt(mean.values[f], 4)} ± ${fmt(std.values[f], 3)}`));
      tr.append(el("td", null, String(cols[0][2].n)));
      const link = el("td", "neuronpedia");
      if (np) {
        const a = el("a", null, `${np}/${f} ↗`);
        a.href = neuronpediaUrl(np, f);
        a.target = "_blank";
        a.rel = "noopener noreferrer";
        link.append(a);
      } else link.textContent = "—";
      tr.append(link);
      body.append(tr);
    }
    $("ds-feature-table").replaceChildren(thead, body);
  }

  /** The summary's site maps (mean ± std per cell) as heatmaps, one map at a time. */
  renderSiteMaps() {
    const s = this.summary;
    const maps = [];
    for (const [m, dirs] of Object.entries(s.site_maps || {})) {
      for (const [d, sites] of Object.entries(dirs)) for (const site of Object.keys(sites)) maps.push([m, d, site]);
    }
    $("ds-sites").hidden = !maps.length;
    if (!maps.length) return;
    const select = $("ds-site-map");
    const keys = maps.map((k) => k.join("/"));
    const keep = keys.includes(select.value) ? select.value : keys[0];
    select.replaceChildren(...maps.map(([m, d, site], i) => {
      const o = el("option", null, `${site}: ${m}, ${d.replaceAll("_", " ")}`);
      o.value = keys[i];
      return o;
    }));
    select.value = keep;
    select.onchange = () => this.renderSiteMaps();
    const [m, d, site] = keep.split("/");
    const st = s.site_maps[m][d][site];
    const al = s.site_alignment;
    // a destination or source axis is drawn like any positions
    const axes = (SITE_AXES[site] || []).map((a) => (isPositionAxis(a) ? "pos" : a));
    const positional = axes.includes("pos");
    const others = positional && al?.not_aligned?.length ? ` ${al.not_aligned.length} pair${al.not_aligned.length === 1 ? "" : "s"} of another template left out: ${al.not_aligned.join(", ")}.` : "";
    $("ds-site-note").textContent = positional
      ? `${st.n} pair${st.n === 1 ? "" : "s"} of ${al.n_tokens} tokens (first difference at position ${al.first_diff}).${others}`
      : `${st.n} pair${st.n === 1 ? "" : "s"} (a map without positions: every pair counts).`;
    // the map's last axis across, every other axis down (one row per combination)
    const rowsOf = (v) => (Array.isArray(v[0]?.[0]) ? v.flatMap(rowsOf) : v);
    const mean = rowsOf(st.mean);
    const std = rowsOf(st.std);
    const cols = mean[0].length;
    const lead = axes.slice(0, -1);
    const shape = [];
    for (let v = st.mean; Array.isArray(v); v = v[0]) shape.push(v.length);
    const short = { layer: "L", head: "H", pos: "pos " };
    const rowLabels = mean.map((_, i) => {
      const idx = [];
      for (let k = lead.length - 1, rest = i; k >= 0; k--) {
        idx[k] = rest % shape[k];
        rest = Math.floor(rest / shape[k]);
      }
      return lead.map((a, k) => `${short[a]}${idx[k]}`).join(" ");
    });
    const first = this.reports[al?.aligned?.[0]];
    const across = axes[axes.length - 1];
    const tokens = across === "pos" && first?.tokens?.clean?.length === cols ? first.tokens.clean.map((t) => visibleText(t.text)) : null;
    $("ds-site-plot").replaceChildren();
    new Heatmap($("ds-site-plot"), {
      title: `${site}: ${m} ${d.replaceAll("_", " ")}, mean over ${st.n} pairs`,
      component: site,
      rows: mean,
      layers: mean.length,
      cols,
      colLabels: tokens,
      rowLabels: lead.length > 1 ? rowLabels : null,
      yLabel: lead.join(" · "),
      xLabel: tokens ? "position (clean tokens of the first aligned pair)" : across,
      firstDiff: tokens ? al.first_diff : null,
      valueName: `mean ${m}`,
      unit: unitOf(m, site),
      filename: `patchlab-dataset-${m}-${d}-${site}`,
      info: (row, col, v) => [`${rowLabels[row]} · ${across} ${col}${tokens ? ` ${JSON.stringify(first.tokens.clean[col].text)}` : ""}`, `mean ${fmt(v, 6)} ± ${fmt(std[row][col], 6)} (std over ${st.n} pairs)`],
    });
  }

  renderPairs() {
    const t = $("ds-pairs");
    const head = el("tr");
    for (const h of ["#", "clean", "corrupt", "correct", "incorrect", "m clean", "m corrupt", "r(IG*, AP) heads c→k", "status"]) head.append(el("th", null, h));
    const thead = el("thead");
    thead.append(head);
    const body = el("tbody");
    this.rows = (this.data?.pairs || []).map((p, k) => {
      const tr = el("tr");
      tr.dataset.index = String(k);
      tr.addEventListener("click", () => this.open(k));
      tr.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          this.open(k);
        }
      });
      body.append(tr);
      return tr;
    });
    t.replaceChildren(thead, body);
    for (let k = 0; k < this.rows.length; k++) this.renderRow(k);
  }

  renderRow(k) {
    const tr = this.rows?.[k];
    if (!tr) return;
    const p = this.data.pairs[k];
    const r = this.reports[k];
    const st = this.state[k] || "pending";
    const r2 = r?.analysis?.correlations?.heads?.ig_norm_clean_to_corrupt__vs__ap_clean_to_corrupt;
    const smallGap = r?.warnings?.some((w) => w.code === "small_gap");
    const cells = [
      String(k),
      p.clean,
      p.corrupt,
      JSON.stringify(p.correct),
      JSON.stringify(p.incorrect),
      r ? fmt(r.metric.clean, 3) : "",
      r ? fmt(r.metric.corrupt, 3) : "",
      r && r2 !== undefined ? fmt(r2, 3) : "",
      st === "error" ? `error: ${this.errors[k]}` : st === "done" ? (smallGap ? "done (small gap: left out) — open" : "done — open") : st,
    ];
    tr.replaceChildren(...cells.map((c, i) => el("td", i === 1 || i === 2 ? "prompt" : i === 8 ? "status" : null, c)));
    tr.className = `pair ${st}`;
    tr.tabIndex = st === "done" ? 0 : -1;
    tr.title = st === "done" ? "Open this pair in the single-pair views" : "";
  }

  open(k) {
    const r = this.reports[k];
    if (r) this.openPair(r, k, this.data);
  }
}
