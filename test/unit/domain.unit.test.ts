import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { chooseProxy, type Holding, type PoolNumber, rankProxies } from "../../shared/domain/allocation.ts";
import { type DomainEvent, domainEventSchema, eventDetailSchemas } from "../../shared/domain/events.ts";
import { callingCode, type E164, maskNumber, toE164, toE164FromPath } from "../../shared/domain/phone.ts";
import {
  decide,
  evolve,
  initialState,
  type Route,
  routeInbound,
  type SessionCommand,
  type SessionState,
} from "../../shared/domain/session.ts";

const T0 = Date.parse("2026-01-01T00:00:00.000Z");
const n = (s: string) => s as E164;
const A = n("+12025550101");
const B = n("+12025550102");
const P1 = n("+14155550101");
const P2 = n("+14155550102");

function context(now: number) {
  let i = 0;
  return { now, newId: () => `evt_${String(++i).padStart(4, "0")}`, quarantineSeconds: 60 };
}

/** given(events).when(command, at).expect(check on the decided events) */
function given(events: DomainEvent[]) {
  const state = events.reduce<SessionState>(evolve, initialState());
  return {
    when: (command: SessionCommand, now = T0) => ({
      expect: (check: (events: DomainEvent[]) => void) => check(decide(command, state, context(now))),
    }),
  };
}

const opened = (ttlSeconds = 60, ttlMode: "absolute" | "sliding" = "absolute") =>
  decide(
    {
      type: "OpenSession",
      sessionId: "ses_1",
      mode: "sms+voice",
      ttlSeconds,
      ttlMode,
      participants: [
        { phoneNumber: A, proxyNumber: P1, id: "host", name: null },
        { phoneNumber: B, proxyNumber: P2, id: "guest", name: null },
      ],
    },
    null,
    context(T0),
  );

describe("session decider", () => {
  test("opening records SessionOpened with the expiry", () =>
    given([])
      .when({
        type: "OpenSession",
        sessionId: "ses_1",
        mode: "sms",
        ttlSeconds: 10,
        ttlMode: "absolute",
        participants: [
          { phoneNumber: A, proxyNumber: P1, id: null, name: null },
          { phoneNumber: B, proxyNumber: P1, id: null, name: null },
        ],
      })
      .expect((events) => {
        assert.deepEqual(
          events.map((e) => e.type),
          ["SessionOpened"],
        );
        const [event] = events;
        assert.equal(
          event?.type === "SessionOpened" && event.detail.expiresAt,
          new Date(T0 + 10_000).toISOString(),
        );
      }));

  test("closing an open session closes it and releases both pairs into quarantine", () =>
    given(opened())
      .when({ type: "CloseSession" }, T0 + 1000)
      .expect((events) => {
        assert.deepEqual(
          events.map((e) => e.type),
          ["SessionClosed", "PairReleased", "PairReleased"],
        );
        const released = events.filter((e) => e.type === "PairReleased").map((e) => e.detail);
        assert.deepEqual(released, [
          {
            proxyNumber: P1,
            participantNumber: A,
            counterpartNumber: B,
            quarantineUntil: new Date(T0 + 61_000).toISOString(),
          },
          {
            proxyNumber: P2,
            participantNumber: B,
            counterpartNumber: A,
            quarantineUntil: new Date(T0 + 61_000).toISOString(),
          },
        ]);
      }));

  test("closing twice is a no-op; closing after expiry records SessionExpired", () => {
    const closed = [
      ...opened(),
      ...decide({ type: "CloseSession" }, opened().reduce(evolve, null), context(T0)),
    ];
    given(closed)
      .when({ type: "CloseSession" })
      .expect((events) => assert.deepEqual(events, []));
    given(opened())
      .when({ type: "CloseSession" }, T0 + 60_000)
      .expect((events) => assert.equal(events[0]?.type, "SessionExpired"));
  });

  test("the recycler expires only sessions past expiresAt", () => {
    given(opened())
      .when({ type: "ExpireSession" }, T0 + 59_999)
      .expect((events) => assert.deepEqual(events, []));
    given(opened())
      .when({ type: "ExpireSession" }, T0 + 60_000)
      .expect((events) =>
        assert.deepEqual(
          events.map((e) => e.type),
          ["SessionExpired", "PairReleased", "PairReleased"],
        ),
      );
  });

  test("activity extends a sliding session, never an absolute one", () => {
    given(opened(60, "sliding"))
      .when({ type: "RecordActivity" }, T0 + 30_000)
      .expect((events) => {
        assert.equal(events[0]?.type, "SessionExtended");
        assert.equal(
          (events[0] as Extract<DomainEvent, { type: "SessionExtended" }>).detail.expiresAt,
          new Date(T0 + 90_000).toISOString(),
        );
      });
    given(opened(60, "absolute"))
      .when({ type: "RecordActivity" }, T0 + 30_000)
      .expect((events) => assert.deepEqual(events, []));
  });
});

