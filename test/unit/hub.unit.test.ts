import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Holding, PoolNumber } from "../../shared/domain/allocation.ts";
import { guardHolds } from "../../shared/domain/changes.ts";
import { PoolExhaustedError } from "../../shared/domain/errors.ts";
import type { DomainEvent, EventOf, SessionParticipant } from "../../shared/domain/events.ts";
import {
  allocateHub,
  chooseCapSlot,
  type HubThread,
  hubPrompt,
  needsHub,
  proxiesHeld,
  resolveHub,
  splitTag,
  tagCandidates,
  tagTaken,
  threadRoute,
  withTag,
} from "../../shared/domain/hub.ts";
import { decideMessage } from "../../shared/domain/message.ts";
import type { E164 } from "../../shared/domain/phone.ts";
import { itemKeys, projectEvents } from "../../shared/domain/projection.ts";
import { capSlotTaken, routingConflict, routingKey } from "../../shared/domain/projection-hub.ts";
import { decide, evolve, routeInbound } from "../../shared/domain/session.ts";

const T0 = Date.parse("2026-01-01T00:00:00.000Z");
const n = (s: string) => s as E164;
const HOST = n("+12025550101");
const GUEST = n("+12025550102");
const H = n("+14155550101");
const P2 = n("+14155550102");
const P3 = n("+14155550103");

function ctx(now = T0) {
  let i = 0;
  return { now, newId: () => `evt_${++i}`, quarantineSeconds: 60 };
}

const number = (phoneNumber: E164, status: PoolNumber["status"] = "active"): PoolNumber => ({
  phoneNumber,
  status,
  callingCode: "1",
  load: 0,
});

const thread = (patch: Partial<HubThread> = {}): HubThread => ({
  participantNumber: HOST,
  hubNumber: H,
  tag: "#K1",
  state: "held",
  sessionId: "ses_1",
  counterpartNumber: GUEST,
  counterpartProxy: P2,
  counterpartTag: null,
  counterpartName: "Kate",
  mode: "sms",
  expiresAt: T0 + 3_600_000,
  quarantineUntil: null,
  ...patch,
});

const held = (proxyNumber: E164): Holding => ({
  proxyNumber,
  state: "held",
  sessionId: "s",
  counterpartNumber: GUEST,
  quarantineUntil: null,
});

