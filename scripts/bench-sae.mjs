// SAE features in the page: every feature of a random
// gpt2-small-res-jb-shaped SAE (24,576 features on blocks.8.hook_resid_pre,
// `patchlab random-sae`) scored on the IOI pair — AP over all positions and
// by position, AtP and IG (50 steps), both directions — in headless
// Chromium's worker, on a random GPT-2-small-shaped model, beside the same
// run natively (`patchlab bench --sae`) when --native is given. Prints the
// engine, the SAE's load time, the active features, the tails and the time.
//
//   node scripts/bench-sae.mjs [--model DIR] [--l0 N] [--threads] [--native]
//
// A benchmark, not a test: CI never runs it.

import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const has = (name) => process.argv.includes(`--${name}`);
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const { launch, newContext, serve, BIN } = await import("../tests/e2e/helpers.mjs");
const MODEL = path.resolve(arg("model", path.join(os.tmpdir(), "patchlab-bench-gpt2-small-random")));
const L0 = arg("l0", "100");
const SAE = `sae-random-l0-${L0}`;
const IOI = {
  clean: "When Mary and John went to the store, John gave a drink to",
  corrupt: "When Mary and John went to the store, Mary gave a drink to",
  correct: " Mary",
  incorrect: " John",
};

if (!fs.existsSync(path.join(MODEL, "model.safetensors"))) {
  console.error(`writing a random GPT-2-small-shaped model to ${MODEL} …`);
  execFileSync(BIN, ["random-model", "--layers", "12", "--heads", "12", "--d-model", "768", "--n-ctx", "1024", "--seed", "0", "--out", MODEL], { stdio: ["ignore", "ignore", "inherit"] });
}
// the SAE inside the served model folder, at /model/<SAE>/
if (!fs.existsSync(path.join(MODEL, SAE, "sae_weights.safetensors"))) {
  execFileSync(BIN, ["random-sae", "--model", MODEL, "--hook", "blocks.8.hook_resid_pre", "--d-sae", "24576", "--l0", L0, "--out", path.join(MODEL, SAE)], { stdio: ["ignore", "inherit", "inherit"] });
}

/** In the page: load the model and the SAE, then score the features. */
async function inPage({ req, sae }) {
  const { PatchLab } = await import("/patchlab.js");
  const lab = await PatchLab.load({ model: "/model/", cache: false });
  let t0 = performance.now();
  const info = await lab.loadSaeFromUrl(`/model/${sae}/`, { cache: false });
  const loadMs = performance.now() - t0;
  const estimate = await lab.estimate({ ...req, components: [], saes: ["all"] });
  t0 = performance.now();
  const report = await lab.analyze({ ...req, components: [], saes: ["all"] });
  const wallMs = performance.now() - t0;
  lab.close();
  const hook = info.hook_name;
  const runs = report.features[hook];
  const a = report.analysis.features[hook];
  return { env: lab.env, info, loadMs, wallMs, timings: report.timings_ms, tokens: report.tokens.clean.length, firstDiff: report.tokens.first_diff, active: [runs.clean.values.length, runs.corrupt.values.length], analysed: a.features.length, r: a.correlations["ig_norm_clean_to_corrupt__vs__ap_clean_to_corrupt"], estimateFlops: estimate.flops };
}

const server = await serve({ modelDir: MODEL, isolate: has("threads") });
const browser = await launch({ webgpu: true });
try {
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  await page.goto(`${server.url}embed-demo.html?report=/model/none.json`); // a page that loads no model itself
  const r = await page.evaluate(inPage, { req: { ...IOI }, sae: SAE });
  await ctx.close();
  const env = r.env;
  console.log(`patchlab bench-sae — random GPT-2-small-shaped model, the IOI pair (${r.tokens} tokens, first difference at ${r.firstDiff}), Chromium ${browser.version()} headless`);
  console.log(`engine: ${env.webgpu ? `WebGPU (${env.adapter})` : "WebAssembly"}; wasm${env.simd ? " SIMD" : ""}, ${env.threads} thread${env.threads > 1 ? "s" : ""}`);
  console.log(`SAE ${r.info.name}: ${r.info.architecture}, ${r.info.d_sae} features on ${r.info.hook_name}, loaded in ${(r.loadMs / 1e3).toFixed(1)} s (${(4 * 2 * r.info.d_in * r.info.d_sae / 1e6).toFixed(0)} MB)`);
  console.log(`active (position, feature) cells: ${r.active[0]} clean, ${r.active[1]} corrupt (${(r.active[0] / r.tokens).toFixed(1)} and ${(r.active[1] / r.tokens).toFixed(1)} per token); ${r.analysed} features differ`);
  console.log(`AP + AtP + IG (50 steps), all positions and by position, both directions: ${(r.wallMs / 1e3).toFixed(2)} s in the page (report: features ${(r.timings.features / 1e3).toFixed(2)} s, total ${(r.timings.total / 1e3).toFixed(2)} s); r(IG*, AP) ${r.r?.toFixed(3)}`);
  if (has("native")) {
    const out = execFileSync(BIN, ["bench", "--model", MODEL, "--sae", path.join(MODEL, SAE)], { encoding: "utf8" });
    console.log(`\nnatively (${path.basename(BIN)} bench --sae, the same machine):\n${out.trim()}`);
  }
} finally {
  await browser.close();
  server.close();
}
