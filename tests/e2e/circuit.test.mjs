// Browser end-to-end tests of the Circuit tab and <patch-lab view="circuit">:
// Debian's Chromium (headless, no WebGPU: the CPU engine, as the CLI's)
// against `patchlab serve --model-dir <tiny random model>`, compared with
// `patchlab circuit` on the same model and prompts. Every wait is for a
// state the page announces (data-state, data-evals, a run counter, a
// message), never for time.
// Run with: node --test --test-concurrency=1 tests/e2e/circuit.test.mjs
// (after scripts/build-wasm and cargo build).

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { BIN, IOI, ROOT, launch, makeModel, serve, trackedPage, waitReady } from "./helpers.mjs";

let modelDir, server, browser;
const tmp = [];

before(async () => {
  assert.ok(fs.existsSync(path.join(ROOT, "www/pkg/patchlab_bg.wasm")), "www/pkg is missing: run scripts/build-wasm");
  modelDir = makeModel();
  server = await serve({ modelDir });
  browser = await launch({ webgpu: false });
});

after(async () => {
  await browser?.close();
  server?.close();
  for (const d of [modelDir, ...tmp]) if (d) fs.rmSync(d, { recursive: true, force: true });
});

const EDGES = 20;
const SMALLER = 12;

/** `patchlab circuit` for the IOI pair on the tiny model: {report, graph} (circuit.json, graph.json). */
function cliCircuit(args) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "patchlab-circuit-"));
  tmp.push(dir);
  const a = ["circuit", "--model", modelDir, "--out", dir, "--quiet", "--backend", "cpu"];
  for (const k of ["clean", "corrupt", "correct", "incorrect"]) a.push(`--${k}`, IOI[k]);
  execFileSync(BIN, [...a, ...args], { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] });
  const read = (f) => fs.readFileSync(path.join(dir, f), "utf8");
  return { report: JSON.parse(read("circuit.json")), graphText: read("graph.json"), dir };
}

const parseGraph = (text) => JSON.parse(text.replace(/\bNaN\b/g, "null"));

/**
 * Differences between two circuit reports: scores within tol × the method's
 * largest |score| (float32 sums in another order in WebAssembly), other
 * numbers within tol (relative above 1), everything else equal; timings
 * and the model's name skipped.
 */
