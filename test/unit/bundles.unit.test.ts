/**
 * What each function's bundle holds (esbuild's metafile, bundled as the infra bundles it): no function
 * carries code it does not run. forward and recycler call Twilio through the official package's own
 * message and number resources, never its whole REST client (the `Twilio` class, every product's resources,
 * axios); only the recycler's top-up holds the number-buying resources, in an on-demand module loaded only
 * with top-up on. Packages and modules imported only on demand (the tracer with the X-Ray SDK, the OpenAPI
 * document, top-up) are in no function's bundle, and
 * functions that never parse a phone number (forward, publisher) hold no libphonenumber-js: module init
 * parses every byte of a bundle, run or not.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import { build, type Metafile } from "esbuild";
import { ESBUILD_OPTIONS, ON_DEMAND_MODULES, repoRoot } from "../../infra/constructs/maskline-function.ts";
import { type FunctionName, functions } from "../../shared/resources.ts";
import { THROWING_LINE } from "../support/failing-handler.ts";

/** A function, or an on-demand module (`#on-demand/…`), bundled in a file of its own. */
type Bundled = FunctionName | `#on-demand/${string}`;
const entryOf = (name: Bundled) =>
  name.startsWith("#") ? (ON_DEMAND_MODULES[name] as string) : functions[name as FunctionName].entry;

const metafiles = new Map<Bundled, Promise<Metafile>>();
function metafileOf(name: Bundled): Promise<Metafile> {
  if (!metafiles.has(name))
    metafiles.set(
      name,
      build({
        ...ESBUILD_OPTIONS,
        entryPoints: [join(repoRoot, entryOf(name))],
        minify: false,
        sourcemap: false,
        write: false,
        metafile: true,
        logLevel: "silent",
        outfile: join(repoRoot, "cdk.out", "bundle-test", name.replace("#on-demand/", ""), "index.mjs"),
      }).then((result) => result.metafile as Metafile),
    );
  return metafiles.get(name) as Promise<Metafile>;
}

/** Every module the bundle's import graph reaches. */
async function inputsOf(name: Bundled): Promise<string[]> {
  return Object.keys((await metafileOf(name)).inputs);
}

/** The modules with code in the bundle (tree shaking drops the others). */
async function emittedOf(name: FunctionName): Promise<string[]> {
  const outputs = Object.values((await metafileOf(name)).outputs);
  return outputs.flatMap((o) =>
    Object.entries(o.inputs)
      .filter(([, i]) => i.bytesInOutput > 0)
      .map(([p]) => p),
  );
}

const twilioRest = (inputs: string[]) => inputs.filter((i) => /node_modules\/twilio\/lib\/rest\//.test(i));
const WHOLE_CLIENT =
  /node_modules\/(twilio\/lib\/(index|rest\/Twilio|base\/BaseTwilio|base\/RequestClient)\.js|axios\/)/;
const NUMBER_RESOURCES =
  /twilio\/lib\/rest\/(api\/v2010\/account\/(incomingPhoneNumber|availablePhoneNumberCountry)|messaging\/)/;

describe("function bundles (esbuild metafile)", () => {
  test("forward holds Twilio's message resource and nothing else of its REST client", async () => {
    const inputs = await inputsOf("forward");
    assert.deepEqual(
      inputs.filter((i) => WHOLE_CLIENT.test(i)),
      [],
    );
    const rest = twilioRest(inputs);
    assert.ok(rest.some((i) => i.endsWith("twilio/lib/rest/api/v2010/account/message.js")));
    assert.deepEqual(
      rest.filter((i) => !/twilio\/lib\/rest\/api\/v2010\/account\/message(\.js|\/)/.test(i)),
      [],
    );
  });

  test("recycler's on-demand top-up holds only the number-buying resources, not the whole client", async () => {
    const inputs = await inputsOf("#on-demand/recycler-top-up");
    assert.deepEqual(
      inputs.filter((i) => WHOLE_CLIENT.test(i)),
      [],
    );
    const rest = twilioRest(inputs);
    assert.ok(rest.length > 0 && rest.length < 30, `${rest.length} twilio/lib/rest inputs`);
    assert.deepEqual(
      rest.filter((i) => !NUMBER_RESOURCES.test(i)),
      [],
    );
  });

  test("inbound, allocate and publisher hold no Twilio REST code at all", async () => {
    for (const name of ["inbound", "allocate", "publisher"] as const)
      assert.deepEqual(twilioRest(await inputsOf(name)), [], name);
  });

  test("no function bundles the tracer or the X-Ray SDK: they load on demand from a file of their own", async () => {
    for (const name of Object.keys(functions) as FunctionName[])
      assert.deepEqual(
        (await inputsOf(name)).filter((i) =>
          /node_modules\/(@aws-lambda-powertools\/tracer|aws-xray-sdk-core|cls-hooked|semver)\//.test(i),
        ),
        [],
        name,
      );
  });

  test("forward and publisher, which parse no phone number, hold no libphonenumber-js", async () => {
    for (const name of ["forward", "publisher"] as const)
      assert.deepEqual(
        (await emittedOf(name)).filter((i) => /node_modules\/libphonenumber-js\//.test(i)),
        [],
        name,
      );
  });

  test("allocate holds no OpenAPI document, response schemas or zod-to-openapi: they load on demand from a file of their own", async () => {
    const inputs = await inputsOf("allocate");
    assert.ok(inputs.some((p) => p.endsWith("functions/allocate/schemas.ts")));
    assert.deepEqual(
      inputs.filter((p) =>
        /(functions\/allocate\/(openapi|responses)\.ts|node_modules\/@asteasolutions\/zod-to-openapi\/)/.test(
          p,
        ),
      ),
      [],
    );
  });

  test("recycler holds no Twilio code and no Secrets Manager client: top-up loads them on demand from a file of its own", async () => {
    const inputs = await inputsOf("recycler");
    assert.deepEqual(
      inputs.filter((p) =>
        /(node_modules\/(twilio|dayjs|@aws-sdk\/client-secrets-manager)\/|shared\/adapters\/(twilio-numbers|twilio-rest|secrets)\.ts)/.test(
          p,
        ),
      ),
      [],
    );
  });

  test("a 5xx logged by a bundle, run as deployed (no --enable-source-maps), names the source file and line", async () => {
    const dir = mkdtempSync(join(tmpdir(), "maskline-stack-"));
    try {
      const outfile = join(dir, "index.mjs");
      await build({
        ...ESBUILD_OPTIONS,
        entryPoints: [join(repoRoot, "test", "support", "failing-handler.ts")],
        outfile,
        logLevel: "silent",
      });
      const event = { rawPath: "/x", routeKey: "GET /x", headers: {}, requestContext: {} };
      const { stderr } = await promisify(execFile)(
        process.execPath,
        [
          "--input-type=module",
          "-e",
          `const { handler } = await import(${JSON.stringify(outfile)}); await handler(${JSON.stringify(event)}, {});`,
        ],
        { env: { PATH: process.env.PATH ?? "" }, cwd: dir, timeout: 30_000 },
      );
      // Powertools writes ERROR lines to stderr outside Lambda.
      const logged = stderr
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line))
        .find((line) => line.message === "request failed");
      const stack = String(logged?.error?.stack);
      assert.match(stack, /^Error: broken on purpose/);
      assert.ok(
        stack.includes(`${join(repoRoot, "test", "support", "failing-handler.ts")}:${THROWING_LINE}:`),
        `the throwing line is named:\n${stack}`,
      );
      assert.doesNotMatch(stack, /index\.mjs:\d+:\d+/, "no position in the minified bundle is left");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
