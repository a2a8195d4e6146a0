import { logger, sqsClient, storeFromEnv } from "../../shared/adapters/aws.ts";
import { newId } from "../../shared/adapters/ids.ts";
import { twilioCredentials } from "../../shared/adapters/secrets.ts";
import { SqsForwardQueue } from "../../shared/adapters/sqs-queue.ts";
import { TwilioGateway } from "../../shared/adapters/twilio-gateway.ts";
import { ForwardService } from "../../shared/app/messaging.ts";
import {
  forwardConfigSchema,
  parseConfig,
  queueConfigSchema,
  webhookConfigSchema,
} from "../../shared/config.ts";
import { createForwardHandler } from "./app.ts";

// Composition root: configuration and the Twilio secret are read once, at cold start.
const { config, store } = storeFromEnv();
const queue = parseConfig(queueConfigSchema);
const webhooks = parseConfig(webhookConfigSchema);
const forward = parseConfig(forwardConfigSchema);
const credentials = await twilioCredentials();

export const handler = createForwardHandler({
  logger,
  service: new ForwardService({
    store,
    queue: new SqsForwardQueue({ queueUrl: queue.FORWARD_QUEUE_URL, client: sqsClient() }),
    clock: { now: () => Date.now() },
    newId,
    quarantineSeconds: config.QUARANTINE_SECONDS,
    outOfSessionReply: webhooks.OUT_OF_SESSION_REPLY,
    outOfSessionVoice: webhooks.OUT_OF_SESSION_VOICE,
    gateway: new TwilioGateway(credentials),
    statusCallbackUrl: (job) =>
      `${webhooks.PUBLIC_BASE_URL}/twilio/status?m=${encodeURIComponent(job.messageId)}`,
    claimStaleMs: forward.FORWARD_CLAIM_STALE_SECONDS * 1000,
    maxInlineRetries: forward.FORWARD_INLINE_RETRIES,
  }),
});
