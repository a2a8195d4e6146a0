import type { Conflict } from "./errors.ts";
import { assertNever } from "./session.ts";

/**
 * The language of projection changes: which item, what to set, add or remove, and the guard under which the
 * change may be made. Small on purpose, so DynamoDB (condition and update expressions) and the in-memory
 * store give every change the same meaning.
 */

/** Where an item lives: one table, partition key + sort key. */
export interface ItemKey {
  pk: string;
  sk: string;
}

export type Item = Record<string, unknown>;

/** A condition on the current item; evaluated by DynamoDB or by the in-memory store, same meaning. */
export type Guard =
  | { op: "absent" }
  | { op: "present" }
  | { op: "missing"; field: string }
  | { op: "eq"; field: string; value: unknown }
  | { op: "ne"; field: string; value: unknown }
  | { op: "in"; field: string; values: readonly unknown[] }
  /** The field is a number below `value`. */
  | { op: "lt"; field: string; value: number }
  /** The field is a number at most `value` (e.g. an expiry that has passed). */
  | { op: "atMost"; field: string; value: number }
  | { op: "and"; guards: readonly Guard[] }
  | { op: "or"; guards: readonly Guard[] };

export const guard = {
  absent: { op: "absent" } as Guard,
  present: { op: "present" } as Guard,
  missing: (field: string): Guard => ({ op: "missing", field }),
  eq: (field: string, value: unknown): Guard => ({ op: "eq", field, value }),
  ne: (field: string, value: unknown): Guard => ({ op: "ne", field, value }),
  in: (field: string, values: readonly unknown[]): Guard => ({ op: "in", field, values }),
  lt: (field: string, value: number): Guard => ({ op: "lt", field, value }),
  atMost: (field: string, value: number): Guard => ({ op: "atMost", field, value }),
  and: (...guards: Guard[]): Guard => ({ op: "and", guards }),
  or: (...guards: Guard[]): Guard => ({ op: "or", guards }),
};

interface ChangeBase {
  key: ItemKey;
  guard?: Guard;
  /** Named in the conflict when the guard fails. */
  conflict: Conflict;
}

export type Change =
  | (ChangeBase & { type: "put"; item: Item })
  | (ChangeBase & {
      type: "update";
      set?: Item;
      /** Set only where the field is absent (`if_not_exists`). */
      setIfAbsent?: Item;
      add?: Record<string, number>;
      remove?: readonly string[];
    })
  | (ChangeBase & { type: "delete" });

export type UpdateChange = Extract<Change, { type: "update" }>;

/** Evaluates a guard against an item (undefined: the item does not exist), as DynamoDB would. */
export function guardHolds(g: Guard, item: Item | undefined): boolean {
  switch (g.op) {
    case "absent":
      return item === undefined;
    case "present":
      return item !== undefined;
    case "missing":
      return item?.[g.field] === undefined;
    case "eq":
      return item !== undefined && item[g.field] !== undefined && sameValue(item[g.field], g.value);
    case "ne":
      return item !== undefined && item[g.field] !== undefined && !sameValue(item[g.field], g.value);
    case "in":
      return item !== undefined && g.values.some((v) => sameValue(item[g.field], v));
    case "lt":
      return typeof item?.[g.field] === "number" && (item[g.field] as number) < g.value;
    case "atMost":
      return item !== undefined && typeof item[g.field] === "number" && (item[g.field] as number) <= g.value;
    case "and":
      return g.guards.every((x) => guardHolds(x, item));
    case "or":
      return g.guards.some((x) => guardHolds(x, item));
    default:
      return assertNever(g);
  }
}

const sameValue = (a: unknown, b: unknown) => a === b;

/** Applies one change to an item (undefined: absent); returns the new item, undefined when deleted. */
export function applyChange(change: Change, item: Item | undefined): Item | undefined {
  switch (change.type) {
    case "put":
      return { ...change.key, ...change.item };
    case "delete":
      return undefined;
    case "update": {
      const next: Item = { ...(item ?? change.key), ...change.set };
      for (const [field, value] of Object.entries(change.setIfAbsent ?? {}))
        if (next[field] === undefined) next[field] = value;
      for (const [field, delta] of Object.entries(change.add ?? {}))
        next[field] = Number(next[field] ?? 0) + delta;
      for (const field of change.remove ?? []) delete next[field];
      return next;
    }
    default:
      return assertNever(change);
  }
}
