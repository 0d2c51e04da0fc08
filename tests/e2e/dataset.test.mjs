// Browser end-to-end tests of the Dataset tab and click-to-ablate: Debian's
// Chromium (headless, playwright-core) against `patchlab serve --model-dir
// <tiny random model>`, compared with `patchlab batch` on the same model.
// Run with scripts/test-e2e, or `node --test tests/e2e/dataset.test.mjs`
// once www/pkg, target/debug/patchlab and Chromium exist.

import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { IOI, ROOT, batchHasFlag, canvasStats, cliBatch, launch, makeModel, serve, summaryDiffs, trackedPage, waitReady } from "./helpers.mjs";

let modelDir, server, browser, cpuBrowser;
const dialogs = [];
const tmp = [];

before(async () => {
  assert.ok(fs.existsSync(path.join(ROOT, "www/pkg/patchlab_bg.wasm")), "www/pkg is missing: run scripts/build-wasm");
  modelDir = makeModel();
  server = await serve({ modelDir });
  browser = await launch();
  // the page computes on WebGPU where it can: this one has none, so its
  // numbers come from the CPU engine, as the CLI's do
  cpuBrowser = await launch({ webgpu: false });
});

after(async () => {
  await browser?.close();
  await cpuBrowser?.close();
  server?.close();
  for (const d of [modelDir, ...tmp]) if (d) fs.rmSync(d, { recursive: true, force: true });
});

const newPage = (t, b = browser) => trackedPage(t, b, { dialogs });

async function download(page, selector) {
  const d = page.waitForEvent("download");
  await page.click(selector);
  return fs.readFileSync(await (await d).path(), "utf8");
}

async function runDataset(page, runs = 1) {
  await page.waitForFunction(() => !document.getElementById("ds-run").disabled);
  await page.click("#ds-run");
  await page.waitForFunction((n) => Number(document.body.dataset.datasetRuns || 0) >= n || !document.getElementById("ds-error").hidden, runs);
  assert.equal(await page.isHidden("#ds-error"), true, await page.textContent("#ds-error"));
}

/** The centre of head (layer, head) in a head heatmap (the geometry of plots.js's Heatmap). */
async function headCell(page, key, layer, head, { layers = 2, heads = 4 } = {}) {
  const canvas = page.locator(`figure[data-key='${key}'] canvas`);
  await canvas.scrollIntoViewIfNeeded();
  const box = await canvas.boundingBox();
  // the plot area the heatmap draws (left, top, width, height in CSS pixels)
  const [left, top, pw, ph] = (await canvas.getAttribute("data-plot")).split(",").map(Number);
  return { x: box.x + left + ((head + 0.5) * pw) / heads, y: box.y + top + ((layer + 0.5) * ph) / layers };
}

/** Waits until the ablation panel has finished more ablations than `count`; returns its numbers. */
async function ablated(page, count) {
  await page.waitForFunction((n) => {
    const b = document.querySelector(".ablation");
    return b && Number(b.dataset.count) > n && b.dataset.state !== "computing";
  }, count);
  return page.evaluate(() => {
    const b = document.querySelector(".ablation");
    const num = (k) => (b.dataset[k] === undefined || b.dataset[k] === "" ? null : Number(b.dataset[k]));
    return { state: b.dataset.state, count: Number(b.dataset.count), ablated: num("ablated"), clean: num("clean"), corrupt: num("corrupt"), retained: num("retained"), text: b.textContent };
  });
}

const close = (a, b, tol) => Math.abs(a - b) <= tol * Math.max(1, Math.abs(b));

