import { SessionNotFoundError } from "../domain/errors.ts";
import type { DomainEvent } from "../domain/events.ts";
import { toE164 } from "../domain/phone.ts";
import { effectiveStatus, type Session } from "../domain/session.ts";
import type { Clock, MessageLogEntry, Page, PagedReads, PageRequest, SessionReader } from "../ports.ts";

export interface SessionFilter {
  /** A participant's phone number (E.164) or their product id. */
  participant?: string | undefined;
  uniqueName?: string | undefined;
  status?: Session["status"] | undefined;
}

/** One message of the log as the API shows it: participants by their product id when they have one. */
export type MessageView = Omit<MessageLogEntry, "source" | "from" | "to"> & {
  from: string | null;
  to: string | null;
};

/** The product API's list reads, a page at a time; expiry is applied at read time, as everywhere. */
export class SessionQueries {
  constructor(private readonly deps: { store: SessionReader & PagedReads; clock: Clock }) {}

  /** Sessions of a participant or of a uniqueName, newest first. At least one of the two is required. */
  async listSessions(filter: SessionFilter, page: PageRequest): Promise<Page<Session>> {
    const now = this.deps.clock.now();
    const asOfNow = (s: Session): Session => ({ ...s, status: effectiveStatus(s, now) });
    const keep = (s: Session) =>
      (!filter.status || effectiveStatus(s, now) === filter.status) &&
      (!filter.uniqueName || s.uniqueName === filter.uniqueName);
    const participant = filter.participant;
    const phone = participant ? toE164(participant) : undefined;
    const [scope, value] = participant
      ? phone
        ? (["PHONE", phone] as const)
        : (["PID", participant] as const)
      : (["NAME", filter.uniqueName ?? ""] as const);
    const result = await this.deps.store.sessionsBy(scope, value, page, keep);
    return { items: result.items.map(asOfNow), next: result.next };
  }

  async events(sessionId: string, page: PageRequest, type?: string): Promise<Page<DomainEvent>> {
    await this.mustExist(sessionId);
    return this.deps.store.sessionEventsPage(sessionId, page, type);
  }

  async numbers(page: PageRequest) {
    return this.deps.store.poolPage(page);
  }

  async messages(sessionId: string, page: PageRequest): Promise<Page<MessageView>> {
    const session = await this.mustExist(sessionId);
    const who = (number: string | null) =>
      number === null ? null : (session.participants.find((p) => p.phoneNumber === number)?.id ?? number);
    const result = await this.deps.store.messagesPage(sessionId, page);
    return {
      items: result.items.map(({ source: _source, from, to, ...rest }) => ({
        ...rest,
        from: who(from),
        to: who(to),
      })),
      next: result.next,
    };
  }

  private async mustExist(sessionId: string): Promise<Session> {
    const session = await this.deps.store.getSession(sessionId);
    if (!session) throw new SessionNotFoundError(sessionId);
    return session;
  }
}
