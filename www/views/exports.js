// The views' CSV and npy exports: one map (a plot's buttons) or every score
// map of a report (the page's "CSV" export).

import { nestedShape } from "../npy.js";
import { SITE_AXES } from "../sites.js";
import { denseFeatureMap, hookLayer, parseFeatureKey } from "./feature-maps.js";

/** A CSV field: quoted when it holds a comma, quote, newline or outer space. */
export function csvField(v) {
  const t = String(v);
  return /[",\r\n]|^\s|\s$/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
}

export const LAYER = { name: "layer" };
export const HEAD = { name: "head" };

/**
 * The CSV and npy exports of a nested map (a plot's `exports`): axes are
 * [{name, labels}] from the outermost level in; an axis with labels (the
 * tokens) gets a second column, `token` (or labelName).
 */
export function mapExports(map, axes, valueName = "value") {
  return {
    csv: () => {
      const head = axes.flatMap((a) => (a.labels ? [a.name, a.labelName || "token"] : [a.name]));
      const lines = [[...head, valueName].map(csvField).join(",")];
      const walk = (x, idx) => {
        if (idx.length === axes.length) {
          const cells = idx.flatMap((i, k) => (axes[k].labels ? [i, csvField(axes[k].labels[i])] : [i]));
          lines.push([...cells, x === null || x === undefined ? "" : x].join(","));
        } else x.forEach((y, i) => walk(y, [...idx, i]));
      };
      walk(map, []);
      return `${lines.join("\n")}\n`;
    },
    npy: () => ({ shape: nestedShape(map), values: map.flat(Infinity) }),
  };
}

/**
 * A CSV of every score map: method, direction, component, layer, index,
 * score. A patching site's map has one line per entry too: its component
 * is the site's name and its index the rest of the entry's indices joined
 * by ":" (resid_pre: pos; z_by_pos: pos:head; pattern_dest_src: head:dest:src).
 * An SAE's feature map (sae:<hook>, sae_by_pos:<hook>) has one line per
 * non-zero cell (a feature equal in both runs scores exactly 0): its layer
 * is the hook's, its index the feature (pos:feature by position).
 */
export function reportCsv(r) {
  const lines = ["method,direction,component,layer,index,score"];
  for (const [m, dirs] of Object.entries(r.results || {})) {
    for (const [d, maps] of Object.entries(dirs)) {
      for (const [c, rows] of Object.entries(maps)) {
        const feature = parseFeatureKey(c);
        if (feature) {
          const { shape, values } = denseFeatureMap(rows);
          const ds = shape[shape.length - 1];
          const layer = hookLayer(feature.hook) ?? "";
          values.forEach((v, i) => {
            if (v === 0) return;
            const index = feature.byPos ? `${Math.floor(i / ds)}:${i % ds}` : String(i);
            lines.push(`${m},${d},${csvField(c)},${layer},${index},${Number.isFinite(v) ? v : ""}`);
          });
          continue;
        }
        if (c !== "heads" && c !== "neurons" && !SITE_AXES[c]) continue;
        const walk = (x, idx) => {
          if (Array.isArray(x)) x.forEach((y, i) => walk(y, [...idx, i]));
          else lines.push(`${m},${d},${c},${idx[0]},${idx.slice(1).join(":")},${x === null ? "" : x}`);
        };
        walk(rows, []);
      }
    }
  }
  return `${lines.join("\n")}\n`;
}
