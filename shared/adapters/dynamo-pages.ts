import {
  BatchGetCommand,
  type DynamoDBDocumentClient,
  QueryCommand,
  type QueryCommandInput,
} from "@aws-sdk/lib-dynamodb";
import type { PoolNumber } from "../domain/allocation.ts";
import { InvalidPageKeyError } from "../domain/errors.ts";
import type { DomainEvent } from "../domain/events.ts";
import { keyOfItem } from "../domain/keys.ts";
import type { E164 } from "../domain/phone.ts";
import { itemKeys } from "../domain/projection.ts";
import { lookupKeys } from "../domain/projection-lookups.ts";
import { messageLogKeys } from "../domain/projection-messages.ts";
import type { Session } from "../domain/session.ts";
import type { MessageLogEntry, Page, PagedReads, PageKey, PageRequest, SessionRefScope } from "../ports.ts";
import { toDomainEvent, toSession } from "./item-views.ts";

type Item = Record<string, unknown>;

/** Query rounds per page when a filter drops items: a page may come back short, never empty-handed forever. */
const MAX_ROUNDS = 10;
const BATCH_GET_SIZE = 100;
const BASE_KEY = ["pk", "sk"];
const GSI1_KEY = ["pk", "sk", "gsi1pk", "gsi1sk"];

interface PageSpec<T> {
  query: Omit<QueryCommandInput, "TableName" | "ExclusiveStartKey" | "Limit">;
  /** The attributes of the key DynamoDB resumes from (the base table's, plus the index's). */
  keyFields: string[];
  /** The partition the query reads: a page key naming another one is refused. */
  partition: { field: string; value: string };
  page: PageRequest;
  /** Items to what the page serves; undefined drops one (a filter). */
  map: (items: Item[]) => Promise<(T | undefined)[]>;
}

/**
 * The paged reads of the product API over the one table. A page holds at most `limit` items and at most
 * `maxBytes` of them as JSON; `next` is the key of the last item served, and absent only when nothing is
 * left (the page reads one item ahead to know).
 */
export class DynamoPagedReads implements PagedReads {
  constructor(
    private readonly table: string,
    private readonly client: DynamoDBDocumentClient,
    private readonly now: () => number = Date.now,
  ) {}

  async sessionsBy(
    scope: SessionRefScope,
    value: string,
    page: PageRequest,
    keep: (session: Session) => boolean = () => true,
  ): Promise<Page<Session>> {
    const pk = lookupKeys.refPartition(scope, value);
    return this.collect({
      query: {
        KeyConditionExpression: "pk = :pk",
        ExpressionAttributeValues: { ":pk": pk },
        ScanIndexForward: false,
        ConsistentRead: true,
      },
      keyFields: BASE_KEY,
      partition: { field: "pk", value: pk },
      page,
      map: async (refs) => {
        const sessions = await this.batchGet(refs.map((r) => itemKeys.session(String(r.sessionId))));
        return refs.map((r) => {
          const item = sessions.get(keyOfItem(itemKeys.session(String(r.sessionId))));
          const session = item && toSession(item);
          return session && keep(session) ? session : undefined;
        });
      },
    });
  }

  async sessionEventsPage(sessionId: string, page: PageRequest, type?: string): Promise<Page<DomainEvent>> {
    const pk = itemKeys.session(sessionId).pk;
    return this.collect({
      query: {
        KeyConditionExpression: "pk = :pk AND begins_with(sk, :prefix)",
        ...(type ? { FilterExpression: "#type = :type", ExpressionAttributeNames: { "#type": "type" } } : {}),
        ExpressionAttributeValues: { ":pk": pk, ":prefix": "EVENT#", ...(type ? { ":type": type } : {}) },
        ConsistentRead: true,
      },
      keyFields: BASE_KEY,
      partition: { field: "pk", value: pk },
      page,
      map: async (items) => items.map(toDomainEvent),
    });
  }

  async poolPage(page: PageRequest): Promise<Page<PoolNumber>> {
    return this.collect({
      query: {
        KeyConditionExpression: "pk = :pk AND begins_with(sk, :prefix)",
        ExpressionAttributeValues: { ":pk": "POOL", ":prefix": "NUMBER#" },
        ConsistentRead: true,
      },
      keyFields: BASE_KEY,
      partition: { field: "pk", value: "POOL" },
      page,
      map: async (items) =>
        items.map((i) => ({
          phoneNumber: i.phoneNumber as E164,
          status: i.status as PoolNumber["status"],
          callingCode: i.callingCode as string,
          load: Number(i.load ?? 0),
        })),
    });
  }

