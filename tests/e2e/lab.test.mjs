// Browser end-to-end tests of the lab: Debian's Chromium (headless, through
// playwright-core) against `patchlab serve --model-dir <tiny random model>`.
// Run with scripts/test-e2e (it builds everything first) or
// `node --test tests/e2e/` once www/pkg, target/debug/patchlab and Chromium exist.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { BIN, IOI, ROOT, canvasStats, cliReport, launch, newContext, reportDiffs, serve, startLab, stopLab, trackedPage, unzipStored, waitReady } from "./helpers.mjs";

let modelDir, server, browser;
const dialogs = [];

before(async () => {
  ({ modelDir, server, browser } = await startLab());
});

after(() => stopLab({ modelDir, server, browser }));

const newPage = (t, size = {}) => trackedPage(t, browser, { dialogs, ...size });

/** Runs PatchLab.analyze in the page (the JS API, in its worker). */
function apiReport(page, req) {
  return page.evaluate(async (req) => {
    const { PatchLab } = await import("/patchlab.js");
    window.__lab ||= await PatchLab.load({ model: "/model/" });
    return window.__lab.analyze(req);
  }, req);
}

async function runInPage(page) {
  const before = Number(await page.evaluate(() => document.body.dataset.runs || 0));
  await page.click("#run");
  await page.waitForFunction((n) => Number(document.body.dataset.runs || 0) > n || !document.getElementById("run-error").hidden, before);
  assert.equal(await page.isHidden("#run-error"), true, await page.textContent("#run-error"));
}

