import type { Holding, PoolNumber } from "../domain/allocation.ts";
import { applyChange, type Change, guardHolds, type Item, type ItemKey } from "../domain/changes.ts";
import type { Consent } from "../domain/consent.ts";
import { ConcurrentWriteError, type Conflict } from "../domain/errors.ts";
import type { DomainEvent } from "../domain/events.ts";
import type { HubThread } from "../domain/hub.ts";
import { claimChange, claimOutcome, type MessageRecord, releaseChange } from "../domain/message.ts";
import type { E164 } from "../domain/phone.ts";
import { itemKeys, OPEN_SHARDS, projectEvents } from "../domain/projection.ts";
import type { Route, Session } from "../domain/session.ts";
import { trafficKeys } from "../domain/traffic.ts";
import type { AppendOptions, ClaimResult, StorePorts } from "../ports.ts";
import * as views from "./item-views.ts";

/**
 * The store in memory: a table of items (partition → sort key → item) that runs the same projection changes
 * as DynamoDB, guards included, all-or-nothing like a transaction. The pool bench replays a month of
 * sessions through the real SessionService on it in seconds; rebuild folds an event history through it.
 */
export class MemoryStore implements StorePorts {
  private readonly partitions = new Map<string, Map<string, Item>>();
  private poolCache: PoolNumber[] | undefined;
  /** Transactions that committed. */
  appends = 0;

  constructor(
    private readonly options: { retentionSeconds: number; sessionRetentionSeconds?: number } = {
      retentionSeconds: 72 * 3600,
    },
  ) {}

  async append(events: readonly DomainEvent[], options: AppendOptions = {}): Promise<void> {
    this.apply(
      projectEvents(events, {
        ...options,
        retentionSeconds: this.options.retentionSeconds,
        ...(this.options.sessionRetentionSeconds
          ? { sessionRetentionSeconds: this.options.sessionRetentionSeconds }
          : {}),
      }),
    );
  }

  private apply(changes: readonly Change[]): void {
    const staged = new Map<string, { key: ItemKey; item: Item | undefined }>();
    const conflicts: Conflict[] = [];
    for (const change of changes) {
      const id = `${change.key.pk}\u0000${change.key.sk}`;
      // DynamoDB refuses a transaction that names one item twice; so does this store.
      if (staged.has(id)) throw new Error(`one transaction changes ${change.key.pk} ${change.key.sk} twice`);
      const current = this.get(change.key);
      if (change.guard && !guardHolds(change.guard, current)) conflicts.push(change.conflict);
      staged.set(id, { key: change.key, item: applyChange(change, current) });
    }
    if (conflicts.length) throw new ConcurrentWriteError(conflicts);
    for (const { key, item } of staged.values()) this.set(key, item);
    this.appends++;
  }

  get(key: ItemKey): Item | undefined {
    return this.partitions.get(key.pk)?.get(key.sk);
  }

  private set(key: ItemKey, item: Item | undefined): void {
    if (key.pk === "POOL") this.poolCache = undefined;
    let partition = this.partitions.get(key.pk);
    if (!item) {
      partition?.delete(key.sk);
      return;
    }
    if (!partition) {
      partition = new Map();
      this.partitions.set(key.pk, partition);
    }
    partition.set(key.sk, item);
  }

  /** Every item, for comparisons (rebuild, parity tests). */
  *items(): Iterable<Item> {
    for (const partition of this.partitions.values()) yield* partition.values();
  }

