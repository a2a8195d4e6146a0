import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, test } from "node:test";
import { DynamoDBStreamsClient } from "@aws-sdk/client-dynamodb-streams";
import { EventBridgeClient } from "@aws-sdk/client-eventbridge";
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import { PutCommand } from "@aws-sdk/lib-dynamodb";
import type { DynamoDBStreamEvent, SQSEvent } from "aws-lambda";
import { createPublisherHandler } from "../../functions/publisher/app.ts";
import { LOCAL_CREDENTIALS, LOCAL_REGION, provisionStandardQueue } from "../../local/aws-local.ts";
import { LocalEventBus } from "../../local/event-bus.ts";
import {
  type StreamFailure,
  startScheduler,
  startSqsPoller,
  startStreamPoller,
} from "../../local/pollers.ts";
import { logger } from "../../shared/adapters/aws.ts";
import { EventBridgeBus } from "../../shared/adapters/eventbridge.ts";
import { newId } from "../../shared/adapters/ids.ts";
import { SqsForwardQueue, SqsSetAsideSink } from "../../shared/adapters/sqs-queue.ts";
import { EventPublisher } from "../../shared/app/publisher.ts";
import { forwardQueue } from "../../shared/resources.ts";
import { recordCalls, startLocalAws } from "../support/stack.ts";

/** An event item as the store writes it; `detail` as given (valid or not). */
const eventItem = (sessionId: string, n: number, detail: Record<string, unknown>) => {
  const id = newId("ev");
  const occurredAt = new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString();
  return {
    pk: `SESSION#${sessionId}`,
    sk: `EVENT#${occurredAt}#${id}`,
    kind: "event",
    id,
    type: "SessionClosed",
    occurredAt,
    sessionId,
    detailVersion: 1,
    detail,
  };
};

