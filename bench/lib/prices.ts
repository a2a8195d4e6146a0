/**
 * The price table the cost bench uses: AWS us-east-1 list prices (on-demand, no free tier), as published on
 * the services' pricing pages; checked 2025. Change them here, the bench prints what it used.
 */
export const PRICES = {
  /** API Gateway HTTP API: $1.00 per million requests (first 300 M/month), each 512 KB counted as one. */
  httpApiPerRequest: 1.0 / 1e6,
  /** Lambda: $0.20 per million requests. */
  lambdaPerRequest: 0.2 / 1e6,
  /** Lambda arm64 (Graviton) duration: $0.0000133334 per GB-second, billed per 1 ms. */
  lambdaArmPerGbSecond: 0.0000133334,
  /** DynamoDB on-demand: $0.625 per million write request units (since the November 2024 price cut). */
  dynamoPerWru: 0.625 / 1e6,
  /** DynamoDB on-demand: $0.125 per million read request units. */
  dynamoPerRru: 0.125 / 1e6,
  /** DynamoDB Streams reads by a Lambda trigger are free. */
  dynamoStreamReads: 0,
  /** SQS FIFO: $0.50 per million requests (each 64 KB chunk of a request counts as one). */
  sqsFifoPerRequest: 0.5 / 1e6,
  /** EventBridge custom events: $1.00 per million events put (64 KB chunks). */
  eventBridgePerEvent: 1.0 / 1e6,
  /** Twilio US SMS, long code: $0.0083 per segment, outbound and inbound alike (carrier fees extra). */
  twilioSmsPerSegment: 0.0083,
  /** A US local number: $1.15 per month. */
  twilioNumberPerMonth: 1.15,
} as const;
