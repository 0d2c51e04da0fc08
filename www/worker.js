// patchlab's compute worker (a module Web Worker). It downloads the model
// (with Cache Storage), owns the wasm engine and runs every computation, so
// the page's main thread never blocks. www/patchlab.js is its only client.
//
// Messages in:  {id, type: "load" | "tokenize" | "predict" | "analyze" | "analyzeGroup" | "groupPairs"
//                          | "runDataset" | "ablate" | "ablateDataset" | "generateDataset" | "importPairs" | "summarize" | "pairsCsv"
//                          | "upgradeReport" | "slimReport" | "parseMetric" | "circuit" | "reevaluateCircuit"
//                          | "reselectCircuit" | "circuitGraph" | "loadSae" | "loadSaeUrl" | "removeSae" | "saes"
//                          | "taskNames" | "cancel" | "clearCache" | "env" | "matmulMs" | "gpuProfile" | "calibrate" | "estimate", ...}
// Messages out: {id, type: "result", value} | {id, type: "error", message, name}
//               | {id, type: "progress", ...} | {id, type: "partial", ...} | {id, type: "event", kind, index, text}

const CACHE = "patchlab-models-v1";
let starting = null;
let lab = null;
const cancelled = new Set();
let queue = Promise.resolve();

const post = (msg, transfer) => self.postMessage(msg, transfer || []);

// A zero-delay yield to the event loop, so "cancel" messages get through
// while the engine computes.
const channel = new MessageChannel();
const waiting = [];
channel.port1.onmessage = () => waiting.shift()?.();
const pause = () =>
  new Promise((resolve) => {
    waiting.push(resolve);
    channel.port2.postMessage(0);
  });

// The engine comes in two builds: pkg-threads/ (shared memory, a rayon
// pool of Web Workers) and pkg/ (one thread). The threaded one needs a
// cross-origin isolated page (COOP + COEP headers: shared memory is a
// SharedArrayBuffer) and more than one core; without them, or when it
// cannot start, the worker runs the plain one and `threadsNote` says why.
let pkg = null;
let threadsNote = null;

async function startThreaded(cores) {
  const p = await import("./pkg-threads/patchlab.js");
  // wasm-bindgen's init takes one object (positional arguments are deprecated)
  await p.default({ module_or_path: new URL("./pkg-threads/patchlab_bg.wasm", import.meta.url) });
  await p.initThreadPool(cores);
  return p;
}

async function start() {
  const cores = Math.max(1, navigator.hardwareConcurrency || 1);
  if (!self.crossOriginIsolated) threadsNote = "the page is not cross-origin isolated";
  else if (cores < 2) threadsNote = "the device reports one core";
  else {
    try {
      pkg = await startThreaded(cores);
      return;
    } catch (e) {
      threadsNote = `the threaded engine could not start: ${e.message}`;
    }
  }
  const p = await import("./pkg/patchlab.js");
  await p.default({ module_or_path: new URL("./pkg/patchlab_bg.wasm", import.meta.url) });
  pkg = p;
}

// Loads the engine once, however many messages ask for it at the same time.
const ensureWasm = () => (starting ??= start());

async function openCache(use) {
  if (!use || typeof caches === "undefined") return null;
  try {
    return await caches.open(CACHE);
  } catch {
    return null; // opaque origins, private modes
  }
}

class LoadError extends Error {
  constructor(message) {
    super(message);
    this.name = "LoadError";
  }
}

// Why a download from `url` could not even start, in words: the Hub
// answers its large files with a redirect to a CDN on another host, which a
// firewall or a page's Content-Security-Policy can block.
function unreachable(url, name, e) {
  const hub = /^https:\/\/huggingface\.co\//.test(url) && name === "model.safetensors"
    ? "; the Hub sends large files from another host (cas-bridge.xethub.hf.co or cdn-lfs.hf.co), which must be reachable too"
    : "";
  return new LoadError(`could not download ${name} from ${url}: ${e.message} (offline, blocked, or the server does not allow cross-origin requests${hub})`);
}

