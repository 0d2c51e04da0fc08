// What the views read of a report's SAE features (schema 4, docs/methods.md
// "SAE features"): the feature maps results.<method>.<direction>["sae:<hook>"]
// ([d_sae], every position patched together) and ["sae_by_pos:<hook>"]
// ([T, d_sae]), each dense (nested arrays) or sparse ({shape, indices:
// row-major flat indices of the non-zero cells, values}); each run's active
// features (features[hook].clean|corrupt: {indices: [[pos, feature]],
// values}); the SAEs (settings.saes) and the features' analysis
// (analysis.features[hook]). Nothing here touches the DOM.

export const SAE_ALL = "sae:";
export const SAE_BY_POS = "sae_by_pos:";

/** The report key of an SAE's map: "sae:<hook>" or "sae_by_pos:<hook>". */
export const featureKey = (hook, byPos = false) => `${byPos ? SAE_BY_POS : SAE_ALL}${hook}`;

/** {hook, byPos} of a feature map's key, or null for any other key. */
export function parseFeatureKey(key) {
  if (typeof key !== "string") return null;
  if (key.startsWith(SAE_BY_POS)) return { hook: key.slice(SAE_BY_POS.length), byPos: true };
  if (key.startsWith(SAE_ALL)) return { hook: key.slice(SAE_ALL.length), byPos: false };
  return null;
}

/** The layer of a TransformerLens hook name ("blocks.8.hook_resid_pre" → 8), or null. */
export function hookLayer(hook) {
  const m = /^blocks\.(\d+)\./.exec(String(hook));
  return m ? Number(m[1]) : null;
}

const isNum = (v) => v === null || typeof v === "number";
const isIndex = (v, n) => Number.isInteger(v) && v >= 0 && v < n;

/** Whether a feature map is dense nested arrays of `shape` or a sparse map of it (numbers or null everywhere). */
export function isFeatureMap(m, shape) {
  if (Array.isArray(m)) {
    const ok = (x, k) => (k === shape.length ? isNum(x) : Array.isArray(x) && x.length === shape[k] && x.every((y) => ok(y, k + 1)));
    return ok(m, 0);
  }
  if (!m || typeof m !== "object") return false;
  const { shape: s, indices, values } = m;
  if (!Array.isArray(s) || s.length !== shape.length || s.some((d, k) => d !== shape[k])) return false;
  const size = s.reduce((a, b) => a * b, 1);
  return Array.isArray(indices) && Array.isArray(values) && indices.length === values.length && indices.every((i) => isIndex(i, size)) && values.every(isNum);
}

const dense = new WeakMap();
/**
 * A feature map as {shape, values: Float64Array} (row-major; null → NaN;
 * cells a sparse map leaves out are 0). Cached per map object.
 */
export function denseFeatureMap(m) {
  if (!m || typeof m !== "object") return null;
  let d = dense.get(m);
  if (d) return d;
  if (Array.isArray(m)) {
    const shape = [];
    for (let x = m; Array.isArray(x); x = x[0]) shape.push(x.length);
    const flat = m.flat(Infinity);
    d = { shape, values: Float64Array.from(flat, (v) => (v === null ? NaN : v)) };
  } else {
    const size = m.shape.reduce((a, b) => a * b, 1);
    const values = new Float64Array(size);
    m.indices.forEach((i, k) => (values[i] = m.values[k] === null ? NaN : m.values[k]));
    d = { shape: [...m.shape], values };
  }
  dense.set(m, d);
  return d;
}

/** The map of method m, direction d, an SAE's hook, all positions or by position, dense ({shape, values}); null when absent. */
export function featureMap(r, m, d, hook, byPos = false) {
  const raw = r?.results?.[m]?.[d]?.[featureKey(hook, byPos)];
  return raw ? denseFeatureMap(raw) : null;
}

/** The SAEs whose features the report scored, in settings.saes order (then any other hook a map names). */
export function saeHooks(r) {
  const out = [];
  for (const s of r?.settings?.saes || []) if (typeof s?.hook_name === "string" && !out.includes(s.hook_name)) out.push(s.hook_name);
  for (const dirs of Object.values(r?.results || {})) {
    for (const maps of Object.values(dirs || {})) {
      for (const k of Object.keys(maps || {})) {
        const p = parseFeatureKey(k);
        if (p && !out.includes(p.hook)) out.push(p.hook);
      }
    }
  }
  return out.filter((h) => Object.values(r?.results || {}).some((dirs) => Object.values(dirs || {}).some((maps) => maps?.[featureKey(h)] || maps?.[featureKey(h, true)])));
}

/** What settings.saes records of the SAE on `hook` ({name, hook_name, architecture, d_in, d_sae, neuronpedia_id?}), or a stand-in. */
export function saeInfo(r, hook) {
  const s = (r?.settings?.saes || []).find((x) => x?.hook_name === hook);
  if (s) return s;
  const m = Object.values(r?.results || {}).flatMap((dirs) => Object.values(dirs || {})).map((maps) => maps?.[featureKey(hook)]).find(Boolean);
  const shape = m ? denseFeatureMap(m).shape : [0];
  return { name: hook, hook_name: hook, architecture: "?", d_in: null, d_sae: shape[shape.length - 1] };
}

