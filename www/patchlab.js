// patchlab's JavaScript API: activation patching, integrated gradients and
// attribution patching for GPT-2, computed in a module Web Worker (wasm).
//
//   import { PatchLab } from "/patchlab.js";
//   const lab = await PatchLab.load({ model: "openai-community/gpt2", onProgress });
//   const tokens = await lab.tokenize(" Mary");            // [{id, text}]
//   const report = await lab.analyze({ clean, corrupt, correct, incorrect });
//   const pairs = await lab.generateDataset({ task: "ioi", n: 100, seed: 0 });
//   await lab.runDataset({ pairs, onPair: ({ index, report }) => … });  // as `patchlab batch`
//   const { groups } = await lab.groupPairs(pairs);          // pairs that can share WebGPU passes
//   const reports = await lab.analyzeGroup({ pairs: groups[0].map((k) => pairs[k]) });
//   const summary = await lab.summarize(reports, { source: "task:ioi", seed: 0, total: 100 });
//   const { metric_ablated } = await lab.ablate({ ...pair, heads: [[9, 6]] });
//   const ablation = await lab.ablateDataset(reports, ["and:both", "h9.6"]);  // ablation.json
//   const circuit = await lab.circuit({ pairs: [pair], method: "eap-ig", edges: 200 });  // circuit.json
//   const c = await lab.reevaluateCircuit(circuit, { n: 50 });  // the slider: {edges, nodes, faithfulness}
//   await lab.loadSaeFromHub("gpt2-small-res-jb", "blocks.8.hook_resid_pre", { onProgress });  // an SAE (SAELens's files)
//   const withFeatures = await lab.analyze({ ...pair, components: [], saes: ["all"] });   // its features' AP, IG, AtP
//
// The report is the same JSON as `patchlab analyze --out -` writes; the
// summary the same as `patchlab batch` writes to summary.json.

export const DEFAULT_HUB_MODEL = "openai-community/gpt2";
const HUB = "https://huggingface.co";

/** An error with a `.name` ("AbortError", "LoadError", …) and the engine's message. */
function makeError(name, message) {
  const e = new Error(message);
  e.name = name;
  return e;
}

/**
 * Where a model comes from: a Hugging Face repo id ("openai-community/gpt2"),
 * a base URL ("/model/", "https://mirror.example/gpt2/"), or local files.
 * Returns {base, name, cache} or {files, name}.
 */
export function resolveModel(model, baseHref = globalThis.location ? globalThis.location.href : undefined) {
  if (model && typeof model !== "string" && typeof model.length === "number") {
    return { files: [...model], name: "local files", cache: false };
  }
  const m = String(model || DEFAULT_HUB_MODEL).trim();
  const repo = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/.test(m) && !/^\.\.?\//.test(m);
  if (repo) {
    return { base: `${HUB}/${m}/resolve/main/`, name: m, cache: true };
  }
  const url = new URL(m.endsWith("/") ? m : `${m}/`, baseHref);
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw makeError("LoadError", `model ${JSON.stringify(m)} is neither a Hugging Face repo id (owner/name) nor an http(s) URL`);
  }
  const parts = url.pathname.split("/").filter(Boolean);
  const sameOrigin = globalThis.location && url.origin === globalThis.location.origin;
  return { base: url.href, name: parts[parts.length - 1] || url.host, cache: !sameOrigin };
}

/**
 * Where an SAE folder is: a base URL (ending in "/") with cfg.json and
 * sae_weights.safetensors in it, its name (the folder's) and whether its
 * files go to Cache Storage (another origin's).
 */
export function resolveSaeUrl(url, baseHref = globalThis.location ? globalThis.location.href : undefined) {
  const u = new URL(String(url).endsWith("/") ? String(url) : `${url}/`, baseHref);
  if (u.protocol !== "https:" && u.protocol !== "http:") {
    throw makeError("LoadError", `SAE folder ${JSON.stringify(String(url))} is not an http(s) URL`);
  }
  const parts = u.pathname.split("/").filter(Boolean);
  const sameOrigin = globalThis.location && u.origin === globalThis.location.origin;
  return { base: u.href, name: decodeURIComponent(parts[parts.length - 1] || u.host), cache: !sameOrigin };
}

/** The Hub's URL of a folder of a repo (each segment escaped). */
export function hubFolderUrl(repo, folder) {
  const path = String(folder).split("/").filter(Boolean).map(encodeURIComponent).join("/");
  return `${HUB}/${repo}/resolve/main/${path ? `${path}/` : ""}`;
}

/**
 * Where an SAE named in one string comes from (what loadSaeFromHub names an
 * SAE, so a report's SAE names load again): a folder URL ("https://…/",
 * "/saes/x/", "./x/") → {url}; "release/id" (two parts: a SAELens release
 * has no "/" in its name, nor an SAE id of the GPT-2 releases:
 * "gpt2-small-res-jb/blocks.8.hook_resid_pre") → {release, id};
 * "owner/repo/folder/…" (three parts or more: a Hub repo and a folder in
 * it, as SAELens reads a release it does not list) → {release:
 * "owner/repo", id: "folder/…"}. null for anything else.
 */