describe("routing", () => {
  const route = (over: Partial<Route> = {}): Route => ({
    proxyNumber: P1,
    senderNumber: A,
    state: "held",
    sessionId: "ses_1",
    counterpartNumber: B,
    counterpartProxy: P2,
    mode: "sms+voice",
    expiresAt: T0 + 1000,
    ...over,
  });
  test("in session: to the counterpart, from the counterpart's proxy, under the session's content policy", () => {
    assert.deepEqual(routeInbound(route(), "sms", T0), {
      kind: "in-session",
      sessionId: "ses_1",
      recipient: B,
      recipientProxy: P2,
      contacts: undefined,
    });
    const strict = routeInbound(route({ contacts: "block" }), "sms", T0);
    assert.equal(strict.kind === "in-session" ? strict.contacts : null, "block");
  });
  test("expiry is exact at read time", () =>
    assert.deepEqual(routeInbound(route(), "sms", T0 + 1000), {
      kind: "out-of-session",
      sessionId: "ses_1",
      reason: "expired",
    }));
  test("no pair, a released pair, or the wrong channel is out of session", () => {
    assert.equal(routeInbound(undefined, "sms", T0).kind, "out-of-session");
    assert.equal(routeInbound(route({ state: "released" }), "sms", T0).kind, "out-of-session");
    assert.equal(routeInbound(route({ mode: "sms" }), "voice", T0).kind, "out-of-session");
  });
});

describe("phone numbers", () => {
  test("E.164 via libphonenumber-js, with country calling codes and masking", () => {
    assert.equal(toE164("+1 (415) 555-0100"), "+14155550100");
    assert.equal(toE164("4155550100"), undefined, "national form is refused");
    assert.equal(toE164("+1234"), undefined);
    assert.equal(toE164("+1415555010a"), undefined);
    assert.equal(callingCode(n("+447911123456")), "44");
    assert.equal(maskNumber("+14155550100"), "+14*******00");
  });

  test("a path's number without its +: only digits, and only a number valid in its country", () => {
    // With the "+", as everywhere; without it, the digits must be the whole international number.
    assert.equal(toE164FromPath("+1 415 555 0100"), "+14155550100");
    assert.equal(toE164FromPath("14155550100"), "+14155550100");
    // A national form is not read as another country's number: an erasure must not miss its person.
    assert.equal(toE164FromPath("6175551987"), undefined, "not +61 7555 1987 (AU)");
    assert.equal(toE164FromPath("2025550161"), undefined, "not +20 2555 0161 (EG)");
    assert.equal(toE164FromPath("617-555-1987"), undefined, "separators without + are a national form");
    assert.equal(toE164FromPath("(617) 555 1987"), undefined);
    assert.equal(toE164FromPath("1415555010a"), undefined);
    assert.equal(toE164FromPath("1234"), undefined, "not even a possible number");
  });

  test("one rule on input and on read: E.164 with at most 15 digits", () => {
    // 16 digits: libphonenumber-js calls it "possible" for DE, E.164 does not allow it.
    assert.equal(toE164("+4922222222222222"), undefined);
    assert.equal(toE164("+492222222222222"), "+492222222222222", "15 digits is the maximum");
    const opened = (phoneNumber: string) =>
      eventDetailSchemas().NumberAdded.safeParse({ phoneNumber, callingCode: "49" }).success;
    assert.equal(opened("+4922222222222222"), false);
    assert.equal(opened("+492222222222222"), true);
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom("+", "0", "1", "4", "9", " ", "-") }), (raw) => {
        const number = toE164(raw);
        // Whatever input accepts, the event schema reads back.
        if (number) assert.equal(opened(number), true, number);
      }),
      { seed: 12, numRuns: 500 },
    );
    const event = {
      id: "evt_1",
      type: "NumberAdded",
      occurredAt: new Date(T0).toISOString(),
      sessionId: null,
      detailVersion: 1,
      detail: { phoneNumber: "+4922222222222222", callingCode: "49" },
    };
    assert.equal(domainEventSchema.safeParse(event).success, false);
  });
});

