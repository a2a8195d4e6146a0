import {
  extendZodWithOpenApi,
  OpenAPIRegistry,
  OpenApiGeneratorV31,
  type ResponseConfig,
  type RouteConfig,
} from "@asteasolutions/zod-to-openapi";
import { z } from "zod";
import { problemTypes } from "../../shared/http/problem.ts";
import { routes } from "../../shared/resources.ts";
import {
  erasureResponse,
  eventListResponse,
  healthResponse,
  messageListResponse,
  numberListResponse,
  numberResponse,
  participantResponse,
  problemResponse,
  queuedMessageResponse,
  retiredNumberResponse,
  sessionListResponse,
  sessionResponse,
} from "./responses.ts";
import {
  eventsQuery,
  listSessionsQuery,
  messagesQuery,
  numberBody,
  numbersQuery,
  openSessionBody,
  platformMessageBody,
  updateSessionBody,
} from "./schemas.ts";

extendZodWithOpenApi(z);

type Responses = RouteConfig["responses"];
type HeadersObject = Exclude<NonNullable<ResponseConfig["headers"]>, z.AnyZodObject>;
type Operation = Omit<RouteConfig, "method" | "path" | "responses"> & { responses: Responses };

const json = (schema: z.ZodTypeAny, description: string) => ({
  description,
  content: { "application/json": { schema } },
});

/**
 * The OpenAPI 3.1 document of the HTTP API, generated from the zod schemas that validate the requests
 * (functions/allocate/schemas.ts). Every route of shared/resources.ts must be described here: building
 * the document fails otherwise.
 */