export function parseSaeSpec(spec) {
  const s = String(spec || "").trim();
  if (!s) return null;
  if (/^(https?:\/\/|\/|\.\.?\/)/.test(s)) return { url: s };
  const parts = s.split("/");
  if (parts.some((x) => !x) || parts.length < 2) return null;
  if (parts.length === 2) return { release: parts[0], id: parts[1] };
  return { release: `${parts[0]}/${parts[1]}`, id: parts.slice(2).join("/") };
}

/**
 * How a worker script at `url` is started: {href, crossOrigin, script}.
 * Browsers refuse `new Worker()` for a script on another origin (this module
 * served by the lab's site and imported by a blog on another origin), so a
 * cross-origin script is started from a same-origin module whose body only
 * imports the script's absolute URL. The worker's own relative imports and
 * its `import.meta.url` (the wasm file) then still resolve against the
 * script's origin, which must serve them with CORS.
 */
export function workerScript(url, pageHref = globalThis.document?.baseURI ?? globalThis.location?.href) {
  const href = new URL(url, pageHref).href;
  const origin = globalThis.location?.origin;
  const crossOrigin = origin !== undefined && new URL(href).origin !== origin;
  return { href, crossOrigin, script: crossOrigin ? `import ${JSON.stringify(href)};\n` : null };
}

class WorkerClient {
  constructor(url) {
    const { href, crossOrigin, script } = workerScript(url);
    this.blobUrl = crossOrigin ? URL.createObjectURL(new Blob([script], { type: "text/javascript" })) : null;
    try {
      this.worker = new Worker(this.blobUrl || href, { type: "module" });
    } catch (e) {
      this.revoke();
      throw e;
    }
    this.next = 1;
    this.pending = new Map();
    this.worker.onmessage = (ev) => {
      this.revoke();
      this.receive(ev.data);
    };
    this.worker.onerror = (ev) => {
      this.revoke();
      const from = new URL(href).origin;
      const hint = crossOrigin
        ? ` (the worker comes from ${from}: that site must send Access-Control-Allow-Origin, and this page's Content-Security-Policy must allow worker-src blob: ${from}, script-src ${from} 'wasm-unsafe-eval' and connect-src ${from})`
        : "";
      const err = makeError("Error", `the patchlab worker failed to start: ${ev.message || "see the console"}${hint}`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
  }

  /** The blob: URL of a cross-origin start is needed only until the worker runs. */
  revoke() {
    if (this.blobUrl) URL.revokeObjectURL(this.blobUrl);
    this.blobUrl = null;
  }

  receive(msg) {
    const p = this.pending.get(msg.id);
    if (!p) return;
    if (msg.type === "progress") p.onProgress?.(msg);
    else if (msg.type === "partial") p.onPartial?.(msg);
    else if (msg.type === "event") p.onEvent?.(msg);
    else {
      this.pending.delete(msg.id);
      if (msg.type === "result") p.resolve(msg.value);
      else p.reject(makeError(msg.name || "Error", msg.message));
    }
  }

  request(type, body = {}, { onProgress, onPartial, onEvent, signal } = {}) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(makeError("AbortError", "cancelled"));
        return;
      }
      const onAbort = () => this.worker.postMessage({ type: "cancel", target: id });
      signal?.addEventListener("abort", onAbort, { once: true });
      const done = (f) => (v) => {
        signal?.removeEventListener("abort", onAbort);
        f(v);
      };
      this.pending.set(id, { resolve: done(resolve), reject: done(reject), onProgress, onPartial, onEvent });
      this.worker.postMessage({ id, type, ...body });
    });
  }

  terminate() {
    this.worker.terminate();
    this.revoke();
    for (const p of this.pending.values()) p.reject(makeError("AbortError", "the lab was closed"));
    this.pending.clear();
  }
}

/** One request to a worker started for it and ended after it (no model is loaded). */
async function oneRequest(workerUrl, type, body) {
  const client = new WorkerClient(workerUrl || new URL("./worker.js", import.meta.url));
  try {
    return await client.request(type, body);
  } finally {
    client.terminate();
  }
}

/**
 * A report as summarize() needs it, as JSON: the score maps are not needed
 * (only the analysis is), except in a schema-1 report, whose analysis is
 * derived anew from them.
 */
export function summaryInput(r) {
  if (r === null || r === undefined) return "null";
  if (r.schema === 1) return JSON.stringify({ ...r, partial: undefined });
  const a = r.analysis || {};
  // the score maps are not needed, except the patching sites' (site_maps)
  const results = {};
  for (const [m, dirs] of Object.entries(r.results || {})) {
    for (const [d, maps] of Object.entries(dirs)) {
      const { heads, neurons, ...sites } = maps; // eslint-disable-line no-unused-vars
      if (Object.keys(sites).length) ((results[m] ||= {})[d] = sites);
    }
  }
  return JSON.stringify({ ...r, partial: undefined, results, dla: undefined, patterns: undefined, analysis: { ...a, asymmetry: {} } });
}

