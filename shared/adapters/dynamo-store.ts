import type { AttributeValue } from "@aws-sdk/client-dynamodb";
import { type DynamoDBDocumentClient, GetCommand, QueryCommand, UpdateCommand } from "@aws-sdk/lib-dynamodb";
import { unmarshall } from "@aws-sdk/util-dynamodb";
import type { Holding, PoolNumber } from "../domain/allocation.ts";
import type { DomainEvent } from "../domain/events.ts";
import type { MessageRecord } from "../domain/message.ts";
import type { E164 } from "../domain/phone.ts";
import { itemKeys, OPEN_SHARDS } from "../domain/projection.ts";
import type { Route, Session } from "../domain/session.ts";
import type {
  AppendOptions,
  ClaimResult,
  EventStore,
  IdempotencyRecords,
  MessageLog,
  MessageLogEntry,
  Page,
  PagedReads,
  PageRequest,
  PoolView,
  RouteLookup,
  SendClaims,
  SessionIndex,
  SessionReader,
  SessionRefScope,
} from "../ports.ts";
import { appendToDynamo } from "./dynamo-append.ts";
import { toDomainEvent, toSession } from "./dynamo-items.ts";
import { DynamoPagedReads } from "./dynamo-pages.ts";

export { toDomainEvent, toSession };

type Item = Record<string, unknown>;
const keys = itemKeys;

export interface DynamoStoreOptions {
  tableName: string;
  client: DynamoDBDocumentClient;
  /** How long message bodies are kept (DynamoDB TTL on the message item). */
  retentionSeconds: number;
}

/**
 * The DynamoDB adapter of every store port: one table, events and projections written together (the
 * projection rules are shared/domain/projection.ts; dynamo-append.ts translates them), reads by key.
 */
export class DynamoStore
  implements
    EventStore,
    SessionReader,
    RouteLookup,
    PoolView,
    IdempotencyRecords,
    MessageLog,
    SendClaims,
    SessionIndex,
    PagedReads
{
  private readonly table: string;
  private readonly client: DynamoDBDocumentClient;
  private readonly retentionSeconds: number;

  constructor(options: DynamoStoreOptions) {
    this.table = options.tableName;
    this.client = options.client;
    this.retentionSeconds = options.retentionSeconds;
    this.pages = new DynamoPagedReads(this.table, this.client);
  }

  private readonly pages: DynamoPagedReads;

  sessionsBy(scope: SessionRefScope, value: string, page: PageRequest, keep?: (s: Session) => boolean) {
    return this.pages.sessionsBy(scope, value, page, keep);
  }

  sessionEventsPage(sessionId: string, page: PageRequest, type?: string): Promise<Page<DomainEvent>> {
    return this.pages.sessionEventsPage(sessionId, page, type);
  }

  poolPage(page: PageRequest): Promise<Page<PoolNumber>> {
    return this.pages.poolPage(page);
  }

  messagesPage(sessionId: string, page: PageRequest): Promise<Page<MessageLogEntry>> {
    return this.pages.messagesPage(sessionId, page);
  }

  async append(events: readonly DomainEvent[], options: AppendOptions = {}): Promise<void> {
    await appendToDynamo(this.client, this.table, events, {
      ...options,
      retentionSeconds: this.retentionSeconds,
    });
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
      expiresAt: (i.expiresAt as number | undefined) ?? null,
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
