import { Duration, RemovalPolicy } from "aws-cdk-lib";
import {
  type Attribute,
  AttributeType,
  BillingMode,
  StreamViewType,
  Table,
  TableEncryption,
} from "aws-cdk-lib/aws-dynamodb";
import type { IKey } from "aws-cdk-lib/aws-kms";
import { Queue, QueueEncryption } from "aws-cdk-lib/aws-sqs";
import type { Construct } from "constructs";
import type { KeyAttribute, QueueDefinition, TableDefinition } from "../../shared/resources.ts";

const attribute = (key: KeyAttribute): Attribute => ({
  name: key.name,
  type: key.type === "S" ? AttributeType.STRING : AttributeType.NUMBER,
});

/**
 * What happens to data on delete: production retains it (and the table is deletion-protected); a
 * throw-away stage may be destroyed.
 */
export interface DataLifecycle {
  removalPolicy: RemovalPolicy;
  deletionProtection: boolean;
}

export const lifecycleFor = (production: boolean): DataLifecycle =>
  production
    ? { removalPolicy: RemovalPolicy.RETAIN, deletionProtection: true }
    : { removalPolicy: RemovalPolicy.DESTROY, deletionProtection: false };

/**
 * A DynamoDB table built from a `TableDefinition` (the object the embedded stack and integration tests
 * provision from): on-demand, point-in-time recovery, TTL, stream, customer-managed KMS key; retained and
 * deletion-protected in production.
 */
export function tableFromDefinition(
  scope: Construct,
  def: TableDefinition,
  key: IKey,
  lifecycle: DataLifecycle = lifecycleFor(true),
): Table {
  // Table rather than TableV2: TableV2 cannot render a customer-managed key in a region-agnostic stack,
  // and the stacks must synthesize offline without an account or region.
  const table = new Table(scope, def.id, {
    partitionKey: attribute(def.partitionKey),
    sortKey: attribute(def.sortKey),
    timeToLiveAttribute: def.timeToLiveAttribute,
    stream: StreamViewType[def.stream],
    billingMode: BillingMode.PAY_PER_REQUEST,
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    encryption: TableEncryption.CUSTOMER_MANAGED,
    encryptionKey: key,
    deletionProtection: lifecycle.deletionProtection,
    removalPolicy: lifecycle.removalPolicy,
  });
  for (const gsi of def.globalSecondaryIndexes) {
    table.addGlobalSecondaryIndex({
      indexName: gsi.indexName,
      partitionKey: attribute(gsi.partitionKey),
      sortKey: attribute(gsi.sortKey),
    });
  }
  return table;
}

/**
 * A FIFO queue and its FIFO dead-letter queue built from a `QueueDefinition`: SSE-KMS with the given key,
 * TLS-only access policy, redrive after `deadLetter.maxReceiveCount` receives; retained in production.
 */
export function fifoQueueFromDefinition(
  scope: Construct,
  def: QueueDefinition,
  key: IKey,
  lifecycle: DataLifecycle = lifecycleFor(true),
): { queue: Queue; deadLetterQueue: Queue } {
  const secure = {
    fifo: def.fifo,
    contentBasedDeduplication: def.contentBasedDeduplication,
    encryption: QueueEncryption.KMS,
    encryptionMasterKey: key,
    dataKeyReuse: Duration.minutes(5),
    enforceSSL: true,
    removalPolicy: lifecycle.removalPolicy,
  };
  const deadLetterQueue = new Queue(scope, def.deadLetter.id, {
    ...secure,
    retentionPeriod: Duration.seconds(def.deadLetter.retentionSeconds),
  });
  const queue = new Queue(scope, def.id, {
    ...secure,
    visibilityTimeout: Duration.seconds(def.visibilityTimeoutSeconds),
    retentionPeriod: Duration.seconds(def.retentionSeconds),
    deadLetterQueue: { queue: deadLetterQueue, maxReceiveCount: def.deadLetter.maxReceiveCount },
  });
  return { queue, deadLetterQueue };
}
