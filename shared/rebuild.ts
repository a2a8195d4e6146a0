import { eventOf } from "./adapters/item-views.ts";
import { MemoryStore } from "./adapters/memory-store.ts";
import { ConcurrentWriteError, type Conflict } from "./domain/errors.ts";
import { type DomainEvent, domainEventSchema } from "./domain/events.ts";
import { maskNumber } from "./domain/phone.ts";
import type { Item, ItemKey } from "./domain/projection.ts";
import { assertNever } from "./domain/session.ts";

/**
 * Events as the source of truth: the table's projections are rebuilt by folding every event, in order,
 * through the projection module (the same changes every append makes), and compared with the live items.
 * This file is the one comparison rule (which kinds, which fields, which normalisation), shared by the
 * rebuild script and the tests. No AWS code: the caller reads and writes the tables.
 */

/** The item kinds that events define, and so the kinds a rebuild restores and compares. */
export const PROJECTION_KINDS = [
  "session",
  "pair",
  "number",
  "message",
  "call",
  "consent",
  "hub-thread",
  "hub-number",
  "cap-slot",
] as const;
export type ProjectionKind = (typeof PROJECTION_KINDS)[number];

/**
 * Fields no event defines, left out of the comparison: `ttl` everywhere (expiry housekeeping; an item whose
 * ttl has passed is treated as absent instead); on messages the body and media (personal data, stored only
 * on the message item, never in an event, and when erasure deleted them: `erasedAt`) and the send claim
 * (operational state of the forwarder).
 */
export const IGNORED_FIELDS: Readonly<Record<ProjectionKind, readonly string[]>> = {
  session: ["ttl"],
  pair: ["ttl"],
  number: ["ttl"],
  message: ["ttl", "body", "mediaUrls", "erasedAt", "claimedAt", "previousClaim", "attempts"],
  call: ["ttl"],
  consent: ["ttl"],
  "hub-thread": ["ttl"],
  "hub-number": ["ttl"],
  "cap-slot": ["ttl"],
};

export type Difference =
  | { type: "unparseable-event"; key: ItemKey }
  | { type: "guard-failed"; event: { id: string; type: string }; conflicts: readonly Conflict[] }
  | { type: "only-live"; kind: ProjectionKind; key: ItemKey }
  | { type: "only-rebuilt"; kind: ProjectionKind; key: ItemKey }
  | { type: "fields"; kind: ProjectionKind; key: ItemKey; fields: string[] };

export type KindCounts = Record<ProjectionKind, { live: number; rebuilt: number }>;

export interface ProjectionComparison {
  counts: KindCounts;
  differences: Difference[];
}

const isProjectionKind = (kind: unknown): kind is ProjectionKind =>
  (PROJECTION_KINDS as readonly unknown[]).includes(kind);

/** DynamoDB TTL semantics: an item whose `ttl` (epoch seconds) has passed is gone, deleted or not yet. */
export function ttlPassed(item: Item, now: number): boolean {
  return typeof item.ttl === "number" && item.ttl * 1000 <= now;
}

/**
 * The comparable form of an item, or undefined when it is out of scope (another kind, or its ttl has
 * passed). A live message in state `sending` holds a send claim, which is not an event: it compares as
 * `received`, the state its events leave it in.
 */
export function normaliseItem(item: Item, now: number): Item | undefined {
  const kind = item.kind;
  if (!isProjectionKind(kind) || ttlPassed(item, now)) return undefined;
  const out: Item = { ...item };
  for (const field of IGNORED_FIELDS[kind]) delete out[field];
  if (kind === "message" && out.state === "sending") out.state = "received";
  return out;
}

const keyId = (item: Item) => `${String(item.pk)}\u0000${String(item.sk)}`;
const keyOf = (item: Item): ItemKey => ({ pk: String(item.pk), sk: String(item.sk) });

/** Order-insensitive for object keys, order-sensitive for lists: DynamoDB maps vs lists. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "undefined";
}

function emptyCounts(): KindCounts {
  return Object.fromEntries(PROJECTION_KINDS.map((k) => [k, { live: 0, rebuilt: 0 }])) as KindCounts;
}

/**
 * The comparison rule: in-scope items (PROJECTION_KINDS, ttl not passed) of both sides, normalised, matched
 * by key; each key that is on one side only, or whose fields differ, is one difference.
 */
