import type { ContactPolicy } from "./contacts.ts";
import { SessionNotOpenError } from "./errors.ts";
import {
  type DomainEvent,
  type EventContext,
  makeEvent,
  type SessionMode,
  type SessionParticipant,
  type TtlMode,
} from "./events.ts";
import type { E164 } from "./phone.ts";

/** The session projection, rebuilt from its events by `evolve`. */
export interface Session {
  sessionId: string;
  status: "open" | "closed" | "expired";
  mode: SessionMode;
  ttlSeconds: number;
  ttlMode: TtlMode;
  createdAt: string;
  expiresAt: string;
  closedAt: string | null;
  participants: [SessionParticipant, SessionParticipant];
  /** The session's own contact-info policy; absent: the global default. */
  contacts?: ContactPolicy;
  /** Unique among open sessions while this one is open; absent or null when none was given. */
  uniqueName?: string | null;
}

export type SessionState = Session | null;

export type SessionCommand =
  | {
      type: "OpenSession";
      sessionId: string;
      participants: [SessionParticipant, SessionParticipant];
      mode: SessionMode;
      ttlSeconds: number;
      ttlMode: TtlMode;
      contacts?: ContactPolicy;
      uniqueName?: string | null;
    }
  | { type: "UpdateSession"; ttlSeconds?: number; mode?: SessionMode }
  | { type: "CloseSession" }
  | { type: "ExpireSession" }
  | { type: "RecordActivity" };

export interface SessionContext extends EventContext {
  quarantineSeconds: number;
}

export const initialState = (): SessionState => null;

/** Expiry is exact at read time: an open session past `expiresAt` is expired even before the recycler runs. */
export function effectiveStatus(session: Session, now: number): Session["status"] {
  return session.status === "open" && Date.parse(session.expiresAt) <= now ? "expired" : session.status;
}

export function decide(command: SessionCommand, state: SessionState, ctx: SessionContext): DomainEvent[] {
  switch (command.type) {
    case "OpenSession": {
      if (state) return [];
      return [
        makeEvent(ctx, "SessionOpened", command.sessionId, {
          participants: command.participants,
          mode: command.mode,
          ttlSeconds: command.ttlSeconds,
          ttlMode: command.ttlMode,
          expiresAt: new Date(ctx.now + command.ttlSeconds * 1000).toISOString(),
          ...(command.contacts ? { contacts: command.contacts } : {}),
          ...(command.uniqueName ? { uniqueName: command.uniqueName } : {}),
        }),
      ];
    }
    case "UpdateSession": {
      if (!state) return [];
      const status = effectiveStatus(state, ctx.now);
      if (status !== "open") throw new SessionNotOpenError(state.sessionId, status);
      const ttlSeconds = command.ttlSeconds ?? state.ttlSeconds;
      return [
        makeEvent(ctx, "SessionUpdated", state.sessionId, {
          ttlSeconds,
          mode: command.mode ?? state.mode,
          // A new ttl counts from now; a mode change alone keeps the expiry.
          expiresAt:
            command.ttlSeconds === undefined
              ? state.expiresAt
              : new Date(ctx.now + ttlSeconds * 1000).toISOString(),
          pairs: pairsOf(state),
          ...nameOf(state),
        }),
      ];
    }
    case "CloseSession": {
      if (state?.status !== "open") return [];
      const ending =
        effectiveStatus(state, ctx.now) === "expired"
          ? makeEvent(ctx, "SessionExpired", state.sessionId, { expiresAt: state.expiresAt })
          : makeEvent(ctx, "SessionClosed", state.sessionId, { reason: "api", ...nameOf(state) });
      return [ending, ...releasePairs(state, ctx)];
    }
    case "ExpireSession": {
      if (!state || effectiveStatus(state, ctx.now) !== "expired" || state.status !== "open") return [];
      return [
        makeEvent(ctx, "SessionExpired", state.sessionId, { expiresAt: state.expiresAt }),
        ...releasePairs(state, ctx),
      ];
    }
    case "RecordActivity": {
      if (state?.ttlMode !== "sliding" || effectiveStatus(state, ctx.now) !== "open") return [];
      const next = ctx.now + state.ttlSeconds * 1000;
      // Extending by less than a second is not worth a write on the hot path.
      if (next - Date.parse(state.expiresAt) < 1000) return [];
      return [
        makeEvent(ctx, "SessionExtended", state.sessionId, {
          expiresAt: new Date(next).toISOString(),
          pairs: pairsOf(state),
          ...nameOf(state),
        }),
      ];
    }
    default:
      return assertNever(command);
  }
}

/** The routing items a session's expiry and mode live on: each pair, or a hub participant's thread. */
const pairsOf = (session: Session) =>
  session.participants.map(({ phoneNumber, proxyNumber, hub, threadTag }) => ({
    phoneNumber,
    proxyNumber,
    ...(hub && threadTag ? { threadTag } : {}),
  }));

