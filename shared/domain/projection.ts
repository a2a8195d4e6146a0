import { type Change, guard, type Item, type ItemKey } from "./changes.ts";
import type { DomainEvent } from "./events.ts";
import { itemKeys, openShardOf, POOL_HEALTH_PARTITION } from "./keys.ts";
import {
  capSlotReleased,
  capSlotTaken,
  hubOpened,
  hubReleased,
  routingConflict,
  routingKey,
} from "./projection-hub.ts";
import { nameFollows, nameReleased, openedLookups, sessionUpdated } from "./projection-lookups.ts";
import { messageLogChanges } from "./projection-messages.ts";
import { DEFAULT_SESSION_RETENTION_SECONDS, retainedUntil } from "./retention.ts";
import { assertNever } from "./session.ts";
import { type Marker, markerChange } from "./traffic.ts";

/**
 * The one definition of what each event does to the stored projections. `projectEvents` turns the events
 * of one append into item changes, each with the guard that must hold for the append to succeed. Every store
 * runs these changes: the DynamoDB adapter translates them into one TransactWriteItems, the in-memory store
 * applies them to a map, and rebuild folds the whole event history through them. No store decides what an
 * event means on its own.
 */

const IDEMPOTENCY_TTL_SECONDS = 24 * 3600;
const HEALTH_TTL_SECONDS = 7 * 24 * 3600;

export { eventPartition, itemKeys, OPEN_SHARDS } from "./keys.ts";
export type { Change, Item, ItemKey };

const epochSeconds = (ms: number) => Math.floor(ms / 1000);

export interface ProjectionOptions {
  /** How long message and call items are kept (bodies are retention-limited). */
  retentionSeconds: number;
  /** How long a closed session's data is kept after it closed (SESSION_RETENTION_DAYS); default 90 days. */
  sessionRetentionSeconds?: number;
  /** Bodies of MessageReceived events: stored with the message item, never in the event. */
  content?: ReadonlyMap<string, { body: string; mediaUrls: string[] }>;
  /** Written in the same append; a second writer with the same key loses with an idempotency conflict. */
  idempotency?: { key: string; requestHash: string; result: string };
  /** Operational markers guarded in the same transaction (replay, auto-reply throttle, rate window). */
  markers?: readonly Marker[];
  /** MAX_PROXIES_PER_PARTICIPANT, from the allocation that opens a session: no cap slot beyond it is taken. */
  proxyCap?: number;
  /**
   * The events belong to a session that closed at `closedAt` (a text accepted while it was open, forwarded
   * after): they get its retention ttl, which the stamping after the close gave its earlier events.
   */
  closedSession?: { sessionId: string; closedAt: string };
}

/** The changes that appending `events` (in one transaction) makes, in order; load deltas are summed. */
export function projectEvents(events: readonly DomainEvent[], options: ProjectionOptions): Change[] {
  const changes: Change[] = [];
  const loadDelta = new Map<string, number>();
  const addLoad = (phone: string, delta: number) => loadDelta.set(phone, (loadDelta.get(phone) ?? 0) + delta);
  // A close's own events (the close, its PairReleased) get the session's retention ttl as they are written:
  // the stamping that follows a close then has only the items written before it to reach.
  const closedTtl = new Map<string, number>();
  const retention = options.sessionRetentionSeconds ?? DEFAULT_SESSION_RETENTION_SECONDS;
  if (options.closedSession)
    closedTtl.set(
      options.closedSession.sessionId,
      retainedUntil(Date.parse(options.closedSession.closedAt), retention),
    );
  for (const event of events)
    if ((event.type === "SessionClosed" || event.type === "SessionExpired") && event.sessionId)
      closedTtl.set(event.sessionId, retainedUntil(Date.parse(event.occurredAt), retention));
  for (const event of events) {
    changes.push(eventItem(event, event.sessionId ? closedTtl.get(event.sessionId) : undefined));
    changes.push(...projectEvent(event, options, addLoad), ...messageLogChanges(event));
  }
  for (const [phone, delta] of loadDelta) {
    if (delta === 0) continue;
    changes.push({
      type: "update",
      key: itemKeys.number(phone),
      add: { load: delta },
      // A draining number keeps its open pairs, but no new pair may take it.
      guard: delta > 0 ? guard.eq("status", "active") : guard.present,
      conflict: { kind: "number", key: phone },
    });
  }
  for (const marker of options.markers ?? []) changes.push(markerChange(marker));
  const idem = options.idempotency;
  if (idem) {
    const at = events[0] ? Date.parse(events[0].occurredAt) : 0;
    changes.push({
      type: "put",
      key: itemKeys.idempotency(idem.key),
      item: {
        kind: "idempotency",
        requestHash: idem.requestHash,
        result: idem.result,
        ttl: epochSeconds(at) + IDEMPOTENCY_TTL_SECONDS,
      },
      guard: guard.absent,
      conflict: { kind: "idempotency", key: idem.key },
    });
  }
  return changes;
}

