// <patch-lab> on another origin: a blog on origin A (a tiny node server on
// http://localhost:OTHER) loads embed.js from origin B (`patchlab serve
// --model-dir`, http://127.0.0.1:PORT) under the Content-Security-Policy that
// docs/embedding.md asks of a host page. The live element must start its
// worker (from a blob: module importing B's worker.js), load the wasm and the
// model from B and give the same report as the same-origin embed and the CLI; a
// results-only element must render a report JSON from B.

import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { IOI, ROOT, blogPost, canvasStats, cliReport, launch, makeModel, newContext, reportDiffs, serve } from "./helpers.mjs";

const METHODS = ["ap", "ig"];
let modelDir, server, host, browser, B;
const served = []; // paths origin A was asked for


/** docs/embedding.md's Content-Security-Policy for a page that embeds patchlab from origin `b`. */
const hostCsp = (b) =>
  [
    "default-src 'none'",
    `script-src ${b} 'wasm-unsafe-eval'`,
    `worker-src blob: ${b}`, // the blob: module and the worker.js it imports (a module worker's imports are worker-src)
    `connect-src ${b}`,
    `style-src ${b}`,
    "img-src data: blob:",
    "base-uri 'none'",
    "object-src 'none'",
  ].join("; ");

/** A blog post on origin A with one <patch-lab> element (attributes: name → value). */
function hostPage(attrs) {
  return blogPost({ csp: hostCsp(B.slice(0, -1)), embed: `${B}embed.js`, attrs });
}

const PAGES = {
  "/live.html": () => hostPage({ ...IOI, model: `${B}model/`, methods: METHODS.join(","), view: "heads" }),
  "/report.html": () => hostPage({ report: `${B}model/report.json`, view: "heads" }),
};

function startHost() {
  const srv = http.createServer((req, res) => {
    const p = new URL(req.url, "http://x").pathname;
    served.push(p);
    if (!PAGES[p]) {
      res.writeHead(404, { "Content-Type": "text/plain" });
      res.end("not found\n");
      return;
    }
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache" });
    res.end(PAGES[p]());
  });
  return new Promise((resolve) => {
    srv.listen(0, () => resolve({ url: `http://localhost:${srv.address().port}/`, close: () => srv.close() }));
  });
}

before(async () => {
  assert.ok(fs.existsSync(path.join(ROOT, "www/pkg/patchlab_bg.wasm")), "www/pkg is missing: run scripts/build-wasm");
  modelDir = makeModel();
  fs.writeFileSync(path.join(modelDir, "report.json"), JSON.stringify(cliReport(modelDir, IOI)));
  server = await serve({ modelDir });
  B = server.url;
  host = await startHost();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  server?.close();
  host?.close();
  if (modelDir) fs.rmSync(modelDir, { recursive: true, force: true });
});

