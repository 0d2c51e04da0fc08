// The lab page: inputs with live tokenization, Run / Cancel with progress,
// results views with click-to-ablate, export, share links, ?embed and
// results-only (?report=URL); the Dataset tab (dataset.js) and the Circuit
// tab (circuit.js); the SAE features box (sae.js).
// User text only ever reaches the page through textContent and .value.

import { CircuitTab, isCircuitReport } from "./circuit.js";
import { DatasetTab } from "./dataset.js";
import { SaeBox } from "./sae.js";
import { CircuitTools, PatchLab, parseSaeSpec } from "./patchlab.js";
import { reportNpyZip } from "./npy.js";
import { BUNDLES, SITE_AXES } from "./sites.js";
import { ReportView } from "./views.js";
import { addPartial, checkReport, partialReport, stageText } from "./views/report.js";
import { reportCsv } from "./views/exports.js";
import { $, download, fetchFailure, seconds, visibleText } from "./dom.js";
import { costLine } from "./cost.js";
import { livePlan, sameShape, shapeText } from "./live-model.js";

const EXAMPLE = {
  clean: "When Mary and John went to the store, John gave a drink to",
  corrupt: "When Mary and John went to the store, Mary gave a drink to",
  correct: " Mary",
  incorrect: " John",
};
const ALL = {
  methods: ["ap", "ig", "atp"],
  directions: ["clean_to_corrupt", "corrupt_to_clean"],
  components: ["heads", "neurons"],
  // the patching sites beyond heads and neurons (index.html's Sites boxes)
  sites: [...Object.keys(SITE_AXES), "dla"],
};

const params = new URLSearchParams(location.search);
const embed = params.has("embed");
const reportUrl = params.get("report");
const autorun = ["clean", "corrupt", "correct", "incorrect"].every((k) => params.has(k)) && params.get("run") !== "0";

let lab = null;
let report = null;
let running = null; // AbortController of the run in progress
let valid = false;
let view = null;
let dataset = null;
let circuit = null;
let circuitTools = null;
let saeBox = null;
let pendingPin = null; // a circuit node clicked before the single pair had a report
const MODES = ["pair", "dataset", "circuit"];
let mode = MODES.includes(params.get("tab")) && !embed && (!reportUrl || params.get("tab") === "circuit") ? params.get("tab") : "pair";

// for tests and the load-to-interactive figure
const status = { readyMs: null, loadMs: null, state: "loading", analyses: 0 };
Object.defineProperty(status, "report", { get: () => report, enumerable: false });
window.patchlabPage = status;

function show(id, on) {
  $(id).hidden = !on;
}
function setText(id, text) {
  $(id).textContent = text;
}
function errorBox(id, message, actions = []) {
  const box = $(id);
  box.replaceChildren(document.createTextNode(message));
  for (const [label, f] of actions) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "small";
    b.textContent = label;
    b.addEventListener("click", f);
    box.append(" ", b);
  }
  box.hidden = !message;
}

// ---------- state <-> URL ----------

function listParam(name) {
  const v = params.get(name);
  if (v === null) return ALL[name];
  const items = v.split(",").map((s) => s.trim()).filter((s) => ALL[name].includes(s));
  return items.length ? items : ALL[name];
}

/** The sites of a link (?sites=block_every,dla): the engine's bundles expanded, unknown names dropped; none by default. */
function sitesParam() {
  const words = (params.get("sites") || "").split(",").map((s) => s.trim());
  return words.flatMap((w) => BUNDLES[w] || [w]).filter((w) => ALL.sites.includes(w));
}

/** Sites for a link: a bundle's name where all of its sites are on. */
function compactSites(sites) {
  let rest = [...sites];
  const out = [];
  for (const [name, list] of Object.entries(BUNDLES)) {
    if (list.every((x) => rest.includes(x))) {
      out.push(name);
      rest = rest.filter((x) => !list.includes(x));
    }
  }
  return [...out, ...rest].join(",");
}

function setChecked(name, on) {
  for (const box of document.querySelectorAll(`input[name=${name}]`)) box.checked = on.includes(box.value);
}

function initInputs() {
  for (const k of ["clean", "corrupt", "correct", "incorrect"]) $(k).value = params.get(k) ?? EXAMPLE[k];
  for (const name of ["methods", "directions", "components"]) setChecked(name, listParam(name));
  setChecked("sites", sitesParam());
  $("bos").checked = params.get("bos") !== "0";
  $("metric").value = params.get("metric") || "logit_diff";
  const steps = Number(params.get("ig_steps"));
  if (Number.isInteger(steps) && steps > 0 && steps <= 1000) $("ig-steps").value = String(steps);
  $("model-input").value = params.get("model") || "";
  // features=1: score the loaded SAEs' features (sae= names the SAEs a link loads)
  saeBox.setWanted(params.get("features") === "1" || params.has("sae"));
  // a bad value is not dropped: the engine refuses it by name at Run
  carried = {
    igRule: params.get("ig_rule") ?? undefined,
    percentile: params.has("percentile") ? Number(params.get("percentile")) : undefined,
  };
}

