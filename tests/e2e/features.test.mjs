// SAE features in the browser (docs/methods.md "SAE features", docs/lab.md,
// docs/embedding.md): the JS API loads SAELens's SAEs (local bytes, a folder
// URL, the Hub) and the page's engine scores their features as SAELens does
// (tests/golden/sae_model_a.json, the tolerances of tests/golden_features.rs);
// the page's SAE box, "Score SAE features" and the Features view (table,
// sparklines, Neuronpedia links, CSV); an SAE of another model's width is
// refused in the engine's words; a results-only <patch-lab view="features">;
// a release loaded "from the Hub" through a stand-in that serves the fixture
// in the Hub's layout.
// Run with scripts/test-e2e, or `node --test tests/e2e/features.test.mjs`
// once www/pkg, target/debug/patchlab and Chromium exist.

import assert from "node:assert/strict";
import crypto from "node:crypto";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { BIN, IOI, ROOT, launch, newContext, serve, trackedPage, waitReady } from "./helpers.mjs";

const GOLDEN = JSON.parse(fs.readFileSync(path.join(ROOT, "tests/golden/sae_model_a.json"), "utf8"));
const FIXTURES = path.join(ROOT, "tests/fixtures/sae");
const DIRECTIONS = ["clean_to_corrupt", "corrupt_to_clean"];
// the fixture the page tests load, with a Neuronpedia id added to its cfg.json
const PAGE_SAE = "legacy_standard_resid_pre_1";
const NEURONPEDIA = "gpt2-small/1-res-jb";

let modelDir, otherDir, server, otherServer, browser;
const tmp = [];

/** `patchlab random-model` with these arguments, into a new temporary directory. */
function randomModel(args, tag) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `patchlab-e2e-${tag}-`));
  tmp.push(dir);
  execFileSync(BIN, ["random-model", ...args, "--out", dir], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
  return dir;
}

/** The fixture SAEs under <dir>/sae/<name>/ (served at /model/sae/<name>/), the page's one with a Neuronpedia id. */
function copyFixtures(dir) {
  for (const name of fs.readdirSync(FIXTURES)) {
    const to = path.join(dir, "sae", name);
    fs.mkdirSync(to, { recursive: true });
    for (const f of fs.readdirSync(path.join(FIXTURES, name))) fs.copyFileSync(path.join(FIXTURES, name, f), path.join(to, f));
  }
  const np = path.join(dir, "sae-np", PAGE_SAE);
  fs.mkdirSync(np, { recursive: true });
  const cfg = JSON.parse(fs.readFileSync(path.join(FIXTURES, PAGE_SAE, "cfg.json"), "utf8"));
  fs.writeFileSync(path.join(np, "cfg.json"), JSON.stringify({ ...cfg, neuronpedia_id: NEURONPEDIA }));
  fs.copyFileSync(path.join(FIXTURES, PAGE_SAE, "sae_weights.safetensors"), path.join(np, "sae_weights.safetensors"));
}

before(async () => {
  assert.ok(fs.existsSync(path.join(ROOT, "www/pkg/patchlab_bg.wasm")), "www/pkg is missing: run scripts/build-wasm");
  // the golden's model: 2 layers, 4 heads, d_model 64, seed 1 (n_ctx 1024)
  const m = GOLDEN.model;
  modelDir = randomModel(["--layers", String(m.n_layers), "--heads", String(m.n_heads), "--d-model", String(m.d_model), "--seed", String(m.seed)], "sae-golden");
  const sha = crypto.createHash("sha256").update(fs.readFileSync(path.join(modelDir, "model.safetensors"))).digest("hex");
  assert.equal(sha, m.model_safetensors_sha256, "random-model no longer writes the model the SAE golden was made from");
  copyFixtures(modelDir);
  // a model of another width (d_model 48): the fixtures do not fit it
  otherDir = randomModel(["--layers", "3", "--heads", "3", "--d-model", "48", "--seed", "2"], "sae-other");
  copyFixtures(otherDir);
  server = await serve({ modelDir });
  otherServer = await serve({ modelDir: otherDir });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  server?.close();
  otherServer?.close();
  for (const d of tmp) fs.rmSync(d, { recursive: true, force: true });
});

/** Every number of a nested array, in order (null as NaN). */
const flat = (v) => (Array.isArray(v) ? v.flatMap(flat) : [v === null ? NaN : v]);

/** A feature map of a report (dense nested arrays or sparse {shape, indices, values}) as a flat array. */
function dense(m) {
  if (Array.isArray(m)) return flat(m);
  assert.ok(m && Array.isArray(m.shape) && Array.isArray(m.indices) && Array.isArray(m.values), "a sparse feature map");
  assert.equal(m.indices.length, m.values.length);
  const out = new Array(m.shape.reduce((a, b) => a * b, 1)).fill(0);
  m.indices.forEach((i, k) => (out[i] = m.values[k] === null ? NaN : m.values[k]));
  return out;
}

