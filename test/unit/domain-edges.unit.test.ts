// The domain's edge branches: unknown variants are refused loudly, projections of the rarer events, and
// the small rules (numbers, spans, ranking ties) at their boundaries.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { rankProxies } from "../../shared/domain/allocation.ts";
import { applyChange, type Change, guard, guardHolds } from "../../shared/domain/changes.ts";
import { findContacts } from "../../shared/domain/contacts.ts";
import { type DomainEvent, makeEvent } from "../../shared/domain/events.ts";
import { decideMessage, withoutHiddenCharacters } from "../../shared/domain/message.ts";
import { callingCode, countryOf, type E164, maskNumber } from "../../shared/domain/phone.ts";
import { decideNumber } from "../../shared/domain/pool.ts";
import { itemKeys, projectEvents } from "../../shared/domain/projection.ts";
import { decide, evolve } from "../../shared/domain/session.ts";
import { markerChange } from "../../shared/domain/traffic.ts";

const T0 = Date.parse("2026-01-01T00:00:00.000Z");
const ctx = () => {
  let i = 0;
  return { now: T0, newId: () => `evt_${++i}`, quarantineSeconds: 60 };
};
const n = (s: string) => s as E164;
const unknown = { type: "Nonsense" } as never;
const options = { retentionSeconds: 3600 };

describe("unknown variants are refused, never ignored", () => {
  test("every decider, the projection, guards, changes and markers throw on a variant they do not know", () => {
    const refused = /Unhandled variant/;
    assert.throws(() => decide(unknown, null, ctx()), refused);
    assert.throws(() => decideMessage(unknown, null, ctx()), refused);
    assert.throws(() => decideNumber(unknown, null, ctx()), refused);
    assert.throws(() => evolve(null, unknown), refused);
    assert.throws(() => projectEvents([unknown], options), refused);
    assert.throws(() => guardHolds(unknown, {}), refused);
    assert.throws(() => applyChange(unknown, {}), refused);
    assert.throws(() => markerChange(unknown), refused);
  });
});

describe("guards and changes", () => {
  test("atMost holds only for a number at or below the bound; and/or combine", () => {
    assert.equal(guardHolds(guard.atMost("n", 2), { n: 2 }), true);
    assert.equal(guardHolds(guard.atMost("n", 2), { n: 3 }), false);
    assert.equal(guardHolds(guard.atMost("n", 2), { n: "2" }), false);
    assert.equal(guardHolds(guard.atMost("n", 2), undefined), false);
    assert.equal(guardHolds(guard.and(guard.present, guard.eq("a", 1)), { a: 1 }), true);
    assert.equal(guardHolds(guard.or(guard.absent, guard.eq("a", 1)), { a: 2 }), false);
  });

  test("an update of an absent item starts from its key; add, setIfAbsent and remove apply in order", () => {
    const key = { pk: "P", sk: "S" };
    const change: Change = {
      type: "update",
      key,
      set: { a: 1, gone: true },
      setIfAbsent: { first: 5, a: 9 },
      add: { count: 2 },
      remove: ["gone"],
      conflict: { kind: "message", key: "m" },
    };
    assert.deepEqual(applyChange(change, undefined), { pk: "P", sk: "S", a: 1, first: 5, count: 2 });
    assert.deepEqual(applyChange(change, { ...key, first: 1, count: 1 }), {
      pk: "P",
      sk: "S",
      a: 1,
      first: 1,
      count: 3,
    });
    assert.equal(
      applyChange({ type: "delete", key, conflict: { kind: "message", key: "m" } }, { ...key }),
      undefined,
    );
  });
});

describe("the session fold ignores what does not concern a session", () => {
  test("events of an unknown session leave the state empty", () => {
    const c = ctx();
    const events: DomainEvent[] = [
      makeEvent(c, "SessionClosed", "ses_x", { reason: "api" }),
      makeEvent(c, "SessionExpired", "ses_x", { expiresAt: new Date(T0).toISOString() }),
      makeEvent(c, "SessionExtended", "ses_x", { expiresAt: new Date(T0).toISOString(), pairs: [] }),
      makeEvent(c, "SessionUpdated", "ses_x", {
        ttlSeconds: 60,
        mode: "sms",
        expiresAt: new Date(T0).toISOString(),
        pairs: [],
      }),
    ];
    assert.equal(events.reduce(evolve, null), null);
  });
});

