import { RetentionDays } from "aws-cdk-lib/aws-logs";
import type { Node } from "constructs";
import { parseConfig, sessionRetentionSchema, webhookConfigSchema } from "../shared/config.ts";

/**
 * Deploy-time knobs, read from CDK context (`cdk.json` or `-c key=value`). Everything else — names, keys,
 * timeouts, routes — comes from `shared/resources.ts`, the definitions the embedded stack and tests use too.
 */
export interface MasklineSettings {
  /** How long function logs and API access logs are kept. */
  logRetention: RetentionDays;
  /** LOG_LEVEL for Powertools logger. */
  logLevel: "DEBUG" | "INFO" | "WARN" | "ERROR";
  /**
   * The deployment stage (`-c stage=NAME`), or undefined for the unstaged deployment whose names are the
   * original ones. Names of every stack and named resource follow it (`stageNames`).
   */
  stage: string | undefined;
  /** Production keeps data on delete (RETAIN, deletion and termination protection): unstaged or `prod`. */
  production: boolean;
  /** Throttles and concurrency derived from the target load (`capacityFor`, docs/performance.md). */
  capacity: Capacity;
  /** Pool utilization (percent of numbers in use, emitted by the recycler) that raises an alarm. */
  poolUtilizationAlarmPercent: number;
  /** Optional e-mail subscribed to the alarm topic. */
  alarmEmail: string | undefined;
  /**
   * Optional public base URL (a custom domain in front of the API, with its API mapping's path if it has
   * one). Twilio signs the URL it calls, so when Twilio is pointed at a custom domain, the functions must
   * check signatures against that domain.
   */
  publicBaseUrl: string | undefined;
  /**
   * Optional HTTPS endpoint that receives every domain event through an EventBridge API destination
   * (`maskline:eventsWebhookUrl`), authenticated with a header whose value is in a Secrets Manager secret
   * (`maskline:eventsWebhookSecretArn`, JSON field `apiKey`, header `maskline:eventsWebhookHeader`).
   */
  eventsWebhook: { url: string; secretArn: string; headerName: string } | undefined;
  /**
   * The texts and traffic rules of the messaging functions (inbound, forward) by their variable names:
   * OUT_OF_SESSION_REPLY, HELP_REPLY, CONTENT_POLICY, SENDER_RATE_LIMIT… (`maskline:messaging`, a JSON
   * object). Only the variables given; the functions default the others.
   */
  messaging: Record<string, string>;
  /** How long the EventBridge archive keeps events: SESSION_RETENTION_DAYS (`maskline:sessionRetentionDays`). */
  sessionRetentionDays: number;
}

export interface Throttle {
  rateLimit: number;
  burstLimit: number;
}

export interface Capacity {
  /** The sustained forwarded messages per second the deployment is sized for. */
  targetMessagesPerSecond: number;
  /** The sustained product-API requests per second the deployment is sized for. */
  productRequestsPerSecond: number;
  /** Route throttle of POST /twilio/sms, /twilio/voice and /twilio/status (each route gets it). */
  twilio: Throttle;
  /** Route throttle of every product route and /health (and the stage default). */
  product: Throttle;
  /** Most concurrent forward invocations the SQS event source may run. */
  forwardMaxConcurrency: number;
}

/**
 * Twilio requests per forwarded message: the inbound webhook and two status callbacks (sent, delivered).
 * A platform message (POST /sessions/{id}/messages) costs one product request and the same two callbacks.
 */
export const TWILIO_REQUESTS_PER_MESSAGE = 3;
/** Headroom over the target before API Gateway answers 429 (bursts of a conversation, Twilio retries). */
export const THROTTLE_HEADROOM = 2;
/** Burst (token bucket size) as a multiple of the rate: two seconds of traffic at the throttle rate. */
export const BURST_SECONDS = 2;
/**
 * Seconds a forward invocation holds one message: DynamoDB reads and the claim (~30 ms in AWS), Twilio's
 * Messages.create (~250 ms p50, up to ~1 s at p99), and the completion transaction. 0.5 s is the planning figure.
 */
export const FORWARD_SECONDS_PER_MESSAGE = 0.5;
/** Lambda's lower bound for an SQS event source's maximum concurrency. */
export const MIN_SQS_MAX_CONCURRENCY = 2;

