// What "Recompute live" of a saved report loads, said before anything is
// fetched: the report names its model (report.model: its name and shape), so
// a recompute loads that model where it can be named (a Hub repo id), says
// plainly when it must load another one, and how much it downloads. After
// loading, a model of another shape than the report's is not used.

import { resolveModel } from "./patchlab.js";

const REPO_ID = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/;

/** Bytes of a GPT-2 checkpoint's f32 weights of this shape (report.model), or 0 when the shape is unknown. */
export function weightBytes(m) {
  const { n_layers: L, d_model: d, d_mlp: f, d_vocab: v, n_ctx: c } = m || {};
  if (![L, d, f, v, c].every((x) => Number.isInteger(x) && x > 0)) return 0;
  // embeddings, per layer (two layer norms, qkv, out, the MLP), final layer norm
  const perLayer = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d);
  return 4 * (v * d + c * d + L * perLayer + 2 * d);
}

export function sizeText(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${Math.round(n / 1e6)} MB`;
  if (n >= 1e3) return `${Math.round(n / 1e3)} kB`;
  return `${n} B`;
}

export const shapeText = (m) => `${m.n_layers} layers × ${m.n_heads} heads, d_model ${m.d_model}`;

/** Whether a loaded model (PatchLab.info) has the saved report's shape. */
export function sameShape(info, m) {
  return ["n_layers", "n_heads", "d_model", "d_mlp", "d_vocab"].every((k) => info[k] === m[k]);
}

/**
 * The plan for recomputing `report` live: {spec, sameName, text}. `chosen`
 * is the model the page or element names (a `model` attribute, the Model
 * box), if any. spec: what to load (null: the page's default model, decided
 * only once the reader agrees); text: the question to put before loading.
 */
export function livePlan(report, chosen) {
  const m = report.model || {};
  const name = String(m.name ?? "an unnamed model");
  const bytes = weightBytes(m);
  const size = bytes ? `about ${sizeText(bytes)} of weights` : "its weights";
  const shape = m.n_layers ? ` (${shapeText(m)})` : "";
  if (chosen) {
    let chosenName = chosen;
    try {
      chosenName = resolveModel(chosen).name;
    } catch {
      // refused when loading, with its reason
    }
    if (chosenName === name) {
      return { spec: chosen, sameName: true, text: `Recompute live downloads the report's model, ${name}${shape}: ${size}, then recomputes the figure in this browser.` };
    }
    return {
      spec: chosen,
      sameName: false,
      text: `The report was computed with ${name}${shape}, but this page names another model, ${chosenName}: Recompute live loads ${chosenName} (${size} if it has the report's shape; a model of another shape is not used), and another model gives other numbers than the figure's.`,
    };
  }
  if (REPO_ID.test(name)) {
    return { spec: name, sameName: true, text: `Recompute live downloads the report's model, ${name}${shape}, from the Hugging Face Hub: ${size} (kept in this browser's cache), then recomputes the figure in this browser.` };
  }
  return {
    spec: null,
    sameName: false,
    text: `The report names its model “${name}”${shape}, which cannot be downloaded by that name. Recompute live loads this site's default model instead (${size} if it has the report's shape; a model of another shape is not used): if it is another checkpoint, its numbers differ from the figure's.`,
  };
}
