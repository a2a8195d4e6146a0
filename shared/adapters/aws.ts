import { Logger } from "@aws-lambda-powertools/logger";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { SQSClient } from "@aws-sdk/client-sqs";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { coreConfigSchema, parseConfig, queueConfigSchema, webhookConfigSchema } from "../config.ts";
import { DynamoStore } from "./dynamo-store.ts";
import { newId } from "./ids.ts";
import { SqsForwardQueue } from "./sqs-queue.ts";

/**
 * Process-wide clients, built once per cold start and shared by invocations. Endpoints follow the SDK's own
 * AWS_ENDPOINT_URL_<SERVICE> variables, so the embedded stack runs this exact code against local servers.
 */
export const logger = new Logger({ serviceName: "maskline" });

let dynamo: DynamoDBDocumentClient | undefined;
let sqs: SQSClient | undefined;

export function documentClient(): DynamoDBDocumentClient {
  dynamo ??= DynamoDBDocumentClient.from(new DynamoDBClient({}), {
    marshallOptions: { removeUndefinedValues: true },
  });
  return dynamo;
}

export function sqsClient(): SQSClient {
  sqs ??= new SQSClient({});
  return sqs;
}

export function storeFromEnv(env: NodeJS.ProcessEnv = process.env) {
  const config = parseConfig(coreConfigSchema, env);
  const store = new DynamoStore({
    tableName: config.TABLE_NAME,
    client: documentClient(),
    retentionSeconds: config.MESSAGE_RETENTION_HOURS * 3600,
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
