import type { APIGatewayProxyStructuredResultV2, Context } from "aws-lambda";
import { matchRoute, toApiGatewayEvent } from "../../local/apigw.ts";

export const lambdaContext = {
  functionName: "test",
  awsRequestId: "test-request",
  getRemainingTimeInMillis: () => 30_000,
} as unknown as Context;

type Handler = (event: never, context: Context) => Promise<APIGatewayProxyStructuredResultV2>;

/** Calls a handler with the API Gateway event the local server (and API Gateway) would build. */
export function invoker(handler: Handler, defaultHeaders: Record<string, string> = {}) {
  return async (
    method: string,
    pathWithQuery: string,
    options: { body?: unknown; headers?: Record<string, string> } = {},
  ) => {
    const [path = "", rawQueryString] = pathWithQuery.split("?");
    const match = matchRoute(method, path);
    if (!match) throw new Error(`no route ${method} ${path}`);
    const body =
      options.body === undefined
        ? undefined
        : typeof options.body === "string"
          ? options.body
          : JSON.stringify(options.body);
    const event = toApiGatewayEvent(
      {
        method,
        path,
        rawQueryString,
        body,
        headers: { "content-type": "application/json", ...defaultHeaders, ...options.headers },
      },
      match,
    );
    const result = await handler(event as never, lambdaContext);
    const text = result.body ?? "";
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON shapes
    return { status: result.statusCode ?? 200, headers: result.headers ?? {}, text, json: json as any };
  };
}
