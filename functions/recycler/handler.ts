import { logger, storeFromEnv } from "../../shared/adapters/aws.ts";
import { newId } from "../../shared/adapters/ids.ts";
import { observed, publishPoolHealth } from "../../shared/adapters/observability.ts";
import { RecyclerService } from "../../shared/app/recycler.ts";
import { parseConfig, recyclerConfigSchema } from "../../shared/config.ts";

// Composition root: configuration is read once, at cold start.
const { config, store } = storeFromEnv();
const recycler = parseConfig(recyclerConfigSchema);

// Top-up's Twilio client and secret are in a module of their own, loaded at cold start only with top-up on
// (`functions/recycler/top-up.ts`): a missing or malformed secret or configuration still fails it then.
const topUp = recycler.AUTO_TOP_UP
  ? await import("#on-demand/recycler-top-up").then(async ({ checkCredentials, twilioNumberProvider }) => {
      await checkCredentials();
      return { provider: twilioNumberProvider, maxPoolSize: recycler.MAX_POOL_SIZE };
    })
  : undefined;

const service = new RecyclerService({
  store,
  clock: { now: () => Date.now() },
  newId,
  quarantineSeconds: config.QUARANTINE_SECONDS,
  poolLowHeadroom: recycler.POOL_LOW_HEADROOM,
  topUp,
  metrics: { poolHealth: publishPoolHealth },
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
