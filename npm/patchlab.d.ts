// patchlab's JavaScript API (patchlab.js): activation patching, integrated
// gradients and attribution patching for GPT-2, computed in a module Web
// Worker (wasm). Written by hand from patchlab.js and docs/embedding.md; the
// report's shape is in report.d.ts (docs/report.md).

import type { Ablation, CircuitChoice, CircuitReport, Component, Direction, Method, MetricName, Report, SaeInfo, SiteOrBundle, Summary, Token, Prediction } from "./report.js";

export type * from "./report.js";

export declare const DEFAULT_HUB_MODEL: "openai-community/gpt2";

/** A Hugging Face repo id ("openai-community/gpt2"), a base URL ("/model/", "https://mirror.example/gpt2/"), or local files. */
export type ModelSource = string | FileList | File[];

export type Backend = "auto" | "cpu" | "gpu";

/** A prompt pair, as datasets hold them. */
export interface Pair {
  clean: string;
  corrupt: string;
  correct: string;
  incorrect: string;
  bos?: boolean;
  metric?: MetricName;
}

export interface LoadProgress {
  /** "config", "tokenizer", "weights" (bytes), "resume" (a broken download asked for again from `loaded`) or "building". */
  phase: "config" | "tokenizer" | "weights" | "resume" | "building";
  loaded?: number;
  total?: number;
  cached?: boolean;
  attempt?: number;
}

export interface Progress {
  stage: string;
  done: number;
  total: number;
  fraction: number;
  elapsedMs: number;
  etaMs: number | null;
}

export interface PartialScores {
  method: Method;
  direction: Direction;
  component: Component;
  layer: number;
  scores: Float32Array;
}

export interface AnalysisOptions {
  methods?: Method[] | string;
  directions?: Direction[] | string;
  components?: Component[] | string;
  /** Instead of components: patching sites or bundles (heads, neurons, resid_pre, …, dla, block_every, head_every, head_every_by_pos). */
  sites?: SiteOrBundle[] | string;
  /** The loaded SAEs whose features to score, by hook name ("blocks.8.hook_resid_pre"), or ["all"]; with components: [] only the features. */
  saes?: string[] | string;
  igSteps?: number;
  igRule?: string;
  percentile?: number;
  backend?: Backend;
  onProgress?: (p: Progress) => void;
  signal?: AbortSignal;
}

/** An SAE download's progress: cfg.json, the weights' bytes, a resumed download, building. */
export interface SaeProgress {
  phase: "sae-config" | "sae-weights" | "resume" | "sae-building";
  loaded?: number;
  total?: number;
  cached?: boolean;
  attempt?: number;
  ms?: number;
}

export interface SaeDownloadOptions {
  onProgress?: (p: SaeProgress) => void;
  signal?: AbortSignal;
  /** Keep the files in Cache Storage (from the Hub: default true; a URL: default for other origins). */
  cache?: boolean;
  /** What reports call it (default: "release/id", or the folder's name). */
  name?: string;
}

export interface AnalyzeOptions extends AnalysisOptions, Pair {
  onPartial?: (p: PartialScores) => void;
  /** estimate()'s seconds × 1000: the ETA starts from it and hands over to the measured pace. */
  estimateMs?: number;
}

/** What an analysis will cost, before it runs (estimate()). */
export interface CostEstimate {
  backend: "cpu" | "gpu";
  /** Each pair's [tokens, first differing position]. */
  pairs: [number, number][];
  /** Matrix-product FLOPs per phase, in the order the analysis runs them. */
  phases: { method: "forward" | "ap" | "ig" | "atp" | "sites" | "features"; component?: "heads" | "neurons"; direction?: Direction; flops: number }[];
  flops: number;
  /** Bytes the pairs' two cached runs keep. */
  run_bytes: number;
  /** The weights and the runs. */
  memory_bytes: number;
  /** What WebAssembly can hold; an analysis over it is refused. */
  memory_limit?: number;
  /** Once calibrate() measured the engine: its rate and the estimate in seconds. */
  flops_per_s?: number;
  seconds?: number;
}

/** An engine's measured rate (calibrate()). */
export interface Calibration {
  backend: "cpu" | "gpu";
  flops_per_s: number;
  flops: number;
  ms: number;
}

/** The worker's environment. */
export interface LabEnv {
  webgpu: boolean;
  adapter: string | null;
  /** Whether the CPU engine's wasm uses SIMD. */
  simd: boolean;
  /** Threads the CPU engine computes on (more than 1 only on a cross-origin isolated page). */
  threads: number;
  threadsNote: string | null;
}

export interface LabInfo {
  name: string;
  n_layers: number;
  n_heads: number;
  d_model: number;
  d_head: number;
  d_mlp: number;
  n_ctx: number;
  d_vocab: number;
  backends: string[];
}

