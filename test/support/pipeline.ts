import type { Server } from "node:http";
import { GetQueueAttributesCommand, ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { type DynamoDBDocumentClient, ScanCommand } from "@aws-sdk/lib-dynamodb";
import { createForwardHandler } from "../../functions/forward/app.ts";
import { createInboundHandler } from "../../functions/inbound/app.ts";
import { freePort } from "../../local/aws-local.ts";
import { LocalEventBus } from "../../local/event-bus.ts";
import { type Poller, startSqsPoller } from "../../local/pollers.ts";
import { createLocalServer, type HttpHandler } from "../../local/server.ts";
import { TwilioSandbox } from "../../local/twilio-sandbox.ts";
import { logger } from "../../shared/adapters/aws.ts";
import { DynamoStore } from "../../shared/adapters/dynamo-store.ts";
import { newId } from "../../shared/adapters/ids.ts";
import { SqsForwardQueue } from "../../shared/adapters/sqs-queue.ts";
import { TwilioGateway } from "../../shared/adapters/twilio-gateway.ts";
import { type ForwardDeps, ForwardService } from "../../shared/app/forward.ts";
import { InboundService, type TrafficPolicy } from "../../shared/app/inbound.ts";
import { SessionService } from "../../shared/app/sessions.ts";
import type { E164 } from "../../shared/domain/phone.ts";
import { forwardConsumer } from "../../shared/resources.ts";

import type { startLocalAws } from "./stack.ts";

export const ACCOUNT_SID = `AC${"0123456789abcdef".repeat(2)}`;
export const AUTH_TOKEN = "sandbox-auth-token-for-tests";
export const OUT_OF_SESSION = "This conversation has ended.";
export const HELP_REPLY = "HELP: reply STOP to opt out.";
export const CONTENT_BLOCKED = "No contact details, please.";

/** The webhook replies every in-process test composes InboundService with. */
export const testReplies = {
  outOfSessionReply: OUT_OF_SESSION,
  outOfSessionVoice: "Goodbye.",
  helpReply: HELP_REPLY,
};

/** Hostile-traffic settings for tests: the rate limit off unless a test sets it. */
export function testTraffic(overrides: Partial<TrafficPolicy> = {}): TrafficPolicy {
  return {
    autoReplyIntervalSeconds: 86_400,
    senderRateLimit: undefined,
    rateLimitReply: RATE_LIMIT_NOTICE,
    replayWindowDays: 30,
    contentPolicy: "off",
    contentBlockedReply: CONTENT_BLOCKED,
    ...overrides,
  };
}
export const RATE_LIMIT_NOTICE = "Slow down.";

export interface PipelineOptions {
  /** Wraps the forwarder's store, for fault injection (crashes between steps). */
  wrapForwardStore?: (store: ForwardDeps["store"]) => ForwardDeps["store"];
  statusCallbacks?: boolean;
  claimStaleMs?: number;
  /** The twilio client's request timeout. */
  twilioTimeoutMs?: number;
  visibilityTimeoutSeconds?: number;
  /** Hostile-traffic settings; by default the rate limit is off so volume tests are not held back. */
  traffic?: Partial<TrafficPolicy>;
  /** The DynamoDB client every store of the pipeline uses (e.g. one that injects faults). */
  client?: DynamoDBDocumentClient;
  /** A2P 10DLC: the sandbox has this Messaging Service, the pool's numbers join it and sends name it. */
  messagingServiceSid?: string;
  /** MAX_PROXIES_PER_PARTICIPANT of the session service (hub numbers above it). */
  maxProxiesPerParticipant?: number;
}

/**
 * The message pipeline composed in-process from the production factories: inbound and forward handlers,
 * DynamoDB Local, the SQS server, the real twilio client against the Twilio stand-in over HTTP.
 */
export async function startPipeline(
  aws: Awaited<ReturnType<typeof startLocalAws>>,
  options: PipelineOptions = {},
) {
  const fresh = await aws.fresh({
    visibilityTimeoutSeconds: options.visibilityTimeoutSeconds ?? 6,
  });
  const { tableName, queue } = fresh;
  const store = options.client
    ? new DynamoStore({ tableName, client: options.client, retentionSeconds: 3600 })
    : fresh.store;
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const publicBaseUrl = "https://maskline.example.com";
  const sandbox = new TwilioSandbox({
    accountSid: ACCOUNT_SID,
    authToken: AUTH_TOKEN,
    publicBaseUrl,
    webhookTarget: baseUrl,
    statusCallbackDelayMs: 20,
    messagingServiceSid: options.messagingServiceSid,
  });
  const forwardQueue = new SqsForwardQueue({ queueUrl: queue.queueUrl, client: aws.sqsClient });
  const common = {
    queue: forwardQueue,
    clock: { now: () => Date.now() },
    newId,
    quarantineSeconds: 3600,
    outOfSessionReply: OUT_OF_SESSION,
    outOfSessionVoice: "Goodbye.",
    helpReply: HELP_REPLY,
    traffic: testTraffic(options.traffic),
  };
  let invalidRequests = 0;
  const inbound = createInboundHandler({
    service: new InboundService({ ...common, store }),
    logger,
    authToken: AUTH_TOKEN,
    accountSid: ACCOUNT_SID,
    publicBaseUrl,
    countInvalidRequest: () => {
      invalidRequests++;
    },
  });
  const forwardService = new ForwardService({
    ...common,
    store: options.wrapForwardStore ? options.wrapForwardStore(store) : store,
    gateway: new TwilioGateway({
      accountSid: ACCOUNT_SID,
      authToken: AUTH_TOKEN,
      apiBaseUrl: baseUrl,
      timeoutMs: options.twilioTimeoutMs,
      messagingServiceSid: options.messagingServiceSid,
    }),
    statusCallbackUrl: (job) =>
      options.statusCallbacks === false
        ? undefined
        : `${publicBaseUrl}/twilio/status?m=${encodeURIComponent(job.messageId)}`,
    claimStaleMs: options.claimStaleMs ?? 1500,
    maxInlineRetries: 2,
    sleep: (ms) => new Promise((r) => setTimeout(r, Math.min(ms, 50))),
  });
  const forward = createForwardHandler({ service: forwardService, logger });
  const sessions = new SessionService({
    ...common,
    store,
    maxProxiesPerParticipant: options.maxProxiesPerParticipant,
  });
  const server: Server = createLocalServer({
    handlers: { inbound: inbound as unknown as HttpHandler },
    sandbox,
    bus: new LocalEventBus(),
    sandboxApi: async () => false,
    sandboxEnabled: () => true,
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  const arn = await aws.sqsClient.send(
    new GetQueueAttributesCommand({ QueueUrl: queue.queueUrl, AttributeNames: ["QueueArn"] }),
  );
  let poller: Poller | undefined;
  const startForwarding = () => {
    poller ??= startSqsPoller({
      client: aws.sqsClient,
      queueUrl: queue.queueUrl,
      queueArn: arn.Attributes?.QueueArn ?? "",
      handler: forward,
      batchSize: forwardConsumer.batchSize,
      concurrency: forwardConsumer.localConcurrency,
      visibilityTimeoutSeconds: queue.visibilityTimeoutSeconds,
    });
  };
  startForwarding();

  const pool = async (n: number, base = 100) => {
    const numbers = Array.from(
      { length: n },
      (_, i) => `+1415555${String(base + i).padStart(4, "0")}` as E164,
    );
    for (const number of numbers) {
      await sessions.addNumber(number);
      if (options.messagingServiceSid) sandbox.joinService(number);
    }
    return numbers;
  };
  const open = async (a: string, b: string, ttlSeconds = 3600, names: [string?, string?] = []) => {
    const { session } = await sessions.openSession({
      participants: [
        { phoneNumber: a as E164, name: names[0] },
        { phoneNumber: b as E164, name: names[1] },
      ],
      mode: "sms+voice",
      ttlSeconds,
      ttlMode: "absolute",
    });
    const [pa, pb] = session.participants;
    return { session, proxyA: pa.proxyNumber, proxyB: pb.proxyNumber };
  };
  const scan = async () => (await aws.doc.send(new ScanCommand({ TableName: tableName }))).Items ?? [];
  const sentTo = (to: string) => sandbox.messages.filter((m) => m.to === to);
  const waitFor = async (
    predicate: () => boolean | Promise<boolean>,
    timeoutMs = 20_000,
    what = "condition",
  ) => {
    const deadline = Date.now() + timeoutMs;
    while (!(await predicate())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const queueDepth = async () => {
    const attrs = await aws.sqsClient.send(
      new GetQueueAttributesCommand({
        QueueUrl: queue.queueUrl,
        AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
      }),
    );
    return (
      Number(attrs.Attributes?.ApproximateNumberOfMessages ?? 0) +
      Number(attrs.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0)
    );
  };
  const dlqMessages = async () =>
    (await aws.sqsClient.send(new ReceiveMessageCommand({ QueueUrl: queue.dlqUrl, MaxNumberOfMessages: 10 })))
      .Messages ?? [];
  const post = (path: string, params: Record<string, string>, headers: Record<string, string> = {}) =>
    fetch(`${baseUrl}${path}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
      body: new URLSearchParams(params).toString(),
    });
  return {
    sandbox,
    sessions,
    store,
    queue,
    tableName,
    baseUrl,
    publicBaseUrl,
    pool,
    open,
    scan,
    sentTo,
    waitFor,
    queueDepth,
    dlqMessages,
    post,
    /** Webhooks refused as invalid Twilio requests (signed, but bad SIDs or AccountSid). */
    invalidRequests: () => invalidRequests,
    startForwarding,
    stopForwarding: async () => {
      await poller?.stop();
      poller = undefined;
    },
    async stop() {
      await poller?.stop();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
