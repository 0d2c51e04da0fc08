// The lab page's "SAE features" box: sparse autoencoders in SAELens's
// format loaded on the model — one of SAELens's GPT-2 small releases from
// the Hugging Face Hub (release and SAE chosen from sae-releases.js, byte
// progress, Cancel, Cache Storage), or local files (cfg.json +
// sae_weights.safetensors) —, the loaded ones listed with a Remove button,
// and "Score SAE features", which adds saes: ["all"] to the run. Releases
// the lab cannot encode say why when picked; what the engine refuses (the
// SAE's width, hook, layout, the memory left) is shown in its words.
// User text (file names, SAE names from cfg.json or the URL) only ever
// reaches the page through textContent.

import { $, el } from "./dom.js";
import { SAE_RELEASES, saeRelease } from "./sae-releases.js";

/** "12.3 MB". */
function bytes(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(0)} kB`;
  return `${n} B`;
}

/**
 * The SAE files among those chosen: {cfg, weights} (File objects) or
 * {error} saying what is missing or not readable.
 */
export function pickSaeFiles(files) {
  const list = [...files];
  const names = list.map((f) => f.name).join(", ") || "none";
  if (list.some((f) => /\.(pt|pth|ckpt|bin)$/i.test(f.name)) && !list.some((f) => f.name.endsWith(".safetensors"))) {
    return { error: `${names}: PyTorch checkpoints are not read (they are pickles). Save the SAE with SAELens (SAE.from_pretrained(release, id).save_model(DIR), or sae.save_model(DIR)) and choose DIR's cfg.json and sae_weights.safetensors.` };
  }
  const cfg = list.find((f) => f.name === "cfg.json") || list.find((f) => /\.json$/i.test(f.name));
  const weights = list.find((f) => f.name === "sae_weights.safetensors") || list.find((f) => /\.safetensors$/i.test(f.name) && !/sparsity/i.test(f.name));
  const missing = [!cfg && "cfg.json", !weights && "sae_weights.safetensors"].filter(Boolean);
  if (missing.length) return { error: `missing ${missing.join(" and ")} among the files chosen (${names}): choose both files of one SAE folder (sparsity.safetensors is not needed)` };
  return { cfg, weights };
}

export class SaeBox {
  /**
   * lab(): the loaded PatchLab (or null); onChange(): the loaded SAEs or
   * the checkbox changed (the page revalidates, re-estimates and updates
   * its URL).
   */
  constructor({ lab, onChange }) {
    this.lab = lab;
    this.onChange = onChange;
    this.loaded = []; // SaeInfo, in the engine's (layer) order
    this.sources = new Map(); // hook → "release/id" of an SAE loaded from the Hub (for share links)
    this.busy = null; // AbortController of a download
    this.fillReleases();
    $("sae-release").addEventListener("change", () => this.fillIds());
    $("sae-id").addEventListener("change", () => this.describe());
    $("sae-load").addEventListener("click", () => this.loadPicked());
    $("sae-files").addEventListener("click", () => $("sae-file-input").click());
    $("sae-file-input").addEventListener("change", () => {
      const files = [...$("sae-file-input").files];
      $("sae-file-input").value = ""; // the same files again must fire "change" again
      if (files.length) this.loadFiles(files);
    });
    $("sae-cancel").addEventListener("click", () => this.busy?.abort());
    $("sae-score").addEventListener("change", () => this.onChange?.());
    this.render();
  }

  /** The release select: every GPT-2 small release of SAELens, those the lab cannot load marked. */
  fillReleases() {
    const s = $("sae-release");
    s.replaceChildren(
      ...SAE_RELEASES.map((r) => {
        const o = el("option", null, r.loadable ? r.release : `${r.release} (cannot be loaded here)`);
        o.value = r.release;
        return o;
      }),
    );
    s.value = SAE_RELEASES.some((r) => r.release === "gpt2-small-res-jb") ? "gpt2-small-res-jb" : SAE_RELEASES[0]?.release;
    this.fillIds();
  }

  /** The SAE select of the chosen release. */
  fillIds(want) {
    const r = saeRelease($("sae-release").value);
    const s = $("sae-id");
    s.replaceChildren(
      ...(r?.saes || []).map((x) => {
        const o = el("option", null, x.id === x.hook ? x.id : `${x.id} (${x.hook})`);
        o.value = x.id;
        return o;
      }),
    );
    if (want && r?.saes.some((x) => x.id === want)) s.value = want;
    this.describe();
  }

  /** Why the chosen release cannot be loaded, or where its SAE is. */
  describe() {
    const r = saeRelease($("sae-release").value);
    const sae = r?.saes.find((x) => x.id === $("sae-id").value);
    const box = $("sae-reason");
    box.classList.toggle("warning", !!r && !r.loadable);
    if (!r) box.textContent = "";
    else if (!r.loadable) box.textContent = `${r.release} cannot be loaded here: ${r.reason}.`;
    else box.textContent = `${r.repo}, folder ${sae?.path ?? "?"} (hook ${sae?.hook ?? "?"}${sae?.neuronpedia ? `, Neuronpedia ${sae.neuronpedia}` : ""}).`;
    box.hidden = !r;
    this.update();
  }

  /** Whether "Score SAE features" is ticked. */
  wanted() {
    return $("sae-score").checked;
  }

  setWanted(on) {
    $("sae-score").checked = !!on;
  }

  /** The run's `saes`: ["all"] when ticked and some SAE is loaded, else undefined. */
  request() {
    return this.wanted() && this.loaded.length ? ["all"] : undefined;
  }

