/**
 * AWS cost per 1,000 forwarded messages, next to what Twilio charges for them.
 *
 * The production handlers (functions/inbound, forward, publisher) run in this process against DynamoDB
 * Local and the SQS server, wired like the embedded stack: an HTTP server invoking inbound with API
 * Gateway events, an SQS poller invoking forward, a stream poller invoking publisher, the Twilio sandbox
 * (which also posts the "sent" and "delivered" status callbacks Twilio would). An SDK middleware on the
 * handlers' own clients counts every AWS call and the capacity DynamoDB reports; each handler invocation is
 * timed for Lambda GB-seconds; PutEvents entries are counted at the local EventBridge endpoint. Then every
 * session is closed and that phase (the close, the retention stamps) is metered apart: a cost each message
 * shares at its session's end. Prices:
 * bench/lib/prices.ts. The floor (bench/lib/floor.ts) is metered and priced the same way in the same run.
 *
 *   npm run bench:cost [-- --quick] [-- --messages 500 --twilio-ms 250]
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { SQSClient } from "@aws-sdk/client-sqs";
import type { Context } from "aws-lambda";
import { freePort, LOCAL_CREDENTIALS, LOCAL_REGION, provisionStandardQueue } from "../local/aws-local.ts";
import { LocalEventBus } from "../local/event-bus.ts";
import { startSqsPoller, startStreamPoller } from "../local/pollers.ts";
import { createLocalServer, type HttpHandler } from "../local/server.ts";
import { TwilioSandbox } from "../local/twilio-sandbox.ts";
import { newId } from "../shared/adapters/ids.ts";
import { SqsForwardQueue } from "../shared/adapters/sqs-queue.ts";
import { SessionService } from "../shared/app/sessions.ts";
import type { E164 } from "../shared/domain/phone.ts";
import { functions } from "../shared/resources.ts";
import { startLocalAws } from "../test/support/stack.ts";
import { benchOptions, heading, log, quietNodeWarnings } from "./lib/cli.ts";
import { FloorPipeline } from "./lib/floor.ts";
import { AwsMeter, capacityKind } from "./lib/meter.ts";
import { PRICES } from "./lib/prices.ts";
import { main, onCleanup } from "./lib/processes.ts";
import { ratio, summarize, table, usd } from "./lib/stats.ts";
import { startTwilioStandIn } from "./lib/twilio-standin.ts";

quietNodeWarnings();

const options = benchOptions({
  messages: { full: 500, quick: 60, help: "messages forwarded and counted" },
  sessions: { full: 50, quick: 10, help: "sessions the messages are spread over" },
  senders: { full: 4, quick: 4, help: "concurrent senders" },
  pool: { full: 10, quick: 4, help: "pool numbers" },
  "twilio-ms": { full: 250, quick: 250, help: "Twilio REST latency assumed for the production estimate" },
});

const ACCOUNT_SID = `AC${"b".repeat(32)}`;
const AUTH_TOKEN = "bench-cost-auth-token-0123456789";
const PUBLIC_BASE_URL = "https://maskline-bench.example.com";

type FunctionKey = "inbound" | "forward" | "publisher";

interface Bill {
  lines: [string, string, number][];
  total: number;
}

const waitUntil = async (
  what: string,
  predicate: () => boolean,
  timeoutMs: number,
  progress: () => string = () => "",
) => {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (${progress()})`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

/** Prices per message: AWS calls from the meter, invocations and their durations, events put. */
function bill(input: {
  messages: number;
  meter: AwsMeter;
  apiRequests: number;
  invocations: Record<string, number[]>;
  memoryMb: Record<string, number>;
  events: number;
  extraForwardMs?: number;
}): Bill {
  const { messages, meter } = input;
  const per = (n: number) => n / messages;
  const lines: [string, string, number][] = [];
  lines.push([
    "API Gateway HTTP API",
    `${per(input.apiRequests).toFixed(2)} requests`,
    per(input.apiRequests) * PRICES.httpApiPerRequest,
  ]);
  let requests = 0;
  let gbSeconds = 0;
  for (const [name, durations] of Object.entries(input.invocations)) {
    requests += durations.length;
    const extra = name === "forward" ? (input.extraForwardMs ?? 0) * messages : 0;
    const billedMs = durations.reduce((s, d) => s + Math.ceil(d), 0) + extra;
    gbSeconds += (billedMs / 1000) * ((input.memoryMb[name] ?? 512) / 1024);
  }
  lines.push([
    "Lambda requests",
    `${per(requests).toFixed(2)} invocations`,
    per(requests) * PRICES.lambdaPerRequest,
  ]);
  lines.push([
    "Lambda arm64 duration",
    `${(per(gbSeconds) * 1000).toFixed(2)} GB-ms`,
    per(gbSeconds) * PRICES.lambdaArmPerGbSecond,
  ]);
  const dynamo = meter.list().filter((s) => s.service === "dynamodb");
  const wru = dynamo.filter((s) => capacityKind(s.command) === "write").reduce((a, s) => a + s.capacity, 0);
  const rru = dynamo.filter((s) => capacityKind(s.command) === "read").reduce((a, s) => a + s.capacity, 0);
  lines.push(["DynamoDB writes", `${per(wru).toFixed(2)} WRU`, per(wru) * PRICES.dynamoPerWru]);
  lines.push(["DynamoDB reads", `${per(rru).toFixed(2)} RRU`, per(rru) * PRICES.dynamoPerRru]);
  const sqs = meter.total((s) => s.service.startsWith("sqs"));
  lines.push(["SQS FIFO", `${per(sqs).toFixed(2)} requests`, per(sqs) * PRICES.sqsFifoPerRequest]);
  lines.push([
    "EventBridge",
    `${per(input.events).toFixed(2)} events`,
    per(input.events) * PRICES.eventBridgePerEvent,
  ]);
  return { lines, total: lines.reduce((s, l) => s + l[2], 0) };
}

