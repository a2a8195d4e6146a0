import assert from "node:assert/strict";
import { test } from "node:test";
import { localConfigSchema, startEmbeddedStack } from "../../local/stack.ts";
import {
  apiConfigSchema,
  ConfigError,
  coreConfigSchema,
  messagingServiceConfigSchema,
  parseConfig,
  recyclerConfigSchema,
  sessionRetentionSchema,
  twilioConfigSchema,
  webhookConfigSchema,
} from "../../shared/config.ts";

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

const SID = `AC${"0123456789abcdef".repeat(2)}`;
const refuses = (schema: Parameters<typeof parseConfig>[0], env: Record<string, string>, name: string) =>
  assert.throws(
    () => parseConfig(schema, env),
    (error: unknown) =>
      error instanceof ConfigError &&
      new RegExp(`^  ${name}: `, "m").test(error.message) &&
      Object.values(env).every((value) => value.length < 4 || !error.message.includes(value)),
    `${name}=${JSON.stringify(env[name])}`,
  );

test("an empty variable (FOO=) is unset: its default applies; an empty reply or notice text means none", () => {
  const local = parseConfig(localConfigSchema, {
    PORT: "",
    HOST: "",
    MASKLINE_API_TOKEN: "",
    TWILIO_ACCOUNT_SID: "",
    TWILIO_AUTH_TOKEN: "",
    TWILIO_SECONDARY_AUTH_TOKEN: "",
    TWILIO_API_BASE_URL: "",
    PUBLIC_BASE_URL: "",
    LOCAL_EVENTS_WEBHOOK_URL: "",
  });
  assert.equal(local.PORT, 3000, "not port 0 (a random port)");
  assert.equal(local.HOST, "127.0.0.1");
  for (const name of [
    "MASKLINE_API_TOKEN",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_SECONDARY_AUTH_TOKEN",
    "TWILIO_API_BASE_URL",
    "PUBLIC_BASE_URL",
    "LOCAL_EVENTS_WEBHOOK_URL",
  ] as const)
    assert.equal(local[name], undefined, name);
  const webhooks = parseConfig(webhookConfigSchema, {
    PUBLIC_BASE_URL: "https://x.example",
    OUT_OF_SESSION_REPLY_INTERVAL_SECONDS: "",
    SENDER_RATE_LIMIT: "",
    HELP_REPLY: "",
    CONTENT_POLICY: "",
    REPLAY_WINDOW_DAYS: "",
    OUT_OF_SESSION_REPLY: "",
    OUT_OF_SESSION_VOICE: "",
    RATE_LIMIT_REPLY: "",
    CONTENT_BLOCKED_REPLY: "",
  });
  assert.equal(webhooks.OUT_OF_SESSION_REPLY_INTERVAL_SECONDS, 86_400, "not 0 (a reply to every text)");
  assert.deepEqual(webhooks.SENDER_RATE_LIMIT, { count: 30, seconds: 60 });
  assert.match(webhooks.HELP_REPLY, /STOP/);
  assert.equal(webhooks.CONTENT_POLICY, "off");
  assert.equal(webhooks.REPLAY_WINDOW_DAYS, 30);
  assert.equal(webhooks.OUT_OF_SESSION_REPLY, "", "empty: no auto-reply, as documented");
  assert.equal(webhooks.OUT_OF_SESSION_VOICE, "", "empty: the call is rejected without a message");
  assert.equal(webhooks.RATE_LIMIT_REPLY, "", "empty: no notice");
  assert.equal(webhooks.CONTENT_BLOCKED_REPLY, "", "empty: no notice");
  assert.equal(
    parseConfig(sessionRetentionSchema, { SESSION_RETENTION_DAYS: "" }).SESSION_RETENTION_DAYS,
    90,
  );
  assert.equal(
    parseConfig(coreConfigSchema, { MAX_PROXIES_PER_PARTICIPANT: "" }).MAX_PROXIES_PER_PARTICIPANT,
    undefined,
  );
});

test("TWILIO_ACCOUNT_SID starts with AC, locally and in every function (a stand-in's shorter SID is accepted)", () => {
  for (const good of [SID, "ACxyz", "AC_test_1"]) {
    assert.equal(parseConfig(localConfigSchema, { TWILIO_ACCOUNT_SID: good }).TWILIO_ACCOUNT_SID, good);
    assert.equal(
      parseConfig(twilioConfigSchema, { TWILIO_ACCOUNT_SID: good, TWILIO_AUTH_TOKEN: "t" })
        .TWILIO_ACCOUNT_SID,
      good,
    );
  }
  for (const bad of ["AC", "AC-1", ` ${SID}`, `SK${"0".repeat(32)}`]) {
    refuses(localConfigSchema, { TWILIO_ACCOUNT_SID: bad }, "TWILIO_ACCOUNT_SID");
    refuses(twilioConfigSchema, { TWILIO_ACCOUNT_SID: bad, TWILIO_AUTH_TOKEN: "t" }, "TWILIO_ACCOUNT_SID");
  }
});

