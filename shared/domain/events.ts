import { z } from "zod";
import { E164_PATTERN, PSEUDONYM_PATTERN } from "./phone.ts";

/**
 * Domain events. Each is appended in the same DynamoDB transaction as the projections it changes and is
 * published to EventBridge as `detail-type` = type. `detailVersion` lets consumers evolve with the schema.
 */
const phone = z.string().regex(E164_PATTERN, "must be an E.164 number");
/** A person's number: E.164, or their pseudonym once erased (and always for a stranger). Proxies stay E.164. */
const person = z
  .string()
  .regex(
    new RegExp(`^(?:${E164_PATTERN.source.slice(1, -1)}|${PSEUDONYM_PATTERN.source.slice(1, -1)})$`),
    "must be an E.164 number or a pseudonym",
  );
const iso = z.string().datetime();

export const sessionModes = ["sms", "voice", "sms+voice"] as const;
export type SessionMode = (typeof sessionModes)[number];
export const ttlModes = ["absolute", "sliding"] as const;
export type TtlMode = (typeof ttlModes)[number];

export const participantSchema = z.object({
  phoneNumber: person,
  proxyNumber: phone,
  id: z.string().nullable(),
  name: z.string().nullable(),
  /** On a hub number (MAX_PROXIES_PER_PARTICIPANT reached): proxyNumber is the hub, threadTag its thread. */
  hub: z.boolean().optional(),
  threadTag: z.string().optional(),
  /** With hub: the person's previous hub, no longer active, which this session's hub replaces. */
  replacesHub: phone.optional(),
  /** This proxy counts toward the participant's cap (opened while a cap was set). */
  capped: z.boolean().optional(),
  /** With capped: which of the participant's cap slots (0 … cap − 1) it holds until its pair is released. */
  capSlot: z.number().int().nonnegative().optional(),
});
export type SessionParticipant = z.infer<typeof participantSchema>;

export const eventTypes = [
  "SessionOpened",
  "SessionClosed",
  "SessionExpired",
  "SessionExtended",
  "SessionUpdated",
  "PairReleased",
  "MessageReceived",
  "MessageForwarded",
  "MessageDelivered",
  "MessageFailed",
  "MessageBlocked",
  "OutOfSessionMessage",
  "CallBridged",
  "NumberAdded",
  "NumberDraining",
  "NumberRetired",
  "ParticipantOptedOut",
  "ParticipantOptedIn",
  "ParticipantErased",
  "PoolHealthReported",
  "PoolLow",
] as const;
export type EventType = (typeof eventTypes)[number];

/**
 * Each event type's detail schema, built on first use rather than at module init: most invocations append
 * events without reading any back (the deciders build them with their types), so most never build these.
 * `satisfies` keeps the keys exactly the event types above.
 */
