import { GetQueueAttributesCommand } from "@aws-sdk/client-sqs";
import type { Context } from "aws-lambda";
import { logger, sqsClient, storeFromEnv } from "../../shared/adapters/aws.ts";
import { newId } from "../../shared/adapters/ids.ts";
import { observed } from "../../shared/adapters/observability.ts";
import { pseudonymsFromEnv } from "../../shared/adapters/secrets.ts";
import { SqsForwardQueue } from "../../shared/adapters/sqs-queue.ts";
import { SessionService } from "../../shared/app/sessions.ts";
import { apiConfigSchema, parseConfig, queueConfigSchema } from "../../shared/config.ts";
import { type HttpEvent, headerOf } from "../../shared/http/middleware.ts";
import { createAllocateHandler } from "./app.ts";

// Composition root: configuration is read once, at cold start, and a bad value fails here.
const { config, store } = storeFromEnv();
const { FORWARD_QUEUE_URL } = parseConfig(queueConfigSchema);
const api = parseConfig(apiConfigSchema);

const service = new SessionService({
  store,
  queue: new SqsForwardQueue({ queueUrl: FORWARD_QUEUE_URL, client: sqsClient() }),
  pseudonyms: pseudonymsFromEnv(),
  clock: { now: () => Date.now() },
  newId,
  quarantineSeconds: config.QUARANTINE_SECONDS,
  maxProxiesPerParticipant: config.MAX_PROXIES_PER_PARTICIPANT,
});

async function check(probe: () => Promise<unknown>): Promise<"ok" | "error"> {
  try {
    await probe();
    return "ok";
  } catch {
    return "error";
  }
}

const allocate = createAllocateHandler({
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

/** Correlation id of a product call: its Idempotency-Key, else the session it names, else API Gateway's id. */
export const handler = observed((event: HttpEvent, context: Context) => allocate(event, context), {
  correlationId: (event) =>
    headerOf(event, "idempotency-key") ?? event.pathParameters?.id ?? event.requestContext?.requestId,
});
