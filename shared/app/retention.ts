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
export async function retainClosedSession(store: ErasureStore, sessionId: string): Promise<void> {
  const partition = await store.partitionItems(itemKeys.session(sessionId).pk);
  const meta = partition.find((i) => i.kind === "session");
  if (!meta || typeof meta.ttl !== "number") return;
  const session = meta as unknown as Session;
  const refs: [RefScope, string][] = session.participants.flatMap((p): [RefScope, string][] => [
    ["PHONE", p.phoneNumber],
    ...(p.id ? [["PID", p.id] as [RefScope, string]] : []),
  ]);
  if (session.uniqueName) refs.push(["NAME", session.uniqueName]);
  const keys = [
    ...partition.flatMap((i) =>
      i.kind === "message-log" && typeof i.messageId === "string" ? [itemKeys.message(i.messageId)] : [],
    ),
    ...refs.map(([scope, value]) => lookupKeys.sessionRef(scope, value, session.createdAt, sessionId)),
  ];
  const more = await Promise.all(keys.map((key) => store.itemAt(key)));
  const items = [...partition.filter((i) => i !== meta), ...more.flatMap((i) => (i ? [i] : []))];
  await store.rewrite(retentionChanges(items, meta.ttl).map((change) => [change]));
}
