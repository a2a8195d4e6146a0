/**
 * Cold-start proxy: each production handler bundled the way CDK's NodejsFunction bundles it (the infra's
 * own `ESBUILD_OPTIONS`: node22 ESM, minified, source maps, module/main fields, the createRequire banner,
 * AWS SDK bundled, on-demand packages and modules (the tracer, allocate's OpenAPI document, recycler's top-up)
 * in files of their own), its size, and its module-initialisation time in a fresh Node process (median of
 * N runs, with the environment the functions are deployed with), against a bare handler bundled the same way that
 * imports and constructs only the same AWS SDK clients. The esbuild metafile shows what each bundle holds:
 * inbound must hold no Twilio REST client. Each on-demand package's file is timed on its own too: the
 * first call that needs it pays that, not module init.
 *
 * With `--against <git ref>` the same functions are also bundled from that commit (its tree, this checkout's
 * node_modules) and imported in the same loop, round after round with ours and the bare handler, so both
 * commits see the same machine load: the before/after comparison to quote on a shared machine.
 *
 *   npm run bench:coldstart [-- --quick] [-- --runs 15] [-- --against <git ref>]
 */
import { execSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { type BuildOptions, build, type Metafile } from "esbuild";
import {
  buildOnDemandPackages,
  ESBUILD_OPTIONS,
  FUNCTION_ENVIRONMENT,
  ON_DEMAND_MODULES,
  ON_DEMAND_PACKAGES,
} from "../infra/constructs/maskline-function.ts";
import { type FunctionName, functions } from "../shared/resources.ts";
import { benchOptions, heading, log } from "./lib/cli.ts";
import { main, onCleanup, repoRoot } from "./lib/processes.ts";
import { kib, median, ms, ratio, table } from "./lib/stats.ts";

/** `--against <git ref>`: a commit to compare with, interleaved (the other options are numbers). */
const argv = process.argv.slice(2);
const againstAt = argv.indexOf("--against");
const against = againstAt >= 0 ? argv[againstAt + 1] : undefined;
if (againstAt >= 0 && !against) throw new Error("--against needs a git ref");
const options = benchOptions(
  {
    runs: {
      full: 15,
      quick: 3,
      help: "fresh processes per bundle (median reported); --against <git ref> to compare",
    },
  },
  againstAt >= 0 ? [...argv.slice(0, againstAt), ...argv.slice(againstAt + 2)] : argv,
);

/** Dummy configuration: enough for every handler's zod config to parse at import, no network at init. */
const ENV: Record<string, string> = {
  PATH: process.env.PATH ?? "",
  AWS_REGION: "us-east-1",
  AWS_ACCESS_KEY_ID: "AKIDBENCHCOLDSTART",
  AWS_SECRET_ACCESS_KEY: "bench",
  TABLE_NAME: "maskline-bench",
  FORWARD_QUEUE_URL: "https://sqs.us-east-1.amazonaws.com/123456789012/maskline-forward.fifo",
  PUBLIC_BASE_URL: "https://maskline.example.com",
  TWILIO_ACCOUNT_SID: `AC${"0".repeat(32)}`,
  TWILIO_AUTH_TOKEN: "0123456789abcdef0123456789abcdef",
  MASKLINE_API_TOKEN: "bench-token-0123456789",
  EVENT_BUS_NAME: "maskline",
  PUBLISHER_FAILURES_QUEUE_URL:
    "https://sqs.us-east-1.amazonaws.com/123456789012/maskline-publisher-failures",
  ...FUNCTION_ENVIRONMENT,
  LOG_LEVEL: "INFO",
};

/** How a bare handler constructs each SDK package's client. */
const CLIENTS: Record<string, { imports: string; construct: string }> = {
  "@aws-sdk/client-dynamodb": {
    imports: 'import { DynamoDBClient } from "@aws-sdk/client-dynamodb";',
    construct: "const dynamodb = new DynamoDBClient({});",
  },
  "@aws-sdk/lib-dynamodb": {
    imports: 'import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";',
    construct: "const doc = DynamoDBDocumentClient.from(dynamodb);",
  },
  "@aws-sdk/client-sqs": {
    imports: 'import { SQSClient } from "@aws-sdk/client-sqs";',
    construct: "const sqs = new SQSClient({});",
  },
  "@aws-sdk/client-eventbridge": {
    imports: 'import { EventBridgeClient } from "@aws-sdk/client-eventbridge";',
    construct: "const events = new EventBridgeClient({});",
  },
  "@aws-sdk/client-secrets-manager": {
    imports: 'import { SecretsManagerClient } from "@aws-sdk/client-secrets-manager";',
    construct: "const secrets = new SecretsManagerClient({});",
  },
  "@aws-sdk/client-dynamodb-streams": {
    imports: 'import { DynamoDBStreamsClient } from "@aws-sdk/client-dynamodb-streams";',
    construct: "const streams = new DynamoDBStreamsClient({});",
  },
};

/** What loads on demand, each in a file of its own: the packages, then our own modules. */
const onDemandNames = [...ON_DEMAND_PACKAGES, ...Object.keys(ON_DEMAND_MODULES)];

const packageOf = (input: string) => {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(input);
  return m?.[1] ?? "(maskline code)";
};

interface Bundle {
  file: string;
  bytes: number;
  gzip: number;
  mapBytes: number;
  metafile: Metafile;
}

/** A bundle built exactly as the infra builds a function's: `ESBUILD_OPTIONS` of the construct module. */
async function bundle(outfile: string, entry: BuildOptions): Promise<Bundle> {
  const result = await build({ ...ESBUILD_OPTIONS, ...entry, logLevel: "warning", outfile, metafile: true });
  const code = readFileSync(outfile);
  return {
    file: outfile,
    bytes: code.byteLength,
    gzip: gzipSync(code).byteLength,
    mapBytes: statSync(`${outfile}.map`).size,
    metafile: result.metafile,
  };
}

/**
 * Module initialisation of `file` in a fresh node process: the time `await import()` takes, in ms, and the
 * CPU time the process spent meanwhile (less sensitive than wall time to other work on a shared machine).
 */
function initTime(
  probe: string,
  file: string,
  sourceMaps = false,
  anyModule = false,
): { ms: number; cpuMs: number } {
  const env = sourceMaps ? { ...ENV, NODE_OPTIONS: "--enable-source-maps" } : ENV;
  const args = [probe, file, ...(anyModule ? ["any"] : [])];
  const run = spawnSync(process.execPath, args, { env, encoding: "utf8", timeout: 60_000 });
  if (run.status !== 0) throw new Error(`init of ${file} failed (${run.status}):\n${run.stderr}`);
  const parsed = JSON.parse(run.stdout.trim().split("\n").pop() ?? "{}") as { ms?: number; cpuMs?: number };
  if (typeof parsed.ms !== "number" || typeof parsed.cpuMs !== "number")
    throw new Error(`no timing from ${file}: ${run.stdout}`);
  return { ms: parsed.ms, cpuMs: parsed.cpuMs };
}

function inputsOf(b: Bundle) {
  const output = Object.entries(b.metafile.outputs).find(([path]) => path.endsWith(".mjs"))?.[1];
  return Object.entries(output?.inputs ?? {}).map(([path, i]) => ({ path, bytes: i.bytesInOutput }));
}

main(async () => {
  heading(`bench:coldstart${options.quick ? " (quick)" : ""}`);
  const dir = mkdtempSync(join(tmpdir(), "maskline-coldstart-"));
  onCleanup(async () => rmSync(dir, { recursive: true, force: true }));
  log(
    "esbuild with ESBUILD_OPTIONS of infra/constructs/maskline-function.ts, as CDK bundles each function: node22 ESM, " +
      `minify, sourcemap, mainFields module,main, its ESM_BANNER, AWS SDK bundled; on demand, in files of their own: ${onDemandNames.join(", ")}`,
  );
  const probe = join(dir, "probe.mjs");
  writeFileSync(
    probe,
    [
      'import { pathToFileURL } from "node:url";',
      "const cpu = process.cpuUsage();",
      "const started = performance.now();",
      "const mod = await import(pathToFileURL(process.argv[2]).href);",
      "const ms = performance.now() - started;",
      "const used = process.cpuUsage(cpu);",
      "const cpuMs = (used.user + used.system) / 1000;",
      'if (process.argv[3] !== "any" && typeof mod.handler !== "function") throw new Error("no handler export");',
      'process.stdout.write("\\n" + JSON.stringify({ ms, cpuMs }) + "\\n");',
    ].join("\n"),
  );

  const names = Object.keys(functions) as FunctionName[];
  const built: { name: FunctionName; ours: Bundle; bare: Bundle; clients: string[]; base?: Bundle }[] = [];
  const onDemand = await buildOnDemandPackages(join(dir, "on-demand"), Object.keys(ON_DEMAND_MODULES));
  const baseRoot = join(dir, "against");
  if (against) {
    mkdirSync(baseRoot);
    execSync(`git archive ${JSON.stringify(against)} | tar -x -C ${JSON.stringify(baseRoot)}`, {
      cwd: repoRoot,
    });
    symlinkSync(join(repoRoot, "node_modules"), join(baseRoot, "node_modules"));
    log(
      `  --against ${against}: ${execSync(`git rev-parse --short ${JSON.stringify(against)}`, { cwd: repoRoot, encoding: "utf8" }).trim()}, bundled from its own tree with these options`,
    );
  }
  for (const name of names) {
    const fn = functions[name];
    mkdirSync(join(dir, name));
    const ours = await bundle(join(dir, name, "index.mjs"), { entryPoints: [join(repoRoot, fn.entry)] });
    let base: Bundle | undefined;
    if (against) {
      mkdirSync(join(dir, `against-${name}`));
      base = await bundle(join(dir, `against-${name}`, "index.mjs"), {
        entryPoints: [join(baseRoot, fn.entry)],
      });
    }
    const clients = [...new Set(inputsOf(ours).map((i) => packageOf(i.path)))]
      .filter((p) => p in CLIENTS)
      .sort();
    // The document client wraps a DynamoDB client: construct that first.
    const ordered = clients.sort(
      (a, b) => Number(b === "@aws-sdk/client-dynamodb") - Number(a === "@aws-sdk/client-dynamodb"),
    );
    const needsDynamo =
      ordered.includes("@aws-sdk/lib-dynamodb") && !ordered.includes("@aws-sdk/client-dynamodb");
    const parts = [...(needsDynamo ? ["@aws-sdk/client-dynamodb"] : []), ...ordered].map((p) => CLIENTS[p]);
    const contents = [
      ...parts.map((p) => p?.imports),
      ...parts.map((p) => p?.construct),
      `export const handler = async () => ({ statusCode: 200, body: String(${parts.length}) });`,
    ].join("\n");
    mkdirSync(join(dir, `bare-${name}`));
    const bare = await bundle(join(dir, `bare-${name}`, "index.mjs"), {
      stdin: { contents, resolveDir: repoRoot, loader: "js", sourcefile: `bare-${name}.mjs` },
    });
    built.push({ name, ours, bare, clients, ...(base ? { base } : {}) });
  }

  heading("Bundles");
  log(
    table([
      ["function", "bundle", "gzip", "source map", "bare bundle", "ours / bare", "largest parts"],
      ...built.map(({ name, ours, bare }) => {
        const byPackage = new Map<string, number>();
        for (const i of inputsOf(ours))
          byPackage.set(packageOf(i.path), (byPackage.get(packageOf(i.path)) ?? 0) + i.bytes);
        const top = [...byPackage]
          .sort((a, b) => b[1] - a[1])
          .slice(0, 3)
          .map(([p, b]) => `${p} ${kib(b)}`)
          .join(", ");
        return [
          name,
          kib(ours.bytes),
          kib(ours.gzip),
          kib(ours.mapBytes),
          kib(bare.bytes),
          ratio(ours.bytes, bare.bytes),
          top,
        ];
      }),
    ]),
  );
  log(
    `  bare handlers import and construct only these SDK clients: ${[...new Set(built.flatMap((b) => b.clients))].join(", ")}`,
  );

  heading("Twilio REST client in each bundle (esbuild metafile)");
  for (const { name, ours } of built) {
    const rest = inputsOf(ours).filter((i) => /node_modules\/twilio\/lib\/rest\//.test(i.path));
    const axios = inputsOf(ours).filter((i) => packageOf(i.path) === "axios");
    const twilioAll = inputsOf(ours).filter((i) => packageOf(i.path) === "twilio");
    log(
      `  ${name.padEnd(9)} twilio/lib/rest: ${String(rest.length).padStart(4)} inputs, ${kib(rest.reduce((s, i) => s + i.bytes, 0)).padStart(10)}; ` +
        `axios: ${axios.length} inputs; all of twilio: ${kib(twilioAll.reduce((s, i) => s + i.bytes, 0))}`,
    );
  }
  const inboundRest = inputsOf(built.find((b) => b.name === "inbound")?.ours as Bundle).filter((i) =>
    /node_modules\/twilio\/lib\/rest\//.test(i.path),
  );
  log(
    inboundRest.length === 0
      ? "  inbound holds no twilio/lib/rest input: the REST client is not in its bundle, so it cannot load"
      : `  ERROR: inbound bundles ${inboundRest.length} twilio/lib/rest inputs`,
  );
  if (inboundRest.length) process.exitCode = 1;

  heading(`Module initialisation in a fresh node ${process.version} process (median of ${options.runs})`);
  const times = new Map<string, number[]>();
  const cpuTimes = new Map<string, number[]>();
  for (let r = 0; r < options.runs; r++)
    for (const { name, ours, bare, base } of built) {
      for (const [key, file, sourceMaps] of [
        ...(base ? ([[`against-${name}`, base.file, false]] as const) : []),
        [name, ours.file, false],
        [`bare-${name}`, bare.file, false],
        ...(options.quick || against
          ? []
          : ([
              [`maps-${name}`, ours.file, true],
              [`bare-maps-${name}`, bare.file, true],
            ] as const)),
      ] as const) {
        const { ms: wall, cpuMs } = initTime(probe, file, sourceMaps);
        times.set(key, [...(times.get(key) ?? []), wall]);
        cpuTimes.set(key, [...(cpuTimes.get(key) ?? []), cpuMs]);
      }
    }
  for (let r = 0; r < options.runs; r++)
    for (const file of onDemand) {
      const { cpuMs } = initTime(probe, file, false, true);
      cpuTimes.set(file, [...(cpuTimes.get(file) ?? []), cpuMs]);
    }
  log(
    table([
      [
        "function",
        "init (ours)",
        "init (bare SDK clients)",
        "ours / bare",
        "ours min–max",
        "CPU time (ours)",
        "CPU time (bare)",
        "CPU ours / bare",
        ...(options.quick || against ? [] : ["with --enable-source-maps: CPU ours / bare"]),
      ],
      ...built.map(({ name }) => {
        const ours = times.get(name) ?? [];
        const bare = times.get(`bare-${name}`) ?? [];
        const mapsCpu = cpuTimes.get(`maps-${name}`) ?? [];
        const bareMapsCpu = cpuTimes.get(`bare-maps-${name}`) ?? [];
        const oursCpu = cpuTimes.get(name) ?? [];
        const bareCpu = cpuTimes.get(`bare-${name}`) ?? [];
        return [
          name,
          ms(median(ours)),
          ms(median(bare)),
          ratio(median(ours), median(bare)),
          `${ms(Math.min(...ours), 0)}–${ms(Math.max(...ours), 0)}`,
          ms(median(oursCpu)),
          ms(median(bareCpu)),
          ratio(median(oursCpu), median(bareCpu)),
          ...(options.quick || against
            ? []
            : [
                `${ms(median(mapsCpu))} / ${ms(median(bareMapsCpu))} = ${ratio(median(mapsCpu), median(bareMapsCpu))}`,
              ]),
        ];
      }),
    ]),
  );
  log(
    "  The functions' deployed environment (FUNCTION_ENVIRONMENT: no --enable-source-maps; the last column is the " +
      "flag's cost, as deployed before); init = `await import(bundle)` including " +
      "top-level await (config parse, client construction). In AWS, inbound/forward also fetch the Twilio secret at init. " +
      "CPU time: user + system time of the process during that import (medians), steadier than wall time when other work shares the cores.",
  );
  if (against) {
    heading(
      `Interleaved with ${against}: init CPU time, median of ${options.runs} rounds (${against}, ours, bare in each round)`,
    );
    log(
      table([
        [
          "function",
          `bundle ${against} → ours`,
          `CPU ${against}`,
          "CPU ours",
          "CPU bare",
          `${against} / bare`,
          "ours / bare",
        ],
        ...built.map(({ name, ours, base }) => {
          const baseCpu = median(cpuTimes.get(`against-${name}`) ?? []);
          const oursCpu = median(cpuTimes.get(name) ?? []);
          const bareCpu = median(cpuTimes.get(`bare-${name}`) ?? []);
          return [
            name,
            `${kib(base?.bytes ?? 0)} → ${kib(ours.bytes)}`,
            ms(baseCpu),
            ms(oursCpu),
            ms(bareCpu),
            ratio(baseCpu, bareCpu),
            ratio(oursCpu, bareCpu),
          ];
        }),
      ]),
    );
  }
  for (const [i, file] of onDemand.entries())
    log(
      `  on demand, not in module init: ${onDemandNames[i]} ${kib(statSync(file).size)}, ` +
        `its own import in a fresh process ${ms(median(cpuTimes.get(file) ?? []))} CPU (paid by the first call that needs it: ` +
        `a traced call, GET /openapi.json, the recycler's cold start with top-up on)`,
    );
});
