import { z } from "zod";

/**
 * Configuration, validated once at cold start. Each function parses only the part it needs; a bad value
 * stops the process with a message that names the variable.
 */
const seconds = (fallback: number) => z.coerce.number().int().min(0).default(fallback);

export const coreConfigSchema = z.object({
  TABLE_NAME: z.string().min(1).default("maskline"),
  QUARANTINE_SECONDS: seconds(24 * 3600),
  MESSAGE_RETENTION_HOURS: z.coerce
    .number()
    .int()
    .min(1)
    .max(24 * 90)
    .default(72),
});

export const queueConfigSchema = z.object({
  FORWARD_QUEUE_URL: z.string().url(),
});

export const webhookConfigSchema = z.object({
  PUBLIC_BASE_URL: z
    .string()
    .url()
    .transform((u) => u.replace(/\/$/, "")),
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
});

/** Twilio credentials: from Secrets Manager in AWS (TWILIO_SECRET_ARN), from the environment locally. */
export const twilioConfigSchema = z
  .object({
    TWILIO_SECRET_ARN: z.string().min(1).optional(),
    TWILIO_ACCOUNT_SID: z
      .string()
      .regex(/^AC\w+$/, "must start with AC")
      .optional(),
    TWILIO_AUTH_TOKEN: z.string().min(1).optional(),
    TWILIO_API_BASE_URL: z
      .string()
      .url()
      .default("https://api.twilio.com")
      .transform((u) => u.replace(/\/$/, "")),
  })
  .refine((c) => c.TWILIO_SECRET_ARN || (c.TWILIO_ACCOUNT_SID && c.TWILIO_AUTH_TOKEN), {
    message: "set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (or TWILIO_SECRET_ARN in AWS)",
    path: ["TWILIO_AUTH_TOKEN"],
  });

export const apiConfigSchema = z
  .object({
    MASKLINE_AUTH: z.enum(["token", "iam"]).default("token"),
    MASKLINE_API_TOKEN: z.string().min(1).optional(),
    /** Signs page cursors (HMAC); defaults to one derived from the API token, or a fixed one with IAM. */
    CURSOR_SIGNING_KEY: z.string().min(16).optional(),
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
});

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

export function parseConfig<T extends z.ZodTypeAny>(
  schema: T,
  env: NodeJS.ProcessEnv = process.env,
): z.output<T> {
  const result = schema.safeParse(env);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  ${i.path.join(".") || "(config)"}: ${i.message}`);
    throw new ConfigError(`Invalid configuration:\n${lines.join("\n")}`);
  }
  return result.data;
}
