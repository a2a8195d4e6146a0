import { randomUUID } from "node:crypto";
import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { type RouteDefinition, routes } from "../shared/resources.ts";

/** Matches a request to a route of the shared route table, as API Gateway does. */
export function matchRoute(
  method: string,
  path: string,
): { route: RouteDefinition; pathParameters: Record<string, string> } | undefined {
  const parts = path.split("/").filter(Boolean);
  for (const route of routes) {
    if (route.method !== method) continue;
    const pattern = route.path.split("/").filter(Boolean);
    if (pattern.length !== parts.length) continue;
    const params: Record<string, string> = {};
    const ok = pattern.every((seg, i) => {
      const part = parts[i] ?? "";
      const name = /^\{(\w+)\}$/.exec(seg)?.[1];
      if (name) {
        try {
          params[name] = decodeURIComponent(part);
        } catch {
          params[name] = part;
        }
        return true;
      }
      return seg === part;
    });
    if (ok) return { route, pathParameters: params };
  }
  return undefined;
}

export interface HttpRequestLike {
  method: string;
  path: string;
  rawQueryString?: string;
  headers?: Record<string, string>;
  body?: string;
  sourceIp?: string;
}

/**
 * The bodies an HTTP API passes to Lambda as text; every other body (a missing content type, and Twilio's
 * application/x-www-form-urlencoded posts, included) arrives base64-encoded with `isBase64Encoded: true`.
 */
const TEXT_BODY = /^(text\/|application\/(json|xml|javascript)\s*(;|$))/i;

/** Query parameters as an HTTP API passes them: decoded, a repeated name's values joined with commas. */
function queryParameters(rawQueryString: string): Record<string, string> {
  const params: Record<string, string> = {};
  for (const [key, value] of new URLSearchParams(rawQueryString))
    params[key] = key in params ? `${params[key]},${value}` : value;
  return params;
}

/** An API Gateway HTTP API (payload 2.0) event, as the deployed functions receive it. */
export function toApiGatewayEvent(
  request: HttpRequestLike,
  match: { route: RouteDefinition; pathParameters: Record<string, string> },
): APIGatewayProxyEventV2 {
  const headers = Object.fromEntries(
    Object.entries(request.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]),
  );
  const now = Date.now();
  const base64 = !TEXT_BODY.test(headers["content-type"] ?? "");
  return {
    version: "2.0",
    routeKey: `${match.route.method} ${match.route.path}`,
    rawPath: request.path,
    rawQueryString: request.rawQueryString ?? "",
    headers,
    queryStringParameters: request.rawQueryString ? queryParameters(request.rawQueryString) : undefined,
    pathParameters: Object.keys(match.pathParameters).length ? match.pathParameters : undefined,
    requestContext: {
      accountId: "000000000000",
      apiId: "local",
      domainName: headers.host ?? "localhost",
      domainPrefix: "local",
      http: {
        method: request.method,
        path: request.path,
        protocol: "HTTP/1.1",
        sourceIp: request.sourceIp ?? "127.0.0.1",
        userAgent: headers["user-agent"] ?? "",
      },
      requestId: randomUUID(),
      routeKey: `${match.route.method} ${match.route.path}`,
      stage: "$default",
      time: new Date(now).toISOString(),
      timeEpoch: now,
    },
    ...(base64 && request.body !== undefined
      ? { body: Buffer.from(request.body).toString("base64"), isBase64Encoded: true }
      : { body: request.body, isBase64Encoded: false }),
  };
}
