// Builds the <patch-lab> elements of embed-demo.html from its URL parameters
// (attributes are set with setAttribute: values stay text).
const params = new URLSearchParams(location.search);
const NAMES = ["report", "clean", "corrupt", "correct", "incorrect", "methods", "directions", "components", "sites", "view", "site", "head", "method", "direction", "model", "bos", "ig-steps", "src", "edges", "select", "steps", "exact", "gpu", "sae", "hook"];
const el = document.createElement("patch-lab");
for (const n of NAMES) if (params.has(n)) el.setAttribute(n, params.get(n));
if (!params.has("report") && !params.has("clean")) {
  el.setAttribute("clean", "When Mary and John went to the store, John gave a drink to");
  el.setAttribute("corrupt", "When Mary and John went to the store, Mary gave a drink to");
  el.setAttribute("correct", " Mary");
  el.setAttribute("incorrect", " John");
}
document.getElementById("demo").append(el);
