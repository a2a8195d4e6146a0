/**
 * Forward latency and throughput through the embedded stack (`npm start` as a child process) over HTTP:
 * N Twilio webhooks, signed with the stack's auth token, from several concurrent senders across S
 * sessions; each is timed from the webhook being accepted (HTTP 200) to the Twilio stand-in receiving the
 * forwarded send. The stand-in runs in this process, so both ends are read from one clock.
 *
 * The floor, same run, same machine: the same DynamoDB transaction + SQS FIFO send/receive/delete + one
 * HTTP POST to the same stand-in, with no application logic (bench/lib/floor.ts), on a fresh DynamoDB
 * Local and SQS server started after the stack has stopped.
 *
 *   npm run bench:forward [-- --quick] [-- --messages 2000 --sessions 100 --senders 8]
 */
import { randomBytes } from "node:crypto";
import os from "node:os";
import { getExpectedTwilioSignature } from "twilio/lib/webhooks/webhooks.js";
import { forwardConsumer } from "../shared/resources.ts";
import { startLocalAws } from "../test/support/stack.ts";
import { benchOptions, heading, log, quietNodeWarnings } from "./lib/cli.ts";
import { type FloorMessage, FloorPipeline } from "./lib/floor.ts";
import { main, onCleanup, startStackChild, type TreeCpu, treeCpu } from "./lib/processes.ts";
import { int, ms, ratio, type Summary, summarize, table } from "./lib/stats.ts";
import { startTwilioStandIn, type TwilioStandIn } from "./lib/twilio-standin.ts";

quietNodeWarnings();

const options = benchOptions({
  messages: { full: 2000, quick: 150, help: "webhooks measured" },
  sessions: { full: 100, quick: 20, help: "sessions the messages are spread over" },
  senders: { full: 8, quick: 4, help: "concurrent webhook senders" },
  warmup: { full: 100, quick: 10, help: "webhooks sent (and forwarded) before measuring" },
  "light-load": { full: 200, quick: 20, help: "messages sent one at a time, each once the previous arrived" },
  pool: { full: 10, quick: 4, help: "pool numbers" },
  "timeout-seconds": { full: 600, quick: 50, help: "give up waiting for the forwards after this" },
});

const PUBLIC_BASE_URL = "https://maskline-bench.example.com";
const ACCOUNT_SID = `AC${randomBytes(16).toString("hex")}`;
const AUTH_TOKEN = randomBytes(16).toString("hex");
const API_TOKEN = `bench-${randomBytes(12).toString("hex")}`;

interface Conversation {
  sessionId: string;
  a: string;
  b: string;
  proxyA: string;
  proxyB: string;
}

interface Sample {
  sent: number;
  accepted: number;
  received: number | undefined;
}

interface RunResult {
  accept: Summary;
  latency: Summary;
  endToEnd: Summary;
  perSecond: number;
  lost: number;
  duplicates: number;
  wallMs: number;
}

/** What one message is: from whom, to which proxy, and who receives it from which proxy. */
function plan(conversations: Conversation[], index: number, tag: string): FloorMessage {
  const c = conversations[index % conversations.length] as Conversation;
  const forward = Math.floor(index / conversations.length) % 2 === 0;
  return {
    id: `SM${randomBytes(16).toString("hex")}`,
    sessionId: c.sessionId,
    from: forward ? c.a : c.b,
    to: forward ? c.proxyA : c.proxyB,
    proxy: forward ? c.proxyA : c.proxyB,
    recipient: forward ? c.b : c.a,
    recipientProxy: forward ? c.proxyB : c.proxyA,
    body: `${tag} #${index} see you at 4pm`,
  };
}

/**
 * Sends `count` messages with `senders` concurrent senders and waits until the stand-in has received every
 * forward. Each sender sends its next message once the previous one is accepted, or, with `oneAtATime`,
 * once the previous one has reached the stand-in (no queue can build up: latency without backlog).
 */
