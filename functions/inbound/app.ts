import type { Logger } from "@aws-lambda-powertools/logger";
import middy, { type MiddlewareObj } from "@middy/core";
// Only the webhook and TwiML parts of twilio: the inbound bundle must not load the REST client.
import MessagingResponse from "twilio/lib/twiml/MessagingResponse.js";
import VoiceResponse from "twilio/lib/twiml/VoiceResponse.js";
import { validateRequest } from "twilio/lib/webhooks/webhooks.js";
import { z } from "zod";
import type { MessagingService } from "../../shared/app/messaging.ts";
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
const sid = z.string().regex(/^[A-Za-z0-9_-]{2,64}$/, "not a Twilio SID");

/** Senders may be short codes, alphanumeric ids or "anonymous": answered, never an error. */
const sender = z
  .string()
  .max(64)
  .default("")
  .transform((raw) => toE164(raw));

const smsForm = z.object({
  MessageSid: sid,
  From: sender,
  To: e164Schema,
  Body: z.string().max(1600).default(""),
  NumMedia: z.coerce.number().int().min(0).max(10).default(0),
  OptOutType: z.string().max(16).optional(),
});

const voiceForm = z.object({ CallSid: sid, From: sender, To: e164Schema });

const statusForm = z.object({
  // Call status callbacks carry only a CallSid: accepted and ignored.
  MessageSid: sid.optional(),
  CallSid: sid.optional(),
  MessageStatus: z.string().max(32).optional(),
  SmsStatus: z.string().max(32).optional(),
  ErrorCode: z.string().max(16).optional(),
});

type TwilioEvent = HttpEvent & { twilioParams?: Record<string, string> };

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
  return {
    before: async (request) => {
      const event = request.event;
      const text = rawBody(event);
      if (Buffer.byteLength(text) > FORM_LIMIT) throw problems.payloadTooLarge(FORM_LIMIT);
      const isForm = /^application\/x-www-form-urlencoded\b/i.test(headerOf(event, "content-type") ?? "");
      const params: Record<string, string> = {};
      if (isForm) for (const [k, v] of new URLSearchParams(text)) params[k] = v;
      const query = event.rawQueryString ? `?${event.rawQueryString}` : "";
      const urls = [`${options.publicBaseUrl}${event.rawPath}${query}`];
      const host = headerOf(event, "host");
      if (options.acceptRequestHost && host) urls.push(`http://${host}${event.rawPath}${query}`);
      const signature = headerOf(event, "x-twilio-signature");
      const tokens = typeof options.authToken === "string" ? [options.authToken] : await options.authToken();
      const valid = (url: string) =>
        tokens.some((token) => validateRequest(token, signature ?? "", url, params));
      if (!signature || !urls.some(valid)) throw problems.badSignature();
      if (!isForm) throw problems.unsupportedMediaType("application/x-www-form-urlencoded");
      event.twilioParams = params;
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
  service: MessagingService;
  logger: Logger;
  authToken: string | (() => Promise<readonly string[]>);
  publicBaseUrl: string;
  acceptRequestHost?: boolean;
}

export function createInboundHandler({
  service,
  logger,
  authToken,
  publicBaseUrl,
  acceptRequestHost,
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
      } else {
        response.say(answer.say);
        response.hangup();
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
    .handler(async (event) => {
      const route = routes[event.routeKey];
      if (!route) throw problems.routeNotFound();
      return route(event);
    });
}
