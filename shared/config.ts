import { z } from "zod";
import { parseRateLimit } from "./domain/traffic.ts";

/**
 * Configuration, validated once at cold start. Each function parses only the part it needs; a bad value
 * stops the process with a message that names the variable.
 */
/** Ten years: a duration past it is a typo, and its TTL would not fit a DynamoDB number. */
const MAX_SECONDS = 10 * 365 * 86_400;
const seconds = (fallback: number) => z.coerce.number().int().min(0).max(MAX_SECONDS).default(fallback);

/** An http(s) URL (a webhook receiver may carry a query). */
export const httpUrl = z
  .string()
  .url()
  .refine((u) => /^https?:\/\//i.test(u), "must be an http:// or https:// URL")
  .refine((u) => !/\s/.test(u), "must contain no whitespace (a line ending copied from a file?)");

/**
 * A token used byte for byte (signatures, bearer comparison): a blank or line ending copied with it would
 * make every check fail silently, so it is refused instead.
 */
export const secretValue = z
  .string()
  .min(1)
  .refine((v) => v.trim() === v, "must not start or end with whitespace (a line ending copied from a file?)");

/**
 * A base URL that paths are appended to (PUBLIC_BASE_URL, TWILIO_API_BASE_URL): http(s), a path prefix
 * allowed, no query or fragment; a trailing slash is dropped.
 */
export const baseUrl = httpUrl
  .refine((u) => !/[?#]/.test(u), "must have no query or fragment (paths are appended to it)")
  .transform((u) => u.replace(/\/$/, ""));

/**
 * An account SID starts with AC. Twilio's own are AC and 32 hex digits, but stand-ins and test doubles use
 * shorter ones: what matters is that webhooks name the same SID, which inbound checks.
 */
export const ACCOUNT_SID_PATTERN = /^AC\w+$/;

export const coreConfigSchema = z.object({
  TABLE_NAME: z.string().min(1).default("maskline"),
  QUARANTINE_SECONDS: seconds(24 * 3600),
  MESSAGE_RETENTION_HOURS: z.coerce
    .number()
    .int()
    .min(1)
    .max(24 * 90)
    .default(72),
  /**
   * Unset: no cap. Set: a participant who holds this many proxies in open sessions gets their next sessions
   * on one hub number, each under a thread tag.
   */
  MAX_PROXIES_PER_PARTICIPANT: z.coerce.number().int().min(1).max(1000).optional(),
});

/** How long a closed session's data, and the EventBridge archive of its events, are kept. */
export const sessionRetentionSchema = z.object({
  SESSION_RETENTION_DAYS: z.coerce.number().int().min(1).max(3650).default(90),
});

/**
 * The key of the pseudonyms (keyed hashes of phone numbers that stand for strangers and erased people):
 * Secrets Manager in AWS (PSEUDONYM_SECRET_ARN, the secret's string is the key), the environment locally
 * (PSEUDONYM_KEY). Neither: a random key per process, for tests only. The key must never change.
 */
export const pseudonymConfigSchema = z.object({
  PSEUDONYM_SECRET_ARN: z.string().min(1).optional(),
  PSEUDONYM_KEY: z.string().min(32, "at least 32 characters").optional(),
});

export const queueConfigSchema = z.object({
  FORWARD_QUEUE_URL: z.string().url(),
});

export const webhookConfigSchema = z.object({
  PUBLIC_BASE_URL: baseUrl,
  /** Empty: no auto-reply (an empty value is a value here, see parseConfig). */
  OUT_OF_SESSION_REPLY: z
    .string()
    .max(320)
    .default("This conversation has ended. Please use the app to get in touch."),
  /** Set by the embedded stack only when PUBLIC_BASE_URL was not given (never in AWS). */
  LOCAL_SIGNATURE_ACCEPT_REQUEST_HOST: z
    .enum(["true", "false"])
    .default("false")
    .transform((v) => v === "true"),
  OUT_OF_SESSION_VOICE: z
    .string()
    .max(320)
    .default("This number is no longer in use for your booking. Goodbye."),
  /** The answer to HELP / INFO: names the service and says how to stop. */
  HELP_REPLY: z
    .string()
    .min(1)
    .max(320)
    .default(
      "Maskline relays messages between you and your host or guest; your number stays private. Reply STOP to opt out, START to opt back in.",
    ),
  /** At most one out-of-session auto-reply per sender and proxy number within this many seconds. */
  OUT_OF_SESSION_REPLY_INTERVAL_SECONDS: seconds(86_400),
  /** `<count>/<seconds>` per sender across every proxy and session, or `off`. */
  SENDER_RATE_LIMIT: z
    .string()
    .default("30/60")
    .transform((text, ctx) => {
      const limit = parseRateLimit(text);
      if (limit === undefined) {
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          message: "must be <count>/<seconds> (e.g. 30/60) or off",
        });
        return z.NEVER;
      }
      return limit === "off" ? undefined : limit;
    }),
  /** The notice a sender gets, once per rate-limit window, when texts are held back. */
  RATE_LIMIT_REPLY: z
    .string()
    .max(320)
    .default("You are sending messages too quickly; some were not delivered. Please wait a minute."),
  /** Phone numbers and e-mail addresses in forwarded texts: kept, redacted or blocked (per session too). */
  CONTENT_POLICY: z.enum(["off", "redact-contacts", "block-contacts"]).default("off"),
  CONTENT_BLOCKED_REPLY: z
    .string()
    .max(320)
    .default("Your message was not delivered: phone numbers and e-mail addresses can't be shared here."),
  /** A MessageSid is accepted once for at least this long, whatever the body retention. */
  REPLAY_WINDOW_DAYS: z.coerce.number().int().min(1).max(3650).default(30),
});

export const MESSAGING_SERVICE_SID_PATTERN = /^MG[0-9a-f]{32}$/;

/**
 * A2P 10DLC: the Messaging Service whose registered campaign carries the traffic. Set, every send names it
 * (with the proxy number as From) and auto top-up adds bought numbers to it. Unset or empty: plain numbers.
 */
export const messagingServiceConfigSchema = z.object({
  TWILIO_MESSAGING_SERVICE_SID: z
    .string()
    .regex(MESSAGING_SERVICE_SID_PATTERN, "must be a Messaging Service SID: MG and 32 lowercase hex digits")
    .optional(),
});

/** The Twilio credentials as environment variables (locally; the embedded stack validates them too). */
export const twilioCredentialFields = {
  TWILIO_ACCOUNT_SID: z.string().regex(ACCOUNT_SID_PATTERN, "must start with AC").optional(),
  TWILIO_AUTH_TOKEN: secretValue.optional(),
  /** Also accepted for webhook signatures while a token rotation is under way. */
  TWILIO_SECONDARY_AUTH_TOKEN: secretValue.optional(),
};

/** How the functions call Twilio (the embedded stack checks them at start-up too). */
export const twilioCallFields = {
  /** How long a function trusts its copy of the secret before reading it again (AWS). */
  TWILIO_SECRET_MAX_AGE_SECONDS: z.coerce.number().int().min(1).max(3600).default(60),
  /** Timeout of one Twilio REST request (connect + answer). */
  TWILIO_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(5000),
};

/** Twilio credentials: from Secrets Manager in AWS (TWILIO_SECRET_ARN), from the environment locally. */
export const twilioConfigSchema = z
  .object({
    TWILIO_SECRET_ARN: z.string().min(1).optional(),
    ...twilioCredentialFields,
    ...twilioCallFields,
    TWILIO_API_BASE_URL: baseUrl.default("https://api.twilio.com"),
  })
  .refine((c) => c.TWILIO_SECRET_ARN || (c.TWILIO_ACCOUNT_SID && c.TWILIO_AUTH_TOKEN), {
    message: "set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (or TWILIO_SECRET_ARN in AWS)",
    path: ["TWILIO_AUTH_TOKEN"],
  });

/**
 * Timeouts of every AWS SDK call, so a hung dependency fails fast (and is retried by the SDK) instead of
 * holding the function until its own timeout.
 */
export const awsCallConfigSchema = z.object({
  AWS_CALL_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(2000),
  AWS_CONNECT_TIMEOUT_MS: z.coerce.number().int().min(50).max(10_000).default(1000),
});

/** Signs page cursors (HMAC); defaults to one derived from the API token, or a fixed one with IAM. */
export const cursorSigningKeyFields = { CURSOR_SIGNING_KEY: z.string().min(16).optional() };

export const apiConfigSchema = z
  .object({
    MASKLINE_AUTH: z.enum(["token", "iam"]).default("token"),
    MASKLINE_API_TOKEN: secretValue.optional(),
    ...cursorSigningKeyFields,
  })
  .refine((c) => c.MASKLINE_AUTH === "iam" || c.MASKLINE_API_TOKEN, {
    message: "required unless MASKLINE_AUTH=iam",
    path: ["MASKLINE_API_TOKEN"],
  });

export const forwardConfigSchema = z.object({
  FORWARD_CLAIM_STALE_SECONDS: z.coerce.number().int().min(1).default(30),
  FORWARD_INLINE_RETRIES: z.coerce.number().int().min(0).max(5).default(2),
});

export const recyclerConfigSchema = z.object({
  POOL_LOW_HEADROOM: z.coerce.number().int().min(0).default(2),
  AUTO_TOP_UP: z
    .enum(["true", "false"])
    .default("false")
    .transform((v) => v === "true"),
  MAX_POOL_SIZE: z.coerce.number().int().min(0).default(50),
  RECYCLER_BUDGET_MS: z.coerce.number().int().min(100).default(45_000),
  RECYCLER_BATCH_SIZE: z.coerce.number().int().min(1).max(1000).default(100),
});

export const publisherConfigSchema = z.object({
  EVENT_BUS_NAME: z.string().min(1).default("maskline"),
  /** Where a stream record whose event fails its schema is set aside (the mapping's on-failure queue). */
  PUBLISHER_FAILURES_QUEUE_URL: z.string().url(),
});

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/**
 * The variables whose empty value means something (documented): an empty reply or notice means none is
 * sent (the voice one: the call is rejected). Any other `FOO=` is unset.
 */
const EMPTY_IS_A_VALUE = new Set([
  "OUT_OF_SESSION_REPLY",
  "OUT_OF_SESSION_VOICE",
  "RATE_LIMIT_REPLY",
  "CONTENT_BLOCKED_REPLY",
]);

/**
 * Validates the environment against a schema. An empty variable (`FOO=`, as .env files and CI templates
 * leave them) counts as unset, so its default applies, except in EMPTY_IS_A_VALUE. Messages name the
 * variable and never repeat its value.
 */
export function parseConfig<T extends z.ZodTypeAny>(
  schema: T,
  env: NodeJS.ProcessEnv = process.env,
): z.output<T> {
  const given = Object.fromEntries(
    Object.entries(env).filter(([name, value]) => value !== "" || EMPTY_IS_A_VALUE.has(name)),
  );
  const result = schema.safeParse(given);
  if (!result.success) {
    // zod's own enum message repeats the value it received: the allowed ones are said instead.
    const messageOf = (i: z.ZodIssue) =>
      i.code === z.ZodIssueCode.invalid_enum_value ? `must be one of ${i.options.join(", ")}` : i.message;
    const lines = result.error.issues.map((i) => `  ${i.path.join(".") || "(config)"}: ${messageOf(i)}`);
    throw new ConfigError(`Invalid configuration:\n${lines.join("\n")}`);
  }
  return result.data;
}
