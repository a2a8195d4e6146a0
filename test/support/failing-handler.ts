/** A handler that fails with a 5xx behind the HTTP error middleware: bundled by a test to read its log line. */
import middy from "@middy/core";
import { logger } from "../../shared/adapters/logger.ts";
import { type HttpEvent, type HttpResult, problemJson } from "../../shared/http/middleware.ts";

export const THROWING_LINE = 9;
const fail = async (_event: HttpEvent): Promise<HttpResult> => {
  // THROWING_LINE is the next line's number: a test finds it in the logged stack.
  throw new Error("broken on purpose");
};

export const handler = middy(fail).use(problemJson(logger));
