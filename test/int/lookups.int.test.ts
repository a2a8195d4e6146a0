import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { ScanCommand } from "@aws-sdk/lib-dynamodb";
import { createAllocateHandler } from "../../functions/allocate/app.ts";
import { logger } from "../../shared/adapters/aws.ts";
import { newId } from "../../shared/adapters/ids.ts";
import { SqsForwardQueue } from "../../shared/adapters/sqs-queue.ts";
import { SessionService } from "../../shared/app/sessions.ts";
import { invoker } from "../support/http.ts";
import { validated } from "../support/openapi.ts";
import { startLocalAws } from "../support/stack.ts";

const TOKEN = "test-token-lookups-0123";
const PROBLEM = "https://maskline.dev/problems/";
const number = (n: number) => `+1415555${String(1000 + n).padStart(4, "0")}`;
const guest = (n: number) => `+1202555${String(1000 + n).padStart(4, "0")}`;

let aws: Awaited<ReturnType<typeof startLocalAws>>;

/** The real handler on DynamoDB Local, with a clock the test can move forward (expiry without waiting). */
async function fixture(poolSize: number, numbers: (n: number) => string = number) {
  const { tableName, queue, store } = await aws.fresh();
  const clock = { offsetMs: 0, now: () => Date.now() + clock.offsetMs };
  const service = new SessionService({
    store,
    queue: new SqsForwardQueue({ queueUrl: queue.queueUrl, client: aws.sqsClient }),
    clock,
    newId,
    quarantineSeconds: 3600,
  });
  const handler = createAllocateHandler({
    service,
    logger,
    auth: { mode: "token", token: TOKEN },
    health: async () => ({ table: "ok" }),
  });
  // Every response in this file is checked against the committed OpenAPI document.
  const call = validated(invoker(handler, { authorization: `Bearer ${TOKEN}` }));
  for (let i = 0; i < poolSize; i++) {
    const res = await call("POST", "/numbers", { body: { phoneNumber: numbers(i) } });
    assert.equal(res.status, 201, res.text);
  }
  const scan = async () => (await aws.doc.send(new ScanCommand({ TableName: tableName }))).Items ?? [];
  return { call, clock, scan, store };
}

const session = (a: string, b: string, extra: Record<string, unknown> = {}) => ({
  participants: [
    { phoneNumber: a, id: `user-${a.slice(-4)}` },
    { phoneNumber: b, id: `user-${b.slice(-4)}` },
  ],
  ...extra,
});

const problemOf = (res: { status: number; headers: Record<string, unknown>; json: { type: string } }) => {
  assert.equal(res.headers["content-type"], "application/problem+json");
  return res.json.type.replace(PROBLEM, "");
};

