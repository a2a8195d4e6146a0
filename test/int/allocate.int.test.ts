import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ScanCommand } from "@aws-sdk/lib-dynamodb";
import { createAllocateHandler } from "../../functions/allocate/app.ts";
import { logger } from "../../shared/adapters/aws.ts";
import { newId } from "../../shared/adapters/ids.ts";
import { SqsForwardQueue } from "../../shared/adapters/sqs-queue.ts";
import { SessionService } from "../../shared/app/sessions.ts";
import { busiestParticipantLoad } from "../../shared/domain/allocation.ts";
import { invoker } from "../support/http.ts";
import { validated } from "../support/openapi.ts";
import { startLocalAws } from "../support/stack.ts";

const TOKEN = "test-token-0123456789";
const auth = { authorization: `Bearer ${TOKEN}` };
const number = (n: number) => `+1415555${String(1000 + n).padStart(4, "0")}`;
const guest = (n: number) => `+1202555${String(1000 + n).padStart(4, "0")}`;

let aws: Awaited<ReturnType<typeof startLocalAws>>;

async function fixture(poolSize: number) {
  const { tableName, queue, store } = await aws.fresh();
  const service = new SessionService({
    store,
    queue: new SqsForwardQueue({ queueUrl: queue.queueUrl, client: aws.sqsClient }),
    clock: { now: () => Date.now() },
    newId,
    quarantineSeconds: 3600,
  });
  const handler = createAllocateHandler({
    service,
    logger,
    auth: { mode: "token", token: TOKEN },
    health: async () => ({ table: "ok" }),
  });
  // Every answer, success or problem, must be one the OpenAPI document describes.
  const call = validated(invoker(handler, auth));
  for (let i = 0; i < poolSize; i++) {
    const res = await call("POST", "/numbers", { body: { phoneNumber: number(i) } });
    assert.equal(res.status, 201, res.text);
  }
  const scan = async () => (await aws.doc.send(new ScanCommand({ TableName: tableName }))).Items ?? [];
  return { call, store, scan, tableName };
}

const session = (a: string, b: string, extra: Record<string, unknown> = {}) => ({
  participants: [
    { phoneNumber: a, id: `user-${a.slice(-4)}` },
    { phoneNumber: b, id: `user-${b.slice(-4)}` },
  ],
  ...extra,
});

