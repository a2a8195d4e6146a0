import { guard, type UpdateChange } from "./changes.ts";
import type { Keyword } from "./consent.ts";
import type { ContactKind, ContactPolicy } from "./contacts.ts";
import { type DomainEvent, type EventContext, makeEvent } from "./events.ts";
import type { E164 } from "./phone.ts";
import { itemKeys } from "./projection.ts";
import { assertNever, type RouteDecision } from "./session.ts";

/**
 * The message aggregate: one inbound text, platform message or call, from acceptance to its outcome.
 * received → (sending: the operational send claim) → forwarded → delivered | failed; or blocked / out of
 * session at the door. Its state is the message projection; this decider is where the transitions live.
 */
export type MessageState = "received" | "sending" | "forwarded" | "failed" | "blocked" | "out-of-session";

/** Twilio refuses a message body longer than this (21617); it counts UTF-16 code units. */
export const SMS_BODY_MAX = 1600;

/**
 * Characters nothing reads: C0 controls other than tab, line feed and carriage return, DEL, C1 controls,
 * and the invisible zero-width space, word joiner, byte-order mark and soft hyphen. A NUL or a zero-width
 * space between digits or around an "@" hides a contact from the contact policy (and a NUL is "@" in
 * GSM-7), so a received text loses them before anything reads it. Right-to-left marks and zero-width
 * joiners (emoji sequences, Persian) are text and stay.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const HIDDEN_CHARACTERS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\u00AD\u200B\u2060\uFEFF]/g;
export const withoutHiddenCharacters = (text: string): string => text.replace(HIDDEN_CHARACTERS, "");

/**
 * A text Twilio took, made longer by us (a hub tag, "[removed]"), must still be one Twilio takes: beyond
 * the limit it is shortened and ends in "…", never inside a character (an emoji is two code units).
 */
export function fitSms(text: string): string {
  if (text.length <= SMS_BODY_MAX) return text;
  let cut = SMS_BODY_MAX - 1;
  if (/[\uD800-\uDBFF]/.test(text.charAt(cut - 1))) cut--;
  return `${text.slice(0, cut)}…`;
}

export interface MessageRecord {
  messageId: string;
  sessionId: string | null;
  state: MessageState;
  source: "sms" | "platform";
  from: E164 | null;
  recipient: E164 | null;
  recipientProxy: E164 | null;
  body: string;
  mediaUrls: string[];
  receivedAt: number;
  claimedAt: number | null;
  twilioSid: string | null;
}

export type MessageCommand =
  | {
      type: "ReceiveSms";
      messageId: string;
      from: E164;
      to: E164;
      route: RouteDecision;
      bodyLength: number;
      numMedia: number;
      /** The text is a keyword: never relayed; opt-out/opt-in change the person's consent. */
      keyword: Keyword | undefined;
      /** The out-of-session auto-reply will be sent (recorded in the event). */
      replying: boolean;
      /** The sender's rate-limit window is full: an in-session text is held back. */
      rateLimited: boolean;
      /** Kinds of contact information in the body, and the policy in force (the session's or the global). */
      contacts: { found: ContactKind[]; policy: ContactPolicy };
      /** A text to a hub number that named no open thread: answered with the open tags, never guessed. */
      hubPrompt?: boolean;
      /** Out of session: the sender as stored (their pseudonym; a stranger's number is never stored). */
      senderPseudonym?: string | undefined;
    }
  | {
      type: "ReceivePlatform";
      messageId: string;
      sessionId: string;
      to: E164;
      proxyNumber: E164;
      bodyLength: number;
    }
  | {
      type: "ReceiveCall";
      callSid: string;
      from: E164;
      to: E164;
      route: RouteDecision;
      /** Out of session: the caller as stored (their pseudonym). */
      senderPseudonym?: string | undefined;
      /** Out of session: the caller is a number of ours, refused without a word (recorded as not replied). */
      callerIsOurs?: boolean;
    }
  | { type: "RecordSend"; twilioSid: string }
  | { type: "RecordSendFailure"; errorCode: string | null; reason: string }
  | { type: "RecordStatus"; twilioSid: string; status: string; errorCode: string | null }
  | { type: "Block"; reason: "session-ended" | "recipient-opted-out" | "erased" };

