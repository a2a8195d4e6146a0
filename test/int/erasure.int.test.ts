import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createAllocateHandler } from "../../functions/allocate/app.ts";
import { LOCAL_REGION } from "../../local/aws-local.ts";
import { logger } from "../../shared/adapters/aws.ts";
import { newId } from "../../shared/adapters/ids.ts";
import { RecyclerService } from "../../shared/app/recycler.ts";
import { PSEUDONYM_PATTERN } from "../../shared/domain/phone.ts";
import { invoker } from "../support/http.ts";
import { assertMatchesOpenApi } from "../support/openapi.ts";
import { startPipeline } from "../support/pipeline.ts";
import { runRebuildCli } from "../support/rebuild-cli.ts";
import { recordCalls, startLocalAws } from "../support/stack.ts";

// Erasure (DELETE /participants/{e164}) and strangers' numbers, through the real webhook, forwarder and
// product API on DynamoDB Local and the Twilio stand-in; the rebuild CLI checks the table afterwards.

let aws: Awaited<ReturnType<typeof startLocalAws>>;
const GUEST = "+12025550161";
const HOST = "+12025550162";
const OTHER_HOST = "+12025550163";
const STRANGER = "+12025550169";
const TOKEN = "t".repeat(20);

const settle = () => new Promise((r) => setTimeout(r, 1200));
const contains = (item: unknown, text: string) => JSON.stringify(item).includes(text);

const rebuildCheck = (tableName: string) =>
  runRebuildCli(
    ["--endpoint", aws.dynamo.endpoint, "--region", LOCAL_REGION, "--table", tableName, "--check"],
    // The pipeline's stores keep message items an hour.
    { MESSAGE_RETENTION_HOURS: "1" },
  );

/** Waits for the queued text of the session to be blocked at send time because a person was erased. */
const erasedBlockOf = (p: Awaited<ReturnType<typeof startPipeline>>, sessionId: string) =>
  p.waitFor(
    async () =>
      (await p.scan()).some(
        (i) =>
          i.kind === "event" &&
          i.type === "MessageBlocked" &&
          i.sessionId === sessionId &&
          (i.detail as { reason: string }).reason === "erased",
      ),
    20_000,
    "the queued text blocked",
  );

function api(p: Awaited<ReturnType<typeof startPipeline>>) {
  const call = invoker(
    createAllocateHandler({
      service: p.sessions,
      logger,
      auth: { mode: "token", token: TOKEN },
      health: async () => ({}),
    }),
    { authorization: `Bearer ${TOKEN}` },
  );
  return async (method: string, path: string, body?: unknown) => {
    const response = await call(method, path, body === undefined ? {} : { body });
    assertMatchesOpenApi(method, path, response);
    return response;
  };
}

