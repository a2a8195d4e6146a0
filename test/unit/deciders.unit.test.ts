import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { MemoryStore } from "../../shared/adapters/memory-store.ts";
import { alreadyDone, handleCommand } from "../../shared/app/command.ts";
import type { PoolNumber } from "../../shared/domain/allocation.ts";
import { applyChange, type Change, guard, guardHolds } from "../../shared/domain/changes.ts";
import { detectKeyword } from "../../shared/domain/consent.ts";
import { contactKinds, contactPolicy, findContacts, redactContacts } from "../../shared/domain/contacts.ts";
import { ConcurrentWriteError, NumberNotFoundError } from "../../shared/domain/errors.ts";
import type { DomainEvent } from "../../shared/domain/events.ts";
import { decideMessage, type MessageCommand, type MessageRecord } from "../../shared/domain/message.ts";
import type { E164 } from "../../shared/domain/phone.ts";
import { decideNumber, decidePoolHealth } from "../../shared/domain/pool.ts";
import { itemKeys, projectEvents } from "../../shared/domain/projection.ts";
import { messageLogKeys } from "../../shared/domain/projection-messages.ts";
import { decide, type RouteDecision } from "../../shared/domain/session.ts";
import { autoReplyDue, type Marker, parseRateLimit, windowStart } from "../../shared/domain/traffic.ts";

const T0 = Date.parse("2026-01-01T00:00:00.000Z");
const n = (s: string) => s as E164;
const A = n("+12025550101");
const B = n("+12025550102");
const P1 = n("+14155550101");
const P2 = n("+14155550102");

function ctx(now = T0) {
  let i = 0;
  return { now, newId: () => `evt_${String(++i).padStart(4, "0")}`, quarantineSeconds: 60 };
}

const types = (events: DomainEvent[]) => events.map((e) => e.type);
const inSession: RouteDecision = {
  kind: "in-session",
  sessionId: "ses_1",
  recipient: B,
  recipientProxy: P2,
  contacts: undefined,
};
const outOfSession: RouteDecision = { kind: "out-of-session", sessionId: null, reason: "no-session" };

const message = (state: MessageRecord["state"], patch: Partial<MessageRecord> = {}): MessageRecord => ({
  messageId: "SM1",
  sessionId: "ses_1",
  state,
  source: "sms",
  from: A,
  recipient: B,
  recipientProxy: P2,
  body: "hi",
  mediaUrls: [],
  receivedAt: T0,
  claimedAt: null,
  twilioSid: null,
  ...patch,
});

const sms = (route: RouteDecision, optOutType?: string, body = "hi"): MessageCommand => ({
  type: "ReceiveSms",
  messageId: "SM1",
  from: A,
  to: P1,
  route,
  bodyLength: body.length,
  numMedia: 0,
  keyword: detectKeyword(body, optOutType),
  replying: true,
  rateLimited: false,
  contacts: { found: [], policy: "allow" },
});

