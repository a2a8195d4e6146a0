import { detectKeyword } from "../domain/consent.ts";
import { contactKinds, contactPolicy, findContacts, redactContacts } from "../domain/contacts.ts";
import type { DomainEvent } from "../domain/events.ts";
import { HUB_VOICE_REPLY, resolveHub, splitTag, threadRoute, withTag } from "../domain/hub.ts";
import { decideMessage, fitSms } from "../domain/message.ts";
import { countryOf, type E164 } from "../domain/phone.ts";
import { decide, type Route, type RouteDecision, routeInbound } from "../domain/session.ts";
import { autoReplyDue, type Marker, type RateLimit } from "../domain/traffic.ts";
import type {
  Clock,
  EventStore,
  ForwardQueue,
  HubThreads,
  MessageLog,
  Pseudonyms,
  RouteLookup,
  SessionReader,
  TrafficReads,
} from "../ports.ts";
import { alreadyDone, handleCommand } from "./command.ts";
import { ephemeralPseudonyms } from "./pseudonyms.ts";

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

/** Dial the counterpart, or end the call: with a polite word, or (`say` absent) refused without one. */
export type CallAnswer = { kind: "dial"; to: E164; callerId: E164 } | { kind: "reject"; say?: string };

export interface StatusReport {
  messageId: string | undefined;
  twilioSid: string;
  status: string;
  errorCode: string | undefined;
}

/** The hostile-traffic settings of the webhook side. */
export interface TrafficPolicy {
  /** At most one out-of-session auto-reply per sender and proxy within this many seconds. */
  autoReplyIntervalSeconds: number;
  /** Per sender across every proxy and session; undefined: off. */
  senderRateLimit: RateLimit | undefined;
  /** TwiML notice, once per rate-limit window. */
  rateLimitReply: string;
  replayWindowDays: number;
  /** The global contact-info policy; a session may override it. */
  contentPolicy: "off" | "redact-contacts" | "block-contacts";
  /** TwiML notice for each text the content policy blocks. */
  contentBlockedReply: string;
}

export interface InboundDeps {
  store: EventStore &
    RouteLookup &
    HubThreads &
    MessageLog &
    TrafficReads &
    Pick<SessionReader, "getSession">;
  queue: ForwardQueue;
  /** Strangers are stored as their pseudonym; by default a key of this process only (tests). */
  pseudonyms?: Pseudonyms;
  clock: Clock;
  newId: (prefix: string) => string;
  quarantineSeconds: number;
  /** Sent as TwiML to a sender with no open session; empty for none. */
  outOfSessionReply: string;
  outOfSessionVoice: string;
  /** The TwiML answer to HELP / INFO. */
  helpReply: string;
  traffic: TrafficPolicy;
}

/** What a text's decision reads: the route, and only when out of session, whether and when we replied. */
interface SmsState {
  route: Route | undefined;
  /** The text came to the sender's hub number (its tag was resolved into `route`, or into a prompt). */
  fromHub?: boolean;
  hubPrompt?: string;
  /** The sender is a number of the pool (a reply could loop between our own numbers). */
  senderIsOurs: boolean;
  lastAutoReply: number | undefined;
  /** Out of session only: the sender as stored. */
  pseudonym: string | undefined;
}

/**
 * A sender whose session ends within this margin of the read gets their pseudonym ready too: the decision,
 * taken a moment later, may find them out of session, and then their number must not be stored.
 */
const STRANGER_MARGIN_MS = 60_000;

/** The webhook side of the hot path: Twilio's texts, calls and status callbacks in, decisions stored. */
export class InboundService {
  constructor(private readonly deps: InboundDeps) {}

