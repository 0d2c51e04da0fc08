// The JSON report: what `patchlab analyze --out` writes, what
// PatchLab.analyze() resolves to and what <patch-lab report="…"> renders.
// Written by hand from docs/report.md ("The schema"); field names follow
// TransformerLens. Score maps are nested arrays, outermost axis first; a
// non-finite score (a zero AP denominator) is null.

/** A score, or null where it is not finite. */
export type Score = number | null;

export type Method = "ap" | "ig" | "ig_norm" | "atp";
export type Direction = "clean_to_corrupt" | "corrupt_to_clean";
export type Component = "heads" | "neurons";
/** TransformerLens's patching sites (src/report/sites.rs, www/sites.js). */
export type Site =
  | "resid_pre"
  | "resid_mid"
  | "attn_out"
  | "mlp_out"
  | "z"
  | "q"
  | "k"
  | "v"
  | "pattern"
  | "z_by_pos"
  | "q_by_pos"
  | "k_by_pos"
  | "v_by_pos"
  | "pattern_by_dest"
  | "pattern_dest_src";
/** Names `sites` accepts besides the sites themselves: bundles, components and DLA. */
export type SiteOrBundle = Site | Component | "dla" | "block_every" | "head_every" | "head_every_by_pos";
/** "logit_diff", or "greater_than:YY" (the Greater-Than task). */
export type MetricName = "logit_diff" | `greater_than:${string}`;

export interface Token {
  id: number;
  text: string;
}

export interface Prediction extends Token {
  logit: number;
  prob: number;
}

export interface ModelInfo {
  name: string;
  n_layers: number;
  n_heads: number;
  d_model: number;
  d_mlp: number;
  n_ctx: number;
  d_vocab: number;
}

export interface Prompts {
  clean: string;
  corrupt: string;
  correct: string;
  incorrect: string;
  bos: boolean;
  metric: MetricName;
}

/**
 * A map written sparse (most SAE feature maps): its shape, the row-major
 * flat indices of its non-zero cells and their values; every other cell is 0.
 */
export interface SparseMap {
  shape: number[];
  indices: number[];
  values: Score[];
}

/** An SAE feature map: "sae:<hook>" [d_sae] or "sae_by_pos:<hook>" [T][d_sae], dense or sparse. */
export type FeatureMap = Score[] | Score[][] | SparseMap;

/**
 * One direction's maps: heads [L][H], neurons [L][d_mlp], the sites asked
 * for (e.g. resid_pre [L][T], q_by_pos [L][T][H]) and the SAE features'
 * maps (`sae:<hook>` [d_sae], `sae_by_pos:<hook>` [T][d_sae]; schema 4).
 */
export interface DirectionMaps {
  heads?: Score[][];
  neurons?: Score[][];
  [site: string]: Score[] | Score[][] | Score[][][] | Score[][][][] | SparseMap | undefined;
}

/** An SAE as a report records it (settings.saes) and PatchLab.saes() lists it. */
export interface SaeInfo {
  /** What it was called: "gpt2-small-res-jb/blocks.8.hook_resid_pre" from the Hub, its folder's name, … */
  name: string;
  /** The TransformerLens hook it reads: "blocks.8.hook_resid_pre", "blocks.0.attn.hook_z", … */
  hook_name: string;
  architecture: "standard" | "jumprelu" | "topk";
  d_in: number;
  d_sae: number;
  /** Neuronpedia's id of the SAE ("gpt2-small/8-res-jb"): a feature's page is https://www.neuronpedia.org/<id>/<feature>. */
  neuronpedia_id?: string;
}

/** One run's active SAE features: every (position, feature) with a non-zero activation, and that activation. */
export interface ActiveFeatures {
  indices: [number, number][];
  values: number[];
}

/** The analysis of one SAE's feature maps over all positions (analysis.features[hook]). */
export interface FeatureAnalysis {
  /** The features that can score (a non-zero cell in some map), ascending; asymmetry is over these. */
  features: number[];
  correlations: Record<string, Score>;
  correlations_raw: Record<string, Score>;
  asymmetry: Partial<Record<"ig_norm" | "ap" | "atp", Score[]>>;
  /** Latent sets: feature indices. */
  latent: Partial<Record<"ig_norm" | "ap" | "atp", { and: number[]; or: number[] }>>;
  overlap: { and?: Score; or?: Score };
  /** [feature, score], largest |score| first. */
  top: Partial<Record<Method, Partial<Record<Direction, [number, number][]>>>>;
}

export type Results = Partial<Record<Method, Partial<Record<Direction, DirectionMaps>>>>;

export interface TopEntry {
  layer: number;
  index: number;
  score: number;
}

export interface Analysis {
  percentile: number;
  /** {"heads"|"neurons": {"<A>__vs__<B>": r}}, A and B like "ig_norm_clean_to_corrupt", "ap_…", "atp_…", plus "asym_ig_norm__vs__asym_ap", … */
  correlations: Partial<Record<Component, Record<string, Score>>>;
  /** Raw IG (not on AP's scale) against the other maps. */
  correlations_raw: Partial<Record<Component, Record<string, Score>>>;
  /** A = (S_ccl − S_cc) / max|S_ccl − S_cc|, per method. */
  asymmetry: Partial<Record<"ig_norm" | "ap" | "atp", Partial<Record<Component, Score[][]>>>>;
  /** Latent sets: [layer, index] pairs. */
  latent: Partial<Record<"ig_norm" | "ap" | "atp", Partial<Record<Component, { and: [number, number][]; or: [number, number][] }>>>>;
  /** Jaccard overlap of IG*'s and AP's sets. */
  overlap: Partial<Record<Component, { and: Score; or: Score }>>;
  top: Partial<Record<Method, Partial<Record<Direction, Partial<Record<Component, TopEntry[]>>>>>>;
  /** Per SAE hook (schema 4, with saes). */
  features?: Record<string, FeatureAnalysis>;
}