// An HTTP error answer, naming the server that gave it (the redirect's
// target, when the request was redirected).
function httpError(res, url, name) {
  const where = res.redirected && res.url && res.url !== url ? `${res.url} (where ${url} redirected)` : url;
  return new LoadError(`could not download ${name}: HTTP ${res.status} from ${where}`);
}

// Response for a file of the model, from Cache Storage or the network.
// Returns null for a missing optional file.
async function getFile(cache, url, name, optional) {
  if (cache) {
    const hit = await cache.match(url);
    if (hit) return { res: hit, cached: true };
  }
  let res;
  try {
    res = await fetch(url, { cache: cache ? "default" : "no-cache" });
  } catch (e) {
    throw unreachable(url, name, e);
  }
  if (!res.ok) {
    if (optional && (res.status === 404 || res.status === 403 || res.status === 401)) return null;
    throw httpError(res, url, name);
  }
  return { res, cached: false };
}

// How many times a broken download of model.safetensors is resumed.
const RESUMES = 5;

// The body of a downloaded file as one stream that survives broken
// connections: when it stops short of the `total` bytes its Content-Length
// gave (an error, or an early end), the rest is asked for again with a Range
// request (the Hub and its CDN answer 206 Partial Content), up to RESUMES
// times. A try whose answer ends early again without bringing new bytes
// stops it (the server sends the same short file); a try that breaks off
// with a network error does not, even with no new bytes (a reset can lose
// the bytes it had sent), so broken connections always get every attempt.
// A server that ignores
// Range (200) sends the whole file again, and the bytes already here are
// skipped. `onResume(got, attempt)` reports each attempt. An early end that
// cannot be resumed just ends the stream (the caller reports the
// truncation); an error that cannot be resumed is the stream's error.
function resumableBody(url, res, total, name, onResume) {
  let reader = res.body.getReader();
  let got = 0;
  let skip = 0;
  let attempts = 0;
  let gotAtLastAttempt = -1;
  const resume = async (cause) => {
    if (!total || got >= total || attempts >= RESUMES || (got === gotAtLastAttempt && !cause)) return false;
    attempts += 1;
    gotAtLastAttempt = got;
    onResume(got, attempts, cause);
    let next;
    try {
      next = await fetch(url, { headers: { Range: `bytes=${got}-` }, cache: "no-store" });
    } catch {
      return resume(cause); // still offline: the next attempt, if any is left
    }
    const length = Number(next.headers.get("content-length")) || 0;
    if (next.status === 206 && (!length || length === total - got)) skip = 0;
    else if (next.status === 200 && (!length || length === total)) skip = got;
    else {
      next.body?.cancel().catch(() => {});
      throw new LoadError(`could not resume the download of ${name} after ${got} of ${total} bytes: the server answered HTTP ${next.status}${length ? ` with ${length} bytes` : ""} to a request for bytes ${got}–${total - 1}`);
    }
    reader = next.body.getReader();
    return true;
  };
  return new ReadableStream({
    async pull(controller) {
      for (;;) {
        let r;
        try {
          r = await reader.read();
        } catch (e) {
          r = { error: e };
        }
        if (r.value) {
          let v = r.value;
          if (skip) {
            const drop = Math.min(skip, v.length);
            skip -= drop;
            v = v.subarray(drop);
          }
          if (v.length) {
            got += v.length;
            controller.enqueue(v);
            return;
          }
          continue;
        }
        let resumed;
        try {
          resumed = await resume(r.error);
        } catch (e) {
          controller.error(e);
          return;
        }
        if (resumed) continue;
        if (r.error) {
          controller.error(new LoadError(`the download of ${name} broke off after ${got} of ${total || "?"} bytes (${r.error.message})${attempts ? `, and ${attempts} ${attempts === 1 ? "attempt" : "attempts"} to resume it failed` : ""}`));
        } else controller.close();
        return;
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

async function readText(cache, url, name, optional) {
  const f = await getFile(cache, url, name, optional);
  if (!f) return null;
  const text = await f.res.clone().text();
  if (cache && !f.cached) await cache.put(url, f.res).catch(() => {});
  return text;
}

// How many bytes the header of model.safetensors takes (its 8-byte length
// included), by the crate's check of the file's first 8 bytes (the fuzzed
// WeightStream.headerSize): a length it refuses, or one past the end of a
// file of `declared` bytes, is refused before the rest downloads.
function headerSize(prefix, declared) {
  // the length as read, for the message only
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  const refused = () => new LoadError(`model.safetensors is not a safetensors file (its first 8 bytes give a header of ${n} bytes): is this the right URL or file?`);
  let size;
  try {
    size = pkg.WeightStream.headerSize(prefix);
  } catch {
    throw refused();
  }
  if (declared && size > declared) throw refused();
  return size;
}

// Streams the weights into wasm memory: a WeightStream made from the header
// (checked as soon as it arrives, so a foreign or mismatched file is refused
// before the rest downloads) decodes each chunk into the model's tensors as
// it comes, so the file is never held whole next to them (one copy of the
// weights at the peak, not two). Returns the stream, complete, for
// Lab.load_streamed. `again` ends the messages about a truncated file: what
// to do about it.
async function readWeights(config, body, declared, onBytes, again = "clear the cache and load it again") {
  let stream = null;
  let got = 0;
  let head = new Uint8Array(0);
  let need = 8;
  let sized = false;
  let expected = 0;
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      let v = value;
      if (!stream) {
        // collect the first bytes: 8 (the header's length), then the header
        for (;;) {
          const take = Math.min(need - head.length, v.length);
          if (take > 0) {
            const h = new Uint8Array(head.length + take);
            h.set(head);
            h.set(v.subarray(0, take), head.length);
            head = h;
            v = v.subarray(take);
          }
          if (head.length < need) break;
          if (!sized) {
            need = headerSize(head, declared);
            sized = true;
            continue;
          }
          // the crate checks the header (the safetensors layout, and every
          // tensor config.json needs) and allocates the tensors
          try {
            stream = new pkg.WeightStream(config, head);
          } catch (e) {
            throw new LoadError(e.message);
          }
          head = null;
          expected = stream.expected;
          if (declared && declared !== expected) {
            throw new LoadError(`model.safetensors should be ${expected} bytes by its header, but is ${declared}: the file is truncated or corrupt; ${again}`);
          }
          break;
        }
      }
      if (stream && v.length) {
        if (got + value.length > expected) {
          throw new LoadError(`model.safetensors goes on past the ${expected} bytes its header gives: the file is corrupt; ${again}`);
        }
        stream.push(v);
      }
      got += value.length;
      onBytes(got);
    }
  } catch (e) {
    stream?.free();
    reader.cancel().catch(() => {});
    throw e;
  }
  if (stream && got === expected) return stream;
  stream?.free();
  if (expected) throw new LoadError(`model.safetensors is truncated: got ${got} of ${expected} bytes; ${again}`);
  if (declared && got < declared) throw new LoadError(`model.safetensors is truncated: got ${got} of ${declared} bytes; ${again}`);
  if (got < 8) throw new LoadError(`model.safetensors is truncated or empty (${got} bytes)`);
  throw new LoadError(`model.safetensors is truncated: got ${got} bytes, but its header alone takes ${need}; ${again}`);
}

async function loadFromUrl(id, base, name, useCache) {
  const cache = await openCache(useCache);
  const url = (f) => new URL(f, base).href;
  const files = ["config.json", "tokenizer.json", "vocab.json", "merges.txt", "model.safetensors"].map(url);
  let putting = null;
  const stopPut = new AbortController();
  try {
    post({ id, type: "progress", phase: "config", loaded: 0, total: 0 });
    const config = await readText(cache, url("config.json"), "config.json", false);
    // a model that is not GPT-2, or too large for this tab, is refused
    // before its weights download
    checkConfig(config);
    post({ id, type: "progress", phase: "tokenizer", loaded: 0, total: 0 });
    let tokenizer = await readText(cache, url("tokenizer.json"), "tokenizer.json", true);
    let vocab = null;
    let merges = null;
    if (tokenizer === null) {
      vocab = await readText(cache, url("vocab.json"), "vocab.json", true);
      merges = await readText(cache, url("merges.txt"), "merges.txt", true);
      if (vocab === null || merges === null) {
        throw new LoadError(`the model at ${base} has no tokenizer.json (nor vocab.json + merges.txt)`);
      }
    }
    const wurl = url("model.safetensors");
    const f = await getFile(cache, wurl, "model.safetensors", false);
    const declared = Number(f.res.headers.get("content-length")) || 0;
    const onBytes = byteProgress(id, "weights", declared, f.cached);
    let body;
    [body, putting] = teeToCache(cache, wurl, f, downloadBody(id, wurl, f, declared, "model.safetensors"), stopPut.signal);
    const weights = await readWeights(config, body, declared, onBytes);
    post({ id, type: "progress", phase: "building", loaded: weights.received, total: weights.expected });
    return await build(id, name, weights, tokenizer, vocab, merges, putting);
  } catch (e) {
    // a bad file must not stay cached (nor land there after this)
    stopPut.abort();
    await putting;
    if (cache) await Promise.all(files.map((u) => cache.delete(u).catch(() => {})));
    throw e;
  }
}

async function loadFromFiles(id, files, name) {
  const byName = new Map([...files].map((f) => [f.name, f]));
  const text = async (n) => (byName.has(n) ? await byName.get(n).text() : null);
  const st = byName.get("model.safetensors") || [...byName.values()].find((f) => f.name.endsWith(".safetensors"));
  // name everything that is missing at once
  const has = (n) => byName.has(n);
  const missing = [];
  if (!has("config.json")) missing.push("config.json");
  if (!has("tokenizer.json") && !(has("vocab.json") && has("merges.txt"))) {
    if (has("vocab.json")) missing.push("merges.txt (or tokenizer.json)");
    else if (has("merges.txt")) missing.push("vocab.json (or tokenizer.json)");
    else missing.push("tokenizer.json (or vocab.json and merges.txt)");
  }
  if (!st) missing.push("model.safetensors");
  if (missing.length) {
    const list = missing.length === 1 ? missing[0] : `${missing.slice(0, -1).join(", ")} and ${missing.at(-1)}`;
    throw new LoadError(`missing ${list} among the files given (${[...byName.keys()].join(", ")}): choose (or drop) all of the model's files at once`);
  }
  const config = await text("config.json");
  checkConfig(config);
  const tokenizer = await text("tokenizer.json");
  const vocab = tokenizer === null ? await text("vocab.json") : null;
  const merges = tokenizer === null ? await text("merges.txt") : null;
  const onBytes = (loaded) => post({ id, type: "progress", phase: "weights", loaded, total: st.size, cached: true });
  const weights = await readWeights(config, st.stream(), st.size, onBytes, "choose a complete copy of it");
  post({ id, type: "progress", phase: "building", loaded: st.size, total: st.size });
  return build(id, name, weights, tokenizer, vocab, merges, null);
}

// ---------- sparse autoencoders (SAELens's cfg.json + sae_weights.safetensors) ----------

const SAE_CFG = "cfg.json";
const SAE_WEIGHTS = "sae_weights.safetensors";

/**
 * cfg.json's text with SAELens's config_overrides applied (a top-level
 * update, as `get_sae_lens_config_from_disk` does: `cfg_dict.update(overrides)`).
 */
function withOverrides(cfg, overrides) {
  if (!overrides || !Object.keys(overrides).length) return cfg;
  let obj;
  try {
    obj = JSON.parse(cfg);
  } catch {
    return cfg; // the engine says what is wrong with it
  }
  if (!obj || typeof obj !== "object" || Array.isArray(obj)) return cfg;
  return JSON.stringify({ ...obj, ...overrides });
}

/** A download's byte progress as `phase` messages: at most every 50 ms, and at its last byte. */
function byteProgress(id, phase, declared, cached) {
  const t0 = performance.now();
  let last = 0;
  return (loaded) => {
    const now = performance.now();
    if (now - last > 50 || loaded === declared) {
      last = now;
      post({ id, type: "progress", phase, loaded, total: declared, cached, ms: now - t0 });
    }
  };
}

/** The body of a fetched file (`getFile`), resumed after a broken connection unless it came from the cache. */
function downloadBody(id, url, f, declared, name) {
  if (f.cached) return f.res.body;
  return resumableBody(url, f.res, declared, name, (got, attempt) => {
    post({ id, type: "progress", phase: "resume", loaded: got, total: declared, attempt });
  });
}

/**
 * A download's body teed into Cache Storage when `cache` is open and the
 * file is not cached yet: [the body to read, the cache's put (null when
 * none)]. The copy stops, and is not stored, when `stop` aborts (the load
 * failed).
 */
function teeToCache(cache, url, f, body, stop) {
  if (!cache || f.cached) return [body, null];
  const [a, b] = body.tee();
  const copy = b.pipeThrough(new TransformStream(), { signal: stop });
  return [a, cache.put(url, new Response(copy, { headers: f.res.headers })).catch(() => {})];
}

/** Throws the engine's refusal of a cfg.json for this model and the memory left (before the weights download). */
function checkSaeConfig(l, name, cfg, factor) {
  try {
    l.check_sae(name, cfg, factor ?? undefined);
  } catch (e) {
    throw new LoadError(e && e.message ? e.message : String(e));
  }
}

/** Loads an SAE on the lab's model, after the computations queued before it. */
function addSae(id, name, cfg, bytes, factor) {
  return inQueue(id, (l) => {
    try {
      return JSON.parse(l.load_sae(name, cfg, bytes, factor ?? undefined));
    } catch (e) {
      throw new LoadError(e && e.message ? e.message : String(e));
    }
  });
}

/** The whole body of a download as bytes, `onBytes(got)` as they come; refuses a short one; checks `cancelled` between chunks. */
async function readAll(id, body, declared, name, onBytes) {
  const reader = body.getReader();
  let buf = new Uint8Array(declared || 1 << 20);
  let got = 0;
  try {
    for (;;) {
      if (cancelled.has(id)) throw cancelError();
      const { done, value } = await reader.read();
      if (done) break;
      if (got + value.length > buf.length) {
        if (declared) throw new LoadError(`${name} goes on past the ${declared} bytes its server announced: the file is corrupt or changed while downloading; load it again`);
        const bigger = new Uint8Array(Math.max(buf.length * 2, got + value.length));
        bigger.set(buf.subarray(0, got));
        buf = bigger;
      }
      buf.set(value, got);
      got += value.length;
      onBytes(got);
    }
  } catch (e) {
    reader.cancel().catch(() => {});
    throw e;
  }
  if (declared && got < declared) throw new LoadError(`${name} is truncated: got ${got} of ${declared} bytes; load it again`);
  return got === buf.length ? buf : buf.subarray(0, got);
}

/**
 * An SAE folder at `base` (the Hub's resolve/main/<folder>/, or any URL):
 * cfg.json first (config_overrides applied; an SAE the engine refuses is
 * refused before its weights download), then sae_weights.safetensors with
 * byte progress, a broken connection resumed as for the model, both kept
 * in Cache Storage when `useCache`.
 */
async function loadSaeFromUrl(id, { base, name, cache: useCache, overrides, normScalingFactor }) {
  const l = needLab();
  const cache = await openCache(useCache);
  const url = (f) => new URL(f, base).href;
  const curl = url(SAE_CFG);
  const wurl = url(SAE_WEIGHTS);
  let putting = null;
  const stopPut = new AbortController();
  try {
    post({ id, type: "progress", phase: "sae-config", loaded: 0, total: 0 });
    const raw = await readText(cache, curl, SAE_CFG, false);
    const cfg = withOverrides(raw, overrides);
    // the engine checks cfg.json against the model and the memory left before the weights download
    checkSaeConfig(l, name, cfg, normScalingFactor);
    if (cancelled.has(id)) throw cancelError();
    const f = await getFile(cache, wurl, SAE_WEIGHTS, false);
    const declared = Number(f.res.headers.get("content-length")) || 0;
    const onBytes = byteProgress(id, "sae-weights", declared, f.cached);
    let body;
    [body, putting] = teeToCache(cache, wurl, f, downloadBody(id, wurl, f, declared, SAE_WEIGHTS), stopPut.signal);
    const bytes = await readAll(id, body, declared, SAE_WEIGHTS, onBytes);
    post({ id, type: "progress", phase: "sae-building", loaded: bytes.length, total: bytes.length });
    const info = await addSae(id, name, cfg, bytes, normScalingFactor);
    if (putting) await putting;
    return info;
  } catch (e) {
    // a bad or refused file must not stay cached
    stopPut.abort();
    await putting;
    if (cache) await Promise.all([curl, wurl].map((u) => cache.delete(u).catch(() => {})));
    throw e;
  } finally {
    cancelled.delete(id);
  }
}

/** The hook a cfg.json names (either layout), for a default name; null when it names none. */
function saeHook(cfg) {
  try {
    const c = JSON.parse(cfg);
    const h = c?.metadata?.hook_name || c?.hook_name || c?.hook_point;
    return typeof h === "string" ? h : null;
  } catch {
    return null;
  }
}

/** An SAE from files the page holds: cfg (text or a Blob) and the weights (bytes or a Blob); named after its hook unless `name` is given. */
async function loadSaeFromBytes(id, { name, cfg, weights, overrides, normScalingFactor }) {
  const l = needLab();
  const text = typeof cfg === "string" ? cfg : await cfg.text();
  name ||= `SAE ${saeHook(text) || ""}`.trim();
  // refused from its cfg.json before the weights are read into memory
  checkSaeConfig(l, name, withOverrides(text, overrides), normScalingFactor);
  let bytes;
  if (weights instanceof Blob) bytes = new Uint8Array(await weights.arrayBuffer());
  else if (ArrayBuffer.isView(weights)) bytes = new Uint8Array(weights.buffer, weights.byteOffset, weights.byteLength);
  else bytes = new Uint8Array(weights);
  return addSae(id, name, withOverrides(text, overrides), bytes, normScalingFactor);
}

// config.json describes a GPT-2-family model that fits in this tab (the
// crate's check), or a LoadError says why not.
function checkConfig(config) {
  try {
    pkg.check_config(config);
  } catch (e) {
    throw new LoadError(e.message);
  }
}

async function build(id, name, weights, tokenizer, vocab, merges, putting) {
  if (lab) {
    lab.free();
    lab = null;
  }
  // "auto" computes on WebGPU only where the adapter is a real GPU (or the
  // page chose a software one); Lab.load_streamed consumes `weights` (the
  // engine takes its tensors over)
  const env = await environment();
  lab = pkg.Lab.load_streamed(name, weights, tokenizer, vocab, merges, env.webgpu);
  // before anything runs on WebGPU (its engine starts on first use)
  if (timeKernels) lab.time_gpu_kernels(true);
  if (putting) await putting;
  return { info: lab.info(), env };
}

// Whether the page chose to compute on a software WebGPU adapter
// (?gpu=software, PatchLab.load({softwareGpu: true})).
let allowSoftwareGpu = false;
// Whether the page asked for kernel times (PatchLab.load({timeKernels: true})).
let timeKernels = false;

// A software rasterizer behind WebGPU (Chromium's SwiftShader, Mesa's
// lavapipe / llvmpipe, WARP) runs the GPU engine far slower than the
// WebAssembly engine: it is not a GPU.
const SOFTWARE_ADAPTER = /swiftshader|llvmpipe|lavapipe|softpipe|software|basic render|warp\b|\bcpu\b/i;

/** Whether a WebGPU adapter is a software (fallback) one, and its name. */
function describeAdapter(a) {
  const info = a.info || {};
  const name = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(" ") || "unknown";
  const software = info.isFallbackAdapter === true || a.isFallbackAdapter === true || SOFTWARE_ADAPTER.test(name);
  return { name, software };
}

async function environment() {
  // simd: the build's kernels use WebAssembly SIMD (a browser without it
  // cannot compile the module at all); threads: how many threads the CPU
  // engine computes on, and threadsNote why only one
  await ensureWasm();
  const threads = pkg.wasm_threads();
  // webgpu: "auto" computes on WebGPU; adapter: its name; software: the
  // adapter is a software one (then webgpu only when the page chose it)
  const env = { webgpu: false, adapter: null, software: false, softwareChosen: allowSoftwareGpu, simd: pkg.wasm_simd(), threads, threadsNote: threads > 1 ? null : threadsNote };
  try {
    if (self.navigator && navigator.gpu) {
      const a = await navigator.gpu.requestAdapter();
      if (a) {
        const { name, software } = describeAdapter(a);
        env.adapter = name;
        env.software = software;
        env.webgpu = !software || allowSoftwareGpu;
      }
    }
  } catch {
    env.webgpu = false;
  }
  return env;
}

function needLab() {
  if (!lab) throw new Error("no model is loaded yet");
  return lab;
}

async function handle(msg) {
  const { id, type } = msg;
  switch (type) {
    case "env":
      return environment();
    case "matmulMs":
      await ensureWasm();
      return pkg.cpu_matmul_ms(msg.m, msg.k, msg.n, msg.reps);
    case "load":
      allowSoftwareGpu = !!msg.softwareGpu;
      timeKernels = !!msg.timeKernels;
      await ensureWasm();
      if (msg.files) return loadFromFiles(id, msg.files, msg.name);
      return loadFromUrl(id, msg.base, msg.name, msg.cache);
    case "tokenize":
      return needLab().tokenize(msg.text, msg.bos);
    case "loadSae":
      return loadSaeFromBytes(id, msg);
    case "loadSaeUrl":
      return loadSaeFromUrl(id, msg);
    case "removeSae":
      // after the computations queued before it (they may use it)
      return inQueue(id, (l) => l.remove_sae(String(msg.hook)));
    case "saes":
      return JSON.parse(needLab().saes());
    case "gpuProfile":
      return needLab().gpu_profile();
    case "calibrate":
      // real engine work: it waits its turn like an analysis
      return inQueue(id, async (l) => JSON.parse(await l.calibrate(msg.backend || null)));
    case "estimate":
      return JSON.parse(needLab().estimate(msg.request));
    case "predict":
      return JSON.parse(await needLab().predict(msg.text, msg.bos, msg.k, msg.backend || null));
    case "analyze":
      // one engine computation at a time; queued ones wait for the previous
      return inQueue(id, async (l) => ({
        json: await l.analyze(
          msg.request,
          progressTo(id),
          (method, direction, component, layer, scores) => {
            post({ id, type: "partial", method, direction, component, layer, scores }, [scores.buffer]);
          },
          pause,
        ),
      }));
    case "analyzeGroup":
      return inQueue(id, async (l) => ({ json: await l.analyze_group(msg.request, progressTo(id), pause) }));
    case "circuit":
      // the circuit report's JSON text (parsed by the page)
      return inQueue(id, (l) => l.circuit(msg.request, progressTo(id), pause));
    case "reevaluateCircuit":
      // a few forwards on the CPU engine, after the queued computations
      return inQueue(id, (l) => l.reevaluate_circuit(String(msg.report), String(msg.method), String(msg.select), msg.n));
    case "reselectCircuit":
      await ensureWasm();
      return pkg.reselect_circuit(String(msg.report), String(msg.method), String(msg.select), msg.n);
    case "circuitGraph":
      await ensureWasm();
      return pkg.circuit_graph_json(String(msg.report), String(msg.method), JSON.stringify(msg.edges));
    case "runDataset":
      return inQueue(id, async (l) =>
        JSON.parse(await l.run_dataset(msg.request, msg.group ?? undefined, msg.reports ?? undefined, progressTo(id), (kind, index, text) => post({ id, type: "event", kind, index, text }), pause)),
      );
    case "ablateDataset":
      return inQueue(id, (l) => l.ablate_dataset(msg.reports, msg.sets, msg.backend || null, progressTo(id), pause));
    case "ablate":
      return inQueue(id, async (l) => JSON.parse(await l.ablate(msg.request)));
    case "groupPairs":
      return needLab().group_pairs(msg.pairs, msg.size);
    case "generateDataset":
      return needLab().generate_dataset(String(msg.task), msg.n, msg.seed, !!msg.bos);
    case "importPairs":
      return needLab().import_pairs(String(msg.text), String(msg.filename), !!msg.bos);
    case "summarize":
      await ensureWasm();
      return pkg.summarize(msg.reports, String(msg.source), msg.seed ?? undefined, msg.total, !!msg.includeSmallGap);
    case "upgradeReport":
      await ensureWasm();
      return pkg.upgrade_report(String(msg.json));
    case "slimReport":
      await ensureWasm();
      return pkg.slim_report(String(msg.json), String(msg.keep), Number(msg.digits));
    case "pairsCsv":
      await ensureWasm();
      return pkg.pairs_csv(msg.pairs);
    case "taskNames":
      await ensureWasm();
      return pkg.task_names();
    case "parseMetric":
      await ensureWasm();
      return pkg.parse_metric_spec(String(msg.spec));
    case "clearCache":
      if (typeof caches !== "undefined") await caches.delete(CACHE);
      return true;
    default:
      throw new Error(`unknown request ${type}`);
  }
}

/**
 * Runs `work(lab)` after the engine computations queued before it (they share
 * the engines); rejects with an AbortError if request `id` is cancelled before
 * it starts.
 */
async function inQueue(id, work) {
  const l = needLab();
  const run = queue.then(() => {
    if (cancelled.has(id)) throw cancelError();
    return work(l);
  });
  queue = run.catch(() => {});
  try {
    return await run;
  } finally {
    cancelled.delete(id);
  }
}

/** The engine's progress callback for request `id`: posts progress (ms since the first) and returns false once it is cancelled. */
function progressTo(id) {
  let t0 = 0;
  return (stage, done, total) => {
    if (!t0) t0 = performance.now();
    post({ id, type: "progress", stage, done, total, ms: performance.now() - t0 });
    return !cancelled.has(id);
  };
}

function cancelError() {
  const e = new Error("cancelled");
  e.name = "AbortError";
  return e;
}

self.onmessage = async (ev) => {
  const msg = ev.data;
  if (msg.type === "cancel") {
    cancelled.add(msg.target);
    return;
  }
  try {
    const value = await handle(msg);
    post({ id: msg.id, type: "result", value });
  } catch (e) {
    const message = e && e.message ? e.message : String(e);
    const name = message === "cancelled" ? "AbortError" : (e && e.name) || "Error";
    post({ id: msg.id, type: "error", message, name });
  }
};