const maxAbs = (a) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

/** |ours − SAELens| ≤ tol at every entry. */
function close(ours, want, tol, what) {
  assert.equal(ours.length, want.length, `${what}: length`);
  ours.forEach((a, i) => assert.ok(Math.abs(a - want[i]) <= tol, `${what}[${i}]: page ${a}, SAELens ${want[i]} (tolerance ${tol})`));
}

/** A page that loads no model of its own (the embed demo, pointed at no report). */
async function blankPage(t, url = server.url) {
  const page = await trackedPage(t, browser, { scale: 1 });
  await page.goto(`${url}embed-demo.html?report=/model/none.json`);
  return page;
}

// every SAE and case on the CPU (wasm); on WebGPU (SwiftShader here: slow)
// the hook_z SAE (its changes go through W_O) and the rescaled TopK one on
// two short cases without BOS (the first difference at 0 and at the last token)
const GPU_SAES = ["jumprelu_z_0", "topk_rescaled_resid_post_0"];
const FEATURE_RUNS = [
  ["cpu", "the CPU (wasm) engine", () => true, () => true],
  ["gpu", "WebGPU", (c) => !c.bos && (c.first_diff === 0 || c.first_diff === c.clean_tokens.length - 1), (s) => GPU_SAES.includes(s.name)],
];

describe("the browser's SAE features equal SAELens", () => {
  for (const [backend, engineName, keep, keepSae] of FEATURE_RUNS) test(`fixture SAEs, methods and directions on ${engineName}`, async (t) => {
    const page = await blankPage(t);
    const saes = GOLDEN.saes.filter(keepSae);
    // the cases are the same prompts for every SAE: one analysis each, all SAEs scored together
    const cases = [];
    for (const s of saes) {
      for (const c of s.cases.filter(keep)) {
        if (!cases.some((x) => x.clean === c.clean && x.corrupt === c.corrupt && x.bos === c.bos)) cases.push({ clean: c.clean, corrupt: c.corrupt, correct: c.correct, incorrect: c.incorrect, bos: c.bos });
      }
    }
    const names = saes.map((s) => s.name);
    // an expected_average_only_in SAE loads with its yaml's norm_scaling_factor
    const factors = saes.map((s) => s.norm_scaling_factor ?? null);
    const { infos, listed, reports } = await page.evaluate(
      async ({ names, factors, cases, steps, backend }) => {
        const { PatchLab } = await import("/patchlab.js");
        const lab = await PatchLab.load({ model: "/model/" });
        const infos = [];
        for (const [k, name] of names.entries()) {
          // half through loadSae (the bytes), half through loadSaeFromUrl (the download path)
          if (k % 2 === 0) {
            const cfg = await (await fetch(`/model/sae/${name}/cfg.json`)).text();
            const weights = await (await fetch(`/model/sae/${name}/sae_weights.safetensors`)).arrayBuffer();
            infos.push(await lab.loadSae({ name, cfg, weights, normScalingFactor: factors[k] }));
          } else infos.push(await lab.loadSaeFromUrl(`/model/sae/${name}/`, { normScalingFactor: factors[k] }));
        }
        const listed = await lab.saes();
        const reports = [];
        for (const c of cases) reports.push(await lab.analyze({ ...c, components: [], saes: ["all"], igSteps: steps, backend }));
        lab.close();
        return { infos, listed, reports };
      },
      { names, factors, cases, steps: GOLDEN.ig_steps, backend },
    );
    assert.equal(infos.length, saes.length);
    for (const [k, s] of saes.entries()) {
      assert.equal(infos[k].name, s.name);
      assert.equal(infos[k].hook_name, s.hook_name);
      assert.equal(infos[k].architecture, s.architecture);
      assert.equal(infos[k].d_sae, s.d_sae);
      assert.equal(infos[k].d_in, 64);
    }
    assert.deepEqual(listed.map((s) => s.hook_name).sort(), saes.map((s) => s.hook_name).sort(), "lab.saes() lists every SAE loaded");
    for (const s of saes) {
      const hook = s.hook_name;
      const ds = s.d_sae;
      for (const [ci, c] of s.cases.entries()) {
        if (!keep(c)) continue;
        const r = reports[cases.findIndex((x) => x.clean === c.clean && x.corrupt === c.corrupt && x.bos === c.bos)];
        const what = `${s.name} case ${ci}`;
        assert.equal(r.schema, 4, `${what}: schema`);
        assert.equal(r.backend, backend, "the engine asked for ran");
        assert.deepEqual(r.tokens.clean.map((x) => x.id), c.clean_tokens, `${what}: tokens`);
        assert.equal(r.tokens.first_diff, c.first_diff, `${what}: first difference`);
        assert.ok(r.settings.saes.some((x) => x.hook_name === hook && x.d_sae === ds), `${what}: settings.saes`);
        const T = r.tokens.clean.length;
        // the active features of each run are SAELens's hook_sae_acts_post
        for (const run of ["clean", "corrupt"]) {
          const a = r.features[hook][run];
          const f = new Array(T * ds).fill(0);
          a.indices.forEach(([p, i], k) => (f[p * ds + i] = a.values[k]));
          const want = flat(c.f[run]);
          close(f, want, 2e-4 * Math.max(1, maxAbs(want)), `${what} f ${run}`);
        }
        const [mc, mk] = [r.metric.clean, r.metric.corrupt];
        for (const d of DIRECTIONS) {
          const [mb, mo] = d === "clean_to_corrupt" ? [mc, mk] : [mk, mc];
          const gap = mb - mo;
          const scale = 1 + Math.max(Math.abs(mb), Math.abs(mo));
          for (const byPos of [false, true]) {
            const key = `${byPos ? "sae_by_pos:" : "sae:"}${hook}`;
            const suffix = byPos ? "by_pos" : "all";
            const at = `${what} ${d} ${key}`;
            const ap = dense(r.results.ap[d][key]);
            assert.equal(ap.length, byPos ? T * ds : ds, `${at}: cells`);
            close(ap.map((a) => mb + a * gap), flat(c[`ap_${suffix}`][d]), 1e-4 * scale, `${at} AP`);
            const atp = dense(r.results.atp[d][key]);
            close(atp.map((a) => a * gap), flat(c[`atp_${suffix}`][d]), 1e-4 * scale, `${at} AtP`);
            const ig = dense(r.results.ig[d][key]);
            const wantIg = flat(c[`ig_${suffix}`][d]);
            close(ig, wantIg, 1e-4 * Math.max(1e-3, maxAbs(wantIg)), `${at} IG`);
            // IG* is IG over the gap
            dense(r.results.ig_norm[d][key]).forEach((n, i) => assert.ok(Math.abs(n - ig[i] / gap) <= 1e-5 * (1 + Math.abs(ig[i] / gap)), `${at} IG*[${i}]`));
            // nothing is patched before the first differing token
            if (byPos) for (const m of [ap, atp, ig]) assert.ok(m.slice(0, c.first_diff * ds).every((v) => v === 0), `${at}: zero before the first difference`);
          }
        }
        const a = r.analysis.features[hook];
        assert.ok(Array.isArray(a.features) && a.features.length > 0, `${what}: analysed features`);
        assert.ok(a.latent.ap && Array.isArray(a.latent.ap.and), `${what}: latent sets`);
      }
    }
  });
});