describe("lookups, updates and paging on DynamoDB Local", () => {
  before(async () => {
    aws = await startLocalAws();
  });
  after(async () => aws.stop());

  test("uniqueName is unique among open sessions, also under concurrency; closed or expired frees it", async () => {
    const { call, clock } = await fixture(8);
    const first = await call("POST", "/sessions", {
      body: session(guest(1), guest(2), { uniqueName: "booking-1" }),
    });
    assert.equal(first.status, 201, first.text);
    assert.equal(first.json.uniqueName, "booking-1");

    const taken = await call("POST", "/sessions", {
      body: session(guest(3), guest(4), { uniqueName: "booking-1" }),
    });
    assert.equal(taken.status, 409);
    assert.equal(problemOf(taken), "unique-name-taken");
    assert.equal(taken.json.uniqueName, "booking-1");

    const burst = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        call("POST", "/sessions", {
          body: session(guest(10 + i), guest(20 + i), { uniqueName: "booking-2" }),
        }),
      ),
    );
    assert.equal(burst.filter((r) => r.status === 201).length, 1, burst.map((r) => r.status).join(","));
    for (const r of burst.filter((r) => r.status !== 201)) assert.equal(problemOf(r), "unique-name-taken");

    // Closing releases the name at once.
    assert.equal((await call("DELETE", `/sessions/${first.json.sessionId}`)).status, 200);
    const again = await call("POST", "/sessions", {
      body: session(guest(3), guest(4), { uniqueName: "booking-1", ttlSeconds: 60 }),
    });
    assert.equal(again.status, 201, again.text);

    // Past its expiry (not yet swept by the recycler) the holder no longer counts.
    clock.offsetMs += 61_000;
    const takeover = await call("POST", "/sessions", {
      body: session(guest(5), guest(6), { uniqueName: "booking-1" }),
    });
    assert.equal(takeover.status, 201, takeover.text);

    const named = await call("GET", "/sessions?uniqueName=booking-1");
    assert.equal(named.status, 200, named.text);
    assert.deepEqual(
      named.json.sessions.map((s: { sessionId: string; status: string }) => [s.sessionId, s.status]),
      [
        [takeover.json.sessionId, "open"],
        [again.json.sessionId, "expired"],
        [first.json.sessionId, "closed"],
      ],
      "newest first, status as of now",
    );
    assert.equal(named.json.nextCursor, undefined);
    const open = await call("GET", "/sessions?uniqueName=booking-1&status=open");
    assert.deepEqual(
      open.json.sessions.map((s: { sessionId: string }) => s.sessionId),
      [takeover.json.sessionId],
    );
  });

  test("GET /sessions by participant number or id, filtered by status, paged with sealed cursors", async () => {
    const { call } = await fixture(6);
    const host = guest(900);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await call("POST", "/sessions", { body: session(host, guest(i)) });
      assert.equal(res.status, 201, res.text);
      ids.push(res.json.sessionId);
    }
    await call("DELETE", `/sessions/${ids[0]}`);
    await call("DELETE", `/sessions/${ids[1]}`);

    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const q = new URLSearchParams({ participant: host, limit: "2", ...(cursor ? { cursor } : {}) });
      const res = await call("GET", `/sessions?${q}`);
      assert.equal(res.status, 200, res.text);
      assert.ok(res.json.sessions.length <= 2);
      seen.push(...res.json.sessions.map((s: { sessionId: string }) => s.sessionId));
      cursor = res.json.nextCursor;
      pages++;
    } while (cursor);
    assert.deepEqual(seen, [...ids].reverse(), "every session once, newest first");
    assert.equal(pages, 3, "5 sessions, 2 a page: the last page has no nextCursor");

    const byId = await call("GET", `/sessions?participant=user-${host.slice(-4)}&status=open`);
    assert.deepEqual(
      byId.json.sessions.map((s: { sessionId: string }) => s.sessionId),
      ids.slice(2).reverse(),
    );
    const closed = await call("GET", `/sessions?participant=${encodeURIComponent(host)}&status=closed`);
    assert.deepEqual(
      closed.json.sessions.map((s: { status: string }) => s.status),
      ["closed", "closed"],
    );
    const unencodedPlus = await call("GET", `/sessions?participant=${host}&limit=1`);
    assert.equal(
      unencodedPlus.json.sessions.length,
      1,
      "a raw + (a space once decoded) still reads as E.164",
    );
    assert.equal(unencodedPlus.json.sessions[0].sessionId, ids[4]);

    const first = await call("GET", `/sessions?participant=${encodeURIComponent(host)}&limit=1`);
    const good: string = first.json.nextCursor;
    const [payload, mac] = good.split(".") as [string, string];
    const forged = `${Buffer.from(JSON.stringify({ pk: "SESSIONS#PHONE#+12025551000", sk: "z" })).toString("base64url")}.${mac}`;
    for (const bad of [`${payload}x.${mac}`, forged, "not-a-cursor", `${payload}.${mac.slice(1)}`]) {
      const res = await call(
        "GET",
        `/sessions?participant=${encodeURIComponent(host)}&cursor=${encodeURIComponent(bad)}`,
      );
      assert.equal(res.status, 400, bad);
      assert.equal(problemOf(res), "invalid-cursor");
    }
    const otherQuery = await call(
      "GET",
      `/sessions?participant=${encodeURIComponent(guest(1))}&cursor=${encodeURIComponent(good)}`,
    );
    assert.equal(problemOf(otherQuery), "invalid-cursor", "a cursor belongs to its query");

    for (const path of [
      "/sessions",
      "/sessions?participant=x&limit=0",
      "/sessions?participant=x&limit=1001",
      "/sessions?participant=x&status=gone",
      "/sessions?participant=x&colour=red",
    ]) {
      const res = await call("GET", path);
      assert.equal(res.status, 400, path);
      assert.equal(problemOf(res), "validation-error", path);
    }
  });

  test("PATCH /sessions/{id}: a new ttl counts from now, mode and expiry reach the routing pairs; not open is 409", async () => {
    const { call, clock, scan } = await fixture(4);
    const opened = await call("POST", "/sessions", {
      body: session(guest(1), guest(2), { ttlSeconds: 60, uniqueName: "stay-7" }),
    });
    const id = opened.json.sessionId;
    const before = Date.now();
    const updated = await call("PATCH", `/sessions/${id}`, { body: { ttlSeconds: 7200, mode: "sms" } });
    assert.equal(updated.status, 200, updated.text);
    assert.equal(updated.json.mode, "sms");
    assert.equal(updated.json.ttlSeconds, 7200);
    const expiresAt = Date.parse(updated.json.expiresAt);
    assert.ok(expiresAt >= before + 7_200_000 && expiresAt <= Date.now() + 7_200_000);
    assert.deepEqual((await call("GET", `/sessions/${id}`)).json, updated.json);

    const pairs = (await scan()).filter((i) => i.kind === "pair" && i.sessionId === id);
    assert.equal(pairs.length, 2);
    for (const p of pairs) {
      assert.equal(p.expiresAt, expiresAt, "the hot path reads the new expiry");
      assert.equal(p.mode, "sms");
    }

    // The name hold follows the new expiry: past the old one, the name is still taken.
    clock.offsetMs += 120_000;
    const name = await call("POST", "/sessions", {
      body: session(guest(3), guest(4), { uniqueName: "stay-7" }),
    });
    assert.equal(problemOf(name), "unique-name-taken");

    const modeOnly = await call("PATCH", `/sessions/${id}`, { body: { mode: "sms+voice" } });
    assert.equal(modeOnly.json.expiresAt, updated.json.expiresAt, "a mode change keeps the expiry");
    const events = await call("GET", `/sessions/${id}/events?type=SessionUpdated`);
    assert.deepEqual(
      events.json.events.map((e: { type: string }) => e.type),
      ["SessionUpdated", "SessionUpdated"],
    );

    for (const body of [{}, { ttlSeconds: 0 }, { mode: "fax" }, { colour: "red" }]) {
      const res = await call("PATCH", `/sessions/${id}`, { body });
      assert.equal(res.status, 400, JSON.stringify(body));
    }
    assert.equal((await call("PATCH", "/sessions/ses_nope", { body: { mode: "sms" } })).status, 404);

    clock.offsetMs += 7_300_000;
    const expired = await call("PATCH", `/sessions/${id}`, { body: { ttlSeconds: 60 } });
    assert.equal(expired.status, 409);
    assert.equal(problemOf(expired), "session-not-open");
    // RFC 9457: `status` is the HTTP status; the session's own status is an extension member.
    assert.equal(expired.json.status, 409);
    assert.equal(expired.json.sessionStatus, "expired");

    const other = await call("POST", "/sessions", { body: session(guest(5), guest(6)) });
    await call("DELETE", `/sessions/${other.json.sessionId}`);
    const closed = await call("PATCH", `/sessions/${other.json.sessionId}`, { body: { mode: "sms" } });
    assert.equal(problemOf(closed), "session-not-open");
    assert.equal(closed.json.status, 409);
    assert.equal(closed.json.sessionStatus, "closed");
  });

  test("number-is-participant: only an open session counts; past its expiry, swept or not, the number may join the pool", async () => {
    const { call, clock } = await fixture(2);
    await call("POST", "/sessions", { body: session(guest(1), guest(2), { ttlSeconds: 60 }) });
    const open = await call("POST", "/numbers", { body: { phoneNumber: guest(1) } });
    assert.equal(open.status, 409, open.text);
    assert.equal(problemOf(open), "number-is-participant");
    clock.offsetMs += 61_000; // no sweeper runs here
    const expired = await call("POST", "/numbers", { body: { phoneNumber: guest(1) } });
    assert.equal(expired.status, 201, expired.text);
    assert.equal(expired.json.status, "active");
  });

  test("an Idempotency-Key replay after the session's expiry answers it as expired (expiry is exact at read time)", async () => {
    const { call, clock } = await fixture(2);
    const key = { "idempotency-key": "replay-after-expiry" };
    const body = session(guest(1), guest(2), { ttlSeconds: 60 });
    const first = await call("POST", "/sessions", { body, headers: key });
    assert.equal(first.json.status, "open");
    clock.offsetMs += 61_000;
    const replay = await call("POST", "/sessions", { body, headers: key });
    assert.equal(replay.status, 201, replay.text);
    assert.equal(replay.headers["idempotent-replayed"], "true");
    assert.equal(replay.json.sessionId, first.json.sessionId);
    assert.equal(replay.json.status, "expired");
  });

  test("failOnParticipantConflict: 409 while the two already share an open session, fine otherwise", async () => {
    const { call, clock, scan } = await fixture(4);
    const first = await call("POST", "/sessions", { body: session(guest(1), guest(2), { ttlSeconds: 60 }) });
    const before = (await scan()).length;
    const conflict = await call("POST", "/sessions", {
      body: session(guest(2), guest(1), { failOnParticipantConflict: true }),
    });
    assert.equal(conflict.status, 409, conflict.text);
    assert.equal(problemOf(conflict), "participant-conflict");
    assert.equal(conflict.json.sessionId, first.json.sessionId);
    assert.equal((await scan()).length, before, "nothing written");

    const other = await call("POST", "/sessions", {
      body: session(guest(1), guest(3), { failOnParticipantConflict: true }),
    });
    assert.equal(other.status, 201, "another counterpart is no conflict");
    const without = await call("POST", "/sessions", { body: session(guest(1), guest(2)) });
    assert.equal(without.status, 201, "without the flag a second session is allowed");
    clock.offsetMs += 61_000;
    await call("DELETE", `/sessions/${without.json.sessionId}`);
    const afterExpiry = await call("POST", "/sessions", {
      body: session(guest(1), guest(2), { failOnParticipantConflict: true }),
    });
    assert.equal(afterExpiry.status, 201, "an expired session is no conflict");
  });

  test("area code: a proxy of the participant's area code first, unless geoMatch is country; never fails for it", async () => {
    const pool = ["+14155551000", "+12125551000", "+13125551000", "+13125551001"];
    const { call } = await fixture(pool.length, (i) => pool[i] ?? "");
    const res = await call("POST", "/sessions", {
      body: { participants: [{ phoneNumber: "+13125550100" }, { phoneNumber: "+12125550100" }] },
    });
    assert.equal(res.status, 201, res.text);
    assert.deepEqual(
      res.json.participants.map((p: { proxyNumber: string }) => p.proxyNumber.slice(0, 5)),
      ["+1312", "+1212"],
    );
    const noMatch = await call("POST", "/sessions", {
      body: { participants: [{ phoneNumber: "+16175550100" }, { phoneNumber: "+17185550100" }] },
    });
    assert.equal(noMatch.status, 201, "no number of that area code: any number of the country");
    const country = await call("POST", "/sessions", {
      body: {
        participants: [{ phoneNumber: "+14155550199" }, { phoneNumber: "+14155550198" }],
        geoMatch: "country",
      },
    });
    assert.equal(country.status, 201);
    assert.equal(
      (await call("POST", "/sessions", { body: { ...session(guest(1), guest(2)), geoMatch: "city" } }))
        .status,
      400,
    );
  });

  test("paging: events by type, numbers, and a session's message log", async () => {
    const { call, store } = await fixture(5);
    const numbers = [];
    let cursor: string | undefined;
    do {
      const res = await call(
        "GET",
        `/numbers?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`,
      );
      assert.equal(res.status, 200, res.text);
      numbers.push(...res.json.numbers);
      cursor = res.json.nextCursor;
    } while (cursor);
    assert.equal(numbers.length, 5);
    assert.equal(new Set(numbers.map((n) => n.phoneNumber)).size, 5);
    assert.equal((await call("GET", "/numbers")).json.nextCursor, undefined);

    const opened = await call("POST", "/sessions", { body: session(guest(1), guest(2)) });
    const id = opened.json.sessionId;
    for (let i = 0; i < 3; i++) {
      const sent = await call("POST", `/sessions/${id}/messages`, {
        body: { to: `user-${guest(2).slice(-4)}`, body: `hello ${i}` },
      });
      assert.equal(sent.status, 202, sent.text);
    }
    await call("DELETE", `/sessions/${id}`);
    const all = await call("GET", `/sessions/${id}/events`);
    assert.equal(all.json.events.length, 7);
    assert.equal(all.json.nextCursor, undefined);
    const page1 = await call("GET", `/sessions/${id}/events?limit=4`);
    assert.equal(page1.json.events.length, 4);
    const page2 = await call(
      "GET",
      `/sessions/${id}/events?limit=4&cursor=${encodeURIComponent(page1.json.nextCursor)}`,
    );
    assert.deepEqual([...page1.json.events, ...page2.json.events], all.json.events);
    assert.equal(page2.json.nextCursor, undefined);
    const received = await call("GET", `/sessions/${id}/events?type=MessageReceived&limit=2`);
    assert.deepEqual(
      received.json.events.map((e: { type: string }) => e.type),
      ["MessageReceived", "MessageReceived"],
    );
    const rest = await call(
      "GET",
      `/sessions/${id}/events?type=MessageReceived&limit=2&cursor=${encodeURIComponent(received.json.nextCursor)}`,
    );
    assert.equal(rest.json.events.length, 1);
    assert.equal(rest.json.nextCursor, undefined);
    // A type no event has is a mistake (a typo), not an empty history.
    const typo = await call("GET", `/sessions/${id}/events?type=MessageRecieved`);
    assert.equal(typo.status, 400, typo.text);
    assert.equal(typo.json.type, "https://maskline.dev/problems/validation-error");
    assert.equal(typo.json.errors[0].pointer, "/type");
    // The byte cap: a page stops before its items pass maxBytes, and the next page continues exactly there.
    const small: unknown[] = [];
    let after: Record<string, string | number> | undefined;
    let smallPages = 0;
    do {
      const page = await store.sessionEventsPage(id, { limit: 100, maxBytes: 1500, after });
      assert.ok(page.items.length >= 1 && page.items.length < 7);
      small.push(...page.items);
      after = page.next;
      smallPages++;
    } while (after);
    assert.ok(smallPages > 1);
    assert.deepEqual(small, all.json.events);
    const wrongScope = await call(
      "GET",
      `/sessions/${id}/events?cursor=${encodeURIComponent(received.json.nextCursor)}`,
    );
    assert.equal(problemOf(wrongScope), "invalid-cursor");

    const log = await call("GET", `/sessions/${id}/messages?limit=2`);
    assert.equal(log.status, 200, log.text);
    assert.equal(log.json.messages.length, 2);
    const more = await call(
      "GET",
      `/sessions/${id}/messages?cursor=${encodeURIComponent(log.json.nextCursor)}`,
    );
    const messages = [...log.json.messages, ...more.json.messages];
    assert.deepEqual(
      messages.map((m: { body: string }) => m.body),
      ["hello 0", "hello 1", "hello 2"],
    );
    for (const m of messages) {
      assert.equal(m.from, null, "a platform message has no sender");
      assert.equal(m.to, `user-${guest(2).slice(-4)}`, "participants by their product id");
      assert.equal(m.status, "received");
      assert.equal(m.mediaCount, 0);
      assert.equal(m.forwardedAt, null);
      assert.ok(Date.parse(m.receivedAt));
    }
    assert.equal((await call("GET", "/sessions/ses_nope/messages")).status, 404);
  });

  test("GET /openapi.json: the committed document, without credentials", async () => {
    const { call } = await fixture(0);
    const res = await call("GET", "/openapi.json", { headers: { authorization: "" } });
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, JSON.parse(readFileSync("docs/openapi.json", "utf8")));
    const denied = await call("GET", "/numbers", { headers: { authorization: "" } });
    assert.equal(denied.status, 401, "other routes still need credentials");
  });
});
