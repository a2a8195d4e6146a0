import { Metrics, MetricUnit } from "@aws-lambda-powertools/metrics";
import { logger, messagingFromEnv } from "../../shared/adapters/aws.ts";
import { twilioCredentials } from "../../shared/adapters/secrets.ts";
import { InboundService } from "../../shared/app/inbound.ts";
import { createInboundHandler } from "./app.ts";

// Composition root: configuration and the Twilio secret are read once, at cold start.
const { deps, webhooks } = messagingFromEnv();
const twilio = await twilioCredentials();
const metrics = new Metrics({ namespace: "Maskline", serviceName: "maskline" });

export const handler = createInboundHandler({
  service: new InboundService(deps),
  logger,
  authToken: twilio.authToken,
  accountSid: twilio.accountSid,
  publicBaseUrl: webhooks.PUBLIC_BASE_URL,
  acceptRequestHost: webhooks.LOCAL_SIGNATURE_ACCEPT_REQUEST_HOST,
  countInvalidRequest: (route) => {
    const metric = metrics.singleMetric();
    metric.addDimension("route", route);
    metric.addMetric("InvalidTwilioRequests", MetricUnit.Count, 1);
  },
});