// Settings the form has no input for (the IG quadrature rule, the latent
// sets' percentile): carried from the URL, a saved report or an opened
// dataset pair into every recompute, so that it computes what was shown.
let carried = {};

/** Copies a report's settings and prompts into the form (and `carried`). */
function fillFromReport(r) {
  for (const k of ["clean", "corrupt", "correct", "incorrect"]) if (typeof r.prompts?.[k] === "string") $(k).value = r.prompts[k];
  if (typeof r.prompts?.bos === "boolean") $("bos").checked = r.prompts.bos;
  $("metric").value = r.prompts?.metric || "logit_diff";
  for (const name of ["methods", "directions", "components"]) {
    const on = r.settings?.[name];
    if (Array.isArray(on)) setChecked(name, on);
  }
  setChecked("sites", [...(Array.isArray(r.settings?.sites) ? r.settings.sites : []), ...(r.settings?.dla ? ["dla"] : [])]);
  if (Number.isInteger(r.settings?.ig_steps)) $("ig-steps").value = String(r.settings.ig_steps);
  saeBox.setWanted(Array.isArray(r.settings?.saes) && r.settings.saes.length > 0);
  carried = { igRule: r.settings?.ig_rule, percentile: r.settings?.percentile };
}

/** Every input of the single-pair form, to put back later (a dataset pair opened over them). */
function formValues() {
  const out = {};
  for (const e of document.querySelectorAll("#inputs input, #inputs textarea")) {
    if (!e.id && !e.name) continue;
    const key = e.id || `${e.name}:${e.value}`;
    out[key] = e.type === "checkbox" ? e.checked : e.value;
  }
  return out;
}

function setFormValues(values) {
  for (const e of document.querySelectorAll("#inputs input, #inputs textarea")) {
    const key = e.id || `${e.name}:${e.value}`;
    if (!(key in values)) continue;
    if (e.type === "checkbox") e.checked = values[key];
    else e.value = values[key];
  }
}

function checked(name) {
  return [...document.querySelectorAll(`input[name=${name}]`)].filter((b) => b.checked).map((b) => b.value);
}

function request() {
  return {
    clean: $("clean").value,
    corrupt: $("corrupt").value,
    correct: $("correct").value,
    incorrect: $("incorrect").value,
    methods: checked("methods"),
    directions: checked("directions"),
    components: checked("components"),
    sites: checked("sites"),
    bos: $("bos").checked,
    // checked by validate(): 0, empty or a fraction is refused, never replaced
    igSteps: $("ig-steps").value.trim() === "" ? NaN : Number($("ig-steps").value),
    metric: $("metric").value.trim() || "logit_diff",
    // the loaded SAEs' features, when "Score SAE features" is ticked
    saes: saeBox?.request(),
    ...carried,
  };
}

/** What PatchLab.analyze gets: `sites` (with heads / neurons among them) when any site is on, else `components`. */
function analyzeRequest(r) {
  const { sites, components, ...rest } = r;
  // IG steps matter only with IG, where validate() refused a bad value
  if (!Number.isInteger(rest.igSteps)) delete rest.igSteps;
  if (!rest.saes) delete rest.saes;
  return sites.length ? { ...rest, sites: [...components, ...sites] } : { ...rest, components };
}

/** The page's state as a URL (what "Copy share link" copies). */
function stateUrl() {
  const r = request();
  const p = new URLSearchParams();
  for (const k of ["clean", "corrupt", "correct", "incorrect"]) p.set(k, r[k]);
  p.set("methods", r.methods.join(","));
  if (r.directions.length !== 2) p.set("directions", r.directions.join(","));
  if (r.components.length !== 2) p.set("components", r.components.join(","));
  if (r.sites.length) p.set("sites", compactSites(r.sites));
  if (!r.bos) p.set("bos", "0");
  if (Number.isInteger(r.igSteps) && r.igSteps !== 50) p.set("ig_steps", String(r.igSteps));
  if (r.metric !== "logit_diff") p.set("metric", r.metric);
  if (r.igRule !== undefined) p.set("ig_rule", r.igRule);
  if (r.percentile !== undefined) p.set("percentile", String(r.percentile));
  if (saeBox?.wanted()) p.set("features", "1");
  const saes = saeBox?.hubSpecs() || [];
  if (saes.length) p.set("sae", saes.join(","));
  if (mode !== "pair") p.set("tab", mode);
  // a saved circuit report stays the page's subject until a model computes another
  if (reportUrl && !lab && mode === "circuit") p.set("report", reportUrl);
  if (mode === "circuit" && circuit) for (const [k, v] of Object.entries(circuit.urlState())) p.set(k, v);
  p.set("view", view ? view.view : params.get("view") || "heads");
  // the view's site, head, method and direction (those it uses)
  if (view) for (const [k, v] of Object.entries(view.urlState())) p.set(k, v);
  const model = $("model-input").value.trim();
  if (model) p.set("model", model);
  if (softwareGpu) p.set("gpu", "software");
  if (embed) p.set("embed", "");
  return `${location.origin}${location.pathname}?${p.toString().replace(/embed=(&|$)/, "embed$1")}`;
}

