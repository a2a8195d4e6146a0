import { z } from "zod";
import { geoMatches } from "../../shared/domain/allocation.ts";
import { eventDetailSchemas, eventTypes, sessionModes, ttlModes } from "../../shared/domain/events.ts";
import { e164Schema, PSEUDONYM_PATTERN } from "../../shared/domain/phone.ts";
import { PROBLEM_BASE, problemTypes } from "../../shared/http/problem.ts";

/** The product API's inputs: one definition, used to validate requests and to generate the OpenAPI document. */

/** TTL bounds: at least a second (tests and demos), at most 90 days (a long stay plus its follow-up). */
export const TTL_BOUNDS = { min: 1, max: 90 * 24 * 3600, default: 7 * 24 * 3600 };

export const participantInput = z.object({
  phoneNumber: e164Schema,
  id: z.string().min(1).max(128).optional(),
  name: z.string().min(1).max(128).optional(),
});

export const openSessionBody = z
  .object({
    participants: z.array(participantInput).length(2, "exactly two participants"),
    mode: z.enum(sessionModes).default("sms+voice"),
    ttlSeconds: z.number().int().min(TTL_BOUNDS.min).max(TTL_BOUNDS.max).default(TTL_BOUNDS.default),
    ttlMode: z.enum(ttlModes).default("absolute"),
    uniqueName: z.string().min(1).max(191).optional(),
    failOnParticipantConflict: z.boolean().default(false),
    geoMatch: z.enum(geoMatches).default("area-code"),
    policy: z
      .object({
        ttlMode: z.enum(ttlModes).optional(),
        contacts: z.enum(["allow", "redact", "block"]).optional(),
      })
      .strict()
      .optional(),
  })
  .superRefine((body, ctx) => {
    const [a, b] = body.participants;
    if (a && b && a.phoneNumber === b.phoneNumber)
      ctx.addIssue({
        code: "custom",
        path: ["participants", 1, "phoneNumber"],
        message: "participants must differ",
      });
    if (a?.id && b?.id && a.id === b.id)
      ctx.addIssue({
        code: "custom",
        path: ["participants", 1, "id"],
        message: "participant ids must differ",
      });
  });

export const platformMessageBody = z.object({
  to: z.string().min(1).max(128),
  body: z.string().min(1).max(1600),
});

export const numberBody = z.object({ phoneNumber: e164Schema });

export const updateSessionBody = z
  .object({
    ttlSeconds: z.number().int().min(TTL_BOUNDS.min).max(TTL_BOUNDS.max).optional(),
    mode: z.enum(sessionModes).optional(),
  })
  .strict()
  .refine((b) => b.ttlSeconds !== undefined || b.mode !== undefined, {
    message: "give ttlSeconds or mode",
    path: ["ttlSeconds"],
  });

/** Paging: `limit` 1 to 1000 (default 100); `cursor` is the `nextCursor` of the previous page. */
export const PAGE_LIMIT = { default: 100, max: 1000 };
/** Items of one page stop before this many bytes of JSON: a response stays under 1 MB. */
export const MAX_PAGE_BYTES = 900_000;

const pageParams = {
  limit: z.coerce.number().int().min(1).max(PAGE_LIMIT.max).default(PAGE_LIMIT.default),
  cursor: z.string().min(1).max(2048).optional(),
};

/** A "+" in a query string arrives as a space (form encoding): read it back as the "+" of E.164. */
const queryText = z
  .string()
  .min(1)
  .max(191)
  .transform((v) => v.replace(/^ (?=\d)/, "+"));

export const listSessionsQuery = z
  .object({
    participant: queryText.optional(),
    uniqueName: z.string().min(1).max(191).optional(),
    status: z.enum(["open", "closed", "expired"]).optional(),
    ...pageParams,
  })
  .strict()
  .refine((q) => q.participant !== undefined || q.uniqueName !== undefined, {
    message: "give participant (E.164 number or participant id) or uniqueName",
    path: ["participant"],
  });

export const eventsQuery = z.object({ type: z.string().min(1).max(64).optional(), ...pageParams }).strict();
export const numbersQuery = z.object(pageParams).strict();
export const messagesQuery = z.object(pageParams).strict();

/* Responses: what the routes answer, described with the same zod (the OpenAPI document is built from these). */

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
      detail: eventDetailSchemas[type],
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
  from: z.string().nullable(),
  to: z.string().nullable(),
  body: z.string().nullable(),
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
    // The HTTP status; session-not-open carries the session's status here instead (as it always has).
    status: z.union([z.number().int(), z.enum(["open", "closed", "expired"])]),
    detail: z.string().optional(),
    instance: z.string().optional(),
    errors: z.array(z.object({ pointer: z.string(), detail: z.string() })).optional(),
    participant: z.string().optional(),
    uniqueName: z.string().optional(),
    sessionId: z.string().optional(),
  })
  .passthrough();
