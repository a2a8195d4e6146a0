import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { EventBridgeClient } from "@aws-sdk/client-eventbridge";
import { BatchWriteCommand } from "@aws-sdk/lib-dynamodb";
import { createPublisherHandler } from "../../functions/publisher/app.ts";
import { LOCAL_CREDENTIALS, LOCAL_REGION } from "../../local/aws-local.ts";
import { LocalEventBus } from "../../local/event-bus.ts";
import { startStreamPoller } from "../../local/pollers.ts";
import { logger } from "../../shared/adapters/aws.ts";
import { EventBridgeBus } from "../../shared/adapters/eventbridge.ts";
import { newId } from "../../shared/adapters/ids.ts";
import { SqsForwardQueue } from "../../shared/adapters/sqs-queue.ts";
import { TwilioNumberProvider, twilioNumbers } from "../../shared/adapters/twilio-numbers.ts";
import { EventPublisher } from "../../shared/app/publisher.ts";
import { RecyclerService } from "../../shared/app/recycler.ts";
import { SessionService } from "../../shared/app/sessions.ts";
import { domainEventSchema } from "../../shared/domain/events.ts";
import type { E164 } from "../../shared/domain/phone.ts";
import { projectEvents } from "../../shared/domain/projection.ts";
import { decide } from "../../shared/domain/session.ts";
import { ACCOUNT_SID, AUTH_TOKEN, startPipeline } from "../support/pipeline.ts";
import { startLocalAws } from "../support/stack.ts";

const A = "+12025550201";
const B = "+12025550202";
const C = "+12025550203";
let aws: Awaited<ReturnType<typeof startLocalAws>>;

type Pipeline = Awaited<ReturnType<typeof startPipeline>>;

function recyclerFor(p: Pipeline, options: Partial<ConstructorParameters<typeof RecyclerService>[0]> = {}) {
  const health: { headroom: number }[] = [];
  const service = new RecyclerService({
    store: p.store,
    clock: { now: () => Date.now() },
    newId,
    quarantineSeconds: 3600,
    poolLowHeadroom: 1,
    topUp: undefined,
    metrics: { poolHealth: (h) => health.push(h) },
    ...options,
  });
  return { service, health };
}

const typesOf = (items: Record<string, unknown>[], sessionId: string) =>
  items
    .filter((i) => i.kind === "event" && i.sessionId === sessionId)
    .sort((x, y) => String(x.sk).localeCompare(String(y.sk)))
    .map((i) => String(i.type));

