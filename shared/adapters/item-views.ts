import type { Holding, PoolNumber } from "../domain/allocation.ts";
import type { Item } from "../domain/changes.ts";
import type { Consent } from "../domain/consent.ts";
import { type DomainEvent, domainEventSchema } from "../domain/events.ts";
import type { HubThread } from "../domain/hub.ts";
import type { MessageRecord } from "../domain/message.ts";
import type { E164 } from "../domain/phone.ts";
import type { Route, Session } from "../domain/session.ts";

/**
 * The read models as every store reads them back from projection items: one mapping, used by the DynamoDB
 * adapter and the in-memory store alike, so both answer a read the same way.
 */

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
    ...(item.contacts ? { contacts: item.contacts } : {}),
    uniqueName: (item.uniqueName as string | undefined) ?? null,
  } as Session;
}

export function toRoute(item: Item, proxyNumber: E164, senderNumber: E164): Route {
  return {
    proxyNumber,
    senderNumber,
    state: item.state as Route["state"],
    sessionId: (item.sessionId as string | undefined) ?? null,
    counterpartNumber: (item.counterpartNumber as E164 | undefined) ?? null,
    counterpartProxy: (item.counterpartProxy as E164 | undefined) ?? null,
    ...(item.counterpartTag ? { counterpartTag: item.counterpartTag as string } : {}),
    mode: (item.mode as Route["mode"] | undefined) ?? null,
    expiresAt: (item.expiresAt as number | undefined) ?? null,
    contacts: (item.contacts as Route["contacts"] | undefined) ?? null,
  };
}

export function toHubThread(item: Item): HubThread {
  return {
    participantNumber: item.participantNumber as E164,
    hubNumber: item.hubNumber as E164,
    tag: item.tag as string,
    state: item.state as HubThread["state"],
    sessionId: (item.sessionId as string | undefined) ?? null,
    counterpartNumber: (item.counterpartNumber as E164 | undefined) ?? null,
    counterpartProxy: (item.counterpartProxy as E164 | undefined) ?? null,
    counterpartTag: (item.counterpartTag as string | undefined) ?? null,
    counterpartName: (item.counterpartName as string | undefined) ?? null,
    mode: (item.mode as HubThread["mode"] | undefined) ?? null,
    expiresAt: (item.expiresAt as number | undefined) ?? null,
    quarantineUntil: (item.quarantineUntil as number | undefined) ?? null,
    contacts: (item.contacts as HubThread["contacts"] | undefined) ?? null,
  };
}

export function toHolding(item: Item): Holding {
  return {
    proxyNumber: item.proxyNumber as E164,
    state: item.state as Holding["state"],
    sessionId: (item.sessionId as string | undefined) ?? null,
    counterpartNumber: (item.counterpartNumber as E164 | undefined) ?? null,
    quarantineUntil: (item.quarantineUntil as number | undefined) ?? null,
    expiresAt: (item.expiresAt as number | undefined) ?? null,
    capSlot: (item.capSlot as number | undefined) ?? null,
  };
}

export function toPoolNumber(item: Item): PoolNumber {
  return {
    phoneNumber: item.phoneNumber as E164,
    status: item.status as PoolNumber["status"],
    callingCode: item.callingCode as string,
    load: Number(item.load ?? 0),
  };
}

export function toMessage(item: Item, messageId: string): MessageRecord {
  return {
    messageId,
    sessionId: (item.sessionId as string | undefined) ?? null,
    state: item.state as MessageRecord["state"],
    source: (item.source as MessageRecord["source"] | undefined) ?? "sms",
    from: (item.from as E164 | undefined) ?? null,
    recipient: (item.recipient as E164 | undefined) ?? null,
    recipientProxy: (item.recipientProxy as E164 | undefined) ?? null,
    body: (item.body as string | undefined) ?? "",
    mediaUrls: (item.mediaUrls as string[] | undefined) ?? [],
    receivedAt: (item.receivedAt as number | undefined) ?? 0,
    claimedAt: (item.claimedAt as number | undefined) ?? null,
    twilioSid: (item.twilioSid as string | undefined) ?? null,
  };
}

export function toConsent(item: Item): Consent {
  return {
    phoneNumber: String(item.phoneNumber),
    optedOut: item.optedOut === true,
    changedAt: (item.changedAt as string | undefined) ?? null,
  };
}

/** The event an event item stores, without its keys (not yet validated). */
export function eventOf(item: Item) {
  const { id, type, occurredAt, sessionId, detailVersion, detail } = item;
  return { id, type, occurredAt, sessionId: sessionId ?? null, detailVersion, detail };
}

/** The event an event item stores, validated by its schema. */
export function toDomainEvent(item: Item): DomainEvent {
  return domainEventSchema.parse(eventOf(item));
}

/** Orders open sessions as the recycler reads them: per index shard at most `limit`, merged by expiry. */
export function mergeByExpiry(perShard: readonly Item[][], limit: number): Session[] {
  return perShard
    .flat()
    .map(toSession)
    .sort((a, b) => a.expiresAt.localeCompare(b.expiresAt))
    .slice(0, limit);
}