function syncUrl() {
  if (reportUrl && report && !lab) return; // keep ?report= while showing a saved report
  history.replaceState(null, "", stateUrl());
  if (embed) {
    const u = new URL(stateUrl());
    u.searchParams.delete("embed");
    $("embed-link").href = u.href;
  }
}

// ---------- model ----------

const defaultModel = () => PatchLab.defaultModel();

function modelLine(i, ms) {
  return `${i.name}: ${i.n_layers} layers × ${i.n_heads} heads, d_model ${i.d_model}, ${i.d_mlp} neurons per layer${ms === null ? "" : ` — loaded in ${(ms / 1000).toFixed(1)} s`}`;
}

function bytes(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(0)} kB`;
  return `${n} B`;
}

// ?gpu=software: compute on a software WebGPU adapter (SwiftShader,
// lavapipe) anyway; by default such an adapter is not used
const softwareGpu = params.get("gpu") === "software";

/** The note under the model: which engine "auto" computes on, and why. */
function engineNote(env) {
  const cpu = `WebAssembly${env.simd ? " SIMD" : ""}, ${env.threads > 1 ? `${env.threads} threads` : `single-threaded${env.threadsNote ? ` because ${env.threadsNote}` : ""}`}`;
  if (env.webgpu && env.software) {
    return `WebGPU's adapter here (${env.adapter}) is a software renderer, not a GPU: patchlab computes on it because the link asks for it (gpu=software), though WebAssembly on the CPU (${cpu}) is usually much faster. Remove gpu=software from the link to compute on the CPU.`;
  }
  if (env.webgpu) return `WebGPU is available (${env.adapter}): patchlab computes on the GPU (on the CPU, ${cpu}, if the GPU engine cannot start; the summary says which).`;
  if (env.software) {
    return `WebGPU's only adapter here (${env.adapter}) is a software renderer, not a GPU, and slower than WebAssembly: patchlab computes on the CPU (${cpu}). Add gpu=software to the link to use that adapter anyway.`;
  }
  return `This browser has no WebGPU: patchlab runs on the CPU (${cpu}). The neuron sweep is slower there.`;
}

async function loadModel(spec) {
  // the working model stays until another one has loaded: a failed load keeps it
  const previous = lab;
  status.state = "loading";
  errorBox("load-error", "");
  show("load-status", true);
  const t0 = performance.now();
  const label = typeof spec === "string" ? spec : "local files";
  setText("load-text", `Loading ${label}…`);
  $("load-progress").removeAttribute("value");
  let next;
  try {
    next = await PatchLab.load({
      model: spec,
      softwareGpu,
      onProgress: (p) => {
        if (p.phase === "weights") {
          $("load-progress").value = p.total ? p.loaded / p.total : 0;
          setText("load-text", `${p.cached ? "Reading" : "Downloading"} model.safetensors: ${bytes(p.loaded)}${p.total ? ` of ${bytes(p.total)}` : ""}`);
        } else if (p.phase === "resume") {
          setText("load-text", `The connection broke after ${bytes(p.loaded)} of ${bytes(p.total)}: resuming the download (attempt ${p.attempt})…`);
        } else if (p.phase === "building") {
          $("load-progress").removeAttribute("value");
          setText("load-text", "Preparing the model…");
        } else {
          setText("load-text", `Reading ${p.phase === "config" ? "config.json" : "the tokenizer"}…`);
        }
      },
    });
  } catch (e) {
    errorBox("load-error", `Could not load the model: ${e.message}`, [
      ["Clear cache and retry", async () => { await PatchLab.clearCache(); loadModel(spec); }],
      ["Retry", () => loadModel(spec)],
    ]);
    if (previous) {
      status.state = "ready";
      setText("load-text", `${modelLine(previous.info, null)} — still loaded: the model asked for did not load (below), so the one you were using stays.`);
      $("load-progress").value = 1;
    } else {
      status.state = "error";
      show("load-status", false);
    }
    return false;
  }
  previous?.close();
  lab = next;
  saeBox?.modelChanged();
  // the previous model's top 10 (shown, or still computing) are not this model's
  predictGen++;
  $("suggestion-list").replaceChildren();
  dataset?.modelChanged();
  circuit?.describe();
  valid = false;
  updateRun();
  const i = lab.info;
  status.loadMs = performance.now() - t0;
  $("load-progress").value = 1;
  setText("load-text", modelLine(i, status.loadMs));
  setText("env-note", engineNote(lab.env));
  show("env-note", true);
  dataset?.modelReady();
  circuit?.describe();
  await validate();
  calibrate();
  status.state = "ready";
  status.readyMs = performance.now();
  document.body.dataset.ready = "1";
  return true;
}

