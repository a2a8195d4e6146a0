import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import fc from "fast-check";
import { scanTable } from "../../scripts/rebuild-lib.ts";
import { MemoryStore } from "../../shared/adapters/memory-store.ts";
import { ForwardService } from "../../shared/app/forward.ts";
import { InboundService } from "../../shared/app/inbound.ts";
import { RecyclerService } from "../../shared/app/recycler.ts";
import { SessionService } from "../../shared/app/sessions.ts";
import { DomainError } from "../../shared/domain/errors.ts";
import { type DomainEvent, eventTypes, type SessionMode, type TtlMode } from "../../shared/domain/events.ts";
import type { E164 } from "../../shared/domain/phone.ts";
import type { Item } from "../../shared/domain/projection.ts";
import type { Session } from "../../shared/domain/session.ts";
import {
  type ConsentRecords,
  type ErasureStore,
  type EventStore,
  type ForwardJob,
  type HubThreads,
  type IdempotencyRecords,
  type MessageLog,
  type PoolView,
  type RouteLookup,
  type SendClaims,
  type SessionIndex,
  type SessionReader,
  type SmsGateway,
  SmsSendError,
  type TrafficReads,
} from "../../shared/ports.ts";
import {
  compareProjections,
  describeDifference,
  eventsOf,
  rebuildFromItems,
  sortEvents,
} from "../../shared/rebuild.ts";
import { testReplies, testTraffic } from "../support/pipeline.ts";
import { startLocalAws } from "../support/stack.ts";

/**
 * Parity of the stores and of the rebuild: random command sequences run through the real services twice,
 * on DynamoDB Local and on the in-memory store, with the same clock and ids. (a) DynamoDB's projections are
 * what its own events fold to; (b) both stores hold the same projections and the same events.
 */
const PEOPLE = ["+12025550501", "+12025550502", "+12025550503", "+12025550504"] as E164[];
const POOL = ["+12025550951", "+12025550952", "+12025550953", "+447700900951"] as E164[];
const START = Date.UTC(2031, 0, 6, 9);
const RETENTION_SECONDS = 3600;

type Store = EventStore &
  SessionReader &
  PoolView &
  IdempotencyRecords &
  MessageLog &
  RouteLookup &
  SendClaims &
  SessionIndex &
  TrafficReads &
  ConsentRecords &
  HubThreads &
  ErasureStore;

type Command =
  | { t: "open"; a: number; d: number; ttlSeconds: number; ttlMode: TtlMode; mode: SessionMode }
  | { t: "close"; s: number }
  | { t: "update"; s: number; ttlSeconds: number; mode: SessionMode | undefined }
  | { t: "expire"; seconds: number }
  | { t: "add"; n: number }
  | { t: "retire"; n: number }
  | { t: "platform"; s: number; to: number }
  /** From a participant of an opened session to their proxy, or (stray) from anyone to any pool number. */
  | { t: "sms"; s: number; side: number; stray: boolean; optOut: boolean }
  | { t: "call"; s: number; side: number; stray: boolean }
  | { t: "forward"; j: number; fail: boolean }
  | { t: "status"; m: number; status: "delivered" | "undelivered" | "failed" | "sent" }
  /** DELETE /participants/{e164}: the one sanctioned rewrite of stored events, on both stores alike. */
  | { t: "erase"; p: number };

const person = fc.nat(PEOPLE.length - 1);
const number = fc.nat(POOL.length - 1);
const command: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant("open" as const),
      a: person,
      d: fc.integer({ min: 1, max: PEOPLE.length - 1 }),
      ttlSeconds: fc.constantFrom(60, 600, 3600),
      ttlMode: fc.constantFrom<TtlMode>("absolute", "sliding"),
      mode: fc.constantFrom<SessionMode>("sms", "voice", "sms+voice"),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("close" as const), s: fc.nat(20) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("update" as const),
      s: fc.nat(20),
      ttlSeconds: fc.constantFrom(60, 600, 7200),
      mode: fc.constantFrom<SessionMode | undefined>(undefined, "sms", "sms+voice"),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ t: fc.constant("expire" as const), seconds: fc.constantFrom(30, 120, 900, 4000) }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("add" as const), n: number }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("retire" as const), n: number }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant("platform" as const), s: fc.nat(20), to: fc.nat(1) }) },
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant("sms" as const),
      s: fc.nat(20),
      side: fc.nat(1),
      stray: fc.nat(3).map((n) => n === 0),
      optOut: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("call" as const),
      s: fc.nat(20),
      side: fc.nat(1),
      stray: fc.boolean(),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      t: fc.constant("forward" as const),
      j: fc.nat(20),
      fail: fc.nat(3).map((n) => n === 0),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant("status" as const),
      m: fc.nat(20),
      status: fc.constantFrom<"delivered" | "undelivered" | "failed" | "sent">(
        "delivered",
        "delivered",
        "undelivered",
        "failed",
        "sent",
      ),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("erase" as const), p: person }) },
);

