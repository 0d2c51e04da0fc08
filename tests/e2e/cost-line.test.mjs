// The words next to Run (www/cost.js) for estimates the tiny test model
// cannot produce: a run of minutes that is mostly neurons, a pair too long
// for WebAssembly's memory, an engine not yet measured. No browser needed.

import assert from "node:assert/strict";
import { test } from "node:test";
import { costLine, roughly } from "../../www/cost.js";

const phases = (heads, neurons) => [
  { method: "forward", flops: 1e9 },
  { method: "ap", component: "heads", direction: "clean_to_corrupt", flops: heads },
  { method: "ap", component: "neurons", direction: "clean_to_corrupt", flops: neurons },
];
const estimate = (heads, neurons, rate, extra = {}) => {
  const flops = 1e9 + heads + neurons;
  return { backend: "cpu", pairs: [[15, 10]], phases: phases(heads, neurons), flops, run_bytes: 1e6, memory_bytes: 5e8, memory_limit: 3.5 * 2 ** 30, flops_per_s: rate, seconds: rate ? flops / rate : undefined, ...extra };
};

test("durations read roughly, as an estimate should", () => {
  assert.equal(roughly(400), "under a second");
  assert.equal(roughly(7400), "about 7 s");
  assert.equal(roughly(43000), "about 45 s");
  assert.equal(roughly(20 * 60000 + 20000), "about 20 min");
  assert.equal(roughly(2.5 * 3600000), "about 2.5 h");
});

test("a long run that is mostly neurons says so and offers the heads alone first", () => {
  // 1 GFLOP/s: 60 GFLOP of heads, 1.2 TFLOP of neurons
  const line = costLine(estimate(60e9, 1200e9, 1e9));
  assert.equal(line.text, "Estimate: about 21 min on this CPU (WebAssembly); the neurons take about 20 min of it, the heads alone about 60 s.");
  assert.equal(line.headsFirst, true);
  assert.equal(line.tooLong, false);
});

test("a short run offers nothing more", () => {
  const line = costLine(estimate(2e9, 6e9, 1e9));
  assert.equal(line.text, "Estimate: about 9 s on this CPU (WebAssembly); the neurons take about 6 s of it.");
  assert.equal(line.headsFirst, false);
});

test("before the engine is measured the estimate is in FLOPs", () => {
  const line = costLine(estimate(2e9, 6e9, undefined));
  assert.equal(line.text, "About 9.0 GFLOP of work; measuring this device's speed…");
});

test("on a GPU the line says so", () => {
  const line = costLine({ ...estimate(2e9, 0, 1e11), backend: "gpu" });
  assert.equal(line.text, "Estimate: under a second on this GPU (WebGPU).");
});

test("a pair whose runs cannot fit WebAssembly's memory says so, and what to do", () => {
  const line = costLine(estimate(2e9, 6e9, 1e9, { memory_bytes: 4.2e9 }));
  assert.equal(line.tooLong, true);
  assert.match(line.text, /^Too long for this tab: .* 4\.2 GB, more than the 3\.8 GB WebAssembly can hold\. Shorten the prompts, or run the native CLI \(patchlab analyze\)\.$/);
  const big = costLine(estimate(2e9, 6e9, 1e9, { memory_bytes: 2.5e9 }));
  assert.match(big.text, /It needs 2\.5 GB of memory\.$/);
});