describe("allocation ranking", () => {
  const pool = (numbers: [string, number, string?][]): PoolNumber[] =>
    numbers.map(([p, load, code]) => ({
      phoneNumber: n(p),
      status: "active",
      load,
      callingCode: code ?? "1",
    }));
  const base = { participant: A, participantCallingCode: "1", counterpart: B, now: T0 };

  test("sticky first, then the participant's country, then least loaded", () => {
    const ranked = rankProxies({
      ...base,
      pool: pool([
        ["+14155550101", 0],
        ["+14155550102", 5],
        ["+447700900003", 0, "44"],
        ["+14155550104", 1],
      ]),
      holdings: [
        {
          proxyNumber: n("+14155550102"),
          state: "released",
          sessionId: null,
          counterpartNumber: B,
          quarantineUntil: T0 + 1,
        },
      ],
    });
    assert.deepEqual(ranked, ["+14155550102", "+14155550101", "+14155550104", "+447700900003"]);
  });

  test("held numbers and retired numbers are never offered; quarantined pairs come last", () => {
    const holdings: Holding[] = [
      {
        proxyNumber: n("+14155550101"),
        state: "held",
        sessionId: "s",
        counterpartNumber: B,
        quarantineUntil: null,
      },
      {
        proxyNumber: n("+14155550102"),
        state: "released",
        sessionId: null,
        counterpartNumber: n("+12025550199"),
        quarantineUntil: T0 + 5000,
      },
    ];
    const numbers = pool([
      ["+14155550101", 0],
      ["+14155550102", 0],
      ["+14155550103", 9],
      ["+14155550104", 0],
    ]);
    numbers[3] = { ...(numbers[3] as PoolNumber), status: "draining" };
    assert.deepEqual(rankProxies({ ...base, pool: numbers, holdings }), ["+14155550103", "+14155550102"]);
  });
});

