import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import { getExpectedTwilioSignature } from "twilio/lib/webhooks/webhooks.js";
import { callingCode, toE164 } from "../shared/domain/phone.ts";

/**
 * A local stand-in for the Twilio REST API (Messages, AvailablePhoneNumbers, IncomingPhoneNumbers, a Messaging
 * Service's PhoneNumbers) plus virtual phones that send webhooks signed with the auth token exactly as Twilio
 * does, and Twilio's carrier-level opt-out: a handset that texts STOP to a number is blocked from that number
 * (from every number of the Messaging Service when the number is in one) until it texts START.
 */

export interface SandboxMessage {
  sid: string;
  accountSid: string;
  from: string;
  to: string;
  body: string;
  mediaUrls: string[];
  status: "queued" | "sent" | "delivered" | "failed" | "undelivered";
  direction: "outbound-api" | "inbound";
  dateCreated: string;
  statusCallback: string | null;
  messagingServiceSid: string | null;
}

export interface PhoneEntry {
  id: string;
  direction: "in" | "out" | "call-in" | "call-out";
  counterpart: string;
  body: string;
  at: string;
  detail?: string;
  /** Pictures of an MMS (the MediaUrl of each). */
  media?: string[];
}

/** Which senders a handset has blocked at the carrier level (STOP), until it texts START. */
export interface CarrierOptOut {
  /** Numbers it texted STOP to that are in no Messaging Service: sends from each of them fail. */
  numbers: string[];
  /** Messaging Services it opted out of: sends from every number of each fail. */
  messagingServices: string[];
}

export type CarrierKeyword = "STOP" | "START" | "HELP";

const KEYWORDS: Record<CarrierKeyword, readonly string[]> = {
  STOP: ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"],
  START: ["START", "YES", "UNSTOP"],
  HELP: ["HELP", "INFO"],
};

/** Twilio's reading of a text: the whole message, trimmed, case-insensitive, trailing punctuation ignored. */
export function carrierKeyword(body: string): CarrierKeyword | undefined {
  const word = body
    .trim()
    .replace(/[\p{P}\s]+$/u, "")
    .toUpperCase();
  for (const type of ["STOP", "START", "HELP"] as const) if (KEYWORDS[type].includes(word)) return type;
  return undefined;
}

/** The confirmations Twilio's default opt-out handling sends back (the wording is editable in the Console). */
const CONFIRMATIONS: Partial<Record<CarrierKeyword, string>> = {
  STOP: "You have successfully been unsubscribed. You will not receive any more messages from this number. Reply START to resubscribe.",
  START:
    "You have successfully been re-subscribed to messages from this number. Reply HELP for help. Reply STOP to unsubscribe. Msg&Data Rates May Apply.",
};

export interface SandboxOptions {
  accountSid: string;
  authToken: string;
  /** The URL Twilio would call (PUBLIC_BASE_URL), used to sign webhooks. */
  publicBaseUrl: string;
  /** Where the webhooks are actually posted (the local server). */
  webhookTarget: string;
  statusCallbackDelayMs?: number;
  /**
   * The account's Messaging Service (A2P 10DLC): it exists, numbers join it through its PhoneNumbers
   * resource (or `joinService`), and texts to its numbers get Advanced Opt-Out (OptOutType, service-wide block).
   */
  messagingServiceSid?: string;
}

export interface FaultPlan {
  /** Share of Messages.create calls answered with an error, 0..1. */
  rate: number;
  statuses: number[];
}

const sid = (prefix: string) => `${prefix}${randomBytes(16).toString("hex")}`;
const TWILIO_PATH = /^\/2010-04-01\/Accounts\/([^/]+)\/(.+?)(\.json)?$/;
/** messaging.twilio.com/v1/Services/{sid}/PhoneNumbers, as the routed client sends it. */
const SERVICE_NUMBERS_PATH = /^\/v1\/Services\/([^/]+)\/PhoneNumbers$/;
const SERVICE_SID = /^MG[0-9a-f]{32}$/;

