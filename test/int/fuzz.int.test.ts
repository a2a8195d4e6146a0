import assert from "node:assert/strict";
import type { Server } from "node:http";
import { after, before, describe, test } from "node:test";
import { ScanCommand } from "@aws-sdk/lib-dynamodb";
import fc from "fast-check";
import { getExpectedTwilioSignature } from "twilio/lib/webhooks/webhooks.js";
import { createAllocateHandler } from "../../functions/allocate/app.ts";
import { createInboundHandler } from "../../functions/inbound/app.ts";
import { freePort } from "../../local/aws-local.ts";
import { LocalEventBus } from "../../local/event-bus.ts";
import { createLocalServer, type HttpHandler } from "../../local/server.ts";
import { TwilioSandbox } from "../../local/twilio-sandbox.ts";
import { logger } from "../../shared/adapters/aws.ts";
import { newId } from "../../shared/adapters/ids.ts";
import { SqsForwardQueue } from "../../shared/adapters/sqs-queue.ts";
import { InboundService } from "../../shared/app/inbound.ts";
import { SessionService } from "../../shared/app/sessions.ts";
import type { E164 } from "../../shared/domain/phone.ts";
import { routes } from "../../shared/resources.ts";
import { startLocalAws } from "../support/stack.ts";

/**
 * Seeded fuzzing of every route through the local server and the deployed handlers on DynamoDB Local:
 * never a 5xx, and nothing written by a request that is unsigned (Twilio routes) or unauthenticated
 * (product routes). `npm run fuzz` runs the same properties 100 times longer (FUZZ_RUNS); FUZZ_SEED
 * replays another seed.
 */
const RUNS = Number(process.env.FUZZ_RUNS ?? 200);
const SEED = Number(process.env.FUZZ_SEED ?? 1207);
const TIMEOUT_MS = Math.max(60_000, RUNS * 200);

const ACCOUNT_SID = `AC${"5".repeat(32)}`;
const AUTH_TOKEN = "fuzz-twilio-auth-token";
const API_TOKEN = "fuzz-api-token-0123456789";
const PUBLIC_BASE_URL = "https://maskline.example.com";
const POOL = ["+14155550100", "+14155550101", "+14155550102"];
const PEOPLE = ["+12025550101", "+12025550102", "+12025550103", "+447911123456"];

let aws: Awaited<ReturnType<typeof startLocalAws>>;
let server: Server;
let base = "";
let tableName = "";
const sessionIds: string[] = [];

const itemCount = async () => {
  let count = 0;
  let start: Record<string, unknown> | undefined;
  do {
    const page = await aws.doc.send(
      new ScanCommand({ TableName: tableName, Select: "COUNT", ExclusiveStartKey: start }),
    );
    count += page.Count ?? 0;
    start = page.LastEvaluatedKey;
  } while (start);
  return count;
};

// ---- generators -------------------------------------------------------------------------------------

const hex = (n: number) =>
  fc.string({ unit: fc.constantFrom(..."0123456789abcdef"), minLength: n, maxLength: n });
const oddText = fc.oneof(
  fc.string(),
  fc.string({ unit: "grapheme" }),
  fc.string({ unit: "binary" }),
  fc.constantFrom("", " ", "\u0000", "\u202e", "😀👨‍👩‍👧", "STOP", "stop ", "HELP", "%00", "a".repeat(1601)),
);
const phoneLike = fc.oneof(
  { arbitrary: fc.constantFrom(...POOL, ...PEOPLE), weight: 4 },
  fc.constantFrom("+4922222222222222", "+1", "anonymous", "MYBRAND", "12345", "+0000000000", "+١٢٣٤٥٦٧٨٩٠"),
  fc.string({ unit: fc.constantFrom(..."+0123456789 ()-"), maxLength: 20 }),
  fc.string(),
);
const messageSid = fc.oneof(
  { arbitrary: fc.tuple(fc.constantFrom("SM", "MM"), hex(32)).map(([p, h]) => p + h), weight: 4 },
  fc
    .tuple(fc.constantFrom("SM", "MM", "CA", "sm", ""), hex(32), fc.string({ maxLength: 12 }))
    .map(([p, h, tail]) => p + h + tail),
  fc.string({ maxLength: 40 }),
);
const callSid = fc.oneof(
  { arbitrary: hex(32).map((h) => `CA${h}`), weight: 4 },
  fc.string({ maxLength: 40 }),
);
const numMedia = fc.oneof(
  fc.integer({ min: -2, max: 12 }).map(String),
  fc.constantFrom("", "lots", "1e3", "0x2", " 1", "NaN", "Infinity", "9".repeat(30)),
);
const extraFields = fc.dictionary(
  fc.oneof(
    fc.string({ maxLength: 12 }),
    fc.constantFrom("MediaUrl0", "MediaUrl1", "OptOutType", "ErrorCode"),
  ),
  oddText,
  { maxKeys: 4 },
);