/** One run of the commands on one store: deterministic clock (1 ms per reading) and ids. */
async function play(commands: readonly Command[], store: Store) {
  let t = START;
  const clock = { now: () => t++ };
  let n = 0;
  const newId = (prefix: string) => `${prefix}_${String(++n).padStart(8, "0")}`;
  const jobs: ForwardJob[] = [];
  const sent: { messageId: string; sid: string }[] = [];
  const opened: Session[] = [];
  let failNext = false;
  let sids = 0;
  const gateway: SmsGateway = {
    send: async () => {
      if (failNext) throw new SmsSendError("permanent", 400, "21610", null);
      return { sid: `SMout${String(++sids).padStart(27, "0")}` };
    },
    findSent: async () => undefined,
  };
  const common = {
    store,
    queue: { enqueue: async (job: ForwardJob) => void jobs.push(job) },
    clock,
    newId,
    quarantineSeconds: 1800,
  };
  // A cap of 1 proxy per person: with four people, sessions over it go on hubs (threads, tags, counts).
  const sessions = new SessionService({ ...common, maxProxiesPerParticipant: 1 });
  const inbound = new InboundService({
    ...common,
    ...testReplies,
    traffic: testTraffic({ autoReplyIntervalSeconds: 600, senderRateLimit: { count: 2, seconds: 60 } }),
  });
  const forward = new ForwardService({
    ...common,
    gateway,
    statusCallbackUrl: () => undefined,
    claimStaleMs: 30_000,
    maxInlineRetries: 0,
  });
  const recycler = new RecyclerService({
    ...common,
    metrics: { poolHealth: () => {} },
    poolLowHeadroom: 1,
    topUp: undefined,
  });
  const pick = <T>(list: readonly T[], i: number) => list[i % list.length];
  const sender = (c: { s: number; side: number; stray: boolean }) => {
    const participant = pick(opened, c.s)?.participants[c.side];
    if (c.stray || !participant)
      return { from: PEOPLE[c.s % PEOPLE.length] as E164, to: POOL[(c.s + c.side) % POOL.length] as E164 };
    return { from: participant.phoneNumber as E164, to: participant.proxyNumber as E164 };
  };

  const run = async (c: Command, i: number): Promise<string> => {
    switch (c.t) {
      case "open": {
        const a = PEOPLE[c.a] as E164;
        const b = PEOPLE[(c.a + c.d) % PEOPLE.length] as E164;
        const { session } = await sessions.openSession({
          participants: [{ phoneNumber: a }, { phoneNumber: b, id: `guest-${i}` }],
          mode: c.mode,
          ttlSeconds: c.ttlSeconds,
          ttlMode: c.ttlMode,
        });
        opened.push(session);
        return `opened ${session.participants.map((p) => p.proxyNumber).join(",")}`;
      }
      case "close": {
        const session = pick(opened, c.s);
        if (!session) return "no session";
        return `closed: ${(await sessions.closeSession(session.sessionId)).status}`;
      }
      case "update": {
        const session = pick(opened, c.s);
        if (!session) return "no session";
        const updated = await sessions.updateSession(session.sessionId, {
          ttlSeconds: c.ttlSeconds,
          ...(c.mode ? { mode: c.mode } : {}),
        });
        return `updated: ${updated.expiresAt} ${updated.mode}`;
      }
      case "expire": {
        t += c.seconds * 1000;
        const report = await recycler.run({ budgetMs: 500, batchSize: 1 });
        return `expired ${report.expired}${report.more ? " more" : ""}`;
      }
      case "add":
        return `added ${(await sessions.addNumber(POOL[c.n] as E164)).created}`;
      case "retire":
        return `retire: ${(await sessions.retireNumber(POOL[c.n] as E164)).status}`;
      case "platform": {
        const session = pick(opened, c.s);
        if (!session) return "no session";
        const to = session.participants[c.to]?.phoneNumber ?? "";
        const { messageId } = await sessions.sendPlatformMessage(session.sessionId, {
          to,
          body: `note ${i}`,
        });
        return `platform ${messageId}`;
      }
      case "sms": {
        const { from, to } = sender(c);
        const { reply, duplicate } = await inbound.receiveSms({
          messageSid: `SMin${String(i).padStart(28, "0")}`,
          from,
          to,
          // Keywords alternate between opting out and back in, so both consent events occur.
          body: c.optOut ? (i % 2 ? "STOP" : "START") : `text ${i}`,
          mediaUrls: [],
          optOutType: undefined,
        });
        return `sms reply=${reply !== null} duplicate=${duplicate}`;
      }
      case "call": {
        const answer = await inbound.receiveCall({
          callSid: `CA${String(i).padStart(32, "0")}`,
          ...sender(c),
        });
        return `call ${answer.kind}`;
      }
      case "forward": {
        const job = pick(jobs, c.j);
        if (!job) return "no job";
        failNext = c.fail;
        const before = sids;
        const outcome = await forward.forward(job);
        if (sids > before)
          sent.push({ messageId: job.messageId, sid: `SMout${String(sids).padStart(27, "0")}` });
        return `forward ${outcome}`;
      }
      case "status": {
        const message = pick(sent, c.m);
        if (!message) return "no send";
        await inbound.recordStatus({
          messageId: message.messageId,
          twilioSid: message.sid,
          status: c.status,
          errorCode: c.status === "delivered" || c.status === "sent" ? undefined : "30003",
        });
        return `status ${c.status}`;
      }
      case "erase": {
        const erased = await sessions.erase(PEOPLE[c.p] as E164);
        return `erased ${erased.sessions}/${erased.events}/${erased.messages}`;
      }
      default:
        throw new Error(`unknown command ${JSON.stringify(c satisfies never)}`);
    }
  };

  await sessions.addNumber(POOL[0] as E164);
  await sessions.addNumber(POOL[1] as E164);
  const outcomes: string[] = [];
  for (const [i, c] of commands.entries()) {
    t += 1000;
    try {
      outcomes.push(await run(c, i));
    } catch (error) {
      // Refusals (pool exhausted, session not open, unknown number) are outcomes; anything else fails.
      if (!(error instanceof DomainError)) throw error;
      outcomes.push(error.name);
    }
  }
  return { outcomes, now: t };
}

