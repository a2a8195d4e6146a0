import { GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { z } from "zod";
import { ephemeralPseudonyms, KeyedPseudonyms } from "../app/pseudonyms.ts";
import {
  ACCOUNT_SID_PATTERN,
  parseConfig,
  pseudonymConfigSchema,
  secretValue,
  twilioConfigSchema,
} from "../config.ts";
import type { Pseudonyms } from "../ports.ts";
import { awsClientOptions } from "./aws.ts";
import { logger } from "./logger.ts";
import { traceClient } from "./observability.ts";

/**
 * The secret's JSON: `{"accountSid","authToken"}`, plus `secondaryAuthToken` while a rotation is under way
 * (docs/deploy.md, "Rotating the Twilio auth token").
 */
const secretShape = z.object({
  accountSid: z.string().regex(ACCOUNT_SID_PATTERN, "must start with AC"),
  authToken: secretValue,
  secondaryAuthToken: secretValue.optional(),
});

export interface TwilioCredentials {
  accountSid: string;
  authToken: string;
  /** Twilio's secondary token during a rotation: accepted for signatures, a fallback for REST calls. */
  secondaryAuthToken?: string;
  apiBaseUrl: string;
}

/** The tokens a webhook signature may be made with: the primary, and the secondary when there is one. */
export const authTokensOf = (c: TwilioCredentials): string[] =>
  c.secondaryAuthToken && c.secondaryAuthToken !== c.authToken
    ? [c.authToken, c.secondaryAuthToken]
    : [c.authToken];

export interface TwilioSecretOptions {
  /** Reads the secret's current value (GetSecretValue in AWS). */
  read: () => Promise<Omit<TwilioCredentials, "apiBaseUrl">>;
  apiBaseUrl: string;
  /** How long a value is used before it is read again. */
  maxAgeMs: number;
  now?: () => number;
}

/**
 * Twilio credentials with a bounded cache age: a value older than `maxAgeMs` is read again before use,
 * so a token put in Secrets Manager is in force everywhere within that age, without a redeploy or a cold
 * start. Concurrent callers share one read. If a re-read fails, the last value is kept (and the failure
 * logged) for up to ten times the age, so a Secrets Manager hiccup does not turn into refused webhooks.
 */
export class TwilioSecret {
  private value: TwilioCredentials | undefined;
  private readAt = 0;
  private pending: Promise<TwilioCredentials> | undefined;
  private readonly now: () => number;

  constructor(private readonly options: TwilioSecretOptions) {
    this.now = options.now ?? Date.now;
  }

  async current(): Promise<TwilioCredentials> {
    const age = this.now() - this.readAt;
    if (this.value && age < this.options.maxAgeMs) return this.value;
    this.pending ??= this.refresh().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  async authTokens(): Promise<string[]> {
    return authTokensOf(await this.current());
  }

  private async refresh(): Promise<TwilioCredentials> {
    try {
      const read = await this.options.read();
      this.value = { ...read, apiBaseUrl: this.options.apiBaseUrl };
      this.readAt = this.now();
      return this.value;
    } catch (error) {
      const age = this.now() - this.readAt;
      if (this.value && age < 10 * this.options.maxAgeMs) {
        logger.warn("Twilio secret could not be re-read; using the last value", {
          error: { name: (error as Error)?.name, message: (error as Error)?.message },
          ageMs: age,
        });
        return this.value;
      }
      throw error;
    }
  }
}

/**
 * The process's Twilio secret: Secrets Manager when TWILIO_SECRET_ARN is set (AWS), re-read every
 * TWILIO_SECRET_MAX_AGE_SECONDS; else TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN / TWILIO_SECONDARY_AUTH_TOKEN
 * from the environment (local), read when the secret is first asked for.
 */
export function twilioSecretFromEnv(env: NodeJS.ProcessEnv = process.env): TwilioSecret {
  const config = parseConfig(twilioConfigSchema, env);
  const arn = config.TWILIO_SECRET_ARN;
  if (arn) {
    const client = traceClient(new SecretsManagerClient(awsClientOptions(env)), "SecretsManager");
    return new TwilioSecret({
      apiBaseUrl: config.TWILIO_API_BASE_URL,
      maxAgeMs: config.TWILIO_SECRET_MAX_AGE_SECONDS * 1000,
      read: async () => {
        const { SecretString } = await client.send(new GetSecretValueCommand({ SecretId: arn }));
        return secretShape.parse(JSON.parse(SecretString ?? "{}"));
      },
    });
  }
  const local = {
    accountSid: config.TWILIO_ACCOUNT_SID ?? "",
    authToken: config.TWILIO_AUTH_TOKEN ?? "",
    ...(config.TWILIO_SECONDARY_AUTH_TOKEN ? { secondaryAuthToken: config.TWILIO_SECONDARY_AUTH_TOKEN } : {}),
  };
  return new TwilioSecret({
    apiBaseUrl: config.TWILIO_API_BASE_URL,
    // The environment does not change under a running process: read once.
    maxAgeMs: Number.POSITIVE_INFINITY,
    read: async () => local,
  });
}

let processSecret: TwilioSecret | undefined;

/** One TwilioSecret per process (per Lambda execution environment). */
export function twilioSecret(env: NodeJS.ProcessEnv = process.env): TwilioSecret {
  processSecret ??= twilioSecretFromEnv(env);
  return processSecret;
}

/** The current credentials (re-read when older than the cache age). */
export function twilioCredentials(env: NodeJS.ProcessEnv = process.env): Promise<TwilioCredentials> {
  return twilioSecret(env).current();
}

let processPseudonyms: Pseudonyms | undefined;

/**
 * The process's pseudonyms: the key from Secrets Manager (PSEUDONYM_SECRET_ARN, read on first use) or from
 * PSEUDONYM_KEY; with neither, a random key of this process (warned: not stable, for tests only).
 */
export function pseudonymsFromEnv(env: NodeJS.ProcessEnv = process.env): Pseudonyms {
  if (processPseudonyms) return processPseudonyms;
  const config = parseConfig(pseudonymConfigSchema, env);
  const arn = config.PSEUDONYM_SECRET_ARN;
  const key = config.PSEUDONYM_KEY;
  if (arn) {
    const client = traceClient(new SecretsManagerClient(awsClientOptions(env)), "SecretsManager");
    processPseudonyms = new KeyedPseudonyms(async () => {
      const { SecretString } = await client.send(new GetSecretValueCommand({ SecretId: arn }));
      return z.string().min(32).parse(SecretString);
    });
  } else if (key) processPseudonyms = new KeyedPseudonyms(async () => key);
  else {
    logger.warn("No PSEUDONYM_SECRET_ARN or PSEUDONYM_KEY: pseudonyms use a key of this process only");
    processPseudonyms = ephemeralPseudonyms();
  }
  return processPseudonyms;
}