describe("projection of the rarer events", () => {
  test("a retired number leaves the pool only when nothing holds it", () => {
    const [, change] = projectEvents(
      [makeEvent(ctx(), "NumberRetired", null, { phoneNumber: n("+14155550101") })],
      options,
    );
    assert.equal(change?.type, "delete");
    assert.deepEqual(change?.key, itemKeys.number("+14155550101"));
    assert.equal(guardHolds(change?.guard ?? guard.absent, { status: "draining", load: 0 }), true);
    assert.equal(guardHolds(change?.guard ?? guard.absent, { status: "draining", load: 1 }), false);
  });

  test("consent: the most recent word wins, with no guard", () => {
    const c = ctx();
    const person = n("+12025550101");
    const changes = projectEvents(
      [
        makeEvent(c, "ParticipantOptedOut", null, {
          phoneNumber: person,
          keyword: "STOP",
          proxyNumber: n("+14155550101"),
        }),
        makeEvent(c, "ParticipantOptedIn", null, {
          phoneNumber: person,
          keyword: "START",
          proxyNumber: n("+14155550101"),
        }),
      ],
      options,
    ).filter((ch) => ch.key.pk === itemKeys.consent(person).pk && ch.key.sk === itemKeys.consent(person).sk);
    const item = changes.reduce<Record<string, unknown> | undefined>(
      (it, ch) => applyChange(ch, it),
      undefined,
    );
    assert.equal(item?.optedOut, false);
    assert.ok(changes.every((ch) => ch.guard === undefined));
  });
});

describe("small rules at their edges", () => {
  test("a number libphonenumber cannot place has no calling code or country; short strings mask fully", () => {
    assert.equal(callingCode(n("+999")), "");
    assert.equal(countryOf(n("+999")), undefined);
    assert.equal(maskNumber("+1234"), "***");
  });

  test("quarantined numbers of equal age are offered in number order", () => {
    const participant = n("+12025550101");
    const pool = ["+14155550102", "+14155550101"].map((p) => ({
      phoneNumber: n(p),
      status: "active" as const,
      callingCode: "1",
      load: 0,
    }));
    const holdings = pool.map((p) => ({
      proxyNumber: p.phoneNumber,
      state: "released" as const,
      sessionId: null,
      counterpartNumber: n("+12025550199"),
      quarantineUntil: T0 + 60_000,
    }));
    const ranked = rankProxies({
      participant,
      participantCallingCode: "1",
      counterpart: n("+12025550102"),
      pool,
      holdings,
      now: T0,
    });
    assert.deepEqual(ranked, ["+14155550101", "+14155550102"]);
  });

  test("digits that run into an e-mail address make one e-mail span, whichever starts first", () => {
    for (const text of [
      "write to 4155550123@example.com",
      "four one five five five five zero one two three@example.com",
    ])
      assert.deepEqual(
        findContacts(text, "US").map((s) => s.kind),
        ["email"],
      );
  });
});

