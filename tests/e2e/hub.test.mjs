// Loading a model "from the Hugging Face Hub" without a network: playwright
// routes https://huggingface.co/** to random models in the files and layout
// the Hub publishes (`patchlab random-model` writes them: the legacy
// tokenizer.json without model.type, the published config.json fields,
// tensor names and mask buffers; docs/published-files.md), so the lab's
// default path runs end to end: byte progress, Cache Storage, offline second
// visit, truncated downloads, PatchLab.load with a repo id, the family's
// other layouts (distilgpt2's `transformer.` names, gpt2-medium's config),
// and a model too large for a tab refused before its weights download.
//
// The real Hub answers `resolve/main/model.safetensors` with a 302 to a CDN
// on another origin. Here a second local server plays the CDN: the routed
// Hub answers 302 with its Location (playwright does not route a redirect's
// target, so the browser really goes there, across origins, with CORS), and
// the CDN can cut a connection half-way (the download resumes with a Range
// request), refuse (403), or be unreachable.
// Routing on the browser context reaches the requests of the module Web
// Worker that downloads the model.
// Run with scripts/test-e2e, or `node --test tests/e2e/hub.test.mjs` once
// www/pkg, target/debug/patchlab and Chromium exist.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { BIN, IOI, ROOT, launch, makeModel, newContext, serve, waitReady } from "./helpers.mjs";

const REPO = "some-org/tiny-gpt2";
const HUB = "https://huggingface.co";
const CACHE = "patchlab-models-v1"; // www/worker.js
const WEIGHTS = "model.safetensors";
// other repos of the fake Hub: the same random weights in the published
// layouts of the family, and gpt2-xl's published config alone
const DISTIL = "distilbert/distilgpt2";
const MEDIUM = "openai-community/gpt2-medium";
const XL = "openai-community/gpt2-xl";

let modelDir, server, browser, cdn;
const tmp = [];
/** repo id → (file name → bytes) */
const repos = new Map();

/** The files of a model directory by name. */
function filesOf(dir) {
  return new Map(fs.readdirSync(dir).map((f) => [f, fs.readFileSync(path.join(dir, f))]));
}

/** `patchlab random-model` of the e2e model's shape and seed in the layout of `like`. */
function layoutModel(like) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `patchlab-e2e-${like}-`));
  tmp.push(dir);
  execFileSync(BIN, ["random-model", "--like", like, "--layers", "2", "--heads", "4", "--d-model", "64", "--seed", "1", "--n-ctx", "64", "--out", dir], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
  return filesOf(dir);
}

before(async () => {
  assert.ok(fs.existsSync(path.join(ROOT, "www/pkg/patchlab_bg.wasm")), "www/pkg is missing: run scripts/build-wasm");
  modelDir = makeModel();
  repos.set(REPO, filesOf(modelDir));
  repos.set(DISTIL, layoutModel("distilgpt2"));
  repos.set(MEDIUM, layoutModel("gpt2-medium"));
  // gpt2-xl: its published config (shape 48 × 25 × 1600), and weights that
  // must never be asked for
  const xl = layoutModel("gpt2-xl");
  const cfg = JSON.parse(xl.get("config.json"));
  Object.assign(cfg, { n_layer: 48, n_head: 25, n_embd: 1600, n_ctx: 1024, n_positions: 1024 });
  xl.set("config.json", Buffer.from(JSON.stringify(cfg, null, 2)));
  repos.set(XL, xl);
  server = await serve({ modelDir });
  cdn = await CdnServer.start();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  server?.close();
  await cdn?.close();
  for (const d of [modelDir, ...tmp]) if (d) fs.rmSync(d, { recursive: true, force: true });
});