/** Waits until the SAE box has loaded an SAE or shown an error; returns the error text ("" when it loaded). */
async function saeLoaded(page, before) {
  await page.waitForFunction(
    (b) => Number(document.body.dataset.saes || 0) > b.saes || Number(document.body.dataset.saeErrors || 0) > b.errors,
    before,
  );
  return (await page.isHidden("#sae-error")) ? "" : await page.textContent("#sae-error");
}

const saeCounts = (page) => page.evaluate(() => ({ saes: Number(document.body.dataset.saes || 0), errors: Number(document.body.dataset.saeErrors || 0) }));

async function runInPage(page) {
  const before = Number(await page.evaluate(() => document.body.dataset.runs || 0));
  await page.click("#run");
  await page.waitForFunction((n) => Number(document.body.dataset.runs || 0) > n || !document.getElementById("run-error").hidden, before);
  assert.equal(await page.isHidden("#run-error"), true, await page.textContent("#run-error"));
}

async function downloadText(page, selector) {
  const d = page.waitForEvent("download");
  await page.click(selector);
  return fs.readFileSync(await (await d).path(), "utf8");
}

/** The features of largest |score| in a report's map (dense or sparse), largest first, as the view ranks them. */
function ranked(map, n) {
  const v = dense(map);
  return v
    .map((x, i) => [x, i])
    .filter(([x]) => Number.isFinite(x) && x !== 0)
    .sort((a, b) => Math.abs(b[0]) - Math.abs(a[0]) || a[1] - b[1])
    .slice(0, n)
    .map(([, i]) => i);
}