const accountSid = fc.oneof({ arbitrary: fc.constant(ACCOUNT_SID), weight: 6 }, fc.string({ maxLength: 40 }));
const smsForm = fc.record(
  {
    AccountSid: accountSid,
    MessageSid: messageSid,
    From: phoneLike,
    To: phoneLike,
    Body: oddText,
    NumMedia: numMedia,
    MediaUrl0: fc.oneof(fc.webUrl(), fc.string()),
    OptOutType: fc.constantFrom("STOP", "START", "HELP", "x".repeat(20)),
  },
  { requiredKeys: ["AccountSid", "MessageSid", "From", "To"] },
);
const voiceForm = fc.record(
  {
    AccountSid: accountSid,
    CallSid: callSid,
    From: phoneLike,
    To: phoneLike,
  },
  { requiredKeys: ["AccountSid", "CallSid"] },
);
const statusForm = fc.record(
  {
    AccountSid: accountSid,
    MessageSid: messageSid,
    CallSid: callSid,
    MessageStatus: fc.oneof(fc.constantFrom("sent", "delivered", "failed", "undelivered"), fc.string()),
    SmsStatus: fc.string({ maxLength: 40 }),
    ErrorCode: fc.oneof(fc.constantFrom("30003", "21610"), fc.string({ maxLength: 20 })),
  },
  { requiredKeys: ["AccountSid"] },
);

const webhook = fc.oneof(
  fc.record({ path: fc.constant("/twilio/sms"), form: smsForm, query: fc.constant("") }),
  fc.record({ path: fc.constant("/twilio/voice"), form: voiceForm, query: fc.constant("") }),
  fc.record({
    path: fc.constant("/twilio/status"),
    form: statusForm,
    query: fc.oneof(
      fc.constant(""),
      fc.string().map((m) => `m=${encodeURIComponent(m)}`),
      fc.constantFrom("m=%", "m=%zz", "m=msg_1&m=msg_2", "m"),
    ),
  }),
);

const withExtras = fc
  .tuple(webhook, extraFields)
  .map(([w, extras]) => ({ ...w, form: { ...extras, ...w.form } as Record<string, string> }));

/** A path segment: ids, numbers, and what proxies, browsers and attackers put in paths. */
const segment = fc.oneof(
  fc.constantFrom(...PEOPLE, ...POOL).map(encodeURIComponent),
  fc.constantFrom(
    "%",
    "%zz",
    "%00",
    "%2F",
    "%2e%2e",
    "%25",
    "%E0%A4%A",
    "%C0%AF",
    "%F0%9F%98%80",
    "+14155550100",
    "%2B14155550100",
    "ses_doesnotexist",
    "a".repeat(300),
    "..",
  ),
  fc.string({ unit: fc.constantFrom(..."%0123456789abcdefABCDEFzZ+-_~."), maxLength: 30 }),
  fc.string().map(encodeURIComponent),
);

const jsonish = fc.oneof(
  fc.jsonValue(),
  fc.record(
    {
      participants: fc.oneof(
        fc.array(
          fc.record(
            { phoneNumber: fc.oneof(phoneLike, fc.jsonValue()), id: fc.jsonValue(), name: fc.jsonValue() },
            { requiredKeys: [] },
          ),
          { maxLength: 3 },
        ),
        fc.jsonValue(),
      ),
      mode: fc.oneof(fc.constantFrom("sms", "voice", "sms+voice"), fc.jsonValue()),
      ttlSeconds: fc.oneof(fc.integer(), fc.double(), fc.jsonValue()),
      ttlMode: fc.oneof(fc.constantFrom("absolute", "sliding"), fc.jsonValue()),
      policy: fc.jsonValue(),
      to: fc.oneof(phoneLike, fc.jsonValue()),
      body: fc.oneof(oddText, fc.jsonValue()),
      phoneNumber: fc.oneof(phoneLike, fc.jsonValue()),
    },
    { requiredKeys: [] },
  ),
);

const bodyText = fc.oneof(
  jsonish.map((v) => JSON.stringify(v) ?? ""),
  fc.string(),
  fc.constantFrom("", "{", "null", "[]", '{"participants":', "\u0000", '{"__proto__":{"x":1}}'),
);

