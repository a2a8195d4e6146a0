import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import middy from "@middy/core";
import { getExpectedTwilioSignature } from "twilio/lib/webhooks/webhooks.js";
import { twilioSignature } from "../../functions/inbound/app.ts";
import { LOCAL_CREDENTIALS, LOCAL_REGION } from "../../local/aws-local.ts";
import { logger } from "../../shared/adapters/aws.ts";
import type { ForwardDeps } from "../../shared/app/forward.ts";
import type { E164 } from "../../shared/domain/phone.ts";
import { problemJson } from "../../shared/http/middleware.ts";
import { lambdaContext } from "../support/http.ts";
import { ACCOUNT_SID, AUTH_TOKEN, OUT_OF_SESSION, startPipeline } from "../support/pipeline.ts";
import { recordCalls, startLocalAws } from "../support/stack.ts";

const A = "+12025550101";
const B = "+12025550102";
let aws: Awaited<ReturnType<typeof startLocalAws>>;

const eventTypes = (items: Record<string, unknown>[], sessionId: string) =>
  items
    .filter((i) => i.kind === "event" && i.sessionId === sessionId)
    .sort((x, y) => String(x.sk).localeCompare(String(y.sk)))
    .map((i) => i.type);

describe("message pipeline: Twilio webhooks in, exactly-once forwarding out", () => {
  before(async () => {
    aws = await startLocalAws();
  });
  after(async () => aws.stop());

  test("A texts proxy(A): B receives it from proxy(B) once; the reply comes back from proxy(A)", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(2);
      const { session, proxyA, proxyB } = await p.open(A, B);
      const started = Date.now();
      const first = await p.sandbox.phoneSends(A, proxyA, "Is the flat still free in May?");
      assert.equal(first.status, 200);
      assert.equal(first.twiml, '<?xml version="1.0" encoding="UTF-8"?><Response/>');
      await p.waitFor(() => p.sentTo(B).length === 1, 10_000, "forward to B");
      const forwardMs = Date.now() - started;
      const toB = p.sentTo(B)[0];
      assert.equal(toB?.from, proxyB);
      assert.equal(toB?.body, "Is the flat still free in May?");

      await p.sandbox.phoneSends(B, proxyB, "Yes it is!");
      await p.waitFor(() => p.sentTo(A).length === 1, 10_000, "reply to A");
      assert.equal(p.sentTo(A)[0]?.from, proxyA);

      await p.waitFor(
        async () =>
          eventTypes(await p.scan(), session.sessionId).filter((t) => t === "MessageDelivered").length === 2,
        10_000,
        "delivery callbacks",
      );
      const types = eventTypes(await p.scan(), session.sessionId);
      assert.deepEqual(
        types.filter((t) => t !== "MessageDelivered"),
        ["SessionOpened", "MessageReceived", "MessageForwarded", "MessageReceived", "MessageForwarded"],
      );
      assert.equal(p.sandbox.messages.length, 2);
      // Measured, not asserted: webhook accepted → Twilio stand-in received.
      process.stdout.write(`# webhook→Twilio send: ${forwardMs} ms\n`);
    } finally {
      await p.stop();
    }
  });

  test("a text in session costs 7 DynamoDB calls from webhook to send: the consent of the recipient is one read", async () => {
    // Counts are behaviour (each call is a round trip and a request on the table); timings are not asserted.
    const raw = new DynamoDBClient({
      endpoint: aws.dynamo.endpoint,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
    });
    const doc = DynamoDBDocumentClient.from(raw, { marshallOptions: { removeUndefinedValues: true } });
    const calls = recordCalls(doc);
    // No status callbacks: they are webhooks of their own.
    const p = await startPipeline(aws, { client: doc, statusCallbacks: false });
    try {
      await p.pool(2);
      const { proxyA } = await p.open(A, B);
      calls.length = 0;
      await p.sandbox.phoneSends(A, proxyA, "Counting calls");
      await p.waitFor(() => p.sentTo(B).length === 1, 10_000, "forward to B");
      await p.waitFor(
        () => calls.filter((c) => c.startsWith("TransactWrite")).length === 2,
        5_000,
        "completion",
      );
      const tally = Object.fromEntries(
        [...new Set(calls)].sort().map((c) => [c, calls.filter((x) => x === c).length]),
      );
      assert.deepEqual(tally, {
        // forward: the recipient's consent, under the number and the pseudonym, in one read.
        BatchGetItem: 1,
        // inbound: the route; forward: the message and the session.
        GetItem: 3,
        // inbound: the message's transaction; forward: the outcome's.
        TransactWriteItems: 2,
        // forward: the send claim.
        UpdateItem: 1,
      });
    } finally {
      await p.stop();
      raw.destroy();
    }
  });

  test("the same webhook three times concurrently: one event, one send", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(1);
      const { session, proxyA } = await p.open(A, B);
      const messageSid = `SM${"d".repeat(32)}`;
      const results = await Promise.all(
        [1, 2, 3].map(() => p.sandbox.phoneSends(A, proxyA, "only once please", { messageSid })),
      );
      assert.ok(results.every((r) => r.status === 200));
      await p.waitFor(() => p.sentTo(B).length >= 1, 10_000, "forward");
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(p.sentTo(B).length, 1);
      const received = eventTypes(await p.scan(), session.sessionId).filter((t) => t === "MessageReceived");
      assert.equal(received.length, 1);
    } finally {
      await p.stop();
    }
  });

  test("forged, wrong-URL and unsigned webhooks are 403 and write nothing, enqueue nothing", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(1);
      const { proxyA } = await p.open(A, B);
      await p.stopForwarding();
      const before = (await p.scan()).length;
      const params = {
        AccountSid: ACCOUNT_SID,
        MessageSid: `SM${"e".repeat(32)}`,
        From: A,
        To: proxyA,
        Body: "forged",
        NumMedia: "0",
      };
      const url = `${p.publicBaseUrl}/twilio/sms`;
      const cases = {
        forged: getExpectedTwilioSignature("not-the-token", url, params),
        wrongUrl: getExpectedTwilioSignature(AUTH_TOKEN, "https://evil.example.com/twilio/sms", params),
        tamperedBody: getExpectedTwilioSignature(AUTH_TOKEN, url, { ...params, Body: "original" }),
        missing: undefined,
      };
      for (const [name, signature] of Object.entries(cases)) {
        const res = await p.post("/twilio/sms", params, signature ? { "x-twilio-signature": signature } : {});
        assert.equal(res.status, 403, name);
        assert.equal(res.headers.get("content-type"), "application/problem+json");
        const body = (await res.json()) as { type: string };
        assert.equal(body.type, "https://maskline.dev/problems/invalid-twilio-signature");
      }
      assert.equal((await p.scan()).length, before, "table untouched");
      assert.equal(await p.queueDepth(), 0, "queue untouched");
    } finally {
      await p.stop();
    }
  });

  test("a key-boundary replay keeps a valid signature but is a 400: SIDs and AccountSid are checked, nothing stored", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(1);
      const { proxyA } = await p.open(A, B);
      await p.stopForwarding();
      const messageSid = `SM${"0123456789abcdef".repeat(2)}`;
      const original = {
        AccountSid: ACCOUNT_SID,
        Body: "captured once",
        From: A,
        MessageSid: messageSid,
        NumMedia: "0",
        To: proxyA,
      };
      const url = (path: string) => `${p.publicBaseUrl}${path}`;
      const signature = getExpectedTwilioSignature(AUTH_TOKEN, url("/twilio/sms"), original);
      const first = await p.post("/twilio/sms", original, { "x-twilio-signature": signature });
      assert.equal(first.status, 200);
      const before = (await p.scan()).length;
      const depth = await p.queueDepth();

      // "MessageSid" + "SM…" + "NumMedia" + "0": the same signed string, a "new" MessageSid.
      const { NumMedia: _dropped, ...rest } = original;
      const replay = { ...rest, MessageSid: `${messageSid}NumMedia0` };
      assert.equal(getExpectedTwilioSignature(AUTH_TOKEN, url("/twilio/sms"), replay), signature);
      const signed = (path: string, params: Record<string, string>) =>
        p.post(path, params, {
          "x-twilio-signature": getExpectedTwilioSignature(AUTH_TOKEN, url(path), params),
        });
      // A repeated field, signed as Twilio signs one (each value), is ambiguous: which From is the caller?
      const repeated = (path: string, pairs: [string, string][]) => {
        const params: Record<string, string | string[]> = {};
        for (const [k, v] of pairs) {
          const seen = params[k];
          params[k] = seen === undefined ? v : [seen, v].flat();
        }
        return fetch(`${p.baseUrl}${path}`, {
          method: "POST",
          headers: {
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": getExpectedTwilioSignature(AUTH_TOKEN, url(path), params),
          },
          body: new URLSearchParams(pairs).toString(),
        });
      };
      const callPairs: [string, string][] = [
        ["AccountSid", ACCOUNT_SID],
        ["CallSid", `CA${"d".repeat(32)}`],
        ["To", proxyA],
      ];
      const refused: [string, () => Promise<Response>][] = [
        [
          "a repeated From",
          () => repeated("/twilio/voice", [...callPairs, ["From", "+12025550199"], ["From", A]]),
        ],
        [
          "a repeated MessageSid",
          () => repeated("/twilio/sms", [...Object.entries(original), ["MessageSid", `SM${"9".repeat(32)}`]]),
        ],
        ["key-boundary replay", () => p.post("/twilio/sms", replay, { "x-twilio-signature": signature })],
        ["uppercase hex", () => signed("/twilio/sms", { ...original, MessageSid: messageSid.toUpperCase() })],
        ["short sid", () => signed("/twilio/sms", { ...original, MessageSid: "SM123" })],
        ["no AccountSid", () => signed("/twilio/sms", { ...original, AccountSid: "" })],
        [
          "AccountSid left out",
          () => signed("/twilio/sms", { Body: "x", From: A, MessageSid: messageSid, To: proxyA }),
        ],
        ["another account", () => signed("/twilio/sms", { ...original, AccountSid: `AC${"f".repeat(32)}` })],
        [
          "bad CallSid",
          () => signed("/twilio/voice", { AccountSid: ACCOUNT_SID, CallSid: "CA1234", From: A, To: proxyA }),
        ],
        [
          "voice without AccountSid",
          () => signed("/twilio/voice", { CallSid: `CA${"a".repeat(32)}`, From: A, To: proxyA }),
        ],
        [
          "status with a bad MessageSid",
          () =>
            signed("/twilio/status", {
              AccountSid: ACCOUNT_SID,
              MessageSid: "SMxyz",
              MessageStatus: "delivered",
            }),
        ],
        [
          "call status with a bad CallSid",
          () =>
            signed("/twilio/status", { AccountSid: ACCOUNT_SID, CallSid: "CAnope", CallStatus: "completed" }),
        ],
        [
          "status from another account",
          () =>
            signed("/twilio/status", {
              AccountSid: `AC${"f".repeat(32)}`,
              MessageSid: messageSid,
              MessageStatus: "delivered",
            }),
        ],
      ];
      for (const [name, send] of refused) {
        const res = await send();
        assert.equal(res.status, 400, name);
        assert.equal(res.headers.get("content-type"), "application/problem+json", name);
        const body = (await res.json()) as { type: string };
        assert.equal(body.type, "https://maskline.dev/problems/invalid-twilio-request", name);
      }
      assert.equal(p.invalidRequests(), refused.length, "each refusal is counted");
      // A field put in front of a signed one it repeats: refused as unsigned, not read as the last value.
      const prefixed = await fetch(`${p.baseUrl}/twilio/sms`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature },
        body: `From=${encodeURIComponent("+12025550199")}&${new URLSearchParams(original)}`,
      });
      assert.equal(prefixed.status, 403);
      assert.equal((await p.scan()).length, before, "nothing stored");
      assert.equal(await p.queueDepth(), depth, "nothing enqueued");

      const mms = await signed("/twilio/sms", { ...original, MessageSid: `MM${"b".repeat(32)}` });
      assert.equal(mms.status, 200, "MM… is a message SID too");
      const call = await signed("/twilio/voice", {
        AccountSid: ACCOUNT_SID,
        CallSid: `CA${"c".repeat(32)}`,
        From: A,
        To: proxyA,
      });
      assert.equal(call.status, 200);
      const callStatus = await signed("/twilio/status", {
        AccountSid: ACCOUNT_SID,
        CallSid: `CA${"c".repeat(32)}`,
        CallStatus: "completed",
      });
      assert.equal(callStatus.status, 204);
    } finally {
      await p.stop();
    }
  });

  test("twilio-node's published test vector passes through our validator wiring", async () => {
    const handler = middy()
      .use(problemJson(logger))
      .use(twilioSignature({ authToken: "12345", publicBaseUrl: "https://mycompany.com" }))
      .handler(async () => ({ statusCode: 200, body: "ok" }));
    const params = {
      CallSid: "CA1234567890ABCDE",
      Caller: "+14158675309",
      Digits: "1234",
      From: "+14158675309",
      To: "+18005551212",
    };
    const event = (
      signature: string,
      body = new URLSearchParams(params).toString(),
      isBase64Encoded = false,
    ) => ({
      rawPath: "/myapp.php",
      rawQueryString: "foo=1&bar=2",
      headers: { "x-twilio-signature": signature, "content-type": "application/x-www-form-urlencoded" },
      body: isBase64Encoded ? Buffer.from(body).toString("base64") : body,
      isBase64Encoded,
      requestContext: {},
    });
    // biome-ignore lint/suspicious/noExplicitAny: a hand-built API Gateway event
    const run = (e: any) => handler(e, lambdaContext) as Promise<{ statusCode: number }>;
    assert.equal((await run(event("RSOYDt4T1cUTdK1PDd93/VVr8B8="))).statusCode, 200);
    assert.equal(
      (await run(event("RSOYDt4T1cUTdK1PDd93/VVr8B8=", undefined, true))).statusCode,
      200,
      "base64 body",
    );
    assert.equal((await run(event("RSOYDt4T1cUTdK1PDd93/VVr8B9="))).statusCode, 403);
    // Behind a custom domain's API mapping (a PUBLIC_BASE_URL with a path): accepted whether API Gateway
    // leaves the mapping path out of rawPath or keeps it there.
    const mapped = middy()
      .use(problemJson(logger))
      .use(twilioSignature({ authToken: "12345", publicBaseUrl: "https://mycompany.com/myapp.php" }))
      .handler(async () => ({ statusCode: 200, body: "ok" }));
    // biome-ignore lint/suspicious/noExplicitAny: a hand-built API Gateway event
    const viaMapping = (e: any) => mapped(e, lambdaContext) as Promise<{ statusCode: number }>;
    assert.equal((await viaMapping(event("RSOYDt4T1cUTdK1PDd93/VVr8B8="))).statusCode, 200, "path kept");
    assert.equal((await viaMapping(event("RSOYDt4T1cUTdK1PDd93/VVr8B9="))).statusCode, 403);
  });

  test("Twilio answering 429/500 to 30% of sends over 200 messages in 10 sessions: each delivered once, in order", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(10);
      const pairs = await Promise.all(
        Array.from({ length: 10 }, async (_, s) => {
          const a = `+1303555${String(1000 + s)}`;
          const b = `+1720555${String(1000 + s)}`;
          return { a, b, ...(await p.open(a, b)) };
        }),
      );
      p.sandbox.faults = { rate: 0.3, statuses: [429, 500] };
      let faults = 0;
      p.sandbox.on("fault", () => faults++);
      await Promise.all(
        pairs.map(async ({ a, proxyA }, s) => {
          for (let i = 0; i < 20; i++) {
            const res = await p.sandbox.phoneSends(a, proxyA, `s${s}-m${String(i).padStart(2, "0")}`);
            assert.equal(res.status, 200);
          }
        }),
      );
      await p.waitFor(() => p.sandbox.messages.length >= 200, 90_000, "200 sends");
      await new Promise((r) => setTimeout(r, 1000));
      assert.ok(faults > 20, `faults were injected (${faults})`);
      assert.equal(p.sandbox.messages.length, 200, "no duplicates");
      for (const [s, { b }] of pairs.entries()) {
        const bodies = p.sentTo(b).map((m) => m.body);
        assert.deepEqual(
          bodies,
          Array.from({ length: 20 }, (_, i) => `s${s}-m${String(i).padStart(2, "0")}`),
          `session ${s} in order`,
        );
      }
      assert.equal((await p.dlqMessages()).length, 0);
    } finally {
      await p.stop();
    }
  });

  test("sessions are forwarded side by side: another session's texts go out while one is still being sent", async () => {
    type Store = ForwardDeps["store"];
    let p: Awaited<ReturnType<typeof startPipeline>> | undefined;
    let firstSid = "";
    let overtaken: boolean | undefined;
    // The first text's forward waits (up to 10 s) for the other session's three texts to reach Twilio.
    const holdFirst = (store: Store): Store =>
      new Proxy(store, {
        get(target, prop, receiver) {
          if (prop !== "getMessage") return Reflect.get(target, prop, receiver);
          return async (messageId: string) => {
            if (messageId === firstSid && overtaken === undefined) {
              overtaken = false;
              overtaken = await p
                ?.waitFor(() => (p?.sentTo(D).length ?? 0) >= 3, 10_000, "the other session")
                .then(() => true)
                .catch(() => false);
            }
            return target.getMessage(messageId);
          };
        },
      });
    const C = "+12025550103";
    const D = "+12025550104";
    p = await startPipeline(aws, { wrapForwardStore: holdFirst });
    try {
      await p.pool(2);
      const one = await p.open(A, B);
      const two = await p.open(C, D);
      await p.stopForwarding();
      // One batch: a1 b1 a2 b2 a3 b3, session one first.
      for (const i of [1, 2, 3]) {
        const messageSid = `SM${randomBytes(16).toString("hex")}`;
        if (i === 1) firstSid = messageSid;
        assert.equal((await p.sandbox.phoneSends(A, one.proxyA, `a${i}`, { messageSid })).status, 200);
        assert.equal((await p.sandbox.phoneSends(C, two.proxyA, `b${i}`)).status, 200);
      }
      p.startForwarding();
      await p.waitFor(() => p?.sandbox.messages.length === 6, 30_000, "six sends");
      assert.equal(overtaken, true, "session two was not held behind session one's first text");
      assert.deepEqual(
        p.sentTo(B).map((m) => m.body),
        ["a1", "a2", "a3"],
      );
      assert.deepEqual(
        p.sentTo(D).map((m) => m.body),
        ["b1", "b2", "b3"],
      );
    } finally {
      await p.stop();
    }
  });

  test("a failed forward holds back only its own session: the rest of it follows in order after the retry", async () => {
    type Store = ForwardDeps["store"];
    let failSid = "";
    const claims: string[] = [];
    // The first attempt at a1 fails after its reads (a DynamoDB error on the send claim); the retry works.
    const failOnce = (store: Store): Store =>
      new Proxy(store, {
        get(target, prop, receiver) {
          if (prop !== "claimSend") return Reflect.get(target, prop, receiver);
          return async (...args: Parameters<Store["claimSend"]>) => {
            claims.push(args[0]);
            if (args[0] === failSid && claims.filter((id) => id === failSid).length === 1)
              throw new Error("injected failure of the send claim");
            return target.claimSend(...args);
          };
        },
      });
    const C = "+12025550103";
    const D = "+12025550104";
    const p = await startPipeline(aws, { wrapForwardStore: failOnce, visibilityTimeoutSeconds: 2 });
    try {
      await p.pool(2);
      const one = await p.open(A, B);
      const two = await p.open(C, D);
      await p.stopForwarding();
      const sids = new Map<string, string>();
      for (const i of [1, 2, 3])
        for (const [who, proxy, tag] of [
          [A, one.proxyA, "a"],
          [C, two.proxyA, "b"],
        ] as const) {
          const messageSid = `SM${randomBytes(16).toString("hex")}`;
          sids.set(`${tag}${i}`, messageSid);
          if (`${tag}${i}` === "a1") failSid = messageSid;
          assert.equal((await p.sandbox.phoneSends(who, proxy, `${tag}${i}`, { messageSid })).status, 200);
        }
      p.startForwarding();
      await p.waitFor(() => p.sandbox.messages.length >= 6, 30_000, "six sends");
      await new Promise((r) => setTimeout(r, 500));
      assert.deepEqual(
        p.sentTo(D).map((m) => m.body),
        ["b1", "b2", "b3"],
        "session two, untouched by the failure",
      );
      assert.deepEqual(
        p.sentTo(B).map((m) => m.body),
        ["a1", "a2", "a3"],
        "session one in order, each once",
      );
      const bodies = p.sandbox.messages.map((m) => m.body);
      assert.ok(bodies.indexOf("b3") < bodies.indexOf("a1"), "session two went out while a1 waited");
      // a2 and a3 were not attempted before a1's retry: their only claims come after a1's second one.
      const a1Claims = claims.flatMap((id, i) => (id === sids.get("a1") ? [i] : []));
      assert.equal(a1Claims.length, 2, "a1: the failed attempt and the retry");
      for (const later of ["a2", "a3"]) {
        const at = claims.flatMap((id, i) => (id === sids.get(later) ? [i] : []));
        assert.equal(at.length, 1, `${later} claimed once`);
        assert.ok((at[0] ?? -1) > (a1Claims[1] ?? Infinity), `${later} only after a1's retry`);
      }
      assert.equal((await p.dlqMessages()).length, 0);
    } finally {
      await p.stop();
    }
  });

  test("a crash after the Twilio send and before the completion write does not send twice", async () => {
    let crashes = 0;
    type Store = ForwardDeps["store"];
    const crashOnce = (store: Store): Store =>
      new Proxy(store, {
        get(target, prop, receiver) {
          if (prop !== "append") return Reflect.get(target, prop, receiver);
          return async (...args: Parameters<Store["append"]>) => {
            if (crashes === 0 && args[0].some((e) => e.type === "MessageForwarded")) {
              crashes++;
              throw new Error("injected crash between send and completion");
            }
            return target.append(...args);
          };
        },
      });
    // No status callbacks: the redelivery must reconcile with Twilio on its own.
    const p = await startPipeline(aws, {
      wrapForwardStore: crashOnce,
      statusCallbacks: false,
      claimStaleMs: 1000,
    });
    try {
      await p.pool(1);
      const { session, proxyA } = await p.open(A, B);
      await p.sandbox.phoneSends(A, proxyA, "do not send me twice");
      await p.waitFor(
        async () => eventTypes(await p.scan(), session.sessionId).includes("MessageForwarded"),
        20_000,
        "forward recorded after redelivery",
      );
      assert.equal(crashes, 1);
      assert.equal(p.sentTo(B).length, 1, "sent exactly once");
      const forwarded = (await p.scan()).filter((i) => i.kind === "event" && i.type === "MessageForwarded");
      assert.equal(forwarded.length, 1);
      assert.equal(
        (forwarded[0]?.detail as { twilioSid?: string } | undefined)?.twilioSid,
        p.sentTo(B)[0]?.sid,
      );
    } finally {
      await p.stop();
    }
  });

  test("a crash after the claim and before the send: the reconciliation does not take the previous text with the same body for it", async () => {
    let claims = 0;
    type Store = ForwardDeps["store"];
    const crashAfterSecondClaim = (store: Store): Store =>
      new Proxy(store, {
        get(target, prop, receiver) {
          if (prop !== "claimSend") return Reflect.get(target, prop, receiver);
          return async (...args: Parameters<Store["claimSend"]>) => {
            const result = await target.claimSend(...args);
            if (++claims === 2) throw new Error("injected crash between the claim and the send");
            return result;
          };
        },
      });
    const p = await startPipeline(aws, {
      wrapForwardStore: crashAfterSecondClaim,
      statusCallbacks: false,
      claimStaleMs: 1000,
      visibilityTimeoutSeconds: 1,
    });
    try {
      await p.pool(2);
      const { session, proxyA } = await p.open(A, B);
      await p.sandbox.phoneSends(A, proxyA, "ok");
      await p.sandbox.phoneSends(A, proxyA, "ok");
      await p.waitFor(
        async () =>
          eventTypes(await p.scan(), session.sessionId).filter((t) => t === "MessageForwarded").length === 2,
        20_000,
        "both forwards recorded",
      );
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(claims >= 3, "the crashed message was claimed again");
      assert.deepEqual(
        p.sentTo(B).map((m) => m.body),
        ["ok", "ok"],
        "the second text was sent, not matched to the first",
      );
      const sids = (await p.scan())
        .filter((i) => i.kind === "event" && i.type === "MessageForwarded")
        .map((i) => (i.detail as { twilioSid: string }).twilioSid);
      assert.equal(new Set(sids).size, 2, "each forward has its own Twilio message");
    } finally {
      await p.stop();
    }
  });

  test("a Twilio timeout after Twilio accepted the send: the retry waits for the claim, reconciles, never sends twice", async () => {
    const p = await startPipeline(aws, {
      statusCallbacks: false,
      twilioTimeoutMs: 300,
      claimStaleMs: 2500,
      visibilityTimeoutSeconds: 1,
    });
    try {
      await p.pool(1);
      const { session, proxyA } = await p.open(A, B);
      p.sandbox.slowAnswers = { count: 1, slowAnswerMs: 1500 };
      await p.sandbox.phoneSends(A, proxyA, "accepted but answered too late");
      await p.sandbox.phoneSends(A, proxyA, "the next one waits its turn");
      await p.waitFor(
        async () =>
          eventTypes(await p.scan(), session.sessionId).filter((t) => t === "MessageForwarded").length === 2,
        20_000,
        "both forwards recorded",
      );
      await new Promise((r) => setTimeout(r, 500));
      assert.deepEqual(
        p.sentTo(B).map((m) => m.body),
        ["accepted but answered too late", "the next one waits its turn"],
        "each sent once, in order",
      );
      assert.equal((await p.dlqMessages()).length, 0);
    } finally {
      await p.stop();
    }
  });

  test("Twilio down (503) for longer than six visibility timeouts, then back: nothing goes to the DLQ, each text once, in order", async () => {
    // Locally the visibility timeout is seconds, not the deployed 180 s: the DLQ must still come only after
    // as long as in AWS (maxReceiveCount x 180 s), or a one-minute outage would lose texts and reorder the rest.
    const p = await startPipeline(aws, { statusCallbacks: false, visibilityTimeoutSeconds: 1 });
    try {
      await p.pool(1);
      const { session, proxyA } = await p.open(A, B);
      p.sandbox.faults = { rate: 1, statuses: [503] };
      for (const body of ["first", "second", "third"]) await p.sandbox.phoneSends(A, proxyA, body);
      const outageEnds = Date.now() + (p.queue.visibilityTimeoutSeconds * 6 + 4) * 1000;
      while (Date.now() < outageEnds) await new Promise((r) => setTimeout(r, 200));
      p.sandbox.faults = { rate: 0, statuses: [] };
      await p.waitFor(
        async () =>
          eventTypes(await p.scan(), session.sessionId).filter((t) => t === "MessageForwarded").length === 3,
        30_000,
        "three forwards recorded",
      );
      assert.deepEqual(
        p.sentTo(B).map((m) => m.body),
        ["first", "second", "third"],
        "each sent once, in order",
      );
      assert.equal((await p.dlqMessages()).length, 0);
    } finally {
      await p.stop();
    }
  });

  test("a stranger or an expired session gets the out-of-session reply and nothing is forwarded", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(1);
      const { session, proxyA } = await p.open(A, B, 1);
      const stranger = await p.sandbox.phoneSends("+12025550199", proxyA, "hello?");
      assert.match(stranger.twiml, new RegExp(`<Message>${OUT_OF_SESSION}</Message>`));
      await new Promise((r) => setTimeout(r, 1100));
      const late = await p.sandbox.phoneSends(A, proxyA, "still there?");
      assert.match(late.twiml, /<Message>/);
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(p.sandbox.messages.length, 0, "nothing reached Twilio");
      const items = await p.scan();
      const oos = items.filter((i) => i.kind === "event" && i.type === "OutOfSessionMessage");
      assert.equal(oos.length, 2);
      assert.equal(oos.find((e) => e.sessionId === session.sessionId)?.type, "OutOfSessionMessage");
    } finally {
      await p.stop();
    }
  });

  test("a call to proxy(A) from A is answered with TwiML dialing B with callerId proxy(B)", async () => {
    const p = await startPipeline(aws);
    try {
      const pool = await p.pool(3);
      const { session, proxyA, proxyB } = await p.open(A, B);
      const call = await p.sandbox.phoneCalls(A, proxyA);
      assert.equal(call.status, 200);
      assert.equal(
        call.twiml,
        `<?xml version="1.0" encoding="UTF-8"?><Response><Dial callerId="${proxyB}"><Number>${B}</Number></Dial></Response>`,
      );
      const stranger = await p.sandbox.phoneCalls("+12025550199", proxyA);
      assert.match(stranger.twiml, /<Say>Goodbye.<\/Say><Hangup\/>/);
      assert.ok(eventTypes(await p.scan(), session.sessionId).includes("CallBridged"));
      // In a session for texts only, the caller is told so (the booking is not over).
      const { session: textOnly } = await p.sessions.openSession({
        participants: [{ phoneNumber: "+12025550103" as E164 }, { phoneNumber: "+12025550104" as E164 }],
        mode: "sms",
        ttlSeconds: 3600,
        ttlMode: "absolute",
      });
      const texter = await p.sandbox.phoneCalls("+12025550103", textOnly.participants[0].proxyNumber);
      assert.match(texter.twiml, /<Say>This number takes text messages only\. .*<\/Say><Hangup\/>/);
      // A number of ours is never a participant and never answered: refused, nothing said, recorded as such.
      const ours = await p.sandbox.phoneCalls(pool[2] ?? "", proxyA);
      assert.equal(ours.twiml, '<?xml version="1.0" encoding="UTF-8"?><Response><Reject/></Response>');
      const unanswered = (await p.scan()).filter(
        (i) => i.kind === "event" && i.type === "OutOfSessionMessage",
      );
      assert.deepEqual(
        unanswered.map((i) => (i.detail as { replied: boolean }).replied).sort(),
        [false, true, true],
        "the stranger and the texter were answered, our own number was not",
      );
    } finally {
      await p.stop();
    }
  });

  test("status callbacks: the first outcome of a message is final; late, replayed or contrary callbacks change nothing", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(2);
      const { session, proxyA, proxyB } = await p.open(A, B);
      const outcomes = async () =>
        (await p.scan()).filter(
          (i) => i.kind === "event" && (i.type === "MessageDelivered" || i.type === "MessageFailed"),
        );
      const callback = async (url: string, params: Record<string, string>) => {
        const { pathname, search } = new URL(url);
        const path = `${pathname}${search}`;
        const body = { AccountSid: ACCOUNT_SID, ...params };
        const signature = getExpectedTwilioSignature(AUTH_TOKEN, `${p.publicBaseUrl}${path}`, body);
        const res = await p.post(path, body, { "x-twilio-signature": signature });
        assert.equal(res.status, 204);
      };
      await p.sandbox.phoneSends(A, proxyA, "delivered, then contradicted");
      await p.waitFor(
        async () => (await outcomes()).length === 1,
        10_000,
        "the sandbox's delivered callback",
      );
      const delivered = p.sentTo(B)[0] ?? assert.fail("sent to B");
      const late = { MessageSid: delivered.sid };
      await callback(delivered.statusCallback ?? "", {
        ...late,
        MessageStatus: "undelivered",
        ErrorCode: "30003",
      });
      await callback(delivered.statusCallback ?? "", {
        ...late,
        MessageStatus: "failed",
        ErrorCode: "30008",
      });
      await callback(delivered.statusCallback ?? "", { ...late, MessageStatus: "sent" });
      await callback(delivered.statusCallback ?? "", { ...late, MessageStatus: "delivered" });

      // Refused by the carrier at send (21610): failed; a delivered callback after it does not revive it.
      p.sandbox.unsubscribed.add(A);
      await p.sandbox.phoneSends(B, proxyB, "failed, then contradicted");
      const refused = async () =>
        (await outcomes()).find((i) => (i.detail as { errorCode?: string }).errorCode === "21610");
      await p.waitFor(async () => Boolean(await refused()), 10_000, "the send failure");
      const failedId = (await refused())?.detail as { messageId: string };
      const failedUrl = `${p.baseUrl}/twilio/status?m=${encodeURIComponent(failedId.messageId)}`;
      await callback(failedUrl, { MessageSid: `SM${"e".repeat(32)}`, MessageStatus: "delivered" });

      const types = (await outcomes()).map((i) => i.type).sort();
      assert.deepEqual(types, ["MessageDelivered", "MessageFailed"], "one outcome per message");
      const log = (await p.scan())
        .filter((i) => i.kind === "message-log" && i.sessionId === session.sessionId)
        .map((i) => i.status)
        .sort();
      assert.deepEqual(log, ["delivered", "failed"]);
    } finally {
      await p.stop();
    }
  });

  test("malformed, oversize and odd webhooks: 4xx or safe TwiML, never a 5xx, never a half-written event", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(1);
      const { proxyA } = await p.open(A, B);
      await p.stopForwarding();
      const before = (await p.scan()).length;
      const url = `${p.publicBaseUrl}/twilio/sms`;
      const signed = (fields: Record<string, string>) => {
        const params = { AccountSid: ACCOUNT_SID, ...fields };
        return p.post("/twilio/sms", params, {
          "x-twilio-signature": getExpectedTwilioSignature(AUTH_TOKEN, url, params),
        });
      };
      const cases: Record<string, Record<string, string>> = {
        "no MessageSid": { From: A, To: proxyA, Body: "x" },
        "body too long": { MessageSid: `SM${"2".repeat(32)}`, From: A, To: proxyA, Body: "x".repeat(5000) },
        "bad NumMedia": { MessageSid: `SM${"3".repeat(32)}`, From: A, To: proxyA, NumMedia: "lots" },
      };
      for (const [name, params] of Object.entries(cases)) {
        const res = await signed(params);
        assert.ok(res.status >= 400 && res.status < 500, `${name}: ${res.status}`);
        assert.equal(res.headers.get("content-type"), "application/problem+json", name);
      }
      const shortCode = await signed({
        MessageSid: `SM${"1".repeat(32)}`,
        From: "MYBRAND",
        To: proxyA,
        Body: "x",
      });
      assert.equal(shortCode.status, 200, "a non-phone sender gets safe TwiML");
      assert.equal(await shortCode.text(), '<?xml version="1.0" encoding="UTF-8"?><Response/>');
      const oversize = await signed({
        MessageSid: `SM${"4".repeat(32)}`,
        From: A,
        To: proxyA,
        Body: "y".repeat(70_000),
      });
      assert.equal(oversize.status, 413);
      assert.equal((await p.scan()).length, before, "nothing stored for rejected webhooks");

      const extra = await signed({
        MessageSid: `SM${"5".repeat(32)}`,
        From: A,
        To: proxyA,
        Body: "with unknown fields",
        FutureTwilioField: "whatever",
        AddOns: '{"status":"successful"}',
      });
      assert.equal(extra.status, 200, "unknown fields are ignored");
      assert.equal(await p.queueDepth(), 1);

      // Keys that are special to JavaScript objects are form keys like any other: signed, so accepted.
      const protoKeys = await signed(
        Object.fromEntries([
          ["MessageSid", `SM${"6".repeat(32)}`],
          ["From", A],
          ["To", proxyA],
          ["Body", "odd keys"],
          ["__proto__", "x"],
          ["constructor", "y"],
        ]),
      );
      assert.equal(protoKeys.status, 200, "a __proto__ key is signed like any other");
      assert.equal(await p.queueDepth(), 2);
    } finally {
      await p.stop();
    }
  });
});