describe("the page's SAE box and Features view", () => {
  test("an SAE from local files, a run with its features, the table, sparklines, Neuronpedia links and the CSV", async (t) => {
    const page = await trackedPage(t, browser, { scale: 1 });
    await page.goto(`${server.url}?${new URLSearchParams({ ...IOI, components: "heads", methods: "ap,ig,atp", run: "0" })}`);
    const st = await waitReady(page);
    assert.equal(st.state, "ready");
    const hook = "blocks.1.hook_resid_pre";
    const dir = path.join(modelDir, "sae-np", PAGE_SAE);
    const before = await saeCounts(page);
    await page.setInputFiles("#sae-file-input", [path.join(dir, "cfg.json"), path.join(dir, "sae_weights.safetensors"), path.join(FIXTURES, PAGE_SAE, "sparsity.safetensors")]);
    assert.equal(await saeLoaded(page, before), "");
    const item = await page.textContent(`#sae-list li[data-hook="${hook}"]`);
    assert.match(item, /blocks\.1\.hook_resid_pre/);
    assert.match(item, /standard · d_sae 96/);
    assert.match(item, /Neuronpedia gpt2-small\/1-res-jb/);
    assert.equal(await page.isChecked("#sae-score"), true, "loading an SAE ticks Score SAE features");
    await runInPage(page);
    const report = await page.evaluate(() => window.patchlabPage.report);
    assert.equal(report.schema, 4);
    assert.deepEqual(report.settings.saes.map((s) => s.hook_name), [hook]);
    assert.ok(report.results.ap.clean_to_corrupt.heads, "the heads are computed too");

    await page.click('button.tab[data-view="features"]');
    await page.waitForSelector(".feature-table tbody tr");
    assert.match(page.url(), /view=features/);
    assert.match(page.url(), /hook=blocks\.1\.hook_resid_pre/);
    const want = ranked(report.results.ap.clean_to_corrupt[`sae:${hook}`], 20);
    assert.ok(want.length > 0);
    const rows = await page.$$eval(".feature-table tbody tr", (trs) =>
      trs.map((tr) => {
        const a = tr.querySelector("td.neuronpedia a");
        const c = tr.querySelector("canvas.sparkline");
        return {
          feature: Number(tr.dataset.feature),
          index: tr.querySelector("td.feature-index").textContent,
          href: a?.getAttribute("href"),
          text: a?.textContent,
          rel: a?.rel,
          target: a?.target,
          drawn: Number(c?.dataset.drawn || 0),
          clean: JSON.parse(c?.dataset.clean || "null"),
          corrupt: JSON.parse(c?.dataset.corrupt || "null"),
          score: Number(tr.querySelector('td.num[data-direction="clean_to_corrupt"]').dataset.value),
          latent: tr.querySelector("td.latent").textContent,
        };
      }),
    );
    assert.deepEqual(rows.map((r) => r.feature), want, "the top features by |AP| clean → corrupt, largest first");
    const T = report.tokens.clean.length;
    const acts = (run, f) => {
      const out = new Array(T).fill(0);
      const a = report.features[hook][run];
      a.indices.forEach(([p, i], k) => { if (i === f) out[p] = a.values[k]; });
      return out;
    };
    const apAll = dense(report.results.ap.clean_to_corrupt[`sae:${hook}`]);
    const latent = report.analysis.features[hook].latent.ap;
    for (const r of rows) {
      assert.equal(r.index, String(r.feature));
      assert.equal(r.href, `https://www.neuronpedia.org/${NEURONPEDIA}/${r.feature}`);
      assert.equal(r.text, `${NEURONPEDIA}/${r.feature} ↗`);
      assert.match(r.rel, /noopener/);
      assert.equal(r.target, "_blank");
      assert.ok(r.drawn >= 1, "the sparkline is drawn");
      assert.deepEqual(r.clean, acts("clean", r.feature), `feature ${r.feature}: clean activations`);
      assert.deepEqual(r.corrupt, acts("corrupt", r.feature), `feature ${r.feature}: corrupt activations`);
      assert.ok(Math.abs(r.score - apAll[r.feature]) <= 1e-12, `feature ${r.feature}: AP`);
      const mark = latent.and.includes(r.feature) ? "▲ AND" : latent.or.includes(r.feature) ? "○ OR" : "";
      assert.equal(r.latent, mark, `feature ${r.feature}: latent mark`);
    }
    // the by-position map of the top features and the scatter plots are drawn
    const keys = await page.$$eval(".view-body figure", (fs) => fs.map((f) => f.dataset.key));
    assert.ok(keys.some((k) => k.startsWith("features-bypos-ap-clean_to_corrupt")), keys.join(", "));
    assert.ok(keys.some((k) => k.startsWith("features-scatter-ig_norm-clean_to_corrupt")), keys.join(", "));
    // hover a sparkline: the values at that position
    const spark = await page.$(".feature-table tbody tr:first-child canvas.sparkline");
    const box = await spark.boundingBox();
    await page.mouse.move(box.x + box.width - 4, box.y + box.height / 2);
    const hover = await page.textContent(".feature-hover");
    assert.match(hover, new RegExp(`^feature ${rows[0].feature} · position ${T - 1} `));
    // click a row: its feature is pinned, with its scores
    await page.click(".feature-table tbody tr:first-child td.feature-index");
    assert.match(await page.textContent("div.pinned"), new RegExp(`Pinned feature ${rows[0].feature} of ${hook.replace(/\./g, "\\.")}`));
    assert.equal(await page.getAttribute(".feature-table tbody tr:first-child", "class"), "pinned-row");
    // the table's CSV
    const csv = (await downloadText(page, '[data-export="features-csv"]')).trim().split("\n");
    assert.match(csv[0], /^hook,feature,ap_clean_to_corrupt,ap_corrupt_to_clean,ig_norm_clean_to_corrupt,ig_norm_corrupt_to_clean,atp_clean_to_corrupt,atp_corrupt_to_clean,latent_ap,max_activation_clean,max_activation_corrupt,neuronpedia$/);
    assert.equal(csv.length, rows.length + 1);
    const first = csv[1].split(",");
    assert.equal(first[0], hook);
    assert.equal(Number(first[1]), rows[0].feature);
    assert.equal(Number(first[2]), apAll[rows[0].feature]);
    assert.equal(first.at(-1), rows[0].href);
    // IG* ranks the features by its own scores
    await page.selectOption('select[data-control="method"]', "ig_norm");
    await page.waitForFunction(() => /method=ig_norm/.test(location.search));
    const byIg = await page.$$eval(".feature-table tbody tr", (trs) => trs.map((tr) => Number(tr.dataset.feature)));
    assert.deepEqual(byIg, ranked(report.results.ig_norm.clean_to_corrupt[`sae:${hook}`], 20));
    // the page's report CSV and npy zip hold the feature maps too
    const all = await downloadText(page, "#export-csv");
    assert.ok(all.split("\n").some((l) => l.startsWith(`ap,clean_to_corrupt,sae:${hook},1,${rows[0].feature},`)), "report CSV: the feature's line");
    // the Dataset tab scores the loaded SAE too and averages its features over the pairs
    await page.click('#mode-tabs .tab[data-mode="dataset"]');
    await page.selectOption("#ds-task", "ioi");
    await page.fill("#ds-n", "3");
    await page.uncheck("input[name=ds-methods][value=ig]");
    await page.waitForFunction(() => !document.getElementById("ds-run").disabled);
    await page.click("#ds-run");
    await page.waitForFunction(() => Number(document.body.dataset.datasetRuns || 0) >= 1 || !document.getElementById("ds-error").hidden);
    assert.equal(await page.isHidden("#ds-error"), true, await page.textContent("#ds-error"));
    await page.waitForSelector("#ds-features:not([hidden]) #ds-feature-table tbody tr");
    const summary = JSON.parse(await downloadText(page, "#ds-export-summary"));
    const means = summary.feature_maps.ap.clean_to_corrupt[`sae:${hook}`];
    assert.equal(means.n, 3);
    const dsRows = await page.$$eval("#ds-feature-table tbody tr", (trs) => trs.map((tr) => ({ f: Number(tr.dataset.feature), cells: [...tr.querySelectorAll("td")].map((td) => td.textContent), href: tr.querySelector("td.neuronpedia a")?.getAttribute("href") })));
    assert.deepEqual(dsRows.map((r) => r.f), ranked(means.mean, 25), "features by mean |AP| over the pairs");
    assert.equal(dsRows[0].href, `https://www.neuronpedia.org/gpt2-small/1-res-jb/${dsRows[0].f}`);
    await page.click('#mode-tabs .tab[data-mode="pair"]');
    // removing the SAE: none is left, and the run asks for one
    await page.click(`#sae-list li[data-hook="${hook}"] button`);
    await page.waitForFunction(() => document.querySelectorAll("#sae-list li").length === 0);
    await page.waitForFunction(() => /no SAE is loaded/.test(document.getElementById("input-error").textContent));
    assert.equal(await page.isDisabled("#run"), true);
  });

  test("an SAE trained on a model of another width is refused in the engine's words", async (t) => {
    const page = await trackedPage(t, browser, { scale: 1 });
    await page.goto(otherServer.url);
    assert.equal((await waitReady(page)).state, "ready");
    const before = await saeCounts(page);
    await page.setInputFiles("#sae-file-input", [path.join(FIXTURES, PAGE_SAE, "cfg.json"), path.join(FIXTURES, PAGE_SAE, "sae_weights.safetensors")]);
    const error = await saeLoaded(page, before);
    assert.match(error, /^Could not load the SAE: /);
    assert.match(error, /d_in = 64/);
    assert.match(error, /d_model = 48/);
    assert.equal(await page.$$eval("#sae-list li", (l) => l.length), 0);
    // a PyTorch checkpoint is refused before anything reaches the engine
    const pt = path.join(otherDir, "sae.pt");
    fs.writeFileSync(pt, "not a pickle");
    await page.setInputFiles("#sae-file-input", [pt]);
    await page.waitForFunction(() => /PyTorch checkpoints are not read/.test(document.getElementById("sae-error").textContent));
    // a release the lab cannot encode says why when picked, and cannot be loaded
    await page.selectOption("#sae-release", "gpt2-small-resid-post-v5-32k");
    assert.match(await page.textContent("#sae-reason"), /cannot be loaded here: .*layer_norm/);
    assert.equal(await page.isDisabled("#sae-load"), true);
    await page.selectOption("#sae-release", "gpt2-small-hook-z-kk");
    assert.match(await page.textContent("#sae-reason"), /PyTorch \.pt checkpoints/);
    await page.selectOption("#sae-release", "gpt2-small-res-jb");
    assert.match(await page.textContent("#sae-reason"), /^jbloom\/GPT2-Small-SAEs-Reformatted, folder blocks\.0\.hook_resid_pre \(hook blocks\.0\.hook_resid_pre, Neuronpedia gpt2-small\/0-res-jb\)\.$/);
    assert.equal(await page.isDisabled("#sae-load"), false);
  });
});

