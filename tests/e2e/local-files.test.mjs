// Loading the model from local files, the way people without a server do it:
// the page's "Open files…" picker and drag-and-drop onto the page. The tiny
// random model's files go in; the page must become ready with the local
// model named, tokenize, and show the same top-10 predictions and the same
// analysis (heads, AP) as the same page loading the served /model/. Foreign,
// truncated, empty and missing files each give a clear message, and a correct
// set of files loads afterwards.
// Run with scripts/test-e2e, or `node --test tests/e2e/local-files.test.mjs`
// once www/pkg, target/debug/patchlab and Chromium exist.

import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { newContext, reportDiffs, startLab, stopLab, trackedPage, waitReady } from "./helpers.mjs";

// A small analysis, set through the share URL's parameters.
const QUERY = "methods=ap&components=heads";
const WEIGHTS = "model.safetensors";
// the first bytes of a PNG image (signature and the start of its IHDR chunk)
const PNG = Buffer.from("89504e470d0a1a0a0000000d4948445200000001000000010806000000", "hex");

let modelDir, server, browser;

before(async () => {
  ({ modelDir, server, browser } = await startLab());
});

after(() => stopLab({ modelDir, server, browser }));

/** A model file as the file picker's setFiles takes it (a name and bytes). */
function file(name, buffer = fs.readFileSync(path.join(modelDir, name))) {
  return { name, mimeType: name.endsWith(".json") ? "application/json" : name.endsWith(".txt") ? "text/plain" : "application/octet-stream", buffer };
}

/** The model's files with tokenizer.json, or (`bpe`) with vocab.json + merges.txt instead. */
function modelFiles({ bpe = false } = {}) {
  return ["config.json", WEIGHTS, ...(bpe ? ["vocab.json", "merges.txt"] : ["tokenizer.json"])].map((f) => file(f));
}

const newPage = (t) => trackedPage(t, browser, { scale: 1 });

/**
 * Loads a model into the page with `trigger` (a picker, a drop) and waits for
 * the load to end. Chips and suggestions are emptied first, so that what
 * appears afterwards comes from the new model. Returns the page's load state
 * {state, text, error (null when hidden), actions (the error's buttons)}.
 */
async function loadWith(page, trigger) {
  await page.evaluate(() => {
    window.patchlabPage.state = "test: waiting for a load";
    for (const id of ["clean-chips", "corrupt-chips", "correct-chips", "incorrect-chips", "suggestion-list"]) document.getElementById(id).replaceChildren();
  });
  await trigger();
  await page.waitForFunction(() => ["ready", "error"].includes(window.patchlabPage.state));
  return page.evaluate(() => {
    const box = document.getElementById("load-error");
    return {
      state: window.patchlabPage.state,
      text: document.getElementById("load-text").textContent,
      error: box.hidden ? null : box.firstChild?.textContent ?? "",
      actions: box.hidden ? [] : [...box.querySelectorAll("button")].map((b) => b.textContent),
    };
  });
}

/** Chooses `files` with the "Open files…" button's file picker. */
async function pick(page, files) {
  const chooser = page.waitForEvent("filechooser");
  await page.click("#model-files");
  const c = await chooser;
  assert.equal(c.isMultiple(), true, "the picker must take several files at once");
  await c.setFiles(files);
}

/**
 * Drops `files` on the page as a browser does: a DataTransfer holding File
 * objects, made in the page, with dragenter, dragover and drop on the page's
 * main area. Returns which events the page cancelled (a browser accepts a
 * drop only where dragover is cancelled, and opens the file itself unless
 * drop is).
 */
async function drop(page, files) {
  const dt = await page.evaluateHandle(
    (list) => {
      const dt = new DataTransfer();
      for (const f of list) {
        const bin = atob(f.b64);
        const bytes = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
        dt.items.add(new File([bytes], f.name, { type: f.mimeType }));
      }
      return dt;
    },
    files.map((f) => ({ name: f.name, mimeType: f.mimeType, b64: f.buffer.toString("base64") })),
  );
  const cancelled = await page.evaluate((dt) => {
    const target = document.getElementById("inputs");
    const fire = (type) => {
      const e = new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt });
      target.dispatchEvent(e);
      return e.defaultPrevented;
    };
    return { dragenter: fire("dragenter"), dragover: fire("dragover"), drop: fire("drop") };
  }, dt);
  await dt.dispose();
  return cancelled;
}

