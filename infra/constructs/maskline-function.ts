import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Duration, type RemovalPolicy } from "aws-cdk-lib";
import { Role, ServicePrincipal } from "aws-cdk-lib/aws-iam";
import type { IKey } from "aws-cdk-lib/aws-kms";
import { Architecture, Runtime, Tracing } from "aws-cdk-lib/aws-lambda";
import { LogLevel, NodejsFunction, OutputFormat, SourceMapMode } from "aws-cdk-lib/aws-lambda-nodejs";
import { LogGroup, type RetentionDays } from "aws-cdk-lib/aws-logs";
import { NagSuppressions } from "cdk-nag";
import { Construct } from "constructs";
import { type BuildOptions, build } from "esbuild";
import type { FunctionDefinition } from "../../shared/resources.ts";

/** The repository root: function entries in `shared/resources.ts` are relative to it. */
export const repoRoot = fileURLToPath(new URL("../../", import.meta.url));

export const LAMBDA_RUNTIME = Runtime.NODEJS_22_X;

/**
 * ESM output needs `require` for the CommonJS dependencies esbuild inlines (twilio, parts of the SDK), and
 * `__filename`/`__dirname` for the few that read them. Aliased imports so nothing in the bundle collides.
 */
export const ESM_BANNER = [
  "import { createRequire as __mlCreateRequire } from 'node:module';",
  "import { fileURLToPath as __mlFileURLToPath } from 'node:url';",
  "import { dirname as __mlDirname } from 'node:path';",
  "const require = __mlCreateRequire(import.meta.url);",
  "const __filename = __mlFileURLToPath(import.meta.url);",
  "const __dirname = __mlDirname(__filename);",
].join(" ");

/**
 * Packages the functions import only on demand (`await import()`). Each is bundled into a file of its own
 * next to the function's bundle, `node_modules/<package>/index.mjs`, where Node resolves the import at run
 * time, instead of into the function's bundle, where module init would parse it even though it never runs
 * it. The Powertools tracer (with the X-Ray SDK, about 120 KiB minified): imported on the first traced call,
 * and only in a Lambda with active tracing (`shared/adapters/observability.ts`).
 */
export const ON_DEMAND_PACKAGES = ["@aws-lambda-powertools/tracer"];

/**
 * Modules of our own that a function imports only on demand, by a `#on-demand/<name>` specifier: the
 * `imports` of package.json, where Node (and so the tests and the embedded stack) resolves it to the source
 * module. They are external to each function's bundle; the `afterBundling` hook bundles each one the
 * function's bundle imports into `on-demand/<name>.mjs` beside it, with a package.json whose `imports` map
 * the same specifier there. The OpenAPI document (allocate, `GET /openapi.json` only) and auto top-up's
 * Twilio number resources and secret (recycler, loaded at its cold start only with top-up on).
 */
export const ON_DEMAND_MODULES: Record<string, string> = Object.fromEntries(
  Object.entries(
    (JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as { imports?: Record<string, string> })
      .imports ?? {},
  ).filter(([specifier]) => specifier.startsWith("#on-demand/")),
);

/**
 * The environment every function starts with (the bench's cold starts use it too). No
 * `NODE_OPTIONS=--enable-source-maps`: with it Node scans each bundle and its map at module init, about 20 ms
 * of every cold start; the one log line that carries a stack maps it itself, from the `.map` file beside the
 * bundle, when it is written (`sourceMappedStack`).
 */
export const FUNCTION_ENVIRONMENT = {
  POWERTOOLS_SERVICE_NAME: "maskline",
  POWERTOOLS_METRICS_NAMESPACE: "Maskline",
} as const;

/**
 * How every bundle is built, in one place: CDK's bundling below, the on-demand packages, `bench/coldstart.ts`
 * and the bundle tests all use these options. ESM, minified, source maps without sources content (read only
 * when an error's stack is logged), module before main, the AWS SDK bundled.
 */
export const ESBUILD_OPTIONS = {
  bundle: true,
  platform: "node",
  target: "node22",
  format: "esm",
  mainFields: ["module", "main"],
  minify: true,
  sourcemap: true,
  sourcesContent: false,
  banner: { js: ESM_BANNER },
  external: [...ON_DEMAND_PACKAGES, ...Object.keys(ON_DEMAND_MODULES)],
  tsconfig: join(repoRoot, "tsconfig.json"),
} satisfies BuildOptions;

/**
 * Bundles each on-demand package into `<outputDir>/node_modules/<package>/`, and each on-demand module
 * `modules` names (by default those `<outputDir>/index.mjs` imports) into `<outputDir>/on-demand/`, with the
 * package.json that maps their specifiers there; returns their entry files.
 */
export async function buildOnDemandPackages(
  outputDir: string,
  modules: string[] = onDemandModulesOf(join(outputDir, "index.mjs")),
): Promise<string[]> {
  const files: string[] = [];
  for (const name of ON_DEMAND_PACKAGES) {
    const dir = join(outputDir, "node_modules", name);
    mkdirSync(dir, { recursive: true });
    await build({
      ...ESBUILD_OPTIONS,
      external: [],
      stdin: { contents: `export * from ${JSON.stringify(name)};`, resolveDir: repoRoot, loader: "js" },
      outfile: join(dir, "index.mjs"),
      logLevel: "warning",
    });
    writeFileSync(
      join(dir, "package.json"),
      `${JSON.stringify({ name, type: "module", exports: "./index.mjs" })}\n`,
    );
    files.push(join(dir, "index.mjs"));
  }
  const imports: Record<string, string> = {};
  for (const specifier of modules) {
    const source = ON_DEMAND_MODULES[specifier];
    if (!source) throw new Error(`${specifier} is not an on-demand module of package.json`);
    const file = `./on-demand/${specifier.slice("#on-demand/".length)}.mjs`;
    await build({
      ...ESBUILD_OPTIONS,
      external: ON_DEMAND_PACKAGES,
      entryPoints: [join(repoRoot, source)],
      outfile: join(outputDir, file),
      logLevel: "warning",
    });
    imports[specifier] = file;
    files.push(join(outputDir, file));
  }
  if (modules.length)
    writeFileSync(
      join(outputDir, "package.json"),
      `${JSON.stringify({ name: "maskline-function", type: "module", imports })}\n`,
    );
  return files;
}

