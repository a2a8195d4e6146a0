import { twilioCredentials } from "../../shared/adapters/secrets.ts";
import {
  messagingServiceConfigSchema,
  parseConfig,
  twilioConfigSchema,
  webhookConfigSchema,
} from "../../shared/config.ts";
import type { NumberProvider } from "../../shared/ports.ts";

/**
 * Auto top-up's number provider: Twilio's number-buying resources and the Twilio secret. The recycler
 * imports this module only with top-up on (`#on-demand/recycler-top-up`: in Lambda a file of its own beside
 * the bundle), so a recycler without top-up never parses the Twilio package or a Secrets Manager client.
 * Its configuration is read when it loads, at the recycler's cold start.
 */
const publicBaseUrl = parseConfig(webhookConfigSchema).PUBLIC_BASE_URL;
const { TWILIO_TIMEOUT_MS } = parseConfig(twilioConfigSchema);

/** Fails the cold start on a missing or malformed Twilio secret. */
export async function checkCredentials(): Promise<void> {
  await twilioCredentials();
}

/**
 * Built from the current credentials for each purchase (rare), so a rotated token is used within the
 * secret's cache age, as in inbound and forward. The Twilio resources are evaluated on the first purchase.
 */
export const twilioNumberProvider: NumberProvider = {
  buy: async (request) => {
    const { TwilioNumberProvider, twilioNumbers } = await import("../../shared/adapters/twilio-numbers.ts");
    return new TwilioNumberProvider(
      twilioNumbers({ ...(await twilioCredentials()), timeoutMs: TWILIO_TIMEOUT_MS }),
      publicBaseUrl,
      parseConfig(messagingServiceConfigSchema).TWILIO_MESSAGING_SERVICE_SID,
    ).buy(request);
  },
};
