/**
 * Pool efficiency: how many proxy numbers Maskline needs for a month of marketplace sessions, against the
 * lower bound L, a shared-number-per-session allocator (Plivo's 2L−1 model) and one number per
 * conversation; plus allocation latency on DynamoDB Local against one bare TransactWriteItems of the same
 * size.
 *
 *   npm run bench:pool [-- --quick] [-- --hosts 2000 --guests 50000 --days 30 --seed 7 ...]
 *
 * The full trace (~90k sessions) goes through the real SessionService with an in-memory store (same
 * allocator, same decider, same guards as DynamoStore); a window of it goes through SessionService +
 * DynamoStore on DynamoDB Local, which is too slow on 2 cores for the whole month (the bench measures and
 * prints how slow).
 */
import { TransactWriteCommand } from "@aws-sdk/lib-dynamodb";
import { DynamoStore } from "../shared/adapters/dynamo-store.ts";
import { newId } from "../shared/adapters/ids.ts";
import { MemoryStore } from "../shared/adapters/memory-store.ts";
import type { SessionServiceDeps } from "../shared/app/sessions.ts";
import { SessionService } from "../shared/app/sessions.ts";
import { busiestParticipantLoad } from "../shared/domain/allocation.ts";
import { PoolExhaustedError } from "../shared/domain/errors.ts";
import type { E164 } from "../shared/domain/phone.ts";
import { decideNumber } from "../shared/domain/pool.ts";
import { faultyDynamo } from "../test/support/faulty-dynamo.ts";
import { startLocalAws } from "../test/support/stack.ts";
import { benchOptions, heading, log, quietNodeWarnings } from "./lib/cli.ts";
import { hubReplay } from "./lib/hub-replay.ts";
import { AwsMeter, capacityKind, type MeteredCall, sizeOf } from "./lib/meter.ts";
import { main, onCleanup } from "./lib/processes.ts";
import { int, ms, ratio, summarize, table, usd } from "./lib/stats.ts";
import {
  concurrency,
  generateTrace,
  openAt,
  phoneOf,
  simulateSharedNumber,
  smallestSharedPool,
  TRACE_START,
  type TraceSession,
  traceEvents,
  windowOf,
} from "./lib/trace.ts";

quietNodeWarnings();

const options = benchOptions({
  hosts: { full: 2000, quick: 200, help: "hosts (Zipf popularity)" },
  guests: { full: 50_000, quick: 5000, help: "guests" },
  days: { full: 30, quick: 7, help: "simulated days" },
  "trips-per-day": { full: 1700, quick: 170, help: "guest trips per day (1-4 host contacts each)" },
  zipf: { full: 1, quick: 1, help: "Zipf exponent of host popularity" },
  seed: { full: 7, quick: 7, help: "trace seed" },
  "booking-hours": { full: 60, quick: 60, help: "median booking session length, hours" },
  "inquiry-hours": { full: 8, quick: 8, help: "median inquiry session length, hours" },
  "quarantine-hours": { full: 24, quick: 24, help: "pair quarantine after a session ends" },
  "window-hours": { full: 6, quick: 8, help: "trace window replayed on DynamoDB Local" },
  burst: { full: 20, quick: 6, help: "concurrent allocations for one host in the race check" },
  "size-opens": { full: 300, quick: 60, help: "sequential opens measured at each pool size" },
  "large-pool": { full: 10_000, quick: 2000, help: "the large pool size (against a pool of 100)" },
  "price-per-number": { full: 1.15, quick: 1.15, help: "USD per number per month" },
  "messages-per-session": { full: 2, quick: 2, help: "messages per session in the hub replay" },
  "hub-only": { full: 0, quick: 0, help: "1: only the hub section (caps side by side)" },
  "races-only": { full: 0, quick: 0, help: "1: only the races section (concurrent opens, both rules)" },
  "processing-ms": {
    full: 20,
    quick: 20,
    help: "modelled rule: how long real DynamoDB holds a transaction's items (its own processing)",
  },
});

const HOUR = 3600_000;
const PRICE = options["price-per-number"];
const QUARANTINE_SECONDS = options["quarantine-hours"] * 3600;

interface ReplayResult {
  opened: number;
  closed: number;
  failures: number;
  otherErrors: number;
  openMs: number[];
  closeMs: number[];
  wallMs: number;
  /** Open pairs per pool number at the busiest instant. */
  loadAtPeak: number[];
}

