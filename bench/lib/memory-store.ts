import type { Holding, PoolNumber } from "../../shared/domain/allocation.ts";
import { ConcurrentWriteError } from "../../shared/domain/errors.ts";
import type { DomainEvent } from "../../shared/domain/events.ts";
import type { E164 } from "../../shared/domain/phone.ts";
import { evolve, type Session } from "../../shared/domain/session.ts";
import type { AppendOptions, MasklineStore } from "../../shared/ports.ts";

/**
 * An in-memory adapter of the store port, for replaying a month of sessions through the real
 * `SessionService` in seconds. It keeps exactly the projections allocation reads (pool numbers with their
 * load, per-participant holdings, sessions) with the same guards as `DynamoStore.append` (a pair is taken
 * only if free; a number gains load only while active; a session closes only once), all-or-nothing like a
 * transaction. Message, route and recycler queries lie outside allocation: calling them throws.
 */
export class MemoryAllocationStore implements MasklineStore {
  private readonly pool = new Map<E164, PoolNumber>();
  private poolList: PoolNumber[] = [];
  private readonly holdings = new Map<E164, Map<E164, Holding>>();
  private readonly sessions = new Map<string, Session>();
  appends = 0;

  async append(events: readonly DomainEvent[], _options: AppendOptions = {}): Promise<void> {
    const conflicts: string[] = [];
    const writes: (() => void)[] = [];
    const loadDelta = new Map<E164, number>();
    for (const event of events) {
      switch (event.type) {
        case "SessionOpened": {
          const sessionId = event.sessionId ?? "";
          const d = event.detail;
          if (this.sessions.has(sessionId)) conflicts.push(`session:${sessionId}`);
          // The session projection is what the domain derives from its events.
          writes.push(() => {
            const session = evolve(null, event);
            if (session) this.sessions.set(sessionId, session);
          });
          const [a, b] = d.participants;
          for (const [p, other] of [
            [a, b],
            [b, a],
          ] as const) {
            const participant = p.phoneNumber as E164;
            const proxy = p.proxyNumber as E164;
            const held = this.holdings.get(participant)?.get(proxy);
            if (held && held.state !== "released") conflicts.push(`pair:${proxy}:${participant}`);
            writes.push(() => {
              let mine = this.holdings.get(participant);
              if (!mine) {
                mine = new Map();
                this.holdings.set(participant, mine);
              }
              mine.set(proxy, {
                proxyNumber: proxy,
                state: "held",
                sessionId,
                counterpartNumber: other.phoneNumber as E164,
                quarantineUntil: null,
              });
            });
            loadDelta.set(proxy, (loadDelta.get(proxy) ?? 0) + 1);
          }
          break;
        }
        case "SessionClosed":
        case "SessionExpired": {
          const sessionId = event.sessionId ?? "";
          const session = this.sessions.get(sessionId);
          if (session?.status !== "open") conflicts.push(`session:${sessionId}`);
          const status = event.type === "SessionClosed" ? "closed" : "expired";
          writes.push(() => {
            if (session) this.sessions.set(sessionId, { ...session, status, closedAt: event.occurredAt });
          });
          break;
        }
        case "PairReleased": {
          const d = event.detail;
          const participant = d.participantNumber as E164;
          const proxy = d.proxyNumber as E164;
          const held = this.holdings.get(participant)?.get(proxy);
          if (held?.sessionId !== event.sessionId) conflicts.push(`pair:${proxy}:${participant}`);
          writes.push(() => {
            if (!held) return;
            held.state = "released";
            held.sessionId = null;
            held.quarantineUntil = Date.parse(d.quarantineUntil);
          });
          loadDelta.set(proxy, (loadDelta.get(proxy) ?? 0) - 1);
          break;
        }
        case "NumberAdded": {
          const phone = event.detail.phoneNumber as E164;
          const existing = this.pool.get(phone);
          if (existing?.status === "active") conflicts.push(`number:${phone}`);
          writes.push(() => {
            if (existing) existing.status = "active";
            else {
              const added: PoolNumber = {
                phoneNumber: phone,
                status: "active",
                callingCode: event.detail.callingCode,
                load: 0,
              };
              this.pool.set(phone, added);
              this.poolList = [...this.pool.values()].sort((x, y) =>
                x.phoneNumber < y.phoneNumber ? -1 : 1,
              );
            }
          });
          break;
        }
        default:
          throw new Error(`${event.type} is not part of allocation; the memory store does not project it`);
      }
    }
    for (const [phone, delta] of loadDelta) {
      if (delta > 0 && this.pool.get(phone)?.status !== "active") conflicts.push(`number:${phone}`);
    }
    if (conflicts.length) throw new ConcurrentWriteError(conflicts);
    for (const write of writes) write();
    for (const [phone, delta] of loadDelta) {
      const number = this.pool.get(phone);
      if (number) number.load += delta;
    }
    this.appends++;
  }

  async getSession(sessionId: string): Promise<Session | undefined> {
    return this.sessions.get(sessionId);
  }

  async holdingsOf(participant: E164): Promise<Holding[]> {
    const mine = this.holdings.get(participant);
    return mine ? [...mine.values()] : [];
  }

  /** The live list, sorted by number as the DynamoDB query returns it; callers only read it. */
  async listPool(): Promise<PoolNumber[]> {
    return this.poolList;
  }

  async getIdempotency(): Promise<undefined> {
    return undefined;
  }

  sessionEvents(): Promise<never> {
    return notAllocation("sessionEvents");
  }
  getRoute(): Promise<never> {
    return notAllocation("getRoute");
  }
  getMessage(): Promise<never> {
    return notAllocation("getMessage");
  }
  claimSend(): Promise<never> {
    return notAllocation("claimSend");
  }
  releaseClaim(): Promise<never> {
    return notAllocation("releaseClaim");
  }
  expiredSessions(): Promise<never> {
    return notAllocation("expiredSessions");
  }
  openSessions(): Promise<never> {
    return notAllocation("openSessions");
  }
}

function notAllocation(method: string): never {
  throw new Error(`MemoryAllocationStore.${method} is not part of allocation`);
}