  /**
   * Stores the decision on a text once per MessageSid (a replay marker outlives the body's retention) and
   * enqueues what is to be forwarded. The session decision is taken here, once: what is accepted while the
   * session is open is forwarded. Returns the TwiML reply text, if any.
   */
  async receiveSms(sms: InboundSms): Promise<{ reply: string | null; duplicate: boolean }> {
    const { store, queue, traffic } = this.deps;
    // No session can belong to a non-phone sender, and auto-replying to one could loop.
    if (!sms.from) return { reply: null, duplicate: false };
    const from = sms.from;
    const autoReply = this.deps.outOfSessionReply || null;
    const limit = traffic.senderRateLimit;
    // Decided before routing: a keyword is never relayed, in or out of a session. A thread tag is
    // stripped first: "#K7 STOP" to a hub number is a keyword.
    const tagged = splitTag(sms.body);
    const keyword = detectKeyword(tagged.rest, sms.optOutType);
    // Learned from lost races: the window is full / its notice was given.
    let overLimit = false;
    let noticeGiven = false;
    const load = async (): Promise<SmsState> => {
      const pair = await store.getRoute(sms.to, from);
      const hub = pair?.state === "hub" ? await this.resolveHub(from, sms.to, tagged.tag) : undefined;
      const route = hub ? hub.route : pair;
      const fromHub = Boolean(hub);
      // Out of session too: the event names the sender by their pseudonym, like every OutOfSessionMessage
      // (it lies in the hub number's partition, where erasure does not look).
      if (hub?.prompt)
        return {
          route,
          fromHub,
          hubPrompt: hub.prompt,
          senderIsOurs: false,
          lastAutoReply: undefined,
          pseudonym: await this.pseudonyms().pseudonymOf(from),
        };
      if (routeInbound(route, "sms", this.deps.clock.now() + STRANGER_MARGIN_MS).kind === "in-session")
        return { route, fromHub, senderIsOurs: false, lastAutoReply: undefined, pseudonym: undefined };
      const pseudonym = await this.pseudonyms().pseudonymOf(from);
      // Only HELP is answered, and never to a number of ours.
      if (keyword) {
        const senderIsOurs = keyword.kind === "help" && (await store.ownsNumber(from));
        return { route, fromHub, senderIsOurs, lastAutoReply: undefined, pseudonym };
      }
      const [senderIsOurs, lastAutoReply] = await Promise.all([
        store.ownsNumber(from),
        store.lastAutoReply(sms.to, pseudonym),
      ]);
      return { route, fromHub, senderIsOurs, lastAutoReply, pseudonym };
    };
    let markers: Marker[] = [];
    let body = sms.body;
    let prompt: string | undefined;
    const result = await handleCommand(this.deps, {
      load,
      decide: (state, ctx) => {
        const route = routeInbound(state.route, "sms", ctx.now);
        // A hub participant's text travels without its tag. The contact-info policy works on the text
        // itself: found once, redacted into what is stored.
        const text = state.fromHub ? tagged.rest : sms.body;
        const spans = findContacts(text, countryOf(from));
        prompt = state.hubPrompt;
        const replying =
          !prompt &&
          autoReply !== null &&
          !state.senderIsOurs &&
          autoReplyDue(state.lastAutoReply, ctx.now, traffic.autoReplyIntervalSeconds);
        const events = decideMessage(
          {
            type: "ReceiveSms",
            messageId: sms.messageSid,
            from,
            to: sms.to,
            route,
            bodyLength: text.length,
            numMedia: sms.mediaUrls.length,
            keyword,
            replying,
            rateLimited: overLimit,
            senderPseudonym: state.pseudonym,
            contacts: {
              found: contactKinds(spans),
              policy: contactPolicy(
                route.kind === "in-session" ? route.contacts : undefined,
                traffic.contentPolicy,
              ),
            },
            ...(prompt ? { hubPrompt: true } : {}),
          },
          null,
          ctx,
        );
        const event = events[0];
        body =
          event?.type === "MessageReceived" && event.detail.removed
            ? fitSms(redactContacts(text, spans))
            : text;
        // The recipient is on a hub: they read it behind the session's tag.
        if (route.kind === "in-session" && route.recipientTag) body = withTag(route.recipientTag, body);
        markers = [
          { kind: "replay", messageSid: sms.messageSid, at: ctx.now, windowDays: traffic.replayWindowDays },
        ];
        if (event?.type === "OutOfSessionMessage" && event.detail.replied && !prompt)
          markers.push({
            kind: "auto-reply",
            proxy: sms.to,
            sender: event.detail.from,
            at: ctx.now,
            intervalSeconds: traffic.autoReplyIntervalSeconds,
          });
        // The rate limit comes before the content policy: a text it let through takes a place in the window
        // whether the content policy then blocks it or not (a full window turns it into a rate-limit block).
        if (
          limit &&
          (event?.type === "MessageReceived" ||
            (event?.type === "MessageBlocked" && event.detail.reason === "content"))
        )
          markers.push({ kind: "sender-count", sender: from, at: ctx.now, limit });
        if (limit && event?.type === "MessageBlocked" && event.detail.reason === "rate-limit" && !noticeGiven)
          markers.push({ kind: "sender-notice", sender: from, at: ctx.now, limit });
        return events;
      },
      options: {
        get content() {
          return new Map([[sms.messageSid, { body, mediaUrls: sms.mediaUrls }]]);
        },
        get markers() {
          return markers;
        },
      },
      settles: (conflicts) => {
        overLimit ||= conflicts.some((c) => c.kind === "sender-count" && !c.contention);
        noticeGiven ||= conflicts.some((c) => c.kind === "sender-notice" && !c.contention);
        // The same MessageSid again: a Twilio retry or a replay.
        return conflicts.some((c) => (c.kind === "replay" || c.kind === "message") && !c.contention);
      },
      // A burst from one sender contends on its rate window: retry longer than a usual command.
      attempts: 25,
    });
    const duplicate = result.outcome === "settled";
    const event = result.events[0];
    // HELP is answered on every delivery of it (Twilio retries only when it lost our answer).
    if (keyword)
      return {
        reply: keyword.kind === "help" && !result.state.senderIsOurs ? this.deps.helpReply : null,
        duplicate,
      };
    // The tagging prompt is answered on every delivery, like HELP.
    if (event?.type === "OutOfSessionMessage" && prompt) return { reply: prompt, duplicate };
    if (event?.type === "OutOfSessionMessage")
      return { reply: event.detail.replied && !duplicate ? autoReply : null, duplicate };
    if (event?.type === "MessageBlocked" && event.detail.reason === "content")
      return { reply: traffic.contentBlockedReply, duplicate };
    if (event?.type === "MessageBlocked" && event.detail.reason === "rate-limit")
      return {
        reply: markers.some((m) => m.kind === "sender-notice") && !duplicate ? traffic.rateLimitReply : null,
        duplicate,
      };
    if (event?.type !== "MessageReceived" || !event.sessionId) return { reply: null, duplicate };
    let sessionId = event.sessionId;
    if (duplicate) {
      // A retry of a webhook whose first delivery stored the message but may have died before enqueueing.
      // The job is the stored message's: re-decided now, the same MessageSid may fall into another session
      // (a replay from another sender, or the session changed), and a different job under the same
      // deduplication id is refused by the queue.
      const existing = await store.getMessage(sms.messageSid);
      if (existing?.state !== "received" || !existing.sessionId) return { reply: null, duplicate };
      sessionId = existing.sessionId;
    }
    await queue.enqueue({ messageId: sms.messageSid, sessionId });
    return { reply: null, duplicate };
  }

