import { type Change, guard, type ItemKey } from "./changes.ts";
import type { Conflict } from "./errors.ts";
import type { EventOf } from "./events.ts";

/**
 * The lookup projections, part of the one projection (projection.ts calls these): the unique-name hold,
 * the session references that `GET /sessions` pages through, and what a session update does to the
 * session and its routing pairs. Pure, like the rest of the projection.
 */

/** A released name stays readable this long after its holder's expiry, then DynamoDB's TTL removes it. */
const NAME_GRACE_SECONDS = 24 * 3600;

export type RefScope = "PHONE" | "PID" | "NAME";

export const lookupKeys = {
  /** The one holder of a uniqueName; free when absent or when its holder's expiry has passed. */
  uniqueName: (name: string): ItemKey => ({ pk: `UNIQUENAME#${name}`, sk: "UNIQUENAME" }),
  /** Sessions of a participant (number or product id) or of a name, newest first by sort key. */
  refPartition: (scope: RefScope, value: string) => `SESSIONS#${scope}#${value}`,
  sessionRef: (scope: RefScope, value: string, createdAt: string, sessionId: string): ItemKey => ({
    pk: lookupKeys.refPartition(scope, value),
    sk: `${createdAt}#${sessionId}`,
  }),
};

const epochSeconds = (ms: number) => Math.floor(ms / 1000);

/** SessionOpened: the name hold (taking over a holder whose expiry has passed) and the references. */
export function openedLookups(event: EventOf<"SessionOpened">): Change[] {
  const sessionId = event.sessionId ?? "";
  const d = event.detail;
  const refs: [RefScope, string][] = d.participants.flatMap((p): [RefScope, string][] => [
    ["PHONE", p.phoneNumber],
    ...(p.id ? [["PID", p.id] as [RefScope, string]] : []),
  ]);
  if (d.uniqueName) refs.push(["NAME", d.uniqueName]);
  const changes: Change[] = refs.map(([scope, value]) => ({
    type: "put",
    key: lookupKeys.sessionRef(scope, value, event.occurredAt, sessionId),
    item: { kind: "session-ref", sessionId, createdAt: event.occurredAt },
    conflict: { kind: "session", key: sessionId },
  }));
  if (d.uniqueName) {
    const expiresAt = Date.parse(d.expiresAt);
    changes.push({
      type: "put",
      key: lookupKeys.uniqueName(d.uniqueName),
      item: {
        kind: "unique-name",
        uniqueName: d.uniqueName,
        sessionId,
        expiresAt,
        ttl: epochSeconds(expiresAt) + NAME_GRACE_SECONDS,
      },
      // Free, or held by a session whose expiry had passed when this one opened (expiry is exact).
      guard: guard.or(guard.absent, guard.atMost("expiresAt", Date.parse(event.occurredAt))),
      conflict: { kind: "unique-name", key: d.uniqueName },
    });
  }
  return changes;
}

/** SessionExtended / SessionUpdated: the name hold follows the new expiry. */
export function nameFollows(
  sessionId: string,
  uniqueName: string | undefined,
  expiresAtIso: string,
): Change[] {
  if (!uniqueName) return [];
  const expiresAt = Date.parse(expiresAtIso);
  return [
    {
      type: "update",
      key: lookupKeys.uniqueName(uniqueName),
      set: { expiresAt, ttl: epochSeconds(expiresAt) + NAME_GRACE_SECONDS },
      guard: guard.eq("sessionId", sessionId),
      conflict: { kind: "unique-name", key: uniqueName },
    },
  ];
}

/**
 * SessionClosed releases the name at once. An expiry needs no change: the hold's own expiresAt has passed,
 * so the name is already free, and another session may hold it by now.
 */
export function nameReleased(sessionId: string, uniqueName: string | undefined): Change[] {
  if (!uniqueName) return [];
  return [
    {
      type: "delete",
      key: lookupKeys.uniqueName(uniqueName),
      guard: guard.eq("sessionId", sessionId),
      conflict: { kind: "unique-name", key: uniqueName },
    },
  ];
}

/** SessionUpdated: ttl, mode and expiry on the session; expiry and mode on the pairs the hot path reads. */
export function sessionUpdated(
  event: EventOf<"SessionUpdated">,
  sessionKey: ItemKey,
  pairKey: (pair: EventOf<"SessionUpdated">["detail"]["pairs"][number]) => ItemKey,
  pairConflict: (pair: EventOf<"SessionUpdated">["detail"]["pairs"][number]) => Conflict,
): Change[] {
  const sessionId = event.sessionId ?? "";
  const d = event.detail;
  return [
    {
      type: "update",
      key: sessionKey,
      set: {
        ttlSeconds: d.ttlSeconds,
        mode: d.mode,
        expiresAt: d.expiresAt,
        gsi1sk: `${d.expiresAt}#${sessionId}`,
      },
      guard: guard.eq("status", "open"),
      conflict: { kind: "session", key: sessionId },
    },
    ...d.pairs.map(
      (p): Change => ({
        type: "update",
        key: pairKey(p),
        set: { expiresAt: Date.parse(d.expiresAt), mode: d.mode },
        guard: guard.eq("sessionId", sessionId),
        conflict: pairConflict(p),
      }),
    ),
    ...nameFollows(sessionId, d.uniqueName, d.expiresAt),
  ];
}
