import {
  type AttributeValue,
  DynamoDBClient,
  InternalServerError,
  ProvisionedThroughputExceededException,
  TransactionCanceledException,
} from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { LOCAL_CREDENTIALS, LOCAL_REGION } from "../../local/aws-local.ts";
import { DYNAMO_MAX_ATTEMPTS } from "../../shared/adapters/aws.ts";

/**
 * The real DynamoDB client against DynamoDB Local, with the failures real DynamoDB has and DynamoDB Local
 * (which runs transactions one at a time) never produces, injected inside the SDK's retry loop so the SDK
 * retries exactly what it would retry in AWS:
 *
 * - transaction conflicts: a TransactWriteItems that touches an item another in-flight transaction holds is
 *   cancelled (TransactionCanceledException, reason TransactionConflict on the overlapping items); a
 *   single-item write to such an item fails with TransactionConflictException;
 * - throttling: ProvisionedThroughputExceededException or ThrottlingException, at `throttleRate`;
 * - server errors: InternalServerError (HTTP 500), at `errorRate`, before the request reaches the table.
 *
 * Every attempt is counted per command, so a test can bound the retries.
 */
export interface FaultPlan {
  /** Share of calls failed with a throttling error, 0..1. */
  throttleRate: number;
  /** Share of calls failed with a 500 InternalServerError, 0..1. */
  errorRate: number;
  /** How long a transaction holds its items (widens the window where conflicts happen), ms. */
  transactionHoldMs: number;
  /**
   * Real DynamoDB holds a transaction's items only while it processes that transaction (prepare, then
   * commit); DynamoDB Local runs transactions one at a time, so a transaction's answer also waits for the
   * ones queued before it. Set, a transaction holds its items at most this long after it passed the
   * conflict check (plus `transactionHoldMs`), whenever DynamoDB Local answers; unset, until the answer.
   */
  processingMs?: number | undefined;
}

export interface FaultStats {
  attempts: Map<string, number>;
  throttled: number;
  serverErrors: number;
  transactionConflicts: number;
  /** Cancelled or rejected writes per kind of contested item (`POOL/NUMBER`, `PARTICIPANT/PROXY`, ...). */
  conflictsByItem: Map<string, number>;
  /** The most attempts one command invocation took (first try + SDK retries). */
  maxAttemptsPerCall: number;
  calls: number;
}

