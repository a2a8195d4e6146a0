import type { DomainEvent } from "../domain/events.ts";
import { decideMessage } from "../domain/message.ts";
import type { E164 } from "../domain/phone.ts";
import { decide, routeInbound } from "../domain/session.ts";
import type { Clock, EventStore, ForwardQueue, MessageLog, RouteLookup, SessionReader } from "../ports.ts";
import { alreadyDone, handleCommand } from "./command.ts";

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

export interface InboundDeps {
  store: EventStore & RouteLookup & MessageLog & Pick<SessionReader, "getSession">;
  queue: ForwardQueue;
  clock: Clock;
  newId: (prefix: string) => string;
  quarantineSeconds: number;
  /** Sent as TwiML to a sender with no open session; empty for none. */
  outOfSessionReply: string;
  outOfSessionVoice: string;
}

/** The webhook side of the hot path: Twilio's texts, calls and status callbacks in, decisions stored. */
export class InboundService {
  constructor(private readonly deps: InboundDeps) {}

  /** Stores the message (once per MessageSid) and enqueues it; returns the TwiML reply text, if any. */
  async receiveSms(sms: InboundSms): Promise<{ reply: string | null; duplicate: boolean }> {
    const { store, queue } = this.deps;
    // No session can belong to a non-phone sender, and auto-replying to one could loop.
    if (!sms.from) return { reply: null, duplicate: false };
    const from = sms.from;
    const replyText = this.deps.outOfSessionReply || null;
    const result = await handleCommand(this.deps, {
      load: () => store.getRoute(sms.to, from),
      decide: (route, ctx) =>
        decideMessage(
          {
            type: "ReceiveSms",
            messageId: sms.messageSid,
            from,
            to: sms.to,
            route: routeInbound(route, "sms", ctx.now),
            bodyLength: sms.body.length,
            numMedia: sms.mediaUrls.length,
            optOutType: sms.optOutType,
            replying: replyText !== null,
          },
          null,
          ctx,
        ),
      options: { content: new Map([[sms.messageSid, { body: sms.body, mediaUrls: sms.mediaUrls }]]) },
      settles: alreadyDone,
    });
    const duplicate = result.outcome === "settled";
    const event = result.events[0];
    // Answered again on a duplicate: Twilio retries only when it lost our first answer.
    if (event?.type === "OutOfSessionMessage") return { reply: replyText, duplicate };
    if (event?.type !== "MessageReceived" || !event.sessionId) return { reply: null, duplicate };
    if (duplicate) {
      // A retry of a webhook whose first delivery stored the message but may have died before enqueueing.
      const existing = await store.getMessage(sms.messageSid);
      if (existing?.state !== "received") return { reply: null, duplicate };
    }
    await queue.enqueue({ messageId: sms.messageSid, sessionId: event.sessionId });
    return { reply: null, duplicate };
  }

  async receiveCall(call: InboundCall): Promise<CallAnswer> {
    const { store } = this.deps;
    if (!call.from) return { kind: "reject", say: this.deps.outOfSessionVoice };
    const from = call.from;
    const route = await store.getRoute(call.to, from);
    const result = await handleCommand(this.deps, {
      load: async () =>
        route?.state === "held" && route.sessionId
          ? ((await store.getSession(route.sessionId)) ?? null)
          : null,
      decide: (session, ctx) => {
        const events = decideMessage(
          {
            type: "ReceiveCall",
            callSid: call.callSid,
            from,
            to: call.to,
            route: routeInbound(route, "voice", ctx.now),
          },
          null,
          ctx,
        );
        return events[0]?.type === "CallBridged"
          ? [...events, ...decide({ type: "RecordActivity" }, session, ctx)]
          : events;
      },
      settles: alreadyDone,
    });
    const bridged = result.events[0];
    if (bridged?.type !== "CallBridged") return { kind: "reject", say: this.deps.outOfSessionVoice };
    // A Twilio retry of a bridged call: the extension may have lost alone; the call still needs its TwiML.
    if (result.outcome === "settled" && result.events.length > 1)
      await this.appendIgnoringDuplicate([bridged]);
    return { kind: "dial", to: bridged.detail.to as E164, callerId: bridged.detail.callerId as E164 };
  }

  /** Status callbacks: delivered / failed outcomes; a callback for a claim still open completes the forward. */
  async recordStatus(report: StatusReport): Promise<void> {
    const { messageId } = report;
    if (!messageId) return;
    const message = await this.deps.store.getMessage(messageId);
    const events = decideMessage(
      {
        type: "RecordStatus",
        twilioSid: report.twilioSid,
        status: report.status,
        errorCode: report.errorCode ?? null,
      },
      message ?? null,
      { now: this.deps.clock.now(), newId: () => this.deps.newId("evt") },
    );
    // One transaction each: every one of them changes the message item.
    for (const event of events) await this.appendIgnoringDuplicate([event]);
  }

  private async appendIgnoringDuplicate(events: DomainEvent[]) {
    await handleCommand(this.deps, { load: async () => null, decide: () => events, settles: alreadyDone });
  }
}
