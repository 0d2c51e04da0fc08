// embed.js defines the <patch-lab> custom element (docs/embedding.md); it
// exports nothing. Importing it for its side effect registers the element.

import type { CircuitReport, Report } from "./report.js";

export interface PatchLabElement extends HTMLElement {
  /** The report shown (saved or computed live); a circuit report with view="circuit". */
  report?: Report | CircuitReport;
  /** "report" (a saved report shown), "done" (computed live) or "error". */
  readonly dataset: DOMStringMap & { state?: "report" | "done" | "error" };
}

declare global {
  interface HTMLElementTagNameMap {
    "patch-lab": PatchLabElement;
  }
}
