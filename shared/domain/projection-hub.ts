import { type Change, guard } from "./changes.ts";
import type { EventOf, SessionParticipant } from "./events.ts";
import { itemKeys } from "./keys.ts";

/**
 * The hub part of the one projection (projection.ts calls these): the participant's hub marker (the pair
 * item of their hub number), one thread item per tag, and the cap slots of proxies held under a cap. Pure.
 */

/** A released tag is remembered this long after its quarantine (then DynamoDB's TTL removes it). */
const TAG_MEMORY_SECONDS = 24 * 3600;
const epochSeconds = (ms: number) => Math.floor(ms / 1000);

/** SessionOpened, a hub participant: their hub marker and the session's thread (tag unique, quarantine kept). */
export function hubOpened(
  event: EventOf<"SessionOpened">,
  p: SessionParticipant,
  other: SessionParticipant,
  sessionId: string,
): Change[] {
  const d = event.detail;
  const tag = String(p.threadTag);
  return [
    {
      type: "update",
      key: itemKeys.pair(p.phoneNumber, p.proxyNumber),
      set: { kind: "pair", participantNumber: p.phoneNumber, proxyNumber: p.proxyNumber, state: "hub" },
      remove: ["sessionId", "counterpartNumber", "counterpartProxy", "quarantineUntil", "expiresAt", "ttl"],
      // Already this person's hub, or a number they hold nothing on now.
      guard: guard.or(guard.absent, guard.in("state", ["released", "hub"])),
      conflict: { kind: "pair", key: `${p.proxyNumber}:${p.phoneNumber}` },
    },
    {
      type: "put",
      key: itemKeys.hubNumber(p.phoneNumber),
      item: { kind: "hub-number", participantNumber: p.phoneNumber, hubNumber: p.proxyNumber },
      // One hub per person: concurrent first hub sessions agree on it; a move names the hub it replaces.
      guard: guard.or(
        p.replacesHub ? guard.eq("hubNumber", p.replacesHub) : guard.absent,
        guard.eq("hubNumber", p.proxyNumber),
      ),
      conflict: { kind: "thread-tag", key: `${p.phoneNumber}:hub` },
    },
    {
      type: "put",
      key: itemKeys.hubThread(p.phoneNumber, tag),
      item: {
        kind: "hub-thread",
        participantNumber: p.phoneNumber,
        hubNumber: p.proxyNumber,
        tag,
        state: "held",
        sessionId,
        counterpartNumber: other.phoneNumber,
        counterpartProxy: other.proxyNumber,
        ...(other.hub && other.threadTag ? { counterpartTag: other.threadTag } : {}),
        counterpartName: other.name,
        mode: d.mode,
        expiresAt: Date.parse(d.expiresAt),
        quarantineUntil: null,
        ...(d.contacts ? { contacts: d.contacts } : {}),
      },
      // Never two open sessions of one person under one tag, and not again within its quarantine.
      guard: guard.or(
        guard.absent,
        guard.and(
          guard.eq("state", "released"),
          guard.atMost("quarantineUntil", Date.parse(event.occurredAt)),
        ),
      ),
      conflict: { kind: "thread-tag", key: `${p.phoneNumber}:${tag}` },
    },
  ];
}

/** PairReleased of a hub participant: the thread's tag goes into quarantine; the hub marker stays theirs. */
export function hubReleased(event: EventOf<"PairReleased">, sessionId: string): Change[] {
  const d = event.detail;
  const until = Date.parse(d.quarantineUntil);
  const tag = String(d.threadTag);
  return [
    {
      type: "update",
      key: itemKeys.hubThread(d.participantNumber, tag),
      set: { state: "released", quarantineUntil: until, ttl: epochSeconds(until) + TAG_MEMORY_SECONDS },
      remove: ["sessionId", "counterpartProxy", "expiresAt"],
      guard: guard.eq("sessionId", sessionId),
      conflict: { kind: "thread-tag", key: `${d.participantNumber}:${tag}` },
    },
  ];
}

/**
 * A capped proxy takes one of its participant's `cap` slot items, as a pair is taken: only if free. There are
 * `cap` slots and each holds one proxy, so no participant holds more than `cap` proxies; concurrent opens of
 * one participant write different slots (see `chooseCapSlot`) and do not contend on one item. With `cap`
 * (given by the allocation that opens the session, never by a rebuild) a slot beyond it is refused outright.
 */
export function capSlotTaken(
  participant: string,
  slot: number,
  sessionId: string,
  proxyNumber: string,
  cap?: number,
): Change {
  if (cap !== undefined && slot >= cap) throw new Error(`cap slot ${slot} is beyond the cap of ${cap}`);
  return {
    type: "put",
    key: itemKeys.capSlot(participant, slot),
    item: { kind: "cap-slot", phoneNumber: participant, slot, sessionId, proxyNumber },
    guard: guard.absent,
    conflict: capSlotConflict(participant, slot),
  };
}

/** The slot goes with the pair's release; never another session's (a slot already gone is fine). */
export function capSlotReleased(participant: string, slot: number, sessionId: string): Change {
  return {
    type: "delete",
    key: itemKeys.capSlot(participant, slot),
    guard: guard.or(guard.absent, guard.eq("sessionId", sessionId)),
    conflict: capSlotConflict(participant, slot),
  };
}

/** `proxy-cap` conflicts name the participant and the slot: `<participant>:<slot>`. */
const capSlotConflict = (participant: string, slot: number) => ({
  kind: "proxy-cap" as const,
  key: `${participant}:${slot}`,
});

/** SessionExtended / SessionUpdated: where a participant's expiry and mode live (their pair or thread). */
export const routingKey = (p: {
  phoneNumber: string;
  proxyNumber: string;
  threadTag?: string | undefined;
}) =>
  p.threadTag ? itemKeys.hubThread(p.phoneNumber, p.threadTag) : itemKeys.pair(p.phoneNumber, p.proxyNumber);

export const routingConflict = (p: {
  phoneNumber: string;
  proxyNumber: string;
  threadTag?: string | undefined;
}) =>
  p.threadTag
    ? { kind: "thread-tag" as const, key: `${p.phoneNumber}:${p.threadTag}` }
    : { kind: "pair" as const, key: `${p.proxyNumber}:${p.phoneNumber}` };