describe("message decider", () => {
  test("a text in session is received for the counterpart, from the counterpart's proxy", () => {
    const [event] = decideMessage(sms(inSession), null, ctx());
    assert.equal(event?.type, "MessageReceived");
    assert.deepEqual(event?.type === "MessageReceived" && [event.detail.to, event.detail.proxyNumber], [
      B,
      P2,
    ]);
  });
  test("out of session: recorded with whether we reply, nothing to forward", () => {
    const events = decideMessage(sms(outOfSession), null, ctx());
    assert.deepEqual(types(events), ["OutOfSessionMessage"]);
    assert.equal(events[0]?.type === "OutOfSessionMessage" && events[0].detail.replied, true);
  });
  test("a keyword is never relayed, in or out of session; opt-out and opt-in change consent pool-wide", () => {
    for (const route of [inSession, outOfSession]) {
      assert.deepEqual(types(decideMessage(sms(route, undefined, "STOP"), null, ctx())), [
        "MessageBlocked",
        "ParticipantOptedOut",
      ]);
      assert.deepEqual(types(decideMessage(sms(route, undefined, " start! "), null, ctx())), [
        "MessageBlocked",
        "ParticipantOptedIn",
      ]);
      assert.deepEqual(types(decideMessage(sms(route, undefined, "help"), null, ctx())), ["MessageBlocked"]);
    }
    const [blocked, optedOut] = decideMessage(sms(inSession, "STOP", "anything"), null, ctx());
    assert.equal(blocked?.type === "MessageBlocked" && blocked.detail.reason, "keyword");
    assert.equal(blocked?.sessionId, "ses_1");
    assert.deepEqual(optedOut?.type === "ParticipantOptedOut" && optedOut.detail, {
      phoneNumber: A,
      proxyNumber: P1,
      keyword: "STOP",
    });
    assert.deepEqual(types(decideMessage(sms(inSession, "OTHER"), null, ctx())), ["MessageReceived"]);
  });
  test("keywords: the whole message, any case, trailing punctuation ignored; sentences are not keywords", () => {
    for (const word of [
      "STOP",
      "stopall",
      "Unsubscribe",
      "cancel.",
      "END!",
      "quit",
      "REVOKE",
      "optout",
      "  stop  ",
    ])
      assert.equal(detectKeyword(word)?.kind, "opt-out", word);
    for (const word of ["START", "yes", "Unstop"]) assert.equal(detectKeyword(word)?.kind, "opt-in", word);
    for (const word of ["HELP", "info?"]) assert.equal(detectKeyword(word)?.kind, "help", word);
    for (const text of [
      "Stop texting me at night",
      "yes please",
      "",
      "STOP STOP",
      "constructor",
      "__proto__",
    ])
      assert.equal(detectKeyword(text), undefined, text);
    assert.equal(detectKeyword("whatever", "stop")?.kind, "opt-out");
    assert.equal(detectKeyword("whatever", "START")?.kind, "opt-in");
    assert.equal(detectKeyword("whatever", "HELP")?.kind, "help");
    assert.equal(detectKeyword("whatever", "OTHER"), undefined);
  });
  test("keyword variants a phone produces are still keywords: fullwidth letters, any trailing punctuation, non-breaking spaces", () => {
    for (const word of [
      "\uFF33\uFF34\uFF2F\uFF30", // ＳＴＯＰ, a CJK keyboard in full-width mode
      "stop\uFF01", // STOP！
      "Stop\u3002", // Stop。
      "STOP\u201D", // STOP” (smart quotes)
      "stop -",
      "STOP*",
      "\u00A0STOP\u00A0", // non-breaking spaces around it
      "\u3000stop\u3000", // ideographic spaces
      "stop!!!?",
    ])
      assert.equal(detectKeyword(word)?.kind, "opt-out", JSON.stringify(word));
    assert.equal(detectKeyword("\uFF33\uFF34\uFF2F\uFF30")?.word, "STOP", "the keyword as matched, in ASCII");
    assert.equal(detectKeyword("\uFF28\uFF25\uFF2C\uFF30")?.kind, "help");
    for (const text of ["S.T.O.P", "-STOP", "STOP 2"]) assert.equal(detectKeyword(text), undefined, text);
  });
  test("a full rate-limit window holds an in-session text back; keywords and out-of-session are unaffected", () => {
    const limited = (route: RouteDecision, body?: string) =>
      types(
        decideMessage({ ...sms(route, undefined, body), rateLimited: true } as MessageCommand, null, ctx()),
      );
    const [blocked] = decideMessage({ ...sms(inSession), rateLimited: true } as MessageCommand, null, ctx());
    assert.equal(blocked?.type === "MessageBlocked" && blocked.detail.reason, "rate-limit");
    assert.deepEqual(limited(inSession, "STOP"), ["MessageBlocked", "ParticipantOptedOut"]);
    assert.deepEqual(limited(outOfSession), ["OutOfSessionMessage"]);
  });
  test("a message already stored is not received again", () => {
    assert.deepEqual(decideMessage(sms(inSession), message("received"), ctx()), []);
    const platform: MessageCommand = {
      type: "ReceivePlatform",
      messageId: "msg_1",
      sessionId: "ses_1",
      to: B,
      proxyNumber: P2,
      bodyLength: 3,
    };
    assert.deepEqual(types(decideMessage(platform, null, ctx())), ["MessageReceived"]);
    assert.deepEqual(decideMessage(platform, message("received"), ctx()), []);
  });
  test("a call in session is bridged to the counterpart with their proxy as caller id; else refused", () => {
    const call = { type: "ReceiveCall" as const, callSid: "CA1", from: A, to: P1 };
    const [bridged] = decideMessage({ ...call, route: inSession }, null, ctx());
    assert.deepEqual(bridged?.type === "CallBridged" && [bridged.detail.to, bridged.detail.callerId], [
      B,
      P2,
    ]);
    const replied = (callerIsOurs?: boolean) =>
      decideMessage({ ...call, route: outOfSession, callerIsOurs }, null, ctx()).map(
        (e) => e.type === "OutOfSessionMessage" && e.detail.replied,
      );
    assert.deepEqual(replied(), [true]);
    // A number of ours is refused without a word.
    assert.deepEqual(replied(true), [false]);
  });
  test("a send is recorded only while the message is open (received or claimed)", () => {
    const send: MessageCommand = { type: "RecordSend", twilioSid: "SMx" };
    assert.deepEqual(types(decideMessage(send, message("sending"), ctx())), ["MessageForwarded"]);
    assert.deepEqual(types(decideMessage(send, message("received"), ctx())), ["MessageForwarded"]);
    for (const state of ["forwarded", "failed", "blocked", "out-of-session"] as const)
      assert.deepEqual(decideMessage(send, message(state), ctx()), []);
    assert.deepEqual(decideMessage(send, null, ctx()), []);
    assert.deepEqual(decideMessage(send, message("sending", { recipient: null }), ctx()), []);
  });
  test("a rejected send fails the message; a closed message is left alone", () => {
    const fail: MessageCommand = { type: "RecordSendFailure", errorCode: "21211", reason: "rejected" };
    assert.deepEqual(types(decideMessage(fail, message("sending"), ctx())), ["MessageFailed"]);
    assert.deepEqual(decideMessage(fail, message("forwarded"), ctx()), []);
    assert.deepEqual(decideMessage(fail, null, ctx()), []);
  });
  test("blocking applies to open messages only", () => {
    const block: MessageCommand = { type: "Block", reason: "session-ended" };
    assert.deepEqual(types(decideMessage(block, message("received"), ctx())), ["MessageBlocked"]);
    const logged = projectEvents(decideMessage(block, message("received"), ctx()), { retentionSeconds: 1 });
    assert.ok(
      logged.some((c) => c.type === "update" && c.key.pk === "SESSION#ses_1" && c.set?.status === "blocked"),
      "the session's message log shows it blocked",
    );
    assert.deepEqual(decideMessage(block, message("forwarded"), ctx()), []);
    assert.deepEqual(decideMessage(block, null, ctx()), []);
  });
  test("status callbacks: outcomes, and a callback for a claimed message completes the forward first", () => {
    const status = (s: string): MessageCommand => ({
      type: "RecordStatus",
      twilioSid: "SMx",
      status: s,
      errorCode: s === "failed" ? "30003" : null,
    });
    assert.deepEqual(types(decideMessage(status("delivered"), message("forwarded"), ctx())), [
      "MessageDelivered",
    ]);
    assert.deepEqual(types(decideMessage(status("read"), message("forwarded"), ctx())), ["MessageDelivered"]);
    assert.deepEqual(types(decideMessage(status("undelivered"), message("forwarded"), ctx())), [
      "MessageFailed",
    ]);
    assert.deepEqual(types(decideMessage(status("failed"), message("sending"), ctx())), [
      "MessageForwarded",
      "MessageFailed",
    ]);
    assert.deepEqual(types(decideMessage(status("sent"), message("sending"), ctx())), ["MessageForwarded"]);
    assert.deepEqual(decideMessage(status("sent"), message("forwarded"), ctx()), []);
    assert.deepEqual(decideMessage(status("delivered"), null, ctx()), []);
    assert.deepEqual(
      decideMessage(status("delivered"), message("forwarded", { sessionId: null }), ctx()),
      [],
    );
  });
});