describe("<patch-lab view=\"features\">", () => {
  test("renders a saved report with features, results only", async (t) => {
    const page = await blankPage(t);
    const report = await page.evaluate(async (ioi) => {
      const { PatchLab } = await import("/patchlab.js");
      const lab = await PatchLab.load({ model: "/model/" });
      await lab.loadSaeFromUrl("/model/sae-np/legacy_standard_resid_pre_1/");
      await lab.loadSaeFromUrl("/model/sae/topk_mlp_out_0/");
      const r = await lab.analyze({ ...ioi, components: [], saes: ["blocks.1.hook_resid_pre", "blocks.0.hook_mlp_out"], backend: "cpu" });
      lab.close();
      return r;
    }, IOI);
    assert.deepEqual(report.settings.saes.map((s) => s.hook_name).sort(), ["blocks.0.hook_mlp_out", "blocks.1.hook_resid_pre"]);
    assert.deepEqual(report.settings.components, []);
    fs.writeFileSync(path.join(modelDir, "features-report.json"), JSON.stringify(report));
    const embed = await trackedPage(t, browser, { scale: 1 });
    const requests = [];
    embed.on("request", (r) => requests.push(r.url()));
    await embed.goto(`${server.url}embed-demo.html?report=/model/features-report.json&view=features&hook=blocks.1.hook_resid_pre`);
    await embed.waitForFunction(() => ["report", "error"].includes(document.querySelector("patch-lab")?.dataset.state));
    const info = await embed.evaluate(() => {
      const root = document.querySelector("patch-lab").shadowRoot;
      return {
        state: document.querySelector("patch-lab").dataset.state,
        error: root.querySelector(".error")?.textContent,
        hook: root.querySelector(".feature-table")?.dataset.hook,
        rows: root.querySelectorAll(".feature-table tbody tr").length,
        links: [...root.querySelectorAll(".feature-table td.neuronpedia a")].map((a) => a.href),
        tabs: [...root.querySelectorAll(".tabs .tab")].filter((b) => !b.hidden).map((b) => b.dataset.view),
        sae: root.querySelector('select[data-control="hook"]')?.value,
      };
    });
    assert.equal(info.state, "report", info.error);
    assert.equal(info.hook, "blocks.1.hook_resid_pre");
    assert.equal(info.sae, "blocks.1.hook_resid_pre");
    assert.ok(info.rows > 0);
    assert.equal(info.links.length, info.rows);
    assert.ok(info.links.every((h) => h.startsWith(`https://www.neuronpedia.org/${NEURONPEDIA}/`)));
    assert.deepEqual(info.tabs, ["features"], "only the views the report has data for");
    assert.ok(!requests.some((u) => /\.wasm|model\.safetensors|sae_weights/.test(u)), "results only: no wasm, no weights");
    // the other SAE, which has no Neuronpedia id: no links
    await embed.evaluate(() => {
      const s = document.querySelector("patch-lab").shadowRoot.querySelector('select[data-control="hook"]');
      s.value = "blocks.0.hook_mlp_out";
      s.dispatchEvent(new Event("change"));
    });
    const other = await embed.evaluate(() => {
      const root = document.querySelector("patch-lab").shadowRoot;
      return { hook: root.querySelector(".feature-table")?.dataset.hook, links: root.querySelectorAll(".feature-table td.neuronpedia a").length, dash: root.querySelector(".feature-table td.neuronpedia")?.textContent };
    });
    assert.deepEqual(other, { hook: "blocks.0.hook_mlp_out", links: 0, dash: "—" });
  });
});

