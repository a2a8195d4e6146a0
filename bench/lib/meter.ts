import type { MiddlewareStack } from "@smithy/types";

/**
 * Counts AWS API calls with an SDK middleware: per command, how many, how long, how many failed, and for
 * DynamoDB the capacity units the service reports (the middleware asks for ReturnConsumedCapacity=TOTAL).
 * Attach it to the very clients the code under test uses; nothing else changes.
 */
export interface CommandStats {
  service: string;
  command: string;
  calls: number;
  errors: number;
  /** Capacity units DynamoDB reported (reads for Get/Query/Scan, writes for Put/Update/Delete/Transact*). */
  capacity: number;
  /** Items in TransactWriteItems, messages in ReceiveMessage / DeleteMessageBatch. */
  items: number;
  ms: number[];
  errorNames: Map<string, number>;
}

const READS = new Set([
  "GetItemCommand",
  "QueryCommand",
  "ScanCommand",
  "BatchGetItemCommand",
  "TransactGetItemsCommand",
]);
const WRITES = new Set([
  "PutItemCommand",
  "UpdateItemCommand",
  "DeleteItemCommand",
  "BatchWriteItemCommand",
  "TransactWriteItemsCommand",
]);

export type CapacityKind = "read" | "write" | "none";
export const capacityKind = (command: string): CapacityKind =>
  READS.has(command) ? "read" : WRITES.has(command) ? "write" : "none";

interface ClientLike {
  // biome-ignore lint/suspicious/noExplicitAny: a middleware works on every client's input and output types
  middlewareStack: MiddlewareStack<any, any>;
}

function capacityOf(consumed: unknown): number {
  const list = Array.isArray(consumed) ? consumed : consumed ? [consumed] : [];
  return list.reduce((sum: number, c: { CapacityUnits?: number }) => sum + (c.CapacityUnits ?? 0), 0);
}

export interface MeteredCall {
  service: string;
  command: string;
  ms: number;
  ok: boolean;
  capacity: number;
  input: Record<string, unknown>;
}

export class AwsMeter {
  readonly stats = new Map<string, CommandStats>();
  private readonly attached = new WeakSet<object>();
  /** Sees every call as it completes (e.g. to copy the shape of a transaction). */
  onCall: ((call: MeteredCall) => void) | undefined;

  attach(client: ClientLike, service: string): this {
    if (this.attached.has(client.middlewareStack)) return this;
    this.attached.add(client.middlewareStack);
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const command = String(context.commandName ?? "unknown");
        const input = args.input as Record<string, unknown>;
        const kind = service === "dynamodb" ? capacityKind(command) : "none";
        if (kind !== "none") input.ReturnConsumedCapacity = "TOTAL";
        const started = performance.now();
        try {
          const result = await next(args);
          const output = result.output as Record<string, unknown>;
          // A long poll that returned nothing is idle polling, not work for any message: kept apart.
          const idle = command === "ReceiveMessageCommand" && itemsOf(command, input, output) === 0;
          const stats = this.entry(service, idle ? `${command} (empty)` : command);
          const ms = performance.now() - started;
          // DynamoDB Local under-reports transactions (equal-sized items count once): estimate those from sizes.
          const capacity =
            command === "TransactWriteItemsCommand"
              ? this.transactionCapacity(input)
              : command === "BatchGetItemCommand"
                ? Math.max(capacityOf(output.ConsumedCapacity), batchGetFloor(input))
                : kind !== "none"
                  ? capacityOf(output.ConsumedCapacity)
                  : 0;
          if (command === "PutItemCommand") this.remember(input.Key ?? keyOf(input.Item), sizeOf(input.Item));
          stats.calls++;
          stats.ms.push(ms);
          stats.capacity += capacity;
          stats.items += itemsOf(command, input, output);
          this.onCall?.({ service, command, ms, ok: true, capacity, input });
          return result;
        } catch (error) {
          const stats = this.entry(service, command);
          stats.calls++;
          stats.errors++;
          stats.ms.push(performance.now() - started);
          stats.items += itemsOf(command, input, {});
          const name = (error as Error)?.name ?? "Error";
          stats.errorNames.set(name, (stats.errorNames.get(name) ?? 0) + 1);
          this.onCall?.({ service, command, ms: performance.now() - started, ok: false, capacity: 0, input });
          throw error;
        }
      },
      { step: "initialize", name: "benchAwsMeter", priority: "high", override: true },
    );
    return this;
  }

  /** Last known size of each item this meter saw written, to size the Updates of a transaction. */
  private readonly sizes = new Map<string, number>();

  private remember(key: unknown, size: number) {
    if (key) this.sizes.set(JSON.stringify(key), size);
  }

  /** 2 WCU per KB per item (transactional writes), items sized as DynamoDB sizes them. */
  private transactionCapacity(input: Record<string, unknown>): number {
    let units = 0;
    for (const entry of (input.TransactItems as Record<string, Record<string, unknown>>[] | undefined) ??
      []) {
      let size = 1;
      if (entry.Put) {
        size = sizeOf(entry.Put.Item);
        this.remember(keyOf(entry.Put.Item), size);
      } else if (entry.Update) {
        const key = JSON.stringify(entry.Update.Key);
        size =
          Math.max(this.sizes.get(key) ?? 0, sizeOf(entry.Update.Key)) +
          sizeOf(entry.Update.ExpressionAttributeValues);
        this.sizes.set(key, size);
      } else if (entry.Delete || entry.ConditionCheck) {
        size = sizeOf((entry.Delete ?? entry.ConditionCheck)?.Key);
      }
      units += 2 * Math.max(1, Math.ceil(size / 1024));
    }
    return units;
  }

  private entry(service: string, command: string): CommandStats {
    const key = `${service}:${command}`;
    let stats = this.stats.get(key);
    if (!stats) {
      stats = { service, command, calls: 0, errors: 0, capacity: 0, items: 0, ms: [], errorNames: new Map() };
      this.stats.set(key, stats);
    }
    return stats;
  }

  get(service: string, command: string): CommandStats {
    return this.entry(service, command);
  }

  reset() {
    this.stats.clear();
  }

  list(): CommandStats[] {
    return [...this.stats.values()].filter((s) => s.calls > 0).sort((a, b) => b.calls - a.calls);
  }

  /** Calls that did work (idle long polls that returned nothing excluded). */
  total(filter: (s: CommandStats) => boolean = () => true) {
    return this.list()
      .filter((s) => !s.command.endsWith("(empty)") && filter(s))
      .reduce((sum, s) => sum + s.calls, 0);
  }
}

