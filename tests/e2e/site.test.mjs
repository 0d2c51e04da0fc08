// The static site: `scripts/site --no-build` (from the wasm builds
// scripts/test-e2e already made) writes dist/site/, and a plain static file
// server written here (not `patchlab serve`) serves it under /lab/, as a
// GitHub project page lives under /REPO/, with the tiny model at
// /lab/model/ (the page's local default model). Twice: with no special
// headers, as GitHub Pages serves it (not cross-origin isolated: the worker
// runs the one-thread build and the page says why), and honouring the
// site's `_headers` file as Netlify and Cloudflare Pages do (cross-origin
// isolated: the threaded build). In both a user types the prompts, presses
// Run and exports the report, which must equal `patchlab analyze`'s; every
// request must stay under /lab/ (the site's links are all relative). Without
// a ./model/ the page asks the Hugging Face Hub for GPT-2 small (answered
// here with a 404: the test never goes online). `scripts/site --sw`'s
// service-worker shim is checked too: with no headers, the page reloads once
// under its service worker and runs the threaded build.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { IOI, ROOT, cliReport, launch, makeModel, reportDiffs, trackedPage, waitReady } from "./helpers.mjs";

const SITE = path.join(ROOT, "dist/site");
const BASE = "/lab/";
const MIME = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".wasm": "application/wasm",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".safetensors": "application/octet-stream",
};

let modelDir, shimDir, browser;
const servers = {};

/**
 * The rules of a `_headers` file as Netlify documents it: a line that starts
 * a path pattern (`*` matches anything), then indented `Name: value` lines;
 * `#` starts a comment. Returns [{pattern: RegExp, headers}].
 */
function parseHeaders(text) {
  const rules = [];
  for (const line of text.split("\n")) {
    if (!line.trim() || line.trim().startsWith("#")) continue;
    if (!/^\s/.test(line)) {
      const re = line.trim().replace(/[.+?^${}()|[\]\\]/g, "\\$&").replaceAll("*", ".*");
      rules.push({ pattern: new RegExp(`^${re}$`), headers: {} });
    } else {
      const m = /^\s+([^:]+):\s*(.*)$/.exec(line);
      assert.ok(m && rules.length, `_headers: a header line outside a rule: ${line}`);
      rules.at(-1).headers[m[1].trim()] = m[2].trim();
    }
  }
  return rules;
}

/**
 * A static file server: `mounts` maps URL prefixes to directories (the
 * longest prefix wins); `rules` (from _headers) add headers by the path
 * below BASE, the site's root; `log` gets each path requested.
 */
function staticServer({ mounts, rules = [], log }) {
  const prefixes = Object.keys(mounts).sort((a, b) => b.length - a.length);
  const srv = http.createServer((req, res) => {
    const p = decodeURIComponent(new URL(req.url, "http://x").pathname);
    log.push(p);
    const extra = {};
    if (p.startsWith(BASE)) for (const r of rules) if (r.pattern.test(`/${p.slice(BASE.length)}`)) Object.assign(extra, r.headers);
    const prefix = prefixes.find((m) => p.startsWith(m));
    let file = prefix && path.join(mounts[prefix], path.normalize(`/${p.slice(prefix.length)}`));
    if (file && fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, "index.html");
    if (!file || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404, { "Content-Type": "text/plain", ...extra });
      res.end(req.method === "HEAD" ? undefined : "not found\n");
      return;
    }
    const body = fs.readFileSync(file);
    res.writeHead(200, { "Content-Type": MIME[path.extname(file)] || "application/octet-stream", "Content-Length": body.length, ...extra });
    res.end(req.method === "HEAD" ? undefined : body);
  });
  return new Promise((resolve) => {
    srv.listen(0, "127.0.0.1", () => resolve({ url: `http://127.0.0.1:${srv.address().port}${BASE}`, log, close: () => srv.close() }));
  });
}

