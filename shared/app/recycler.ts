import { busiestParticipantLoad } from "../domain/allocation.ts";
import { ConcurrentWriteError } from "../domain/errors.ts";
import { type DomainEvent, makeEvent } from "../domain/events.ts";
import { callingCode, countryOf, type E164 } from "../domain/phone.ts";
import { decide, type Session } from "../domain/session.ts";
import {
  type Clock,
  decisionContext,
  type MasklineStore,
  type Metrics,
  type NumberProvider,
} from "../ports.ts";

export interface RecyclerDeps {
  store: MasklineStore;
  clock: Clock;
  newId: (prefix: string) => string;
  quarantineSeconds: number;
  metrics: Metrics;
  /** PoolLow when the busiest participant has fewer free numbers than this. */
  poolLowHeadroom: number;
  topUp: { provider: NumberProvider; maxPoolSize: number } | undefined;
}

export interface RecycleReport {
  expired: number;
  /** True when the budget ran out with expired sessions left: the caller runs again (continuation). */
  more: boolean;
  health: DomainEvent | undefined;
  bought: E164[];
}

const CONCURRENCY = 16;

/**
 * The scheduled recycler: expires sessions past `expiresAt` (freeing their pairs into quarantine), reports
 * pool health and, when enabled, tops the pool up. Safe to run concurrently with itself: every expiry is a
 * conditional write, and the loser of a race simply skips that session.
 */
export class RecyclerService {
  constructor(private readonly deps: RecyclerDeps) {}

  private ctx() {
    return decisionContext(this.deps);
  }

  async run(options: {
    budgetMs: number;
    batchSize: number;
    reportHealth?: boolean;
  }): Promise<RecycleReport> {
    const started = this.deps.clock.now();
    const deadline = started + options.budgetMs;
    let expired = 0;
    let more = false;
    for (;;) {
      if (this.deps.clock.now() >= deadline) {
        more = true;
        break;
      }
      const due = await this.deps.store.expiredSessions(this.deps.clock.now(), options.batchSize);
      if (due.length === 0) break;
      let progressed = 0;
      for (let i = 0; i < due.length; i += CONCURRENCY) {
        const results = await Promise.all(due.slice(i, i + CONCURRENCY).map((s) => this.expire(s)));
        progressed += results.filter(Boolean).length;
        if (this.deps.clock.now() >= deadline) break;
      }
      expired += progressed;
      if (progressed === 0 && due.length < options.batchSize) break;
    }
    const { health, bought } =
      options.reportHealth === false ? { health: undefined, bought: [] } : await this.poolHealth();
    return { expired, more, health, bought };
  }

  /** Decided on the index's copy; the conditional write rejects it if the session changed meanwhile. */
  private async expire(session: Session): Promise<boolean> {
    const events = decide({ type: "ExpireSession" }, session, this.ctx());
    if (events.length === 0) return false;
    try {
      await this.deps.store.append(events);
      return true;
    } catch (error) {
      if (error instanceof ConcurrentWriteError) return false; // another run (or a DELETE) got there first
      throw error;
    }
  }

  private async poolHealth(): Promise<{ health: DomainEvent; bought: E164[] }> {
    const [pool, open] = await Promise.all([this.deps.store.listPool(), this.deps.store.openSessions(5000)]);
    // Drained numbers leave the pool (conditional on still being unheld; a lost race waits for next run).
    for (const n of pool.filter((p) => p.status === "draining" && p.load === 0)) {
      await this.deps.store
        .append([makeEvent(this.ctx(), "NumberRetired", null, { phoneNumber: n.phoneNumber })])
        .catch((error) => {
          if (!(error instanceof ConcurrentWriteError)) throw error;
        });
    }
    const active = pool.filter((n) => n.status === "active");
    const openPairs = pool.reduce((sum, n) => sum + n.load, 0);
    const pairs = open.map((s) => [s.participants[0].phoneNumber, s.participants[1].phoneNumber] as const);
    const busiest = busiestParticipantLoad(pairs);
    const headroom = active.length - busiest;
    const ctx = this.ctx();
    const health = makeEvent(ctx, "PoolHealthReported", null, {
      activeNumbers: active.length,
      openPairs,
      pairsPerNumber: active.length ? openPairs / active.length : 0,
      busiestParticipantSessions: busiest,
      headroom,
    });
    const events: DomainEvent[] = [health];
    const bought: E164[] = [];
    if (headroom < this.deps.poolLowHeadroom) {
      const busiestNumber = busiestParticipant(pairs);
      events.push(
        makeEvent(ctx, "PoolLow", null, {
          headroom,
          threshold: this.deps.poolLowHeadroom,
          callingCode: busiestNumber ? callingCode(busiestNumber) : null,
        }),
      );
      const topUp = this.deps.topUp;
      const wanted = Math.min(this.deps.poolLowHeadroom - headroom, (topUp?.maxPoolSize ?? 0) - pool.length);
      for (let i = 0; topUp && i < wanted; i++) {
        const number = await topUp.provider.buy({
          country: (busiestNumber && countryOf(busiestNumber)) ?? "US",
        });
        if (!number) break;
        bought.push(number);
        events.push(
          makeEvent(ctx, "NumberAdded", null, { phoneNumber: number, callingCode: callingCode(number) }),
        );
      }
    }
    await this.deps.store.append(events);
    this.deps.metrics.poolHealth({
      pairsPerNumber: health.type === "PoolHealthReported" ? health.detail.pairsPerNumber : 0,
      headroom,
      utilization: active.length ? busiest / active.length : 1,
    });
    return { health, bought };
  }
}

function busiestParticipant(pairs: readonly (readonly [string, string])[]): E164 | undefined {
  const counts = new Map<string, number>();
  let best: string | undefined;
  for (const pair of pairs)
    for (const p of pair) {
      const c = (counts.get(p) ?? 0) + 1;
      counts.set(p, c);
      if (!best || c > (counts.get(best) ?? 0)) best = p;
    }
  return best as E164 | undefined;
}