// ---------- live tokenization ----------

function chip(text, cls) {
  const c = document.createElement("span");
  c.className = `chip${cls ? ` ${cls}` : ""}`;
  // make spaces and newlines visible
  c.textContent = visibleText(text);
  c.title = JSON.stringify(text);
  return c;
}

function renderChips(id, tokens, diffs) {
  $(id).replaceChildren(...tokens.map((t, i) => chip(t.text, diffs && diffs.has(i) ? "diff" : "")));
}

let validateGen = 0;
async function validate() {
  if (!lab) return;
  const gen = ++validateGen;
  const r = request();
  // the engine's own parser says whether it computes this metric
  const metricError = lab.parseMetric(r.metric).then(() => null, (e) => e.message);
  let toks;
  try {
    toks = await Promise.all([
      lab.tokenize(r.clean, { bos: r.bos }),
      lab.tokenize(r.corrupt, { bos: r.bos }),
      lab.tokenize(r.correct, { bos: false }),
      lab.tokenize(r.incorrect, { bos: false }),
    ]);
  } catch (e) {
    if (gen !== validateGen) return;
    valid = false;
    errorBox("input-error", e.message);
    updateRun();
    return;
  }
  const metric = await metricError;
  if (gen !== validateGen) return;
  const [c, k, a, b] = toks;
  const diffs = new Set();
  for (let i = 0; i < Math.max(c.length, k.length); i++) if (c[i]?.id !== k[i]?.id) diffs.add(i);
  renderChips("clean-chips", c, diffs);
  renderChips("corrupt-chips", k, diffs);
  renderChips("correct-chips", a);
  renderChips("incorrect-chips", b);
  const errors = [];
  const n = lab.info.n_ctx;
  const empty = ["clean", "corrupt"].filter((name) => r[name] === "");
  if (empty.length === 2) errors.push("Both prompts are empty: type a clean and a corrupt prompt.");
  else if (empty.length === 1) errors.push(`The ${empty[0]} prompt is empty: type it (the ${empty[0] === "clean" ? "corrupt" : "clean"} prompt with one or a few words changed).`);
  else if (c.length === 0 || k.length === 0) errors.push("Type both prompts (or keep the BOS token).");
  else if (c.length !== k.length) errors.push(`The prompts must have the same number of tokens, but clean has ${c.length} and corrupt ${k.length}: change words so that both tokenize to the same length.`);
  else if (diffs.size === 0) errors.push("The prompts are identical: change at least one token of the corrupt prompt.");
  if (c.length > n || k.length > n) errors.push(`The model's context holds ${n} tokens: shorten the prompts.`);
  for (const [name, t, text] of [["correct", a, r.correct], ["incorrect", b, r.incorrect]]) {
    if (t.length !== 1) {
      errors.push(t.length === 0
        ? `The ${name} answer is empty: it must be exactly one token (for example " Mary", with its leading space).`
        : `The ${name} answer must be a single token, but ${JSON.stringify(text)} is ${t.length} tokens: ${t.map((x) => `[${x.text}]`).join("")}.`);
    }
  }
  if (a.length === 1 && b.length === 1 && a[0].id === b[0].id) errors.push("The correct and incorrect answers are the same token.");
  if (r.methods.length === 0 || r.directions.length === 0 || (r.components.length + r.sites.length === 0 && !r.saes)) errors.push("Choose at least one method, one direction and one component kind, site or SAE.");
  if (saeBox.wanted() && !r.saes) errors.push("“Score SAE features” is ticked but no SAE is loaded: load one under “SAE features” (or untick it).");
  if (metric) errors.push(`The metric cannot be used: ${metric}.`);
  if (r.methods.includes("ig") && !(Number.isInteger(r.igSteps) && r.igSteps >= 1 && r.igSteps <= 1000)) {
    errors.push(`IG steps must be a whole number from 1 to 1000 (50 is usual), not ${$("ig-steps").value.trim() === "" ? "empty" : JSON.stringify($("ig-steps").value)}: integrated gradients needs at least one point on its path.`);
  }
  if (r.percentile !== undefined && !Number.isFinite(r.percentile)) errors.push(`The link's percentile is not a number: use e.g. percentile=0.9 (the top 10 % form the latent sets).`);
  valid = errors.length === 0;
  errorBox("input-error", errors.join(" "));
  updateRun();
  syncUrl();
  showCostSoon();
}

