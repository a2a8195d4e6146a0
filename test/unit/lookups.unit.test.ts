import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { MemoryStore } from "../../shared/adapters/memory-store.ts";
import {
  isOpenHolding,
  nanpAreaCode,
  type PoolNumber,
  rankProxies,
  sharedOpenSession,
} from "../../shared/domain/allocation.ts";
import { ConcurrentWriteError, SessionNotOpenError } from "../../shared/domain/errors.ts";
import type { DomainEvent } from "../../shared/domain/events.ts";
import type { E164 } from "../../shared/domain/phone.ts";
import { decideNumber } from "../../shared/domain/pool.ts";
import { lookupKeys } from "../../shared/domain/projection-lookups.ts";
import { decide, evolve, initialState, type Session } from "../../shared/domain/session.ts";
import { CursorCodec } from "../../shared/http/cursor.ts";

const T0 = Date.parse("2026-01-01T00:00:00.000Z");
const n = (s: string) => s as E164;
const ctx = (now = T0) => {
  let i = 0;
  return { now, newId: () => `evt_${now}_${++i}`, quarantineSeconds: 60 };
};
const pool = (...numbers: [string, number][]): PoolNumber[] =>
  numbers.map(([phone, load]) => ({
    phoneNumber: n(phone),
    status: "active",
    callingCode: phone.startsWith("+44") ? "44" : "1",
    load,
  }));

describe("area-code preference (rankProxies)", () => {
  const request = {
    participant: n("+13125550100"),
    participantCallingCode: "1",
    counterpart: n("+12025550100"),
    holdings: [],
    now: T0,
  };

  test("NANP area code: the three digits after +1", () => {
    assert.equal(nanpAreaCode("+13125550100"), "312");
    assert.equal(nanpAreaCode("+447700900123"), undefined);
  });

  test("same area code before any other free number of the country, even a less loaded one", () => {
    const ranked = rankProxies({
      ...request,
      pool: pool(["+12125551000", 0], ["+13125551000", 5], ["+447700900001", 0], ["+14155551000", 1]),
    });
    assert.deepEqual(ranked, ["+13125551000", "+12125551000", "+14155551000", "+447700900001"]);
  });

  test("geoMatch country: the country only, then load", () => {
    const ranked = rankProxies({
      ...request,
      geoMatch: "country",
      pool: pool(["+12125551000", 0], ["+13125551000", 5]),
    });
    assert.deepEqual(ranked, ["+12125551000", "+13125551000"]);
  });

  test("soft: no number of the area code is no failure; the sticky pair still comes first", () => {
    assert.deepEqual(rankProxies({ ...request, pool: pool(["+12125551000", 3]) }), ["+12125551000"]);
    const sticky = rankProxies({
      ...request,
      pool: pool(["+12125551000", 3], ["+13125551000", 0]),
      holdings: [
        {
          proxyNumber: n("+12125551000"),
          state: "released",
          sessionId: null,
          counterpartNumber: request.counterpart,
          quarantineUntil: T0 + 1000,
        },
      ],
    });
    assert.deepEqual(sticky, ["+12125551000", "+13125551000"]);
  });

  /** A pair held with +12025550100 until T0 + 1000. */
  const held = {
    proxyNumber: n("+13125551000"),
    state: "held" as const,
    sessionId: "ses_1",
    counterpartNumber: n("+12025550100"),
    quarantineUntil: null,
    expiresAt: T0 + 1000,
  };

  test("sharedOpenSession: held and unexpired with that counterpart only", () => {
    assert.equal(sharedOpenSession([held], n("+12025550100"), T0)?.sessionId, "ses_1");
    assert.equal(sharedOpenSession([held], n("+12025550100"), T0 + 1000), undefined);
    assert.equal(sharedOpenSession([held], n("+12025550199"), T0), undefined);
  });

  test("isOpenHolding: held and not past its expiry; released or expired (swept or not) is not open", () => {
    assert.equal(isOpenHolding(held, T0), true);
    assert.equal(isOpenHolding(held, T0 + 1000), false);
    assert.equal(isOpenHolding({ ...held, expiresAt: null }, T0 + 1000), true);
    assert.equal(isOpenHolding({ ...held, state: "released" }, T0), false);
  });
});

const participants = [
  { phoneNumber: "+12025550101", proxyNumber: "+14155550101", id: "a", name: null },
  { phoneNumber: "+12025550102", proxyNumber: "+14155550102", id: "b", name: null },
] as Session["participants"];

function opened(
  options: { ttlSeconds?: number; ttlMode?: "absolute" | "sliding"; uniqueName?: string } = {},
) {
  return decide(
    {
      type: "OpenSession",
      sessionId: "ses_1",
      participants,
      mode: "sms+voice",
      ttlSeconds: options.ttlSeconds ?? 60,
      ttlMode: options.ttlMode ?? "absolute",
      uniqueName: options.uniqueName ?? null,
    },
    null,
    ctx(),
  );
}

