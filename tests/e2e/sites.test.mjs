// Browser end-to-end tests of the patching sites' views: the Sites boxes and
// the request they make, the residual-stream (layer × position) heatmaps, the
// head sites, the attention-pattern viewer, DLA, URLs, <patch-lab> with a
// saved report, the exports, and token text that must stay text. Same setup
// as lab.test.mjs (Chromium through playwright-core, `patchlab serve` with a
// tiny random model); every wait is for a state, never for time.

import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { IOI, canvasStats, cliReport, reportDiffs, startLab, stopLab, trackedPage, unzipStored, waitReady } from "./helpers.mjs";

let modelDir, server, browser, saved;
// the Sites boxes the UI test ticks, in the page's order: block_every + head_every + DLA
const SITES = ["resid_pre", "attn_out", "mlp_out", "q", "k", "v", "pattern", "z", "dla"];
const SAVED_SITES = ["heads", "resid_pre", "resid_mid", "attn_out", "mlp_out", "q", "k", "v", "pattern", "z", "z_by_pos", "q_by_pos", "k_by_pos", "v_by_pos", "pattern_by_dest", "pattern_dest_src", "dla"];

before(async () => {
  ({ modelDir, server, browser } = await startLab());
  saved = cliReport(modelDir, { ...IOI, sites: SAVED_SITES });
  fs.writeFileSync(path.join(modelDir, "sites.json"), JSON.stringify(saved));
});

after(() => stopLab({ modelDir, server, browser }));

const newPage = (t) => trackedPage(t, browser);
const visible = (t) => t.replace(/ /g, "·").replace(/\n/g, "⏎") || "∅";

async function runInPage(page) {
  const before = Number(await page.evaluate(() => document.body.dataset.runs || 0));
  await page.click("#run");
  await page.waitForFunction((n) => Number(document.body.dataset.runs || 0) > n || !document.getElementById("run-error").hidden, before);
  assert.equal(await page.isHidden("#run-error"), true, await page.textContent("#run-error"));
}

/** The figure of a plot (its key), in the page or a <patch-lab>'s shadow root (locators pierce it). */
const figure = (page, key) => page.locator(`figure[data-key="${key}"]`);

/** Where a cell (row, col) of a heatmap, or a group of bars (col), is on the screen. */
async function cellPoint(page, key, row, col) {
  const canvas = figure(page, key).locator("canvas");
  await canvas.waitFor();
  await page.waitForFunction((k) => {
    const roots = [document, ...[...document.querySelectorAll("patch-lab")].map((h) => h.shadowRoot)];
    return roots.some((r) => r?.querySelector(`figure[data-key="${k}"] canvas`)?.dataset.plot);
  }, key);
  await canvas.scrollIntoViewIfNeeded();
  const box = await canvas.boundingBox();
  const [left, top, pw, ph] = (await canvas.getAttribute("data-plot")).split(",").map(Number);
  const rows = Number((await canvas.getAttribute("data-rows")) || 1);
  const cols = Number((await canvas.getAttribute("data-cols")) || (await canvas.getAttribute("data-categories")));
  return [box.x + left + ((col + 0.5) * pw) / cols, box.y + top + ((row + 0.5) * ph) / rows];
}

/** Hovers a cell; resolves to the tooltip's {text, value} (value: the exact number). */
async function hover(page, key, row, col) {
  const [x, y] = await cellPoint(page, key, row, col);
  await page.mouse.move(x - 3, y - 3);
  await page.mouse.move(x, y);
  const tip = figure(page, key).locator(".tooltip");
  await tip.waitFor({ state: "visible" });
  return { text: await tip.textContent(), value: await tip.getAttribute("data-value") };
}

/** A download's bytes after clicking a button. */
async function downloaded(page, click) {
  const dl = page.waitForEvent("download");
  await click();
  const d = await dl;
  return { name: d.suggestedFilename(), bytes: fs.readFileSync(await d.path()) };
}