describe("the session decider and fold at their edges", () => {
  const open = (extra: { contacts?: "block"; uniqueName?: string } = {}) =>
    decide(
      {
        type: "OpenSession",
        sessionId: "ses_1",
        mode: "sms",
        ttlSeconds: 60,
        ttlMode: "absolute",
        uniqueName: extra.uniqueName ?? null,
        ...(extra.contacts ? { contacts: extra.contacts } : {}),
        participants: [
          { phoneNumber: n("+12025550101"), id: null, name: null, proxyNumber: n("+14155550101") },
          { phoneNumber: n("+12025550102"), id: null, name: null, proxyNumber: n("+14155550102") },
        ],
      },
      null,
      ctx(),
    );

  test("opening an existing session and updating a missing one decide nothing", () => {
    const session = open().reduce(evolve, null);
    assert.ok(session);
    assert.deepEqual(open().length, 1);
    assert.deepEqual(
      decide(
        {
          type: "OpenSession",
          sessionId: "ses_1",
          mode: "sms",
          ttlSeconds: 60,
          ttlMode: "absolute",
          uniqueName: null,
          participants: session.participants as never,
        },
        session,
        ctx(),
      ),
      [],
    );
    assert.deepEqual(decide({ type: "UpdateSession", ttlSeconds: 60 }, null, ctx()), []);
  });

  test("the fold keeps a session's policy and name, and names none when the event has none", () => {
    const named = open({ contacts: "block", uniqueName: "booking-1" }).reduce(evolve, null);
    assert.equal(named?.contacts, "block");
    assert.equal(named?.uniqueName, "booking-1");
    const [event] = open();
    assert.ok(event);
    const anonymous = evolve(null, { ...event, sessionId: null } as DomainEvent);
    assert.equal(anonymous?.sessionId, "");
    assert.equal(anonymous?.uniqueName, null);
    assert.equal(anonymous?.contacts, undefined);
  });

  test("projection: an open and a close in one append leave the load alone; an event without a session still projects", () => {
    const c = ctx();
    const [opened] = open({ uniqueName: "booking-2" });
    assert.ok(opened);
    const state = [opened].reduce(evolve, null);
    const closed = decide({ type: "CloseSession" }, state, c);
    const changes = projectEvents([opened, ...closed], options);
    assert.ok(
      !changes.some((ch) => ch.key.sk === itemKeys.number("+14155550101").sk && ch.type === "update"),
    );
    const orphan = { ...opened, sessionId: null } as DomainEvent;
    assert.ok(projectEvents([orphan], options).length > 0);
    const updated = decide({ type: "UpdateSession", ttlSeconds: 120 }, state, c);
    assert.ok(
      projectEvents(
        updated.map((e) => ({ ...e, sessionId: null }) as DomainEvent),
        options,
      ).length > 0,
    );
    // An idempotency record with nothing else to write is dated at the epoch.
    const [record] = projectEvents([], {
      ...options,
      idempotency: { key: "k", requestHash: "h", result: "r" },
    });
    assert.equal(record?.type, "put");
  });
});

describe("sliding sessions in the fold", () => {
  test("activity extends a sliding session by its ttl, and not again within the same second", () => {
    const opened = decide(
      {
        type: "OpenSession",
        sessionId: "ses_2",
        mode: "sms",
        ttlSeconds: 60,
        ttlMode: "sliding",
        uniqueName: null,
        participants: [
          { phoneNumber: n("+12025550101"), id: null, name: null, proxyNumber: n("+14155550101") },
          { phoneNumber: n("+12025550102"), id: null, name: null, proxyNumber: n("+14155550102") },
        ],
      },
      null,
      ctx(),
    );
    const session = opened.reduce(evolve, null);
    const later = { ...ctx(), now: T0 + 30_000 };
    const extended = decide({ type: "RecordActivity" }, session, later);
    const after = extended.reduce(evolve, session);
    assert.equal(after?.expiresAt, new Date(T0 + 90_000).toISOString());
    assert.deepEqual(decide({ type: "RecordActivity" }, after, { ...later, now: T0 + 30_500 }), []);
  });
});

test("a received text loses C0 and C1 controls, DEL and invisible separators; tab, line breaks, RTL marks and joiners stay", () => {
  assert.equal(withoutHiddenCharacters("415\u0000555\u00070100\u001b\u007f"), "4155550100");
  assert.equal(withoutHiddenCharacters("202\u0085555\u00800100\u009f"), "2025550100");
  assert.equal(withoutHiddenCharacters("jo\u200B@ex\u00ADample\u2060.com\uFEFF"), "jo@example.com");
  assert.equal(withoutHiddenCharacters("\u{1F469}\u200D\u{1F467} \u200C"), "\u{1F469}\u200D\u{1F467} \u200C");
  assert.equal(
    withoutHiddenCharacters("a\tb\r\nc \u202Eabc\u202C \u200F"),
    "a\tb\r\nc \u202Eabc\u202C \u200F",
  );
});
