// <patch-lab>: patchlab in a blog post, with one module script.
//
//   <script type="module" src="https://your.site/patchlab/embed.js"></script>
//   <patch-lab report="ioi-report.json" view="heads"></patch-lab>          (instant: a saved report)
//   <patch-lab model="openai-community/gpt2" clean="…" corrupt="…"
//              correct=" Mary" incorrect=" John" methods="ap,ig" view="scatter"></patch-lab>
//
// Attributes: clean, corrupt, correct, incorrect, methods, directions,
// components, sites (patching sites or bundles, e.g. "block_every,dla"),
// bos ("false" to drop BOS), ig-steps, view (heads | neurons | scatter |
// latent | resid | head_sites | pattern | dla), site (resid's site, e.g.
// resid_mid), head ("layer.head": pattern's and dla's head), method and
// direction (head_sites', the pattern overlay's and features'), model (Hub repo id or base URL), gpu ("software":
// compute on a software WebGPU adapter such as SwiftShader, which is otherwise not used), report (URL of a
// report JSON: rendered without loading a model, with a "Recompute live"
// button). view="features" shows SAE features (hook: which SAE's, by its
// hook name); live, sae names the SAEs to load and score, comma-separated:
// "release/id" of SAELens's GPT-2 small releases (sae-releases.js, e.g.
// gpt2-small-res-jb/blocks.8.hook_resid_pre, from the Hugging Face Hub) or
// the URL of a folder with cfg.json and sae_weights.safetensors (without
// components, only the features are scored then). view="circuit" shows a circuit report instead (the Circuit tab's
// graph, slider, curves and exports): live from the prompts with method
// (eap-ig | eap | clean-corrupted | exact), steps, select (greedy | topn),
// edges (the circuit's n) and exact ("true": exact edge patching too), or
// results-only from report (or src), a saved circuit.json. `report` and
// `model` resolve against the page, like any HTML
// attribute; everything else (the stylesheet, the worker, the wasm, the
// default model ./model/) against this script's URL.
//
// This script may come from another origin than the page's (a blog loading
// it from the lab's site): the worker is then started from a same-origin
// blob: module that imports this origin's worker.js (see patchlab.js), and
// that origin must send Access-Control-Allow-Origin (`patchlab serve` does).
// A page with a Content-Security-Policy must allow, for origin B of this
// script: script-src B 'wasm-unsafe-eval'; worker-src blob: B; connect-src B
// and the model's host; style-src B. A saved report needs only script-src,
// style-src and connect-src (the report's host).

import { CircuitTools, PatchLab, parseSaeSpec } from "./patchlab.js";
import { ReportView, checkReport } from "./views.js";
import { stageText } from "./views/report.js";
import { livePlan, sameShape, shapeText } from "./live-model.js";
import { el, fetchFailure } from "./dom.js";

// the Circuit view's module loads only for view="circuit"
const circuitModule = () => import("./circuit.js");

const STYLE = new URL("./style.css", import.meta.url).href;

class PatchLabElement extends HTMLElement {
  static get observedAttributes() {
    return ["report", "clean", "corrupt", "correct", "incorrect", "methods", "directions", "components", "sites", "view", "site", "head", "method", "direction", "model", "bos", "ig-steps", "src", "edges", "select", "steps", "exact", "gpu", "sae", "hook"];
  }

