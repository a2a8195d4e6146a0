import type { ItemKey } from "./changes.ts";
import type { DomainEvent } from "./events.ts";

/** Where every projection item and event item lives in the one table: partition key and sort key. */
export const itemKeys = {
  session: (id: string): ItemKey => ({ pk: `SESSION#${id}`, sk: "META" }),
  pair: (participant: string, proxy: string): ItemKey => ({
    pk: `PARTICIPANT#${participant}`,
    sk: `PROXY#${proxy}`,
  }),
  number: (phone: string): ItemKey => ({ pk: "POOL", sk: `NUMBER#${phone}` }),
  message: (id: string): ItemKey => ({ pk: `MESSAGE#${id}`, sk: "MESSAGE" }),
  call: (sid: string): ItemKey => ({ pk: `CALL#${sid}`, sk: "CALL" }),
  idempotency: (key: string): ItemKey => ({ pk: `IDEMPOTENCY#${key}`, sk: "IDEMPOTENCY" }),
  consent: (phone: string): ItemKey => ({ pk: `PERSON#${phone}`, sk: "CONSENT" }),
  /** One of a participant's cap slots (0 … cap − 1): held by one of their capped proxies at a time. */
  capSlot: (phone: string, slot: number): ItemKey => ({ pk: `PERSON#${phone}`, sk: `PROXYSLOT#${slot}` }),
  /** A hub participant's thread tag: held by one open session, then quarantined. */
  hubThread: (participant: string, tag: string): ItemKey => ({ pk: `HUB#${participant}`, sk: `TAG#${tag}` }),
  /** Which number is a participant's hub: one at a time, so concurrent opens agree on it. */
  hubNumber: (participant: string): ItemKey => ({ pk: `HUB#${participant}`, sk: "NUMBER" }),
  /**
   * The spread-ticket counter of a participant's bucket (4,096 buckets by hash: the key names no one).
   * Operational, not a projection: consecutive tickets spread one participant's concurrent opens.
   */
  spreadTicket: (participant: string): ItemKey => ({ pk: `SPREAD#${bucketOf(participant)}`, sk: "TICKET" }),
  event: (event: DomainEvent): ItemKey => ({
    pk: eventPartition(event),
    sk: `EVENT#${event.occurredAt}#${event.id}`,
  }),
};

const SPREAD_BUCKETS = 4096;
function bucketOf(participant: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < participant.length; i++) h = Math.imul(h ^ participant.charCodeAt(i), 0x01000193) >>> 0;
  return h % SPREAD_BUCKETS;
}

/** The partition of an event: its session's, else the aggregate it is about. */
export function eventPartition(event: DomainEvent): string {
  if (event.sessionId) return `SESSION#${event.sessionId}`;
  switch (event.type) {
    case "NumberAdded":
    case "NumberDraining":
    case "NumberRetired":
      return `NUMBER#${event.detail.phoneNumber}`;
    case "OutOfSessionMessage":
      return `NUMBER#${event.detail.to}`;
    case "ParticipantOptedOut":
    case "ParticipantOptedIn":
      return `PERSON#${event.detail.phoneNumber}`;
    case "ParticipantErased":
      return `PERSON#${event.detail.pseudonym}`;
    case "PoolHealthReported":
    case "PoolLow":
      return POOL_HEALTH_PARTITION;
    default:
      return "EVENTS#unscoped";
  }
}

export const POOL_HEALTH_PARTITION = "POOLHEALTH";
/** Open sessions are indexed over this many index partitions (by expiry) so the recycler can read them. */
export const OPEN_SHARDS = 8;
export function openShardOf(id: string): number {
  let h = 0;
  for (const c of id) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return h % OPEN_SHARDS;
}

/** One string per item key, for matching a batch read's answers to the keys asked for. */
export const keyOfItem = (key: { readonly pk?: unknown; readonly sk?: unknown }) =>
  `${key.pk}\u0000${key.sk}`;
