import { createHash } from "node:crypto";
import {
  chooseProxy,
  type GeoMatch,
  type Holding,
  isOpenHolding,
  type PoolNumber,
  sharedOpenSession,
} from "../domain/allocation.ts";
import type { ContactPolicy } from "../domain/contacts.ts";
import {
  ConcurrentWriteError,
  type Conflict,
  IdempotencyConflictError,
  NumberIsParticipantError,
  ParticipantConflictError,
  ParticipantIsPoolNumberError,
  ParticipantNotInSessionError,
  PoolExhaustedError,
  SessionNotFoundError,
  SessionNotOpenError,
  UniqueNameTakenError,
} from "../domain/errors.ts";
import type { DomainEvent, SessionMode, TtlMode } from "../domain/events.ts";
import { allocateHub, chooseCapSlot, type HubThread, needsHub, withTag } from "../domain/hub.ts";
import { decideMessage } from "../domain/message.ts";
import { callingCode, type E164, isPseudonym, toE164 } from "../domain/phone.ts";
import { decideNumber } from "../domain/pool.ts";
import { decide, effectiveStatus, evolve, initialState, type Session } from "../domain/session.ts";
import type {
  Clock,
  ConsentRecords,
  ErasureStore,
  EventStore,
  ForwardQueue,
  HubThreads,
  IdempotencyRecords,
  MessageLog,
  PagedReads,
  PoolView,
  Pseudonyms,
  SessionReader,
  SpreadTickets,
  TrafficReads,
} from "../ports.ts";
import {
  alreadyDone,
  type CommandDeps,
  type CommandResult,
  type CommandSpec,
  handleCommand,
} from "./command.ts";
import { type ErasureCounts, ErasureService } from "./erasure.ts";
import { CachedPoolView } from "./pool-view.ts";
import { consentOf, ephemeralPseudonyms } from "./pseudonyms.ts";
import { retainClosedSession } from "./retention.ts";
import { SessionQueries } from "./session-queries.ts";

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
  /** The session's own contact-info policy; undefined: the global one. */
  contacts?: ContactPolicy | undefined;
  /** Unique among open sessions (a name whose holder has expired is free again). */
  uniqueName?: string | undefined;
  /** Refuse when the two participants already share an open session. */
  failOnParticipantConflict?: boolean | undefined;
  geoMatch?: GeoMatch | undefined;
}

export interface SessionServiceDeps {
  store: EventStore &
    SessionReader &
    PoolView &
    Pick<TrafficReads, "ownsNumber"> &
    IdempotencyRecords &
    MessageLog &
    ConsentRecords &
    HubThreads &
    ErasureStore &
    Partial<SpreadTickets>;
  queue: ForwardQueue;
  /** Consent kept under a pseudonym, and erasure; by default a key of this process only (tests). */
  pseudonyms?: Pseudonyms;
  clock: Clock;
  newId: (prefix: string) => string;
  quarantineSeconds: number;
  /** How long the container's pool view is used before it is read again (default 30 s). */
  poolViewTtlMs?: number;
  /** Above this many proxies in open sessions a participant's new sessions share their hub number. */
  maxProxiesPerParticipant?: number | undefined;
}

interface HubView {
  hubNumber: E164 | undefined;
  threads: HubThread[];
}

/** Bounded so a pathological race ends in an answer; each lost race re-reads and takes the next number. */
const MAX_ALLOCATION_ATTEMPTS = 40;

/**
 * The numbers lost races found another open taking for `participant`: its pair on them (held, or in another
 * transaction in flight), or the number item itself in another transaction in flight.
 */
function contested(lost: readonly Conflict[], participant: E164): ReadonlySet<string> {
  const numbers = new Set<string>();
  for (const c of lost) {
    const [proxy, who] = c.key.split(":");
    if (c.kind === "pair" && who === participant && proxy) numbers.add(proxy);
    else if (c.kind === "number" && c.contention) numbers.add(c.key);
  }
  return numbers;
}

/** The cap slots of `participant` lost races found another open taking (`proxy-cap` keys: `<participant>:<slot>`). */
function contestedSlots(lost: readonly Conflict[], participant: E164): ReadonlySet<number> {
  const slots = new Set<number>();
  for (const c of lost) {
    const [who, slot] = c.key.split(":");
    if (c.kind === "proxy-cap" && who === participant) slots.add(Number(slot));
  }
  return slots;
}