function circuitDiffs(got, want, tol = 1e-3) {
  const out = [];
  const scale = {};
  for (const [m, s] of Object.entries(want.scores || {})) scale[m] = Math.max(1e-6, ...s.filter(Number.isFinite).map(Math.abs));
  const walk = (a, b, where, sc = 1) => {
    if (out.length > 20) return;
    if (/^\.timings_ms|^\.model\.name$/.test(where)) return;
    if (typeof b === "number" && typeof a === "number") {
      if (!(Math.abs(a - b) <= tol * Math.max(sc, Math.abs(b) > 1 ? Math.abs(b) : 1))) out.push(`${where}: ${a} vs ${b}`);
    } else if (Array.isArray(b)) {
      if (!Array.isArray(a) || a.length !== b.length) out.push(`${where}: length ${a?.length} vs ${b.length}`);
      else b.forEach((x, i) => walk(a[i], x, `${where}[${i}]`, sc));
    } else if (b && typeof b === "object") {
      if (!a || typeof a !== "object") out.push(`${where}: ${JSON.stringify(a)} vs object`);
      else for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) walk(a[k], b[k], `${where}.${k}`, where === ".scores" ? scale[k] : sc);
    } else if (a !== b) out.push(`${where}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
  };
  walk(got, want, "");
  return out;
}

async function download(page, selector) {
  const d = page.waitForEvent("download");
  await page.click(selector);
  return fs.readFileSync(await (await d).path());
}

/** The Circuit tab of a fresh page with the model loaded and the IOI prompts in the form. */
async function circuitPage(t, query = {}, inBrowser = browser) {
  const page = await trackedPage(t, inBrowser);
  await page.goto(`${server.url}?${new URLSearchParams({ tab: "circuit", ...IOI, run: "0", ...query })}`);
  assert.equal((await waitReady(page)).state, "ready");
  assert.equal(await page.isHidden("#circuit-mode"), false);
  return page;
}

/** Presses Run and waits for the run's end: resolves to "done" or the error's text. */
async function runCircuit(page) {
  const before = await page.evaluate(() => [Number(document.body.dataset.circuitRuns || 0), Number(document.body.dataset.circuitErrors || 0)]);
  await page.waitForFunction(() => !document.getElementById("c-run").disabled);
  await page.click("#c-run");
  await page.waitForFunction(([r, e]) => Number(document.body.dataset.circuitRuns || 0) > r || Number(document.body.dataset.circuitErrors || 0) > e, before);
  if (await page.isVisible("#c-error")) return page.textContent("#c-error");
  await page.waitForFunction(() => document.getElementById("circuit-view").dataset.state === "ready");
  return "done";
}

/** Sets the view's n and waits for the re-selection it starts; resolves to the view's dataset. */
async function setN(page, n) {
  const evals = await page.evaluate(() => Number(document.getElementById("circuit-view").dataset.evals || 0));
  await page.fill("#circuit-view .circuit-n", String(n));
  await page.dispatchEvent("#circuit-view .circuit-n", "change");
  await page.waitForFunction((k) => {
    const v = document.getElementById("circuit-view");
    return (Number(v.dataset.evals || 0) > k && v.dataset.state === "ready") || v.dataset.state === "error";
  }, evals);
  return page.evaluate(() => ({ ...document.getElementById("circuit-view").dataset }));
}

describe("the Circuit tab", () => {
  test("a run on the random model exports patchlab circuit's report, graph file, CSV and PNG; the slider re-evaluates as a second CLI run; hover shows every method; a node click opens the single pair", async (t) => {
    const t0 = Date.now();
    const page = await circuitPage(t, { edges: String(EDGES), exact: "1" });
    // the link's settings are in the form
    assert.equal(await page.inputValue("#c-edges"), String(EDGES));
    assert.equal(await page.isChecked("#c-exact"), true);
    assert.equal(await page.inputValue("#c-method"), "eap-ig");
    assert.equal(await page.inputValue("#c-steps"), "5");
    await page.selectOption("#c-backend", "cpu");
    assert.equal(await runCircuit(page), "done");
    const got = JSON.parse(await download(page, "#circuit-view button[data-export=report]"));
    const cli = cliCircuit(["--method", "eap-ig", "--steps", "5", "--select", "greedy", "--edges", String(EDGES), "--exact"]);
    assert.deepEqual(got.settings.methods, ["eap", "eap-ig", "exact"]);
    assert.deepEqual(circuitDiffs(got, cli.report), [], "the page's circuit report differs from patchlab circuit's");
    assert.equal(got.circuit.edges.length > 0, true);

    // the graph file (reference layout) is the CLI's graph.json
    const graph = parseGraph((await download(page, "#circuit-view button[data-export=graph]")).toString());
    const want = parseGraph(cli.graphText);
    assert.deepEqual(graph.cfg, want.cfg);
    assert.deepEqual(graph.nodes, want.nodes);
    assert.deepEqual(Object.keys(graph.edges), Object.keys(want.edges));
    const scale = Math.max(...Object.values(want.edges).map((e) => Math.abs(e.score ?? 0)));
    for (const [k, e] of Object.entries(want.edges)) {
      assert.equal(graph.edges[k].in_graph, e.in_graph, k);
      assert.ok(Math.abs(graph.edges[k].score - e.score) <= 1e-3 * scale, `${k}: ${graph.edges[k].score} vs ${e.score}`);
    }

    // CSV: a row per edge, every method's score, in_circuit
    const csv = (await download(page, "#circuit-view button[data-export=csv]")).toString().trim().split("\n");
    assert.equal(csv[0], "edge,eap,eap-ig,exact,in_circuit");
    assert.equal(csv.length, got.edges.length + 1);
    assert.equal(csv.slice(1).filter((l) => l.endsWith(",1")).length, got.circuit.edges.length);
    assert.equal(csv[1].split(",")[0], got.edges[0]);
    // PNG of the graph canvas
    const png = await download(page, "#circuit-view button[data-export=png]");
    assert.equal(png.subarray(1, 4).toString(), "PNG");

    // drawn: the graph with the circuit's edges, the three methods' curves, two scatters with r
    assert.equal(await page.getAttribute("#circuit-view .circuit-graph canvas", "data-edges"), String(got.circuit.edges.length));
    assert.equal(await page.getAttribute("#circuit-view .circuit-curves canvas", "data-methods"), "eap,eap-ig,exact");
    const rs = await page.$$eval("#circuit-view .circuit-scatter canvas", (cs) => cs.map((c) => [c.dataset.method, Number(c.dataset.r)]));
    assert.deepEqual(rs.map(([m]) => m), ["eap", "eap-ig"]);
    for (const [m, r] of rs) assert.ok(Math.abs(r - cli.report.correlations[m].pearson) < 1e-3, `${m}: r ${r} vs ${cli.report.correlations[m].pearson}`);
    const f0 = Number(await page.getAttribute("#circuit-view", "data-faithfulness"));
    assert.ok(Math.abs(f0 - cli.report.circuit.faithfulness.faithfulness) < 1e-3);

    // hover an edge: its score under every method of the report
    const points = JSON.parse(await page.getAttribute("#circuit-view .circuit-graph canvas", "data-edge-points"));
    assert.ok(points.length > 0);
    const canvas = page.locator("#circuit-view .circuit-graph canvas");
    await canvas.scrollIntoViewIfNeeded();
    const box = await canvas.boundingBox();
    // the strongest edges are drawn last; a midpoint may lie on a node, so the first that shows an edge
    let tip = null;
    for (const [, x, y] of points.reverse()) {
      await page.mouse.move(box.x + x, box.y + y);
      tip = await page.evaluate(() => {
        const t = document.querySelector("#circuit-view .circuit-graph .tooltip");
        return !t.hidden && t.dataset.edge !== undefined ? { text: t.innerText, edge: Number(t.dataset.edge) } : null;
      });
      if (tip) break;
    }
    assert.ok(tip, "no edge's tooltip at any drawn edge's midpoint");
    const lines = tip.text.split("\n");
    assert.equal(lines[0], got.edges[tip.edge]);
    for (const [m, label] of [["eap", "EAP"], ["eap-ig", "EAP-IG"], ["exact", "exact"]]) {
      const line = lines.find((l) => l.startsWith(`${label}: `));
      assert.ok(line, `no ${label} line in ${tip.text}`);
      const v = Number(line.slice(label.length + 2).replace("−", "-"));
      assert.ok(Math.abs(v - got.scores[m][tip.edge]) <= 1e-3 * Math.max(1, Math.abs(got.scores[m][tip.edge])), `${line} vs ${got.scores[m][tip.edge]}`);
    }
    assert.equal(lines.at(-1), "in the circuit");

    // the slider: a smaller circuit, re-evaluated on the loaded model, is a second CLI run's
    const small = await setN(page, SMALLER);
    assert.equal(small.state, "ready", await page.textContent("#circuit-view .error"));
    const cli2 = cliCircuit(["--method", "eap-ig", "--steps", "5", "--select", "greedy", "--edges", String(SMALLER)]);
    const f1 = Number(small.faithfulness);
    assert.notEqual(small.faithfulness, "", "the faithfulness is unknown although a model is loaded");
    assert.ok(Math.abs(f1 - cli2.report.circuit.faithfulness.faithfulness) < 1e-3, `faithfulness ${f1} vs the CLI's ${cli2.report.circuit.faithfulness.faithfulness}`);
    assert.notEqual(f1, f0, "the faithfulness did not change with n");
    assert.match(await page.textContent("#circuit-view .circuit-faith"), new RegExp(`^${cli2.report.circuit.edges.length} edges and ${cli2.report.circuit.nodes.length} upstream nodes after pruning; faithfulness`));
    assert.equal(await page.getAttribute("#circuit-view .circuit-graph canvas", "data-edges"), String(cli2.report.circuit.edges.length));
    const csv2 = (await download(page, "#circuit-view button[data-export=csv]")).toString().trim().split("\n");
    const inCircuit = csv2.slice(1).map((l, i) => (l.endsWith(",1") ? i : -1)).filter((i) => i >= 0);
    assert.deepEqual(inCircuit, cli2.report.circuit.edges);
    // the range input moves n on a log scale
    await page.$eval("#circuit-view .circuit-slider", (s) => {
      s.value = "1000";
      s.dispatchEvent(new Event("input", { bubbles: true }));
    });
    assert.equal(await page.inputValue("#circuit-view .circuit-n"), String(got.edges.length));
    await page.waitForFunction((n) => document.getElementById("circuit-view").dataset.state === "ready" && document.getElementById("circuit-view").dataset.n === String(n), got.edges.length);
    await setN(page, SMALLER);
    // the URL keeps the tab, method, selection and n
    const url = new URL(page.url());
    assert.equal(url.searchParams.get("tab"), "circuit");
    assert.equal(url.searchParams.get("edges"), String(SMALLER));
    assert.equal(url.searchParams.get("circuit_method"), "eap-ig");
    assert.equal(url.searchParams.get("circuit_select"), "greedy");

    // click a head of the circuit: the Single pair tab, the head selected after its run
    await setN(page, EDGES);
    const nodes = JSON.parse(await page.getAttribute("#circuit-view .circuit-graph canvas", "data-node-points"));
    const head = Object.keys(nodes).find((n) => /^a\d+\.h\d+$/.test(n));
    if (head) {
      await canvas.scrollIntoViewIfNeeded();
      const at = await canvas.boundingBox();
      await page.mouse.click(at.x + nodes[head][0], at.y + nodes[head][1]);
      await page.waitForFunction((n) => document.body.dataset.openedNode === n, head);
      assert.equal(await page.isHidden("#pair-mode"), false);
      assert.equal(await page.inputValue("#clean"), IOI.clean);
      assert.match(await page.textContent("#run-text"), new RegExp(`Circuit node ${head.replace(".", "\\.")}: press Run`));
      // its run selects the head (pinned in the Heads view)
      const [l, h] = head.slice(1).split(".h");
      await page.waitForFunction(() => !document.getElementById("run").disabled);
      await page.click("#run");
      await page.waitForFunction(() => document.body.dataset.runs === "1" || !document.getElementById("run-error").hidden);
      assert.equal(await page.isHidden("#run-error"), true);
      assert.match(await page.textContent("#report-view .pinned"), new RegExp(`^Pinned L${l} H${h}`));
      assert.equal(await page.getAttribute("#report-view .tab.active", "data-view"), "heads");
      // with the pair's report shown, another click selects at once
      await page.click("#mode-tabs .tab[data-mode=circuit]");
      const mlp = Object.keys(nodes).find((n) => /^m\d+$/.test(n));
      if (mlp) {
        await canvas.scrollIntoViewIfNeeded();
        const at2 = await canvas.boundingBox();
        await page.mouse.click(at2.x + nodes[mlp][0], at2.y + nodes[mlp][1]);
        await page.waitForFunction((n) => document.body.dataset.openedNode === n, mlp);
        assert.equal(await page.getAttribute("#report-view .tab.active", "data-view"), "neurons");
        assert.match(await page.textContent("#run-text"), /selected in the views below/);
      }
    } else t.diagnostic("the circuit kept no head: the node click is not checked");
    t.diagnostic(`run, exports, slider and hover: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });

  test("a saved circuit.json renders results-only: <patch-lab view=circuit report=…> and ?report=, the slider re-selects with faithfulness unknown", async (t) => {
    const cli = cliCircuit(["--edges", String(EDGES)]);
    fs.copyFileSync(path.join(cli.dir, "circuit.json"), path.join(modelDir, "circuit.json"));
    fs.writeFileSync(path.join(modelDir, "not-a-circuit.json"), cli.graphText);
    const page = await trackedPage(t, browser);
    const cli2 = cliCircuit(["--edges", String(SMALLER)]);
    await page.goto(`${server.url}embed-demo.html?${new URLSearchParams({ view: "circuit", report: "/model/circuit.json", edges: String(SMALLER) })}`);
    await page.waitForFunction(() => ["report", "error"].includes(document.querySelector("patch-lab")?.dataset.state));
    const state = await page.evaluate(() => document.querySelector("patch-lab").dataset.state);
    assert.equal(state, "report");
    // n from the attribute: re-selected in a model-less worker, as the CLI selects
    await page.waitForFunction(() => {
      const v = document.querySelector("patch-lab").shadowRoot.querySelector(".circuit-view");
      return v.dataset.state === "ready" || v.dataset.state === "error";
    });
    const view = await page.evaluate(() => {
      const root = document.querySelector("patch-lab").shadowRoot;
      const v = root.querySelector(".circuit-view");
      return { ...v.dataset, faith: root.querySelector(".circuit-faith").textContent, edges: Number(root.querySelector(".circuit-graph canvas").dataset.edges), curves: root.querySelector(".circuit-curves canvas").dataset.methods };
    });
    assert.equal(view.state, "ready");
    assert.equal(view.n, String(SMALLER));
    assert.equal(view.faithfulness, "");
    assert.match(view.faith, /faithfulness unknown \(no model loaded/);
    assert.equal(view.edges, cli2.report.circuit.edges.length);
    assert.equal(view.curves, "eap,eap-ig");

    // the page itself, results-only
    await page.goto(`${server.url}?report=/model/circuit.json`);
    await page.waitForFunction(() => document.body.dataset.ready === "1");
    assert.equal(await page.isHidden("#circuit-mode"), false);
    assert.equal(await page.getAttribute("#circuit-view .circuit-graph canvas", "data-edges"), String(cli.report.circuit.edges.length));
    assert.match(await page.textContent("#c-banner"), /no model is loaded/);
    // a link's n and selection are restored on a saved report too
    await page.goto(`${server.url}?report=/model/circuit.json&circuit_select=topn&edges=${SMALLER}`);
    await page.waitForFunction(() => document.body.dataset.ready === "1");
    await page.waitForFunction(() => document.getElementById("circuit-view").dataset.state === "ready");
    assert.equal(await page.inputValue("#circuit-view .circuit-n"), String(SMALLER));
    assert.equal(await page.inputValue("#circuit-view select[aria-label=selection]"), "topn");
    await page.click("#c-share");
    const shared = new URL(await page.inputValue("#c-share-url"));
    assert.equal(shared.searchParams.get("tab"), "circuit");
    assert.equal(shared.searchParams.get("edges"), String(SMALLER));
    assert.equal(shared.searchParams.get("circuit_select"), "topn");
    assert.equal(shared.searchParams.get("report"), "/model/circuit.json");
    // a graph file is not a circuit report: said so
    await page.goto(`${server.url}embed-demo.html?${new URLSearchParams({ view: "circuit", report: "/model/not-a-circuit.json" })}`);
    await page.waitForFunction(() => document.querySelector("patch-lab")?.dataset.state === "error");
    assert.match(await page.evaluate(() => document.querySelector("patch-lab").shadowRoot.querySelector(".error").textContent), /a graph file \(Graph\.to_json\), not a circuit report/);
  });

  test("<patch-lab view=circuit> computes live with a model: the CLI's circuit", async (t) => {
    const cli = cliCircuit(["--edges", String(EDGES), "--select", "topn"]);
    const page = await trackedPage(t, browser);
    await page.goto(`${server.url}embed-demo.html?${new URLSearchParams({ view: "circuit", model: "/model/", edges: String(EDGES), select: "topn" })}`);
    await page.waitForFunction(() => ["done", "error"].includes(document.querySelector("patch-lab")?.dataset.state));
    const got = await page.evaluate(() => {
      const host = document.querySelector("patch-lab");
      const root = host.shadowRoot;
      return { state: host.dataset.state, error: root.querySelector(".error").textContent, report: host.report, faith: root.querySelector(".circuit-view").dataset.faithfulness };
    });
    assert.equal(got.state, "done", got.error);
    assert.deepEqual(circuitDiffs(got.report, cli.report), []);
    assert.ok(Math.abs(Number(got.faith) - cli.report.circuit.faithfulness.faithfulness) < 1e-3);
  });

  test("Cancel stops a long run (a dataset of 300 copies of one pair, with exact edge patching and 1000 EAP-IG steps) and the tab runs again", async (t) => {
    const page = await circuitPage(t, { edges: String(EDGES) });
    await page.click("#mode-tabs .tab[data-mode=dataset]");
    const line = JSON.stringify(IOI);
    await page.setInputFiles("#ds-file", { name: "same.jsonl", mimeType: "application/jsonl", buffer: Buffer.from(`${Array(300).fill(line).join("\n")}\n`) });
    await page.waitForFunction(() => /300 pairs from same\.jsonl/.test(document.getElementById("ds-info").textContent));
    await page.click("#mode-tabs .tab[data-mode=circuit]");
    await page.check("#c-use-dataset");
    await page.check("#c-exact");
    // 300 × 1000 graph passes: far more than any machine does between the first progress report and the click
    await page.fill("#c-steps", "1000");
    await page.click("#c-run");
    // the first progress report, then Cancel
    await page.waitForFunction(() => / % · .* elapsed · ETA /.test(document.getElementById("c-text").textContent));
    assert.equal(await page.isEnabled("#c-cancel"), true);
    await page.click("#c-cancel");
    await page.waitForFunction(() => document.getElementById("c-text").textContent === "Cancelled.");
    assert.equal(await page.isHidden("#c-error"), true);
    assert.equal(await page.isHidden("#circuit-results"), true);
    // the worker is free again: one pair runs
    await page.uncheck("#c-use-dataset");
    await page.fill("#c-steps", "5");
    assert.equal(await runCircuit(page), "done");
  });

  test("errors are shown, and markup in prompts stays text: steps < 1, n above the edge count, prompts of different lengths, a dataset of mixed lengths", async (t) => {
    const markup = { clean: "<img src=x onerror=\"window.pwned=1\"><b>When</b> Mary and John went", corrupt: "When John and Mary went", correct: " <i>x</i>", incorrect: " John" };
    const page = await circuitPage(t, { ...markup, edges: "20" });
    // the prompts appear as text
    const source = await page.textContent("#c-source");
    assert.ok(source.includes("<img src=x onerror=") && source.includes("<b>When</b>") && source.includes("<i>x</i>"), source);
    assert.equal(await page.locator("#circuit img, #circuit b, #circuit i").count(), 0);
    // steps < 1: refused before the worker
    await page.fill("#c-steps", "0");
    assert.match(await runCircuit(page), /steps must be a whole number, at least 1/);
    await page.fill("#c-steps", "5");
    // the engine's own errors (prompts of different lengths, an answer of several tokens), shown as text
    assert.match(await runCircuit(page), /token/);
    assert.equal(await page.locator("#c-error img, #c-error b").count(), 0);
    assert.equal(await page.evaluate(() => window.pwned), undefined);
    assert.equal(await page.isHidden("#circuit-results"), true);

    // n above the graph's edges
    await page.click("#mode-tabs .tab[data-mode=pair]");
    for (const k of ["clean", "corrupt", "correct", "incorrect"]) await page.fill(`#${k}`, IOI[k]);
    await page.click("#mode-tabs .tab[data-mode=circuit]");
    assert.match(await page.textContent("#c-source"), /clean "When Mary and John went to the store, John gave a drink to"/);
    await page.fill("#c-edges", "100000");
    assert.match(await runCircuit(page), /a circuit of 100000 edges was asked for, but this model's graph has only \d+ edges/);

    // the Dataset tab's pairs of two token lengths
    await page.click("#mode-tabs .tab[data-mode=dataset]");
    const lines = [IOI, { clean: "When Mary and John went to the park", corrupt: "When John and Mary went to the park", correct: " Mary", incorrect: " John" }].map((p) => JSON.stringify(p));
    await page.setInputFiles("#ds-file", { name: "mixed.jsonl", mimeType: "application/jsonl", buffer: Buffer.from(`${lines.join("\n")}\n`) });
    await page.waitForFunction(() => /2 pairs from mixed\.jsonl/.test(document.getElementById("ds-info").textContent));
    await page.click("#mode-tabs .tab[data-mode=circuit]");
    await page.fill("#c-edges", "10");
    await page.check("#c-use-dataset");
    assert.match(await page.textContent("#c-source"), /The Dataset tab's 2 pairs/);
    assert.match(await runCircuit(page), /same number of tokens/);

    // a circuit report of another model: shown as saved, and said so
    const bigger = fs.mkdtempSync(path.join(os.tmpdir(), "patchlab-other-model-"));
    tmp.push(bigger);
    execFileSync(BIN, ["random-model", "--layers", "3", "--heads", "2", "--d-model", "32", "--seed", "2", "--n-ctx", "64", "--out", bigger], { cwd: ROOT, stdio: "ignore" });
    const out = fs.mkdtempSync(path.join(os.tmpdir(), "patchlab-other-circuit-"));
    tmp.push(out);
    execFileSync(BIN, ["circuit", "--model", bigger, "--out", out, "--quiet", "--edges", "10", ...["clean", "corrupt", "correct", "incorrect"].flatMap((k) => [`--${k}`, IOI[k]])], { cwd: ROOT, stdio: "ignore" });
    await page.setInputFiles("#c-file", path.join(out, "circuit.json"));
    await page.waitForFunction(() => /circuit report of another model/.test(document.getElementById("c-error").textContent));
    assert.match(await page.textContent("#c-error"), /3 layers, 2 heads, d_model 32\); the loaded model has 2 layers, 4 heads, d_model 64/);
    await page.waitForFunction(() => document.getElementById("circuit-view").dataset.state === "ready");
    const faith = await setN(page, 3);
    assert.equal(faith.state, "ready");
    assert.equal(faith.faithfulness, "");
  });
});

describe("the Circuit tab on WebGPU", () => {
  let gpuBrowser;
  before(async () => {
    gpuBrowser = await launch({ webgpu: true });
  });
  after(async () => {
    await gpuBrowser?.close();
  });

  test("the graph passes (EAP, EAP-IG, faithfulness) and exact edge patching's tails all on the WebGPU engine give patchlab circuit's CPU report", async (t) => {
    const page = await circuitPage(t, { edges: String(EDGES), exact: "1" }, gpuBrowser);
    await page.selectOption("#c-backend", "gpu");
    assert.equal(await runCircuit(page), "done");
    const got = JSON.parse(await download(page, "#circuit-view button[data-export=report]"));
    assert.equal(got.settings.backend, "gpu");
    const cli = cliCircuit(["--method", "eap-ig", "--steps", "5", "--select", "greedy", "--edges", String(EDGES), "--exact"]);
    assert.equal(cli.report.settings.backend, "cpu");
    const diffs = circuitDiffs({ ...got, settings: { ...got.settings, backend: "cpu" } }, cli.report);
    assert.deepEqual(diffs, [], "the WebGPU run differs from the CLI's");
  });
});