main(async () => {
  heading(`bench:cost${options.quick ? " (quick)" : ""}`);
  const aws = await startLocalAws();
  onCleanup(() => aws.stop());
  const { tableName, queue, store } = await aws.fresh({ visibilityTimeoutSeconds: 10 });
  const port = await freePort();
  const serverUrl = `http://127.0.0.1:${port}`;
  // The local EventBridge answers only at its own private path on the server.
  const bus = new LocalEventBus();

  // The handlers read their configuration at import, as at a cold start.
  Object.assign(process.env, {
    AWS_REGION: LOCAL_REGION,
    AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
    AWS_ENDPOINT_URL_DYNAMODB: aws.dynamo.endpoint,
    AWS_ENDPOINT_URL_SQS: aws.sqs.endpoint,
    AWS_ENDPOINT_URL_EVENTBRIDGE: `${serverUrl}${bus.path}`,
    TABLE_NAME: tableName,
    FORWARD_QUEUE_URL: queue.queueUrl,
    PUBLISHER_FAILURES_QUEUE_URL: await provisionStandardQueue(aws.sqs.endpoint, `${tableName}-failures`),
    PUBLIC_BASE_URL,
    TWILIO_ACCOUNT_SID: ACCOUNT_SID,
    TWILIO_AUTH_TOKEN: AUTH_TOKEN,
    TWILIO_API_BASE_URL: serverUrl,
    POWERTOOLS_LOG_LEVEL: "WARN",
    POWERTOOLS_METRICS_DISABLED: "true",
    // Few senders carry the load: a limit they never reach keeps the rate-window write in the measured cost.
    SENDER_RATE_LIMIT: "999999/60",
  });
  const [inbound, forward, publisher, clients] = await Promise.all([
    import("../functions/inbound/handler.ts"),
    import("../functions/forward/handler.ts"),
    import("../functions/publisher/handler.ts"),
    import("../shared/adapters/aws.ts"),
  ]);
  const meter = new AwsMeter();
  meter.attach(clients.documentClient(), "dynamodb");
  meter.attach(clients.sqsClient(), "sqs");
  const esmSqs = new SQSClient({
    endpoint: aws.sqs.endpoint,
    region: LOCAL_REGION,
    credentials: LOCAL_CREDENTIALS,
  });
  onCleanup(async () => esmSqs.destroy());
  meter.attach(esmSqs, "sqs (event source mapping)");

  const invocations: Record<FunctionKey, number[]> = { inbound: [], forward: [], publisher: [] };
  const timed =
    <E, R>(name: FunctionKey, fn: (event: E, context: Context) => Promise<R>) =>
    async (event: E, context: Context): Promise<R> => {
      const started = performance.now();
      try {
        return await fn(event, context);
      } finally {
        invocations[name].push(performance.now() - started);
      }
    };

  const sandbox = new TwilioSandbox({
    accountSid: ACCOUNT_SID,
    authToken: AUTH_TOKEN,
    publicBaseUrl: PUBLIC_BASE_URL,
    webhookTarget: serverUrl,
    statusCallbackDelayMs: 20,
  });
  const published = { calls: 0, entries: 0, byType: new Map<string, number>() };
  const busHandle = bus.handle.bind(bus);
  bus.handle = (req: IncomingMessage, res: ServerResponse, body: string) => {
    published.calls++;
    for (const entry of (JSON.parse(body || "{}").Entries ?? []) as { DetailType?: string }[]) {
      published.entries++;
      const type = entry.DetailType ?? "?";
      published.byType.set(type, (published.byType.get(type) ?? 0) + 1);
    }
    return busHandle(req, res, body);
  };
  let apiRequests = 0;
  const inboundHandler = timed(
    "inbound",
    inbound.handler as unknown as (e: unknown, c: Context) => Promise<unknown>,
  );
  const server = createLocalServer({
    handlers: {
      inbound: (async (event: unknown, context: Context) => {
        apiRequests++;
        return inboundHandler(event, context);
      }) as unknown as HttpHandler,
    },
    sandbox,
    bus,
    sandboxApi: async () => false,
    sandboxEnabled: () => true,
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  onCleanup(
    () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const sqsPoller = startSqsPoller({
    client: esmSqs,
    queueUrl: queue.queueUrl,
    queueArn: `arn:aws:sqs:${LOCAL_REGION}:000000000000:${queue.queueUrl.split("/").pop()}`,
    handler: timed("forward", forward.handler),
    visibilityTimeoutSeconds: queue.visibilityTimeoutSeconds,
  });
  const streamPoller = startStreamPoller({
    endpoint: aws.dynamo.endpoint,
    region: LOCAL_REGION,
    credentials: LOCAL_CREDENTIALS,
    tableName,
    handler: timed("publisher", publisher.handler),
    batchSize: 100,
  });
  onCleanup(() => sqsPoller.stop());
  onCleanup(() => streamPoller.stop());

  // Set-up (not counted): the pool and the sessions, through the real service.
  const sessions = new SessionService({
    store,
    queue: new SqsForwardQueue({ queueUrl: queue.queueUrl, client: aws.sqsClient }),
    clock: { now: () => Date.now() },
    newId,
    quarantineSeconds: 3600,
  });
  for (let i = 0; i < options.pool; i++) await sessions.addNumber(`+1415${String(4_000_000 + i)}` as E164);
  const conversations: { sessionId: string; a: string; b: string; proxyA: string; proxyB: string }[] = [];
  for (let i = 0; i < options.sessions; i++) {
    const a = `+1202${String(4_000_000 + i)}`;
    const b = `+1303${String(4_000_000 + i)}`;
    const { session } = await sessions.openSession({
      participants: [{ phoneNumber: a as E164 }, { phoneNumber: b as E164 }],
      mode: "sms+voice",
      ttlSeconds: 24 * 3600,
      ttlMode: "absolute",
    });
    conversations.push({
      sessionId: session.sessionId,
      a,
      b,
      proxyA: session.participants[0].proxyNumber,
      proxyB: session.participants[1].proxyNumber,
    });
  }
  const setupEvents = options.pool + options.sessions;
  await waitUntil(
    "set-up events to be published",
    () => published.entries >= setupEvents,
    60_000,
    () => `${published.entries} of ${setupEvents} published`,
  );
  await new Promise((r) => setTimeout(r, 1500));
  meter.reset();
  for (const list of Object.values(invocations)) list.length = 0;
  apiRequests = 0;
  published.calls = 0;
  published.entries = 0;
  published.byType.clear();

  // The measured traffic: N texts from virtual phones, forwarded, then "sent" and "delivered" callbacks.
  const n = options.messages;
  log(
    `${n} texts over ${options.sessions} sessions, ${options.senders} concurrent senders, status callbacks on`,
  );
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: options.senders }, async () => {
      while (next < n) {
        const i = next++;
        const c = conversations[i % conversations.length];
        if (!c) continue;
        const there = Math.floor(i / conversations.length) % 2 === 0;
        const result = await sandbox.phoneSends(
          there ? c.a : c.b,
          there ? c.proxyA : c.proxyB,
          `cost #${i} ok?`,
        );
        if (result.status !== 200) throw new Error(`webhook answered ${result.status}`);
      }
    }),
  );
  const count = (type: string) => published.byType.get(type) ?? 0;
  await waitUntil(
    "every message to be forwarded, delivered and published",
    () => count("MessageReceived") >= n && count("MessageForwarded") >= n && count("MessageDelivered") >= n,
    Math.max(60_000, n * 200),
    () =>
      `${sandbox.messages.length} sent to Twilio; published ${[...published.byType].map(([t, c]) => `${c} ${t}`).join(", ")}`,
  );
  // Let trailing work (outbox re-enqueue, last stream batch) finish.
  let settled = -1;
  while (settled !== meter.total() + published.calls) {
    settled = meter.total() + published.calls;
    await new Promise((r) => setTimeout(r, 1500));
  }
  const wallMs = performance.now() - started;
  const memoryMb = Object.fromEntries(Object.values(functions).map((f) => [f.name, f.memoryMb]));
  const ours = bill({ messages: n, meter, apiRequests, invocations, memoryMb, events: published.entries });
  const production = bill({
    messages: n,
    meter,
    apiRequests,
    invocations,
    memoryMb,
    events: published.entries,
    extraForwardMs: options["twilio-ms"],
  });

  // Each session's end, which every forwarded message eventually shares: DELETE /sessions/{id} (the close
  // transaction), then the retention ttl stamped on the session's items (its events and message log).
  const endMeter = new AwsMeter();
  endMeter.attach(aws.doc, "dynamodb");
  const publishedBefore = published.entries;
  const closedBefore = published.byType.get("SessionClosed") ?? 0;
  const closeMs: number[] = [];
  for (const c of conversations) {
    const at = performance.now();
    await sessions.closeSession(c.sessionId);
    closeMs.push(performance.now() - at);
  }
  await waitUntil(
    "the closes to be published",
    () => (published.byType.get("SessionClosed") ?? 0) - closedBefore >= conversations.length,
    60_000,
  );
  const end = bill({
    messages: n,
    meter: endMeter,
    apiRequests: conversations.length,
    // DELETE /sessions/{id} runs in the allocate function.
    invocations: { allocate: closeMs },
    memoryMb,
    events: published.entries - publishedBefore,
  });
  await sqsPoller.stop();
  await streamPoller.stop();

  heading("AWS calls per forwarded message (SDK middleware on the handlers' clients)");
  log(
    table([
      ["service", "call", "per message", "capacity units per message", "p50 latency", "errors"],
      ...meter
        .list()
        .filter((s) => !s.command.endsWith("(empty)"))
        .map((s) => [
          s.service,
          s.command.replace("Command", ""),
          (s.calls / n).toFixed(2),
          capacityKind(s.command) === "none"
            ? ""
            : `${(s.capacity / n).toFixed(2)} ${capacityKind(s.command) === "read" ? "RRU" : "WRU"}`,
          `${summarize(s.ms).p50.toFixed(1)} ms`,
          s.errors ? `${s.errors} ${[...s.errorNames.keys()].join(", ")}` : "",
        ]),
      [
        "eventbridge",
        "PutEvents",
        (published.calls / n).toFixed(2),
        `${(published.entries / n).toFixed(2)} events`,
        "",
        "",
      ],
      ["api gateway", "HTTP request", (apiRequests / n).toFixed(2), "", "", ""],
      ...Object.entries(invocations).map(([name, d]) => [
        "lambda",
        `${name} invocation`,
        (d.length / n).toFixed(2),
        "",
        `${summarize(d).p50.toFixed(1)} ms`,
        "",
      ]),
    ]),
  );
  log(
    "  DynamoDB reads as reported by DynamoDB Local; transaction writes estimated from item sizes " +
      "(2 WRU per KB per item: DynamoDB Local under-reports transactions); stream reads by Lambda are free",
  );

  const perSession = conversations.length;
  heading(
    `At each session's end: the close, then the retention ttl on its items (${(n / perSession).toFixed(0)} messages per session)`,
  );
  log(
    table([
      ["service", "call", "per session", "capacity units per session", "per message"],
      ...endMeter
        .list()
        .map((s) => [
          s.service,
          s.command.replace("Command", ""),
          (s.calls / perSession).toFixed(2),
          capacityKind(s.command) === "none"
            ? ""
            : `${(s.capacity / perSession).toFixed(2)} ${capacityKind(s.command) === "read" ? "RRU" : "WRU"}`,
          capacityKind(s.command) === "none"
            ? ""
            : `${(s.capacity / n).toFixed(2)} ${capacityKind(s.command) === "read" ? "RRU" : "WRU"}`,
        ]),
    ]),
  );

  // The floor, metered and priced the same way, on a fresh table and queue of the same servers.
  const floorAws = await aws.fresh({ visibilityTimeoutSeconds: 10 });
  const floorMeter = new AwsMeter();
  const { DynamoDBClient } = await import("@aws-sdk/client-dynamodb");
  const { DynamoDBDocumentClient } = await import("@aws-sdk/lib-dynamodb");
  const floorDoc = DynamoDBDocumentClient.from(
    new DynamoDBClient({
      endpoint: aws.dynamo.endpoint,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
    }),
    { marshallOptions: { removeUndefinedValues: true } },
  );
  const floorSqs = new SQSClient({
    endpoint: aws.sqs.endpoint,
    region: LOCAL_REGION,
    credentials: LOCAL_CREDENTIALS,
  });
  onCleanup(async () => {
    floorDoc.destroy();
    floorSqs.destroy();
  });
  floorMeter.attach(floorDoc, "dynamodb").attach(floorSqs, "sqs");
  const standIn = await startTwilioStandIn();
  onCleanup(() => standIn.stop());
  const floor = new FloorPipeline({
    doc: floorDoc,
    sqs: floorSqs,
    tableName: floorAws.tableName,
    queueUrl: floorAws.queue.queueUrl,
    twilioUrl: standIn.url,
    accountSid: ACCOUNT_SID,
    authToken: AUTH_TOKEN,
    visibilityTimeoutSeconds: floorAws.queue.visibilityTimeoutSeconds,
  });
  floor.startConsumer();
  next = 0;
  await Promise.all(
    Array.from({ length: options.senders }, async () => {
      while (next < n) {
        const i = next++;
        const c = conversations[i % conversations.length];
        if (!c) continue;
        await floor.accept({
          id: `SMfloor${i}`,
          sessionId: `ses_floor${i % conversations.length}`,
          from: c.a,
          to: c.proxyA,
          proxy: c.proxyA,
          recipient: c.b,
          recipientProxy: c.proxyB,
          body: `floor #${i} ok?`,
        });
      }
    }),
  );
  await waitUntil("the floor to deliver", () => standIn.received.length >= n, Math.max(60_000, n * 200));
  await floor.stop();

  const floorBill = bill({
    messages: n,
    meter: floorMeter,
    apiRequests: n,
    invocations: { inbound: floor.acceptMs, forward: floor.batchMs },
    memoryMb,
    events: 0,
  });
  const twilio = 2 * PRICES.twilioSmsPerSegment;

  heading("Cost per 1,000 forwarded messages");
  log(
    table([
      ["item", "per message", "Maskline $/1k", "floor $/1k"],
      ...ours.lines.map(([name, quantity, cost], i) => [
        name,
        quantity,
        usd(cost * 1000, 5),
        usd((floorBill.lines[i]?.[2] ?? 0) * 1000, 5),
      ]),
      ["AWS total", "", usd(ours.total * 1000, 4), usd(floorBill.total * 1000, 4)],
      ...end.lines
        .filter(([, , cost]) => cost > 0)
        .map(([name, quantity, cost]) => [
          `at the session's end: ${name}`,
          quantity,
          usd(cost * 1000, 5),
          "",
        ]),
      [
        "AWS total with the sessions' end (the floor keeps its items forever)",
        "",
        usd((ours.total + end.total) * 1000, 4),
        usd(floorBill.total * 1000, 4),
      ],
      [
        `AWS total, Twilio REST at ${options["twilio-ms"]} ms in forward`,
        "",
        usd(production.total * 1000, 4),
        "",
      ],
      [
        "Twilio: 1 inbound + 1 outbound segment",
        `2 × ${usd(PRICES.twilioSmsPerSegment, 4)}`,
        usd(twilio * 1000, 2),
        "",
      ],
    ]),
  );
  log(
    `  AWS / Twilio: ${((production.total / twilio) * 100).toFixed(3)}% of the Twilio bill; ` +
      `Maskline / floor (AWS): ${ratio(ours.total, floorBill.total)}, with the sessions' end ${ratio(ours.total + end.total, floorBill.total)}; ` +
      `Lambda durations measured here (local DynamoDB, local Twilio stand-in); run took ${(wallMs / 1000).toFixed(1)} s`,
  );
  log(
    `  not counted: CloudWatch Logs and X-Ray, data transfer, KMS, Secrets Manager at cold start, idle SQS polling ` +
      `by the event source mapping, numbers (${usd(PRICES.twilioNumberPerMonth)} per number per month: see bench:pool)`,
  );
});
