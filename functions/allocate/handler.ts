import { GetQueueAttributesCommand } from "@aws-sdk/client-sqs";
import { logger, sqsClient, storeFromEnv } from "../../shared/adapters/aws.ts";
import { newId } from "../../shared/adapters/ids.ts";
import { SqsForwardQueue } from "../../shared/adapters/sqs-queue.ts";
import { SessionService } from "../../shared/app/sessions.ts";
import { apiConfigSchema, parseConfig, queueConfigSchema } from "../../shared/config.ts";
import { createAllocateHandler } from "./app.ts";

// Composition root: configuration is read once, at cold start, and a bad value fails here.
const { config, store } = storeFromEnv();
const { FORWARD_QUEUE_URL } = parseConfig(queueConfigSchema);
const api = parseConfig(apiConfigSchema);

const service = new SessionService({
  store,
  queue: new SqsForwardQueue({ queueUrl: FORWARD_QUEUE_URL, client: sqsClient() }),
  clock: { now: () => Date.now() },
  newId,
  quarantineSeconds: config.QUARANTINE_SECONDS,
});

async function check(probe: () => Promise<unknown>): Promise<"ok" | "error"> {
  try {
    await probe();
    return "ok";
  } catch {
    return "error";
  }
}

export const handler = createAllocateHandler({
  service,
  logger,
  ...(api.CURSOR_SIGNING_KEY ? { cursorKey: api.CURSOR_SIGNING_KEY } : {}),
  auth:
    api.MASKLINE_AUTH === "iam" ? { mode: "iam" } : { mode: "token", token: api.MASKLINE_API_TOKEN ?? "" },
  health: async () => ({
    table: await check(() => store.getIdempotency("health-probe")),
    queue: await check(() =>
      sqsClient().send(
        new GetQueueAttributesCommand({ QueueUrl: FORWARD_QUEUE_URL, AttributeNames: ["QueueArn"] }),
      ),
    ),
  }),
});