// ---------- cost before Run ----------

let costGen = 0;

/** The estimate of the form's run on the engine it would use, next to Run; hidden while the form is not valid. */
async function showCost() {
  const gen = ++costGen;
  let est = null;
  if (lab && valid) est = await lab.estimate(analyzeRequest(request())).catch(() => null);
  if (gen !== costGen) return;
  if (!est) {
    show("run-cost", false);
    return;
  }
  const line = costLine(est);
  setText("run-cost-text", line.text);
  show("heads-first", line.headsFirst);
  show("run-cost", true);
  document.body.dataset.estimate = Number.isFinite(est.seconds) ? "seconds" : "flops";
}
const showCostSoon = debounce(showCost, 150);

/** Measures the engine "auto" computes on (a fraction of a second of real work), then says the cost in seconds. */
async function calibrate() {
  const l = lab;
  try {
    await l.calibrate({ backend: "auto" });
  } catch {
    return; // estimates stay in FLOPs
  }
  if (l === lab) showCost();
}

let predictGen = 0;
async function suggest() {
  if (!lab) return;
  const gen = ++predictGen;
  const r = request();
  let preds;
  try {
    preds = await lab.predict(r.clean, { bos: r.bos, k: 10 });
  } catch {
    preds = [];
  }
  if (gen !== predictGen) return;
  $("suggestion-list").replaceChildren(
    ...preds.map((p) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "suggestion";
      b.dataset.text = p.text;
      b.append(chip(p.text), document.createTextNode(` ${(p.prob * 100).toFixed(1)}%`));
      b.title = `logit ${p.logit.toFixed(3)}; click: correct answer, shift-click: incorrect answer`;
      b.addEventListener("click", (e) => {
        $(e.shiftKey ? "incorrect" : "correct").value = p.text;
        validate();
      });
      return b;
    }),
  );
}

function debounce(f, ms) {
  let t = 0;
  return () => {
    clearTimeout(t);
    t = setTimeout(f, ms);
  };
}
const validateSoon = debounce(validate, 120);
const suggestSoon = debounce(suggest, 300);

// ---------- running ----------

function updateRun() {
  $("run").disabled = !lab || !valid || !!running || !!dataset?.isRunning() || !!circuit?.isRunning();
  $("cancel").disabled = !running;
  dataset?.update();
  circuit?.describe();
}

async function run() {
  if (!lab || running || !valid || dataset?.isRunning() || circuit?.isRunning()) return;
  const req = analyzeRequest(request());
  const ctrl = new AbortController();
  running = ctrl;
  updateRun();
  errorBox("run-error", "");
  show("run-progress", true);
  $("run-progress").value = 0;
  setText("run-text", "Starting…");
  show("results", true);
  show("report-banner", false);
  const est = await lab.estimate(req).catch(() => null);
  const partial = partialReport(lab.info, req);
  report = partial;
  view.update(partial);
  let scheduled = false;
  const redraw = () => {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      if (report === partial) view.update(partial);
    });
  };
  status.analyses++;
  try {
    const r = await lab.analyze({
      ...req,
      signal: ctrl.signal,
      estimateMs: Number.isFinite(est?.seconds) ? est.seconds * 1000 : undefined,
      onProgress: (p) => {
        $("run-progress").value = p.fraction;
        setText("run-text", `${stageText(p.stage)} — ${Math.round(p.fraction * 100)} % · ${seconds(p.elapsedMs)} elapsed · ETA ${seconds(p.etaMs)}`);
      },
      onPartial: (msg) => {
        addPartial(partial, msg);
        redraw();
      },
    });
    report = r;
    view.update(r);
    if (pendingPin) {
      openNodeViews(pendingPin);
      pendingPin = null;
    }
    setText("run-text", `Done in ${seconds(r.timings_ms.total)}.`);
    $("run-progress").value = 1;
    document.body.dataset.runs = String((Number(document.body.dataset.runs) || 0) + 1);
  } catch (e) {
    show("run-progress", false);
    if (e.name === "AbortError") {
      setText("run-text", "Cancelled.");
      report = partial.results && Object.keys(partial.results).length ? partial : null;
      if (!report) show("results", false);
    } else {
      setText("run-text", "");
      errorBox("run-error", e.message);
    }
  } finally {
    running = null;
    updateRun();
    syncUrl();
  }
}

// ---------- modes: single pair / dataset ----------

