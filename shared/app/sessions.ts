import { createHash } from "node:crypto";
import { type PoolNumber, rankProxies } from "../domain/allocation.ts";
import {
  ConcurrentWriteError,
  IdempotencyConflictError,
  NumberNotFoundError,
  ParticipantNotInSessionError,
  PoolExhaustedError,
  SessionNotFoundError,
  SessionNotOpenError,
} from "../domain/errors.ts";
import { type DomainEvent, makeEvent, type SessionMode, type TtlMode } from "../domain/events.ts";
import { callingCode, type E164, toE164 } from "../domain/phone.ts";
import { decide, effectiveStatus, evolve, initialState, type Session } from "../domain/session.ts";
import { type Clock, decisionContext, type ForwardQueue, type MasklineStore } from "../ports.ts";

export interface ParticipantInput {
  phoneNumber: E164;
  id?: string | undefined;
  name?: string | undefined;
}

export interface OpenSessionInput {
  participants: [ParticipantInput, ParticipantInput];
  mode: SessionMode;
  ttlSeconds: number;
  ttlMode: TtlMode;
}

export interface SessionServiceDeps {
  store: MasklineStore;
  queue: ForwardQueue;
  clock: Clock;
  newId: (prefix: string) => string;
  quarantineSeconds: number;
}

/** Bounded so a pathological race ends in an answer; each lost race re-reads and takes the next number. */
const MAX_ALLOCATION_ATTEMPTS = 40;

const hashOf = (value: unknown) => createHash("sha256").update(JSON.stringify(value)).digest("hex");
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Application service behind the product API: sessions, platform messages and the number pool. */
export class SessionService {
  constructor(private readonly deps: SessionServiceDeps) {}

  private ctx() {
    return decisionContext(this.deps);
  }

  async openSession(
    input: OpenSessionInput,
    idempotencyKey?: string,
  ): Promise<{ session: Session; replayed: boolean }> {
    const { store } = this.deps;
    const idempotency = idempotencyKey
      ? { key: `sessions:${idempotencyKey}`, requestHash: hashOf(input) }
      : undefined;
    if (idempotency) {
      const replay = await this.replay(idempotency.key, idempotency.requestHash);
      if (replay) return { session: await this.mustGet(replay), replayed: true };
    }
    const sessionId = this.deps.newId("ses");
    const [a, b] = input.participants;
    let lastError: unknown;
    for (let attempt = 0; attempt < MAX_ALLOCATION_ATTEMPTS; attempt++) {
      const [pool, holdingsA, holdingsB] = await Promise.all([
        store.listPool(),
        store.holdingsOf(a.phoneNumber),
        store.holdingsOf(b.phoneNumber),
      ]);
      const ctx = this.ctx();
      const pick = (
        p: ParticipantInput,
        other: ParticipantInput,
        holdings: typeof holdingsA,
        pool: readonly PoolNumber[],
      ) => {
        const ranked = rankProxies({
          participant: p.phoneNumber,
          participantCallingCode: callingCode(p.phoneNumber),
          counterpart: other.phoneNumber,
          pool,
          holdings,
          now: ctx.now,
        });
        if (ranked.length === 0) throw new PoolExhaustedError(p.phoneNumber);
        // After a lost race, spread retries over the best few so concurrent requests stop colliding.
        const spread = Math.min(ranked.length, 1 + Math.floor(attempt / 2));
        return ranked[Math.floor(Math.random() * spread)] as E164;
      };
      const proxyA = pick(a, b, holdingsA, pool);
      // B's choice counts A's new pair, so the two sides spread over numbers when the pool allows.
      const proxyB = pick(
        b,
        a,
        holdingsB,
        pool.map((n) => (n.phoneNumber === proxyA ? { ...n, load: n.load + 1 } : n)),
      );
      const events = decide(
        {
          type: "OpenSession",
          sessionId,
          mode: input.mode,
          ttlSeconds: input.ttlSeconds,
          ttlMode: input.ttlMode,
          participants: [
            { phoneNumber: a.phoneNumber, id: a.id ?? null, name: a.name ?? null, proxyNumber: proxyA },
            { phoneNumber: b.phoneNumber, id: b.id ?? null, name: b.name ?? null, proxyNumber: proxyB },
          ],
        },
        null,
        ctx,
      );
      try {
        await store.append(events, { idempotency: idempotency && { ...idempotency, result: sessionId } });
        // The projection is what the events say: no need to read back what was just written.
        const session = events.reduce(evolve, initialState());
        return { session: session ?? (await this.mustGet(sessionId)), replayed: false };
      } catch (error) {
        if (!(error instanceof ConcurrentWriteError)) throw error;
        lastError = error;
        if (idempotency && error.conflicts.some((c) => c.startsWith("idempotency:"))) {
          const replay = await this.replay(idempotency.key, idempotency.requestHash);
          if (replay) return { session: await this.mustGet(replay), replayed: true };
        }
        await sleep(2 + Math.random() * 8 * Math.min(attempt + 1, 5));
      }
    }
    throw lastError;
  }

  private async replay(key: string, requestHash: string): Promise<string | undefined> {
    const existing = await this.deps.store.getIdempotency(key);
    if (!existing) return undefined;
    if (existing.requestHash !== requestHash) throw new IdempotencyConflictError(key);
    return existing.result;
  }

