import { TransactionCanceledException, TransactionConflictException } from "@aws-sdk/client-dynamodb";
import {
  type DynamoDBDocumentClient,
  TransactWriteCommand,
  type TransactWriteCommandInput,
} from "@aws-sdk/lib-dynamodb";
import type { Change, Guard, UpdateChange } from "../domain/changes.ts";
import { ConcurrentWriteError } from "../domain/errors.ts";
import type { DomainEvent } from "../domain/events.ts";
import { type ProjectionOptions, projectEvents } from "../domain/projection.ts";
import { assertNever } from "../domain/session.ts";

type TransactItem = NonNullable<TransactWriteCommandInput["TransactItems"]>[number];

/** Builds DynamoDB expressions with numbered placeholders, so any field name and value is safe. */
class Expressions {
  readonly names: Record<string, string> = {};
  readonly values: Record<string, unknown> = {};
  private n = 0;

  name(field: string): string {
    const existing = Object.entries(this.names).find(([, f]) => f === field)?.[0];
    if (existing) return existing;
    const placeholder = `#n${Object.keys(this.names).length}`;
    this.names[placeholder] = field;
    return placeholder;
  }

  value(v: unknown): string {
    const placeholder = `:v${this.n++}`;
    this.values[placeholder] = v;
    return placeholder;
  }

  condition(g: Guard): string {
    switch (g.op) {
      case "absent":
        return `attribute_not_exists(${this.name("pk")})`;
      case "present":
        return `attribute_exists(${this.name("pk")})`;
      case "missing":
        return `attribute_not_exists(${this.name(g.field)})`;
      case "eq":
        return `${this.name(g.field)} = ${this.value(g.value)}`;
      case "ne":
        return `(attribute_exists(${this.name(g.field)}) AND ${this.name(g.field)} <> ${this.value(g.value)})`;
      case "in":
        return `${this.name(g.field)} IN (${g.values.map((v) => this.value(v)).join(", ")})`;
      case "lt":
        return `${this.name(g.field)} < ${this.value(g.value)}`;
      case "atMost":
        return `${this.name(g.field)} <= ${this.value(g.value)}`;
      case "and":
        return `(${g.guards.map((x) => this.condition(x)).join(" AND ")})`;
      case "or":
        return `(${g.guards.map((x) => this.condition(x)).join(" OR ")})`;
      default:
        return assertNever(g);
    }
  }

  /** Names and values only when used: DynamoDB rejects unused ones. */
  attributes() {
    return {
      ...(Object.keys(this.names).length ? { ExpressionAttributeNames: this.names } : {}),
      ...(Object.keys(this.values).length ? { ExpressionAttributeValues: this.values } : {}),
    };
  }
}

/** One change as a single conditional UpdateItem (operational writes outside a transaction). */
export function toUpdateInput(change: UpdateChange, tableName: string) {
  const item = toTransactItem(change, tableName).Update;
  if (!item) throw new Error("not an update");
  return item;
}

/** One projection change as a TransactWriteItems entry: the translation, and nothing else. */
export function toTransactItem(change: Change, tableName: string): TransactItem {
  const x = new Expressions();
  const condition = change.guard ? { ConditionExpression: x.condition(change.guard) } : {};
  switch (change.type) {
    case "put":
      return {
        Put: {
          TableName: tableName,
          Item: { ...change.key, ...change.item },
          ...condition,
          ...x.attributes(),
        },
      };
    case "delete":
      return { Delete: { TableName: tableName, Key: change.key, ...condition, ...x.attributes() } };
    case "update": {
      const set = [
        ...Object.entries(change.set ?? {}).map(([f, v]) => `${x.name(f)} = ${x.value(v)}`),
        ...Object.entries(change.setIfAbsent ?? {}).map(
          ([f, v]) => `${x.name(f)} = if_not_exists(${x.name(f)}, ${x.value(v)})`,
        ),
      ];
      const add = Object.entries(change.add ?? {}).map(([f, v]) => `${x.name(f)} ${x.value(v)}`);
      const remove = (change.remove ?? []).map((f) => x.name(f));
      const clauses = [
        set.length ? `SET ${set.join(", ")}` : "",
        remove.length ? `REMOVE ${remove.join(", ")}` : "",
        add.length ? `ADD ${add.join(", ")}` : "",
      ].filter(Boolean);
      return {
        Update: {
          TableName: tableName,
          Key: change.key,
          UpdateExpression: clauses.join(" "),
          ...condition,
          ...x.attributes(),
        },
      };
    }
    default:
      return assertNever(change);
  }
}

/**
 * Appends events with their projection changes in ONE TransactWriteItems. A failed guard (or a concurrent
 * transaction on the same items) becomes a ConcurrentWriteError naming the typed conflicts; with
 * `reportContention`, a cancellation for contention alone is reported at once instead of sent again.
 */
export async function appendToDynamo(
  client: DynamoDBDocumentClient,
  tableName: string,
  events: readonly DomainEvent[],
  options: ProjectionOptions & { reportContention?: boolean | undefined },
): Promise<void> {
  const changes = projectEvents(events, options);
  if (changes.length === 0) return;
  try {
    await sendTransaction(
      client,
      changes.map((c) => toTransactItem(c, tableName)),
      { resend: !options.reportContention },
    );
  } catch (error) {
    if (error instanceof TransactionCanceledException) {
      const reasons = error.CancellationReasons ?? [];
      const conflicts = changes
        .map((c, index) => ({ conflict: c.conflict, code: reasons[index]?.Code }))
        .filter((r) => r.code && r.code !== "None")
        .map((r) => (r.code === "ConditionalCheckFailed" ? r.conflict : { ...r.conflict, contention: true }));
      throw new ConcurrentWriteError(
        conflicts.length ? conflicts : [{ kind: "event", key: "transaction", contention: true }],
        { cause: error },
      );
    }
    throw error;
  }
}

/**
 * TransactWriteItems, sent again when DynamoDB cancelled it only because another transaction held one of its
 * items (see `resendOnConflict`). `resend: false` leaves that to the caller, who may change the transaction
 * (take another number) rather than send it unchanged.
 */
export async function sendTransaction(
  client: DynamoDBDocumentClient,
  transactItems: TransactItem[],
  { resend = true }: { resend?: boolean } = {},
): Promise<void> {
  const send = () => client.send(new TransactWriteCommand({ TransactItems: transactItems }));
  await (resend ? resendOnConflict(send) : send());
}

/**
 * A write sent again (up to 5 more times, 20–640 ms apart, with jitter) when DynamoDB refused it only because
 * a transaction held one of its items: a cancelled transaction whose reasons are all TransactionConflict, or
 * a single-item write answered TransactionConflictException. Nothing was written, conditions are evaluated
 * afresh, and the SDK retries neither.
 */
export async function resendOnConflict<T>(send: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await send();
    } catch (error) {
      if (!heldByTransaction(error) || attempt >= 5) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20 * 2 ** attempt * (1 + Math.random())));
    }
  }
}

function heldByTransaction(error: unknown): boolean {
  if (error instanceof TransactionConflictException) return true;
  const reasons = error instanceof TransactionCanceledException ? (error.CancellationReasons ?? []) : [];
  return (
    reasons.some((r) => r.Code === "TransactionConflict") &&
    reasons.every((r) => !r.Code || r.Code === "None" || r.Code === "TransactionConflict")
  );
}
