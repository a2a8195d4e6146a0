import type { SQSBatchResponse, SQSEvent, SQSRecord } from "aws-lambda";

/** Message groups of one batch processed at once, unless told otherwise (a FIFO batch holds at most 10). */
export const FIFO_BATCH_CONCURRENCY = 10;

export interface FifoBatchOptions {
  /** Groups processed at the same time. */
  concurrency?: number;
  /** Called for each record whose processing threw (not for the later records failed because of it). */
  onFailure?: (record: SQSRecord, error: unknown) => void;
}

/**
 * Processes an SQS FIFO batch the way its ordering allows, and answers with the partial batch failures.
 *
 * - Records of one message group run one after another, in batch order.
 * - Different groups run concurrently, at most `concurrency` at a time.
 * - When a record fails, every later record of its group in the batch is reported failed without being
 *   run: they all come back, in order, after the visibility timeout. Other groups are not affected.
 *
 * A record without a group (a standard queue) is a group of its own.
 */
export async function processFifoBatch(
  event: SQSEvent,
  run: (record: SQSRecord) => Promise<void>,
  options: FifoBatchOptions = {},
): Promise<SQSBatchResponse> {
  const groups = new Map<string, SQSRecord[]>();
  for (const record of event.Records) {
    const group = record.attributes.MessageGroupId ?? `single:${record.messageId}`;
    groups.set(group, [...(groups.get(group) ?? []), record]);
  }
  const failed = new Set<string>();
  const queue = [...groups.values()];
  const worker = async () => {
    for (let records = queue.shift(); records; records = queue.shift()) {
      for (const [i, record] of records.entries()) {
        try {
          await run(record);
        } catch (error) {
          options.onFailure?.(record, error);
          for (const later of records.slice(i)) failed.add(later.messageId);
          break;
        }
      }
    }
  };
  const workers = Math.max(1, Math.min(options.concurrency ?? FIFO_BATCH_CONCURRENCY, queue.length));
  await Promise.all(Array.from({ length: workers }, worker));
  return {
    batchItemFailures: event.Records.filter((r) => failed.has(r.messageId)).map((r) => ({
      itemIdentifier: r.messageId,
    })),
  };
}
