import { z } from "zod";
import { eventDetailSchemas, eventTypes, sessionModes, ttlModes } from "../../shared/domain/events.ts";
import { PSEUDONYM_PATTERN } from "../../shared/domain/phone.ts";
import { PROBLEM_BASE, problemTypes } from "../../shared/http/problem.ts";

/**
 * What the product API's routes answer, described with zod for the OpenAPI document (`openapi.ts`) only.
 * The handler never validates its own responses, so these live apart from the request schemas: module init
 * of the allocate function does not build them, only the first `GET /openapi.json` does.
 */

const isoTime = z.string().datetime();
const e164 = z.string().regex(/^\+\d{4,15}$/);
/** A participant's number, or their pseudonym (`anon:…`) once they were erased. */
const personNumber = z.union([e164, z.string().regex(PSEUDONYM_PATTERN)]);

export const sessionResponse = z.object({
  sessionId: z.string(),
  uniqueName: z.string().nullable(),
  status: z.enum(["open", "closed", "expired"]),
  mode: z.enum(sessionModes),
  ttlSeconds: z.number().int(),
  ttlMode: z.enum(ttlModes),
  createdAt: isoTime,
  expiresAt: isoTime,
  closedAt: isoTime.nullable(),
  /** The session's own contact-info policy, when it has one. */
  policy: z.object({ contacts: z.enum(["allow", "redact", "block"]) }).optional(),
  participants: z
    .array(
      z.object({
        phoneNumber: personNumber,
        id: z.string().nullable(),
        name: z.string().nullable(),
        proxyNumber: e164,
        /** The person opted out (pool-wide): nothing is sent to them until they opt in. */
        optedOut: z.boolean(),
        /**
         * Present and true when this participant is on their hub number (MAX_PROXIES_PER_PARTICIPANT reached):
         * proxyNumber is the hub, shared by their over-cap sessions, and the session is its thread.
         */
        hub: z.literal(true).optional(),
        /** With hub: the session's tag (e.g. `#K7`), unique among this person's open hub sessions. */
        threadTag: z.string().optional(),
      }),
    )
    .length(2),
});

export const participantResponse = z.object({
  phoneNumber: e164,
  optedOut: z.boolean(),
  openSessions: z.array(z.string()),
});

/** DELETE /participants/{e164}: what this call erased (zeros when nothing of the person was left). */
export const erasureResponse = z.object({
  erased: z.object({
    sessions: z.number().int().nonnegative(),
    events: z.number().int().nonnegative(),
    messages: z.number().int().nonnegative(),
  }),
});

export const eventResponse = z.union(
  eventTypes.map((type) =>
    z.object({
      id: z.string(),
      type: z.literal(type),
      occurredAt: isoTime,
      sessionId: z.string().nullable(),
      detailVersion: z.literal(1),
      detail: eventDetailSchemas()[type],
    }),
  ) as unknown as [z.ZodTypeAny, z.ZodTypeAny, ...z.ZodTypeAny[]],
);

export const numberResponse = z.object({
  phoneNumber: e164,
  status: z.enum(["active", "draining"]),
  callingCode: z.string(),
  load: z.number().int(),
});

export const retiredNumberResponse = z.object({
  phoneNumber: e164,
  status: z.enum(["draining", "retired"]),
  load: z.number().int(),
});

export const messageResponse = z.object({
  messageId: z.string(),
  from: z
    .string()
    .nullable()
    .describe(
      "The sender's participant id, else their number; null for a platform message and for a text refused before it was accepted (keyword, rate limit, content policy)",
    ),
  to: z
    .string()
    .nullable()
    .describe("The recipient's participant id, else their number; null for a text refused before acceptance"),
  body: z
    .string()
    .nullable()
    .describe("The text while retained; null past retention, once erased, and for a keyword (never kept)"),
  mediaCount: z.number().int(),
  status: z.string(),
  receivedAt: isoTime,
  forwardedAt: isoTime.nullable(),
});

export const queuedMessageResponse = z.object({
  messageId: z.string(),
  sessionId: z.string(),
  status: z.literal("queued"),
});

export const healthResponse = z.object({
  status: z.enum(["ok", "degraded"]),
  checks: z.record(z.enum(["ok", "error"])),
});

const nextCursor = { nextCursor: z.string().optional() };
export const sessionListResponse = z.object({ sessions: z.array(sessionResponse), ...nextCursor });
export const eventListResponse = z.object({ events: z.array(eventResponse), ...nextCursor });
export const numberListResponse = z.object({ numbers: z.array(numberResponse), ...nextCursor });
export const messageListResponse = z.object({ messages: z.array(messageResponse), ...nextCursor });

export const problemResponse = z
  .object({
    type: z.enum(problemTypes.map((t) => `${PROBLEM_BASE}${t}`) as [string, ...string[]]),
    title: z.string(),
    status: z.number().int(),
    detail: z.string().optional(),
    instance: z.string().optional(),
    errors: z.array(z.object({ pointer: z.string(), detail: z.string() })).optional(),
    participant: z.string().optional(),
    uniqueName: z.string().optional(),
    sessionId: z.string().optional(),
    /** session-not-open: the session's status (`closed` or `expired`). */
    sessionStatus: z.enum(["closed", "expired"]).optional(),
  })
  .passthrough();
