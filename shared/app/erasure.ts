import type { Change, Item, ItemKey } from "../domain/changes.ts";
import { eraseItem } from "../domain/erasure.ts";
import { ConcurrentWriteError } from "../domain/errors.ts";
import { makeEvent } from "../domain/events.ts";
import { itemKeys } from "../domain/keys.ts";
import type { E164 } from "../domain/phone.ts";
import { lookupKeys } from "../domain/projection-lookups.ts";
import { decide, type Session } from "../domain/session.ts";
import { trafficKeys } from "../domain/traffic.ts";
import {
  type Clock,
  decisionContext,
  type ErasureStore,
  type EventStore,
  type HubThreads,
  type PoolView,
  type Pseudonyms,
  type SessionReader,
} from "../ports.ts";
import { handleCommand } from "./command.ts";
import { retainClosedSession } from "./retention.ts";

export interface ErasureDeps {
  store: EventStore & SessionReader & PoolView & ErasureStore & Pick<HubThreads, "hubThreadsOf">;
  pseudonyms: Pseudonyms;
  clock: Clock;
  newId: (prefix: string) => string;
  quarantineSeconds: number;
}

export interface ErasureCounts {
  sessions: number;
  events: number;
  messages: number;
}

/**
 * Erasure of a person (DELETE /participants/{e164}): their open sessions are closed (ordinary events), then
 * every stored item and event of theirs is rewritten in place, their number replaced by their pseudonym
 * (the one rule: shared/domain/erasure.ts), and the bodies of messages they sent or received deleted; last,
 * ParticipantErased. What is read is scoped by the person's own keys, never a table scan: their pairs, their
 * session references, their consent, proxy count and rate windows, their hub number and threads, and each of their sessions' partition with its
 * messages and the counterpart's pairs. A second erasure finds nothing and answers zeros.
 */
export class ErasureService {
  constructor(private readonly deps: ErasureDeps) {}

  async erase(phoneNumber: E164): Promise<ErasureCounts> {
    const { store } = this.deps;
    const pseudonym = await this.deps.pseudonyms.pseudonymOf(phoneNumber);
    // Their sessions on a proxy of their own, and those on their hub number (a thread each).
    const [holdings, threads] = await Promise.all([
      store.holdingsOf(phoneNumber),
      store.hubThreadsOf(phoneNumber),
    ]);
    for (const sessionId of new Set(
      [...holdings, ...threads].flatMap((h) => (h.state === "held" && h.sessionId ? [h.sessionId] : [])),
    ))
      await this.close(sessionId);

    // A consent of theirs given out of session is kept under the pseudonym, where theirs moves to.
    const consentAtPseudonym = await store.itemAt(itemKeys.consent(pseudonym));
    const personal = await Promise.all(
      [
        itemKeys.pair(phoneNumber, "").pk,
        lookupKeys.refPartition("PHONE", phoneNumber),
        itemKeys.consent(phoneNumber).pk,
        itemKeys.hubNumber(phoneNumber).pk,
        trafficKeys.senderWindow(phoneNumber, 0).pk,
      ].map((pk) => store.partitionItems(pk)),
    );
    const sessionIds = new Set<string>();
    for (const item of personal.flat())
      for (const field of ["sessionId", "lastSessionId"])
        if (typeof item[field] === "string" && item.kind !== "consent") sessionIds.add(item[field] as string);

    const items: (Item & ItemKey)[] = personal.flat();
    for (const sessionId of sessionIds) items.push(...(await this.sessionItems(sessionId)));

    const erasedAt = new Date(this.deps.clock.now()).toISOString();
    const groups: Change[][] = [];
    const counts: ErasureCounts = { sessions: 0, events: 0, messages: 0 };
    const touchedSessions = new Set<string>();
    const seen = new Set<string>();
    for (const item of items) {
      const id = `${item.pk}\u0000${item.sk}`;
      if (seen.has(id)) continue;
      seen.add(id);
      const erased = eraseItem(
        item,
        phoneNumber,
        pseudonym,
        erasedAt,
        item.kind === "consent" ? consentAtPseudonym : undefined,
      );
      if (!erased) continue;
      groups.push(erased.changes);
      if (erased.event) counts.events++;
      if (erased.message) counts.messages++;
      const sessionId = item.pk.startsWith("SESSION#") ? item.pk.slice(8) : item.sessionId;
      if (typeof sessionId === "string" && sessionIds.has(sessionId)) touchedSessions.add(sessionId);
    }
    await store.rewrite(groups);
    counts.sessions = touchedSessions.size;
    await store.append([
      makeEvent(decisionContext(this.deps), "ParticipantErased", null, {
        pseudonym,
        sessionIds: [...touchedSessions].sort(),
        events: counts.events,
        messages: counts.messages,
      }),
    ]);
    return counts;
  }

  /** Closes (or expires, when past its expiry) a session of the person; one closed meanwhile is fine. */
  private async close(sessionId: string) {
    const result = await handleCommand(this.deps, {
      load: async () => (await this.deps.store.getSession(sessionId)) ?? null,
      decide: (state, ctx) => decide({ type: "CloseSession" }, state, ctx),
    }).catch((error) => {
      if (!(error instanceof ConcurrentWriteError)) throw error;
    });
    if (result?.outcome === "appended" && result.state)
      await retainClosedSession(this.deps.store, result.state);
  }

  /** A session's partition (item, events, message log), its message items and both sides' pairs or threads. */
  private async sessionItems(sessionId: string): Promise<(Item & ItemKey)[]> {
    const { store } = this.deps;
    const partition = await store.partitionItems(itemKeys.session(sessionId).pk);
    const messageIds = new Set<string>();
    for (const item of partition)
      if (item.kind === "message-log" && typeof item.messageId === "string") messageIds.add(item.messageId);
    const meta = partition.find((i) => i.kind === "session") as Session | undefined;
    // A hub participant's thread of the session names the counterpart too (kept through its quarantine).
    const keys: ItemKey[] = [
      ...[...messageIds].map((id) => itemKeys.message(id)),
      ...(meta?.participants ?? []).flatMap((p) => [
        itemKeys.pair(p.phoneNumber, p.proxyNumber),
        ...(p.threadTag ? [itemKeys.hubThread(p.phoneNumber, p.threadTag)] : []),
      ]),
    ];
    const more = await Promise.all(keys.map((key) => store.itemAt(key)));
    return [...partition, ...more.flatMap((i) => (i ? [i] : []))];
  }
}