/** The page's way of writing a byte count (www/app.js). */
function bytes(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(0)} kB`;
  return `${n} B`;
}

/** A single byte range `bytes=a-` or `bytes=a-b` of a file of `size` bytes, or null. */
function byteRange(header, size) {
  const m = /^bytes=(\d+)-(\d*)$/.exec(header || "");
  if (!m) return null;
  const start = Number(m[1]);
  const end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
  return start <= end ? { start, end } : { start, end: start - 1 };
}

/**
 * The Hub's CDN on a second local origin (another port): serves the fake
 * Hub's files at /<repo>/<file> with the headers a CDN sends across origins
 * (Access-Control-Allow-Origin *, Content-Length, Accept-Ranges, 206 for a
 * byte range). `mode`:
 *   "ok"         every request answered;
 *   "cut-once"   the first request for the weights sends its full
 *                Content-Length, half the bytes, then drops the connection;
 *   "cut-always" every request for the weights drops its connection after
 *                a sixteenth of the file (each resume brings new bytes, but
 *                the attempts run out);
 *   "cut-always-one-empty" the same, but the second request drops its
 *                connection before sending any byte (a reset that loses
 *                what was sent: no new bytes, and still a network error);
 *   "forbidden"  403, as for an expired signed URL.
 * `log` holds every request: {file, range, status}.
 */
class CdnServer {
  /** The mode (below); setting it starts it afresh ("cut-once" cuts once more). */
  set mode(m) {
    this._mode = m;
    this.cutOnce = false;
    this.weightRequests = 0;
  }

  get mode() {
    return this._mode;
  }

  static async start() {
    const c = new CdnServer();
    c.mode = "ok";
    c.log = [];
    c.server = http.createServer((req, res) => c.handle(req, res));
    await new Promise((resolve) => c.server.listen(0, "127.0.0.1", resolve));
    c.origin = `http://127.0.0.1:${c.server.address().port}`;
    return c;
  }

  close() {
    this.server.closeAllConnections?.();
    return new Promise((resolve) => this.server.close(resolve));
  }

  /** Where the Hub redirects for `file` of `repo` (a signed-looking URL). */
  url(repo, file) {
    return `${this.origin}/${repo}/${file}?X-Amz-Signature=e2e&Expires=9999999999`;
  }

  /** Requests for the weights since entry `from`. */
  weights(from = 0) {
    return this.log.slice(from).filter((e) => e.file === WEIGHTS);
  }

  handle(req, res) {
    const url = new URL(req.url, this.origin);
    const m = /^\/(.+)\/([^/]+)$/.exec(url.pathname);
    const body = m && repos.get(m[1])?.get(m[2]);
    const entry = { file: m?.[2], range: req.headers.range || null, status: null };
    this.log.push(entry);
    const cors = {
      "access-control-allow-origin": "*",
      "access-control-allow-headers": "range",
      "access-control-expose-headers": "Content-Length, Content-Range, Accept-Ranges, ETag",
    };
    const reply = (status, headers, data) => {
      entry.status = status;
      res.writeHead(status, { ...cors, ...headers });
      res.end(req.method === "HEAD" ? undefined : data);
    };
    if (req.method === "OPTIONS") return reply(204, { "access-control-allow-methods": "GET, HEAD" });
    if (!body) return reply(404, { "content-type": "text/plain" }, "NoSuchKey");
    if (this.mode === "forbidden") return reply(403, { "content-type": "text/plain" }, "Request has expired");
    const range = byteRange(req.headers.range, body.length);
    const part = range ? body.subarray(range.start, range.end + 1) : body;
    const headers = {
      "content-type": "application/octet-stream",
      "content-length": String(part.length),
      "accept-ranges": "bytes",
      etag: `"${m[2]}-${body.length}"`,
    };
    if (range) headers["content-range"] = `bytes ${range.start}-${range.end}/${body.length}`;
    const status = range ? 206 : 200;
    const always = this.mode === "cut-always" || this.mode === "cut-always-one-empty";
    const cut = m[2] === WEIGHTS && ((this.mode === "cut-once" && !this.cutOnce) || always);
    if (cut && this.mode === "cut-once") this.cutOnce = true;
    if (!cut) return reply(status, headers, part);
    this.weightRequests += 1;
    // the promised length, some of the bytes, then a dropped connection
    entry.status = `${status}, cut`;
    res.writeHead(status, { ...cors, ...headers });
    if (this.mode === "cut-always-one-empty" && this.weightRequests === 2) {
      res.flushHeaders();
      setImmediate(() => req.socket.destroy());
      return;
    }
    const n = this.mode === "cut-once" ? part.length >> 1 : Math.min(part.length - 1, Math.ceil(body.length / 16));
    res.write(part.subarray(0, n), () => setImmediate(() => req.socket.destroy()));
  }
}

