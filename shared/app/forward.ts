import type { DomainEvent } from "../domain/events.ts";
import { decideMessage, type MessageCommand, type MessageRecord } from "../domain/message.ts";
import type { E164 } from "../domain/phone.ts";
import { isPseudonym } from "../domain/phone.ts";
import { decide, type Session } from "../domain/session.ts";
import {
  type AppendOptions,
  type Clock,
  type ConsentRecords,
  decisionContext,
  type EventStore,
  type ForwardJob,
  type MessageLog,
  type Pseudonyms,
  type SendClaims,
  type SessionReader,
  type SmsGateway,
  SmsSendError,
} from "../ports.ts";
import { alreadyDone, handleCommand } from "./command.ts";
import { consentOf, ephemeralPseudonyms } from "./pseudonyms.ts";

export interface ForwardDeps {
  store: EventStore &
    MessageLog &
    SendClaims &
    ConsentRecords &
    Pick<SessionReader, "getSession" | "sessionEvents">;
  gateway: SmsGateway;
  /** To read an opt-out kept under a pseudonym; by default a key of this process only (tests). */
  pseudonyms?: Pseudonyms;
  clock: Clock;
  newId: (prefix: string) => string;
  quarantineSeconds: number;
  /** Where Twilio posts status callbacks; undefined to ask for none. */
  statusCallbackUrl: (job: ForwardJob) => string | undefined;
  /** A claim older than this is taken over after reconciling with Twilio. */
  claimStaleMs: number;
  /** In-process retries of a retryable Twilio answer before the record goes back to the queue. */
  maxInlineRetries: number;
  sleep?: (ms: number) => Promise<void>;
}

/** A record that must go back to the queue and be retried (in order, for its session). */
export class RetryLaterError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RetryLaterError";
  }
}

export type ForwardOutcome = "forwarded" | "reconciled" | "already-done" | "blocked" | "failed" | "missing";

/** The queue side of the hot path: exactly one Twilio send per stored message, outcomes recorded as events. */
export class ForwardService {
  constructor(private readonly deps: ForwardDeps) {}

