// Loading a model "from the Hugging Face Hub" without a network: playwright
// routes https://huggingface.co/** to the tiny random model's files, so the
// lab's default path — byte progress, Cache Storage, offline second visit, a
// truncated download with its clear-cache action, and PatchLab.load with a
// repo id — runs end to end. Routing on the browser context reaches the
// requests of the module Web Worker that downloads the model (checked: in
// Chromium 156 with playwright-core 1.65 page routes reach them too).
// Not covered: the real Hub answers model.safetensors with a 302 to its CDN
// (*.hf.co, allowed by the page's CSP), but playwright does not route the
// target of a redirect it fulfilled (the browser then goes to the network), so
// the fake Hub sends every file directly.
// Run with scripts/test-e2e, or `node --test tests/e2e/hub.test.mjs` once
// www/pkg, target/debug/patchlab and Chromium exist.

import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { IOI, ROOT, launch, makeModel, serve, waitReady } from "./helpers.mjs";

const REPO = "some-org/tiny-gpt2";
const HUB = "https://huggingface.co";
const CACHE = "patchlab-models-v1"; // www/worker.js
const WEIGHTS = "model.safetensors";

let modelDir, server, browser;
/** The model directory's files by name. */
let files;

before(async () => {
  assert.ok(fs.existsSync(path.join(ROOT, "www/pkg/patchlab_bg.wasm")), "www/pkg is missing: run scripts/build-wasm");
  modelDir = makeModel();
  files = new Map(fs.readdirSync(modelDir).map((f) => [f, fs.readFileSync(path.join(modelDir, f))]));
  server = await serve({ modelDir });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  server?.close();
  if (modelDir) fs.rmSync(modelDir, { recursive: true, force: true });
});

/** The page's way of writing a byte count (www/app.js). */
function bytes(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(0)} kB`;
  return `${n} B`;
}

/**
 * A stand-in for the Hub on a browser context: `/<repo>/resolve/main/<file>`
 * answers with the model directory's file (CORS headers as the Hub sends),
 * 401 for another repo, 404 for a missing file. `mode`:
 *   "ok"        every file, with its Content-Length;
 *   "offline"   every request aborts (no network);
 *   "truncated" model.safetensors stops half-way, its Content-Length the full size;
 *   "short"     model.safetensors is cut in half, Content-Length saying so.
 * `log` holds every request: {file, status} (status "aborted" offline).
 */
class FakeHub {
  constructor() {
    this.mode = "ok";
    this.log = [];
  }

  async install(context) {
    await context.route(`${HUB}/**`, (route) => this.handle(route));
  }

  /** Requests answered with success since log entry `from`. */
  served(from = 0) {
    return this.log.slice(from).filter((e) => e.status === 200);
  }

  /** Names of the files sent since log entry `from`, sorted. */
  sent(from = 0) {
    return this.served(from)
      .map((e) => e.file)
      .sort();
  }

  handle(route) {
    const req = route.request();
    const url = new URL(req.url());
    const m = /^\/([^/]+\/[^/]+)\/resolve\/main\/(.+)$/.exec(url.pathname);
    const file = m ? m[2] : null;
    const entry = { file, status: null };
    this.log.push(entry);
    const cors = {
      "access-control-allow-origin": "*",
      "access-control-expose-headers": "Content-Length, ETag, X-Repo-Commit",
    };
    if (this.mode === "offline") {
      entry.status = "aborted";
      return route.abort("internetdisconnected");
    }
    if (!m || m[1] !== REPO) return this.reply(route, entry, 401, { ...cors, "x-error-code": "RepoNotFound" }, "Repository not found");
    if (!files.has(file)) return this.reply(route, entry, 404, { ...cors, "x-error-code": "EntryNotFound" }, "Entry not found");
    let body = files.get(file);
    let length = body.length;
    if (file === WEIGHTS && this.mode === "truncated") body = body.subarray(0, body.length >> 1);
    if (file === WEIGHTS && this.mode === "short") length = (body = body.subarray(0, body.length >> 1)).length;
    const type = file.endsWith(".json") ? "application/json" : file.endsWith(".txt") ? "text/plain" : "application/octet-stream";
    return this.reply(route, entry, 200, { ...cors, "content-type": type, "content-length": String(length), etag: `"${file}-${length}"` }, body);
  }

  reply(route, entry, status, headers, body) {
    entry.status = status;
    return route.fulfill({ status, headers, body: route.request().method() === "HEAD" ? "" : body });
  }
}

