import { Metrics, MetricUnit } from "@aws-lambda-powertools/metrics";
import { logger, storeFromEnv } from "../../shared/adapters/aws.ts";
import { newId } from "../../shared/adapters/ids.ts";
import { observed } from "../../shared/adapters/observability.ts";
import { RecyclerService } from "../../shared/app/recycler.ts";
import {
  messagingServiceConfigSchema,
  parseConfig,
  recyclerConfigSchema,
  twilioConfigSchema,
  webhookConfigSchema,
} from "../../shared/config.ts";

// Composition root: configuration is read once, at cold start.
const { config, store } = storeFromEnv();
const recycler = parseConfig(recyclerConfigSchema);
const metrics = new Metrics({ namespace: "Maskline", serviceName: "maskline" });

// The Twilio client is built from the current credentials for each purchase (rare), so a rotated token is
// used within the secret's cache age, as in inbound and forward. Its module is loaded on the first purchase,
// from a file of its own in Lambda (`#on-demand/twilio-numbers`); the secret's module with top-up on: with
// top-up off neither is. With top-up on, a missing or malformed secret still fails the cold start.
const twilioCredentials = async () => (await import("../../shared/adapters/secrets.ts")).twilioCredentials();
if (recycler.AUTO_TOP_UP) await twilioCredentials();
const topUp = recycler.AUTO_TOP_UP
  ? (() => {
      const publicBaseUrl = parseConfig(webhookConfigSchema).PUBLIC_BASE_URL;
      const { TWILIO_TIMEOUT_MS } = parseConfig(twilioConfigSchema);
      return {
        provider: {
          buy: async (request: { country: string }) => {
            const { TwilioNumberProvider, twilioNumbers } = await import("#on-demand/twilio-numbers");
            return new TwilioNumberProvider(
              twilioNumbers({ ...(await twilioCredentials()), timeoutMs: TWILIO_TIMEOUT_MS }),
              publicBaseUrl,
              parseConfig(messagingServiceConfigSchema).TWILIO_MESSAGING_SERVICE_SID,
            ).buy(request);
          },
        },
        maxPoolSize: recycler.MAX_POOL_SIZE,
      };
    })()
  : undefined;

const service = new RecyclerService({
  store,
  clock: { now: () => Date.now() },
  newId,
  quarantineSeconds: config.QUARANTINE_SECONDS,
  poolLowHeadroom: recycler.POOL_LOW_HEADROOM,
  topUp,
  metrics: {
    poolHealth: (health) => {
      metrics.addMetric("PoolUtilization", MetricUnit.Percent, Math.round(health.utilization * 100));
      metrics.addMetric("PoolHeadroom", MetricUnit.Count, health.headroom);
      metrics.addMetric("PairsPerNumber", MetricUnit.Count, health.pairsPerNumber);
      metrics.publishStoredMetrics();
    },
  },
});

/** Invoked by the EventBridge schedule (locally by the embedded scheduler). */
export const handler = observed(async () => {
  const report = await service.run({
    budgetMs: recycler.RECYCLER_BUDGET_MS,
    batchSize: recycler.RECYCLER_BATCH_SIZE,
  });
  logger.info("recycled", { expired: report.expired, more: report.more, bought: report.bought.length });
  return { expired: report.expired, more: report.more, bought: report.bought.length };
});