describe("allocate API on DynamoDB Local", () => {
  before(async () => {
    aws = await startLocalAws();
  });
  after(async () => aws.stop());

  test("open, read back, close; the events endpoint tells the story in order", async () => {
    const { call } = await fixture(2);
    const opened = await call("POST", "/sessions", { body: session(guest(1), guest(2)) });
    assert.equal(opened.status, 201, opened.text);
    const body = opened.json;
    assert.equal(body.status, "open");
    assert.equal(body.participants.length, 2);
    for (const p of body.participants) assert.match(p.proxyNumber, /^\+1415555/);
    assert.equal(opened.headers.location, `/sessions/${body.sessionId}`);

    const read = await call("GET", `/sessions/${body.sessionId}`);
    assert.equal(read.status, 200);
    assert.deepEqual(read.json, body);

    const closed = await call("DELETE", `/sessions/${body.sessionId}`);
    assert.equal(closed.status, 200);
    assert.equal(closed.json.status, "closed");
    const again = await call("DELETE", `/sessions/${body.sessionId}`);
    assert.equal(again.status, 200, "closing is idempotent");
    assert.equal(again.json.status, "closed");

    const events = await call("GET", `/sessions/${body.sessionId}/events`);
    assert.equal(events.status, 200);
    const types = events.json.events.map((e: { type: string }) => e.type);
    assert.deepEqual(types, ["SessionOpened", "SessionClosed", "PairReleased", "PairReleased"]);
    for (const e of events.json.events) {
      assert.equal(e.sessionId, body.sessionId);
      assert.equal(e.detailVersion, 1);
      assert.ok(e.id && e.occurredAt);
    }
  });

  test("30 concurrent sessions for one participant on a pool of 10: exactly 10 succeed, nothing half-written", async () => {
    const { call, scan } = await fixture(10);
    const c = guest(500);
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => call("POST", "/sessions", { body: session(c, guest(i)) })),
    );
    const ok = results.filter((r) => r.status === 201);
    const exhausted = results.filter((r) => r.status === 409);
    assert.equal(ok.length, 10, results.map((r) => `${r.status}`).join(","));
    assert.equal(exhausted.length, 20);
    for (const r of exhausted) {
      assert.equal(r.headers["content-type"], "application/problem+json");
      assert.equal(r.json.type, "https://maskline.dev/problems/pool-exhausted");
      assert.equal(r.json.participant, c);
    }
    const cProxies = ok.map(
      (r) => r.json.participants.find((p: { phoneNumber: string }) => p.phoneNumber === c).proxyNumber,
    );
    assert.equal(new Set(cProxies).size, 10, "C holds 10 distinct numbers");

    const items = await scan();
    const sessions = items.filter((i) => i.kind === "session");
    const pairs = items.filter((i) => i.kind === "pair" && i.state === "held");
    const numbers = items.filter((i) => i.kind === "number");
    const opened = items.filter((i) => i.kind === "event" && i.type === "SessionOpened");
    assert.equal(sessions.length, 10);
    assert.equal(opened.length, 10);
    assert.equal(pairs.length, 20, "two held pairs per session, no orphans");
    for (const s of sessions) assert.equal(pairs.filter((p) => p.sessionId === s.sessionId).length, 2);
    const load = numbers.reduce((sum, n) => sum + Number(n.load), 0);
    assert.equal(load, 20, "number loads match held pairs");
  });

  test("a pool of exactly L numbers serves a replayed trace whose busiest participant has L sessions", async () => {
    // Seeded trace: hosts with skewed popularity, guests arriving and leaving.
    let seed = 42;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const hosts = Array.from({ length: 4 }, (_, i) => `+1617555${String(1000 + i)}`);
    type Op = { kind: "open"; host: string; guest: string } | { kind: "close"; index: number };
    const ops: Op[] = [];
    const open: { host: string; guest: string }[] = [];
    const live: boolean[] = [];
    const openPairs: [string, string][] = [];
    let peak = 0;
    for (let step = 0, g = 0; step < 60; step++) {
      const liveIdx = live.flatMap((l, i) => (l ? [i] : []));
      if (liveIdx.length > 0 && rand() < 0.35) {
        const index = liveIdx[Math.floor(rand() * liveIdx.length)] ?? 0;
        live[index] = false;
        ops.push({ kind: "close", index });
      } else {
        const host = hosts[Math.min(hosts.length - 1, Math.floor(rand() ** 2 * hosts.length))] ?? "";
        const pair = { host, guest: guest(100 + g++) };
        open.push(pair);
        live.push(true);
        ops.push({ kind: "open", ...pair });
      }
      openPairs.length = 0;
      for (const [i, l] of live.entries()) if (l) openPairs.push([open[i]?.host ?? "", open[i]?.guest ?? ""]);
      peak = Math.max(peak, busiestParticipantLoad(openPairs));
    }
    const { call } = await fixture(peak);
    const ids: string[] = [];
    let failures = 0;
    for (const op of ops) {
      if (op.kind === "open") {
        const res = await call("POST", "/sessions", { body: session(op.host, op.guest) });
        if (res.status !== 201) failures++;
        ids.push(res.json?.sessionId);
      } else {
        const res = await call("DELETE", `/sessions/${ids[op.index]}`);
        assert.equal(res.status, 200);
      }
    }
    assert.ok(peak >= 3, `trace should be non-trivial (L=${peak})`);
    assert.equal(failures, 0, `pool of L=${peak} must serve the trace`);
  });

  test("Idempotency-Key: sequential and concurrent replays create one session; a different body is 422", async () => {
    const { call, scan } = await fixture(3);
    const key = { "idempotency-key": "order-123" };
    const first = await call("POST", "/sessions", { body: session(guest(1), guest(2)), headers: key });
    assert.equal(first.status, 201);
    const second = await call("POST", "/sessions", { body: session(guest(1), guest(2)), headers: key });
    // The same answer: status and body; only the header tells a replay.
    assert.equal(second.status, 201);
    assert.deepEqual(second.json, first.json);
    assert.equal(second.headers["idempotent-replayed"], "true");
    assert.equal(first.headers["idempotent-replayed"], undefined);

    const concurrentKey = { "idempotency-key": "order-456" };
    const burst = await Promise.all(
      Array.from({ length: 8 }, () =>
        call("POST", "/sessions", { body: session(guest(3), guest(4)), headers: concurrentKey }),
      ),
    );
    assert.equal(new Set(burst.map((r) => r.json.sessionId)).size, 1);
    assert.ok(burst.every((r) => r.status === 201));
    assert.equal(burst.filter((r) => r.headers["idempotent-replayed"] === undefined).length, 1);

    const conflict = await call("POST", "/sessions", { body: session(guest(1), guest(5)), headers: key });
    assert.equal(conflict.status, 422);
    assert.equal(conflict.json.type, "https://maskline.dev/problems/idempotency-key-reused");

    const sessions = (await scan()).filter((i) => i.kind === "session");
    assert.equal(sessions.length, 2);
  });

  test("Idempotency-Key on a platform message: a retry answers the first result, also once the session closed", async () => {
    const { call, scan } = await fixture(2);
    const opened = await call("POST", "/sessions", { body: session(guest(1), guest(2)) });
    const path = `/sessions/${opened.json.sessionId}/messages`;
    const key = { "idempotency-key": "notice-1" };
    const message = { to: guest(1), body: "Your booking is confirmed" };
    const first = await call("POST", path, { body: message, headers: key });
    assert.equal(first.status, 202, first.text);
    const retry = await call("POST", path, { body: message, headers: key });
    assert.equal(retry.status, 202, retry.text);
    assert.equal(retry.json.messageId, first.json.messageId);

    // The backend's retry arrives after the session was closed: the message was queued, say so again.
    assert.equal((await call("DELETE", `/sessions/${opened.json.sessionId}`)).status, 200);
    const late = await call("POST", path, { body: message, headers: key });
    assert.equal(late.status, 202, late.text);
    assert.deepEqual(late.json, first.json);
    assert.equal(late.headers["idempotent-replayed"], "true");
    const reused = await call("POST", path, { body: { ...message, body: "Other text" }, headers: key });
    assert.equal(reused.status, 422, reused.text);
    assert.equal(reused.json.type, "https://maskline.dev/problems/idempotency-key-reused");
    const fresh = await call("POST", path, { body: message, headers: { "idempotency-key": "notice-2" } });
    assert.equal(fresh.status, 409, fresh.text);
    assert.equal(fresh.json.type, "https://maskline.dev/problems/session-not-open");
    assert.equal((await scan()).filter((i) => i.kind === "message").length, 1, "one message stored");
  });

  test("every error class, from a real request, as problem+json", async () => {
    const { call, scan } = await fixture(1);
    const before = (await scan()).length;
    const cases: [string, Awaited<ReturnType<typeof call>>, number, string][] = [
      [
        "malformed number",
        await call("POST", "/sessions", { body: session("12345", guest(2)) }),
        400,
        "validation-error",
      ],
      [
        "16 digits (possible for DE in libphonenumber-js, too long for E.164)",
        await call("POST", "/sessions", { body: session("+4922222222222222", guest(2)) }),
        400,
        "validation-error",
      ],
      [
        "16-digit pool number",
        await call("POST", "/numbers", { body: { phoneNumber: "+4922222222222222" } }),
        400,
        "validation-error",
      ],
      ["malformed JSON", await call("POST", "/sessions", { body: "{not json" }), 400, "malformed-json"],
      [
        "same participant twice",
        await call("POST", "/sessions", { body: session(guest(2), guest(2)) }),
        400,
        "validation-error",
      ],
      [
        "ttl out of bounds",
        await call("POST", "/sessions", { body: session(guest(1), guest(2), { ttlSeconds: 0 }) }),
        400,
        "validation-error",
      ],
      [
        "missing token",
        await call("POST", "/sessions", {
          body: session(guest(1), guest(2)),
          headers: { authorization: "" },
        }),
        401,
        "unauthorized",
      ],
      [
        "wrong token",
        await call("GET", "/numbers", { headers: { authorization: "Bearer nope-nope-nope-nope" } }),
        401,
        "unauthorized",
      ],
      ["unknown session", await call("GET", "/sessions/ses_doesnotexist"), 404, "not-found"],
      [
        "wrong content type",
        await call("POST", "/numbers", { body: "phoneNumber=1", headers: { "content-type": "text/plain" } }),
        415,
        "unsupported-media-type",
      ],
      ["retire unknown number", await call("DELETE", "/numbers/+14155559999"), 404, "not-found"],
      // An unknown field is refused, not ignored: a misspelt option must not silently fall back to its default.
      [
        "unknown field (a misspelt ttlSeconds)",
        await call("POST", "/sessions", { body: session(guest(1), guest(2), { ttlSecond: 60 }) }),
        400,
        "validation-error",
      ],
      [
        "__proto__ key",
        await call("POST", "/sessions", {
          body: `{"participants":${JSON.stringify(session(guest(1), guest(2)).participants)},"__proto__":{"ttlSeconds":1}}`,
        }),
        400,
        "validation-error",
      ],
      [
        "unknown participant field",
        await call("POST", "/sessions", {
          body: { participants: [{ phoneNumber: guest(1), role: "host" }, { phoneNumber: guest(2) }] },
        }),
        400,
        "validation-error",
      ],
      [
        "unknown field on a platform message",
        await call("POST", "/sessions/ses_doesnotexist/messages", {
          body: { to: "a", body: "b", from: "x" },
        }),
        400,
        "validation-error",
      ],
      [
        "unknown field on a pool number",
        await call("POST", "/numbers", { body: { phoneNumber: number(7), status: "active" } }),
        400,
        "validation-error",
      ],
    ];
    for (const [name, res, status, type] of cases) {
      assert.equal(res.status, status, `${name}: ${res.text}`);
      assert.equal(res.headers["content-type"], "application/problem+json", name);
      assert.equal(res.json.type, `https://maskline.dev/problems/${type}`, name);
      assert.equal(res.json.status, status, name);
    }
    // Every route with a JSON body answers 415 and 413 alike, and the document describes both.
    for (const [method, path] of [
      ["POST", "/sessions"],
      ["PATCH", "/sessions/ses_doesnotexist"],
      ["POST", "/sessions/ses_doesnotexist/messages"],
      ["POST", "/numbers"],
    ] as const) {
      const notJson = await call(method, path, { body: "{}", headers: { "content-type": "text/plain" } });
      assert.equal(notJson.status, 415, `${method} ${path}: ${notJson.text}`);
      assert.equal(notJson.json.type, "https://maskline.dev/problems/unsupported-media-type");
      const tooLarge = await call(method, path, { body: { pad: "x".repeat(40_000) } });
      assert.equal(tooLarge.status, 413, `${method} ${path}: ${tooLarge.text}`);
      assert.equal(tooLarge.json.type, "https://maskline.dev/problems/payload-too-large");
    }
    const invalid = cases[0]?.[1].json;
    assert.equal(invalid.errors[0].pointer, "/participants/0/phoneNumber");
    const misspelt = cases.find(([name]) => name.startsWith("unknown field ("))?.[1].json;
    assert.match(misspelt.errors[0].detail, /ttlSecond/, "the problem names the unknown field");
    assert.equal((await scan()).length, before, "no client mistake writes anything");

    // Pool of one: the first session takes it for both participants; a second for the same person is 409.
    assert.equal((await call("POST", "/sessions", { body: session(guest(1), guest(2)) })).status, 201);
    const exhausted = await call("POST", "/sessions", { body: session(guest(1), guest(3)) });
    assert.equal(exhausted.status, 409);
    assert.equal(exhausted.json.participant, guest(1));
  });

  test("a pool number is never a participant (422), and a participant in an open session is not added to the pool (409)", async () => {
    const { call, scan } = await fixture(2);
    const before = (await scan()).length;
    for (const pair of [
      [number(0), guest(1)],
      [guest(2), number(1)],
    ] as const) {
      const res = await call("POST", "/sessions", { body: session(pair[0], pair[1]) });
      assert.equal(res.status, 422, res.text);
      assert.equal(res.headers["content-type"], "application/problem+json");
      assert.match(String(res.json.type), /participant-is-pool-number$/);
    }
    // A draining number is still ours.
    const opened = await call("POST", "/sessions", { body: session(guest(3), guest(4)) });
    assert.equal(opened.status, 201);
    const draining = (opened.json.participants as { proxyNumber: string }[])[0]?.proxyNumber ?? "";
    assert.equal((await call("DELETE", `/numbers/${encodeURIComponent(draining)}`)).json.status, "draining");
    const viaDraining = await call("POST", "/sessions", { body: session(draining, guest(5)) });
    assert.equal(viaDraining.status, 422, viaDraining.text);
    assert.equal((await scan()).length - before > 0, true);
    // The other way round: a participant of an open session cannot join the pool.
    const added = await call("POST", "/numbers", { body: { phoneNumber: guest(3) } });
    assert.equal(added.status, 409, added.text);
    assert.match(String(added.json.type), /number-is-participant$/);
    assert.equal(
      (await call("GET", "/numbers")).json.numbers.some(
        (n: { phoneNumber: string }) => n.phoneNumber === guest(3),
      ),
      false,
    );
    // Once the session is closed the number may be added.
    await call("DELETE", `/sessions/${opened.json.sessionId}`);
    assert.equal((await call("POST", "/numbers", { body: { phoneNumber: guest(3) } })).status, 201);
  });

  test("participant numbers: premium-rate and unplaceable forms are 400 naming the field; a path number needs its +", async () => {
    const { call, scan } = await fixture(2);
    const before = (await scan()).length;
    // Premium-rate (a call bridged to one bills the pool's account per minute), emergency and short codes,
    // extensions, tel: URIs and non-ASCII digits: each refused where it is given, nothing written.
    for (const raw of [
      "+19005550100",
      "+449098790000",
      "+1911",
      "+112",
      "+12025550100;ext=12",
      "+12025550100x123",
      "tel:+12025550100",
      "+\u0661\u0662\u0660\u0662\u0665\u0665\u0665\u0660\u0661\u0660\u0660",
      "\uff0b\uff11\uff12\uff10\uff12\uff15\uff15\uff15\uff10\uff11\uff10\uff10",
    ]) {
      const res = await call("POST", "/sessions", { body: session(raw, guest(2)) });
      assert.equal(res.status, 400, `${raw}: ${res.text}`);
      assert.equal(res.json.errors[0].pointer, "/participants/0/phoneNumber", raw);
    }
    assert.equal((await scan()).length, before, "nothing written");
    // Toll-free and another country than the pool's are people we can reach: accepted.
    const opened = await call("POST", "/sessions", { body: session("+18005550100", "+447700900123") });
    assert.equal(opened.status, 201, opened.text);

    // The path takes the number as the body does: "+" raw or encoded (or a "+" decoded to a space), any
    // formatting. Without its "+" a national number would silently name someone else ("2025550170" is +20,
    // Egypt): refused, like the body refuses it.
    for (const path of ["%2B18005550100", "+18005550100", "%2B1%20800%20555%200100", "%2018005550100"]) {
      const res = await call("GET", `/participants/${path}`);
      assert.equal(res.status, 200, `${path}: ${res.text}`);
      assert.deepEqual(res.json.openSessions, [opened.json.sessionId], path);
    }
    for (const path of ["18005550100", "8005550100", "(800)%20555-0100", "tel:%2B18005550100"]) {
      for (const method of ["GET", "DELETE"] as const) {
        const res = await call(method, `/participants/${path}`);
        assert.equal(res.status, 400, `${method} ${path}: ${res.text}`);
        assert.match(String(res.json.type), /validation-error$/);
      }
      const retire = await call("DELETE", `/numbers/${path}`);
      assert.equal(retire.status, 400, `DELETE /numbers/${path}: ${retire.text}`);
    }
    assert.equal(
      (await call("GET", `/sessions/${opened.json.sessionId}`)).json.status,
      "open",
      "nothing erased",
    );
  });

  test("a retired number drains: open sessions keep it, new sessions never get it", async () => {
    const { call } = await fixture(2);
    const first = await call("POST", "/sessions", { body: session(guest(1), guest(2)) });
    const proxy = first.json.participants[0].proxyNumber;
    const retired = await call("DELETE", `/numbers/${encodeURIComponent(proxy)}`);
    assert.equal(retired.status, 200);
    assert.equal(retired.json.status, "draining");
    const still = await call("GET", `/sessions/${first.json.sessionId}`);
    assert.equal(still.json.status, "open");
    for (let i = 0; i < 3; i++) {
      const next = await call("POST", "/sessions", { body: session(guest(10 + i), guest(20 + i)) });
      assert.equal(next.status, 201);
      for (const p of next.json.participants) assert.notEqual(p.proxyNumber, proxy);
    }
    const list = await call("GET", "/numbers");
    const entry = list.json.numbers.find((n: { phoneNumber: string }) => n.phoneNumber === proxy);
    assert.equal(entry.status, "draining");
    const pairsOnIt = first.json.participants.filter(
      (p: { proxyNumber: string }) => p.proxyNumber === proxy,
    ).length;
    assert.equal(entry.load, pairsOnIt, "its load is what still drains");

    // A number nobody holds leaves the pool at once; its history stays in its events.
    const unused = { phoneNumber: "+14155551999" };
    assert.equal((await call("POST", "/numbers", { body: unused })).status, 201);
    const gone = await call("DELETE", `/numbers/${encodeURIComponent(unused.phoneNumber)}`);
    assert.equal(gone.json.status, "retired");
    const after = (await call("GET", "/numbers")).json.numbers.map(
      (n: { phoneNumber: string }) => n.phoneNumber,
    );
    assert.ok(!after.includes(unused.phoneNumber));
    assert.equal((await call("DELETE", `/numbers/${encodeURIComponent(unused.phoneNumber)}`)).status, 404);
    assert.equal((await call("DELETE", "/numbers/%25")).status, 400, "a stray % is a client error");
  });
});