  connectedCallback() {
    if (this.shadowRoot) return;
    const root = this.attachShadow({ mode: "open" });
    const link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = STYLE;
    this.statusLine = el("p", "note");
    this.statusLine.setAttribute("aria-live", "polite");
    this.errorLine = el("p", "error");
    this.errorLine.hidden = true;
    this.progress = el("progress");
    this.progress.max = 1;
    this.progress.hidden = true;
    this.recompute = el("button", "small", "Recompute live");
    this.recompute.type = "button";
    this.recompute.hidden = true;
    this.recompute.addEventListener("click", () => (this.report ? this.askLive() : this.live()));
    // the question before a saved report's model is downloaded
    this.confirmBox = el("div", "confirm");
    this.confirmBox.hidden = true;
    this.confirmText = el("p", "note");
    const yes = el("button", "small", "Download and recompute");
    yes.type = "button";
    yes.dataset.action = "confirm-live";
    yes.addEventListener("click", () => {
      this.confirmBox.hidden = true;
      this.live(this.plan);
    });
    const no = el("button", "small", "Cancel");
    no.type = "button";
    no.dataset.action = "cancel-live";
    no.addEventListener("click", () => {
      this.confirmBox.hidden = true;
      this.recompute.hidden = false;
      this.dataset.state = "report";
    });
    this.confirmBox.append(this.confirmText, yes, " ", no);
    const bar = el("div", "run-row");
    bar.append(this.progress, this.statusLine, this.recompute);
    const box = el("div", "patch-lab-embed");
    root.append(link, bar, this.confirmBox, this.errorLine, box);
    const a = (k) => this.getAttribute(k) || undefined;
    if (a("view") === "circuit") {
      this.circuitMode = true;
      circuitModule().then(
        ({ CircuitView, checkCircuitReport }) => {
          this.checkCircuitReport = checkCircuitReport;
          const edges = Number(a("edges"));
          this.view = new CircuitView(box, {
            method: a("method"),
            select: a("select"),
            edges: a("edges") !== undefined && Number.isInteger(edges) ? edges : undefined,
            ops: this.circuitOps(),
            filenamePrefix: "patchlab-circuit",
          });
          this.start();
        },
        (e) => this.fail(`Could not load the circuit view: ${e.message}`),
      );
      return;
    }
    this.view = new ReportView(box, { view: a("view") || "heads", site: a("site"), head: a("head"), method: a("method"), direction: a("direction"), hook: a("hook"), filenamePrefix: "patchlab" });
    this.start();
  }

  /** "Recompute live" of a saved report: which model it loads and how much that downloads, asked before anything is fetched. */
  askLive() {
    this.plan = livePlan(this.report, this.getAttribute("model") || null);
    this.confirmText.textContent = this.plan.text;
    this.recompute.hidden = true;
    this.confirmBox.hidden = false;
    this.dataset.state = "confirm";
  }

  disconnectedCallback() {
    this.abort?.abort();
    this.lab?.close();
    this.lab = null;
    this.tools?.close();
    this.tools = null;
  }

  /** The circuit view's engine calls: on the loaded model, else in a worker without one. */
  circuitOps() {
    const tools = () => this.lab || (this.tools ||= CircuitTools.create());
    return {
      reevaluate: this.lab ? (r, o) => this.lab.reevaluateCircuit(r, o) : null,
      reselect: (r, o) => tools().reselectCircuit(r, o),
      graph: (r, o) => tools().circuitGraph(r, o),
    };
  }

  async start() {
    const url = this.getAttribute("report") || (this.circuitMode ? this.getAttribute("src") : null);
    if (url && this.circuitMode) {
      try {
        this.status("Loading the saved circuit report…");
        const res = await fetchReport(url);
        const report = this.checkCircuitReport(JSON.parse(await res.text()));
        this.report = report;
        this.view.update(report);
        this.status(`Saved circuit report of ${report.model.name} (${report.settings.backend}); no model is loaded, so the slider re-selects without faithfulness.`);
        this.recompute.hidden = false;
        this.dataset.state = "report";
      } catch (e) {
        this.fail(`Could not show the circuit report ${url}: ${e.message}`);
      }
      return;
    }
    if (url) {
      try {
        this.status("Loading the saved report…");
        const res = await fetchReport(url);
        let report = checkReport(JSON.parse(await res.text()));
        if (report.schema === 1) {
          // an older patchlab's report: derive IG* and the current analysis in
          // a worker; where the page's policy allows no worker, the views
          // that need them say so and the rest renders
          try {
            report = checkReport(await PatchLab.upgradeReport(report));
          } catch (e) {
            console.warn(`patchlab: a schema-1 report is shown as saved (${e.message})`);
          }
        }
        this.report = report;
        this.view.update(report);
        this.status(`Saved report of ${report.model.name} (${report.backend}).`);
        this.recompute.hidden = false;
        this.dataset.state = "report";
      } catch (e) {
        this.fail(`Could not show the report ${url}: ${e.message}`);
      }
      return;
    }
    this.live();
  }

