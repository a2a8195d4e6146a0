import { Logger } from "@aws-lambda-powertools/logger";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { SQSClient } from "@aws-sdk/client-sqs";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { coreConfigSchema, parseConfig } from "../config.ts";
import { DynamoStore } from "./dynamo-store.ts";

/**
 * Process-wide clients, built once per cold start and shared by invocations. Endpoints follow the SDK's own
 * AWS_ENDPOINT_URL_<SERVICE> variables, so the embedded stack runs this exact code against local servers.
 */
export const logger = new Logger({ serviceName: "maskline" });

let dynamo: DynamoDBDocumentClient | undefined;
let sqs: SQSClient | undefined;

export function documentClient(): DynamoDBDocumentClient {
  dynamo ??= DynamoDBDocumentClient.from(new DynamoDBClient({}), {
    marshallOptions: { removeUndefinedValues: true },
  });
  return dynamo;
}

export function sqsClient(): SQSClient {
  sqs ??= new SQSClient({});
  return sqs;
}

export function storeFromEnv(env: NodeJS.ProcessEnv = process.env) {
  const config = parseConfig(coreConfigSchema, env);
  const store = new DynamoStore({
    tableName: config.TABLE_NAME,
    client: documentClient(),
    retentionSeconds: config.MESSAGE_RETENTION_HOURS * 3600,
  });
  return { config, store };
}
