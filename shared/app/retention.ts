import type { ItemKey } from "../domain/changes.ts";
import { itemKeys, keyOfItem } from "../domain/keys.ts";
import { lookupKeys, type RefScope } from "../domain/projection-lookups.ts";
import { retentionChanges } from "../domain/retention.ts";
import type { Session } from "../domain/session.ts";
import type { ErasureStore } from "../ports.ts";

/**
 * Right after a session closed or expired: its events, message log, message items and references get the
 * ttl its session item got in the close (closedAt + SESSION_RETENTION_DAYS), so all of it expires together
 * and a rebuild never finds events without their projections. The close's own events were written with it.
 * One query, then one single-item write (1 write unit, no transaction) per item still without it; a crash
 * before it leaves the items without ttl, and the next close, expiry or erasure of the session is a no-op
 * (the session item is no longer open): docs/storage.md says how to find such sessions.
 */
export async function retainClosedSession(store: ErasureStore, session: Session): Promise<void> {
  await retainClosedSessions(store, [session]);
}

/**
 * The same for many sessions closed together (the recycler's expiries): their partitions are read at once
 * and all their stamps go out in one rewrite.
 */
export async function retainClosedSessions(store: ErasureStore, sessions: readonly Session[]): Promise<void> {
  const partitions = await Promise.all(
    sessions.map((s) => store.partitionItems(itemKeys.session(s.sessionId).pk)),
  );
  // The session as read before the close names its references; its message log names its message items.
  const related = sessions.map((session, i) => [
    ...referenceKeys(session),
    ...(partitions[i] ?? []).flatMap((item) =>
      item.kind === "message-log" && typeof item.messageId === "string"
        ? [itemKeys.message(item.messageId)]
        : [],
    ),
  ]);
  const found = new Map((await store.itemsAt(related.flat())).map((item) => [keyOfItem(item), item]));
  const changes = sessions.flatMap((_, i) => {
    const partition = partitions[i] ?? [];
    const meta = partition.find((item) => item.kind === "session");
    if (!meta || typeof meta.ttl !== "number") return [];
    const others = (related[i] ?? []).flatMap((key) => found.get(keyOfItem(key)) ?? []);
    return retentionChanges([...partition.filter((item) => item !== meta), ...others], meta.ttl);
  });
  await store.rewrite(changes.map((change) => [change]));
}

function referenceKeys(session: Session): ItemKey[] {
  const refs: [RefScope, string][] = session.participants.flatMap((p): [RefScope, string][] => [
    ["PHONE", p.phoneNumber],
    ...(p.id ? [["PID", p.id] as [RefScope, string]] : []),
  ]);
  if (session.uniqueName) refs.push(["NAME", session.uniqueName]);
  return refs.map(([scope, value]) =>
    lookupKeys.sessionRef(scope, value, session.createdAt, session.sessionId),
  );
}
