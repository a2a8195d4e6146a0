import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { APIGatewayProxyStructuredResultV2, Context } from "aws-lambda";
import { HttpProblem, problemResponse, problems } from "../shared/http/problem.ts";
import type { FunctionName } from "../shared/resources.ts";
import { matchRoute, toApiGatewayEvent } from "./apigw.ts";
import type { LocalEventBus } from "./event-sink.ts";
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
}

const BODY_LIMIT = 1024 * 1024;
const webDir = join(dirname(fileURLToPath(import.meta.url)), "web");
const STATIC: Record<string, string> = {
  "/": "index.html",
  "/app.js": "app.js",
  "/style.css": "style.css",
};
const TYPES: Record<string, string> = { html: "text/html", js: "text/javascript", css: "text/css" };

/**
 * One HTTP server for the embedded stack: the DESIGN §5 routes (invoking the deployed handlers with API
 * Gateway HTTP API events), the Twilio REST stand-in, the local EventBridge and the sandbox page.
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

async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > BODY_LIMIT) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
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
      "content-type": `${TYPES[staticFile.split(".").pop() ?? ""] ?? "text/plain"}; charset=utf-8`,
      "cache-control": "no-store",
    });
    res.end(content);
    return;
  }
  const body = await readBody(req);
  if (body === undefined) return write(res, problemResponse(problems.payloadTooLarge(BODY_LIMIT)));
  if (url.pathname === "/" && options.bus.handles(req)) return options.bus.handle(req, res, body);
  if (sandboxOn && options.sandbox.handles(url.pathname)) return options.sandbox.handle(req, res, url, body);
  if (sandboxOn && url.pathname.startsWith("/sandbox/") && (await options.sandboxApi(req, res, url, body)))
    return;

  const match = matchRoute(req.method ?? "GET", url.pathname);
  const handler = match && options.handlers[match.route.function];
  if (!match || !handler) {
    const allowed = ["GET", "POST", "DELETE"].filter((m) => m !== req.method && matchRoute(m, url.pathname));
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