/** The on-demand modules a bundle imports (their specifiers stay verbatim in it). */
function onDemandModulesOf(bundle: string): string[] {
  if (!existsSync(bundle)) return [];
  const code = readFileSync(bundle, "utf8");
  return Object.keys(ON_DEMAND_MODULES).filter((specifier) => code.includes(JSON.stringify(specifier)));
}

export interface MasklineFunctionProps {
  /** Entry, timeout and memory: the definition in `shared/resources.ts`. */
  definition: FunctionDefinition;
  /** The function's own configuration (validated at cold start by the shared config schemas). */
  environment: Record<string, string>;
  logRetention: RetentionDays;
  /** Encrypts the function's log group (the data key). */
  logKey: IKey;
  logLevel: string;
  /** The log group's fate on delete: kept in production, destroyed with a throw-away stage. */
  removalPolicy: RemovalPolicy;
}

/**
 * The one way Maskline builds a Lambda function: nodejs22.x on arm64, bundled locally by esbuild as
 * minified ESM with source maps (`ESBUILD_OPTIONS`, on-demand packages in files of their own), X-Ray
 * tracing, a dedicated log group with retention, Powertools environment, and its own role that starts with
 * nothing but writing to that log group (no managed policies). Callers add exactly the grants the function
 * needs.
 */
export class MasklineFunction extends Construct {
  readonly fn: NodejsFunction;
  readonly role: Role;
  readonly logGroup: LogGroup;
  readonly definition: FunctionDefinition;

  constructor(scope: Construct, id: string, props: MasklineFunctionProps) {
    super(scope, id);
    const { definition } = props;
    this.definition = definition;

    this.logGroup = new LogGroup(this, "Logs", {
      retention: props.logRetention,
      encryptionKey: props.logKey,
      removalPolicy: props.removalPolicy,
    });
    this.role = new Role(this, "Role", {
      assumedBy: new ServicePrincipal("lambda.amazonaws.com"),
      description: `Maskline ${definition.name} function`,
    });
    this.logGroup.grantWrite(this.role);

    this.fn = new NodejsFunction(this, "Function", {
      description: `Maskline ${definition.name}`,
      entry: join(repoRoot, definition.entry),
      handler: "handler",
      runtime: LAMBDA_RUNTIME,
      architecture: Architecture.ARM_64,
      timeout: Duration.seconds(definition.timeoutSeconds),
      memorySize: definition.memoryMb,
      role: this.role,
      logGroup: this.logGroup,
      tracing: Tracing.ACTIVE,
      projectRoot: repoRoot,
      depsLockFilePath: join(repoRoot, "package-lock.json"),
      environment: {
        ...FUNCTION_ENVIRONMENT,
        LOG_LEVEL: props.logLevel,
        ...props.environment,
      },
      bundling: {
        format: OutputFormat.ESM,
        target: ESBUILD_OPTIONS.target,
        mainFields: ESBUILD_OPTIONS.mainFields,
        banner: ESBUILD_OPTIONS.banner.js,
        minify: ESBUILD_OPTIONS.minify,
        sourceMap: ESBUILD_OPTIONS.sourcemap,
        sourceMapMode: SourceMapMode.DEFAULT,
        sourcesContent: ESBUILD_OPTIONS.sourcesContent,
        // Ship the SDK versions we tested with instead of whatever the runtime carries.
        bundleAwsSDK: true,
        externalModules: ESBUILD_OPTIONS.external,
        tsconfig: ESBUILD_OPTIONS.tsconfig,
        logLevel: LogLevel.WARNING,
        forceDockerBundling: false,
        commandHooks: {
          beforeBundling: () => [],
          beforeInstall: () => [],
          afterBundling: (_inputDir, outputDir) => [
            `"${process.execPath}" --import tsx "${join(repoRoot, "infra", "bundle-on-demand.ts")}" "${outputDir}"`,
          ],
        },
      },
    });

    NagSuppressions.addResourceSuppressions(
      this.role,
      [
        {
          id: "AwsSolutions-IAM5",
          reason:
            "Actions without resource-level permissions are granted on '*': X-Ray tracing " +
            "(xray:PutTraceSegments, xray:PutTelemetryRecords) and, for the stream consumer, " +
            "dynamodb:ListStreams. A unit test asserts that no other action is granted on '*'.",
          appliesTo: ["Resource::*"],
        },
      ],
      true,
    );
    NagSuppressions.addResourceSuppressions(this.fn, [
      {
        id: "AwsSolutions-L1",
        reason:
          "nodejs22.x is the runtime the design fixes (docs/deploy.md); it is supported and patched by AWS. " +
          "Moving to a newer runtime is a deliberate change, not a silent one.",
      },
    ]);
  }
}
