import { spawn } from "node:child_process";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BANNER_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 15_000;
/** After the URL and token lines, how long to wait for the "Started in N ms." line before measuring ourselves. */
const STARTED_LINE_GRACE_MS = 2_000;

export interface ExitStatus {
  code: number | null;
  signal: string | null;
}

export interface NpmStart {
  /** Base URL from the banner's "API and webhooks" line, e.g. http://localhost:40123 */
  url: string;
  /** The bearer token from the banner's "API token" line (MASKLINE_API_TOKEN when it was given). */
  token: string;
  /** From the banner's "Started in N ms." line (wall clock since spawn if that line is missing). */
  startupMs: number;
  /** Everything the process group wrote so far, stdout and stderr interleaved. */
  output: () => string;
  /** Ctrl-C for the whole process group; SIGKILL after 15 s. Idempotent. */
  stop: () => Promise<ExitStatus>;
  /** The pid of `npm`, which leads its own process group (signal `-pid` to reach every process in it). */
  pid: number;
}

/**
 * Runs `npm start` as a user would (a child process in the repository root, its own process group) and
 * resolves once the banner shows the URL and the API token.
 */
export async function startNpmStart(env: Record<string, string> = {}): Promise<NpmStart> {
  const spawnedAt = Date.now();
  const child = spawn("npm", ["start"], {
    cwd: repoRoot,
    detached: true,
    env: { ...process.env, PORT: "0", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let text = "";
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stdout.on("data", (chunk: string) => {
    text += chunk;
  });
  child.stderr.on("data", (chunk: string) => {
    text += chunk;
  });
  const output = () => text;

  let exitStatus: ExitStatus | undefined;
  const exited = new Promise<ExitStatus>((resolveExit) => {
    child.once("exit", (code, signal) => {
      exitStatus = { code, signal };
      resolveExit(exitStatus);
    });
    child.once("error", (error) => {
      text += `\n[spawn error] ${error.message}\n`;
      exitStatus ??= { code: null, signal: null };
      resolveExit(exitStatus);
    });
  });

  const pid = child.pid;
  const killGroup = (signal: NodeJS.Signals) => {
    if (pid === undefined) return false;
    try {
      process.kill(-pid, signal);
      return true;
    } catch {
      return false; // ESRCH: the group is already gone
    }
  };
  // If the test process dies without calling stop(), do not leave the stack running.
  const killOnExit = () => void killGroup("SIGKILL");
  process.once("exit", killOnExit);

  const closeStreams = async () => {
    // Give the pipes a moment to flush the last lines, then let go of them (an orphan could hold them open).
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(
        [child.stdout, child.stderr].map((s) =>
          s.closed ? undefined : new Promise((r) => s.once("close", r)),
        ),
      ),
      new Promise((r) => {
        timer = setTimeout(r, 1_000);
      }),
    ]);
    clearTimeout(timer);
    child.stdout.destroy();
    child.stderr.destroy();
  };

  let stopping: Promise<ExitStatus> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      if (!exitStatus) {
        killGroup("SIGINT");
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<"timeout">((r) => {
          timer = setTimeout(() => r("timeout"), STOP_TIMEOUT_MS);
        });
        const first = await Promise.race([exited, timedOut]);
        clearTimeout(timer);
        if (first === "timeout") {
          text += `\n[npm-start] no exit ${STOP_TIMEOUT_MS} ms after SIGINT: SIGKILL to the process group\n`;
          killGroup("SIGKILL");
        }
      }
      const status = await exited;
      await closeStreams();
      process.off("exit", killOnExit);
      return status;
    })();
    return stopping;
  };

  const banner = await new Promise<{ url: string; token: string; startupMs: number } | Error>(
    (resolveBanner) => {
      let grace: NodeJS.Timeout | undefined;
      const finish = (result: { url: string; token: string; startupMs: number } | Error) => {
        clearTimeout(timer);
        clearTimeout(grace);
        child.stdout.off("data", check);
        child.off("exit", onExit);
        resolveBanner(result);
      };
      const parse = () => ({
        url: /API and webhooks\s+(https?:\/\/\S+)/.exec(text)?.[1]?.replace(/\/$/, ""),
        // A token given in the environment is named, not printed.
        token: /API token\s+from MASKLINE_API_TOKEN/.test(text)
          ? env.MASKLINE_API_TOKEN
          : /API token\s+(\S+)/.exec(text)?.[1],
        startupMs: /Started in (\d+) ms/.exec(text)?.[1],
      });
      function check() {
        const { url, token, startupMs } = parse();
        if (!url || !token) return;
        if (startupMs) return finish({ url, token, startupMs: Number(startupMs) });
        const measured = Date.now() - spawnedAt;
        grace ??= setTimeout(() => finish({ url, token, startupMs: measured }), STARTED_LINE_GRACE_MS);
      }
      function onExit(code: number | null, signal: string | null) {
        finish(new Error(`npm start exited (code ${code}, signal ${signal}) before its banner:\n${text}`));
      }
      const timer = setTimeout(
        () => finish(new Error(`npm start printed no banner within ${BANNER_TIMEOUT_MS / 1000} s:\n${text}`)),
        BANNER_TIMEOUT_MS,
      );
      child.stdout.on("data", check);
      child.once("exit", onExit);
      if (pid === undefined) finish(new Error(`could not spawn npm start:\n${text}`));
      check();
    },
  );

  if (banner instanceof Error) {
    killGroup("SIGKILL");
    await exited;
    await closeStreams();
    process.off("exit", killOnExit);
    throw banner;
  }
  return { ...banner, output, stop, pid: pid as number };
}
