/**
 * What each function's bundle holds (esbuild's metafile, bundled as the infra bundles it): no function
 * carries code it does not run. forward and recycler call Twilio through the official package's own
 * message and number resources, never its whole REST client (the `Twilio` class, every product's resources,
 * axios); only the recycler holds the number-buying resources, and it loads them only with top-up on.
 * Packages imported only on demand (the tracer with the X-Ray SDK) are in no function's bundle, and
 * functions that never parse a phone number (forward, publisher) hold no libphonenumber-js: module init
 * parses every byte of a bundle, run or not.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import { build, type Metafile } from "esbuild";
import { ESBUILD_OPTIONS, repoRoot } from "../../infra/constructs/maskline-function.ts";
import { type FunctionName, functions } from "../../shared/resources.ts";

const metafiles = new Map<FunctionName, Promise<Metafile>>();
function metafileOf(name: FunctionName): Promise<Metafile> {
  if (!metafiles.has(name))
    metafiles.set(
      name,
      build({
        ...ESBUILD_OPTIONS,
        entryPoints: [join(repoRoot, functions[name].entry)],
        minify: false,
        sourcemap: false,
        write: false,
        metafile: true,
        logLevel: "silent",
        outfile: join(repoRoot, "cdk.out", "bundle-test", name, "index.mjs"),
      }).then((result) => result.metafile as Metafile),
    );
  return metafiles.get(name) as Promise<Metafile>;
}

/** Every module the bundle's import graph reaches. */
async function inputsOf(name: FunctionName): Promise<string[]> {
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

/**
 * The modules module init evaluates: reached from the entry through static imports and requires, not
 * through a dynamic `import()` (esbuild keeps those in the bundle but evaluates them on first call).
 */
async function evaluatedAtInitOf(name: FunctionName): Promise<Set<string>> {
  const { inputs } = await metafileOf(name);
  const entry = Object.keys(inputs).find((p) => p.endsWith(functions[name].entry)) as string;
  const seen = new Set([entry]);
  for (const path of seen)
    for (const i of inputs[path]?.imports ?? [])
      if (i.kind !== "dynamic-import" && !i.external) seen.add(i.path);
  return seen;
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

  test("recycler holds only the number-buying resources, not the whole client", async () => {
    const inputs = await inputsOf("recycler");
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

  test("allocate evaluates the OpenAPI document, its response schemas and zod-to-openapi only on demand", async () => {
    const atInit = [...(await evaluatedAtInitOf("allocate"))];
    assert.ok(atInit.some((p) => p.endsWith("functions/allocate/schemas.ts")));
    assert.deepEqual(
      atInit.filter((p) =>
        /(functions\/allocate\/(openapi|responses)\.ts|node_modules\/@asteasolutions\/zod-to-openapi\/)/.test(
          p,
        ),
      ),
      [],
    );
    assert.ok((await inputsOf("allocate")).some((p) => p.endsWith("functions/allocate/responses.ts")));
  });
});