/**
 * A stand-in for the Hugging Face Hub on a browser context:
 * /<repo>/resolve/main/<path> answers with the file (CORS as the Hub sends),
 * 404 for a missing one; `offline` aborts every request. `log`: the paths
 * asked for.
 */
async function fakeHub(context, files) {
  const hub = { log: [], offline: false };
  await context.route("https://huggingface.co/**", (route) => {
    const url = new URL(route.request().url());
    const m = /^\/([^/]+\/[^/]+)\/resolve\/main\/(.+)$/.exec(url.pathname);
    const key = m ? `${m[1]}/${decodeURIComponent(m[2])}` : url.pathname;
    hub.log.push(key);
    if (hub.offline) return route.abort("internetdisconnected");
    const cors = { "access-control-allow-origin": "*", "access-control-expose-headers": "Content-Length, Content-Range, Accept-Ranges, ETag" };
    const body = files.get(key);
    if (!body) return route.fulfill({ status: 404, headers: { ...cors, "x-error-code": "EntryNotFound" }, body: "Entry not found" });
    return route.fulfill({ status: 200, headers: { ...cors, "content-type": key.endsWith(".json") ? "application/json" : "application/octet-stream", "content-length": String(body.length) }, body });
  });
  return hub;
}

describe("<patch-lab view=\"features\"> live", () => {
  test("loads the SAE its sae attribute names (a folder URL) and scores only the features", async (t) => {
    const page = await trackedPage(t, browser, { scale: 1 });
    await page.goto(`${server.url}embed-demo.html?${new URLSearchParams({ ...IOI, model: "/model/", view: "features", sae: "/model/sae-np/legacy_standard_resid_pre_1/", methods: "ap,ig" })}`);
    await page.waitForFunction(() => ["done", "error"].includes(document.querySelector("patch-lab")?.dataset.state));
    const info = await page.evaluate(() => {
      const root = document.querySelector("patch-lab").shadowRoot;
      return {
        state: document.querySelector("patch-lab").dataset.state,
        error: root.querySelector(".error")?.textContent,
        rows: root.querySelectorAll(".feature-table tbody tr").length,
        link: root.querySelector(".feature-table td.neuronpedia a")?.getAttribute("href"),
        tabs: [...root.querySelectorAll(".tabs .tab")].filter((b) => !b.hidden).map((b) => b.dataset.view),
      };
    });
    assert.equal(info.state, "done", info.error);
    assert.ok(info.rows > 0);
    assert.match(info.link, /^https:\/\/www\.neuronpedia\.org\/gpt2-small\/1-res-jb\/\d+$/);
    assert.deepEqual(info.tabs, ["features"], "features only: no heads or neurons were computed");
  });
});

