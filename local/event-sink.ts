import { EventEmitter } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";

export interface BusEvent {
  id: string;
  source: string;
  detailType: string;
  time: string;
  detail: unknown;
}

/**
 * The local EventBridge: answers PutEvents from the real SDK client, keeps recent events for the sandbox
 * feed, and forwards each to LOCAL_EVENTS_WEBHOOK_URL so a developer can wire their own backend.
 */
export class LocalEventBus extends EventEmitter {
  readonly events: BusEvent[] = [];
  /** Entries to refuse, for fault injection in tests: each refused entry decrements it. */
  refuseNext = 0;

  constructor(private readonly webhookUrl?: string) {
    super();
  }

  handles(req: IncomingMessage): boolean {
    return req.method === "POST" && String(req.headers["x-amz-target"] ?? "").startsWith("AWSEvents.");
  }

  handle(req: IncomingMessage, res: ServerResponse, body: string) {
    const target = String(req.headers["x-amz-target"]);
    res.setHeader("content-type", "application/x-amz-json-1.1");
    if (target !== "AWSEvents.PutEvents") {
      res.writeHead(400);
      res.end(JSON.stringify({ __type: "UnknownOperationException" }));
      return;
    }
    let input: {
      Entries?: { Source?: string; DetailType?: string; Detail?: string; Time?: number | string }[];
    };
    try {
      input = JSON.parse(body || "{}");
    } catch {
      res.writeHead(400);
      res.end(JSON.stringify({ __type: "SerializationException" }));
      return;
    }
    let failed = 0;
    const entries = (input.Entries ?? []).map((entry) => {
      if (this.refuseNext > 0) {
        this.refuseNext--;
        failed++;
        return { ErrorCode: "InternalException", ErrorMessage: "refused by fault injection" };
      }
      let detail: unknown;
      try {
        detail = JSON.parse(entry.Detail ?? "{}");
      } catch {
        failed++;
        return { ErrorCode: "MalformedDetail", ErrorMessage: "Detail is not JSON" };
      }
      const event: BusEvent = {
        id: crypto.randomUUID(),
        source: entry.Source ?? "",
        detailType: entry.DetailType ?? "",
        time: new Date(
          typeof entry.Time === "number" ? entry.Time * 1000 : (entry.Time ?? Date.now()),
        ).toISOString(),
        detail,
      };
      this.events.push(event);
      if (this.events.length > 1000) this.events.shift();
      this.emit("event", event);
      if (this.webhookUrl)
        void fetch(this.webhookUrl, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            "detail-type": event.detailType,
            source: event.source,
            time: event.time,
            detail,
          }),
        }).catch((error) => this.emit("warning", `event webhook failed: ${error}`));
      return { EventId: event.id };
    });
    res.writeHead(200);
    res.end(JSON.stringify({ FailedEntryCount: failed, Entries: entries }));
  }
}
