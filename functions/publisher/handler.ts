import { EventBridgeClient } from "@aws-sdk/client-eventbridge";
import { logger, sqsClient } from "../../shared/adapters/aws.ts";
import { EventBridgeBus } from "../../shared/adapters/eventbridge.ts";
import { SqsForwardQueue } from "../../shared/adapters/sqs-queue.ts";
import { EventPublisher } from "../../shared/app/publisher.ts";
import { parseConfig, publisherConfigSchema, queueConfigSchema } from "../../shared/config.ts";
import { eventBus } from "../../shared/resources.ts";
import { createPublisherHandler } from "./app.ts";

// Composition root: configuration is read once, at cold start.
const { EVENT_BUS_NAME } = parseConfig(publisherConfigSchema);
const { FORWARD_QUEUE_URL } = parseConfig(queueConfigSchema);

export const handler = createPublisherHandler({
  logger,
  publisher: new EventPublisher({
    bus: new EventBridgeBus({
      client: new EventBridgeClient({}),
      busName: EVENT_BUS_NAME,
      source: eventBus.source,
    }),
    queue: new SqsForwardQueue({ queueUrl: FORWARD_QUEUE_URL, client: sqsClient() }),
    retries: 3,
  }),
});