async function drive(
  standIn: TwilioStandIn,
  count: number,
  senders: number,
  message: (index: number) => FloorMessage,
  send: (m: FloorMessage) => Promise<void>,
  timeoutMs: number,
  oneAtATime = false,
): Promise<RunResult> {
  const samples = new Map<string, Sample>();
  const arrivals = new Map<string, () => void>();
  let duplicates = 0;
  let received = 0;
  let allReceived: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    allReceived = resolve;
  });
  standIn.onReceive = (sms) => {
    const sample = samples.get(sms.body);
    if (!sample) return;
    if (sample.received !== undefined) {
      duplicates++;
      return;
    }
    sample.received = sms.at;
    arrivals.get(sms.body)?.();
    if (++received === count) allReceived();
  };
  let next = 0;
  const began = performance.now();
  await Promise.all(
    Array.from({ length: senders }, async () => {
      while (next < count) {
        const m = message(next++);
        const sample: Sample = { sent: performance.now(), accepted: 0, received: undefined };
        samples.set(m.body, sample);
        const arrived = oneAtATime
          ? new Promise<void>((resolve) => arrivals.set(m.body, resolve))
          : Promise.resolve();
        await send(m);
        sample.accepted = performance.now();
        await arrived;
      }
    }),
  );
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([done, new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
  clearTimeout(timer);
  standIn.onReceive = undefined;
  const all = [...samples.values()];
  const arrived = all.filter((s): s is Sample & { received: number } => s.received !== undefined);
  const first = Math.min(...all.map((s) => s.sent));
  const last = Math.max(...arrived.map((s) => s.received));
  return {
    accept: summarize(all.map((s) => s.accepted - s.sent)),
    latency: summarize(arrived.map((s) => s.received - s.accepted)),
    endToEnd: summarize(arrived.map((s) => s.received - s.sent)),
    perSecond: (arrived.length / (last - first)) * 1000,
    lost: count - arrived.length,
    duplicates,
    wallMs: performance.now() - began,
  };
}

/** CPU spent in this bench's process tree since `before`: DynamoDB Local's JVM, and Node (bench + stack). */
function cpuSince(before: TreeCpu): TreeCpu {
  const now = treeCpu();
  return { jvm: now.jvm - before.jvm, node: now.node - before.node };
}

async function api(url: string, path: string, body: unknown) {
  const res = await fetch(`${url}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${API_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as Record<string, unknown>;
  if (res.status >= 300) throw new Error(`POST ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

async function runOurs(standIn: TwilioStandIn) {
  const startedAt = performance.now();
  const stack = await startStackChild({
    TWILIO_ACCOUNT_SID: ACCOUNT_SID,
    TWILIO_AUTH_TOKEN: AUTH_TOKEN,
    TWILIO_API_BASE_URL: standIn.url,
    PUBLIC_BASE_URL,
    MASKLINE_API_TOKEN: API_TOKEN,
    SANDBOX_POOL_SIZE: "0",
    LOG_LEVEL: "WARN",
    // A few senders carry the whole load here: the per-sender flood limit would hold most of it back.
    SENDER_RATE_LIMIT: "off",
  });
  log(`npm start (PORT=0) up in ${ms(performance.now() - startedAt, 0)} at ${stack.url}`);
  try {
    return await measureOurs(stack.url, standIn);
  } catch (error) {
    log(`npm start output (last lines):\n${stack.output().split("\n").slice(-30).join("\n")}`);
    throw error;
  } finally {
    await stack.stop();
  }
}

async function measureOurs(url: string, standIn: TwilioStandIn) {
  for (let i = 0; i < options.pool; i++)
    await api(url, "/numbers", { phoneNumber: `+1415${String(3_000_000 + i)}` });
  const conversations: Conversation[] = [];
  for (let i = 0; i < options.sessions; i++) {
    const a = `+1202${String(3_000_000 + i)}`;
    const b = `+1303${String(3_000_000 + i)}`;
    const session = await api(url, "/sessions", {
      participants: [{ phoneNumber: a }, { phoneNumber: b }],
      ttlSeconds: 24 * 3600,
    });
    const [pa, pb] = session.participants as { proxyNumber: string }[];
    conversations.push({
      sessionId: String(session.sessionId),
      a,
      b,
      proxyA: pa?.proxyNumber ?? "",
      proxyB: pb?.proxyNumber ?? "",
    });
  }
  const webhookUrl = `${PUBLIC_BASE_URL}/twilio/sms`;
  const send = async (m: FloorMessage) => {
    const params = {
      ToCountry: "US",
      SmsMessageSid: m.id,
      NumMedia: "0",
      SmsSid: m.id,
      SmsStatus: "received",
      Body: m.body,
      To: m.to,
      NumSegments: "1",
      MessageSid: m.id,
      AccountSid: ACCOUNT_SID,
      From: m.from,
      ApiVersion: "2010-04-01",
    };
    const res = await fetch(`${url}/twilio/sms`, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        "x-twilio-signature": getExpectedTwilioSignature(AUTH_TOKEN, webhookUrl, params),
      },
      body: new URLSearchParams(params).toString(),
    });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`webhook answered ${res.status}: ${text}`);
  };
  const timeout = options["timeout-seconds"] * 1000;
  await drive(standIn, options.warmup, options.senders, (i) => plan(conversations, i, "warm"), send, timeout);
  const light = await drive(
    standIn,
    options["light-load"],
    1,
    (i) => plan(conversations, i, "ours-light"),
    send,
    timeout,
    true,
  );
  const before = treeCpu();
  const loaded = await drive(
    standIn,
    options.messages,
    options.senders,
    (i) => plan(conversations, i, "ours"),
    send,
    timeout,
  );
  return { light, loaded, cpu: cpuSince(before) };
}

