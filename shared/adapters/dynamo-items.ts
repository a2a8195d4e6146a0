import { type DomainEvent, domainEventSchema } from "../domain/events.ts";
import type { Session } from "../domain/session.ts";

type Item = Record<string, unknown>;

/** Stored items back to domain values (the reverse of what the projection wrote). */
export function toSession(item: Item): Session {
  return {
    sessionId: item.sessionId,
    status: item.status,
    mode: item.mode,
    ttlSeconds: item.ttlSeconds,
    ttlMode: item.ttlMode,
    createdAt: item.createdAt,
    expiresAt: item.expiresAt,
    closedAt: item.closedAt ?? null,
    participants: item.participants,
    uniqueName: item.uniqueName ?? null,
  } as Session;
}

export function toDomainEvent(item: Item): DomainEvent {
  const { id, type, occurredAt, sessionId, detailVersion, detail } = item;
  return domainEventSchema.parse({
    id,
    type,
    occurredAt,
    sessionId: sessionId ?? null,
    detailVersion,
    detail,
  });
}