const buildEventDetailSchemas = () =>
  ({
    SessionOpened: z.object({
      participants: z.tuple([participantSchema, participantSchema]),
      mode: z.enum(sessionModes),
      ttlSeconds: z.number().int().positive(),
      ttlMode: z.enum(ttlModes),
      expiresAt: iso,
      /** The session's own contact-info policy (absent: the global CONTENT_POLICY). */
      contacts: z.enum(["allow", "redact", "block"]).optional(),
      /** Unique among open sessions; absent in events written before names existed. */
      uniqueName: z.string().nullable().optional(),
    }),
    SessionClosed: z.object({
      reason: z.enum(["api", "policy"]),
      /** The name this close releases. */
      uniqueName: z.string().optional(),
    }),
    SessionExpired: z.object({ expiresAt: iso }),
    SessionExtended: z.object({
      expiresAt: iso,
      pairs: z.array(z.object({ phoneNumber: person, proxyNumber: phone, threadTag: z.string().optional() })),
      /** The name whose hold follows the new expiry. */
      uniqueName: z.string().optional(),
    }),
    /** PATCH /sessions/{id}: the new ttl (expiry counted from the update) and mode, carried to the pairs. */
    SessionUpdated: z.object({
      ttlSeconds: z.number().int().positive(),
      mode: z.enum(sessionModes),
      expiresAt: iso,
      pairs: z.array(z.object({ phoneNumber: person, proxyNumber: phone, threadTag: z.string().optional() })),
      uniqueName: z.string().optional(),
    }),
    PairReleased: z.object({
      proxyNumber: phone,
      participantNumber: person,
      counterpartNumber: person,
      quarantineUntil: iso,
      /** A hub participant's side: the thread tag released (quarantined like a pair). */
      threadTag: z.string().optional(),
      /** The proxy counted toward the participant's cap. */
      capped: z.boolean().optional(),
      /** With capped: the cap slot it gives back (absent in events written before cap slots). */
      capSlot: z.number().int().nonnegative().optional(),
    }),
    MessageReceived: z.object({
      messageId: z.string(),
      source: z.enum(["sms", "platform"]),
      from: person.nullable(),
      to: person,
      proxyNumber: phone,
      bodyLength: z.number().int().nonnegative(),
      numMedia: z.number().int().nonnegative(),
      /** Kinds of contact information the content policy removed from the body (never the contacts). */
      removed: z.array(z.enum(["phone", "email"])).optional(),
    }),
    MessageForwarded: z.object({ messageId: z.string(), twilioSid: z.string(), from: phone, to: person }),
    MessageDelivered: z.object({ messageId: z.string(), twilioSid: z.string(), status: z.string() }),
    MessageFailed: z.object({
      messageId: z.string(),
      twilioSid: z.string().nullable(),
      errorCode: z.string().nullable(),
      reason: z.string(),
    }),
    MessageBlocked: z.object({
      messageId: z.string(),
      // "opt-out" is what earlier versions recorded for a keyword; new events say "keyword".
      reason: z.enum([
        "keyword",
        "recipient-opted-out",
        "rate-limit",
        "content",
        "session-ended",
        "erased",
        "opt-out",
        "mode",
      ]),
      /** For a keyword: which kind (never the message text beyond the keyword). */
      keyword: z.enum(["opt-out", "opt-in", "help"]).optional(),
      /** For the content policy: which kinds of contact information were found. */
      contacts: z.array(z.enum(["phone", "email"])).optional(),
    }),
    OutOfSessionMessage: z.object({
      messageId: z.string(),
      channel: z.enum(["sms", "voice"]),
      /** Always the sender's pseudonym: a stranger's number is never stored (older events: the number). */
      from: person,
      to: phone,
      replied: z.boolean(),
      /** A text to a hub number that named no open thread: the reply listed the open tags instead. */
      hubPrompt: z.boolean().optional(),
    }),
    CallBridged: z.object({ callSid: z.string(), from: person, to: person, callerId: phone }),
    NumberAdded: z.object({ phoneNumber: phone, callingCode: z.string() }),
    NumberDraining: z.object({ phoneNumber: phone, openPairs: z.number().int().nonnegative() }),
    NumberRetired: z.object({ phoneNumber: phone }),
    /** A person opted out (a keyword to any of our numbers): nothing is sent to them from any number we own. */
    ParticipantOptedOut: z.object({ phoneNumber: person, proxyNumber: phone, keyword: z.string().max(16) }),
    ParticipantOptedIn: z.object({ phoneNumber: person, proxyNumber: phone, keyword: z.string().max(16) }),
    /**
     * DELETE /participants/{e164}: the person's number was rewritten to their pseudonym in every stored item
     * and event of theirs; consumers erase their copies too (by these sessions). Carries no number.
     */
    ParticipantErased: z.object({
      pseudonym: z.string().regex(PSEUDONYM_PATTERN),
      sessionIds: z.array(z.string()),
      events: z.number().int().nonnegative(),
      messages: z.number().int().nonnegative(),
    }),
    PoolHealthReported: z.object({
      activeNumbers: z.number().int().nonnegative(),
      openPairs: z.number().int().nonnegative(),
      pairsPerNumber: z.number().nonnegative(),
      busiestParticipantSessions: z.number().int().nonnegative(),
      headroom: z.number().int(),
    }),
    PoolLow: z.object({
      headroom: z.number().int(),
      threshold: z.number().int(),
      callingCode: z.string().nullable(),
    }),
  }) as const satisfies Record<EventType, z.ZodTypeAny>;

type EventDetailSchemas = ReturnType<typeof buildEventDetailSchemas>;
let detailSchemas: EventDetailSchemas | undefined;
export const eventDetailSchemas = (): EventDetailSchemas => {
  detailSchemas ??= buildEventDetailSchemas();
  return detailSchemas;
};
export type EventDetail<T extends EventType> = z.infer<EventDetailSchemas[T]>;

export const EVENT_DETAIL_VERSION = 1;

export type DomainEvent = {
  [T in EventType]: {
    id: string;
    type: T;
    occurredAt: string;
    sessionId: string | null;
    detailVersion: number;
    detail: EventDetail<T>;
  };
}[EventType];

export type EventOf<T extends EventType> = Extract<DomainEvent, { type: T }>;

export const domainEventSchema = z
  .object({
    id: z.string().min(1),
    type: z.enum(eventTypes),
    occurredAt: iso,
    sessionId: z.string().nullable(),
    detailVersion: z.literal(EVENT_DETAIL_VERSION),
    detail: z.unknown(),
  })
  .transform((event, ctx) => {
    const parsed = eventDetailSchemas()[event.type].safeParse(event.detail);
    if (!parsed.success) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        message: `bad ${event.type} detail: ${parsed.error.message}`,
      });
      return z.NEVER;
    }
    return { ...event, detail: parsed.data } as DomainEvent;
  });

/** Time and ids are inputs: the composition root injects the clock and the id source. */
export interface EventContext {
  now: number;
  newId: () => string;
}

export function makeEvent<T extends EventType>(
  ctx: EventContext,
  type: T,
  sessionId: string | null,
  detail: EventDetail<T>,
): EventOf<T> {
  return {
    id: ctx.newId(),
    type,
    occurredAt: new Date(ctx.now).toISOString(),
    sessionId,
    detailVersion: EVENT_DETAIL_VERSION,
    detail,
  } as EventOf<T>;
}
