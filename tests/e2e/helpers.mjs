// Shared pieces of the browser end-to-end tests: the patchlab binary, a tiny
// random model, `patchlab serve`, Debian's Chromium through playwright-core,
// and a tolerant comparison of reports.

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const BIN = process.env.PATCHLAB_BIN || path.join(ROOT, "target/debug/patchlab");
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

export const IOI = {
  clean: "When Mary and John went to the store, John gave a drink to",
  corrupt: "When Mary and John went to the store, Mary gave a drink to",
  correct: " Mary",
  incorrect: " John",
};

/** Writes the tiny random model the tests use (2 layers, 4 heads, d_model 64). */
/** Text escaped for an HTML attribute value. */
export const attr = (s) => String(s).replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");

/**
 * A blog post as an author writes it: a Content-Security-Policy, the one
 * <script> line that loads embed.js from `embed`, and one <patch-lab>
 * element with `attrs` (name → value).
 */
export function blogPost({ csp, embed, attrs }) {
  const a = Object.entries(attrs)
    .map(([k, v]) => ` ${k}="${attr(v)}"`)
    .join("");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${attr(csp)}">
<link rel="icon" href="data:,">
<title>a blog post</title>
<script type="module" src="${attr(embed)}"></script>
</head><body><article><h1>A post</h1><patch-lab${a}></patch-lab></article></body></html>`;
}

export function makeModel(dir = fs.mkdtempSync(path.join(os.tmpdir(), "patchlab-e2e-"))) {
  execFileSync(BIN, ["random-model", "--layers", "2", "--heads", "4", "--d-model", "64", "--seed", "1", "--n-ctx", "64", "--out", dir], {
    cwd: ROOT,
    stdio: ["ignore", "ignore", "inherit"],
  });
  return dir;
}

/** Starts `patchlab serve --port 0`; resolves to {url, close}. */
/**
 * `patchlab serve` on a free port. By default the page is cross-origin
 * isolated (COOP + COEP), so the worker runs the threaded engine; `isolate:
 * false` passes --no-isolation (single-threaded, as on most hosts).
 */
export function serve({ modelDir, isolate = true } = {}) {
  const args = ["serve", "--port", "0", "--www", path.join(ROOT, "www")];
  if (modelDir) args.push("--model-dir", modelDir);
  if (!isolate) args.push("--no-isolation");
  const child = spawn(BIN, args, { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let out = "";
    // a guard against a server that never starts, not a speed limit
    const timer = setTimeout(() => reject(new Error(`patchlab serve did not start: ${out}`)), HANG_MS);
    child.on("exit", (code) => reject(new Error(`patchlab serve exited with ${code}: ${out}`)));
    child.stdout.on("data", (d) => {
      out += d;
      const m = /http:\/\/[\d.]+:(\d+)\//.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ url: `http://127.0.0.1:${m[1]}/`, close: () => child.kill() });
      }
    });
  });
}

/**
 * Debian's Chromium, headless, offline and quiet (no background networking,
 * component updates, sync or QUIC), with a fresh profile each launch.
 */
export function launch({ webgpu = true } = {}) {
  const args = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"];
  if (webgpu) args.push("--enable-unsafe-webgpu");
  else args.push("--disable-gpu", "--disable-features=WebGPU,WebGPUService,Vulkan");
  return chromium.launch({ executablePath: CHROMIUM, args, headless: true });
}

/**
 * How long any wait may take before a test fails: a guard against hangs, not
 * a speed limit. Every wait in these tests is for a state or an event (a run
 * done, a message shown), never for time to pass, so a slow or busy machine
 * only makes them take longer (a 2-core CI machine with SwiftShader can take
 * minutes for what a laptop does in seconds).
 */
export const HANG_MS = 10 * 60 * 1000;

/** A browser context whose waits all use the hang guard (playwright's default is 30 s). */
export async function newContext(browser, options = {}) {
  const context = await browser.newContext(options);
  context.setDefaultTimeout(HANG_MS);
  return context;
}

/** What most e2e files start with: the tiny model, `patchlab serve` with it, and Chromium. */
export async function startLab() {
  for (const pkg of ["www/pkg", "www/pkg-threads"]) {
    if (!fs.existsSync(path.join(ROOT, pkg, "patchlab_bg.wasm"))) throw new Error(`${pkg} is missing: run scripts/build-wasm`);
  }
  const modelDir = makeModel();
  const server = await serve({ modelDir });
  const browser = await launch();
  return { modelDir, server, browser };
}