  /** "release/id" of every SAE loaded from the Hub (the share link's sae=). */
  hubSpecs() {
    return this.loaded.map((s) => this.sources.get(s.hook_name)).filter(Boolean);
  }

  /** The model changed (a new worker): its SAEs are gone. */
  modelChanged() {
    const had = this.loaded.length;
    this.loaded = [];
    this.sources.clear();
    this.error("");
    this.render();
    if (had) this.say(`The model changed: its ${had === 1 ? "SAE was" : `${had} SAEs were`} unloaded; load ${had === 1 ? "it" : "them"} again for this model.`);
  }

  update() {
    const lab = this.lab();
    const r = saeRelease($("sae-release").value);
    $("sae-load").disabled = !lab || !!this.busy || !r?.loadable;
    $("sae-files").disabled = !lab || !!this.busy;
    $("sae-cancel").hidden = !this.busy;
  }

  say(text) {
    $("sae-text").textContent = text;
    $("sae-status").hidden = !text;
  }

  error(text) {
    $("sae-error").textContent = text;
    $("sae-error").hidden = !text;
  }

  /** The loaded SAEs, each with a Remove button. */
  render() {
    const list = $("sae-list");
    list.replaceChildren(
      ...this.loaded.map((s) => {
        const li = el("li");
        li.dataset.hook = s.hook_name;
        li.append(el("strong", null, s.hook_name), document.createTextNode(` — ${s.name} · ${s.architecture} · d_sae ${s.d_sae}${s.neuronpedia_id ? ` · Neuronpedia ${s.neuronpedia_id}` : ""} `));
        const rm = el("button", "small", "Remove");
        rm.type = "button";
        rm.dataset.action = "remove-sae";
        rm.addEventListener("click", () => this.remove(s.hook_name));
        li.append(rm);
        return li;
      }),
    );
    $("sae-none").hidden = this.loaded.length > 0;
    this.update();
  }

  async refresh() {
    const lab = this.lab();
    this.loaded = lab ? await lab.saes() : [];
    for (const h of [...this.sources.keys()]) if (!this.loaded.some((s) => s.hook_name === h)) this.sources.delete(h);
    this.render();
    this.onChange?.();
  }

  /** Loads the release and SAE chosen in the selects. */
  loadPicked() {
    return this.loadHub($("sae-release").value, $("sae-id").value);
  }

  /** Loads one SAE of a release from the Hub with a byte progress bar; resolves true when it loaded. */
  async loadHub(release, id) {
    const lab = this.lab();
    if (!lab || this.busy) return false;
    return this.run(`${release}/${id}`, (signal, onProgress) => lab.loadSaeFromHub(release, id, { signal, onProgress }), `${release}/${id}`);
  }

  /** Loads an SAE from local files (cfg.json + sae_weights.safetensors). */
  async loadFiles(files) {
    const lab = this.lab();
    if (!lab || this.busy) return false;
    const picked = pickSaeFiles(files);
    if (picked.error) {
      this.error(`Could not load the SAE: ${picked.error}`);
      return false;
    }
    return this.run(`${picked.cfg.name} + ${picked.weights.name}`, () => lab.loadSae({ cfg: picked.cfg, weights: picked.weights }), null);
  }

  /** One load: progress in the status line, Cancel, the engine's refusal as the error; `spec` kept for share links. */
  async run(label, load, spec) {
    const ctrl = new AbortController();
    this.busy = ctrl;
    this.error("");
    $("sae-progress").removeAttribute("value");
    this.say(`Loading ${label}…`);
    this.update();
    const onProgress = (p) => {
      if (p.phase === "sae-weights") {
        if (p.total) $("sae-progress").value = p.loaded / p.total;
        this.say(`${p.cached ? "Reading" : "Downloading"} sae_weights.safetensors: ${bytes(p.loaded)}${p.total ? ` of ${bytes(p.total)}` : ""}`);
      } else if (p.phase === "resume") {
        this.say(`The connection broke after ${bytes(p.loaded)} of ${bytes(p.total)}: resuming the download (attempt ${p.attempt})…`);
      } else if (p.phase === "sae-building") {
        $("sae-progress").removeAttribute("value");
        this.say("Preparing the SAE…");
      } else this.say("Reading cfg.json…");
    };
    try {
      const info = await load(ctrl.signal, onProgress);
      if (spec) this.sources.set(info.hook_name, spec);
      else this.sources.delete(info.hook_name);
      $("sae-progress").value = 1;
      this.say(`Loaded ${info.name}: ${info.hook_name}, ${info.architecture}, d_sae ${info.d_sae}.`);
      document.body.dataset.saes = String((Number(document.body.dataset.saes) || 0) + 1);
      if (!this.wanted()) this.setWanted(true);
      this.busy = null;
      await this.refresh();
      return true;
    } catch (e) {
      this.say("");
      if (e.name === "AbortError") this.say("Cancelled: no SAE was loaded.");
      else this.error(`Could not load the SAE: ${e.message}`);
      document.body.dataset.saeErrors = String((Number(document.body.dataset.saeErrors) || 0) + 1);
      return false;
    } finally {
      this.busy = null;
      this.update();
    }
  }

  async remove(hook) {
    const lab = this.lab();
    if (!lab) return;
    try {
      await lab.removeSae(hook);
      this.sources.delete(hook);
      this.say(`Removed the SAE on ${hook}.`);
    } catch (e) {
      this.error(`Could not remove the SAE: ${e.message}`);
    }
    await this.refresh();
  }
}