  status(text) {
    this.statusLine.textContent = text;
  }

  fail(message) {
    this.status("");
    this.errorLine.textContent = message;
    this.errorLine.hidden = false;
    this.progress.hidden = true;
    this.dataset.state = "error";
  }

  /**
   * The SAEs to load and score: the sae attribute's (comma-separated
   * "release/id" or folder URLs), else those of the report shown that were
   * loaded from the Hub (loadSaeFromHub names them "release/id").
   */
  saeSpecs() {
    const attr = this.getAttribute("sae");
    if (attr) return attr.split(",").map((x) => x.trim()).filter(Boolean);
    return (this.report?.settings?.saes || []).map((s) => s.name).filter((n) => typeof n === "string" && !!parseSaeSpec(n)?.release);
  }

  // What "Recompute live" computes: the attributes, else every setting of
  // the report shown (its metric, IG rule and percentile too, so that a
  // saved report is recomputed as it was computed).
  request() {
    const a = (k) => this.getAttribute(k);
    const r = this.report?.prompts || {};
    const saved = this.report?.settings || {};
    const list = (k, fallback) => (a(k) ? a(k).split(",").map((s) => s.trim()).filter(Boolean) : fallback);
    const saes = this.saeSpecs();
    // a live features figure scores only the features unless components say otherwise
    const components = list("components", saved.components ?? (saes.length && a("view") === "features" ? [] : undefined));
    // sites (heads and neurons among them) replace components
    const savedSites = saved.sites?.length || saved.dla ? [...(saved.components || []), ...(saved.sites || []), ...(saved.dla ? ["dla"] : [])] : undefined;
    const sites = a("sites") ? [...(a("components") ? components : []), ...list("sites")] : savedSites;
    return {
      clean: a("clean") ?? r.clean,
      corrupt: a("corrupt") ?? r.corrupt,
      correct: a("correct") ?? r.correct,
      incorrect: a("incorrect") ?? r.incorrect,
      bos: a("bos") ? a("bos") !== "false" : r.bos ?? true,
      metric: r.metric,
      methods: list("methods", saved.methods),
      directions: list("directions", saved.directions),
      components: sites ? undefined : components,
      sites,
      igSteps: a("ig-steps") ? Number(a("ig-steps")) : saved.ig_steps,
      igRule: saved.ig_rule,
      percentile: saved.percentile,
      saes: saes.length ? ["all"] : undefined,
    };
  }

  /** Loads the SAEs the element names (once each), with their download's progress. */
  async loadSaes() {
    this.saesLoaded ||= new Set();
    for (const spec of this.saeSpecs()) {
      if (this.saesLoaded.has(spec)) continue;
      this.status(`Loading the SAE ${spec}…`);
      await this.lab.loadSaeSpec(spec, {
        onProgress: (p) => {
          if (p.phase === "sae-weights" && p.total) {
            this.progress.value = p.loaded / p.total;
            this.status(`Loading the SAE ${spec}: ${Math.round((100 * p.loaded) / p.total)} %`);
          }
        },
      });
      this.saesLoaded.add(spec);
    }
  }

