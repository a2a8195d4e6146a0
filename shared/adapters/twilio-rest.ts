import { request as httpRequest } from "node:http";
import { Agent, request as httpsRequest } from "node:https";
import type { Client as TwilioClient } from "twilio/lib/base/BaseTwilio.js";
import DomainModule from "twilio/lib/base/Domain.js";
import VersionModule from "twilio/lib/base/Version.js";
import twilioPackage from "twilio/package.json" with { type: "json" };
import { SmsSendError } from "../ports.ts";
import { traced } from "./observability.ts";

/**
 * Twilio's REST API through the official package's own resource modules (`twilio/lib/rest/...`: paths,
 * parameter names and serialization, response parsing, paging, RestException), on a small transport of our
 * own. The package's `Twilio` client would bring every product's resources and axios into a function's bundle
 * (3.2 MB, most of forward's cold start) to create one message; see docs/performance.md.
 */

/** A CommonJS module's `exports.default` (the package's classes), however the loader wraps it. */
const cjsDefault = <T>(mod: T | { default: T }): T =>
  typeof mod === "object" && mod !== null && "default" in mod ? mod.default : (mod as T);
export const Domain = cjsDefault(DomainModule);
const Version = cjsDefault(VersionModule);

export interface TwilioRestOptions {
  accountSid: string;
  authToken: string;
  /** `https://api.twilio.com` for Twilio itself; otherwise every Twilio host is rewritten to it. */
  apiBaseUrl: string;
  timeoutMs?: number;
}

/** A request as the package's resources make it (what its `Client.request` receives). */
interface TwilioRequest {
  method: string;
  uri: string;
  params?: Record<string, unknown>;
  data?: Record<string, unknown>;
  headers?: Record<string, string>;
  timeout?: number;
}

/** What the package's resources read from an answer (its `http/response`). */
interface TwilioResponse {
  statusCode: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

const TWILIO_HOST = /^https:\/\/[a-z0-9.-]*twilio\.com/;
const USER_AGENT = `twilio-node/${twilioPackage.version} (maskline) node/${process.version}`;
const keepAlive = new Agent({ keepAlive: true });

/** Form encoding as the package's RequestClient does it (`qs`, arrayFormat "repeat"). */
function form(values: Record<string, unknown> | undefined): URLSearchParams {
  const out = new URLSearchParams();
  for (const [name, value] of Object.entries(values ?? {})) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) out.append(name, String(v));
  }
  return out;
}

/**
 * The transport under the package's resources: basic auth, form-encoded bodies, a timeout; every request
 * goes to `baseUrl` instead of a Twilio host (the local sandbox or a test server). 429/5xx answers and
 * transport failures become SmsSendError so the forwarder can tell retryable from permanent; other answers
 * go back to the resource, which throws the package's RestException for a 4xx.
 */
export class TwilioTransport {
  private readonly authorization: string;
  private readonly baseUrl: string;

  constructor(private readonly options: TwilioRestOptions) {
    this.authorization = `Basic ${Buffer.from(`${options.accountSid}:${options.authToken}`).toString("base64")}`;
    this.baseUrl =
      options.apiBaseUrl === "https://api.twilio.com" ? "" : options.apiBaseUrl.replace(/\/$/, "");
  }

  async request(opts: TwilioRequest): Promise<TwilioResponse> {
    const url = new URL(this.baseUrl ? opts.uri.replace(TWILIO_HOST, this.baseUrl) : opts.uri);
    for (const [name, value] of form(opts.params)) url.searchParams.append(name, value);
    const method = opts.method.toUpperCase();
    const body = method === "POST" || method === "PUT" ? form(opts.data).toString() : undefined;
    const headers: Record<string, string> = {
      ...opts.headers,
      Authorization: this.authorization,
      "User-Agent": USER_AGENT,
      "Accept-Charset": "utf-8",
      Accept: "application/json",
      ...(body !== undefined
        ? {
            "Content-Type": "application/x-www-form-urlencoded",
            "Content-Length": String(Buffer.byteLength(body)),
          }
        : {}),
    };
    const path = new URL(opts.uri).pathname.replace(/\/(AC|SM|MM|PN)\w+/g, "/$1…");
    let response: TwilioResponse;
    try {
      response = await traced(`Twilio ${method} ${path}`, () =>
        send(url, method, headers, body, opts.timeout ?? this.options.timeoutMs ?? 10_000),
      );
    } catch (error) {
      const code = (error as { code?: string }).code;
      // Refused connections never reached Twilio; anything else (timeouts, resets) may have.
      const kind = code === "ECONNREFUSED" || code === "ENOTFOUND" ? "retryable" : "ambiguous";
      throw new SmsSendError(kind, null, null, null, { cause: error });
    }
    if (response.statusCode === 429 || response.statusCode >= 500) {
      const retryAfter = Number(response.headers["retry-after"]);
      let code: string | null = null;
      try {
        const parsed = JSON.parse(response.body) as { code?: number };
        code = parsed?.code ? String(parsed.code) : null;
      } catch {
        // not JSON: no Twilio error code
      }
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

function send(
  url: URL,
  method: string,
  headers: Record<string, string>,
  body: string | undefined,
  timeoutMs: number,
): Promise<TwilioResponse> {
  return new Promise((resolve, reject) => {
    const https = url.protocol === "https:";
    const req = (https ? httpsRequest : httpRequest)(
      url,
      { method, headers, signal: AbortSignal.timeout(timeoutMs), ...(https ? { agent: keepAlive } : {}) },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("error", reject);
        res.on("end", () =>
          resolve({
            statusCode: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString("utf8"),
            headers: res.headers,
          }),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** A version of one Twilio domain (e.g. api.twilio.com, 2010-04-01) on the transport. */
export function twilioVersion<V>(transport: TwilioTransport, domainUrl: string, version: string): V {
  return new Version(new Domain(transport as unknown as TwilioClient, domainUrl), version) as V;
}
