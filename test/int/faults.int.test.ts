/**
 * Real DynamoDB failure semantics on DynamoDB Local: transaction conflicts between concurrent
 * transactions, throttling and 500s, injected into the real SDK client (test/support/faulty-dynamo.ts).
 * The pipeline and allocation must still lose nothing, double nothing, share no pair, answer every client
 * error as problem+json, and retry a bounded number of times.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { ScanCommand } from "@aws-sdk/lib-dynamodb";
import { createAllocateHandler } from "../../functions/allocate/app.ts";
import { logger } from "../../shared/adapters/aws.ts";
import { DynamoStore } from "../../shared/adapters/dynamo-store.ts";
import { newId } from "../../shared/adapters/ids.ts";
import { SqsForwardQueue } from "../../shared/adapters/sqs-queue.ts";
import { SessionService } from "../../shared/app/sessions.ts";
import { ConcurrentWriteError } from "../../shared/domain/errors.ts";
import type { E164 } from "../../shared/domain/phone.ts";
import { faultyDynamo } from "../support/faulty-dynamo.ts";
import { invoker } from "../support/http.ts";
import { startPipeline } from "../support/pipeline.ts";
import { startLocalAws } from "../support/stack.ts";

const SEED = Number(process.env.FAULT_SEED ?? 13);
const PROBLEM_TYPE = /^https:\/\/maskline\.dev\/problems\/[a-z-]+$/;

let aws: Awaited<ReturnType<typeof startLocalAws>>;

const isProblem = (status: number, contentType: string | undefined | null, body: string) => {
  if (!/application\/problem\+json/.test(contentType ?? "")) return false;
  const parsed = JSON.parse(body) as { type?: string; status?: number };
  return PROBLEM_TYPE.test(parsed.type ?? "") && parsed.status === status;
};

describe("DynamoDB faults: conflicts, throttling, 500s", () => {
  before(async () => {
    aws = await startLocalAws();
  });
  after(async () => aws.stop());

  test("pipeline: every accepted text is forwarded exactly once; failures are problem+json; retries bounded", async () => {
    const faults = faultyDynamo({
      endpoint: aws.dynamo.endpoint,
      seed: SEED,
      plan: { throttleRate: 0, errorRate: 0, transactionHoldMs: 0 },
    });
    const p = await startPipeline(aws, { client: faults.doc });
    try {
      await p.pool(4);
      const pairs = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          p.open(
            `+1202555${String(3000 + i).padStart(4, "0")}`,
            `+1202555${String(3100 + i).padStart(4, "0")}`,
          ),
        ),
      );
      Object.assign(faults.plan, { throttleRate: 0.12, errorRate: 0.06, transactionHoldMs: 15 });
      const callsBefore = faults.stats.calls;

      // Twilio's webhook retries (connection override #rc=5): the same MessageSid again after a 5xx.
      const texts = pairs.flatMap(({ session, proxyA }, s) =>
        Array.from({ length: 8 }, (_, n) => ({
          from: session.participants[0].phoneNumber,
          to: proxyA,
          body: `session ${s} text ${n}`,
          messageSid: `SM${randomBytes(16).toString("hex")}`,
        })),
      );
      const answers: { status: number; problem: boolean }[] = [];
      const accepted = new Set<string>();
      await Promise.all(
        texts.map(async (t) => {
          for (let attempt = 0; attempt < 5; attempt++) {
            const res = await p.sandbox.phoneSends(t.from, t.to, t.body, { messageSid: t.messageSid });
            if (res.status === 200) {
              accepted.add(t.body);
              return;
            }
            answers.push({
              status: res.status,
              problem: /"type":"https:\/\/maskline\.dev\/problems\//.test(res.twiml),
            });
          }
        }),
      );
      assert.ok(accepted.size >= texts.length - 2, `accepted ${accepted.size} of ${texts.length}`);
      for (const a of answers) assert.ok(a.problem, `a ${a.status} answer is problem+json`);

      await p.waitFor(
        () => [...accepted].every((body) => p.sandbox.messages.some((m) => m.body === body)),
        60_000,
        "every accepted text forwarded",
      );
      faults.calm();
      await p.waitFor(async () => (await p.queueDepth()) === 0, 30_000, "queue drained");
      await new Promise((r) => setTimeout(r, 1000));

      const sent = new Map<string, number>();
      for (const m of p.sandbox.messages) sent.set(m.body, (sent.get(m.body) ?? 0) + 1);
      const doubled = [...sent].filter(([, n]) => n > 1).map(([body]) => body);
      const lost = [...accepted].filter((body) => !sent.has(body));
      assert.deepEqual(lost, [], "0 lost");
      assert.deepEqual(doubled, [], "0 doubled");
      assert.deepEqual(await p.dlqMessages(), [], "nothing in the DLQ");
      // Twilio does not retry status callbacks: each must be recorded on its first delivery.
      await p
        .waitFor(
          async () =>
            (await p.scan()).filter((i) => i.kind === "event" && i.type === "MessageDelivered").length >=
            accepted.size,
          10_000,
          "a delivery status for every forwarded text",
        )
        .catch(() => {});
      const statuses = (await p.scan()).filter((i) => i.kind === "event" && i.type === "MessageDelivered");
      assert.equal(statuses.length, accepted.size, "every status callback recorded despite conflicts");

      // A storm of 500s: webhooks the SDK could not get through are refused as problem+json, store nothing
      // half-done, and Twilio's retry of the same MessageSid is then forwarded exactly once.
      Object.assign(faults.plan, { throttleRate: 0, errorRate: 0.9, transactionHoldMs: 0 });
      const { session: stormSession, proxyA: stormProxy } = pairs[0] ?? assert.fail("a session");
      const storm = Array.from({ length: 6 }, (_, n) => ({
        body: `storm text ${n}`,
        messageSid: `SM${randomBytes(16).toString("hex")}`,
      }));
      const stormAnswers = await Promise.all(
        storm.map((t) =>
          p.sandbox.phoneSends(stormSession.participants[0].phoneNumber, stormProxy, t.body, {
            messageSid: t.messageSid,
          }),
        ),
      );
      faults.calm();
      const refused = stormAnswers.filter((a) => a.status !== 200);
      assert.ok(refused.length > 0, "the storm refused some webhooks");
      for (const a of refused) {
        assert.ok(a.status >= 500, `a refused webhook is a server error, got ${a.status}`);
        const problem = JSON.parse(a.twiml) as { type: string; status: number };
        assert.match(problem.type, PROBLEM_TYPE);
        assert.equal(problem.status, a.status);
        assert.doesNotMatch(a.twiml, /injected|Exception|stack/i, "a 5xx reveals nothing");
      }
      for (const t of storm) {
        const again = await p.sandbox.phoneSends(
          stormSession.participants[0].phoneNumber,
          stormProxy,
          t.body,
          {
            messageSid: t.messageSid,
          },
        );
        assert.equal(again.status, 200, "Twilio's retry is accepted");
      }
      await p.waitFor(
        () => storm.every((t) => p.sandbox.messages.filter((m) => m.body === t.body).length >= 1),
        30_000,
        "the storm's texts forwarded",
      );
      await p.waitFor(async () => (await p.queueDepth()) === 0, 30_000, "queue drained after the storm");
      await new Promise((r) => setTimeout(r, 1000));
      for (const t of storm)
        assert.equal(p.sandbox.messages.filter((m) => m.body === t.body).length, 1, `${t.body} once`);

      const { stats } = faults;
      const SDK_MAX_ATTEMPTS = await faults.maxAttempts();
      assert.ok(stats.throttled + stats.serverErrors > 20, `faults were injected: ${JSON.stringify(stats)}`);
      assert.ok(
        stats.maxAttemptsPerCall <= SDK_MAX_ATTEMPTS,
        `one call took ${stats.maxAttemptsPerCall} attempts`,
      );
      const callsPerText = (stats.calls - callsBefore) / texts.length;
      assert.ok(callsPerText < 40, `DynamoDB calls per text: ${callsPerText.toFixed(1)}`);
      process.stdout.write(
        `# pipeline under faults: ${texts.length} texts, ${accepted.size} accepted, ${answers.length} retried webhooks, ` +
          `storm: ${refused.length} of ${storm.length} refused then accepted on retry; ` +
          `${stats.throttled} throttles, ${stats.serverErrors} 500s, ${stats.transactionConflicts} conflicts, ` +
          `${callsPerText.toFixed(1)} DynamoDB calls per text, max ${stats.maxAttemptsPerCall} attempts per call\n`,
      );
    } finally {
      await p.stop();
      faults.destroy();
    }
  });

  test("allocation: concurrent opens under faults never share a pair; every refusal is problem+json", async () => {
    const { tableName, queue } = await aws.fresh();
    const faults = faultyDynamo({
      endpoint: aws.dynamo.endpoint,
      seed: SEED + 1,
      plan: { throttleRate: 0, errorRate: 0, transactionHoldMs: 0 },
    });
    try {
      const store = new DynamoStore({ tableName, client: faults.doc, retentionSeconds: 3600 });
      const service = new SessionService({
        store,
        queue: new SqsForwardQueue({ queueUrl: queue.queueUrl, client: aws.sqsClient }),
        clock: { now: () => Date.now() },
        newId,
        quarantineSeconds: 3600,
      });
      const TOKEN = "fault-test-token-0123456789";
      const call = invoker(
        createAllocateHandler({
          service,
          logger,
          auth: { mode: "token", token: TOKEN },
          health: async () => ({ table: "ok" }),
        }),
        { authorization: `Bearer ${TOKEN}` },
      );
      const POOL = 5;
      for (let i = 0; i < POOL; i++) {
        const res = await call("POST", "/numbers", { body: { phoneNumber: `+1415555${2000 + i}` } });
        assert.equal(res.status, 201, res.text);
      }
      Object.assign(faults.plan, { throttleRate: 0.1, errorRate: 0.05, transactionHoldMs: 20 });
      const callsBefore = faults.stats.calls;

      // One popular host, many guests at once: the host can hold each of the 5 numbers only once.
      const host = "+12025554000";
      const guests = Array.from({ length: 14 }, (_, i) => `+1202555${4100 + i}`);
      const results = await Promise.all(
        guests.map((g, i) =>
          call("POST", "/sessions", {
            body: { participants: [{ phoneNumber: host }, { phoneNumber: g }] },
            headers: { "idempotency-key": `open-${i}` },
          }),
        ),
      );
      faults.calm();
      const opened = results.filter((r) => r.status === 201);
      for (const r of results.filter((x) => x.status !== 201)) {
        assert.ok(
          isProblem(r.status, String(r.headers["content-type"] ?? ""), r.text),
          `${r.status}: ${r.text}`,
        );
        if (r.status >= 500)
          assert.doesNotMatch(r.text, /injected|Exception|stack/i, "a 5xx reveals nothing");
      }
      assert.ok(opened.length <= POOL, `${opened.length} opened with a pool of ${POOL}`);
      assert.ok(opened.length >= 1, "some sessions opened despite the faults");

      // 0 pairs shared: no (participant, proxy) pair in two open sessions.
      const items = (await aws.doc.send(new ScanCommand({ TableName: tableName }))).Items ?? [];
      const open = items.filter((i) => i.sk === "META" && i.status === "open");
      const pairs = open.flatMap((s) =>
        (s.participants as { phoneNumber: string; proxyNumber: string }[]).map(
          (p) => `${p.phoneNumber}@${p.proxyNumber}`,
        ),
      );
      assert.equal(new Set(pairs).size, pairs.length, "a pair was given to two open sessions");
      assert.equal(open.length, opened.length, "every open session was answered 201, and only those");
      for (const r of opened) assert.ok(open.some((s) => s.sessionId === r.json.sessionId));

      // Retrying the failed ones with their keys settles them: nothing half-written blocks a retry.
      for (const [i, r] of results.entries()) {
        if (r.status < 500) continue;
        const again = await call("POST", "/sessions", {
          body: { participants: [{ phoneNumber: host }, { phoneNumber: guests[i] }] },
          headers: { "idempotency-key": `open-${i}` },
        });
        assert.ok(
          [200, 201, 409].includes(again.status),
          `retry of open-${i}: ${again.status} ${again.text}`,
        );
      }

      const { stats } = faults;
      const SDK_MAX_ATTEMPTS = await faults.maxAttempts();
      assert.ok(
        stats.maxAttemptsPerCall <= SDK_MAX_ATTEMPTS,
        `one call took ${stats.maxAttemptsPerCall} attempts`,
      );
      const callsPerOpen = (stats.calls - callsBefore) / guests.length;
      assert.ok(callsPerOpen < 120, `DynamoDB calls per open: ${callsPerOpen.toFixed(1)}`);
      process.stdout.write(
        `# allocation under faults: ${guests.length} concurrent opens, ${opened.length} opened, ` +
          `${results.filter((r) => r.status === 409).length} pool-exhausted, ` +
          `${results.filter((r) => r.status >= 500).length} 5xx; ${stats.throttled} throttles, ` +
          `${stats.serverErrors} 500s, ${stats.transactionConflicts} conflicts; ${callsPerOpen.toFixed(1)} calls per open\n`,
      );
    } finally {
      faults.destroy();
    }
  });
  /**
   * One SessionService per open (as Lambda runs one request per container) on the conflict-modelling client,
   * in its pessimistic form: a transaction holds its items until DynamoDB Local answers it.
   */
  const containersRace = async (options: { seed: number; pool: number; poolFrom: number; cap?: number }) => {
    const { tableName } = await aws.fresh();
    const faults = faultyDynamo({
      endpoint: aws.dynamo.endpoint,
      seed: options.seed,
      plan: { throttleRate: 0, errorRate: 0, transactionHoldMs: 0 },
    });
    const store = new DynamoStore({ tableName, client: faults.doc, retentionSeconds: 3600 });
    const service = () =>
      new SessionService({
        store,
        queue: { enqueue: async () => {} },
        clock: { now: () => Date.now() },
        newId,
        quarantineSeconds: 3600,
        maxProxiesPerParticipant: options.cap,
      });
    const setup = service();
    for (let i = 0; i < options.pool; i++) await setup.addNumber(`+1415555${options.poolFrom + i}` as E164);
    /** `n` concurrent opens for one host, each with a new guest; and the transactions they took. */
    const burst = async (host: string, n: number, guestFrom: number) => {
      const before = faults.stats.attempts.get("TransactWriteItemsCommand") ?? 0;
      const sessions = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          service().openSession({
            participants: [
              { phoneNumber: host as E164 },
              { phoneNumber: `+1303555${guestFrom + i}` as E164, name: "Kate" },
            ],
            mode: "sms",
            ttlSeconds: 3600,
            ttlMode: "absolute",
          }),
        ),
      );
      const transactions = (faults.stats.attempts.get("TransactWriteItemsCommand") ?? 0) - before;
      return { hosts: sessions.map(({ session }) => session.participants[0]), transactions };
    };
    return { burst, destroy: () => faults.destroy() };
  };

  test("hot host across containers: 20 concurrent opens on a pool of 20, one SessionService each, at most 1.5 transactions per open", async () => {
    const K = 20;
    const race = await containersRace({ seed: SEED + 2, pool: K, poolFrom: 3000 });
    try {
      const { hosts, transactions } = await race.burst("+12025556000", K, 6100);
      assert.equal(new Set(hosts.map((h) => h.proxyNumber)).size, K, "the host got each number once");
      assert.ok(transactions <= 1.5 * K, `${transactions} transactions for ${K} opens`);
    } finally {
      race.destroy();
    }
  });

  test("hot host with a cap across containers: 20 concurrent opens at MAX_PROXIES_PER_PARTICIPANT 20 take at most 1.5 transactions per open; the 21st concurrent open goes to the hub", async () => {
    const K = 20;
    // One more number than the cap: a host at the cap has one number left for their hub.
    const race = await containersRace({ seed: SEED + 3, pool: K + 1, poolFrom: 3200, cap: K });
    try {
      const { hosts, transactions } = await race.burst("+12025556300", K, 6300);
      assert.equal(hosts.filter((h) => h.hub).length, 0, "up to the cap every open gets a proxy");
      assert.equal(new Set(hosts.map((h) => h.proxyNumber)).size, K, "the host got each number once");
      assert.ok(transactions <= 1.5 * K, `${transactions} transactions for ${K} capped opens`);

      // One open more than the cap, all at once: exactly the cap on proxies, the rest on the hub.
      const over = (await race.burst("+12025556400", K + 1, 6400)).hosts;
      const proxies = over.filter((h) => !h.hub);
      assert.equal(proxies.length, K, "never more proxies than the cap");
      assert.equal(new Set(proxies.map((h) => h.proxyNumber)).size, K);
      const hub = over.filter((h) => h.hub);
      assert.equal(hub.length, 1);
      assert.ok(
        !proxies.some((h) => h.proxyNumber === hub[0]?.proxyNumber),
        "the hub is none of its proxies",
      );
    } finally {
      race.destroy();
    }
  });

  test("a number found contested is not tried again: the next attempt takes another free number", async () => {
    const { tableName } = await aws.fresh();
    const real = new DynamoStore({ tableName, client: aws.doc, retentionSeconds: 3600 });
    // What appendToDynamo reports when real DynamoDB cancels for another transaction on the host's pair and
    // number (TransactionConflict): injected once per open, on the number its first attempt took.
    const tried = new Map<string, string[]>();
    const append: typeof real.append = async (events, options) => {
      const opened = events.find((e) => e.type === "SessionOpened");
      if (opened?.type === "SessionOpened") {
        const [host] = opened.detail.participants;
        const attempts = tried.get(opened.sessionId ?? "") ?? [];
        tried.set(opened.sessionId ?? "", [...attempts, host.proxyNumber]);
        if (attempts.length === 0)
          throw new ConcurrentWriteError([
            { kind: "pair", key: `${host.proxyNumber}:${host.phoneNumber}`, contention: true },
            { kind: "number", key: host.proxyNumber, contention: true },
          ]);
      }
      return real.append(events, options);
    };
    const store = new Proxy(real, {
      get: (target, prop) => {
        if (prop === "append") return append;
        const value = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const service = new SessionService({
      store,
      queue: { enqueue: async () => {} },
      clock: { now: () => Date.now() },
      newId,
      quarantineSeconds: 3600,
    });
    for (let i = 0; i < 3; i++) await service.addNumber(`+1415555${3100 + i}` as E164);
    for (let i = 0; i < 8; i++)
      await service.openSession({
        participants: [
          { phoneNumber: `+1202555${6200 + i}` as E164 },
          { phoneNumber: `+1303555${6200 + i}` as E164 },
        ],
        mode: "sms",
        ttlSeconds: 3600,
        ttlMode: "absolute",
      });
    assert.equal(tried.size, 8);
    for (const [sessionId, [first, second, ...more]] of tried) {
      assert.deepEqual(more, [], `${sessionId}: two attempts`);
      assert.notEqual(second, first, `${sessionId}: the contested ${first} was tried again`);
    }
  });
});