describe("choosing a proxy (chooseProxy)", () => {
  const pool = (numbers: [string, number, string?][]): PoolNumber[] =>
    numbers.map(([p, load, code]) => ({
      phoneNumber: n(p),
      status: "active",
      load,
      callingCode: code ?? "1",
    }));
  const base = { participant: A, participantCallingCode: "1", counterpart: B, now: T0 };
  const released = (proxy: string, counterpart: E164, quarantineUntil: number | null): Holding => ({
    proxyNumber: n(proxy),
    state: "released",
    sessionId: null,
    counterpartNumber: counterpart,
    quarantineUntil,
  });
  const seeds = Array.from({ length: 64 }, (_, i) => `ses_${i}:${A}:0`);

  test("concurrent opens spread over the equally good numbers, and only over those", () => {
    const numbers = pool([
      ["+14155550101", 1],
      ["+14155550102", 1],
      ["+14155550103", 1],
      ["+14155550104", 2],
      ["+447700900005", 0, "44"],
    ]);
    const chosen = new Set(
      seeds.map((seed) => chooseProxy({ ...base, pool: numbers, holdings: [] }, { seed })),
    );
    assert.deepEqual([...chosen].sort(), ["+14155550101", "+14155550102", "+14155550103"]);
    // The same seed, the same choice.
    const once = chooseProxy({ ...base, pool: numbers, holdings: [] }, { seed: "ses_x:1" });
    assert.equal(chooseProxy({ ...base, pool: numbers, holdings: [] }, { seed: "ses_x:1" }), once);
  });

  test("a sticky pair is taken whatever the seed; a quarantined one only when nothing is free", () => {
    const numbers = pool([
      ["+14155550101", 0],
      ["+14155550102", 9],
      ["+14155550103", 0],
    ]);
    const sticky = [released("+14155550102", B, T0 + 1)];
    for (const seed of seeds)
      assert.equal(chooseProxy({ ...base, pool: numbers, holdings: sticky }, { seed }), "+14155550102");
    const elsewhere = n("+12025550199");
    const onlyQuarantined = [
      released("+14155550101", elsewhere, T0 + 9000),
      released("+14155550102", elsewhere, T0 + 5000),
      { ...released("+14155550103", elsewhere, null), state: "held" as const },
    ];
    for (const seed of seeds)
      assert.equal(
        chooseProxy({ ...base, pool: numbers, holdings: onlyQuarantined }, { seed }),
        "+14155550102",
      );
  });

  test("consecutive tickets take different ties: concurrent opens with one view collide on none", () => {
    const numbers = pool(Array.from({ length: 20 }, (_, i): [string, number] => [`+141555501${10 + i}`, 0]));
    const chosen = Array.from({ length: 20 }, (_, i) =>
      chooseProxy({ ...base, pool: numbers, holdings: [] }, { seed: `ses_${i}`, ticket: 41 + i }),
    );
    assert.equal(new Set(chosen).size, 20);
  });

  test("a number another open was found taking is chosen last, and still chosen when nothing else is free", () => {
    const numbers = pool([
      ["+14155550101", 0],
      ["+14155550102", 0],
      ["+14155550103", 1],
    ]);
    const avoid = new Set(["+14155550101", "+14155550102"]);
    for (const seed of seeds)
      assert.equal(chooseProxy({ ...base, pool: numbers, holdings: [] }, { seed, avoid }), "+14155550103");
    const all = new Set([...avoid, "+14155550103"]);
    const lastResort = new Set(
      seeds.map((seed) => chooseProxy({ ...base, pool: numbers, holdings: [] }, { seed, avoid: all })),
    );
    assert.deepEqual([...lastResort].sort(), ["+14155550101", "+14155550102"]);
  });

  test("the other side's number is shared when it is as good as any, never when it is worse", () => {
    const numbers = pool([
      ["+14155550101", 0],
      ["+14155550102", 0],
      ["+14155550103", 1],
    ]);
    for (const seed of seeds) {
      const request = { ...base, pool: numbers, holdings: [] };
      assert.equal(chooseProxy(request, { seed, share: "+14155550102" }), "+14155550102");
      assert.notEqual(chooseProxy(request, { seed, share: "+14155550103" }), "+14155550103");
    }
  });

  test("nothing eligible: undefined (the pool is exhausted for this participant)", () => {
    assert.equal(chooseProxy({ ...base, pool: [], holdings: [] }, { seed: "s" }), undefined);
  });
});

