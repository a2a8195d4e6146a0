/** Named domain errors. They are mapped to problem+json only at the HTTP edge. */
export class DomainError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class PoolExhaustedError extends DomainError {
  constructor(readonly participant: string) {
    super("No proxy number is free for this participant");
  }
}

export class SessionNotFoundError extends DomainError {
  constructor(readonly sessionId: string) {
    super("No session with this id");
  }
}

export class SessionNotOpenError extends DomainError {
  constructor(
    readonly sessionId: string,
    readonly status: string,
  ) {
    super(`The session is ${status}`);
  }
}

export class ParticipantNotInSessionError extends DomainError {
  constructor(readonly sessionId: string) {
    super("The recipient is not a participant of this session");
  }
}

export class NumberNotFoundError extends DomainError {
  constructor(readonly phoneNumber: string) {
    super("This number is not in the pool");
  }
}

export class ParticipantIsPoolNumberError extends DomainError {
  constructor(readonly phoneNumber: string) {
    super("A number of the pool cannot be a participant");
  }
}

export class NumberIsParticipantError extends DomainError {
  constructor(readonly phoneNumber: string) {
    super("This number is a participant in an open session");
  }
}

export class IdempotencyConflictError extends DomainError {
  constructor(readonly key: string) {
    super("This Idempotency-Key was already used with a different request");
  }
}

export class UniqueNameTakenError extends DomainError {
  constructor(readonly uniqueName: string) {
    super("An open session already has this uniqueName");
  }
}

export class ParticipantConflictError extends DomainError {
  constructor(readonly sessionId: string | null) {
    super("These two participants already share an open session");
  }
}

/** What a failed guard says: which kind of item, which one. A typed value the command can act on. */
export type ConflictKind =
  | "event"
  | "session"
  | "pair"
  | "number"
  | "message"
  | "call"
  | "idempotency"
  | "consent"
  | "replay"
  | "auto-reply"
  | "sender-count"
  | "sender-notice"
  | "unique-name"
  | "thread-tag"
  | "proxy-cap"
  | "erasure";
export interface Conflict {
  kind: ConflictKind;
  key: string;
  /** True when the store cancelled for a concurrent write rather than a failed guard. */
  contention?: boolean;
}

/** A conditional write lost a race; the command re-reads and retries. */
export class ConcurrentWriteError extends DomainError {
  constructor(
    readonly conflicts: readonly Conflict[],
    options?: ErrorOptions,
  ) {
    super("A concurrent write changed the state this command read", options);
  }
}

/** A page key that does not belong to the query it was given to. */
export class InvalidPageKeyError extends DomainError {
  constructor() {
    super("The page key does not belong to this query");
  }
}
