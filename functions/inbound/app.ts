import { timingSafeEqual } from "node:crypto";
import type { Logger } from "@aws-lambda-powertools/logger";
import middy, { type MiddlewareObj } from "@middy/core";
// Only the webhook and TwiML parts of twilio: the inbound bundle must not load the REST client.
import MessagingResponse from "twilio/lib/twiml/MessagingResponse.js";
import VoiceResponse from "twilio/lib/twiml/VoiceResponse.js";
import { validateRequest } from "twilio/lib/webhooks/webhooks.js";
import { z } from "zod";
import type { InboundService } from "../../shared/app/inbound.ts";
import { SMS_BODY_MAX, withoutHiddenCharacters } from "../../shared/domain/message.ts";
import { e164Schema, maskNumber, toE164 } from "../../shared/domain/phone.ts";
import {
  type HttpEvent,
  type HttpResult,
  headerOf,
  problemJson,
  rawBody,
} from "../../shared/http/middleware.ts";
import { problems } from "../../shared/http/problem.ts";

const FORM_LIMIT = 64 * 1024;

/**
 * Twilio's signature concatenates keys and values without separators, so characters can move across a key
 * boundary ("MessageSid=SM…" + "NumMedia=0" → "MessageSid=SM…NumMedia0") and still be signed. The exact
 * shape of each identifier, and our own AccountSid, are what make such a moved request fail.
 */
export const TWILIO_SIDS = {
  message: /^(SM|MM)[0-9a-f]{32}$/,
  call: /^CA[0-9a-f]{32}$/,
} as const;
const messageSid = z.string().regex(TWILIO_SIDS.message, "not a Twilio message SID");
const callSid = z.string().regex(TWILIO_SIDS.call, "not a Twilio call SID");

/** Senders may be short codes, alphanumeric ids or "anonymous": answered, never an error. */
const sender = z
  .string()
  .max(64)
  .default("")
  .transform((raw) => toE164(raw));

const smsForm = z.object({
  MessageSid: messageSid,
  From: sender,
  To: e164Schema,
  Body: z.string().max(SMS_BODY_MAX).default("").transform(withoutHiddenCharacters),
  NumMedia: z.coerce.number().int().min(0).max(10).default(0),
  OptOutType: z.string().max(16).optional(),
});

const voiceForm = z.object({ CallSid: callSid, From: sender, To: e164Schema });

const statusForm = z.object({
  // Call status callbacks carry only a CallSid: accepted and ignored.
  MessageSid: messageSid.optional(),
  CallSid: callSid.optional(),
  MessageStatus: z.string().max(32).optional(),
  SmsStatus: z.string().max(32).optional(),
  ErrorCode: z.string().max(16).optional(),
});

type TwilioEvent = HttpEvent & {
  twilioParams?: Record<string, string>;
  /** A form key that came more than once (signed over every value, as Twilio signs; then refused). */
  twilioRepeated?: string;
};

/**
 * Checks X-Twilio-Signature with twilio's own validator against the public URL Twilio called, before any
 * parsing or storage: a forged request is refused having changed nothing.
 */