/** Reports (an array, null for a pair without one, or their JSON already) as the engine's summarize and ablateDataset take them. */
function reportsJson(reports) {
  return typeof reports === "string" ? reports : `[${[...reports].map(summaryInput).join(",")}]`;
}

/** The analysis options of a request, as the wasm engine reads them (undefined ones left out). */
function analysisOptions({ methods, directions, components, sites, saes, igSteps, igRule, percentile }) {
  const out = {};
  for (const [k, v] of Object.entries({ methods, directions, components, sites, saes })) {
    if (v !== undefined) out[k] = typeof v === "string" ? v.split(",").map((s) => s.trim()).filter(Boolean) : [...v];
  }
  if (igSteps !== undefined) out.igSteps = Number(igSteps);
  if (igRule !== undefined) out.igRule = igRule;
  if (percentile !== undefined) out.percentile = Number(percentile);
  return out;
}

/** One pair's request, as analyze() and estimate() send it. */
function onePair(what, { clean, corrupt, correct, incorrect, bos, backend, metric, ...options }) {
  const request = { clean, corrupt, correct, incorrect, bos, backend, ...analysisOptions(options) };
  if (metric !== undefined) request.metric = String(metric);
  for (const k of ["clean", "corrupt", "correct", "incorrect"]) {
    if (typeof request[k] !== "string") throw makeError("TypeError", `${what} needs ${k} (a string)`);
  }
  return request;
}

/** Several pairs' request, as analyzeGroup(), runDataset() and estimate() send it. */
function pairsRequest(what, { pairs, backend, ...options }) {
  if (!Array.isArray(pairs) || !pairs.length) throw makeError("TypeError", `${what} needs pairs (a non-empty array)`);
  return {
    pairs: pairs.map((p) => ({ clean: p.clean, corrupt: p.corrupt, correct: p.correct, incorrect: p.incorrect, bos: p.bos ?? true, metric: p.metric || "logit_diff" })),
    backend,
    ...analysisOptions(options),
  };
}

/**
 * The worker's progress messages as onProgress gets them: with fraction,
 * elapsed time and ETA. An analysis counts its work in FLOPs, so the pace so
 * far predicts the rest; `estimateMs` (from estimate()) carries the ETA
 * until a fifth of the work is done, handing over to the pace gradually.
 */
function withEta(onProgress, estimateMs) {
  const t0 = performance.now();
  return (p) => {
    if (!onProgress) return;
    const fraction = p.total ? p.done / p.total : 0;
    const elapsedMs = performance.now() - t0;
    const paced = fraction > 0.01 ? (elapsedMs * (1 - fraction)) / fraction : null;
    let etaMs = paced;
    if (Number.isFinite(estimateMs) && estimateMs > 0) {
      const planned = Math.max(0, estimateMs * (1 - fraction));
      const w = paced === null ? 0 : Math.min(1, fraction / 0.2);
      etaMs = (1 - w) * planned + w * (paced ?? 0);
    }
    onProgress({ stage: p.stage, done: p.done, total: p.total, fraction, elapsedMs, etaMs });
  };
}


/** A circuit request as the engine reads it (CircuitRequest): undefined settings left out. */
function circuitRequest({ pairs, method, steps, select, edges, exact, curvePoints, backend = "auto" }) {
  if (!Array.isArray(pairs) || !pairs.length) throw makeError("TypeError", "circuit needs pairs (a non-empty array of prompt pairs)");
  const request = {
    pairs: pairs.map((p) => ({ clean: p.clean, corrupt: p.corrupt, correct: p.correct, incorrect: p.incorrect, bos: p.bos ?? true, metric: p.metric || "logit_diff" })),
    backend,
  };
  for (const [k, v] of Object.entries({ method, steps, select, edges, exact, curvePoints })) if (v !== undefined) request[k] = v;
  return request;
}

const reportText = (report) => (typeof report === "string" ? report : JSON.stringify(report));

/** A circuit of a report's scores: {edges, nodes, faithfulness} (serde writes the unknown faithfulness of a model-less selection as null). */
const parseChoice = (text) => JSON.parse(text);

/**
 * What a page without a model does with a saved circuit report: re-select
 * its circuit and write the reference's graph file, in a worker with no
 * model loaded. close() stops it.
 */
export class CircuitTools {
  constructor(client) {
    this.client = client;
  }

  static create({ workerUrl } = {}) {
    return new CircuitTools(new WorkerClient(workerUrl || new URL("./worker.js", import.meta.url)));
  }