function eventItem(event: DomainEvent, closedTtl: number | undefined): Change {
  const key = itemKeys.event(event);
  // Health reports are telemetry: kept a week, not forever.
  const ttl =
    key.pk === POOL_HEALTH_PARTITION
      ? epochSeconds(Date.parse(event.occurredAt)) + HEALTH_TTL_SECONDS
      : closedTtl;
  return {
    type: "put",
    key,
    item: { kind: "event", ...event, ...(ttl === undefined ? {} : { ttl }) },
    conflict: { kind: "event", key: event.id },
  };
}

function projectEvent(
  event: DomainEvent,
  options: ProjectionOptions,
  addLoad: (phone: string, delta: number) => void,
): Change[] {
  const now = Date.parse(event.occurredAt);
  const sessionId = event.sessionId ?? "";
  const retainUntil = epochSeconds(now) + options.retentionSeconds;
  const sessionRetention = options.sessionRetentionSeconds ?? DEFAULT_SESSION_RETENTION_SECONDS;
  switch (event.type) {
    case "SessionOpened": {
      const d = event.detail;
      const [a, b] = d.participants;
      const changes: Change[] = [
        {
          type: "put",
          key: itemKeys.session(sessionId),
          item: {
            kind: "session",
            sessionId,
            status: "open",
            mode: d.mode,
            ttlSeconds: d.ttlSeconds,
            ttlMode: d.ttlMode,
            createdAt: event.occurredAt,
            expiresAt: d.expiresAt,
            closedAt: null,
            participants: d.participants,
            ...(d.contacts ? { contacts: d.contacts } : {}),
            ...(d.uniqueName ? { uniqueName: d.uniqueName } : {}),
            gsi1pk: `OPEN#${openShardOf(sessionId)}`,
            gsi1sk: `${d.expiresAt}#${sessionId}`,
          },
          guard: guard.absent,
          conflict: { kind: "session", key: sessionId },
        },
      ];
      for (const [p, other] of [
        [a, b],
        [b, a],
      ] as const) {
        addLoad(p.proxyNumber, 1);
        if (p.hub) {
          changes.push(...hubOpened(event, p, other, sessionId));
          continue;
        }
        if (p.capSlot !== undefined)
          changes.push(capSlotTaken(p.phoneNumber, p.capSlot, sessionId, p.proxyNumber, options.proxyCap));
        changes.push({
          type: "put",
          key: itemKeys.pair(p.phoneNumber, p.proxyNumber),
          item: {
            kind: "pair",
            participantNumber: p.phoneNumber,
            proxyNumber: p.proxyNumber,
            state: "held",
            sessionId,
            counterpartNumber: other.phoneNumber,
            counterpartProxy: other.proxyNumber,
            mode: d.mode,
            expiresAt: Date.parse(d.expiresAt),
            quarantineUntil: null,
            ...(d.contacts ? { contacts: d.contacts } : {}),
            ...(other.hub && other.threadTag ? { counterpartTag: other.threadTag } : {}),
            ...(p.capSlot === undefined ? {} : { capSlot: p.capSlot }),
          },
          // What makes concurrent allocations safe: a pair is taken only if free.
          guard: guard.or(guard.absent, guard.eq("state", "released")),
          conflict: { kind: "pair", key: `${p.proxyNumber}:${p.phoneNumber}` },
        });
      }
      return [...changes, ...openedLookups(event)];
    }
    case "SessionClosed":
    case "SessionExpired":
      return [
        {
          type: "update",
          key: itemKeys.session(sessionId),
          set: {
            status: event.type === "SessionClosed" ? "closed" : "expired",
            closedAt: event.occurredAt,
            ttl: retainedUntil(now, sessionRetention),
          },
          remove: ["gsi1pk", "gsi1sk"],
          // An expiry names the expiresAt it was decided on: a sliding extension since then wins.
          guard:
            event.type === "SessionExpired"
              ? guard.and(guard.eq("status", "open"), guard.eq("expiresAt", event.detail.expiresAt))
              : guard.eq("status", "open"),
          conflict: { kind: "session", key: sessionId },
        },
        ...(event.type === "SessionClosed" ? nameReleased(sessionId, event.detail.uniqueName) : []),
      ];
    case "SessionUpdated":
      return sessionUpdated(event, itemKeys.session(sessionId), routingKey, routingConflict);
    case "SessionExtended": {
      const at = Date.parse(event.detail.expiresAt);
      return [
        {
          type: "update",
          key: itemKeys.session(sessionId),
          set: { expiresAt: event.detail.expiresAt, gsi1sk: `${event.detail.expiresAt}#${sessionId}` },
          // Decided on the session's ttl then (its expiry is the event's instant plus that ttl): a PATCH
          // that changed the ttl since wins, and its expiry stands.
          guard: guard.and(
            guard.eq("status", "open"),
            guard.eq(
              "ttlSeconds",
              (Date.parse(event.detail.expiresAt) - Date.parse(event.occurredAt)) / 1000,
            ),
          ),
          conflict: { kind: "session", key: sessionId },
        },
        ...event.detail.pairs.map(
          (p): Change => ({
            type: "update",
            key: routingKey(p),
            set: { expiresAt: at },
            guard: guard.eq("sessionId", sessionId),
            conflict: routingConflict(p),
          }),
        ),
        ...nameFollows(sessionId, event.detail.uniqueName, event.detail.expiresAt),
      ];
    }
    case "PairReleased": {
      const d = event.detail;
      const until = Date.parse(d.quarantineUntil);
      addLoad(d.proxyNumber, -1);
      if (d.threadTag) return hubReleased(event, sessionId);
      return [
        ...(d.capSlot === undefined ? [] : [capSlotReleased(d.participantNumber, d.capSlot, sessionId)]),
        {
          type: "update",
          key: itemKeys.pair(d.participantNumber, d.proxyNumber),
          set: {
            state: "released",
            quarantineUntil: until,
            releasedAt: now,
            lastSessionId: sessionId,
            // Kept through the quarantine, and as long as the session's data (sticky reuse until then).
            ttl: Math.max(epochSeconds(until), retainedUntil(now, sessionRetention)),
          },
          remove: ["sessionId", "counterpartProxy", "expiresAt", "capSlot"],
          guard: guard.eq("sessionId", sessionId),
          conflict: { kind: "pair", key: `${d.proxyNumber}:${d.participantNumber}` },
        },
      ];
    }
    case "MessageReceived": {
      const d = event.detail;
      const content = options.content?.get(d.messageId);
      return [
        {
          type: "put",
          key: itemKeys.message(d.messageId),
          item: {
            kind: "message",
            messageId: d.messageId,
            sessionId: event.sessionId,
            state: "received",
            source: d.source,
            from: d.from,
            recipient: d.to,
            recipientProxy: d.proxyNumber,
            body: content?.body ?? "",
            mediaUrls: content?.mediaUrls ?? [],
            receivedAt: now,
            claimedAt: null,
            twilioSid: null,
            ttl: retainUntil,
          },
          guard: guard.absent,
          conflict: { kind: "message", key: d.messageId },
        },
      ];
    }
    case "MessageForwarded":
      return [
        {
          type: "update",
          key: itemKeys.message(event.detail.messageId),
          set: { state: "forwarded", twilioSid: event.detail.twilioSid, forwardedAt: now },
          // Sending (claimed) in a live run; received when rebuilt from events (claims are not events).
          guard: guard.in("state", ["received", "sending"]),
          conflict: { kind: "message", key: event.detail.messageId },
        },
      ];
    case "MessageFailed":
      return [
        {
          type: "update",
          key: itemKeys.message(event.detail.messageId),
          set: { state: "failed", errorCode: event.detail.errorCode, twilioSid: event.detail.twilioSid },
          // A delivery failure reported by a status callback follows a forward; a send failure follows a claim.
          guard: guard.in("state", ["received", "sending", "forwarded"]),
          conflict: { kind: "message", key: event.detail.messageId },
        },
      ];
    case "MessageDelivered":
      // Only the message log entry records delivery (projection-messages.ts): the message item is the
      // transient sending state, and rewriting it bought nothing but a write.
      return [];
    case "MessageBlocked":
    case "OutOfSessionMessage": {
      const id = event.detail.messageId;
      return [
        {
          type: "update",
          key: itemKeys.message(id),
          set: {
            kind: "message",
            messageId: id,
            sessionId: event.sessionId,
            state: event.type === "MessageBlocked" ? "blocked" : "out-of-session",
            ttl: retainUntil,
          },
          // New (blocked at the door, or out of session) or a received message blocked before sending.
          guard: guard.or(guard.absent, guard.in("state", ["received", "sending"])),
          conflict: { kind: "message", key: id },
        },
      ];
    }
    case "CallBridged":
      return [
        {
          type: "put",
          key: itemKeys.call(event.detail.callSid),
          item: { kind: "call", sessionId: event.sessionId, ttl: retainUntil },
          guard: guard.absent,
          conflict: { kind: "call", key: event.detail.callSid },
        },
      ];
    case "NumberAdded":
      return [
        {
          // An update, not a put: re-adding a number that still drains keeps its load.
          type: "update",
          key: itemKeys.number(event.detail.phoneNumber),
          set: {
            kind: "number",
            phoneNumber: event.detail.phoneNumber,
            callingCode: event.detail.callingCode,
            status: "active",
            addedAt: event.occurredAt,
          },
          setIfAbsent: { load: 0 },
          guard: guard.or(guard.absent, guard.eq("status", "draining")),
          conflict: { kind: "number", key: event.detail.phoneNumber },
        },
      ];
    case "NumberDraining":
      return [
        {
          type: "update",
          key: itemKeys.number(event.detail.phoneNumber),
          set: { status: "draining", drainingSince: event.occurredAt },
          guard: guard.eq("status", "active"),
          conflict: { kind: "number", key: event.detail.phoneNumber },
        },
      ];
    case "NumberRetired":
      // Leaves the pool once nothing holds it; its history stays in its events.
      return [
        {
          type: "delete",
          key: itemKeys.number(event.detail.phoneNumber),
          guard: guard.and(guard.in("status", ["active", "draining"]), guard.eq("load", 0)),
          conflict: { kind: "number", key: event.detail.phoneNumber },
        },
      ];
    case "ParticipantOptedOut":
    case "ParticipantOptedIn":
      // Last one wins: consent is what the person said most recently, to any of our numbers.
      return [
        {
          type: "update",
          key: itemKeys.consent(event.detail.phoneNumber),
          set: {
            kind: "consent",
            phoneNumber: event.detail.phoneNumber,
            optedOut: event.type === "ParticipantOptedOut",
            changedAt: event.occurredAt,
          },
          conflict: { kind: "consent", key: event.detail.phoneNumber },
        },
      ];
    case "PoolHealthReported":
    case "PoolLow":
    case "ParticipantErased":
      return [];
    default:
      return assertNever(event);
  }
}