/**
 * A fresh browser context (so an empty Cache Storage) with the fake Hub, and
 * a record of the load status line: every text of #load-text and value of
 * #load-progress the page shows, in window.__loadLog.
 */
async function newPage(t) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const hub = new FakeHub();
  await hub.install(context);
  const local = []; // requests for the served /model/ directory
  context.on("request", (r) => {
    if (r.url().startsWith(`${server.url}model/`)) local.push(r.url());
  });
  await context.addInitScript(() => {
    window.__loadLog = [];
    document.addEventListener("DOMContentLoaded", () => {
      const text = document.getElementById("load-text");
      const bar = document.getElementById("load-progress");
      if (!text || !bar) return;
      const record = () => window.__loadLog.push({ text: text.textContent, value: bar.hasAttribute("value") ? bar.value : null });
      new MutationObserver(record).observe(text, { childList: true, characterData: true, subtree: true });
      new MutationObserver(record).observe(bar, { attributes: true, attributeFilter: ["value"] });
    });
  });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  t.after(async () => {
    await context.close();
    assert.deepEqual(errors, [], "uncaught errors in the page");
  });
  return { page, hub, local };
}

/** The URLs in the lab's Cache Storage (the worker and the page share it). */
function cachedUrls(page) {
  return page.evaluate(async (name) => {
    if (!(await caches.has(name))) return [];
    const c = await caches.open(name);
    return (await c.keys()).map((r) => r.url).sort();
  }, CACHE);
}

const hubUrl = (f) => `${HUB}/${REPO}/resolve/main/${f}`;

/** Types a prompt and waits for its token chips: the tokenizer works. */
async function checkTokenizes(page, text) {
  await page.fill("#clean", text);
  await page.waitForFunction(
    (want) => [...document.querySelectorAll("#clean-chips .chip")].map((c) => JSON.parse(c.title)).join("") === want,
    `<|endoftext|>${text}`,
    { timeout: 30000 },
  );
  return page.$$eval("#clean-chips .chip", (cs) => cs.length);
}

/** The top-10 next tokens the page suggests for the clean prompt it opened with (the model computes). */
async function suggestions(page) {
  await page.waitForFunction(() => document.querySelectorAll("#suggestion-list .suggestion").length === 10, null, { timeout: 60000 });
  return page.$$eval("#suggestion-list .suggestion", (bs) => bs.map((b) => b.textContent));
}