  /** The circuit of n edges that `method`'s scores select ("greedy" or "topn"), pruned; faithfulness null (no model). */
  async reselectCircuit(report, { method, select, n }) {
    return parseChoice(await this.client.request("reselectCircuit", { report: reportText(report), method: String(method), select: String(select), n: Number(n) }));
  }

  /** The reference's graph file (hannamw/EAP-IG's Graph.to_json) of `method`'s scores with the circuit `edges` (indices into report.edges). */
  circuitGraph(report, { method, edges }) {
    return this.client.request("circuitGraph", { report: reportText(report), method: String(method), edges: [...edges].map(Number) });
  }

  close() {
    this.client.terminate();
  }
}

const pairsOf = (list) => [...list].map((p) => [Number(p[0]), Number(p[1])]);

export class PatchLab {
  constructor(client, info, env, source) {
    this.client = client;
    /** {name, n_layers, n_heads, d_model, d_head, d_mlp, n_ctx, d_vocab, backends} */
    this.info = info;
    /**
     * {webgpu: bool, adapter: string|null, software: bool, softwareChosen: bool,
     * simd: bool, threads: number, threadsNote: string|null} of the worker:
     * whether "auto" computes on WebGPU, its adapter's name, whether that
     * adapter is a software one (not used unless load's softwareGpu),
     * whether the CPU engine's wasm uses SIMD, how many threads it computes
     * on (a pool of navigator.hardwareConcurrency when the page is
     * cross-origin isolated) and, when one, why.
     */
    this.env = env;
    this.source = source;
  }

  /**
   * Loads a model in a new worker.
   * - model: Hub repo id (default "openai-community/gpt2"), a base URL such as
   *   "/model/", or a FileList / File[] (config.json, model.safetensors,
   *   tokenizer.json or vocab.json + merges.txt).
   * - onProgress({phase, loaded, total, cached, attempt}): phase is "config",
   *   "tokenizer", "weights" (bytes), "resume" (the download broke off after
   *   `loaded` bytes and is asked for again from there: `attempt` 1, 2, …)
   *   or "building". A config.json that is not GPT-2's, or a model too large
   *   for a browser tab, is refused (LoadError) before the weights download.
   * - cache: keep the files in Cache Storage (default: for other origins).
   * - softwareGpu: compute on WebGPU ("auto") even where its adapter is a
   *   software one (SwiftShader, lavapipe: far slower than WebAssembly,
   *   so by default such an adapter is not used; env.software says so).
   * - timeKernels: the WebGPU engine times each kernel with the adapter's
   *   timestamp queries where it offers "timestamp-query" (gpuProfile's
   *   `ms`, `timing` "timestamps"; each dispatch then runs in a compute pass
   *   of its own). Off by default; without timestamp queries no times.
   */
  static async load({ model, name, onProgress, cache, workerUrl, softwareGpu = false, timeKernels = false } = {}) {
    const src = resolveModel(model);
    const client = new WorkerClient(workerUrl || new URL("./worker.js", import.meta.url));
    try {
      const opts = { softwareGpu: !!softwareGpu, timeKernels: !!timeKernels };
      const body = src.files
        ? { files: src.files, name: name || src.name, ...opts }
        : { base: src.base, name: name || src.name, cache: cache ?? src.cache, ...opts };
      const { info, env } = await client.request("load", body, { onProgress });
      return new PatchLab(client, info, env, src);
    } catch (e) {
      client.terminate();
      throw e;
    }
  }

  /**
   * The model a page should load when none is named: the checkpoint that
   * `patchlab serve --model-dir` serves at ./model/ next to this script, if
   * there is one, else GPT-2 small from the Hub.
   */
  static async defaultModel() {
    const local = new URL("./model/", import.meta.url);
    try {
      const r = await fetch(new URL("config.json", local), { method: "HEAD", cache: "no-cache" });
      if (r.ok) return local.href;
    } catch {
      // no local model
    }
    return DEFAULT_HUB_MODEL;
  }

  /**
   * A saved report as the current schema (4): a schema-1 report, written by
   * an older patchlab, gets its IG*, analysis and warnings derived from its
   * scores by the crate's own code, in a short-lived worker (no model is
   * loaded). A newer report (schema 2 to 4) comes back as it is.
   */
  static async upgradeReport(report, { workerUrl } = {}) {
    if (report?.schema !== 1) return report;
    return JSON.parse(await oneRequest(workerUrl, "upgradeReport", { json: JSON.stringify(report) }));
  }

  /**
   * A report cut down for a figure in a post, as JSON text (what `patchlab
   * slim` writes): only the maps `keep` names ("heads", "neurons",
   * "patterns", "dla", site names; comma-separated), every score rounded to
   * `digits` significant digits, marked with `precision`. In a short-lived
   * worker; no model is loaded.
   */
  static async slimReport(report, { keep = "heads", digits = 4, workerUrl } = {}) {
    return oneRequest(workerUrl, "slimReport", { json: JSON.stringify(report), keep: String(keep), digits: Number(digits) });
  }

