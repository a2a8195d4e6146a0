import { itemKeys } from "../domain/keys.ts";
import { lookupKeys, type RefScope } from "../domain/projection-lookups.ts";
import { retentionChanges } from "../domain/retention.ts";
import type { Session } from "../domain/session.ts";
import type { ErasureStore } from "../ports.ts";

/**
 * Right after a session closed or expired: its events, message log, message items and references get the
 * ttl its session item got in the close (closedAt + SESSION_RETENTION_DAYS), so all of it expires together
 * and a rebuild never finds events without their projections. One query and one write per item; a crash
 * before it leaves the items without ttl, and the next close, expiry or erasure of the session is a no-op
 * (the session item is no longer open): docs/storage.md says how to find such sessions.
 */
export async function retainClosedSession(store: ErasureStore, session: Session): Promise<void> {
  const { sessionId } = session;
  const refs: [RefScope, string][] = session.participants.flatMap((p): [RefScope, string][] => [
    ["PHONE", p.phoneNumber],
    ...(p.id ? [["PID", p.id] as [RefScope, string]] : []),
  ]);
  if (session.uniqueName) refs.push(["NAME", session.uniqueName]);
  // The session as read before the close names its references: read them with its partition.
  const [partition, ...refItems] = await Promise.all([
    store.partitionItems(itemKeys.session(sessionId).pk),
    ...refs.map(([scope, value]) =>
      store.itemAt(lookupKeys.sessionRef(scope, value, session.createdAt, sessionId)),
    ),
  ]);
  const meta = partition.find((i) => i.kind === "session");
  if (!meta || typeof meta.ttl !== "number") return;
  const messages = await Promise.all(
    partition.flatMap((i) =>
      i.kind === "message-log" && typeof i.messageId === "string"
        ? [store.itemAt(itemKeys.message(i.messageId))]
        : [],
    ),
  );
  const items = [
    ...partition.filter((i) => i !== meta),
    ...[...refItems, ...messages].flatMap((i) => (i ? [i] : [])),
  ];
  await store.rewrite(retentionChanges(items, meta.ttl).map((change) => [change]));
}
