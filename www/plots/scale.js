// What the plots' numbers look like: the diverging colour scale, number
// formats, axis ticks, and Pearson r with its least-squares line.

// RdBu (ColorBrewer), blue for negative, red for positive, white at 0.
const STOPS = [
  [5, 48, 97],
  [33, 102, 172],
  [67, 147, 195],
  [146, 197, 222],
  [209, 229, 240],
  [247, 247, 247],
  [253, 219, 199],
  [244, 165, 130],
  [214, 96, 77],
  [178, 24, 43],
  [103, 0, 31],
];
const NAN_RGB = [170, 170, 170];
/** A cell whose row has not been computed yet. */
export const MISSING_RGB = [236, 236, 240];

/** Colour of t ∈ [-1, 1] (clamped) as [r, g, b]. */
export function diverging(t) {
  if (!Number.isFinite(t)) return NAN_RGB;
  const x = (Math.max(-1, Math.min(1, t)) + 1) * 0.5 * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x));
  const f = x - i;
  const a = STOPS[i];
  const b = STOPS[i + 1];
  return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
}

/** [r, g, b] as a CSS colour. */
export const css = (c) => `rgb(${c[0] | 0},${c[1] | 0},${c[2] | 0})`;

/** Largest finite |v| of a map (rows may be missing while results stream in). */
export function maxAbs(rows) {
  let m = 0;
  for (const r of rows || []) {
    if (!r) continue;
    for (const v of r) if (v !== null && Number.isFinite(v) && Math.abs(v) > m) m = Math.abs(v);
  }
  return m;
}

/** A score as a number: JSON's null (undefined) is NaN. */
export const num = (v) => (v === null || v === undefined ? NaN : v);

/** Formats a score for tooltips and axes. */
export function fmt(v, digits = 4) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "undefined";
  if (v !== 0 && (Math.abs(v) >= 1e4 || Math.abs(v) < 1e-3)) return v.toExponential(digits - 1).replace("-", "−");
  return v.toFixed(digits).replace("-", "−");
}

/** Tick labels with as many decimals as the tick step needs. */
export function tickLabel(ticks) {
  const step = ticks.length > 1 ? Math.abs(ticks[1] - ticks[0]) : 1;
  if (step < 1e-3 || step >= 1e5) return (t) => fmt(t, 2);
  const d = Math.max(0, Math.ceil(-Math.log10(step) + 1e-9) + (step / 10 ** Math.floor(Math.log10(step)) === 2.5 ? 1 : 0));
  return (t) => t.toFixed(d).replace("-", "−");
}

/** About n round ticks (steps of 1, 2, 2.5 or 5 × 10^k) from lo to hi. */
export function niceTicks(lo, hi, n = 5) {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((s) => s * mag).find((s) => s >= step0) || step0;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

/** Pearson r of two arrays, ignoring pairs with a non-finite value. */
export function pearson(xs, ys) {
  let n = 0, sx = 0, sy = 0;
  for (let i = 0; i < xs.length; i++) {
    const x = num(xs[i]), y = num(ys[i]);
    if (Number.isFinite(x) && Number.isFinite(y)) { n++; sx += x; sy += y; }
  }
  if (n < 2) return null;
  const mx = sx / n, my = sy / n;
  let sxx = 0, syy = 0, sxy = 0;
  for (let i = 0; i < xs.length; i++) {
    const x = num(xs[i]), y = num(ys[i]);
    if (Number.isFinite(x) && Number.isFinite(y)) { sxx += (x - mx) ** 2; syy += (y - my) ** 2; sxy += (x - mx) * (y - my); }
  }
  if (sxx === 0 || syy === 0) return null;
  return { r: sxy / Math.sqrt(sxx * syy), slope: sxy / sxx, intercept: my - (sxy / sxx) * mx };
}