function setMode(m, user = false) {
  mode = MODES.includes(m) ? m : "pair";
  show("pair-mode", mode === "pair");
  show("dataset-mode", mode === "dataset");
  show("circuit-mode", mode === "circuit");
  if (mode === "circuit") circuit?.describe();
  for (const b of document.querySelectorAll("#mode-tabs .tab")) {
    const on = b.dataset.mode === mode;
    b.classList.toggle("active", on);
    b.setAttribute("aria-selected", String(on));
  }
  // plots laid out while hidden have no size yet
  if (mode === "pair" && report) view.update(report);
  if (user) syncUrl();
}

// ---------- circuit nodes in the single-pair views ----------

const samePrompts = (a, b) => !!a && !!b && ["clean", "corrupt", "correct", "incorrect"].every((k) => a[k] === b[k]) && (a.bos ?? true) === (b.bos ?? true);

/** The single-pair views of a circuit node: a head pinned in the Heads view (its pin box opens its attention), an MLP's neurons. */
function openNodeViews(name) {
  let m = /^a(\d+)\.h(\d+)$/.exec(name);
  if (m) {
    const pin = { component: "heads", layer: Number(m[1]), index: Number(m[2]) };
    view.state.head = `${pin.layer}.${pin.index}`;
    view.setView("heads", true);
    const p = view.selection.pinned;
    if (!(p && p.component === "heads" && p.layer === pin.layer && p.index === pin.index)) view.selection.toggle(pin);
    return;
  }
  m = /^m(\d+)$/.exec(name);
  if (m) view.setView("neurons", true);
}

/** A click on a circuit node: the Single pair tab with the circuit's (first) pair, the head selected or the layer's neurons shown. */
function openNode(name, circ) {
  if (running || !/^(a\d+\.h\d+|m\d+)$/.test(name)) return;
  const pair = circ?.pairs?.[0];
  const shown = report && !report.partial && samePrompts(report.prompts, pair);
  if (pair && !shown) {
    for (const k of ["clean", "corrupt", "correct", "incorrect"]) $(k).value = pair[k];
    $("bos").checked = pair.bos ?? true;
    $("metric").value = pair.metric || "logit_diff";
  }
  setMode("pair", true);
  document.body.dataset.openedNode = name;
  if (shown) {
    openNodeViews(name);
    setText("run-text", `Circuit node ${name}, selected in the views below.`);
  } else {
    pendingPin = name;
    setText("run-text", `Circuit node ${name}: press Run to compute this pair's views; ${name.startsWith("a") ? `head ${name.slice(1).replace(".h", ".")} will be selected` : `layer ${name.slice(1)}'s neurons will be shown`}.`);
    validate();
    suggest();
  }
  window.scrollTo(0, 0);
}

/** A worker without a model, for a saved circuit report's slider and graph file. */
function tools() {
  circuitTools ||= CircuitTools.create();
  return circuitTools;
}

/** Shows a finished dataset pair in the single-pair views, with its report (nothing is recomputed). */
function openPair(r, index, data) {
  if (running) return;
  const before = request();
  const mine = { form: formValues(), carried: { ...carried } };
  fillFromReport(r);
  const replaced = ["clean", "corrupt", "correct", "incorrect"].some((k) => before[k] !== $(k).value);
  errorBox("run-error", "");
  show("run-progress", false);
  show("report-banner", false);
  report = r;
  setMode("pair", false);
  show("results", true);
  view.update(r);
  setText("run-text", `Pair ${index} of the dataset (${data.source}${data.seed !== null && data.seed !== undefined ? `, seed ${data.seed}` : ""}), computed in the Dataset tab.`);
  // the form now holds the pair's prompts: say so, and offer the ones typed before back
  if (replaced) {
    const back = document.createElement("button");
    back.type = "button";
    back.className = "small";
    back.dataset.action = "restore-prompts";
    back.textContent = "Restore my prompts";
    back.addEventListener("click", () => {
      setFormValues(mine.form);
      carried = mine.carried;
      back.remove();
      setText("run-text", "Your prompts and settings are back in the form (the views still show the dataset pair until you press Run).");
      validate();
      suggest();
    });
    $("run-text").append(` The prompts and settings above are now this pair's; the ones you had typed are kept: `, back);
  }
  status.opened = (status.opened || 0) + 1;
  document.body.dataset.opened = String(status.opened);
  validate();
  suggest();
  window.scrollTo(0, 0);
}

// ---------- results-only mode ----------

async function showSavedReport(url) {
  let r;
  try {
    let res;
    try {
      res = await fetch(new URL(url, location.href), { cache: "no-cache" });
    } catch (e) {
      throw new Error(fetchFailure(url, e), { cause: e });
    }
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const text = await res.text();
    if (isCircuitReport(JSON.parse(text)) || mode === "circuit") {
      // a circuit report: the Circuit tab, results only
      setMode("circuit");
      const ok = circuit.showText(text, url);
      status.state = ok ? "report" : "error";
      status.readyMs = performance.now();
      document.body.dataset.ready = "1";
      return ok;
    }
    show("results", true);
    r = checkReport(JSON.parse(text));
    // an older patchlab's report gets IG* and the current analysis
    r = checkReport(await PatchLab.upgradeReport(r));
  } catch (e) {
    show("results", true);
    errorBox(mode === "circuit" ? "c-error" : "run-error", `Could not show the report ${url}: ${e.message}`);
    return false;
  }
  report = r;
  fillFromReport(r);
  view.update(r);
  setText("report-banner-text", `A saved report of ${r.model.name} (computed on ${r.backend}); no model is loaded. `);
  show("report-banner", true);
  status.state = "report";
  status.readyMs = performance.now();
  document.body.dataset.ready = "1";
  return true;
}

// ---------- wiring ----------

/** The results view, the Dataset and Circuit tabs, and the tabs between them. */
function createTabs() {
  view = new ReportView($("report-view"), {
    view: params.get("view") || "heads",
    site: params.get("site"),
    head: params.get("head"),
    method: params.get("method"),
    direction: params.get("direction"),
    overlay: params.get("overlay") === "1",
    hook: params.get("hook"),
    onView: () => syncUrl(),
    ablate: (req) => (lab ? lab.ablate(req) : Promise.reject(new Error("no model is loaded: press Recompute live or Load to ablate"))),
  });
  dataset = new DatasetTab({
    lab: () => lab,
    saes: () => saeBox?.request(),
    pairBusy: () => !!running || !!circuit?.isRunning(),
    onBusy: () => updateRun(),
    openPair,
  });
  circuit = new CircuitTab({
    lab: () => lab,
    tools,
    pairPrompts: () => {
      const r = request();
      return { clean: r.clean, corrupt: r.corrupt, correct: r.correct, incorrect: r.incorrect, bos: r.bos, metric: r.metric };
    },
    datasetPairs: () => dataset?.data?.pairs || null,
    busy: () => !!running || !!dataset?.isRunning(),
    onBusy: () => updateRun(),
    onState: () => syncUrl(),
    openNode,
  }, params);
  for (const b of document.querySelectorAll("#mode-tabs .tab")) b.addEventListener("click", () => setMode(b.dataset.mode, true));
  setMode(mode);
}

/** The form: live tokenization and suggestions as the prompts change; Run (or Ctrl+Enter) and Cancel. */
function wireForm() {
  for (const k of ["clean", "corrupt", "correct", "incorrect"]) {
    $(k).addEventListener("input", () => {
      validateSoon();
      if (k === "clean") suggestSoon();
    });
  }
  $("bos").addEventListener("change", () => { validate(); suggest(); });
  $("metric").addEventListener("input", validateSoon);
  $("ig-steps").addEventListener("input", validateSoon);
  for (const box of document.querySelectorAll("input[name], #ig-steps")) box.addEventListener("change", validate);
  for (const k of ["clean", "corrupt"]) {
    $(k).addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run();
    });
  }
  $("run").addEventListener("click", run);
  $("heads-first").addEventListener("click", () => {
    for (const b of document.querySelectorAll("input[name=components][value=neurons]")) b.checked = false;
    validate();
  });
  $("cancel").addEventListener("click", () => {
    if (running) {
      setText("run-text", "Cancelling…");
      running.abort();
    }
  });
}

