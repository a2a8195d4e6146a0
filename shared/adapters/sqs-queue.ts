import { SendMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
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
