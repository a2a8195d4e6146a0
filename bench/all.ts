/**
 * Every bench, one after the other, each in its own process (their handlers read configuration at import
 * and start their own DynamoDB Local): `npm run bench [-- --quick]`. Arguments are passed to every bench.
 * Each child leads its own process group, which is reaped when it ends, so nothing outlives the run.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { log } from "./lib/cli.ts";
import { repoRoot } from "./lib/processes.ts";

const benches = ["pool", "forward", "coldstart", "cost"] as const;
const args = process.argv.slice(2);
const results: { name: string; code: number; seconds: number }[] = [];
let current: number | undefined;

const reap = (pid: number | undefined) => {
  if (!pid) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // the group is already gone
  }
};
for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.once(signal, () => {
    if (current) process.kill(-current, signal);
    setTimeout(() => {
      reap(current);
      process.exit(130);
    }, 5000).unref();
  });

for (const name of benches) {
  const started = performance.now();
  const child = spawn(process.execPath, ["--import", "tsx", `bench/${name}.ts`, ...args], {
    cwd: repoRoot,
    stdio: "inherit",
    detached: true,
  });
  current = child.pid;
  const [code, signal] = (await once(child, "exit")) as [number | null, string | null];
  reap(child.pid);
  current = undefined;
  results.push({ name, code: code ?? (signal ? 128 : 1), seconds: (performance.now() - started) / 1000 });
}

log();
log("bench summary");
for (const r of results)
  log(
    `  bench:${r.name.padEnd(10)} ${r.code === 0 ? "ok    " : `FAILED (${r.code})`} ${r.seconds.toFixed(1)} s`,
  );
process.exitCode = results.some((r) => r.code !== 0) ? 1 : 0;
