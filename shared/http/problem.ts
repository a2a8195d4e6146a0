import type { APIGatewayProxyStructuredResultV2 } from "aws-lambda";
import type { ZodError } from "zod";
import {
  ConcurrentWriteError,
  IdempotencyConflictError,
  InvalidPageKeyError,
  NumberIsParticipantError,
  NumberNotFoundError,
  ParticipantConflictError,
  ParticipantIsPoolNumberError,
  ParticipantNotInSessionError,
  PoolExhaustedError,
  SessionNotFoundError,
  SessionNotOpenError,
  UniqueNameTakenError,
} from "../domain/errors.ts";

export const PROBLEM_BASE = "https://maskline.dev/problems/";

/** Every problem type the API may answer with (the OpenAPI document lists them). */
export const problemTypes = [
  "validation-error",
  "malformed-json",
  "invalid-cursor",
  "unauthorized",
  "invalid-twilio-signature",
  "invalid-twilio-request",
  "not-found",
  "route-not-found",
  "method-not-allowed",
  "pool-exhausted",
  "session-not-open",
  "unique-name-taken",
  "participant-conflict",
  "participant-is-pool-number",
  "number-is-participant",
  "payload-too-large",
  "unsupported-media-type",
  "idempotency-key-reused",
  "unknown-recipient",
  "temporarily-unavailable",
  "internal-error",
] as const;

/** An RFC 9457 problem. `type` is stable: clients branch on it, never on `title` or `detail`. */
export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly slug: string,
    readonly title: string,
    readonly detail?: string,
    readonly extensions: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(detail ?? title);
    this.name = "HttpProblem";
  }
}

export const problems = {
  validation: (error: ZodError | string) =>
    new HttpProblem(
      400,
      "validation-error",
      "The request is not valid",
      typeof error === "string" ? error : "One or more fields are invalid",
      typeof error === "string"
        ? {}
        : { errors: error.issues.map((i) => ({ pointer: `/${i.path.join("/")}`, detail: i.message })) },
    ),
  malformedJson: () => new HttpProblem(400, "malformed-json", "The body is not valid JSON"),
  unsupportedMediaType: (expected: string) =>
    new HttpProblem(415, "unsupported-media-type", "Unsupported content type", `Send ${expected}`),
  payloadTooLarge: (limit: number) =>
    new HttpProblem(413, "payload-too-large", "The body is too large", `At most ${limit} bytes`),
  /** The credential is a bearer token locally, a SigV4 signature (checked by API Gateway) in AWS. */
  unauthorized: (scheme: "bearer" | "sigv4" = "bearer") =>
    new HttpProblem(
      401,
      "unauthorized",
      "Missing or invalid credentials",
      scheme === "bearer"
        ? "Send Authorization: Bearer <token>"
        : "Sign the request with AWS Signature Version 4 for the service execute-api",
      {},
      {
        "www-authenticate":
          scheme === "bearer" ? 'Bearer realm="maskline"' : 'AWS4-HMAC-SHA256 realm="maskline"',
      },
    ),
  badSignature: () =>
    new HttpProblem(
      403,
      "invalid-twilio-signature",
      "The X-Twilio-Signature header is missing or does not match",
    ),
  invalidTwilioRequest: (field: string) =>
    new HttpProblem(
      400,
      "invalid-twilio-request",
      "The webhook is signed but not a valid Twilio request",
      `${field} is missing, malformed or not ours`,
    ),
  notFound: (detail = "No such resource") => new HttpProblem(404, "not-found", "Not found", detail),
  invalidCursor: () =>
    new HttpProblem(
      400,
      "invalid-cursor",
      "The cursor is not valid",
      "Pass back the nextCursor of a previous page of the same query, unchanged",
    ),
  routeNotFound: () => new HttpProblem(404, "route-not-found", "No such route"),
  internal: () =>
    new HttpProblem(500, "internal-error", "Internal error", "The error was logged; retry later"),
  unavailable: () =>
    new HttpProblem(
      503,
      "temporarily-unavailable",
      "Temporarily unavailable",
      "Retry later",
      {},
      { "retry-after": "1" },
    ),
};

/** Maps named domain errors to problems; anything unknown becomes a 500 that reveals nothing. */
export function toProblem(error: unknown): HttpProblem {
  if (error instanceof HttpProblem) return error;
  if (error instanceof PoolExhaustedError)
    return new HttpProblem(
      409,
      "pool-exhausted",
      "No proxy number is free for a participant",
      error.message,
      {
        participant: error.participant,
      },
    );
  if (error instanceof SessionNotFoundError) return problems.notFound(`No session ${error.sessionId}`);
  if (error instanceof NumberNotFoundError)
    return problems.notFound(`${error.phoneNumber} is not in the pool`);
  if (error instanceof SessionNotOpenError)
    return new HttpProblem(409, "session-not-open", "The session is not open", error.message, {
      sessionStatus: error.status,
    });
  if (error instanceof InvalidPageKeyError) return problems.invalidCursor();
  if (error instanceof UniqueNameTakenError)
    return new HttpProblem(
      409,
      "unique-name-taken",
      "An open session already has this uniqueName",
      error.message,
      {
        uniqueName: error.uniqueName,
      },
    );
  if (error instanceof ParticipantConflictError)
    return new HttpProblem(
      409,
      "participant-conflict",
      "The participants already share an open session",
      error.message,
      error.sessionId ? { sessionId: error.sessionId } : {},
    );
  if (error instanceof ParticipantNotInSessionError)
    return new HttpProblem(422, "unknown-recipient", "The recipient is not in this session", error.message);
  if (error instanceof ParticipantIsPoolNumberError)
    return new HttpProblem(
      422,
      "participant-is-pool-number",
      "A pool number cannot be a participant",
      "Texts between a participant and their own proxy would loop; use the person's own phone number",
    );
  if (error instanceof NumberIsParticipantError)
    return new HttpProblem(
      409,
      "number-is-participant",
      "This number is a participant in an open session",
      "Close the sessions this number takes part in before adding it to the pool",
    );
  if (error instanceof IdempotencyConflictError)
    return new HttpProblem(
      422,
      "idempotency-key-reused",
      "Idempotency-Key reused with a different request",
      error.message,
    );
  if (error instanceof ConcurrentWriteError) return problems.unavailable();
  return problems.internal();
}

export function problemResponse(problem: HttpProblem, instance?: string): APIGatewayProxyStructuredResultV2 {
  return {
    statusCode: problem.status,
    headers: { "content-type": "application/problem+json", ...problem.headers },
    body: JSON.stringify({
      type: `${PROBLEM_BASE}${problem.slug}`,
      title: problem.title,
      status: problem.status,
      ...(problem.detail ? { detail: problem.detail } : {}),
      ...(instance ? { instance } : {}),
      ...problem.extensions,
    }),
  };
}