describe("the lab with a model from the Hub (routed, no network)", () => {
  test("downloads with a byte progress bar, then loads offline from Cache Storage", async (t) => {
    const { page, hub, local } = await newPage(t);
    const size = files.get(WEIGHTS).length;
    const visit = `${server.url}?model=${REPO}&clean=${encodeURIComponent(IOI.clean)}`;
    await page.goto(visit);
    const st = await waitReady(page);
    assert.equal(st.state, "ready", `the model did not load: ${await page.textContent("#load-error")}`);
    assert.match(await page.textContent("#load-text"), new RegExp(`^${REPO}: 2 layers × 4 heads, d_model 64, 256 neurons per layer — loaded in`));

    // the files came from the Hub's resolve URLs, once each
    assert.deepEqual(
      hub.served().map((e) => e.file),
      ["config.json", "tokenizer.json", WEIGHTS],
    );
    assert.deepEqual(local, [], "the page fetched the served /model/ directory instead of the Hub");
    assert.deepEqual(await cachedUrls(page), ["config.json", WEIGHTS, "tokenizer.json"].map(hubUrl));

    // the byte progress, in the page's words (a fulfilled route delivers the
    // body in one piece, so there is no part-way step here: the truncated
    // download below shows one)
    const log = await page.evaluate(() => window.__loadLog);
    const downloading = log.filter((e) => e.text.startsWith("Downloading model.safetensors: "));
    assert.ok(downloading.length >= 1, `no byte progress shown: ${JSON.stringify(log)}`);
    assert.ok(downloading.every((e) => e.text.endsWith(` of ${bytes(size)}`)), JSON.stringify(downloading));
    assert.ok(log.some((e) => e.text === `Downloading model.safetensors: ${bytes(size)} of ${bytes(size)}` && e.value === 1), JSON.stringify(log));

    const online = await suggestions(page); // for IOI.clean, from the URL
    assert.ok((await checkTokenizes(page, "Hello from the Hub")) >= 5);

    // "offline": every request to the Hub fails; a second visit reads Cache Storage
    hub.mode = "offline";
    const mark = hub.log.length;
    await page.goto(visit); // (the URL now holds the typed prompt: reload() would open that)
    const st2 = await waitReady(page);
    assert.equal(st2.state, "ready", `offline reload did not load: ${await page.textContent("#load-error")}`);
    assert.deepEqual(hub.served(mark), [], "a Hub request succeeded while offline");
    const log2 = await page.evaluate(() => window.__loadLog);
    assert.ok(log2.some((e) => e.text === `Reading model.safetensors: ${bytes(size)} of ${bytes(size)}`), JSON.stringify(log2));
    assert.ok(!log2.some((e) => e.text.startsWith("Downloading")), JSON.stringify(log2));
    assert.deepEqual(await suggestions(page), online, "the cached model predicts differently");
    assert.ok((await checkTokenizes(page, "Hello again, offline")) >= 5);
  });

  test("a truncated download shows a clear message and a clear-cache action, and the page recovers", async (t) => {
    const { page, hub } = await newPage(t);
    const size = files.get(WEIGHTS).length;
    hub.mode = "truncated";
    await page.goto(`${server.url}?model=${REPO}`);
    const st = await waitReady(page);
    assert.equal(st.state, "error");
    const msg = await page.textContent("#load-error");
    assert.match(msg, new RegExp(`^Could not load the model: model\\.safetensors is truncated: got ${size >> 1} of ${size} bytes; clear the cache and load it again`));
    // the bar stood at half the bytes before the error
    const log = await page.evaluate(() => window.__loadLog);
    assert.ok(
      log.some((e) => e.text === `Downloading model.safetensors: ${bytes(size >> 1)} of ${bytes(size)}` && Math.abs(e.value - 0.5) < 0.01),
      `no part-way byte progress: ${JSON.stringify(log)}`,
    );
    assert.ok(await page.isVisible("#load-error button:has-text('Clear cache and retry')"));
    assert.ok(await page.isVisible("#clear-cache"));
    assert.equal(hub.sent().filter((f) => f === WEIGHTS).length, 1);
    // the bad file is not kept (give a pending cache write time to land)
    await page.waitForTimeout(500);
    assert.deepEqual((await cachedUrls(page)).filter((u) => u.endsWith(WEIGHTS)), [], "a truncated model.safetensors stayed in Cache Storage");

    // the page stays usable: the Hub is back, clear the cache and retry
    hub.mode = "ok";
    const mark = hub.log.length;
    await page.click("#load-error button:has-text('Clear cache and retry')");
    await page.waitForFunction(() => window.patchlabPage.state === "ready", null, { timeout: 60000 });
    assert.equal(await page.isHidden("#load-error"), true);
    assert.deepEqual(hub.sent(mark), ["config.json", WEIGHTS, "tokenizer.json"]);
    assert.ok((await checkTokenizes(page, "Recovered after a truncated download")) >= 5);
  });

  test("a weights file shorter than its header says is refused with a clear message; Retry works once the Hub is fixed", async (t) => {
    const { page, hub } = await newPage(t);
    const size = files.get(WEIGHTS).length;
    hub.mode = "short";
    await page.goto(`${server.url}?model=${REPO}`);
    assert.equal((await waitReady(page)).state, "error");
    const msg = await page.textContent("#load-error");
    assert.match(msg, new RegExp(`^Could not load the model: model\\.safetensors should be ${size} bytes by its header, but is ${size >> 1}: the file is truncated or corrupt; clear the cache and load it again`));
    // plain Retry (no cache clearing) must not meet the bad file again
    hub.mode = "ok";
    await page.locator("#load-error button", { hasText: /^Retry$/ }).click();
    await page.waitForFunction(() => window.patchlabPage.state !== "loading", null, { timeout: 60000 });
    assert.equal(await page.evaluate(() => window.patchlabPage.state), "ready", await page.textContent("#load-error"));
  });
});

