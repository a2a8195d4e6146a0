import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { describe, test } from "node:test";
import { hubReplay } from "../../bench/lib/hub-replay.ts";
import { sizeOf } from "../../bench/lib/meter.ts";
import { treeCpu } from "../../bench/lib/processes.ts";
import { seededRandom, zipfSampler, zipfTopShare } from "../../bench/lib/rng.ts";
import { percentile, summarize } from "../../bench/lib/stats.ts";
import {
  concurrency,
  generateTrace,
  openAt,
  phoneOf,
  simulateSharedNumber,
  smallestSharedPool,
  type TraceSession,
  traceEvents,
} from "../../bench/lib/trace.ts";
import { newId } from "../../shared/adapters/ids.ts";
import { MemoryStore } from "../../shared/adapters/memory-store.ts";
import { SessionService } from "../../shared/app/sessions.ts";
import { busiestParticipantLoad } from "../../shared/domain/allocation.ts";
import { PoolExhaustedError } from "../../shared/domain/errors.ts";
import type { E164 } from "../../shared/domain/phone.ts";

// The benches' own machinery: traces, bounds, the in-memory store. Figures and timings are never asserted.

const small = {
  hosts: 40,
  guests: 400,
  days: 3,
  zipf: 1,
  tripsPerDay: 60,
  seed: 11,
  bookingMedianHours: 30,
  inquiryMedianHours: 6,
};

const session = (id: number, host: number, guest: number, open: number, close: number): TraceSession => ({
  id,
  host,
  guest,
  open,
  close,
});

describe("bench randomness", () => {
  test("the same seed gives the same sequence", () => {
    const a = seededRandom(42);
    const b = seededRandom(42);
    assert.deepEqual(
      Array.from({ length: 5 }, () => a()),
      Array.from({ length: 5 }, () => b()),
    );
  });

  test("Zipf gives rank 0 about its theoretical share", () => {
    const draw = zipfSampler(100, 1, seededRandom(3));
    let top = 0;
    for (let i = 0; i < 20_000; i++) if (draw() === 0) top++;
    assert.ok(Math.abs(top / 20_000 - zipfTopShare(100, 1)) < 0.02);
  });
});

describe("bench stats", () => {
  test("nearest-rank percentiles", () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1);
    assert.equal(percentile(values, 50), 50);
    assert.equal(percentile(values, 99), 99);
    assert.equal(summarize([3, 1, 2]).max, 3);
  });

  test("item sizes follow DynamoDB's rules for strings and names", () => {
    assert.equal(sizeOf({ pk: "abc" }), 5);
    assert.ok(sizeOf({ n: 12345 }) >= 4);
  });
});

describe("bench traces", () => {
  test("generation is deterministic and sessions are well formed", () => {
    const a = generateTrace(small);
    const b = generateTrace(small);
    assert.deepEqual(a.sessions, b.sessions);
    assert.ok(a.sessions.length > 50);
    for (const s of a.sessions) {
      assert.ok(s.host >= 0 && s.host < small.hosts);
      assert.ok(s.guest >= small.hosts && s.guest < small.hosts + small.guests);
      assert.ok(s.close > s.open);
    }
    assert.notDeepEqual(generateTrace({ ...small, seed: 12 }).sessions, a.sessions);
  });

  test("closes come before opens at the same instant", () => {
    const events = traceEvents([session(0, 0, 10, 0, 100), session(1, 0, 11, 100, 200)], 1000);
    assert.deepEqual(
      events.map((e) => `${e.kind}${e.session.id}@${e.at}`),
      ["open0@0", "close0@100", "open1@100", "close1@200"],
    );
  });

  test("the sweep's L agrees with the domain's busiestParticipantLoad", () => {
    const trace = generateTrace(small);
    const c = concurrency(trace.sessions, trace.length, small.hosts);
    const open = openAt(trace.sessions, c.lAt).map((s) => [String(s.host), String(s.guest)] as const);
    assert.equal(busiestParticipantLoad(open), c.L);
    assert.ok(c.peakSessions >= c.L);
  });

  test("a shared number per session: first fit stays within 2L-1, balanced pools of 2L-1 never fail", () => {
    const trace = generateTrace(small);
    const c = concurrency(trace.sessions, trace.length, small.hosts);
    const firstFit = simulateSharedNumber(trace.sessions, trace.length, { kind: "first-fit" }, c.peakAt);
    assert.ok(firstFit.needed >= c.L && firstFit.needed <= 2 * c.L - 1);
    const bound = simulateSharedNumber(
      trace.sessions,
      trace.length,
      { kind: "least-loaded", poolSize: 2 * c.L - 1 },
      c.peakAt,
    );
    assert.equal(bound.failures, 0);
    const tooSmall = simulateSharedNumber(
      trace.sessions,
      trace.length,
      { kind: "least-loaded", poolSize: c.L - 1 },
      c.peakAt,
    );
    assert.ok(tooSmall.failures > 0);
    const found = smallestSharedPool(trace.sessions, trace.length, c.L, 2 * c.L - 1, c.peakAt);
    assert.equal(found.result.failures, 0);
  });

  test("two busy participants make a balanced shared-number pool need 2L-1", () => {
    // A and B each hold L-1 sessions with others (balanced onto different numbers), then A and B meet.
    const L = 4;
    const sessions: TraceSession[] = [];
    for (let i = 0; i < L - 1; i++) sessions.push(session(sessions.length, 0, 100 + i, i, 10_000));
    for (let i = 0; i < L - 1; i++) sessions.push(session(sessions.length, 1, 200 + i, 10 + i, 10_000));
    sessions.push(session(sessions.length, 0, 1, 100, 10_000));
    const c = concurrency(sessions, 20_000, 2);
    assert.equal(c.L, L);
    const run = (poolSize: number) =>
      simulateSharedNumber(sessions, 20_000, { kind: "least-loaded", poolSize }, c.peakAt).failures;
    assert.equal(run(2 * L - 2), 1);
    assert.equal(run(2 * L - 1), 0);
  });
});