  /** Deletes every cached model file. */
  static async clearCache() {
    if (typeof caches !== "undefined") await caches.delete("patchlab-models-v1");
  }

  /** Tokens of a text: [{id, text}], BOS first unless bos is false. */
  /**
   * What the WebGPU engine has done since it started, as `patchlab bench
   * --profile` counts it: {adapter, kernels: [{name, dispatches,
   * workgroups, flops, bytes, ms}], submits, readbacks, timed, timing}; null
   * before anything ran on WebGPU. A visitor's real GPU can report its work
   * this way (compare `performance.now()` around an analysis with the
   * counts), and its kernels' times when loaded with `timeKernels: true`
   * and the adapter offers timestamp queries (`timing` "timestamps"; else
   * null, `timed` false and every `ms` 0).
   */
  gpuProfile() {
    return this.client.request("gpuProfile");
  }

  tokenize(text, { bos = true } = {}) {
    return this.client.request("tokenize", { text: String(text), bos: !!bos });
  }

  /** The k most likely next tokens after a prompt: [{id, text, logit, prob}]. */
  predict(text, { bos = true, k = 10, backend } = {}) {
    return this.client.request("predict", { text: String(text), bos: !!bos, k, backend });
  }

  /**
   * The full analysis of one prompt pair; resolves to the report object.
   * onProgress({stage, done, total, fraction, elapsedMs, etaMs});
   * onPartial({method, direction, component, layer, scores: Float32Array});
   * signal: an AbortSignal (rejects with an AbortError named "AbortError").
   * backend: "auto" (default), "cpu" or "gpu".
   * metric: "logit_diff" (default) or "greater_than:YY" (Greater-Than task).
   * sites: instead of components, the patching sites to compute (names or
   * bundles: heads, neurons, resid_pre, resid_mid, attn_out, mlp_out, z, q,
   * k, v, pattern, *_by_pos, pattern_by_dest, pattern_dest_src, dla,
   * block_every, head_every, head_every_by_pos); their maps, the attention
   * patterns and DLA arrive with the report, not as partial results.
   * saes: the loaded SAEs whose features to score, by hook name, or
   * ["all"] (loadSae first); with components: [] only the features are
   * scored. Their maps (results.<method>.<direction>["sae:<hook>"] and
   * ["sae_by_pos:<hook>"], often sparse: {shape, indices, values}), each
   * run's active features (features[hook]) and their analysis
   * (analysis.features[hook]) arrive with the report.
   */
  async analyze({
    clean,
    corrupt,
    correct,
    incorrect,
    methods,
    directions,
    components,
    sites,
    saes,
    bos = true,
    igSteps,
    igRule,
    percentile,
    metric,
    backend = "auto",
    onProgress,
    onPartial,
    signal,
    estimateMs,
  } = {}) {
    const request = onePair("analyze", { clean, corrupt, correct, incorrect, bos, backend, metric, methods, directions, components, sites, saes, igSteps, igRule, percentile });
    const { json } = await this.client.request("analyze", { request }, { onProgress: withEta(onProgress, estimateMs), onPartial, signal });
    return JSON.parse(json);
  }

  /**
   * What analyze() of these options (or analyzeGroup(), given `pairs`)
   * will cost on the engine it would run on, before it runs: {backend,
   * pairs: [[tokens, first_diff]], phases: [{method, component?,
   * direction?, flops}], flops, run_bytes, memory_bytes, memory_limit?,
   * flops_per_s?, seconds?}. `seconds` appears once calibrate() has
   * measured that engine; `memory_limit` where WebAssembly bounds the
   * memory (an analysis over it is refused). Rejects, in the analysis's
   * words, a request the analysis would refuse.
   */
  async estimate({ pairs, clean, corrupt, correct, incorrect, bos = true, metric, methods, directions, components, sites, saes, igSteps, igRule, percentile, backend = "auto" } = {}) {
    const request = pairs
      ? pairsRequest("estimate", { pairs, backend, methods, directions, components, sites, saes, igSteps, igRule, percentile })
      : onePair("estimate", { clean, corrupt, correct, incorrect, bos, backend, metric, methods, directions, components, sites, saes, igSteps, igRule, percentile });
    return this.client.request("estimate", { request });
  }

  /**
   * Times a small real workload (the heads' IG path at the next-to-last
   * layer; every layer on a GPU) on the engine for `backend` and keeps its rate: {backend,
   * flops_per_s, flops, ms}. Afterwards estimate() says seconds, and
   * analyses on that engine pause about every 0.3 s of work, so that
   * a cancel answers within about a second.
   */
  calibrate({ backend = "auto" } = {}) {
    return this.client.request("calibrate", { backend });
  }