export interface DatasetPlan {
  groups: number;
  kept: number;
  bad: number;
  group_size: number;
  backend: string;
  note?: string;
}

export interface PairOutcome {
  index: number;
  status: "done" | "kept" | "error";
  report?: Report;
  error?: string;
}

export interface CircuitOptions {
  pairs: Pair[];
  method?: "eap-ig" | "eap" | "clean-corrupted" | "exact";
  steps?: number;
  select?: "greedy" | "topn";
  edges?: number;
  exact?: boolean;
  curvePoints?: number;
  backend?: Backend;
  onProgress?: (p: Progress) => void;
  signal?: AbortSignal;
}

export interface CircuitSelection {
  method: string;
  select: "greedy" | "topn";
  n: number;
}

/** Where a model comes from: {base, name, cache} for a URL or repo id, {files, name, cache} for local files. */
export declare function resolveModel(model?: ModelSource, baseHref?: string): { base: string; name: string; cache: boolean } | { files: File[]; name: string; cache: false };

/** How a worker script at `url` is started (a cross-origin one from a blob: module that imports it). */
export declare function workerScript(url: string | URL, pageHref?: string): { href: string; crossOrigin: boolean; script: string | null };

/** An SAE folder URL: {base, name, cache}. */
export declare function resolveSaeUrl(url: string | URL, baseHref?: string): { base: string; name: string; cache: boolean };

/** The Hugging Face Hub's URL of a folder of a repo ("https://huggingface.co/<repo>/resolve/main/<folder>/"). */
export declare function hubFolderUrl(repo: string, folder: string): string;

/** An SAE named in one string: "release/id" → {release, id}; a folder URL → {url}; null for anything else. */
export declare function parseSaeSpec(spec: string): { release: string; id: string } | { url: string } | null;

/** A report as summarize() needs it, as JSON. */
export declare function summaryInput(report: Report | null | undefined): string;

/** Circuit tools that need no model: re-selecting a saved circuit report's circuit and writing the reference's graph file. */
export declare class CircuitTools {
  static create(options?: { workerUrl?: string | URL }): CircuitTools;
  reselectCircuit(report: CircuitReport | string, selection: CircuitSelection): Promise<CircuitChoice>;
  /** hannamw/EAP-IG's Graph.to_json of `method`'s scores with the circuit `edges`. */
  circuitGraph(report: CircuitReport | string, options: { method: string; edges: number[] }): Promise<string>;
  close(): void;
}

/** A device's work: per kernel dispatches, workgroups, FLOPs and bytes; submissions and read-backs. */
export interface GpuProfile {
  adapter: string;
  kernels: { name: string; dispatches: number; workgroups: number; flops: number; bytes: number; ms: number }[];
  submits: number;
  readbacks: number;
  /** Whether `ms` holds each kernel's time (`timing` is not null). */
  timed: boolean;
  /** How the kernel times were taken: the adapter's timestamp queries (in the browser after `PatchLab.load({ timeKernels: true })`, where it offers "timestamp-query"), elapsed time per dispatch (native only), or not at all. */
  timing: "timestamps" | "elapsed" | null;
}

export declare class PatchLab {
  /** Loads a model in a new worker. A config.json that is not GPT-2's, or a model too large for a tab, rejects with a LoadError. */
  static load(options?: { model?: ModelSource; name?: string; onProgress?: (p: LoadProgress) => void; cache?: boolean; workerUrl?: string | URL; softwareGpu?: boolean; timeKernels?: boolean }): Promise<PatchLab>;
  /** ./model/ next to patchlab.js when it has a config.json (`patchlab serve --model-dir`), else GPT-2 small from the Hub. */
  static defaultModel(): Promise<string>;
  /** A schema-1 report as the current schema; newer reports come back as they are. */
  static upgradeReport(report: Report, options?: { workerUrl?: string | URL }): Promise<Report>;
  /** A report cut down for a figure (`patchlab slim`): the maps `keep` names, scores rounded to `digits` significant digits; JSON text. */
  static slimReport(report: Report, options?: { keep?: string; digits?: number; workerUrl?: string | URL }): Promise<string>;
  /** Deletes every cached model file. */
  static clearCache(): Promise<void>;

  readonly info: LabInfo;
  readonly env: LabEnv;