export function buildOpenApiDocument() {
  const registry = new OpenAPIRegistry();
  const Problem = registry.register("Problem", problemResponse);
  const Session = registry.register("Session", sessionResponse);
  const NumberEntry = registry.register("PoolNumber", numberResponse);
  registry.registerComponent("securitySchemes", "sigv4", {
    type: "apiKey",
    in: "header",
    name: "Authorization",
    description:
      "AWS: IAM (SigV4, execute-api:Invoke). Locally: `Authorization: Bearer <MASKLINE_API_TOKEN>`.",
  });
  registry.registerComponent("securitySchemes", "bearer", { type: "http", scheme: "bearer" });

  /** Headers a client acts on, by the statuses that carry them. */
  const problemHeaders: Record<number, HeadersObject> = {
    401: {
      "WWW-Authenticate": {
        description: "The scheme to authenticate with (`Bearer` locally, `AWS4-HMAC-SHA256` in AWS)",
        required: true,
        schema: { type: "string" },
      },
    },
    503: {
      "Retry-After": {
        description: "Seconds to wait before retrying",
        required: false,
        schema: { type: "string" },
      },
    },
  };
  const problem = (statuses: [number, string][]) =>
    Object.fromEntries(
      statuses.map(([status, types]) => [
        status,
        {
          description: `Problem (${types})`,
          ...(problemHeaders[status] ? { headers: problemHeaders[status] } : {}),
          content: { "application/problem+json": { schema: Problem } },
        },
      ]),
    );
  const replayed: HeadersObject = {
    "idempotent-replayed": {
      description:
        "`true` when this is the stored answer to an earlier request with the same Idempotency-Key",
      required: false,
      schema: { type: "string", enum: ["true"] },
    },
  };
  const common = problem([
    [400, "validation-error, malformed-json"],
    [401, "unauthorized"],
    [500, "internal-error"],
    [503, "temporarily-unavailable"],
  ]);
  /** Every route with a JSON body: too large, or not JSON. */
  const bodyProblems = problem([
    [413, "payload-too-large"],
    [415, "unsupported-media-type"],
  ]);
  const body = (schema: z.ZodTypeAny) => ({
    body: { required: true, content: { "application/json": { schema } } },
  });
  const sessionId = z.object({ id: z.string().regex(/^[\w-]{1,64}$/) });
  const idempotencyKey = z.object({
    "idempotency-key": z.string().min(1).max(255).optional().openapi({
      description: "Makes the request safe to retry: the same key and body answer the first result (24 h).",
    }),
  });
  const paged = "Paged: pass `nextCursor` back as `cursor`; absent on the last page. 400 invalid-cursor.";
  const twiml = {
    body: {
      required: true,
      content: { "application/x-www-form-urlencoded": { schema: z.record(z.string()) } },
    },
  };
  const twilioResponses: Responses = {
    200: { description: "TwiML", content: { "text/xml": { schema: z.string() } } },
    204: { description: "Accepted (status callbacks)" },
    ...problem([
      [400, "malformed input"],
      [403, "invalid-twilio-signature"],
      [413, "payload-too-large"],
    ]),
  };

  const operations: Record<string, Operation> = {
    "POST /sessions": {
      summary: "Open a session: each participant gets a proxy number",
      request: { headers: idempotencyKey, ...body(openSessionBody) },
      responses: {
        201: {
          ...json(
            Session,
            "Opened; also the answer to a replay of the same Idempotency-Key (header `idempotent-replayed: true`)",
          ),
          headers: {
            Location: {
              description: "The session: `/sessions/{sessionId}`",
              required: true,
              schema: { type: "string" },
            },
            ...replayed,
          },
        },
        ...common,
        ...bodyProblems,
        ...problem([
          [409, "pool-exhausted, unique-name-taken, participant-conflict"],
          [422, "idempotency-key-reused, participant-is-pool-number"],
        ]),
      },
    },
    "GET /sessions": {
      summary: "Sessions of a participant (number or id) or of a uniqueName, newest first",
      description: paged,
      request: { query: listSessionsQuery },
      responses: { 200: json(sessionListResponse, "A page of sessions"), ...common },
    },
    "GET /sessions/{id}": {
      summary: "A session, its status as of now",
      request: { params: sessionId },
      responses: { 200: json(Session, "The session"), ...common, ...problem([[404, "not-found"]]) },
    },
    "PATCH /sessions/{id}": {
      summary: "Change the ttl (counted from now) or the mode of an open session",
      request: { params: sessionId, ...body(updateSessionBody) },
      responses: {
        200: json(Session, "The updated session"),
        ...common,
        ...bodyProblems,
        ...problem([
          [404, "not-found"],
          [409, "session-not-open"],
        ]),
      },
    },
    "DELETE /sessions/{id}": {
      summary: "Close a session (idempotent)",
      request: { params: sessionId },
      responses: { 200: json(Session, "The closed session"), ...common, ...problem([[404, "not-found"]]) },
    },
    "POST /sessions/{id}/messages": {
      summary: "Send a platform message to a participant, from their proxy number",
      request: { params: sessionId, headers: idempotencyKey, ...body(platformMessageBody) },
      responses: {
        202: { ...json(queuedMessageResponse, "Queued"), headers: replayed },
        ...common,
        ...bodyProblems,
        ...problem([
          [404, "not-found"],
          [409, "session-not-open"],
          [422, "unknown-recipient, idempotency-key-reused"],
        ]),
      },
    },
    "GET /sessions/{id}/events": {
      summary: "A session's events, oldest first",
      description: paged,
      request: { params: sessionId, query: eventsQuery },
      responses: {
        200: json(eventListResponse, "A page of events"),
        ...common,
        ...problem([[404, "not-found"]]),
      },
    },
    "GET /sessions/{id}/messages": {
      summary: "A session's message log, oldest first; bodies while retained",
      description: paged,
      request: { params: sessionId, query: messagesQuery },
      responses: {
        200: json(messageListResponse, "A page of messages"),
        ...common,
        ...problem([[404, "not-found"]]),
      },
    },
    "POST /numbers": {
      summary: "Add a number to the pool",
      request: body(numberBody),
      responses: {
        201: json(NumberEntry, "Added"),
        200: json(NumberEntry, "Already in the pool"),
        ...common,
        ...bodyProblems,
        ...problem([[409, "number-is-participant"]]),
      },
    },
    "GET /numbers": {
      summary: "The pool",
      description: paged,
      request: { query: numbersQuery },
      responses: { 200: json(numberListResponse, "A page of numbers"), ...common },
    },
    "DELETE /numbers/{e164}": {
      summary: "Retire a number: at once when unused, else it drains",
      request: { params: z.object({ e164: z.string() }) },
      responses: {
        200: json(retiredNumberResponse, "Retired or draining"),
        ...common,
        ...problem([[404, "not-found"]]),
      },
    },
    "GET /participants/{e164}": {
      summary: "A person's pool-wide consent and the sessions they take part in now",
      request: { params: z.object({ e164: z.string() }) },
      responses: { 200: json(participantResponse, "The participant"), ...common },
    },
    "DELETE /participants/{e164}": {
      summary:
        "Erase a person: their sessions closed, their number and message bodies gone from every item and event",
      description:
        "Open sessions of the person are closed; every stored item and event of theirs has their number " +
        "replaced by a keyed hash (`anon:…`), and bodies of messages they sent or received are deleted. An " +
        "opt-out survives (kept under the hash). ParticipantErased is published. Calling it again answers zeros.",
      request: { params: z.object({ e164: z.string() }) },
      responses: {
        200: json(erasureResponse, "What this call erased"),
        ...common,
      },
    },
    "GET /health": {
      summary: "Liveness, without credentials",
      security: [],
      responses: {
        200: json(healthResponse, "Healthy"),
        503: {
          description:
            "Degraded (a dependency check failed), or the local stack is still starting (a problem)",
          content: {
            "application/json": { schema: healthResponse },
            "application/problem+json": { schema: Problem },
          },
        },
      },
    },
    "GET /openapi.json": {
      summary: "This document, without credentials",
      security: [],
      responses: {
        200: {
          description: "OpenAPI 3.1",
          content: { "application/json": { schema: z.object({}).passthrough() } },
        },
        ...problem([[503, "temporarily-unavailable (the local stack is still starting)"]]),
      },
    },
    "POST /twilio/sms": {
      summary: "Twilio inbound SMS webhook (signed)",
      security: [],
      request: twiml,
      responses: twilioResponses,
    },
    "POST /twilio/voice": {
      summary: "Twilio inbound call webhook (signed)",
      security: [],
      request: twiml,
      responses: twilioResponses,
    },
    "POST /twilio/status": {
      summary: "Twilio status callbacks (signed)",
      security: [],
      request: twiml,
      responses: twilioResponses,
    },
  };

  for (const route of routes) {
    const key = `${route.method} ${route.path}`;
    const operation = operations[key];
    if (!operation) throw new Error(`the OpenAPI document does not describe ${key}`);
    registry.registerPath({
      method: route.method.toLowerCase() as RouteConfig["method"],
      path: route.path,
      tags: [route.path.startsWith("/twilio") ? "twilio" : (route.path.split("/")[1] ?? "")],
      ...operation,
    });
  }

  const document = new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: "3.1.0",
    info: {
      title: "Maskline",
      version: "1.0.0",
      description:
        "Masked phone numbers for a two-sided marketplace. Errors are RFC 9457 application/problem+json; " +
        `\`type\` is one of ${problemTypes.map((t) => `\`${t}\``).join(", ")} (https://maskline.dev/problems/<name>).`,
    },
    security: [{ sigv4: [] }, { bearer: [] }],
  });
  return document;
}
