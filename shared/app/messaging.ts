import { ConcurrentWriteError } from "../domain/errors.ts";
import { type DomainEvent, makeEvent } from "../domain/events.ts";
import type { E164 } from "../domain/phone.ts";
import { decide, effectiveStatus, routeInbound } from "../domain/session.ts";
import {
  type Clock,
  decisionContext,
  type ForwardJob,
  type ForwardQueue,
  type MasklineStore,
  type SmsGateway,
  SmsSendError,
} from "../ports.ts";

export interface InboundSms {
  messageSid: string;
  /** Undefined when the sender is not a phone number (short code, alphanumeric id). */
  from: E164 | undefined;
  to: E164;
  body: string;
  mediaUrls: string[];
  optOutType: string | undefined;
}

export interface InboundCall {
  callSid: string;
  /** Undefined for withheld ("anonymous") callers. */
  from: E164 | undefined;
  to: E164;
}

export type CallAnswer = { kind: "dial"; to: E164; callerId: E164 } | { kind: "reject"; say: string };

export interface StatusReport {
  messageId: string | undefined;
  twilioSid: string;
  status: string;
  errorCode: string | undefined;
}

export interface MessagingDeps {
  store: MasklineStore;
  queue: ForwardQueue;
  clock: Clock;
  newId: (prefix: string) => string;
  quarantineSeconds: number;
  /** Sent as TwiML to a sender with no open session; empty for none. */
  outOfSessionReply: string;
  outOfSessionVoice: string;
}

export interface ForwardDeps extends MessagingDeps {
  gateway: SmsGateway;
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

const OPT_OUT_TYPES = new Set(["STOP", "START", "HELP"]);

/** The hot path: Twilio webhooks in, one Twilio send out per inbound message. */
export class MessagingService {
  constructor(protected readonly deps: MessagingDeps) {}

  protected ctx() {
    return decisionContext(this.deps);
  }

  /** Stores the message (once per MessageSid) and enqueues it; returns the TwiML reply text, if any. */
  async receiveSms(sms: InboundSms): Promise<{ reply: string | null; duplicate: boolean }> {
    const { store, queue } = this.deps;
    const ctx = this.ctx();
    // No session can belong to a non-phone sender, and auto-replying to one could loop.
    if (!sms.from) return { reply: null, duplicate: false };
    const from = sms.from;
    const route = routeInbound(await store.getRoute(sms.to, from), "sms", ctx.now);
    if (route.kind === "out-of-session") {
      const reply = this.deps.outOfSessionReply || null;
      const event = makeEvent(ctx, "OutOfSessionMessage", route.sessionId, {
        messageId: sms.messageSid,
        channel: "sms",
        from: sms.from,
        to: sms.to,
        replied: reply !== null,
      });
      // Answered again on a duplicate: Twilio retries only when it lost our first answer.
      const duplicate = !(await this.appendOnce([event]));
      return { reply, duplicate };
    }
    if (sms.optOutType && OPT_OUT_TYPES.has(sms.optOutType.toUpperCase())) {
      // Twilio answers STOP/START/HELP itself; relaying the keyword to the counterpart would leak intent.
      const event = makeEvent(ctx, "MessageBlocked", route.sessionId, {
        messageId: sms.messageSid,
        reason: "opt-out",
      });
      return { reply: null, duplicate: !(await this.appendOnce([event])) };
    }
    const event = makeEvent(ctx, "MessageReceived", route.sessionId, {
      messageId: sms.messageSid,
      source: "sms",
      from: sms.from,
      to: route.recipient,
      proxyNumber: route.recipientProxy,
      bodyLength: sms.body.length,
      numMedia: sms.mediaUrls.length,
    });
    const stored = await this.appendOnce([event], {
      content: new Map([[sms.messageSid, { body: sms.body, mediaUrls: sms.mediaUrls }]]),
    });
    if (!stored) {
      // A retry of a webhook whose first delivery stored the message but may have died before enqueueing.
      const existing = await store.getMessage(sms.messageSid);
      if (existing?.state !== "received") return { reply: null, duplicate: true };
    }
    await queue.enqueue({ messageId: sms.messageSid, sessionId: route.sessionId });
    return { reply: null, duplicate: !stored };
  }

  async receiveCall(call: InboundCall): Promise<CallAnswer> {
    const ctx = this.ctx();
    if (!call.from) return { kind: "reject", say: this.deps.outOfSessionVoice };
    const from = call.from;
    const route = routeInbound(await this.deps.store.getRoute(call.to, from), "voice", ctx.now);
    if (route.kind === "out-of-session") {
      await this.appendOnce([
        makeEvent(ctx, "OutOfSessionMessage", route.sessionId, {
          messageId: call.callSid,
          channel: "voice",
          from: call.from,
          to: call.to,
          replied: true,
        }),
      ]);
      return { kind: "reject", say: this.deps.outOfSessionVoice };
    }
    const events: DomainEvent[] = [
      makeEvent(ctx, "CallBridged", route.sessionId, {
        callSid: call.callSid,
        from: call.from,
        to: route.recipient,
        callerId: route.recipientProxy,
      }),
    ];
    const session = await this.deps.store.getSession(route.sessionId);
    events.push(...decide({ type: "RecordActivity" }, session ?? null, ctx));
    if (!(await this.appendOnce(events)) && events.length > 1) await this.appendOnce(events.slice(0, 1));
    // Answered the same way on a Twilio retry: the call still needs its TwiML.
    return { kind: "dial", to: route.recipient, callerId: route.recipientProxy };
  }