describe("the Dataset tab", () => {
  test("with Sites ticked, summary.json's site maps (mean ± std per cell over the aligned pairs) are patchlab batch's, drawn as heatmaps", async (t) => {
    const page = await newPage(t, cpuBrowser);
    await page.goto(`${server.url}?tab=dataset`);
    assert.equal((await waitReady(page)).state, "ready");
    await page.selectOption("#ds-task", "ioi");
    await page.fill("#ds-n", "3");
    await page.fill("#ds-seed", "7");
    await page.uncheck("input[name=ds-methods][value=ig]");
    await page.check("input[name=ds-sites][value=block_every]");
    await runDataset(page);
    const got = JSON.parse(await download(page, "#ds-export-summary"));
    const cli = cliBatch(modelDir, ["--task", "ioi", "--n", "3", "--seed", "7", "--methods", "ap", "--sites", "heads,block_every"]);
    tmp.push(cli.dir);
    assert.deepEqual(got.site_alignment, cli.summary.site_alignment);
    assert.deepEqual(Object.keys(got.site_maps.ap.clean_to_corrupt).sort(), ["attn_out", "mlp_out", "resid_pre"]);
    const { diffs, worst } = summaryDiffs(got.site_maps, cli.summary.site_maps, 1e-3);
    t.diagnostic(`site maps against patchlab batch's: largest difference ${worst.toExponential(2)}`);
    assert.deepEqual(diffs, [], "site maps differ from patchlab batch's");
    // the heatmap of the chosen map: layers × positions, token columns, the note
    assert.equal(await page.isHidden("#ds-sites"), false);
    const map = got.site_maps.ap.clean_to_corrupt.attn_out;
    await page.selectOption("#ds-site-map", "ap/clean_to_corrupt/attn_out");
    const canvas = page.locator("#ds-site-plot canvas");
    assert.equal(await canvas.getAttribute("data-rows"), String(map.mean.length));
    assert.equal(await canvas.getAttribute("data-cols"), String(map.mean[0].length));
    assert.equal(JSON.parse(await canvas.getAttribute("data-col-labels")).length, got.site_alignment.n_tokens);
    assert.equal(await canvas.getAttribute("data-unit"), "fraction of gap", "the colour bar names its unit");
    assert.match(await page.textContent("#ds-site-note"), new RegExp(`^${map.n} pairs? of ${got.site_alignment.n_tokens} tokens`));
  });

  test("a 3-pair IOI run gives the summary.json of patchlab batch, tables, histograms and openable pairs; click-to-ablate moves the metric", async (t) => {
    const page = await newPage(t, cpuBrowser);
    await page.goto(`${server.url}?tab=dataset`);
    assert.equal((await waitReady(page)).state, "ready");
    assert.equal(await page.isHidden("#pair-mode"), true);
    // heads only, AP + IG, both directions by default
    assert.deepEqual(await page.$$eval("#dataset input[type=checkbox]:checked", (b) => b.map((x) => x.value || x.id)), ["ap", "ig", "clean_to_corrupt", "corrupt_to_clean", "heads", "on"]);
    await page.selectOption("#ds-task", "ioi");
    await page.fill("#ds-n", "3");
    await page.fill("#ds-seed", "7");
    await page.fill("#ds-ig-steps", "10");
    await page.dispatchEvent("#ds-ig-steps", "change");
    await runDataset(page);
    assert.match(await page.textContent("#ds-text"), /^Done: 3 of 3 pairs in /);
    assert.match(page.url(), /tab=dataset/);

    // the page's summary is the CLI's: the tables are the same function of
    // the per-pair reports (to 1e-6 from the CLI's own reports), and the
    // page's reports are the CLI's up to float32 rounding (WebAssembly's
    // kernels sum in another order than x86's: ~1e-5 seen, as the report
    // tests allow 1e-4)
    const got = JSON.parse(await download(page, "#ds-export-summary"));
    const cli = cliBatch(modelDir, ["--task", "ioi", "--n", "3", "--seed", "7", "--components", "heads", "--methods", "ap,ig", "--ig-steps", "10", "--ablate", "and:both", "--ablate", "h1.2,h0.3"]);
    tmp.push(cli.dir);
    const cliReports = fs.readdirSync(path.join(cli.dir, "pairs")).sort().map((f) => JSON.parse(fs.readFileSync(path.join(cli.dir, "pairs", f), "utf8")));
    assert.equal(cliReports.length, 3);
    const again = await page.evaluate(async (reports) => {
      const { PatchLab } = await import("/patchlab.js");
      const lab = await PatchLab.load({ model: "/model/" });
      try {
        return await lab.summarize(reports, { source: "task:ioi", seed: 7, total: 3 });
      } finally {
        lab.close();
      }
    }, cliReports);
    const exact = summaryDiffs({ ...again, compute_s: 0 }, cli.summary, 1e-6);
    assert.deepEqual(exact.diffs, [], "lab.summarize of the CLI's reports differs from its summary.json");
    assert.equal(again.compute_s, cli.summary.compute_s);
    const { diffs, worst } = summaryDiffs(got, cli.summary, 1e-4);
    t.diagnostic(`the page's summary.json against patchlab batch's: largest difference ${worst.toExponential(2)}`);
    assert.deepEqual(diffs, [], "differences from patchlab batch's summary.json");
    assert.equal(got.n_pairs, 3);
    assert.equal(got.backend, "cpu");
    assert.deepEqual(got.dataset, { source: "task:ioi", seed: 7, total: 3 });

    // tables: the main rows, mean ± std, median, n
    for (const key of ["metric.clean", "heads.ig_norm_clean_to_corrupt__vs__ap_clean_to_corrupt", "heads.ig_norm_corrupt_to_clean__vs__ap_corrupt_to_clean", "heads.ig_norm_clean_to_corrupt__vs__ap_corrupt_to_clean", "heads.asym_ig_norm__vs__asym_ap", "heads.overlap.and", "heads.overlap.or"]) {
      const cells = await page.$$eval(`#ds-tables tr[data-key='${key}'] td`, (tds) => tds.map((x) => x.textContent));
      assert.equal(cells.length, 5, key);
      assert.match(cells[0], /^(−?\d\.\d{4} ± \d\.\d{4}|undefined)$/, `${key}: ${cells[0]}`);
    }
    const s = got.correlations.heads.ig_norm_clean_to_corrupt__vs__ap_clean_to_corrupt;
    const row = await page.$$eval("#ds-tables tr[data-key='heads.ig_norm_clean_to_corrupt__vs__ap_clean_to_corrupt'] td", (tds) => tds.map((x) => x.textContent));
    assert.equal(row[4], String(s.n));
    assert.equal(row[0].split(" ± ")[0], s.mean.toFixed(4).replace("-", "−"));
    // the mean |r| column, labelled
    assert.equal(row[1], s.mean_abs.toFixed(4));

    // histograms of per-pair r: drawn, crisp, pixels vary
    await page.waitForFunction(() => [...document.querySelectorAll("#ds-hists canvas")].every((c) => Number(c.dataset.drawn) > 0));
    const hists = await canvasStats(page, "#ds-hists canvas");
    assert.equal(hists.length, 5, JSON.stringify(hists.map((h) => h.key)));
    for (const h of hists) {
      assert.ok(h.colours > 5, `${h.key}: only ${h.colours} colours`);
      assert.equal(h.width, h.cssWidth * 2, `${h.key}: backing store follows devicePixelRatio`);
    }

    // mean ablation over the pairs: the ablation.json of patchlab ablate
    const ablations = async (n) => page.waitForFunction((k) => Number(document.body.dataset.datasetAblations || 0) >= k, n);
    await page.selectOption("#ds-abl-set", "and:both");
    await page.click("#ds-abl-run");
    await ablations(1);
    await page.selectOption("#ds-abl-set", "custom");
    await page.fill("#ds-abl-custom", "h1.2,h0.3");
    await page.click("#ds-abl-run");
    await ablations(2);
    assert.equal(await page.isHidden("#ds-abl-error"), true, await page.textContent("#ds-abl-error"));
    assert.deepEqual(await page.$$eval("#ds-abl-results tbody tr", (r) => r.map((x) => x.dataset.set)), ["and:both", "h1.2,h0.3"]);
    const abl = JSON.parse(await download(page, "#ds-export-ablation"));
    // metrics to 1e-4; the fraction retained divides by this random model's
    // small clean − corrupt gaps (0.03), so its float noise is compared
    // relative to the gap
    const noRetained = (x) => ({ ...x, sets: x.sets.map((st) => ({ ...st, retained: null, pairs: st.pairs.map((q) => ({ ...q, retained: null })) })) });
    const ad = summaryDiffs(noRetained(abl), noRetained(cli.ablation), 1e-4);
    t.diagnostic(`the page's ablation.json against patchlab batch --ablate: largest difference ${ad.worst.toExponential(2)} (metrics)`);
    assert.deepEqual(ad.diffs, [], "differences from patchlab's ablation.json");
    abl.sets.forEach((st, i) =>
      st.pairs.forEach((q, j) => {
        const want = cli.ablation.sets[i].pairs[j].retained;
        const gap = Math.abs(q.metric_clean - q.metric_corrupt);
        assert.ok(Math.abs(q.retained - (q.metric_ablated - q.metric_corrupt) / (q.metric_clean - q.metric_corrupt)) < 1e-5);
        assert.ok(Math.abs(q.retained - want) <= (1e-5 * (1 + Math.abs(want))) / gap, `${st.set} pair ${j}: retained ${q.retained} vs ${want}`);
      }),
    );
    const ablRow = await page.$$eval("#ds-abl-results tr[data-set='h1.2,h0.3'] td", (tds) => tds.map((x) => x.textContent));
    assert.equal(ablRow[0], "2.000");
    assert.equal(ablRow[4], "3");
    // a component the model lacks is refused with the reason; the table stays
    await page.fill("#ds-abl-custom", "h9.1");
    await page.click("#ds-abl-run");
    await ablations(3);
    assert.match(await page.textContent("#ds-abl-error"), /head 9\.1 does not exist/);
    assert.equal(await page.locator("#ds-abl-results tbody tr").count(), 2);

    // the pairs, and one of them opened in the single-pair views (no recompute)
    assert.equal(await page.locator("#ds-pairs tbody tr.done").count(), 3);
    await page.click("#ds-pairs tbody tr[data-index='1']");
    await page.waitForFunction(() => document.body.dataset.opened === "1");
    assert.equal(await page.isHidden("#pair-mode"), false);
    assert.equal(await page.isHidden("#dataset-mode"), true);
    assert.equal(await page.inputValue("#clean"), got.pairs[1].clean);
    assert.equal(await page.inputValue("#correct"), got.pairs[1].correct);
    assert.equal(await page.evaluate(() => window.patchlabPage.analyses), 0, "opening a pair must not recompute it");
    assert.match(await page.textContent(".summary"), new RegExp(`clean ${got.pairs[1].metric_clean.toFixed(3).replace("-", "−")}`));
    // AP, IG* and IG heatmaps of the heads, both directions
    await page.waitForFunction(() => document.querySelectorAll("#report-view canvas").length === 6 && [...document.querySelectorAll("#report-view canvas")].every((c) => Number(c.dataset.drawn) > 0));
    assert.match(await page.textContent("#run-text"), /^Pair 1 of the dataset \(task:ioi, seed 7\)/);

    // click-to-ablate: shift-click adds a head (and does not pin it)
    const key = "ap-clean_to_corrupt-heads";
    let a = await headCell(page, key, 0, 1);
    await page.keyboard.down("Shift");
    await page.mouse.click(a.x, a.y);
    await page.keyboard.up("Shift");
    const one = await ablated(page, 0);
    assert.equal(one.state, "done", one.text);
    assert.deepEqual(await page.$$eval(".ablate-item", (b) => b.map((x) => x.textContent)), ["L0 H1 ✕"]);
    assert.equal(await page.isHidden(".pinned"), true, "shift-click must not pin");
    assert.ok(close(one.clean, got.pairs[1].metric_clean, 1e-5), `${one.clean} vs ${got.pairs[1].metric_clean}`);
    assert.ok(close(one.corrupt, got.pairs[1].metric_corrupt, 1e-5));
    assert.notEqual(one.ablated, one.clean);
    assert.ok(close(one.retained, (one.ablated - one.corrupt) / (one.clean - one.corrupt), 1e-6));
    // a plain click still pins
    a = await headCell(page, key, 1, 3);
    await page.mouse.click(a.x, a.y);
    await page.waitForSelector(".pinned:not([hidden])");
    assert.match(await page.textContent(".pinned"), /Pinned L1 H3/);
    // in Ablate mode a plain click ablates
    await page.check(".ablate-mode input");
    a = await headCell(page, key, 1, 2);
    await page.mouse.click(a.x, a.y);
    const two = await ablated(page, one.count);
    assert.deepEqual(await page.$$eval(".ablate-item", (b) => b.map((x) => x.textContent)), ["L0 H1 ✕", "L1 H2 ✕"]);
    assert.notEqual(two.ablated, one.ablated);
    // the same number as the CLI's mean ablation of this pair alone
    if (batchHasFlag("--ablate")) {
      const csv = path.join(cli.dir, "one.csv");
      const p = got.pairs[1];
      const q = (x) => `"${x.replace(/"/g, '""')}"`;
      fs.writeFileSync(csv, `clean,corrupt,correct,incorrect\n${[p.clean, p.corrupt, p.correct, p.incorrect].map(q).join(",")}\n`);
      const one1 = cliBatch(modelDir, ["--file", csv, "--methods", "ap", "--components", "heads", "--directions", "clean_to_corrupt", "--ablate", "h0.1,h1.2"]);
      tmp.push(one1.dir);
      const want = one1.ablation.sets[0].pairs[0];
      t.diagnostic(`ablated metric: page ${two.ablated}, CLI ${want.metric_ablated}`);
      assert.ok(close(two.ablated, want.metric_ablated, 1e-4), `page ${two.ablated} vs CLI ${want.metric_ablated}`);
    } else t.diagnostic("this patchlab batch has no --ablate: the ablated metric is not compared with the CLI");
    // the canvas marks the set
    const marked = await page.evaluate((k) => {
      const c = document.querySelector(`figure[data-key='${k}'] canvas`);
      return Number(c.dataset.drawn);
    }, key);
    assert.ok(marked > 0);
    // fill from the latent AND components found by IG* (gap-normalised IG), then clear: the clean metric again
    await page.click(".ablation [data-fill='and:ig']");
    const three = await ablated(page, two.count);
    const report = await page.evaluate(() => window.patchlabPage.report);
    const want = (report.analysis.latent.ig_norm.heads.and || []).map(([l, h]) => `L${l} H${h} ✕`);
    assert.deepEqual(await page.$$eval(".ablate-item", (b) => b.map((x) => x.textContent)), want);
    assert.equal(three.state, "done");
    await page.click(".ablation .ablate-clear");
    const none = await ablated(page, three.count);
    assert.equal(await page.locator(".ablate-item").count(), 0);
    assert.ok(close(none.ablated, none.clean, 1e-5), `nothing ablated: ${none.ablated} vs clean ${none.clean}`);
  });

  test("with WebGPU, pairs of equal length run together (analyzeGroup) and give patchlab batch --backend gpu's tables", async (t) => {
    const page = await newPage(t);
    // headless Chromium's WebGPU is SwiftShader, a software adapter: chosen explicitly
    await page.goto(`${server.url}?tab=dataset&gpu=software`);
    assert.equal((await waitReady(page)).state, "ready");
    await page.selectOption("#ds-task", "ioi");
    await page.fill("#ds-n", "8");
    await page.fill("#ds-seed", "5");
    await page.fill("#ds-ig-steps", "6");
    await page.dispatchEvent("#ds-ig-steps", "change");
    await runDataset(page);
    assert.match(await page.textContent("#ds-text"), /^Done: 8 of 8 pairs in /);
    const groups = Number(await page.evaluate(() => document.body.dataset.datasetGroups));
    t.diagnostic(`8 pairs ran in ${groups} groups`);
    assert.ok(groups < 8, `some pairs share a group (${groups} groups)`);
    const got = JSON.parse(await download(page, "#ds-export-summary"));
    assert.equal(got.backend, "gpu");
    const cli = cliBatch(modelDir, ["--task", "ioi", "--n", "8", "--seed", "5", "--components", "heads", "--methods", "ap,ig", "--ig-steps", "6", "--backend", "gpu", "--group", "1"]);
    tmp.push(cli.dir);
    const { diffs, worst } = summaryDiffs(got, cli.summary, 1e-4);
    t.diagnostic(`grouped page run against patchlab batch --group 1: largest difference ${worst.toExponential(2)}`);
    assert.deepEqual(diffs, [], "differences from patchlab batch's summary.json");

    // the API: a group's reports are the single-pair reports, in order
    const cmp = await page.evaluate(async () => {
      const { PatchLab } = await import("/patchlab.js");
      const lab = await PatchLab.load({ model: "/model/" });
      try {
        const pairs = await lab.generateDataset({ task: "ioi", n: 8, seed: 5 });
        const { groups: gs, bad } = await lab.groupPairs(pairs, 16);
        // without a size: groups of the dataset runner's WebGPU size (16)
        const byDefault = await lab.groupPairs(pairs);
        const g = gs.find((x) => x.length > 1);
        const opts = { methods: "ap", components: "heads", backend: "gpu" };
        const together = await lab.analyzeGroup({ pairs: g.map((k) => pairs[k]), ...opts });
        let worst = 0;
        for (const [j, k] of g.entries()) {
          const alone = await lab.analyze({ ...pairs[k], ...opts });
          if (together[j].prompts.clean !== alone.prompts.clean) return { error: "order" };
          const a = together[j].results.ap.clean_to_corrupt.heads.flat();
          const b = alone.results.ap.clean_to_corrupt.heads.flat();
          const scale = Math.max(1e-3, ...b.map(Math.abs));
          a.forEach((x, i) => (worst = Math.max(worst, Math.abs(x - b[i]) / scale)));
        }
        let refused = null;
        try {
          await lab.analyzeGroup({ pairs: [] });
        } catch (e) {
          refused = e.message;
        }
        return { size: g.length, bad: bad.length, worst, refused, byDefault, bySixteen: { groups: gs, bad } };
      } finally {
        lab.close();
      }
    });
    t.diagnostic(`analyzeGroup of ${cmp.size} pairs against analyze: largest difference ${cmp.worst?.toExponential(2)}`);
    assert.equal(cmp.error, undefined);
    assert.equal(cmp.bad, 0);
    assert.ok(cmp.worst <= 2e-5, `group vs single: ${cmp.worst}`);
    assert.match(cmp.refused, /analyzeGroup needs pairs/);
    assert.deepEqual(cmp.byDefault, cmp.bySixteen, "groupPairs without a size");

    // Cancel in the middle of a group stops it; its pairs are marked cancelled
    await page.fill("#ds-ig-steps", "400");
    await page.dispatchEvent("#ds-ig-steps", "change");
    await page.click("#ds-run");
    await page.waitForFunction(() => /together/.test(document.getElementById("ds-text").textContent));
    await page.click("#ds-cancel");
    await page.waitForFunction(() => /^Cancelled after \d+ of 8 pairs/.test(document.getElementById("ds-text").textContent));
    assert.ok((await page.locator("#ds-pairs tr.cancelled").count()) >= 2);
    assert.equal(await page.isDisabled("#ds-run"), false);
  });

  test("a CSV with a bad row names its line, runs only after agreeing, and keeps prompts as text", async (t) => {
    const page = await newPage(t);
    await page.goto(`${server.url}?tab=dataset`);
    await waitReady(page);
    const evil = "<img src=x onerror=alert(1)>";
    const csv = [
      "clean,corrupt,correct,incorrect",
      `"${evil} When Mary and John went to the store, John gave a drink to","${evil} When Mary and John went to the store, Mary gave a drink to"," Mary"," John"`,
      `"When Mary went","When Mary and John went to the store"," Mary"," John"`,
      `"${IOI.clean.replace("Mary", "Alice").replace(/John/g, "Bob")}","${IOI.corrupt.replace(/Mary/g, "Alice").replace("John", "Bob")}"," Alice"," Bob"`,
    ].join("\n");
    const file = { name: "pairs.csv", mimeType: "text/csv", buffer: Buffer.from(`${csv}\n`) };
    // refusing leaves the file unused
    await page.setInputFiles("#ds-file", file);
    await page.waitForSelector("#ds-bad-dialog[open]");
    assert.deepEqual(await page.$$eval("#ds-bad-list li", (l) => l.map((x) => x.dataset.line)), ["3"]);
    assert.match(await page.textContent("#ds-bad-list"), /line 3: .*same number of tokens/);
    await page.click("#ds-bad-cancel");
    await page.waitForSelector("#ds-bad-dialog", { state: "hidden" });
    assert.match(await page.textContent("#ds-info"), /pairs\.csv was not used/);
    assert.equal(await page.locator("#ds-pairs tbody tr").count(), 0);
    // agreeing skips it
    await page.setInputFiles("#ds-file", file);
    await page.waitForSelector("#ds-bad-dialog[open]");
    await page.click("#ds-bad-skip");
    await page.waitForSelector("#ds-bad-dialog", { state: "hidden" });
    assert.match(await page.textContent("#ds-info"), /^2 pairs from pairs\.csv \(1 invalid row skipped: line 3\)/);
    assert.equal(await page.locator("#ds-pairs tbody tr").count(), 2);
    await runDataset(page);
    assert.match(await page.textContent("#ds-text"), /^Done: 2 of 2 pairs/);
    const summary = JSON.parse(await download(page, "#ds-export-summary"));
    assert.deepEqual(summary.dataset, { source: "file:pairs.csv", total: 2 });
    assert.equal(summary.pairs[0].clean.startsWith(evil), true);
    // the prompt is text everywhere
    assert.match(await page.textContent("#ds-pairs"), /<img src=x onerror=alert\(1\)> When Mary/);
    assert.equal(await page.locator("img").count(), 0);
    const exported = await download(page, "#ds-export-csv");
    assert.equal(exported.split("\n")[0], "clean,corrupt,correct,incorrect,metric");
    assert.equal(exported.trim().split("\n").length, 3);
    await page.click("#ds-pairs tbody tr[data-index='0']");
    await page.waitForFunction(() => document.body.dataset.opened === "1");
    assert.equal(await page.inputValue("#clean"), `${evil} When Mary and John went to the store, John gave a drink to`);
    await page.waitForFunction(() => document.querySelectorAll("#clean-chips .chip").length > 0);
    assert.match(await page.textContent("#clean-chips"), /<img/);
    assert.equal(await page.locator("img").count(), 0);
    // (an alert could only come from an inserted element, and none was)
    assert.deepEqual(dialogs, []);
  });

  test("Cancel stops a dataset run, keeps the finished pairs, and the tab stays usable", async (t) => {
    // one pair at a time (no WebGPU): pairs finish one by one
    const page = await newPage(t, cpuBrowser);
    await page.goto(`${server.url}?tab=dataset`);
    await waitReady(page);
    await page.fill("#ds-n", "30");
    await page.fill("#ds-ig-steps", "400");
    await page.dispatchEvent("#ds-ig-steps", "change");
    await page.click("#ds-run");
    await page.waitForFunction(() => document.querySelectorAll("#ds-pairs tr.done").length >= 1);
    assert.match(await page.textContent("#ds-text"), /^Pair \d+ of 30: .* ETA /);
    await page.click("#ds-cancel");
    await page.waitForFunction(() => /^Cancelled after \d+ of 30 pairs/.test(document.getElementById("ds-text").textContent));
    const done = await page.locator("#ds-pairs tr.done").count();
    assert.ok(done >= 1 && done < 30, `${done} pairs done`);
    assert.equal(await page.isDisabled("#ds-run"), false);
    // the tables hold the finished pairs
    const n = await page.$$eval("#ds-tables tr[data-key='metric.clean'] td", (tds) => tds[4].textContent);
    assert.equal(Number(n), done);
    // and the single-pair page runs again
    await page.click("#mode-tabs [data-mode=pair]");
    await page.waitForFunction(() => !document.getElementById("run").disabled);
  });
});