/** Replays trace events through the real SessionService over `store`, on the trace's own clock. */
async function replay(
  store: SessionServiceDeps["store"],
  sessions: readonly TraceSession[],
  until: number,
  poolSize: number,
  peakAt: number,
  afterOpen?: () => Promise<void>,
): Promise<ReplayResult> {
  const start = TRACE_START;
  let now = start;
  const service = new SessionService({
    store,
    // Opening and closing sessions enqueues nothing.
    queue: { enqueue: async () => {} },
    clock: { now: () => now },
    newId,
    quarantineSeconds: QUARANTINE_SECONDS,
  });
  for (let i = 0; i < poolSize; i++) await service.addNumber(phoneOf.pool(i) as E164);
  const hosts = options.hosts;
  const ids = new Map<number, string>();
  const result: ReplayResult = {
    opened: 0,
    closed: 0,
    failures: 0,
    otherErrors: 0,
    openMs: [],
    closeMs: [],
    wallMs: 0,
    loadAtPeak: [],
  };
  const began = performance.now();
  let snapshotTaken = false;
  for (const event of traceEvents(sessions, until)) {
    if (!snapshotTaken && event.at > peakAt) {
      result.loadAtPeak = (await store.listPool()).map((n) => n.load);
      snapshotTaken = true;
    }
    now = start + event.at;
    const s = event.session;
    if (event.kind === "open") {
      const t = performance.now();
      try {
        const { session } = await service.openSession({
          participants: [
            { phoneNumber: phoneOf.participant(s.host, hosts) as E164 },
            { phoneNumber: phoneOf.participant(s.guest, hosts) as E164 },
          ],
          mode: "sms+voice",
          ttlSeconds: Math.max(60, Math.ceil((s.close - s.open) / 1000) + 3600),
          ttlMode: "absolute",
        });
        result.openMs.push(performance.now() - t);
        ids.set(s.id, session.sessionId);
        result.opened++;
        await afterOpen?.();
      } catch (error) {
        if (error instanceof PoolExhaustedError) result.failures++;
        else {
          result.otherErrors++;
          if (result.otherErrors <= 3) log(`  unexpected error: ${(error as Error).message}`);
        }
      }
    } else {
      const id = ids.get(s.id);
      if (!id) continue;
      const t = performance.now();
      await service.closeSession(id);
      result.closeMs.push(performance.now() - t);
      result.closed++;
    }
  }
  if (!snapshotTaken) result.loadAtPeak = (await store.listPool()).map((n) => n.load);
  result.wallMs = performance.now() - began;
  return result;
}

