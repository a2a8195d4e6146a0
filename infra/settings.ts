import { RetentionDays } from "aws-cdk-lib/aws-logs";
import type { Node } from "constructs";

/**
 * Deploy-time knobs, read from CDK context (`cdk.json` or `-c key=value`). Everything else — names, keys,
 * timeouts, routes — comes from `shared/resources.ts`, the definitions the embedded stack and tests use too.
 */
export interface MasklineSettings {
  /** How long function logs and API access logs are kept. */
  logRetention: RetentionDays;
  /** LOG_LEVEL for Powertools logger. */
  logLevel: "DEBUG" | "INFO" | "WARN" | "ERROR";
  /** Default-stage throttling of the HTTP API (requests per second, and burst). */
  throttle: { rateLimit: number; burstLimit: number };
  /** Pool utilization (percent of numbers in use, emitted by the recycler) that raises an alarm. */
  poolUtilizationAlarmPercent: number;
  /** Optional e-mail subscribed to the alarm topic. */
  alarmEmail: string | undefined;
  /**
   * Optional public base URL (a custom domain in front of the API). Twilio signs the URL it calls, so when
   * Twilio is pointed at a custom domain, the functions must check signatures against that domain.
   */
  publicBaseUrl: string | undefined;
}

export const defaultSettings: MasklineSettings = {
  logRetention: RetentionDays.ONE_MONTH,
  logLevel: "INFO",
  throttle: { rateLimit: 50, burstLimit: 100 },
  poolUtilizationAlarmPercent: 80,
  alarmEmail: undefined,
  publicBaseUrl: undefined,
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

const logLevels = ["DEBUG", "INFO", "WARN", "ERROR"] as const;

export function settingsFromContext(node: Node): MasklineSettings {
  const logLevel: unknown = node.tryGetContext("maskline:logLevel") ?? defaultSettings.logLevel;
  const level = logLevels.find((l) => l === logLevel);
  if (!level) throw new Error(`CDK context maskline:logLevel must be one of ${logLevels.join(", ")}`);
  const publicBaseUrl = optionalString(node, "maskline:publicBaseUrl");
  if (publicBaseUrl && !/^https:\/\/[^/]+$/.test(publicBaseUrl.replace(/\/$/, ""))) {
    throw new Error(
      "CDK context maskline:publicBaseUrl must be an https origin, e.g. https://sms.example.com",
    );
  }
  return {
    logRetention: retention(node),
    logLevel: level,
    throttle: {
      rateLimit: positiveInt(node, "maskline:throttleRateLimit", defaultSettings.throttle.rateLimit),
      burstLimit: positiveInt(node, "maskline:throttleBurstLimit", defaultSettings.throttle.burstLimit),
    },
    poolUtilizationAlarmPercent: positiveInt(
      node,
      "maskline:poolUtilizationAlarmPercent",
      defaultSettings.poolUtilizationAlarmPercent,
    ),
    alarmEmail: optionalString(node, "maskline:alarmEmail"),
    publicBaseUrl: publicBaseUrl?.replace(/\/$/, ""),
  };
}
