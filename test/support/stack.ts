import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { SQSClient } from "@aws-sdk/client-sqs";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import type { MiddlewareStack } from "@smithy/types";
import {
  LOCAL_CREDENTIALS,
  LOCAL_REGION,
  type ProvisionedQueue,
  provisionQueue,
  provisionTable,
  startDynamoLocal,
  startSqsLocal,
} from "../../local/aws-local.ts";
import { DynamoStore } from "../../shared/adapters/dynamo-store.ts";
import { newId } from "../../shared/adapters/ids.ts";

/** Real DynamoDB Local and SQS server for one test file; each `fresh()` gets its own table and queue. */
export async function startLocalAws() {
  const [dynamo, sqs] = await Promise.all([startDynamoLocal(), startSqsLocal()]);
  const raw = new DynamoDBClient({
    endpoint: dynamo.endpoint,
    region: LOCAL_REGION,
    credentials: LOCAL_CREDENTIALS,
  });
  const doc = DynamoDBDocumentClient.from(raw, { marshallOptions: { removeUndefinedValues: true } });
  const sqsClient = new SQSClient({
    endpoint: sqs.endpoint,
    region: LOCAL_REGION,
    credentials: LOCAL_CREDENTIALS,
  });
  return {
    dynamo,
    sqs,
    doc,
    sqsClient,
    /** Environment that points the production composition roots at these servers. */
    env: (tableName: string, queue: ProvisionedQueue): Record<string, string> => ({
      AWS_REGION: LOCAL_REGION,
      AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
      AWS_ENDPOINT_URL_SQS: sqs.endpoint,
      TABLE_NAME: tableName,
      FORWARD_QUEUE_URL: queue.queueUrl,
    }),
    async fresh(options: { visibilityTimeoutSeconds?: number; maxReceiveCount?: number } = {}) {
      const tableName = newId("t");
      await provisionTable(dynamo.endpoint, tableName);
      const queue = await provisionQueue(sqs.endpoint, tableName, options);
      const store = new DynamoStore({ tableName, client: doc, retentionSeconds: 3600 });
      return { tableName, queue, store };
    },
    async stop() {
      raw.destroy();
      sqsClient.destroy();
      await Promise.all([dynamo.stop(), sqs.stop()]);
    },
  };
}

/**
 * Records the name of every command the client sends, without its `Command` suffix (e.g. "GetItem"), in
 * order: call counts are behaviour a test may pin, where timings are not.
 */
export function recordCalls<I extends object, O extends object>(client: {
  middlewareStack: MiddlewareStack<I, O>;
}): string[] {
  const calls: string[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      calls.push(String(context.commandName).replace(/Command$/, ""));
      return next(args);
    },
    { step: "initialize", name: "record-calls" },
  );
  return calls;
}
