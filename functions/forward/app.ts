import { processPartialResponse, SqsFifoPartialProcessorAsync } from "@aws-lambda-powertools/batch";
import type { Logger } from "@aws-lambda-powertools/logger";
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from "aws-lambda";
import { z } from "zod";
import type { ForwardService } from "../../shared/app/forward.ts";

const forwardJob = z.object({ messageId: z.string().min(1), sessionId: z.string().min(1) });

/**
 * SQS FIFO consumer. Records of one session are processed in order; a record that fails stops the later
 * records of its session in this batch (they come back, in order, with it) but not other sessions'.
 */
export function createForwardHandler({ service, logger }: { service: ForwardService; logger: Logger }) {
  const processor = new SqsFifoPartialProcessorAsync();
  const forwardRecord = async (record: SQSRecord) => {
    const job = forwardJob.parse(JSON.parse(record.body));
    // Every line about this record carries its message id (the MessageSid of an inbound text).
    logger.setCorrelationId(job.messageId);
    const started = Date.now();
    const outcome = await service.forward(job);
    logger.info("forward", {
      messageId: job.messageId,
      sessionId: job.sessionId,
      outcome,
      receiveCount: record.attributes.ApproximateReceiveCount,
      ms: Date.now() - started,
    });
  };
  return async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> =>
    processPartialResponse(event, forwardRecord, processor, {
      context,
      skipGroupOnError: true,
      throwOnFullBatchFailure: false,
    });
}
