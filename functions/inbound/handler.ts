import { logger, sqsClient, storeFromEnv } from "../../shared/adapters/aws.ts";
import { newId } from "../../shared/adapters/ids.ts";
import { twilioAuthToken } from "../../shared/adapters/secrets.ts";
import { SqsForwardQueue } from "../../shared/adapters/sqs-queue.ts";
import { MessagingService } from "../../shared/app/messaging.ts";
import { parseConfig, queueConfigSchema, webhookConfigSchema } from "../../shared/config.ts";
import { createInboundHandler } from "./app.ts";

// Composition root: configuration and the Twilio secret are read once, at cold start.
const { config, store } = storeFromEnv();
const queue = parseConfig(queueConfigSchema);
const webhooks = parseConfig(webhookConfigSchema);
const authToken = await twilioAuthToken();

export const handler = createInboundHandler({
  service: new MessagingService({
    store,
    queue: new SqsForwardQueue({ queueUrl: queue.FORWARD_QUEUE_URL, client: sqsClient() }),
    clock: { now: () => Date.now() },
    newId,
    quarantineSeconds: config.QUARANTINE_SECONDS,
    outOfSessionReply: webhooks.OUT_OF_SESSION_REPLY,
    outOfSessionVoice: webhooks.OUT_OF_SESSION_VOICE,
  }),
  logger,
  authToken,
  publicBaseUrl: webhooks.PUBLIC_BASE_URL,
});