/** Undoes `startLab`. */
export async function stopLab({ modelDir, server, browser } = {}) {
  await browser?.close();
  server?.close();
  if (modelDir) fs.rmSync(modelDir, { recursive: true, force: true });
}

/**
 * A page in a fresh browser context; the test fails on any uncaught error in
 * the page, and dialogs are dismissed and their messages kept in `dialogs`.
 */
export async function trackedPage(t, browser, { dialogs = [], width = 1280, height = 900, scale = 2 } = {}) {
  const context = await newContext(browser, { viewport: { width, height }, deviceScaleFactor: scale, acceptDownloads: true });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("dialog", (d) => {
    dialogs.push(d.message());
    d.dismiss();
  });
  t.after(async () => {
    await context.close();
    assert.deepEqual(errors, [], "uncaught errors in the page");
  });
  return page;
}

/** `patchlab analyze --out -` for the same inputs as PatchLab.analyze. */
export function cliReport(modelDir, req) {
  const args = ["analyze", "--model", modelDir, "--out", "-", "--quiet"];
  for (const k of ["clean", "corrupt", "correct", "incorrect"]) args.push(`--${k}`, req[k]);
  if (req.methods) args.push("--methods", req.methods.join(","));
  if (req.directions) args.push("--directions", req.directions.join(","));
  if (req.components) args.push("--components", req.components.join(","));
  if (req.sites) args.push("--sites", req.sites.join(","));
  if (req.igSteps) args.push("--ig-steps", String(req.igSteps));
  if (req.igRule) args.push("--ig-rule", req.igRule);
  if (req.percentile !== undefined) args.push("--percentile", String(req.percentile));
  if (req.metric) args.push("--metric", req.metric);
  if (req.bos === false) args.push("--no-bos");
  if (req.npy) args.push("--npy", req.npy);
  return JSON.parse(execFileSync(BIN, args, { cwd: ROOT, stdio: ["ignore", "pipe", "ignore"], maxBuffer: 1 << 28 }).toString());
}

/**
 * Differences between two reports: numbers within `tol`; in score maps
 * within tol × the map's largest |value| (at least 1), and for AP, AtP and
 * IG* scores, which are divided by m_clean − m_corrupt, within tol / that gap
 * (docs/testing.md, "How we know it is right": on random models it can be
 * tiny); top lists equal up to ties;
 * everything else equal. Timings and the model's name (a directory or URL name) are skipped.
 */
