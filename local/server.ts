import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { APIGatewayProxyStructuredResultV2, Context } from "aws-lambda";
import { HttpProblem, problemResponse, problems } from "../shared/http/problem.ts";
import type { FunctionName } from "../shared/resources.ts";
import { matchRoute, toApiGatewayEvent } from "./apigw.ts";
import type { LocalEventBus } from "./event-bus.ts";
import { localContext } from "./pollers.ts";
import type { TwilioSandbox } from "./twilio-sandbox.ts";

export type HttpHandler = (event: never, context: Context) => Promise<APIGatewayProxyStructuredResultV2>;

export interface LocalServerOptions {
  handlers: Partial<Record<FunctionName, HttpHandler>>;
  sandbox: TwilioSandbox;
  bus: LocalEventBus;
  /** The sandbox page's own JSON API (/sandbox/...). */
  sandboxApi: (req: IncomingMessage, res: ServerResponse, url: URL, body: string) => Promise<boolean>;
  /**
   * Whether the sandbox (page, /sandbox API, Twilio stand-in) is served. Off when another Twilio is
   * configured: those unauthenticated routes would expose numbers and sign webhooks with a real token.
   */
  sandboxEnabled: () => boolean;
  /**
   * Origins besides this server's own loopback and interface addresses that may use the sandbox API (the
   * PUBLIC_BASE_URL's origin).
   */
  trustedOrigins?: string[];
}

const BODY_LIMIT = 1024 * 1024;
/** An oversize body is read and discarded up to this much, keeping the connection; beyond it, closed. */
const DRAIN_LIMIT = 16 * 1024 * 1024;
const webDir = join(dirname(fileURLToPath(import.meta.url)), "web");
const STATIC: Record<string, string> = {
  "/": "index.html",
  "/app.js": "app.js",
  "/style.css": "style.css",
  /** The picture a virtual phone can attach to a text (an MMS). */
  "/sample-picture.png": "sample-picture.png",
};
const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  png: "image/png",
};

/**
 * One HTTP server for the embedded stack: the public HTTP contract (invoking the deployed handlers with API
 * Gateway HTTP API events) and, in sandbox mode only, the Twilio REST stand-in and the sandbox page. The
 * local EventBridge answers only at its unguessable path (`LocalEventBus.path`) and only to this machine.
 */
export function createLocalServer(options: LocalServerOptions): Server {
  return createServer((req, res) => {
    void serve(req, res, options).catch((error) => {
      process.stderr.write(`local server error: ${(error as Error).stack}\n`);
      if (!res.headersSent) write(res, problemResponse(problems.internal()));
      else res.end();
    });
  });
}

/**
 * The body, or "too large". An oversize body is still read to its end (and discarded) so that the next
 * request on a keep-alive connection starts where it should; past DRAIN_LIMIT the connection is closed
 * after the answer instead.
 */
async function readBody(req: IncomingMessage): Promise<{ body: string } | { tooLarge: "drained" | "close" }> {
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > DRAIN_LIMIT) return { tooLarge: "close" };
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > DRAIN_LIMIT) return { tooLarge: "close" };
    if (size <= BODY_LIMIT) chunks.push(chunk as Buffer);
  }
  if (size > BODY_LIMIT) return { tooLarge: "drained" };
  return { body: Buffer.concat(chunks).toString("utf8") };
}

/** Loopback, or the address the connection arrived at (the stack calling itself on a non-loopback HOST). */
const fromThisMachine = (req: IncomingMessage) => {
  const remote = req.socket.remoteAddress?.replace(/^::ffff:/, "") ?? "";
  return (
    remote === "::1" ||
    remote.startsWith("127.") ||
    remote === req.socket.localAddress?.replace(/^::ffff:/, "")
  );
};

/** host:port as it appears in a Host header or an origin, IPv6 in brackets. */
const hostPort = (host: string, port: number) => `${host.includes(":") ? `[${host}]` : host}:${port}`;

/**
 * The sandbox API is unauthenticated and shows real numbers, so it answers only its own page or a
 * non-browser client: a browser request from another site (Origin, Sec-Fetch-Site), a foreign Host (DNS
 * rebinding) or a POST that is not JSON (a "simple" cross-site request needs no preflight) is refused.
 */
