// What a run will cost, in words, before Run (the engine's estimate():
// FLOPs per phase at the rate calibrate() measured on this device, and the
// memory the runs keep). Plain text only: the page puts it in with
// textContent.

/** A rough duration: "about 3 s", "about 40 s", "about 20 min", "about 2.5 h". */
export function roughly(ms) {
  const s = ms / 1000;
  if (s < 1) return "under a second";
  if (s < 20) return `about ${Math.round(s)} s`;
  if (s < 90) return `about ${Math.round(s / 5) * 5} s`;
  if (s < 90 * 60) return `about ${Math.round(s / 60)} min`;
  return `about ${(s / 3600).toFixed(1)} h`;
}

/** Bytes as "1.2 GB" or "340 MB". */
function size(b) {
  return b >= 1e9 ? `${(b / 1e9).toFixed(1)} GB` : `${Math.round(b / 1e6)} MB`;
}

/** FLOPs of the phases of one component kind. */
function kindFlops(est, kind) {
  return est.phases.filter((p) => p.component === kind).reduce((n, p) => n + p.flops, 0);
}

/**
 * The line next to Run: {text, headsFirst, tooLong}. headsFirst: the run is
 * long here and mostly neurons, so the page offers to run the heads alone
 * first; tooLong: the runs would not fit WebAssembly's memory (the
 * analysis refuses such a pair; the text says why and what to do).
 */
export function costLine(est) {
  const where = est.backend === "gpu" ? "on this GPU (WebGPU)" : "on this CPU (WebAssembly)";
  if (est.memory_limit && est.memory_bytes > est.memory_limit) {
    return {
      text: `Too long for this tab: with the model the two runs would keep ${size(est.memory_bytes)}, more than the ${size(est.memory_limit)} WebAssembly can hold. Shorten the prompts, or run the native CLI (patchlab analyze).`,
      headsFirst: false,
      tooLong: true,
    };
  }
  const memory = est.memory_limit && est.memory_bytes > 0.5 * est.memory_limit ? ` It needs ${size(est.memory_bytes)} of memory.` : "";
  if (!Number.isFinite(est.seconds)) {
    return { text: `About ${(est.flops / 1e9).toFixed(1)} GFLOP of work; measuring this device's speed…${memory}`, headsFirst: false, tooLong: false };
  }
  const total = est.seconds * 1000;
  let text = `Estimate: ${roughly(total)} ${where}`;
  const neurons = kindFlops(est, "neurons");
  const heads = kindFlops(est, "heads");
  let headsFirst = false;
  if (neurons > 0 && heads > 0) {
    const share = neurons / est.flops;
    text += `; the neurons take ${roughly(share * total)} of it`;
    headsFirst = total > 60000 && share > 0.5;
    if (headsFirst) text += `, the heads alone ${roughly((1 - share) * total)}`;
  }
  // SAE features (their AP assumes a typical number of changed features: the estimate is rougher)
  const features = est.phases.filter((p) => p.method === "features").reduce((n, p) => n + p.flops, 0);
  if (features > 0 && features < est.flops) text += `; the SAE features ${roughly((features / est.flops) * total)} of it`;
  return { text: `${text}.${memory}`, headsFirst, tooLong: false };
}