export interface DlaRun {
  /** [L][H][T] */
  heads: number[][][];
  /** [2 + 2L][T], in the order of Dla.labels */
  layers: number[][];
}

export interface Dla {
  /** "embed", "pos_embed", "0_attn_out", "0_mlp_out", … */
  labels: string[];
  bias: number;
  clean: DlaRun;
  corrupt: DlaRun;
}

export interface Warning {
  /** "small_gap": the metric barely differs between the prompts. */
  code: string;
  message: string;
}

export interface Report {
  /** 4 today; schema-2 and -3 reports load as they are, schema-1 ones are upgraded (PatchLab.upgradeReport). */
  schema: number;
  model: ModelInfo;
  prompts: Prompts;
  tokens: {
    clean: Token[];
    corrupt: Token[];
    /** The first position where the prompts' tokens differ. */
    first_diff: number;
    correct: Token;
    incorrect: Token;
  };
  metric: {
    name: MetricName;
    clean: number;
    corrupt: number;
    /** [lp_correct, lp_incorrect] per run */
    logprobs: { clean: [number, number]; corrupt: [number, number] };
  };
  /** The 10 most likely next tokens of each run. */
  predictions: { clean: Prediction[]; corrupt: Prediction[] };
  settings: {
    methods: Method[];
    directions: Direction[];
    components: Component[];
    ig_steps: number;
    ig_rule: string;
    percentile: number;
    sites?: Site[];
    dla?: boolean;
    /** The SAEs whose features were scored (schema 4). */
    saes?: SaeInfo[];
  };
  results: Results;
  /** Captum's completeness gap per layer: {direction: {heads: [L], neurons: [L]}}. */
  ig_convergence_delta: Partial<Record<Direction, Partial<Record<Component, Score[]>>>>;
  analysis: Analysis;
  /** With the dla site. */
  dla?: Dla;
  /** [L][H][T][T] per run, with any site or dla. */
  patterns?: { clean: number[][][][]; corrupt: number[][][][] };
  /** Each SAE's active features in both runs, by hook (schema 4, with saes). */
  features?: Record<string, { clean: ActiveFeatures; corrupt: ActiveFeatures }>;
  warnings: Warning[];
  timings_ms: Record<string, number>;
  backend: "cpu" | "gpu";
  /** The patchlab version that wrote it. */
  version: string;
  /** Only in a slim report (`patchlab slim`, PatchLab.slimReport): its scores are rounded and only these maps kept. */
  precision?: { significant_digits: number; kept: string[] };
}

/** `patchlab batch`'s summary.json (docs/cli.md, "summary.json"): distributions over pairs. */
export interface Distribution {
  per_pair: Score[];
  n: number;
  mean: Score;
  std: Score;
  mean_abs: Score;
  min: Score;
  median: Score;
  max: Score;
}

export interface Summary {
  correlations: Partial<Record<Component, Record<string, Distribution>>>;
  correlations_raw: Partial<Record<Component, Record<string, Distribution>>>;
  overlap: Partial<Record<Component, { and: Distribution; or: Distribution }>>;
  [key: string]: unknown;
}

/** `patchlab ablate`'s ablation.json (docs/cli.md, "Mean ablation"). */
export interface Ablation {
  kind: string;
  /** How the replacement values were made. */
  mean: string;
  sets: {
    set: string;
    pairs: {
      index: number;
      /** Components ablated in this pair. */
      heads: number;
      neurons: number;
      metric_clean: number;
      metric_corrupt: number;
      metric_ablated: number;
      /** metric_ablated − metric_clean */
      change: number;
      /** (metric_ablated − metric_corrupt) / (metric_clean − metric_corrupt) */
      retained: Score;
    }[];
    change: Distribution;
    retained: Distribution;
    heads: Distribution;
    neurons: Distribution;
  }[];
}

/** A circuit of a circuit report: edges are indices into CircuitReport.edges. */
export interface CircuitChoice {
  edges: number[];
  /** Upstream nodes kept ("input", "a3.h5", "m2"), in graph order. */
  nodes: string[];
  /** null without a model (CircuitTools.reselectCircuit). */
  faithfulness: unknown;
}

/** `patchlab circuit`'s circuit.json (docs/cli.md, circuits): every edge's score per method, the circuit, its faithfulness, the curves. */
export interface CircuitReport {
  schema: number;
  model: ModelInfo;
  /** The prompt pairs (one, or a dataset's). */
  pairs: Prompts[];
  /** The first pair's tokens. */
  tokens: Report["tokens"];
  settings: { method: string; steps: number; select: "greedy" | "topn"; edges: number; methods: string[]; backend: "cpu" | "gpu"; [key: string]: unknown };
  /** Mean clean and corrupt metrics over the pairs. */
  metric: { clean: number; corrupt: number; [key: string]: unknown };
  graph: Record<string, number>;
  /** Every edge's name, in the reference's order ("a9.h6->a10.h7<q>"). */
  edges: string[];
  /** scores[method][i]: edge i's score (the mean over pairs). */
  scores: Record<string, number[]>;
  circuit: CircuitChoice;
  /** Faithfulness against circuit size, per method. */
  curves: Record<string, unknown[]>;
  /** Each method's scores against exact edge patching's (when computed). */
  correlations: Record<string, { pearson: Score; spearman: Score }>;
  timings_ms: Record<string, number>;
}