describe("click-to-ablate through the JS API", () => {
  test("ablating nothing gives the clean metric; heads move it; bad components are refused", async (t) => {
    const page = await newPage(t);
    await page.goto(`${server.url}embed-demo.html?report=/model/none.json`);
    const out = await page.evaluate(async (ioi) => {
      const { PatchLab } = await import("/patchlab.js");
      const lab = await PatchLab.load({ model: "/model/" });
      const res = {};
      for (const backend of ["cpu", "auto"]) {
        res[backend] = {
          none: await lab.ablate({ ...ioi, backend }),
          some: await lab.ablate({ ...ioi, heads: [[0, 1], [1, 2]], neurons: [[1, 7]], backend }),
        };
      }
      try {
        await lab.ablate({ ...ioi, heads: [[5, 0]] });
        res.bad = "no error";
      } catch (e) {
        res.bad = e.message;
      }
      res.tasks = await lab.taskNames();
      res.pairs = await lab.generateDataset({ task: "ioi", n: 2, seed: 3 });
      return res;
    }, IOI);
    for (const b of ["cpu", "auto"]) {
      const { none, some } = out[b];
      t.diagnostic(`${b}: ${JSON.stringify(out[b])}`);
      assert.ok(close(none.metric_ablated, none.metric_clean, 1e-5), `${b}: ${JSON.stringify(none)}`);
      assert.notEqual(some.metric_ablated, some.metric_clean);
      assert.ok(close(some.metric_ablated, out.cpu.some.metric_ablated, 1e-3), `${b} vs cpu`);
    }
    assert.equal(out.cpu.some.backend, "cpu");
    assert.match(out.bad, /head 5\.0 does not exist/);
    assert.deepEqual(out.tasks, ["ioi", "ioi-third", "greater-than", "capitals", "agreement"]);
    assert.equal(out.pairs.length, 2);
    assert.deepEqual(Object.keys(out.pairs[0]).sort(), ["bos", "clean", "correct", "corrupt", "incorrect", "metric"]);
  });
});