const number = (status: PoolNumber["status"], load: number): PoolNumber => ({
  phoneNumber: P1,
  status,
  callingCode: "1",
  load,
});

describe("number decider", () => {
  test("adding: a new or draining number becomes active; an active one is left alone", () => {
    const add = { type: "AddNumber" as const, phoneNumber: P1 };
    assert.deepEqual(types(decideNumber(add, null, ctx())), ["NumberAdded"]);
    assert.deepEqual(types(decideNumber(add, number("draining", 2), ctx())), ["NumberAdded"]);
    assert.deepEqual(decideNumber(add, number("active", 0), ctx()), []);
  });
  test("retiring: unheld leaves at once, held drains, draining waits, unknown is an error", () => {
    const retire = { type: "RetireNumber" as const, phoneNumber: P1 };
    assert.deepEqual(types(decideNumber(retire, number("active", 0), ctx())), ["NumberRetired"]);
    assert.deepEqual(types(decideNumber(retire, number("draining", 0), ctx())), ["NumberRetired"]);
    assert.deepEqual(types(decideNumber(retire, number("active", 3), ctx())), ["NumberDraining"]);
    assert.deepEqual(decideNumber(retire, number("draining", 3), ctx()), []);
    assert.throws(() => decideNumber(retire, null, ctx()), NumberNotFoundError);
  });
  test("the recycler's sweep retires only drained numbers", () => {
    const sweep = { type: "RetireIfDrained" as const, phoneNumber: P1 };
    assert.deepEqual(types(decideNumber(sweep, number("draining", 0), ctx())), ["NumberRetired"]);
    assert.deepEqual(decideNumber(sweep, number("draining", 1), ctx()), []);
    assert.deepEqual(decideNumber(sweep, number("active", 0), ctx()), []);
    assert.deepEqual(decideNumber(sweep, null, ctx()), []);
  });
  test("pool health: PoolLow below the threshold, in the busiest participant's country", () => {
    const view = { activeNumbers: 4, openPairs: 6, busiestParticipantSessions: 3, lowHeadroom: 2 };
    const low = decidePoolHealth({ ...view, busiestParticipant: A }, ctx());
    assert.deepEqual(types(low), ["PoolHealthReported", "PoolLow"]);
    assert.equal(low[1]?.type === "PoolLow" && low[1].detail.callingCode, "1");
    const unknown = decidePoolHealth({ ...view, busiestParticipant: undefined }, ctx());
    assert.equal(unknown[1]?.type === "PoolLow" && unknown[1].detail.callingCode, null);
    assert.deepEqual(types(decidePoolHealth({ ...view, busiestParticipant: A, lowHeadroom: 1 }, ctx())), [
      "PoolHealthReported",
    ]);
    const empty = decidePoolHealth({ ...view, activeNumbers: 0, busiestParticipant: A }, ctx());
    assert.equal(empty[0]?.type === "PoolHealthReported" && empty[0].detail.pairsPerNumber, 0);
  });
});

