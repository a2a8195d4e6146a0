import twilio from "twilio";
import { type E164, toE164 } from "../domain/phone.ts";
import {
  type NumberProvider,
  type OutboundSms,
  type SentSms,
  type SmsGateway,
  SmsSendError,
} from "../ports.ts";
import { traced } from "./observability.ts";

type RequestOptions<T> = Parameters<twilio.RequestClient["request"]>[0] & { data?: T };
type Response<T> = Awaited<ReturnType<twilio.RequestClient["request"]>> & { body: T };

const TWILIO_HOST = /^https:\/\/[a-z0-9.-]*twilio\.com/;

/**
 * Sends every request to `baseUrl` instead of api.twilio.com (the local sandbox or a test server), and turns
 * 429/5xx answers and transport failures into SmsSendError so the forwarder can tell retryable from permanent.
 */
class RoutedRequestClient extends twilio.RequestClient {
  constructor(
    private readonly baseUrl: string,
    private readonly timeoutMs: number,
  ) {
    super({ keepAlive: true });
  }

  override async request<TData>(opts: RequestOptions<TData>): Promise<Response<TData>> {
    const uri = this.baseUrl ? opts.uri.replace(TWILIO_HOST, this.baseUrl.replace(/\/$/, "")) : opts.uri;
    let response: Response<TData>;
    try {
      const path = new URL(opts.uri).pathname.replace(/\/(AC|SM|MM|PN)\w+/g, "/$1…");
      response = await traced(`Twilio ${opts.method.toUpperCase()} ${path}`, () =>
        super.request<TData>({ ...opts, uri, timeout: opts.timeout ?? this.timeoutMs }),
      );
    } catch (error) {
      const code = (error as { code?: string }).code;
      // Refused connections never reached Twilio; anything else (timeouts, resets) may have.
      const kind = code === "ECONNREFUSED" || code === "ENOTFOUND" ? "retryable" : "ambiguous";
      throw new SmsSendError(kind, null, null, null, { cause: error });
    }
    if (response.statusCode === 429 || response.statusCode >= 500) {
      const retryAfter = Number(response.headers?.["retry-after"]);
      const body = response.body as { code?: number } | string | undefined;
      const code = typeof body === "object" && body?.code ? String(body.code) : null;
      throw new SmsSendError(
        "retryable",
        response.statusCode,
        code,
        Number.isFinite(retryAfter) ? retryAfter * 1000 : null,
      );
    }
    return response;
  }
}

export interface TwilioGatewayOptions {
  accountSid: string;
  authToken: string;
  apiBaseUrl: string;
  timeoutMs?: number;
  /** A2P 10DLC: sends name this Messaging Service as well as their From number. */
  messagingServiceSid?: string;
}

/** The official twilio client, its requests routed to TWILIO_API_BASE_URL. */
export function twilioClient(options: TwilioGatewayOptions): twilio.Twilio {
  return twilio(options.accountSid, options.authToken, {
    httpClient: new RoutedRequestClient(
      options.apiBaseUrl === "https://api.twilio.com" ? "" : options.apiBaseUrl,
      options.timeoutMs ?? 10_000,
    ),
  });
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
 * The SmsGateway on the official twilio client. Credentials are asked for on each call (cheap while
 * cached, see TwilioSecret), so a rotated token is used without a restart; during a rotation, a request
 * refused with 401 is repeated once with the other token (the secondary works for REST calls until it is
 * promoted, and the old primary stops working the moment it is).
 */
export class TwilioGateway implements SmsGateway {
  private readonly source: TwilioCredentialSource;
  private readonly timeoutMs: number | undefined;
  private readonly clients = new Map<string, twilio.Twilio>();
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

  private clientFor(c: { accountSid: string; apiBaseUrl: string }, token: string): twilio.Twilio {
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

  private async withClient<T>(call: (client: twilio.Twilio) => Promise<T>): Promise<T> {
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

  async findSent(query: { from: E164; to: E164; since: number; body: string }): Promise<SentSms | undefined> {
    const recent = await this.withClient((client) =>
      client.messages.list({
        from: query.from,
        to: query.to,
        dateSentAfter: new Date(query.since),
        limit: 50,
      }),
    );
    // The API filters by date; the instant is checked here.
    const match = recent.find((m) => m.body === query.body && (m.dateCreated?.getTime() ?? 0) >= query.since);
    return match ? { sid: match.sid } : undefined;
  }
}

/**
 * Buys a local number with SMS and voice and points its webhooks at Maskline; with a Messaging Service (A2P
 * 10DLC) it also adds the number to that service, so its traffic runs under the registered campaign.
 */
export class TwilioNumberProvider implements NumberProvider {
  constructor(
    private readonly client: twilio.Twilio,
    private readonly publicBaseUrl: string,
    private readonly messagingServiceSid?: string,
  ) {}

  async buy(request: { country: string }): Promise<E164 | undefined> {
    const [candidate] = await this.client
      .availablePhoneNumbers(request.country)
      .local.list({ smsEnabled: true, voiceEnabled: true, limit: 1 });
    if (!candidate) return undefined;
    const bought = await this.client.incomingPhoneNumbers.create({
      phoneNumber: candidate.phoneNumber,
      smsUrl: `${this.publicBaseUrl}/twilio/sms`,
      smsMethod: "POST",
      voiceUrl: `${this.publicBaseUrl}/twilio/voice`,
      voiceMethod: "POST",
    });
    if (this.messagingServiceSid)
      await this.client.messaging.v1
        .services(this.messagingServiceSid)
        .phoneNumbers.create({ phoneNumberSid: bought.sid });
    return toE164(bought.phoneNumber);
  }
}
