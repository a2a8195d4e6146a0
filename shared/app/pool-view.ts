import type { Holding, PoolNumber } from "../domain/allocation.ts";
import { ConcurrentWriteError } from "../domain/errors.ts";
import type { DomainEvent } from "../domain/events.ts";
import { itemKeys, projectEvents } from "../domain/projection.ts";
import type { AppendOptions, Clock, EventStore, PoolView } from "../ports.ts";

/** How long a container ranks on its pool view before it reads the pool again (in the background). */
export const POOL_VIEW_TTL_MS = 30_000;

const POOL_PK = itemKeys.number("").pk;
const TOOK_KEPT_MS = 60_000;

/**
 * A container's view of the pool, for ranking only: the transaction's guards stay the source of truth (a
 * pair is taken only if free, a number gains a pair only while active). Read once, then again in the
 * background when older than the TTL, and at once (awaited) when a number guard failed on what it showed.
 * Versioned: concurrent opens that fail on the same stale view cause one read, not one each.
 *
 * Between reads it follows this container's own appends: the load they add or remove is applied as they are
 * sent (and taken back if they fail), the pairs they take count as held, and a transaction waits for this
 * container's in-flight transactions on the same number items instead of racing them. So concurrent opens in
 * one process spread over the pool without conflicts; other containers' writes show at the next read.
 */
export class CachedPoolView {
  private numbers: Map<string, PoolNumber> | undefined;
  private readAt = 0;
  private mustRead = false;
  private reading: Promise<void> | undefined;
  /** Own load changes since the current read began: applied again on top of what it returns. */
  private sinceRead = new Map<string, number>();
  /** Pairs this container's in-flight appends are taking, by participant: proxy → how many, and its cap slot. */
  private readonly inFlightPairs = new Map<string, Map<string, { count: number; capSlot: number | null }>>();
  /** Pairs this container's appends took, by participant, with the append's sequence number. */
  private readonly took = new Map<
    string,
    { proxy: string; capSlot: number | null; seq: number; at: number }[]
  >();
  private seq = 0;
  /** This container's in-flight appends that take pairs, per participant. */
  private readonly taking = new Map<string, Set<Promise<unknown>>>();
  private readonly busy = new Map<string, Promise<unknown>>();
  version = 0;

  constructor(private readonly deps: { store: PoolView; clock: Clock; ttlMs?: number | undefined }) {}

  /** Ready to rank: awaits a read only when there is no view yet or the last one was found wrong. */
  async ready(): Promise<void> {
    if (!this.numbers || this.mustRead) return this.read();
    if (this.deps.clock.now() - this.readAt >= (this.deps.ttlMs ?? POOL_VIEW_TTL_MS))
      void this.read().catch(() => {});
  }

  /** The pool as this container sees it now, sorted by number (as the store lists it). */
  pool(): PoolNumber[] {
    return [...(this.numbers?.values() ?? [])];
  }

  /** Taken before reading holdings: `holdings` then adds what this container took after that read began. */
  mark(): number {
    return this.seq;
  }

  /**
   * What `participant` holds: `stored` (read after `mark`), with the pairs this container's in-flight appends
   * are taking and those its appends took since the mark (the read may have missed them).
   */
  holdings(participant: string, stored: readonly Holding[], mark: number): Holding[] {
    const taking = new Map<string, number | null>();
    for (const [proxy, { capSlot }] of this.inFlightPairs.get(participant) ?? []) taking.set(proxy, capSlot);
    for (const t of this.took.get(participant) ?? []) if (t.seq > mark) taking.set(t.proxy, t.capSlot);
    // A pair the read already shows held is kept as read: it names its session and counterpart.
    for (const h of stored) if (h.state === "held") taking.delete(h.proxyNumber);
    if (taking.size === 0) return [...stored];
    const held = [...taking].map(
      ([proxyNumber, capSlot]): Holding => ({
        proxyNumber: proxyNumber as Holding["proxyNumber"],
        state: "held",
        sessionId: null,
        counterpartNumber: null,
        quarantineUntil: null,
        capSlot,
      }),
    );
    return [...stored.filter((h) => !taking.has(h.proxyNumber)), ...held];
  }

  /**
   * Waits for this container's in-flight appends that take pairs for these participants (a lost one gives
   * its numbers back); false when there were none.
   */
  async settle(participants: readonly string[]): Promise<boolean> {
    const pending = participants.flatMap((p) => [...(this.taking.get(p) ?? [])]);
    await Promise.allSettled(pending);
    return pending.length > 0;
  }