async function runFloor(standIn: TwilioStandIn) {
  const aws = await startLocalAws();
  onCleanup(() => aws.stop());
  const { tableName, queue } = await aws.fresh({ visibilityTimeoutSeconds: 10 });
  const floor = new FloorPipeline({
    doc: aws.doc,
    sqs: aws.sqsClient,
    tableName,
    queueUrl: queue.queueUrl,
    twilioUrl: standIn.url,
    accountSid: ACCOUNT_SID,
    authToken: AUTH_TOKEN,
    visibilityTimeoutSeconds: queue.visibilityTimeoutSeconds,
  });
  const conversations: Conversation[] = Array.from({ length: options.sessions }, (_, i) => ({
    sessionId: `ses_floor${i}`,
    a: `+1202${String(3_000_000 + i)}`,
    b: `+1303${String(3_000_000 + i)}`,
    proxyA: `+1415${String(3_000_000 + (i % options.pool))}`,
    proxyB: `+1415${String(3_000_000 + ((i + 1) % options.pool))}`,
  }));
  floor.startConsumer();
  try {
    const timeout = options["timeout-seconds"] * 1000;
    const send = (m: FloorMessage) => floor.accept(m);
    await drive(
      standIn,
      options.warmup,
      options.senders,
      (i) => plan(conversations, i, "warm-floor"),
      send,
      timeout,
    );
    const light = await drive(
      standIn,
      options["light-load"],
      1,
      (i) => plan(conversations, i, "floor-light"),
      send,
      timeout,
      true,
    );
    const before = treeCpu();
    const loaded = await drive(
      standIn,
      options.messages,
      options.senders,
      (i) => plan(conversations, i, "floor"),
      send,
      timeout,
    );
    return { light, loaded, cpu: cpuSince(before) };
  } finally {
    await floor.stop();
    await aws.stop();
  }
}

