import type { Holding, PoolNumber } from "./domain/allocation.ts";
import type { Consent } from "./domain/consent.ts";
import type { DomainEvent } from "./domain/events.ts";
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

/** What allocation reads: the pool with its load, and what a participant holds. */
export interface PoolView {
  holdingsOf(participant: E164): Promise<Holding[]>;
  listPool(): Promise<PoolNumber[]>;
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
  lastAutoReply(proxyNumber: E164, senderNumber: E164): Promise<number | undefined>;
}

/** A person's consent (pool-wide opt-out), read at send time. */
export interface ConsentRecords {
  getConsent(phoneNumber: E164): Promise<Consent | undefined>;
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
  /** Messages the carrier accepted from `from` to `to` since `since`, to reconcile a send whose outcome was lost. */
  findSent(query: { from: E164; to: E164; since: number; body: string }): Promise<SentSms | undefined>;
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

/** The domain-event bus (EventBridge). Returns the indexes of the entries it did not accept. */
export interface DomainEventBus {
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
  ConsentRecords;
