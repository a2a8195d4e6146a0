import {
  CreateTableCommand,
  DescribeTableCommand,
  type DynamoDBClient,
  ResourceNotFoundException,
  UpdateTimeToLiveCommand,
  waitUntilTableExists,
} from "@aws-sdk/client-dynamodb";
import { BatchWriteCommand, type DynamoDBDocumentClient, ScanCommand } from "@aws-sdk/lib-dynamodb";
import { createTableInput } from "../local/aws-local.ts";
import type { Item } from "../shared/domain/projection.ts";
import { type RebuildResult, rebuildFromItems } from "../shared/rebuild.ts";
import { mainTable } from "../shared/resources.ts";

/**
 * The DynamoDB side of a rebuild (the rule itself is shared/rebuild.ts): read a table whole, fold its events,
 * compare, and optionally write the rebuilt items into a NEW table. The live table is only ever scanned.
 */

export class TableNotFoundError extends Error {
  constructor(readonly tableName: string) {
    super(`table "${tableName}" does not exist`);
    this.name = "TableNotFoundError";
  }
}

export async function tableExists(client: DynamoDBClient, tableName: string): Promise<boolean> {
  try {
    await client.send(new DescribeTableCommand({ TableName: tableName }));
    return true;
  } catch (error) {
    if (error instanceof ResourceNotFoundException) return false;
    throw error;
  }
}

/** Every item of the table: a consistent-read Scan, page by page. */
export async function scanTable(doc: DynamoDBDocumentClient, tableName: string): Promise<Item[]> {
  const items: Item[] = [];
  let ExclusiveStartKey: Item | undefined;
  do {
    const page = await doc.send(
      new ScanCommand({ TableName: tableName, ConsistentRead: true, ExclusiveStartKey }),
    );
    items.push(...(page.Items ?? []));
    ExclusiveStartKey = page.LastEvaluatedKey;
  } while (ExclusiveStartKey);
  return items;
}

/** `<table>-rebuilt-<UTC timestamp>`: a new name each run, never the live table's. */
export function rebuiltTableName(tableName: string, now: number): string {
  const stamp = new Date(now).toISOString().replace(/[-:]/g, "").replace(/\.\d+/, "");
  return `${tableName}-rebuilt-${stamp}`;
}

/** Creates the table from the same definition as the live one (keys, index, TTL) and waits until active. */
export async function createRebuiltTable(client: DynamoDBClient, tableName: string): Promise<void> {
  await client.send(new CreateTableCommand(createTableInput(mainTable, tableName)));
  await waitUntilTableExists({ client, maxWaitTime: 300 }, { TableName: tableName });
  await client.send(
    new UpdateTimeToLiveCommand({
      TableName: tableName,
      TimeToLiveSpecification: { AttributeName: mainTable.timeToLiveAttribute, Enabled: true },
    }),
  );
}

/** BatchWriteItem in chunks of 25, retrying what DynamoDB leaves unprocessed. */
export async function writeItems(
  doc: DynamoDBDocumentClient,
  tableName: string,
  items: readonly Item[],
): Promise<void> {
  for (let i = 0; i < items.length; i += 25) {
    let requests = items.slice(i, i + 25).map((Item) => ({ PutRequest: { Item } }));
    for (let attempt = 0; requests.length > 0; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, Math.min(2000, 50 * 2 ** attempt)));
      const result = await doc.send(new BatchWriteCommand({ RequestItems: { [tableName]: requests } }));
      requests = (result.UnprocessedItems?.[tableName] ?? []).flatMap((r) =>
        r.PutRequest?.Item ? [{ PutRequest: { Item: r.PutRequest.Item } }] : [],
      );
      if (attempt > 20 && requests.length) throw new Error(`${requests.length} items stayed unprocessed`);
    }
  }
}

export interface RebuildTableOptions {
  client: DynamoDBClient;
  doc: DynamoDBDocumentClient;
  tableName: string;
  /** MESSAGE_RETENTION_HOURS in seconds, as the live writers use it: the rebuilt message ttl. */
  retentionSeconds: number;
  /** SESSION_RETENTION_DAYS in seconds, as the live writers use it: a closed session's ttl. */
  sessionRetentionSeconds?: number;
  /** The time items with a passed ttl are judged against; now by default. */
  now?: number;
  /** Writes the rebuilt items into this new table (it must not exist); omitted: read only. */
  target?: string | undefined;
}

export interface RebuildTableResult extends RebuildResult {
  tableName: string;
  /** Items read from the live table. */
  scanned: number;
  target: string | undefined;
}

/** Scans the table, rebuilds its projections from its events, compares; writes a new table if asked. */
export async function rebuildTable(options: RebuildTableOptions): Promise<RebuildTableResult> {
  const { client, doc, tableName, target } = options;
  if (!(await tableExists(client, tableName))) throw new TableNotFoundError(tableName);
  if (target === tableName) throw new Error("the rebuilt table must be a new table, not the live one");
  const now = options.now ?? Date.now();
  const live = await scanTable(doc, tableName);
  const result = await rebuildFromItems(live, {
    retentionSeconds: options.retentionSeconds,
    ...(options.sessionRetentionSeconds ? { sessionRetentionSeconds: options.sessionRetentionSeconds } : {}),
    now,
  });
  if (target) {
    if (await tableExists(client, target)) throw new Error(`table "${target}" already exists`);
    await createRebuiltTable(client, target);
    await writeItems(doc, target, result.rebuilt);
  }
  return { ...result, tableName, scanned: live.length, target };
}