main(async () => {
  heading(`bench:pool${options.quick ? " (quick)" : ""}`);
  const hubOnly = options["hub-only"] === 1;
  const genStarted = performance.now();
  const trace = generateTrace({
    hosts: options.hosts,
    guests: options.guests,
    days: options.days,
    zipf: options.zipf,
    tripsPerDay: options["trips-per-day"],
    seed: options.seed,
    bookingMedianHours: options["booking-hours"],
    inquiryMedianHours: options["inquiry-hours"],
  });
  const c = concurrency(trace.sessions, trace.length, options.hosts);
  const genMs = performance.now() - genStarted;
  // The domain's own definition of the bound, at the instant the sweep found it.
  const domainL = busiestParticipantLoad(
    openAt(trace.sessions, c.lAt).map((s) => [String(s.host), String(s.guest)] as const),
  );
  const busiestKind = c.busiest < options.hosts ? `host #${c.busiest + 1} by popularity` : "a guest";
  log(
    `trace: seed ${options.seed}, ${int(options.hosts)} hosts (Zipf s=${options.zipf}), ${int(options.guests)} guests, ` +
      `${options.days} days, ${int(c.totalSessions)} sessions (generated in ${ms(genMs, 0)})`,
  );
  log(
    `  peak concurrent sessions ${int(c.peakSessions)} (day ${(c.peakAt / (24 * HOUR)).toFixed(1)}); ` +
      `busiest participant: ${busiestKind}, ${c.L} at once (day ${(c.lAt / (24 * HOUR)).toFixed(1)}); busiest guest ${c.guestL}`,
  );
  log(`  L = ${c.L} (sweep) = ${domainL} (shared/domain busiestParticipantLoad at that instant)`);
  if (!options.quick && c.peakSessions < 5000)
    log("  note: peak below 5,000 concurrent sessions with these options");

  if (hubOnly) {
    await hubSection(trace.sessions, trace.length, c.L);
    return;
  }
  if (options["races-only"] === 1) {
    await racesSection();
    return;
  }
  // ---- Full trace, real SessionService, in-memory store --------------------------------------------------
  heading("Full trace through SessionService (in-memory store, same allocator and guards)");
  const atL = await replay(new MemoryStore(), trace.sessions, trace.length, c.L, c.peakAt);
  const belowL = await replay(new MemoryStore(), trace.sessions, trace.length, c.L - 1, c.peakAt);
  const openCpu = summarize(atL.openMs);
  log(
    table([
      ["pool", "sessions opened", "closed", "pool exhausted", "other errors", "replay time"],
      [
        `L = ${c.L}`,
        int(atL.opened),
        int(atL.closed),
        int(atL.failures),
        int(atL.otherErrors),
        ms(atL.wallMs, 0),
      ],
      [
        `L-1 = ${c.L - 1}`,
        int(belowL.opened),
        int(belowL.closed),
        int(belowL.failures),
        int(belowL.otherErrors),
        ms(belowL.wallMs, 0),
      ],
    ]),
  );
  log(
    `  allocation CPU per openSession at pool ${c.L} (no I/O): p50 ${ms(openCpu.p50, 3)}, p99 ${ms(openCpu.p99, 3)}`,
  );
  const loads = summarize(atL.loadAtPeak);
  const totalPairs = atL.loadAtPeak.reduce((a, b) => a + b, 0);
  log(
    `  load at peak: ${int(totalPairs)} open pairs on ${atL.loadAtPeak.length} numbers, per number ` +
      `mean ${loads.mean.toFixed(1)}, max ${loads.max}, min ${Math.min(...atL.loadAtPeak)}`,
  );

  // ---- Below the lower bound: hub numbers -----------------------------------------------------------------
  await hubSection(trace.sessions, trace.length, c.L);

  // ---- Pool models ---------------------------------------------------------------------------------------
  heading("Pool needed for this trace, and what it costs");
  const firstFit = simulateSharedNumber(trace.sessions, trace.length, { kind: "first-fit" }, c.peakAt);
  const balanced = smallestSharedPool(trace.sessions, trace.length, c.L, 2 * c.L - 1, c.peakAt);
  // Outbound traffic a number carries, in "sessions' worth": a Maskline pair sends one direction of a
  // session (half its messages), a shared number sends both directions of each of its sessions.
  const busiest = (loadAtPeak: number[], perUnit: number) => Math.max(0, ...loadAtPeak) * perUnit;
  const models: [string, number, string, string][] = [
    [
      "Maskline (own proxy per participant)",
      c.L,
      atL.failures === 0 ? "replayed: 0 failures" : "FAILURES",
      busiest(atL.loadAtPeak, 0.5).toFixed(1),
    ],
    ["lower bound L (busiest participant)", c.L, "by definition", ""],
    [
      "shared number per session, first fit",
      firstFit.needed,
      "simulated, smallest pool",
      busiest(firstFit.loadAtPeak, 1).toFixed(1),
    ],
    [
      "shared number per session, balanced",
      balanced.poolSize,
      "simulated, bisection",
      busiest(balanced.result.loadAtPeak, 1).toFixed(1),
    ],
    ["shared number per session, 2L-1", 2 * c.L - 1, "Plivo's published sizing", ""],
    ["one number per conversation", c.peakSessions, "peak concurrent sessions", "1.0"],
  ];
  log(
    table([
      ["model", "numbers", "per month", "vs Maskline", "how", "busiest number at peak*"],
      ...models.map(([name, n, how, load]) => [name, int(n), usd(n * PRICE, 0), ratio(n, c.L), how, load]),
    ]),
  );
  log(`  (${usd(PRICE)} per number per month)`);
  log("  * outbound traffic of the busiest number at the peak instant, in sessions' worth of messages");
  log(
    `    (a Maskline pair carries one direction of a session; Maskline: ${loads.mean.toFixed(1)} pairs per number on average, ` +
      `max ${loads.max})`,
  );

  // The case the 2L-1 sizing exists for: two participants, each already at L-1 sessions, open one together.
  const meet: TraceSession[] = [];
  for (let i = 0; i < c.L - 1; i++)
    meet.push({ id: meet.length, host: 0, guest: 10 + i, open: i, close: 1e9 });
  for (let i = 0; i < c.L - 1; i++)
    meet.push({ id: meet.length, host: 1, guest: 10 + c.L + i, open: c.L + i, close: 1e9 });
  meet.push({ id: meet.length, host: 0, guest: 1, open: 2 * c.L, close: 1e9 });
  const meetShared = smallestSharedPool(meet, 1e9, c.L, 2 * c.L - 1, 0);
  const meetOurs = await replay(new MemoryStore(), meet, 1e9, c.L, 0);
  log(
    `  two participants at ${c.L - 1} sessions each open one together: balanced shared numbers need ` +
      `${meetShared.poolSize} (2L-1), Maskline opens it with a pool of L = ${c.L} (${meetOurs.failures} failures)`,
  );

  // ---- DynamoDB Local: a window of the trace through SessionService + DynamoStore ------------------------
  heading("Window of the trace through SessionService + DynamoStore on DynamoDB Local");
  const windowMs = options["window-hours"] * HOUR;
  const until = c.lAt + 1;
  const windowSessions = windowOf(trace.sessions, Math.max(0, until - windowMs), until);
  const w = concurrency(windowSessions, until, options.hosts);
  log(
    `window: the ${options["window-hours"]} h up to the instant of L (day ${((until - windowMs) / (24 * HOUR)).toFixed(2)}–` +
      `${(until / (24 * HOUR)).toFixed(2)}), ${int(w.totalSessions)} sessions opened in it; its own bound L_w = ${w.L}`,
  );
  // Each phase gets its own DynamoDB Local: its in-memory database slows down as earlier phases fill it.
  let aws = await localAws();
  const meter = new AwsMeter().attach(aws.doc, "dynamodb");

  // The bare baseline: the same number of Puts, each the size of the item it mirrors, to fresh keys.
  // After each successful openSession, its (last, successful) transaction is copied into a bare one.
  let lastTransaction: MeteredCall | undefined;
  let lastOpenTransaction: Record<string, unknown>[] = [];
  let bareSeq = 0;
  let inBare = false;
  const bareMs: number[] = [];
  const appTxMs: number[] = [];
  meter.onCall = (call: MeteredCall) => {
    if (call.command !== "TransactWriteItemsCommand" || !call.ok) return;
    if (inBare) bareMs.push(call.ms);
    else lastTransaction = call;
  };

  const fixtureL = await aws.fresh();
  const bare = async () => {
    if (!lastTransaction) return;
    appTxMs.push(lastTransaction.ms);
    lastOpenTransaction =
      (lastTransaction.input.TransactItems as Record<string, unknown>[] | undefined) ?? [];
    lastTransaction = undefined;
    const shape = lastOpenTransaction;
    const n = bareSeq++;
    inBare = true;
    try {
      await aws.doc.send(
        new TransactWriteCommand({
          TransactItems: shape.map((item, i) => ({
            Put: {
              TableName: fixtureL.tableName,
              Item: {
                pk: `BARE#${n}`,
                sk: `ITEM#${i}`,
                pad: "x".repeat(Math.max(1, JSON.stringify(item).length - 60)),
              },
              ConditionExpression: "attribute_not_exists(pk)",
            },
          })),
        }),
      );
    } finally {
      inBare = false;
    }
  };
  const dynamoAtL = await replay(fixtureL.store, windowSessions, until, w.L, w.peakAt, bare);
  const perOpen = meter.list().map((stats) => ({ ...stats }));
  meter.onCall = undefined;
  await aws.stop();
  aws = await localAws();
  const fixtureBelow = await aws.fresh();
  const dynamoBelow = await replay(fixtureBelow.store, windowSessions, until, w.L - 1, w.peakAt);
  await aws.stop();
  log(
    table([
      ["pool", "sessions opened", "closed", "pool exhausted", "other errors", "replay time"],
      [
        `L_w = ${w.L}`,
        int(dynamoAtL.opened),
        int(dynamoAtL.closed),
        int(dynamoAtL.failures),
        int(dynamoAtL.otherErrors),
        ms(dynamoAtL.wallMs, 0),
      ],
      [
        `L_w-1 = ${w.L - 1}`,
        int(dynamoBelow.opened),
        int(dynamoBelow.closed),
        int(dynamoBelow.failures),
        int(dynamoBelow.otherErrors),
        ms(dynamoBelow.wallMs, 0),
      ],
    ]),
  );
  const open = summarize(dynamoAtL.openMs);
  const close = summarize(dynamoAtL.closeMs);
  const fullEstimateMin = (c.totalSessions * open.mean + atL.closed * (close.mean || open.mean / 2)) / 60_000;
  log(
    `  the whole ${options.days}-day trace this way: ≈ ${fullEstimateMin.toFixed(0)} min per pool size ` +
      `(${int(c.totalSessions)} opens × ${ms(open.mean)} + ${int(atL.closed)} closes × ${ms(close.mean)}), ` +
      "hence the in-memory replay above for the month and this window for the real path",
  );

  heading("Allocation latency on DynamoDB Local (same run, interleaved)");
  const tx = summarize(appTxMs);
  const bareS = summarize(bareMs);
  const items = lastOpenTransaction.length;
  log(
    table([
      ["", "p50", "p99", "mean", "n"],
      ["openSession (SessionService + DynamoStore)", ms(open.p50), ms(open.p99), ms(open.mean), int(open.n)],
      ["  its TransactWriteItems", ms(tx.p50), ms(tx.p99), ms(tx.mean), int(tx.n)],
      [
        `bare TransactWriteItems (${items} Puts, same sizes)`,
        ms(bareS.p50),
        ms(bareS.p99),
        ms(bareS.mean),
        int(bareS.n),
      ],
      ...(close.n ? [["closeSession", ms(close.p50), ms(close.p99), ms(close.mean), int(close.n)]] : []),
    ]),
  );
  log(
    `  openSession / bare transaction: p50 ${ratio(open.p50, bareS.p50)}, p99 ${ratio(open.p99, bareS.p99)}; ` +
      `the app's transaction / bare: p50 ${ratio(tx.p50, bareS.p50)}`,
  );
  const opensCount = dynamoAtL.opened || 1;
  // The meter saw the bare transactions and the pool set-up too; per session counts leave the bare ones out.
  const describe = perOpen
    .map((s) => ({ s, calls: s.calls - (s.command === "TransactWriteItemsCommand" ? bareMs.length : 0) }))
    .filter((d) => d.calls > 0);
  log(
    `  DynamoDB calls per session in this window (open, close when it closed, and pool set-up): ${describe
      .map((d) => `${(d.calls / opensCount).toFixed(2)} ${d.s.command.replace("Command", "")}`)
      .join(", ")}`,
  );
  const queryStats = perOpen.find((s) => s.command === "QueryCommand");
  const getStats = perOpen.find((s) => s.command === "GetItemCommand");
  log(
    `  inside openSession: the holdings of each participant (Query, p50 ${ms(summarize(queryStats?.ms ?? []).p50)} each) ` +
      `and whether either is one of our numbers (GetItem, p50 ${ms(summarize(getStats?.ms ?? []).p50)}), in parallel, then the transaction`,
  );
  log(
    `  reads: ${((queryStats?.capacity ?? 0) / opensCount).toFixed(1)} RCU of Query and ` +
      `${((getStats?.capacity ?? 0) / opensCount).toFixed(1)} RCU of GetItem per session at pool ${w.L} ` +
      `(a whole-pool read would be ≈ ${Math.ceil((c.L * poolItemBytes) / 4096)} RCU at pool ${c.L}; see the pool-size figures below)`,
  );

  // ---- Reads and latency per open against the pool's size ------------------------------------------
  heading("Reads and latency per open against the pool's size (fresh DynamoDB Local per size)");
  const sizes = [100, options["large-pool"]];
  const bySize: { size: number; open: ReturnType<typeof summarize>; rcu: number; warmMs: number }[] = [];
  for (const size of sizes) {
    aws = await localAws();
    const fixture = await aws.fresh();
    await seedPool(fixture.store, size);
    const sizeMeter = new AwsMeter().attach(aws.doc, "dynamodb");
    const service = new SessionService({
      store: fixture.store,
      queue: { enqueue: async () => {} },
      clock: { now: () => Date.now() },
      newId,
      quarantineSeconds: QUARANTINE_SECONDS,
    });
    const openOne = (i: number) =>
      service.openSession({
        participants: [
          { phoneNumber: `+1212${String(3_000_000 + i)}` as E164 },
          { phoneNumber: `+1303${String(3_000_000 + i)}` as E164 },
        ],
        mode: "sms",
        ttlSeconds: 3600,
        ttlMode: "absolute",
      });
    // A container's first request: whatever it reads once, it reads here (printed, not in the figures).
    let t = performance.now();
    await openOne(0);
    const warmMs = performance.now() - t;
    sizeMeter.reset();
    const times: number[] = [];
    const n = options["size-opens"];
    for (let i = 1; i <= n; i++) {
      t = performance.now();
      await openOne(i);
      times.push(performance.now() - t);
    }
    const rcu = sizeMeter
      .list()
      .filter((s) => capacityKind(s.command) === "read")
      .reduce((sum, s) => sum + s.capacity, 0);
    bySize.push({ size, open: summarize(times), rcu: rcu / n, warmMs });
    await aws.stop();
  }
  const [small, large] = bySize as [(typeof bySize)[number], (typeof bySize)[number]];
  log(
    table([
      ["pool", "opens", "p50", "p99", "read units per open", "first open (not counted)"],
      ...bySize.map((b) => [
        int(b.size),
        int(b.open.n),
        ms(b.open.p50),
        ms(b.open.p99),
        b.rcu.toFixed(2),
        ms(b.warmMs),
      ]),
    ]),
  );
  log(
    `  pool ${int(large.size)} / pool ${int(small.size)}: p50 ${ratio(large.open.p50, small.open.p50)}, ` +
      `p99 ${ratio(large.open.p99, small.open.p99)}, read units ${ratio(large.rcu, small.rcu)}`,
  );

  const hot = await racesSection();

  heading("Summary");
  log(
    table([
      ["figure", "ours", "baseline", "ratio"],
      [
        "pool numbers vs one number per conversation",
        int(c.L),
        int(c.peakSessions),
        ratio(c.L, c.peakSessions),
      ],
      [
        "pool numbers vs shared number per session, simulated",
        int(c.L),
        int(balanced.poolSize),
        ratio(c.L, balanced.poolSize),
      ],
      [
        "pool numbers vs shared number per session, 2L-1 sizing",
        int(c.L),
        int(2 * c.L - 1),
        ratio(c.L, 2 * c.L - 1),
      ],
      [
        "monthly number cost vs one number per conversation",
        usd(c.L * PRICE, 0),
        usd(c.peakSessions * PRICE, 0),
        ratio(c.L, c.peakSessions),
      ],
      ["failures at L / at L-1 (full trace)", int(atL.failures), int(belowL.failures), ""],
      ["failures at L_w / at L_w-1 (DynamoDB Local)", int(dynamoAtL.failures), int(dynamoBelow.failures), ""],
      ["allocation p50 vs bare transaction", ms(open.p50), ms(bareS.p50), ratio(open.p50, bareS.p50)],
      ["allocation p99 vs bare transaction", ms(open.p99), ms(bareS.p99), ratio(open.p99, bareS.p99)],
      [
        `open p99 at pool ${int(large.size)} vs pool ${int(small.size)}`,
        ms(large.open.p99),
        ms(small.open.p99),
        ratio(large.open.p99, small.open.p99),
      ],
      [
        `read units per open at pool ${int(large.size)} vs pool ${int(small.size)}`,
        large.rcu.toFixed(2),
        small.rcu.toFixed(2),
        ratio(large.rcu, small.rcu),
      ],
      ...(["until-answer", "processing"] as const).flatMap((rule) =>
        (["one", "each"] as const).map((containers) => [
          `hot host: transactions per open, ${RULES[rule]} vs DynamoDB Local (${containers === "one" ? "one process" : "per open"})`,
          (hot[`${rule}/${containers}`] ?? 0).toFixed(2),
          (hot[`local/${containers}`] ?? 0).toFixed(2),
          "",
        ]),
      ),
    ]),
  );
});

