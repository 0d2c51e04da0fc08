// <patch-lab> from a CDN: the npm package (scripts/package --no-build, from
// the wasm build scripts/test-e2e already made) is unpacked and served from
// one origin as jsDelivr or unpkg serve a package (Access-Control-Allow-Origin:
// *, application/wasm, no COOP/COEP), and a blog post on another origin,
// under the Content-Security-Policy docs/embedding.md gives for a CDN, loads
// <patch-lab> from it with the line the docs tell authors to paste:
// results-only (no worker, no wasm, no model) and live on the CPU, single-
// threaded (the blog is not cross-origin isolated), with the tiny model
// served by the blog itself. The live report must equal the CLI's.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { IOI, ROOT, blogPost, canvasStats, cliReport, launch, makeModel, newContext, reportDiffs } from "./helpers.mjs";

const METHODS = ["ap", "ig"];
const MIME = {
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".wasm": "application/wasm",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".md": "text/markdown; charset=utf-8",
  ".ts": "text/plain; charset=utf-8",
  ".safetensors": "application/octet-stream",
  ".txt": "text/plain; charset=utf-8",
};

let tmp, pkgDir, modelDir, version, cdn, blog, browser;
const cdnServed = [];


/** A static file server for `dir` on 127.0.0.1 or localhost; `headers` added to every answer; `log` gets each path. */
function staticServer({ dir, host, headers = {}, log, pages = {} }) {
  const srv = http.createServer((req, res) => {
    const p = decodeURIComponent(new URL(req.url, "http://x").pathname);
    log?.push(p);
    if (pages[p]) {
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache", ...headers });
      res.end(pages[p]());
      return;
    }
    const file = dir && path.join(dir, path.normalize(p).replace(/^(\.\.[/\\])+/, ""));
    if (!file || !file.startsWith(dir) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404, { "Content-Type": "text/plain", ...headers });
      res.end(req.method === "HEAD" ? undefined : "not found\n");
      return;
    }
    const body = fs.readFileSync(file);
    res.writeHead(200, { "Content-Type": MIME[path.extname(file)] || "application/octet-stream", "Content-Length": body.length, ...headers });
    res.end(req.method === "HEAD" ? undefined : body);
  });
  return new Promise((resolve) => {
    srv.listen(0, "127.0.0.1", () => resolve({ url: `http://${host}:${srv.address().port}/`, close: () => srv.close() }));
  });
}

/** The CSP of a blog post that loads patchlab from the CDN `c` (docs/embedding.md, "From a CDN"). */
function csp(c, { live }) {
  return [
    "default-src 'none'",
    live ? `script-src ${c} 'wasm-unsafe-eval'` : `script-src ${c}`,
    ...(live ? [`worker-src blob: ${c}`] : []),
    // the blog's own report and model; the wasm comes from the CDN
    live ? `connect-src 'self' ${c}` : "connect-src 'self'",
    `style-src ${c}`,
    "img-src data: blob:",
    "base-uri 'none'",
    "object-src 'none'",
  ].join("; ");
}

/** A blog post with the <script> line docs/embedding.md gives, pointing at the test's CDN. */
function post(attrs, { live }) {
  return blogPost({ csp: csp(cdn.url.slice(0, -1), { live }), embed: `${cdn.url}npm/patchlab@${version}/embed.js`, attrs });
}

before(async () => {
  assert.ok(fs.existsSync(path.join(ROOT, "www/pkg/patchlab_bg.wasm")), "www/pkg is missing: run scripts/build-wasm (scripts/test-e2e --prepare)");
  // the package CI would publish, from the wasm build already in www/
  execFileSync(path.join(ROOT, "scripts/package"), ["--no-build"], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
  version = JSON.parse(fs.readFileSync(path.join(ROOT, "dist/npm/package.json"), "utf8")).version;
  const tarball = path.join(ROOT, `dist/patchlab-${version}.tgz`);
  assert.ok(fs.existsSync(tarball), `${tarball} should exist`);
  // unpacked under the path a CDN gives it: /npm/patchlab@VERSION/
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "patchlab-cdn-"));
  const root = path.join(tmp, "cdn");
  pkgDir = path.join(root, "npm", `patchlab@${version}`);
  fs.mkdirSync(pkgDir, { recursive: true });
  execFileSync("tar", ["xzf", tarball, "-C", pkgDir, "--strip-components=1"]);

  modelDir = makeModel();
  fs.writeFileSync(path.join(tmp, "report.json"), JSON.stringify(cliReport(modelDir, { ...IOI, methods: METHODS })));
  const blogDir = path.join(tmp, "blog");
  fs.mkdirSync(blogDir);
  fs.cpSync(modelDir, path.join(blogDir, "model"), { recursive: true });
  fs.copyFileSync(path.join(tmp, "report.json"), path.join(blogDir, "report.json"));

  cdn = await staticServer({ dir: root, host: "127.0.0.1", log: cdnServed, headers: { "Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=31536000, immutable" } });
  blog = await staticServer({
    dir: blogDir,
    host: "localhost",
    pages: {
      "/results.html": () => post({ report: "report.json", view: "heads" }, { live: false }),
      "/live.html": () => post({ ...IOI, model: "/model/", methods: METHODS.join(","), view: "heads" }, { live: true }),
      // headless Chromium's only WebGPU adapter is SwiftShader, which the element leaves for
      // WebAssembly unless the page asks for it
      "/live-gpu.html": () => post({ ...IOI, model: "/model/", methods: METHODS.join(","), view: "heads", gpu: "software" }, { live: true }),
    },
  });
  browser = await launch({ webgpu: false });
});

