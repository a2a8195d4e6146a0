import type { Change, Item, ItemKey } from "./changes.ts";
import { type Consent, latestConsent } from "./consent.ts";

/**
 * Erasure: the person's number becomes their pseudonym (phone.ts: what a pseudonym is) in every stored item
 * and event of theirs, keys included.
 */

/** A number in the middle of a key or text: not followed by another digit (+1555010 is not in +15550100). */
const occurrences = (number: string) => new RegExp(`${number.replace(/[+]/g, "\\+")}(?![0-9])`, "g");

/** Every occurrence of `number` in a value (strings, lists and maps, at any depth) replaced by `pseudonym`. */
export function rewriteValue(value: unknown, number: string, pseudonym: string): unknown {
  if (typeof value === "string") return value.replace(occurrences(number), pseudonym);
  if (Array.isArray(value)) return value.map((v) => rewriteValue(v, number, pseudonym));
  if (value !== null && typeof value === "object")
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, rewriteValue(v, number, pseudonym)]));
  return value;
}

/** What erasing one stored item does: nothing, a rewrite in place, or a move to a rewritten key. */
export interface ItemErasure {
  changes: Change[];
  /** Whether it was an event item, and a message whose body was deleted or whose numbers were rewritten. */
  event: boolean;
  message: boolean;
}

/**
 * The one rule of erasure for a stored item: the person's number, wherever it appears (keys included), becomes
 * their pseudonym, and a message they sent or received loses its body and media. An item whose key held the
 * number moves (delete + put in one write); event items keep their id, so consumers dedupe them, and carry
 * `erasedAt`, so the stream publisher does not publish a moved event again (a message whose body went carries
 * it too: its body is gone, not empty). Undefined: nothing to erase.
 */
export function eraseItem(
  item: Item & ItemKey,
  number: string,
  pseudonym: string,
  erasedAt: string,
  /**
   * The item already at the key a consent item moves to: the person's consent given out of session, kept
   * under their pseudonym. What they said most recently stays there.
   */
  atTarget?: Item,
): ItemErasure | undefined {
  const rewritten = rewriteValue(item, number, pseudonym) as Item & ItemKey;
  const touched = JSON.stringify(rewritten) !== JSON.stringify(item);
  const isMessage = item.kind === "message";
  const theirs = isMessage && (rewritten.from === pseudonym || rewritten.recipient === pseudonym);
  const bodyGoes =
    theirs && (item.body !== "" || ((item.mediaUrls as unknown[] | undefined)?.length ?? 0) > 0);
  if (!touched && !bodyGoes) return undefined;
  const event = item.kind === "event";
  const { pk, sk, ...fields } = rewritten;
  if (bodyGoes) Object.assign(fields, { body: "", mediaUrls: [] });
  // An erased body reads as gone, not as an empty text: the message keeps when it lost it.
  if (event || bodyGoes) fields.erasedAt = erasedAt;
  const conflict = { kind: "erasure" as const, key: item.pk };
  const changes: Change[] = [{ type: "put", key: { pk, sk }, item: fields, conflict }];
  if (pk !== item.pk || sk !== item.sk) {
    changes.unshift({ type: "delete", key: { pk: item.pk, sk: item.sk }, conflict });
    if (atTarget && item.kind === "consent") {
      const target = atTarget as unknown as Consent;
      if (latestConsent(target, fields as unknown as Consent) === target) changes.pop();
    }
  }
  return { changes, event, message: isMessage };
}