main(async () => {
  heading(`bench:forward${options.quick ? " (quick)" : ""}`);
  log(
    `${int(options.messages)} signed webhooks (after ${options.warmup} warm-up) across ${options.sessions} sessions, ` +
      `${options.senders} concurrent senders, pool of ${options.pool}`,
  );
  const standIn = await startTwilioStandIn();
  onCleanup(() => standIn.stop());
  const oursRuns = await runOurs(standIn);
  const floorRuns = await runFloor(standIn);
  const row = (name: string, x: Summary) => [name, ms(x.p50), ms(x.p95), ms(x.p99), ms(x.max)];
  const compare = (title: string, pick: (r: RunResult) => Summary, ours: RunResult, floor: RunResult) => {
    heading(title);
    log(
      table([
        ["", "p50", "p95", "p99", "max"],
        row("Maskline (npm start)", pick(ours)),
        row("floor (no app logic)", pick(floor)),
        [
          "ours / floor",
          ratio(pick(ours).p50, pick(floor).p50),
          ratio(pick(ours).p95, pick(floor).p95),
          ratio(pick(ours).p99, pick(floor).p99),
          "",
        ],
      ]),
    );
  };
  const ours = oursRuns.loaded;
  const floor = floorRuns.loaded;
  compare(
    `Webhook accepted → Twilio stand-in received, ${int(options.messages)} messages, ${options.senders} senders`,
    (r) => r.latency,
    ours,
    floor,
  );
  compare(
    "Accepting the webhook under that load (sent → HTTP 200; floor: transaction + SendMessage)",
    (r) => r.accept,
    ours,
    floor,
  );
  compare(
    `Light load: ${options["light-load"]} messages one at a time, accepted → received (no backlog)`,
    (r) => r.latency,
    oursRuns.light,
    floorRuns.light,
  );
  heading("Throughput and correctness");
  log(
    table([
      ["", "messages/s", "end-to-end p50", "end-to-end p99", "not forwarded", "forwarded twice"],
      [
        "Maskline (npm start)",
        ours.perSecond.toFixed(1),
        ms(ours.endToEnd.p50),
        ms(ours.endToEnd.p99),
        int(ours.lost + oursRuns.light.lost),
        int(ours.duplicates + oursRuns.light.duplicates),
      ],
      [
        "floor (no app logic)",
        floor.perSecond.toFixed(1),
        ms(floor.endToEnd.p50),
        ms(floor.endToEnd.p99),
        int(floor.lost + floorRuns.light.lost),
        int(floor.duplicates + floorRuns.light.duplicates),
      ],
      [
        "ours / floor",
        ratio(ours.perSecond, floor.perSecond),
        ratio(ours.endToEnd.p50, floor.endToEnd.p50),
        ratio(ours.endToEnd.p99, floor.endToEnd.p99),
        "",
        "",
      ],
    ]),
  );
  log(
    "  messages/s = messages / (last received − first sent) with the senders above; both sides forward through " +
      `the embedded stack's SQS poller (batches of ${forwardConsumer.batchSize}, up to ${forwardConsumer.localConcurrency} ` +
      "invocations at once, sessions of a batch concurrently, each in order)",
  );
  heading(`CPU per message in that loaded run (this bench's process tree, ${os.cpus().length} cores)`);
  const perMessage = (x: number) => `${(x / options.messages).toFixed(2)} ms`;
  const cpuRow = (name: string, c: TreeCpu) => [
    name,
    perMessage(c.jvm),
    perMessage(c.node),
    perMessage(c.jvm + c.node),
  ];
  log(
    table([
      ["", "DynamoDB Local (JVM)", "Node (bench + stack)", "all"],
      cpuRow("Maskline (npm start)", oursRuns.cpu),
      cpuRow("floor (no app logic)", floorRuns.cpu),
      [
        "ours / floor",
        ratio(oursRuns.cpu.jvm, floorRuns.cpu.jvm),
        ratio(oursRuns.cpu.node, floorRuns.cpu.node),
        ratio(oursRuns.cpu.jvm + oursRuns.cpu.node, floorRuns.cpu.jvm + floorRuns.cpu.node),
      ],
    ]),
  );
  log(
    "  both sides also run the senders and the Twilio stand-in in the bench process; CPU time is user + system " +
      "from /proc (Linux), so other work on the machine does not count in it",
  );
  if (ours.lost || floor.lost || oursRuns.light.lost || floorRuns.light.lost) process.exitCode = 1;
});