before(async () => {
  assert.ok(fs.existsSync(path.join(ROOT, "www/pkg/patchlab_bg.wasm")), "www/pkg is missing: run scripts/build-wasm (scripts/test-e2e --prepare)");
  execFileSync(path.join(ROOT, "scripts/site"), ["--no-build"], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
  modelDir = makeModel();
  const rules = parseHeaders(fs.readFileSync(path.join(SITE, "_headers"), "utf8"));
  const withModel = { [BASE]: SITE, [`${BASE}model/`]: modelDir };
  servers.plain = await staticServer({ mounts: withModel, log: [] });
  servers.headers = await staticServer({ mounts: withModel, rules, log: [] });
  servers.bare = await staticServer({ mounts: { [BASE]: SITE }, log: [] });
  // the site with the service-worker shim (scripts/site --sw), beside dist/site
  shimDir = fs.mkdtempSync(path.join(os.tmpdir(), "patchlab-site-sw-"));
  execFileSync("node", [path.join(ROOT, "scripts/site.mjs"), "--out", shimDir, "--sw"], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
  servers.shim = await staticServer({ mounts: { [BASE]: shimDir, [`${BASE}model/`]: modelDir }, log: [] });
  // no WebGPU: the CPU engine computes, on one thread or several
  browser = await launch({ webgpu: false });
});

after(async () => {
  await browser?.close();
  for (const s of Object.values(servers)) s.close();
  for (const d of [modelDir, shimDir]) if (d) fs.rmSync(d, { recursive: true, force: true });
});

/** Loads the site's page, types the prompts, runs, exports the report JSON; returns what a test checks. */
async function runAsUser(t, server, { reloads = false } = {}) {
  const page = await trackedPage(t, browser);
  const requests = [];
  page.context().on("request", (r) => requests.push(r.url()));
  server.log.length = 0;
  await page.goto(server.url);
  // the shim's reload: wait for the isolated page (a wait that outlives navigations)
  if (reloads) await page.waitForFunction(() => self.crossOriginIsolated);
  const st = await waitReady(page);
  assert.equal(st.state, "ready", await page.textContent("#load-error"));
  for (const k of ["clean", "corrupt", "correct", "incorrect"]) await page.fill(`#${k}`, IOI[k]);
  await page.waitForFunction(() => !document.getElementById("run").disabled);
  const runs = Number(await page.evaluate(() => document.body.dataset.runs || 0));
  await page.click("#run");
  await page.waitForFunction((n) => Number(document.body.dataset.runs || 0) > n || !document.getElementById("run-error").hidden, runs);
  assert.equal(await page.isHidden("#run-error"), true, await page.textContent("#run-error"));
  const download = page.waitForEvent("download");
  await page.click("#export-json");
  const report = JSON.parse(fs.readFileSync(await (await download).path(), "utf8"));
  return {
    page,
    report,
    requests,
    isolated: await page.evaluate(() => self.crossOriginIsolated),
    cores: await page.evaluate(() => navigator.hardwareConcurrency),
    note: await page.textContent("#env-note"),
  };
}

/** Every request went to the site, under BASE (no link absolute to the server's root), or was a blob:/data: URL. */
function assertRelative(server, requests) {
  assert.ok(server.log.length > 0);
  assert.deepEqual(
    server.log.filter((p) => !p.startsWith(BASE)),
    [],
    "requests outside the site's directory",
  );
  const origin = new URL(server.url).origin;
  assert.deepEqual(
    requests.filter((u) => !/^(blob|data):/.test(u) && new URL(u).origin !== origin),
    [],
    "requests to other origins",
  );
}

describe("the static site (scripts/site)", () => {
  test("dist/site holds the page, what it loads, both wasm builds, _headers and relative links only", () => {
    for (const f of ["index.html", "app.js", "patchlab.js", "worker.js", "embed.js", "style.css", "pkg/patchlab.js", "pkg/patchlab_bg.wasm", "pkg-threads/patchlab.js", "pkg-threads/patchlab_bg.wasm", "_headers", ".nojekyll"]) {
      assert.ok(fs.existsSync(path.join(SITE, f)), `${f} is not in dist/site`);
    }
    assert.ok(fs.readdirSync(path.join(SITE, "views")).length && fs.readdirSync(path.join(SITE, "plots")).length, "views/ and plots/");
    // the service-worker shim only with --sw
    for (const f of ["model", "pkg/.stamp", "screenshot.png", "coi.js", "coi-sw.js"]) assert.ok(!fs.existsSync(path.join(SITE, f)), `${f} should not be in dist/site`);
    const html = fs.readFileSync(path.join(SITE, "index.html"), "utf8");
    assert.deepEqual([...html.matchAll(/\s(?:src|href)="(\/[^"]*)"/g)].map((m) => m[1]), [], "links absolute to the server's root");
    const rules = parseHeaders(fs.readFileSync(path.join(SITE, "_headers"), "utf8"));
    const all = rules.filter((r) => r.pattern.test("/index.html") && r.pattern.test("/pkg-threads/patchlab.js"));
    const headers = Object.assign({}, ...all.map((r) => r.headers));
    assert.equal(headers["Cross-Origin-Opener-Policy"], "same-origin");
    assert.equal(headers["Cross-Origin-Embedder-Policy"], "require-corp");
  });

  test("with no special headers (GitHub Pages): not cross-origin isolated, one thread and the note says why; the CLI's report", async (t) => {
    const got = await runAsUser(t, servers.plain);
    assert.equal(got.isolated, false);
    assert.match(got.note, /no WebGPU: patchlab runs on the CPU \(WebAssembly SIMD, single-threaded because the page is not cross-origin isolated\)/);
    assert.equal(got.report.backend, "cpu");
    assert.deepEqual(reportDiffs(got.report, cliReport(modelDir, IOI)), [], "the site's report vs the CLI's");
    assert.ok(servers.plain.log.includes(`${BASE}pkg/patchlab_bg.wasm`), "the one-thread build");
    assert.ok(!servers.plain.log.some((p) => p.includes("pkg-threads/")), "no threaded build without COOP/COEP");
    assert.ok(servers.plain.log.includes(`${BASE}model/model.safetensors`), "the model next to the page");
    assertRelative(servers.plain, got.requests);
  });

  test("honouring _headers (Netlify, Cloudflare Pages): cross-origin isolated, the threaded build; the CLI's report", async (t) => {
    const got = await runAsUser(t, servers.headers);
    assert.equal(got.isolated, true);
    assert.ok(servers.headers.log.includes(`${BASE}pkg-threads/patchlab.js`), "the worker tries the threaded build");
    if (got.cores > 1) {
      assert.match(got.note, new RegExp(`\\(WebAssembly SIMD, ${got.cores} threads\\)`));
      assert.ok(servers.headers.log.includes(`${BASE}pkg-threads/patchlab_bg.wasm`), "the threaded build's wasm");
      assert.ok(!servers.headers.log.includes(`${BASE}pkg/patchlab_bg.wasm`), "not the one-thread build");
    } else {
      t.diagnostic("navigator.hardwareConcurrency is 1: the worker runs one thread even on an isolated page");
      assert.match(got.note, /single-threaded because the device reports one core/);
    }
    assert.equal(got.report.backend, "cpu");
    assert.deepEqual(reportDiffs(got.report, cliReport(modelDir, IOI)), [], "the site's report vs the CLI's");
    assertRelative(servers.headers, got.requests);
    t.diagnostic(`analysis on the tiny model, ${got.cores} cores: ${JSON.stringify(got.report.timings_ms)}`);
  });

  test("with the service-worker shim (scripts/site --sw) and no headers: the page reloads once isolated, the threaded build; the CLI's report", async (t) => {
    const got = await runAsUser(t, servers.shim, { reloads: true });
    assert.equal(got.isolated, true);
    assert.ok(servers.shim.log.includes(`${BASE}coi-sw.js`), "the service worker");
    assert.equal(servers.shim.log.filter((p) => p === BASE).length, 2, "the page once, then once more under its service worker");
    if (got.cores > 1) {
      assert.match(got.note, new RegExp(`\\(WebAssembly SIMD, ${got.cores} threads\\)`));
      assert.ok(servers.shim.log.includes(`${BASE}pkg-threads/patchlab_bg.wasm`), "the threaded build's wasm");
    }
    assert.equal(got.report.backend, "cpu");
    assert.deepEqual(reportDiffs(got.report, cliReport(modelDir, IOI)), [], "the site's report vs the CLI's");
    assertRelative(servers.shim, got.requests);
  });

  test("with no ./model/ next to it, the page asks the Hugging Face Hub for GPT-2 small", async (t) => {
    const page = await trackedPage(t, browser);
    const hub = [];
    // answered here: the test never goes online
    await page.context().route(/^https:\/\/([a-z0-9-]+\.)*(huggingface\.co|hf\.co)\//, (route) => {
      hub.push(route.request().url());
      return route.fulfill({ status: 404, contentType: "text/plain", body: "not found\n" });
    });
    servers.bare.log.length = 0;
    await page.goto(servers.bare.url);
    const st = await waitReady(page);
    assert.equal(st.state, "error");
    assert.ok(servers.bare.log.includes(`${BASE}model/config.json`), "the page looks for ./model/ first");
    assert.ok(
      hub.some((u) => u.startsWith("https://huggingface.co/openai-community/gpt2/")),
      `GPT-2 small from the Hub (asked: ${hub.join(", ")})`,
    );
    assert.deepEqual(
      servers.bare.log.filter((p) => !p.startsWith(BASE)),
      [],
      "requests outside the site's directory",
    );
  });
});
