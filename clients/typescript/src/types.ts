/** The API's shapes, as the OpenAPI document (GET /openapi.json) describes them. */

export type SessionMode = "sms" | "voice" | "sms+voice";
export type TtlMode = "absolute" | "sliding";
export type SessionStatus = "open" | "closed" | "expired";

export interface ParticipantInput {
  phoneNumber: string;
  id?: string;
  name?: string;
}

export interface OpenSessionInput {
  participants: [ParticipantInput, ParticipantInput];
  mode?: SessionMode;
  ttlSeconds?: number;
  ttlMode?: TtlMode;
  /** Unique among open sessions: a taken name is UniqueNameTakenError. */
  uniqueName?: string;
  /** ParticipantConflictError when the two already share an open session. */
  failOnParticipantConflict?: boolean;
  geoMatch?: "area-code" | "country";
}

export interface Participant {
  phoneNumber: string;
  id: string | null;
  name: string | null;
  proxyNumber: string;
  /** On their hub number (MAX_PROXIES_PER_PARTICIPANT reached): proxyNumber is the hub, threadTag the thread. */
  hub?: true;
  threadTag?: string;
}

export interface Session {
  sessionId: string;
  uniqueName: string | null;
  status: SessionStatus;
  mode: SessionMode;
  ttlSeconds: number;
  ttlMode: TtlMode;
  createdAt: string;
  expiresAt: string;
  closedAt: string | null;
  participants: [Participant, Participant];
}

export interface UpdateSessionInput {
  /** The session then expires this many seconds from now. */
  ttlSeconds?: number;
  mode?: SessionMode;
}

export interface SessionEvent {
  id: string;
  type: string;
  occurredAt: string;
  sessionId: string | null;
  detailVersion: number;
  detail: Record<string, unknown>;
}

export interface PoolNumber {
  phoneNumber: string;
  status: "active" | "draining";
  callingCode: string;
  load: number;
}

export interface RetiredNumber {
  phoneNumber: string;
  status: "draining" | "retired";
  load: number;
}

export interface MessageEntry {
  messageId: string;
  /** A participant id when known, else a number; null for platform messages. */
  from: string | null;
  to: string | null;
  /** Null once past retention. */
  body: string | null;
  mediaCount: number;
  status: string;
  receivedAt: string;
  forwardedAt: string | null;
}

export interface QueuedMessage {
  messageId: string;
  sessionId: string;
  status: "queued";
}

export interface Health {
  status: "ok" | "degraded";
  checks: Record<string, "ok" | "error">;
}

export interface PageOptions {
  /** 1 to 1000; the API's default is 100. */
  limit?: number;
  cursor?: string;
}

export interface SessionFilter {
  /** An E.164 number or a participant id. */
  participant?: string;
  uniqueName?: string;
  status?: SessionStatus;
}

/** RFC 9457 problem details, as the API sends them. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  errors?: { pointer: string; detail: string }[];
  [extension: string]: unknown;
}