describe("allocation properties (fast-check)", () => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant("open" as const), a: fc.nat(7), b: fc.nat(7) }),
    fc.record({ kind: fc.constant("close" as const), pick: fc.nat(50) }),
    fc.record({ kind: fc.constant("expire" as const), pick: fc.nat(50), advance: fc.nat(120_000) }),
  );

  test("no pair is held by two open sessions, and allocation fails only when every active number is held", () =>
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.array(op, { maxLength: 80 }), (poolSize, ops) => {
        const people = Array.from({ length: 8 }, (_, i) => n(`+1202555${String(1000 + i)}`));
        const pool: PoolNumber[] = Array.from({ length: poolSize }, (_, i) => ({
          phoneNumber: n(`+1415555${String(2000 + i)}`),
          status: "active",
          load: 0,
          callingCode: "1",
        }));
        const holdings = new Map<string, Holding[]>();
        const sessions = new Map<string, SessionState>();
        let now = T0;
        let seq = 0;
        // In-memory projection of the events, as the DynamoDB adapter writes them.
        const project = (events: DomainEvent[]) => {
          for (const e of events) {
            if (e.sessionId) sessions.set(e.sessionId, evolve(sessions.get(e.sessionId) ?? null, e));
            if (e.type === "SessionOpened")
              for (const [p, other] of [e.detail.participants, [...e.detail.participants].reverse()].map(
                (x) => x,
              )) {
                if (!p || !other) continue;
                const list = (holdings.get(p.phoneNumber) ?? []).filter(
                  (h) => h.proxyNumber !== p.proxyNumber,
                );
                const existing = holdings.get(p.phoneNumber)?.find((h) => h.proxyNumber === p.proxyNumber);
                assert.notEqual(existing?.state, "held", "a pair was handed out twice");
                list.push({
                  proxyNumber: n(p.proxyNumber),
                  state: "held",
                  sessionId: e.sessionId,
                  counterpartNumber: n(other.phoneNumber),
                  quarantineUntil: null,
                });
                holdings.set(p.phoneNumber, list);
              }
            if (e.type === "PairReleased") {
              const h = holdings
                .get(e.detail.participantNumber)
                ?.find((x) => x.proxyNumber === e.detail.proxyNumber);
              assert.ok(h && h.state === "held" && h.sessionId === e.sessionId);
              Object.assign(h, {
                state: "released",
                sessionId: null,
                quarantineUntil: Date.parse(e.detail.quarantineUntil),
              });
            }
          }
        };
        for (const o of ops) {
          const ctx = context(now);
          if (o.kind === "open") {
            const [a, b] = [people[o.a], people[o.b]] as [E164, E164];
            if (a === b) continue;
            const rank = (p: E164, other: E164) =>
              rankProxies({
                participant: p,
                participantCallingCode: "1",
                counterpart: other,
                pool,
                holdings: holdings.get(p) ?? [],
                now,
              });
            const [ra, rb] = [rank(a, b), rank(b, a)];
            for (const [p, ranked] of [
              [a, ra],
              [b, rb],
            ] as const) {
              const held = (holdings.get(p) ?? []).filter((h) => h.state === "held").length;
              assert.equal(
                ranked.length === 0,
                held >= pool.length,
                "fails iff the participant holds every number",
              );
            }
            if (!ra[0] || !rb[0]) continue;
            const sessionId = `ses_${++seq}`;
            project(
              decide(
                {
                  type: "OpenSession",
                  sessionId,
                  mode: "sms",
                  ttlSeconds: 60,
                  ttlMode: "absolute",
                  participants: [
                    { phoneNumber: a, proxyNumber: ra[0], id: null, name: null },
                    { phoneNumber: b, proxyNumber: rb[0], id: null, name: null },
                  ],
                },
                null,
                ctx,
              ),
            );
          } else {
            const ids = [...sessions.keys()];
            const id = ids[o.pick % Math.max(1, ids.length)];
            if (!id) continue;
            if (o.kind === "expire") now += o.advance;
            project(
              decide(
                { type: o.kind === "close" ? "CloseSession" : "ExpireSession" },
                sessions.get(id) ?? null,
                context(now),
              ),
            );
          }
          // Invariant: per (proxy, participant) at most one open session.
          for (const [, list] of holdings) {
            const held = list.filter((h) => h.state === "held").map((h) => h.proxyNumber);
            assert.equal(new Set(held).size, held.length);
          }
        }
      }),
      { numRuns: 300 },
    ));
});
