import {
  DescribeStreamCommand,
  DynamoDBStreamsClient,
  GetRecordsCommand,
  GetShardIteratorCommand,
  ListStreamsCommand,
  type _Record as StreamRecord,
} from "@aws-sdk/client-dynamodb-streams";
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageBatchCommand,
  type Message,
  ReceiveMessageCommand,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import type {
  Context,
  DynamoDBBatchResponse,
  DynamoDBStreamEvent,
  SQSBatchResponse,
  SQSEvent,
  SQSRecord,
} from "aws-lambda";

/**
 * Stand-ins for Lambda's event source mappings and EventBridge schedules, so the embedded stack invokes
 * the deployed handlers the way AWS does: batches, partial batch failures, visibility timeouts, redrive.
 */

export interface Poller {
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function localContext(functionName: string, timeoutMs: number): Context {
  const deadline = Date.now() + timeoutMs;
  return {
    functionName,
    functionVersion: "$LATEST",
    invokedFunctionArn: `arn:aws:lambda:local:000000000000:function:${functionName}`,
    memoryLimitInMB: "512",
    awsRequestId: crypto.randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: "local",
    callbackWaitsForEmptyEventLoop: false,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => {},
    fail: () => {},
    succeed: () => {},
  };
}

export interface SqsPollerOptions {
  client: SQSClient;
  queueUrl: string;
  queueArn: string;
  handler: (event: SQSEvent, context: Context) => Promise<SQSBatchResponse | undefined>;
  batchSize?: number;
  /** Invocations in flight at once (the mapping's `maxConcurrency`); each holds its own message groups. */
  concurrency?: number;
  timeoutMs?: number;
  /** The queue's visibility timeout: how long a failed record's message group stays blocked. */
  visibilityTimeoutSeconds: number;
  onError?: (error: unknown) => void;
}

/**
 * SQS → function: receive a batch, invoke, delete what succeeded; failures reappear after the visibility
 * timeout and go to the DLQ after maxReceiveCount, as with Lambda's event source mapping. Up to
 * `concurrency` invocations run at once, as Lambda scales a FIFO mapping out across message groups.
 *
 * SQS FIFO never hands out a group's message while an earlier one of the group is in flight; the local
 * server does. So the poller enforces it: it remembers every message of a group it received and has not
 * deleted, and runs a message only when all earlier ones of its group are done or in the same batch
 * (later ones wait in memory, still in flight). A group is therefore in one invocation at a time, and all
 * of a group's ready messages go to that one invocation. One that never comes back (gone to the DLQ) stops
 * blocking its group two visibility timeouts after it was returned to the queue.
 *
 * Receives are issued one at a time, never concurrently: first-seen order is then queue order within a
 * group (two receives in flight could answer in either order and put a later message first).
 */
export function startSqsPoller(options: SqsPollerOptions): Poller {
  let running = true;
  type Entry = {
    seq: number;
    message: Message | undefined;
    lastSeen: number;
    fresh: boolean;
    held: boolean;
    /** In an invocation now: blocks its group (itself included, should its visibility run out meanwhile). */
    running: boolean;
  };
  const outstanding = new Map<string, Map<string, Entry>>();
  // The local server's SequenceNumbers are not ordered; first-seen order is queue order within a group
  // (a message can only be hidden by being received, so an earlier one is always seen first).
  let seen = 0;
  let idle = 0;
  const holdSeconds = 6 * options.visibilityTimeoutSeconds;
  const goneAfterMs = 2 * options.visibilityTimeoutSeconds * 1000 + 1000;
  const concurrency = Math.max(1, options.concurrency ?? 1);
  const invocations = new Set<Promise<void>>();
  const groupOf = (group: string | undefined, messageId: string | undefined) =>
    group ?? `single:${messageId}`;

  /** The messages that may run now (in group order), and the newly received ones that must wait. */
  const select = (now: number) => {
    const messages: Message[] = [];
    const holds: Message[] = [];
    const wasHeld = new Set<string>();
    for (const [group, entries] of outstanding) {
      const ordered = [...entries].sort(([, x], [, y]) => x.seq - y.seq);
      let blocked = false;
      for (const [id, entry] of ordered) {
        if (!entry.message) {
          if (!entry.running && now - entry.lastSeen > goneAfterMs) {
            entries.delete(id);
            continue;
          }
          blocked = true; // an earlier message of the group is still in flight
          continue;
        }
        if (blocked || entry.running) {
          blocked = true;
          // Kept in flight while it waits, so waiting does not count as a delivery attempt.
          if (entry.fresh) holds.push(entry.message);
          entry.fresh = false;
          entry.held = true;
          continue;
        }
        if (entry.held) wasHeld.add(id);
        messages.push(entry.message);
        entry.message = undefined;
        entry.held = false;
        entry.running = true;
      }
      if (entries.size === 0) outstanding.delete(group);
    }
    return { messages, holds, wasHeld };
  };

  const invoke = async (messages: Message[], wasHeld: Set<string>) => {
    const records: SQSRecord[] = messages.map(toSqsRecord(options.queueArn));
    let failed = new Set<string>();
    try {
      const result = await options.handler(
        { Records: records },
        localContext("forward", options.timeoutMs ?? 30_000),
      );
      failed = new Set((result?.batchItemFailures ?? []).map((f) => f.itemIdentifier));
    } catch (error) {
      // A thrown invocation fails the whole batch, as on Lambda.
      options.onError?.(error);
      failed = new Set(records.map((r) => r.messageId));
    }
    const returned = Date.now();
    const receipts = records.filter((r) => !failed.has(r.messageId)).map((r) => r.receiptHandle);
    for (const r of records) {
      const group = groupOf(r.attributes.MessageGroupId, r.messageId);
      const entries = outstanding.get(group);
      const entry = entries?.get(r.messageId);
      if (!entries || !entry) continue;
      entry.running = false;
      if (failed.has(r.messageId))
        entry.lastSeen = returned; // back in the queue from now on
      else {
        // Received again while it ran (its visibility ran out): that copy is done too.
        if (entry.message?.ReceiptHandle) receipts.push(entry.message.ReceiptHandle);
        entries.delete(r.messageId);
      }
      if (entries.size === 0) outstanding.delete(group);
    }
    idle = 0;
    // A failed message that had been held comes back after the usual timeout, not the hold's.
    await Promise.all(
      records
        .filter((r) => failed.has(r.messageId) && wasHeld.has(r.messageId))
        .map((r) =>
          options.client
            .send(
              new ChangeMessageVisibilityCommand({
                QueueUrl: options.queueUrl,
                ReceiptHandle: r.receiptHandle,
                VisibilityTimeout: options.visibilityTimeoutSeconds,
              }),
            )
            .catch(() => {}),
        ),
    );
    for (let i = 0; i < receipts.length; i += 10)
      await options.client.send(
        new DeleteMessageBatchCommand({
          QueueUrl: options.queueUrl,
          Entries: receipts.slice(i, i + 10).map((handle, j) => ({ Id: String(j), ReceiptHandle: handle })),
        }),
      );
  };

  const loop = (async () => {
    while (running) {
      try {
        if (invocations.size >= concurrency) {
          await Promise.race(invocations);
          continue;
        }
        const received = await options.client.send(
          new ReceiveMessageCommand({
            QueueUrl: options.queueUrl,
            MaxNumberOfMessages: options.batchSize ?? 10,
            // The local server's long poll does not wake when a message arrives, so it is replaced by short
            // polls that back off while the queue is idle (10 ms to 100 ms).
            WaitTimeSeconds: 0,
            AttributeNames: ["All"],
            MessageAttributeNames: ["All"],
          }),
        );
        const now = Date.now();
        for (const m of received.Messages ?? []) {
          const group = groupOf(m.Attributes?.MessageGroupId, m.MessageId);
          const entries = outstanding.get(group) ?? new Map<string, Entry>();
          outstanding.set(group, entries);
          const entry = entries.get(m.MessageId ?? "");
          if (entry) Object.assign(entry, { message: m, lastSeen: now, fresh: true });
          else
            entries.set(m.MessageId ?? "", {
              seq: seen++,
              message: m,
              lastSeen: now,
              fresh: true,
              held: false,
              running: false,
            });
        }
        const { messages, holds, wasHeld } = select(now);
        if (messages.length && running) {
          const invocation = invoke(messages, wasHeld)
            .catch((error) => options.onError?.(error))
            .finally(() => invocations.delete(invocation));
          invocations.add(invocation);
        }
        await Promise.all(
          holds.map((m) =>
            options.client
              .send(
                new ChangeMessageVisibilityCommand({
                  QueueUrl: options.queueUrl,
                  ReceiptHandle: m.ReceiptHandle,
                  VisibilityTimeout: holdSeconds,
                }),
              )
              .catch(() => {}),
          ),
        );
        // A full batch: more are likely waiting, receive again at once. Otherwise wait for an invocation to
        // end (it may free a group; a poll while it runs costs the forwards in this process CPU), at most
        // 100 ms, or, with none running, for the back-off while the queue is idle.
        const got = received.Messages?.length ?? 0;
        if (got >= (options.batchSize ?? 10)) continue;
        idle = got || messages.length ? 0 : Math.min(100, Math.max(10, idle * 2));
        await Promise.race([sleep(invocations.size ? 100 : idle), ...invocations]);
      } catch (error) {
        if (!running) break;
        options.onError?.(error);
        await sleep(500);
      }
    }
    await Promise.all(invocations);
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

const toSqsRecord =
  (queueArn: string) =>
  (m: Message): SQSRecord => ({
    messageId: m.MessageId ?? "",
    receiptHandle: m.ReceiptHandle ?? "",
    body: m.Body ?? "",
    attributes: {
      ApproximateReceiveCount: m.Attributes?.ApproximateReceiveCount ?? "1",
      SentTimestamp: m.Attributes?.SentTimestamp ?? String(Date.now()),
      SenderId: "local",
      ApproximateFirstReceiveTimestamp: m.Attributes?.ApproximateFirstReceiveTimestamp ?? String(Date.now()),
      MessageGroupId: m.Attributes?.MessageGroupId,
      MessageDeduplicationId: m.Attributes?.MessageDeduplicationId,
      SequenceNumber: m.Attributes?.SequenceNumber,
    },
    messageAttributes: {},
    md5OfBody: m.MD5OfBody ?? "",
    eventSource: "aws:sqs",
    eventSourceARN: queueArn,
    awsRegion: "us-east-1",
  });

export interface StreamPollerOptions {
  endpoint: string;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  tableName: string;
  handler: (event: DynamoDBStreamEvent, context: Context) => Promise<DynamoDBBatchResponse | undefined>;
  batchSize?: number;
  intervalMs?: number;
  /** How often the shard list is read again while no shard has ended (default 1 s). */
  describeIntervalMs?: number;
  /** The DynamoDB Streams client to use (kept open on stop); by default one of its own. */
  client?: DynamoDBStreamsClient;
  onError?: (error: unknown) => void;
  /**
   * Retries of a failing record before it is handed to `onFailure` and the shard goes on (the mapping's
   * `retryAttempts`). Without `onFailure`, a failing record is retried for ever.
   */
  maxRetries?: number;
  /** The mapping's on-failure destination: gets a pointer to the record given up on. */
  onFailure?: (failure: StreamFailure) => Promise<void>;
}

/** What Lambda sends to an on-failure destination for a stream batch (a pointer, not the record). */
export interface StreamFailure {
  requestContext: { condition: "RetryAttemptsExhausted"; approximateInvokeCount: number };
  DDBStreamBatchInfo: {
    shardId: string;
    startSequenceNumber: string;
    endSequenceNumber: string;
    batchSize: number;
    streamArn: string;
  };
}

/**
 * DynamoDB stream → function, per shard in order. A reported failure re-reads the shard from the failed
 * record (with back-off), as Lambda's checkpointing does; nothing after it is skipped. After `maxRetries`
 * the failing record alone is handed to `onFailure` and the shard goes on after it — where Lambda's
 * bisect-on-error ends up, since a reported failure names the one record.
 */
export function startStreamPoller(options: StreamPollerOptions): Poller {
  const client =
    options.client ??
    new DynamoDBStreamsClient({
      endpoint: options.endpoint,
      region: options.region,
      credentials: options.credentials,
    });
  let running = true;
  const iterators = new Map<string, string | undefined>();
  const finished = new Set<string>();
  /** Invocations that failed at a sequence number, per shard: reset when the shard moves past it. */
  const attempts = new Map<string, { sequenceNumber: string; count: number }>();
  const loop = (async () => {
    const streams = await client.send(new ListStreamsCommand({ TableName: options.tableName }));
    const streamArn = streams.Streams?.[0]?.StreamArn;
    if (!streamArn) throw new Error(`table ${options.tableName} has no stream`);
    let backoff = 0;
    // The shard list is read again only when a shard has ended (its child is to be found) or every
    // `describeIntervalMs`, as Lambda discovers shards: not once per poll, which doubled the calls.
    let describedAt = Number.NEGATIVE_INFINITY;
    let shardEnded = true;
    while (running) {
      try {
        const describe =
          shardEnded ||
          iterators.size === 0 ||
          Date.now() - describedAt >= (options.describeIntervalMs ?? 1000);
        const description = describe
          ? await client.send(new DescribeStreamCommand({ StreamArn: streamArn }))
          : undefined;
        if (description) {
          describedAt = Date.now();
          shardEnded = false;
        }
        for (const shard of description?.StreamDescription?.Shards ?? []) {
          const shardId = shard.ShardId ?? "";
          if (finished.has(shardId) || iterators.has(shardId)) continue;
          const it = await client.send(
            new GetShardIteratorCommand({
              StreamArn: streamArn,
              ShardId: shardId,
              ShardIteratorType: "TRIM_HORIZON",
            }),
          );
          iterators.set(shardId, it.ShardIterator);
        }
        let full = false;
        for (const [shardId, iterator] of iterators) {
          if (!iterator) {
            iterators.delete(shardId);
            finished.add(shardId);
            shardEnded = true;
            continue;
          }
          const page = await client.send(
            new GetRecordsCommand({ ShardIterator: iterator, Limit: options.batchSize ?? 100 }),
          );
          const records = page.Records ?? [];
          if (records.length === 0) {
            iterators.set(shardId, page.NextShardIterator);
            continue;
          }
          full ||= records.length >= (options.batchSize ?? 100);
          const result = await options
            .handler(
              { Records: records.map(toLambdaRecord) } as DynamoDBStreamEvent,
              localContext("publisher", 30_000),
            )
            .catch((error) => {
              options.onError?.(error);
              return { batchItemFailures: [{ itemIdentifier: records[0]?.dynamodb?.SequenceNumber ?? "" }] };
            });
          const firstFailure = result?.batchItemFailures?.[0]?.itemIdentifier;
          const previous = attempts.get(shardId);
          const count = firstFailure && previous?.sequenceNumber === firstFailure ? previous.count + 1 : 1;
          if (firstFailure && options.onFailure && count > (options.maxRetries ?? Number.POSITIVE_INFINITY)) {
            // Give up on this one record: its pointer goes to the on-failure destination, the shard goes on.
            await options.onFailure({
              requestContext: { condition: "RetryAttemptsExhausted", approximateInvokeCount: count },
              DDBStreamBatchInfo: {
                shardId,
                startSequenceNumber: firstFailure,
                endSequenceNumber: firstFailure,
                batchSize: 1,
                streamArn,
              },
            });
            attempts.delete(shardId);
            const next = await client.send(
              new GetShardIteratorCommand({
                StreamArn: streamArn,
                ShardId: shardId,
                ShardIteratorType: "AFTER_SEQUENCE_NUMBER",
                SequenceNumber: firstFailure,
              }),
            );
            iterators.set(shardId, next.ShardIterator);
            backoff = 0;
          } else if (firstFailure) {
            attempts.set(shardId, { sequenceNumber: firstFailure, count });
            const retry = await client.send(
              new GetShardIteratorCommand({
                StreamArn: streamArn,
                ShardId: shardId,
                ShardIteratorType: "AT_SEQUENCE_NUMBER",
                SequenceNumber: firstFailure,
              }),
            );
            iterators.set(shardId, retry.ShardIterator);
            backoff = Math.min(5000, backoff ? backoff * 2 : 200);
          } else {
            attempts.delete(shardId);
            iterators.set(shardId, page.NextShardIterator);
            backoff = 0;
          }
        }
        // Polled again at once only after a full batch (more are waiting); otherwise after the interval, as
        // Lambda polls a shard a few times a second: records arriving meanwhile go out together (fewer
        // invocations, PutEvents and outbox sends) instead of one poll per record.
        await sleep(full && !backoff ? 0 : backoff || (options.intervalMs ?? 200));
      } catch (error) {
        if (!running) break;
        options.onError?.(error);
        await sleep(1000);
      }
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop.catch(() => {});
      if (!options.client) client.destroy();
    },
  };
}

function toLambdaRecord(record: StreamRecord) {
  return {
    eventID: record.eventID,
    eventName: record.eventName,
    eventSource: "aws:dynamodb",
    awsRegion: "us-east-1",
    dynamodb: {
      Keys: record.dynamodb?.Keys,
      NewImage: record.dynamodb?.NewImage,
      SequenceNumber: record.dynamodb?.SequenceNumber,
      SizeBytes: record.dynamodb?.SizeBytes,
      StreamViewType: record.dynamodb?.StreamViewType,
    },
  };
}

/** EventBridge schedule stand-in; a run that reports `more` is followed at once by another (continuation). */
export function startScheduler(
  run: () => Promise<{ more?: boolean } | undefined>,
  intervalMs: number,
  onError?: (error: unknown) => void,
): Poller & { runNow(): Promise<void> } {
  let running = true;
  let current: Promise<void> = Promise.resolve();
  const tick = async () => {
    for (let i = 0; running && i < 100; i++) {
      const result = await run().catch((error) => {
        onError?.(error);
        return undefined;
      });
      if (!result?.more) break;
    }
  };
  const timer = setInterval(() => {
    current = current.then(tick);
  }, intervalMs);
  return {
    runNow: () => {
      current = current.then(tick);
      return current;
    },
    stop: async () => {
      running = false;
      clearInterval(timer);
      await current;
    },
  };
}