  /** Computes live; `plan` (livePlan) when it recomputes a saved report, which the reader agreed to. */
  async live(plan = null) {
    this.recompute.hidden = true;
    this.errorLine.hidden = true;
    this.progress.hidden = false;
    this.progress.removeAttribute("value");
    const saved = plan ? this.report : null;
    try {
      if (!this.lab) {
        this.saesLoaded = new Set(); // a new model has none
        this.status("Loading the model…");
        this.lab = await PatchLab.load({
          model: (plan ? plan.spec : this.getAttribute("model")) || (await PatchLab.defaultModel()),
          // gpu="software": compute on a software WebGPU adapter (SwiftShader) anyway
          softwareGpu: this.getAttribute("gpu") === "software",
          onProgress: (p) => {
            if (p.phase === "weights" && p.total) {
              this.progress.value = p.loaded / p.total;
              this.status(`Loading the model: ${Math.round((100 * p.loaded) / p.total)} %`);
            }
          },
        });
      }
      if (saved && !sameShape(this.lab.info, saved.model)) {
        // another model's numbers would replace the figure's silently
        this.progress.hidden = true;
        this.recompute.hidden = false;
        this.fail(`The model loaded, ${this.lab.info.name} (${shapeText(this.lab.info)}), is not the report's ${saved.model.name} (${shapeText(saved.model)}): not recomputed, the figure still shows the saved report.`);
        this.lab.close();
        this.lab = null;
        return;
      }
      const other = saved && this.lab.info.name !== saved.model.name ? ` with ${this.lab.info.name}, not the report's ${saved.model.name} (same shape; the weights may differ)` : "";
      if (this.circuitMode) return await this.liveCircuit(other);
      await this.loadSaes();
      const req = this.request();
      for (const k of ["clean", "corrupt", "correct", "incorrect"]) {
        if (typeof req[k] !== "string") throw new Error(`<patch-lab> needs the ${k} attribute (or a report)`);
      }
      for (const k of Object.keys(req)) if (req[k] === undefined) delete req[k];
      this.abort = new AbortController();
      this.status("Computing…");
      const report = await this.lab.analyze({
        ...req,
        signal: this.abort.signal,
        onProgress: (p) => {
          this.progress.value = p.fraction;
          this.status(`${stageText(p.stage)} — ${Math.round(p.fraction * 100)} %`);
        },
      });
      this.report = report;
      this.view.update(report);
      this.progress.hidden = true;
      this.status(`Computed live${other} on ${report.backend} in ${(report.timings_ms.total / 1000).toFixed(1)} s.`);
      this.dataset.state = "done";
    } catch (e) {
      this.fail(e.message);
    }
  }

  /** view="circuit", live: the attributes (else the shown report's pairs and settings) through PatchLab.circuit. */
  async liveCircuit(other = "") {
    const a = (k) => this.getAttribute(k);
    const saved = this.report?.settings || {};
    const first = this.report?.pairs?.[0] || {};
    const attrPair = ["clean", "corrupt", "correct", "incorrect"].some((k) => a(k) !== null);
    const pairs = attrPair || !this.report
      ? [{ clean: a("clean") ?? first.clean, corrupt: a("corrupt") ?? first.corrupt, correct: a("correct") ?? first.correct, incorrect: a("incorrect") ?? first.incorrect, bos: a("bos") ? a("bos") !== "false" : first.bos ?? true, metric: first.metric }]
      : this.report.pairs;
    for (const k of ["clean", "corrupt", "correct", "incorrect"]) {
      if (typeof pairs[0][k] !== "string") throw new Error(`<patch-lab view="circuit"> needs the ${k} attribute (or a report)`);
    }
    const num = (k, fallback) => (a(k) !== null ? Number(a(k)) : fallback);
    this.abort = new AbortController();
    this.status("Computing the circuit…");
    const report = await this.lab.circuit({
      pairs,
      method: a("method") ?? saved.method,
      steps: num("steps", saved.steps),
      select: a("select") ?? saved.select,
      edges: num("edges", saved.edges),
      exact: a("exact") !== null ? a("exact") === "true" : (saved.methods || []).includes("exact"),
      signal: this.abort.signal,
      onProgress: (p) => {
        this.progress.value = p.fraction;
        this.status(`${stageText(p.stage)} — ${Math.round(p.fraction * 100)} %`);
      },
    });
    this.report = report;
    this.view.ops = this.circuitOps();
    this.view.want = { method: report.settings.method, select: report.settings.select, n: report.settings.edges };
    this.view.update(report);
    this.progress.hidden = true;
    this.status(`Computed live${other} on ${report.settings.backend}.`);
    this.dataset.state = "done";
  }
}

/** The saved report at `url` (against the page, like any attribute), or an error that says what failed. */
async function fetchReport(url) {
  let res;
  try {
    res = await fetch(new URL(url, document.baseURI));
  } catch (e) {
    throw new Error(fetchFailure(url, e), { cause: e });
  }
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return res;
}

if (!customElements.get("patch-lab")) customElements.define("patch-lab", PatchLabElement);
