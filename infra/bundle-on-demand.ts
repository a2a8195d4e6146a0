import { buildOnDemandPackages } from "./constructs/maskline-function.ts";

// CDK's afterBundling hook for every function: `node --import tsx infra/bundle-on-demand.ts <asset dir>`.
const outputDir = process.argv[2];
if (!outputDir) throw new Error("usage: bundle-on-demand.ts <output dir>");
await buildOnDemandPackages(outputDir);
