import { busiestParticipantLoad } from "../domain/allocation.ts";
import type { DomainEvent } from "../domain/events.ts";
import { countryOf, type E164 } from "../domain/phone.ts";
import { decideNumber, decidePoolHealth } from "../domain/pool.ts";
import { decide, type Session } from "../domain/session.ts";
import {
  type Clock,
  decisionContext,
  type ErasureStore,
  type EventStore,
  type Metrics,
  type NumberProvider,
  type PoolView,
  type SessionIndex,
} from "../ports.ts";
import { alreadyDone, handleCommand } from "./command.ts";
import { retainClosedSessions } from "./retention.ts";

export interface RecyclerDeps {
  store: EventStore & PoolView & SessionIndex & ErasureStore;
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
        const expiredNow = results.flatMap((s) => (s ? [s] : []));
        await retainClosedSessions(this.deps.store, expiredNow);
        progressed += expiredNow.length;
        if (this.deps.clock.now() >= deadline) break;
      }
      expired += progressed;
      if (progressed === 0 && due.length < options.batchSize) break;
    }
    const { health, bought } =
      options.reportHealth === false ? { health: undefined, bought: [] } : await this.poolHealth();
    return { expired, more, health, bought };
  }

  /**
   * Decided on the index's copy, which may lag: SessionExpired names the expiresAt it saw, and its guard
   * refuses it if the session was extended (or closed) since. The loser of a race skips the session.
   */
  private async expire(session: Session): Promise<Session | undefined> {
    const result = await handleCommand(this.deps, {
      load: async () => session,
      decide: (state, ctx) => decide({ type: "ExpireSession" }, state, ctx),
      settles: () => true,
    });
    return result.outcome === "appended" ? session : undefined;
  }

  private async poolHealth(): Promise<{ health: DomainEvent; bought: E164[] }> {
    const [pool, open] = await Promise.all([this.deps.store.listPool(), this.deps.store.openSessions(5000)]);
    // Drained numbers leave the pool (conditional on still being unheld; a lost race waits for next run).
    for (const n of pool.filter((p) => p.status === "draining" && p.load === 0)) {
      await handleCommand(this.deps, {
        load: async () => n,
        decide: (state, ctx) =>
          decideNumber({ type: "RetireIfDrained", phoneNumber: n.phoneNumber }, state, ctx),
        settles: alreadyDone,
      });
    }
    const active = pool.filter((n) => n.status === "active");
    const openPairs = pool.reduce((sum, n) => sum + n.load, 0);
    const pairs = open.map((s) => [s.participants[0].phoneNumber, s.participants[1].phoneNumber] as const);
    const busiest = busiestParticipantLoad(pairs);
    const busiestNumber = busiestParticipant(pairs);
    const ctx = this.ctx();
    const events = decidePoolHealth(
      {
        activeNumbers: active.length,
        openPairs,
        busiestParticipantSessions: busiest,
        busiestParticipant: busiestNumber,
        lowHeadroom: this.deps.poolLowHeadroom,
      },
      ctx,
    );
    const health = events[0] as DomainEvent;
    const headroom = active.length - busiest;
    const bought: E164[] = [];
    const topUp = this.deps.topUp;
    if (topUp && events.some((e) => e.type === "PoolLow")) {
      const wanted = Math.min(this.deps.poolLowHeadroom - headroom, topUp.maxPoolSize - pool.length);
      for (let i = 0; i < wanted; i++) {
        const number = await topUp.provider.buy({
          country: (busiestNumber && countryOf(busiestNumber)) ?? "US",
        });
        if (!number) break;
        bought.push(number);
        events.push(...decideNumber({ type: "AddNumber", phoneNumber: number }, null, ctx));
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
