import { type EventBridgeClient, PutEventsCommand } from "@aws-sdk/client-eventbridge";
import type { DomainEvent } from "../domain/events.ts";
import type { DomainEventBus } from "../ports.ts";

/**
 * EventBridge: `source` "maskline", `detail-type` the event type, `detail` the versioned envelope with the
 * event id for consumer dedupe. Only domain events go out, never table items.
 */
export class EventBridgeBus implements DomainEventBus {
  constructor(private readonly options: { client: EventBridgeClient; busName: string; source: string }) {}

  async publish(events: readonly DomainEvent[]): Promise<number[]> {
    const result = await this.options.client.send(
      new PutEventsCommand({
        Entries: events.map((e) => ({
          EventBusName: this.options.busName,
          Source: this.options.source,
          DetailType: e.type,
          Time: new Date(e.occurredAt),
          Detail: JSON.stringify(e),
        })),
      }),
    );
    if (!result.FailedEntryCount) return [];
    return (result.Entries ?? []).flatMap((entry, index) => (entry.ErrorCode ? [index] : []));
  }
}
