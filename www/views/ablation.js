// Click-to-ablate: the panel above a report's plots that holds the ablation
// set (shift-click in a heatmap, or Ablate mode, or the latent sets), asks
// the engine for the metric with those components mean-ablated, and shows
// how much of the clean-minus-corrupt gap is retained.

import { componentLabel, fmt } from "../plots.js";
import { el } from "../dom.js";

export class AblationPanel {
  /**
   * box: the panel's element; ablation: the report's Ablation set;
   * ablate(request) → Promise<{metric_clean, metric_corrupt,
   * metric_ablated}> (PatchLab.ablate); report() → the report shown;
   * visible() → whether the view shown uses the panel (Heads, Neurons, Latent).
   */
  constructor(box, ablation, ablate, report, visible = () => true) {
    this.box = box;
    this.visible = visible;
    this.ablation = ablation;
    this.ablate = ablate;
    this.report = report;
    this.build();
    ablation.on((changed) => {
      this.render();
      if (changed) this.run();
    });
  }

  /** The fixed parts: mode toggle, fill buttons, set list, metrics. */
  build() {
    const head = el("div", "ablation-head");
    head.append(el("strong", null, "Mean ablation"));
    const mode = el("label", "ablate-mode");
    this.modeBox = el("input");
    this.modeBox.type = "checkbox";
    this.modeBox.addEventListener("change", () => this.ablation.setMode(this.modeBox.checked));
    mode.append(this.modeBox, document.createTextNode(" Ablate mode"));
    head.append(mode, el("span", "hint", "Shift-click a head or neuron in a heatmap to add it to the set or take it out; in Ablate mode a plain click does the same (otherwise a click pins). Ablated components are held at their corrupt-run activations; ✕ marks them."));
    this.setBox = el("div", "ablate-set");
    this.metricsBox = el("p", "ablate-metrics");
    this.metricsBox.setAttribute("aria-live", "polite");
    this.box.append(head, this.fillRow(), this.setBox, this.metricsBox);
  }

  /** "Fill from the latent components": AND / OR sets found by IG*, AP or both, and Clear. */
  fillRow() {
    const fill = el("div", "ablate-fill");
    fill.append(el("span", "hint", "Fill from the latent components: "));
    this.fillButtons = [];
    for (const [which, label] of [["and", "AND"], ["or", "OR"]]) {
      const group = el("span", "fill-group");
      group.append(el("span", null, `${label}: `));
      for (const [pick, text, title] of [["ig", "IG*", "found by IG* (gap-normalised IG)"], ["ap", "AP", "found by AP"], ["both", "both", "found by IG* and by AP (IG* ∩ AP)"]]) {
        const b = el("button", "small", text);
        b.type = "button";
        b.dataset.fill = `${which}:${pick}`;
        b.title = `The ${label} components ${title}, heads and neurons`;
        b.addEventListener("click", () => this.ablation.set(this.latentSet(which, pick)));
        this.fillButtons.push(b);
        group.append(b);
      }
      fill.append(group);
    }
    const clear = el("button", "small ablate-clear", "Clear");
    clear.type = "button";
    clear.addEventListener("click", () => this.ablation.set([]));
    fill.append(clear);
    return fill;
  }

  /** The report's latent components of one kind (and / or) found by IG* ("ig"), AP or both. */
  latentSet(which, pick) {
    const lat = this.report()?.analysis?.latent || {};
    const out = [];
    for (const c of ["heads", "neurons"]) {
      const get = (m) => lat[m]?.[c]?.[which];
      const ig = get("ig_norm"), ap = get("ap");
      let list;
      if (pick === "ig") list = ig;
      else if (pick === "ap") list = ap;
      else if (ig && ap) {
        const inAp = new Set(ap.map(([l, i]) => `${l}:${i}`));
        list = ig.filter(([l, i]) => inAp.has(`${l}:${i}`));
      }
      for (const [layer, index] of list || []) out.push({ component: c, layer, index });
    }
    return out;
  }

  /** A new report: no result yet, an empty set. */
  reset() {
    this.result = null;
    this.error = null;
    this.ablation.set([], false);
  }

