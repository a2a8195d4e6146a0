// `npm run openapi`: writes docs/openapi.json from the zod schemas (a test fails while it is stale).
import { writeFileSync } from "node:fs";
import { buildOpenApiDocument } from "../functions/allocate/openapi.ts";

export const OPENAPI_PATH = "docs/openapi.json";
export const renderOpenApi = () => `${JSON.stringify(buildOpenApiDocument(), null, 2)}\n`;

if (process.argv[1]?.endsWith("openapi.ts")) {
  writeFileSync(OPENAPI_PATH, renderOpenApi());
  process.stdout.write(`wrote ${OPENAPI_PATH}\n`);
}
