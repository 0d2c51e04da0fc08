// The report's score maps as .npy files in a .zip (stored, no compression):
// the same files `patchlab analyze --npy DIR` writes
// (<method>_<direction>_<heads|neurons>.npy, shape [layers, components], float32;
// <method>_<direction>_<site>.npy in the site's shape, e.g. [layers, positions];
// ig_convergence_delta_<direction>_<kind>.npy, shape [layers]; SAE features
// <method>_<direction>_sae_<hook>.npy [d_sae] and …_sae_by_pos_<hook>.npy [T, d_sae]).

import { featureNpyEntries, parseFeatureKey } from "./views/feature-maps.js";

/** One float32 .npy file (format 1.0, header padded to 64 bytes). */
export function npyBytes(shape, values) {
  const dims = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${dims}, }`;
  const total = 10 + header.length + 1;
  header += " ".repeat(Math.ceil(total / 64) * 64 - total) + "\n";
  const out = new Uint8Array(10 + header.length + values.length * 4);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  const dv = new DataView(out.buffer, 10 + header.length);
  values.forEach((v, i) => dv.setFloat32(i * 4, v === null || v === undefined ? NaN : v, true));
  return out;
}

let crcTable = null;
function crc32(bytes) {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = crcTable[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A .zip of [name, bytes] entries, stored without compression. */
export function zip(entries) {
  const parts = [];
  const central = [];
  let offset = 0;
  const enc = new TextEncoder();
  for (const [name, data] of entries) {
    const n = enc.encode(name);
    const crc = crc32(data);
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true);
    local.setUint16(4, 20, true);
    local.setUint32(14, crc, true);
    local.setUint32(18, data.length, true);
    local.setUint32(22, data.length, true);
    local.setUint16(26, n.length, true);
    const cd = new DataView(new ArrayBuffer(46));
    cd.setUint32(0, 0x02014b50, true);
    cd.setUint16(4, 20, true);
    cd.setUint16(6, 20, true);
    cd.setUint32(16, crc, true);
    cd.setUint32(20, data.length, true);
    cd.setUint32(24, data.length, true);
    cd.setUint16(28, n.length, true);
    cd.setUint32(42, offset, true);
    parts.push(new Uint8Array(local.buffer), n, data);
    central.push(new Uint8Array(cd.buffer), n);
    offset += 30 + n.length + data.length;
  }
  const size = central.reduce((s, p) => s + p.length, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, entries.length, true);
  end.setUint16(10, entries.length, true);
  end.setUint32(12, size, true);
  end.setUint32(16, offset, true);
  return new Blob([...parts, ...central, new Uint8Array(end.buffer)], { type: "application/zip" });
}

/** The shape of a nested array of numbers (a map in TransformerLens's shape): each level's length, from its first element. */
export function nestedShape(map) {
  const shape = [];
  for (let x = map; Array.isArray(x); x = x[0]) shape.push(x.length);
  return shape;
}

/**
 * Every score map of a report as .npy files, zipped: heads and neurons
 * [layers, components]; the patching sites (`<method>_<direction>_<site>.npy`)
 * in their own shapes, as `patchlab analyze --npy` writes them.
 */
export function reportNpyZip(r) {
  const entries = [];
  for (const [m, dirs] of Object.entries(r.results || {})) {
    for (const [d, maps] of Object.entries(dirs)) {
      for (const c of ["heads", "neurons"]) {
        const rows = maps[c];
        if (rows) entries.push([`${m}_${d}_${c}.npy`, npyBytes([rows.length, rows[0]?.length || 0], rows.flat())]);
      }
      for (const [site, map] of Object.entries(maps)) {
        if (site !== "heads" && site !== "neurons" && !parseFeatureKey(site) && Array.isArray(map)) entries.push([`${m}_${d}_${site}.npy`, npyBytes(nestedShape(map), map.flat(Infinity))]);
      }
    }
  }
  entries.push(...featureNpyEntries(r, npyBytes));
  for (const [d, deltas] of Object.entries(r.ig_convergence_delta || {})) {
    for (const c of ["heads", "neurons"]) {
      if (deltas[c]) entries.push([`ig_convergence_delta_${d}_${c}.npy`, npyBytes([deltas[c].length], deltas[c])]);
    }
  }
  return zip(entries);
}
