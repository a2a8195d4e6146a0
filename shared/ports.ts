import type { Holding, PoolNumber } from "./domain/allocation.ts";
import type { Change, Item, ItemKey } from "./domain/changes.ts";
import type { Consent } from "./domain/consent.ts";
import type { DomainEvent } from "./domain/events.ts";
import type { HubThread } from "./domain/hub.ts";
import type { MessageRecord } from "./domain/message.ts";
import type { E164 } from "./domain/phone.ts";
import type { Route, Session } from "./domain/session.ts";
import type { Marker } from "./domain/traffic.ts";

/** Ports the application services need. Adapters implement them; the composition root injects them. */

export interface Clock {
  now(): number;
}

/** What every command needs to decide: the time, an id source and the quarantine policy. */
export interface DecisionDeps {
  clock: Clock;
  newId: (prefix: string) => string;
  quarantineSeconds: number;
}

/** The domain's SessionContext as of now. */
export function decisionContext(deps: DecisionDeps) {
  return { now: deps.clock.now(), newId: () => deps.newId("evt"), quarantineSeconds: deps.quarantineSeconds };
}

export interface MessageContent {
  body: string;
  mediaUrls: string[];
}

export interface AppendOptions {
  /** Written in the same transaction; a second writer with the same key loses with an idempotency conflict. */
  idempotency?: { key: string; requestHash: string; result: string };
  /** Message bodies for MessageReceived events: stored with the message (retention-limited), never in the event. */
  content?: ReadonlyMap<string, MessageContent>;
  /** Operational markers written under their own guards in the same transaction. */
  markers?: readonly Marker[];
  /** MAX_PROXIES_PER_PARTICIPANT when opening a session: the proxy count is guarded below it. */
  proxyCap?: number;
  /** The session of these events closed already: they expire with it (its retention ttl). */
  closedSession?: { sessionId: string; closedAt: string };
  /**
   * A cancellation only for contention (another transaction held an item) is reported as a ConcurrentWriteError
   * naming the contested items, instead of being sent again unchanged: the caller decides again (an open
   * then takes another number).
   */
  reportContention?: boolean;
}

/*
 * The store, split by use: each service and each fake implements only what it reads or writes. One adapter
 * (DynamoStore) implements them all over one table; the in-memory store implements what allocation needs.
 */

/** Appends events and their projection changes in ONE transaction; a failed guard throws ConcurrentWriteError. */
export interface EventStore {
  append(events: readonly DomainEvent[], options?: AppendOptions): Promise<void>;
}

export interface SessionReader {
  getSession(sessionId: string): Promise<Session | undefined>;
  sessionEvents(sessionId: string): Promise<DomainEvent[]>;
}

/** The hot-path lookup `(proxy, sender) → session, counterpart, counterpart's proxy`: one GetItem. */
export interface RouteLookup {
  getRoute(proxyNumber: E164, senderNumber: E164): Promise<Route | undefined>;
}

/** A hub participant's threads: one by tag (the hot path's second read), or all of them. */
export interface HubThreads {
  hubThread(participant: E164, tag: string): Promise<HubThread | undefined>;
  hubThreadsOf(participant: E164): Promise<HubThread[]>;
  /** The participant's hub number, if they have had one. */
  hubNumberOf(participant: E164): Promise<E164 | undefined>;
}

/** What allocation reads: the pool with its load, and what a participant holds. */
export interface PoolView {
  holdingsOf(participant: E164): Promise<Holding[]>;
  listPool(): Promise<PoolNumber[]>;
}

/**
 * Spread tickets: consecutive numbers per participant bucket, taken outside any transaction (a plain
 * counter no transaction touches, so taking one never conflicts). They spread one participant's concurrent
 * opens over different numbers; a store without them leaves the spread to a hash.
 */
export interface SpreadTickets {
  spreadTicket(participant: E164): Promise<number>;
}

export interface IdempotencyRecords {
  getIdempotency(key: string): Promise<{ requestHash: string; result: string } | undefined>;
}

export interface MessageLog {
  getMessage(messageId: string): Promise<MessageRecord | undefined>;
}

export type ClaimResult = "claimed" | "stale-claim" | "busy" | "done";

/** The one Twilio send of a message is claimed first; operational state, not an event. */
export interface SendClaims {
  /** A claim older than `staleBefore` may be taken over. */
  claimSend(messageId: string, now: number, staleBefore: number): Promise<ClaimResult>;
  releaseClaim(messageId: string, claimedAt: number): Promise<void>;
}

/** What the webhook reads only when a text is out of session: is the sender ours, when did we last reply. */
export interface TrafficReads {
  ownsNumber(phoneNumber: E164): Promise<boolean>;
  /** `sender`: the stranger's pseudonym (their number is never stored). */
  lastAutoReply(proxyNumber: E164, sender: string): Promise<number | undefined>;
}

/** A person's consent (pool-wide opt-out), read at send time. */
export interface ConsentRecords {
  /** The record under this key only (a number or a pseudonym); `consentOf` (app) reads both. */
  getConsent(phoneNumber: string): Promise<Consent | undefined>;
  /** The records under several keys in one read (strongly consistent), in the order given. */
  getConsents(keys: readonly string[]): Promise<(Consent | undefined)[]>;
}

/** A person's pseudonym (shared/domain/phone.ts): the keyed hash of their number; the key is a secret. */
export interface Pseudonyms {
  pseudonymOf(phoneNumber: E164): Promise<string>;
}

/**
 * What erasure reads and writes besides appends: a whole partition, and changes outside an append (the one
 * sanctioned rewrite of stored events). A move (delete + put) is written together; batches are not atomic.
 */