const isOpen = (m: MessageRecord | null) => m?.state === "received" || m?.state === "sending";

/**
 * Decides the events of a message command. Receive commands take `null` for a message not yet stored (the
 * hot path does not read it: the store's guard refuses a second MessageReceived for the same id).
 */
export function decideMessage(
  command: MessageCommand,
  state: MessageRecord | null,
  ctx: EventContext,
): DomainEvent[] {
  switch (command.type) {
    case "ReceiveSms": {
      if (state) return [];
      const { route, keyword } = command;
      if (keyword) return receiveKeyword(command, keyword, ctx);
      if (route.kind === "out-of-session")
        return [
          makeEvent(ctx, "OutOfSessionMessage", route.sessionId, {
            messageId: command.messageId,
            channel: "sms",
            from: command.senderPseudonym ?? command.from,
            to: command.to,
            replied: command.replying || command.hubPrompt === true,
            ...(command.hubPrompt ? { hubPrompt: true } : {}),
          }),
        ];
      if (command.rateLimited)
        return [
          makeEvent(ctx, "MessageBlocked", route.sessionId, {
            messageId: command.messageId,
            reason: "rate-limit",
          }),
        ];
      const { found, policy } = command.contacts;
      if (found.length > 0 && policy === "block")
        return [
          makeEvent(ctx, "MessageBlocked", route.sessionId, {
            messageId: command.messageId,
            reason: "content",
            contacts: found,
          }),
        ];
      return [
        makeEvent(ctx, "MessageReceived", route.sessionId, {
          messageId: command.messageId,
          source: "sms",
          from: command.from,
          to: route.recipient,
          proxyNumber: route.recipientProxy,
          bodyLength: command.bodyLength,
          numMedia: command.numMedia,
          ...(found.length > 0 && policy === "redact" ? { removed: found } : {}),
        }),
      ];
    }
    case "ReceivePlatform":
      if (state) return [];
      return [
        makeEvent(ctx, "MessageReceived", command.sessionId, {
          messageId: command.messageId,
          source: "platform",
          from: null,
          to: command.to,
          proxyNumber: command.proxyNumber,
          bodyLength: command.bodyLength,
          numMedia: 0,
        }),
      ];
    case "ReceiveCall": {
      const { route } = command;
      if (route.kind === "out-of-session")
        return [
          makeEvent(ctx, "OutOfSessionMessage", route.sessionId, {
            messageId: command.callSid,
            channel: "voice",
            from: command.senderPseudonym ?? command.from,
            to: command.to,
            replied: command.callerIsOurs !== true,
          }),
        ];
      return [
        makeEvent(ctx, "CallBridged", route.sessionId, {
          callSid: command.callSid,
          from: command.from,
          to: route.recipient,
          callerId: route.recipientProxy,
        }),
      ];
    }
    case "RecordSend":
      if (!state || !isOpen(state) || !state.recipient || !state.recipientProxy) return [];
      return [
        makeEvent(ctx, "MessageForwarded", state.sessionId, {
          messageId: state.messageId,
          twilioSid: command.twilioSid,
          from: state.recipientProxy,
          to: state.recipient,
        }),
      ];
    case "RecordSendFailure":
      if (!state || !isOpen(state)) return [];
      return [
        makeEvent(ctx, "MessageFailed", state.sessionId, {
          messageId: state.messageId,
          twilioSid: null,
          errorCode: command.errorCode,
          reason: command.reason,
        }),
      ];
    case "RecordStatus":
      return recordStatus(command, state, ctx);
    case "Block":
      if (!state || !isOpen(state)) return [];
      return [
        makeEvent(ctx, "MessageBlocked", state.sessionId, {
          messageId: state.messageId,
          reason: command.reason,
        }),
      ];
    default:
      return assertNever(command);
  }
}