export class TwilioSandbox extends EventEmitter {
  readonly messages: SandboxMessage[] = [];
  readonly phones = new Map<string, PhoneEntry[]>();
  readonly ownedNumbers: string[] = [];
  /** Fault injection: handsets blocked from every sender (sends to them fail with 21610). */
  readonly unsubscribed = new Set<string>();
  /** Messaging Services and their numbers. */
  readonly messagingServices = new Map<string, Set<string>>();
  /** Carrier-level opt-outs: handset → numbers and Messaging Service SIDs it texted STOP to. */
  private readonly optOuts = new Map<string, Set<string>>();
  /** Incoming phone number SIDs (PN…) and their numbers. */
  private readonly numberSids = new Map<string, string>();
  faults: FaultPlan = { rate: 0, statuses: [] };
  /** Accept the next N sends but answer only after `slowAnswerMs`: a client timeout after Twilio accepted. */
  slowAnswers = { count: 0, slowAnswerMs: 0 };
  private nextAvailable = 200;

  constructor(private readonly options: SandboxOptions) {
    super();
    if (options.messagingServiceSid) this.messagingServices.set(options.messagingServiceSid, new Set());
  }

  handles(path: string): boolean {
    return TWILIO_PATH.test(path) || SERVICE_NUMBERS_PATH.test(path);
  }

  /** The Messaging Service a number belongs to, if any. */
  serviceOf(number: string): string | undefined {
    for (const [serviceSid, numbers] of this.messagingServices) if (numbers.has(number)) return serviceSid;
    return undefined;
  }

  /** Adds a number to the configured Messaging Service (what the Console's Sender Pool does). */
  joinService(number: string, serviceSid = this.options.messagingServiceSid) {
    const members = serviceSid ? this.messagingServices.get(serviceSid) : undefined;
    if (!members) throw new Error("no such Messaging Service in the sandbox");
    if (![...this.numberSids.values()].includes(number)) this.numberSids.set(sid("PN"), number);
    members.add(number);
  }

  /** The handset's carrier-level opt-out state. */
  optOutOf(handset: string): CarrierOptOut {
    const scopes = [...(this.optOuts.get(handset) ?? [])];
    return {
      numbers: scopes.filter((s) => !SERVICE_SID.test(s)),
      messagingServices: scopes.filter((s) => SERVICE_SID.test(s)),
    };
  }

  /** Twilio's 21610: the handset texted STOP to this sender (or to a number of its Messaging Service). */
  isBlocked(handset: string, from: string, messagingServiceSid?: string | null): boolean {
    if (this.unsubscribed.has(handset)) return true;
    const scopes = this.optOuts.get(handset);
    if (!scopes) return false;
    const service = messagingServiceSid ?? this.serviceOf(from);
    return scopes.has(from) || (service !== undefined && scopes.has(service));
  }

  private applyKeyword(handset: string, number: string, keyword: CarrierKeyword) {
    const service = this.serviceOf(number);
    const scopes = this.optOuts.get(handset) ?? new Set<string>();
    switch (keyword) {
      case "STOP":
        scopes.add(service ?? number);
        break;
      case "START":
        scopes.delete(number);
        if (service) scopes.delete(service);
        break;
      case "HELP":
        return;
      default: {
        const never: never = keyword;
        throw new Error(`unknown keyword ${String(never)}`);
      }
    }
    if (scopes.size) this.optOuts.set(handset, scopes);
    else this.optOuts.delete(handset);
    this.emit("opt-out", { phoneNumber: handset, optOut: this.optOutOf(handset) });
    const confirmation = CONFIRMATIONS[keyword];
    if (confirmation)
      this.deliverToPhone(handset, {
        direction: "in",
        counterpart: number,
        body: confirmation,
        detail: "carrier",
      });
  }