describe("the JS API with a Hub repo id (routed, no network)", () => {
  test("resolveModel maps repo ids and URLs", async (t) => {
    const { page } = await newPage(t);
    await page.goto(`${server.url}embed-demo.html?report=/model/none.json`); // a page that loads no model itself
    const got = await page.evaluate(async () => {
      const { resolveModel, DEFAULT_HUB_MODEL } = await import("/patchlab.js");
      const here = `${location.origin}/lab/index.html`;
      const r = (m, base = here) => {
        try {
          return resolveModel(m, base);
        } catch (e) {
          return { error: e.name, message: e.message };
        }
      };
      return {
        DEFAULT_HUB_MODEL,
        origin: location.origin,
        cases: [
          ["some-org/tiny-gpt2", r("some-org/tiny-gpt2")],
          [" openai-community/gpt2 ", r(" openai-community/gpt2 ")],
          ["(none)", r(undefined)],
          ["(empty)", r("")],
          ["EleutherAI/gpt-neo-125m.v2", r("EleutherAI/gpt-neo-125m.v2")],
          ["/model/", r("/model/")],
          ["/model", r("/model")],
          ["./model/", r("./model/")],
          ["model", r("model")],
          ["a/b/c", r("a/b/c")],
          ["https://mirror.example/gpt2", r("https://mirror.example/gpt2")],
          [`${location.origin}/model/`, r(`${location.origin}/model/`)],
          ["https://huggingface.co/openai-community/gpt2/resolve/main/", r("https://huggingface.co/openai-community/gpt2/resolve/main/")],
          ["ftp://example.com/gpt2/", r("ftp://example.com/gpt2/")],
          ["javascript:alert(1)", r("javascript:alert(1)")],
          ["(default base)", r("/model/", undefined)],
          ["(files)", (({ files, name, cache }) => ({ files: files.map((f) => f.name), name, cache }))(r([new File(["{}"], "config.json")]))],
        ],
      };
    });
    const o = got.origin;
    const hub = (repo) => ({ base: `${HUB}/${repo}/resolve/main/`, name: repo, cache: true });
    assert.equal(got.DEFAULT_HUB_MODEL, "openai-community/gpt2");
    const want = {
      "some-org/tiny-gpt2": hub("some-org/tiny-gpt2"),
      " openai-community/gpt2 ": hub("openai-community/gpt2"),
      "(none)": hub("openai-community/gpt2"),
      "(empty)": hub("openai-community/gpt2"),
      "EleutherAI/gpt-neo-125m.v2": hub("EleutherAI/gpt-neo-125m.v2"),
      // base URLs: relative to the page, a trailing slash added; cached only from other origins
      "/model/": { base: `${o}/model/`, name: "model", cache: false },
      "/model": { base: `${o}/model/`, name: "model", cache: false },
      "./model/": { base: `${o}/lab/model/`, name: "model", cache: false },
      model: { base: `${o}/lab/model/`, name: "model", cache: false },
      "a/b/c": { base: `${o}/lab/a/b/c/`, name: "c", cache: false },
      "https://mirror.example/gpt2": { base: "https://mirror.example/gpt2/", name: "gpt2", cache: true },
      [`${o}/model/`]: { base: `${o}/model/`, name: "model", cache: false },
      "https://huggingface.co/openai-community/gpt2/resolve/main/": { base: "https://huggingface.co/openai-community/gpt2/resolve/main/", name: "main", cache: true },
      "ftp://example.com/gpt2/": { error: "LoadError", message: 'model "ftp://example.com/gpt2/" is neither a Hugging Face repo id (owner/name) nor an http(s) URL' },
      "javascript:alert(1)": { error: "LoadError", message: 'model "javascript:alert(1)" is neither a Hugging Face repo id (owner/name) nor an http(s) URL' },
      "(default base)": { base: `${o}/model/`, name: "model", cache: false },
      "(files)": { files: ["config.json"], name: "local files", cache: false },
    };
    assert.deepEqual(Object.fromEntries(got.cases), want);
  });

  test("PatchLab.load({ model: repo }) downloads through the Hub, then reads Cache Storage; bad downloads reject with LoadError", async (t) => {
    const { page, hub } = await newPage(t);
    const size = files.get(WEIGHTS).length;
    await page.goto(`${server.url}embed-demo.html?report=/model/none.json`);
    const load = (model) =>
      page.evaluate(async (model) => {
        const { PatchLab } = await import("/patchlab.js");
        const progress = [];
        try {
          const lab = await PatchLab.load({ model, onProgress: (p) => progress.push(p) });
          const out = {
            info: lab.info,
            progress,
            tokens: await lab.tokenize(" Mary", { bos: false }),
            predict: await lab.predict("When Mary and John went to the store, John gave a drink to", { k: 5, backend: "cpu" }),
          };
          lab.close();
          return out;
        } catch (e) {
          return { error: e.name, message: e.message, progress };
        }
      }, model);

    const fromHub = await load(REPO);
    assert.equal(fromHub.error, undefined, fromHub.message);
    assert.equal(fromHub.info.name, REPO);
    assert.equal(fromHub.info.n_layers, 2);
    assert.deepEqual(fromHub.tokens, [{ id: 5335, text: " Mary" }]);
    assert.deepEqual(hub.sent(), ["config.json", WEIGHTS, "tokenizer.json"]);
    const weights = fromHub.progress.filter((p) => p.phase === "weights");
    assert.ok(weights.length >= 1 && weights.every((p) => p.total === size && p.cached === false), JSON.stringify(weights));
    assert.equal(weights.at(-1).loaded, size);
    assert.deepEqual(
      [...new Set(fromHub.progress.map((p) => p.phase))],
      ["config", "tokenizer", "weights", "building"],
    );

    // the same bytes as the served /model/ directory
    const fromDir = await load("/model/");
    assert.equal(fromDir.error, undefined, fromDir.message);
    assert.deepEqual(fromHub.predict, fromDir.predict);

    // offline: the cached copy
    hub.mode = "offline";
    const mark = hub.log.length;
    const cached = await load(REPO);
    assert.equal(cached.error, undefined, cached.message);
    assert.deepEqual(hub.served(mark), []);
    assert.ok(cached.progress.filter((p) => p.phase === "weights").every((p) => p.cached === true));
    assert.deepEqual(cached.predict, fromHub.predict);

    // offline with nothing cached: a clear LoadError
    await page.evaluate(async () => (await import("/patchlab.js")).PatchLab.clearCache());
    assert.deepEqual(await cachedUrls(page), []);
    const offline = await load(REPO);
    assert.equal(offline.error, "LoadError");
    assert.match(offline.message, new RegExp(`^could not download config\\.json from ${hubUrl("config.json").replace(/[.]/g, "\\.")}: .*\\(offline, blocked, or the server does not allow cross-origin requests\\)$`));

    // a repo the Hub does not have
    hub.mode = "ok";
    const missing = await load("some-org/no-such-model");
    assert.equal(missing.error, "LoadError");
    assert.equal(missing.message, `could not download config.json: HTTP 401 from ${HUB}/some-org/no-such-model/resolve/main/config.json`);

    // a truncated weights file, and one cut short with a matching Content-Length:
    // a LoadError, and nothing of it left in Cache Storage (the weights are
    // written there while they download: a few rounds, since a late write
    // landing after the clean-up is a race)
    const messages = {
      truncated: `model.safetensors is truncated: got ${size >> 1} of ${size} bytes; clear the cache and load it again`,
      short: `model.safetensors should be ${size} bytes by its header, but is ${size >> 1}: the file is truncated or corrupt; clear the cache and load it again`,
    };
    for (const mode of ["truncated", "short", "truncated", "short", "truncated", "short"]) {
      hub.mode = mode;
      const bad = await load(REPO);
      assert.equal(bad.error, "LoadError");
      assert.equal(bad.message, messages[mode]);
      await page.waitForTimeout(300);
      assert.deepEqual(await cachedUrls(page), [], `a failed load (${mode}) left files in Cache Storage`);
    }
  });
});