  /**
   * Groups of pair indices for analyzeGroup: {groups: [[i, …]], bad: [{index, error}]}.
   * At most `size` pairs per group (by default as runDataset on WebGPU), each of equal token length and first
   * differing token (the pairs whose WebGPU passes can be shared); pairs that
   * are not valid are listed apart with the reason.
   */
  groupPairs(pairs, size) {
    return this.client.request("groupPairs", { pairs: [...pairs], size: size === undefined ? null : Math.max(1, Number(size) | 0) });
  }

  /**
   * Several pairs analysed together (one of groupPairs' groups): resolves to
   * their reports, in order, each equal to analyze() of the pair; on WebGPU
   * the pairs share their passes. pairs: [{clean, corrupt, correct,
   * incorrect, bos, metric}]; the options, onProgress and signal as in
   * analyze() (progress covers the whole group; no partial results).
   */
  async analyzeGroup({ pairs, methods, directions, components, sites, saes, igSteps, igRule, percentile, backend = "auto", onProgress, signal } = {}) {
    const request = pairsRequest("analyzeGroup", { pairs, backend, methods, directions, components, sites, saes, igSteps, igRule, percentile });
    const { json } = await this.client.request("analyzeGroup", { request }, { onProgress: withEta(onProgress), signal });
    return JSON.parse(json);
  }

  /**
   * A whole dataset through the crate's dataset runner, the one `patchlab
   * batch` uses: pairs of equal token length and first difference in groups
   * (`group` per group; by default 16 on WebGPU, where they share the GPU's
   * passes, and 1 on the CPU), pairs whose report in `reports` (earlier
   * reports in dataset order, null for none) has the same prompts, model and
   * settings kept, and a pair that cannot be analysed reported and passed
   * over. pairs, the options, backend and signal as in analyzeGroup();
   * onProgress as in analyze(), over the whole run. As the run goes:
   * onPlan({groups, kept, bad, group_size, backend, note?}) before any work,
   * onGroup([index, …]) as a group starts, and onPair({index, status, report,
   * error}) for every pair as soon as its outcome exists (status "done" with
   * its report, "kept", or "error" with the reason). Resolves to {computed,
   * kept, bad: [index], backend}; a cancel rejects with an AbortError and the
   * pairs already delivered stand.
   */
  async runDataset({ pairs, methods, directions, components, sites, saes, igSteps, igRule, percentile, group, reports, backend = "auto", onPlan, onGroup, onPair, onProgress, signal } = {}) {
    const request = pairsRequest("runDataset", { pairs, backend, methods, directions, components, sites, saes, igSteps, igRule, percentile });
    const onEvent = ({ kind, index, text }) => {
      if (kind === "plan") onPlan?.(JSON.parse(text));
      else if (kind === "group") onGroup?.(JSON.parse(text));
      else if (kind === "pair") onPair?.({ index, status: "done", report: JSON.parse(text) });
      else if (kind === "kept") onPair?.({ index, status: "kept" });
      else if (kind === "bad") onPair?.({ index, status: "error", error: text });
    };
    const body = { request, group: group === undefined ? null : Number(group), reports: reports === undefined ? null : reportsJson(reports) };
    return this.client.request("runDataset", body, { onProgress: withEta(onProgress), onEvent, signal });
  }

  /**
   * Milliseconds per plain product [m, k]·[k, n] + bias on the CPU engine's
   * linear-layer kernel, on the worker's threads (the mean of `reps` after a
   * warm-up): GFLOP/s = 2·m·k·n / (ms · 1e6). For benchmarks
   * (scripts/bench-browser); `patchlab bench` prints the native rate.
   */
  cpuMatmulMs({ m = 256, k = 768, n = 3072, reps = 3 } = {}) {
    return this.client.request("matmulMs", { m: Number(m), k: Number(k), n: Number(n), reps: Number(reps) });
  }

  /** The names of the generated tasks: ["ioi", "ioi-third", "greater-than", "capitals", "agreement"]. */
  taskNames() {
    return this.client.request("taskNames");
  }

  /**
   * A metric spec checked by the engine's own parser: resolves to its
   * normalised name ("logit_diff", "greater_than:YY"), or rejects with the
   * engine's message saying what is wrong with it.
   */
  parseMetric(spec) {
    return this.client.request("parseMetric", { spec: String(spec) });
  }

  /**
   * n prompt pairs of a generated task, the same for the same seed, each
   * checked with this model's tokenizer (equal lengths, one-token answers):
   * [{clean, corrupt, correct, incorrect, bos, metric}].
   */
  generateDataset({ task = "ioi", n = 100, seed = 0, bos = true } = {}) {
    return this.client.request("generateDataset", { task: String(task), n: Number(n), seed: Number(seed), bos: !!bos });
  }

