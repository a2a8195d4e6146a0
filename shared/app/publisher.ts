import type { DomainEvent } from "../domain/events.ts";
import type { DomainEventBus, ForwardQueue } from "../ports.ts";

export interface StreamedEvent {
  /** The stream record's sequence number: what a partial batch failure reports. */
  sequenceNumber: string;
  event: DomainEvent;
}

const ENTRIES_PER_CALL = 10;

/**
 * Publishes the table's new events to the bus, 10 per PutEvents, retrying entries the bus refused. It is
 * also the outbox of the forward queue: every MessageReceived is enqueued again (deduplicated by message
 * id), so a webhook that stored a message and died before enqueueing cannot strand it.
 */
export class EventPublisher {
  constructor(
    private readonly deps: {
      bus: DomainEventBus;
      queue: ForwardQueue;
      retries: number;
      sleep?: (ms: number) => Promise<void>;
    },
  ) {}

  /** Returns the sequence numbers that could not be published (the caller reports them as failures). */
  async publish(records: readonly StreamedEvent[]): Promise<string[]> {
    const failed = new Set<string>();
    for (const r of records) {
      if (r.event.type !== "MessageReceived" || !r.event.sessionId) continue;
      try {
        await this.deps.queue.enqueue({ messageId: r.event.detail.messageId, sessionId: r.event.sessionId });
      } catch {
        failed.add(r.sequenceNumber);
      }
    }
    const sleep = this.deps.sleep ?? ((ms: number) => new Promise((res) => setTimeout(res, ms)));
    for (let i = 0; i < records.length; i += ENTRIES_PER_CALL) {
      let pending = records.slice(i, i + ENTRIES_PER_CALL);
      for (let attempt = 0; pending.length > 0; attempt++) {
        let refused: number[];
        try {
          refused = await this.deps.bus.publish(pending.map((r) => r.event));
        } catch {
          refused = pending.map((_, index) => index);
        }
        const next = refused
          .map((index) => pending[index])
          .filter((r): r is StreamedEvent => r !== undefined);
        if (next.length === 0) break;
        if (attempt >= this.deps.retries) {
          for (const r of next) failed.add(r.sequenceNumber);
          break;
        }
        pending = next;
        await sleep(50 * 2 ** attempt);
      }
    }
    return records.filter((r) => failed.has(r.sequenceNumber)).map((r) => r.sequenceNumber);
  }
}
