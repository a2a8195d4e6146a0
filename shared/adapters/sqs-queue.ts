import { SendMessageBatchCommand, SendMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import type { SetAsideRecord, SetAsideSink } from "../app/publisher.ts";
import type { ForwardJob, ForwardQueue, ForwardQueueBatch } from "../ports.ts";

/** FIFO: one message group per session keeps its messages in order; the message id deduplicates. */
export class SqsForwardQueue implements ForwardQueue, ForwardQueueBatch {
  constructor(private readonly options: { queueUrl: string; client: SQSClient }) {}

  async enqueue(job: ForwardJob): Promise<void> {
    await this.options.client.send(
      new SendMessageCommand({ QueueUrl: this.options.queueUrl, ...entryOf(job) }),
    );
  }

  /** Ten per SendMessageBatch; entries SQS refuses, and every entry of a call that failed, are returned. */
  async enqueueAll(jobs: readonly ForwardJob[]): Promise<number[]> {
    const refused: number[] = [];
    for (let start = 0; start < jobs.length; start += 10) {
      const chunk = jobs.slice(start, start + 10);
      try {
        const result = await this.options.client.send(
          new SendMessageBatchCommand({
            QueueUrl: this.options.queueUrl,
            Entries: chunk.map((job, i) => ({ Id: String(i), ...entryOf(job) })),
          }),
        );
        for (const failed of result.Failed ?? []) refused.push(start + Number(failed.Id));
      } catch {
        refused.push(...chunk.map((_, i) => start + i));
      }
    }
    return refused;
  }
}

/** FIFO: the session is the message group, the message id deduplicates. */
const entryOf = (job: ForwardJob) => ({
  MessageBody: JSON.stringify(job),
  MessageGroupId: job.sessionId,
  MessageDeduplicationId: job.messageId,
});

/**
 * Set-aside stream records go to a standard queue (in AWS the stream mapping's on-failure queue,
 * PublisherFailures), ten per SendMessageBatch; any entry the queue refuses fails the whole call.
 */
export class SqsSetAsideSink implements SetAsideSink {
  constructor(private readonly options: { queueUrl: string; client: SQSClient }) {}

  async setAside(records: readonly SetAsideRecord[]): Promise<void> {
    for (let i = 0; i < records.length; i += 10) {
      const result = await this.options.client.send(
        new SendMessageBatchCommand({
          QueueUrl: this.options.queueUrl,
          Entries: records.slice(i, i + 10).map((record, j) => ({
            Id: String(j),
            MessageBody: JSON.stringify(record),
          })),
        }),
      );
      if (result.Failed?.length) throw new Error(`${result.Failed.length} set-aside records refused by SQS`);
    }
  }
}
