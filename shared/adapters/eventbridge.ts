import { type EventBridgeClient, PutEventsCommand } from "@aws-sdk/client-eventbridge";
import type { DomainEvent } from "../domain/events.ts";
import type { DomainEventBus } from "../ports.ts";

/**
 * EventBridge: `source` "maskline", `detail-type` the event type, `detail` the versioned envelope with the
 * event id for consumer dedupe. Only domain events go out, never table items.
 */
export class EventBridgeBus implements DomainEventBus {
  /**
   * PutEvents takes at most 10 entries, and refuses the whole request (ValidationException) when its entries
   * add up to more than 256 KB.
   */
  readonly limits = { entries: 10, bytes: 256 * 1024 };

  constructor(private readonly options: { client: EventBridgeClient; busName: string; source: string }) {}

  /** An entry's size as EventBridge computes it: Time 14 bytes, then Source, DetailType and Detail in UTF-8. */
  sizeOf(event: DomainEvent): number {
    return (
      14 +
      Buffer.byteLength(this.options.source) +
      Buffer.byteLength(event.type) +
      Buffer.byteLength(JSON.stringify(event))
    );
  }

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