  async forward(job: ForwardJob): Promise<ForwardOutcome> {
    const { store, gateway } = this.deps;
    // The job names the session, so both reads go out together.
    const [message, session] = await Promise.all([
      store.getMessage(job.messageId),
      store.getSession(job.sessionId),
    ]);
    if (!message) return "missing";
    // Erasure and consent are checked at send time: a person erased or opted out since acceptance gets
    // nothing. An erased recipient's number is a pseudonym now, which nothing can be sent to; a text from
    // an erased sender lost its body and media with the erasure: nothing of it is left to send.
    if (isPseudonym(message.recipient) || isPseudonym(message.from)) {
      await this.record(message, { type: "Block", reason: "erased" }, session);
      return "blocked";
    }
    const pseudonyms = this.deps.pseudonyms ?? ephemeralPseudonyms();
    if (message.recipient && (await consentOf(store, pseudonyms, message.recipient as E164))?.optedOut) {
      await this.record(message, { type: "Block", reason: "recipient-opted-out" }, session);
      return "blocked";
    }
    if (message.state !== "received" && message.state !== "sending") return "already-done";
    const { recipient, recipientProxy } = message;
    const now = this.deps.clock.now();
    // The session was decided on at acceptance: a text accepted while it was open is sent even if the
    // session has ended since (a webhook racing a close or the expiry instant is not silently dropped).
    if (!recipient || !recipientProxy) {
      await this.record(message, { type: "Block", reason: "session-ended" }, session);
      return "blocked";
    }
    const claim = await store.claimSend(job.messageId, now, now - this.deps.claimStaleMs);
    if (claim === "done") return "already-done";
    if (claim === "busy") throw new RetryLaterError("another delivery of this message holds the send claim");
    const claimedAt = now;
    if (claim === "stale-claim") {
      // A previous attempt claimed and may have sent before dying: ask Twilio before sending again.
      // A carrier that cannot list its messages leaves us blind: sending again is preferred to losing it.
      const found = await this.sentSids(job.sessionId, message.messageId)
        .then((exclude) =>
          gateway.findSent({
            from: recipientProxy,
            to: recipient,
            // From the lost claim on (2 s of clock skew, and Twilio's dates are whole seconds).
            since: (message.claimedAt ?? message.receivedAt) - 2_000,
            body: message.body,
            exclude,
          }),
        )
        .catch(() => undefined);
      if (found) {
        await this.complete(message, found.sid, session);
        return "reconciled";
      }
    }
    const sleep = this.deps.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms)));
    for (let attempt = 0; ; attempt++) {
      try {
        const sent = await gateway.send({
          from: recipientProxy,
          to: recipient,
          body: message.body,
          mediaUrls: message.mediaUrls,
          statusCallback: this.deps.statusCallbackUrl(job),
        });
        await this.complete(message, sent.sid, session);
        return "forwarded";
      } catch (error) {
        if (!(error instanceof SmsSendError)) throw error;
        if (error.kind === "permanent") {
          await this.record(
            message,
            {
              type: "RecordSendFailure",
              errorCode: error.errorCode,
              reason: `rejected by Twilio (HTTP ${error.status ?? "?"})`,
            },
            session,
          );
          return "failed";
        }
        if (error.kind === "ambiguous") {
          // Twilio may have accepted it: keep the claim so the redelivery reconciles instead of resending.
          throw new RetryLaterError("send outcome unknown; will reconcile", { cause: error });
        }
        if (attempt >= this.deps.maxInlineRetries) {
          await store.releaseClaim(job.messageId, claimedAt);
          throw new RetryLaterError("Twilio kept answering with a retryable error", { cause: error });
        }
        const backoff = Math.min(2000, error.retryAfterMs ?? 100 * 2 ** attempt + Math.random() * 100);
        await sleep(backoff);
      }
    }
  }

  /**
   * The Twilio messages the session's other messages went out as. The session's texts go out one after
   * another (one FIFO group), so the one before this one may have the same body ("ok", a photo without
   * text) and have gone out within the reconciliation's window: it must not be taken for this one.
   */
  private async sentSids(sessionId: string, messageId: string): Promise<ReadonlySet<string>> {
    const sids = new Set<string>();
    for (const event of await this.deps.store.sessionEvents(sessionId))
      if (
        (event.type === "MessageForwarded" ||
          event.type === "MessageDelivered" ||
          event.type === "MessageFailed") &&
        event.detail.messageId !== messageId &&
        event.detail.twilioSid
      )
        sids.add(event.detail.twilioSid);
    return sids;
  }

  /** Records the send; the session's sliding expiry moves with it (alone if that part lost a race). */
  private async complete(
    message: MessageRecord,
    twilioSid: string,
    session: Session | undefined,
  ): Promise<void> {
    const claimed: MessageRecord = { ...message, state: "sending" };
    const result = await handleCommand(this.deps, {
      load: async () => session ?? null,
      decide: (state, ctx) => [
        ...decideMessage({ type: "RecordSend", twilioSid }, claimed, ctx),
        ...decide({ type: "RecordActivity" }, state, ctx),
      ],
      settles: alreadyDone,
      options: retainedWith(session),
    });
    const forwarded = result.events[0];
    if (result.outcome === "settled" && forwarded && result.events.length > 1)
      await this.appendEvents([forwarded], session);
  }

  private async record(message: MessageRecord, command: MessageCommand, session: Session | undefined) {
    await this.appendEvents(decideMessage(command, message, decisionContext(this.deps)), session);
  }

  private async appendEvents(events: DomainEvent[], session: Session | undefined) {
    await handleCommand(this.deps, {
      load: async () => null,
      decide: () => events,
      settles: alreadyDone,
      options: retainedWith(session),
    });
  }
}

/**
 * A text accepted while its session was open goes out even after the close: its events then expire with the
 * session, as the stamping after the close did for the session's earlier events.
 */
const retainedWith = (session: Session | undefined): AppendOptions =>
  session?.closedAt ? { closedSession: { sessionId: session.sessionId, closedAt: session.closedAt } } : {};
