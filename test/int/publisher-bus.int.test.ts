/**
 * The publisher as Lambda runs it (its CDK bundle in a process of its own), fed DynamoDB stream batches and
 * publishing through the real EventBridge SDK client to a stand-in that behaves like PutEvents: per-entry
 * failures (FailedEntryCount), throttling, and the 256 KB request limit computed as EventBridge documents it.
 * What reaches the bus is checked against the published JSON Schemas in docs/events.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { AttributeValue } from "@aws-sdk/client-dynamodb";
import { ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { marshall } from "@aws-sdk/util-dynamodb";
import { Ajv } from "ajv";
import addFormats from "ajv-formats";
import { freePort, LOCAL_CREDENTIALS, LOCAL_REGION, provisionStandardQueue } from "../../local/aws-local.ts";
import { newId } from "../../shared/adapters/ids.ts";
import { bundleFunction, LambdaProcess } from "../support/lambda-process.ts";
import { startLocalAws } from "../support/stack.ts";

type Json = Record<string, unknown>;
type Entry = { Source: string; DetailType: string; Detail: string; Time?: number; EventBusName?: string };
const BUS = "maskline-publisher-test";
const LIMIT = 256 * 1024;

/** EventBridge's entry size: Time 14 bytes, Source, DetailType, Detail (UTF-8). */
const entrySize = (e: Entry) =>
  (e.Time === undefined ? 0 : 14) +
  Buffer.byteLength(e.Source ?? "") +
  Buffer.byteLength(e.DetailType ?? "") +
  Buffer.byteLength(e.Detail ?? "");

/** What the bus accepted, in order; and the fault each call gets (shifted per PutEvents call). */
const accepted: Entry[] = [];
const calls: Entry[][] = [];
let faults: ((entries: Entry[]) => { status: number; body: Json } | undefined)[] = [];

let bus: Server;
let aws: Awaited<ReturnType<typeof startLocalAws>>;
let publisher: LambdaProcess;
let failuresUrl: string;
const bundleDir = mkdtempSync(join(tmpdir(), "maskline-publisher-bus-"));

const ajv = new Ajv({ strict: false, allErrors: true });
(addFormats as unknown as (a: Ajv) => void)(ajv);
const schemaDir = join(import.meta.dirname, "../../docs/events");
const validators = new Map(
  readdirSync(schemaDir)
    .filter((f) => f.endsWith(".schema.json"))
    .map((f) => [
      f.replace(".schema.json", ""),
      ajv.compile(JSON.parse(readFileSync(join(schemaDir, f), "utf8"))),
    ]),
);

let seq = 1000;
function record(item: Json) {
  return {
    eventID: randomBytes(16).toString("hex"),
    eventName: "INSERT",
    eventVersion: "1.1",
    eventSource: "aws:dynamodb",
    awsRegion: "us-east-1",
    dynamodb: {
      ApproximateCreationDateTime: Math.floor(Date.now() / 1000),
      Keys: marshall({ pk: item.pk, sk: item.sk }),
      NewImage: marshall(item, { removeUndefinedValues: true }) as Record<string, AttributeValue>,
      SequenceNumber: String(++seq).padStart(21, "0"),
      SizeBytes: 512,
      StreamViewType: "NEW_IMAGE",
    },
    eventSourceARN: "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-11-27T00:00:00.000",
  };
}

let clock = Date.parse("2026-11-28T00:00:00.000Z");
function eventItem(type: string, sessionId: string | null, detail: Json): Json {
  const id = newId("evt");
  clock += 1000;
  const occurredAt = new Date(clock).toISOString();
  return {
    pk: sessionId ? `SESSION#${sessionId}` : "POOL",
    sk: `EVENT#${occurredAt}#${id}`,
    kind: "event",
    id,
    type,
    occurredAt,
    sessionId,
    detailVersion: 1,
    detail,
  };
}
const sessionClosed = (sessionId: string) => eventItem("SessionClosed", sessionId, { reason: "api" });
const numberAdded = (n: number) =>
  eventItem("NumberAdded", null, { phoneNumber: `+1415555${String(n).padStart(4, "0")}`, callingCode: "1" });

type Result = { batchItemFailures: { itemIdentifier: string }[] };
const invoke = (records: unknown[]) => publisher.invoke<Result>({ Records: records });
const idsOf = (entries: Entry[]) => entries.map((e) => (JSON.parse(e.Detail) as { id: string }).id);

async function setAside(): Promise<Json[]> {
  const r = await aws.sqsClient.send(
    new ReceiveMessageCommand({ QueueUrl: failuresUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }),
  );
  return (r.Messages ?? []).map((m) => JSON.parse(m.Body ?? "{}") as Json);
}

