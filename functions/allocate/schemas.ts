import { z } from "zod";
import { geoMatches } from "../../shared/domain/allocation.ts";
import { eventTypes, sessionModes, ttlModes } from "../../shared/domain/events.ts";
import { SMS_BODY_MAX } from "../../shared/domain/message.ts";
import { e164Schema } from "../../shared/domain/phone.ts";

/**
 * The product API's inputs: one definition, used to validate requests and to generate the OpenAPI document.
 * What the routes answer is described in `responses.ts`, for the document only. Every body and query is
 * strict: an unknown field is a 400 naming it, never ignored (a misspelt `ttlSeconds` or
 * `failOnParticipantConflict` would otherwise fall back to its default without a word).
 */

/** TTL bounds: at least a second (tests and demos), at most 90 days (a long stay plus its follow-up). */
export const TTL_BOUNDS = { min: 1, max: 90 * 24 * 3600, default: 7 * 24 * 3600 };

export const participantInput = z
  .object({
    phoneNumber: e164Schema,
    id: z.string().min(1).max(128).optional(),
    name: z.string().min(1).max(128).optional(),
  })
  .strict();

export const openSessionBody = z
  .object({
    // min and max rather than length: the OpenAPI document then says minItems and maxItems 2.
    participants: z
      .array(participantInput)
      .min(2, "exactly two participants")
      .max(2, "exactly two participants"),
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
  .strict()
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

export const platformMessageBody = z
  .object({
    to: z.string().min(1).max(128),
    body: z.string().min(1).max(SMS_BODY_MAX),
  })
  .strict();

export const numberBody = z.object({ phoneNumber: e164Schema }).strict();

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

/** `type`: one of the event types (a misspelt one is a 400, not an empty history). */
export const eventsQuery = z.object({ type: z.enum(eventTypes).optional(), ...pageParams }).strict();
export const numbersQuery = z.object(pageParams).strict();
export const messagesQuery = z.object(pageParams).strict();