/**
 * Runs the analysis set in the page, waits for it, and returns the exported
 * report JSON, with the run's progress lines as `stages` (they say why a run
 * computed on the CPU).
 */
async function runAndExport(page) {
  const before = await page.evaluate(() => {
    window.__stages = [];
    const line = document.getElementById("run-text");
    new MutationObserver(() => window.__stages.push(line.textContent)).observe(line, { childList: true, characterData: true, subtree: true });
    return Number(document.body.dataset.runs || 0);
  });
  await page.click("#run");
  await page.waitForFunction((n) => Number(document.body.dataset.runs || 0) > n || !document.getElementById("run-error").hidden, before);
  assert.equal(await page.isHidden("#run-error"), true, await page.textContent("#run-error"));
  const download = page.waitForEvent("download");
  await page.click("#export-json");
  const report = JSON.parse(fs.readFileSync(await (await download).path(), "utf8"));
  return Object.defineProperty(report, "stages", { value: await page.evaluate(() => window.__stages), enumerable: false });
}

/**
 * What the page shows for its model: the prompts' token chips, the clean
 * run's top-10 next tokens (text, probability, logit), and the report of the
 * analysis in the URL.
 */
async function pageResults(page) {
  await page.waitForFunction(
    () => document.querySelectorAll("#suggestion-list .suggestion").length === 10 && document.querySelector("#incorrect-chips .chip") && !document.getElementById("run").disabled,
  );
  const shown = await page.evaluate(() => ({
    chips: Object.fromEntries(["clean", "corrupt", "correct", "incorrect"].map((k) => [k, [...document.querySelectorAll(`#${k}-chips .chip`)].map((c) => c.title)])),
    top10: [...document.querySelectorAll("#suggestion-list .suggestion")].map((b) => `${JSON.stringify(b.dataset.text)} ${b.textContent} (${b.title})`),
  }));
  return { ...shown, report: await runAndExport(page) };
}

/** The same page on the served /model/ (computed once). */
let referencePromise = null;
function reference(t) {
  referencePromise ||= (async () => {
    const context = await newContext(browser, { viewport: { width: 1280, height: 900 }, acceptDownloads: true });
    try {
      const page = await context.newPage();
      await page.goto(`${server.url}?${QUERY}`);
      const st = await waitReady(page);
      assert.equal(st.state, "ready");
      assert.match(await page.textContent("#load-text"), /^model: 2 layers × 4 heads/);
      return await pageResults(page);
    } finally {
      await context.close();
    }
  })();
  t.diagnostic("reference: the page on the served /model/");
  return referencePromise;
}

/** The page's results for a local model equal the served model's: same tokens, same top 10, same numbers. */
function assertSameAsServed(got, want) {
  assert.deepEqual(got.chips, want.chips);
  assert.ok(got.chips.clean.length > 5, JSON.stringify(got.chips));
  assert.deepEqual(got.top10, want.top10);
  assert.equal(got.report.model.name, "local files");
  assert.equal(want.report.model.name, "model");
  assert.deepEqual(Object.keys(got.report.results), ["ap"]);
  assert.equal(got.report.backend, want.report.backend, `the run's stages: ${got.report.stages.join(" | ")}; the served model's: ${want.report.stages.join(" | ")}`);
  // the same engine on the same bytes: the same numbers (to float noise at most)
  assert.deepEqual(reportDiffs(got.report, want.report, 1e-6), []);
  assert.deepEqual(got.report.results, want.report.results);
  assert.deepEqual(got.report.metric, want.report.metric);
}

/** The load line of the tiny model loaded from local files. */
const LOADED_LOCAL = /^local files: 2 layers × 4 heads, d_model 64, 256 neurons per layer — loaded in \d+\.\d s$/;