export interface ErasureStore {
  partitionItems(pk: string): Promise<(Item & ItemKey)[]>;
  itemAt(key: ItemKey): Promise<(Item & ItemKey) | undefined>;
  /** The items at these keys that exist (strongly consistent, few calls), in no particular order. */
  itemsAt(keys: readonly ItemKey[]): Promise<(Item & ItemKey)[]>;
  /** Groups of changes, each group all-or-nothing (one item's move). */
  rewrite(groups: readonly (readonly Change[])[]): Promise<void>;
}

/** Open sessions by expiry, from an index: may lag behind the session items. */
export interface SessionIndex {
  /** Open sessions whose expiresAt has passed, oldest first, at most `limit`. */
  expiredSessions(now: number, limit: number): Promise<Session[]>;
  openSessions(limit: number): Promise<Session[]>;
}

/** The forward queue: FIFO, one group per session, deduplicated by message id. */
export interface ForwardQueue {
  enqueue(job: ForwardJob): Promise<void>;
}

/** Many jobs in as few calls as the queue allows (the publisher's outbox). */
export interface ForwardQueueBatch {
  /** Returns the indexes of the jobs the queue did not take. */
  enqueueAll(jobs: readonly ForwardJob[]): Promise<number[]>;
}

export interface ForwardJob {
  messageId: string;
  sessionId: string;
}

export interface OutboundSms {
  from: E164;
  to: E164;
  body: string;
  mediaUrls: string[];
  statusCallback: string | undefined;
}

export interface SentSms {
  sid: string;
}

/** The SMS carrier (Twilio). Errors are classified so the forwarder knows what to retry. */
export interface SmsGateway {
  send(message: OutboundSms): Promise<SentSms>;
  /**
   * A message the carrier accepted from `from` to `to` since `since` with this body, to reconcile a send whose
   * outcome was lost; never one of `exclude` (messages known to be other sends).
   */
  findSent(query: {
    from: E164;
    to: E164;
    since: number;
    body: string;
    exclude?: ReadonlySet<string>;
  }): Promise<SentSms | undefined>;
}

export class SmsSendError extends Error {
  constructor(
    readonly kind: "retryable" | "permanent" | "ambiguous",
    readonly status: number | null,
    readonly errorCode: string | null,
    readonly retryAfterMs: number | null,
    options?: ErrorOptions,
  ) {
    super(
      `SMS send failed (${kind}${status ? ` HTTP ${status}` : ""}${errorCode ? ` code ${errorCode}` : ""})`,
      options,
    );
    this.name = "SmsSendError";
  }
}

/** Buys proxy numbers (Twilio AvailablePhoneNumbers + IncomingPhoneNumbers) for the pool's auto top-up. */
export interface NumberProvider {
  buy(request: { country: string }): Promise<E164 | undefined>;
}

/** Operational metrics (CloudWatch EMF in AWS). */
export interface Metrics {
  poolHealth(health: { pairsPerNumber: number; headroom: number; utilization: number }): void;
}

/** The domain-event bus (EventBridge). */
export interface DomainEventBus {
  /** What one `publish` may carry: at most `entries` events whose `sizeOf` adds up to at most `bytes`. */
  readonly limits: { entries: number; bytes: number };
  /** An event's size as the bus counts it against `limits.bytes`. */
  sizeOf(event: DomainEvent): number;
  /** Returns the indexes of the entries it did not accept. */
  publish(events: readonly DomainEvent[]): Promise<number[]>;
}

/** Every store port at once: what a full adapter (DynamoDB, in memory) implements. Services name less. */
export type StorePorts = EventStore &
  SessionReader &
  RouteLookup &
  PoolView &
  IdempotencyRecords &
  MessageLog &
  SendClaims &
  SessionIndex &
  TrafficReads &
  ConsentRecords &
  HubThreads &
  ErasureStore &
  SpreadTickets;

/** Where a page ends: the store's own key of the last item served (the HTTP edge seals it in a cursor). */
export type PageKey = Record<string, string | number>;

export interface PageRequest {
  limit: number;
  after?: PageKey | undefined;
  /** Stop before the serialized items pass this many bytes (a response stays under API limits). */
  maxBytes: number;
}

/** `next` is absent on the last page. */
export interface Page<T> {
  items: T[];
  next: PageKey | undefined;
}

export type SessionRefScope = "PHONE" | "PID" | "NAME";

/** One message of a session's log: what happened to it; the body only while retained. */
export interface MessageLogEntry {
  messageId: string;
  source: "sms" | "platform";
  from: E164 | null;
  to: E164 | null;
  body: string | null;
  mediaCount: number;
  status: string;
  receivedAt: string;
  forwardedAt: string | null;
}

/** The paged reads of the product API: lists that grow without bound are always read a page at a time. */
export interface PagedReads {
  /** Sessions of a participant (number or product id) or of a uniqueName, newest first; `keep` filters. */
  sessionsBy(
    scope: SessionRefScope,
    value: string,
    page: PageRequest,
    keep?: (session: Session) => boolean,
  ): Promise<Page<Session>>;
  /** A session's events, oldest first, optionally of one type. */
  sessionEventsPage(sessionId: string, page: PageRequest, type?: string): Promise<Page<DomainEvent>>;
  poolPage(page: PageRequest): Promise<Page<PoolNumber>>;
  /** A session's messages, oldest first. */
  messagesPage(sessionId: string, page: PageRequest): Promise<Page<MessageLogEntry>>;
}
