import type { Problem } from "./types.ts";

const PROBLEM_BASE = "https://maskline.dev/problems/";

/** An error answer of the API: `type` is stable, branch on it (or on the subclass). */
export class MasklineError extends Error {
  readonly type: string;
  readonly status: number;
  constructor(
    readonly problem: Problem,
    status: number,
  ) {
    super(problem.detail ?? problem.title);
    this.name = new.target.name;
    this.type = problem.type.startsWith(PROBLEM_BASE)
      ? problem.type.slice(PROBLEM_BASE.length)
      : problem.type;
    this.status = status;
  }
}

export class ValidationError extends MasklineError {
  get errors() {
    return this.problem.errors ?? [];
  }
}
export class InvalidCursorError extends MasklineError {}
export class UnauthorizedError extends MasklineError {}
export class NotFoundError extends MasklineError {}
export class PoolExhaustedError extends MasklineError {
  get participant() {
    return String(this.problem.participant ?? "");
  }
}
export class SessionNotOpenError extends MasklineError {
  /** What the session is instead of open: `closed` or `expired`. */
  get sessionStatus() {
    return String(this.problem.sessionStatus ?? "");
  }
}
export class UniqueNameTakenError extends MasklineError {
  get uniqueName() {
    return String(this.problem.uniqueName ?? "");
  }
}
export class ParticipantConflictError extends MasklineError {
  /** The open session the two already share. */
  get sessionId() {
    return this.problem.sessionId === undefined ? undefined : String(this.problem.sessionId);
  }
}
export class IdempotencyKeyReusedError extends MasklineError {}
export class UnknownRecipientError extends MasklineError {}
export class TemporarilyUnavailableError extends MasklineError {}

const byType: Record<string, new (problem: Problem, status: number) => MasklineError> = {
  "validation-error": ValidationError,
  "malformed-json": ValidationError,
  "invalid-cursor": InvalidCursorError,
  unauthorized: UnauthorizedError,
  "not-found": NotFoundError,
  "route-not-found": NotFoundError,
  "pool-exhausted": PoolExhaustedError,
  "session-not-open": SessionNotOpenError,
  "unique-name-taken": UniqueNameTakenError,
  "participant-conflict": ParticipantConflictError,
  "idempotency-key-reused": IdempotencyKeyReusedError,
  "unknown-recipient": UnknownRecipientError,
  "temporarily-unavailable": TemporarilyUnavailableError,
};

/** The typed error of a problem answer (MasklineError for a type this client does not know). */
export function errorOf(problem: Problem, status: number): MasklineError {
  const type = problem.type.startsWith(PROBLEM_BASE) ? problem.type.slice(PROBLEM_BASE.length) : "";
  const Type = byType[type] ?? MasklineError;
  return new Type(problem, status);
}