/**
 * A stand-in for the Hub on a browser context: `/<repo>/resolve/main/<file>`
 * answers with the repo's file (CORS headers as the Hub sends, byte ranges
 * as it serves them), 401 for an unknown repo, 404 for a missing file.
 * `mode`:
 *   "ok"        every file, with its Content-Length;
 *   "offline"   every request aborts (no network);
 *   "truncated" model.safetensors stops half-way, its Content-Length the
 *               full size, whatever range is asked for (a broken copy);
 *   "short"     model.safetensors is cut in half, Content-Length saying so.
 * `cdn`: where model.safetensors is sent from instead, by a 302 as the real
 * Hub does (the CdnServer), or a URL nothing answers at.
 * `log` holds every request: {repo, file, status} (status "aborted" offline).
 */
class FakeHub {
  constructor() {
    this.mode = "ok";
    this.cdn = null;
    this.log = [];
  }

  async install(context) {
    await context.route(`${HUB}/**`, (route) => this.handle(route));
  }

  /** Requests answered with success (or a redirect) since log entry `from`. */
  served(from = 0) {
    return this.log.slice(from).filter((e) => e.status === 200 || e.status === 206 || e.status === 302);
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
    const entry = { repo: m?.[1], file, status: null };
    this.log.push(entry);
    const cors = {
      "access-control-allow-origin": "*",
      "access-control-expose-headers": "Content-Length, Content-Range, Accept-Ranges, ETag, X-Repo-Commit, X-Linked-Size, Location",
    };
    if (this.mode === "offline") {
      entry.status = "aborted";
      return route.abort("internetdisconnected");
    }
    const files = m && repos.get(m[1]);
    if (!files) return this.reply(route, entry, 401, { ...cors, "x-error-code": "RepoNotFound" }, "Repository not found");
    if (!files.has(file)) return this.reply(route, entry, 404, { ...cors, "x-error-code": "EntryNotFound" }, "Entry not found");
    let body = files.get(file);
    if (file === WEIGHTS && this.cdn) {
      const location = typeof this.cdn === "string" ? this.cdn : this.cdn.url(m[1], file);
      return this.reply(route, entry, 302, { ...cors, location, "x-linked-size": String(body.length) }, "");
    }
    let length = body.length;
    const range = this.mode === "ok" ? byteRange(req.headers().range, body.length) : null;
    if (range) body = body.subarray(range.start, range.end + 1);
    if (file === WEIGHTS && this.mode === "truncated") body = body.subarray(0, body.length >> 1);
    if (file === WEIGHTS && this.mode === "short") length = (body = body.subarray(0, body.length >> 1)).length;
    if (range) length = body.length;
    const type = file.endsWith(".json") ? "application/json" : file.endsWith(".txt") ? "text/plain" : "application/octet-stream";
    const headers = { ...cors, "content-type": type, "content-length": String(length), "accept-ranges": "bytes", etag: `"${file}-${length}"` };
    if (range) headers["content-range"] = `bytes ${range.start}-${range.end}/${files.get(file).length}`;
    return this.reply(route, entry, range ? 206 : 200, headers, body);
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
  const context = await newContext(browser, { viewport: { width: 1280, height: 900 } });
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

/** The size of the body Cache Storage holds for `url`. */
function cachedSize(page, url) {
  return page.evaluate(
    async ({ name, url }) => {
      const hit = await (await caches.open(name)).match(url);
      return hit ? (await hit.arrayBuffer()).byteLength : null;
    },
    { name: CACHE, url },
  );
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
  );
  return page.$$eval("#clean-chips .chip", (cs) => cs.length);
}

/** The top-10 next tokens the page suggests for the clean prompt it opened with (the model computes). */
async function suggestions(page) {
  await page.waitForFunction(() => document.querySelectorAll("#suggestion-list .suggestion").length === 10);
  return page.$$eval("#suggestion-list .suggestion", (bs) => bs.map((b) => b.textContent));
}

describe("the lab with a model from the Hub (routed, no network)", () => {
  test("downloads with a byte progress bar, then loads offline from Cache Storage", async (t) => {
    const { page, hub, local } = await newPage(t);
    const size = repos.get(REPO).get(WEIGHTS).length;
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
    const size = repos.get(REPO).get(WEIGHTS).length;
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
    // the download was resumed once (a Range request), which brought no new bytes
    assert.deepEqual(hub.log.filter((e) => e.file === WEIGHTS).map((e) => e.status), [200, 200]);
    // the bad file is not kept (the worker settles its cache writes before it reports the error)
    assert.deepEqual((await cachedUrls(page)).filter((u) => u.endsWith(WEIGHTS)), [], "a truncated model.safetensors stayed in Cache Storage");

    // the page stays usable: the Hub is back, clear the cache and retry
    hub.mode = "ok";
    const mark = hub.log.length;
    await page.click("#load-error button:has-text('Clear cache and retry')");
    await page.waitForFunction(() => window.patchlabPage.state === "ready");
    assert.equal(await page.isHidden("#load-error"), true);
    assert.deepEqual(hub.sent(mark), ["config.json", WEIGHTS, "tokenizer.json"]);
    assert.ok((await checkTokenizes(page, "Recovered after a truncated download")) >= 5);
  });

  test("a weights file shorter than its header says is refused with a clear message; Retry works once the Hub is fixed", async (t) => {
    const { page, hub } = await newPage(t);
    const size = repos.get(REPO).get(WEIGHTS).length;
    hub.mode = "short";
    await page.goto(`${server.url}?model=${REPO}`);
    assert.equal((await waitReady(page)).state, "error");
    const msg = await page.textContent("#load-error");
    assert.match(msg, new RegExp(`^Could not load the model: model\\.safetensors should be ${size} bytes by its header, but is ${size >> 1}: the file is truncated or corrupt; clear the cache and load it again`));
    // plain Retry (no cache clearing) must not meet the bad file again
    hub.mode = "ok";
    await page.locator("#load-error button", { hasText: /^Retry$/ }).click();
    await page.waitForFunction(() => window.patchlabPage.state !== "loading");
    assert.equal(await page.evaluate(() => window.patchlabPage.state), "ready", await page.textContent("#load-error"));
  });
});

/**
 * A page whose fake Hub redirects the weights to the CDN, in `mode`; with
 * the CDN log's length before the test (`mark`) and the weights' size.
 */
async function cdnPage(t, mode) {
  const { page, hub } = await newPage(t);
  hub.cdn = cdn;
  cdn.mode = mode;
  return { page, hub, mark: cdn.log.length, size: repos.get(REPO).get(WEIGHTS).length };
}

describe("model.safetensors through the Hub's redirect to its CDN on another origin", () => {
  test("downloads across the redirect with byte progress, caches under the Hub's URL, then loads offline", async (t) => {
    const { page, hub, mark, size } = await cdnPage(t, "ok");
    const visit = `${server.url}?model=${REPO}&clean=${encodeURIComponent(IOI.clean)}`;
    await page.goto(visit);
    const st = await waitReady(page);
    assert.equal(st.state, "ready", `the model did not load: ${await page.textContent("#load-error")}`);
    // the Hub redirected the weights; the CDN sent them, whole, once
    assert.deepEqual(hub.log.filter((e) => e.file === WEIGHTS).map((e) => e.status), [302]);
    assert.deepEqual(cdn.weights(mark).map((e) => [e.range, e.status]), [[null, 200]]);
    const log = await page.evaluate(() => window.__loadLog);
    assert.ok(log.some((e) => e.text === `Downloading model.safetensors: ${bytes(size)} of ${bytes(size)}` && e.value === 1), JSON.stringify(log));
    // cached under the URL the page asked for, with every byte
    assert.deepEqual(await cachedUrls(page), ["config.json", WEIGHTS, "tokenizer.json"].map(hubUrl));
    assert.equal(await cachedSize(page, hubUrl(WEIGHTS)), size);
    const online = await suggestions(page);

    // offline, the Hub and its CDN both: Cache Storage
    hub.mode = "offline";
    const cdnMark = cdn.log.length;
    await page.goto(visit);
    assert.equal((await waitReady(page)).state, "ready", await page.textContent("#load-error"));
    assert.deepEqual(cdn.log.slice(cdnMark), []);
    assert.deepEqual(await suggestions(page), online);
  });

  test("a connection cut half-way is resumed with a Range request; the model and the cache are whole", async (t) => {
    const { page, hub, mark, size } = await cdnPage(t, "cut-once");
    const half = size >> 1;
    await page.goto(`${server.url}?model=${REPO}&clean=${encodeURIComponent(IOI.clean)}`);
    const st = await waitReady(page);
    assert.equal(st.state, "ready", `the model did not load: ${await page.textContent("#load-error")}`);
    cdn.mode = "ok";
    // the first answer broke off after sending half the file; the resume
    // asked the Hub again (another redirect) for the rest from the bytes the
    // page had (at most that half: the reset that cuts a connection can lose
    // the last bytes sent), and the CDN sent exactly that
    const weights = cdn.weights(mark);
    assert.equal(weights.length, 2, JSON.stringify(weights));
    assert.deepEqual(weights[0], { file: WEIGHTS, range: null, status: "200, cut" });
    const from = Number(/^bytes=(\d+)-$/.exec(weights[1].range)?.[1]);
    assert.ok(from > 0 && from <= half, `the resume asked for ${weights[1].range}; the cut came after ${half} bytes`);
    assert.deepEqual(weights[1], { file: WEIGHTS, range: `bytes=${from}-`, status: 206 });
    assert.deepEqual(hub.log.filter((e) => e.file === WEIGHTS).map((e) => e.status), [302, 302]);
    const log = await page.evaluate(() => window.__loadLog);
    assert.ok(
      log.some((e) => e.text === `The connection broke after ${bytes(from)} of ${bytes(size)}: resuming the download (attempt 1)…`),
      JSON.stringify(log),
    );
    assert.ok(log.some((e) => e.text === `Downloading model.safetensors: ${bytes(size)} of ${bytes(size)}`), JSON.stringify(log));
    assert.equal(await cachedSize(page, hubUrl(WEIGHTS)), size);
    // the same model as an uncut download: the served /model/ directory
    const resumed = await suggestions(page);
    const page2 = (await newPage(t)).page;
    await page2.goto(`${server.url}?model=/model/&clean=${encodeURIComponent(IOI.clean)}`);
    assert.equal((await waitReady(page2)).state, "ready");
    assert.deepEqual(resumed, await suggestions(page2));
  });

  test("a redirect target that refuses, one that cannot be reached, and a download that keeps breaking each get a clear message", async (t) => {
    const { page, hub } = await newPage(t);
    const size = repos.get(REPO).get(WEIGHTS).length;
    const load = async () => {
      await page.goto(`${server.url}?model=${REPO}`);
      assert.equal((await waitReady(page)).state, "error");
      return page.textContent("#load-error");
    };
    hub.cdn = cdn;
    cdn.mode = "forbidden";
    const signed = cdn.url(REPO, WEIGHTS);
    assert.ok(
      (await load()).startsWith(`Could not load the model: could not download model.safetensors: HTTP 403 from ${signed} (where ${hubUrl(WEIGHTS)} redirected)`),
      await page.textContent("#load-error"),
    );
    // a CDN that does not answer: a port nothing listens on
    const closed = http.createServer();
    await new Promise((r) => closed.listen(0, "127.0.0.1", r));
    const port = closed.address().port;
    await new Promise((r) => closed.close(r));
    hub.cdn = `http://127.0.0.1:${port}/${REPO}/${WEIGHTS}`;
    const unreachable = await load();
    assert.ok(
      unreachable.startsWith(`Could not load the model: could not download model.safetensors from ${hubUrl(WEIGHTS)}: `) &&
        unreachable.includes("(offline, blocked, or the server does not allow cross-origin requests; the Hub sends large files from another host (cas-bridge.xethub.hf.co or cdn-lfs.hf.co), which must be reachable too)"),
      unreachable,
    );
    // every answer breaks off a little further: the attempts to resume run out
    hub.cdn = cdn;
    cdn.mode = "cut-always";
    const mark = cdn.log.length;
    const broken = await load();
    assert.match(broken, new RegExp(`^Could not load the model: the download of model\\.safetensors broke off after \\d+ of ${size} bytes \\(.+\\), and 5 attempts to resume it failed`));
    assert.equal(cdn.weights(mark).length, 6);
    // a resume that breaks off before any byte arrives is a network error,
    // not a server sending the same short file: the attempts go on
    cdn.mode = "cut-always-one-empty";
    const mark2 = cdn.log.length;
    const empty = await load();
    assert.match(empty, new RegExp(`^Could not load the model: the download of model\\.safetensors broke off after \\d+ of ${size} bytes \\(.+\\), and 5 attempts to resume it failed`));
    assert.equal(cdn.weights(mark2).length, 6);
    assert.deepEqual(await cachedUrls(page), [], "a failed load left files in Cache Storage");
    cdn.mode = "ok";
    // and the page recovers
    await page.locator("#load-error button", { hasText: /^Retry$/ }).click();
    await page.waitForFunction(() => window.patchlabPage.state !== "loading");
    assert.equal(await page.evaluate(() => window.patchlabPage.state), "ready", await page.textContent("#load-error"));
  });
});

describe("the GPT-2 family as published (routed, no network)", () => {
  test("distilgpt2's names (transformer.…) and gpt2-medium's config load, and the same weights predict the same", async (t) => {
    const { page, hub } = await newPage(t);
    await page.goto(`${server.url}embed-demo.html?report=/model/none.json`);
    const load = (model) =>
      page.evaluate(async ({ model, clean }) => {
        const { PatchLab } = await import("/patchlab.js");
        try {
          const lab = await PatchLab.load({ model });
          const out = { info: lab.info, predict: await lab.predict(clean, { k: 10, backend: "cpu" }) };
          lab.close();
          return out;
        } catch (e) {
          return { error: e.name, message: e.message };
        }
      }, { model, clean: IOI.clean });
    const base = await load(REPO);
    assert.equal(base.error, undefined, base.message);
    for (const repo of [DISTIL, MEDIUM]) {
      const got = await load(repo);
      assert.equal(got.error, undefined, `${repo}: ${got.message}`);
      assert.equal(got.info.name, repo);
      assert.deepEqual([got.info.n_layers, got.info.n_heads, got.info.d_model], [2, 4, 64]);
      assert.deepEqual(got.predict, base.predict, repo);
    }
    assert.deepEqual(hub.sent().filter((f) => f === WEIGHTS).length, 3);
  });

  test("a model too large for a browser tab (gpt2-xl) is refused before its weights download, with the sizes", async (t) => {
    const { page, hub } = await newPage(t);
    await page.goto(`${server.url}?model=${XL}`);
    assert.equal((await waitReady(page)).state, "error");
    const msg = await page.textContent("#load-error");
    assert.ok(
      msg.startsWith(
        "Could not load the model: this model is too large for a browser tab: its 1,557,611,200 parameters take 6.23 GB as f32, but WebAssembly gives a page at most 4.29 GB (4 GiB), of which the lab needs 0.54 GB for its computations, so 3.76 GB for the weights. Run it with the command line (patchlab analyze --model DIR) instead",
      ),
      msg,
    );
    assert.deepEqual(hub.log.filter((e) => e.repo === XL).map((e) => e.file), ["config.json"], "more than config.json was asked for");
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
    const size = repos.get(REPO).get(WEIGHTS).length;
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
    // written there while they download, and the worker waits for that write
    // to settle before it cleans up: a few rounds, to catch a late write)
    const messages = {
      truncated: `model.safetensors is truncated: got ${size >> 1} of ${size} bytes; clear the cache and load it again`,
      short: `model.safetensors should be ${size} bytes by its header, but is ${size >> 1}: the file is truncated or corrupt; clear the cache and load it again`,
    };
    for (const mode of ["truncated", "short", "truncated", "short", "truncated", "short"]) {
      hub.mode = mode;
      const bad = await load(REPO);
      assert.equal(bad.error, "LoadError");
      assert.equal(bad.message, messages[mode]);
      assert.deepEqual(await cachedUrls(page), [], `a failed load (${mode}) left files in Cache Storage`);
    }
  });
});