const openEvents = (expiresIn = 60) =>
  decide(
    {
      type: "OpenSession",
      sessionId: "ses_1",
      mode: "sms",
      ttlSeconds: expiresIn,
      ttlMode: "sliding",
      participants: [
        { phoneNumber: A, proxyNumber: P1, id: null, name: null },
        { phoneNumber: B, proxyNumber: P2, id: null, name: null },
      ],
    },
    null,
    ctx(),
  );

/** given(events appended in order).then(the store's items) — the projection, through the in-memory store. */
async function given(...appends: DomainEvent[][]) {
  const store = new MemoryStore({ retentionSeconds: 3600 });
  for (const events of appends) await store.append(events);
  return store;
}

const numberAdded = (phone: E164) => decideNumber({ type: "AddNumber", phoneNumber: phone }, null, ctx());

describe("projection (given events, then items)", () => {
  test("a sliding extension decided before a PATCH changed the ttl loses: the PATCH's expiry stands", async () => {
    const store = await given(numberAdded(P1), numberAdded(P2), openEvents(60));
    const stale = await store.getSession("ses_1");
    const patched = decide({ type: "UpdateSession", ttlSeconds: 20 }, stale ?? null, ctx(T0 + 10_000));
    await store.append(patched);
    const extension = decide({ type: "RecordActivity" }, stale ?? null, ctx(T0 + 20_000));
    assert.deepEqual(types(extension), ["SessionExtended"]);
    await assert.rejects(store.append(extension), ConcurrentWriteError);
    assert.equal((await store.getSession("ses_1"))?.expiresAt, new Date(T0 + 30_000).toISOString());
    assert.equal(store.get(itemKeys.pair(A, P1))?.expiresAt, T0 + 30_000);
  });
  test("SessionOpened: the session, both routing pairs held, each proxy's load counted", async () => {
    const store = await given(numberAdded(P1), numberAdded(P2), openEvents());
    assert.equal((await store.getSession("ses_1"))?.status, "open");
    const pair = store.get(itemKeys.pair(A, P1));
    assert.equal(pair?.state, "held");
    assert.equal(pair?.counterpartProxy, P2);
    assert.deepEqual(
      (await store.listPool()).map((p) => p.load),
      [1, 1],
    );
    assert.deepEqual(
      (await store.sessionEvents("ses_1")).map((e) => e.type),
      ["SessionOpened"],
    );
  });

  test("a pair held by an open session cannot be taken twice: a typed pair conflict, nothing written", async () => {
    const store = await given(numberAdded(P1), numberAdded(P2), openEvents());
    const again = openEvents().map((e) => (e.type === "SessionOpened" ? { ...e, sessionId: "ses_2" } : e));
    const error = await store.append(again).catch((e: unknown) => e);
    assert.ok(error instanceof ConcurrentWriteError);
    assert.deepEqual(
      error.conflicts.map((c) => c.kind),
      ["pair", "pair"],
    );
    assert.equal(await store.getSession("ses_2"), undefined);
  });

  test("a new pair needs an active number; a draining number keeps its pairs", async () => {
    const store = await given(numberAdded(P1), numberAdded(P2));
    await store.append(decideNumber({ type: "RetireNumber", phoneNumber: P1 }, number("active", 1), ctx()));
    const error = await store.append(openEvents()).catch((e: unknown) => e);
    assert.ok(error instanceof ConcurrentWriteError);
    assert.deepEqual(
      error.conflicts.map((c) => c.kind),
      ["number"],
    );
  });

  test("closing releases both pairs into quarantine and gives the load back", async () => {
    const opened = openEvents();
    const store = await given(numberAdded(P1), numberAdded(P2), opened);
    const session = await store.getSession("ses_1");
    await store.append(decide({ type: "CloseSession" }, session ?? null, ctx(T0 + 1000)));
    assert.equal((await store.getSession("ses_1"))?.status, "closed");
    const pair = store.get(itemKeys.pair(A, P1));
    assert.equal(pair?.state, "released");
    assert.equal(pair?.sessionId, undefined);
    assert.equal(pair?.quarantineUntil, T0 + 1000 + 60_000);
    assert.deepEqual(
      (await store.listPool()).map((p) => p.load),
      [0, 0],
    );
    // A second close is refused by the guard.
    await assert.rejects(store.append(decide({ type: "CloseSession" }, session ?? null, ctx(T0 + 2000))));
  });

  test("a close's own events carry the session's retention ttl: nothing stamps them again", async () => {
    const opened = openEvents();
    const store = await given(numberAdded(P1), numberAdded(P2), opened);
    const session = await store.getSession("ses_1");
    for (const [command, at] of [
      [{ type: "CloseSession" }, T0 + 5000],
      [{ type: "ExpireSession" }, T0 + 61_000],
    ] as const) {
      const events = decide(command, session ?? null, ctx(at));
      const changes = projectEvents(events, { retentionSeconds: 3600, sessionRetentionSeconds: 86_400 });
      const meta = changes.find((c) => c.type === "update" && c.key.sk === "META");
      const ttl = meta?.type === "update" ? meta.set?.ttl : undefined;
      assert.equal(ttl, Math.floor(at / 1000) + 86_400);
      const eventItems = changes.filter((c) => c.type === "put" && c.item.kind === "event");
      assert.equal(eventItems.length, events.length, "the close and both PairReleased");
      assert.deepEqual(
        eventItems.map((c) => (c.type === "put" ? c.item.ttl : undefined)),
        events.map(() => ttl),
      );
    }
    // Events of any other transaction keep no ttl of their own (their session's close stamps them).
    const others = projectEvents(opened, { retentionSeconds: 3600 });
    assert.ok(others.every((c) => c.type !== "put" || c.item.kind !== "event" || c.item.ttl === undefined));
    // Unless their session closed already (a text forwarded after the close): they expire with it.
    const closedAt = new Date(T0 + 5000).toISOString();
    const late = projectEvents(decideMessage(sms(inSession), null, ctx(T0 + 9000)), {
      retentionSeconds: 3600,
      sessionRetentionSeconds: 86_400,
      closedSession: { sessionId: "ses_1", closedAt },
    });
    assert.deepEqual(
      late.flatMap((c) => (c.type === "put" && c.item.kind === "event" ? [c.item.ttl] : [])),
      [Math.floor((T0 + 5000) / 1000) + 86_400],
    );
  });

  test("an expiry decided on an old expiresAt loses to a sliding extension made since", async () => {
    const store = await given(numberAdded(P1), numberAdded(P2), openEvents(60));
    const stale = await store.getSession("ses_1");
    await store.append(decide({ type: "RecordActivity" }, stale ?? null, ctx(T0 + 30_000)));
    const expiry = decide({ type: "ExpireSession" }, stale ?? null, ctx(T0 + 61_000));
    assert.deepEqual(types(expiry), ["SessionExpired", "PairReleased", "PairReleased"]);
    const error = await store.append(expiry).catch((e: unknown) => e);
    assert.ok(error instanceof ConcurrentWriteError);
    assert.equal((await store.getSession("ses_1"))?.status, "open");
  });

  test("messages: received with its body, forwarded once, outcomes; blocked and out-of-session items", async () => {
    const received = decideMessage(sms(inSession), null, ctx());
    const store = new MemoryStore({ retentionSeconds: 3600 });
    await store.append(received, { content: new Map([["SM1", { body: "hi", mediaUrls: [] }]]) });
    assert.equal((await store.getMessage("SM1"))?.body, "hi");
    const stored = (await store.getMessage("SM1")) ?? null;
    const forwarded = decideMessage({ type: "RecordSend", twilioSid: "SMx" }, stored, ctx());
    await store.append(forwarded);
    await assert.rejects(store.append(forwarded.map((e) => ({ ...e, id: "evt_again" }))));
    const delivered = decideMessage(
      { type: "RecordStatus", twilioSid: "SMx", status: "delivered", errorCode: null },
      (await store.getMessage("SM1")) ?? null,
      ctx(),
    );
    await store.append(delivered);
    // The same delivery status twice is one change.
    await assert.rejects(store.append(delivered.map((e) => ({ ...e, id: "evt_dup" }))));
    // The delivery status lives on the message log entry only: the transient message item is not rewritten.
    assert.equal(store.get(messageLogKeys.entry("ses_1", "SM1"))?.status, "delivered");
    assert.equal(store.get(itemKeys.message("SM1"))?.deliveryStatus, undefined);
    // The first outcome is final: a later failure does not contradict it; "read" may follow "delivered".
    const status = async (s: string, id: string) =>
      decideMessage(
        { type: "RecordStatus", twilioSid: "SMx", status: s, errorCode: "30003" },
        (await store.getMessage("SM1")) ?? null,
        ctx(),
      ).map((e) => ({ ...e, id }));
    await assert.rejects(store.append(await status("undelivered", "evt_late")), ConcurrentWriteError);
    await store.append(await status("read", "evt_read"));
    assert.equal(store.get(messageLogKeys.entry("ses_1", "SM1"))?.status, "read");
    await assert.rejects(store.append(await status("read", "evt_read_again")), ConcurrentWriteError);
    assert.deepEqual(
      projectEvents(delivered, { retentionSeconds: 3600 }).map((c) => c.key.pk),
      ["SESSION#ses_1", "SESSION#ses_1"],
      "MessageDelivered writes its event and the log entry, nothing else",
    );
    const late = decideMessage(sms(outOfSession), null, ctx()).map((e) => ({ ...e, id: "evt_oos" }));
    await assert.rejects(store.append(late), ConcurrentWriteError);
    assert.equal((await store.getMessage("SM1"))?.state, "forwarded");
    await store.append(
      decideMessage({ ...sms(outOfSession), messageId: "SM2" } as MessageCommand, null, ctx()).map((e) => ({
        ...e,
        id: "evt_oos2",
      })),
    );
    assert.equal((await store.getMessage("SM2"))?.state, "out-of-session");
  });

  test("a call is stored once per CallSid; health reports touch no projection", async () => {
    const call = decideMessage(
      { type: "ReceiveCall", callSid: "CA1", from: A, to: P1, route: inSession },
      null,
      ctx(),
    );
    const store = await given(call);
    assert.equal(store.get(itemKeys.call("CA1"))?.sessionId, "ses_1");
    await assert.rejects(store.append(call.map((e) => ({ ...e, id: "evt_x" }))));
    const health = decidePoolHealth(
      {
        activeNumbers: 0,
        openPairs: 0,
        busiestParticipantSessions: 0,
        busiestParticipant: undefined,
        lowHeadroom: 1,
      },
      ctx(),
    );
    const changes = projectEvents(health, { retentionSeconds: 1 });
    assert.deepEqual(
      changes.map((c) => c.type),
      ["put", "put"],
      "only the two event items",
    );
  });

  test("an idempotency record rides in the same append; a second writer of the key conflicts", async () => {
    const store = new MemoryStore();
    const idempotency = { key: "k", requestHash: "h", result: "ses_1" };
    await store.append(numberAdded(P1), { idempotency });
    assert.deepEqual(await store.getIdempotency("k"), { requestHash: "h", result: "ses_1" });
    const error = await store.append(numberAdded(P2), { idempotency }).catch((e: unknown) => e);
    assert.ok(error instanceof ConcurrentWriteError);
    assert.deepEqual(error.conflicts, [{ kind: "idempotency", key: "k" }]);
    assert.equal(await store.getIdempotency("missing"), undefined);
  });

  test("a transaction never changes one item twice, as DynamoDB refuses it", async () => {
    const store = new MemoryStore();
    const twice = [...numberAdded(P1), ...numberAdded(P1).map((e) => ({ ...e, id: "evt_b" }))];
    await assert.rejects(store.append(twice), /twice/);
  });

  test("guards mean what DynamoDB's conditions mean", () => {
    const item = { pk: "x", sk: "y", state: "held", n: 0, nothing: null };
    assert.equal(guardHolds(guard.absent, undefined), true);
    assert.equal(guardHolds(guard.present, item), true);
    assert.equal(guardHolds(guard.missing("other"), item), true);
    assert.equal(guardHolds(guard.missing("nothing"), item), false, "a null attribute exists");
    assert.equal(guardHolds(guard.eq("state", "held"), item), true);
    assert.equal(guardHolds(guard.eq("state", "held"), undefined), false);
    assert.equal(guardHolds(guard.ne("state", "held"), item), false);
    assert.equal(guardHolds(guard.ne("other", "held"), item), false, "a missing attribute compares false");
    assert.equal(guardHolds(guard.in("n", [1, 0]), item), true);
    assert.equal(guardHolds(guard.in("n", [1]), undefined), false);
    assert.equal(guardHolds(guard.and(guard.present, guard.eq("n", 1)), item), false);
    assert.equal(guardHolds(guard.or(guard.absent, guard.eq("n", 0)), item), true);
  });

  test("updates set, set-if-absent, add and remove; puts replace; deletes remove", () => {
    const key = { pk: "p", sk: "s" };
    const update: Change = {
      type: "update",
      key,
      set: { a: 1 },
      setIfAbsent: { b: 2, a: 9 },
      add: { c: 3 },
      remove: ["d"],
      conflict: { kind: "number", key: "p" },
    };
    assert.deepEqual(applyChange(update, { ...key, d: 1, c: 1 }), { ...key, a: 1, b: 2, c: 4 });
    assert.deepEqual(applyChange(update, undefined), { ...key, a: 1, b: 2, c: 3 });
    assert.deepEqual(
      applyChange({ type: "put", key, item: { z: 1 }, conflict: update.conflict }, { ...key, a: 1 }),
      {
        ...key,
        z: 1,
      },
    );
    assert.equal(applyChange({ type: "delete", key, conflict: update.conflict }, { ...key }), undefined);
  });
});