describe("the JS API (PatchLab in a worker)", () => {
  test("reports the same numbers as the CLI", async (t) => {
    const page = await newPage(t);
    await page.goto(`${server.url}embed-demo.html?report=/model/none.json`); // a page that loads no model itself
    const cases = [
      { ...IOI },
      { ...IOI, bos: false, methods: ["ap", "ig"], directions: ["corrupt_to_clean"], igSteps: 20 },
      { clean: "The capital of France is", corrupt: "The capital of Italy is", correct: " Paris", incorrect: " Rome", components: ["heads"] },
    ];
    for (const req of cases) {
      // the CPU engine explicitly: "auto" computes on WebGPU in this browser
      const got = await apiReport(page, { ...req, backend: "cpu" });
      const want = cliReport(modelDir, req);
      assert.equal(got.backend, "cpu");
      assert.deepEqual(reportDiffs(got, want), [], `differences for ${JSON.stringify(req)}`);
    }
    const toks = await page.evaluate(() => window.__lab.tokenize(" Mary", { bos: false }));
    assert.deepEqual(toks, [{ id: 5335, text: " Mary" }]);
  });

  test("computes on WebGPU with backend gpu, the same numbers as the CLI", async (t) => {
    const page = await newPage(t);
    await page.goto(`${server.url}embed-demo.html?report=/model/none.json`);
    const req = { ...IOI, methods: ["ap", "ig"], components: ["heads"], igSteps: 20 };
    const stages = [];
    const got = await page.evaluate(async (req) => {
      const { PatchLab } = await import("/patchlab.js");
      const lab = await PatchLab.load({ model: "/model/" });
      const before = await lab.gpuProfile();
      const stages = new Set();
      const report = await lab.analyze({ ...req, backend: "gpu", onProgress: (p) => stages.add(p.stage) });
      return { report, stages: [...stages], before, profile: await lab.gpuProfile() };
    }, req);
    stages.push(...got.stages);
    // the JS API reports the GPU's work as patchlab bench --profile counts it
    assert.equal(got.before, null, "no GPU work before the first GPU analysis");
    const kernels = Object.fromEntries(got.profile.kernels.map((k) => [k.name, k]));
    assert.ok(kernels.matmul_skinny.dispatches > 0 && kernels.matmul_skinny.flops > 0 && kernels.attn_tail.bytes > 0, JSON.stringify(got.profile.kernels));
    assert.ok(got.profile.submits > 0 && got.profile.readbacks > 0 && got.profile.timed === false && got.profile.timing === null, JSON.stringify(got.profile));
    assert.match(got.profile.adapter, /\S/);
    assert.equal(got.report.backend, "gpu", `stages: ${stages.join(" | ")}`);
    const want = cliReport(modelDir, req);
    assert.deepEqual(Object.keys(got.report.results.ap).sort(), ["clean_to_corrupt", "corrupt_to_clean"]);
    assert.deepEqual(Object.keys(got.report.results.ig).sort(), ["clean_to_corrupt", "corrupt_to_clean"]);
    assert.deepEqual(reportDiffs({ ...got.report, backend: want.backend }, want, 1e-3), [], "differences from the CLI");
  });

  test("times the WebGPU engine's kernels with timestamp queries where the adapter offers them", async (t) => {
    const page = await newPage(t);
    await page.goto(`${server.url}embed-demo.html?report=/model/none.json`);
    const req = { ...IOI, methods: ["ap"], components: ["heads"], directions: ["clean_to_corrupt"] };
    const got = await page.evaluate(async (req) => {
      const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
      const offered = adapter.features.has("timestamp-query");
      const { PatchLab } = await import("/patchlab.js");
      const timed = await PatchLab.load({ model: "/model/", timeKernels: true });
      const report = await timed.analyze({ ...req, backend: "gpu" });
      const profile = await timed.gpuProfile();
      const plain = await PatchLab.load({ model: "/model/" });
      const untimed = await plain.analyze({ ...req, backend: "gpu" });
      return { offered, report, profile, untimed };
    }, req);
    const ran = got.profile.kernels.filter((k) => k.dispatches > 0);
    assert.ok(ran.length > 0, JSON.stringify(got.profile));
    if (got.offered) {
      assert.equal(got.profile.timing, "timestamps", JSON.stringify(got.profile));
      assert.equal(got.profile.timed, true);
      assert.ok(ran.every((k) => Number.isFinite(k.ms) && k.ms >= 0), JSON.stringify(ran));
      assert.ok(ran.reduce((s, k) => s + k.ms, 0) > 0, "some kernel time");
    } else {
      // no timestamp queries: no times, said so
      assert.equal(got.profile.timing, null, JSON.stringify(got.profile));
      assert.ok(got.profile.kernels.every((k) => k.ms === 0));
    }
    // timing changes no number
    assert.deepEqual(got.report.results, got.untimed.results);
    t.diagnostic(`timestamp-query offered: ${got.offered}; kernel ms: ${ran.reduce((s, k) => s + k.ms, 0).toFixed(1)}`);
  });

  test("errors carry the engine's message", async (t) => {
    const page = await newPage(t);
    await page.goto(`${server.url}embed-demo.html?report=/model/none.json`);
    const msg = await page.evaluate(async (ioi) => {
      const { PatchLab } = await import("/patchlab.js");
      const lab = await PatchLab.load({ model: "/model/" });
      try {
        await lab.analyze({ ...ioi, corrupt: "When Mary went" });
        return "no error";
      } catch (e) {
        return e.message;
      }
    }, IOI);
    assert.match(msg, /same number of tokens/);
  });

  test("cpuMatmulMs times the CPU kernel on the worker's threads and refuses sizes it cannot time", async (t) => {
    const page = await newPage(t);
    await page.goto(`${server.url}embed-demo.html?report=/model/none.json`);
    const got = await page.evaluate(async () => {
      const { PatchLab } = await import("/patchlab.js");
      const lab = await PatchLab.load({ model: "/model/" });
      const ms = await lab.cpuMatmulMs({ m: 256, k: 256, n: 256, reps: 2 });
      let error = "no error";
      try {
        await lab.cpuMatmulMs({ m: 0 });
      } catch (e) {
        error = e.message;
      }
      return { ms, error };
    });
    assert.ok(Number.isFinite(got.ms) && got.ms > 0, `ms: ${got.ms}`);
    assert.match(got.error, /\[0, 768\] · \[768, 3072\]: each dimension must be 1 to 4096/);
  });
});