  async messagesPage(sessionId: string, page: PageRequest): Promise<Page<MessageLogEntry>> {
    const pk = messageLogKeys.indexPartition(sessionId);
    return this.collect({
      query: {
        IndexName: "gsi1",
        KeyConditionExpression: "gsi1pk = :pk",
        ExpressionAttributeValues: { ":pk": pk },
      },
      keyFields: GSI1_KEY,
      partition: { field: "gsi1pk", value: pk },
      page,
      map: async (entries) => {
        const messages = await this.batchGet(entries.map((e) => itemKeys.message(String(e.messageId))));
        const nowSeconds = this.now() / 1000;
        return entries.map((e): MessageLogEntry => {
          const message = messages.get(keyOfItem(itemKeys.message(String(e.messageId))));
          // DynamoDB's TTL deletes late: a body past its retention is not served. An erased body, or one never
          // kept (a keyword), is gone too: null, never an empty text.
          const retained =
            message &&
            typeof message.body === "string" &&
            !message.erasedAt &&
            !(typeof message.ttl === "number" && message.ttl <= nowSeconds);
          return {
            messageId: String(e.messageId),
            source: (e.source as MessageLogEntry["source"]) ?? "sms",
            from: (e.from as E164 | null | undefined) ?? null,
            to: (e.to as E164 | undefined) ?? null,
            body: retained ? String(message.body) : null,
            mediaCount: Number(e.mediaCount ?? 0),
            status: String(e.status ?? "received"),
            receivedAt: String(e.receivedAt),
            forwardedAt: (e.forwardedAt as string | undefined) ?? null,
          };
        });
      },
    });
  }

  private async collect<T>(spec: PageSpec<T>): Promise<Page<T>> {
    const { limit, maxBytes } = spec.page;
    let start = spec.page.after;
    if (start !== undefined) checkKey(start, spec);
    const served: { value: T; raw: Item }[] = [];
    let bytes = 2;
    const keyOf = (raw: Item): PageKey =>
      Object.fromEntries(spec.keyFields.map((f) => [f, raw[f] as string | number]));
    const done = () => ({ items: served.map((s) => s.value), next: undefined });
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const result = await this.client.send(
        new QueryCommand({
          ...spec.query,
          TableName: this.table,
          ExclusiveStartKey: start,
          // One more than the page needs: seeing it is how the last page knows it is the last.
          Limit: Math.min(1000, limit + 1 - served.length),
        }),
      );
      const raws = result.Items ?? [];
      const mapped = await spec.map(raws);
      for (const [i, raw] of raws.entries()) {
        const value = mapped[i];
        if (value === undefined) continue;
        const size = Buffer.byteLength(JSON.stringify(value)) + 1;
        const last = served.at(-1);
        if (last && (served.length >= limit || bytes + size > maxBytes))
          return { items: served.map((s) => s.value), next: keyOf(last.raw) };
        served.push({ value, raw });
        bytes += size;
      }
      start = result.LastEvaluatedKey as PageKey | undefined;
      if (!start) return done();
    }
    return { items: served.map((s) => s.value), next: start };
  }

  /** Strongly consistent reads of many items, 100 keys a call; found items by `keyOfItem`. */
  async batchGet(keys: readonly { pk: string; sk: string }[]): Promise<Map<string, Item>> {
    const found = new Map<string, Item>();
    const unique = [...new Map(keys.map((k) => [keyOfItem(k), { pk: k.pk, sk: k.sk }])).values()];
    for (let i = 0; i < unique.length; i += BATCH_GET_SIZE) {
      let request: Record<string, { Keys: Item[]; ConsistentRead?: boolean }> | undefined = {
        [this.table]: { Keys: unique.slice(i, i + BATCH_GET_SIZE), ConsistentRead: true },
      };
      for (let attempt = 0; request && Object.keys(request).length && attempt < 8; attempt++) {
        if (attempt) await new Promise((r) => setTimeout(r, 20 * 2 ** attempt));
        const result = await this.client.send(new BatchGetCommand({ RequestItems: request }));
        for (const item of result.Responses?.[this.table] ?? []) found.set(keyOfItem(item), item);
        request = result.UnprocessedKeys as typeof request;
      }
      if (request && Object.keys(request).length) throw new Error("BatchGetItem left keys unprocessed");
    }
    return found;
  }
}

function checkKey(key: PageKey, spec: { keyFields: string[]; partition: { field: string; value: string } }) {
  const shapeOk = spec.keyFields.every((f) => ["string", "number"].includes(typeof key[f]));
  const extra = Object.keys(key).some((f) => !spec.keyFields.includes(f));
  if (!shapeOk || extra || key[spec.partition.field] !== spec.partition.value)
    throw new InvalidPageKeyError();
}
