// The browser's CPU path against the native CLI, in one run (scripts/bench-browser
// builds what it needs, then runs this). Same model (a random GPT-2-small-shaped
// one), pair (the 15-token IOI pair) and settings (AP and IG, 50 steps, on heads,
// both directions) on both sides; prints the analysis report's own timings
// (timings_ms) of each side and their ratio, and the page's model load time.
//
//   node scripts/bench-browser.mjs [--model DIR] [--bin target/release/patchlab] [--reps R]
//
// The page's worker computes on one thread (no thread pool yet), so native
// runs are pinned with taskset to one core and the ratio compares equal
// hardware. A figure is the best of --reps runs (default 1).

import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const BIN = path.resolve(ROOT, arg("bin", "target/release/patchlab"));
// the e2e helpers serve with the binary PATCHLAB_BIN names
process.env.PATCHLAB_BIN = BIN;
const { launch, newContext, serve } = await import("../tests/e2e/helpers.mjs");
const MODEL = path.resolve(arg("model", path.join(os.tmpdir(), "patchlab-bench-gpt2-small-random")));
const REPS = Math.max(1, Number(arg("reps", "1")));
const IOI = {
  clean: "When Mary and John went to the store, John gave a drink to",
  corrupt: "When Mary and John went to the store, Mary gave a drink to",
  correct: " Mary",
  incorrect: " John",
};
const SETTINGS = { methods: ["ap", "ig"], components: ["heads"], directions: ["clean_to_corrupt", "corrupt_to_clean"], igSteps: 50 };
const KEYS = [
  ["AP heads", "ap_heads"],
  ["IG heads", "ig_heads"],
  ["total", "total"],
];

if (!fs.existsSync(path.join(MODEL, "model.safetensors"))) {
  console.error(`writing a random GPT-2-small-shaped model to ${MODEL} …`);
  execFileSync(BIN, ["random-model", "--layers", "12", "--heads", "12", "--d-model", "768", "--n-ctx", "1024", "--seed", "0", "--out", MODEL], { stdio: ["ignore", "ignore", "inherit"] });
}
const modelBytes = fs.statSync(path.join(MODEL, "model.safetensors")).size;

function native() {
  const args = ["analyze", "--model", MODEL, ...["clean", "corrupt", "correct", "incorrect"].flatMap((k) => [`--${k}`, IOI[k]])];
  args.push("--methods", SETTINGS.methods.join(","), "--components", SETTINGS.components.join(","));
  args.push("--directions", SETTINGS.directions.join(","), "--ig-steps", String(SETTINGS.igSteps), "--backend", "cpu", "--out", "-", "-q");
  const out = execFileSync("taskset", ["-c", "0", BIN, ...args], { cwd: ROOT, maxBuffer: 1 << 28, stdio: ["ignore", "pipe", "ignore"] });
  return JSON.parse(out).timings_ms;
}

async function inBrowser(browser, url) {
  const ctx = await newContext(browser);
  try {
    const page = await ctx.newPage();
    await page.goto(`${url}embed-demo.html?report=/model/none.json`); // a page that loads no model itself
    return await page.evaluate(
      async (req) => {
        const { PatchLab } = await import("/patchlab.js");
        const t0 = performance.now();
        const lab = await PatchLab.load({ model: "/model/", cache: false });
        const loadMs = performance.now() - t0;
        const report = await lab.analyze({ ...req, backend: "cpu" });
        lab.close();
        return { loadMs, env: lab.env, timings: report.timings_ms };
      },
      { ...IOI, ...SETTINGS },
    );
  } finally {
    await ctx.close();
  }
}

const best = (runs) => Object.fromEntries(Object.keys(runs[0]).map((k) => [k, Math.min(...runs.map((r) => r[k] ?? Infinity))]));
const s = (ms) => (ms / 1e3).toFixed(1).padStart(8);

const server = await serve({ modelDir: MODEL });
const browser = await launch({ webgpu: false });
try {
  const nat = [];
  const page = [];
  const loads = [];
  let env = null;
  for (let r = 0; r < REPS; r++) {
    nat.push(native());
    const b = await inBrowser(browser, server.url);
    page.push(b.timings);
    loads.push(b.loadMs);
    env = b.env;
  }
  const [n, p, load] = [best(nat), best(page), Math.min(...loads)];
  console.log(`patchlab bench-browser — random GPT-2-small-shaped model (${(modelBytes / 1e6).toFixed(0)} MB), the IOI pair, AP + IG (${SETTINGS.igSteps} steps) on heads, both directions; best of ${REPS}`);
  console.log(`Chromium ${browser.version()} headless, backend "cpu" (wasm${env.simd ? " SIMD" : ""}, ${env.threads} thread${env.threads > 1 ? "s" : ""}); native: ${path.relative(ROOT, BIN)} --backend cpu pinned to one core\n`);
  console.log(`${"".padEnd(10)} ${"native s".padStart(8)} ${"page s".padStart(8)} ${"page/native".padStart(12)}`);
  for (const [label, k] of KEYS) {
    console.log(`${label.padEnd(10)} ${s(n[k])} ${s(p[k])} ${(p[k] / n[k]).toFixed(2).padStart(11)}×`);
  }
  console.log(`model load in the page (local server, no cache): ${(load / 1e3).toFixed(1)} s for ${(modelBytes / 1e6).toFixed(0)} MB (${(modelBytes / 1e6 / (load / 1e3)).toFixed(0)} MB/s)`);
} finally {
  await browser.close();
  server.close();
}