export function reportDiffs(got, want, tol = 1e-4) {
  const gap = Math.abs(want.metric.clean - want.metric.corrupt) || 1;
  const out = [];
  const walk = (a, b, where, scale = 1) => {
    if (out.length > 20) return;
    if (/^\.timings_ms|^\.model\.name$/.test(where)) return;
    if (/^\.analysis\.top\.[^.]+\.[^.]+\.[^.]+$/.test(where) && Array.isArray(a) && Array.isArray(b) && a.length === b.length) {
      // top lists: equal scores, and the same components up to ties in |score|
      const t = /^\.analysis\.top\.(ap|atp|ig_norm)\./.test(where) ? tol / Math.min(1, gap) : tol;
      b.forEach((e, i) => {
        const g = a[i];
        if (!(Math.abs(g.score - e.score) <= t)) out.push(`${where}[${i}].score: ${g.score} vs ${e.score}`);
        const tied = b.some((f) => f.layer === g.layer && f.index === g.index && Math.abs(f.score - e.score) <= t);
        if (!tied) out.push(`${where}[${i}]: L${g.layer}/${g.index} vs L${e.layer}/${e.index}`);
      });
      return;
    }
    if (typeof b === "number" && typeof a === "number") {
      const t = (/^\.results\.(ap|atp|ig_norm)\./.test(where) ? tol / Math.min(1, gap) : tol) * scale;
      if (!(Math.abs(a - b) <= t)) out.push(`${where}: ${a} vs ${b}`);
    } else if (Array.isArray(b)) {
      if (!Array.isArray(a) || a.length !== b.length) out.push(`${where}: length ${a?.length} vs ${b.length}`);
      else {
        // a score map: within tol of its largest |value| (as tests/golden.rs compares)
        if (b.every(Array.isArray)) scale = Math.max(1, ...b.flat().filter(Number.isFinite).map(Math.abs));
        b.forEach((x, i) => walk(a[i], x, `${where}[${i}]`, scale));
      }
    } else if (b && typeof b === "object") {
      if (!a || typeof a !== "object") out.push(`${where}: ${JSON.stringify(a)} vs object`);
      else {
        const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
        for (const k of keys) walk(a[k], b[k], `${where}.${k}`);
      }
    } else if (a !== b) out.push(`${where}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
  };
  walk(got, want, "");
  return out;
}

/** Waits until the lab page has loaded its model (or failed). */
export async function waitReady(page) {
  await page.waitForFunction(() => document.body.dataset.ready === "1" || window.patchlabPage?.state === "error");
  return page.evaluate(() => window.patchlabPage);
}

/** Pixel statistics of a canvas: distinct colours, drawn flag, colour-bar ends. */
export function canvasStats(page, selector) {
  return page.evaluate((sel) => {
    const stats = [];
    const roots = [document];
    for (const host of document.querySelectorAll("patch-lab")) if (host.shadowRoot) roots.push(host.shadowRoot);
    for (const root of roots) {
      for (const c of root.querySelectorAll(sel)) {
        const ctx = c.getContext("2d");
        const img = ctx.getImageData(0, 0, c.width, c.height).data;
        const colours = new Set();
        for (let i = 0; i < img.length; i += 4 * 7) colours.add((img[i] << 16) | (img[i + 1] << 8) | img[i + 2]);
        let bar = null;
        if (c.dataset.colorbar) {
          const [x, y, w, h] = c.dataset.colorbar.split(",").map(Number);
          const s = c.width / parseFloat(c.style.width);
          const px = (yy) => Array.from(ctx.getImageData(Math.round((x + w / 2) * s), Math.round(yy * s), 1, 1).data);
          bar = { top: px(y + 3), middle: px(y + h / 2), bottom: px(y + h - 3) };
        }
        stats.push({ key: c.closest("figure")?.dataset.key, drawn: Number(c.dataset.drawn || 0), colours: colours.size, width: c.width, cssWidth: parseFloat(c.style.width), bar });
      }
    }
    return stats;
  }, selector);
}

/** The entries of a stored (uncompressed) .zip: Map name → bytes. */
export function unzipStored(buf) {
  const out = new Map();
  let o = 0;
  while (buf.readUInt32LE(o) === 0x04034b50) {
    const size = buf.readUInt32LE(o + 18);
    const nlen = buf.readUInt16LE(o + 26);
    const xlen = buf.readUInt16LE(o + 28);
    const name = buf.subarray(o + 30, o + 30 + nlen).toString();
    out.set(name, buf.subarray(o + 30 + nlen + xlen, o + 30 + nlen + xlen + size));
    o += 30 + nlen + xlen + size;
  }
  return out;
}

/**
 * `patchlab batch … --out-dir DIR` with the given arguments (after --model);
 * resolves to {dir, summary, ablation} (ablation.json when --ablate was given).
 */
export function cliBatch(modelDir, args) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "patchlab-batch-"));
  execFileSync(BIN, ["batch", "--model", modelDir, ...args, "--out-dir", dir, "--quiet"], { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] });
  const read = (f) => (fs.existsSync(path.join(dir, f)) ? JSON.parse(fs.readFileSync(path.join(dir, f), "utf8")) : null);
  return { dir, summary: read("summary.json"), ablation: read("ablation.json") };
}

/** Whether this patchlab's `batch` takes a flag (features that arrive in steps). */
export function batchHasFlag(flag) {
  return execFileSync(BIN, ["batch", "--help"], { cwd: ROOT }).toString().includes(flag);
}

/**
 * Differences between two summaries: numbers within `tol` (relative to the
 * value's size when it is above 1), everything else equal; the seconds spent
 * and the model's name (a directory or URL name) are skipped. Returns
 * {diffs, worst} (the largest difference seen).
 */
export function summaryDiffs(got, want, tol = 1e-6) {
  const out = [];
  let worst = 0;
  const walk = (a, b, where) => {
    if (out.length > 20) return;
    if (/^\.compute_s$|^\.model\.name$/.test(where)) return;
    if (typeof b === "number" && typeof a === "number") {
      const d = Math.abs(a - b) / Math.max(1, Math.abs(b));
      worst = Math.max(worst, d);
      if (!(d <= tol)) out.push(`${where}: ${a} vs ${b}`);
    } else if (Array.isArray(b)) {
      if (!Array.isArray(a) || a.length !== b.length) out.push(`${where}: length ${a?.length} vs ${b.length}`);
      else b.forEach((x, i) => walk(a[i], x, `${where}[${i}]`));
    } else if (b && typeof b === "object") {
      if (!a || typeof a !== "object") out.push(`${where}: ${JSON.stringify(a)} vs object`);
      else for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) walk(a[k], b[k], `${where}.${k}`);
    } else if (a !== b) out.push(`${where}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
  };
  walk(got, want, "");
  return { diffs: out, worst };
}