const eventList = (items: Iterable<Item>): DomainEvent[] => {
  const { events, unparseable } = eventsOf(items);
  assert.deepEqual(unparseable, []);
  return sortEvents(events);
};

describe("parity: DynamoDB and in-memory stores, and the rebuild, under random command sequences", () => {
  let aws: Awaited<ReturnType<typeof startLocalAws>>;
  before(async () => {
    aws = await startLocalAws();
  });
  after(async () => aws.stop());

  test("same projections and events in both stores; DynamoDB's projections are the fold of its events", async () => {
    let runs = 0;
    const seen = new Set<string>();
    let commandCount = 0;
    let eventCount = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(command, { minLength: 15, maxLength: 30 }), async (commands) => {
        const { tableName, store } = await aws.fresh();
        const dynamo = await play(commands, store);
        const memory = new MemoryStore({ retentionSeconds: RETENTION_SECONDS });
        const inMemory = await play(commands, memory);
        assert.deepEqual(inMemory.outcomes, dynamo.outcomes, "the same answers");
        assert.equal(inMemory.now, dynamo.now);

        const items = await scanTable(aws.doc, tableName);
        // (a) What DynamoDB holds is what its events say, by the rebuild's own rule.
        const rebuilt = await rebuildFromItems(items, {
          retentionSeconds: RETENTION_SECONDS,
          now: dynamo.now,
        });
        assert.deepEqual(rebuilt.differences.map(describeDifference), [], "DynamoDB vs its fold");
        // (b) The two stores agree, projections and events.
        const parity = compareProjections(items, memory.items(), { now: dynamo.now });
        assert.deepEqual(parity.differences.map(describeDifference), [], "DynamoDB vs memory");
        const events = eventList(items);
        assert.deepEqual(eventList(memory.items()), events);
        runs++;
        for (const e of events) seen.add(e.type);
        for (const i of items) if (i.kind === "hub-thread") seen.add("hub-thread");
        commandCount += commands.length;
        eventCount += events.length;
      }),
      { seed: 20261127, numRuns: 20, endOnFailure: true },
    );
    process.stdout.write(`# ${runs} runs, ${commandCount} commands, ${eventCount} events on each store\n`);
    // Not vacuous: with this seed the sequences reach every event that changes a projection.
    const projected = eventTypes.filter((type) => type !== "PoolHealthReported" && type !== "PoolLow");
    assert.deepEqual(
      projected.filter((type) => !seen.has(type)),
      [],
      "event types never generated",
    );
    assert.ok(seen.has("hub-thread"), "sessions over the cap went on hubs");
  });
});