const headerValue = fc.string({
  unit: fc.constantFrom(..." !#$%&'*+-.^_`|~0123456789abcdefxyzABCXYZ;=/,\"()"),
  maxLength: 40,
});
const headers = fc.record(
  {
    "content-type": fc.oneof(
      fc.constantFrom(
        "application/json",
        "application/json; charset=utf-8",
        "application/problem+json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
      ),
      headerValue,
    ),
    "idempotency-key": fc.oneof(
      fc.string({ unit: fc.constantFrom(..."abc-_123"), maxLength: 300 }),
      headerValue,
    ),
    accept: headerValue,
    "x-forwarded-for": headerValue,
    "x-http-method-override": fc.constantFrom("DELETE", "PATCH", "GET"),
  },
  { requiredKeys: [] },
);

const productRequest = fc.record({
  route: fc.constantFrom(...routes.filter((r) => !r.path.startsWith("/twilio/"))),
  params: fc.array(segment, { minLength: 2, maxLength: 2 }),
  method: fc.option(fc.constantFrom("GET", "POST", "DELETE", "PUT", "PATCH"), { nil: undefined }),
  query: fc.oneof(
    fc.constant(""),
    fc.string().map((q) => `?${encodeURIComponent(q)}`),
    fc.constantFrom("?limit=-1", "?cursor=%zz"),
  ),
  body: bodyText,
  headers,
  /** Arbitrary extra headers (x- names: fetch refuses to set some standard ones). */
  extra: fc.dictionary(
    fc
      .string({
        unit: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789-_"),
        minLength: 1,
        maxLength: 20,
      })
      .map((n) => `x-${n}`),
    headerValue,
    { maxKeys: 4 },
  ),
});

// ---- harness ----------------------------------------------------------------------------------------

type Sent = { status: number; text: string };

async function send(path: string, init: RequestInit): Promise<Sent> {
  const res = await fetch(`${base}${path}`, init);
  return { status: res.status, text: await res.text() };
}

function signedPost(path: string, query: string, form: Record<string, string>, signature?: string) {
  const url = `${PUBLIC_BASE_URL}${path}${query ? `?${query}` : ""}`;
  return send(`${path}${query ? `?${query}` : ""}`, {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      "x-twilio-signature": signature ?? getExpectedTwilioSignature(AUTH_TOKEN, url, form),
    },
    body: new URLSearchParams(form).toString(),
  });
}

function productPath(route: { path: string }, params: string[]) {
  let i = 0;
  return route.path.replace(/\{\w+\}/g, () => {
    const value = params[i++] ?? "";
    // Sometimes a real session id, so the deeper code runs too.
    return value === "ses_doesnotexist" && sessionIds.length ? (sessionIds[0] as string) : value;
  });
}

const notServerError = (what: string, res: Sent) =>
  assert.ok(res.status < 500, `${what} answered ${res.status}: ${res.text.slice(0, 300)}`);

