// ESLint for the browser lab (www/, ES modules in browsers and workers; the
// static site's service-worker shim, scripts/site-shim/) and
// the end-to-end tests and the browser benchmark (tests/e2e/, scripts/*.mjs;
// node). `npx eslint` checks all of them.
import js from "@eslint/js";
import globals from "globals";

export default [
  { ignores: ["www/pkg/**", "www/pkg-threads/**", "dist/**", "target/**", "node_modules/**", "fuzz/**"] },
  js.configs.recommended,
  {
    files: ["www/**/*.js"],
    languageOptions: {
      ecmaVersion: 2024,
      sourceType: "module",
      globals: { ...globals.browser, ...globals.worker },
    },
    rules: {
      "no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
      // user text must never become markup
      "no-restricted-properties": [
        "error",
        { property: "innerHTML", message: "use textContent / DOM nodes: user text must stay text" },
        { property: "outerHTML", message: "use textContent / DOM nodes: user text must stay text" },
        { property: "insertAdjacentHTML", message: "use DOM nodes: user text must stay text" },
      ],
      "no-eval": "error",
      "no-implied-eval": "error",
      "no-new-func": "error",
    },
  },
  {
    // scripts/site --sw's shim: a classic page script and a service worker
    files: ["scripts/site-shim/*.js"],
    languageOptions: {
      ecmaVersion: 2024,
      sourceType: "script",
      globals: { ...globals.browser, ...globals.serviceworker },
    },
  },
  {
    files: ["tests/e2e/**/*.mjs", "scripts/*.mjs", "eslint.config.js"],
    languageOptions: {
      ecmaVersion: 2024,
      sourceType: "module",
      globals: { ...globals.node },
    },
  },
  {
    // page.evaluate / waitForFunction bodies run in the browser
    files: ["tests/e2e/**/*.mjs", "scripts/*.mjs"],
    languageOptions: { globals: { ...globals.node, ...globals.browser } },
  },
];