  /** The REST side: what the twilio package's resources call through TWILIO_API_BASE_URL. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL, body: string): Promise<void> {
    const expected = `Basic ${Buffer.from(`${this.options.accountSid}:${this.options.authToken}`).toString("base64")}`;
    const form = new URLSearchParams(body);
    const service = SERVICE_NUMBERS_PATH.exec(url.pathname);
    if (service) {
      if (req.headers.authorization !== expected) return twilioError(res, 401, 20003, "Authenticate");
      const serviceSid = service[1] ?? "";
      if (req.method === "POST") return this.addServiceNumber(res, serviceSid, form);
      if (req.method === "GET") return this.listServiceNumbers(res, serviceSid);
      return twilioError(res, 405, 20004, "Method not allowed");
    }
    const match = TWILIO_PATH.exec(url.pathname);
    const account = match?.[1];
    const resource = match?.[2] ?? "";
    if (req.headers.authorization !== expected || account !== this.options.accountSid)
      return twilioError(res, 401, 20003, "Authenticate");
    if (req.method === "POST" && resource === "Messages") return this.createMessage(res, form);
    if (req.method === "GET" && resource === "Messages") return this.listMessages(res, url.searchParams);
    const available = /^AvailablePhoneNumbers\/([A-Z]{2})\/Local$/.exec(resource);
    if (req.method === "GET" && available) return this.listAvailable(res, available[1] ?? "US");
    if (req.method === "POST" && resource === "IncomingPhoneNumbers") return this.buyNumber(res, form);
    return twilioError(res, 404, 20404, "The requested resource was not found");
  }

  private createMessage(res: ServerResponse, form: URLSearchParams) {
    if (this.faults.rate > 0 && Math.random() < this.faults.rate) {
      const status = this.faults.statuses[Math.floor(Math.random() * this.faults.statuses.length)] ?? 500;
      this.emit("fault", { status });
      if (status === 429) res.setHeader("retry-after", "0");
      return twilioError(
        res,
        status,
        status === 429 ? 20429 : 20500,
        status === 429 ? "Too Many Requests" : "Internal",
      );
    }
    const serviceSid = form.get("MessagingServiceSid");
    const members = serviceSid ? this.messagingServices.get(serviceSid) : undefined;
    if (serviceSid !== null && !members)
      return twilioError(res, 400, 21705, "The Messaging Service is invalid");
    // With only a Messaging Service, Twilio picks a sender from its pool.
    const fromParam = form.get("From") ?? (members ? ([...members][0] ?? "") : "");
    if (!fromParam && !serviceSid)
      return twilioError(
        res,
        400,
        21603,
        "A 'From' or 'MessagingServiceSid' parameter is required to send a message",
      );
    const to = toE164(form.get("To") ?? "");
    const from = toE164(fromParam);
    if (!to) return twilioError(res, 400, 21211, "The 'To' number is not a valid phone number.");
    if (!from) return twilioError(res, 400, 21212, "The 'From' number is not a valid phone number.");
    if (from === to) return twilioError(res, 400, 21266, "'To' and 'From' number cannot be the same");
    if (this.isBlocked(to, from, serviceSid))
      return twilioError(res, 400, 21610, "Attempt to send to unsubscribed recipient");
    if ((form.get("Body") ?? "").length > 1600)
      return twilioError(res, 400, 21617, "The concatenated message body exceeds the 1600 character limit");
    const message: SandboxMessage = {
      sid: sid("SM"),
      accountSid: this.options.accountSid,
      from,
      to,
      body: form.get("Body") ?? "",
      mediaUrls: form.getAll("MediaUrl"),
      status: "queued",
      direction: "outbound-api",
      dateCreated: new Date().toISOString(),
      statusCallback: form.get("StatusCallback"),
      messagingServiceSid: serviceSid,
    };
    this.messages.push(message);
    this.deliverToPhone(to, {
      direction: "in",
      counterpart: from,
      body: message.body,
      detail: message.sid,
      ...(message.mediaUrls.length ? { media: message.mediaUrls } : {}),
    });
    this.emit("message", message);
    setTimeout(() => void this.progress(message), this.options.statusCallbackDelayMs ?? 50);
    if (this.slowAnswers.count > 0) {
      this.slowAnswers.count--;
      setTimeout(() => send(res, 201, toResource(message)), this.slowAnswers.slowAnswerMs);
      return;
    }
    return send(res, 201, toResource(message));
  }

  private async progress(message: SandboxMessage) {
    for (const status of ["sent", "delivered"] as const) {
      message.status = status;
      if (!message.statusCallback) continue;
      await this.signedPost(message.statusCallback, {
        AccountSid: message.accountSid,
        MessageSid: message.sid,
        SmsSid: message.sid,
        MessageStatus: status,
        SmsStatus: status,
        From: message.from,
        To: message.to,
        ApiVersion: "2010-04-01",
      }).catch((error) => this.emit("warning", `status callback failed: ${error}`));
    }
  }

  private listMessages(res: ServerResponse, query: URLSearchParams) {
    const to = query.get("To");
    const from = query.get("From");
    const after = query.get("DateSent>");
    const found = this.messages.filter(
      (m) =>
        m.direction === "outbound-api" &&
        (!to || m.to === to) &&
        (!from || m.from === from) &&
        (!after || Date.parse(m.dateCreated) >= Date.parse(after)),
    );
    return send(res, 200, {
      messages: found.slice(-Number(query.get("PageSize") ?? 50)).map(toResource),
      page: 0,
      page_size: found.length,
      next_page_uri: null,
      uri: "/2010-04-01/Accounts/x/Messages.json",
    });
  }

  private listAvailable(res: ServerResponse, country: string) {
    // Every country gets a fictional US number: enough to exercise the purchase flow.
    const number = `+1415555${String(this.nextAvailable++).padStart(4, "0")}`;
    return send(res, 200, {
      available_phone_numbers: [
        {
          phone_number: number,
          friendly_name: number,
          iso_country: country,
          capabilities: { SMS: true, MMS: true, voice: true },
        },
      ],
      uri: "/available",
    });
  }

  private addServiceNumber(res: ServerResponse, serviceSid: string, form: URLSearchParams) {
    const members = this.messagingServices.get(serviceSid);
    if (!members) return twilioError(res, 404, 20404, "The requested resource was not found");
    const phoneNumberSid = form.get("PhoneNumberSid") ?? "";
    const number = this.numberSids.get(phoneNumberSid);
    if (!number) return twilioError(res, 400, 21421, "Phone Number SID is invalid");
    const current = this.serviceOf(number);
    if (current && current !== serviceSid)
      return twilioError(
        res,
        400,
        21712,
        "Phone Number or Short Code is associated with another Messaging Service.",
      );
    members.add(number);
    this.emit("service-number", { messagingServiceSid: serviceSid, phoneNumber: number });
    return send(res, 201, this.serviceNumberResource(serviceSid, phoneNumberSid, number));
  }

  private listServiceNumbers(res: ServerResponse, serviceSid: string) {
    const members = this.messagingServices.get(serviceSid);
    if (!members) return twilioError(res, 404, 20404, "The requested resource was not found");
    const bySid = new Map([...this.numberSids].map(([pn, n]) => [n, pn]));
    const url = `https://messaging.twilio.com/v1/Services/${serviceSid}/PhoneNumbers`;
    return send(res, 200, {
      phone_numbers: [...members].map((n) => this.serviceNumberResource(serviceSid, bySid.get(n) ?? "", n)),
      meta: {
        page: 0,
        page_size: 50,
        first_page_url: `${url}?PageSize=50&Page=0`,
        previous_page_url: null,
        url: `${url}?PageSize=50&Page=0`,
        next_page_url: null,
        key: "phone_numbers",
      },
    });
  }

  private serviceNumberResource(serviceSid: string, phoneNumberSid: string, number: string) {
    const now = new Date().toISOString();
    return {
      sid: phoneNumberSid,
      account_sid: this.options.accountSid,
      service_sid: serviceSid,
      date_created: now,
      date_updated: now,
      phone_number: number,
      country_code: "US",
      capabilities: ["SMS", "MMS", "Voice"],
      url: `https://messaging.twilio.com/v1/Services/${serviceSid}/PhoneNumbers/${phoneNumberSid}`,
    };
  }

  private buyNumber(res: ServerResponse, form: URLSearchParams) {
    const number = toE164(form.get("PhoneNumber") ?? "");
    if (!number) return twilioError(res, 400, 21421, "PhoneNumber is invalid");
    this.ownedNumbers.push(number);
    const phoneNumberSid = sid("PN");
    this.numberSids.set(phoneNumberSid, number);
    this.emit("number", { phoneNumber: number, smsUrl: form.get("SmsUrl"), voiceUrl: form.get("VoiceUrl") });
    return send(res, 201, {
      sid: phoneNumberSid,
      account_sid: this.options.accountSid,
      phone_number: number,
      friendly_name: number,
      sms_url: form.get("SmsUrl"),
      voice_url: form.get("VoiceUrl"),
      capabilities: { sms: true, mms: true, voice: true },
    });
  }

  /**
   * A virtual phone texts a (proxy) number: Twilio's inbound webhook, signed. Opt-out keywords are handled
   * first, as Twilio does: the block applies and the confirmation is sent before the webhook; the webhook
   * carries `OptOutType` only when the number is in a Messaging Service (Advanced Opt-Out).
   */
  async phoneSends(
    from: string,
    to: string,
    body: string,
    options: { messageSid?: string; mediaUrls?: readonly string[] } = {},
  ) {
    const media = (options.mediaUrls ?? []).slice(0, 10);
    const messageSid = options.messageSid ?? sid(media.length ? "MM" : "SM");
    this.deliverToPhone(from, {
      direction: "out",
      counterpart: to,
      body,
      detail: messageSid,
      ...(media.length ? { media: [...media] } : {}),
    });
    const keyword = carrierKeyword(body);
    if (keyword) this.applyKeyword(from, to, keyword);
    const mediaParams: Record<string, string> = {};
    media.forEach((url, i) => {
      mediaParams[`MediaContentType${i}`] = contentTypeOf(url);
      mediaParams[`MediaUrl${i}`] = url;
    });
    const response = await this.signedPost(`${this.options.publicBaseUrl}/twilio/sms`, {
      ToCountry: "US",
      SmsMessageSid: messageSid,
      NumMedia: String(media.length),
      ...mediaParams,
      SmsSid: messageSid,
      SmsStatus: "received",
      Body: body,
      To: to,
      NumSegments: "1",
      MessageSid: messageSid,
      AccountSid: this.options.accountSid,
      From: from,
      ApiVersion: "2010-04-01",
      ...(keyword && this.serviceOf(to) ? { OptOutType: keyword } : {}),
    });
    const reply = /<Message>([\s\S]*?)<\/Message>/.exec(response.body)?.[1];
    // A TwiML reply is a send like any other: Twilio refuses it to a handset that blocked the number.
    if (reply && !this.isBlocked(from, to))
      this.deliverToPhone(from, {
        direction: "in",
        counterpart: to,
        body: unescapeXml(reply),
        detail: "auto-reply",
      });
    return { messageSid, status: response.status, twiml: response.body };
  }

