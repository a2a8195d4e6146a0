import type { Logger } from "@aws-lambda-powertools/logger";
import type { AttributeValue } from "@aws-sdk/client-dynamodb";
import { unmarshall } from "@aws-sdk/util-dynamodb";
import type { DynamoDBBatchResponse, DynamoDBStreamEvent } from "aws-lambda";
import { ZodError } from "zod";
import { toDomainEvent } from "../../shared/adapters/item-views.ts";
import {
  type EventMetric,
  type EventPublisher,
  eventMetrics,
  type SetAsideRecord,
  type SetAsideSink,
  type StreamedEvent,
} from "../../shared/app/publisher.ts";
import { type MetricName, metricNames } from "../../shared/telemetry.ts";

export interface PublisherAppDeps {
  publisher: EventPublisher;
  logger: Logger;
  setAside: SetAsideSink;
  /** Counts a metric (Powertools EMF in AWS; nothing locally). */
  count: (metric: EventMetric | { name: MetricName; value: number }) => void;
}

const text = (v: unknown) => (typeof v === "string" ? v : null);

/** What failed, without the values (a detail may hold phone numbers). */
function reasonOf(error: unknown): string {
  if (error instanceof ZodError)
    return error.issues.map((i) => `${i.path.join(".") || "(event)"}: ${i.code}`).join("; ");
  return (error as Error)?.name ?? "Error";
}

/**
 * DynamoDB stream consumer. Stream batches are ordered, so a failure reports the first failed sequence
 * number: Lambda retries from there and nothing after it is skipped. A record whose event fails its
 * schema, or is larger than the bus takes in one entry, can never be published; it is set aside in the
 * on-failure queue at once and the shard goes on.
 */
export function createPublisherHandler({ publisher, logger, setAside, count }: PublisherAppDeps) {
  return async (event: DynamoDBStreamEvent): Promise<DynamoDBBatchResponse> => {
    const records: StreamedEvent[] = [];
    const poisoned: SetAsideRecord[] = [];
    const order: string[] = [];
    for (const record of event.Records) {
      const image = record.dynamodb?.NewImage;
      if (record.eventName !== "INSERT" || !image) continue;
      const item = unmarshall(image as Record<string, AttributeValue>);
      // An event moved by erasure (its key held the number) is not new: it was published when appended.
      if (item.kind !== "event" || item.erasedAt !== undefined) continue;
      const sequenceNumber = record.dynamodb?.SequenceNumber ?? "";
      order.push(sequenceNumber);
      let reason: string;
      try {
        const event = toDomainEvent(item);
        if (!publisher.tooLarge(event)) {
          records.push({ sequenceNumber, event });
          continue;
        }
        reason = "too large for the event bus";
      } catch (error) {
        reason = reasonOf(error);
      }
      poisoned.push({
        kind: "event-set-aside",
        sequenceNumber,
        streamEventId: record.eventID ?? null,
        eventId: text(item.id),
        eventType: text(item.type),
        sessionId: text(item.sessionId),
        sk: text(item.sk),
        reason,
      });
    }

    const failed = new Set<string>();
    if (poisoned.length) {
      try {
        await setAside.setAside(poisoned);
        for (const p of poisoned) {
          logger.error("event set aside: it can never be published", {
            eventId: p.eventId,
            eventType: p.eventType,
            sessionId: p.sessionId,
            sequenceNumber: p.sequenceNumber,
            reason: p.reason,
          });
        }
        count({ name: metricNames.eventsSetAside, value: poisoned.length });
      } catch (error) {
        // Not persisted anywhere: report it, so Lambda retries (and its own on-failure destination ends it).
        logger.error("could not set aside events; will retry", {
          count: poisoned.length,
          error: { name: (error as Error)?.name, message: (error as Error)?.message },
        });
        for (const p of poisoned) failed.add(p.sequenceNumber);
      }
    }

    for (const sequenceNumber of await publisher.publish(records)) failed.add(sequenceNumber);
    if (failed.size) {
      logger.warn("events not published; will retry", { count: failed.size });
      count({ name: metricNames.publishFailures, value: failed.size });
    }
    for (const r of records)
      if (!failed.has(r.sequenceNumber)) for (const m of eventMetrics(r.event)) count(m);
    const first = order.find((sequenceNumber) => failed.has(sequenceNumber));
    return { batchItemFailures: first ? [{ itemIdentifier: first }] : [] };
  };
}