/** The arithmetic of docs/performance.md ("Capacity"), from the two targets to throttles and concurrency. */
export function capacityFor(target: {
  targetMessagesPerSecond: number;
  productRequestsPerSecond: number;
}): Capacity {
  const { targetMessagesPerSecond: m, productRequestsPerSecond: p } = target;
  // Platform messages also cause callbacks; they are counted in the product target, so twilio = 3·m plus
  // 2 callbacks per product request at worst.
  const twilioRate = Math.ceil((TWILIO_REQUESTS_PER_MESSAGE * m + 2 * p) * THROTTLE_HEADROOM);
  const productRate = Math.ceil(p * THROTTLE_HEADROOM);
  return {
    targetMessagesPerSecond: m,
    productRequestsPerSecond: p,
    twilio: { rateLimit: twilioRate, burstLimit: twilioRate * BURST_SECONDS },
    product: { rateLimit: productRate, burstLimit: productRate * BURST_SECONDS },
    // Little's law with the same headroom: concurrency = arrival rate x time in the function.
    forwardMaxConcurrency: Math.max(
      MIN_SQS_MAX_CONCURRENCY,
      Math.ceil((m + p) * FORWARD_SECONDS_PER_MESSAGE * THROTTLE_HEADROOM),
    ),
  };
}

/** The names a stage gives its stacks and named resources; unstaged keeps the original names. */
export interface StageNames {
  statefulStack: string;
  appStack: string;
  keyAlias: string;
  busName: string;
  dashboardName: string;
  apiName: string;
  archiveName: string;
  /** Prefix of the EventBridge connection and API destination names. */
  eventsDeliveryName: string;
}

export function stageNames(stage: string | undefined): StageNames {
  if (stage === undefined) {
    return {
      statefulStack: "MasklineStateful",
      appStack: "MasklineApp",
      keyAlias: "alias/maskline-data",
      busName: "maskline",
      dashboardName: "Maskline",
      apiName: "maskline",
      archiveName: "maskline-events",
      eventsDeliveryName: "maskline-events",
    };
  }
  return {
    statefulStack: `MasklineStateful-${stage}`,
    appStack: `MasklineApp-${stage}`,
    keyAlias: `alias/maskline-${stage}-data`,
    busName: `maskline-${stage}`,
    dashboardName: `Maskline-${stage}`,
    apiName: `maskline-${stage}`,
    archiveName: `maskline-${stage}-events`,
    eventsDeliveryName: `maskline-${stage}-events`,
  };
}

/** Stage names: lower-case letters, digits and dashes, short enough for every AWS name they go into. */
const STAGE_PATTERN = /^[a-z][a-z0-9-]{0,14}$/;

export const defaultSettings: MasklineSettings = {
  logRetention: RetentionDays.ONE_MONTH,
  logLevel: "INFO",
  stage: undefined,
  production: true,
  capacity: capacityFor({ targetMessagesPerSecond: 20, productRequestsPerSecond: 25 }),
  poolUtilizationAlarmPercent: 80,
  alarmEmail: undefined,
  publicBaseUrl: undefined,
  eventsWebhook: undefined,
  sessionRetentionDays: 90,
  messaging: {},
};