describe("the lab page", () => {
  test("loads, runs, matches the CLI via Export, draws every canvas", async (t) => {
    const page = await newPage(t);
    const t0 = Date.now();
    // headless Chromium's only WebGPU adapter is SwiftShader, a software one: the GPU path is chosen explicitly
    await page.goto(`${server.url}?gpu=software`);
    const st = await waitReady(page);
    assert.equal(st.state, "ready");
    t.diagnostic(`load-to-interactive on the tiny model: ${Math.round(st.readyMs)} ms after navigation (${Date.now() - t0} ms wall), model load ${Math.round(st.loadMs)} ms`);
    // type prompts: chips follow, differing positions are marked
    await page.fill("#clean", "When Alice and Bob went to the park, Bob gave a ball to");
    await page.fill("#corrupt", "When Alice and Bob went to the park, Alice gave a ball to");
    await page.fill("#correct", " Alice");
    await page.fill("#incorrect", " Bob");
    await page.waitForFunction(() => document.querySelector("#clean-chips .chip.diff")?.textContent === "·Bob" && !document.getElementById("run").disabled);
    assert.equal(await page.textContent("#clean-chips .chip.diff"), "·Bob");
    // suggestions of the clean run fill the answers
    await page.waitForSelector("#suggestion-list .suggestion");
    assert.equal(await page.locator("#suggestion-list .suggestion").count(), 10);

    await runInPage(page);
    // with gpu=software the page ("auto") computes on WebGPU
    assert.match(await page.textContent(".summary"), /backend gpu/);
    const download = page.waitForEvent("download");
    await page.click("#export-json");
    const file = await (await download).path();
    const exported = JSON.parse(fs.readFileSync(file, "utf8"));
    const npyDir = fs.mkdtempSync(path.join(os.tmpdir(), "patchlab-npy-"));
    t.after(() => fs.rmSync(npyDir, { recursive: true, force: true }));
    const want = cliReport(modelDir, { clean: "When Alice and Bob went to the park, Bob gave a ball to", corrupt: "When Alice and Bob went to the park, Alice gave a ball to", correct: " Alice", incorrect: " Bob", npy: npyDir });
    assert.equal(exported.backend, "gpu");
    assert.deepEqual(reportDiffs({ ...exported, backend: want.backend }, want, 1e-3), []);
    // .npy export: the CLI's files, same names, shapes and (up to float tolerance) values
    const npy = page.waitForEvent("download");
    await page.click("#export-npy");
    const entries = unzipStored(fs.readFileSync(await (await npy).path()));
    assert.deepEqual([...entries.keys()].sort(), fs.readdirSync(npyDir).sort());
    for (const [name, bytes] of entries) {
      const cli = fs.readFileSync(path.join(npyDir, name));
      const hlen = 10 + cli.readUInt16LE(8);
      assert.deepEqual(bytes.subarray(0, hlen), cli.subarray(0, hlen), `${name}: header`);
      const a = new Float32Array(bytes.buffer.slice(bytes.byteOffset + hlen, bytes.byteOffset + bytes.length));
      const b = new Float32Array(cli.buffer.slice(cli.byteOffset + hlen, cli.byteOffset + cli.length));
      assert.equal(a.length, b.length, name);
      // the values are the exported report's, as float32 (NaN for null)
      const m = /^(?:ig_convergence_delta_(\w+?)|(ap|ig_norm|ig|atp)_((?:clean|corrupt)_to_\w+?))_(heads|neurons)\.npy$/.exec(name);
      const src = m[1] ? exported.ig_convergence_delta[m[1]][m[4]] : exported.results[m[2]][m[3]][m[4]].flat();
      const same = src.every((v, i) => (v === null ? Number.isNaN(a[i]) : a[i] === Math.fround(v)));
      assert.ok(same, `${name}: values differ from the exported report`);
    }
    // the slim export for a post (the Heads view is shown): patchlab slim's bytes of the same report
    const slimDl = page.waitForEvent("download");
    await page.click("#export-slim");
    const slimText = fs.readFileSync(await (await slimDl).path(), "utf8");
    const slim = JSON.parse(slimText);
    assert.deepEqual(slim.precision, { significant_digits: 4, kept: ["heads"] });
    assert.ok(!("neurons" in slim.results.ap.clean_to_corrupt) && Array.isArray(slim.results.ap.clean_to_corrupt.heads));
    const slimCli = path.join(npyDir, "slim-cli.json");
    const r = spawnSync(BIN, ["slim", file, "--keep", "heads", "--digits", "4", "--out", slimCli], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(slimText, fs.readFileSync(slimCli, "utf8"), "the page's slim report is patchlab slim's");
    assert.match(await page.textContent("#run-text"), /Slim report: heads, 4 significant digits/);
    const csv = page.waitForEvent("download");
    await page.click("#export-csv");
    const lines = fs.readFileSync(await (await csv).path(), "utf8").trim().split("\n");
    assert.equal(lines[0], "method,direction,component,layer,index,score");
    // AP, IG, IG* and AtP, both directions, 2 × 4 heads and 2 × 256 neurons
    assert.equal(lines.length, 1 + 4 * 2 * (2 * 4 + 2 * 256));

    // every view: each canvas drawn, pixels vary, heatmaps carry a colour bar
    const seen = {};
    for (const v of ["heads", "neurons", "scatter", "latent"]) {
      await page.click(`.tab[data-view=${v}]`);
      await page.waitForFunction(() => [...document.querySelectorAll("#report-view canvas")].every((c) => Number(c.dataset.drawn) > 0));
      const stats = await canvasStats(page, "#report-view canvas");
      seen[v] = stats.length;
      for (const s of stats) {
        assert.ok(s.colours > 12, `${s.key}: only ${s.colours} colours`);
        assert.equal(s.width, s.cssWidth * 2, `${s.key}: backing store follows devicePixelRatio`);
        if (v !== "scatter") {
          assert.ok(s.bar, `${s.key}: no colour bar`);
          assert.ok(s.bar.top[0] > s.bar.top[2] + 40, `${s.key}: colour bar top is not red: ${s.bar.top}`);
          assert.ok(s.bar.bottom[2] > s.bar.bottom[0] + 40, `${s.key}: colour bar bottom is not blue: ${s.bar.bottom}`);
          assert.ok(Math.min(...s.bar.middle.slice(0, 3)) > 230, `${s.key}: colour bar middle is not white`);
        }
      }
      assert.match(page.url(), new RegExp(`view=${v}`));
    }
    // heatmaps: AP, IG*, IG, AtP per direction; scatter: IG* and AtP against AP; latent: IG*, AP, AtP
    assert.deepEqual(seen, { heads: 8, neurons: 8, scatter: 8, latent: 6 });

    // hover shows a tooltip with the exact value; click pins
    await page.click(".tab[data-view=heads]");
    const canvas = page.locator("figure[data-key='ap-clean_to_corrupt-heads'] canvas");
    const box = await canvas.boundingBox();
    await page.mouse.move(box.x + 60, box.y + 40);
    const tip = page.locator("figure[data-key='ap-clean_to_corrupt-heads'] .tooltip");
    await tip.waitFor({ state: "visible" });
    assert.match(await tip.textContent(), /^L0 H\d+AP −?\d/);
    await page.mouse.click(box.x + 60, box.y + 40);
    await page.waitForSelector(".pinned:not([hidden])");
    assert.match(await page.textContent(".pinned"), /Pinned L0 H\d+ — AP clean → corrupt: /);

    // the share link reproduces the state
    await page.click("#share");
    const shared = await page.inputValue("#share-url");
    assert.match(shared, /clean=When\+Alice/);
    assert.match(shared, /view=heads/);

    await page.setViewportSize({ width: 1280, height: 1180 });
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: path.join(ROOT, "www/screenshot.png"), scale: "css" });
  });

  test("the Latent view marks the same components for either sign of the gap: swapping the prompts swaps AND and OR, for IG* and AP", async (t) => {
    const page = await newPage(t);
    // what the Latent view draws for a pair: the marks of each asymmetry map, and its legend
    const latent = async (clean, corrupt) => {
      const q = new URLSearchParams({ clean, corrupt, correct: IOI.correct, incorrect: IOI.incorrect, methods: "ap,ig", components: "heads,neurons", ig_steps: "8", view: "latent" });
      await page.goto(`${server.url}?${q}`);
      await waitReady(page);
      await page.waitForFunction(() => document.body.dataset.runs === "1" || !document.getElementById("run-error").hidden);
      assert.equal(await page.isHidden("#run-error"), true, await page.textContent("#run-error"));
      await page.waitForFunction(() => document.querySelectorAll("#report-view figure[data-key^='latent-'] canvas").length === 4);
      await page.waitForFunction(() => [...document.querySelectorAll("#report-view canvas")].every((c) => Number(c.dataset.drawn) > 0));
      return page.evaluate(() => {
        const marks = {};
        for (const f of document.querySelectorAll("#report-view figure[data-key^='latent-']")) {
          const c = f.querySelector("canvas");
          const list = (s) => (s ? s.split(" ").sort() : []);
          marks[f.dataset.key] = { and: list(c.dataset.marksAnd), or: list(c.dataset.marksOr) };
        }
        const r = window.patchlabPage.report;
        return { marks, gap: r.metric.clean - r.metric.corrupt, legend: document.querySelector("#report-view .plot-section .note").textContent, asym: r.analysis.correlations.neurons.asym_ig_norm__vs__asym_ap };
      });
    };
    const a = await latent(IOI.clean, IOI.corrupt);
    const b = await latent(IOI.corrupt, IOI.clean);
    t.diagnostic(`gaps ${a.gap.toFixed(3)} and ${b.gap.toFixed(3)}; neurons' asymmetry r(IG*, AP) ${a.asym.toFixed(3)} and ${b.asym.toFixed(3)}`);
    assert.ok(Math.sign(a.gap) === -Math.sign(b.gap) && a.gap !== 0);
    assert.deepEqual(Object.keys(a.marks).sort(), ["latent-ap-heads", "latent-ap-neurons", "latent-ig_norm-heads", "latent-ig_norm-neurons"]);
    for (const key of Object.keys(a.marks)) {
      assert.ok(a.marks[key].and.length + a.marks[key].or.length > 0, `${key}: nothing marked`);
      assert.deepEqual(b.marks[key].and, a.marks[key].or, `${key}: AND with the prompts swapped is OR`);
      assert.deepEqual(b.marks[key].or, a.marks[key].and, `${key}: OR with the prompts swapped is AND`);
    }
    // the asymmetries of IG* and AP agree in sign and size whichever prompt is clean
    assert.ok(Math.abs(a.asym - b.asym) < 1e-6, `${a.asym} vs ${b.asym}`);
    assert.match(a.legend, /▲ AND \(filled triangle, A > 0\): matters when noising/);
    assert.match(a.legend, /○ OR \(hollow circle, A < 0\): restoring it alone brings the behaviour back/);
  });

  test("unequal lengths and multi-token answers show messages and leave the page usable", async (t) => {
    const page = await newPage(t);
    await page.goto(server.url);
    await waitReady(page);
    await page.fill("#corrupt", "When Mary and John went to the big store, Mary gave a drink to");
    await page.waitForSelector("#input-error:not([hidden])");
    assert.match(await page.textContent("#input-error"), /same number of tokens, but clean has 15 and corrupt 16/);
    assert.equal(await page.isDisabled("#run"), true);
    await page.fill("#corrupt", IOI.corrupt);
    await page.waitForSelector("#input-error", { state: "hidden" });
    await page.fill("#correct", " Maryland's");
    await page.waitForSelector("#input-error:not([hidden])");
    assert.match(await page.textContent("#input-error"), /correct answer must be a single token, but " Maryland's" is \d tokens/);
    await page.fill("#correct", " Mary");
    await page.waitForSelector("#input-error", { state: "hidden" });
    await runInPage(page);
  });

  test("the metric is checked by the engine's parser: greater_than:99 is refused with the engine's message, greater_than:42 accepted", async (t) => {
    const page = await newPage(t);
    await page.goto(server.url);
    assert.equal((await waitReady(page)).state, "ready");
    await page.waitForFunction(() => !document.getElementById("run").disabled);
    // what `patchlab analyze` says about the same spec
    const cli = spawnSync(BIN, ["analyze", "--model", modelDir, ...Object.entries(IOI).flatMap(([k, v]) => [`--${k}`, v]), "--metric", "greater_than:99", "--quiet"], { encoding: "utf8" });
    assert.notEqual(cli.status, 0);
    const engine = cli.stderr.trim().replace(/^error: /, "");
    assert.match(engine, /greater_than:99.*00 to 98/);
    await page.fill("#metric", "greater_than:99");
    await page.waitForSelector("#input-error:not([hidden])");
    assert.equal(await page.textContent("#input-error"), `The metric cannot be used: ${engine}.`);
    assert.equal(await page.isDisabled("#run"), true);
    await page.fill("#metric", "greater_than:42");
    await page.waitForSelector("#input-error", { state: "hidden" });
    await page.waitForFunction(() => !document.getElementById("run").disabled);
  });

  test("Cancel stops a run and the page stays usable", async (t) => {
    const page = await newPage(t);
    await page.goto(server.url);
    await waitReady(page);
    await page.fill("#ig-steps", "1000");
    await page.dispatchEvent("#ig-steps", "change");
    await page.waitForFunction(() => !document.getElementById("run").disabled);
    await page.click("#run");
    // the run has started (its first progress event), then Cancel
    await page.waitForFunction(() => document.getElementById("run-progress").value > 0);
    await page.click("#cancel");
    await page.waitForFunction(() => document.getElementById("run-text").textContent === "Cancelled.");
    assert.equal(await page.isDisabled("#run"), false);
    assert.equal(await page.isHidden("#run-error"), true);
    await page.fill("#ig-steps", "10");
    await page.dispatchEvent("#ig-steps", "change");
    await runInPage(page);
    assert.match(await page.textContent("#run-text"), /^Done/);
  });

  test("a foreign model file gets a clear message, a clear-cache action, and the page recovers", async (t) => {
    const page = await newPage(t);
    await page.context().route("**/model/model.safetensors", (route) => route.fulfill({ status: 200, contentType: "application/octet-stream", body: fs.readFileSync(path.join(modelDir, "tokenizer.json")) }));
    await page.goto(server.url);
    const st = await waitReady(page);
    assert.equal(st.state, "error");
    const msg = await page.textContent("#load-error");
    assert.match(msg, /Could not load the model: model\.safetensors is not a safetensors file/);
    assert.match(msg, /Clear cache and retry/);
    await page.context().unroute("**/model/model.safetensors");
    await page.click("#load-error button:has-text('Clear cache and retry')");
    await page.waitForFunction(() => window.patchlabPage.state === "ready");
    await runInPage(page);
  });

  test("prompts from the URL stay text", async (t) => {
    const page = await newPage(t);
    const evil = "<img src=x onerror=alert(1)>";
    const q = new URLSearchParams({ clean: evil, corrupt: `${evil} x`, correct: evil, incorrect: " John" });
    await page.goto(`${server.url}?${q}`);
    await waitReady(page);
    await page.waitForSelector("#input-error:not([hidden])");
    assert.equal(await page.inputValue("#clean"), evil);
    assert.equal(await page.locator("img").count(), 0);
    assert.match(await page.textContent("#clean-chips"), /<img/);
    assert.match(await page.textContent("#input-error"), /<img src=x onerror=alert\(1\)>/);
    // (an alert could only come from an inserted element, and none was)
    assert.deepEqual(dialogs, []);
    const csp = await page.getAttribute("meta[http-equiv=Content-Security-Policy]", "content");
    assert.match(csp, /script-src 'self' 'wasm-unsafe-eval'/);
  });

  test("runs on the CPU without WebGPU and says so: a thread per core on the isolated page, one thread and why on a page that is not", async () => {
    const REQ = { ...IOI, methods: ["ap", "ig"], components: ["heads", "neurons"], igSteps: 8 };
    const plain = await launch({ webgpu: false });
    const notIsolated = await serve({ modelDir, isolate: false });
    try {
      const reports = [];
      for (const [srv, isolated] of [[server, true], [notIsolated, false]]) {
        const page = await (await newContext(plain)).newPage();
        await page.goto(`${srv.url}?${new URLSearchParams({ ...IOI, methods: "ap,atp" })}`);
        await waitReady(page);
        await page.waitForFunction(() => document.body.dataset.runs === "1" || !document.getElementById("run-error").hidden);
        assert.equal(await page.isHidden("#run-error"), true, await page.textContent("#run-error"));
        const cores = await page.evaluate(() => navigator.hardwareConcurrency);
        assert.equal(await page.evaluate(() => self.crossOriginIsolated), isolated);
        // both builds use simd128; the threaded one (www/pkg-threads) runs a
        // pool of navigator.hardwareConcurrency workers on an isolated page
        const mode = isolated && cores > 1 ? `${cores} threads` : `single-threaded because ${isolated ? "the device reports one core" : "the page is not cross-origin isolated"}`;
        assert.match(await page.textContent("#env-note"), new RegExp(`no WebGPU: patchlab runs on the CPU \\(WebAssembly SIMD, ${mode}\\)`));
        assert.match(await page.textContent(".summary"), /backend cpu/);
        // the JS API's worker chooses its build the same way
        const { report, env } = await page.evaluate(async (req) => {
          const { PatchLab } = await import("/patchlab.js");
          const lab = await PatchLab.load({ model: "/model/" });
          return { report: await lab.analyze(req), env: lab.env };
        }, { ...REQ, backend: "cpu" });
        assert.equal(env.threads, isolated && cores > 1 ? cores : 1);
        assert.equal(report.backend, "cpu");
        reports.push(report);
      }
      // one thread or several: the same numbers (gemm splits the output, never
      // a sum), and the CLI's
      const want = cliReport(modelDir, REQ);
      for (const got of reports) assert.deepEqual(reportDiffs(got, want), [], "differences from the CLI");
      assert.deepEqual(reportDiffs(reports[0], reports[1], 0), [], "threaded and single-threaded differ");
    } finally {
      notIsolated.close();
      await plain.close();
    }
  });

  test("when the threaded engine cannot start, the page computes on one thread and says why", async () => {
    const plain = await launch({ webgpu: false });
    try {
      const ctx = await newContext(plain);
      // the threaded build's files are missing (a host that copied only www/pkg)
      await ctx.route("**/pkg-threads/**", (route) => route.fulfill({ status: 404, contentType: "text/plain", body: "not found\n" }));
      const page = await ctx.newPage();
      await page.goto(`${server.url}?${new URLSearchParams({ ...IOI, methods: "ap" })}`);
      await waitReady(page);
      await page.waitForFunction(() => document.body.dataset.runs === "1" || !document.getElementById("run-error").hidden);
      assert.equal(await page.isHidden("#run-error"), true, await page.textContent("#run-error"));
      assert.equal(await page.evaluate(() => self.crossOriginIsolated), true);
      const why = (await page.evaluate(() => navigator.hardwareConcurrency)) > 1 ? "the threaded engine could not start: " : "the device reports one core";
      assert.match(await page.textContent("#env-note"), new RegExp(`\\(WebAssembly SIMD, single-threaded because ${why}`));
      assert.match(await page.textContent(".summary"), /backend cpu/);
    } finally {
      await plain.close();
    }
  });
});

