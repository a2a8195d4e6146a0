import { readFileSync } from "node:fs";
import { SourceMap } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Logger } from "@aws-lambda-powertools/logger";
import { SERVICE_NAME } from "../telemetry.ts";

/** The one Powertools logger of a process: JSON lines, never phone numbers or bodies (mask them first). */
export const logger = new Logger({ serviceName: SERVICE_NAME });

const FRAME_POSITION = /\b(file:\/\/[^\s()]+?|\/[^\s()]+?):(\d+):(\d+)\b/g;
const sourceMaps = new Map<string, SourceMap | undefined>();

function sourceMapBeside(file: string): SourceMap | undefined {
  if (!sourceMaps.has(file)) {
    let map: SourceMap | undefined;
    try {
      map = new SourceMap(JSON.parse(readFileSync(`${file}.map`, "utf8")));
    } catch {
      map = undefined; // no map beside it (sources run by tsx, Node's own files): positions stay as they are
    }
    sourceMaps.set(file, map);
  }
  return sourceMaps.get(file);
}

/**
 * A stack trace with bundle positions turned into source positions, read from the `.map` file beside each
 * bundle the first time an error is logged. The functions run without `--enable-source-maps`, which makes
 * Node scan every bundle and its map at module init (about 20 ms of each cold start) for the rare error
 * line; where Node already maps stacks (that flag, or tsx), the stack is returned as it is.
 */
export function sourceMappedStack(stack: string | undefined): string | undefined {
  if (!stack || process.sourceMapsEnabled) return stack;
  return stack.replace(FRAME_POSITION, (position: string, location: string, line: string, column: string) => {
    const file = location.startsWith("file://") ? fileURLToPath(location) : location;
    const entry = sourceMapBeside(file)?.findEntry(Number(line) - 1, Number(column) - 1);
    if (!entry || !("originalSource" in entry)) return position;
    const source = fileURLToPath(new URL(entry.originalSource, pathToFileURL(file)));
    return `${source}:${entry.originalLine + 1}:${entry.originalColumn + 1}`;
  });
}