  /**
   * Reads a CSV or JSONL file of pairs (columns / keys clean, corrupt,
   * correct, incorrect, optional metric; the file name's extension says
   * which): {pairs: [prompts], bad: [{line, reason}]}. Rows that fail the
   * checks are listed with their line number, never dropped silently; a file
   * with no valid row rejects.
   */
  importPairs(text, { filename = "pairs.csv", bos = true } = {}) {
    return this.client.request("importPairs", { text: String(text), filename: String(filename), bos: !!bos });
  }

  /**
   * The dataset tables of per-pair reports — the same object `patchlab
   * batch` writes to summary.json. reports: in dataset order, a report from
   * analyze() per pair or null for a pair without one (listed as missing).
   * source: "task:ioi", "file:pairs.csv", …; seed: the generator's (tasks
   * only); total: pairs in the dataset (default reports.length);
   * includeSmallGap: count pairs whose metric barely differs between the
   * prompts (a small_gap warning; left out by default, as `patchlab batch`).
   */
  async summarize(reports, { source = "custom", seed, total, includeSmallGap = false } = {}) {
    const json = reportsJson(reports);
    const n = total ?? (Array.isArray(reports) ? reports.length : 0);
    const text = await this.client.request("summarize", { reports: json, source: String(source), seed: seed ?? null, total: Number(n), includeSmallGap: !!includeSmallGap });
    return JSON.parse(text);
  }

  /** A dataset as CSV (header clean,corrupt,correct,incorrect,metric) that importPairs and `patchlab batch --file` read. */
  pairsCsv(pairs) {
    return this.client.request("pairsCsv", { pairs: [...pairs] });
  }

  /**
   * Mean ablation of one pair: the clean metric with the given heads
   * ([[layer, head]]) and neurons ([[layer, neuron]]) held at the pair's
   * corrupt activations, everything downstream recomputed. Resolves to
   * {metric_clean, metric_corrupt, metric_ablated, backend, note?}.
   */
  ablate({ clean, corrupt, correct, incorrect, bos = true, metric, heads = [], neurons = [], backend = "auto", signal } = {}) {
    const request = { clean, corrupt, correct, incorrect, bos: !!bos, heads: pairsOf(heads), neurons: pairsOf(neurons), backend };
    if (metric !== undefined) request.metric = String(metric);
    for (const k of ["clean", "corrupt", "correct", "incorrect"]) {
      if (typeof request[k] !== "string") throw makeError("TypeError", `ablate needs ${k} (a string)`);
    }
    return this.client.request("ablate", { request }, { signal });
  }

  /**
   * Mean ablation over a dataset, as `patchlab ablate` computes it: resolves
   * to the object of its ablation.json, {kind, mean, sets: [{set, pairs:
   * [{index, heads, neurons, metric_clean, metric_corrupt, metric_ablated,
   * change, retained}], change, retained, heads, neurons}]}. reports: the
   * dataset's reports in order (null for a pair without one); sets: specs
   * such as "and:both", "or:ig-only" or "h9.6,n0.12" — each pair's own latent
   * components, or fixed ones — held at the per-position mean corrupt
   * activation of the pairs of equal length. onProgress and signal as in analyze().
   */
  async ablateDataset(reports, sets, { backend = "auto", onProgress, signal } = {}) {
    const list = typeof sets === "string" ? [sets] : [...sets].map(String);
    const text = await this.client.request("ablateDataset", { reports: reportsJson(reports), sets: list, backend }, { onProgress: withEta(onProgress), signal });
    return JSON.parse(text);
  }

  /**
   * Edge attribution patching over the model's edge graph (hannamw/EAP-IG):
   * resolves to the circuit report (the circuit.json of `patchlab
   * circuit`). pairs: [{clean, corrupt, correct, incorrect, bos, metric}]
   * (one pair, or a dataset's pairs of one token length: scores averaged);
   * method: "eap-ig" (default), "eap", "clean-corrupted" or "exact"; steps
   * (EAP-IG's, 5); select: "greedy" (default) or "topn"; edges (200); exact:
   * also score every edge by exact patching (one tail per edge); curvePoints
   * (12); backend; onProgress and signal as in analyze().
   */
  async circuit({ onProgress, signal, ...options } = {}) {
    const request = circuitRequest(options);
    const text = await this.client.request("circuit", { request }, { onProgress: withEta(onProgress), signal });
    return JSON.parse(text);
  }

  /** The slider: the circuit of n edges `method`'s scores select, pruned, with its faithfulness on this model: {edges, nodes, faithfulness}. */
  async reevaluateCircuit(report, { method, select, n }) {
    return parseChoice(await this.client.request("reevaluateCircuit", { report: reportText(report), method: String(method), select: String(select), n: Number(n) }));
  }

  /** As CircuitTools' (no model needed), in this lab's worker. */
  reselectCircuit(report, opts) {
    return CircuitTools.prototype.reselectCircuit.call(this, report, opts);
  }

  circuitGraph(report, opts) {
    return CircuitTools.prototype.circuitGraph.call(this, report, opts);
  }

