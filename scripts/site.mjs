// Writes the lab as a static site into dist/site/ (called by scripts/site,
// after the wasm builds): index.html and every file it loads, found by
// following its links (<script src>, <link href>, …), the imports of every
// module reached (static, re-exports, dynamic `import("…")`) and the files a
// module names with `new URL("./…", import.meta.url)` (the worker, the
// stylesheet); a wasm build (www/pkg/, www/pkg-threads/) that a module
// imports is copied whole. embed.js is an entry too, so that a blog can load
// <patch-lab> from the site (docs/embedding.md). Every link must be relative,
// so the site works from any directory of any host (a GitHub project page
// lives under /REPO/).
//
// Next to them: `_headers` (Netlify's and Cloudflare Pages' format) with the
// headers that make the page cross-origin isolated, so the worker runs the
// threaded build there (the headers of `patchlab serve`, src/serve.rs), and
// `.nojekyll`, so GitHub Pages serves the files as they are. GitHub Pages
// sends no such headers: the page then runs single-threaded and says why.
// `--sw` adds a service-worker shim instead for hosts without headers
// (scripts/site-shim/: coi.js, loaded by index.html before app.js, registers
// coi-sw.js, which adds COOP/COEP to the site's own responses, and reloads
// the page once).
// No model ships: with no ./model/ next to the page, it loads GPT-2 small
// from the Hugging Face Hub (PatchLab.defaultModel in www/patchlab.js).
//
//   node scripts/site.mjs [--out DIR] [--sw]     (default dist/site; replaced whole)

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { WASM_DIRS, copy, relativeImports, walk } from "./package.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const WWW = path.join(ROOT, "www");
const ENTRIES = ["index.html", "embed.js"];

/**
 * The headers a Netlify or Cloudflare Pages site sends with every file:
 * COOP + COEP make the page cross-origin isolated (SharedArrayBuffer, so the
 * threaded engine); CORP and CORS let a blog on another origin load
 * <patch-lab> from the site, as from `patchlab serve`.
 */
export const HEADERS = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
  "Cross-Origin-Resource-Policy": "cross-origin",
  "Access-Control-Allow-Origin": "*",
  "X-Content-Type-Options": "nosniff",
};

/** The URLs an HTML file links to (src and href attributes). */
function htmlLinks(source) {
  return [...source.matchAll(/\s(?:src|href)\s*=\s*["']([^"']*)["']/gi)].map((m) => m[1]);
}

/** The files a module names relative to itself: `new URL("./x", import.meta.url)`. */
function urlRefs(source) {
  return [...source.matchAll(/new\s+URL\(\s*["'](\.{1,2}\/[^"']+)["']\s*,\s*import\.meta\.url\s*\)/g)].map((m) => m[1]);
}

/** The www/ files the site needs, relative to www/ (the wasm builds as their directory names). */
export function siteFiles() {
  const seen = new Set();
  const wasm = new Set();
  const todo = [...ENTRIES];
  while (todo.length) {
    const rel = todo.pop();
    if (seen.has(rel)) continue;
    const file = path.join(WWW, rel);
    if (!fs.existsSync(file) || !fs.statSync(file).isFile()) throw new Error(`www/${rel} is linked but missing`);
    seen.add(rel);
    const source = fs.readFileSync(file, "utf8");
    let refs = [];
    if (rel.endsWith(".html")) {
      for (const link of htmlLinks(source)) {
        if (/^(?:[a-z][a-z0-9+.-]*:|#|$)/i.test(link)) continue; // data:, https:, fragments
        if (link.startsWith("/")) throw new Error(`www/${rel} links to ${link}: the site's links must be relative`);
        refs.push(link.replace(/[?#].*$/, ""));
      }
    } else if (rel.endsWith(".js")) {
      // "./model/" (a directory: the optional local model) is not a file
      refs = [...relativeImports(source), ...urlRefs(source).filter((r) => !r.endsWith("/"))];
    }
    for (const ref of refs) {
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(rel), ref));
      if (target.startsWith("../")) throw new Error(`www/${rel} links to ${ref}, outside www/`);
      const dir = WASM_DIRS.find((d) => target.startsWith(`${d}/`));
      if (dir) wasm.add(dir);
      else todo.push(target);
    }
  }
  return { files: [...seen].sort(), wasm: [...wasm].sort() };
}

/** `_headers` in the format Netlify and Cloudflare Pages read: every path gets HEADERS. */
export function headersFile() {
  return `# Netlify and Cloudflare Pages send these with every file (GitHub Pages ignores
# this file and sends none: the lab then runs single-threaded and says why).
/*
${Object.entries(HEADERS)
  .map(([k, v]) => `  ${k}: ${v}`)
  .join("\n")}
`;
}

/** index.html with the shim's script before the lab's module. */
function withShim(html) {
  const app = '<script type="module" src="app.js"></script>';
  if (!html.includes(app)) throw new Error(`www/index.html has no ${app} to put the shim before`);
  return html.replace(app, `<script src="coi.js"></script>\n${app}`);
}

export function writeSite(out = path.join(ROOT, "dist/site"), { sw = false } = {}) {
  const { files, wasm } = siteFiles();
  if (!wasm.includes("pkg")) throw new Error("no module imports ./pkg/patchlab.js: where does the engine come from?");
  fs.rmSync(out, { recursive: true, force: true });
  fs.mkdirSync(out, { recursive: true });
  for (const rel of files) copy(path.join(WWW, rel), path.join(out, rel));
  for (const d of wasm) {
    const dir = path.join(WWW, d);
    if (!fs.existsSync(path.join(dir, "patchlab_bg.wasm"))) {
      if (d === "pkg") throw new Error("www/pkg is missing: run scripts/build-wasm");
      console.warn(`[site] www/${d} is not built (PATCHLAB_WASM_THREADS=0?): the site runs single-threaded everywhere`);
      continue;
    }
    // .stamp is build-wasm's up-to-date check
    for (const f of walk(dir).filter((f) => path.basename(f) !== ".stamp")) copy(path.join(dir, f), path.join(out, d, f));
  }
  if (sw) {
    for (const f of ["coi.js", "coi-sw.js"]) copy(path.join(ROOT, "scripts/site-shim", f), path.join(out, f));
    fs.writeFileSync(path.join(out, "index.html"), withShim(fs.readFileSync(path.join(out, "index.html"), "utf8")));
  }
  fs.writeFileSync(path.join(out, "_headers"), headersFile());
  fs.writeFileSync(path.join(out, ".nojekyll"), "");
  return { out, files, wasm };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf("--out");
  const sw = process.argv.includes("--sw");
  const { out, files, wasm } = writeSite(i > 0 ? path.resolve(process.argv[i + 1]) : undefined, { sw });
  console.log(`[site] ${path.relative(process.cwd(), out) || "."}: ${files.length} files from www/, wasm builds ${wasm.join(", ")}, _headers, .nojekyll${sw ? ", the service-worker shim" : ""}`);
}
