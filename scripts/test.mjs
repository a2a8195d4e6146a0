// Runs the test files of the given tiers with node's test runner (tsx for TypeScript).
// Usage: node scripts/test.mjs [unit|int|e2e ...] — no argument runs every tier.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";

const tiers = process.argv.slice(2).length ? process.argv.slice(2) : ["unit", "int", "e2e"];
const files = [];
const walk = (dir) => {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) walk(path);
    else if (tiers.some((t) => entry.name.endsWith(`.${t}.test.ts`))) files.push(path);
  }
};
walk("test");
files.sort();
if (files.length === 0) {
  console.error(`no test files for tiers: ${tiers.join(", ")}`);
  process.exit(1);
}
const result = spawnSync(
  process.execPath,
  ["--import", "tsx", "--test", "--test-concurrency=1", "--test-reporter=spec", ...files],
  {
    stdio: "inherit",
    env: {
      POWERTOOLS_LOG_LEVEL: "WARN",
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
      ...process.env,
      NODE_ENV: "test",
    },
  },
);
process.exit(result.status ?? 1);
