import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { SQSClient } from "@aws-sdk/client-sqs";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import {
  awsCallConfigSchema,
  coreConfigSchema,
  parseConfig,
  queueConfigSchema,
  sessionRetentionSchema,
  webhookConfigSchema,
} from "../config.ts";
import { DynamoStore } from "./dynamo-store.ts";
import { newId } from "./ids.ts";
import { traceClient } from "./observability.ts";
import { SqsForwardQueue } from "./sqs-queue.ts";

export { logger } from "./logger.ts";

/**
 * Process-wide clients, built once per cold start and shared by invocations. Endpoints follow the SDK's own
 * AWS_ENDPOINT_URL_<SERVICE> variables, so the embedded stack runs this exact code against local servers.
 */
let dynamo: DynamoDBDocumentClient | undefined;
let sqs: SQSClient | undefined;

/**
 * Options every SDK client of a function gets: connect and request timeouts (AWS_CONNECT_TIMEOUT_MS,
 * AWS_CALL_TIMEOUT_MS), so a hung dependency fails in seconds and the SDK's retry takes over.
 */
export function awsClientOptions(env: NodeJS.ProcessEnv = process.env) {
  const config = parseConfig(awsCallConfigSchema, env);
  return {
    requestHandler: {
      connectionTimeout: config.AWS_CONNECT_TIMEOUT_MS,
      requestTimeout: config.AWS_CALL_TIMEOUT_MS,
    },
  };
}

/**
 * Attempts per DynamoDB call, above the SDK's default of 3: throttling is routine on a hot partition (the v2
 * SDK retried DynamoDB 10 times by default), and a webhook that gives up can lose what Twilio never sends
 * again, such as a status callback. Six attempts with the SDK's backoff wait out about 8 s of throttling.
 */
export const DYNAMO_MAX_ATTEMPTS = 6;

export function documentClient(): DynamoDBDocumentClient {
  const client = new DynamoDBClient({ ...awsClientOptions(), maxAttempts: DYNAMO_MAX_ATTEMPTS });
  dynamo ??= DynamoDBDocumentClient.from(traceClient(client, "DynamoDB"), {
    marshallOptions: { removeUndefinedValues: true },
  });
  return dynamo;
}

export function sqsClient(): SQSClient {
  sqs ??= traceClient(new SQSClient(awsClientOptions()), "SQS");
  return sqs;
}

export function storeFromEnv(env: NodeJS.ProcessEnv = process.env) {
  const config = parseConfig(coreConfigSchema.merge(sessionRetentionSchema), env);
  const store = new DynamoStore({
    tableName: config.TABLE_NAME,
    client: documentClient(),
    retentionSeconds: config.MESSAGE_RETENTION_HOURS * 3600,
    sessionRetentionSeconds: config.SESSION_RETENTION_DAYS * 86_400,
  });
  return { config, store };
}

/** What the inbound and forward functions share: store, queue, clock, ids and the webhook settings. */
export function messagingFromEnv(env: NodeJS.ProcessEnv = process.env) {
  const { config, store } = storeFromEnv(env);
  const queue = parseConfig(queueConfigSchema, env);
  const webhooks = parseConfig(webhookConfigSchema, env);
  return {
    webhooks,
    deps: {
      store,
      queue: new SqsForwardQueue({ queueUrl: queue.FORWARD_QUEUE_URL, client: sqsClient() }),
      clock: { now: () => Date.now() },
      newId,
      quarantineSeconds: config.QUARANTINE_SECONDS,
      outOfSessionReply: webhooks.OUT_OF_SESSION_REPLY,
      outOfSessionVoice: webhooks.OUT_OF_SESSION_VOICE,
      helpReply: webhooks.HELP_REPLY,
      traffic: {
        autoReplyIntervalSeconds: webhooks.OUT_OF_SESSION_REPLY_INTERVAL_SECONDS,
        senderRateLimit: webhooks.SENDER_RATE_LIMIT,
        rateLimitReply: webhooks.RATE_LIMIT_REPLY,
        replayWindowDays: webhooks.REPLAY_WINDOW_DAYS,
        contentPolicy: webhooks.CONTENT_POLICY,
        contentBlockedReply: webhooks.CONTENT_BLOCKED_REPLY,
      },
    },
  };
}
