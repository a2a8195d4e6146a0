import { Logger } from "@aws-lambda-powertools/logger";
import { SERVICE_NAME } from "../telemetry.ts";

/** The one Powertools logger of a process: JSON lines, never phone numbers or bodies (mask them first). */
export const logger = new Logger({ serviceName: SERVICE_NAME });