test("PUBLIC_BASE_URL, TWILIO_API_BASE_URL and LOCAL_EVENTS_WEBHOOK_URL are http(s) URLs without query or fragment", () => {
  const web = (url: string) => parseConfig(webhookConfigSchema, { PUBLIC_BASE_URL: url }).PUBLIC_BASE_URL;
  assert.equal(web("https://x.example/maskline/"), "https://x.example/maskline", "a path prefix is kept");
  assert.equal(web("http://x.example:8080"), "http://x.example:8080");
  const api = (url: string) =>
    parseConfig(twilioConfigSchema, {
      TWILIO_ACCOUNT_SID: SID,
      TWILIO_AUTH_TOKEN: "t",
      TWILIO_API_BASE_URL: url,
    }).TWILIO_API_BASE_URL;
  assert.equal(api("http://127.0.0.1:4000/fake/"), "http://127.0.0.1:4000/fake");
  for (const bad of [
    "ftp://x.example",
    "javascript:alert(1)",
    "https://x.example/?a=1",
    "https://x.example/#f",
    "x.example",
  ]) {
    refuses(webhookConfigSchema, { PUBLIC_BASE_URL: bad }, "PUBLIC_BASE_URL");
    for (const name of [
      "PUBLIC_BASE_URL",
      "TWILIO_API_BASE_URL",
      ...(/^(ftp|javascript|x\.)/.test(bad) ? ["LOCAL_EVENTS_WEBHOOK_URL"] : []),
    ])
      refuses(localConfigSchema, { [name]: bad }, name);
    refuses(
      twilioConfigSchema,
      { TWILIO_ACCOUNT_SID: SID, TWILIO_AUTH_TOKEN: "t", TWILIO_API_BASE_URL: bad },
      "TWILIO_API_BASE_URL",
    );
  }
});

test("a secret or URL with surrounding whitespace (a CRLF .env file) is refused, naming the variable, never signing with it", () => {
  const real = { TWILIO_ACCOUNT_SID: SID, TWILIO_AUTH_TOKEN: "f".repeat(32) };
  for (const name of ["TWILIO_AUTH_TOKEN", "TWILIO_SECONDARY_AUTH_TOKEN", "MASKLINE_API_TOKEN"])
    for (const bad of [`${"s".repeat(20)}\r`, ` ${"s".repeat(20)}`, `${"s".repeat(20)}\n`])
      refuses(localConfigSchema, { ...real, [name]: bad }, name);
  refuses(twilioConfigSchema, { ...real, TWILIO_AUTH_TOKEN: `${"f".repeat(32)}\r` }, "TWILIO_AUTH_TOKEN");
  refuses(apiConfigSchema, { MASKLINE_API_TOKEN: `${"s".repeat(20)}\r` }, "MASKLINE_API_TOKEN");
  for (const bad of ["https://x.example\r", " https://x.example", "https://x.example/a b"]) {
    refuses(webhookConfigSchema, { PUBLIC_BASE_URL: bad }, "PUBLIC_BASE_URL");
    refuses(localConfigSchema, { TWILIO_API_BASE_URL: bad }, "TWILIO_API_BASE_URL");
  }
});

test("durations in seconds are at most ten years (1e40 passed and made every out-of-session text a 500)", () => {
  for (const bad of ["1e40", "315360001", "-1", "1.5", "abc"]) {
    refuses(
      webhookConfigSchema,
      { PUBLIC_BASE_URL: "https://x.example", OUT_OF_SESSION_REPLY_INTERVAL_SECONDS: bad },
      "OUT_OF_SESSION_REPLY_INTERVAL_SECONDS",
    );
    refuses(coreConfigSchema, { QUARANTINE_SECONDS: bad }, "QUARANTINE_SECONDS");
  }
  assert.equal(
    parseConfig(webhookConfigSchema, {
      PUBLIC_BASE_URL: "https://x.example",
      OUT_OF_SESSION_REPLY_INTERVAL_SECONDS: "315360000",
    }).OUT_OF_SESSION_REPLY_INTERVAL_SECONDS,
    315_360_000,
  );
});

test("npm start names every bad variable at once, the handlers' too, before anything starts", async () => {
  await assert.rejects(
    startEmbeddedStack({
      PORT: "0",
      HOST: "not a host!",
      SENDER_RATE_LIMIT: "abc",
      CONTENT_POLICY: "nope",
      SESSION_RETENTION_DAYS: "0",
      PSEUDONYM_KEY: "short",
    }),
    (error: unknown) =>
      error instanceof ConfigError &&
      ["HOST", "SENDER_RATE_LIMIT", "CONTENT_POLICY", "SESSION_RETENTION_DAYS", "PSEUDONYM_KEY"].every(
        (name) => new RegExp(`^  ${name}: `, "m").test(error.message),
      ),
  );
});

test("a refused value is never repeated in the message (an enum's either)", () => {
  refuses(
    webhookConfigSchema,
    { PUBLIC_BASE_URL: "https://x.example", CONTENT_POLICY: "secret-ish" },
    "CONTENT_POLICY",
  );
  refuses(recyclerConfigSchema, { AUTO_TOP_UP: "secret-ish" }, "AUTO_TOP_UP");
});

test("npm start refuses a bad value of every other variable the handlers read, before anything starts", async () => {
  const bad = {
    CURSOR_SIGNING_KEY: "short",
    TWILIO_TIMEOUT_MS: "1",
    TWILIO_SECRET_MAX_AGE_SECONDS: "0",
    AWS_CALL_TIMEOUT_MS: "1",
    AWS_CONNECT_TIMEOUT_MS: "1",
    LOG_LEVEL: "LOUD",
  };
  // Resolving means the stack started: stop it, and fail on the missing refusal.
  const outcome = await startEmbeddedStack({ PORT: "0", ...bad }).then(
    async (stack) => {
      await stack.stop();
      return undefined;
    },
    (error: unknown) => error,
  );
  assert.ok(outcome instanceof ConfigError, `no refusal: ${outcome}`);
  for (const name of Object.keys(bad)) assert.match(outcome.message, new RegExp(`^  ${name}: `, "m"), name);
});