  /** The WebGPU engine's work so far, per kernel (as `patchlab bench --profile` counts it); null before any. */
  gpuProfile(): Promise<GpuProfile | null>;
  /** Times a small real workload on the engine; later estimates say seconds and analyses pause every ~0.3 s of work. */
  calibrate(options?: { backend?: Backend }): Promise<Calibration>;
  /** What analyze() (or analyzeGroup(), given pairs) of these options will cost on the engine it would use. */
  estimate(options: (AnalysisOptions & Pair) | (AnalysisOptions & { pairs: Pair[] })): Promise<CostEstimate>;
  tokenize(text: string, options?: { bos?: boolean }): Promise<Token[]>;
  predict(text: string, options?: { bos?: boolean; k?: number; backend?: Backend }): Promise<Prediction[]>;
  /** The same report as `patchlab analyze --out -`. */
  analyze(options: AnalyzeOptions): Promise<Report>;
  groupPairs(pairs: Pair[], size?: number): Promise<{ groups: number[][]; bad: { index: number; error: string }[] }>;
  analyzeGroup(options: AnalysisOptions & { pairs: Pair[] }): Promise<Report[]>;
  runDataset(
    options: AnalysisOptions & {
      pairs: Pair[];
      group?: number;
      reports?: (Report | null)[] | string;
      onPlan?: (plan: DatasetPlan) => void;
      onGroup?: (indices: number[]) => void;
      onPair?: (outcome: PairOutcome) => void;
    },
  ): Promise<{ computed: number; kept: number; bad: number[]; backend: string }>;
  cpuMatmulMs(options?: { m?: number; k?: number; n?: number; reps?: number }): Promise<number>;
  taskNames(): Promise<string[]>;
  /** The metric spec's normalised name, or a rejection saying what is wrong. */
  parseMetric(spec: string): Promise<string>;
  generateDataset(options?: { task?: string; n?: number; seed?: number; bos?: boolean }): Promise<Required<Pair>[]>;
  importPairs(text: string, options?: { filename?: string; bos?: boolean }): Promise<{ pairs: Required<Pair>[]; bad: { line: number; reason: string }[] }>;
  /** `patchlab batch`'s summary.json. */
  summarize(reports: (Report | null)[] | string, options?: { source?: string; seed?: number; total?: number; includeSmallGap?: boolean }): Promise<Summary>;
  pairsCsv(pairs: Pair[]): Promise<string>;
  ablate(
    options: Pair & { heads?: [number, number][]; neurons?: [number, number][]; backend?: Backend; signal?: AbortSignal },
  ): Promise<{ metric_clean: number; metric_corrupt: number; metric_ablated: number; backend: string; note?: string }>;
  /** `patchlab ablate`'s ablation.json. */
  ablateDataset(reports: (Report | null)[] | string, sets: string | string[], options?: { backend?: Backend; onProgress?: (p: Progress) => void; signal?: AbortSignal }): Promise<Ablation>;
  /** `patchlab circuit`'s circuit.json. */
  circuit(options: CircuitOptions): Promise<CircuitReport>;
  reevaluateCircuit(report: CircuitReport | string, selection: CircuitSelection): Promise<CircuitChoice>;
  reselectCircuit(report: CircuitReport | string, selection: CircuitSelection): Promise<CircuitChoice>;
  circuitGraph(report: CircuitReport | string, options: { method: string; edges: number[] }): Promise<string>;
  /**
   * Loads an SAE from SAELens's files (cfg.json: text, an object or a File;
   * sae_weights.safetensors: bytes or a File) on this model, replacing the
   * one on its hook. Rejects (LoadError) with the engine's reason when it
   * does not fit (its d_in, hook, architecture, layout, normalisation, or
   * the memory left).
   */
  loadSae(options: { name?: string; cfg: string | Record<string, unknown> | Blob; weights: ArrayBuffer | Uint8Array | Blob; configOverrides?: Record<string, unknown>; normScalingFactor?: number }): Promise<SaeInfo>;
  /**
   * One SAE of a SAELens release from the Hugging Face Hub
   * ("gpt2-small-res-jb", "blocks.8.hook_resid_pre"), as
   * SAE.from_pretrained finds it (an unknown release is a repo id, the id a
   * folder); a release the lab cannot encode is refused before anything
   * downloads.
   */
  loadSaeFromHub(release: string, id: string, options?: SaeDownloadOptions): Promise<SaeInfo>;
  /** An SAE from a folder URL holding cfg.json and sae_weights.safetensors. */
  loadSaeFromUrl(url: string | URL, options?: SaeDownloadOptions & { configOverrides?: Record<string, unknown>; normScalingFactor?: number }): Promise<SaeInfo>;
  /** "release/id" or a folder URL (parseSaeSpec), from the Hub or that URL. */
  loadSaeSpec(spec: string, options?: SaeDownloadOptions): Promise<SaeInfo>;
  /** Removes the SAE on this hook; false if none was loaded there. */
  removeSae(hook: string): Promise<boolean>;
  /** The loaded SAEs, in layer order. */
  saes(): Promise<SaeInfo[]>;
  /** Stops the worker and frees the model. */
  close(): void;
}