  /** Recomputes the ablated metric for the current set; one request at a time, the latest set wins. */
  async run() {
    if (!this.ablate || !this.report() || this.report().partial) return;
    if (this.running) {
      this.dirty = true;
      return;
    }
    this.running = true;
    this.render();
    try {
      do {
        this.dirty = false;
        const report = this.report();
        const p = report.prompts;
        const heads = this.ablation.pairs("heads"), neurons = this.ablation.pairs("neurons");
        let res = null, err = null;
        try {
          res = await this.ablate({ clean: p.clean, corrupt: p.corrupt, correct: p.correct, incorrect: p.incorrect, bos: p.bos, metric: p.metric || "logit_diff", heads, neurons });
        } catch (e) {
          err = e;
        }
        if (report !== this.report()) break;
        if (!this.dirty) {
          this.result = res && { ...res, heads: heads.length, neurons: neurons.length };
          this.error = err;
          this.count = (this.count || 0) + 1;
        }
      } while (this.dirty);
    } finally {
      this.running = false;
      this.render();
    }
  }

  /** Shown for a finished report with prompts: the mode, the fill buttons, the set and the metrics. */
  render() {
    const r = this.report();
    if (!r || r.partial || !r.prompts || !this.visible()) {
      this.box.hidden = true;
      return;
    }
    this.box.hidden = false;
    this.modeBox.checked = this.ablation.mode;
    const lat = r.analysis?.latent || {};
    for (const b of this.fillButtons) {
      const [which, pick] = b.dataset.fill.split(":");
      const has = (m) => ["heads", "neurons"].some((c) => Array.isArray(lat[m]?.[c]?.[which]));
      const key = pick === "ig" ? "ig_norm" : pick;
      b.disabled = pick === "both" ? !(has("ig_norm") && has("ap")) : !has(key);
    }
    const items = this.ablation.list();
    const chips = items.map((p) => {
      const c = el("button", "small ablate-item", `${componentLabel(p.component, p.layer, p.index)} ✕`);
      c.type = "button";
      c.title = "Take it out of the ablation set";
      c.dataset.component = p.component;
      c.addEventListener("click", () => this.ablation.toggle(p));
      return c;
    });
    this.setBox.replaceChildren(el("span", "hint", items.length ? `Ablation set (${items.length}): ` : "Ablation set: empty."), ...chips);
    this.renderMetrics(r);
  }

  /** The metrics: from the last ablation, or the report's until there is one; the retained share of the gap. */
  renderMetrics(r) {
    const box = this.box;
    const res = this.result;
    const mc = res ? res.metric_clean : r.metric?.clean;
    const mk = res ? res.metric_corrupt : r.metric?.corrupt;
    const parts = [`clean m = ${fmt(mc, 4)}`, `corrupt m = ${fmt(mk, 4)}`];
    const ablated = el("strong", "ablated");
    if (this.running) ablated.textContent = "ablated m = computing…";
    else if (this.error) ablated.textContent = `ablation failed: ${this.error.message}`;
    else if (res) {
      const gap = res.metric_clean - res.metric_corrupt;
      const kept = gap !== 0 ? (res.metric_ablated - res.metric_corrupt) / gap : null;
      ablated.textContent = `ablated m = ${fmt(res.metric_ablated, 4)} · retained (m_abl − m_corrupt) / (m_clean − m_corrupt) = ${kept === null ? "undefined" : fmt(kept, 3)}`;
      box.dataset.ablated = String(res.metric_ablated);
      box.dataset.clean = String(res.metric_clean);
      box.dataset.corrupt = String(res.metric_corrupt);
      box.dataset.retained = kept === null ? "" : String(kept);
    } else ablated.textContent = "ablated m = (choose components)";
    if (!res || this.error) for (const k of ["ablated", "clean", "corrupt", "retained"]) delete box.dataset[k];
    box.dataset.state = this.running ? "computing" : this.error ? "error" : res ? "done" : "idle";
    box.dataset.count = String(this.count || 0);
    this.metricsBox.replaceChildren(document.createTextNode(`${parts.join(" · ")} · `), ablated);
    if (res) {
      const how = el("span", "hint", ` (${res.heads} heads, ${res.neurons} neurons; computed on the ${res.backend === "gpu" ? "GPU" : "CPU"})`);
      if (res.note) how.title = res.note;
      this.metricsBox.append(how);
    }
  }
}
