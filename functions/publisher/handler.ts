import { EventBridgeClient } from "@aws-sdk/client-eventbridge";
import { awsClientOptions, logger, sqsClient } from "../../shared/adapters/aws.ts";
import { EventBridgeBus } from "../../shared/adapters/eventbridge.ts";
import { count, countBy, observed, traceClient } from "../../shared/adapters/observability.ts";
import { SqsForwardQueue, SqsSetAsideSink } from "../../shared/adapters/sqs-queue.ts";
import { EventPublisher } from "../../shared/app/publisher.ts";
import { parseConfig, publisherConfigSchema, queueConfigSchema } from "../../shared/config.ts";
import { eventBus } from "../../shared/resources.ts";
import { createPublisherHandler } from "./app.ts";

// Composition root: configuration is read once, at cold start.
const { EVENT_BUS_NAME, PUBLISHER_FAILURES_QUEUE_URL } = parseConfig(publisherConfigSchema);
const { FORWARD_QUEUE_URL } = parseConfig(queueConfigSchema);

export const handler = observed(
  createPublisherHandler({
    logger,
    publisher: new EventPublisher({
      bus: new EventBridgeBus({
        client: traceClient(new EventBridgeClient(awsClientOptions()), "EventBridge"),
        busName: EVENT_BUS_NAME,
        source: eventBus.source,
      }),
      queue: new SqsForwardQueue({ queueUrl: FORWARD_QUEUE_URL, client: sqsClient() }),
      retries: 3,
    }),
    setAside: new SqsSetAsideSink({ queueUrl: PUBLISHER_FAILURES_QUEUE_URL, client: sqsClient() }),
    count: (metric) => {
      if ("value" in metric) count(metric.name, metric.value);
      else if (metric.by) countBy(metric.name, metric.by.dimension, metric.by.value);
      else count(metric.name);
    },
  }),
);