/** Loading a model: by name or URL, from local files (chosen or dropped), clearing the cache, Recompute live. */
function wireModel() {
  $("model-load").addEventListener("click", async () => {
    const m = $("model-input").value.trim() || (await defaultModel());
    syncUrl();
    if (await loadModel(m)) suggest();
  });
  $("model-files").addEventListener("click", () => $("file-input").click());
  $("file-input").addEventListener("change", async () => {
    const files = [...$("file-input").files];
    $("file-input").value = ""; // choosing the same files again (say, a fixed download) must fire "change" again
    if (files.length && (await loadModel(files))) suggest();
  });
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", async (e) => {
    e.preventDefault();
    const files = [...(e.dataTransfer?.files || [])];
    if (files.length && (await loadModel(files))) suggest();
  });
  $("clear-cache").addEventListener("click", async () => {
    await PatchLab.clearCache();
    setText("load-text", "Cache cleared: the next load downloads the model again.");
  });
  // a saved report's "Recompute live": which model it loads (the report's
  // own where it can be named) and how much that downloads, asked first
  let plan = null;
  $("recompute").addEventListener("click", () => {
    if (!report?.model) return;
    plan = livePlan(report, $("model-input").value.trim() || null);
    setText("recompute-plan", plan.text);
    show("recompute", false);
    show("recompute-confirm", true);
  });
  $("recompute-cancel").addEventListener("click", () => {
    show("recompute-confirm", false);
    show("recompute", true);
  });
  $("recompute-go").addEventListener("click", async () => {
    const saved = report;
    show("recompute-confirm", false);
    show("recompute", true);
    show("report-banner", false);
    if (plan.spec) $("model-input").value = plan.spec;
    const m = plan.spec || (await defaultModel());
    if (!(await loadModel(m))) return;
    suggest();
    // the saved report's SAEs that came from a SAELens release ("release/id"), loaded again
    const specs = (saved.settings?.saes || []).map((x) => x.name).filter((n) => typeof n === "string" && !!parseSaeSpec(n)?.release);
    for (const spec of specs) await loadSaeSpec(spec);
    if (specs.length) await validate();
    if (!sameShape(lab.info, saved.model)) {
      errorBox("run-error", `The model loaded, ${lab.info.name} (${shapeText(lab.info)}), is not the report's ${saved.model.name} (${shapeText(saved.model)}): not recomputed, the views still show the saved report.`);
      return;
    }
    await run();
    if (lab.info.name !== saved.model.name && report && !report.partial) {
      setText("run-text", `${$("run-text").textContent} Computed with ${lab.info.name}, not the report's ${saved.model.name} (same shape; the weights may differ).`);
    }
  });
}