  async receiveCall(call: InboundCall): Promise<CallAnswer> {
    const { store } = this.deps;
    if (!call.from) return { kind: "reject", say: this.deps.outOfSessionVoice };
    const from = call.from;
    const route = await store.getRoute(call.to, from);
    // A hub participant's side is text only, both ways.
    if (route?.state === "hub" || route?.counterpartTag) return { kind: "reject", say: HUB_VOICE_REPLY };
    const inSession =
      routeInbound(route, "voice", this.deps.clock.now() + STRANGER_MARGIN_MS).kind === "in-session";
    const [senderPseudonym, callerIsOurs] = inSession
      ? [undefined, false]
      : await Promise.all([this.pseudonyms().pseudonymOf(from), store.ownsNumber(from)]);
    let decision: RouteDecision | undefined;
    const result = await handleCommand(this.deps, {
      load: async () =>
        route?.state === "held" && route.sessionId
          ? ((await store.getSession(route.sessionId)) ?? null)
          : null,
      decide: (session, ctx) => {
        decision = routeInbound(route, "voice", ctx.now);
        const events = decideMessage(
          {
            type: "ReceiveCall",
            callSid: call.callSid,
            from,
            to: call.to,
            route: decision,
            senderPseudonym,
            callerIsOurs,
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
    if (bridged?.type === "OutOfSessionMessage" && !bridged.detail.replied) return { kind: "reject" };
    // An open session for texts only: the booking is not over, the number just takes no calls.
    if (bridged?.type !== "CallBridged")
      return {
        kind: "reject",
        say:
          decision?.kind === "out-of-session" && decision.reason === "mode"
            ? HUB_VOICE_REPLY
            : this.deps.outOfSessionVoice,
      };
    // A Twilio retry of a bridged call: the extension may have lost alone; the call still needs its TwiML.
    if (result.outcome === "settled" && result.events.length > 1)
      await this.appendIgnoringDuplicate([bridged]);
    return { kind: "dial", to: bridged.detail.to as E164, callerId: bridged.detail.callerId as E164 };
  }

  /**
   * A text to the sender's hub number: the session its tag names (one more read), the only open one when
   * untagged, or the prompt listing the open tags. The whole list is read only when the tag does not settle it.
   */
  private async resolveHub(
    from: E164,
    hubNumber: E164,
    tag: string | undefined,
  ): Promise<{ route: Route | undefined; prompt?: string }> {
    const { store } = this.deps;
    const now = this.deps.clock.now();
    const one = tag ? await store.hubThread(from, tag) : undefined;
    let found = one ? resolveHub({ hubNumber, tag, threads: [one] }, now) : undefined;
    if (found?.kind !== "thread")
      found = resolveHub({ hubNumber, tag, threads: await store.hubThreadsOf(from) }, now);
    if (found.kind === "thread") return { route: threadRoute(found.thread) };
    return found.kind === "prompt" ? { route: undefined, prompt: found.reply } : { route: undefined };
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

  private pseudonyms(): Pseudonyms {
    return this.deps.pseudonyms ?? ephemeralPseudonyms();
  }

  private async appendIgnoringDuplicate(events: DomainEvent[]) {
    await handleCommand(this.deps, { load: async () => null, decide: () => events, settles: alreadyDone });
  }
}