const nameOf = (session: Session) => (session.uniqueName ? { uniqueName: session.uniqueName } : {});

function releasePairs(session: Session, ctx: SessionContext): DomainEvent[] {
  const quarantineUntil = new Date(ctx.now + ctx.quarantineSeconds * 1000).toISOString();
  const [a, b] = session.participants;
  const pairs: [SessionParticipant, SessionParticipant][] = [
    [a, b],
    [b, a],
  ];
  return pairs.map(([p, other]) =>
    makeEvent(ctx, "PairReleased", session.sessionId, {
      proxyNumber: p.proxyNumber,
      participantNumber: p.phoneNumber,
      counterpartNumber: other.phoneNumber,
      quarantineUntil,
      ...(p.hub && p.threadTag ? { threadTag: p.threadTag } : {}),
      ...(p.capped ? { capped: true } : {}),
      ...(p.capSlot === undefined ? {} : { capSlot: p.capSlot }),
    }),
  );
}

export function evolve(state: SessionState, event: DomainEvent): SessionState {
  switch (event.type) {
    case "SessionOpened":
      return {
        sessionId: event.sessionId ?? "",
        status: "open",
        mode: event.detail.mode,
        ttlSeconds: event.detail.ttlSeconds,
        ttlMode: event.detail.ttlMode,
        createdAt: event.occurredAt,
        expiresAt: event.detail.expiresAt,
        closedAt: null,
        participants: event.detail.participants,
        ...(event.detail.contacts ? { contacts: event.detail.contacts } : {}),
        uniqueName: event.detail.uniqueName ?? null,
      };
    case "SessionClosed":
      return state && { ...state, status: "closed", closedAt: event.occurredAt };
    case "SessionExpired":
      return state && { ...state, status: "expired", closedAt: event.occurredAt };
    case "SessionExtended":
      return state && { ...state, expiresAt: event.detail.expiresAt };
    case "SessionUpdated":
      return (
        state && {
          ...state,
          ttlSeconds: event.detail.ttlSeconds,
          mode: event.detail.mode,
          expiresAt: event.detail.expiresAt,
        }
      );
    case "PairReleased":
    case "MessageReceived":
    case "MessageForwarded":
    case "MessageDelivered":
    case "MessageFailed":
    case "MessageBlocked":
    case "OutOfSessionMessage":
    case "CallBridged":
    case "NumberAdded":
    case "NumberDraining":
    case "NumberRetired":
    case "PoolHealthReported":
    case "PoolLow":
    case "ParticipantOptedOut":
    case "ParticipantOptedIn":
    case "ParticipantErased":
      return state;
    default:
      return assertNever(event);
  }
}

export function assertNever(value: never): never {
  throw new Error(`Unhandled variant: ${JSON.stringify(value)}`);
}

/** What the hot path reads for `(proxy number, sender)`: one item, one GetItem. */
export interface Route {
  proxyNumber: E164;
  senderNumber: E164;
  /** hub: the number is the sender's hub; the session is found by the text's tag (hub.ts). */
  state: "held" | "released" | "hub";
  sessionId: string | null;
  counterpartNumber: E164 | null;
  counterpartProxy: E164 | null;
  /** The counterpart is on a hub: what they receive carries this tag. */
  counterpartTag?: string | null;
  mode: SessionMode | null;
  expiresAt: number | null;
  contacts?: ContactPolicy | null;
}

export type RouteDecision =
  | {
      kind: "in-session";
      sessionId: string;
      recipient: E164;
      recipientProxy: E164;
      /** The recipient is on a hub: the text reaches them behind this tag. */
      recipientTag?: string;
      contacts: ContactPolicy | undefined;
    }
  | { kind: "out-of-session"; sessionId: string | null; reason: "no-session" | "expired" | "mode" };

/** Where an inbound text or call goes: the counterpart, from the counterpart's own proxy number. */
export function routeInbound(route: Route | undefined, channel: "sms" | "voice", now: number): RouteDecision {
  if (route?.state !== "held" || !route.sessionId || !route.counterpartNumber || !route.counterpartProxy)
    return { kind: "out-of-session", sessionId: null, reason: "no-session" };
  if (route.expiresAt !== null && route.expiresAt <= now)
    return { kind: "out-of-session", sessionId: route.sessionId, reason: "expired" };
  if (route.mode && route.mode !== "sms+voice" && route.mode !== channel)
    return { kind: "out-of-session", sessionId: route.sessionId, reason: "mode" };
  return {
    kind: "in-session",
    sessionId: route.sessionId,
    recipient: route.counterpartNumber,
    recipientProxy: route.counterpartProxy,
    ...(route.counterpartTag ? { recipientTag: route.counterpartTag } : {}),
    contacts: route.contacts ?? undefined,
  };
}
