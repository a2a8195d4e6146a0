import { SendMessageBatchCommand, SendMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import type { SetAsideRecord, SetAsideSink } from "../app/publisher.ts";
import type { ForwardJob, ForwardQueue } from "../ports.ts";

/** FIFO: one message group per session keeps its messages in order; the message id deduplicates. */
export class SqsForwardQueue implements ForwardQueue {
  constructor(private readonly options: { queueUrl: string; client: SQSClient }) {}

  async enqueue(job: ForwardJob): Promise<void> {
    await this.options.client.send(
      new SendMessageCommand({
        QueueUrl: this.options.queueUrl,
        MessageBody: JSON.stringify(job),
        MessageGroupId: job.sessionId,
        MessageDeduplicationId: job.messageId,
      }),
    );
  }
}

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