  /** A virtual phone calls a (proxy) number: Twilio asks for TwiML and would dial what it says. */
  async phoneCalls(from: string, to: string) {
    const callSid = sid("CA");
    const response = await this.signedPost(`${this.options.publicBaseUrl}/twilio/voice`, {
      CallSid: callSid,
      AccountSid: this.options.accountSid,
      From: from,
      To: to,
      CallStatus: "ringing",
      Direction: "inbound",
      ApiVersion: "2010-04-01",
    });
    const dial = /<Dial[^>]*callerId="([^"]+)"[^>]*>\s*<Number>([^<]+)<\/Number>/.exec(response.body);
    if (dial?.[1] && dial[2]) {
      this.deliverToPhone(from, {
        direction: "call-out",
        counterpart: to,
        body: "Calling…",
        detail: callSid,
      });
      this.deliverToPhone(dial[2], {
        direction: "call-in",
        counterpart: dial[1],
        body: "Incoming call",
        detail: callSid,
      });
    } else {
      const say = /<Say[^>]*>([\s\S]*?)<\/Say>/.exec(response.body)?.[1] ?? "Call rejected";
      this.deliverToPhone(from, {
        direction: "call-out",
        counterpart: to,
        body: unescapeXml(say),
        detail: callSid,
      });
    }
    return { callSid, status: response.status, twiml: response.body };
  }

  addPhone(number: string) {
    if (!this.phones.has(number)) this.phones.set(number, []);
    this.emit("phone", { phoneNumber: number });
  }

  private deliverToPhone(number: string, entry: Omit<PhoneEntry, "id" | "at">) {
    const inbox = this.phones.get(number) ?? [];
    this.phones.set(number, inbox);
    const full = { ...entry, id: sid("E").slice(0, 12), at: new Date().toISOString() };
    inbox.push(full);
    if (inbox.length > 200) inbox.shift();
    this.emit("phone-entry", { phoneNumber: number, entry: full });
  }

  /** Posts form params to `url` signed like Twilio; the request goes to the local server. */
  async signedPost(url: string, params: Record<string, string>) {
    const signature = getExpectedTwilioSignature(this.options.authToken, url, params);
    const target = new URL(url);
    const local = new URL(this.options.webhookTarget);
    const isOurs = url.startsWith(this.options.publicBaseUrl);
    const actual = isOurs ? `${local.origin}${target.pathname}${target.search}` : url;
    const response = await fetch(actual, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        "x-twilio-signature": signature,
        "i-twilio-idempotency-token": randomBytes(8).toString("hex"),
      },
      body: new URLSearchParams(params).toString(),
    });
    return { status: response.status, body: await response.text() };
  }
}