/** A command spec whose state type is inferred from its `load`. */
const commandSpec = <S>(spec: CommandSpec<S>) => spec;

const hashOf = (value: unknown) => createHash("sha256").update(JSON.stringify(value)).digest("hex");

/** Application service behind the product API: sessions, platform messages and the number pool. */
export class SessionService {
  /** The pool as this container sees it: ranks candidates; the transaction's guards decide. */
  private readonly poolView: CachedPoolView;
  /** What every command appends through: the store, with the pool view following the appends. */
  private readonly commandDeps: CommandDeps;

  constructor(private readonly deps: SessionServiceDeps) {
    this.poolView = new CachedPoolView({ store: deps.store, clock: deps.clock, ttlMs: deps.poolViewTtlMs });
    this.commandDeps = {
      ...deps,
      store: { append: (events, options) => this.poolView.append(deps.store, events, options) },
    };
  }

  /** The paged list reads, where the store offers them (DynamoDB does; the in-memory store does not). */
  queries(): SessionQueries {
    const store = this.deps.store as SessionServiceDeps["store"] & Partial<PagedReads>;
    if (!store.sessionsBy || !store.poolPage) throw new Error("this store has no paged reads");
    return new SessionQueries({ store: store as typeof store & PagedReads, clock: this.deps.clock });
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
      if (replay) return { session: await this.getSession(replay), replayed: true };
    }
    const sessionId = this.deps.newId("ses");
    const [a, b] = input.participants;
    const view = this.poolView;
    // Taken beside the first reads: concurrent opens for one participant get consecutive tickets.
    const tickets = Promise.all(
      [a, b].map((p) => store.spreadTicket?.(p.phoneNumber).catch(() => undefined)),
    );
    const spec = commandSpec({
      load: async () => {
        const [mark, , storedA, storedB, ownsA, ownsB, [ticketA, ticketB], threadsA] = await Promise.all([
          view.mark(),
          view.ready(),
          store.holdingsOf(a.phoneNumber),
          store.holdingsOf(b.phoneNumber),
          store.ownsNumber(a.phoneNumber),
          store.ownsNumber(b.phoneNumber),
          tickets,
          // A's side of a shared session is a pair, or a thread on A's hub: both name B.
          input.failOnParticipantConflict ? store.hubThreadsOf(a.phoneNumber) : [],
        ]);
        const hubs = await this.hubViews(
          a,
          b,
          view.holdings(a.phoneNumber, storedA, mark),
          view.holdings(b.phoneNumber, storedB, mark),
        );
        return [mark, storedA, storedB, ownsA, ownsB, hubs, ticketA, ticketB, threadsA] as const;
      },
      decide: (
        [mark, storedA, storedB, ownsA, ownsB, [hubA, hubB], ticketA, ticketB, threadsA],
        ctx,
        attempt,
        lost,
      ) => {
        // A number we own (active or draining) is never a participant: its texts would loop through us.
        if (ownsA || ownsB) throw new ParticipantIsPoolNumberError(ownsA ? a.phoneNumber : b.phoneNumber);
        // The container's view of the pool, with the pairs its own in-flight opens are taking.
        const pool = view.pool();
        const holdingsA = view.holdings(a.phoneNumber, storedA, mark);
        const holdingsB = view.holdings(b.phoneNumber, storedB, mark);
        if (input.failOnParticipantConflict) {
          const shared = sharedOpenSession([...holdingsA, ...threadsA], b.phoneNumber, ctx.now);
          if (shared) throw new ParticipantConflictError(shared.sessionId);
        }
        const pick = (
          p: ParticipantInput,
          other: ParticipantInput,
          holdings: Holding[],
          ticket: number | undefined,
          share?: E164,
        ) => {
          const proxy = chooseProxy(
            {
              participant: p.phoneNumber,
              participantCallingCode: callingCode(p.phoneNumber),
              counterpart: other.phoneNumber,
              pool,
              holdings,
              now: ctx.now,
              geoMatch: input.geoMatch,
            },
            // Concurrent opens for one participant spread over equally good numbers: first by ticket, then
            // (a lost race) by a fresh draw, away from the numbers other opens were found taking.
            {
              seed: `${sessionId}:${p.phoneNumber}:${attempt}`,
              ticket: attempt === 0 ? ticket : undefined,
              avoid: contested(lost, p.phoneNumber),
              share,
            },
          );
          if (!proxy) throw new PoolExhaustedError(p.phoneNumber);
          return proxy;
        };
        // Under a cap the participant's proxy takes a free cap slot, spread like the numbers (by ticket, then
        // away from the slots other opens were found taking); at the cap, their side goes on their hub number
        // with a new thread tag.
        const cap = this.deps.maxProxiesPerParticipant;
        const hub = (
          p: ParticipantInput,
          other: ParticipantInput,
          holdings: Holding[],
          view: HubView,
          ticket: number | undefined,
        ) => {
          if (cap === undefined) return undefined;
          const capSlot = chooseCapSlot(holdings, cap, {
            seed: `${sessionId}:${p.phoneNumber}:${attempt}`,
            ticket: attempt === 0 ? ticket : undefined,
            avoid: contestedSlots(lost, p.phoneNumber),
          });
          return capSlot !== undefined
            ? { capped: true as const, capSlot }
            : allocateHub({
                participant: p.phoneNumber,
                participantCallingCode: callingCode(p.phoneNumber),
                counterpart: other.phoneNumber,
                counterpartName: other.name ?? null,
                mode: input.mode,
                pool,
                holdings,
                threads: view.threads,
                previousHub: view.hubNumber,
                now: ctx.now,
              });
        };
        const sideA = hub(a, b, holdingsA, hubA, ticketA);
        const sideB = hub(b, a, holdingsB, hubB, ticketB);
        const proxyA = sideA && "hub" in sideA ? sideA.proxyNumber : pick(a, b, holdingsA, ticketA);
        // B shares A's number when it is as good as any for B: the open then writes one number item, not two.
        const proxyB = sideB && "hub" in sideB ? sideB.proxyNumber : pick(b, a, holdingsB, ticketB, proxyA);
        return decide(
          {
            type: "OpenSession",
            sessionId,
            mode: input.mode,
            ttlSeconds: input.ttlSeconds,
            ttlMode: input.ttlMode,
            ...(input.contacts ? { contacts: input.contacts } : {}),
            uniqueName: input.uniqueName ?? null,
            participants: [
              {
                phoneNumber: a.phoneNumber,
                id: a.id ?? null,
                name: a.name ?? null,
                ...sideA,
                proxyNumber: proxyA,
              },
              {
                phoneNumber: b.phoneNumber,
                id: b.id ?? null,
                name: b.name ?? null,
                ...sideB,
                proxyNumber: proxyB,
              },
            ],
          },
          null,
          ctx,
        );
      },
      options: {
        idempotency: idempotency && { ...idempotency, result: sessionId },
        // Contended numbers are not sent again unchanged: the next attempt takes another one.
        reportContention: true,
        ...(this.deps.maxProxiesPerParticipant === undefined
          ? {}
          : { proxyCap: this.deps.maxProxiesPerParticipant }),
      },
      // Contention is reported, not resent (above): only a guard that failed settles the open.
      settles: (conflicts) =>
        conflicts.some((c) => (c.kind === "idempotency" || c.kind === "unique-name") && !c.contention),
      attempts: MAX_ALLOCATION_ATTEMPTS,
    });
    const result = await this.allocating(spec, [a.phoneNumber, b.phoneNumber]);
    const nameTaken = result.outcome === "settled" && result.conflicts.some((c) => c.kind === "unique-name");
    if (nameTaken && !result.conflicts.some((c) => c.kind === "idempotency"))
      throw new UniqueNameTakenError(input.uniqueName ?? "");
    if (result.outcome === "settled" && idempotency) {
      // A concurrent request with the same key won: answer what it stored.
      const replay = await this.replay(idempotency.key, idempotency.requestHash);
      if (replay) return { session: await this.getSession(replay), replayed: true };
      throw new ConcurrentWriteError(result.conflicts);
    }
    // The projection is what the events say: no need to read back what was just written.
    const session = result.events.reduce(evolve, initialState());
    return { session: session ?? (await this.mustGet(sessionId)), replayed: false };
  }

  /** The hub and tags of the participants at their cap, read only when a hub is needed. */
  private async hubViews(
    a: ParticipantInput,
    b: ParticipantInput,
    holdingsA: Holding[],
    holdingsB: Holding[],
  ): Promise<[HubView, HubView]> {
    const cap = this.deps.maxProxiesPerParticipant;
    const read = async (p: ParticipantInput, holdings: Holding[]): Promise<HubView> => {
      if (!needsHub(holdings, cap)) return { hubNumber: undefined, threads: [] };
      const [hubNumber, threads] = await Promise.all([
        this.deps.store.hubNumberOf(p.phoneNumber),
        this.deps.store.hubThreadsOf(p.phoneNumber),
      ]);
      return { hubNumber, threads };
    };
    return Promise.all([read(a, holdingsA), read(b, holdingsB)]);
  }

  /**
   * Runs an allocation. Exhausted by this container's view only when nothing it is doing could change that:
   * its own in-flight opens for these participants may give numbers back (it waits for them), and the view
   * may lack numbers added since it was read (it reads the pool once more).
   */
  private async allocating<S>(
    spec: CommandSpec<S>,
    participants: readonly E164[],
  ): Promise<CommandResult<S>> {
    let readAgain = true;
    for (let round = 0; ; round++) {
      const version = this.poolView.version;
      try {
        return await handleCommand(this.commandDeps, spec);
      } catch (error) {
        if (!(error instanceof PoolExhaustedError) || round >= MAX_ALLOCATION_ATTEMPTS) throw error;
        if (await this.poolView.settle(participants)) continue;
        if (!readAgain) throw error;
        readAgain = false;
        this.poolView.invalidate(version);
      }
    }
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
    // Closed or expired concurrently (another DELETE or the recycler): the guard fails, read again.
    const result = await handleCommand(this.commandDeps, {
      load: () => this.mustGet(sessionId),
      decide: (state, ctx) => decide({ type: "CloseSession" }, state, ctx),
    }).catch((error) => {
      if (!(error instanceof ConcurrentWriteError)) throw error;
    });
    if (result?.outcome === "appended") await retainClosedSession(this.deps.store, result.state);
    return this.getSession(sessionId);
  }

  /**
   * PATCH: a new ttl counts from now (a sliding session then extends by it), a new mode applies to the
   * routing pairs at once. A session that closed or expired meanwhile fails the guard; read again.
   */
  async updateSession(
    sessionId: string,
    input: { ttlSeconds?: number; mode?: SessionMode },
  ): Promise<Session> {
    const result = await handleCommand(this.commandDeps, {
      load: () => this.mustGet(sessionId),
      decide: (state, ctx) => decide({ type: "UpdateSession", ...input }, state, ctx),
    });
    return result.events.reduce(evolve, result.state) ?? this.getSession(sessionId);
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
    const idempotency = idempotencyKey
      ? { key: `messages:${sessionId}:${idempotencyKey}`, requestHash: hashOf(input) }
      : undefined;
    // A retry answers what the first request did, even once the session has ended since.
    const replay = idempotency && (await this.replay(idempotency.key, idempotency.requestHash));
    let messageId = replay ?? this.deps.newId("msg");
    let replayed = Boolean(replay);
    if (!replay) {
      const session = await this.getSession(sessionId);
      if (session.status !== "open") throw new SessionNotOpenError(sessionId, session.status);
      const toNumber = toE164(input.to);
      const recipient = session.participants.find((p) => p.phoneNumber === toNumber || p.id === input.to);
      if (!recipient) throw new ParticipantNotInSessionError(sessionId);
      const result = await handleCommand(this.commandDeps, {
        load: async () => null,
        decide: (_, ctx) =>
          decideMessage(
            {
              type: "ReceivePlatform",
              messageId,
              sessionId,
              to: recipient.phoneNumber as E164,
              proxyNumber: recipient.proxyNumber as E164,
              bodyLength: input.body.length,
            },
            null,
            ctx,
          ),
        options: {
          idempotency: idempotency && { ...idempotency, result: messageId },
          // A hub participant reads it behind the session's tag, like every text of that thread.
          content: new Map([
            [
              messageId,
              {
                body:
                  recipient.hub && recipient.threadTag
                    ? withTag(recipient.threadTag, input.body)
                    : input.body,
                mediaUrls: [],
              },
            ],
          ]),
        },
        settles: (conflicts) => conflicts.some((c) => c.kind === "idempotency"),
      });
      if (result.outcome === "settled") {
        const raced = idempotency && (await this.replay(idempotency.key, idempotency.requestHash));
        if (!raced) throw new ConcurrentWriteError(result.conflicts);
        messageId = raced;
        replayed = true;
      }
    }
    // Enqueued on replays too: a request that stored the message but died before enqueueing is completed here.
    const message = await this.deps.store.getMessage(messageId);
    if (message?.state === "received") await this.deps.queue.enqueue({ messageId, sessionId });
    return { messageId, replayed };
  }

  private pseudonyms(): Pseudonyms {
    return this.deps.pseudonyms ?? ephemeralPseudonyms();
  }

  private consent(phoneNumber: E164) {
    return consentOf(this.deps.store, this.pseudonyms(), phoneNumber);
  }

  /** Which of the session's participants have opted out (pool-wide consent); an erased one has no number. */
  async optedOut(session: Session): Promise<ReadonlySet<string>> {
    const numbers = session.participants.map((p) => p.phoneNumber).filter((n) => !isPseudonym(n)) as E164[];
    const consents = await Promise.all(numbers.map((n) => this.consent(n)));
    return new Set(numbers.filter((_, i) => consents[i]?.optedOut));
  }

  /** DELETE /participants/{e164}: the person's number erased from every item and event of theirs. */
  async erase(phoneNumber: E164): Promise<ErasureCounts> {
    return new ErasureService({ ...this.deps, pseudonyms: this.pseudonyms() }).erase(phoneNumber);
  }

  /** A person's consent and the sessions they take part in now. */
  async participant(
    phoneNumber: E164,
  ): Promise<{ phoneNumber: E164; optedOut: boolean; openSessions: string[] }> {
    const [consent, holdings, threads] = await Promise.all([
      this.consent(phoneNumber),
      this.deps.store.holdingsOf(phoneNumber),
      this.deps.store.hubThreadsOf(phoneNumber),
    ]);
    const held = [
      ...new Set(
        [...holdings, ...threads].flatMap((h) => (h.state === "held" && h.sessionId ? [h.sessionId] : [])),
      ),
    ];
    const sessions = await Promise.all(held.map((id) => this.deps.store.getSession(id)));
    const now = this.deps.clock.now();
    const openSessions = sessions.flatMap((s) =>
      s && effectiveStatus(s, now) === "open" ? [s.sessionId] : [],
    );
    return { phoneNumber, optedOut: consent?.optedOut ?? false, openSessions };
  }

  async addNumber(phoneNumber: E164): Promise<{ created: boolean }> {
    const result = await handleCommand(this.commandDeps, {
      load: () =>
        Promise.all([
          this.poolNumber(phoneNumber),
          this.deps.store.holdingsOf(phoneNumber),
          this.deps.store.hubThreadsOf(phoneNumber),
        ]),
      decide: ([state, holdings, threads], ctx) => {
        // Their own proxies, and their hub threads (a person may be in open sessions on their hub only).
        if ([...holdings, ...threads].some((h) => isOpenHolding(h, ctx.now)))
          throw new NumberIsParticipantError(phoneNumber);
        return decideNumber({ type: "AddNumber", phoneNumber }, state, ctx);
      },
      settles: alreadyDone,
    });
    return { created: result.outcome === "appended" };
  }

  async listNumbers() {
    return this.deps.store.listPool();
  }

  /**
   * Retires a number: with no open pair it leaves the pool at once (NumberRetired); otherwise it drains
   * (NumberDraining: no new sessions get it, open ones continue) and the recycler retires it when the last
   * pair is released. A session that took or released a pair meanwhile makes the guard fail: read again.
   */
  async retireNumber(
    phoneNumber: E164,
  ): Promise<{ phoneNumber: E164; status: "draining" | "retired"; load: number }> {
    const result = await handleCommand(this.commandDeps, {
      load: () => this.poolNumber(phoneNumber),
      decide: (state, ctx) => decideNumber({ type: "RetireNumber", phoneNumber }, state, ctx),
    });
    const load = result.state?.load ?? 0;
    const retired = result.events.some((e) => e.type === "NumberRetired");
    return { phoneNumber, status: retired ? "retired" : "draining", load };
  }

  private async poolNumber(phoneNumber: E164): Promise<PoolNumber | null> {
    return (await this.deps.store.listPool()).find((n) => n.phoneNumber === phoneNumber) ?? null;
  }
}