  private partition(pk: string): Item[] {
    const partition = this.partitions.get(pk);
    if (!partition) return [];
    return [...partition.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, item]) => item);
  }

  async getSession(sessionId: string): Promise<Session | undefined> {
    const item = this.get(itemKeys.session(sessionId));
    return item && views.toSession(item);
  }

  async sessionEvents(sessionId: string): Promise<DomainEvent[]> {
    return this.partition(itemKeys.session(sessionId).pk)
      .filter((i) => i.kind === "event")
      .map(views.toDomainEvent);
  }

  async getRoute(proxyNumber: E164, senderNumber: E164): Promise<Route | undefined> {
    const item = this.get(itemKeys.pair(senderNumber, proxyNumber));
    return item && views.toRoute(item, proxyNumber, senderNumber);
  }

  async holdingsOf(participant: E164): Promise<Holding[]> {
    return this.partition(itemKeys.pair(participant, "").pk).map(views.toHolding);
  }

  async hubThread(participant: E164, tag: string): Promise<HubThread | undefined> {
    const item = this.get(itemKeys.hubThread(participant, tag));
    return item && views.toHubThread(item);
  }

  async hubThreadsOf(participant: E164): Promise<HubThread[]> {
    return this.partition(itemKeys.hubThread(participant, "").pk)
      .filter((i) => i.kind === "hub-thread")
      .map(views.toHubThread);
  }

  async hubNumberOf(participant: E164): Promise<E164 | undefined> {
    return this.get(itemKeys.hubNumber(participant))?.hubNumber as E164 | undefined;
  }

  /** Sorted by number as the DynamoDB query returns it; rebuilt only after the pool changed. */
  async listPool(): Promise<PoolNumber[]> {
    this.poolCache ??= this.partition("POOL").map(views.toPoolNumber);
    return this.poolCache;
  }

  async getIdempotency(key: string) {
    const item = this.get(itemKeys.idempotency(key));
    return item && { requestHash: String(item.requestHash), result: String(item.result) };
  }

  async getMessage(messageId: string): Promise<MessageRecord | undefined> {
    const item = this.get(itemKeys.message(messageId));
    return item && views.toMessage(item, messageId);
  }

  async claimSend(messageId: string, now: number, staleBefore: number): Promise<ClaimResult> {
    const change = claimChange(messageId, now, staleBefore);
    const before = this.get(change.key);
    const claimed = change.guard === undefined || guardHolds(change.guard, before);
    if (claimed) this.set(change.key, applyChange(change, before));
    return claimOutcome(before?.state as string | undefined, claimed);
  }

  async releaseClaim(messageId: string, claimedAt: number): Promise<void> {
    const change = releaseChange(messageId, claimedAt);
    const before = this.get(change.key);
    if (change.guard && guardHolds(change.guard, before)) this.set(change.key, applyChange(change, before));
  }

  async partitionItems(pk: string): Promise<(Item & ItemKey)[]> {
    return this.partition(pk) as (Item & ItemKey)[];
  }

  async itemAt(key: ItemKey): Promise<(Item & ItemKey) | undefined> {
    return this.get(key) as (Item & ItemKey) | undefined;
  }

  async itemsAt(keys: readonly ItemKey[]): Promise<(Item & ItemKey)[]> {
    return keys.flatMap((key) => {
      const item = this.get(key) as (Item & ItemKey) | undefined;
      return item ? [item] : [];
    });
  }

  async rewrite(groups: readonly (readonly Change[])[]): Promise<void> {
    for (const group of groups) this.apply(group);
  }

  async getConsent(phoneNumber: string): Promise<Consent | undefined> {
    const item = this.get(itemKeys.consent(phoneNumber));
    return item && views.toConsent(item);
  }

  private readonly tickets = new Map<string, number>();

  async spreadTicket(participant: E164): Promise<number> {
    const { pk } = itemKeys.spreadTicket(participant);
    const ticket = (this.tickets.get(pk) ?? 0) + 1;
    this.tickets.set(pk, ticket);
    return ticket;
  }

  async getConsents(keys: readonly string[]): Promise<(Consent | undefined)[]> {
    return Promise.all(keys.map((key) => this.getConsent(key)));
  }

  async ownsNumber(phoneNumber: E164): Promise<boolean> {
    return this.get(itemKeys.number(phoneNumber)) !== undefined;
  }

  async lastAutoReply(proxyNumber: E164, sender: string): Promise<number | undefined> {
    const at = this.get(trafficKeys.autoReply(proxyNumber, sender))?.lastReplyAt;
    return typeof at === "number" ? at : undefined;
  }

  async expiredSessions(now: number, limit: number): Promise<Session[]> {
    const cutoff = new Date(now).toISOString();
    return this.openIndex(limit, (gsi1sk) => gsi1sk < cutoff);
  }

  async openSessions(limit: number): Promise<Session[]> {
    return this.openIndex(limit, () => true);
  }

  /** As DynamoDB reads the sparse index: per shard in key (byte) order, `limit` each, merged by expiry. */
  private openIndex(limit: number, keep: (gsi1sk: string) => boolean): Session[] {
    const indexed = [...this.items()].filter((i) => typeof i.gsi1pk === "string" && keep(String(i.gsi1sk)));
    const perShard = Array.from({ length: OPEN_SHARDS }, (_, shard) =>
      indexed
        .filter((i) => i.gsi1pk === `OPEN#${shard}`)
        .sort((a, b) => (String(a.gsi1sk) < String(b.gsi1sk) ? -1 : 1))
        .slice(0, limit),
    );
    return views.mergeByExpiry(perShard, limit);
  }
}
