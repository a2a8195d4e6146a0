import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import { getExpectedTwilioSignature } from "twilio/lib/webhooks/webhooks.js";
import { callingCode, toE164 } from "../shared/domain/phone.ts";

/**
 * A local stand-in for the Twilio REST API (Messages, AvailablePhoneNumbers, IncomingPhoneNumbers) plus
 * virtual phones that send webhooks signed with the auth token exactly as Twilio does.
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
}

export interface PhoneEntry {
  id: string;
  direction: "in" | "out" | "call-in" | "call-out";
  counterpart: string;
  body: string;
  at: string;
  detail?: string;
}

export interface SandboxOptions {
  accountSid: string;
  authToken: string;
  /** The URL Twilio would call (PUBLIC_BASE_URL), used to sign webhooks. */
  publicBaseUrl: string;
  /** Where the webhooks are actually posted (the local server). */
  webhookTarget: string;
  statusCallbackDelayMs?: number;
}

export interface FaultPlan {
  /** Share of Messages.create calls answered with an error, 0..1. */
  rate: number;
  statuses: number[];
}

const sid = (prefix: string) => `${prefix}${randomBytes(16).toString("hex")}`;
const TWILIO_PATH = /^\/2010-04-01\/Accounts\/([^/]+)\/(.+?)(\.json)?$/;

export class TwilioSandbox extends EventEmitter {
  readonly messages: SandboxMessage[] = [];
  readonly phones = new Map<string, PhoneEntry[]>();
  readonly ownedNumbers: string[] = [];
  /** Recipients that answered STOP: sends to them fail with 21610, as on Twilio. */
  readonly unsubscribed = new Set<string>();
  faults: FaultPlan = { rate: 0, statuses: [] };
  /** Accept the next N sends but answer only after `slowAnswerMs`: a client timeout after Twilio accepted. */
  slowAnswers = { count: 0, slowAnswerMs: 0 };
  private nextAvailable = 200;

  constructor(private readonly options: SandboxOptions) {
    super();
  }

  handles(path: string): boolean {
    return TWILIO_PATH.test(path);
  }

  /** The REST side: what the official twilio client calls through TWILIO_API_BASE_URL. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL, body: string): Promise<void> {
    const match = TWILIO_PATH.exec(url.pathname);
    const account = match?.[1];
    const resource = match?.[2] ?? "";
    const expected = `Basic ${Buffer.from(`${this.options.accountSid}:${this.options.authToken}`).toString("base64")}`;
    if (req.headers.authorization !== expected || account !== this.options.accountSid)
      return twilioError(res, 401, 20003, "Authenticate");
    const form = new URLSearchParams(body);
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
    const to = toE164(form.get("To") ?? "");
    const from = toE164(form.get("From") ?? "");
    if (!to) return twilioError(res, 400, 21211, "The 'To' number is not a valid phone number.");
    if (!from) return twilioError(res, 400, 21212, "The 'From' number is not a valid phone number.");
    if (this.unsubscribed.has(to))
      return twilioError(res, 400, 21610, "Attempt to send to unsubscribed recipient");
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
    };
    this.messages.push(message);
    this.deliverToPhone(to, { direction: "in", counterpart: from, body: message.body, detail: message.sid });
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

  private buyNumber(res: ServerResponse, form: URLSearchParams) {
    const number = toE164(form.get("PhoneNumber") ?? "");
    if (!number) return twilioError(res, 400, 21421, "PhoneNumber is invalid");
    this.ownedNumbers.push(number);
    this.emit("number", { phoneNumber: number, smsUrl: form.get("SmsUrl"), voiceUrl: form.get("VoiceUrl") });
    return send(res, 201, {
      sid: sid("PN"),
      account_sid: this.options.accountSid,
      phone_number: number,
      friendly_name: number,
      sms_url: form.get("SmsUrl"),
      voice_url: form.get("VoiceUrl"),
      capabilities: { sms: true, mms: true, voice: true },
    });
  }

  /** A virtual phone texts a (proxy) number: Twilio's inbound webhook, signed. */
  async phoneSends(from: string, to: string, body: string, options: { messageSid?: string } = {}) {
    const messageSid = options.messageSid ?? sid("SM");
    this.deliverToPhone(from, { direction: "out", counterpart: to, body, detail: messageSid });
    const response = await this.signedPost(`${this.options.publicBaseUrl}/twilio/sms`, {
      ToCountry: "US",
      SmsMessageSid: messageSid,
      NumMedia: "0",
      SmsSid: messageSid,
      SmsStatus: "received",
      Body: body,
      To: to,
      NumSegments: "1",
      MessageSid: messageSid,
      AccountSid: this.options.accountSid,
      From: from,
      ApiVersion: "2010-04-01",
    });
    const reply = /<Message>([\s\S]*?)<\/Message>/.exec(response.body)?.[1];
    if (reply)
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
    messaging_service_sid: null,
    uri: `/2010-04-01/Accounts/${m.accountSid}/Messages/${m.sid}.json`,
    subresource_uris: { media: `/2010-04-01/Accounts/${m.accountSid}/Messages/${m.sid}/Media.json` },
    country_code: callingCode(m.to as never),
  };
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
