import type { AttributeValue } from "@aws-sdk/client-dynamodb";
import {
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import { unmarshall } from "@aws-sdk/util-dynamodb";
import type { Holding, PoolNumber } from "../domain/allocation.ts";
import type { Change } from "../domain/changes.ts";
import type { Consent } from "../domain/consent.ts";
import type { DomainEvent } from "../domain/events.ts";
import type { HubThread } from "../domain/hub.ts";
import { keyOfItem } from "../domain/keys.ts";
import { claimChange, claimOutcome, type MessageRecord, releaseChange } from "../domain/message.ts";
import type { E164 } from "../domain/phone.ts";
import { type ItemKey, itemKeys, OPEN_SHARDS } from "../domain/projection.ts";
import type { Route, Session } from "../domain/session.ts";
import { trafficKeys } from "../domain/traffic.ts";
import type {
  AppendOptions,
  ClaimResult,
  MessageLogEntry,
  Page,
  PagedReads,
  PageRequest,
  SessionRefScope,
  StorePorts,
} from "../ports.ts";
import {
  appendToDynamo,
  resendOnConflict,
  sendTransaction,
  toTransactItem,
  toUpdateInput,
} from "./dynamo-append.ts";
import { DynamoPagedReads } from "./dynamo-pages.ts";
import {
  mergeByExpiry,
  toConsent,
  toDomainEvent,
  toHolding,
  toHubThread,
  toMessage,
  toPoolNumber,
  toRoute,
  toSession,
} from "./item-views.ts";

type Item = Record<string, unknown>;
const keys = itemKeys;
/** Single-item rewrites in flight at once. */
const REWRITE_CONCURRENCY = 16;

export interface DynamoStoreOptions {
  tableName: string;
  client: DynamoDBDocumentClient;
  /** How long message bodies are kept (DynamoDB TTL on the message item). */
  retentionSeconds: number;
  /** How long a closed session's data is kept (SESSION_RETENTION_DAYS); 90 days by default. */
  sessionRetentionSeconds?: number;
}

/**
 * The DynamoDB adapter of every store port: one table, events and projections written together (the
 * projection rules are shared/domain/projection.ts; dynamo-append.ts translates them), reads by key.
 */
export class DynamoStore implements StorePorts, PagedReads {
  private readonly table: string;
  private readonly client: DynamoDBDocumentClient;
  private readonly retentionSeconds: number;
  private readonly sessionRetentionSeconds: number | undefined;

  constructor(options: DynamoStoreOptions) {
    this.table = options.tableName;
    this.client = options.client;
    this.retentionSeconds = options.retentionSeconds;
    this.sessionRetentionSeconds = options.sessionRetentionSeconds;
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
      ...(this.sessionRetentionSeconds ? { sessionRetentionSeconds: this.sessionRetentionSeconds } : {}),
    });
  }

  async getSession(sessionId: string): Promise<Session | undefined> {
    const item = await this.getItem(keys.session(sessionId));
    return item && toSession(item);
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
    const item = await this.getItem(keys.pair(senderNumber, proxyNumber));
    return item && toRoute(item, proxyNumber, senderNumber);
  }

  async holdingsOf(participant: E164): Promise<Holding[]> {
    const items = await this.queryAll({
      KeyConditionExpression: "pk = :pk",
      ExpressionAttributeValues: { ":pk": `PARTICIPANT#${participant}` },
      ConsistentRead: true,
    });
    return items.map(toHolding);
  }

  async hubThread(participant: E164, tag: string): Promise<HubThread | undefined> {
    const item = await this.getItem(keys.hubThread(participant, tag));
    return item && toHubThread(item);
  }

  async hubThreadsOf(participant: E164): Promise<HubThread[]> {
    const items = await this.queryAll({
      KeyConditionExpression: "pk = :pk AND begins_with(sk, :tag)",
      ExpressionAttributeValues: { ":pk": keys.hubThread(participant, "").pk, ":tag": "TAG#" },
      ConsistentRead: true,
    });
    return items.map(toHubThread);
  }

  async hubNumberOf(participant: E164): Promise<E164 | undefined> {
    return (await this.getItem(keys.hubNumber(participant)))?.hubNumber as E164 | undefined;
  }

  async listPool(): Promise<PoolNumber[]> {
    const items = await this.queryAll({
      KeyConditionExpression: "pk = :pk AND begins_with(sk, :prefix)",
      ExpressionAttributeValues: { ":pk": "POOL", ":prefix": "NUMBER#" },
      ConsistentRead: true,
    });
    return items.map(toPoolNumber);
  }

  async partitionItems(pk: string): Promise<(Item & ItemKey)[]> {
    return (await this.queryAll({
      KeyConditionExpression: "pk = :pk",
      ExpressionAttributeValues: { ":pk": pk },
      ConsistentRead: true,
    })) as (Item & ItemKey)[];
  }

  async itemAt(key: ItemKey): Promise<(Item & ItemKey) | undefined> {
    return (await this.getItem(key)) as (Item & ItemKey) | undefined;
  }

  async itemsAt(keys: readonly ItemKey[]): Promise<(Item & ItemKey)[]> {
    return [...(await this.pages.batchGet(keys)).values()] as (Item & ItemKey)[];
  }

  /**
   * Groups of several changes (a move) go out in transactions of at most 100 items; a group never splits.
   * A group of one is a plain write, a few in flight at a time: one item is atomic by itself, and a
   * transactional write costs twice the write units (the retention stamps after every close are such
   * groups). Both are sent again when a transaction held an item.
   */
  async rewrite(groups: readonly (readonly Change[])[]): Promise<void> {
    const singles = groups.flatMap((group) => (group.length === 1 ? group : []));
    let next = 0;
    const write = async () => {
      for (let change = singles[next++]; change; change = singles[next++]) {
        const { Update, Put, Delete } = toTransactItem(change, this.table);
        await resendOnConflict(() =>
          Update
            ? this.client.send(new UpdateCommand(Update))
            : Put
              ? this.client.send(new PutCommand(Put))
              : this.client.send(new DeleteCommand(Delete as NonNullable<typeof Delete>)),
        );
      }
    };
    await Promise.all(Array.from({ length: Math.min(REWRITE_CONCURRENCY, singles.length) }, write));
    let batch: Change[] = [];
    const flush = async () => {
      if (batch.length)
        await sendTransaction(
          this.client,
          batch.map((c) => toTransactItem(c, this.table)),
        );
      batch = [];
    };
    for (const group of groups) {
      if (group.length < 2) continue;
      if (batch.length + group.length > 100) await flush();
      batch.push(...group);
    }
    await flush();
  }

  async getConsent(phoneNumber: string): Promise<Consent | undefined> {
    const item = await this.getItem(itemKeys.consent(phoneNumber));
    return item && toConsent(item);
  }

  async spreadTicket(participant: E164): Promise<number> {
    const { Attributes } = await this.client.send(
      new UpdateCommand({
        TableName: this.table,
        Key: { ...itemKeys.spreadTicket(participant) },
        UpdateExpression: "SET #kind = :kind, #ttl = :ttl ADD #n :one",
        ExpressionAttributeNames: { "#kind": "kind", "#ttl": "ttl", "#n": "ticket" },
        // Kept a day after its last use: a counter that starts again from 1 spreads just as well.
        ExpressionAttributeValues: {
          ":kind": "spread-ticket",
          ":ttl": Math.floor(Date.now() / 1000) + 24 * 3600,
          ":one": 1,
        },
        ReturnValues: "UPDATED_NEW",
      }),
    );
    return Number(Attributes?.ticket);
  }

  async getConsents(phones: readonly string[]): Promise<(Consent | undefined)[]> {
    const found = await this.pages.batchGet(phones.map((phone) => itemKeys.consent(phone)));
    return phones.map((phone) => {
      const item = found.get(keyOfItem(itemKeys.consent(phone)));
      return item && toConsent(item);
    });
  }

  async ownsNumber(phoneNumber: E164): Promise<boolean> {
    return (await this.getItem(keys.number(phoneNumber))) !== undefined;
  }

  async lastAutoReply(proxyNumber: E164, sender: string): Promise<number | undefined> {
    const item = await this.getItem(trafficKeys.autoReply(proxyNumber, sender));
    return typeof item?.lastReplyAt === "number" ? item.lastReplyAt : undefined;
  }

  private async getItem(key: ItemKey) {
    const { Item } = await this.client.send(
      new GetCommand({ TableName: this.table, Key: { ...key }, ConsistentRead: true }),
    );
    return Item;
  }

  async getIdempotency(key: string) {
    const item = await this.getItem(keys.idempotency(key));
    return item && { requestHash: String(item.requestHash), result: String(item.result) };
  }

  async getMessage(messageId: string): Promise<MessageRecord | undefined> {
    const item = await this.getItem(keys.message(messageId));
    return item && toMessage(item, messageId);
  }

  async claimSend(messageId: string, now: number, staleBefore: number): Promise<ClaimResult> {
    const change = claimChange(messageId, now, staleBefore);
    try {
      const { Attributes } = await this.client.send(
        new UpdateCommand({
          ...toUpdateInput(change, this.table),
          ReturnValues: "UPDATED_OLD",
          ReturnValuesOnConditionCheckFailure: "ALL_OLD",
        }),
      );
      return claimOutcome(Attributes?.state, true);
    } catch (error) {
      if (!isConditionFailure(error)) throw error;
      // The document client leaves this item marshalled ({ S: "sending" }).
      const raw = (error as { Item?: Record<string, AttributeValue> }).Item;
      return claimOutcome(raw ? unmarshall(raw).state : undefined, false);
    }
  }

  async releaseClaim(messageId: string, claimedAt: number): Promise<void> {
    await this.client
      .send(new UpdateCommand(toUpdateInput(releaseChange(messageId, claimedAt), this.table)))
      .catch((error) => {
        if (!isConditionFailure(error)) throw error;
      });
  }

  async expiredSessions(now: number, limit: number): Promise<Session[]> {
    return this.openIndex(limit, new Date(now).toISOString());
  }

  async openSessions(limit: number): Promise<Session[]> {
    return this.openIndex(limit);
  }

  /** The sparse open-session index, sharded; below `cutoff` (expiresAt) when given. */
  private async openIndex(limit: number, cutoff?: string): Promise<Session[]> {
    const perShard = await Promise.all(
      Array.from({ length: OPEN_SHARDS }, async (_, shard) => {
        const page = await this.client.send(
          new QueryCommand({
            TableName: this.table,
            IndexName: "gsi1",
            KeyConditionExpression: cutoff ? "gsi1pk = :pk AND gsi1sk < :cutoff" : "gsi1pk = :pk",
            ExpressionAttributeValues: { ":pk": `OPEN#${shard}`, ...(cutoff ? { ":cutoff": cutoff } : {}) },
            Limit: limit,
          }),
        );
        return page.Items ?? [];
      }),
    );
    return mergeByExpiry(perShard, limit);
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

const isConditionFailure = (error: unknown) =>
  error instanceof Error && error.name === "ConditionalCheckFailedException";