describe("session lifecycle: expiry, quarantine, recycling, events to the bus, platform messages", () => {
  before(async () => {
    aws = await startLocalAws();
  });
  after(async () => aws.stop());

  test("ttl 2 s: forwarded before expiry, out of session after; overlapping recycler runs expire it once", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(2);
      const { session, proxyA } = await p.open(A, B, 2);
      await p.sandbox.phoneSends(A, proxyA, "before expiry");
      await p.waitFor(() => p.sentTo(B).length === 1, 10_000, "forward before expiry");
      await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(session.expiresAt) - Date.now() + 50)));
      const late = await p.sandbox.phoneSends(A, proxyA, "after expiry");
      assert.match(late.twiml, /<Message>/, "out-of-session reply");

      const { service } = recyclerFor(p);
      const [one, two] = await Promise.all([
        service.run({ budgetMs: 5000, batchSize: 50 }),
        service.run({ budgetMs: 5000, batchSize: 50 }),
      ]);
      assert.equal(one.expired + two.expired, 1, "exactly one run expired it");
      await new Promise((r) => setTimeout(r, 800));
      assert.equal(p.sentTo(B).length, 1, "nothing after expiry was forwarded");
      const types = typesOf(await p.scan(), session.sessionId);
      assert.equal(types.filter((t) => t === "SessionExpired").length, 1);
      assert.deepEqual(types.slice(-2), ["PairReleased", "PairReleased"]);
      assert.ok(types.includes("OutOfSessionMessage"));
    } finally {
      await p.stop();
    }
  });

  test("an extension that lands after the recycler read its (lagging) index copy is not expired", async () => {
    const { store } = await aws.fresh();
    let now = Date.parse("2026-03-01T12:00:00Z");
    const deps = {
      store,
      queue: { enqueue: async () => {} },
      clock: { now: () => now },
      newId,
      quarantineSeconds: 60,
    };
    const sessions = new SessionService(deps);
    await sessions.addNumber("+14155550100" as E164);
    await sessions.addNumber("+14155550101" as E164);
    const { session } = await sessions.openSession({
      participants: [{ phoneNumber: "+13035550100" as E164 }, { phoneNumber: "+17205550100" as E164 }],
      mode: "sms",
      ttlSeconds: 60,
      ttlMode: "sliding",
    });
    // The index copy the recycler will read: expiresAt still the first one.
    const stale = { ...session };
    now += 50_000;
    await store.append(
      decide({ type: "RecordActivity" }, session, { now, newId: () => newId("evt"), quarantineSeconds: 60 }),
    );
    now += 20_000; // past the old expiresAt, before the new one
    const lagging = new Proxy(store, {
      get: (target, prop, receiver) =>
        prop === "expiredSessions" ? async () => [stale] : Reflect.get(target, prop, receiver),
    });
    const recycler = new RecyclerService({
      ...deps,
      store: lagging,
      poolLowHeadroom: 0,
      topUp: undefined,
      metrics: { poolHealth: () => {} },
    });
    const report = await recycler.run({ budgetMs: 1000, batchSize: 10, reportHealth: false });
    assert.equal(report.expired, 0);
    const after = await store.getSession(session.sessionId);
    assert.equal(after?.status, "open");
    assert.equal(after?.expiresAt, new Date(now - 20_000 + 60_000).toISOString());
    const [a] = session.participants;
    assert.equal((await store.getRoute(a.proxyNumber as E164, a.phoneNumber as E164))?.state, "held");
    assert.deepEqual(
      (await store.sessionEvents(session.sessionId)).map((e) => e.type),
      ["SessionOpened", "SessionExtended"],
    );
  });

  test("quarantine: a new counterpart gets another number while one is free; a pool of one reuses it; late texts never reach the new counterpart", async () => {
    const wide = await startPipeline(aws);
    try {
      await wide.pool(2);
      const ab = await wide.open(A, B);
      await wide.sessions.closeSession(ab.session.sessionId);
      const ac = await wide.open(A, C);
      assert.notEqual(ac.proxyA, ab.proxyA, "A gets the number that is not quarantined with B");
      const ab2 = await wide.open(A, B);
      await wide.sessions.closeSession(ac.session.sessionId);
      assert.equal(ab2.proxyA, ab.proxyA, "the pair's previous number comes back (sticky)");
    } finally {
      await wide.stop();
    }

    const p = await startPipeline(aws);
    try {
      await p.pool(1);
      const ab = await p.open(A, B);
      await p.sessions.closeSession(ab.session.sessionId);
      const ac = await p.open(A, C);
      assert.equal(ac.proxyA, ab.proxyA, "soft quarantine: the only number is reused rather than failing");
      const late = await p.sandbox.phoneSends(B, ab.proxyB, "late text from B");
      assert.match(late.twiml, /<Message>/, "B gets the out-of-session reply");
      const fromA = await p.sandbox.phoneSends(A, ac.proxyA, "hi C");
      assert.equal(fromA.status, 200);
      await p.waitFor(() => p.sentTo(C).length === 1, 10_000, "A's text to C");
      await new Promise((r) => setTimeout(r, 500));
      assert.deepEqual(
        p.sentTo(C).map((m) => m.body),
        ["hi C"],
        "B's late text never reached C",
      );
    } finally {
      await p.stop();
    }
  });

  test("10,000 expired sessions drain over successive bounded runs: nothing missed, no run over budget", async () => {
    const p = await startPipeline(aws);
    try {
      const numbers = await p.pool(4);
      const now = Date.now();
      const total = 10_000;
      // Seed through the adapter's own projection writes (SessionOpened items), batched for speed.
      const writes: Record<string, unknown>[] = [];
      for (let i = 0; i < total; i++) {
        const events = decide(
          {
            type: "OpenSession",
            sessionId: `ses_bulk${String(i).padStart(6, "0")}`,
            mode: "sms",
            ttlSeconds: 1,
            ttlMode: "absolute",
            participants: [
              {
                phoneNumber: `+1303${String(5_000_000 + i)}`,
                proxyNumber: numbers[i % 4] as E164,
                id: null,
                name: null,
              },
              {
                phoneNumber: `+1720${String(5_000_000 + i)}`,
                proxyNumber: numbers[(i + 1) % 4] as E164,
                id: null,
                name: null,
              },
            ],
          },
          null,
          { now: now - 60_000, newId: () => newId("evt"), quarantineSeconds: 60 },
        );
        for (const change of projectEvents(events, { retentionSeconds: 3600 }))
          if (change.type === "put") writes.push({ ...change.key, ...change.item });
      }
      const chunks: Record<string, unknown>[][] = [];
      for (let i = 0; i < writes.length; i += 25) chunks.push(writes.slice(i, i + 25));
      // A few batches in flight at once: seeding is set-up, not what the test measures.
      const seed = async () => {
        for (let chunk = chunks.pop(); chunk; chunk = chunks.pop()) {
          const request = chunk.map((Item) => ({ PutRequest: { Item } }));
          const { UnprocessedItems } = await aws.doc.send(
            new BatchWriteCommand({ RequestItems: { [p.tableName]: request } }),
          );
          assert.equal(Object.keys(UnprocessedItems ?? {}).length, 0, "DynamoDB Local took every seed item");
        }
      };
      await Promise.all(Array.from({ length: 6 }, seed));
      const { service } = recyclerFor(p);
      const budgetMs = 4000;
      let expired = 0;
      let runs = 0;
      const durations: number[] = [];
      for (let more = true; more && runs < 100; runs++) {
        const started = Date.now();
        const report = await service.run({ budgetMs, batchSize: 100, reportHealth: false });
        durations.push(Date.now() - started);
        expired += report.expired;
        more = report.more;
      }
      process.stdout.write(
        `# drained ${expired} sessions in ${runs} runs, longest run ${Math.max(...durations)} ms\n`,
      );
      assert.ok(runs > 1, "the backlog needed more than one bounded run");
      assert.equal(expired, total, "every expired session was expired exactly once");
      assert.ok(Math.max(...durations) < budgetMs + 2000, "no run far over its budget (one batch of slack)");
      assert.deepEqual(await p.store.expiredSessions(Date.now(), 10), [], "nothing missed");
    } finally {
      await p.stop();
    }
  });

  test("every domain event reaches the bus as its schema says; refused entries are retried; no body leaks", async () => {
    const p = await startPipeline(aws);
    const bus = new LocalEventBus();
    const { createServer } = await import("node:http");
    const server = createServer(async (req, res) => {
      let body = "";
      for await (const chunk of req) body += chunk;
      bus.handle(req, res, body);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    const endpoint = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
    const eventBridge = new EventBridgeClient({
      endpoint,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
    });
    const publisher = createPublisherHandler({
      logger,
      publisher: new EventPublisher({
        bus: new EventBridgeBus({ client: eventBridge, busName: "maskline", source: "maskline" }),
        queue: new SqsForwardQueue({ queueUrl: p.queue.queueUrl, client: aws.sqsClient }),
        retries: 3,
        sleep: async () => {},
      }),
      setAside: {
        setAside: async () => {
          throw new Error("nothing is set aside in this test");
        },
      },
      count: () => {},
    });
    bus.refuseNext = 3;
    const poller = startStreamPoller({
      endpoint: aws.dynamo.endpoint,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
      tableName: p.tableName,
      handler: publisher,
      intervalMs: 100,
    });
    try {
      await p.pool(2);
      const { session, proxyA } = await p.open(A, B);
      await p.sandbox.phoneSends(A, proxyA, "SECRET-BODY-TEXT do not publish");
      await p.waitFor(() => p.sentTo(B).length === 1, 10_000, "forward");
      await p.sessions.closeSession(session.sessionId);
      const stored = (await p.scan()).filter((i) => i.kind === "event");
      await p.waitFor(() => bus.events.length >= stored.length, 20_000, "all events on the bus");
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(bus.refuseNext, 0, "the refused entries were injected");
      const ids = bus.events.map((e) => (e.detail as { id: string }).id);
      assert.deepEqual(new Set(ids), new Set(stored.map((e) => e.id)), "every stored event was published");
      for (const event of bus.events) {
        assert.equal(event.source, "maskline");
        const parsed = domainEventSchema.parse(event.detail);
        assert.equal(event.detailType, parsed.type);
      }
      assert.ok(!JSON.stringify(bus.events).includes("SECRET-BODY-TEXT"), "no message body on the bus");
    } finally {
      await poller.stop();
      eventBridge.destroy();
      server.close();
      await p.stop();
    }
  });

  test("the recycler's top-up module (loaded on demand, as the handler does) buys from Twilio when headroom is low", async () => {
    const p = await startPipeline(aws);
    const saved = { ...process.env };
    try {
      // The module reads its configuration and the Twilio secret from the environment, as at a cold start.
      Object.assign(process.env, {
        PUBLIC_BASE_URL: p.publicBaseUrl,
        TWILIO_ACCOUNT_SID: ACCOUNT_SID,
        TWILIO_AUTH_TOKEN: AUTH_TOKEN,
        TWILIO_API_BASE_URL: p.baseUrl,
      });
      const { checkCredentials, twilioNumberProvider } = await import("#on-demand/recycler-top-up");
      await checkCredentials();
      await p.pool(1);
      await p.open(A, B);
      const { service } = recyclerFor(p, {
        poolLowHeadroom: 1,
        topUp: { provider: twilioNumberProvider, maxPoolSize: 2 },
      });
      const low = await service.run({ budgetMs: 2000, batchSize: 10 });
      assert.equal(low.bought.length, 1);
      assert.deepEqual(p.sandbox.ownedNumbers, low.bought);
      assert.equal((await p.store.listPool()).length, 2);
    } finally {
      process.env = saved;
      await p.stop();
    }
  });

  test("auto top-up buys from Twilio only when headroom is low, never beyond the cap", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(2);
      const provider = new TwilioNumberProvider(
        twilioNumbers({ accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN, apiBaseUrl: p.baseUrl }),
        p.publicBaseUrl,
      );
      const { service, health } = recyclerFor(p, { poolLowHeadroom: 1, topUp: { provider, maxPoolSize: 3 } });
      const quiet = await service.run({ budgetMs: 2000, batchSize: 10 });
      assert.deepEqual(quiet.bought, [], "headroom 2 ≥ 1: nothing bought");
      await p.open(A, B);
      await p.open(A, C);
      const low = await service.run({ budgetMs: 2000, batchSize: 10 });
      assert.equal(low.bought.length, 1, "headroom 0 < 1: one number bought, up to the cap of 3");
      assert.equal(p.sandbox.ownedNumbers.length, 1);
      await p.open(A, "+12025550204");
      const capped = await service.run({ budgetMs: 2000, batchSize: 10 });
      assert.deepEqual(capped.bought, [], "the pool is at its cap");
      assert.equal((await p.store.listPool()).length, 3);
      assert.deepEqual(
        health.map((h) => h.headroom),
        [2, 0, 0],
      );
      const types = (await p.scan()).filter((i) => i.kind === "event").map((i) => i.type);
      assert.ok(types.includes("PoolLow") && types.includes("PoolHealthReported"));
    } finally {
      await p.stop();
    }
  });

  test("a draining number leaves the pool with NumberRetired once its last session ends", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(2);
      const { session, proxyA } = await p.open(A, B);
      const draining = await p.sessions.retireNumber(proxyA as E164);
      assert.equal(draining.status, "draining");
      const { service } = recyclerFor(p);
      await service.run({ budgetMs: 2000, batchSize: 10 });
      assert.ok(
        (await p.store.listPool()).some((n) => n.phoneNumber === proxyA),
        "still draining while held",
      );
      await p.sessions.closeSession(session.sessionId);
      await service.run({ budgetMs: 2000, batchSize: 10 });
      assert.ok(!(await p.store.listPool()).some((n) => n.phoneNumber === proxyA), "gone once drained");
      const types = (await p.scan())
        .filter((i) => i.kind === "event" && i.pk === `NUMBER#${proxyA}`)
        .map((i) => i.type);
      assert.deepEqual(types.sort(), ["NumberAdded", "NumberDraining", "NumberRetired"]);
    } finally {
      await p.stop();
    }
  });

  test("a platform message is delivered once, from the recipient's proxy number, under Idempotency-Key replays", async () => {
    const p = await startPipeline(aws);
    try {
      await p.pool(2);
      const { session, proxyB } = await p.open(A, B);
      const results = await Promise.all(
        [1, 2, 3].map(() =>
          p.sessions.sendPlatformMessage(
            session.sessionId,
            { to: B, body: "Your check-in is at 3pm" },
            "notify-1",
          ),
        ),
      );
      assert.equal(new Set(results.map((r) => r.messageId)).size, 1);
      await p.waitFor(() => p.sentTo(B).length === 1, 10_000, "platform message");
      await new Promise((r) => setTimeout(r, 800));
      assert.equal(p.sentTo(B).length, 1);
      assert.equal(p.sentTo(B)[0]?.from, proxyB);
      assert.equal(p.sentTo(B)[0]?.body, "Your check-in is at 3pm");
    } finally {
      await p.stop();
    }
  });
});
