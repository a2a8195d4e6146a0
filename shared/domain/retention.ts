import type { Change, Item, ItemKey } from "./changes.ts";

/**
 * Retention: everything about a closed session expires SESSION_RETENTION_DAYS after it closed (DynamoDB TTL
 * on the `ttl` attribute). The session item and its released pairs get their ttl in the close's own append
 * (projection.ts); the rest (its events, message log, message items, references) is stamped right after.
 */
export const DEFAULT_SESSION_RETENTION_SECONDS = 90 * 86_400;

/** The epoch second at which a session closed at `closedAtMs` is gone. */
export const retainedUntil = (closedAtMs: number, retentionSeconds: number) =>
  Math.floor(closedAtMs / 1000) + retentionSeconds;

/** Each item that would outlive `ttl` (none yet, or a later one) gets `ttl`; an earlier expiry stays. */
export function retentionChanges(items: readonly (Item & ItemKey)[], ttl: number): Change[] {
  return items
    .filter((item) => typeof item.ttl !== "number" || item.ttl > ttl)
    .map(
      (item): Change => ({
        type: "update",
        key: { pk: item.pk, sk: item.sk },
        set: { ttl },
        conflict: { kind: "session", key: item.pk },
      }),
    );
}
