/**
 * Writes the JSON Schema of every domain event (envelope + versioned detail), generated from the zod
 * schemas in shared/domain/events.ts, into docs/events/. `npm run events:schema` regenerates them; a unit
 * test fails when the committed files are stale.
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { zodToJsonSchema } from "zod-to-json-schema";
import { EVENT_DETAIL_VERSION, eventDetailSchemas, eventTypes } from "../shared/domain/events.ts";
import { eventBus } from "../shared/resources.ts";

export const eventsDir = fileURLToPath(new URL("../docs/events/", import.meta.url));
const SCHEMA_BASE = "https://maskline.dev/events";

/** The envelope of one event type, as `detail` of the EventBridge event (and of LOCAL_EVENTS_WEBHOOK_URL). */
function envelopeOf(type: (typeof eventTypes)[number]) {
  return z
    .object({
      id: z.string().min(1).describe("Unique event id: deduplicate on it (delivery is at least once)"),
      type: z.literal(type),
      occurredAt: z.string().datetime().describe("ISO 8601, UTC"),
      sessionId: z.string().nullable().describe("The session the event belongs to, if any"),
      detailVersion: z.literal(EVENT_DETAIL_VERSION),
      detail: eventDetailSchemas()[type],
    })
    .strict();
}

const fileOf = (type: string) => `${type}.v${EVENT_DETAIL_VERSION}.schema.json`;

/** File name → content of every generated file. */
export function renderEventSchemas(): Map<string, string> {
  const files = new Map<string, string>();
  for (const type of [...eventTypes].sort()) {
    const schema = zodToJsonSchema(envelopeOf(type), { $refStrategy: "none", target: "jsonSchema7" });
    const document = {
      $id: `${SCHEMA_BASE}/${fileOf(type)}`,
      title: `${type} (detailVersion ${EVENT_DETAIL_VERSION})`,
      description: `Maskline domain event ${type}. On EventBridge: source "${eventBus.source}", detail-type "${type}", detail = this object.`,
      ...schema,
    };
    files.set(fileOf(type), `${JSON.stringify(document, null, 2)}\n`);
  }
  const index = {
    $id: `${SCHEMA_BASE}/index.json`,
    source: eventBus.source,
    events: [...eventTypes].sort().map((type) => ({
      type,
      detailVersions: [{ detailVersion: EVENT_DETAIL_VERSION, schema: fileOf(type) }],
    })),
  };
  files.set("index.json", `${JSON.stringify(index, null, 2)}\n`);
  return files;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  mkdirSync(eventsDir, { recursive: true });
  const files = renderEventSchemas();
  for (const name of readdirSync(eventsDir))
    if (name.endsWith(".json") && !files.has(name)) rmSync(join(eventsDir, name));
  for (const [name, content] of files) writeFileSync(join(eventsDir, name), content);
  process.stdout.write(`wrote ${files.size} files to docs/events/\n`);
}
