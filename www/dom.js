// The small DOM helpers every script of the page shares (the lab page, the
// Dataset tab, the report views and plots, the <patch-lab> element). Text
// goes in through textContent only: user text never becomes markup.

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

/** A new element of `tag` with class `cls` and text `text` (both optional). */
export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** A token's text with its spaces and newlines made visible ("·", "⏎"); "∅" when empty. */
export function visibleText(text) {
  return String(text).replace(/ /g, "·").replace(/\n/g, "⏎") || "∅";
}

/** A duration in ms as "12.3 s" or "2 min 5 s"; "…" while it is unknown. */
export function seconds(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "…";
  return ms < 60000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

/** Downloads text or a Blob as a file. */
export function download(name, data, type = "application/octet-stream") {
  const blob = data instanceof Blob ? data : new Blob([data], { type });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 5000);
}

/** A failed fetch of `url`, in words: the browser gives only "Failed to fetch" when CORS or a CSP refused it. */
export function fetchFailure(url, e) {
  if (e instanceof TypeError) {
    const where = new URL(url, document.baseURI);
    const other = where.origin !== location.origin;
    return `the browser could not fetch it (${e.message})${other ? `: it is on another origin (${where.origin}), which must send Access-Control-Allow-Origin (CORS), and this page's Content-Security-Policy must allow it in connect-src` : ": the server is unreachable, or this page's Content-Security-Policy (connect-src) blocks it"}`;
  }
  return e.message;
}
