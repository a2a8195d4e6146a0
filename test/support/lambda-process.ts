import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { build } from "esbuild";
import {
  buildOnDemandPackages,
  ESBUILD_OPTIONS,
  repoRoot,
} from "../../infra/constructs/maskline-function.ts";
import type { FunctionName } from "../../shared/resources.ts";
import { functions } from "../../shared/resources.ts";

const RESULT = "@@maskline-result ";

/**
 * Bundles a function as CDK does (`ESBUILD_OPTIONS`, on-demand packages and modules beside it) into
 * `<dir>/<name>/index.mjs`, the file Lambda loads.
 */
export async function bundleFunction(name: FunctionName, dir: string): Promise<string> {
  const outputDir = join(dir, name);
  await build({
    ...ESBUILD_OPTIONS,
    entryPoints: [join(repoRoot, functions[name].entry)],
    outfile: join(outputDir, "index.mjs"),
    logLevel: "warning",
  });
  await buildOnDemandPackages(outputDir);
  return join(outputDir, "index.mjs");
}

/**
 * A function run as Lambda runs it: its bundle imported in a process of its own, with only the environment
 * given (as the template sets it), then invoked once per event. Everything the process writes is kept, so a
 * test can check what the logs hold.
 */
export class LambdaProcess {
  private readonly child: ChildProcessWithoutNullStreams;
  private stdoutText = "";
  private stderrText = "";
  private waiting: ((line: string) => void)[] = [];
  readonly exited: Promise<number | null>;

  constructor(name: FunctionName, bundle: string, env: Record<string, string>) {
    const entry = pathToFileURL(bundle).href;
    const script = `
      import { createInterface } from "node:readline";
      const context = {
        functionName: "maskline-${name}", functionVersion: "$LATEST", memoryLimitInMB: "512",
        invokedFunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:maskline-${name}",
        awsRequestId: "", logGroupName: "/aws/lambda/maskline-${name}", logStreamName: "s",
        callbackWaitsForEmptyEventLoop: true, getRemainingTimeInMillis: () => 10000,
        done() {}, fail() {}, succeed() {},
      };
      const { handler } = await import(${JSON.stringify(entry)});
      let n = 0;
      for await (const line of createInterface({ input: process.stdin })) {
        context.awsRequestId = "req-" + ++n;
        let answer;
        try { answer = { result: (await handler(JSON.parse(line), context)) ?? null }; }
        catch (error) { answer = { thrown: String(error?.name) + ": " + String(error?.message) }; }
        process.stdout.write("\\n${RESULT}" + JSON.stringify(answer) + "\\n");
      }
      process.exit(0);`;
    this.child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      cwd: join(bundle, ".."),
      env: { PATH: process.env.PATH ?? "", ...env },
    });
    this.child.stdout.setEncoding("utf8");
    this.child.stderr.setEncoding("utf8");
    let pending = "";
    this.child.stdout.on("data", (chunk: string) => {
      this.stdoutText += chunk;
      pending += chunk;
      for (let i = pending.indexOf("\n"); i >= 0; i = pending.indexOf("\n")) {
        const line = pending.slice(0, i);
        pending = pending.slice(i + 1);
        if (line.startsWith(RESULT)) this.waiting.shift()?.(line.slice(RESULT.length));
      }
    });
    this.child.stderr.on("data", (chunk: string) => {
      this.stderrText += chunk;
    });
    this.exited = once(this.child, "exit").then(([code]) => code as number | null);
    this.exited.then(() => {
      for (const reject of this.waiting.splice(0))
        reject(JSON.stringify({ thrown: `process exited:\n${this.stderrText.slice(-2000)}` }));
    });
  }

  /** Invokes the handler with `event`; resolves with what it returned, or `{ thrown }` if it threw. */
  async invoke<T = unknown>(event: unknown): Promise<T> {
    const line = new Promise<string>((resolve) => this.waiting.push(resolve));
    this.child.stdin.write(`${JSON.stringify(event)}\n`);
    const answer = JSON.parse(await line) as { result?: T; thrown?: string };
    if (answer.thrown !== undefined) throw new Error(answer.thrown);
    return answer.result as T;
  }

  /** Everything the process wrote so far, stdout and stderr, without the handler's answers. */
  get output(): string {
    const logs = this.stdoutText
      .split("\n")
      .filter((line) => !line.startsWith(RESULT))
      .join("\n");
    return `${logs}\n${this.stderrText}`;
  }

  get stderr(): string {
    return this.stderrText;
  }

  async stop(): Promise<number | null> {
    this.child.stdin.end();
    return this.exited;
  }
}