describe(`fuzz: every route, ${RUNS} runs per property, seed ${SEED}`, () => {
  before(async () => {
    aws = await startLocalAws();
    const fresh = await aws.fresh();
    tableName = fresh.tableName;
    const common = {
      queue: new SqsForwardQueue({ queueUrl: fresh.queue.queueUrl, client: aws.sqsClient }),
      clock: { now: () => Date.now() },
      newId,
      quarantineSeconds: 3600,
    };
    const sessions = new SessionService({ ...common, store: fresh.store });
    const inbound = createInboundHandler({
      service: new InboundService({
        ...common,
        store: fresh.store,
        outOfSessionReply: "This conversation has ended.",
        outOfSessionVoice: "Goodbye.",
        helpReply: "HELP: reply STOP to opt out.",
        // The production defaults.
        traffic: {
          autoReplyIntervalSeconds: 86_400,
          senderRateLimit: { count: 30, seconds: 60 },
          rateLimitReply: "Slow down.",
          replayWindowDays: 30,
          contentPolicy: "off",
          contentBlockedReply: "No contact details, please.",
        },
      }),
      logger,
      authToken: AUTH_TOKEN,
      accountSid: ACCOUNT_SID,
      publicBaseUrl: PUBLIC_BASE_URL,
    });
    const allocate = createAllocateHandler({
      service: sessions,
      logger,
      auth: { mode: "token", token: API_TOKEN },
      health: async () => ({ table: "ok" }),
    });
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    server = createLocalServer({
      handlers: { inbound: inbound as unknown as HttpHandler, allocate: allocate as unknown as HttpHandler },
      sandbox: new TwilioSandbox({
        accountSid: ACCOUNT_SID,
        authToken: AUTH_TOKEN,
        publicBaseUrl: PUBLIC_BASE_URL,
        webhookTarget: base,
      }),
      bus: new LocalEventBus(),
      sandboxApi: async () => false,
      sandboxEnabled: () => false,
    });
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    for (const number of POOL) await sessions.addNumber(number as E164);
    for (const [a, b] of [
      [PEOPLE[0], PEOPLE[1]],
      [PEOPLE[2], PEOPLE[3]],
    ] as [E164, E164][]) {
      const { session } = await sessions.openSession({
        participants: [{ phoneNumber: a }, { phoneNumber: b }],
        mode: "sms+voice",
        ttlSeconds: 3600,
        ttlMode: "absolute",
      });
      sessionIds.push(session.sessionId);
    }
  });
  after(async () => {
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    await aws?.stop();
  });

  test("validly signed random Twilio webhooks: never a 5xx, never taken for forged", {
    timeout: TIMEOUT_MS,
  }, async () => {
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(withExtras, async ({ path, query, form }) => {
        const res = await signedPost(path, query, form);
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        notServerError(path, res);
        assert.notEqual(res.status, 403, `a validly signed ${path} was refused as forged`);
      }),
      { numRuns: RUNS, seed: SEED },
    );
    const answered = (statuses.get(200) ?? 0) + (statuses.get(204) ?? 0);
    process.stdout.write(`# signed webhooks by status: ${JSON.stringify(Object.fromEntries(statuses))}\n`);
    assert.ok(answered >= RUNS / 10, "enough of the forms get past validation to exercise the services");
  });

  test("unsigned or wrongly signed Twilio webhooks: 403 and nothing written", {
    timeout: TIMEOUT_MS,
  }, async () => {
    const before = await itemCount();
    await fc.assert(
      fc.asyncProperty(
        withExtras,
        fc.oneof(
          fc.constant(""),
          fc.base64String({ minLength: 28, maxLength: 28 }),
          fc.string({ maxLength: 64 }).filter((s) => /^[\x20-\x7e]*$/.test(s)),
        ),
        async ({ path, query, form }, signature) => {
          const res = signature
            ? await signedPost(path, query, form, signature)
            : await send(path, {
                method: "POST",
                headers: { "content-type": "application/x-www-form-urlencoded" },
                body: new URLSearchParams(form).toString(),
              });
          notServerError(path, res);
          assert.equal(res.status, 403, `${path}: ${res.text.slice(0, 200)}`);
        },
      ),
      { numRuns: RUNS, seed: SEED },
    );
    assert.equal(await itemCount(), before, "no writes from unsigned webhooks");
  });

  test("authenticated random product requests: never a 5xx", { timeout: TIMEOUT_MS }, async () => {
    await fc.assert(
      fc.asyncProperty(productRequest, async (r) => {
        const method = r.method ?? r.route.method;
        const path = productPath(r.route, r.params) + r.query;
        const res = await send(path, {
          method,
          headers: { ...r.extra, ...r.headers, authorization: `Bearer ${API_TOKEN}` },
          body: method === "GET" || method === "DELETE" ? undefined : r.body,
        });
        notServerError(`${method} ${path}`, res);
      }),
      { numRuns: RUNS, seed: SEED },
    );
  });

  test("unauthenticated random product requests: 401 (or no such route) and nothing written", {
    timeout: TIMEOUT_MS,
  }, async () => {
    const before = await itemCount();
    await fc.assert(
      fc.asyncProperty(
        productRequest,
        fc.oneof(
          fc.constant(undefined),
          fc.constantFrom("", "Bearer", "Bearer ", `Bearer ${API_TOKEN}x`, `Basic ${API_TOKEN}`, API_TOKEN),
          headerValue.map((v) => `Bearer ${v}`),
        ),
        async (r, authorization) => {
          const method = r.method ?? r.route.method;
          const path = productPath(r.route, r.params) + r.query;
          const res = await send(path, {
            method,
            headers: { ...r.extra, ...r.headers, ...(authorization === undefined ? {} : { authorization }) },
            body: method === "GET" || method === "DELETE" ? undefined : r.body,
          });
          notServerError(`${method} ${path}`, res);
          // Routes public by contract (health, the OpenAPI document) answer without credentials.
          if (r.route.auth !== "none")
            assert.ok(
              [401, 404, 405, 413].includes(res.status),
              `${method} ${path}: ${res.status} ${res.text.slice(0, 200)}`,
            );
        },
      ),
      { numRuns: RUNS, seed: SEED },
    );
    assert.equal(await itemCount(), before, "no writes from unauthenticated requests");
  });
});