/** A deterministic random source, so a failing run can be replayed with its seed. */
function mulberry32(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Key = Record<string, AttributeValue> | undefined;
interface WriteInput {
  TableName?: string;
  Key?: Key;
  Item?: Key;
  TransactItems?: {
    Put?: WriteInput;
    Update?: WriteInput;
    Delete?: WriteInput;
    ConditionCheck?: WriteInput;
  }[];
}

const itemKey = (table: string | undefined, key: Key) => `${table}|${key?.pk?.S ?? ""}|${key?.sk?.S ?? ""}`;

/** The kind of an item, from its key: `POOL/NUMBER`, `PARTICIPANT/PROXY`, `PERSON/PROXIES`, ... */
const itemKind = (key: string) => {
  const [, pk = "", sk = ""] = key.split("|");
  return `${pk.split("#")[0]}/${sk.split("#")[0]}`;
};

const writeKeys = (input: WriteInput): string[] =>
  (input.TransactItems ?? []).map((t) => {
    const op = t.Put ?? t.Update ?? t.Delete ?? t.ConditionCheck;
    return itemKey(op?.TableName, op?.Key ?? op?.Item);
  });

const SINGLE_WRITES = new Set(["PutItemCommand", "UpdateItemCommand", "DeleteItemCommand"]);

type Next = (args: { input: WriteInput }) => Promise<unknown>;

export function faultyDynamo(options: { endpoint: string; seed: number; plan: FaultPlan }) {
  const random = mulberry32(options.seed);
  const plan = { ...options.plan };
  const stats: FaultStats = {
    attempts: new Map(),
    throttled: 0,
    serverErrors: 0,
    transactionConflicts: 0,
    conflictsByItem: new Map(),
    maxAttemptsPerCall: 0,
    calls: 0,
  };
  const held = new Map<string, number>();
  const raw = new DynamoDBClient({
    endpoint: options.endpoint,
    region: LOCAL_REGION,
    credentials: LOCAL_CREDENTIALS,
    // As the functions' own client retries.
    maxAttempts: DYNAMO_MAX_ATTEMPTS,
  });
  const metadata = (httpStatusCode: number) => ({ httpStatusCode, attempts: 1, totalRetryDelay: 0 });

  // Outside the retry loop: one count per command invocation, and its attempts.
  const perCall = (next: Next) => async (args: { input: WriteInput; attempts?: number[] }) => {
    stats.calls++;
    const counter = [0];
    try {
      return await next({ ...args, attempts: counter } as { input: WriteInput });
    } finally {
      stats.maxAttemptsPerCall = Math.max(stats.maxAttemptsPerCall, counter[0] ?? 0);
    }
  };
  // Inside the retry loop (deserialize step): every attempt passes here.
  const perAttempt =
    (next: Next, context: { commandName?: string }) =>
    async (args: { input: WriteInput; attempts?: number[] }) => {
      const command = context.commandName ?? "unknown";
      stats.attempts.set(command, (stats.attempts.get(command) ?? 0) + 1);
      if (args.attempts) args.attempts[0] = (args.attempts[0] ?? 0) + 1;
      const roll = random();
      if (roll < plan.throttleRate) {
        stats.throttled++;
        if (random() < 0.5)
          throw new ProvisionedThroughputExceededException({
            message: "injected: provisioned throughput exceeded",
            $metadata: metadata(400),
          });
        throw Object.assign(new Error("injected: rate exceeded"), {
          name: "ThrottlingException",
          $fault: "client",
          $metadata: metadata(400),
        });
      }
      if (roll < plan.throttleRate + plan.errorRate) {
        stats.serverErrors++;
        throw new InternalServerError({
          message: "injected: internal server error",
          $metadata: metadata(500),
        });
      }
      if (command === "TransactWriteItemsCommand") {
        const keys = writeKeys(args.input);
        if (keys.some((k) => held.has(k))) {
          stats.transactionConflicts++;
          for (const kind of new Set(keys.filter((k) => held.has(k)).map(itemKind)))
            stats.conflictsByItem.set(kind, (stats.conflictsByItem.get(kind) ?? 0) + 1);
          throw new TransactionCanceledException({
            message:
              "injected: Transaction cancelled, please refer cancellation reasons for specific reasons",
            $metadata: metadata(400),
            CancellationReasons: keys.map((k) =>
              held.has(k)
                ? { Code: "TransactionConflict", Message: "Transaction is ongoing for the item" }
                : { Code: "None" },
            ),
          });
        }
        for (const k of keys) held.set(k, (held.get(k) ?? 0) + 1);
        let released = false;
        const release = () => {
          if (released) return;
          released = true;
          for (const k of keys) {
            const n = (held.get(k) ?? 1) - 1;
            if (n <= 0) held.delete(k);
            else held.set(k, n);
          }
        };
        let timer: ReturnType<typeof setTimeout> | undefined;
        try {
          const delay = plan.transactionHoldMs > 0 ? random() * plan.transactionHoldMs : 0;
          if (plan.processingMs !== undefined) timer = setTimeout(release, delay + plan.processingMs);
          if (delay > 0) await new Promise((r) => setTimeout(r, delay));
          return await next(args);
        } finally {
          clearTimeout(timer);
          release();
        }
      }
      if (
        SINGLE_WRITES.has(command) &&
        held.has(itemKey(args.input.TableName, args.input.Key ?? args.input.Item))
      ) {
        stats.transactionConflicts++;
        const kind = itemKind(itemKey(args.input.TableName, args.input.Key ?? args.input.Item));
        stats.conflictsByItem.set(kind, (stats.conflictsByItem.get(kind) ?? 0) + 1);
        throw Object.assign(new Error("injected: Transaction is ongoing for the item"), {
          name: "TransactionConflictException",
          $fault: "client",
          $metadata: metadata(400),
        });
      }
      return next(args);
    };

  const stack = raw.middlewareStack as unknown as {
    add(
      middleware: (next: Next, context: { commandName?: string }) => Next,
      options: { step: string; name: string; priority?: string },
    ): void;
  };
  stack.add((next) => perCall(next) as Next, { step: "initialize", name: "faultsPerCall", priority: "high" });
  stack.add((next, context) => perAttempt(next, context) as Next, {
    step: "deserialize",
    name: "faultsPerAttempt",
    priority: "low",
  });

  const doc = DynamoDBDocumentClient.from(raw, { marshallOptions: { removeUndefinedValues: true } });
  return {
    doc,
    stats,
    plan,
    /** Turn the faults off (e.g. to let a test settle and count). */
    calm() {
      plan.throttleRate = 0;
      plan.errorRate = 0;
      plan.transactionHoldMs = 0;
    },
    /** The SDK's attempt limit for this client (its default for DynamoDB is 4 in this SDK version). */
    maxAttempts: () => raw.config.maxAttempts(),
    destroy: () => raw.destroy(),
  };
}