describe("bench in-memory store under the real SessionService", () => {
  async function replay(sessions: TraceSession[], until: number, hosts: number, poolSize: number) {
    let now = Date.parse("2025-03-03T00:00:00Z");
    const start = now;
    const store = new MemoryStore();
    const service = new SessionService({
      store,
      queue: { enqueue: async () => {} },
      clock: { now: () => now },
      newId,
      quarantineSeconds: 3600,
    });
    for (let i = 0; i < poolSize; i++) await service.addNumber(phoneOf.pool(i) as E164);
    const ids = new Map<number, string>();
    const held = new Map<string, Set<string>>();
    let failures = 0;
    for (const e of traceEvents(sessions, until)) {
      now = start + e.at;
      if (e.kind === "open") {
        try {
          const { session: opened } = await service.openSession({
            participants: [
              { phoneNumber: phoneOf.participant(e.session.host, hosts) as E164 },
              { phoneNumber: phoneOf.participant(e.session.guest, hosts) as E164 },
            ],
            mode: "sms",
            ttlSeconds: 365 * 24 * 3600,
            ttlMode: "absolute",
          });
          ids.set(e.session.id, opened.sessionId);
          for (const p of opened.participants) {
            const mine = held.get(p.phoneNumber) ?? new Set();
            assert.ok(!mine.has(p.proxyNumber), "a participant got a proxy it already holds");
            mine.add(p.proxyNumber);
            held.set(p.phoneNumber, mine);
          }
        } catch (error) {
          if (!(error instanceof PoolExhaustedError)) throw error;
          failures++;
        }
      } else {
        const id = ids.get(e.session.id);
        if (!id) continue;
        const closed = await service.closeSession(id);
        for (const p of closed.participants) held.get(p.phoneNumber)?.delete(p.proxyNumber);
      }
    }
    return failures;
  }

  test("two busy participants meeting: a pool of L is enough", async () => {
    const L = 4;
    const sessions: TraceSession[] = [];
    for (let i = 0; i < L - 1; i++) sessions.push(session(sessions.length, 0, 100 + i, i, 10_000));
    for (let i = 0; i < L - 1; i++) sessions.push(session(sessions.length, 1, 200 + i, 10 + i, 10_000));
    sessions.push(session(sessions.length, 0, 1, 100, 10_000));
    assert.equal(await replay(sessions, 20_000, 2, L), 0);
  });

  test("a pool of exactly L never runs out; L-1 does", async () => {
    const trace = generateTrace(small);
    const c = concurrency(trace.sessions, trace.length, small.hosts);
    assert.equal(await replay(trace.sessions, trace.length, small.hosts, c.L), 0);
    assert.ok((await replay(trace.sessions, trace.length, small.hosts, c.L - 1)) > 0);
  });
});

describe("bench hub replay (MAX_PROXIES_PER_PARTICIPANT)", () => {
  test("a small trace with a cap: pool cap + 1, every message delivered to its counterpart or prompted, none misrouted", async () => {
    const trace = generateTrace({
      hosts: 20,
      guests: 300,
      days: 2,
      zipf: 1,
      tripsPerDay: 40,
      seed: 3,
      bookingMedianHours: 30,
      inquiryMedianHours: 6,
    });
    const { L } = concurrency(trace.sessions, trace.length, 20);
    const cap = 2;
    assert.ok(L > cap + 1, "the trace needs a hub at this cap");
    const result = await hubReplay({
      sessions: trace.sessions,
      until: trace.length,
      hosts: 20,
      poolSize: cap + 1,
      cap,
      quarantineSeconds: 3600,
      forgetTag: 0.5,
      messagesPerSession: 2,
      seed: 3,
    });
    assert.equal(result.failures, 0);
    assert.equal(result.otherErrors, 0);
    assert.ok(result.hubSessions > 0 && result.viaHub > 0);
    assert.equal(result.misrouted, 0);
    assert.equal(result.untaggedMisrouted, 0);
    assert.equal(result.delivered + result.other, result.messages);
    assert.ok(result.prompted > 0, "forgotten tags with several threads open get the prompt");
    assert.ok(result.prompted + result.untaggedDelivered <= result.untagged);
  });
});

describe("bench process CPU", { skip: process.platform !== "linux" && "reads /proc" }, () => {
  test("a busy child's CPU counts in its own tree and in its parent's, not in an unrelated one", async () => {
    const child = spawn(process.execPath, ["-e", "for (;;);"]);
    try {
      const pid = child.pid ?? 0;
      const deadline = Date.now() + 20_000;
      while (treeCpu(pid).node < 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      const own = treeCpu(pid);
      assert.ok(own.node >= 200, `the busy child's CPU is counted (${own.node} ms)`);
      assert.equal(own.jvm, 0, "no JVM in its tree");
      assert.ok(treeCpu().node >= own.node, "the parent's tree includes its child");
      assert.deepEqual(treeCpu(2 ** 22 + 1), { jvm: 0, node: 0 }, "a root that does not exist has none");
    } finally {
      child.kill("SIGKILL");
      await once(child, "exit");
    }
  });
});
