import type { Logger } from "@aws-lambda-powertools/logger";
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from "aws-lambda";
import { z } from "zod";
import { processFifoBatch } from "../../shared/adapters/fifo-batch.ts";
import type { ForwardService } from "../../shared/app/forward.ts";

const forwardJob = z.object({ messageId: z.string().min(1), sessionId: z.string().min(1) });

/**
 * SQS FIFO consumer. Records of one session are processed in order; sessions of a batch are processed
 * concurrently. A record that fails stops the later records of its session in this batch (they come
 * back, in order, with it) but not other sessions'.
 */
export function createForwardHandler({ service, logger }: { service: ForwardService; logger: Logger }) {
  const forwardRecord = async (record: SQSRecord) => {
    const job = forwardJob.parse(JSON.parse(record.body));
    const started = Date.now();
    const outcome = await service.forward(job);
    // Records run side by side, so each line names its message (the MessageSid of an inbound text)
    // itself rather than through the logger's shared correlation id.
    logger.info("forward", {
      messageId: job.messageId,
      sessionId: job.sessionId,
      outcome,
      receiveCount: record.attributes.ApproximateReceiveCount,
      ms: Date.now() - started,
    });
  };
  return async (event: SQSEvent, _context: Context): Promise<SQSBatchResponse> =>
    processFifoBatch(event, forwardRecord, {
      onFailure: (record, error) =>
        logger.warn("forward failed; the record and the rest of its session go back to the queue", {
          messageId: forwardJob.safeParse(safeJson(record.body)).data?.messageId,
          sqsMessageId: record.messageId,
          receiveCount: record.attributes.ApproximateReceiveCount,
          error: (error as Error)?.name,
        }),
    });
}

const safeJson = (text: string): unknown => {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
};