/** The report's downloads (JSON, CSV, npy) and the share links of both tabs. */
function wireExports() {
  $("export-json").addEventListener("click", () => {
    if (report && !report.partial) download("patchlab-report.json", JSON.stringify(report), "application/json");
  });
  $("export-slim").addEventListener("click", async () => {
    if (!report || report.partial) return;
    // the maps of the view shown, or every map the report has
    const shown = view?.view;
    const features = report.settings?.saes?.length ? ["features"] : [];
    const keep = shown === "heads" || shown === "neurons" ? [shown] : shown === "features" ? features : [...(report.settings?.components || []), ...(report.settings?.sites || []), ...features];
    try {
      const text = await PatchLab.slimReport(report, { keep: keep.join(","), digits: 4 });
      download("patchlab-report-slim.json", text, "application/json");
      setText("run-text", `Slim report: ${keep.join(", ")}, 4 significant digits, ${(text.length / 1024).toFixed(0)} KB (the full one is ${(JSON.stringify(report).length / 1024).toFixed(0)} KB).`);
    } catch (e) {
      setText("run-text", `Could not slim the report: ${e.message}`);
    }
  });
  $("export-csv").addEventListener("click", () => {
    if (report) download("patchlab-scores.csv", reportCsv(report), "text/csv");
  });
  $("export-npy").addEventListener("click", () => {
    if (report && !report.partial) download("patchlab-scores.zip", reportNpyZip(report));
  });
  // a share button: the link in its text field, selected, and on the clipboard where allowed
  const copyLink = async (button, field, url) => {
    $(field).value = url;
    show(field, true);
    $(field).select();
    try {
      await navigator.clipboard.writeText(url);
      setText(button, "Link copied");
    } catch {
      setText(button, "Copy the link below");
    }
    setTimeout(() => setText(button, "Copy share link"), 2000);
  };
  $("share").addEventListener("click", () => copyLink("share", "share-url", stateUrl()));
  $("c-share").addEventListener("click", () => {
    syncUrl();
    return copyLink("c-share", "c-share-url", location.href);
  });
}

/** A saved report (?report=), or the link's model (or the default), then the link's run if it asks for one. */
async function start() {
  if (reportUrl) {
    show("load-status", false);
    await showSavedReport(reportUrl);
    return;
  }
  const m = params.get("model") || (await defaultModel());
  if (await loadModel(m)) {
    suggest();
    // the link's SAEs (sae=release/id,…), before its run
    const saes = (params.get("sae") || "").split(",").map((x) => x.trim()).filter(Boolean);
    for (const spec of saes) await loadSaeSpec(spec);
    if (saes.length) await validate();
    if (mode === "circuit") {
      if (autorun) circuit.run();
    } else if (autorun || embed) run();
  }
}

/** An SAE a link names (release/id of sae-releases.js, or a folder URL), through the SAE box. */
async function loadSaeSpec(spec) {
  const p = parseSaeSpec(spec);
  if (p?.release) {
    // the selects show the SAE the link loads (when it is one of the list's)
    $("sae-release").value = p.release;
    saeBox.fillIds(p.id);
    return saeBox.loadHub(p.release, p.id);
  }
  return saeBox.run(spec, (signal, onProgress) => lab.loadSaeSpec(spec, { signal, onProgress }), null);
}

async function main() {
  if (embed) document.body.classList.add("embed");
  show("embed-link-wrap", embed);
  saeBox = new SaeBox({ lab: () => lab, onChange: () => validate() });
  initInputs();
  createTabs();
  wireForm();
  wireModel();
  wireExports();
  await start();
}

main();
