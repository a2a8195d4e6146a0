import { type Change, type Guard, guard, type ItemKey } from "./changes.ts";
import type { DomainEvent } from "./events.ts";

/**
 * The message log of a session (`GET /sessions/{id}/messages`), part of the one projection: one item per
 * message under the session's partition, kept as long as the session's history (no TTL; the body is not
 * here, it stays retention-limited on the message item). Indexed by time in gsi1 (`MESSAGES#<session>`).
 */

export const messageLogKeys = {
  entry: (sessionId: string, messageId: string): ItemKey => ({
    pk: `SESSION#${sessionId}`,
    sk: `MESSAGE#${messageId}`,
  }),
  indexPartition: (sessionId: string) => `MESSAGES#${sessionId}`,
};

/**
 * A message's first outcome is final: Twilio's callbacks may come late, twice or out of order, and a
 * "failed" after "delivered" (or the reverse) must not append a second, contrary outcome event.
 */
const beforeOutcome = guard.in("status", ["received", "forwarded"]);

export function messageLogChanges(event: DomainEvent): Change[] {
  const sessionId = event.sessionId;
  if (!sessionId) return [];
  const update = (
    messageId: string,
    set: Record<string, unknown>,
    ifAbsent: Record<string, unknown> = {},
    only?: Guard,
  ) => [
    {
      type: "update" as const,
      key: messageLogKeys.entry(sessionId, messageId),
      ...(only ? { guard: only } : {}),
      set,
      setIfAbsent: {
        kind: "message-log",
        messageId,
        sessionId,
        receivedAt: event.occurredAt,
        gsi1pk: messageLogKeys.indexPartition(sessionId),
        gsi1sk: `${event.occurredAt}#${messageId}`,
        ...ifAbsent,
      },
      conflict: { kind: "message" as const, key: messageId },
    },
  ];
  switch (event.type) {
    case "MessageReceived": {
      const d = event.detail;
      return update(d.messageId, {
        source: d.source,
        from: d.from,
        to: d.to,
        mediaCount: d.numMedia,
        status: "received",
      });
    }
    case "MessageForwarded":
      return update(event.detail.messageId, { status: "forwarded", forwardedAt: event.occurredAt });
    case "MessageFailed":
      return update(event.detail.messageId, { status: "failed" }, {}, beforeOutcome);
    case "MessageDelivered":
      // Each delivery status once: a repeated callback loses here and appends no second event. "read" may
      // still follow "delivered".
      return update(
        event.detail.messageId,
        { status: event.detail.status },
        {},
        event.detail.status === "read"
          ? guard.or(beforeOutcome, guard.eq("status", "delivered"))
          : beforeOutcome,
      );
    case "MessageBlocked":
      return update(event.detail.messageId, { status: "blocked" });
    default:
      return [];
  }
}