  private async mustGet(sessionId: string): Promise<Session> {
    const session = await this.deps.store.getSession(sessionId);
    if (!session) throw new SessionNotFoundError(sessionId);
    return session;
  }

  /** The session as of now: expiry is applied at read time. */
  async getSession(sessionId: string): Promise<Session> {
    const session = await this.mustGet(sessionId);
    return { ...session, status: effectiveStatus(session, this.deps.clock.now()) };
  }

  async closeSession(sessionId: string): Promise<Session> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const state = await this.mustGet(sessionId);
      const events = decide({ type: "CloseSession" }, state, this.ctx());
      if (events.length === 0) return this.getSession(sessionId);
      try {
        await this.deps.store.append(events);
        return this.getSession(sessionId);
      } catch (error) {
        // Closed or expired concurrently (another DELETE or the recycler): read again, the answer is the same.
        if (!(error instanceof ConcurrentWriteError)) throw error;
      }
    }
    return this.getSession(sessionId);
  }

  async sessionEvents(sessionId: string): Promise<DomainEvent[]> {
    await this.mustGet(sessionId);
    return this.deps.store.sessionEvents(sessionId);
  }

  /** A platform message into the conversation, delivered from the recipient's own proxy number. */
  async sendPlatformMessage(
    sessionId: string,
    input: { to: string; body: string },
    idempotencyKey?: string,
  ): Promise<{ messageId: string; replayed: boolean }> {
    const session = await this.getSession(sessionId);
    if (session.status !== "open") throw new SessionNotOpenError(sessionId, session.status);
    const toNumber = toE164(input.to);
    const recipient = session.participants.find((p) => p.phoneNumber === toNumber || p.id === input.to);
    if (!recipient) throw new ParticipantNotInSessionError(sessionId);
    const idempotency = idempotencyKey
      ? { key: `messages:${sessionId}:${idempotencyKey}`, requestHash: hashOf(input) }
      : undefined;
    const replay = idempotency && (await this.replay(idempotency.key, idempotency.requestHash));
    let messageId = replay ?? this.deps.newId("msg");
    let replayed = Boolean(replay);
    if (!replay) {
      const event = makeEvent(this.ctx(), "MessageReceived", sessionId, {
        messageId,
        source: "platform",
        from: null,
        to: recipient.phoneNumber,
        proxyNumber: recipient.proxyNumber,
        bodyLength: input.body.length,
        numMedia: 0,
      });
      try {
        await this.deps.store.append([event], {
          idempotency: idempotency && { ...idempotency, result: messageId },
          content: new Map([[messageId, { body: input.body, mediaUrls: [] }]]),
        });
      } catch (error) {
        const raced =
          error instanceof ConcurrentWriteError && idempotency
            ? await this.replay(idempotency.key, idempotency.requestHash)
            : undefined;
        if (!raced) throw error;
        messageId = raced;
        replayed = true;
      }
    }
    // Enqueued on replays too: a request that stored the message but died before enqueueing is completed here.
    const message = await this.deps.store.getMessage(messageId);
    if (message?.state === "received") await this.deps.queue.enqueue({ messageId, sessionId });
    return { messageId, replayed };
  }

  async addNumber(phoneNumber: E164): Promise<{ created: boolean }> {
    const existing = (await this.deps.store.listPool()).find((n) => n.phoneNumber === phoneNumber);
    if (existing?.status === "active") return { created: false };
    const event = makeEvent(this.ctx(), "NumberAdded", null, {
      phoneNumber,
      callingCode: callingCode(phoneNumber),
    });
    try {
      await this.deps.store.append([event]);
    } catch (error) {
      if (!(error instanceof ConcurrentWriteError)) throw error;
      return { created: false };
    }
    return { created: true };
  }

  async listNumbers() {
    return this.deps.store.listPool();
  }

  /**
   * Retires a number: with no open pair it leaves the pool at once (NumberRetired); otherwise it drains
   * (NumberDraining: no new sessions get it, open ones continue) and the recycler retires it when the last
   * pair is released.
   */
  async retireNumber(
    phoneNumber: E164,
  ): Promise<{ phoneNumber: E164; status: "draining" | "retired"; load: number }> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const existing = (await this.deps.store.listPool()).find((n) => n.phoneNumber === phoneNumber);
      if (!existing) throw new NumberNotFoundError(phoneNumber);
      if (existing.status === "draining" && existing.load > 0)
        return { phoneNumber, status: "draining", load: existing.load };
      const event =
        existing.load === 0
          ? makeEvent(this.ctx(), "NumberRetired", null, { phoneNumber })
          : makeEvent(this.ctx(), "NumberDraining", null, { phoneNumber, openPairs: existing.load });
      try {
        await this.deps.store.append([event]);
        return {
          phoneNumber,
          status: event.type === "NumberRetired" ? "retired" : "draining",
          load: existing.load,
        };
      } catch (error) {
        // A session took or released a pair meanwhile: read again.
        if (!(error instanceof ConcurrentWriteError)) throw error;
      }
    }
    throw new ConcurrentWriteError(["number"]);
  }
}