after(async () => {
  await browser?.close();
  cdn?.close();
  blog?.close();
  if (modelDir) fs.rmSync(modelDir, { recursive: true, force: true });
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** A page that records uncaught errors, console errors (CSP reports among them), requests and workers. */
async function newPage(t, inBrowser = browser) {
  const context = await newContext(inBrowser, { viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  const seen = { errors: [], console: [], requests: [], workers: 0 };
  page.on("pageerror", (e) => seen.errors.push(e.message));
  page.on("console", (m) => m.type() === "error" && seen.console.push(m.text()));
  context.on("request", (r) => seen.requests.push(r.url()));
  context.on("requestfailed", (r) => seen.console.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on("worker", (w) => {
    seen.workers++;
    w.on?.("console", (m) => m.type() === "error" && seen.console.push(`worker: ${m.text()}`));
  });
  t.after(async () => {
    await context.close();
    assert.deepEqual(seen.errors, [], "uncaught errors in the page");
  });
  return { page, seen };
}

const state = (page) => page.evaluate(() => document.querySelector("patch-lab")?.dataset.state);
const errorText = (page) => page.evaluate(() => document.querySelector("patch-lab")?.shadowRoot?.querySelector(".error")?.textContent);
const cspReports = (seen) => seen.console.filter((m) => /Content Security Policy| csp$/i.test(m));

describe("<patch-lab> from a CDN (the npm package on another origin)", () => {
  test("the package holds what a blog needs, and the docs paste its version", () => {
    for (const f of ["embed.js", "patchlab.js", "worker.js", "style.css", "pkg/patchlab.js", "pkg/patchlab_bg.wasm", "patchlab.d.ts", "report.d.ts", "embed.d.ts", "README.md", "LICENSE-MIT", "LICENSE-APACHE"]) {
      assert.ok(fs.existsSync(path.join(pkgDir, f)), `${f} is not in the package`);
    }
    assert.ok(fs.readdirSync(path.join(pkgDir, "views")).length && fs.readdirSync(path.join(pkgDir, "plots")).length, "views/ and plots/");
    for (const f of ["index.html", "app.js", "pkg/.stamp"]) assert.ok(!fs.existsSync(path.join(pkgDir, f)), `${f} should not be in the package`);
    const manifest = JSON.parse(fs.readFileSync(path.join(pkgDir, "package.json"), "utf8"));
    const cargo = /^version = "([^"]+)"/m.exec(fs.readFileSync(path.join(ROOT, "Cargo.toml"), "utf8"))[1];
    assert.equal(manifest.version, cargo, "the npm version is the crate's");
    assert.equal(manifest.exports["."].default, "./patchlab.js");
    assert.equal(manifest.exports["./embed.js"].default, "./embed.js");
    for (const doc of ["docs/embedding.md", "README.md", "npm/README.md"]) {
      const text = fs.readFileSync(path.join(ROOT, doc), "utf8").replaceAll("{{version}}", version);
      assert.ok(text.includes(`https://cdn.jsdelivr.net/npm/patchlab@${version}/embed.js`), `${doc} should give the jsDelivr line for ${version}`);
    }
  });

  test("results only: renders the blog's saved report with no worker, no wasm and no model", async (t) => {
    const { page, seen } = await newPage(t);
    cdnServed.length = 0;
    await page.goto(`${blog.url}results.html`);
    await page.waitForFunction(() => ["report", "error"].includes(document.querySelector("patch-lab")?.dataset.state));
    assert.equal(await state(page), "report", `the element failed: ${await errorText(page)}\nconsole: ${seen.console.join("\n")}`);
    const stats = await canvasStats(page, "canvas");
    // AP and IG* and IG heatmaps of the heads, both directions
    assert.equal(stats.length, 6);
    for (const s of stats) assert.ok(s.colours > 12 && s.bar, s.key);
    assert.ok(!seen.requests.some((u) => /\.wasm$|model\.safetensors$|\/model\//.test(u)), `no wasm or model for a saved report (requests: ${seen.requests.join(", ")})`);
    assert.equal(seen.workers, 0, "no worker for a saved report");
    assert.ok(cdnServed.includes(`/npm/patchlab@${version}/embed.js`) && cdnServed.includes(`/npm/patchlab@${version}/style.css`));
    assert.deepEqual(cspReports(seen), [], "script-src, style-src and connect-src 'self' must be enough for a saved report");
    // what a reader downloads before the figure draws, besides the report: JS and CSS only
    const files = [...new Set(cdnServed.map((u) => decodeURIComponent(u.split("?")[0]).replace(`/npm/patchlab@${version}/`, "")))];
    const bytes = files.reduce((n, f) => n + fs.statSync(path.join(pkgDir, f)).size, 0);
    t.diagnostic(`a results-only <patch-lab> downloads ${bytes} bytes of JS and CSS (${files.length} files) before it draws, besides the report`);
    assert.ok(files.every((f) => /\.(js|css)$/.test(f)), `only JS and CSS: ${files.join(", ")}`);
    assert.ok(bytes < 1_000_000, `${bytes} bytes of JS and CSS for a saved report`);
  });

  test("live on the CPU, single-threaded: worker and wasm from the CDN, the model from the blog; the CLI's report", async (t) => {
    const { page, seen } = await newPage(t);
    cdnServed.length = 0;
    await page.goto(`${blog.url}live.html`);
    await page.waitForFunction(() => ["done", "error"].includes(document.querySelector("patch-lab")?.dataset.state));
    assert.equal(await state(page), "done", `the element failed: ${await errorText(page)}\nconsole: ${seen.console.join("\n")}`);
    assert.match(await page.evaluate(() => document.querySelector("patch-lab").shadowRoot.querySelector(".note").textContent), /Computed live on cpu/);
    const report = await page.evaluate(() => document.querySelector("patch-lab").report);
    assert.equal(report.backend, "cpu");
    assert.deepEqual(reportDiffs(report, cliReport(modelDir, { ...IOI, methods: METHODS })), [], "CDN embed vs CLI");
    for (const s of await canvasStats(page, "canvas")) assert.ok(s.colours > 12 && s.bar, s.key);

    const base = `/npm/patchlab@${version}/`;
    for (const f of ["embed.js", "patchlab.js", "worker.js", "pkg/patchlab.js", "pkg/patchlab_bg.wasm", "style.css"]) {
      assert.ok(cdnServed.includes(base + f), `${f} should come from the CDN (served: ${cdnServed.join(", ")})`);
    }
    // not cross-origin isolated: the one-thread build, never the threaded one
    assert.ok(!cdnServed.some((p) => p.includes("pkg-threads/")), "no threaded build without COOP/COEP");
    assert.ok(seen.requests.includes(`${blog.url}model/model.safetensors`), "the model comes from the blog");
    assert.deepEqual(cspReports(seen), [], "docs/embedding.md's CDN policy must be enough");
  });

  test("live on WebGPU: the same embed computes on the GPU engine from the CDN's worker and wasm; the CLI's report", async (t) => {
    const gpuBrowser = await launch({ webgpu: true });
    t.after(() => gpuBrowser.close());
    const { page, seen } = await newPage(t, gpuBrowser);
    cdnServed.length = 0;
    await page.goto(`${blog.url}live-gpu.html`);
    await page.waitForFunction(() => ["done", "error"].includes(document.querySelector("patch-lab")?.dataset.state));
    assert.equal(await state(page), "done", `the element failed: ${await errorText(page)}\nconsole: ${seen.console.join("\n")}`);
    assert.match(await page.evaluate(() => document.querySelector("patch-lab").shadowRoot.querySelector(".note").textContent), /Computed live on gpu/);
    const report = await page.evaluate(() => document.querySelector("patch-lab").report);
    assert.equal(report.backend, "gpu");
    assert.deepEqual(reportDiffs({ ...report, backend: "cpu" }, cliReport(modelDir, { ...IOI, methods: METHODS }), 1e-3), [], "CDN embed on WebGPU vs CLI");
    for (const f of ["embed.js", "patchlab.js", "worker.js", "pkg/patchlab.js", "pkg/patchlab_bg.wasm"]) {
      assert.ok(cdnServed.includes(`/npm/patchlab@${version}/${f}`), `${f} should come from the CDN`);
    }
    assert.deepEqual(cspReports(seen), [], "docs/embedding.md's CDN policy must be enough on WebGPU too");
  });
});
