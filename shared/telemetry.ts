/**
 * Names of Maskline's own CloudWatch metrics (Powertools EMF, namespace `Maskline`, dimension
 * `service=maskline`). The functions emit them and infra/ builds alarms and the dashboard from the same
 * constants. Nothing here imports AWS code.
 */
export const METRICS_NAMESPACE = "Maskline";
export const SERVICE_NAME = "maskline";

export const metricNames = {
  /** An inbound text accepted into a session (from MessageReceived). */
  messagesReceived: "MessagesReceived",
  /** Handed to Twilio (MessageForwarded). */
  messagesForwarded: "MessagesForwarded",
  /** Failed with a Twilio error code (MessageFailed); also emitted per `twilioErrorCode` dimension. */
  messagesFailed: "MessagesFailed",
  /** Not relayed (MessageBlocked); also per `reason` dimension. */
  messagesBlocked: "MessagesBlocked",
  /** MessageBlocked with reason rate-limit. */
  messagesRateLimited: "MessagesRateLimited",
  /** An opt-out keyword (MessageBlocked reason opt-out, or ParticipantOptedOut). */
  optOuts: "OptOuts",
  /** A signed webhook refused for its identifiers (malformed SID, another AccountSid): 400. */
  invalidTwilioRequests: "InvalidTwilioRequests",
  /** A webhook whose X-Twilio-Signature matched neither token (403). */
  signatureRejected: "SignatureRejected",
  /** Stream records whose event failed its schema and were set aside (publisher). */
  eventsSetAside: "EventsSetAside",
  /** Events the publisher could not put on the bus after its retries (the batch is retried by Lambda). */
  publishFailures: "PublishFailures",
  /** Pool health (recycler, each run): percent of numbers in use, headroom, open pairs per active number. */
  poolUtilization: "PoolUtilization",
  poolHeadroom: "PoolHeadroom",
  pairsPerNumber: "PairsPerNumber",
} as const;

export type MetricName = (typeof metricNames)[keyof typeof metricNames];