/**
 * A keyword, in or out of a session: blocked (never relayed), and an opt-out or opt-in changes the person's
 * consent pool-wide, whichever of our numbers it was sent to.
 */
function receiveKeyword(
  command: Extract<MessageCommand, { type: "ReceiveSms" }>,
  keyword: Keyword,
  ctx: EventContext,
): DomainEvent[] {
  const sessionId = command.route.kind === "in-session" ? command.route.sessionId : null;
  const events: DomainEvent[] = [
    makeEvent(ctx, "MessageBlocked", sessionId, {
      messageId: command.messageId,
      reason: "keyword",
      keyword: keyword.kind,
    }),
  ];
  // Out of session the sender may be a stranger: their consent is kept under their pseudonym only.
  const person = sessionId ? command.from : (command.senderPseudonym ?? command.from);
  const consent = { phoneNumber: person, proxyNumber: command.to, keyword: keyword.word };
  if (keyword.kind === "opt-out") events.push(makeEvent(ctx, "ParticipantOptedOut", null, consent));
  if (keyword.kind === "opt-in") events.push(makeEvent(ctx, "ParticipantOptedIn", null, consent));
  return events;
}

/**
 * A status callback: delivered / failed outcomes. A "sent" (or any status) for a message still claimed means
 * the forwarder sent but did not record it (crashed): the callback completes the forward first.
 */
function recordStatus(
  command: Extract<MessageCommand, { type: "RecordStatus" }>,
  state: MessageRecord | null,
  ctx: EventContext,
): DomainEvent[] {
  if (!state?.sessionId) return [];
  const events: DomainEvent[] = [];
  if (state.state === "sending")
    events.push(...decideMessage({ type: "RecordSend", twilioSid: command.twilioSid }, state, ctx));
  const status = command.status.toLowerCase();
  if (status === "delivered" || status === "read")
    events.push(
      makeEvent(ctx, "MessageDelivered", state.sessionId, {
        messageId: state.messageId,
        twilioSid: command.twilioSid,
        status,
      }),
    );
  else if (status === "failed" || status === "undelivered")
    events.push(
      makeEvent(ctx, "MessageFailed", state.sessionId, {
        messageId: state.messageId,
        twilioSid: command.twilioSid,
        errorCode: command.errorCode,
        reason: status,
      }),
    );
  return events;
}

/**
 * The send claim: operational state on the message item (not an event) that makes the one Twilio send
 * exclusive. A received message may be claimed; a claim older than `staleBefore` may be taken over.
 */
export function claimChange(messageId: string, now: number, staleBefore: number): UpdateChange {
  return {
    type: "update",
    key: itemKeys.message(messageId),
    set: { state: "sending", claimedAt: now },
    add: { attempts: 1 },
    guard: guard.or(
      guard.eq("state", "received"),
      guard.and(guard.eq("state", "sending"), guard.lt("claimedAt", staleBefore)),
    ),
    conflict: { kind: "message", key: messageId },
  };
}

/** Gives a claim back (the send was not made), only if it is still this claim. */
export function releaseChange(messageId: string, claimedAt: number): UpdateChange {
  return {
    type: "update",
    key: itemKeys.message(messageId),
    set: { state: "received" },
    guard: guard.and(guard.eq("state", "sending"), guard.eq("claimedAt", claimedAt)),
    conflict: { kind: "message", key: messageId },
  };
}

/** What a claim attempt found: the message state before it. */
export function claimOutcome(
  before: string | undefined,
  claimed: boolean,
): "claimed" | "stale-claim" | "busy" | "done" {
  if (claimed) return before === "sending" ? "stale-claim" : "claimed";
  return before === "sending" ? "busy" : "done";
}
