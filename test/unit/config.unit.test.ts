import assert from "node:assert/strict";
import { test } from "node:test";
import { startEmbeddedStack } from "../../local/stack.ts";
import { ConfigError, messagingServiceConfigSchema, parseConfig } from "../../shared/config.ts";

const SERVICE = `MG${"0123456789abcdef".repeat(2)}`;

test("TWILIO_MESSAGING_SERVICE_SID: MG and 32 hex digits; unset or empty means plain numbers", () => {
  assert.equal(
    parseConfig(messagingServiceConfigSchema, { TWILIO_MESSAGING_SERVICE_SID: SERVICE })
      .TWILIO_MESSAGING_SERVICE_SID,
    SERVICE,
  );
  assert.equal(parseConfig(messagingServiceConfigSchema, {}).TWILIO_MESSAGING_SERVICE_SID, undefined);
  assert.equal(
    parseConfig(messagingServiceConfigSchema, { TWILIO_MESSAGING_SERVICE_SID: "" })
      .TWILIO_MESSAGING_SERVICE_SID,
    undefined,
  );
  for (const bad of [
    "MG123",
    `PN${"0".repeat(32)}`,
    `MG${"G".repeat(32)}`,
    `MG${"A".repeat(32)}`,
    ` ${SERVICE}`,
  ])
    assert.throws(
      () => parseConfig(messagingServiceConfigSchema, { TWILIO_MESSAGING_SERVICE_SID: bad }),
      (error: unknown) => error instanceof ConfigError && /TWILIO_MESSAGING_SERVICE_SID/.test(error.message),
      bad,
    );
});

test("a bad TWILIO_MESSAGING_SERVICE_SID stops npm start before anything starts, naming the variable", async () => {
  await assert.rejects(
    startEmbeddedStack({ PORT: "0", TWILIO_MESSAGING_SERVICE_SID: "MG-not-a-sid" }),
    (error: unknown) => error instanceof ConfigError && /TWILIO_MESSAGING_SERVICE_SID/.test(error.message),
  );
});