/** A float32 .npy file: {shape, values}. */
function readNpy(buf) {
  const hlen = buf.readUInt16LE(8);
  const header = buf.subarray(10, 10 + hlen).toString();
  const shape = /'shape': \(([^)]*)\)/.exec(header)[1].split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  return { shape, values: new Float32Array(buf.buffer.slice(buf.byteOffset + 10 + hlen, buf.byteOffset + buf.length)) };
}
const sameF32 = (a, flat) => a.length === flat.length && flat.every((v, i) => (v === null ? Number.isNaN(a[i]) : a[i] === Math.fround(v)));

describe("patching sites in the lab page", () => {
  test("Sites boxes run block_every + head_every + DLA; layer × position heatmaps with tokens, first-diff marker, exact hover values; exports", async (t) => {
    const page = await newPage(t);
    await page.goto(server.url);
    assert.equal((await waitReady(page)).state, "ready");
    await page.uncheck("input[name=components][value=neurons]");
    for (const s of SITES) await page.check(`input[name=sites][value=${s}]`);
    await page.waitForFunction(() => !document.getElementById("run").disabled);
    // the URL (the share link) carries the sites, as bundles
    await page.waitForURL(/sites=block_every%2Chead_every%2Cdla/);
    await runInPage(page);
    const r = await page.evaluate(() => window.patchlabPage.report);
    // what the page computed is what the CLI computes for the same sites
    const want = cliReport(modelDir, { ...IOI, sites: ["heads", ...SITES] });
    assert.deepEqual(reportDiffs({ ...r, backend: want.backend }, want, 1e-3), []);
    assert.deepEqual(r.settings.components, ["heads"]);
    assert.equal(r.settings.dla, true);
    assert.ok(r.results.ap.clean_to_corrupt.resid_pre && r.patterns && r.dla, "no site maps, patterns or DLA");

    await page.click(".tab[data-view=resid]");
    assert.match(page.url(), /view=resid&site=resid_pre/);
    const n = r.tokens.clean.length;
    const key = "ap-clean_to_corrupt-resid_pre";
    const canvas = figure(page, key).locator("canvas");
    await canvas.waitFor();
    assert.equal(await canvas.getAttribute("data-rows"), String(r.model.n_layers));
    assert.equal(await canvas.getAttribute("data-cols"), String(n));
    assert.deepEqual(JSON.parse(await canvas.getAttribute("data-col-labels")), r.tokens.clean.map((x) => visible(x.text)));
    assert.equal(await canvas.getAttribute("data-first-diff"), String(r.tokens.first_diff));
    // every method and direction, each drawn with a colour bar
    await page.waitForFunction(() => [...document.querySelectorAll("#report-view canvas")].every((c) => Number(c.dataset.drawn) > 0));
    const stats = await canvasStats(page, "#report-view canvas");
    assert.equal(stats.length, 4 * 2);
    for (const s of stats) assert.ok(s.bar && s.colours > 5, `${s.key}: ${s.colours} colours`);
    // hover: the exact number, its layer, position and token
    const fd = r.tokens.first_diff;
    const tip = await hover(page, key, 1, fd);
    assert.equal(Number(tip.value), r.results.ap.clean_to_corrupt.resid_pre[1][fd]);
    assert.ok(tip.text.includes(`layer 1 · position ${fd} ${JSON.stringify(r.tokens.clean[fd].text)}`), tip.text);
    // click pins the tooltip: moving away keeps it, Escape lets it go
    await page.mouse.down();
    await page.mouse.up();
    assert.equal(await figure(page, key).getAttribute("data-tip-pinned"), "1");
    const [x0, y0] = await cellPoint(page, key, 0, 0);
    await page.mouse.move(x0, y0);
    assert.equal(Number(await figure(page, key).locator(".tooltip").getAttribute("data-value")), r.results.ap.clean_to_corrupt.resid_pre[1][fd]);
    await page.keyboard.press("Escape");
    assert.equal(await figure(page, key).getAttribute("data-tip-pinned"), null);
    assert.equal(await figure(page, key).locator(".tooltip").isHidden(), true);

    // exports of one map: CSV (layer, pos, token, value) and npy [layers, positions]
    const csv = (await downloaded(page, () => figure(page, key).locator("button[data-export=csv]").click())).bytes.toString().trim().split("\n");
    assert.equal(csv[0], "layer,pos,token,ap");
    assert.equal(csv.length, 1 + r.model.n_layers * n);
    for (const line of csv.slice(1)) {
      const [l, p] = line.split(",").map(Number);
      assert.equal(Number(line.slice(line.lastIndexOf(",") + 1)), r.results.ap.clean_to_corrupt.resid_pre[l][p], line);
    }
    // the token column holds the token's text (quoted: it starts with a space)
    assert.ok(csv[1 + fd].startsWith(`0,${fd},"${r.tokens.clean[fd].text}",`), csv[1 + fd]);
    const npy = readNpy((await downloaded(page, () => figure(page, key).locator("button[data-export=npy]").click())).bytes);
    assert.deepEqual(npy.shape, [r.model.n_layers, n]);
    assert.ok(sameF32(npy.values, r.results.ap.clean_to_corrupt.resid_pre.flat()));
    const png = await downloaded(page, () => figure(page, key).locator("button", { hasText: "PNG" }).click());
    assert.deepEqual([...png.bytes.subarray(1, 4)], [0x50, 0x4e, 0x47]);

    // another site: the select, the URL
    await page.selectOption("select[data-control=site]", "mlp_out");
    await figure(page, "ap-clean_to_corrupt-mlp_out").locator("canvas").waitFor();
    assert.match(page.url(), /view=resid&site=mlp_out/);

    // the report's CSV and NumPy exports hold the site maps too (the CLI's --npy files)
    const all = (await downloaded(page, () => page.click("#export-csv"))).bytes.toString().trim().split("\n");
    const siteLines = all.filter((l) => l.startsWith("ap,clean_to_corrupt,resid_pre,"));
    assert.equal(siteLines.length, r.model.n_layers * n);
    assert.equal(siteLines[fd + n].split(",").slice(3, 5).join(","), `1,${fd}`);
    assert.equal(Number(siteLines[fd + n].split(",")[5]), r.results.ap.clean_to_corrupt.resid_pre[1][fd]);
    const zip = unzipStored((await downloaded(page, () => page.click("#export-npy"))).bytes);
    const npyDir = fs.mkdtempSync(path.join(os.tmpdir(), "patchlab-sites-npy-"));
    t.after(() => fs.rmSync(npyDir, { recursive: true, force: true }));
    cliReport(modelDir, { ...IOI, sites: ["heads", ...SITES], npy: npyDir });
    assert.deepEqual([...zip.keys()].sort(), fs.readdirSync(npyDir).sort());
    const q = readNpy(zip.get("ap_clean_to_corrupt_q.npy"));
    assert.deepEqual(q.shape, [r.model.n_layers, r.model.n_heads]);
    assert.ok(sameF32(q.values, r.results.ap.clean_to_corrupt.q.flat()));

    // head sites: q, k, v, pattern and z side by side
    await page.click(".tab[data-view=head_sites]");
    for (const s of ["q", "k", "v", "pattern", "z"]) await figure(page, `ap-clean_to_corrupt-${s}`).locator("canvas").waitFor();
    const ht = await hover(page, "ap-clean_to_corrupt-v", 1, 3);
    assert.equal(Number(ht.value), r.results.ap.clean_to_corrupt.v[1][3]);
    await page.selectOption("select[data-control=method]", "atp");
    await figure(page, "atp-clean_to_corrupt-z").locator("canvas").waitFor();
    assert.match(page.url(), /view=head_sites.*method=atp/);
  });

  test("a head double-clicked in a heatmap opens its attention pattern: clean, corrupt, difference, with the report's weights", async (t) => {
    const page = await newPage(t);
    await page.goto(`${server.url}?report=/model/sites.json&view=heads`);
    assert.equal((await waitReady(page)).state, "report");
    const [x, y] = await cellPoint(page, "ap-clean_to_corrupt-heads", 1, 2);
    await page.mouse.dblclick(x, y);
    await figure(page, "pattern-clean-1-2").locator("canvas").waitFor();
    assert.equal(await page.inputValue("select[data-control=head]"), "1.2");
    const n = saved.tokens.clean.length;
    for (const [key, want] of [
      ["pattern-clean-1-2", (i, j) => saved.patterns.clean[1][2][i][j]],
      ["pattern-corrupt-1-2", (i, j) => saved.patterns.corrupt[1][2][i][j]],
      ["pattern-diff-1-2", (i, j) => saved.patterns.clean[1][2][i][j] - saved.patterns.corrupt[1][2][i][j]],
    ]) {
      const canvas = figure(page, key).locator("canvas");
      assert.equal(await canvas.getAttribute("data-rows"), String(n));
      assert.deepEqual(JSON.parse(await canvas.getAttribute("data-row-labels")), JSON.parse(await canvas.getAttribute("data-col-labels")));
      const tip = await hover(page, key, n - 1, 4);
      assert.equal(Number(tip.value), want(n - 1, 4), key);
    }
    // the causal upper triangle is blank: no tooltip there
    const [ux, uy] = await cellPoint(page, "pattern-clean-1-2", 2, 9);
    await page.mouse.move(ux, uy);
    assert.equal(await figure(page, "pattern-clean-1-2").locator(".tooltip").isHidden(), true);
    // pattern_dest_src: the patching effect of each weight
    await page.check("input[data-control=overlay]");
    const key = "pattern-effect-ap-clean_to_corrupt-1-2";
    const tip = await hover(page, key, n - 1, 3);
    assert.equal(Number(tip.value), saved.results.ap.clean_to_corrupt.pattern_dest_src[1][2][n - 1][3]);
    // its CSV: dest, token, src, token, value
    const csv = (await downloaded(page, () => figure(page, key).locator("button[data-export=csv]").click())).bytes.toString().trim().split("\n");
    assert.equal(csv.length, 1 + n * n);
    assert.match(csv[0], /^dest,dest_token,src,src_token,/);
    // a click on a head in the Heads view pins it; the pin box opens its pattern
    await page.click(".tab[data-view=heads]");
    const [hx, hy] = await cellPoint(page, "ap-clean_to_corrupt-heads", 0, 3);
    await page.mouse.click(hx, hy);
    await page.click(".pinned button[data-open=pattern]");
    await figure(page, "pattern-clean-0-3").locator("canvas").waitFor();
  });

  test("DLA: components at the last position, heads' DLA, one head's DLA at every position", async (t) => {
    const page = await newPage(t);
    await page.goto(`${server.url}?report=/model/sites.json&view=dla&head=1.1`);
    assert.equal((await waitReady(page)).state, "report");
    const d = saved.dla;
    const last = saved.tokens.clean.length - 1;
    for (const k of [0, d.labels.length - 1]) {
      const tip = await hover(page, "dla-layers", 0, k);
      assert.equal(tip.value, `${d.clean.layers[k][last]},${d.corrupt.layers[k][last]}`);
      assert.ok(tip.text.startsWith(d.labels[k]));
    }
    // Σ components + bias = the metric
    const sum = (run) => d[run].layers.reduce((s, row) => s + row[last], d.bias);
    assert.ok(Math.abs(sum("clean") - saved.metric.clean) < 1e-3 && Math.abs(sum("corrupt") - saved.metric.corrupt) < 1e-3);
    const ht = await hover(page, "dla-heads-corrupt", 0, 2);
    assert.equal(Number(ht.value), d.corrupt.heads[0][2][last]);
    // the head of the URL, per position; a click on another head follows it
    assert.equal(await figure(page, "dla-head").locator("canvas").getAttribute("aria-label"), "L1 H1: DLA at every position");
    const pt = await hover(page, "dla-head", 0, 3);
    assert.equal(pt.value, `${d.clean.heads[1][1][3]},${d.corrupt.heads[1][1][3]}`);
    const [x, y] = await cellPoint(page, "dla-heads-clean", 0, 2);
    await page.mouse.click(x, y);
    assert.equal(await figure(page, "dla-head").locator("canvas").getAttribute("aria-label"), "L0 H2: DLA at every position");
    const bars = (await downloaded(page, () => figure(page, "dla-layers").locator("button[data-export=csv]").click())).bytes.toString().trim().split("\n");
    assert.equal(bars[0], "component,clean,corrupt");
    assert.equal(bars[1], `embed,${d.clean.layers[0][last]},${d.corrupt.layers[0][last]}`);
    const npy = readNpy((await downloaded(page, () => figure(page, "dla-heads-clean").locator("button[data-export=npy]").click())).bytes);
    assert.deepEqual(npy.shape, [saved.model.n_layers, saved.model.n_heads]);
    assert.ok(sameF32(npy.values, d.clean.heads.flatMap((l) => l.map((h) => h[last]))));
  });

  test("the URL keeps view, site and head, and bad ones get a message", async (t) => {
    const page = await newPage(t);
    const q = new URLSearchParams({ ...IOI, components: "heads", methods: "ap", sites: "block_every,head_every,dla", view: "pattern", head: "1.2" });
    await page.goto(`${server.url}?${q}`);
    await page.waitForFunction(() => document.body.dataset.runs === "1");
    await figure(page, "pattern-clean-1-2").locator("canvas").waitFor();
    for (const s of SITES) assert.equal(await page.isChecked(`input[name=sites][value=${s}]`), true, s);
    assert.equal(await page.isChecked("input[name=sites][value=resid_mid]"), false);
    const url = new URL(page.url());
    assert.equal(url.searchParams.get("view"), "pattern");
    assert.equal(url.searchParams.get("head"), "1.2");
    assert.equal(url.searchParams.get("sites"), "block_every,head_every,dla");
    // the share link is the same state
    await page.click("#share");
    const share = new URL(await page.inputValue("#share-url"));
    for (const k of ["view", "head", "sites"]) assert.equal(share.searchParams.get(k), url.searchParams.get(k), k);
    // the head select writes the URL
    await page.selectOption("select[data-control=head]", "0.3");
    await figure(page, "pattern-clean-0-3").locator("canvas").waitFor();
    assert.equal(new URL(page.url()).searchParams.get("head"), "0.3");
    // a saved report with a site, a head and a view it lacks: messages, and the rest renders
    for (const [query, message, key] of [
      ["view=resid&site=resid_nope", /no site "resid_nope".*showing resid_pre/, "ap-clean_to_corrupt-resid_pre"],
      ["view=pattern&head=7.7", /no head "7\.7" in this model \(2 layers × 4 heads/, null],
      ["view=nonsense", /no view "nonsense": showing Heads/, "ap-clean_to_corrupt-heads"],
    ]) {
      await page.goto(`${server.url}?report=/model/sites.json&${query}`);
      await waitReady(page);
      await page.waitForSelector(".view-notice:not([hidden])");
      assert.match(await page.textContent(".view-notice"), message);
      if (key) await figure(page, key).locator("canvas").waitFor();
      else assert.ok((await page.locator("#report-view canvas").count()) >= 3);
    }
    // a report without DLA under another metric says why
    const gt = cliReport(modelDir, { clean: "The war lasted from the year 1742 to the year 17", corrupt: "The war lasted from the year 1701 to the year 17", correct: "50", incorrect: "30", metric: "greater_than:42", methods: ["ap"], sites: ["heads", "resid_pre"] });
    fs.writeFileSync(path.join(modelDir, "gt-sites.json"), JSON.stringify(gt));
    await page.goto(`${server.url}?report=/model/gt-sites.json&view=dla`);
    await waitReady(page);
    assert.match(await page.textContent("#report-view .empty"), /DLA is defined for the logit-difference metric/);
  });

  test("<patch-lab view=pattern head=…> and the other site views render a saved report (results only)", async (t) => {
    const page = await newPage(t);
    const requested = [];
    page.context().on("request", (r) => requested.push(r.url()));
    await page.goto(`${server.url}embed-demo.html?report=/model/sites.json&view=pattern&head=1.2`);
    await page.waitForFunction(() => document.querySelector("patch-lab")?.dataset.state === "report");
    const tip = await hover(page, "pattern-corrupt-1-2", 6, 1);
    assert.equal(Number(tip.value), saved.patterns.corrupt[1][2][6][1]);
    assert.equal(requested.filter((u) => u.endsWith("model.safetensors")).length, 0);
    for (const [view, extra, count] of [["resid", "&site=attn_out", 8], ["heads_by_pos", "", 5 + 4 + 1], ["dla", "", 1 + 2 + 1 + 2]]) {
      await page.goto(`${server.url}embed-demo.html?report=/model/sites.json&view=${view}${extra}`);
      await page.waitForFunction(() => document.querySelector("patch-lab")?.dataset.state === "report");
      await page.waitForFunction((c) => document.querySelector("patch-lab").shadowRoot.querySelectorAll("canvas").length === c, count);
      const stats = await canvasStats(page, "canvas");
      for (const s of stats) assert.ok(s.drawn > 0 && s.colours > 3, `${view} ${s.key}`);
    }
    await figure(page, "dla-layers").locator("canvas").waitFor();
    await page.goto(`${server.url}embed-demo.html?report=/model/sites.json&view=resid&site=attn_out`);
    await figure(page, "ap-clean_to_corrupt-attn_out").locator("canvas").waitFor();
  });

  test("prompts with markup stay text in token labels, tooltips and selects", async (t) => {
    const page = await newPage(t);
    const evil = {
      clean: 'When <img src=x onerror="window.__pwned=1"> Mary and John went, <script>window.__pwned=2</script> John gave a drink to',
      corrupt: 'When <img src=x onerror="window.__pwned=1"> Mary and John went, <script>window.__pwned=2</script> Mary gave a drink to',
      correct: " Mary",
      incorrect: " John",
    };
    await page.goto(`${server.url}?${new URLSearchParams({ ...evil, components: "heads", methods: "ap", sites: "resid_pre,dla", view: "resid" })}`);
    await page.waitForFunction(() => document.body.dataset.runs === "1" || !document.getElementById("run-error").hidden || !document.getElementById("input-error").hidden);
    assert.equal(await page.isHidden("#run-error"), true, await page.textContent("#run-error"));
    const r = await page.evaluate(() => window.patchlabPage.report);
    const canvas = figure(page, "ap-clean_to_corrupt-resid_pre").locator("canvas");
    const labels = JSON.parse(await canvas.getAttribute("data-col-labels"));
    assert.equal(labels.join("").replace(/·/g, " "), `<|endoftext|>${evil.clean}`);
    const k = r.tokens.clean.findIndex((x, i) => i > 1 && x.text.includes("<")); // not BOS: its row of a pattern has one cell
    const tip = await hover(page, "ap-clean_to_corrupt-resid_pre", 0, k);
    assert.ok(tip.text.includes(JSON.stringify(r.tokens.clean[k].text)), tip.text);
    await page.click(".tab[data-view=pattern]");
    const head = await page.inputValue("select[data-control=head]");
    const ptip = await hover(page, `pattern-clean-${head.replace(".", "-")}`, k, 1);
    assert.ok(ptip.text.includes(JSON.stringify(r.tokens.clean[k].text)), ptip.text);
    // the head select's options are plain text too
    assert.equal(await page.locator("select[data-control=head] option").count(), r.model.n_layers * r.model.n_heads);
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    assert.equal(await page.locator("#report-view img, #report-view script, #report-view b").count(), 0);
    assert.equal(await page.evaluate(() => document.querySelectorAll("img[onerror], script:not([src])").length), 0);
  });
});