describe("loading the model from local files", () => {
  test("the Open files… picker loads config.json, model.safetensors and tokenizer.json: same tokens, top 10 and analysis as the served /model/", async (t) => {
    const want = await reference(t);
    const page = await newPage(t);
    // a page whose own model cannot be loaded (as offline without a server):
    // local files are the way out
    await page.goto(`${server.url}?${QUERY}&model=/no-model-here/`);
    const first = await waitReady(page);
    assert.equal(first.state, "error");
    assert.match(await page.textContent("#load-error"), /Could not load the model: could not download config\.json: HTTP 404/);

    const st = await loadWith(page, () => pick(page, modelFiles()));
    assert.equal(st.error, null);
    assert.equal(st.state, "ready");
    assert.match(st.text, LOADED_LOCAL);
    assert.equal(await page.evaluate(() => document.body.dataset.ready), "1");
    // the picker is emptied, so that choosing the same files again (say, after
    // replacing a broken download) fires its change event again
    assert.equal(await page.inputValue("#file-input"), "");
    assertSameAsServed(await pageResults(page), want);

    // tokenization follows typing
    await page.fill("#correct", " Alice");
    await page.waitForFunction(() => document.getElementById("correct-chips").textContent === "·Alice");
    await page.fill("#correct", " Alice Smith");
    await page.waitForFunction(() => /single token, but " Alice Smith" is 2 tokens: \[ Alice\]\[ Smith\]/.test(document.getElementById("input-error").textContent));
  });

  test("drag-and-drop of config.json, model.safetensors, vocab.json and merges.txt replaces the loaded model: same tokens, top 10 and analysis", async (t) => {
    const want = await reference(t);
    const page = await newPage(t);
    await page.goto(`${server.url}?${QUERY}`);
    assert.equal((await waitReady(page)).state, "ready");

    let cancelled;
    const st = await loadWith(page, async () => {
      cancelled = await drop(page, modelFiles({ bpe: true }));
    });
    assert.equal(cancelled.dragover, true, "the page must cancel dragover, or a browser refuses the drop");
    assert.equal(cancelled.drop, true, "the page must cancel drop, or a browser opens the dropped file itself");
    assert.equal(st.error, null);
    assert.equal(st.state, "ready");
    assert.match(st.text, LOADED_LOCAL);
    assertSameAsServed(await pageResults(page), want);

    // dropping something that holds no files (text dragged from elsewhere) changes nothing
    const text = await page.evaluate(() => {
      const dt = new DataTransfer();
      dt.setData("text/plain", "hello");
      const e = new DragEvent("drop", { bubbles: true, cancelable: true, dataTransfer: dt });
      document.getElementById("inputs").dispatchEvent(e);
      return window.patchlabPage.state;
    });
    assert.equal(text, "ready");
    assert.match(await page.textContent("#load-text"), LOADED_LOCAL);
  });

  test("a foreign, truncated or empty model.safetensors gets a clear message, and a correct set of files loads afterwards", async (t) => {
    // a safetensors file of this header (its 8-byte length, then the text)
    const safetensors = (header) => {
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(Buffer.byteLength(header)));
      return Buffer.concat([len, Buffer.from(header)]);
    };
    const page = await newPage(t);
    await page.goto(`${server.url}?${QUERY}`);
    assert.equal((await waitReady(page)).state, "ready");
    const weights = fs.readFileSync(path.join(modelDir, WEIGHTS));
    const size = weights.length;
    const headerEnd = 8 + Number(weights.readBigUInt64LE(0));
    const notSafetensors = /^model\.safetensors is not a safetensors file \(its first 8 bytes give a header of \d+ bytes\): is this the right URL or file\?$/;
    const cases = [
      { what: "a PNG named model.safetensors", bytes: PNG, via: pick, message: notSafetensors },
      { what: "a text file named model.safetensors", bytes: Buffer.from("This is not a model, just some notes.\n"), via: drop, message: notSafetensors },
      {
        what: "model.safetensors cut in half",
        bytes: weights.subarray(0, size >> 1),
        via: pick,
        message: `model.safetensors should be ${size} bytes by its header, but is ${size >> 1}: the file is truncated or corrupt; choose a complete copy of it`,
      },
      {
        what: "model.safetensors one byte short",
        bytes: weights.subarray(0, size - 1),
        via: drop,
        message: `model.safetensors should be ${size} bytes by its header, but is ${size - 1}: the file is truncated or corrupt; choose a complete copy of it`,
      },
      { what: "model.safetensors without its tensors", bytes: weights.subarray(0, headerEnd), via: pick, message: `model.safetensors should be ${size} bytes by its header, but is ${headerEnd}: the file is truncated or corrupt; choose a complete copy of it` },
      { what: "an empty model.safetensors", bytes: Buffer.alloc(0), via: pick, message: "model.safetensors is truncated or empty (0 bytes)" },
      // past the first 8 bytes, the crate's header check (WeightStream) speaks
      {
        what: "a header that is not JSON",
        bytes: safetensors("this is not JSON, is it?"),
        via: drop,
        message: /^bad model\.safetensors: invalid JSON in header: .+ \(the file is truncated, corrupt or not a safetensors file; download it again\)$/,
      },
      { what: "a safetensors file without the model's tensors", bytes: safetensors("{}"), via: pick, message: /^model\.safetensors has no tensor `[^`]+` \(is this a GPT-2 checkpoint in the Hugging Face layout\?\)$/ },
    ];
    for (const c of cases) {
      const bad = [file("config.json"), file("tokenizer.json"), file(WEIGHTS, c.bytes)];
      const st = await loadWith(page, () => c.via(page, bad));
      // the model that was loaded stays (a failed load throws nothing away)
      assert.equal(st.state, "ready", c.what);
      assert.match(st.text, /still loaded: the model asked for did not load/, c.what);
      if (c.message instanceof RegExp) assert.match(st.error.replace(/^Could not load the model: /, ""), c.message, c.what);
      else assert.equal(st.error, `Could not load the model: ${c.message}`, c.what);
      assert.ok(st.actions.includes("Retry"), `${c.what}: ${st.actions}`);
      assert.equal(await page.isDisabled("#run"), false, `${c.what}: the model that works still runs`);
      // the page still works: the right files load
      const ok = await loadWith(page, () => pick(page, modelFiles()));
      assert.equal(ok.error, null, `${c.what}, then the right files`);
      assert.match(ok.text, LOADED_LOCAL);
      await page.waitForFunction(() => document.querySelectorAll("#suggestion-list .suggestion").length === 10 && !document.getElementById("run").disabled);
    }
    // and it computes
    const report = await runAndExport(page);
    assert.equal(report.model.name, "local files");
    assert.ok(report.results.ap.clean_to_corrupt.heads.flat().some((x) => x !== 0));
  });

  test("missing files get a message naming what is missing, and a correct set of files loads afterwards", async (t) => {
    const page = await newPage(t);
    await page.goto(`${server.url}?${QUERY}`);
    assert.equal((await waitReady(page)).state, "ready");
    const all = "choose (or drop) all of the model's files at once";
    const cases = [
      { what: "only model.safetensors", files: [file(WEIGHTS)], via: pick, message: `missing config.json and tokenizer.json (or vocab.json and merges.txt) among the files given (model.safetensors): ${all}` },
      { what: "no tokenizer", files: [file("config.json"), file(WEIGHTS)], via: drop, message: `missing tokenizer.json (or vocab.json and merges.txt) among the files given (config.json, model.safetensors): ${all}` },
      { what: "vocab.json without merges.txt", files: [file("config.json"), file(WEIGHTS), file("vocab.json")], via: pick, message: `missing merges.txt (or tokenizer.json) among the files given (config.json, model.safetensors, vocab.json): ${all}` },
      { what: "no weights", files: [file("config.json"), file("tokenizer.json")], via: pick, message: `missing model.safetensors among the files given (config.json, tokenizer.json): ${all}` },
      { what: "a picture", files: [{ name: "photo.png", mimeType: "image/png", buffer: PNG }], via: drop, message: `missing config.json, tokenizer.json (or vocab.json and merges.txt) and model.safetensors among the files given (photo.png): ${all}` },
    ];
    for (const c of cases) {
      const st = await loadWith(page, () => c.via(page, c.files));
      assert.equal(st.state, "ready", `${c.what}: the model that was loaded stays`);
      assert.equal(st.error, `Could not load the model: ${c.message}`, c.what);
    }
    const ok = await loadWith(page, () => drop(page, modelFiles()));
    assert.equal(ok.error, null);
    assert.match(ok.text, LOADED_LOCAL);
    await page.waitForFunction(() => document.querySelectorAll("#suggestion-list .suggestion").length === 10 && !document.getElementById("run").disabled);
  });
});