export function compareProjections(
  live: Iterable<Item>,
  rebuilt: Iterable<Item>,
  options: { now: number },
): ProjectionComparison {
  const counts = emptyCounts();
  const index = (items: Iterable<Item>, side: "live" | "rebuilt") => {
    const byKey = new Map<string, Item>();
    for (const item of items) {
      const normalised = normaliseItem(item, options.now);
      if (!normalised) continue;
      counts[normalised.kind as ProjectionKind][side]++;
      byKey.set(keyId(item), normalised);
    }
    return byKey;
  };
  const liveItems = index(live, "live");
  const rebuiltItems = index(rebuilt, "rebuilt");
  const differences: Difference[] = [];
  for (const [id, item] of liveItems) {
    const other = rebuiltItems.get(id);
    const kind = item.kind as ProjectionKind;
    if (!other) {
      differences.push({ type: "only-live", kind, key: keyOf(item) });
      continue;
    }
    const fields = [...new Set([...Object.keys(item), ...Object.keys(other)])]
      .filter((f) => canonical(item[f]) !== canonical(other[f]))
      .sort();
    if (fields.length) differences.push({ type: "fields", kind, key: keyOf(item), fields });
  }
  for (const [id, item] of rebuiltItems)
    if (!liveItems.has(id))
      differences.push({ type: "only-rebuilt", kind: item.kind as ProjectionKind, key: keyOf(item) });
  differences.sort((a, b) => sortKey(a).localeCompare(sortKey(b)));
  return { counts, differences };
}

const sortKey = (d: Difference) =>
  "key" in d ? `${"kind" in d ? d.kind : "event"} ${d.key.pk} ${d.key.sk}` : `event ${d.event.id}`;

/** History order: by occurredAt, then by id (ids are time-ordered within a writer). */
export function sortEvents(events: readonly DomainEvent[]): DomainEvent[] {
  return [...events].sort(
    (a, b) => Date.parse(a.occurredAt) - Date.parse(b.occurredAt) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
  );
}

/** The event items of a table, parsed; an event item that does not parse is a difference. */
export function eventsOf(
  items: Iterable<Item>,
  now = Number.NEGATIVE_INFINITY,
): { events: DomainEvent[]; unparseable: Difference[] } {
  const events: DomainEvent[] = [];
  const unparseable: Difference[] = [];
  for (const item of items) {
    // An event past its retention is gone (DynamoDB deletes it within days), like its projections.
    if (item.kind !== "event" || ttlPassed(item, now)) continue;
    const parsed = domainEventSchema.safeParse(eventOf(item));
    if (parsed.success) events.push(parsed.data);
    else unparseable.push({ type: "unparseable-event", key: keyOf(item) });
  }
  return { events, unparseable };
}

/**
 * Folds events, in history order, one append each, through the projection module into an in-memory table.
 * An event whose guard fails was not appendable where history puts it: a difference, and its changes are
 * left out (as a refused append's would be).
 */
export async function foldEvents(
  events: readonly DomainEvent[],
  options: { retentionSeconds: number; sessionRetentionSeconds?: number },
): Promise<{ store: MemoryStore; failures: Difference[] }> {
  const store = new MemoryStore(options);
  const failures: Difference[] = [];
  for (const event of sortEvents(events)) {
    try {
      await store.append([event]);
    } catch (error) {
      if (!(error instanceof ConcurrentWriteError)) throw error;
      failures.push({
        type: "guard-failed",
        event: { id: event.id, type: event.type },
        conflicts: error.conflicts,
      });
    }
  }
  return { store, failures };
}

export interface RebuildResult {
  /** Event items read (parsed or not). */
  events: number;
  /** Every item the fold produced (event items included), except those whose ttl has passed. */
  rebuilt: Item[];
  counts: KindCounts;
  /** Unparseable events, failed guards, then item differences. */
  differences: Difference[];
}

/** The whole rebuild from a table's items: its events folded, the result compared with its projections. */
export async function rebuildFromItems(
  liveItems: readonly Item[],
  options: { retentionSeconds: number; sessionRetentionSeconds?: number; now: number },
): Promise<RebuildResult> {
  const { events, unparseable } = eventsOf(liveItems, options.now);
  const { store, failures } = await foldEvents(events, options);
  const rebuilt = [...store.items()].filter((i) => !ttlPassed(i, options.now));
  const { counts, differences } = compareProjections(liveItems, rebuilt, options);
  return {
    events: events.length + unparseable.length,
    rebuilt,
    counts,
    differences: [...unparseable, ...failures, ...differences],
  };
}

/** Phone numbers in keys, masked as in logs (country code and last two digits). */
export function maskKey(text: string): string {
  return text.replace(/\+\d{4,15}/g, (n) => maskNumber(n));
}

/** One line per difference: the item key (numbers masked) and field names, never values. */
export function describeDifference(d: Difference): string {
  switch (d.type) {
    case "unparseable-event":
      return `event item ${maskKey(d.key.pk)} ${maskKey(d.key.sk)}: does not parse as a domain event`;
    case "guard-failed":
      return `event ${d.event.id} (${d.event.type}): guard failed on ${d.conflicts
        .map((c) => `${c.kind} ${maskKey(c.key)}`)
        .join(", ")}`;
    case "only-live":
      return `${d.kind} ${maskKey(d.key.pk)} ${maskKey(d.key.sk)}: in the table, not defined by the events`;
    case "only-rebuilt":
      return `${d.kind} ${maskKey(d.key.pk)} ${maskKey(d.key.sk)}: defined by the events, missing from the table`;
    case "fields":
      return `${d.kind} ${maskKey(d.key.pk)} ${maskKey(d.key.sk)}: fields differ: ${d.fields.join(", ")}`;
    default:
      return assertNever(d);
  }
}
