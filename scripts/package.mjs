// Writes the npm package of patchlab's browser side into dist/npm/ (called
// by scripts/package, after the wasm builds): <patch-lab> (embed.js), the
// JavaScript API (patchlab.js), the worker, every module they import (the
// views and plots among them), style.css, the wasm builds www/pkg/ and, when
// built, www/pkg-threads/, the hand-written TypeScript declarations and the
// npm README from npm/, both licence files, and a package.json whose version
// is the crate's (Cargo.toml).
//
// The JavaScript files are found by following the imports from embed.js,
// patchlab.js and worker.js, so a module added to www/ ships once something
// imports it, and the lab's own page (app.js, index.html) does not ship.
//
//   node scripts/package.mjs [--out DIR]     (default dist/npm; replaced whole)

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const WWW = path.join(ROOT, "www");

/** The npm name, checked free on the registry (`npm view patchlab`: 404) on 2026-12-06. */
export const NPM_NAME = "patchlab";
const ENTRIES = ["embed.js", "patchlab.js", "worker.js"];
export const WASM_DIRS = ["pkg", "pkg-threads"];

/** The [package] table's `key = "value"` of Cargo.toml. */
function cargoField(toml, key) {
  const pkg = /^\[package\]\n([\s\S]*?)(?=^\[)/m.exec(toml);
  const m = pkg && new RegExp(`^${key}\\s*=\\s*"([^"]*)"`, "m").exec(pkg[1]);
  if (!m) throw new Error(`Cargo.toml has no [package] ${key}`);
  return m[1];
}

/** The relative module specifiers a file imports (static, re-exports and dynamic `import("…")`). */
export function relativeImports(source) {
  const out = [];
  const re = /(?:\bimport\s*(?:[\w*{}\s,$]+\s*from\s*)?|\bexport\s*(?:[\w*{}\s,$]+)\s*from\s*|\bimport\s*\(\s*)["'](\.{1,2}\/[^"']+)["']/g;
  for (const m of source.matchAll(re)) out.push(m[1]);
  return out;
}

/** www/ modules reachable from the entries, as paths relative to www/ (the wasm builds' own files apart). */
function moduleClosure() {
  const seen = new Set();
  const todo = [...ENTRIES];
  while (todo.length) {
    const rel = todo.pop();
    if (seen.has(rel)) continue;
    const file = path.join(WWW, rel);
    if (!fs.existsSync(file)) throw new Error(`www/${rel} is imported but missing`);
    seen.add(rel);
    for (const spec of relativeImports(fs.readFileSync(file, "utf8"))) {
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(rel), spec));
      if (target.startsWith("../")) throw new Error(`www/${rel} imports ${spec}, outside www/`);
      if (WASM_DIRS.some((d) => target.startsWith(`${d}/`))) continue; // copied whole below
      todo.push(target);
    }
  }
  return [...seen].sort();
}

export function copy(from, to) {
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.copyFileSync(from, to);
}

/** Every file below `dir`, relative to it. */
export function walk(dir, base = dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? walk(p, base) : [path.relative(base, p)];
  });
}

export function writePackage(out = path.join(ROOT, "dist/npm")) {
  const toml = fs.readFileSync(path.join(ROOT, "Cargo.toml"), "utf8");
  const version = cargoField(toml, "version");
  fs.rmSync(out, { recursive: true, force: true });
  fs.mkdirSync(out, { recursive: true });

  const modules = moduleClosure();
  for (const rel of modules) copy(path.join(WWW, rel), path.join(out, rel));
  copy(path.join(WWW, "style.css"), path.join(out, "style.css"));

  const wasm = [];
  for (const d of WASM_DIRS) {
    const dir = path.join(WWW, d);
    if (!fs.existsSync(path.join(dir, "patchlab_bg.wasm"))) {
      if (d === "pkg") throw new Error("www/pkg is missing: run scripts/build-wasm");
      console.warn(`[package] www/${d} is not built (PATCHLAB_WASM_THREADS=0?): the package runs single-threaded everywhere`);
      continue;
    }
    // .stamp is build-wasm's up-to-date check
    for (const f of walk(dir).filter((f) => path.basename(f) !== ".stamp")) copy(path.join(dir, f), path.join(out, d, f));
    wasm.push(d);
  }

  for (const f of ["patchlab.d.ts", "embed.d.ts", "report.d.ts"]) copy(path.join(ROOT, "npm", f), path.join(out, f));
  // the README's CDN lines pin this version
  fs.writeFileSync(path.join(out, "README.md"), fs.readFileSync(path.join(ROOT, "npm/README.md"), "utf8").replaceAll("{{version}}", version));
  for (const f of ["LICENSE-MIT", "LICENSE-APACHE"]) copy(path.join(ROOT, f), path.join(out, f));

  const exports = {
    ".": { types: "./patchlab.d.ts", default: "./patchlab.js" },
    "./patchlab.js": { types: "./patchlab.d.ts", default: "./patchlab.js" },
    "./embed": { types: "./embed.d.ts", default: "./embed.js" },
    "./embed.js": { types: "./embed.d.ts", default: "./embed.js" },
    "./report": { types: "./report.d.ts" },
    "./worker.js": "./worker.js",
    "./style.css": "./style.css",
    ...Object.fromEntries(wasm.map((d) => [`./${d}/*`, `./${d}/*`])),
    "./package.json": "./package.json",
  };
  const manifest = {
    name: NPM_NAME,
    version,
    description: `${cargoField(toml, "description")}: the <patch-lab> element, the JavaScript API and the wasm engine`,
    keywords: ["interpretability", "gpt2", "activation-patching", "integrated-gradients", "webgpu", "wasm", "web-component"],
    license: cargoField(toml, "license"),
    repository: { type: "git", url: `git+${cargoField(toml, "repository")}.git` },
    type: "module",
    main: "./patchlab.js",
    types: "./patchlab.d.ts",
    exports,
    // what a CDN serves for the bare package URL (https://cdn.jsdelivr.net/npm/patchlab@VERSION)
    jsdelivr: "./embed.js",
    unpkg: "./embed.js",
    // embed.js registers <patch-lab> when imported
    sideEffects: ["./embed.js"],
    files: [...new Set([...modules.map((m) => m.split("/")[0]), "style.css", ...wasm, "*.d.ts", "LICENSE-MIT", "LICENSE-APACHE"])].sort(),
  };
  fs.writeFileSync(path.join(out, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  return { out, version, modules, wasm };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf("--out");
  const { out, version, modules, wasm } = writePackage(i > 0 ? path.resolve(process.argv[i + 1]) : undefined);
  console.log(`[package] ${NPM_NAME}@${version} in ${path.relative(process.cwd(), out) || "."}: ${modules.length} modules, wasm builds ${wasm.join(", ")}`);
}
