// What a blog author writes against the npm package's declarations
// (npm/*.d.ts). `npx tsc -p tests/types` type-checks it in scripts/test:
// the declarations must accept this use, and the @ts-expect-error lines
// must stay errors (the types constrain, not merely exist).

import { PatchLab, type Calibration, type CostEstimate, type GpuProfile, type Report } from "../../npm/patchlab.js";
import "../../npm/embed.js";

export async function figure(): Promise<string> {
  const lab = await PatchLab.load({ model: "openai-community/gpt2", softwareGpu: false, onProgress: (p) => void p });
  const rate: Calibration = await lab.calibrate({ backend: "auto" });
  const cost: CostEstimate = await lab.estimate({ clean: "a b", corrupt: "a c", correct: " d", incorrect: " e", components: ["heads"] });
  const neurons = cost.phases.filter((p) => p.component === "neurons").reduce((n, p) => n + p.flops, 0);
  const seconds: number = cost.seconds ?? cost.flops / rate.flops_per_s;
  const report: Report = await lab.analyze({
    estimateMs: seconds * 1000,
    clean: "When Mary and John went to the store, John gave a drink to",
    corrupt: "When Mary and John went to the store, Mary gave a drink to",
    correct: " Mary",
    incorrect: " John",
    methods: ["ap", "ig", "atp"],
    components: ["heads"],
    igSteps: 50,
  });
  const heads = report.results.ap?.clean_to_corrupt?.heads ?? [];
  const best: number = Math.max(...heads.flat().map((v) => v ?? 0));
  const work: GpuProfile | null = await lab.gpuProfile();
  const flops = work ? work.kernels.reduce((n, k) => n + k.flops, 0) : 0;
  const slim = JSON.parse(await PatchLab.slimReport(report, { keep: "heads", digits: 4 })) as Report;
  const digits = slim.precision?.significant_digits;
  const el = document.createElement("patch-lab");
  el.report = slim;
  // @ts-expect-error: a method that is not one of ap, ig, atp
  await lab.analyze({ clean: "a", corrupt: "b", correct: " c", incorrect: " d", methods: ["shap"] });
  // @ts-expect-error: the report has no such field
  void report.scores;
  return `${best} ${flops} ${digits} ${el.dataset.state} ${neurons}`;
}