/** A page that records uncaught errors, console errors (CSP reports among them) and requests. */
async function newPage(t) {
  const context = await newContext(browser, { viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  const seen = { errors: [], console: [], requests: [] };
  page.on("pageerror", (e) => seen.errors.push(e.message));
  page.on("console", (m) => m.type() === "error" && seen.console.push(m.text()));
  context.on("request", (r) => seen.requests.push(r.url()));
  context.on("requestfailed", (r) => seen.console.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on("worker", (w) => w.on?.("console", (m) => m.type() === "error" && seen.console.push(`worker: ${m.text()}`)));
  t.after(async () => {
    await context.close();
    assert.deepEqual(seen.errors, [], "uncaught errors in the page");
  });
  return { page, seen };
}

const state = (page) => page.evaluate(() => document.querySelector("patch-lab")?.dataset.state);
const errorText = (page) => page.evaluate(() => document.querySelector("patch-lab")?.shadowRoot?.querySelector(".error")?.textContent);
// the console's reports, and requests blocked by the CSP (a worker's: "request failed: URL csp")
const cspReports = (seen) => seen.console.filter((m) => /Content Security Policy| csp$/i.test(m));

async function liveReport(page, seen) {
  await page.waitForFunction(() => ["done", "error"].includes(document.querySelector("patch-lab")?.dataset.state));
  assert.equal(await state(page), "done", `the element failed: ${await errorText(page)}\nconsole: ${seen.console.join("\n")}`);
  return page.evaluate(() => document.querySelector("patch-lab").report);
}

describe("<patch-lab> embedded from another origin", () => {
  let sameOrigin;

  test("the same-origin embed on B computes live under B's CSP (the reference)", async (t) => {
    const { page, seen } = await newPage(t);
    await page.goto(`${B}embed-demo.html?${new URLSearchParams({ ...IOI, model: "/model/", methods: METHODS.join(","), view: "heads" })}`);
    sameOrigin = await liveReport(page, seen);
    assert.deepEqual(cspReports(seen), [], "B's own pages must keep their CSP");
  });

  test("computes live on origin A: worker, wasm and model from B; same report as the same-origin embed and the CLI", async (t) => {
    assert.notEqual(new URL(host.url).origin, new URL(B).origin);
    const { page, seen } = await newPage(t);
    served.length = 0;
    await page.goto(`${host.url}live.html`);
    const report = await liveReport(page, seen);
    assert.match(await page.evaluate(() => document.querySelector("patch-lab").shadowRoot.querySelector(".note").textContent), /Computed live on/);
    const stats = await canvasStats(page, "canvas");
    // AP, IG* and IG heatmaps of the heads, both directions
    assert.equal(stats.length, 6);
    for (const s of stats) assert.ok(s.colours > 12 && s.bar, s.key);

    const cli = cliReport(modelDir, { ...IOI, methods: METHODS });
    // the element leaves SwiftShader (a software adapter) for WebAssembly unless gpu="software": the backend is compared apart
    assert.equal(report.backend, sameOrigin?.backend ?? report.backend);
    assert.deepEqual(reportDiffs({ ...report, backend: cli.backend }, cli), [], "cross-origin embed vs CLI");
    if (sameOrigin) assert.deepEqual(reportDiffs(report, sameOrigin), [], "cross-origin vs same-origin embed");

    // everything but the post itself came from B
    assert.deepEqual([...new Set(served)].filter((p) => p !== "/favicon.ico"), ["/live.html"]);
    for (const f of ["embed.js", "patchlab.js", "worker.js", "pkg/patchlab.js", "pkg/patchlab_bg.wasm", "model/config.json", "model/model.safetensors", "style.css"]) {
      assert.ok(seen.requests.includes(`${B}${f}`), `${f} should come from B (requests: ${seen.requests.join(", ")})`);
    }
    assert.deepEqual(cspReports(seen), [], "docs/embedding.md's host-page CSP must be enough");
  });

  test("renders a saved report from B on origin A without a model, and recomputes it live with B's default model", async (t) => {
    const { page, seen } = await newPage(t);
    served.length = 0;
    await page.goto(`${host.url}report.html`);
    await page.waitForFunction(() => ["report", "error"].includes(document.querySelector("patch-lab")?.dataset.state));
    assert.equal(await state(page), "report", `the element failed: ${await errorText(page)}\nconsole: ${seen.console.join("\n")}`);
    const stats = await canvasStats(page, "canvas");
    // AP, IG*, IG and AtP heatmaps of the heads, both directions
    assert.equal(stats.length, 8);
    for (const s of stats) assert.ok(s.colours > 12 && s.bar, s.key);
    assert.ok(!seen.requests.some((u) => u.endsWith("model.safetensors") || u.endsWith("patchlab_bg.wasm")), "no model or wasm for a saved report");

    // "Recompute live": without a `model` attribute the default model is B's /model/ (next to embed.js), not A's
    await page.click("patch-lab button:has-text('Recompute live')");
    // it says first what it will download (the report names a local directory: B's default model instead)
    assert.match(await page.locator("patch-lab .confirm .note").textContent(), /cannot be downloaded by that name\. Recompute live loads this site's default model instead/);
    await page.click("patch-lab button:has-text('Download and recompute')");
    const live = await liveReport(page, seen);
    assert.ok(seen.requests.includes(`${B}model/model.safetensors`), `the model should come from B (requests: ${seen.requests.join(", ")})`);
    const saved = JSON.parse(fs.readFileSync(path.join(modelDir, "report.json"), "utf8"));
    assert.deepEqual(reportDiffs({ ...live, backend: saved.backend }, saved), [], "recomputed vs the saved (CLI) report");
    assert.deepEqual([...new Set(served)].filter((p) => p !== "/favicon.ico"), ["/report.html"]);
    assert.deepEqual(cspReports(seen), []);
  });
});
