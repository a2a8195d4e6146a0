import { type AttributeValue, TransactionCanceledException } from "@aws-sdk/client-dynamodb";
import {
  type DynamoDBDocumentClient,
  GetCommand,
  QueryCommand,
  TransactWriteCommand,
  type TransactWriteCommandInput,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import { unmarshall } from "@aws-sdk/util-dynamodb";
import type { Holding, PoolNumber } from "../domain/allocation.ts";
import { ConcurrentWriteError } from "../domain/errors.ts";
import { type DomainEvent, domainEventSchema } from "../domain/events.ts";
import type { E164 } from "../domain/phone.ts";
import { assertNever, type Route, type Session } from "../domain/session.ts";
import type { AppendOptions, ClaimResult, MasklineStore, MessageRecord } from "../ports.ts";

type TransactItem = NonNullable<TransactWriteCommandInput["TransactItems"]>[number];
type Item = Record<string, unknown>;

const OPEN_SHARDS = 8;
const IDEMPOTENCY_TTL_SECONDS = 24 * 3600;
/** Released pairs are remembered this long after quarantine so the next session of the same pair is sticky. */
const STICKY_MEMORY_SECONDS = 90 * 24 * 3600;

export const keys = {
  session: (id: string) => ({ pk: `SESSION#${id}`, sk: "META" }),
  pair: (participant: string, proxy: string) => ({ pk: `PARTICIPANT#${participant}`, sk: `PROXY#${proxy}` }),
  number: (phone: string) => ({ pk: "POOL", sk: `NUMBER#${phone}` }),
  message: (id: string) => ({ pk: `MESSAGE#${id}`, sk: "MESSAGE" }),
  call: (sid: string) => ({ pk: `CALL#${sid}`, sk: "CALL" }),
  idempotency: (key: string) => ({ pk: `IDEMPOTENCY#${key}`, sk: "IDEMPOTENCY" }),
};

function eventPartition(event: DomainEvent): string {
  if (event.sessionId) return `SESSION#${event.sessionId}`;
  switch (event.type) {
    case "NumberAdded":
    case "NumberDraining":
    case "NumberRetired":
      return `NUMBER#${event.detail.phoneNumber}`;
    case "OutOfSessionMessage":
      return `NUMBER#${event.detail.to}`;
    case "PoolHealthReported":
    case "PoolLow":
      return "POOLHEALTH";
    default:
      return "EVENTS#unscoped";
  }
}

const shardOf = (id: string) => {
  let h = 0;
  for (const c of id) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return h % OPEN_SHARDS;
};

const epochSeconds = (ms: number) => Math.floor(ms / 1000);

export interface DynamoStoreOptions {
  tableName: string;
  client: DynamoDBDocumentClient;
  /** How long message bodies are kept (DynamoDB TTL on the message item). */
  retentionSeconds: number;
}

/** The DynamoDB adapter of the store port: one table, events and projections written together. */
export class DynamoStore implements MasklineStore {
  private readonly table: string;
  private readonly client: DynamoDBDocumentClient;
  private readonly retentionSeconds: number;

  constructor(options: DynamoStoreOptions) {
    this.table = options.tableName;
    this.client = options.client;
    this.retentionSeconds = options.retentionSeconds;
  }

  async append(events: readonly DomainEvent[], options: AppendOptions = {}): Promise<void> {
    const items = this.transactItems(events, options);
    if (items.length === 0) return;
    try {
      await this.sendTransaction(items.map((i) => i.item));
    } catch (error) {
      if (error instanceof TransactionCanceledException) {
        const reasons = error.CancellationReasons ?? [];
        const conflicts = items
          .map((i, index) => ({ guard: i.guard, code: reasons[index]?.Code }))
          .filter((r) => r.code && r.code !== "None")
          .map((r) => (r.code === "ConditionalCheckFailed" ? r.guard : `contention:${r.guard}`));
        throw new ConcurrentWriteError(conflicts.length ? conflicts : ["contention"], { cause: error });
      }
      throw error;
    }
  }

  /**
   * TransactWriteItems, sent again (up to 5 more times, 20–640 ms apart, with jitter) when DynamoDB cancelled it only
   * because another transaction held one of its items (TransactionConflict): nothing was written, the
   * conditions are evaluated afresh, and the SDK does not retry cancellations itself.
   */
  private async sendTransaction(transactItems: TransactItem[]): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.client.send(new TransactWriteCommand({ TransactItems: transactItems }));
        return;
      } catch (error) {
        const reasons =
          error instanceof TransactionCanceledException ? (error.CancellationReasons ?? []) : [];
        const onlyConflicts =
          reasons.some((r) => r.Code === "TransactionConflict") &&
          reasons.every((r) => !r.Code || r.Code === "None" || r.Code === "TransactionConflict");
        if (!onlyConflicts || attempt >= 5) throw error;
        await new Promise((resolve) => setTimeout(resolve, 20 * 2 ** attempt * (1 + Math.random())));
      }
    }
  }

  /** The writes that append `events`: each event item plus the projection items it changes, guarded. */
  transactItems(
    events: readonly DomainEvent[],
    options: AppendOptions = {},
  ): { guard: string; item: TransactItem }[] {
    const items: { guard: string; item: TransactItem }[] = [];
    const loadDelta = new Map<string, number>();
    const put = (
      guard: string,
      Item: Item,
      ConditionExpression?: string,
      names?: Record<string, string>,
      values?: Item,
    ) =>
      items.push({
        guard,
        item: {
          Put: {
            TableName: this.table,
            Item,
            ConditionExpression,
            ExpressionAttributeNames: names,
            ExpressionAttributeValues: values,
          },
        },
      });
    const update = (
      guard: string,
      Key: Item,
      UpdateExpression: string,
      names: Record<string, string>,
      values: Item,
      ConditionExpression?: string,
    ) =>
      items.push({
        guard,
        item: {
          Update: {
            TableName: this.table,
            Key,
            UpdateExpression,
            ConditionExpression,
            ExpressionAttributeNames: names,
            ExpressionAttributeValues: values,
          },
        },
      });

    for (const event of events) {
      const now = Date.parse(event.occurredAt);
      const partition = eventPartition(event);
      put(`event:${event.id}`, {
        pk: partition,
        sk: `EVENT#${event.occurredAt}#${event.id}`,
        kind: "event",
        ...event,
        // Health reports are telemetry: kept a week, not forever.
        ...(partition === "POOLHEALTH" ? { ttl: epochSeconds(now) + 7 * 24 * 3600 } : {}),
      });
      switch (event.type) {
        case "SessionOpened": {
          const d = event.detail;
          const sessionId = event.sessionId ?? "";
          put(
            `session:${sessionId}`,
            {
              ...keys.session(sessionId),
              kind: "session",
              sessionId,
              status: "open",
              mode: d.mode,
              ttlSeconds: d.ttlSeconds,
              ttlMode: d.ttlMode,
              createdAt: event.occurredAt,
              expiresAt: d.expiresAt,
              closedAt: null,
              participants: d.participants,
              gsi1pk: `OPEN#${shardOf(sessionId)}`,
              gsi1sk: `${d.expiresAt}#${sessionId}`,
            },
            "attribute_not_exists(pk)",
          );
          const [a, b] = d.participants;
          for (const [p, other] of [
            [a, b],
            [b, a],
          ] as const) {
            put(
              `pair:${p.proxyNumber}:${p.phoneNumber}`,
              {
                ...keys.pair(p.phoneNumber, p.proxyNumber),
                kind: "pair",
                participantNumber: p.phoneNumber,
                proxyNumber: p.proxyNumber,
                state: "held",
                sessionId,
                counterpartNumber: other.phoneNumber,
                counterpartProxy: other.proxyNumber,
                mode: d.mode,
                expiresAt: Date.parse(d.expiresAt),
                quarantineUntil: null,
              },
              // The guard that makes concurrent allocations safe: a pair is taken only if free.
              "attribute_not_exists(pk) OR #state = :released",
              { "#state": "state" },
              { ":released": "released" },
            );
            loadDelta.set(p.proxyNumber, (loadDelta.get(p.proxyNumber) ?? 0) + 1);
          }
          break;
        }
        case "SessionClosed":
        case "SessionExpired": {
          const sessionId = event.sessionId ?? "";
          update(
            `session:${sessionId}`,
            keys.session(sessionId),
            "SET #status = :status, closedAt = :at REMOVE gsi1pk, gsi1sk",
            { "#status": "status" },
            {
              ":status": event.type === "SessionClosed" ? "closed" : "expired",
              ":at": event.occurredAt,
              ":open": "open",
            },
            "#status = :open",
          );
          break;
        }
        case "SessionExtended": {
          const sessionId = event.sessionId ?? "";
          const at = Date.parse(event.detail.expiresAt);
          update(
            `session:${sessionId}`,
            keys.session(sessionId),
            "SET expiresAt = :e, gsi1sk = :g",
            { "#status": "status" },
            { ":e": event.detail.expiresAt, ":g": `${event.detail.expiresAt}#${sessionId}`, ":open": "open" },
            "#status = :open",
          );
          for (const p of event.detail.pairs)
            update(
              `pair:${p.proxyNumber}:${p.phoneNumber}`,
              keys.pair(p.phoneNumber, p.proxyNumber),
              "SET expiresAt = :e",
              { "#sid": "sessionId" },
              { ":e": at, ":sid": sessionId },
              "#sid = :sid",
            );
          break;
        }
        case "PairReleased": {
          const d = event.detail;
          const until = Date.parse(d.quarantineUntil);
          update(
            `pair:${d.proxyNumber}:${d.participantNumber}`,
            keys.pair(d.participantNumber, d.proxyNumber),
            "SET #state = :released, quarantineUntil = :q, releasedAt = :now, lastSessionId = :sid, #ttl = :ttl REMOVE sessionId, counterpartProxy, expiresAt",
            { "#state": "state", "#sid": "sessionId", "#ttl": "ttl" },
            {
              ":released": "released",
              ":q": until,
              ":now": now,
              ":sid": event.sessionId,
              ":ttl": epochSeconds(until) + STICKY_MEMORY_SECONDS,
            },
            "#sid = :sid",
          );
          loadDelta.set(d.proxyNumber, (loadDelta.get(d.proxyNumber) ?? 0) - 1);
          break;
        }
        case "MessageReceived": {
          const d = event.detail;
          const content = options.content?.get(d.messageId);
          put(
            `message:${d.messageId}`,
            {
              ...keys.message(d.messageId),
              kind: "message",
              messageId: d.messageId,
              sessionId: event.sessionId,
              state: "received",
              source: d.source,
              from: d.from,
              recipient: d.to,
              recipientProxy: d.proxyNumber,
              body: content?.body ?? "",
              mediaUrls: content?.mediaUrls ?? [],
              receivedAt: now,
              claimedAt: null,
              twilioSid: null,
              ttl: epochSeconds(now) + this.retentionSeconds,
            },
            "attribute_not_exists(pk)",
          );
          break;
        }
        case "MessageForwarded":
          update(
            `message:${event.detail.messageId}`,
            keys.message(event.detail.messageId),
            "SET #state = :forwarded, twilioSid = :sid, forwardedAt = :now",
            { "#state": "state" },
            { ":forwarded": "forwarded", ":sid": event.detail.twilioSid, ":now": now, ":sending": "sending" },
            "#state = :sending",
          );
          break;
        case "MessageFailed":
          update(
            `message:${event.detail.messageId}`,
            keys.message(event.detail.messageId),
            "SET #state = :failed, errorCode = :code, twilioSid = :sid",
            { "#state": "state" },
            {
              ":failed": "failed",
              ":code": event.detail.errorCode,
              ":sid": event.detail.twilioSid,
              ":received": "received",
              ":sending": "sending",
              ":forwarded": "forwarded",
            },
            // A delivery failure reported by a status callback follows a forward; a send failure follows a claim.
            "#state IN (:received, :sending, :forwarded)",
          );
          break;
        case "MessageDelivered":
          update(
            `message:${event.detail.messageId}`,
            keys.message(event.detail.messageId),
            "SET deliveryStatus = :status",
            { "#d": "deliveryStatus" },
            { ":status": event.detail.status },
            "attribute_exists(pk) AND (attribute_not_exists(#d) OR #d <> :status)",
          );
          break;
        case "MessageBlocked":
        case "OutOfSessionMessage": {
          const id = event.detail.messageId;
          const state = event.type === "MessageBlocked" ? "blocked" : "out-of-session";
          update(
            `message:${id}`,
            keys.message(id),
            "SET kind = :kind, messageId = :id, sessionId = :session, #state = :state, #ttl = :ttl",
            { "#state": "state", "#ttl": "ttl" },
            {
              ":kind": "message",
              ":id": id,
              ":session": event.sessionId,
              ":state": state,
              ":ttl": epochSeconds(now) + this.retentionSeconds,
              ":received": "received",
              ":sending": "sending",
            },
            // New (blocked at the door, or out of session) or a received message blocked before sending.
            "attribute_not_exists(pk) OR #state IN (:received, :sending)",
          );
          break;
        }
        case "CallBridged":
          put(
            `call:${event.detail.callSid}`,
            {
              ...keys.call(event.detail.callSid),
              kind: "call",
              sessionId: event.sessionId,
              ttl: epochSeconds(now) + this.retentionSeconds,
            },
            "attribute_not_exists(pk)",
          );
          break;
        case "NumberAdded":
          // An update, not a put: re-adding a number that still drains keeps its load.
          update(
            `number:${event.detail.phoneNumber}`,
            keys.number(event.detail.phoneNumber),
            "SET kind = :kind, phoneNumber = :p, callingCode = :cc, #status = :active, addedAt = :at, #load = if_not_exists(#load, :zero)",
            { "#status": "status", "#load": "load" },
            {
              ":kind": "number",
              ":p": event.detail.phoneNumber,
              ":cc": event.detail.callingCode,
              ":active": "active",
              ":at": event.occurredAt,
              ":zero": 0,
              ":draining": "draining",
            },
            "attribute_not_exists(pk) OR #status = :draining",
          );
          break;
        case "NumberDraining":
          update(
            `number:${event.detail.phoneNumber}`,
            keys.number(event.detail.phoneNumber),
            "SET #status = :draining, drainingSince = :at",
            { "#status": "status" },
            { ":draining": "draining", ":at": event.occurredAt, ":active": "active" },
            "#status = :active",
          );
          break;
        case "NumberRetired":
          // Leaves the pool once nothing holds it; its history stays in its events.
          items.push({
            guard: `number:${event.detail.phoneNumber}`,
            item: {
              Delete: {
                TableName: this.table,
                Key: keys.number(event.detail.phoneNumber),
                ConditionExpression: "#status IN (:active, :draining) AND #load = :zero",
                ExpressionAttributeNames: { "#status": "status", "#load": "load" },
                ExpressionAttributeValues: { ":active": "active", ":draining": "draining", ":zero": 0 },
              },
            },
          });
          break;
        case "PoolHealthReported":
        case "PoolLow":
          break;
        default:
          assertNever(event);
      }
    }

    for (const [phone, delta] of loadDelta) {
      if (delta === 0) continue;
      update(
        `number:${phone}`,
        keys.number(phone),
        "ADD #load :d",
        delta > 0 ? { "#load": "load", "#status": "status" } : { "#load": "load" },
        delta > 0 ? { ":d": delta, ":active": "active" } : { ":d": delta },
        // Retired numbers drain: open pairs continue, no new pair may take them.
        delta > 0 ? "#status = :active" : "attribute_exists(pk)",
      );
    }

    if (options.idempotency) {
      put(
        `idempotency:${options.idempotency.key}`,
        {
          ...keys.idempotency(options.idempotency.key),
          kind: "idempotency",
          requestHash: options.idempotency.requestHash,
          result: options.idempotency.result,
          ttl: epochSeconds(Date.now()) + IDEMPOTENCY_TTL_SECONDS,
        },
        "attribute_not_exists(pk)",
      );
    }

    return items;
  }

  async getSession(sessionId: string): Promise<Session | undefined> {
    const { Item } = await this.client.send(
      new GetCommand({ TableName: this.table, Key: keys.session(sessionId), ConsistentRead: true }),
    );
    return Item ? toSession(Item) : undefined;
  }

  async sessionEvents(sessionId: string): Promise<DomainEvent[]> {
    const items = await this.queryAll({
      KeyConditionExpression: "pk = :pk AND begins_with(sk, :prefix)",
      ExpressionAttributeValues: { ":pk": `SESSION#${sessionId}`, ":prefix": "EVENT#" },
      ConsistentRead: true,
    });
    return items.map(toDomainEvent);
  }

  async getRoute(proxyNumber: E164, senderNumber: E164): Promise<Route | undefined> {
    const { Item } = await this.client.send(
      new GetCommand({
        TableName: this.table,
        Key: keys.pair(senderNumber, proxyNumber),
        ConsistentRead: true,
      }),
    );
    if (!Item) return undefined;
    return {
      proxyNumber,
      senderNumber,
      state: Item.state,
      sessionId: Item.sessionId ?? null,
      counterpartNumber: Item.counterpartNumber ?? null,
      counterpartProxy: Item.counterpartProxy ?? null,
      mode: Item.mode ?? null,
      expiresAt: Item.expiresAt ?? null,
    };
  }

  async holdingsOf(participant: E164): Promise<Holding[]> {
    const items = await this.queryAll({
      KeyConditionExpression: "pk = :pk",
      ExpressionAttributeValues: { ":pk": `PARTICIPANT#${participant}` },
      ConsistentRead: true,
    });
    return items.map((i) => ({
      proxyNumber: i.proxyNumber as E164,
      state: i.state as Holding["state"],
      sessionId: (i.sessionId as string | undefined) ?? null,
      counterpartNumber: (i.counterpartNumber as E164 | undefined) ?? null,
      quarantineUntil: (i.quarantineUntil as number | undefined) ?? null,
    }));
  }

  async listPool(): Promise<PoolNumber[]> {
    const items = await this.queryAll({
      KeyConditionExpression: "pk = :pk AND begins_with(sk, :prefix)",
      ExpressionAttributeValues: { ":pk": "POOL", ":prefix": "NUMBER#" },
      ConsistentRead: true,
    });
    return items.map((i) => ({
      phoneNumber: i.phoneNumber as E164,
      status: i.status as PoolNumber["status"],
      callingCode: i.callingCode as string,
      load: Number(i.load ?? 0),
    }));
  }

  async getIdempotency(key: string) {
    const { Item } = await this.client.send(
      new GetCommand({ TableName: this.table, Key: keys.idempotency(key), ConsistentRead: true }),
    );
    return Item ? { requestHash: String(Item.requestHash), result: String(Item.result) } : undefined;
  }

  async getMessage(messageId: string): Promise<MessageRecord | undefined> {
    const { Item } = await this.client.send(
      new GetCommand({ TableName: this.table, Key: keys.message(messageId), ConsistentRead: true }),
    );
    if (!Item) return undefined;
    return {
      messageId,
      sessionId: Item.sessionId ?? null,
      state: Item.state,
      source: Item.source ?? "sms",
      from: Item.from ?? null,
      recipient: Item.recipient ?? null,
      recipientProxy: Item.recipientProxy ?? null,
      body: Item.body ?? "",
      mediaUrls: Item.mediaUrls ?? [],
      receivedAt: Item.receivedAt ?? 0,
      claimedAt: Item.claimedAt ?? null,
      twilioSid: Item.twilioSid ?? null,
    };
  }

  async claimSend(messageId: string, now: number, staleBefore: number): Promise<ClaimResult> {
    try {
      const { Attributes } = await this.client.send(
        new UpdateCommand({
          TableName: this.table,
          Key: keys.message(messageId),
          UpdateExpression:
            "SET #state = :sending, claimedAt = :now, previousClaim = claimedAt ADD attempts :one",
          ConditionExpression: "#state = :received OR (#state = :sending AND claimedAt < :stale)",
          ExpressionAttributeNames: { "#state": "state" },
          ExpressionAttributeValues: {
            ":sending": "sending",
            ":received": "received",
            ":now": now,
            ":stale": staleBefore,
            ":one": 1,
          },
          ReturnValues: "UPDATED_OLD",
          ReturnValuesOnConditionCheckFailure: "ALL_OLD",
        }),
      );
      return Attributes?.state === "sending" ? "stale-claim" : "claimed";
    } catch (error) {
      if (error instanceof Error && error.name === "ConditionalCheckFailedException") {
        // The document client leaves this item marshalled ({ S: "sending" }).
        const raw = (error as { Item?: Record<string, AttributeValue> }).Item;
        const item = raw ? unmarshall(raw) : undefined;
        return item?.state === "sending" ? "busy" : "done";
      }
      throw error;
    }
  }

  async releaseClaim(messageId: string, claimedAt: number): Promise<void> {
    try {
      await this.client.send(
        new UpdateCommand({
          TableName: this.table,
          Key: keys.message(messageId),
          UpdateExpression: "SET #state = :received",
          ConditionExpression: "#state = :sending AND claimedAt = :at",
          ExpressionAttributeNames: { "#state": "state" },
          ExpressionAttributeValues: { ":sending": "sending", ":received": "received", ":at": claimedAt },
        }),
      );
    } catch (error) {
      if (!(error instanceof Error && error.name === "ConditionalCheckFailedException")) throw error;
    }
  }

  async expiredSessions(now: number, limit: number): Promise<Session[]> {
    const cutoff = new Date(now).toISOString();
    const perShard = await Promise.all(
      Array.from({ length: OPEN_SHARDS }, (_, shard) =>
        this.client.send(
          new QueryCommand({
            TableName: this.table,
            IndexName: "gsi1",
            KeyConditionExpression: "gsi1pk = :pk AND gsi1sk < :cutoff",
            ExpressionAttributeValues: { ":pk": `OPEN#${shard}`, ":cutoff": cutoff },
            Limit: limit,
          }),
        ),
      ),
    );
    return perShard
      .flatMap((r) => r.Items ?? [])
      .map(toSession)
      .sort((a, b) => a.expiresAt.localeCompare(b.expiresAt))
      .slice(0, limit);
  }

  async openSessions(limit: number): Promise<Session[]> {
    const perShard = await Promise.all(
      Array.from({ length: OPEN_SHARDS }, (_, shard) =>
        this.client.send(
          new QueryCommand({
            TableName: this.table,
            IndexName: "gsi1",
            KeyConditionExpression: "gsi1pk = :pk",
            ExpressionAttributeValues: { ":pk": `OPEN#${shard}` },
            Limit: limit,
          }),
        ),
      ),
    );
    return perShard
      .flatMap((r) => r.Items ?? [])
      .map(toSession)
      .sort((a, b) => a.expiresAt.localeCompare(b.expiresAt))
      .slice(0, limit);
  }

  private async queryAll(input: Omit<ConstructorParameters<typeof QueryCommand>[0], "TableName">) {
    const out: Item[] = [];
    let ExclusiveStartKey: Item | undefined;
    do {
      const page = await this.client.send(
        new QueryCommand({ ...input, TableName: this.table, ExclusiveStartKey }),
      );
      out.push(...(page.Items ?? []));
      ExclusiveStartKey = page.LastEvaluatedKey;
    } while (ExclusiveStartKey);
    return out;
  }
}

function toSession(item: Item): Session {
  return {
    sessionId: item.sessionId,
    status: item.status,
    mode: item.mode,
    ttlSeconds: item.ttlSeconds,
    ttlMode: item.ttlMode,
    createdAt: item.createdAt,
    expiresAt: item.expiresAt,
    closedAt: item.closedAt ?? null,
    participants: item.participants,
  } as Session;
}

export function toDomainEvent(item: Item): DomainEvent {
  const { id, type, occurredAt, sessionId, detailVersion, detail } = item;
  return domainEventSchema.parse({
    id,
    type,
    occurredAt,
    sessionId: sessionId ?? null,
    detailVersion,
    detail,
  });
}