function sandboxRequestProblem(
  req: IncomingMessage,
  body: string,
  trusted: string[],
): HttpProblem | undefined {
  const port = req.socket.localPort ?? 0;
  const local = req.socket.localAddress?.replace(/^::ffff:/, "");
  const hosts = new Set(
    ["localhost", "127.0.0.1", "::1", ...(local ? [local] : [])].map((h) => hostPort(h, port)),
  );
  const origins = new Set([...[...hosts].map((h) => `http://${h}`), ...trusted]);
  for (const origin of trusted) hosts.add(new URL(origin).host);
  const forbidden = (detail: string) =>
    new HttpProblem(403, "cross-site-request", "Cross-site requests to the sandbox are refused", detail);
  if (!hosts.has((req.headers.host ?? "").toLowerCase())) return forbidden("Unexpected Host");
  const site = req.headers["sec-fetch-site"];
  if (site !== undefined && site !== "same-origin" && site !== "none")
    return forbidden(`Sec-Fetch-Site ${site}`);
  const origin = req.headers.origin;
  if (origin !== undefined && !origins.has(origin.toLowerCase())) return forbidden("Foreign Origin");
  const json = /^application\/json\b/i.test(req.headers["content-type"] ?? "");
  if ((req.method === "POST" || (req.method === "DELETE" && body)) && !json)
    return problems.unsupportedMediaType("application/json");
  return undefined;
}

function write(res: ServerResponse, result: APIGatewayProxyStructuredResultV2) {
  res.writeHead(result.statusCode ?? 200, result.headers as Record<string, string>);
  res.end(result.isBase64Encoded ? Buffer.from(result.body ?? "", "base64") : (result.body ?? ""));
}

async function serve(req: IncomingMessage, res: ServerResponse, options: LocalServerOptions) {
  const url = new URL(req.url ?? "/", "http://localhost");
  const sandboxOn = options.sandboxEnabled();
  const staticFile = req.method === "GET" && sandboxOn ? STATIC[url.pathname] : undefined;
  if (staticFile) {
    const content = await readFile(join(webDir, staticFile));
    res.writeHead(200, {
      "content-type": TYPES[staticFile.split(".").pop() ?? ""] ?? "text/plain; charset=utf-8",
      "cache-control": "no-store",
    });
    res.end(content);
    return;
  }
  const read = await readBody(req);
  if ("tooLarge" in read) {
    const result = problemResponse(problems.payloadTooLarge(BODY_LIMIT), url.pathname);
    if (read.tooLarge === "close") {
      res.once("finish", () => req.socket.end());
      return write(res, { ...result, headers: { ...result.headers, connection: "close" } });
    }
    return write(res, result);
  }
  const { body } = read;
  if (options.bus.handles(req, url) && fromThisMachine(req)) return options.bus.handle(req, res, body);
  if (sandboxOn && options.sandbox.handles(url.pathname)) return options.sandbox.handle(req, res, url, body);
  if (sandboxOn && url.pathname.startsWith("/sandbox/")) {
    const problem = sandboxRequestProblem(req, body, options.trustedOrigins ?? []);
    if (problem) return write(res, problemResponse(problem, url.pathname));
    if (await options.sandboxApi(req, res, url, body)) return;
  }

  const match = matchRoute(req.method ?? "GET", url.pathname);
  const handler = match && options.handlers[match.route.function];
  // Start-up: the server listens before the handlers are loaded.
  if (match && !handler) return write(res, problemResponse(problems.unavailable(), url.pathname));
  if (!match || !handler) {
    const allowed = ["GET", "POST", "PATCH", "DELETE"].filter(
      (m) => m !== req.method && matchRoute(m, url.pathname),
    );
    if (allowed.length)
      return write(res, {
        ...problemResponse(new HttpProblem(405, "method-not-allowed", "Method not allowed")),
        headers: { "content-type": "application/problem+json", allow: allowed.join(", ") },
      });
    return write(res, problemResponse(problems.routeNotFound(), url.pathname));
  }
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers))
    if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(",") : v;
  const event = toApiGatewayEvent(
    {
      method: req.method ?? "GET",
      path: url.pathname,
      rawQueryString: url.search.slice(1),
      headers,
      body: body || undefined,
      sourceIp: req.socket.remoteAddress,
    },
    match,
  );
  write(res, await handler(event as never, localContext(match.route.function, 10_000)));
}