describe("publisher bundle → EventBridge (SDK client, PutEvents stand-in)", () => {
  before(async () => {
    const bundle = await bundleFunction("publisher", bundleDir);
    aws = await startLocalAws();
    const fresh = await aws.fresh();
    failuresUrl = await provisionStandardQueue(aws.sqs.endpoint, `${fresh.tableName}-PublisherFailures`);
    bus = createServer(async (req, res) => {
      let body = "";
      for await (const chunk of req) body += chunk;
      const entries = ((JSON.parse(body || "{}") as { Entries?: Entry[] }).Entries ?? []) as Entry[];
      calls.push(entries);
      const fault = faults.shift()?.(entries);
      const total = entries.reduce((n, e) => n + entrySize(e), 0);
      const answer =
        fault ??
        (total > LIMIT
          ? {
              status: 400,
              body: {
                __type: "ValidationException",
                message: "Total size of the entries in the request is over the limit.",
              },
            }
          : undefined);
      if (answer) {
        // Entries a 200 answer took (the rest carry an ErrorCode) reached the bus.
        const results = (answer.body.Entries ?? []) as Json[];
        if (answer.status === 200) accepted.push(...entries.filter((_, i) => results[i]?.EventId));
        res.writeHead(answer.status, { "content-type": "application/x-amz-json-1.1" });
        res.end(JSON.stringify(answer.body));
        return;
      }
      accepted.push(...entries);
      res.writeHead(200, { "content-type": "application/x-amz-json-1.1" });
      res.end(
        JSON.stringify({ FailedEntryCount: 0, Entries: entries.map(() => ({ EventId: newId("eb") })) }),
      );
    });
    const port = await freePort();
    await new Promise<void>((resolve) => bus.listen(port, "127.0.0.1", resolve));
    publisher = new LambdaProcess("publisher", bundle, {
      AWS_REGION: LOCAL_REGION,
      AWS_DEFAULT_REGION: LOCAL_REGION,
      AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
      AWS_LAMBDA_FUNCTION_NAME: "maskline-publisher",
      AWS_ENDPOINT_URL_SQS: aws.sqs.endpoint,
      AWS_ENDPOINT_URL_EVENTBRIDGE: `http://127.0.0.1:${port}`,
      EVENT_BUS_NAME: BUS,
      PUBLISHER_FAILURES_QUEUE_URL: failuresUrl,
      FORWARD_QUEUE_URL: fresh.queue.queueUrl,
      POWERTOOLS_LOG_LEVEL: "WARN",
    });
  });

  after(async () => {
    await publisher?.stop();
    bus?.close();
    await aws?.stop();
    rmSync(bundleDir, { recursive: true, force: true });
  });

  test("every entry is the versioned envelope its schema describes, source maskline, detail-type its type", async () => {
    accepted.length = 0;
    const items = [
      sessionClosed("ses_a"),
      numberAdded(1),
      eventItem("ParticipantErased", null, {
        pseudonym: `anon:${"A".repeat(43)}`,
        sessionIds: ["ses_a"],
        events: 1,
        messages: 0,
      }),
    ];
    const r = await invoke(items.map(record));
    assert.deepEqual(r.batchItemFailures, []);
    assert.deepEqual(
      idsOf(accepted),
      items.map((i) => i.id),
    );
    for (const entry of accepted) {
      const detail = JSON.parse(entry.Detail) as Json;
      assert.equal(entry.Source, "maskline");
      assert.equal(entry.EventBusName, BUS);
      assert.equal(entry.DetailType, detail.type);
      assert.equal(entry.Time, Date.parse(String(detail.occurredAt)) / 1000);
      const validate = validators.get(`${detail.type}.v${detail.detailVersion}`);
      assert.ok(validate?.(detail), JSON.stringify(validate?.errors));
    }
  });

  test("an entry the bus refuses (FailedEntryCount > 0) is sent again until taken; the batch succeeds", async () => {
    accepted.length = 0;
    const items = [sessionClosed("ses_b"), numberAdded(2), numberAdded(3)];
    faults = [
      () => ({
        status: 200,
        body: {
          FailedEntryCount: 1,
          Entries: [
            { EventId: "x" },
            { ErrorCode: "InternalFailure", ErrorMessage: "try again" },
            { EventId: "y" },
          ],
        },
      }),
    ];
    const r = await invoke(items.map(record));
    assert.deepEqual(r.batchItemFailures, []);
    assert.deepEqual(new Set(idsOf(accepted)), new Set(items.map((i) => i.id)));
  });

  test("an entry refused once does not let a later event of its session (or of the pool) overtake it", async () => {
    accepted.length = 0;
    const items = [sessionClosed("ses_f"), numberAdded(8), sessionClosed("ses_f"), numberAdded(9)];
    const refuseFirst = (entries: Entry[]) => ({
      status: 200,
      body: {
        FailedEntryCount: 2,
        Entries: entries.map((e) =>
          [items[0]?.id, items[1]?.id].includes(idsOf([e])[0])
            ? { ErrorCode: "InternalFailure", ErrorMessage: "try again" }
            : { EventId: "ok" },
        ),
      },
    });
    faults = [refuseFirst];
    const r = await invoke(items.map(record));
    faults = [];
    assert.deepEqual(r.batchItemFailures, []);
    const ids = idsOf(accepted);
    const lane = (sessionId: string | null) =>
      ids.filter((id) => items.find((i) => i.id === id)?.sessionId === sessionId);
    assert.deepEqual(lane("ses_f"), [items[0]?.id, items[2]?.id]);
    assert.deepEqual(lane(null), [items[1]?.id, items[3]?.id]);
  });

  test("when an event cannot be published, no later event of its session is: the retried batch delivers them in order", async () => {
    accepted.length = 0;
    const items = [sessionClosed("ses_g"), sessionClosed("ses_g"), numberAdded(10)];
    const records = items.map(record);
    const refuseFirst = (entries: Entry[]) => ({
      status: 200,
      body: {
        FailedEntryCount: 1,
        Entries: entries.map((e) =>
          idsOf([e])[0] === items[0]?.id
            ? { ErrorCode: "InternalFailure", ErrorMessage: "no" }
            : { EventId: "ok" },
        ),
      },
    });
    faults = Array.from({ length: 10 }, () => refuseFirst);
    const r = await invoke(records);
    faults = [];
    assert.deepEqual(r.batchItemFailures, [{ itemIdentifier: records[0]?.dynamodb.SequenceNumber }]);
    assert.ok(!idsOf(accepted).includes(String(items[1]?.id)), "the later event of ses_g waited");
    assert.deepEqual((await invoke(records)).batchItemFailures, []);
    const sessionIds = idsOf(accepted).filter((id) => id !== items[2]?.id);
    assert.deepEqual(sessionIds, [items[0]?.id, items[1]?.id]);
  });

  test("throttling is waited out", async () => {
    accepted.length = 0;
    const items = [sessionClosed("ses_c"), numberAdded(4)];
    const throttle = () => ({
      status: 400,
      body: { __type: "ThrottlingException", message: "Rate exceeded" },
    });
    faults = [throttle, throttle, throttle, throttle];
    const r = await invoke(items.map(record));
    assert.deepEqual(r.batchItemFailures, []);
    assert.deepEqual(
      idsOf(accepted),
      items.map((i) => i.id),
    );
  });

  test("an entry refused every time fails the batch from its sequence number; a retry of the batch repeats ids, never new ones", async () => {
    accepted.length = 0;
    const items = [numberAdded(5), sessionClosed("ses_d"), numberAdded(6)];
    const records = items.map(record);
    const refuseSecond = (entries: Entry[]) => ({
      status: 200,
      body: {
        FailedEntryCount: 1,
        Entries: entries.map((e) =>
          idsOf([e])[0] === items[1]?.id
            ? { ErrorCode: "InternalFailure", ErrorMessage: "no" }
            : { EventId: "z" },
        ),
      },
    });
    faults = Array.from({ length: 10 }, () => refuseSecond);
    const r = await invoke(records);
    faults = [];
    assert.deepEqual(r.batchItemFailures, [{ itemIdentifier: records[1]?.dynamodb.SequenceNumber }]);
    const retried = await invoke(records.slice(1));
    assert.deepEqual(retried.batchItemFailures, []);
    assert.deepEqual(new Set(idsOf(accepted)), new Set(items.map((i) => i.id)));
  });

  test("events that together exceed 256 KB go out in several calls; one too large for EventBridge is set aside and the rest are published", async () => {
    accepted.length = 0;
    calls.length = 0;
    await setAside();
    const many = (n: number) => Array.from({ length: n }, (_, i) => `ses_${String(i).padStart(22, "0")}`);
    const erased = (n: number) =>
      eventItem("ParticipantErased", null, {
        pseudonym: `anon:${"B".repeat(43)}`,
        sessionIds: many(n),
        events: n,
        messages: 0,
      });
    // Each ~90 KB: three fit no single request.
    const big = [erased(3000), erased(3000), erased(3000)];
    // ~290 KB on its own: EventBridge can never take it.
    const huge = erased(10000);
    const items = [...big, numberAdded(7), huge, sessionClosed("ses_e")];
    const records = items.map(record);
    const r = await invoke(records);
    assert.deepEqual(r.batchItemFailures, []);
    assert.deepEqual(new Set(idsOf(accepted)), new Set(items.filter((i) => i !== huge).map((i) => i.id)));
    assert.ok(calls.every((c) => c.reduce((n, e) => n + entrySize(e), 0) <= LIMIT || c.length === 1));
    const aside = await setAside();
    assert.deepEqual(
      aside.map((a) => a.eventId),
      [huge.id],
    );
    assert.doesNotMatch(JSON.stringify(aside), /ses_0000/);
  });
});