/**
 * DynamoDB Local reports nothing for a BatchGetItem of keys that hold no item; priced as DynamoDB prices
 * each key's GetItem at the least (1 RRU strongly consistent, 0.5 eventually), so a batch never looks cheaper.
 */
function batchGetFloor(input: Record<string, unknown>): number {
  const tables = Object.values(
    (input.RequestItems ?? {}) as Record<string, { Keys?: unknown[]; ConsistentRead?: boolean }>,
  );
  return tables.reduce((sum, t) => sum + (t.Keys?.length ?? 0) * (t.ConsistentRead ? 1 : 0.5), 0);
}

function itemsOf(command: string, input: Record<string, unknown>, output: Record<string, unknown>): number {
  if (command === "TransactWriteItemsCommand")
    return (input.TransactItems as unknown[] | undefined)?.length ?? 0;
  if (command === "ReceiveMessageCommand") return (output.Messages as unknown[] | undefined)?.length ?? 0;
  if (command === "DeleteMessageBatchCommand" || command === "SendMessageBatchCommand")
    return (input.Entries as unknown[] | undefined)?.length ?? 0;
  return 1;
}

function keyOf(item: unknown): unknown {
  if (!item || typeof item !== "object") return undefined;
  const { pk, sk } = item as Record<string, unknown>;
  return { pk, sk };
}

/** An item's size by DynamoDB's rules (names + values; numbers ~1 byte per 2 digits; 3 bytes per container). */
export function sizeOf(value: unknown, name = ""): number {
  const own = Buffer.byteLength(name);
  if (value === null || value === undefined || typeof value === "boolean") return own + 1;
  if (typeof value === "string") return own + Buffer.byteLength(value);
  if (typeof value === "number" || typeof value === "bigint")
    return own + Math.ceil(String(value).replace(/[-.]/g, "").length / 2) + 1;
  if (value instanceof Uint8Array) return own + value.byteLength;
  if (Array.isArray(value) || value instanceof Set)
    return own + 3 + [...value].reduce((sum: number, v) => sum + sizeOf(v) + 1, 0);
  if (typeof value === "object")
    return (
      own +
      (name ? 3 : 0) +
      Object.entries(value as Record<string, unknown>).reduce(
        (sum, [k, v]) => sum + sizeOf(v, k) + (name ? 1 : 0),
        0,
      )
    );
  return own;
}
