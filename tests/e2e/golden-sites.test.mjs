// The browser against TransformerLens: the page's engine (wasm on the CPU,
// and WebGPU) computes every patching site and DLA for the cases of
// tests/golden/sites_model_a.json on the model that golden was made from,
// and must give TransformerLens 2.18's numbers (AP: get_act_patch_*; AtP:
// torch autograd; IG: captum's LayerIntegratedGradients; DLA: logit_attrs)
// with the tolerances tests/golden_sites.rs uses natively.
// Run with scripts/test-e2e, or `node --test tests/e2e/golden-sites.test.mjs`
// once www/pkg, target/debug/patchlab and Chromium exist.

import assert from "node:assert/strict";
import crypto from "node:crypto";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { BIN, ROOT, launch, serve, trackedPage } from "./helpers.mjs";

const GOLDEN = JSON.parse(fs.readFileSync(path.join(ROOT, "tests/golden/sites_model_a.json"), "utf8"));
const SITES = ["resid_pre", "resid_mid", "attn_out", "mlp_out", "z", "z_by_pos", "q", "k", "v", "q_by_pos", "k_by_pos", "v_by_pos", "pattern", "pattern_by_dest", "pattern_dest_src"];
const DIRECTIONS = ["clean_to_corrupt", "corrupt_to_clean"];

let modelDir, server, browser;

before(async () => {
  if (!fs.existsSync(path.join(ROOT, "www/pkg/patchlab_bg.wasm"))) throw new Error("www/pkg is missing: run scripts/build-wasm");
  // the golden's model: 2 layers, 4 heads, d_model 64, seed 1, n_ctx 1024
  modelDir = fs.mkdtempSync(path.join(os.tmpdir(), "patchlab-e2e-golden-"));
  const m = GOLDEN.model;
  execFileSync(BIN, ["random-model", "--layers", String(m.n_layers), "--heads", String(m.n_heads), "--d-model", String(m.d_model), "--seed", String(m.seed), "--out", modelDir], {
    cwd: ROOT,
    stdio: ["ignore", "ignore", "inherit"],
  });
  const sha = crypto.createHash("sha256").update(fs.readFileSync(path.join(modelDir, "model.safetensors"))).digest("hex");
  assert.equal(sha, m.model_safetensors_sha256, "random-model no longer writes the model the golden was made from");
  server = await serve({ modelDir });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  server?.close();
  if (modelDir) fs.rmSync(modelDir, { recursive: true, force: true });
});

/** Every number of a nested array, in order (null as NaN). */
const flat = (v) => (Array.isArray(v) ? v.flatMap(flat) : [v === null ? NaN : v]);

/** The reports of the golden's cases `which` from the page's engine on `backend`. */
async function pageReports(t, backend, which) {
  const page = await trackedPage(t, browser, { scale: 1 });
  // a page that loads no model of its own (the embed demo, pointed at no report)
  await page.goto(`${server.url}embed-demo.html?report=/model/none.json`);
  const requests = which.map((i) => GOLDEN.cases[i]).map((c) => ({
    clean: c.clean,
    corrupt: c.corrupt,
    correct: c.correct,
    incorrect: c.incorrect,
    bos: c.bos,
    sites: [...SITES, "dla"],
    igSteps: GOLDEN.ig_steps,
    backend,
  }));
  return page.evaluate(async (reqs) => {
    const { PatchLab } = await import("/patchlab.js");
    const lab = await PatchLab.load({ model: "/model/" });
    const out = [];
    for (const r of reqs) out.push(await lab.analyze(r));
    return out;
  }, requests);
}

/** A report against its golden case, as tests/golden_sites.rs checks it. */
function check(r, c, what) {
  assert.deepEqual(r.tokens.clean.map((t) => t.id), c.clean_tokens, `${what}: tokens`);
  assert.equal(r.tokens.first_diff, c.first_diff, `${what}: first difference`);
  const [mc, mk] = [r.metric.clean, r.metric.corrupt];
  for (const d of DIRECTIONS) {
    const [mb, mo] = d === "clean_to_corrupt" ? [mc, mk] : [mk, mc];
    const gap = mb - mo;
    const scale = 1 + Math.max(Math.abs(mb), Math.abs(mo));
    for (const site of SITES) {
      const at = `${what} ${d} ${site}`;
      const ap = flat(r.results.ap[d][site]);
      const want = c.ap[d][site];
      assert.equal(ap.length, want.values.length, `${at}: cells`);
      ap.forEach((a, i) => assert.ok(Math.abs(mb + a * gap - want.values[i]) <= 1e-4 * scale, `${at} AP[${i}]: page ${mb + a * gap}, TransformerLens ${want.values[i]}`));
      flat(r.results.atp[d][site]).forEach((a, i) => {
        const g = c.atp[d][site].values[i];
        assert.ok(Math.abs(a * gap - g) <= 1e-4 * scale, `${at} AtP[${i}]: page ${a * gap}, torch ${g}`);
      });
      const gig = c.ig[d][site].values;
      const igScale = Math.max(1e-3, ...gig.map(Math.abs));
      flat(r.results.ig[d][site]).forEach((a, i) => assert.ok(Math.abs(a - gig[i]) <= 1e-4 * igScale, `${at} IG[${i}]: page ${a}, captum ${gig[i]}`));
    }
  }
  assert.deepEqual(r.dla.labels, c.dla.clean.layers.labels, `${what}: DLA labels`);
  for (const run of ["clean", "corrupt"]) {
    for (const part of ["heads", "layers"]) {
      const want = c.dla[run][part].values;
      const s = Math.max(1e-3, ...want.map(Math.abs));
      flat(r.dla[run][part]).forEach((a, i) => assert.ok(Math.abs(a - want[i]) <= 1e-4 * s, `${what} DLA ${run} ${part}[${i}]: page ${a}, TransformerLens ${want[i]}`));
    }
  }
}

// every case on the CPU; on WebGPU (SwiftShader in CI: slow) the three
// short ones (no BOS; the first difference at 0, at the last token, at 1)
const ALL = GOLDEN.cases.map((_, i) => i);
const RUNS = [
  ["cpu", "CPU (wasm)", ALL],
  ["gpu", "WebGPU", ALL.filter((i) => !GOLDEN.cases[i].bos)],
];

describe("the browser's patching sites and DLA equal TransformerLens", () => {
  for (const [backend, name, which] of RUNS) {
    test(`every site, method and direction of cases ${which.join(", ")} on the ${name} engine`, async (t) => {
      assert.ok(which.length >= 3);
      const reports = await pageReports(t, backend, which);
      assert.equal(reports.length, which.length);
      reports.forEach((r, k) => {
        assert.equal(r.backend, backend, "the engine asked for ran");
        check(r, GOLDEN.cases[which[k]], `case ${which[k]} (${backend})`);
      });
    });
  }
});