type RaceRule = "local" | "until-answer" | "processing";
const RULES: Record<RaceRule, string> = {
  local: "DynamoDB Local's serialization",
  "until-answer": "conflict rule, items held until the answer (old model)",
  processing: `conflict rule, items held ${options["processing-ms"]} ms (own processing)`,
};

/**
 * Concurrent opens against conditional writes: one host and k guests on a pool of exactly k, under DynamoDB
 * Local's serialization and under real DynamoDB's conflict rule as modelled by the faulty client (a
 * transaction is cancelled when one of its items is held by another in flight), in one process and with one
 * SessionService per open. The modelled rule runs twice: items held until DynamoDB Local answers (which
 * includes the wait behind the transactions it runs first) and items held for the transaction's own
 * processing, as real DynamoDB does (prepare, then commit).
 */
async function racesSection(): Promise<Record<string, number>> {
  heading("Races: concurrent allocations against conditional writes (fresh DynamoDB Local)");
  const k = options.burst;
  const aws = await localAws();
  const raceMeter = new AwsMeter().attach(aws.doc, "dynamodb");
  const modelled = faultyDynamo({
    endpoint: aws.dynamo.endpoint,
    seed: options.seed,
    plan: { throttleRate: 0, errorRate: 0, transactionHoldMs: 0 },
  });
  raceMeter.attach(modelled.doc, "dynamodb");
  const race = async (
    label: string,
    participants: (i: number) => [E164, E164],
    how: { rule: RaceRule; containers: "one" | "each"; cap?: number },
  ) => {
    const fixture = await aws.fresh();
    modelled.plan.processingMs = how.rule === "processing" ? options["processing-ms"] : undefined;
    const store =
      how.rule === "local"
        ? fixture.store
        : new DynamoStore({ tableName: fixture.tableName, client: modelled.doc, retentionSeconds: 3600 });
    const newService = () =>
      new SessionService({
        store,
        queue: { enqueue: async () => {} },
        clock: { now: () => Date.now() },
        newId,
        quarantineSeconds: QUARANTINE_SECONDS,
        maxProxiesPerParticipant: how.cap,
      });
    const shared = newService();
    for (let i = 0; i < k; i++) await shared.addNumber(phoneOf.pool(i) as E164);
    // "each": one SessionService per open, as Lambda runs one request per container at a time.
    const services = Array.from({ length: k }, () => (how.containers === "one" ? shared : newService()));
    raceMeter.reset();
    const conflictsBefore = modelled.stats.transactionConflicts;
    const byItemBefore = new Map(modelled.stats.conflictsByItem);
    const outcomes = await Promise.all(
      Array.from({ length: k }, async (_, i) => {
        const t = performance.now();
        const [a, b] = participants(i);
        try {
          const { session } = await (services[i] as SessionService).openSession({
            participants: [{ phoneNumber: a }, { phoneNumber: b }],
            mode: "sms",
            ttlSeconds: 3600,
            ttlMode: "absolute",
          });
          return {
            ok: true,
            ms: performance.now() - t,
            pairs: session.participants.map((p) => `${p.proxyNumber}/${p.phoneNumber}`),
            error: "",
          };
        } catch (error) {
          return { ok: false, ms: performance.now() - t, pairs: [], error: (error as Error).name };
        }
      }),
    );
    const succeeded = outcomes.filter((o) => o.ok);
    const pairs = succeeded.flatMap((o) => o.pairs);
    const tx = raceMeter.get("dynamodb", "TransactWriteItemsCommand");
    const latency = summarize(outcomes.map((o) => o.ms));
    const failed = outcomes.length - succeeded.length;
    const conflicts = modelled.stats.transactionConflicts - conflictsBefore;
    const byItem = [...modelled.stats.conflictsByItem]
      .map(([kind, n]) => [kind, n - (byItemBefore.get(kind) ?? 0)] as const)
      .filter(([, n]) => n > 0)
      .map(([kind, n]) => `${kind} ${n}`)
      .join(", ");
    log(
      `${label}: ${succeeded.length}/${k} opened${failed ? ` (${failed} failed: ${[...new Set(outcomes.filter((o) => !o.ok).map((o) => o.error))].join(", ")})` : ""}, ` +
        `${new Set(pairs).size === pairs.length ? "no (proxy, participant) pair given twice" : "ERROR: a (proxy, participant) pair was given twice"}; ` +
        `${tx.calls} transactions = ${(tx.calls / Math.max(1, succeeded.length)).toFixed(2)} per open ` +
        `(${tx.errors} cancelled${how.rule === "local" ? "" : `, ${conflicts} of them TransactionConflict${byItem ? `: ${byItem}` : ""}`}), ` +
        `TransactWriteItems p50 ${ms(summarize(tx.ms).p50)}; openSession p50 ${ms(latency.p50)}, max ${ms(latency.max)}`,
    );
    if (new Set(pairs).size !== pairs.length) process.exitCode = 1;
    return { tx, latency, perOpen: tx.calls / Math.max(1, succeeded.length) };
  };
  const hotHost = (i: number): [E164, E164] => [
    "+12125550100" as E164,
    `+1303555${String(1000 + i)}` as E164,
  ];
  const hot: Record<string, number> = {};
  for (const rule of ["local", "until-answer", "processing"] as const)
    for (const containers of ["one", "each"] as const)
      hot[`${rule}/${containers}`] = (
        await race(
          `${k} concurrent opens for ONE host, pool of exactly ${k}, ${RULES[rule]}, ` +
            `${containers === "one" ? "one process" : "one SessionService per open (Lambda)"}`,
          hotHost,
          { rule, containers },
        )
      ).perOpen;
  // With a cap every open of the host also takes one of its cap slots (the cap's guard), spread by ticket.
  for (const rule of ["until-answer", "processing"] as const)
    hot[`cap/${rule}`] = (
      await race(
        `${k} concurrent opens for ONE host, pool of exactly ${k}, MAX_PROXIES_PER_PARTICIPANT ${k}, ${RULES[rule]}, one SessionService per open`,
        hotHost,
        { rule, containers: "each", cap: k },
      )
    ).perOpen;
  for (const rule of ["until-answer", "processing"] as const)
    hot[`pairs/${rule}`] = (
      await race(
        `${k} concurrent opens for ${k} different pairs, pool of ${k}, ${RULES[rule]}, one SessionService per open`,
        (i) => [`+1212555${String(2000 + i)}` as E164, `+1303555${String(3000 + i)}` as E164],
        { rule, containers: "each" },
      )
    ).perOpen;
  modelled.destroy();
  await aws.stop();
  log(
    table([
      ["transactions per open", "one process", "one SessionService per open"],
      ...(["local", "until-answer", "processing"] as const).map((rule) => [
        `hot host, ${RULES[rule]}`,
        (hot[`${rule}/one`] ?? 0).toFixed(2),
        (hot[`${rule}/each`] ?? 0).toFixed(2),
      ]),
      ...(["until-answer", "processing"] as const).map((rule) => [
        `hot host, cap ${k} (a cap slot in every open), ${RULES[rule]}`,
        "",
        (hot[`cap/${rule}`] ?? 0).toFixed(2),
      ]),
      ...(["until-answer", "processing"] as const).map((rule) => [
        `${k} different pairs, ${RULES[rule]}`,
        "",
        (hot[`pairs/${rule}`] ?? 0).toFixed(2),
      ]),
    ]),
  );
  return hot;
}

