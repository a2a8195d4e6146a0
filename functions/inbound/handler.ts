import { logger, messagingFromEnv } from "../../shared/adapters/aws.ts";
import { twilioAuthToken } from "../../shared/adapters/secrets.ts";
import { InboundService } from "../../shared/app/inbound.ts";
import { createInboundHandler } from "./app.ts";

// Composition root: configuration and the Twilio secret are read once, at cold start.
const { deps, webhooks } = messagingFromEnv();

export const handler = createInboundHandler({
  service: new InboundService(deps),
  logger,
  authToken: await twilioAuthToken(),
  publicBaseUrl: webhooks.PUBLIC_BASE_URL,
  acceptRequestHost: webhooks.LOCAL_SIGNATURE_ACCEPT_REQUEST_HOST,
});
