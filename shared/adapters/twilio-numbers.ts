import { LocalListInstance } from "twilio/lib/rest/api/v2010/account/availablePhoneNumberCountry/local.js";
import { IncomingPhoneNumberListInstance } from "twilio/lib/rest/api/v2010/account/incomingPhoneNumber.js";
import { PhoneNumberListInstance } from "twilio/lib/rest/messaging/v1/service/phoneNumber.js";
import { type E164, toE164 } from "../domain/phone.ts";
import type { NumberProvider } from "../ports.ts";
import { type TwilioRestOptions, TwilioTransport, twilioVersion } from "./twilio-rest.ts";

type V2010 = import("twilio/lib/rest/api/V2010.js").default;
type V1 = import("twilio/lib/rest/messaging/V1.js").default;

/**
 * The resources auto top-up buys numbers with, from the official twilio package (see twilio-rest.ts). Only
 * the recycler's top-up (`functions/recycler/top-up.ts`) imports this module, on its first purchase.
 */
export interface TwilioNumbersApi {
  availableLocal(country: string): LocalListInstance;
  readonly incomingPhoneNumbers: IncomingPhoneNumberListInstance;
  /** The numbers of a Messaging Service (messaging.twilio.com v1). */
  servicePhoneNumbers(serviceSid: string): PhoneNumberListInstance;
}

export function twilioNumbers(options: TwilioRestOptions): TwilioNumbersApi {
  const transport = new TwilioTransport(options);
  const v2010 = twilioVersion<V2010>(transport, "https://api.twilio.com", "2010-04-01");
  const v1 = twilioVersion<V1>(transport, "https://messaging.twilio.com", "v1");
  return {
    availableLocal: (country) => LocalListInstance(v2010, options.accountSid, country),
    incomingPhoneNumbers: IncomingPhoneNumberListInstance(v2010, options.accountSid),
    servicePhoneNumbers: (serviceSid) => PhoneNumberListInstance(v1, serviceSid),
  };
}

/**
 * Buys a local number with SMS and voice and points its webhooks at Maskline; with a Messaging Service (A2P
 * 10DLC) it also adds the number to that service, so its traffic runs under the registered campaign.
 */
export class TwilioNumberProvider implements NumberProvider {
  constructor(
    private readonly client: TwilioNumbersApi,
    private readonly publicBaseUrl: string,
    private readonly messagingServiceSid?: string,
  ) {}

  async buy(request: { country: string }): Promise<E164 | undefined> {
    const [candidate] = await this.client
      .availableLocal(request.country)
      .list({ smsEnabled: true, voiceEnabled: true, limit: 1 });
    if (!candidate) return undefined;
    const bought = await this.client.incomingPhoneNumbers.create({
      phoneNumber: candidate.phoneNumber,
      smsUrl: `${this.publicBaseUrl}/twilio/sms`,
      smsMethod: "POST",
      voiceUrl: `${this.publicBaseUrl}/twilio/voice`,
      voiceMethod: "POST",
    });
    if (this.messagingServiceSid)
      await this.client.servicePhoneNumbers(this.messagingServiceSid).create({ phoneNumberSid: bought.sid });
    return toE164(bought.phoneNumber);
  }
}