  /**
   * Loads a sparse autoencoder for this model from SAELens's files: `cfg`
   * (cfg.json's text, the parsed object, or a Blob / File) and `weights`
   * (sae_weights.safetensors: an ArrayBuffer, a Uint8Array or a Blob /
   * File). It replaces the SAE on the same hook; `name` labels it in reports
   * (default: "SAE <hook>"). configOverrides: keys set on cfg.json first, as
   * SAELens's config_overrides. Resolves to {name, hook_name, architecture,
   * d_in, d_sae, neuronpedia_id?}; rejects (LoadError) with the engine's
   * reason when the SAE does not fit: another d_in than the hook's width, an
   * architecture, hook, layout or run-time normalisation it does not encode,
   * or more memory than the tab has left.
   */
  async loadSae({ name, cfg, weights, configOverrides, normScalingFactor } = {}) {
    if (cfg === undefined || cfg === null) throw makeError("TypeError", "loadSae needs cfg (cfg.json: text, an object or a File)");
    if (weights === undefined || weights === null) throw makeError("TypeError", "loadSae needs weights (sae_weights.safetensors: an ArrayBuffer, a Uint8Array or a File)");
    const text = typeof cfg === "string" || cfg instanceof Blob ? cfg : JSON.stringify(cfg);
    // without a name, the worker names it after the hook its cfg.json reads
    return this.client.request("loadSae", { name: name ? String(name) : null, cfg: text, weights, overrides: configOverrides || null, normScalingFactor: normScalingFactor ?? null });
  }

  /**
   * Loads one SAE of a SAELens release from the Hugging Face Hub (its
   * folder's cfg.json, then sae_weights.safetensors), as
   * `SAE.from_pretrained(release, id)` finds it: the release's repo and the
   * SAE's folder from sae-releases.js (SAELens's pretrained_saes.yaml), its
   * config_overrides and Neuronpedia id applied to cfg.json; a release the
   * list does not know is read as a repo id and `id` as a folder in it.
   * Byte progress, resumed downloads and Cache Storage as for the model
   * (cache: default true). onProgress({phase: "sae-config" | "sae-weights" |
   * "resume" | "sae-building", loaded, total, cached}); signal cancels.
   * A release the lab cannot encode is refused before anything downloads,
   * with the reason; a cfg.json the engine refuses before the weights
   * download. Resolves as loadSae.
   */
  async loadSaeFromHub(release, id, { onProgress, signal, cache = true, name } = {}) {
    // the release list loads only when an SAE is loaded from the Hub (a results-only embed never needs it)
    const { saeSource } = await import("./sae-releases.js");
    const src = saeSource(String(release), String(id));
    if (!src) throw makeError("LoadError", `the SAE release ${release} has no SAE ${JSON.stringify(String(id))}`);
    if (!src.loadable) throw makeError("LoadError", `${release} cannot be loaded here: ${src.reason}`);
    const base = hubFolderUrl(src.repo, src.folder);
    const label = name || `${release}/${id}`;
    return this.client.request("loadSaeUrl", { base, name: label, cache: !!cache, overrides: src.overrides, normScalingFactor: src.normScalingFactor }, { onProgress, signal });
  }

  /**
   * Loads an SAE from a folder URL that holds cfg.json and
   * sae_weights.safetensors (a mirror, "/saes/blocks.8.hook_resid_pre/"),
   * as loadSaeFromHub downloads it (cache: default for other origins).
   */
  async loadSaeFromUrl(url, { onProgress, signal, cache, name, configOverrides, normScalingFactor } = {}) {
    const src = resolveSaeUrl(url);
    return this.client.request("loadSaeUrl", { base: src.base, name: name || src.name, cache: cache ?? src.cache, overrides: configOverrides || null, normScalingFactor: normScalingFactor ?? null }, { onProgress, signal });
  }

  /** An SAE named in one string (parseSaeSpec: "release/id", or a folder URL), loaded with loadSaeFromHub or loadSaeFromUrl. */
  loadSaeSpec(spec, options = {}) {
    const p = parseSaeSpec(spec);
    if (!p) return Promise.reject(makeError("LoadError", `${JSON.stringify(String(spec))} names no SAE: write release/id (e.g. gpt2-small-res-jb/blocks.8.hook_resid_pre) or the URL of a folder with cfg.json and sae_weights.safetensors`));
    return p.url ? this.loadSaeFromUrl(p.url, options) : this.loadSaeFromHub(p.release, p.id, options);
  }

  /** Removes the SAE on `hook` (e.g. "blocks.8.hook_resid_pre"); false if none was loaded there. */
  removeSae(hook) {
    return this.client.request("removeSae", { hook: String(hook) });
  }

  /** The loaded SAEs, in layer order: [{name, hook_name, architecture, d_in, d_sae, neuronpedia_id?}]. */
  saes() {
    return this.client.request("saes");
  }

  /** Stops the worker and frees the model. */
  close() {
    this.client.terminate();
  }
}
