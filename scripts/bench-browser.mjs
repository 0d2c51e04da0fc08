// The browser's CPU path against the native CLI, in one run (scripts/bench-browser
// builds what it needs, then runs this). Same model (a random GPT-2-small-shaped
// one), pair (the 15-token IOI pair) and settings (AP and IG, 50 steps, on heads,
// both directions) on both sides; prints the analysis report's own timings
// (timings_ms) of each side and their ratio, the page's model load time, and the
// plain matmul kernel's GFLOP/s on both sides (what the analysis ratio tracks).
//
//   node scripts/bench-browser.mjs [--model DIR] [--bin target/release/patchlab] [--reps R]
//
// Both of the page's builds: single-threaded (a page that is not
// cross-origin isolated) and threaded (an isolated one, a pool of
// navigator.hardwareConcurrency workers). Native runs are pinned with taskset
// to as many cores as the page computes on, so each ratio compares equal
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
// Read the model once, so that no side's first run pays for the disk.
for await (const chunk of fs.createReadStream(path.join(MODEL, "model.safetensors"), { highWaterMark: 1 << 24 })) void chunk;

// The CLI pinned to `cores` cores (taskset): candle's matmul and our
// element-wise kernels take their thread count from the affinity mask.
const pinned = (cores, args, options) => execFileSync("taskset", ["-c", `0-${cores - 1}`, BIN, ...args], { cwd: ROOT, ...options });

function native(cores) {
  const args = ["analyze", "--model", MODEL, ...["clean", "corrupt", "correct", "incorrect"].flatMap((k) => [`--${k}`, IOI[k]])];
  args.push("--methods", SETTINGS.methods.join(","), "--components", SETTINGS.components.join(","));
  args.push("--directions", SETTINGS.directions.join(","), "--ig-steps", String(SETTINGS.igSteps), "--backend", "cpu", "--out", "-", "-q");
  const out = pinned(cores, args, { maxBuffer: 1 << 28, stdio: ["ignore", "pipe", "ignore"] });
  return JSON.parse(out).timings_ms;
}

// The plain product the analysis's time goes into (GPT-2 small's MLP-in on a
// pass's 3072 rows, + bias): GFLOP/s of the CLI's kernel on `cores` cores.
const MATMUL = { m: 3072, k: 768, n: 3072, reps: 3 };
const gflops = (ms) => (2 * MATMUL.m * MATMUL.k * MATMUL.n) / ms / 1e6;
function nativeMatmul(cores) {
  const args = ["bench", "--model", MODEL, "--backend", "cpu", "--matmul-only", "--matmul-rows", String(MATMUL.m)];
  const out = pinned(cores, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  const m = /: ([\d.]+) ms, [\d.]+ GFLOP\/s/.exec(out);
  if (!m) throw new Error(`patchlab bench --matmul-only printed no rate:\n${out}`);
  return gflops(Number(m[1]));
}

async function inBrowser(browser, url) {
  const ctx = await newContext(browser);
  try {
    const page = await ctx.newPage();
    await page.goto(`${url}embed-demo.html?report=/model/none.json`); // a page that loads no model itself
    return await page.evaluate(
      async ({ req, matmul }) => {
        const { PatchLab } = await import("/patchlab.js");
        const t0 = performance.now();
        const lab = await PatchLab.load({ model: "/model/", cache: false });
        const loadMs = performance.now() - t0;
        const report = await lab.analyze({ ...req, backend: "cpu" });
        const matmulMs = await lab.cpuMatmulMs(matmul);
        lab.close();
        return { loadMs, env: lab.env, timings: report.timings_ms, matmulMs };
      },
      { req: { ...IOI, ...SETTINGS }, matmul: MATMUL },
    );
  } finally {
    await ctx.close();
  }
}

const best = (runs) => Object.fromEntries(Object.keys(runs[0]).map((k) => [k, Math.min(...runs.map((r) => r[k] ?? Infinity))]));
const s = (ms) => (ms / 1e3).toFixed(1).padStart(8);

// Two pages: one not cross-origin isolated (the worker runs www/pkg on one
// thread, as on most blogs) and one isolated (www/pkg-threads, a pool of
// navigator.hardwareConcurrency workers). Each is compared with the CLI on
// as many cores as the page computes on.
const servers = { single: await serve({ modelDir: MODEL, isolate: false }), threaded: await serve({ modelDir: MODEL, isolate: true }) };
const browser = await launch({ webgpu: false });
try {
  const rows = [];
  for (const [mode, server] of Object.entries(servers)) {
    const nat = [];
    const page = [];
    const loads = [];
    const rates = { n: [], p: [] };
    let env = null;
    for (let r = 0; r < REPS; r++) {
      const b = await inBrowser(browser, server.url);
      page.push(b.timings);
      loads.push(b.loadMs);
      rates.p.push(gflops(b.matmulMs));
      env = b.env;
      nat.push(native(env.threads));
      rates.n.push(nativeMatmul(env.threads));
    }
    rows.push({ mode, env, n: best(nat), p: best(page), load: Math.min(...loads), rate: { n: Math.max(...rates.n), p: Math.max(...rates.p) } });
  }
  console.log(`patchlab bench-browser — random GPT-2-small-shaped model (${(modelBytes / 1e6).toFixed(0)} MB), the IOI pair, AP + IG (${SETTINGS.igSteps} steps) on heads, both directions; best of ${REPS}`);
  console.log(`Chromium ${browser.version()} headless without WebGPU, backend "cpu"; native: ${path.relative(ROOT, BIN)} --backend cpu pinned (taskset) to as many cores as the page's threads\n`);
  for (const { mode, env, n, p, load, rate } of rows) {
    const threads = `${env.threads} thread${env.threads > 1 ? "s" : ""}`;
    console.log(`${mode === "threaded" ? "cross-origin isolated page (www/pkg-threads)" : "page not isolated (www/pkg)"}: wasm${env.simd ? " SIMD" : ""}, ${threads}${env.threadsNote ? ` (${env.threadsNote})` : ""}`);
    console.log(`${"".padEnd(10)} ${"native s".padStart(8)} ${"page s".padStart(8)} ${"page/native".padStart(12)}`);
    for (const [label, k] of KEYS) {
      console.log(`${label.padEnd(10)} ${s(n[k])} ${s(p[k])} ${(p[k] / n[k]).toFixed(2).padStart(11)}×`);
    }
    console.log(`plain matmul [${MATMUL.m}, ${MATMUL.k}]·[${MATMUL.k}, ${MATMUL.n}] + bias: native ${rate.n.toFixed(1)} GFLOP/s, page ${rate.p.toFixed(1)} GFLOP/s, native/page ${(rate.n / rate.p).toFixed(2)}×`);
    console.log(`model load in the page (local server, no cache): ${(load / 1e3).toFixed(1)} s for ${(modelBytes / 1e6).toFixed(0)} MB (${(modelBytes / 1e6 / (load / 1e3)).toFixed(0)} MB/s)\n`);
  }
  const [one, many] = rows;
  if (many.env.threads > 1) {
    console.log(`threads' speed-up (${many.env.threads} threads against 1): page ${(one.p.total / many.p.total).toFixed(2)}×, native ${(one.n.total / many.n.total).toFixed(2)}× (total)`);
  }
} finally {
  await browser.close();
  for (const server of Object.values(servers)) server.close();
}