describe("SAEs from the Hugging Face Hub", () => {
  test("a SAELens release through a stand-in for the Hub: byte progress, config_overrides, Cache Storage, a share link that reloads it, refusals before the weights", async (t) => {
    const jb = "jbloom/GPT2-Small-SAEs-Reformatted/blocks.1.hook_resid_pre";
    const fx = (f) => fs.readFileSync(path.join(FIXTURES, PAGE_SAE, f));
    // an SAE that layer-normalises its input (as OpenAI's v5 SAEs do), in a repo the release list does not know
    const ln = JSON.parse(fs.readFileSync(path.join(FIXTURES, "standard_resid_post_1", "cfg.json"), "utf8"));
    const files = new Map([
      [`${jb}/cfg.json`, fx("cfg.json")],
      [`${jb}/sae_weights.safetensors`, fx("sae_weights.safetensors")],
      [`${jb}/sparsity.safetensors`, fx("sparsity.safetensors")],
      ["some-org/ln-saes/layer_1/cfg.json", Buffer.from(JSON.stringify({ ...ln, normalize_activations: "layer_norm" }))],
      ["some-org/ln-saes/layer_1/sae_weights.safetensors", fs.readFileSync(path.join(FIXTURES, "standard_resid_post_1", "sae_weights.safetensors"))],
      // 20 million features: 10 GB of weights, more than a tab's 4 GiB
      ["some-org/huge-saes/x/cfg.json", Buffer.from(JSON.stringify({ ...JSON.parse(fx("cfg.json")), d_sae: 20_000_000 }))],
      ["some-org/huge-saes/x/sae_weights.safetensors", fx("sae_weights.safetensors")],
    ]);
    const context = await newContext(browser, { viewport: { width: 1280, height: 900 } });
    const errors = [];
    t.after(async () => {
      await context.close();
      assert.deepEqual(errors, [], "uncaught errors in the page");
    });
    const hub = await fakeHub(context, files);
    await context.addInitScript(() => {
      window.__saeLog = [];
      document.addEventListener("DOMContentLoaded", () => {
        const text = document.getElementById("sae-text");
        if (text) new MutationObserver(() => window.__saeLog.push(text.textContent)).observe(text, { childList: true, characterData: true, subtree: true });
      });
    });
    const page = await context.newPage();
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${server.url}?${new URLSearchParams({ ...IOI, components: "heads", methods: "ap,ig", run: "0" })}`);
    assert.equal((await waitReady(page)).state, "ready");
    await page.selectOption("#sae-release", "gpt2-small-res-jb");
    await page.selectOption("#sae-id", "blocks.1.hook_resid_pre");
    const before = await saeCounts(page);
    await page.click("#sae-load");
    assert.equal(await saeLoaded(page, before), "");
    assert.deepEqual(hub.log, [`${jb}/cfg.json`, `${jb}/sae_weights.safetensors`], "cfg.json, then the weights; nothing else");
    const size = fx("sae_weights.safetensors").length;
    const log = await page.evaluate(() => window.__saeLog);
    assert.ok(log.some((s) => /^Downloading sae_weights\.safetensors: .* of /.test(s)), log.join(" | "));
    assert.match(log.at(-1), /^Loaded gpt2-small-res-jb\/blocks\.1\.hook_resid_pre: blocks\.1\.hook_resid_pre, standard, d_sae 96\.$/);
    // the release's config_overrides and Neuronpedia id reached the engine
    const item = await page.textContent('#sae-list li[data-hook="blocks.1.hook_resid_pre"]');
    assert.match(item, /gpt2-small-res-jb\/blocks\.1\.hook_resid_pre/);
    assert.match(item, /Neuronpedia gpt2-small\/1-res-jb/);
    const cached = await page.evaluate(async () => {
      const c = await caches.open("patchlab-models-v1");
      const out = {};
      for (const r of await c.keys()) out[r.url] = (await (await c.match(r)).arrayBuffer()).byteLength;
      return out;
    });
    const base = "https://huggingface.co/jbloom/GPT2-Small-SAEs-Reformatted/resolve/main/blocks.1.hook_resid_pre/";
    assert.equal(cached[`${base}sae_weights.safetensors`], size);
    assert.ok(cached[`${base}cfg.json`] > 0);
    // the share link names the SAE; offline, it loads it again from Cache Storage and scores its features
    await page.waitForFunction(() => /[?&]sae=gpt2-small-res-jb%2Fblocks\.1\.hook_resid_pre/.test(location.search) && /[?&]features=1/.test(location.search));
    const link = new URL(page.url());
    link.searchParams.delete("run");
    hub.offline = true;
    const from = hub.log.length;
    const again = await context.newPage();
    again.on("pageerror", (e) => errors.push(e.message));
    await again.goto(link.href);
    await again.waitForFunction(() => Number(document.body.dataset.runs || 0) >= 1 || !document.getElementById("run-error").hidden || !document.getElementById("sae-error").hidden);
    assert.equal(await again.isHidden("#sae-error"), true, await again.textContent("#sae-error"));
    assert.equal(await again.isHidden("#run-error"), true, await again.textContent("#run-error"));
    assert.deepEqual(hub.log.slice(from), [], "everything came from Cache Storage");
    const r = await again.evaluate(() => window.patchlabPage.report);
    assert.deepEqual(r.settings.saes.map((s) => [s.name, s.hook_name, s.neuronpedia_id]), [["gpt2-small-res-jb/blocks.1.hook_resid_pre", "blocks.1.hook_resid_pre", "gpt2-small/1-res-jb"]]);
    hub.offline = false;

    // through the API: a release the lab cannot encode is refused before any request, a cfg.json the engine refuses before the weights
    const api = await page.evaluate(async () => {
      const { PatchLab } = await import("/patchlab.js");
      const lab = await PatchLab.load({ model: "/model/" });
      const refusal = (p) => p.then(() => "loaded", (e) => `${e.name}: ${e.message}`);
      const out = {
        v5: await refusal(lab.loadSaeFromHub("gpt2-small-attn-out-v5-32k", "blocks.0.hook_attn_out")),
        ln: await refusal(lab.loadSaeFromHub("some-org/ln-saes", "layer_1")),
        missing: await refusal(lab.loadSaeFromHub("gpt2-small-res-jb", "blocks.99.hook_resid_pre")),
        huge: await refusal(lab.loadSaeFromHub("some-org/huge-saes", "x")),
        saes: await lab.saes(),
      };
      lab.close();
      return out;
    });
    assert.match(api.v5, /^LoadError: gpt2-small-attn-out-v5-32k cannot be loaded here: .*"layer_norm"/);
    assert.match(api.ln, /^LoadError: SAE some-org\/ln-saes\/layer_1: its normalize_activations is "layer_norm"/);
    assert.match(api.missing, /has no SAE "blocks\.99\.hook_resid_pre"/);
    assert.match(api.huge, /^LoadError: SAE some-org\/huge-saes\/x \(10320 MB of weights as f32\) does not fit: \d+ MB are left in this tab/);
    assert.ok(!hub.log.includes("some-org/huge-saes/x/sae_weights.safetensors"), "the SAE too large for the tab never downloaded");
    assert.deepEqual(api.saes, []);
    assert.ok(!hub.log.some((k) => k.includes("attn-out")), "nothing was asked for the v5 release");
    assert.ok(hub.log.includes("some-org/ln-saes/layer_1/cfg.json"));
    assert.ok(!hub.log.includes("some-org/ln-saes/layer_1/sae_weights.safetensors"), "the refused SAE's weights never downloaded");
  });
});