export function twilioSignature(options: {
  /** The token, or the current tokens (primary and, during a rotation, secondary): any may sign. */
  authToken: string | (() => Promise<readonly string[]>);
  publicBaseUrl: string;
  /**
   * Local only, when no PUBLIC_BASE_URL was configured: also accept a signature made for the URL the
   * request actually came to (http://127.0.0.1:3000 as well as the default http://localhost:3000).
   */
  acceptRequestHost?: boolean;
}): MiddlewareObj<TwilioEvent, HttpResult> {
  // A base with a path (a custom domain's API mapping): also the URL if rawPath keeps that path.
  const base = new URL(options.publicBaseUrl);
  const prefix = base.pathname.replace(/\/$/, "");
  return {
    before: async (request) => {
      const event = request.event;
      const text = rawBody(event);
      if (Buffer.byteLength(text) > FORM_LIMIT) throw problems.payloadTooLarge(FORM_LIMIT);
      const isForm = /^application\/x-www-form-urlencoded\b/i.test(headerOf(event, "content-type") ?? "");
      // No prototype: "__proto__" or "constructor" are form keys like any other (and signed as such).
      const params: Record<string, string> = Object.create(null);
      // A repeated key is signed over all its values, as Twilio signs it: never over the last one alone, which
      // would let a field put in front of a signed one pass with the signed request's signature.
      const signed: Record<string, string | string[]> = Object.create(null);
      let repeated: string | undefined;
      if (isForm)
        for (const [k, v] of new URLSearchParams(text)) {
          const seen = signed[k];
          if (seen !== undefined) repeated ??= k;
          signed[k] = seen === undefined ? v : [seen, v].flat();
          params[k] = v;
        }
      const query = event.rawQueryString ? `?${event.rawQueryString}` : "";
      const urls = [`${options.publicBaseUrl}${event.rawPath}${query}`];
      if (prefix && (event.rawPath === prefix || event.rawPath.startsWith(`${prefix}/`)))
        urls.push(`${base.origin}${event.rawPath}${query}`);
      const host = headerOf(event, "host");
      if (options.acceptRequestHost && host) urls.push(`http://${host}${event.rawPath}${query}`);
      const signature = headerOf(event, "x-twilio-signature");
      const tokens = typeof options.authToken === "string" ? [options.authToken] : await options.authToken();
      const valid = (url: string) =>
        tokens.some((token) => validateRequest(token, signature ?? "", url, signed));
      if (!signature || !urls.some(valid)) throw problems.badSignature();
      if (!isForm) throw problems.unsupportedMediaType("application/x-www-form-urlencoded");
      event.twilioParams = params;
      event.twilioRepeated = repeated;
    },
  };
}

/** Which identifiers each webhook must carry ("optional": checked when present). */
const REQUIRED_SIDS: Record<string, Partial<Record<"MessageSid" | "CallSid", "required" | "optional">>> = {
  "POST /twilio/sms": { MessageSid: "required" },
  "POST /twilio/voice": { CallSid: "required" },
  "POST /twilio/status": { MessageSid: "optional", CallSid: "optional" },
};

/**
 * Right after the signature and before anything is read or stored: the request must come from our Twilio
 * account and name its message or call with a well-formed SID. Otherwise it is a 400 that changed nothing,
 * and it is counted (a signed request that fails this is a replay or a misconfigured account).
 */
export function twilioIdentifiers(options: {
  accountSid: string;
  countInvalidRequest?: (route: string, field: string) => void;
}): MiddlewareObj<TwilioEvent, HttpResult> {
  const expected = Buffer.from(options.accountSid);
  return {
    before: async (request) => {
      const event = request.event;
      const rules = REQUIRED_SIDS[event.routeKey];
      if (!rules) return;
      const params = event.twilioParams ?? {};
      const refuse = (field: string) => {
        options.countInvalidRequest?.(event.routeKey, field);
        return problems.invalidTwilioRequest(field);
      };
      // Twilio never repeats a field: which value would be the sender, the message, the account?
      if (event.twilioRepeated) throw refuse(event.twilioRepeated);
      const account = Buffer.from(params.AccountSid ?? "");
      if (account.length !== expected.length || !timingSafeEqual(account, expected))
        throw refuse("AccountSid");
      for (const [field, rule] of Object.entries(rules) as ["MessageSid" | "CallSid", string][]) {
        const value = params[field];
        if (value === undefined && rule === "optional") continue;
        const pattern = field === "MessageSid" ? TWILIO_SIDS.message : TWILIO_SIDS.call;
        if (value === undefined || !pattern.test(value)) throw refuse(field);
      }
    },
  };
}

