// TransformerLens's patching sites as the engine knows them
// (src/report/sites.rs): each site's map axes, and the bundles a link or
// `--sites` may name. tests/www_sites.rs reads this file as text and fails
// when it and the Rust differ, so keep both literals one entry a line.

/** Each site's map axes, outermost first (dest and src are positions). */
export const SITE_AXES = {
  resid_pre: ["layer", "pos"],
  resid_mid: ["layer", "pos"],
  attn_out: ["layer", "pos"],
  mlp_out: ["layer", "pos"],
  z: ["layer", "head"],
  q: ["layer", "head"],
  k: ["layer", "head"],
  v: ["layer", "head"],
  pattern: ["layer", "head"],
  z_by_pos: ["layer", "pos", "head"],
  q_by_pos: ["layer", "pos", "head"],
  k_by_pos: ["layer", "pos", "head"],
  v_by_pos: ["layer", "pos", "head"],
  pattern_by_dest: ["layer", "head", "dest"],
  pattern_dest_src: ["layer", "head", "dest", "src"],
};

/** The bundles of sites, by name (TransformerLens's `get_act_patch_*_every`). */
export const BUNDLES = {
  block_every: ["resid_pre", "attn_out", "mlp_out"],
  head_every: ["z", "q", "k", "v", "pattern"],
  head_every_by_pos: ["z_by_pos", "q_by_pos", "k_by_pos", "v_by_pos", "pattern_by_dest"],
};

/** Whether an axis runs over token positions. */
export const isPositionAxis = (axis) => axis === "pos" || axis === "dest" || axis === "src";