// A Greater-Than pair saved with settings that are not the defaults.
const GREATER_THAN = {
  clean: "The war lasted from the year 1742 to the year 17",
  corrupt: "The war lasted from the year 1701 to the year 17",
  correct: "50",
  incorrect: "30",
  metric: "greater_than:42",
  methods: ["ap", "ig"],
  components: ["heads"],
  igSteps: 8,
  igRule: "riemann_left",
  percentile: 0.8,
};

describe("embedding", () => {
  before(() => {
    fs.writeFileSync(path.join(modelDir, "report.json"), JSON.stringify(cliReport(modelDir, IOI)));
    fs.writeFileSync(path.join(modelDir, "gt-report.json"), JSON.stringify(cliReport(modelDir, GREATER_THAN)));
  });

  test("results-only mode renders a saved report without loading a model", async (t) => {
    const page = await newPage(t);
    const requested = [];
    page.context().on("request", (r) => requested.push(r.url()));
    await page.goto(`${server.url}?report=/model/report.json&view=latent`);
    const st = await waitReady(page);
    assert.equal(st.state, "report");
    assert.match(await page.textContent("#report-banner"), /saved report/);
    await page.waitForFunction(() => document.querySelectorAll("#report-view canvas").length === 6);
    for (const s of await canvasStats(page, "#report-view canvas")) assert.ok(s.colours > 12, s.key);
    assert.equal(requested.filter((u) => u.endsWith("model.safetensors")).length, 0);
    // and recompute live (after saying what it downloads)
    await page.click("#recompute");
    await page.click("#recompute-go");
    await page.waitForFunction(() => document.body.dataset.runs === "1");
  });

  test("a schema-1 report saved by an older patchlab is brought up to date, and says so where it cannot be", async (t) => {
    // a committed schema-1 report (tests/golden/summary: written before IG*)
    const old = JSON.parse(fs.readFileSync(path.join(ROOT, "tests/golden/summary/pairs/0000.json"), "utf8"));
    assert.equal(old.schema, 1);
    fs.writeFileSync(path.join(modelDir, "old-report.json"), JSON.stringify(old));
    const page = await newPage(t);
    await page.goto(`${server.url}?report=/model/old-report.json&view=latent`);
    assert.equal((await waitReady(page)).state, "report");
    const r = await page.evaluate(() => window.patchlabPage.report);
    assert.equal(r.schema, 4);
    assert.ok(r.results.ig_norm && r.analysis.latent.ig_norm, "no IG* derived");
    await page.waitForFunction(() => document.querySelectorAll("#report-view figure[data-key^='latent-'] canvas").length === 6);
    // where no worker can start (an embed under a strict policy), the report
    // renders as saved and the views that need IG* say so
    const notes = await page.evaluate(async (saved) => {
      const { ReportView, checkReport } = await import("/views.js");
      const box = document.createElement("div");
      document.body.append(box);
      const v = new ReportView(box, { view: "latent" });
      v.update(checkReport(saved));
      const latent = box.querySelector(".empty")?.textContent;
      v.setView("scatter");
      const scatter = box.querySelector(".empty")?.textContent;
      v.setView("heads");
      const heatmaps = box.querySelectorAll("canvas").length;
      box.remove();
      return { latent, scatter, heatmaps };
    }, old);
    assert.match(notes.latent, /saved by an older patchlab \(schema 1\).*recompute it/);
    assert.match(notes.scatter, /saved by an older patchlab \(schema 1\)/);
    assert.ok(notes.heatmaps > 0, "the score heatmaps render");
  });

  test("?embed runs the URL's prompts with a minimal chrome", async (t) => {
    const page = await newPage(t);
    await page.goto(`${server.url}?embed&${new URLSearchParams({ ...IOI, view: "scatter" })}`);
    await page.waitForFunction(() => document.body.dataset.runs === "1");
    assert.equal(await page.isHidden(".model-bar"), true);
    assert.equal(await page.isHidden("#clean"), true);
    assert.equal(await page.locator("#report-view canvas").count(), 8);
  });

  test("<patch-lab> renders a saved report and computes live", async (t) => {
    const page = await newPage(t);
    await page.goto(`${server.url}embed-demo.html?report=/model/report.json`);
    await page.waitForFunction(() => document.querySelector("patch-lab")?.dataset.state === "report");
    const stats = await canvasStats(page, "canvas");
    // AP, IG*, IG and AtP heatmaps of the heads, both directions
    assert.equal(stats.length, 8);
    for (const s of stats) assert.ok(s.colours > 12 && s.bar, s.key);
    await page.goto(`${server.url}embed-demo.html?${new URLSearchParams({ ...IOI, model: "/model/", methods: "ap,ig", view: "heads" })}`);
    await page.waitForFunction(() => ["done", "error"].includes(document.querySelector("patch-lab")?.dataset.state));
    assert.equal(await page.evaluate(() => document.querySelector("patch-lab").dataset.state), "done");
    // AP, IG* and IG
    assert.equal((await canvasStats(page, "canvas")).length, 6);
  });

  test("<patch-lab>'s Recompute live keeps every setting of a saved Greater-Than report: metric, IG rule, percentile", async (t) => {
    const saved = JSON.parse(fs.readFileSync(path.join(modelDir, "gt-report.json"), "utf8"));
    assert.equal(saved.prompts.metric, "greater_than:42");
    const page = await newPage(t);
    await page.goto(`${server.url}embed-demo.html?report=/model/gt-report.json`);
    await page.waitForFunction(() => document.querySelector("patch-lab")?.dataset.state === "report");
    await page.getByRole("button", { name: "Recompute live" }).click();
    await page.getByRole("button", { name: "Download and recompute" }).click();
    await page.waitForFunction(() => ["done", "error"].includes(document.querySelector("patch-lab")?.dataset.state));
    const got = await page.evaluate(() => {
      const e = document.querySelector("patch-lab");
      return { state: e.dataset.state, error: e.shadowRoot.querySelector(".error").textContent, report: e.report };
    });
    assert.equal(got.state, "done", got.error);
    assert.deepEqual(got.report.prompts, saved.prompts);
    assert.deepEqual(got.report.settings, saved.settings);
    assert.equal(got.report.metric.name, "greater_than:42");
    for (const k of ["clean", "corrupt"]) assert.ok(Math.abs(got.report.metric[k] - saved.metric[k]) < 1e-5, `metric.${k}: ${got.report.metric[k]} vs ${saved.metric[k]}`);
  });

  test("the lab page's Recompute live of a saved Greater-Than report computes it as it was computed: metric, IG steps, IG rule, percentile", async (t) => {
    const saved = JSON.parse(fs.readFileSync(path.join(modelDir, "gt-report.json"), "utf8"));
    const page = await newPage(t);
    await page.goto(`${server.url}?report=/model/gt-report.json`);
    assert.equal((await waitReady(page)).state, "report");
    await page.click("#recompute");
    await page.click("#recompute-go");
    await page.waitForFunction(() => Number(document.body.dataset.runs || 0) > 0 || !document.getElementById("run-error").hidden);
    assert.equal(await page.isHidden("#run-error"), true, await page.textContent("#run-error"));
    const download = page.waitForEvent("download");
    await page.click("#export-json");
    const got = JSON.parse(fs.readFileSync(await (await download).path(), "utf8"));
    assert.deepEqual(got.prompts, saved.prompts);
    assert.deepEqual(got.settings, saved.settings);
    assert.equal(got.metric.name, "greater_than:42");
    for (const k of ["clean", "corrupt"]) assert.ok(Math.abs(got.metric[k] - saved.metric[k]) < 1e-4, `metric.${k}: ${got.metric[k]} vs ${saved.metric[k]}`);
    // the share link carries what the form has no input for
    const url = new URL(await page.evaluate(() => location.href));
    assert.equal(url.searchParams.get("ig_rule"), saved.settings.ig_rule);
    assert.equal(Number(url.searchParams.get("percentile")), saved.settings.percentile);
  });

  test("the summary names each report's metric: the Greater-Than probability difference, or the answers' logit difference", async (t) => {
    const page = await newPage(t);
    await page.goto(`${server.url}?report=/model/gt-report.json`);
    assert.equal((await waitReady(page)).state, "report");
    const gt = await page.textContent("#report-view .summary");
    assert.match(gt, /^p\(year > 42\) − p\(year ≤ 42\): clean /);
    assert.doesNotMatch(gt, /logit/);
    await page.goto(`${server.url}?report=/model/report.json`);
    assert.equal((await waitReady(page)).state, "report");
    assert.match(await page.textContent("#report-view .summary"), /^logit\[ Mary\] − logit\[ John\]: clean /);
  });
});
