// The page a newcomer meets (issue 25), driven as a user would: clicks,
// keys, taps on a 390-px phone. A software WebGPU adapter is not a GPU;
// "Recompute live" asks before it downloads a model; the page fits a phone;
// plots say what their colours are; and the small things (empty prompts,
// IG steps 0, a failed load, an opened dataset pair, a circuit of no
// edges, view tabs without data, a cross-origin report that cannot be
// fetched, wasm-bindgen's init, compact exports).

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { BIN, IOI, ROOT, cliReport, newContext, startLab, stopLab, trackedPage, waitReady } from "./helpers.mjs";

let modelDir, server, browser;
const tmp = [];

before(async () => {
  ({ modelDir, server, browser } = await startLab());
  // a saved report of the tiny model (its name: the model's directory), one of GPT-2 small's name on the Hub, and one with patching sites
  const saved = cliReport(modelDir, { ...IOI, methods: ["ap", "ig", "atp"] });
  fs.writeFileSync(path.join(modelDir, "report.json"), JSON.stringify(saved));
  fs.writeFileSync(path.join(modelDir, "hub-report.json"), JSON.stringify({ ...saved, model: { ...saved.model, name: "openai-community/gpt2" } }));
  fs.writeFileSync(path.join(modelDir, "sites-report.json"), JSON.stringify(cliReport(modelDir, { ...IOI, sites: ["heads", "neurons", "resid_pre", "z", "dla"] })));
});

after(async () => {
  await stopLab({ modelDir, server, browser });
  for (const d of tmp) fs.rmSync(d, { recursive: true, force: true });
});

const newPage = (t, opts = {}) => trackedPage(t, browser, { scale: 1, ...opts });
const QUICK = { ...IOI, methods: "ap", components: "heads" };

/** Presses Run and waits for the run to end; fails on a run error. */
async function runInPage(page) {
  const before = Number(await page.evaluate(() => document.body.dataset.runs || 0));
  await page.waitForFunction(() => !document.getElementById("run").disabled);
  await page.click("#run");
  await page.waitForFunction((n) => Number(document.body.dataset.runs || 0) > n || !document.getElementById("run-error").hidden, before);
  assert.equal(await page.isHidden("#run-error"), true, await page.textContent("#run-error"));
}

/** The centre of cell (row, col) of the heatmap `key`, on the screen. */
async function cellPoint(page, key, row, col) {
  const canvas = page.locator(`figure[data-key="${key}"] canvas`);
  await canvas.waitFor();
  await page.waitForFunction((k) => document.querySelector(`figure[data-key="${k}"] canvas`)?.dataset.plot, key);
  await canvas.scrollIntoViewIfNeeded();
  const box = await canvas.boundingBox();
  const [left, top, pw, ph] = (await canvas.getAttribute("data-plot")).split(",").map(Number);
  const rows = Number(await canvas.getAttribute("data-rows"));
  const cols = Number(await canvas.getAttribute("data-cols"));
  return [box.x + left + ((col + 0.5) * pw) / cols, box.y + top + ((row + 0.5) * ph) / rows];
}

describe("1. a software WebGPU adapter is not a GPU", () => {
  test("with only SwiftShader, the page computes with WebAssembly and says why; ?gpu=software chooses the adapter anyway", async (t) => {
    const page = await newPage(t);
    await page.goto(`${server.url}?${new URLSearchParams({ ...QUICK, run: "0" })}`);
    assert.equal((await waitReady(page)).state, "ready");
    const note = await page.textContent("#env-note");
    assert.match(note, /^WebGPU's only adapter here \(.+\) is a software renderer, not a GPU, and slower than WebAssembly: patchlab computes on the CPU \(WebAssembly SIMD, /, note);
    assert.match(note, /gpu=software/);
    await runInPage(page);
    assert.match(await page.textContent(".summary"), /backend cpu/);

    await page.goto(`${server.url}?${new URLSearchParams({ ...QUICK, run: "0", gpu: "software" })}`);
    assert.equal((await waitReady(page)).state, "ready");
    assert.match(await page.textContent("#env-note"), /is a software renderer, not a GPU: patchlab computes on it because the link asks for it \(gpu=software\)/);
    await runInPage(page);
    assert.match(await page.textContent(".summary"), /backend gpu/);
    assert.equal(new URL(page.url()).searchParams.get("gpu"), "software", "the choice stays in the link");
  });
});