/**
 * MAX_PROXIES_PER_PARTICIPANT at several caps and without one, side by side: the smallest pool the month
 * replays with no pool-exhausted open, its price, the share of messages through a hub, and every message
 * through the real routing, with hub users who always tag their replies and who forget 10 % of the time.
 */
async function hubSection(sessions: readonly TraceSession[], until: number, L: number) {
  heading(
    "Below the lower bound: MAX_PROXIES_PER_PARTICIPANT (hub numbers), full trace, every message routed",
  );
  const caps = options.quick ? [2, 5, 10, undefined] : [50, 25, 10, 5, undefined];
  const base = {
    sessions,
    until,
    hosts: options.hosts,
    quarantineSeconds: QUARANTINE_SECONDS,
    messagesPerSession: options["messages-per-session"],
    seed: options.seed,
  };
  const rows: string[][] = [];
  for (const cap of caps) {
    // Per person at most `cap` proxies plus one hub: the pool cannot need more than min(L, cap + 1).
    let poolSize = cap === undefined ? L : Math.min(L, cap + 1);
    let r = await hubReplay({ ...base, cap, poolSize, forgetTag: 0.1 });
    while (r.failures > 0 && poolSize < L) {
      poolSize++;
      r = await hubReplay({ ...base, cap, poolSize, forgetTag: 0.1 });
    }
    const share = (x: number) => `${((100 * x) / Math.max(1, r.messages)).toFixed(1)} %`;
    rows.push([
      cap === undefined ? "no cap" : String(cap),
      int(poolSize),
      usd(poolSize * PRICE, 0),
      usd((L - poolSize) * PRICE, 0),
      int(r.failures),
      int(r.hubSessions),
      share(r.viaHub),
      int(r.maxOpenThreads),
      `${int(r.messages)} / ${int(r.delivered)} / ${int(r.misrouted)}`,
      `${int(r.untagged)} / ${int(r.prompted)} / ${int(r.untaggedDelivered)} / ${int(r.untaggedMisrouted)}`,
      ms(r.wallMs, 0),
    ]);
    log(`  cap ${cap ?? "none"}: ${(rows.at(-1) ?? []).join(" | ")}`);
    if (r.misrouted + r.untaggedMisrouted + r.otherErrors > 0) process.exitCode = 1;
  }
  log(
    table([
      [
        "cap",
        "numbers",
        "per month",
        "saved",
        "exhausted",
        "hub sessions",
        "msgs via hub",
        "max threads/person",
        "msgs / delivered / misrouted (tagged)",
        "untagged 10 %: sent / prompted / to only thread / misrouted",
        "replay",
      ],
      ...rows,
    ]),
  );
  log(
    `  ${options["messages-per-session"]} messages per session (guest and host alternately); "numbers" is the smallest ` +
      "pool with 0 pool-exhausted opens; every message went through InboundService and was checked against its session",
  );
}

/** Adds `size` numbers to the pool through the store's own append, 40 numbers per transaction. */
async function seedPool(store: SessionServiceDeps["store"], size: number) {
  const ctx = { now: Date.now(), newId: () => newId("evt") };
  for (let from = 0; from < size; from += 40) {
    const events = Array.from({ length: Math.min(40, size - from) }, (_, i) =>
      decideNumber({ type: "AddNumber", phoneNumber: phoneOf.pool(from + i) as E164 }, null, ctx),
    ).flat();
    await store.append(events);
  }
}

/** Size of one pool-number item as DynamoStore writes it. */
const poolItemBytes = sizeOf({
  pk: "POOL",
  sk: "NUMBER#+14152000000",
  kind: "number",
  phoneNumber: "+14152000000",
  callingCode: "1",
  status: "active",
  addedAt: "2025-03-03T00:00:00.000Z",
  load: 12,
});

async function localAws() {
  // On a loaded machine the JVM sometimes misses its start deadline: try again before giving up.
  const aws = await startLocalAws().catch(() => startLocalAws());
  onCleanup(() => aws.stop());
  return aws;
}
