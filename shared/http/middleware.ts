import { timingSafeEqual } from "node:crypto";
import type { Logger } from "@aws-lambda-powertools/logger";
import type { MiddlewareObj } from "@middy/core";
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from "aws-lambda";
import type { z } from "zod";
import { sourceMappedStack } from "../adapters/logger.ts";
import { HttpProblem, problemResponse, problems, toProblem } from "./problem.ts";

export type HttpEvent = APIGatewayProxyEventV2 & { requestContext: { authorizer?: { iam?: unknown } } };
export type HttpResult = APIGatewayProxyStructuredResultV2;
type Middleware = MiddlewareObj<HttpEvent, HttpResult>;

/** Every error leaves as problem+json; only problems we raised carry detail, a 5xx reveals nothing. */
export function problemJson(logger: Logger): Middleware {
  return {
    onError: async (request) => {
      const problem = toProblem(request.error);
      if (problem.status >= 500) {
        const error = request.error;
        logger.error("request failed", {
          route: request.event.routeKey,
          error: { name: error?.name, message: error?.message, stack: sourceMappedStack(error?.stack) },
        });
      }
      request.response = problemResponse(problem, request.event.rawPath);
    },
  };
}

export type ProductAuth = { mode: "iam" } | { mode: "token"; token: string };

/**
 * Product routes: IAM (SigV4) is enforced by API Gateway in AWS, so the function only checks that the
 * authorizer ran; locally a bearer token stands in for it.
 */
export function productAuth(auth: ProductAuth, isPublic: (event: HttpEvent) => boolean): Middleware {
  const expected = auth.mode === "token" ? Buffer.from(auth.token) : undefined;
  return {
    before: async (request) => {
      if (isPublic(request.event)) return;
      if (!expected) {
        if (!request.event.requestContext.authorizer?.iam) throw problems.unauthorized("sigv4");
        return;
      }
      const header = request.event.headers.authorization ?? "";
      const match = /^Bearer\s+(.+)$/i.exec(header.trim());
      const given = Buffer.from(match?.[1] ?? "");
      if (given.length !== expected.length || !timingSafeEqual(given, expected))
        throw problems.unauthorized();
    },
  };
}

export function rawBody(event: HttpEvent): string {
  if (!event.body) return "";
  return event.isBase64Encoded ? Buffer.from(event.body, "base64").toString("utf8") : event.body;
}

export function headerOf(event: HttpEvent, name: string): string | undefined {
  const lower = name.toLowerCase();
  for (const [k, v] of Object.entries(event.headers ?? {})) if (k.toLowerCase() === lower) return v;
  return undefined;
}

const JSON_LIMIT = 32 * 1024;

/** Parses and validates a JSON body at the edge; every failure is a 4xx problem. */
export function jsonBody<T extends z.ZodTypeAny>(event: HttpEvent, schema: T): z.output<T> {
  const text = rawBody(event);
  if (Buffer.byteLength(text) > JSON_LIMIT) throw problems.payloadTooLarge(JSON_LIMIT);
  const type = headerOf(event, "content-type");
  if (type && !/^application\/([\w.+-]+\+)?json\b/i.test(type))
    throw problems.unsupportedMediaType("application/json");
  let value: unknown;
  try {
    value = JSON.parse(text || "null");
  } catch {
    throw problems.malformedJson();
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw problems.validation(parsed.error);
  return parsed.data;
}

export function json(statusCode: number, body: unknown, headers: Record<string, string> = {}): HttpResult {
  return {
    statusCode,
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  };
}

export { HttpProblem };
