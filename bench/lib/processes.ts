import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const repoRoot = fileURLToPath(new URL("../../", import.meta.url));

/**
 * Cleanup that must run however the bench ends (DynamoDB Local is a java process: never leave it behind).
 * Functions run once, newest first, on normal completion (`runCleanup`), on SIGINT/SIGTERM and on a crash.
 */
const cleanups: (() => Promise<void>)[] = [];
let installed = false;

export function onCleanup(fn: () => Promise<void>) {
  cleanups.push(fn);
  if (installed) return;
  installed = true;
  const bail = (code: number) => () => {
    void runCleanup().finally(() => process.exit(code));
  };
  process.once("SIGINT", bail(130));
  process.once("SIGTERM", bail(143));
}

export async function runCleanup() {
  while (cleanups.length) {
    const fn = cleanups.pop();
    await fn?.().catch((error) => process.stderr.write(`cleanup failed: ${(error as Error).message}\n`));
  }
}

/** Runs a bench's main function, always cleaning up, and sets the exit code. */
export function main(run: () => Promise<void>) {
  run()
    .catch((error) => {
      process.stderr.write(`${(error as Error)?.stack ?? String(error)}\n`);
      process.exitCode = 1;
    })
    .finally(async () => {
      await runCleanup();
      // Pending keep-alive sockets or timers of the code under test must not keep a finished bench alive.
      setTimeout(() => process.exit(), 200).unref();
    });
}

export interface StackChild {
  url: string;
  apiToken: string;
  child: ChildProcess;
  output: () => string;
  stop(): Promise<void>;
}

/**
 * `npm start` as a child process (`node --import tsx local/start.ts`, what the npm script runs), PORT=0 so
 * it picks a free port; its banner tells the URL and the API token. The child leads its own process group,
 * so stopping it also reaps the DynamoDB Local java process it started.
 */
export async function startStackChild(env: Record<string, string>, timeoutMs = 90_000): Promise<StackChild> {
  // BENCH_STACK_NODE_ARGS: extra node options for the stack only, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
  const nodeArgs = process.env.BENCH_STACK_NODE_ARGS?.split(" ").filter(Boolean) ?? [];
  const child = spawn(process.execPath, [...nodeArgs, "--import", "tsx", "local/start.ts"], {
    cwd: repoRoot,
    env: { ...process.env, PORT: "0", ...env },
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout?.on("data", (d) => {
    out += d;
  });
  child.stderr?.on("data", (d) => {
    out += d;
  });
  const pid = child.pid ?? 0;
  const killGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-pid, signal);
    } catch {
      // already gone
    }
  };
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      await Promise.race([once(child, "exit"), new Promise((r) => setTimeout(r, 15_000))]);
    }
    killGroup("SIGKILL");
  };
  onCleanup(stop);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const url = /API and webhooks\s+(http:\/\/\S+)/.exec(out)?.[1];
    const apiToken = /API token\s+(\S+)/.exec(out)?.[1];
    if (url && apiToken) return { url, apiToken, child, output: () => out, stop };
    if (child.exitCode !== null) throw new Error(`npm start exited with ${child.exitCode}:\n${out}`);
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`npm start did not print its banner in ${timeoutMs} ms:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** CPU time (user + system, ms) of this process and every process below it, split into the JVM and Node. */
export interface TreeCpu {
  jvm: number;
  node: number;
}

/**
 * Reads `/proc` (Linux only; zeros elsewhere): this bench's process tree, so the DynamoDB Local a stack
 * child started is counted and nothing else on a shared machine is. Clock ticks are 100 per second on Linux.
 */
export function treeCpu(root = process.pid): TreeCpu {
  const total: TreeCpu = { jvm: 0, node: 0 };
  let entries: string[];
  try {
    entries = readdirSync("/proc").filter((name) => /^\d+$/.test(name));
  } catch {
    return total;
  }
  const stats = new Map<number, { parent: number; name: string; ms: number }>();
  for (const pid of entries) {
    try {
      const text = readFileSync(`/proc/${pid}/stat`, "utf8");
      const name = text.slice(text.indexOf("(") + 1, text.lastIndexOf(")"));
      // After the name: state ppid … utime (14th field) stime (15th), counted from the pid.
      const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
      stats.set(Number(pid), {
        parent: Number(fields[1]),
        name,
        ms: (Number(fields[11]) + Number(fields[12])) * 10,
      });
    } catch {
      // gone meanwhile
    }
  }
  const inTree = (pid: number): boolean => {
    for (let at = pid, hops = 0; at > 1 && hops < 64; hops++) {
      if (at === root) return true;
      at = stats.get(at)?.parent ?? 0;
    }
    return false;
  };
  for (const [pid, stat] of stats) {
    if (!inTree(pid)) continue;
    if (stat.name === "java") total.jvm += stat.ms;
    else if (stat.name.startsWith("node")) total.node += stat.ms;
  }
  return total;
}
