import { MessageListInstance } from "twilio/lib/rest/api/v2010/account/message.js";
import type { E164 } from "../domain/phone.ts";
import { type OutboundSms, type SentSms, type SmsGateway, SmsSendError } from "../ports.ts";
import { type TwilioRestOptions, TwilioTransport, twilioVersion } from "./twilio-rest.ts";

type V2010 = import("twilio/lib/rest/api/V2010.js").default;

export interface TwilioGatewayOptions extends TwilioRestOptions {
  /** A2P 10DLC: sends name this Messaging Service as well as their From number. */
  messagingServiceSid?: string;
}

/** The Messages resource of the account: what forward calls. */
export interface TwilioMessagesApi {
  readonly messages: MessageListInstance;
}

export function twilioClient(options: TwilioRestOptions): TwilioMessagesApi {
  const transport = new TwilioTransport(options);
  const v2010 = twilioVersion<V2010>(transport, "https://api.twilio.com", "2010-04-01");
  return { messages: MessageListInstance(v2010, options.accountSid) };
}

/** Credentials that may change under a running function (token rotation), with an optional secondary token. */
export type TwilioCredentialSource = () => Promise<{
  accountSid: string;
  authToken: string;
  secondaryAuthToken?: string;
  apiBaseUrl: string;
}>;

/** Twilio's answer to a token it does not (or no longer) know. */
const isAuthenticationFailure = (error: unknown) => (error as { status?: number })?.status === 401;

/**
 * The SmsGateway on the official twilio package's Messages resource (see twilio-rest.ts). Credentials are
 * asked for on each call (cheap while cached, see TwilioSecret), so a rotated token is used without a restart; during a rotation, a request
 * refused with 401 is repeated once with the other token (the secondary works for REST calls until it is
 * promoted, and the old primary stops working the moment it is).
 */
export class TwilioGateway implements SmsGateway {
  private readonly source: TwilioCredentialSource;
  private readonly timeoutMs: number | undefined;
  private readonly clients = new Map<string, TwilioMessagesApi>();
  private readonly messagingServiceSid: string | undefined;

  constructor(
    options:
      | TwilioGatewayOptions
      | { credentials: TwilioCredentialSource; timeoutMs?: number; messagingServiceSid?: string | undefined },
  ) {
    this.messagingServiceSid = options.messagingServiceSid;
    if ("credentials" in options) {
      this.source = options.credentials;
    } else {
      const fixed = { ...options };
      this.source = async () => fixed;
    }
    this.timeoutMs = options.timeoutMs;
  }

  private clientFor(c: { accountSid: string; apiBaseUrl: string }, token: string): TwilioMessagesApi {
    const key = `${c.accountSid}\n${token}\n${c.apiBaseUrl}`;
    let client = this.clients.get(key);
    if (!client) {
      // Old tokens' clients are dropped: only the current pair is ever kept.
      if (this.clients.size >= 2) this.clients.clear();
      client = twilioClient({ ...c, authToken: token, timeoutMs: this.timeoutMs });
      this.clients.set(key, client);
    }
    return client;
  }

  private async withClient<T>(call: (client: TwilioMessagesApi) => Promise<T>): Promise<T> {
    const c = await this.source();
    try {
      return await call(this.clientFor(c, c.authToken));
    } catch (error) {
      if (!c.secondaryAuthToken || !isAuthenticationFailure(error)) throw error;
      return call(this.clientFor(c, c.secondaryAuthToken));
    }
  }

  async send(message: OutboundSms): Promise<SentSms> {
    try {
      const created = await this.withClient((client) =>
        client.messages.create({
          // With a Messaging Service the campaign's service is named AND the proxy stays the sender: Twilio
          // would otherwise pick any number of the service, and the recipient must see their own proxy.
          ...(this.messagingServiceSid ? { messagingServiceSid: this.messagingServiceSid } : {}),
          from: message.from,
          to: message.to,
          body: message.body,
          ...(message.mediaUrls.length ? { mediaUrl: message.mediaUrls } : {}),
          ...(message.statusCallback ? { statusCallback: message.statusCallback } : {}),
        }),
      );
      // Twilio answered 2xx, so it may have accepted the message, but without its SID the send cannot be
      // recorded: an unknown outcome, reconciled like a timeout (never a send recorded without a SID).
      if (typeof created.sid !== "string" || created.sid === "")
        throw new SmsSendError("ambiguous", null, null, null);
      return { sid: created.sid };
    } catch (error) {
      if (error instanceof SmsSendError) throw error;
      const rest = error as { status?: number; code?: number };
      if (typeof rest.status === "number")
        throw new SmsSendError("permanent", rest.status, rest.code ? String(rest.code) : null, null, {
          cause: error,
        });
      throw new SmsSendError("ambiguous", null, null, null, { cause: error });
    }
  }

  async findSent(query: {
    from: E164;
    to: E164;
    since: number;
    body: string;
    exclude?: ReadonlySet<string>;
  }): Promise<SentSms | undefined> {
    const recent = await this.withClient((client) =>
      client.messages.list({
        from: query.from,
        to: query.to,
        dateSentAfter: new Date(query.since),
        limit: 50,
      }),
    );
    // The API filters by date; the instant is checked here.
    const match = recent.find(
      (m) =>
        m.body === query.body &&
        (m.dateCreated?.getTime() ?? 0) >= query.since &&
        query.exclude?.has(m.sid) !== true,
    );
    return match ? { sid: match.sid } : undefined;
  }
}