  /** Read the pool at the next `ready()`, unless a read since `version` already did. */
  invalidate(version: number): void {
    if (version === this.version) this.mustRead = true;
  }

  /** Appends through `store`, keeping the view in step with what the append does to pool numbers. */
  async append(store: EventStore, events: readonly DomainEvent[], options?: AppendOptions): Promise<void> {
    const version = this.version;
    const loads = new Map<string, number>();
    const pairs: [string, string, number | null][] = [];
    let membership = false;
    // The very changes the store applies: the view follows the projection rules, it does not restate them.
    for (const change of projectEvents(events, { ...options, retentionSeconds: 0 })) {
      if (change.key.pk === POOL_PK) {
        const delta = change.type === "update" && !change.set ? change.add?.load : undefined;
        if (delta === undefined) membership = true;
        else loads.set(change.key.sk, delta);
      } else if (change.type === "put" && change.item.kind === "pair" && change.item.state === "held") {
        const { participantNumber, proxyNumber, capSlot } = change.item;
        pairs.push([
          String(participantNumber),
          String(proxyNumber),
          typeof capSlot === "number" ? capSlot : null,
        ]);
      }
    }
    const phones = [...loads.keys()].map((sk) => sk.slice("NUMBER#".length));
    const waits = phones.flatMap((phone) => this.busy.get(phone) ?? []);
    this.adjust(loads, 1);
    this.take(pairs, 1);
    const sent = (async () => {
      await Promise.allSettled(waits);
      await store.append(events, options);
    })();
    for (const phone of phones) this.busy.set(phone, sent);
    for (const [participant] of pairs)
      this.taking.set(participant, (this.taking.get(participant) ?? new Set()).add(sent));
    try {
      await sent;
      this.seq++;
      const now = this.deps.clock.now();
      // Kept a minute: long enough for any holdings read that began before this append to be decided on.
      const recent = (participant: string) =>
        (this.took.get(participant) ?? []).filter((t) => now - t.at < TOOK_KEPT_MS);
      for (const [participant, proxy, capSlot] of pairs)
        this.took.set(participant, [...recent(participant), { proxy, capSlot, seq: this.seq, at: now }]);
      if (this.took.size > 1000)
        for (const participant of [...this.took.keys()]) {
          const kept = recent(participant);
          if (kept.length) this.took.set(participant, kept);
          else this.took.delete(participant);
        }
      if (membership) this.invalidate(version);
    } catch (error) {
      this.adjust(loads, -1);
      const numberGuard =
        error instanceof ConcurrentWriteError &&
        error.conflicts.some((c) => c.kind === "number" && !c.contention);
      if (numberGuard) this.invalidate(version);
      throw error;
    } finally {
      this.take(pairs, -1);
      for (const [participant] of pairs) {
        const set = this.taking.get(participant);
        set?.delete(sent);
        if (set?.size === 0) this.taking.delete(participant);
      }
      for (const phone of phones) if (this.busy.get(phone) === sent) this.busy.delete(phone);
    }
  }

  private read(): Promise<void> {
    this.reading ??= (async () => {
      this.sinceRead = new Map();
      const startedAt = this.deps.clock.now();
      const listed = await this.deps.store.listPool();
      const numbers = new Map(listed.map((n) => [n.phoneNumber as string, { ...n }]));
      for (const [phone, delta] of this.sinceRead) {
        const n = numbers.get(phone);
        if (n) n.load += delta;
      }
      this.numbers = numbers;
      this.readAt = startedAt;
      this.mustRead = false;
      this.version++;
    })().finally(() => {
      this.reading = undefined;
    });
    return this.reading;
  }

  private adjust(loads: ReadonlyMap<string, number>, sign: 1 | -1): void {
    for (const [sk, delta] of loads) {
      const phone = sk.slice("NUMBER#".length);
      const n = this.numbers?.get(phone);
      if (n) n.load += sign * delta;
      this.sinceRead.set(phone, (this.sinceRead.get(phone) ?? 0) + sign * delta);
    }
  }

  private take(pairs: readonly [string, string, number | null][], sign: 1 | -1): void {
    for (const [participant, proxy, capSlot] of pairs) {
      const taking =
        this.inFlightPairs.get(participant) ?? new Map<string, { count: number; capSlot: number | null }>();
      const count = (taking.get(proxy)?.count ?? 0) + sign;
      if (count > 0) taking.set(proxy, { count, capSlot });
      else taking.delete(proxy);
      if (taking.size) this.inFlightPairs.set(participant, taking);
      else this.inFlightPairs.delete(participant);
    }
  }
}
