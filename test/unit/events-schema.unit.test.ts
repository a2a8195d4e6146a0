/** docs/events/ is generated from the zod schemas: these tests fail when the committed files are stale. */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { eventsDir, renderEventSchemas } from "../../scripts/events-schema.ts";
import { eventTypes } from "../../shared/domain/events.ts";

describe("event JSON Schemas in docs/events/", () => {
  const rendered = renderEventSchemas();

  test("every committed schema is what `npm run events:schema` generates now", () => {
    for (const [name, content] of rendered) {
      const committed = readFileSync(join(eventsDir, name), "utf8");
      assert.equal(committed, content, `docs/events/${name} is stale: run npm run events:schema`);
    }
  });

  test("no schema file is left for an event that no longer exists", () => {
    const committed = readdirSync(eventsDir).filter((n) => n.endsWith(".json"));
    assert.deepEqual(committed.sort(), [...rendered.keys()].sort());
  });

  test("every event type has a schema of its envelope, with its type fixed and its detail described", () => {
    for (const type of eventTypes) {
      const [name] = [...rendered.keys()].filter((n) => n.startsWith(`${type}.v`));
      assert.ok(name, `a schema for ${type}`);
      const schema = JSON.parse(rendered.get(name) ?? "{}");
      assert.equal(schema.properties.type.const, type);
      assert.deepEqual(schema.required.sort(), [
        "detail",
        "detailVersion",
        "id",
        "occurredAt",
        "sessionId",
        "type",
      ]);
      assert.equal(schema.properties.detail.type, "object");
    }
  });
});
