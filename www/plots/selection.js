// What the plots of one report share: the pinned component (Selection) and
// the components chosen for mean ablation (Ablation), and how a component
// is named.

/** The pinned component, shared by all plots of a report. */
export class Selection {
  constructor() {
    this.pinned = null; // {component: "heads"|"neurons", layer, index}
    this.listeners = new Set();
  }
  toggle(p) {
    const same = this.pinned && p && this.pinned.component === p.component && this.pinned.layer === p.layer && this.pinned.index === p.index;
    this.pinned = same ? null : p;
    for (const f of this.listeners) f(this.pinned);
  }
  on(f) {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }
}

/**
 * The components chosen for mean ablation, shared by the heatmaps of a
 * report: shift-click toggles one; with `mode` on, a plain click does too.
 */
export class Ablation {
  constructor() {
    this.items = new Map(); // "heads:l:i" -> {component, layer, index}
    this.mode = false;
    this.listeners = new Set();
  }
  static key(p) {
    return `${p.component}:${p.layer}:${p.index}`;
  }
  has(component, layer, index) {
    return this.items.has(`${component}:${layer}:${index}`);
  }
  get size() {
    return this.items.size;
  }
  /** Items sorted by kind, layer, index. */
  list() {
    return [...this.items.values()].sort((a, b) => a.component.localeCompare(b.component) || a.layer - b.layer || a.index - b.index);
  }
  /** [[layer, index]] of one kind, as `PatchLab.ablate` takes them. */
  pairs(component) {
    return this.list().filter((p) => p.component === component).map((p) => [p.layer, p.index]);
  }
  toggle(p) {
    const k = Ablation.key(p);
    if (this.items.has(k)) this.items.delete(k);
    else this.items.set(k, { component: p.component, layer: p.layer, index: p.index });
    this.emit(true);
  }
  /** Replaces the set (items: [{component, layer, index}]). */
  set(items, changed = true) {
    this.items = new Map(items.map((p) => [Ablation.key(p), { component: p.component, layer: p.layer, index: p.index }]));
    this.emit(changed);
  }
  setMode(on) {
    this.mode = !!on;
    this.emit(false);
  }
  /** changed: whether the set itself changed (not only the mode). */
  emit(changed) {
    for (const f of this.listeners) f(changed);
  }
  on(f) {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }
}

/** "L3 H5" (a head) or "L3 N512" (a neuron). */
export function componentLabel(component, layer, index) {
  return component === "heads" ? `L${layer} H${index}` : `L${layer} N${index}`;
}
