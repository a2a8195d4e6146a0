import { logger, messagingFromEnv } from "../../shared/adapters/aws.ts";
import { observed } from "../../shared/adapters/observability.ts";
import { pseudonymsFromEnv, twilioSecret } from "../../shared/adapters/secrets.ts";
import { TwilioGateway } from "../../shared/adapters/twilio-gateway.ts";
import { ForwardService } from "../../shared/app/forward.ts";
import {
  forwardConfigSchema,
  messagingServiceConfigSchema,
  parseConfig,
  twilioConfigSchema,
} from "../../shared/config.ts";
import { createForwardHandler } from "./app.ts";

// Composition root: configuration is read once, at cold start; the Twilio secret at cold start and again
// whenever its copy is older than TWILIO_SECRET_MAX_AGE_SECONDS (token rotation without a redeploy).
const { deps, webhooks } = messagingFromEnv();
const forward = parseConfig(forwardConfigSchema);
const { TWILIO_TIMEOUT_MS } = parseConfig(twilioConfigSchema);
const { TWILIO_MESSAGING_SERVICE_SID } = parseConfig(messagingServiceConfigSchema);
const secret = twilioSecret();
await secret.current();

export const handler = observed(
  createForwardHandler({
    logger,
    service: new ForwardService({
      ...deps,
      pseudonyms: pseudonymsFromEnv(),
      gateway: new TwilioGateway({
        credentials: () => secret.current(),
        timeoutMs: TWILIO_TIMEOUT_MS,
        messagingServiceSid: TWILIO_MESSAGING_SERVICE_SID,
      }),
      statusCallbackUrl: (job) =>
        `${webhooks.PUBLIC_BASE_URL}/twilio/status?m=${encodeURIComponent(job.messageId)}`,
      claimStaleMs: forward.FORWARD_CLAIM_STALE_SECONDS * 1000,
      maxInlineRetries: forward.FORWARD_INLINE_RETRIES,
    }),
  }),
);
