import { GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { z } from "zod";
import { parseConfig, twilioConfigSchema } from "../config.ts";

const secretShape = z.object({ accountSid: z.string().min(1), authToken: z.string().min(1) });

export interface TwilioCredentials {
  accountSid: string;
  authToken: string;
  apiBaseUrl: string;
}

let cached: Promise<TwilioCredentials> | undefined;

/**
 * Twilio credentials, read once per cold start: from Secrets Manager when TWILIO_SECRET_ARN is set (AWS),
 * else from TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN (local).
 */
export function twilioCredentials(env: NodeJS.ProcessEnv = process.env): Promise<TwilioCredentials> {
  cached ??= (async () => {
    const config = parseConfig(twilioConfigSchema, env);
    if (config.TWILIO_SECRET_ARN) {
      const client = new SecretsManagerClient({});
      const { SecretString } = await client.send(
        new GetSecretValueCommand({ SecretId: config.TWILIO_SECRET_ARN }),
      );
      const secret = secretShape.parse(JSON.parse(SecretString ?? "{}"));
      return { ...secret, apiBaseUrl: config.TWILIO_API_BASE_URL };
    }
    return {
      accountSid: config.TWILIO_ACCOUNT_SID ?? "",
      authToken: config.TWILIO_AUTH_TOKEN ?? "",
      apiBaseUrl: config.TWILIO_API_BASE_URL,
    };
  })();
  return cached;
}