describe("erasure and strangers", () => {
  before(async () => {
    aws = await startLocalAws();
  });
  after(async () => aws.stop());

  test("a person on a hub number: erasure closes their hub sessions too and leaves their number nowhere", async () => {
    const p = await startPipeline(aws, { maxProxiesPerParticipant: 1 });
    try {
      await p.pool(3);
      const call = api(p);
      await p.open(HOST, GUEST);
      const overCap = await p.open(HOST, OTHER_HOST);
      const hubSide = overCap.session.participants.find((x) => x.phoneNumber === HOST);
      assert.equal(hubSide?.hub, true, "the host's second session is on their hub");
      await p.sandbox.phoneSends(OTHER_HOST, overCap.proxyB, "is the flat free?");
      await p.waitFor(() => p.sentTo(HOST).length === 1, 20_000, "the text through the hub");
      await settle();

      const erased = await call("DELETE", `/participants/${encodeURIComponent(HOST)}`);
      assert.equal(erased.status, 200, erased.text);
      assert.equal(erased.json.erased.sessions, 2);
      const digits = HOST.slice(1);
      assert.deepEqual(
        (await p.scan()).filter((i) => contains(i, digits)).map((i) => `${i.pk} ${i.sk}`),
        [],
        "no hub, thread, count, item or event keeps the number",
      );
      assert.equal((await call("GET", `/sessions/${overCap.session.sessionId}`)).json.status, "closed");
      const check = await rebuildCheck(p.tableName);
      assert.equal(check.code, 0, check.output);
    } finally {
      await p.stop();
    }
  });

  test("DELETE /participants/{e164} closes the person's sessions and leaves their number nowhere; again: zeros", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(3);
      const call = api(p);
      const first = await p.open(GUEST, HOST);
      await p.sandbox.phoneSends(GUEST, first.proxyA, "my door code is 4321");
      await p.sandbox.phoneSends(HOST, first.proxyB, "thanks, see you");
      await p.waitFor(
        () => p.sentTo(HOST).length === 1 && p.sentTo(GUEST).length === 1,
        20_000,
        "both texts",
      );
      // A second, already closed session of the person, and one of the host with someone else.
      const second = await p.open(GUEST, OTHER_HOST);
      await p.sandbox.phoneSends(OTHER_HOST, second.proxyB, "hello from the other host");
      await p.waitFor(() => p.sentTo(GUEST).length === 2, 20_000, "the other host's text");
      await p.sessions.closeSession(second.session.sessionId);
      const unrelated = await p.open(HOST, OTHER_HOST);
      await p.sandbox.phoneSends(HOST, unrelated.proxyA, "not about the guest");
      await p.waitFor(() => p.sentTo(OTHER_HOST).length === 1, 20_000, "the unrelated text");
      await settle();

      const erased = await call("DELETE", `/participants/${encodeURIComponent(GUEST)}`);
      assert.equal(erased.status, 200, erased.text);
      assert.equal(erased.json.erased.sessions, 2);
      assert.equal(erased.json.erased.messages, 3);
      assert.ok(erased.json.erased.events >= 8, `events: ${erased.json.erased.events}`);

      const items = await p.scan();
      const digits = GUEST.slice(1);
      assert.deepEqual(
        items.filter((i) => contains(i, digits)).map((i) => `${i.pk} ${i.sk}`),
        [],
        "no item or event keeps the number",
      );
      // Their sessions are closed, their numbers pseudonyms; bodies they sent or received are gone.
      const view = await call("GET", `/sessions/${first.session.sessionId}`);
      assert.equal(view.json.status, "closed");
      assert.match(view.json.participants[0].phoneNumber, PSEUDONYM_PATTERN);
      assert.equal(view.json.participants[1].phoneNumber, HOST);
      const log = await call("GET", `/sessions/${first.session.sessionId}/messages`);
      assert.deepEqual(
        log.json.messages.map((m: { body: unknown }) => m.body),
        [null, null],
        "an erased body reads as gone (null), not as an empty text",
      );
      const bodies = items.filter((i) => i.kind === "message").map((i) => i.body);
      assert.ok(!bodies.includes("my door code is 4321") && !bodies.includes("thanks, see you"));
      assert.ok(bodies.includes("not about the guest"), "other people's messages keep their bodies");
      // The unrelated session is untouched and still routes.
      assert.equal((await call("GET", `/sessions/${unrelated.session.sessionId}`)).json.status, "open");
      // Dead sessions cannot be routed: the person's text is out of session now.
      await p.sandbox.phoneSends(GUEST, first.proxyA, "anyone there?");
      await settle();
      assert.equal(p.sentTo(HOST).length, 1);

      const events = items.filter((i) => i.kind === "event" && i.type === "ParticipantErased");
      const [erasedEvent] = events;
      assert.ok(erasedEvent && events.length === 1);
      assert.deepEqual(Object.keys(erasedEvent.detail as object).sort(), [
        "events",
        "messages",
        "pseudonym",
        "sessionIds",
      ]);
      assert.deepEqual(
        [...(erasedEvent.detail as { sessionIds: string[] }).sessionIds].sort(),
        [first.session.sessionId, second.session.sessionId].sort(),
      );

      const again = await call("DELETE", `/participants/${GUEST}`);
      assert.equal(again.status, 200, again.text);
      assert.deepEqual(again.json, { erased: { sessions: 0, events: 0, messages: 0 } });
      assert.equal((await call("DELETE", "/participants/not-a-number")).status, 400);

      const check = await rebuildCheck(p.tableName);
      assert.equal(check.code, 0, check.output);
      assert.match(check.output, /^0 differences$/m);
    } finally {
      await p.stop();
    }
  });

  test("an erasure asked in national form is a 400 naming nothing, never a 200 for another country's number", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(2);
      const call = api(p);
      await p.open(GUEST, HOST);
      // GUEST in the national forms a backend may keep: read with a "+" put back they are other numbers
      // (+20 2555 0161 in Egypt), and a 200 with zeros would tell the caller the person was erased.
      for (const national of ["2025550161", "202-555-0161", "(202)%20555-0161"]) {
        const erased = await call("DELETE", `/participants/${national}`);
        assert.equal(erased.status, 400, `${national}: ${erased.text}`);
        assert.equal(erased.json.type, "https://maskline.dev/problems/validation-error");
      }
      assert.equal((await call("GET", `/participants/${GUEST.slice(4)}`)).status, 400);
      assert.equal((await call("GET", `/participants/${GUEST.slice(1)}`)).status, 400, "no + is no number");
      const person = await call("GET", `/participants/%2B${GUEST.slice(1)}`);
      assert.equal(person.status, 200, person.text);
      assert.equal(person.json.phoneNumber, GUEST);
      assert.equal((person.json.openSessions as string[]).length, 1, "nothing was erased");
    } finally {
      await p.stop();
    }
  });

  test("an opt-out survives erasure: a new session of that number gets nothing until they opt in", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(3);
      const call = api(p);
      const first = await p.open(GUEST, HOST);
      await p.sandbox.phoneSends(GUEST, first.proxyA, "STOP");
      assert.equal((await call("DELETE", `/participants/${encodeURIComponent(GUEST)}`)).status, 200);
      assert.ok(!(await p.scan()).some((i) => contains(i, GUEST.slice(1))), "the number is gone");

      const next = await p.open(GUEST, OTHER_HOST);
      assert.equal((await call("GET", `/participants/${encodeURIComponent(GUEST)}`)).json.optedOut, true);
      await p.sandbox.phoneSends(OTHER_HOST, next.proxyB, "hello again");
      await p.waitFor(
        async () =>
          (await p.scan()).some(
            (i) =>
              i.kind === "event" &&
              i.type === "MessageBlocked" &&
              (i.detail as { reason: string }).reason === "recipient-opted-out",
          ),
        20_000,
        "the text blocked for the opt-out",
      );
      assert.equal(p.sentTo(GUEST).length, 0);
      // A new opt-in clears it.
      await p.sandbox.phoneSends(GUEST, next.proxyA, "START");
      assert.equal((await call("GET", `/participants/${encodeURIComponent(GUEST)}`)).json.optedOut, false);
      await p.sandbox.phoneSends(OTHER_HOST, next.proxyB, "welcome back");
      await p.waitFor(() => p.sentTo(GUEST).length === 1, 20_000, "delivered after START");
    } finally {
      await p.stop();
    }
  });

  test("an opt-out given out of session (kept under the pseudonym) survives erasure of an older in-session opt-in", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(3);
      const call = api(p);
      const first = await p.open(GUEST, HOST);
      await p.sandbox.phoneSends(GUEST, first.proxyA, "START");
      await p.sessions.closeSession(first.session.sessionId);
      await new Promise((r) => setTimeout(r, 20));
      // Out of session now: the opt-out is kept under the pseudonym, and it is the latest word.
      await p.sandbox.phoneSends(GUEST, first.proxyA, "STOP");
      assert.equal((await call("GET", `/participants/${encodeURIComponent(GUEST)}`)).json.optedOut, true);
      assert.equal((await call("DELETE", `/participants/${encodeURIComponent(GUEST)}`)).status, 200);
      assert.equal(
        (await call("GET", `/participants/${encodeURIComponent(GUEST)}`)).json.optedOut,
        true,
        "the older opt-in moved by the erasure does not replace the later opt-out",
      );
      const check = await rebuildCheck(p.tableName);
      assert.equal(check.code, 0, check.output);
    } finally {
      await p.stop();
    }
  });

  test("a message queued to a person who is then erased is not sent (MessageBlocked erased)", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(2);
      const call = api(p);
      const { session, proxyB } = await p.open(GUEST, HOST);
      await p.stopForwarding();
      await p.sandbox.phoneSends(HOST, proxyB, "are you still coming?");
      await call("DELETE", `/participants/${encodeURIComponent(GUEST)}`);
      p.startForwarding();
      await erasedBlockOf(p, session.sessionId);
      assert.equal(p.sentTo(GUEST).length, 0);
      const message = (await p.scan()).find((i) => i.kind === "message" && i.sessionId === session.sessionId);
      assert.equal(message?.body, "", "its body is gone");
    } finally {
      await p.stop();
    }
  });

  test("a message queued from a person who is then erased is not sent: its body is gone (MessageBlocked erased)", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(2);
      const call = api(p);
      const { session, proxyA } = await p.open(GUEST, HOST);
      await p.stopForwarding();
      await p.sandbox.phoneSends(GUEST, proxyA, "I will be there at 5");
      assert.equal((await call("DELETE", `/participants/${encodeURIComponent(GUEST)}`)).status, 200);
      p.startForwarding();
      await erasedBlockOf(p, session.sessionId);
      await settle();
      assert.deepEqual(
        p.sentTo(HOST).map((m) => m.body),
        [],
        "no empty text goes out in its place",
      );
    } finally {
      await p.stop();
    }
  });

  test("erasing a counterpart of a hub participant leaves the number in no thread of the hub side", async () => {
    const p = await startPipeline(aws, { maxProxiesPerParticipant: 1 });
    try {
      await p.pool(3);
      const call = api(p);
      await p.open(HOST, OTHER_HOST);
      const onHub = await p.open(HOST, GUEST);
      assert.equal(onHub.session.participants.find((x) => x.phoneNumber === HOST)?.hub, true);
      await p.sandbox.phoneSends(GUEST, onHub.proxyB, "is the flat free?");
      await p.waitFor(() => p.sentTo(HOST).length === 1, 20_000, "the text through the hub");
      await settle();
      assert.equal((await call("DELETE", `/participants/${encodeURIComponent(GUEST)}`)).status, 200);
      assert.deepEqual(
        (await p.scan()).filter((i) => contains(i, GUEST.slice(1))).map((i) => `${i.pk} ${i.sk}`),
        [],
        "no item keeps the number",
      );
      const check = await rebuildCheck(p.tableName);
      assert.equal(check.code, 0, check.output);
    } finally {
      await p.stop();
    }
  });

  test("a hub participant's untagged text (answered with the prompt) keeps no number that erasure cannot find", async () => {
    const p = await startPipeline(aws, { maxProxiesPerParticipant: 1 });
    try {
      await p.pool(3);
      const call = api(p);
      await p.open(HOST, OTHER_HOST);
      const first = await p.open(HOST, GUEST, 3600, [undefined, "Gina"]);
      await p.open(HOST, "+12025550164", 3600, [undefined, "Kate"]);
      const hub = first.session.participants.find((x) => x.phoneNumber === HOST);
      assert.equal(hub?.hub, true);
      const prompt = await p.sandbox.phoneSends(HOST, hub?.proxyNumber as string, "are you there?");
      assert.match(prompt.twiml, /Open:/, "two open threads: the prompt");
      const outOfSession = (await p.scan()).filter(
        (i) => i.kind === "event" && i.type === "OutOfSessionMessage",
      );
      assert.equal(outOfSession.length, 1);
      assert.match(
        String((outOfSession[0]?.detail as { from?: string } | undefined)?.from),
        PSEUDONYM_PATTERN,
      );
      assert.equal((await call("DELETE", `/participants/${encodeURIComponent(HOST)}`)).status, 200);
      assert.deepEqual(
        (await p.scan()).filter((i) => contains(i, HOST.slice(1))).map((i) => `${i.pk} ${i.sk}`),
        [],
        "no item or event keeps the number",
      );
    } finally {
      await p.stop();
    }
  });

  test("a stranger's number is never stored: texts, STOP and calls to a pool number", async () => {
    const p = await startPipeline(aws);
    try {
      const [proxy] = await p.pool(1);
      await p.sandbox.phoneSends(STRANGER, proxy as string, "hi, is this the host?");
      await p.sandbox.phoneSends(STRANGER, proxy as string, "hello??");
      await p.sandbox.phoneSends(STRANGER, proxy as string, "STOP");
      await p.sandbox.phoneCalls(STRANGER, proxy as string);
      const items = await p.scan();
      const outOfSession = items.filter((i) => i.kind === "event" && i.type === "OutOfSessionMessage");
      assert.equal(outOfSession.length, 3);
      for (const event of outOfSession)
        assert.match((event.detail as { from: string }).from, PSEUDONYM_PATTERN);
      assert.ok(
        items.some((i) => i.kind === "auto-reply"),
        "the throttle marker is kept",
      );
      assert.ok(
        items.some((i) => i.kind === "consent"),
        "the opt-out is kept",
      );
      assert.deepEqual(
        items.filter((i) => contains(i, STRANGER.slice(1))).map((i) => `${i.pk} ${i.sk}`),
        [],
        "no item or event holds the stranger's number",
      );
      // Only one text auto-reply: the throttle reads the marker by the pseudonym.
      const texts = outOfSession.map((e) => e.detail as { channel: string; replied: boolean });
      assert.equal(texts.filter((d) => d.channel === "sms" && d.replied).length, 1);
    } finally {
      await p.stop();
    }
  });

  test("a closed session's items and events expire SESSION_RETENTION_DAYS (90) after it closed", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(2);
      const { session, proxyA } = await p.open(GUEST, HOST);
      await p.sandbox.phoneSends(GUEST, proxyA, "see you at noon");
      await p.waitFor(() => p.sentTo(HOST).length === 1, 20_000, "the text");
      await settle();
      const unstamped = (await p.scan()).filter(
        (i) =>
          (i.pk === `SESSION#${session.sessionId}` && i.kind !== "session") ||
          (i.kind === "session-ref" && i.sessionId === session.sessionId),
      );
      const calls = recordCalls(aws.doc);
      const closed = await p.sessions.closeSession(session.sessionId);
      const ttl = Math.floor(Date.parse(closed.closedAt ?? "") / 1000) + 90 * 86_400;
      // Stamps need no atomicity: each is one UpdateItem (1 WRU), not a transactional write (2 WRU). The close's
      // own events carry the ttl already, so only the items written before it are stamped.
      assert.equal(calls.filter((c) => c === "TransactWriteItems").length, 1, `only the close: ${calls}`);
      assert.equal(calls.filter((c) => c === "UpdateItem").length, unstamped.length, `${calls}`);
      const items = await p.scan();
      const ofSession = items.filter((i) => i.pk === `SESSION#${session.sessionId}`);
      assert.ok(ofSession.length >= 6, "the session, its events and its message log");
      assert.deepEqual(
        ofSession.filter((i) => i.ttl !== ttl).map((i) => `${i.sk} ${i.ttl}`),
        [],
        "every item of the session's partition expires with it",
      );
      const refs = items.filter((i) => i.kind === "session-ref" && i.sessionId === session.sessionId);
      assert.equal(refs.length, 2);
      assert.ok(refs.every((i) => i.ttl === ttl));
      const messages = items.filter((i) => i.kind === "message" && i.sessionId === session.sessionId);
      assert.ok(messages.length === 1 && messages.every((i) => typeof i.ttl === "number" && i.ttl <= ttl));
      const pairs = items.filter((i) => i.kind === "pair");
      assert.ok(pairs.length === 2 && pairs.every((i) => i.ttl === ttl), "pairs: after quarantine, with it");
      const check = await rebuildCheck(p.tableName);
      assert.equal(check.code, 0, check.output);
    } finally {
      await p.stop();
    }
  });

  test("a text accepted while the session was open and forwarded after its close expires with the session", async () => {
    const p = await startPipeline(aws, { statusCallbacks: false });
    try {
      await p.pool(2);
      const { session, proxyA } = await p.open(GUEST, HOST);
      await p.stopForwarding();
      await p.sandbox.phoneSends(GUEST, proxyA, "last words before the close");
      const closed = await p.sessions.closeSession(session.sessionId);
      const ttl = Math.floor(Date.parse(closed.closedAt ?? "") / 1000) + 90 * 86_400;
      p.startForwarding();
      await p.waitFor(() => p.sentTo(HOST).length === 1, 20_000, "the text, forwarded after the close");
      await settle();
      const ofSession = (await p.scan()).filter((i) => i.pk === `SESSION#${session.sessionId}`);
      assert.ok(ofSession.some((i) => i.kind === "event" && i.type === "MessageForwarded"));
      assert.deepEqual(
        ofSession.filter((i) => i.ttl !== ttl).map((i) => `${i.sk} ${i.type ?? i.kind} ${i.ttl}`),
        [],
        "the forward (with both numbers) does not outlive its session",
      );
    } finally {
      await p.stop();
    }
  });

  test("sessions the recycler expires together are retained like a closed one, in one stamping write", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(4);
      const opened = [
        await p.open(GUEST, HOST, 2),
        await p.open(GUEST, OTHER_HOST, 2),
        await p.open(STRANGER, HOST, 2),
      ];
      const [first] = opened;
      await p.sandbox.phoneSends(GUEST, first?.proxyA ?? "", "see you at noon");
      await p.waitFor(() => p.sentTo(HOST).length === 1, 20_000, "the text");
      await settle();
      const lastExpiry = Math.max(...opened.map(({ session }) => Date.parse(session.expiresAt)));
      await new Promise((r) => setTimeout(r, Math.max(0, lastExpiry - Date.now() + 50)));
      let rewrites = 0;
      const store = new Proxy(p.store, {
        get(target, name, receiver) {
          const value = Reflect.get(target, name, receiver);
          if (name === "rewrite") rewrites++;
          return typeof value === "function" ? value.bind(target) : value;
        },
      });
      const recycler = new RecyclerService({
        store,
        clock: { now: () => Date.now() },
        newId,
        quarantineSeconds: 60,
        poolLowHeadroom: 0,
        topUp: undefined,
        metrics: { poolHealth: () => {} },
      });
      const report = await recycler.run({ budgetMs: 10_000, batchSize: 10, reportHealth: false });
      assert.equal(report.expired, 3);
      assert.equal(rewrites, 1, "the three sessions' stamps went out together");
      const items = await p.scan();
      for (const { session } of opened) {
        const meta = items.find((i) => i.pk === `SESSION#${session.sessionId}` && i.kind === "session");
        const ttl = Math.floor(Date.parse(String(meta?.closedAt)) / 1000) + 90 * 86_400;
        assert.equal(meta?.ttl, ttl);
        const ofSession = items.filter(
          (i) =>
            i.pk === `SESSION#${session.sessionId}` ||
            (i.kind === "session-ref" && i.sessionId === session.sessionId),
        );
        assert.ok(ofSession.length >= 5, "the session, its events and its references");
        assert.deepEqual(
          ofSession.filter((i) => i.ttl !== ttl).map((i) => `${i.sk} ${i.ttl}`),
          [],
          "every item of the session expires with it",
        );
      }
      const message = items.find((i) => i.kind === "message" && i.sessionId === first?.session.sessionId);
      assert.ok(
        typeof message?.ttl === "number" &&
          message.ttl <=
            Number(
              items.find((i) => i.pk === `SESSION#${first?.session.sessionId}` && i.kind === "session")?.ttl,
            ),
      );
      const check = await rebuildCheck(p.tableName);
      assert.equal(check.code, 0, check.output);
    } finally {
      await p.stop();
    }
  });
});