function positiveInt(node: Node, key: string, fallback: number): number {
  const raw: unknown = node.tryGetContext(key);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    throw new Error(`CDK context ${key} must be a positive integer, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function optionalString(node: Node, key: string): string | undefined {
  const raw: unknown = node.tryGetContext(key);
  if (raw === undefined || raw === "") return undefined;
  if (typeof raw !== "string") throw new Error(`CDK context ${key} must be a string`);
  return raw;
}

function retention(node: Node): RetentionDays {
  const days = positiveInt(node, "maskline:logRetentionDays", defaultSettings.logRetention);
  const allowed = Object.values(RetentionDays).filter((v): v is RetentionDays => typeof v === "number");
  const match = allowed.find((v) => v === days);
  if (match === undefined) {
    throw new Error(
      `CDK context maskline:logRetentionDays must be one of ${allowed.join(", ")} (CloudWatch Logs)`,
    );
  }
  return match;
}

function eventsWebhookFromContext(node: Node): MasklineSettings["eventsWebhook"] {
  const url = optionalString(node, "maskline:eventsWebhookUrl");
  const secretArn = optionalString(node, "maskline:eventsWebhookSecretArn");
  if (url === undefined && secretArn === undefined) return undefined;
  if (url === undefined || !/^https:\/\/[^\s]+$/.test(url)) {
    throw new Error("CDK context maskline:eventsWebhookUrl must be an https URL when events are delivered");
  }
  if (secretArn === undefined || !/^arn:aws[\w-]*:secretsmanager:/.test(secretArn)) {
    throw new Error(
      "CDK context maskline:eventsWebhookSecretArn must be the ARN of a Secrets Manager secret holding the endpoint's key",
    );
  }
  const headerName = optionalString(node, "maskline:eventsWebhookHeader") ?? "Authorization";
  if (!/^[A-Za-z0-9-]{1,64}$/.test(headerName)) {
    throw new Error("CDK context maskline:eventsWebhookHeader must be an HTTP header name");
  }
  return { url, secretArn, headerName };
}

/**
 * The variables of the messaging configuration an operator may set: the webhook schema's, without the URL
 * (the stack sets it) and the local-only switch.
 */
const messagingSchema = webhookConfigSchema.omit({
  PUBLIC_BASE_URL: true,
  LOCAL_SIGNATURE_ACCEPT_REQUEST_HOST: true,
});

function messagingFromContext(node: Node): Record<string, string> {
  const key = "maskline:messaging";
  const raw: unknown = node.tryGetContext(key);
  if (raw === undefined || raw === "") return {};
  let value: unknown = raw;
  if (typeof raw === "string") {
    try {
      value = JSON.parse(raw);
    } catch (error) {
      throw new Error(`CDK context ${key} must be a JSON object`, { cause: error });
    }
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new Error(`CDK context ${key} must be a JSON object of variable names and values`);
  const known = Object.keys(messagingSchema.shape);
  const variables: Record<string, string> = {};
  for (const [name, v] of Object.entries(value)) {
    if (!known.includes(name))
      throw new Error(`CDK context ${key}: ${name} is not one of ${known.join(", ")}`);
    variables[name] = String(v);
  }
  try {
    parseConfig(messagingSchema.strict(), variables);
  } catch (error) {
    throw new Error(`CDK context ${key}: ${(error as Error).message}`, { cause: error });
  }
  return variables;
}

function sessionRetentionDays(node: Node): number {
  const raw: unknown = node.tryGetContext("maskline:sessionRetentionDays");
  try {
    return parseConfig(sessionRetentionSchema, {
      SESSION_RETENTION_DAYS: raw === undefined ? undefined : String(raw),
    }).SESSION_RETENTION_DAYS;
  } catch (error) {
    throw new Error(
      `CDK context maskline:sessionRetentionDays (SESSION_RETENTION_DAYS) must be 1 to 3650 days, got ${JSON.stringify(raw)}`,
      { cause: error },
    );
  }
}

const logLevels = ["DEBUG", "INFO", "WARN", "ERROR"] as const;

/**
 * An https origin, optionally followed by the path of the custom domain's API mapping (plain segments, no
 * query or fragment). API Gateway leaves the mapping's path out of the `rawPath` a function sees, so the
 * functions rebuild the URL Twilio signed as this base + rawPath.
 */
const PUBLIC_BASE_URL_PATTERN = /^https:\/\/[^/?#\s]+(\/[\w.~-]+)*$/;

export function settingsFromContext(node: Node): MasklineSettings {
  const logLevel: unknown = node.tryGetContext("maskline:logLevel") ?? defaultSettings.logLevel;
  const level = logLevels.find((l) => l === logLevel);
  if (!level) throw new Error(`CDK context maskline:logLevel must be one of ${logLevels.join(", ")}`);
  const publicBaseUrl = optionalString(node, "maskline:publicBaseUrl");
  const stage = optionalString(node, "stage");
  if (stage !== undefined && !STAGE_PATTERN.test(stage)) {
    throw new Error(
      `CDK context stage must match ${STAGE_PATTERN} (lower-case letters, digits, dashes), got ${JSON.stringify(stage)}`,
    );
  }
  if (publicBaseUrl && !PUBLIC_BASE_URL_PATTERN.test(publicBaseUrl.replace(/\/$/, ""))) {
    throw new Error(
      "CDK context maskline:publicBaseUrl must be an https origin, optionally with the path of a custom " +
        "domain's API mapping, e.g. https://sms.example.com or https://api.example.com/maskline",
    );
  }
  return {
    logRetention: retention(node),
    logLevel: level,
    stage,
    production: stage === undefined || stage === "prod",
    capacity: capacityFor({
      targetMessagesPerSecond: positiveInt(
        node,
        "maskline:targetMessagesPerSecond",
        defaultSettings.capacity.targetMessagesPerSecond,
      ),
      productRequestsPerSecond: positiveInt(
        node,
        "maskline:productRequestsPerSecond",
        defaultSettings.capacity.productRequestsPerSecond,
      ),
    }),
    poolUtilizationAlarmPercent: positiveInt(
      node,
      "maskline:poolUtilizationAlarmPercent",
      defaultSettings.poolUtilizationAlarmPercent,
    ),
    alarmEmail: optionalString(node, "maskline:alarmEmail"),
    publicBaseUrl: publicBaseUrl?.replace(/\/$/, ""),
    eventsWebhook: eventsWebhookFromContext(node),
    sessionRetentionDays: sessionRetentionDays(node),
    messaging: messagingFromContext(node),
  };
}