describe("UpdateSession decider", () => {
  test("a new ttl counts from now; the mode alone keeps the expiry", () => {
    const state = opened().reduce(evolve, initialState());
    const [event] = decide({ type: "UpdateSession", ttlSeconds: 600 }, state, ctx(T0 + 30_000));
    assert.equal(event?.type, "SessionUpdated");
    const next = [event as DomainEvent].reduce(evolve, state);
    assert.equal(next?.expiresAt, new Date(T0 + 30_000 + 600_000).toISOString());
    assert.equal(next?.ttlSeconds, 600);
    const [modeOnly] = decide({ type: "UpdateSession", mode: "sms" }, next, ctx(T0 + 40_000));
    const after = [modeOnly as DomainEvent].reduce(evolve, next);
    assert.equal(after?.expiresAt, next?.expiresAt);
    assert.equal(after?.mode, "sms");
  });

  test("a sliding session then extends by the new ttl", () => {
    const state = opened({ ttlMode: "sliding" }).reduce(evolve, initialState());
    const updated = decide({ type: "UpdateSession", ttlSeconds: 3600 }, state, ctx(T0 + 1000)).reduce(
      evolve,
      state,
    );
    const [extended] = decide({ type: "RecordActivity" }, updated, ctx(T0 + 5000));
    assert.equal(extended?.type, "SessionExtended");
    assert.equal(
      (extended as Extract<DomainEvent, { type: "SessionExtended" }>).detail.expiresAt,
      new Date(T0 + 5000 + 3_600_000).toISOString(),
    );
  });

  test("past its expiry or closed, the session is not open", () => {
    const state = opened().reduce(evolve, initialState());
    assert.throws(
      () => decide({ type: "UpdateSession", mode: "sms" }, state, ctx(T0 + 60_000)),
      SessionNotOpenError,
    );
    const closed = decide({ type: "CloseSession" }, state, ctx(T0 + 1)).reduce(evolve, state);
    assert.throws(
      () => decide({ type: "UpdateSession", mode: "sms" }, closed, ctx(T0 + 2)),
      SessionNotOpenError,
    );
  });
});

describe("uniqueName hold (the projection, on the in-memory store)", () => {
  const openAs = (sessionId: string, now: number, uniqueName = "booking-1") =>
    decide(
      {
        type: "OpenSession",
        sessionId,
        // Other people each time: only the name is shared.
        participants: participants.map((p) => ({
          ...p,
          phoneNumber: `${p.phoneNumber.slice(0, -3)}${sessionId.slice(-1)}${p.phoneNumber.slice(-2)}`,
        })) as Session["participants"],
        mode: "sms",
        ttlSeconds: 60,
        ttlMode: "absolute",
        uniqueName,
      },
      null,
      ctx(now),
    );

  test("taken while the holder is unexpired; free after its expiry or its close", async () => {
    const store = new MemoryStore();
    for (const p of participants)
      await store.append(
        decideNumber({ type: "AddNumber", phoneNumber: n(p.proxyNumber) }, null, ctx(T0 - 1)),
      );
    await store.append(openAs("ses_1", T0));
    await assert.rejects(
      store.append(openAs("ses_2", T0 + 59_999)),
      (e: unknown) => e instanceof ConcurrentWriteError && e.conflicts.some((c) => c.kind === "unique-name"),
    );
    await store.append(openAs("ses_3", T0 + 60_000));
    assert.equal(store.get(lookupKeys.uniqueName("booking-1"))?.sessionId, "ses_3");
    const state = await store.getSession("ses_3");
    await store.append(decide({ type: "CloseSession" }, state ?? null, ctx(T0 + 61_000)));
    assert.equal(store.get(lookupKeys.uniqueName("booking-1")), undefined, "a close releases the name");
  });
});

describe("page cursors", () => {
  const codec = new CursorCodec("secret-secret-secret");
  test("round trip within the query; refused elsewhere, edited, or under another key", () => {
    const key = { pk: "POOL", sk: "NUMBER#+14155550100" };
    const cursor = codec.seal("numbers", key) ?? "";
    assert.deepEqual(codec.open("numbers", cursor), key);
    assert.equal(codec.seal("numbers", undefined), undefined);
    assert.throws(() => codec.open("events\nses_1", cursor), /cursor/i);
    assert.throws(() => new CursorCodec("another-secret-key").open("numbers", cursor), /cursor/i);
    assert.throws(() => codec.open("numbers", `${cursor}x`), /cursor/i);
    assert.throws(() => codec.open("numbers", "a.b.c"), /cursor/i);
  });
});
