import type { Logger } from "@aws-lambda-powertools/logger";
import type { AttributeValue } from "@aws-sdk/client-dynamodb";
import { unmarshall } from "@aws-sdk/util-dynamodb";
import type { DynamoDBBatchResponse, DynamoDBStreamEvent } from "aws-lambda";
import { toDomainEvent } from "../../shared/adapters/item-views.ts";
import type { EventPublisher, StreamedEvent } from "../../shared/app/publisher.ts";

/**
 * DynamoDB stream consumer. Stream batches are ordered, so a failure reports the first failed sequence
 * number: Lambda retries from there and nothing after it is skipped.
 */
export function createPublisherHandler({ publisher, logger }: { publisher: EventPublisher; logger: Logger }) {
  return async (event: DynamoDBStreamEvent): Promise<DynamoDBBatchResponse> => {
    const records: StreamedEvent[] = [];
    for (const record of event.Records) {
      const image = record.dynamodb?.NewImage;
      if (record.eventName !== "INSERT" || !image) continue;
      const item = unmarshall(image as Record<string, AttributeValue>);
      if (item.kind !== "event") continue;
      records.push({ sequenceNumber: record.dynamodb?.SequenceNumber ?? "", event: toDomainEvent(item) });
    }
    const failed = await publisher.publish(records);
    if (failed.length) logger.warn("events not published; will retry", { count: failed.length });
    const first = records.find((r) => failed.includes(r.sequenceNumber));
    return { batchItemFailures: first ? [{ itemIdentifier: first.sequenceNumber }] : [] };
  };
}