const waitFor = async (predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

let aws: Awaited<ReturnType<typeof startLocalAws>>;

describe("local event-source pollers behave like Lambda's", () => {
  before(async () => {
    aws = await startLocalAws();
  });
  after(async () => aws.stop());

  test("SQS FIFO: a deduplication id sent again within 5 minutes is accepted and not delivered, even after the first copy was deleted", async () => {
    const { queue } = await aws.fresh();
    const send = (body: string, dedup: string) =>
      aws.sqsClient.send(
        new SendMessageCommand({
          QueueUrl: queue.queueUrl,
          MessageBody: body,
          MessageGroupId: "g",
          MessageDeduplicationId: dedup,
        }),
      );
    const receive = async () =>
      (
        await aws.sqsClient.send(
          new ReceiveMessageCommand({ QueueUrl: queue.queueUrl, MaxNumberOfMessages: 10 }),
        )
      ).Messages ?? [];
    const first = await send("first", "m1");
    const [received, ...rest] = await receive();
    assert.equal(received?.Body, "first");
    assert.equal(rest.length, 0);
    await aws.sqsClient.send(
      new DeleteMessageBatchCommand({
        QueueUrl: queue.queueUrl,
        Entries: [{ Id: "0", ReceiptHandle: received?.ReceiptHandle }],
      }),
    );
    // What the publisher's outbox does: the same message id again, after forward has deleted it.
    const again = await send("first", "m1");
    assert.equal(again.MessageId, first.MessageId, "a duplicate is answered with the first copy's id");
    const batch = await aws.sqsClient.send(
      new SendMessageBatchCommand({
        QueueUrl: queue.queueUrl,
        Entries: [
          { Id: "a", MessageBody: "first", MessageGroupId: "g", MessageDeduplicationId: "m1" },
          { Id: "b", MessageBody: "second", MessageGroupId: "g", MessageDeduplicationId: "m2" },
        ],
      }),
    );
    assert.equal(batch.Successful?.length, 2, "both entries accepted");
    assert.deepEqual(
      (await receive()).map((m) => m.Body),
      ["second"],
      "only the new deduplication id is delivered",
    );
  });

  test("SQS FIFO: the outbox's 12 jobs go in two SendMessageBatch calls, each in its session's group, duplicates dropped", async () => {
    const { queue } = await aws.fresh();
    const client = new SQSClient({
      endpoint: aws.sqs.endpoint,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
    });
    const calls = recordCalls(client);
    try {
      const forwardQueue = new SqsForwardQueue({ queueUrl: queue.queueUrl, client });
      await forwardQueue.enqueue({ messageId: "m0", sessionId: "s0" });
      const jobs = Array.from({ length: 12 }, (_, i) => ({ messageId: `m${i}`, sessionId: `s${i % 2}` }));
      assert.deepEqual(await forwardQueue.enqueueAll(jobs), [], "every job taken");
      assert.deepEqual(calls, ["SendMessage", "SendMessageBatch", "SendMessageBatch"]);
      const bodies: string[] = [];
      for (let i = 0; i < 5 && bodies.length < 12; i++) {
        const res = await aws.sqsClient.send(
          new ReceiveMessageCommand({
            QueueUrl: queue.queueUrl,
            MaxNumberOfMessages: 10,
            AttributeNames: ["All"],
          }),
        );
        for (const m of res.Messages ?? []) {
          const job = JSON.parse(m.Body ?? "{}") as { messageId: string; sessionId: string };
          assert.equal(m.Attributes?.MessageGroupId, job.sessionId);
          bodies.push(job.messageId);
        }
        if (res.Messages?.length)
          await aws.sqsClient.send(
            new DeleteMessageBatchCommand({
              QueueUrl: queue.queueUrl,
              Entries: res.Messages.map((m, j) => ({ Id: String(j), ReceiptHandle: m.ReceiptHandle })),
            }),
          );
      }
      assert.deepEqual(
        [...bodies].sort(),
        jobs.map((j) => j.messageId).sort(),
        "each job once (m0 was already sent: its second copy dropped)",
      );
    } finally {
      client.destroy();
    }
  });

  test("SQS: changing a message's visibility is not a receive: a message held through many changes stays out of the DLQ", async () => {
    const { queue } = await aws.fresh({
      visibilityTimeoutSeconds: 1,
      maxReceiveCount: forwardQueue.deadLetter.maxReceiveCount,
    });
    await aws.sqsClient.send(
      new SendMessageCommand({
        QueueUrl: queue.queueUrl,
        MessageBody: "held",
        MessageGroupId: "g",
        MessageDeduplicationId: "held",
      }),
    );
    const receive = async () =>
      (
        await aws.sqsClient.send(
          new ReceiveMessageCommand({
            QueueUrl: queue.queueUrl,
            MaxNumberOfMessages: 10,
            AttributeNames: ["All"],
          }),
        )
      ).Messages ?? [];
    const [first] = await receive();
    assert.equal(first?.Attributes?.ApproximateReceiveCount, "1");
    // What the poller does with a message that waits behind an earlier one of its group.
    for (let i = 0; i < queue.maxReceiveCount + 1; i++)
      await aws.sqsClient.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: queue.queueUrl,
          ReceiptHandle: first?.ReceiptHandle,
          VisibilityTimeout: 1,
        }),
      );
    await new Promise((r) => setTimeout(r, 1300));
    const [second] = await receive();
    assert.equal(second?.Body, "held", "back in the queue, not in the DLQ");
    assert.equal(second?.Attributes?.ApproximateReceiveCount, "2", "two receives, however many changes");
  });

  test("SQS: partial batch failures are redelivered in group order and land in the DLQ after maxReceiveCount", async () => {
    const { queue } = await aws.fresh({
      visibilityTimeoutSeconds: 1,
      maxReceiveCount: forwardQueue.deadLetter.maxReceiveCount,
    });
    const send = (group: string, body: string) =>
      aws.sqsClient.send(
        new SendMessageCommand({
          QueueUrl: queue.queueUrl,
          MessageBody: body,
          MessageGroupId: group,
          MessageDeduplicationId: body,
        }),
      );
    for (const body of ["a1", "a2", "a3"]) await send("a", body);
    for (const body of ["poison", "b2"]) await send("b", body);
    const seen: string[] = [];
    const attempts = new Map<string, number>();
    const arn = await aws.sqsClient.send(
      new GetQueueAttributesCommand({ QueueUrl: queue.queueUrl, AttributeNames: ["QueueArn"] }),
    );
    const poller = startSqsPoller({
      client: aws.sqsClient,
      queueUrl: queue.queueUrl,
      queueArn: arn.Attributes?.QueueArn ?? "",
      visibilityTimeoutSeconds: queue.visibilityTimeoutSeconds,
      handler: async (event: SQSEvent) => {
        const failures: { itemIdentifier: string }[] = [];
        const failedGroups = new Set<string>();
        for (const r of event.Records) {
          const group = r.attributes.MessageGroupId ?? "";
          const n = (attempts.get(r.body) ?? 0) + 1;
          attempts.set(r.body, n);
          // a2 fails twice then succeeds; poison always fails; later records of a failed group are skipped.
          if (failedGroups.has(group) || (r.body === "a2" && n <= 2) || r.body === "poison") {
            failedGroups.add(group);
            failures.push({ itemIdentifier: r.messageId });
          } else seen.push(r.body);
        }
        return { batchItemFailures: failures };
      },
    });
    try {
      const deadline = Date.now() + 30_000;
      let dlq: string[] = [];
      while (Date.now() < deadline && !(seen.includes("a3") && dlq.length === 2)) {
        const res = await aws.sqsClient.send(
          new ReceiveMessageCommand({ QueueUrl: queue.dlqUrl, MaxNumberOfMessages: 10 }),
        );
        dlq = dlq.concat((res.Messages ?? []).map((m) => m.Body ?? ""));
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.deepEqual(
        seen.filter((b) => b.startsWith("a")),
        ["a1", "a2", "a3"],
        "group a in order despite a2's failures",
      );
      // As with SQS FIFO and skipGroupOnError, the record stuck behind the poison one shares its fate:
      // both reach the DLQ (with their bodies, for replay), in order; nothing is lost or reordered.
      assert.deepEqual(dlq, ["poison", "b2"], "the poison record and the one behind it went to the DLQ");
      assert.ok((attempts.get("poison") ?? 0) >= queue.maxReceiveCount);
    } finally {
      await poller.stop();
    }
  });

  test("SQS: batches of other groups run while one is in flight; a group's later message waits for the earlier one's retry", async () => {
    const { queue } = await aws.fresh({ visibilityTimeoutSeconds: 1 });
    const send = (group: string, body: string) =>
      aws.sqsClient.send(
        new SendMessageCommand({
          QueueUrl: queue.queueUrl,
          MessageBody: body,
          MessageGroupId: group,
          MessageDeduplicationId: body,
        }),
      );
    const handed: string[] = []; // every record handed to an invocation, in order
    const handled: string[] = []; // records that succeeded
    let a1Started: () => void = () => {};
    const a1Running = new Promise<void>((resolve) => {
      a1Started = resolve;
    });
    let bWhileA1 = false;
    let a1Attempts = 0;
    const poller = startSqsPoller({
      client: aws.sqsClient,
      queueUrl: queue.queueUrl,
      queueArn: "arn:aws:sqs:us-east-1:000000000000:test.fifo",
      visibilityTimeoutSeconds: queue.visibilityTimeoutSeconds,
      concurrency: 4,
      handler: async (event: SQSEvent) => {
        const failures: { itemIdentifier: string }[] = [];
        for (const r of event.Records) {
          handed.push(r.body);
          if (failures.length) {
            failures.push({ itemIdentifier: r.messageId }); // behind a failure of its group
            continue;
          }
          if (r.body === "a1" && ++a1Attempts === 1) {
            a1Started();
            // The first attempt at a1 lasts until b1 has been handled by another invocation (at most 10 s),
            // then fails: a2, sent meanwhile, must wait for a1's redelivery.
            const deadline = Date.now() + 10_000;
            while (!handled.includes("b1") && Date.now() < deadline)
              await new Promise((x) => setTimeout(x, 20));
            bWhileA1 = handled.includes("b1");
            failures.push({ itemIdentifier: r.messageId });
            continue;
          }
          handled.push(r.body);
        }
        return { batchItemFailures: failures };
      },
    });
    try {
      await send("a", "a1");
      await a1Running;
      await send("a", "a2");
      await send("b", "b1");
      await waitFor(() => handled.includes("a2"), "a2 handled", 30_000);
      assert.ok(bWhileA1, "b1 was handled while a1's invocation was still running");
      assert.deepEqual(
        handled.filter((b) => b.startsWith("a")),
        ["a1", "a2"],
      );
      assert.deepEqual(
        handed.filter((b) => b.startsWith("a")),
        ["a1", "a1", "a2"],
        "a2 was never handed out before a1's redelivery",
      );
    } finally {
      await poller.stop();
    }
  });

  test("stream: a poisoned event is set aside and the rest of the shard is published (publisher handler)", async () => {
    const { tableName, queue } = await aws.fresh();
    const failuresUrl = await provisionStandardQueue(aws.sqs.endpoint, `${tableName}-failures`);
    const bus = new LocalEventBus();
    const server = createServer(async (req, res) => {
      let body = "";
      for await (const chunk of req) body += chunk;
      bus.handle(req, res, body);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    const eventBridge = new EventBridgeClient({
      endpoint: `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
    });
    const counted: string[] = [];
    const handler = createPublisherHandler({
      logger,
      publisher: new EventPublisher({
        bus: new EventBridgeBus({ client: eventBridge, busName: "maskline", source: "maskline" }),
        queue: new SqsForwardQueue({ queueUrl: queue.queueUrl, client: aws.sqsClient }),
        retries: 1,
        sleep: async () => {},
      }),
      setAside: new SqsSetAsideSink({ queueUrl: failuresUrl, client: aws.sqsClient }),
      count: (m) => counted.push(m.name),
    });
    const invocations: number[] = [];
    const poller = startStreamPoller({
      endpoint: aws.dynamo.endpoint,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
      tableName,
      handler: async (event: DynamoDBStreamEvent) => {
        invocations.push(event.Records.length);
        return handler(event);
      },
      intervalMs: 50,
    });
    try {
      const sessionId = newId("s");
      const good1 = eventItem(sessionId, 1, { reason: "api" });
      // A detail that fails its zod schema: it could never be published, however often it is retried.
      const poison = eventItem(sessionId, 2, { reason: "no-such-reason", note: "+12025550100" });
      const good2 = eventItem(sessionId, 3, { reason: "policy" });
      for (const item of [good1, poison, good2])
        await aws.doc.send(new PutCommand({ TableName: tableName, Item: item }));

      await waitFor(() => bus.events.length >= 2, "both good events on the bus");
      const published = bus.events.map((e) => (e.detail as { id: string }).id);
      assert.deepEqual(published, [good1.id, good2.id], "the event after the poisoned one went on, in order");

      const received = await aws.sqsClient.send(
        new ReceiveMessageCommand({ QueueUrl: failuresUrl, MaxNumberOfMessages: 10 }),
      );
      const setAside = (received.Messages ?? []).map((m) => JSON.parse(m.Body ?? "{}"));
      assert.equal(setAside.length, 1, "the poisoned record, and only it, was set aside");
      assert.equal(setAside[0].eventId, poison.id);
      assert.equal(setAside[0].sk, poison.sk);
      assert.match(setAside[0].reason, /invalid|custom/);
      assert.ok(!JSON.stringify(setAside).includes("+12025550100"), "no content of the item in the pointer");
      assert.ok(counted.includes("EventsSetAside"));
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(bus.events.length, 2, "nothing published twice, the shard did not stall or loop");
    } finally {
      await poller.stop();
      eventBridge.destroy();
      server.close();
    }
  });

  test("stream: a record that keeps failing is handed to the on-failure queue after maxRetries; the shard goes on", async () => {
    const { tableName } = await aws.fresh();
    const sessionId = newId("s");
    const items = [1, 2, 3].map((n) => eventItem(sessionId, n, { reason: "api" }));
    const stuck = items[1]?.id;
    const attempts = new Map<string, number>();
    const handled: string[] = [];
    const failures: StreamFailure[] = [];
    const poller = startStreamPoller({
      endpoint: aws.dynamo.endpoint,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
      tableName,
      maxRetries: 2,
      onFailure: async (failure) => {
        failures.push(failure);
      },
      // A handler that can never get past one record (not even by setting it aside).
      handler: async (event: DynamoDBStreamEvent) => {
        for (const record of event.Records) {
          const id = record.dynamodb?.NewImage?.id?.S ?? "";
          if (id === stuck) {
            attempts.set(id, (attempts.get(id) ?? 0) + 1);
            return { batchItemFailures: [{ itemIdentifier: record.dynamodb?.SequenceNumber ?? "" }] };
          }
          handled.push(id);
        }
        return { batchItemFailures: [] };
      },
      intervalMs: 50,
    });
    try {
      for (const item of items) await aws.doc.send(new PutCommand({ TableName: tableName, Item: item }));
      await waitFor(() => handled.length >= 2, "the records around the stuck one", 30_000);
      assert.deepEqual(handled, [items[0]?.id, items[2]?.id]);
      assert.equal(attempts.get(stuck ?? ""), 3, "one invocation and 2 retries, then given up");
      assert.equal(failures.length, 1);
      assert.equal(failures[0]?.requestContext.condition, "RetryAttemptsExhausted");
      assert.equal(failures[0]?.DDBStreamBatchInfo.batchSize, 1);
    } finally {
      await poller.stop();
    }
  });

  test("stream: the shard list is read once while no shard ends, not on every poll", async () => {
    const { tableName } = await aws.fresh();
    const sessionId = newId("s");
    const client = new DynamoDBStreamsClient({
      endpoint: aws.dynamo.endpoint,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
    });
    const calls = recordCalls(client);
    // The first item makes the shard; the poller starts once it is there.
    await aws.doc.send(new PutCommand({ TableName: tableName, Item: eventItem(sessionId, 0, {}) }));
    const handled: string[] = [];
    const poller = startStreamPoller({
      endpoint: aws.dynamo.endpoint,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
      tableName,
      client,
      describeIntervalMs: 60_000,
      handler: async (event: DynamoDBStreamEvent) => {
        for (const record of event.Records) handled.push(record.dynamodb?.NewImage?.id?.S ?? "");
        return { batchItemFailures: [] };
      },
      intervalMs: 20,
    });
    try {
      for (let n = 1; n <= 5; n++) {
        await aws.doc.send(new PutCommand({ TableName: tableName, Item: eventItem(sessionId, n, {}) }));
        await waitFor(() => handled.length === n + 1, `record ${n}`);
      }
      const count = (name: string) => calls.filter((c) => c === name).length;
      assert.ok(count("GetRecords") >= 6, "polled on and on");
      assert.equal(count("DescribeStream"), 1, "the shard list was read once");
    } finally {
      await poller.stop();
      client.destroy();
    }
  });

  test("stream: records arriving one by one are handed over together, one batch per interval, not one poll each", async () => {
    const { tableName } = await aws.fresh();
    const sessionId = newId("s");
    await aws.doc.send(new PutCommand({ TableName: tableName, Item: eventItem(sessionId, 0, {}) }));
    const batches: number[] = [];
    const intervalMs = 400;
    const poller = startStreamPoller({
      endpoint: aws.dynamo.endpoint,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
      tableName,
      handler: async (event: DynamoDBStreamEvent) => {
        batches.push(event.Records.length);
        return { batchItemFailures: [] };
      },
      intervalMs,
    });
    try {
      await waitFor(() => batches.length === 1, "the first record");
      const started = Date.now();
      for (let n = 1; n <= 30; n++) {
        await aws.doc.send(new PutCommand({ TableName: tableName, Item: eventItem(sessionId, n, {}) }));
        await new Promise((r) => setTimeout(r, 15));
      }
      await waitFor(() => batches.reduce((a, b) => a + b, 0) === 31, "every record");
      const elapsed = Date.now() - started;
      assert.ok(
        batches.length - 1 <= Math.ceil(elapsed / intervalMs) + 1,
        `${batches.length - 1} batches in ${elapsed} ms: at most one per interval`,
      );
    } finally {
      await poller.stop();
    }
  });

  test("scheduler: a run that reports more work is followed at once (continuation)", async () => {
    let runs = 0;
    const scheduler = startScheduler(async () => ({ more: ++runs < 3 }), 60_000);
    await scheduler.runNow();
    await scheduler.stop();
    assert.equal(runs, 3);
  });
});
