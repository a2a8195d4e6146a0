/**
 * The one definition of every table, queue and route. CDK (infra/), the embedded stack (local/) and the
 * integration tests all build their resources from these objects; nothing here imports AWS code.
 */

export interface KeyAttribute {
  name: string;
  type: "S" | "N";
}

export interface TableDefinition {
  id: string;
  partitionKey: KeyAttribute;
  sortKey: KeyAttribute;
  timeToLiveAttribute: string;
  stream: "NEW_IMAGE";
  globalSecondaryIndexes: { indexName: string; partitionKey: KeyAttribute; sortKey: KeyAttribute }[];
}

/** Single-table design, documented in docs/storage.md. */
export const mainTable: TableDefinition = {
  id: "Table",
  partitionKey: { name: "pk", type: "S" },
  sortKey: { name: "sk", type: "S" },
  timeToLiveAttribute: "ttl",
  stream: "NEW_IMAGE",
  globalSecondaryIndexes: [
    {
      // Sparse and overloaded: open sessions carry gsi1pk "OPEN#<shard>" (gsi1sk = expiresAt, for the recycler);
      // message log entries carry "MESSAGES#<sessionId>" (gsi1sk = receivedAt, for GET /sessions/{id}/messages).
      indexName: "gsi1",
      partitionKey: { name: "gsi1pk", type: "S" },
      sortKey: { name: "gsi1sk", type: "S" },
    },
  ],
};

export interface QueueDefinition {
  id: string;
  fifo: true;
  contentBasedDeduplication: false;
  /** Seconds; Lambda's guidance is at least 6x the consumer's timeout. */
  visibilityTimeoutSeconds: number;
  retentionSeconds: number;
  deadLetter: { id: string; maxReceiveCount: number; retentionSeconds: number };
}

export const forwardQueue: QueueDefinition = {
  id: "ForwardQueue",
  fifo: true,
  contentBasedDeduplication: false,
  visibilityTimeoutSeconds: 180,
  retentionSeconds: 4 * 24 * 3600,
  deadLetter: { id: "ForwardDlq", maxReceiveCount: 6, retentionSeconds: 14 * 24 * 3600 },
};

/**
 * The forward queue → forward function mapping (CDK's event source, and the embedded stack's SQS poller).
 * A batch is at most 10 records on a FIFO queue; the function processes its sessions concurrently.
 */
export const forwardConsumer = {
  batchSize: 10,
  /**
   * Invocations the embedded stack runs at once. In AWS the mapping's `maxConcurrency` is sized from the
   * target load instead (`infra/settings.ts`).
   */
  localConcurrency: 4,
};

export type FunctionName = "allocate" | "inbound" | "forward" | "recycler" | "publisher";

export interface FunctionDefinition {
  name: FunctionName;
  entry: string;
  timeoutSeconds: number;
  memoryMb: number;
}

export const functions: Record<FunctionName, FunctionDefinition> = {
  allocate: { name: "allocate", entry: "functions/allocate/handler.ts", timeoutSeconds: 10, memoryMb: 512 },
  inbound: { name: "inbound", entry: "functions/inbound/handler.ts", timeoutSeconds: 10, memoryMb: 512 },
  forward: { name: "forward", entry: "functions/forward/handler.ts", timeoutSeconds: 30, memoryMb: 512 },
  recycler: { name: "recycler", entry: "functions/recycler/handler.ts", timeoutSeconds: 60, memoryMb: 512 },
  publisher: {
    name: "publisher",
    entry: "functions/publisher/handler.ts",
    timeoutSeconds: 30,
    memoryMb: 256,
  },
};

export interface RouteDefinition {
  method: "GET" | "POST" | "PATCH" | "DELETE";
  path: string;
  function: FunctionName;
  /** product routes are IAM-authorized in AWS (bearer token locally); twilio routes check the signature. */
  auth: "product" | "twilio" | "none";
  /** Why a route without auth may be public (the cdk-nag suppression's reason). */
  publicBecause?: string;
}

export const routes: RouteDefinition[] = [
  { method: "POST", path: "/twilio/sms", function: "inbound", auth: "twilio" },
  { method: "POST", path: "/twilio/voice", function: "inbound", auth: "twilio" },
  { method: "POST", path: "/twilio/status", function: "inbound", auth: "twilio" },
  { method: "POST", path: "/sessions", function: "allocate", auth: "product" },
  { method: "GET", path: "/sessions", function: "allocate", auth: "product" },
  { method: "GET", path: "/sessions/{id}", function: "allocate", auth: "product" },
  { method: "PATCH", path: "/sessions/{id}", function: "allocate", auth: "product" },
  { method: "DELETE", path: "/sessions/{id}", function: "allocate", auth: "product" },
  { method: "POST", path: "/sessions/{id}/messages", function: "allocate", auth: "product" },
  { method: "GET", path: "/sessions/{id}/events", function: "allocate", auth: "product" },
  { method: "GET", path: "/sessions/{id}/messages", function: "allocate", auth: "product" },
  { method: "POST", path: "/numbers", function: "allocate", auth: "product" },
  { method: "GET", path: "/numbers", function: "allocate", auth: "product" },
  { method: "DELETE", path: "/numbers/{e164}", function: "allocate", auth: "product" },
  { method: "GET", path: "/participants/{e164}", function: "allocate", auth: "product" },
  { method: "DELETE", path: "/participants/{e164}", function: "allocate", auth: "product" },
  { method: "GET", path: "/health", function: "allocate", auth: "none" },
  {
    method: "GET",
    path: "/openapi.json",
    function: "allocate",
    auth: "none",
    publicBecause:
      "The API's OpenAPI description: read-only, the same document that is committed in the repository; " +
      "no data, no secrets. Clients and code generators fetch it without credentials.",
  },
];

/**
 * The table stream → publisher mapping (CDK's event source, and the embedded stack's stream poller):
 * retries of a failing batch before it is handed to the on-failure queue `failuresQueueId`.
 */
export const publisherStream = {
  batchSize: 100,
  retryAttempts: 10,
  failuresQueueId: "PublisherFailures",
};

/** EventBridge schedule for the recycler, and the domain-event bus. */
export const recyclerSchedule = { id: "RecyclerSchedule", rateMinutes: 1 };
export const eventBus = { id: "EventBus", name: "maskline", source: "maskline" };
