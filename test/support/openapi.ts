import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { matchRoute } from "../../local/apigw.ts";

type Described = {
  content?: Record<string, { schema: unknown }>;
  headers?: Record<string, { required?: boolean }>;
};
type Document = {
  paths: Record<string, Record<string, { responses: Record<string, Described> }>>;
  components: Record<string, unknown>;
};

/** The committed OpenAPI document: every response a test sees must validate against it. */
const document = JSON.parse(readFileSync("docs/openapi.json", "utf8")) as Document;
const ajv = new Ajv2020({ strict: false, allErrors: true });
(addFormats as unknown as (a: Ajv2020) => void)(ajv);
ajv.addSchema({ $id: "maskline-openapi", components: document.components });
const compiled = new Map<string, ValidateFunction>();
/** Response headers with a meaning for clients: whenever one is sent, the document must describe it. */
const DESCRIBED_HEADERS = new Set(["location", "idempotent-replayed", "www-authenticate", "retry-after"]);

/** Asserts that a response (status, content type, body) is one the document describes for this route. */
export function assertMatchesOpenApi(
  method: string,
  path: string,
  response: { status: number; headers: Record<string, unknown>; text: string },
) {
  const match = matchRoute(method, path.split("?")[0] ?? "");
  assert.ok(match, `no route ${method} ${path}`);
  const operation = document.paths[match.route.path]?.[method.toLowerCase()];
  assert.ok(operation, `the document has no ${method} ${match.route.path}`);
  const described = operation.responses[String(response.status)];
  assert.ok(described, `${method} ${match.route.path}: status ${response.status} is not in the document`);
  // The headers a client acts on must be in the document, and a required one must be sent.
  const declared = new Map(Object.entries(described.headers ?? {}).map(([n, h]) => [n.toLowerCase(), h]));
  const sent = new Set(Object.keys(response.headers).map((n) => n.toLowerCase()));
  for (const name of sent)
    if (DESCRIBED_HEADERS.has(name))
      assert.ok(
        declared.has(name),
        `${method} ${match.route.path} ${response.status}: header ${name} is not in the document`,
      );
  for (const [name, header] of declared)
    if (header.required)
      assert.ok(
        sent.has(name),
        `${method} ${match.route.path} ${response.status}: required header ${name} is missing`,
      );
  const type = String(response.headers["content-type"] ?? "").split(";")[0] ?? "";
  if (!described.content) return assert.equal(response.text, "", `${response.status} has no body`);
  const media = described.content[type];
  assert.ok(
    media,
    `${method} ${match.route.path} ${response.status}: content type ${type} is not in the document`,
  );
  const key = `${method} ${match.route.path} ${response.status} ${type}`;
  let validate = compiled.get(key);
  if (!validate) {
    // References point into the document's components: resolve them against the registered copy.
    const schema = JSON.parse(
      JSON.stringify(media.schema).replaceAll('"#/components/', '"maskline-openapi#/components/'),
    );
    validate = ajv.compile(schema);
    compiled.set(key, validate);
  }
  const body = type.endsWith("json") ? JSON.parse(response.text) : response.text;
  assert.ok(
    validate(body),
    `${key} does not match the document: ${ajv.errorsText(validate.errors)}\n${response.text.slice(0, 500)}`,
  );
}

/** Wraps a test invoker so that every response it returns is checked against the document. */
export function validated<
  F extends (
    method: string,
    path: string,
    options?: never,
  ) => Promise<{ status: number; headers: Record<string, unknown>; text: string }>,
>(call: F): F {
  return (async (method: string, path: string, options?: never) => {
    const response = await call(method, path, options);
    assertMatchesOpenApi(method, path, response);
    return response;
  }) as F;
}