/**
 * A Neuronpedia id as the report gives it ("gpt2-small/8-res-jb"), when it
 * has that form (a model and an SAE, letters, digits, "-", "_", "."), else
 * null: it only ever becomes a path under https://www.neuronpedia.org/.
 */
export function neuronpediaId(info) {
  const id = info?.neuronpedia_id;
  return typeof id === "string" && /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/.test(id) ? id : null;
}

/** Neuronpedia's page of a feature of an SAE with that id. */
export function neuronpediaUrl(id, feature) {
  return `https://www.neuronpedia.org/${id.split("/").map(encodeURIComponent).join("/")}/${Number(feature)}`;
}

/**
 * One run's activations of some features by position: Map feature →
 * Float64Array(T) (0 where the feature is not active), from
 * features[hook][run].
 */
export function activationsOf(r, hook, run, features, T) {
  const want = new Set(features);
  const out = new Map(features.map((f) => [f, new Float64Array(T)]));
  const a = r?.features?.[hook]?.[run];
  if (!a) return out;
  a.indices.forEach(([p, f], k) => {
    if (want.has(f) && p < T) out.get(f)[p] = a.values[k] === null ? NaN : a.values[k];
  });
  return out;
}

/**
 * Checks the SAE parts of a report: feature maps of the right shapes
 * (d_sae from settings.saes, T tokens), settings.saes, features and
 * analysis.features. `bad(what)` throws.
 */
export function checkFeatureParts(r, n, bad) {
  const saes = r.settings?.saes;
  if (saes !== undefined) {
    if (!Array.isArray(saes) || !saes.every((s) => s && typeof s.hook_name === "string" && typeof s.name === "string" && Number.isInteger(s.d_sae) && s.d_sae > 0)) bad("settings.saes is not a list of SAEs ({name, hook_name, d_sae, …})");
  }
  const dSae = (hook) => (saes || []).find((s) => s.hook_name === hook)?.d_sae;
  for (const [meth, dirs] of Object.entries(r.results || {})) {
    for (const [dir, maps] of Object.entries(dirs || {})) {
      for (const [key, m] of Object.entries(maps || {})) {
        const p = parseFeatureKey(key);
        if (!p) continue;
        const where = `results.${meth}.${dir}["${key}"]`;
        let ds = dSae(p.hook);
        if (ds === undefined) {
          const s = Array.isArray(m) ? (p.byPos ? m[0]?.length : m.length) : m?.shape?.[m.shape.length - 1];
          if (!Number.isInteger(s)) bad(`${where} is not a feature map`);
          ds = s;
        }
        if (p.byPos && n === null) bad(`${where} needs the report's tokens`);
        const shape = p.byPos ? [n, ds] : [ds];
        if (!isFeatureMap(m, shape)) bad(`${where} is not a [${shape.join(", ")}] feature map (nested arrays, or {shape, indices, values}) of numbers`);
      }
    }
  }
  for (const [hook, runs] of Object.entries(r.features || {})) {
    const ds = dSae(hook) ?? Infinity;
    for (const run of ["clean", "corrupt"]) {
      const a = runs?.[run];
      const ok = a && Array.isArray(a.indices) && Array.isArray(a.values) && a.indices.length === a.values.length
        && a.indices.every((c) => Array.isArray(c) && c.length === 2 && isIndex(c[0], n ?? Infinity) && isIndex(c[1], ds)) && a.values.every(isNum);
      if (!ok) bad(`features["${hook}"].${run} is not {indices: [[position, feature]], values}`);
    }
  }
  for (const [hook, a] of Object.entries(r.analysis?.features || {})) {
    if (!a || typeof a !== "object" || (a.features !== undefined && !(Array.isArray(a.features) && a.features.every(Number.isInteger)))) bad(`analysis.features["${hook}"]`);
    for (const sets of Object.values(a.latent || {})) {
      if (!sets || !["and", "or"].every((k) => sets[k] === undefined || (Array.isArray(sets[k]) && sets[k].every(Number.isInteger)))) bad(`analysis.features["${hook}"].latent`);
    }
  }
}

/** A report's feature maps as .npy entries of `patchlab analyze --npy`: <method>_<direction>_sae_<hook>.npy and …_sae_by_pos_<hook>.npy. hooks: only these SAEs. */
export function featureNpyEntries(r, npyBytes, hooks = null) {
  const out = [];
  for (const [m, dirs] of Object.entries(r.results || {})) {
    for (const [d, maps] of Object.entries(dirs || {})) {
      for (const [key, raw] of Object.entries(maps || {})) {
        const p = parseFeatureKey(key);
        if (!p || (hooks && !hooks.includes(p.hook))) continue;
        const { shape, values } = denseFeatureMap(raw);
        out.push([`${m}_${d}_${key.replace(":", "_")}.npy`, npyBytes(shape, values)]);
      }
    }
  }
  return out;
}
