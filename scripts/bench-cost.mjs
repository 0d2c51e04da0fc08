// What the page says before Run against what then happens, on a random
// GPT-2-small-shaped model in headless Chromium (scripts/bench-cost builds
// what it needs, then runs this). Prints, in one run:
//
//  - the engine the page picks and why (a software WebGPU adapter is not a
//    GPU: the page computes in WebAssembly unless the link asks for it);
//  - the engine's calibrated rate, and for the IOI pair the estimate of the
//    default run (heads and neurons) and of heads alone, phase by phase,
//    beside the measured time of the heads-alone run (its report's
//    timings_ms) and their ratio;
//  - Cancel: the time from abort() to the analysis's rejection, pressed a
//    few seconds into AP and into IG (the phases whose engine calls are
//    held to 0.3 s of work once calibrated).
//
//   node scripts/bench-cost.mjs [--model DIR] [--threads] [--cancel-after-ms MS]
//
// --threads serves the page cross-origin isolated (www/pkg-threads, a pool
// of navigator.hardwareConcurrency workers); by default it is not (www/pkg,
// one thread, as on most blogs). A benchmark, not a test: CI never runs it.

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
const CANCEL_AFTER_MS = Number(arg("cancel-after-ms", "3000"));
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

/** In the page: load, calibrate "auto", the estimates, one measured run of heads, and Cancel in AP and in IG. */
async function inPage({ req, cancelAfterMs }) {
  const { PatchLab } = await import("/patchlab.js");
  const lab = await PatchLab.load({ model: "/model/", cache: false });
  const rate = await lab.calibrate({ backend: "auto" });
  const full = await lab.estimate({ ...req });
  const heads = await lab.estimate({ ...req, components: ["heads"] });
  const t0 = performance.now();
  const etas = [];
  const report = await lab.analyze({
    ...req,
    components: ["heads"],
    estimateMs: heads.seconds * 1000,
    onProgress: (p) => etas.push([p.elapsedMs, p.etaMs, p.fraction]),
  });
  const wallMs = performance.now() - t0;
  // Cancel `cancelAfterMs` into a phase: abort() and time the rejection
  const cancelIn = async (methods) => {
    const ctrl = new AbortController();
    let pressed = 0;
    let stage = "";
    const run = lab.analyze({
      ...req,
      methods,
      components: ["neurons"],
      signal: ctrl.signal,
      onProgress: (p) => {
        if (!pressed && p.elapsedMs > cancelAfterMs) {
          stage = p.stage;
          pressed = performance.now();
          ctrl.abort();
        }
      },
    });
    try {
      await run;
      return { stage, ms: null };
    } catch (e) {
      return { stage, ms: performance.now() - pressed, name: e.name };
    }
  };
  const cancelAp = await cancelIn(["ap"]);
  const cancelIg = await cancelIn(["ig"]);
  lab.close();
  return { env: lab.env, rate, full, heads, timings: report.timings_ms, wallMs, etas, cancelAp, cancelIg };
}

const server = await serve({ modelDir: MODEL, isolate: has("threads") });
const browser = await launch({ webgpu: true });
try {
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  await page.goto(`${server.url}embed-demo.html?report=/model/none.json`); // a page that loads no model itself
  const r = await page.evaluate(inPage, { req: { ...IOI }, cancelAfterMs: CANCEL_AFTER_MS });
  await ctx.close();

  const s = (sec) => `${sec.toFixed(1)} s`;
  const env = r.env;
  console.log(`patchlab bench-cost — random GPT-2-small-shaped model, the IOI pair (${r.heads.pairs[0][0]} tokens, first difference at ${r.heads.pairs[0][1]}), Chromium ${browser.version()} headless`);
  console.log(`engine: ${env.webgpu ? `WebGPU (${env.adapter})` : "WebAssembly"}${env.software && !env.webgpu ? ` — WebGPU's adapter here (${env.adapter}) is a software renderer, not a GPU, so "auto" computes in WebAssembly` : ""}; wasm${env.simd ? " SIMD" : ""}, ${env.threads} thread${env.threads > 1 ? "s" : ""}`);
  console.log(`calibration on ${r.rate.backend}: ${(r.rate.flops / 1e9).toFixed(2)} GFLOP in ${r.rate.ms.toFixed(0)} ms = ${(r.rate.flops_per_s / 1e9).toFixed(2)} GFLOP/s\n`);
  console.log(`estimate of the default run (all methods, both directions, heads and neurons): ${s(r.full.seconds)} (${(r.full.flops / 1e12).toFixed(2)} TFLOP)`);
  const phase = (est, method) => est.phases.filter((p) => p.method === method).reduce((n, p) => n + p.flops, 0) / est.flops_per_s;
  console.log(`${"heads only".padEnd(12)} ${"estimate".padStart(10)} ${"measured".padStart(10)} ${"measured/estimate".padStart(18)}`);
  for (const [label, method, key] of [["forwards", "forward", "forward"], ["AtP", "atp", "atp_heads"], ["IG", "ig", "ig_heads"], ["AP", "ap", "ap_heads"]]) {
    const est = phase(r.heads, method);
    // the report's forward time is per prompt; the estimate counts both
    const got = (key === "forward" ? 2 : 1) * (r.timings[key] ?? NaN) / 1e3;
    console.log(`${label.padEnd(12)} ${s(est).padStart(10)} ${s(got).padStart(10)} ${(got / est).toFixed(2).padStart(17)}×`);
  }
  const got = r.timings.total / 1e3;
  console.log(`${"total".padEnd(12)} ${s(r.heads.seconds).padStart(10)} ${s(got).padStart(10)} ${(got / r.heads.seconds).toFixed(2).padStart(17)}×`);
  // the ETA the page showed, at a tenth, a quarter, half and three quarters of the run
  const at = (f) => r.etas.find((e) => e[2] >= f);
  const etaLine = [0.1, 0.25, 0.5, 0.75].map((f) => {
    const e = at(f);
    return e ? `${Math.round(f * 100)} %: ETA ${s(e[1] / 1e3)} (${s(r.wallMs / 1e3 - e[0] / 1e3)} left in fact)` : "";
  });
  console.log(`\nETA during the heads run — ${etaLine.filter(Boolean).join("; ")}`);
  for (const [label, c] of [["AP", r.cancelAp], ["IG", r.cancelIg]]) {
    console.log(`Cancel ${(CANCEL_AFTER_MS / 1e3).toFixed(0)} s into ${label} of neurons (at "${c.stage}"): ${c.ms === null ? "finished before the press" : `rejected with ${c.name} after ${c.ms.toFixed(0)} ms`}`);
  }
} finally {
  await browser.close();
  server.close();
}
