import type { Holding, PoolNumber } from "../domain/allocation.ts";
import { applyChange, guardHolds, type Item, type ItemKey } from "../domain/changes.ts";
import { ConcurrentWriteError, type Conflict } from "../domain/errors.ts";
import { type DomainEvent, domainEventSchema } from "../domain/events.ts";
import type { MessageRecord } from "../domain/message.ts";
import type { E164 } from "../domain/phone.ts";
import { itemKeys, projectEvents } from "../domain/projection.ts";
import type { Session } from "../domain/session.ts";
import type {
  AppendOptions,
  EventStore,
  IdempotencyRecords,
  MessageLog,
  PoolView,
  SessionReader,
} from "../ports.ts";

/**
 * The store in memory: a table of items (partition → sort key → item) that runs the same projection changes
 * as DynamoDB, guards included, all-or-nothing like a transaction. The pool bench replays a month of
 * sessions through the real SessionService on it in seconds; rebuild folds an event history through it.
 */
export class MemoryStore implements EventStore, SessionReader, PoolView, IdempotencyRecords, MessageLog {
  private readonly partitions = new Map<string, Map<string, Item>>();
  private poolCache: PoolNumber[] | undefined;
  /** Transactions that committed. */
  appends = 0;

  constructor(private readonly options: { retentionSeconds: number } = { retentionSeconds: 72 * 3600 }) {}

  async append(events: readonly DomainEvent[], options: AppendOptions = {}): Promise<void> {
    this.apply(projectEvents(events, { ...options, retentionSeconds: this.options.retentionSeconds }));
  }

  private apply(changes: ReturnType<typeof projectEvents>): void {
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
    return item && (toSessionView(item) as Session);
  }

  async sessionEvents(sessionId: string): Promise<DomainEvent[]> {
    return this.partition(itemKeys.session(sessionId).pk)
      .filter((i) => i.kind === "event")
      .map((i) => domainEventSchema.parse(eventOf(i)));
  }

  async holdingsOf(participant: E164): Promise<Holding[]> {
    return this.partition(itemKeys.pair(participant, "").pk).map((i) => ({
      proxyNumber: i.proxyNumber as E164,
      state: i.state as Holding["state"],
      sessionId: (i.sessionId as string | undefined) ?? null,
      counterpartNumber: (i.counterpartNumber as E164 | undefined) ?? null,
      quarantineUntil: (i.quarantineUntil as number | undefined) ?? null,
      expiresAt: (i.expiresAt as number | undefined) ?? null,
    }));
  }

  /** Sorted by number as the DynamoDB query returns it; rebuilt only after the pool changed. */
  async listPool(): Promise<PoolNumber[]> {
    this.poolCache ??= this.partition("POOL").map((i) => ({
      phoneNumber: i.phoneNumber as E164,
      status: i.status as PoolNumber["status"],
      callingCode: i.callingCode as string,
      load: Number(i.load ?? 0),
    }));
    return this.poolCache;
  }

  async getIdempotency(key: string) {
    const item = this.get(itemKeys.idempotency(key));
    return item ? { requestHash: String(item.requestHash), result: String(item.result) } : undefined;
  }

  async getMessage(messageId: string): Promise<MessageRecord | undefined> {
    const item = this.get(itemKeys.message(messageId));
    return (
      item &&
      ({ claimedAt: null, twilioSid: null, mediaUrls: [], body: "", ...item } as unknown as MessageRecord)
    );
  }
}

function toSessionView(item: Item) {
  const { sessionId, status, mode, ttlSeconds, ttlMode, createdAt, expiresAt, closedAt, participants } = item;
  const uniqueName = item.uniqueName ?? null;
  return {
    sessionId,
    status,
    mode,
    ttlSeconds,
    ttlMode,
    createdAt,
    expiresAt,
    closedAt,
    participants,
    uniqueName,
  };
}

/** The event an event item stores, without its keys. */
export function eventOf(item: Item) {
  const { id, type, occurredAt, sessionId, detailVersion, detail } = item;
  return { id, type, occurredAt, sessionId: sessionId ?? null, detailVersion, detail };
}
