import { logger, messagingFromEnv } from "../../shared/adapters/aws.ts";
import { twilioCredentials } from "../../shared/adapters/secrets.ts";
import { TwilioGateway } from "../../shared/adapters/twilio-gateway.ts";
import { ForwardService } from "../../shared/app/forward.ts";
import { forwardConfigSchema, messagingServiceConfigSchema, parseConfig } from "../../shared/config.ts";
import { createForwardHandler } from "./app.ts";

// Composition root: configuration and the Twilio secret are read once, at cold start.
const { deps, webhooks } = messagingFromEnv();
const forward = parseConfig(forwardConfigSchema);
const { TWILIO_MESSAGING_SERVICE_SID } = parseConfig(messagingServiceConfigSchema);

export const handler = createForwardHandler({
  logger,
  service: new ForwardService({
    ...deps,
    gateway: new TwilioGateway({
      ...(await twilioCredentials()),
      messagingServiceSid: TWILIO_MESSAGING_SERVICE_SID,
    }),
    statusCallbackUrl: (job) =>
      `${webhooks.PUBLIC_BASE_URL}/twilio/status?m=${encodeURIComponent(job.messageId)}`,
    claimStaleMs: forward.FORWARD_CLAIM_STALE_SECONDS * 1000,
    maxInlineRetries: forward.FORWARD_INLINE_RETRIES,
  }),
});
