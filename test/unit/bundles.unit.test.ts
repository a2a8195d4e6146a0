/**
 * What each function's bundle holds (esbuild's metafile, bundled as the infra bundles it): no function
 * carries code it does not run. forward and recycler call Twilio through the official package's own
 * message and number resources, never its whole REST client (the `Twilio` class, every product's resources,
 * axios); only the recycler holds the number-buying resources, and it loads them only with top-up on.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import { build, type Metafile } from "esbuild";
import { repoRoot } from "../../infra/constructs/maskline-function.ts";
import { type FunctionName, functions } from "../../shared/resources.ts";

async function inputsOf(name: FunctionName): Promise<string[]> {
  const result = await build({
    entryPoints: [join(repoRoot, functions[name].entry)],
    bundle: true,
    platform: "node",
    target: "node22",
    format: "esm",
    mainFields: ["module", "main"],
    write: false,
    metafile: true,
    logLevel: "silent",
    outfile: join(repoRoot, "cdk.out", "bundle-test", name, "index.mjs"),
  });
  return Object.keys((result.metafile as Metafile).inputs);
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
});