function form<T extends z.ZodTypeAny>(event: TwilioEvent, schema: T): z.output<T> {
  const parsed = schema.safeParse(event.twilioParams ?? {});
  if (!parsed.success) throw problems.validation(parsed.error);
  return parsed.data;
}

const twiml = (xml: string): HttpResult => ({
  statusCode: 200,
  headers: { "content-type": "text/xml; charset=utf-8" },
  body: xml,
});

export interface InboundAppDeps {
  service: InboundService;
  logger: Logger;
  authToken: string | (() => Promise<readonly string[]>);
  /** Our Twilio account: webhooks naming any other AccountSid are refused. */
  accountSid: string;
  publicBaseUrl: string;
  acceptRequestHost?: boolean;
  /** Counts signed webhooks refused for their identifiers (a metric in AWS). */
  countInvalidRequest?: (route: string, field: string) => void;
}

export function createInboundHandler({
  service,
  logger,
  authToken,
  accountSid,
  publicBaseUrl,
  acceptRequestHost,
  countInvalidRequest,
}: InboundAppDeps) {
  const routes: Record<string, (event: TwilioEvent) => Promise<HttpResult>> = {
    "POST /twilio/sms": async (event) => {
      const f = form(event, smsForm);
      const mediaUrls: string[] = [];
      for (let i = 0; i < f.NumMedia; i++) {
        const url = event.twilioParams?.[`MediaUrl${i}`];
        if (url && /^https?:\/\//.test(url)) mediaUrls.push(url);
      }
      const started = Date.now();
      const { reply, duplicate } = await service.receiveSms({
        messageSid: f.MessageSid,
        from: f.From,
        to: f.To,
        body: f.Body,
        mediaUrls,
        optOutType: f.OptOutType,
      });
      logger.info("sms received", {
        messageSid: f.MessageSid,
        from: f.From ? maskNumber(f.From) : "not a phone number",
        to: maskNumber(f.To),
        duplicate,
        outOfSession: reply !== null,
        ms: Date.now() - started,
      });
      const response = new MessagingResponse();
      if (reply) response.message(reply);
      return twiml(response.toString());
    },
    "POST /twilio/voice": async (event) => {
      const f = form(event, voiceForm);
      const answer = await service.receiveCall({ callSid: f.CallSid, from: f.From, to: f.To });
      logger.info("call received", {
        callSid: f.CallSid,
        from: f.From ? maskNumber(f.From) : "not a phone number",
        bridged: answer.kind === "dial",
      });
      const response = new VoiceResponse();
      if (answer.kind === "dial") {
        response.dial({ callerId: answer.callerId }).number(answer.to);
      } else if (answer.say) {
        response.say(answer.say);
        response.hangup();
      } else {
        response.reject();
      }
      return twiml(response.toString());
    },
    "POST /twilio/status": async (event) => {
      const f = form(event, statusForm);
      if (!f.MessageSid) return { statusCode: 204, body: "" };
      const messageId = new URLSearchParams(event.rawQueryString ?? "").get("m") ?? undefined;
      await service.recordStatus({
        messageId,
        twilioSid: f.MessageSid,
        status: f.MessageStatus ?? f.SmsStatus ?? "unknown",
        errorCode: f.ErrorCode,
      });
      return { statusCode: 204, body: "" };
    },
  };
  return middy<TwilioEvent, HttpResult>()
    .use(problemJson(logger))
    .use(twilioSignature({ authToken, publicBaseUrl, acceptRequestHost }))
    .use(
      twilioIdentifiers({
        accountSid,
        countInvalidRequest: (route, field) => {
          logger.warn("twilio request refused", { route, field, metric: "InvalidTwilioRequests" });
          countInvalidRequest?.(route, field);
        },
      }),
    )
    .handler(async (event) => {
      const route = routes[event.routeKey];
      if (!route) throw problems.routeNotFound();
      return route(event);
    });
}