describe("thread tags", () => {
  test("a leading tag is split off, with or without brackets, any case; anything else is text", () => {
    assert.deepEqual(splitTag("#K7 see you at 3"), { tag: "#K7", rest: "see you at 3" });
    assert.deepEqual(splitTag("  [#k7] see you"), { tag: "#K7", rest: "see you" });
    assert.deepEqual(splitTag("#k12: ok"), { tag: "#K12", rest: "ok" });
    assert.deepEqual(splitTag("#K7"), { tag: "#K7", rest: "" });
    assert.deepEqual(splitTag("#K7STOP"), { tag: undefined, rest: "#K7STOP" });
    assert.deepEqual(splitTag("hello #K7"), { tag: undefined, rest: "hello #K7" });
    assert.equal(withTag("#K7", "hi"), "[#K7] hi");
  });

  test("the tag never pushes a text past Twilio's 1600 characters: it is shortened with …, never inside an emoji", () => {
    assert.equal(withTag("#K7", "a".repeat(1594)), `[#K7] ${"a".repeat(1594)}`);
    const cut = withTag("#K7", "a".repeat(1600));
    assert.equal(cut.length, 1600);
    assert.equal(cut, `[#K7] ${"a".repeat(1593)}…`);
    const emoji = withTag("#K7", `${"a".repeat(1592)}😀bbbbbb`);
    assert.equal(emoji, `[#K7] ${"a".repeat(1592)}…`, "the emoji is dropped whole");
  });

  test("tags start with the counterpart's initial, skip I and O, and run through two digits", () => {
    assert.equal(tagCandidates("kate")[0], "#K1");
    assert.equal(tagCandidates(null)[0], "#A1");
    assert.equal(tagCandidates("  ")[0], "#A1");
    assert.equal(tagCandidates("Olga")[0], "#A1", "O looks like 0");
    assert.equal(tagCandidates("Kate")[9], "#A1");
    const all = tagCandidates("Kate");
    assert.equal(new Set(all).size, all.length);
    assert.ok(all.includes("#Z99") && !all.some((t) => /^#[IO]/.test(t)));
  });

  test("a tag is taken while held and through its quarantine", () => {
    assert.equal(tagTaken(thread(), T0), true);
    assert.equal(tagTaken(thread({ state: "released", quarantineUntil: T0 + 1 }), T0), true);
    assert.equal(tagTaken(thread({ state: "released", quarantineUntil: T0 }), T0), false);
    assert.equal(tagTaken(thread({ state: "released", quarantineUntil: null }), T0), false);
  });
});

describe("the cap", () => {
  test("a hub is needed only with a cap, once the proxies held reach it (hub and released pairs do not count)", () => {
    const holdings = [
      held(P2),
      { ...held(P3), state: "released" as const },
      { ...held(H), state: "hub" as const },
    ];
    assert.equal(proxiesHeld(holdings), 1);
    assert.equal(needsHub(holdings, undefined), false);
    assert.equal(needsHub(holdings, 2), false);
    assert.equal(needsHub(holdings, 1), true);
  });

  test("a capped proxy takes a free cap slot: from the ticket up (wrapping), contested ones last; none at the cap", () => {
    const slotted = (proxy: E164, capSlot: number) => ({ ...held(proxy), capSlot });
    const none: Holding[] = [];
    assert.equal(chooseCapSlot(none, undefined, { seed: "s" }), undefined, "no cap, no slot");
    // Consecutive tickets (concurrent opens of one person) start on consecutive slots.
    assert.deepEqual(
      [7, 8, 9, 10].map((ticket) => chooseCapSlot(none, 4, { seed: "s", ticket })),
      [3, 0, 1, 2],
    );
    // Held slots are skipped; a released pair's or a pre-slot proxy's slot is none.
    const holdings = [slotted(P2, 1), { ...slotted(P3, 2), state: "released" as const }, held(H)];
    assert.equal(chooseCapSlot(holdings, 4, { seed: "s", ticket: 1 }), 2);
    assert.equal(chooseCapSlot(holdings, 4, { seed: "s", ticket: 1, avoid: new Set([2]) }), 3);
    assert.equal(
      chooseCapSlot([slotted(P2, 0)], 2, { seed: "s", ticket: 0, avoid: new Set([1]) }),
      1,
      "a contested slot when no other is free",
    );
    const seeded = chooseCapSlot(none, 4, { seed: "ses_1:+1:1" });
    assert.equal(
      chooseCapSlot(none, 4, { seed: "ses_1:+1:1" }),
      seeded,
      "a retry starts where its seed says",
    );
    assert.ok(seeded !== undefined && seeded >= 0 && seeded < 4);
    assert.equal(
      chooseCapSlot([slotted(P2, 0), held(P3)], 2, { seed: "s" }),
      undefined,
      "at the cap: the hub",
    );
  });

  const request = (patch: Partial<Parameters<typeof allocateHub>[0]> = {}) => ({
    participant: HOST,
    participantCallingCode: "1",
    counterpart: GUEST,
    counterpartName: "Kate",
    mode: "sms" as const,
    pool: [number(H), number(P2), number(P3)],
    holdings: [held(P2)],
    threads: [] as HubThread[],
    now: T0,
    ...patch,
  });

  test("the hub is the person's active hub, else the best number they hold nothing on (moving off an inactive one)", () => {
    assert.deepEqual(allocateHub(request()), { proxyNumber: H, hub: true, threadTag: "#K1" });
    assert.deepEqual(allocateHub(request({ previousHub: P3, threads: [thread()] })), {
      proxyNumber: P3,
      hub: true,
      threadTag: "#K2",
    });
    assert.deepEqual(allocateHub(request({ previousHub: P3, pool: [number(H), number(P3, "draining")] })), {
      proxyNumber: H,
      hub: true,
      threadTag: "#K1",
      replacesHub: P3,
    });
  });

  test("voice-only, no number, or no tag left: pool exhausted", () => {
    assert.throws(() => allocateHub(request({ mode: "voice" })), PoolExhaustedError);
    assert.throws(() => allocateHub(request({ pool: [number(P2)] })), PoolExhaustedError);
    const all = tagCandidates("Kate").map((tag) => thread({ tag }));
    assert.throws(() => allocateHub(request({ threads: all })), PoolExhaustedError);
  });
});

describe("routing from a hub number", () => {
  test("a tag names its thread on this hub; untagged goes to the only open thread; otherwise a prompt, never a guess", () => {
    const k1 = thread();
    const k2 = thread({ tag: "#K2", sessionId: "ses_2", counterpartName: null });
    const ended = thread({ tag: "#K3", state: "released", sessionId: null, quarantineUntil: T0 + 1 });
    const expired = thread({ tag: "#K4", expiresAt: T0 });
    const elsewhere = thread({ tag: "#K5", hubNumber: P3 });
    const at = (tag: string | undefined, threads: HubThread[]) =>
      resolveHub({ hubNumber: H, tag, threads }, T0);
    assert.deepEqual(at("#K2", [k1, k2]), { kind: "thread", thread: k2 });
    assert.deepEqual(at("#K3", [k1, ended]), { kind: "thread", thread: ended });
    assert.deepEqual(at(undefined, [k1, ended, expired, elsewhere]), { kind: "thread", thread: k1 });
    const prompt = at(undefined, [k2, k1]);
    assert.equal(prompt.kind, "prompt");
    assert.match(
      prompt.kind === "prompt" ? prompt.reply : "",
      /^Not sent: .*"#K1 see you at 3"\. Open: #K1 Kate, #K2$/,
    );
    const unknown = at("#K5", [k1, elsewhere]);
    assert.match(
      unknown.kind === "prompt" ? unknown.reply : "",
      /^No open conversation has the tag #K5\. Start your message with/,
    );
    assert.deepEqual(at(undefined, [ended]), { kind: "none" });
    assert.deepEqual(at(undefined, []), { kind: "none" });
  });

  test("a long prompt stays within one TwiML message", () => {
    const many = tagCandidates("Kate")
      .slice(0, 200)
      .map((tag) => thread({ tag, counterpartName: "A guest with a long name" }));
    const text = hubPrompt(many, undefined);
    assert.ok(text.length <= 1600);
    assert.match(text, /… and \d+ more$/);
    assert.equal(hubPrompt([], undefined).includes("#A1"), true);
  });

  test("a thread routes like a pair, with the counterpart's tag when they are on a hub too", () => {
    const route = threadRoute(thread({ counterpartTag: "#H1", contacts: "block" }));
    const decision = routeInbound(route, "sms", T0);
    assert.deepEqual(decision, {
      kind: "in-session",
      sessionId: "ses_1",
      recipient: GUEST,
      recipientProxy: P2,
      recipientTag: "#H1",
      contacts: "block",
    });
    assert.equal(threadRoute(thread()).contacts, null);
  });

  test("an untagged text to a hub that names no thread is answered with the prompt (no auto-reply throttle)", () => {
    const [event] = decideMessage(
      {
        type: "ReceiveSms",
        messageId: "SM1",
        from: HOST,
        to: H,
        route: { kind: "out-of-session", sessionId: null, reason: "no-session" },
        bodyLength: 2,
        numMedia: 0,
        keyword: undefined,
        replying: false,
        rateLimited: false,
        contacts: { found: [], policy: "allow" },
        hubPrompt: true,
      },
      null,
      ctx(),
    );
    assert.deepEqual(event?.detail, {
      messageId: "SM1",
      channel: "sms",
      from: HOST,
      to: H,
      replied: true,
      hubPrompt: true,
    });
  });
});

describe("hub projection", () => {
  const participants = (hubA: boolean, hubB: boolean): [SessionParticipant, SessionParticipant] => [
    {
      phoneNumber: HOST,
      proxyNumber: H,
      id: null,
      name: "Hal",
      ...(hubA ? { hub: true, threadTag: "#P1", replacesHub: P3 } : { capped: true, capSlot: 0 }),
    },
    {
      phoneNumber: GUEST,
      proxyNumber: P2,
      id: null,
      name: "Pat",
      ...(hubB ? { hub: true, threadTag: "#H1" } : { capped: true, capSlot: 0 }),
    },
  ];
  const open = (hubA: boolean, hubB: boolean, contacts?: "block") =>
    decide(
      {
        type: "OpenSession",
        sessionId: "ses_1",
        participants: participants(hubA, hubB),
        mode: "sms",
        ttlSeconds: 3600,
        ttlMode: "sliding",
        ...(contacts ? { contacts } : {}),
      },
      null,
      ctx(),
    );
  const project = (events: DomainEvent[], proxyCap?: number) =>
    projectEvents(events, { retentionSeconds: 60, ...(proxyCap ? { proxyCap } : {}) });
  const key = (k: { pk: string; sk: string }) => `${k.pk}|${k.sk}`;

  test("a hub side writes the hub marker, the person's one hub and the tag; the counterpart's pair names the tag", () => {
    const changes = project(open(true, false, "block"), 1);
    const byKey = new Map(changes.map((c) => [key(c.key), c]));
    const marker = byKey.get(key(itemKeys.pair(HOST, H)));
    assert.equal(marker?.type === "update" && marker.set?.state, "hub");
    const hubItem = byKey.get(key(itemKeys.hubNumber(HOST)));
    assert.ok(hubItem?.guard && guardHolds(hubItem.guard, { hubNumber: P3 }), "moves off the previous hub");
    assert.ok(hubItem?.guard && !guardHolds(hubItem.guard, undefined), "a move names the hub it replaces");
    const tag = byKey.get(key(itemKeys.hubThread(HOST, "#P1")));
    assert.equal(tag?.type === "put" && tag.item.contacts, "block");
    assert.ok(tag?.guard && guardHolds(tag.guard, { state: "released", quarantineUntil: T0 }));
    assert.ok(tag?.guard && !guardHolds(tag.guard, { state: "released", quarantineUntil: T0 + 1 }));
    assert.ok(tag?.guard && !guardHolds(tag.guard, { state: "held" }));
    const pair = byKey.get(key(itemKeys.pair(GUEST, P2)));
    assert.equal(pair?.type === "put" && pair.item.counterpartTag, "#P1");
    assert.equal(pair?.type === "put" && pair.item.capSlot, 0, "the pair names its cap slot");
    const slot = byKey.get(key(itemKeys.capSlot(GUEST, 0)));
    assert.deepEqual(slot?.type === "put" && slot.item, {
      kind: "cap-slot",
      phoneNumber: GUEST,
      slot: 0,
      sessionId: "ses_1",
      proxyNumber: P2,
    });
    assert.ok(slot?.guard && guardHolds(slot.guard, undefined), "a free slot is taken");
    assert.ok(slot?.guard && !guardHolds(slot.guard, { sessionId: "ses_0" }), "a held slot is not");
    assert.deepEqual(slot?.conflict, { kind: "proxy-cap", key: `${GUEST}:0` });
    assert.equal(
      changes.some((c) => c.key.pk === `PERSON#${HOST}`),
      false,
      "a hub session takes no slot",
    );
  });

  test("both on hubs: each tag names the other's; closing releases tags into quarantine and decrements counts", () => {
    const opened = open(true, true);
    const both = project(opened);
    const tagP = both.find((c) => key(c.key) === key(itemKeys.hubThread(HOST, "#P1")));
    assert.equal(tagP?.type === "put" && tagP.item.counterpartTag, "#H1");
    const firstHub = project(open(false, true)).find((c) => key(c.key) === key(itemKeys.hubNumber(GUEST)));
    assert.ok(firstHub?.guard && guardHolds(firstHub.guard, undefined));
    const session = opened.reduce(evolve, null);
    const closed = decide({ type: "CloseSession" }, session, ctx(T0 + 1000));
    const released = closed.filter((e): e is EventOf<"PairReleased"> => e.type === "PairReleased");
    assert.deepEqual(
      released.map((e) => e.detail.threadTag),
      ["#P1", "#H1"],
    );
    const changes = project(closed);
    assert.ok(changes.some((c) => key(c.key) === key(itemKeys.hubThread(HOST, "#P1"))));
    const mixed = open(false, true).reduce(evolve, null);
    const mixedClose = project(decide({ type: "CloseSession" }, mixed, ctx(T0 + 1000)));
    const slot = mixedClose.find((c) => key(c.key) === key(itemKeys.capSlot(HOST, 0)));
    assert.equal(slot?.type, "delete", "the slot goes with the pair");
    assert.ok(slot?.guard && guardHolds(slot.guard, { sessionId: "ses_1" }));
    assert.ok(slot?.guard && guardHolds(slot.guard, undefined), "a slot already gone does not block a close");
    assert.ok(slot?.guard && !guardHolds(slot.guard, { sessionId: "ses_2" }), "never another session's");
    const pair = mixedClose.find((c) => key(c.key) === key(itemKeys.pair(HOST, H)));
    assert.ok(pair?.type === "update" && pair.remove?.includes("capSlot"));
  });

  test("extending or updating a hub session moves its thread's expiry", () => {
    const session = open(true, false).reduce(evolve, null);
    const extended = decide({ type: "RecordActivity" }, session, ctx(T0 + 600_000));
    const updated = decide({ type: "UpdateSession", mode: "sms" }, session, ctx(T0 + 1000));
    for (const events of [extended, updated]) {
      const keys = project(events).map((c) => key(c.key));
      assert.ok(keys.includes(key(itemKeys.hubThread(HOST, "#P1"))));
      assert.ok(!keys.includes(key(itemKeys.pair(HOST, H))));
    }
    assert.deepEqual(routingConflict({ phoneNumber: HOST, proxyNumber: H, threadTag: "#P1" }), {
      kind: "thread-tag",
      key: `${HOST}:#P1`,
    });
    assert.deepEqual(routingKey({ phoneNumber: GUEST, proxyNumber: P2 }), itemKeys.pair(GUEST, P2));
    assert.throws(() => capSlotTaken(HOST, 2, "ses_1", H, 2), /beyond the cap/);
    assert.equal(capSlotTaken(HOST, 2, "ses_1", H).type, "put", "without a cap (rebuild) any slot is kept");
  });
});
