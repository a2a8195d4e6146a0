import type { Context } from "aws-lambda";
import { logger, messagingFromEnv } from "../../shared/adapters/aws.ts";
import { count, countBy, observed } from "../../shared/adapters/observability.ts";
import { pseudonymsFromEnv, twilioSecret } from "../../shared/adapters/secrets.ts";
import { InboundService } from "../../shared/app/inbound.ts";
import { type HttpEvent, type HttpResult, rawBody } from "../../shared/http/middleware.ts";
import { metricNames } from "../../shared/telemetry.ts";
import { createInboundHandler } from "./app.ts";

// Composition root: configuration is read once, at cold start. The Twilio secret is read now (a missing
// secret fails the cold start) and again whenever its copy is older than TWILIO_SECRET_MAX_AGE_SECONDS.
const { deps, webhooks } = messagingFromEnv();
const secret = twilioSecret();
const { accountSid } = await secret.current();

const inbound = createInboundHandler({
  service: new InboundService({ ...deps, pseudonyms: pseudonymsFromEnv() }),
  logger,
  authToken: () => secret.authTokens(),
  accountSid,
  publicBaseUrl: webhooks.PUBLIC_BASE_URL,
  acceptRequestHost: webhooks.LOCAL_SIGNATURE_ACCEPT_REQUEST_HOST,
  countInvalidRequest: (route) => countBy(metricNames.invalidTwilioRequests, "route", route),
});

/** Twilio's id of the text or call: the correlation id of the webhook's log lines (never a number). */
function twilioSid(event: HttpEvent): string | undefined {
  try {
    const form = new URLSearchParams(rawBody(event));
    const sid = form.get("MessageSid") ?? form.get("CallSid") ?? undefined;
    return sid && /^[A-Za-z0-9_-]{2,64}$/.test(sid) ? sid : undefined;
  } catch {
    return undefined;
  }
}

export const handler: (event: HttpEvent, context: Context) => Promise<HttpResult> = observed(
  (event: HttpEvent, context: Context) => inbound(event, context),
  {
    correlationId: (event) => twilioSid(event) ?? event.requestContext?.requestId,
    // Only the signature check answers 403: a rotation gone wrong (or forged traffic) shows up here.
    onResult: (result) => {
      if (result.statusCode === 403) count(metricNames.signatureRejected);
    },
  },
);
