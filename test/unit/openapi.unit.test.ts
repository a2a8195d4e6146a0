import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { OPENAPI_PATH, renderOpenApi } from "../../scripts/openapi.ts";
import { problemTypes } from "../../shared/http/problem.ts";
import { routes } from "../../shared/resources.ts";

describe("OpenAPI document", () => {
  const document = JSON.parse(renderOpenApi());

  test("docs/openapi.json is what the zod schemas generate (run `npm run openapi` when this fails)", () => {
    assert.equal(
      readFileSync(OPENAPI_PATH, "utf8"),
      renderOpenApi(),
      `${OPENAPI_PATH} is stale: npm run openapi`,
    );
  });

  test("OpenAPI 3.1, every route of the route table, every problem type", () => {
    assert.equal(document.openapi, "3.1.0");
    for (const route of routes)
      assert.ok(document.paths[route.path]?.[route.method.toLowerCase()], `${route.method} ${route.path}`);
    const types = document.components.schemas.Problem.properties.type.enum;
    assert.deepEqual(
      types,
      problemTypes.map((t) => `https://maskline.dev/problems/${t}`),
    );
    assert.deepEqual(document.paths["/openapi.json"].get.security, [], "served without credentials");
  });
});
