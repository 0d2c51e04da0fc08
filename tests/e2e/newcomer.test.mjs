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
import { BIN, IOI, ROOT, cliReport, newContext, serve, startLab, stopLab, trackedPage, waitReady } from "./helpers.mjs";

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

  test("<patch-lab> computes with WebAssembly too, unless gpu=\"software\" asks for the adapter", async (t) => {
    const page = await newPage(t);
    const backend = async (extra) => {
      await page.goto(`${server.url}embed-demo.html?${new URLSearchParams({ ...QUICK, model: "/model/", ...extra })}`);
      await page.waitForFunction(() => ["done", "error"].includes(document.querySelector("patch-lab")?.dataset.state));
      return page.evaluate(() => document.querySelector("patch-lab").report?.backend);
    };
    assert.equal(await backend({}), "cpu");
    assert.equal(await backend({ gpu: "software" }), "gpu");
  });
});

describe("4. Recompute live never changes the model silently", () => {
  test("<patch-lab>: Recompute live names the report's model and its size and fetches nothing until agreed", async (t) => {
    const page = await newPage(t);
    const requests = [];
    page.context().on("request", (r) => requests.push(r.url()));
    await page.goto(`${server.url}embed-demo.html?report=/model/hub-report.json`);
    await page.waitForFunction(() => document.querySelector("patch-lab")?.dataset.state === "report");
    const seen = requests.length;
    await page.getByRole("button", { name: "Recompute live" }).click();
    await page.waitForFunction(() => document.querySelector("patch-lab").dataset.state === "confirm");
    const question = await page.locator("patch-lab .confirm .note").textContent();
    // the tiny model's f32 weights (its shape, from the report): about 13 MB
    assert.match(question, /^Recompute live downloads the report's model, openai-community\/gpt2 \(2 layers × 4 heads, d_model 64\), from the Hugging Face Hub: about \d+ MB of weights/);
    assert.deepEqual(requests.slice(seen), [], "nothing is fetched before the reader agrees");
    await page.getByRole("button", { name: "Cancel" }).click();
    assert.equal(await page.evaluate(() => document.querySelector("patch-lab").dataset.state), "report", "Cancel keeps the saved figure");
    assert.equal(await page.getByRole("button", { name: "Recompute live" }).isVisible(), true);
    assert.deepEqual(requests.slice(seen), [], "nothing is fetched after Cancel");
    assert.ok(!requests.some((u) => /huggingface|model\.safetensors|patchlab_bg\.wasm/.test(u)));
  });

  test("<patch-lab>: a report whose model cannot be fetched by name says the live model may differ; agreed, it computes and says which model it used", async (t) => {
    const page = await newPage(t);
    const requests = [];
    page.context().on("request", (r) => requests.push(r.url()));
    await page.goto(`${server.url}embed-demo.html?report=/model/report.json`);
    await page.waitForFunction(() => document.querySelector("patch-lab")?.dataset.state === "report");
    const saved = JSON.parse(fs.readFileSync(path.join(modelDir, "report.json"), "utf8"));
    await page.getByRole("button", { name: "Recompute live" }).click();
    const question = await page.locator("patch-lab .confirm .note").textContent();
    assert.ok(question.startsWith(`The report names its model “${saved.model.name}” (2 layers × 4 heads, d_model 64), which cannot be downloaded by that name. Recompute live loads this site's default model instead (about `), question);
    assert.match(question, /its numbers differ from the figure's/);
    assert.ok(!requests.some((u) => /model\.safetensors/.test(u)));
    await page.getByRole("button", { name: "Download and recompute" }).click();
    await page.waitForFunction(() => ["done", "error"].includes(document.querySelector("patch-lab").dataset.state));
    const status = await page.locator("patch-lab p.note").first().textContent();
    assert.equal(await page.evaluate(() => document.querySelector("patch-lab").dataset.state), "done", await page.locator("patch-lab .error").textContent());
    assert.match(status, new RegExp(`^Computed live with model, not the report's ${saved.model.name} \\(same shape; the weights may differ\\) on `));
    assert.ok(requests.some((u) => u.endsWith("/model/model.safetensors")));
  });

  test("the lab page's Recompute live asks the same question first", async (t) => {
    const page = await newPage(t);
    const requests = [];
    page.context().on("request", (r) => requests.push(r.url()));
    await page.goto(`${server.url}?report=/model/hub-report.json`);
    assert.equal((await waitReady(page)).state, "report");
    await page.click("#recompute");
    await page.waitForSelector("#recompute-confirm", { state: "visible" });
    assert.match(await page.textContent("#recompute-plan"), /^Recompute live downloads the report's model, openai-community\/gpt2 .*from the Hugging Face Hub: about \d+ MB of weights/);
    assert.ok(!requests.some((u) => /huggingface|model\.safetensors|config\.json/.test(u)), "nothing is fetched before the reader agrees");
    await page.click("#recompute-cancel");
    assert.equal(await page.isHidden("#recompute-confirm"), true);
    assert.equal(await page.isVisible("#recompute"), true);
    assert.equal(await page.evaluate(() => window.patchlabPage.state), "report");
  });

  test("a model of another shape than the report's is loaded but not used: the saved views stay", async (t) => {
    // a report of a 3-layer model; the site's default model has 2
    const other = fs.mkdtempSync(path.join(os.tmpdir(), "patchlab-e2e-other-"));
    tmp.push(other);
    execFileSync(BIN, ["random-model", "--layers", "3", "--heads", "4", "--d-model", "64", "--seed", "2", "--n-ctx", "64", "--out", other], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
    fs.writeFileSync(path.join(modelDir, "other-shape.json"), JSON.stringify(cliReport(other, { ...IOI, methods: ["ap"], components: ["heads"] })));
    const page = await newPage(t);
    await page.goto(`${server.url}?report=/model/other-shape.json`);
    assert.equal((await waitReady(page)).state, "report");
    await page.click("#recompute");
    assert.match(await page.textContent("#recompute-plan"), /\(3 layers × 4 heads, d_model 64\), which cannot be downloaded by that name.*a model of another shape is not used/);
    await page.click("#recompute-go");
    await page.waitForSelector("#run-error:not([hidden])");
    assert.match(await page.textContent("#run-error"), /^The model loaded, model \(2 layers × 4 heads, d_model 64\), is not the report's .+ \(3 layers × 4 heads, d_model 64\): not recomputed, the views still show the saved report\.$/);
    assert.equal(await page.evaluate(() => window.patchlabPage.analyses), 0, "nothing was computed");
    assert.equal(await page.evaluate(() => window.patchlabPage.report.model.n_layers), 3);
  });
});

describe("6. a phone", () => {
  test("at 390 × 844 nothing runs off-screen, and a tap pins a head that a visible button adds to the ablation set", async (t) => {
    const context = await newContext(browser, { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    t.after(() => context.close());
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${server.url}?${new URLSearchParams({ ...IOI, methods: "ap,ig", sites: "resid_pre,z,dla" })}`);
    await page.waitForFunction(() => document.body.dataset.runs === "1" || !document.getElementById("run-error").hidden);
    const width = () => page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok((await width()) <= 390, `the page is ${await width()} px wide`);
    // every view with data, opened by a tap
    const views = await page.$$eval("#report-view .tabs .tab:not([hidden])", (bs) => bs.map((b) => b.dataset.view));
    assert.ok(views.length >= 6, views.join(","));
    for (const v of views) {
      await page.tap(`#report-view .tabs .tab[data-view="${v}"]`);
      await page.waitForFunction((k) => document.querySelector(`#report-view .tab[data-view="${k}"]`).classList.contains("active"), v);
      assert.ok((await width()) <= 390, `view ${v}: the page is ${await width()} px wide`);
    }
    for (const mode of ["dataset", "circuit", "pair"]) {
      await page.tap(`#mode-tabs .tab[data-mode="${mode}"]`);
      assert.ok((await width()) <= 390, `the ${mode} tab: the page is ${await width()} px wide`);
    }
    // tap a head: it is pinned; the pin box's button adds it to the ablation set
    await page.tap('#report-view .tab[data-view="heads"]');
    const [x, y] = await cellPoint(page, "ap-clean_to_corrupt-heads", 1, 2);
    await page.touchscreen.tap(x, y);
    await page.waitForSelector(".pinned:not([hidden]) button[data-action=ablate-pinned]");
    assert.match(await page.textContent(".pinned strong"), /^Pinned L1 H2$/);
    assert.equal(await page.textContent("button[data-action=ablate-pinned]"), "Add to the ablation set");
    await page.tap("button[data-action=ablate-pinned]");
    await page.waitForFunction(() => document.querySelector(".ablation")?.dataset.state === "done");
    assert.deepEqual(await page.$$eval(".ablate-set .ablate-item", (bs) => bs.map((b) => b.textContent)), ["L1 H2 ✕"]);
    assert.equal(await page.textContent("button[data-action=ablate-pinned]"), "Take out of the ablation set");
    assert.ok((await width()) <= 390);
    assert.deepEqual(errors, []);
  });
});

describe("5. plots that explain themselves", () => {
  test("every colour bar names its unit; IG and IG* are explained correctly; one scale on request; the latent legend matches its marks; the ablation panel only where it is used", async (t) => {
    const page = await newPage(t, { width: 1280 });
    await page.goto(`${server.url}?report=/model/sites-report.json&view=heads`);
    assert.equal((await waitReady(page)).state, "report");
    const units = () => page.$$eval("#report-view canvas[data-colorbar]", (cs) => cs.map((c) => [c.closest("figure").dataset.key, c.dataset.unit]));
    for (const v of ["heads", "neurons", "latent", "resid", "head_sites", "pattern", "dla"]) {
      await page.click(`#report-view .tab[data-view="${v}"]`);
      const u = await units();
      assert.ok(u.length > 0, v);
      for (const [key, unit] of u) assert.ok(unit, `${v}: ${key}'s colour bar has no unit`);
      if (v === "heads") {
        for (const [key, unit] of u) assert.equal(unit, key.startsWith("ig-") ? "raw IG (mean)" : "fraction of gap", key);
        const note = await page.textContent("#report-view .plot-section .note");
        assert.match(note, /IG is captum's raw attribution reduced to one number per component by means .*a mean per element/);
        assert.match(note, /IG\* \(IG star\) is the same attribution summed instead .*IG × positions × d_model.* divided by the gap/);
        assert.equal(await page.isVisible(".ablation"), true, "the ablation panel belongs to Heads");
        // one colour scale: the fraction-of-gap panels share the largest |value|
        const scales = () => page.$$eval("#report-view canvas[data-colorbar]", (cs) => cs.filter((c) => c.dataset.unit === "fraction of gap").map((c) => c.dataset.scale));
        assert.ok(new Set(await scales()).size > 1, "separate scales by default");
        await page.check("#report-view input[data-control=shared]");
        await page.waitForFunction(() => [...document.querySelectorAll("#report-view canvas[data-colorbar]")].filter((c) => c.dataset.unit === "fraction of gap").every((c, _, all) => c.dataset.scale === all[0].dataset.scale));
        assert.equal(new Set(await scales()).size, 1);
        await page.uncheck("#report-view input[data-control=shared]");
      }
      if (v === "latent") {
        const note = await page.textContent("#report-view .plot-section .note");
        assert.match(note, /S_cc is a component's score clean → corrupt .*S_ccl its score corrupt → clean/);
        assert.match(note, /○ OR \(hollow circle, A < 0\)/);
        assert.doesNotMatch(note, /●/);
        // an OR mark is hollow: its centre keeps the cell's colour
        const centre = await page.evaluate(() => {
          const c = [...document.querySelectorAll("#report-view figure[data-key^='latent-'] canvas")].find((x) => x.dataset.marksOr);
          if (!c) return null;
          const [l, i] = c.dataset.marksOr.split(" ")[0].split(".").map(Number);
          const [left, top, pw, ph] = c.dataset.plot.split(",").map(Number);
          const s = c.width / parseFloat(c.style.width);
          const x = left + ((i + 0.5) * pw) / Number(c.dataset.cols), y = top + ((l + 0.5) * ph) / Number(c.dataset.rows);
          return Array.from(c.getContext("2d").getImageData(Math.round(x * s), Math.round(y * s), 1, 1).data);
        });
        assert.ok(centre, "no OR component marked");
        assert.notDeepEqual(centre.slice(0, 3), [255, 255, 255], "the OR circle is filled white");
      }
      if (v === "resid") assert.equal(await page.isHidden(".ablation"), true, "no ablation panel atop the residual stream");
    }
    await page.click('#report-view .tab[data-view="scatter"]');
    const scatter = await page.textContent("#report-view .plot-section .note");
    assert.doesNotMatch(scatter, /IG\* is IG divided by the metric gap/);
    assert.match(scatter, /Raw IG, a mean per element, is not on this scale: IG\* = IG × positions × d_model \/ gap for heads, IG × positions \/ gap for neurons/);
    assert.equal(await page.isHidden(".ablation"), true, "no ablation panel atop Scatter");
  });

  test("the progress line names the stages in words", async (t) => {
    const page = await newPage(t);
    await page.goto(`${server.url}?${new URLSearchParams({ ...IOI, methods: "ap,ig", run: "0" })}`);
    assert.equal((await waitReady(page)).state, "ready");
    await page.evaluate(() => {
      window.__stages = [];
      new MutationObserver(() => window.__stages.push(document.getElementById("run-text").textContent)).observe(document.getElementById("run-text"), { childList: true, characterData: true, subtree: true });
    });
    await runInPage(page);
    const seen = await page.evaluate(() => window.__stages);
    assert.ok(seen.some((s) => s.startsWith("activation patching (AP), clean → corrupt, heads — ")), seen.join("\n"));
    assert.ok(!seen.some((s) => /_to_/.test(s)), seen.filter((s) => /_to_/.test(s)).join("\n"));
  });
});

describe("2. the cost before Run, 3. a Cancel that stops", () => {
  test("before Run the page says how long the run will take on this device and what the neurons cost; Heads only and unticking Neurons lower it", async (t) => {
    const page = await newPage(t);
    await page.goto(`${server.url}?${new URLSearchParams({ ...IOI, run: "0" })}`);
    assert.equal((await waitReady(page)).state, "ready");
    // the engine is measured after the load, then the estimate is in seconds
    await page.waitForFunction(() => document.body.dataset.estimate === "seconds");
    const text = () => page.textContent("#run-cost-text");
    const full = await text();
    assert.match(full, /^Estimate: (under a second|about [\d.]+ (s|min|h)) on this CPU \(WebAssembly\); the neurons take (under a second|about [\d.]+ (s|min|h)) of it/, full);
    await page.uncheck("input[name=components][value=neurons]");
    await page.waitForFunction((before) => document.getElementById("run-cost-text").textContent !== before, full);
    assert.doesNotMatch(await text(), /neurons/);
    // an invalid form has no estimate
    await page.fill("#correct", "");
    await page.waitForSelector("#run-cost", { state: "hidden" });
  });

  test("calibrate() measures the engine; estimate() then says seconds, and the analysis's progress counts the estimated work to its end", async (t) => {
    const page = await newPage(t);
    await page.goto(`${server.url}embed-demo.html?report=/model/none.json`);
    const r = await page.evaluate(async (req) => {
      const { PatchLab } = await import("/patchlab.js");
      const lab = await PatchLab.load({ model: "/model/", cache: false });
      const before = await lab.estimate(req);
      const rate = await lab.calibrate({ backend: "cpu" });
      const est = await lab.estimate({ ...req, backend: "cpu" });
      const steps = [];
      const report = await lab.analyze({ ...req, backend: "cpu", estimateMs: est.seconds * 1000, onProgress: (p) => steps.push([p.done, p.total, p.etaMs]) });
      let refused = null;
      await lab.estimate({ ...req, correct: " Mary Mary" }).catch((e) => (refused = e.message));
      lab.close();
      return { before, rate, est, steps, backend: report.backend, refused };
    }, { ...IOI, methods: ["ap", "ig", "atp"], igSteps: 8 });
    assert.equal(r.before.seconds, undefined, "no seconds before the engine is measured");
    assert.equal(r.rate.backend, "cpu");
    assert.ok(r.rate.flops_per_s > 0 && r.rate.ms > 0, JSON.stringify(r.rate));
    assert.ok(Math.abs(r.est.seconds - r.est.flops / r.rate.flops_per_s) <= 1e-9 * r.est.seconds);
    assert.deepEqual(r.est.phases.map((p) => p.method), ["forward", "atp", "atp", "ig", "ig", "ap", "ap", "atp", "atp", "ig", "ig", "ap", "ap"]);
    assert.equal(r.backend, "cpu");
    // progress: FLOPs after the forwards, to the estimate's total, never backwards, with an ETA throughout
    const tracked = r.est.flops - r.est.phases[0].flops;
    const [done, total] = r.steps.at(-1);
    assert.ok(Math.abs(total - tracked) <= 1, `${total} vs ${tracked}`);
    assert.equal(done, total);
    assert.ok(r.steps.every((s, i) => i === 0 || s[0] >= r.steps[i - 1][0]));
    assert.ok(r.steps.every((s) => Number.isFinite(s[2])), "the estimate gives an ETA from the first step");
    assert.match(r.refused, /exactly one token/);
  });
});

describe("3. work that cannot fit", () => {
  test("a pair too long for WebAssembly's memory is refused before anything runs, with the length that fits", async (t) => {
    // a small model with a long context: its attention maps grow with t², 6,000 tokens need gigabytes
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "patchlab-e2e-long-"));
    tmp.push(dir);
    execFileSync(BIN, ["random-model", "--layers", "2", "--heads", "4", "--d-model", "64", "--seed", "1", "--n-ctx", "8192", "--out", dir], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
    const long = await serve({ modelDir: dir });
    t.after(() => long.close());
    const page = await newPage(t);
    const filler = " a".repeat(6000);
    await page.goto(`${long.url}?${new URLSearchParams({ ...IOI, clean: filler + IOI.clean, corrupt: filler + IOI.corrupt, run: "0" })}`);
    assert.equal((await waitReady(page)).state, "ready");
    await page.waitForFunction(() => /^Too long for this tab/.test(document.getElementById("run-cost-text").textContent));
    assert.match(await page.textContent("#run-cost-text"), /more than the 3\.8 GB WebAssembly can hold\. Shorten the prompts, or run the native CLI/);
    // the top-10 next tokens (a run of the clean prompt) were refused the same way, not computed until memory ran out: the worker still answers
    await page.click("#run");
    await page.waitForSelector("#run-error:not([hidden])");
    assert.match(await page.textContent("#run-error"), /this analysis would keep \d+\.\d GB .* shorten the prompts to at most \d+ tokens, or run the native CLI/);
    assert.equal(await page.evaluate(() => document.body.dataset.runs), undefined, "nothing ran");
  });
});

describe("7. smaller things", () => {
  test("the prompts' messages say when one is empty; IG steps 0 is refused by name", async (t) => {
    const page = await newPage(t);
    await page.goto(`${server.url}?${new URLSearchParams({ ...QUICK, methods: "ap,ig", run: "0" })}`);
    assert.equal((await waitReady(page)).state, "ready");
    const error = async () => {
      await page.waitForFunction(() => !document.getElementById("input-error").hidden);
      return page.textContent("#input-error");
    };
    await page.fill("#clean", "");
    await page.waitForFunction(() => /empty/.test(document.getElementById("input-error").textContent));
    assert.match(await error(), /^The clean prompt is empty: type it/);
    assert.doesNotMatch(await error(), /clean has 1/);
    await page.fill("#corrupt", "");
    await page.waitForFunction(() => /Both prompts/.test(document.getElementById("input-error").textContent));
    assert.match(await error(), /^Both prompts are empty/);
    assert.doesNotMatch(await error(), /identical/);
    assert.equal(await page.isDisabled("#run"), true);
    await page.fill("#clean", IOI.clean);
    await page.fill("#corrupt", IOI.corrupt);
    await page.waitForFunction(() => document.getElementById("input-error").hidden);
    // IG steps 0: refused, never silently 50
    await page.fill("#ig-steps", "0");
    await page.waitForFunction(() => /IG steps/.test(document.getElementById("input-error").textContent));
    assert.match(await error(), /^IG steps must be a whole number from 1 to 1000 \(50 is usual\), not "0"/);
    assert.equal(await page.isDisabled("#run"), true);
    await page.fill("#ig-steps", "3");
    await page.waitForFunction(() => document.getElementById("input-error").hidden && !document.getElementById("run").disabled);
  });

  test("the Metric box shows logit_diff whole", async (t) => {
    const page = await newPage(t);
    await page.goto(`${server.url}?run=0`);
    assert.equal((await waitReady(page)).state, "ready");
    const fit = await page.evaluate(() => {
      const box = document.getElementById("metric");
      const cs = getComputedStyle(box);
      const ctx = document.createElement("canvas").getContext("2d");
      ctx.font = `${cs.fontSize} ${cs.fontFamily}`;
      const m = ctx.measureText("logit_diff");
      const inner = box.clientHeight - parseFloat(cs.paddingTop) - parseFloat(cs.paddingBottom);
      // the line box is centred in the content box; the underscore hangs below the baseline, and must end inside it
      const baseline = (inner - (m.fontBoundingBoxAscent + m.fontBoundingBoxDescent)) / 2 + m.fontBoundingBoxAscent;
      return { bottom: baseline + m.actualBoundingBoxDescent, inner, width: m.width, innerW: box.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight), lineHeight: cs.lineHeight };
    });
    assert.ok(fit.bottom + 1 <= fit.inner, `the underscore ends ${fit.bottom.toFixed(1)} px below the content's top, which is ${fit.inner} px high (line-height ${fit.lineHeight})`);
    assert.ok(fit.innerW >= fit.width, `the box is ${fit.innerW} px wide inside, logit_diff ${fit.width} px`);
  });

  test("a failed model load keeps the model that works", async (t) => {
    const page = await newPage(t);
    await page.goto(`${server.url}?${new URLSearchParams({ ...QUICK, run: "0" })}`);
    assert.equal((await waitReady(page)).state, "ready");
    await page.fill("#model-input", "/no-such-model/");
    await page.click("#model-load");
    await page.waitForSelector("#load-error:not([hidden])");
    assert.match(await page.textContent("#load-error"), /Could not load the model: could not download config\.json: HTTP 404/);
    assert.match(await page.textContent("#load-text"), /still loaded: the model asked for did not load \(below\), so the one you were using stays\.$/);
    assert.equal(await page.evaluate(() => window.patchlabPage.state), "ready");
    await runInPage(page);
    assert.match(await page.textContent(".summary"), /backend cpu/);
  });

  test("opening a dataset pair says it replaced the typed prompts, and gives them back", async (t) => {
    const page = await newPage(t);
    await page.goto(`${server.url}?${new URLSearchParams({ ...QUICK, run: "0" })}`);
    assert.equal((await waitReady(page)).state, "ready");
    const mine = "When Alice and Bob went to the park, Bob gave a ball to";
    await page.fill("#clean", mine);
    await page.click('#mode-tabs .tab[data-mode="dataset"]');
    await page.selectOption("#ds-task", "ioi");
    await page.fill("#ds-n", "2");
    await page.dispatchEvent("#ds-n", "change");
    await page.waitForFunction(() => !document.getElementById("ds-run").disabled);
    await page.click("#ds-run");
    await page.waitForFunction(() => document.querySelectorAll("#ds-pairs tr.done").length === 2 || !document.getElementById("ds-error").hidden);
    await page.click("#ds-pairs tbody tr[data-index='0']");
    await page.waitForFunction(() => document.body.dataset.opened === "1");
    assert.notEqual(await page.inputValue("#clean"), mine);
    assert.match(await page.textContent("#run-text"), /The prompts and settings above are now this pair's; the ones you had typed are kept:/);
    await page.click("button[data-action=restore-prompts]");
    assert.equal(await page.inputValue("#clean"), mine);
    assert.match(await page.textContent("#run-text"), /^Your prompts and settings are back in the form/);
  });

  test("a circuit shrunk to no edges: no tooltip left open still says an edge is in the circuit", async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "patchlab-circuit-"));
    tmp.push(dir);
    const a = ["circuit", "--model", modelDir, "--out", dir, "--quiet", "--backend", "cpu", "--edges", "20"];
    for (const k of ["clean", "corrupt", "correct", "incorrect"]) a.push(`--${k}`, IOI[k]);
    execFileSync(BIN, a, { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] });
    fs.copyFileSync(path.join(dir, "circuit.json"), path.join(modelDir, "circuit.json"));
    const page = await newPage(t, { height: 2000 });
    await page.goto(`${server.url}?report=/model/circuit.json&tab=circuit`);
    await page.waitForFunction(() => document.getElementById("circuit-view")?.dataset.state === "ready");
    const points = JSON.parse(await page.getAttribute("#circuit-view .circuit-graph canvas", "data-edge-points"));
    const box = await page.locator("#circuit-view .circuit-graph canvas").boundingBox();
    const tipText = () => page.evaluate(() => {
      const el = document.querySelector("#circuit-view .circuit-graph .tooltip");
      return el.hidden ? null : el.innerText;
    });
    // the mouse rests on one of the circuit's weaker edges
    let tip = null;
    for (const [, x, y] of points) {
      await page.mouse.move(box.x + x, box.y + y);
      tip = await tipText();
      if (tip && /\nin the circuit$/.test(tip)) break;
    }
    assert.match(tip, /\nin the circuit$/);
    // the keyboard takes the slider to its smallest circuit: the tooltip, still open, says what holds now
    await page.evaluate(() => document.querySelector("#circuit-view .circuit-slider").focus({ preventScroll: true }));
    const evals = await page.evaluate(() => Number(document.getElementById("circuit-view").dataset.evals || 0));
    await page.keyboard.press("Home");
    await page.waitForFunction((k) => Number(document.getElementById("circuit-view").dataset.evals || 0) > k && document.getElementById("circuit-view").dataset.state === "ready", evals);
    const kept = Number(await page.getAttribute("#circuit-view .circuit-graph canvas", "data-edges"));
    assert.ok(kept <= 1, `${kept} edges at the slider's start`);
    // the edge is no longer in the circuit (nor, with no edges, drawn): the tooltip closes or says so
    const after = await tipText();
    assert.ok(after === null || /\nnot in the circuit( \(it has no edges\))?$/.test(after), `the tooltip still says: ${after}`);
    // n = 0, typed: no circuit at all; nothing drawn, no tooltip about one
    await page.mouse.move(box.x + points[0][1], box.y + points[0][2]);
    await page.evaluate(() => document.querySelector("#circuit-view .circuit-n").focus({ preventScroll: true }));
    await page.keyboard.press("Control+A");
    await page.keyboard.type("0");
    await page.evaluate(() => document.querySelector("#circuit-view .circuit-n").dispatchEvent(new Event("change")));
    await page.waitForFunction(() => document.getElementById("circuit-view").dataset.state === "error");
    assert.equal(await page.getAttribute("#circuit-view .circuit-graph canvas", "data-edges"), "0");
    assert.equal(await tipText(), null);
  });

  test("a report without patching sites shows only the view tabs that have data", async (t) => {
    const page = await newPage(t);
    await page.goto(`${server.url}?report=/model/report.json`);
    assert.equal((await waitReady(page)).state, "report");
    assert.deepEqual(await page.$$eval("#report-view .tabs .tab:not([hidden])", (bs) => bs.map((b) => b.dataset.view)), ["heads", "neurons", "scatter", "latent"]);
    await page.goto(`${server.url}?report=/model/sites-report.json`);
    assert.equal((await waitReady(page)).state, "report");
    assert.equal(await page.locator("#report-view .tabs .tab:not([hidden])").count(), 8);
  });

  test("a results-only <patch-lab> does not load the circuit module; a view=circuit one does", async (t) => {
    const page = await newPage(t);
    const requests = [];
    page.context().on("request", (r) => requests.push(new URL(r.url()).pathname));
    await page.goto(`${server.url}embed-demo.html?report=/model/report.json`);
    await page.waitForFunction(() => document.querySelector("patch-lab")?.dataset.state === "report");
    assert.ok(!requests.includes("/circuit.js"), requests.join(" "));
    await page.goto(`${server.url}embed-demo.html?view=circuit&report=/model/circuit.json`);
    await page.waitForFunction(() => ["report", "error"].includes(document.querySelector("patch-lab")?.dataset.state));
    assert.ok(requests.includes("/circuit.js"));
  });

  test("?report= on another origin that cannot be fetched says what failed and hints at CORS and CSP", async (t) => {
    // a server on another origin that sends no Access-Control-Allow-Origin
    const other = http.createServer((req, res) => {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end("{}");
    });
    await new Promise((r) => other.listen(0, r));
    t.after(() => other.close());
    const url = `http://localhost:${other.address().port}/report.json`;
    const page = await newPage(t);
    await page.goto(`${server.url}?report=${encodeURIComponent(url)}`);
    await page.waitForSelector("#run-error:not([hidden])");
    const msg = await page.textContent("#run-error");
    assert.ok(msg.startsWith(`Could not show the report ${url}: the browser could not fetch it (`), msg);
    assert.match(msg, /another origin \(http:\/\/localhost:\d+\), which must send Access-Control-Allow-Origin \(CORS\), and this page's Content-Security-Policy must allow it in connect-src/);
    // the element: the same words, and no "Loading…" left behind
    await page.goto(`${server.url}embed-demo.html?report=${encodeURIComponent(url)}`);
    await page.waitForFunction(() => document.querySelector("patch-lab")?.dataset.state === "error");
    assert.match(await page.locator("patch-lab .error").textContent(), /Access-Control-Allow-Origin \(CORS\).*Content-Security-Policy/);
    assert.doesNotMatch(await page.locator("patch-lab p.note").first().textContent(), /Loading/);
  });

  test("the engine starts without wasm-bindgen's deprecation warning, and the exported report is compact JSON", async (t) => {
    const page = await newPage(t);
    const warnings = [];
    page.on("console", (m) => warnings.push(m.text()));
    page.on("worker", (w) => w.on?.("console", (m) => warnings.push(m.text())));
    await page.goto(`${server.url}?${new URLSearchParams({ ...QUICK })}`);
    await page.waitForFunction(() => document.body.dataset.runs === "1" || !document.getElementById("run-error").hidden);
    assert.deepEqual(warnings.filter((w) => /deprecated/.test(w)), []);
    const download = page.waitForEvent("download");
    await page.click("#export-json");
    const text = fs.readFileSync(await (await download).path(), "utf8");
    assert.ok(!text.includes("\n"), "the report is pretty-printed");
    assert.equal(JSON.parse(text).prompts.clean, IOI.clean);
  });
});