describe("command handling", () => {
  const deps = (store: MemoryStore) => ({
    store,
    clock: { now: () => T0 },
    newId: () => "evt_x",
    quarantineSeconds: 60,
  });

  test("a lost race re-reads and decides again; settled conflicts end the command", async () => {
    const store = new MemoryStore();
    await store.append(numberAdded(P1));
    let loads = 0;
    const result = await handleCommand(deps(store), {
      load: async () => ++loads,
      decide: (_, c) => numberAdded(P1).map((e) => ({ ...e, id: `${e.id}-${c.now}-${loads}` })),
      settles: alreadyDone,
    });
    assert.equal(result.outcome, "settled");
    assert.equal(loads, 1);
    const retried = handleCommand(deps(store), {
      load: async () => ++loads,
      decide: (_, c) => numberAdded(P1).map((e) => ({ ...e, id: `${e.id}-${c.now}-${loads}` })),
      attempts: 3,
      backoffMs: () => 0,
    });
    await assert.rejects(retried, ConcurrentWriteError);
    assert.equal(loads, 4, "three attempts, each with a fresh read");
  });

  test("nothing to decide appends nothing; other errors pass through", async () => {
    const store = new MemoryStore();
    const none = await handleCommand(deps(store), { load: async () => 0, decide: () => [] });
    assert.equal(none.outcome, "nothing-to-do");
    assert.equal(store.appends, 0);
    await assert.rejects(
      handleCommand(deps(store), {
        load: async () => {
          throw new Error("read failed");
        },
        decide: () => [],
      }),
      /read failed/,
    );
    assert.equal(alreadyDone([{ kind: "pair", key: "x", contention: true }]), false);
  });
});