/** Seeded pool numbers of the sandbox: +1 415 555 01xx, a fictional range. */
export function sandboxNumbers(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `+1415555${String(100 + i).padStart(4, "0")}`);
}

function toResource(m: SandboxMessage) {
  return {
    sid: m.sid,
    account_sid: m.accountSid,
    from: m.from,
    to: m.to,
    body: m.body,
    status: m.status,
    direction: m.direction,
    num_media: String(m.mediaUrls.length),
    num_segments: "1",
    date_created: new Date(m.dateCreated).toUTCString(),
    date_sent: new Date(m.dateCreated).toUTCString(),
    date_updated: new Date().toUTCString(),
    price: null,
    price_unit: "USD",
    error_code: null,
    error_message: null,
    api_version: "2010-04-01",
    messaging_service_sid: m.messagingServiceSid,
    uri: `/2010-04-01/Accounts/${m.accountSid}/Messages/${m.sid}.json`,
    subresource_uris: { media: `/2010-04-01/Accounts/${m.accountSid}/Messages/${m.sid}/Media.json` },
    country_code: callingCode(m.to as never),
  };
}

function contentTypeOf(url: string): string {
  const extension = /\.([a-z0-9]+)(?:[?#]|$)/i.exec(url)?.[1]?.toLowerCase();
  switch (extension) {
    case "png":
      return "image/png";
    case "gif":
      return "image/gif";
    default:
      return "image/jpeg";
  }
}

function send(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

function twilioError(res: ServerResponse, status: number, code: number, message: string) {
  send(res, status, { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status });
}

function unescapeXml(text: string) {
  return text
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, "&");
}
