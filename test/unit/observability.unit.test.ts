/** The logging wrapper every handler goes through: Lambda context and correlation id on every line. */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { pathToFileURL } from "node:url";
import type { Context } from "aws-lambda";
import { build } from "esbuild";
import { logger, sourceMappedStack } from "../../shared/adapters/logger.ts";
import { observed, traced } from "../../shared/adapters/observability.ts";

const context = {
  functionName: "maskline-inbound",
  functionVersion: "$LATEST",
  invokedFunctionArn: "arn:aws:lambda:eu-west-1:123456789012:function:maskline-inbound",
  memoryLimitInMB: "512",
  awsRequestId: "req-1",
  getRemainingTimeInMillis: () => 10_000,
} as unknown as Context;

/** Runs `fn`, returning the JSON log lines written meanwhile. */
async function captureLogs(fn: () => Promise<void>): Promise<Record<string, unknown>[]> {
  const lines: string[] = [];
  const original = process.stdout.write.bind(process.stdout);
  const originalErr = process.stderr.write.bind(process.stderr);
  const capture = (chunk: unknown) => {
    lines.push(String(chunk));
    return true;
  };
  process.stdout.write = capture as typeof process.stdout.write;
  process.stderr.write = capture as typeof process.stderr.write;
  try {
    await fn();
  } finally {
    process.stdout.write = original;
    process.stderr.write = originalErr;
  }
  return lines
    .flatMap((l) => l.split("\n"))
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe("observed handlers", () => {
  test("every line of an invocation carries the Lambda context and its correlation id; the next one starts clean", async () => {
    const handler = observed(
      async (event: { sid?: string }) => {
        logger.warn("first line");
        logger.warn("second line", { step: 2 });
        return event.sid ?? "none";
      },
      { correlationId: (event) => event.sid },
    );
    const lines = await captureLogs(async () => {
      await handler({ sid: "SM0123456789abcdef" }, context);
      await handler({}, { ...context, awsRequestId: "req-2" } as Context);
    });
    assert.equal(lines.length, 4, JSON.stringify(lines));
    for (const line of lines.slice(0, 2)) {
      assert.equal(line.correlation_id, "SM0123456789abcdef");
      assert.equal(line.function_name, "maskline-inbound");
      assert.equal(line.function_request_id, "req-1");
    }
    for (const line of lines.slice(2)) {
      assert.equal(line.correlation_id, undefined, "no correlation id leaks into the next invocation");
      assert.equal(line.function_request_id, "req-2");
    }
  });

  test("a failing handler still clears its keys", async () => {
    const handler = observed(
      async (_event: { sid: string }) => {
        throw new Error("boom");
      },
      { correlationId: (event) => event.sid },
    );
    await assert.rejects(handler({ sid: "SMfailing" }, context), /boom/);
    const lines = await captureLogs(async () => logger.warn("after"));
    assert.equal(lines[0]?.correlation_id, undefined);
  });

  test("without tracing (outside Lambda) a traced call just runs, errors included", async () => {
    assert.equal(await traced("DynamoDB.GetItem", async () => 42), 42);
    await assert.rejects(
      traced("Twilio POST", async () => {
        throw new Error("twilio down");
      }),
      /twilio down/,
    );
  });
});

describe("stack traces from a bundle", () => {
  test("positions in a file with a map beside it become source positions; others stay as they are", async () => {
    const dir = mkdtempSync(join(tmpdir(), "maskline-map-"));
    const wasEnabled = process.sourceMapsEnabled;
    try {
      const source = join(dir, "thrower.ts");
      await build({
        stdin: {
          contents: 'export const stackOf = () => {\n  return new Error("x").stack;\n};\n',
          sourcefile: source,
        },
        format: "esm",
        minify: true,
        sourcemap: true,
        outfile: join(dir, "thrower.mjs"),
        logLevel: "silent",
      });
      // As in a function run without --enable-source-maps: Node leaves the bundle's positions alone.
      process.setSourceMapsEnabled(false);
      const { stackOf } = await import(pathToFileURL(join(dir, "thrower.mjs")).href);
      const stack = `${stackOf()}\n    at elsewhere (${join(dir, "no-map.mjs")}:1:1)`;
      assert.match(stack, /thrower\.mjs:1:\d+/);
      const mapped = sourceMappedStack(stack) ?? "";
      assert.match(mapped, new RegExp(`\\(${source.replace(/[.]/g, "\\.")}:2:10\\)`));
      assert.doesNotMatch(mapped, /thrower\.mjs:/);
      assert.ok(mapped.includes(`${join(dir, "no-map.mjs")}:1:1`), "a file without a map keeps its position");
      assert.equal(sourceMappedStack(undefined), undefined);
      // Where Node maps stacks itself (--enable-source-maps, tsx), the stack is left alone.
      process.setSourceMapsEnabled(true);
      assert.equal(sourceMappedStack(stack), stack);
    } finally {
      process.setSourceMapsEnabled(wasEnabled);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