describe("contact-info policy", () => {
  const kinds = (text: string, country = "US") => contactKinds(findContacts(text, country));
  test("phone numbers in common written forms and their disguises are found; ordinary numbers are not", () => {
    for (const text of [
      "call me at (415) 555-0100",
      "my cell is 415.555.0100",
      "+44 20 7946 0958 is my office",
      "text 4 1 5 5 5 5 0 1 0 0",
      "four one five five five five zero one zero zero",
      "it's 415-555-0100!",
    ])
      assert.deepEqual(kinds(text), ["phone"], text);
    for (const text of [
      "see you at 3",
      "the apartment is #1204",
      "check-in 2026-05-01, 2 guests",
      "code 1234",
    ])
      assert.deepEqual(kinds(text), [], text);
  });
  test("e-mail addresses and their disguises are found", () => {
    for (const text of [
      "mail john.doe@example.com",
      "john at example dot com",
      "john [at] example [dot] com",
      "john(at)example.com",
    ])
      assert.deepEqual(kinds(text), ["email"], text);
    assert.deepEqual(kinds("a@b.co or 415 555 0100"), ["phone", "email"]);
  });
  test("redaction replaces each contact and keeps the rest of the text", () => {
    const text = "Hi! Reach me on 415-555-0100 or jane@example.org, thanks";
    assert.equal(
      redactContacts(text, findContacts(text, "US")),
      "Hi! Reach me on [removed] or [removed], thanks",
    );
  });
  test("full-width characters disguise nothing: a full-width keyboard's digits and at-sign are found, and redacted in place", () => {
    assert.deepEqual(kinds("mail jo\uFF20example.com"), ["email"], "jo＠example.com");
    assert.deepEqual(kinds("text \uFF14 \uFF11 \uFF15 5 5 5 0 1 0 0"), ["phone"], "４ １ ５ 5 5 5 0 1 0 0");
    const text = "\u2026 reach me: jo\uFF20example.com \u3002 \uFF14\uFF11\uFF15-555-0100 \u2026";
    assert.equal(
      redactContacts(text, findContacts(text, "US")),
      "\u2026 reach me: [removed] \u3002 [removed] \u2026",
    );
  });
  test("the session's policy overrides the global one", () => {
    assert.equal(contactPolicy(undefined, "off"), "allow");
    assert.equal(contactPolicy(undefined, "redact-contacts"), "redact");
    assert.equal(contactPolicy(undefined, "block-contacts"), "block");
    assert.equal(contactPolicy("allow", "block-contacts"), "allow");
  });
  test("decisions: block records which kinds and forwards nothing; redact records what was removed", () => {
    const withContacts = (policy: "allow" | "redact" | "block") =>
      decideMessage(
        { ...sms(inSession), contacts: { found: ["phone"], policy } } as MessageCommand,
        null,
        ctx(),
      )[0];
    const blocked = withContacts("block");
    assert.deepEqual(blocked?.type === "MessageBlocked" && [blocked.detail.reason, blocked.detail.contacts], [
      "content",
      ["phone"],
    ]);
    const redacted = withContacts("redact");
    assert.deepEqual(redacted?.type === "MessageReceived" && redacted.detail.removed, ["phone"]);
    const allowed = withContacts("allow");
    assert.equal(allowed?.type === "MessageReceived" && allowed.detail.removed, undefined);
  });
});

