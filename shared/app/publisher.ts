import type { DomainEvent } from "../domain/events.ts";
import type { DomainEventBus, ForwardQueueBatch } from "../ports.ts";
import { type MetricName, metricNames } from "../telemetry.ts";

/**
 * A stream record whose event item cannot be published (its detail fails the zod schema): retrying would
 * fail the same way forever and hold the whole shard. It is set aside with what an operator needs to
 * find the item (never its content: it may hold phone numbers), and the shard goes on.
 */
export interface SetAsideRecord {
  kind: "event-set-aside";
  sequenceNumber: string;
  streamEventId: string | null;
  eventId: string | null;
  eventType: string | null;
  sessionId: string | null;
  sk: string | null;
  /** Which part failed (paths and zod codes), without values. */
  reason: string;
}

/** Where set-aside records go: the stream mapping's on-failure queue (PublisherFailures). */
export interface SetAsideSink {
  setAside(records: readonly SetAsideRecord[]): Promise<void>;
}

export interface EventMetric {
  name: MetricName;
  /** An extra dimension (Twilio error code, blocked reason) besides the plain count. */
  by?: { dimension: string; value: string };
}

/**
 * The metrics a domain event stands for. Derived from the events (which every state change writes) rather
 * than counted on the hot path: one place, no extra work per webhook, and the same figures a consumer of
 * the bus would compute.
 */
export function eventMetrics(event: DomainEvent): EventMetric[] {
  switch (event.type) {
    case "MessageReceived":
      return [{ name: metricNames.messagesReceived }];
    case "MessageForwarded":
      return [{ name: metricNames.messagesForwarded }];
    case "MessageFailed":
      return [
        { name: metricNames.messagesFailed },
        {
          name: metricNames.messagesFailed,
          by: { dimension: "twilioErrorCode", value: event.detail.errorCode ?? "none" },
        },
      ];
    case "MessageBlocked": {
      const reason = event.detail.reason;
      const metrics: EventMetric[] = [
        { name: metricNames.messagesBlocked },
        { name: metricNames.messagesBlocked, by: { dimension: "reason", value: reason } },
      ];
      if (reason === "rate-limit") metrics.push({ name: metricNames.messagesRateLimited });
      return metrics;
    }
    case "ParticipantOptedOut":
      return [{ name: metricNames.optOuts }];
    case "ParticipantOptedIn":
    case "SessionOpened":
    case "SessionClosed":
    case "SessionExpired":
    case "SessionExtended":
    case "SessionUpdated":
    case "PairReleased":
    case "MessageDelivered":
    case "OutOfSessionMessage":
    case "CallBridged":
    case "NumberAdded":
    case "NumberDraining":
    case "NumberRetired":
    case "PoolHealthReported":
    case "PoolLow":
    case "ParticipantErased":
      return [];
    default: {
      const unhandled: never = event;
      return unhandled;
    }
  }
}

export interface StreamedEvent {
  /** The stream record's sequence number: what a partial batch failure reports. */
  sequenceNumber: string;
  event: DomainEvent;
}

/** The order a consumer can rely on: a session's events, and the events without a session. */
const laneOf = (r: StreamedEvent) => r.event.sessionId ?? "";

/**
 * Publishes the table's new events to the bus, in calls as large as its limits allow, retrying entries the
 * bus refused, and
 * redelivers received messages to the forward queue (its outbox: `redeliverReceivedMessages`).
 */
export class EventPublisher {
  constructor(
    private readonly deps: {
      bus: DomainEventBus;
      queue: ForwardQueueBatch;
      retries: number;
      sleep?: (ms: number) => Promise<void>;
    },
  ) {}

  /** An event the bus can never take, however it is sent: retrying it would hold the stream forever. */
  tooLarge(event: DomainEvent): boolean {
    return this.deps.bus.sizeOf(event) > this.deps.bus.limits.bytes;
  }

  /**
   * The next call: the first waiting event of each lane (a session, or the pool for events without one),
   * in stream order, within the bus's limits. A lane never has two events in one call, so an entry the bus
   * refuses is sent again before the next event of its lane goes: a consumer gets a session's events in
   * the order they happened.
   */
  private nextCall(waiting: readonly StreamedEvent[]): StreamedEvent[] {
    const { entries, bytes } = this.deps.bus.limits;
    const call: StreamedEvent[] = [];
    const lanes = new Set<string>();
    let size = 0;
    for (const record of waiting) {
      const lane = laneOf(record);
      if (lanes.has(lane)) continue;
      lanes.add(lane);
      const recordSize = this.deps.bus.sizeOf(record.event);
      if (call.length > 0 && (call.length >= entries || size + recordSize > bytes)) break;
      call.push(record);
      size += recordSize;
    }
    return call;
  }

  /** Sends one call, retrying the entries the bus refused; returns those it never took. */
  private async send(call: StreamedEvent[], sleep: (ms: number) => Promise<void>): Promise<StreamedEvent[]> {
    let pending = call;
    for (let attempt = 0; ; attempt++) {
      let refused: number[];
      try {
        refused = await this.deps.bus.publish(pending.map((r) => r.event));
      } catch {
        refused = pending.map((_, index) => index);
      }
      const next = refused.map((index) => pending[index]).filter((r): r is StreamedEvent => r !== undefined);
      if (next.length === 0 || attempt >= this.deps.retries) return next;
      pending = next;
      await sleep(50 * 2 ** attempt);
    }
  }

  /**
   * Returns the sequence numbers that could not be published (the caller reports them as failures). Once an
   * event of a lane could not be published, the later events of that lane are not sent either: they go out
   * after it when the stream hands the batch again.
   */
  async publish(records: readonly StreamedEvent[]): Promise<string[]> {
    const failed = new Set<string>(await this.redeliverReceivedMessages(records));
    const sleep = this.deps.sleep ?? ((ms: number) => new Promise((res) => setTimeout(res, ms)));
    const stopped = new Set<string>();
    let waiting = [...records];
    while (waiting.length > 0) {
      const call = this.nextCall(waiting);
      const sent = new Set(call);
      for (const r of await this.send(call, sleep)) {
        failed.add(r.sequenceNumber);
        stopped.add(laneOf(r));
      }
      waiting = waiting.filter((r) => {
        if (sent.has(r)) return false;
        if (!stopped.has(laneOf(r))) return true;
        failed.add(r.sequenceNumber);
        return false;
      });
    }
    return records.filter((r) => failed.has(r.sequenceNumber)).map((r) => r.sequenceNumber);
  }

  /**
   * The forward queue's outbox: every MessageReceived is enqueued again from the stream (the queue drops
   * the duplicate by message id), so a webhook that stored a message and died before enqueueing cannot
   * strand it; a batch's messages go in together (ten per SQS call). Returns the records that could not
   * be enqueued.
   */
  private async redeliverReceivedMessages(records: readonly StreamedEvent[]): Promise<string[]> {
    const received = records.flatMap((r) =>
      r.event.type === "MessageReceived" && r.event.sessionId
        ? [
            {
              sequenceNumber: r.sequenceNumber,
              messageId: r.event.detail.messageId,
              sessionId: r.event.sessionId,
            },
          ]
        : [],
    );
    if (received.length === 0) return [];
    const refused = await this.deps.queue.enqueueAll(
      received.map(({ messageId, sessionId }) => ({ messageId, sessionId })),
    );
    return refused.map((index) => received[index]?.sequenceNumber ?? "").filter(Boolean);
  }
}