  /** Status callbacks: delivered / failed outcomes; a "sent" for a claim still open completes the forward. */
  async recordStatus(report: StatusReport): Promise<void> {
    if (!report.messageId) return;
    const message = await this.deps.store.getMessage(report.messageId);
    if (!message?.sessionId) return;
    const ctx = this.ctx();
    const status = report.status.toLowerCase();
    let event: DomainEvent | undefined;
    if (status === "delivered" || status === "read") {
      event = makeEvent(ctx, "MessageDelivered", message.sessionId, {
        messageId: message.messageId,
        twilioSid: report.twilioSid,
        status,
      });
    } else if (status === "failed" || status === "undelivered") {
      event = makeEvent(ctx, "MessageFailed", message.sessionId, {
        messageId: message.messageId,
        twilioSid: report.twilioSid,
        errorCode: report.errorCode ?? null,
        reason: status,
      });
    }
    if (message.state === "sending" && message.recipient && message.recipientProxy) {
      // The forwarder sent but did not record it (crashed): Twilio's callback closes the gap. Its own
      // transaction, as both events change the message item.
      await this.appendOnce([
        makeEvent(ctx, "MessageForwarded", message.sessionId, {
          messageId: message.messageId,
          twilioSid: report.twilioSid,
          from: message.recipientProxy,
          to: message.recipient,
        }),
      ]);
    }
    if (event) await this.appendOnce([event]);
  }

  /** Appends; false when a guard says it was already done (a duplicate webhook). */
  protected async appendOnce(events: DomainEvent[], options?: Parameters<MasklineStore["append"]>[1]) {
    try {
      await this.deps.store.append(events, options);
      return true;
    } catch (error) {
      if (error instanceof ConcurrentWriteError && !error.conflicts.some((c) => c.startsWith("contention")))
        return false;
      throw error;
    }
  }
}

export type ForwardOutcome = "forwarded" | "reconciled" | "already-done" | "blocked" | "failed" | "missing";

/** The forward side: exactly one Twilio send per stored message, outcomes recorded as events. */
export class ForwardService extends MessagingService {
  constructor(private readonly fdeps: ForwardDeps) {
    super(fdeps);
  }

  async forward(job: ForwardJob): Promise<ForwardOutcome> {
    const { store, gateway } = this.fdeps;
    // The job names the session, so both reads go out together.
    const [message, session] = await Promise.all([
      store.getMessage(job.messageId),
      store.getSession(job.sessionId),
    ]);
    if (!message) return "missing";
    if (message.state !== "received" && message.state !== "sending") return "already-done";
    const { recipient, recipientProxy } = message;
    let ctx = this.ctx();
    if (!session || effectiveStatus(session, ctx.now) !== "open" || !recipient || !recipientProxy) {
      await this.appendOnce([
        makeEvent(ctx, "MessageBlocked", job.sessionId, {
          messageId: job.messageId,
          reason: "session-ended",
        }),
      ]);
      return "blocked";
    }
    const claim = await store.claimSend(job.messageId, ctx.now, ctx.now - this.fdeps.claimStaleMs);
    if (claim === "done") return "already-done";
    if (claim === "busy") throw new RetryLaterError("another delivery of this message holds the send claim");
    const claimedAt = ctx.now;
    if (claim === "stale-claim") {
      // A previous attempt claimed and may have sent before dying: ask Twilio before sending again.
      // A carrier that cannot list its messages leaves us blind: sending again is preferred to losing it.
      const found = await gateway
        .findSent({
          from: recipientProxy,
          to: recipient,
          // From the lost claim on (2 s of clock skew): earlier sends of the same text are not this one.
          since: (message.claimedAt ?? message.receivedAt) - 2_000,
          body: message.body,
        })
        .catch(() => undefined);
      if (found) {
        await this.complete(job, found.sid, recipient, recipientProxy, session);
        return "reconciled";
      }
    }
    const sleep = this.fdeps.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms)));
    for (let attempt = 0; ; attempt++) {
      try {
        const sent = await gateway.send({
          from: recipientProxy,
          to: recipient,
          body: message.body,
          mediaUrls: message.mediaUrls,
          statusCallback: this.fdeps.statusCallbackUrl(job),
        });
        await this.complete(job, sent.sid, recipient, recipientProxy, session);
        return "forwarded";
      } catch (error) {
        if (!(error instanceof SmsSendError)) throw error;
        ctx = this.ctx();
        if (error.kind === "permanent") {
          await this.appendOnce([
            makeEvent(ctx, "MessageFailed", job.sessionId, {
              messageId: job.messageId,
              twilioSid: null,
              errorCode: error.errorCode,
              reason: `rejected by Twilio (HTTP ${error.status ?? "?"})`,
            }),
          ]);
          return "failed";
        }
        if (error.kind === "ambiguous") {
          // Twilio may have accepted it: keep the claim so the redelivery reconciles instead of resending.
          throw new RetryLaterError("send outcome unknown; will reconcile", { cause: error });
        }
        if (attempt >= this.fdeps.maxInlineRetries) {
          await store.releaseClaim(job.messageId, claimedAt);
          throw new RetryLaterError("Twilio kept answering with a retryable error", { cause: error });
        }
        const backoff = Math.min(2000, error.retryAfterMs ?? 100 * 2 ** attempt + Math.random() * 100);
        await sleep(backoff);
      }
    }
  }

  private async complete(
    job: ForwardJob,
    twilioSid: string,
    to: E164,
    from: E164,
    session: Parameters<typeof decide>[1],
  ): Promise<void> {
    const ctx = this.ctx();
    const events: DomainEvent[] = [
      makeEvent(ctx, "MessageForwarded", job.sessionId, { messageId: job.messageId, twilioSid, from, to }),
      ...decide({ type: "RecordActivity" }, session, ctx),
    ];
    if (!(await this.appendOnce(events)) && events.length > 1) await this.appendOnce(events.slice(0, 1));
  }
}