describe("traffic policies and the send claim (guards, through the in-memory store)", () => {
  test("SENDER_RATE_LIMIT parses count/seconds or off; anything else is refused", () => {
    assert.deepEqual(parseRateLimit("30/60"), { count: 30, seconds: 60 });
    assert.deepEqual(parseRateLimit(" 5 / 1 "), { count: 5, seconds: 1 });
    assert.equal(parseRateLimit("OFF"), "off");
    for (const bad of ["0/60", "30/0", "30", "thirty/60", "-1/60", ""])
      assert.equal(parseRateLimit(bad), undefined, bad);
  });
  test("windows are fixed; an auto-reply is due once per interval", () => {
    const limit = { count: 2, seconds: 60 };
    assert.equal(windowStart(T0 + 59_999, limit), T0);
    assert.equal(windowStart(T0 + 60_000, limit), T0 + 60_000);
    assert.equal(autoReplyDue(undefined, T0, 60), true);
    assert.equal(autoReplyDue(T0 - 60_000, T0, 60), true);
    assert.equal(autoReplyDue(T0 - 59_999, T0, 60), false);
  });
  test("markers: a MessageSid once, a window's count never over the limit, one notice, one reply per interval", async () => {
    const store = new MemoryStore();
    const limit = { count: 2, seconds: 60 };
    const at = T0;
    const append = (marker: Marker, id: string) =>
      store.append(
        numberAdded(n(`+1415555${id}`)).map((e) => ({ ...e, id: `evt_${id}` })),
        { markers: [marker] },
      );
    await append({ kind: "replay", messageSid: "SM1", at, windowDays: 30 }, "0001");
    await assert.rejects(
      append({ kind: "replay", messageSid: "SM1", at, windowDays: 30 }, "0002"),
      ConcurrentWriteError,
    );
    await append({ kind: "sender-count", sender: A, at, limit }, "0003");
    await append({ kind: "sender-count", sender: A, at, limit }, "0004");
    const over = await append({ kind: "sender-count", sender: A, at, limit }, "0005").catch(
      (e: unknown) => e,
    );
    assert.ok(over instanceof ConcurrentWriteError);
    assert.deepEqual(over.conflicts[0]?.kind, "sender-count");
    await append({ kind: "sender-notice", sender: A, at, limit }, "0006");
    await assert.rejects(
      append({ kind: "sender-notice", sender: A, at, limit }, "0007"),
      ConcurrentWriteError,
    );
    // The next window starts afresh.
    await append({ kind: "sender-count", sender: A, at: at + 60_000, limit }, "0008");
    await append({ kind: "auto-reply", proxy: P1, sender: A, at, intervalSeconds: 60 }, "0009");
    assert.equal(await store.lastAutoReply(P1, A), at);
    await assert.rejects(
      append({ kind: "auto-reply", proxy: P1, sender: A, at: at + 1000, intervalSeconds: 60 }, "0010"),
      ConcurrentWriteError,
    );
    await append({ kind: "auto-reply", proxy: P1, sender: A, at: at + 60_000, intervalSeconds: 60 }, "0011");
  });
  test("the send claim: received is claimed once, a stale claim is taken over, a done message is left alone", async () => {
    const store = new MemoryStore();
    await store.append(decideMessage(sms(inSession), null, ctx()));
    assert.equal(await store.claimSend("SM1", T0, T0 - 1000), "claimed");
    assert.equal(await store.claimSend("SM1", T0 + 10, T0 - 1000), "busy");
    assert.equal(await store.claimSend("SM1", T0 + 5000, T0 + 1), "stale-claim");
    await store.releaseClaim("SM1", T0);
    assert.equal((await store.getMessage("SM1"))?.state, "sending", "only the current claim may be released");
    await store.releaseClaim("SM1", T0 + 5000);
    assert.equal((await store.getMessage("SM1"))?.state, "received");
    await store.append(
      decideMessage({ type: "RecordSend", twilioSid: "SMx" }, (await store.getMessage("SM1")) ?? null, ctx()),
    );
    assert.equal(await store.claimSend("SM1", T0 + 9000, T0 + 8000), "done");
    assert.equal(await store.claimSend("SM404", T0, T0), "done");
  });
  test("consent is a projection: the last keyword wins, pool-wide", async () => {
    const store = new MemoryStore();
    const keywordSms = (body: string, id: string) =>
      decideMessage(
        { ...sms(outOfSession, undefined, body), messageId: id } as MessageCommand,
        null,
        ctx(),
      ).map((e) => ({ ...e, id: `${e.id}-${id}` }));
    await store.append(keywordSms("STOP", "SMa"));
    assert.equal((await store.getConsent(A))?.optedOut, true);
    await store.append(keywordSms("start", "SMb"));
    assert.equal((await store.getConsent(A))?.optedOut, false);
    assert.equal(await store.getConsent(B), undefined);
  });
});
