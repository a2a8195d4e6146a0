import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import { z } from "zod";
import { LOCAL_REGION } from "./aws-local.ts";

export interface BusEvent {
  id: string;
  source: string;
  detailType: string;
  time: string;
  detail: unknown;
}

/** EventBridge's own bounds: Time is seconds since the epoch (or a date string), at most 10 entries. */
const MAX_TIME_MS = 8.64e15;
const time = z.union([
  z
    .number()
    .finite()
    .refine((t) => Math.abs(t * 1000) <= MAX_TIME_MS, "out of range")
    .transform((t) => new Date(t * 1000)),
  z
    .string()
    .max(64)
    .transform((t, ctx) => {
      const date = new Date(/^-?\d+(\.\d+)?$/.test(t) ? Number(t) * 1000 : t);
      if (Number.isNaN(date.getTime())) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, message: "not a date" });
        return z.NEVER;
      }
      return date;
    }),
]);
const putEventsInput = z.object({
  Entries: z
    .array(
      z.object({
        Source: z.string().max(256).optional(),
        DetailType: z.string().max(128).optional(),
        Detail: z
          .string()
          .max(256 * 1024)
          .optional(),
        Time: time.optional(),
        EventBusName: z.string().max(1600).optional(),
        Resources: z.array(z.string()).optional(),
      }),
    )
    .min(1)
    .max(10),
});

/** The account the local bus stands in for (no AWS account: twelve zeros, as local AWS stand-ins use). */
const LOCAL_ACCOUNT = "000000000000";

const WEBHOOK_BACKOFF_MS = 100;
/** The 4xx answers EventBridge API destinations retry (the endpoint is misconfigured or busy, not refusing). */
const RETRIED_4XX = new Set([401, 409, 429]);
/** The longest wait between two attempts at one event, so a webhook that comes back gets it within seconds. */
const WEBHOOK_MAX_BACKOFF_MS = 5_000;
const WEBHOOK_TIMEOUT_MS = 10_000;
/** As an EventBridge API destination: an event is retried for 24 hours, then given up. */
const WEBHOOK_GIVE_UP_AFTER_MS = 24 * 3600 * 1000;

export interface LocalEventBusOptions {
  /** The longest wait between two attempts (tests shorten it). */
  maxBackoffMs?: number;
}

export class LocalEventBus extends EventEmitter {
  readonly events: BusEvent[] = [];
  /** Entries to refuse, for fault injection in tests: each refused entry decrements it. */
  refuseNext = 0;

  /**
   * Where the local publisher's EventBridge client sends PutEvents (its endpoint URL's path): an unguessable
   * path, so the public port never offers a way to inject domain events.
   */
  readonly path = `/_local/eventbridge/${randomBytes(24).toString("hex")}`;

  private readonly maxBackoffMs: number;

  constructor(
    private readonly webhookUrl?: string,
    options: LocalEventBusOptions = {},
  ) {
    super();
    this.maxBackoffMs = options.maxBackoffMs ?? WEBHOOK_MAX_BACKOFF_MS;
  }

  /** The webhook's queue: one delivery at a time, in the order the bus accepted the events. */
  private delivery: Promise<void> = Promise.resolve();
  /** Whether the last attempt failed: a warning is logged when the endpoint goes down, not per attempt. */
  private webhookDown = false;

  /**
   * POSTs an event to LOCAL_EVENTS_WEBHOOK_URL, like an EventBridge API destination: a network error, a
   * timeout, a 5xx, 401, 409 or 429 is retried with back-off (doubling, at most `maxBackoffMs` apart) until
   * the endpoint takes it (any other answer, such as 400, is final), for up to 24 hours after the bus
   * accepted it. Later events wait for it, so a webhook that was down gets every event once it is back, in
   * order (at least once: after a restart the publisher may deliver an event again, with the same id).
   */
  private deliver(body: string) {
    const url = this.webhookUrl;
    if (!url) return;
    const acceptedAt = Date.now();
    this.delivery = this.delivery.then(async () => {
      for (let attempt = 1; ; attempt++) {
        let failure: string;
        try {
          const res = await fetch(url, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body,
            signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS),
          });
          await res.arrayBuffer();
          if (res.status < 500 && !RETRIED_4XX.has(res.status)) {
            if (this.webhookDown)
              this.emit("warning", "event webhook is back; delivering the waiting events");
            this.webhookDown = false;
            return;
          }
          failure = `answered ${res.status}`;
        } catch (error) {
          failure = `failed: ${error}`;
        }
        if (!this.webhookDown)
          this.emit("warning", `event webhook ${failure}; retrying, later events wait (in order)`);
        this.webhookDown = true;
        if (Date.now() - acceptedAt > WEBHOOK_GIVE_UP_AFTER_MS) {
          this.emit("warning", "event webhook: an event could not be delivered for 24 hours; skipped");
          return;
        }
        await new Promise((r) =>
          setTimeout(r, Math.min(this.maxBackoffMs, WEBHOOK_BACKOFF_MS * 2 ** Math.min(attempt - 1, 16))),
        );
      }
    });
  }

  handles(req: IncomingMessage, url: URL): boolean {
    return req.method === "POST" && (url.pathname === this.path || url.pathname === `${this.path}/`);
  }

  handle(req: IncomingMessage, res: ServerResponse, body: string) {
    const target = String(req.headers["x-amz-target"]);
    res.setHeader("content-type", "application/x-amz-json-1.1");
    if (target !== "AWSEvents.PutEvents") {
      res.writeHead(400);
      res.end(JSON.stringify({ __type: "UnknownOperationException" }));
      return;
    }
    let json: unknown;
    try {
      json = JSON.parse(body || "{}");
    } catch {
      res.writeHead(400);
      res.end(JSON.stringify({ __type: "SerializationException" }));
      return;
    }
    const parsed = putEventsInput.safeParse(json);
    if (!parsed.success) {
      res.writeHead(400);
      res.end(JSON.stringify({ __type: "ValidationException", message: "invalid PutEvents input" }));
      return;
    }
    const input = parsed.data;
    let failed = 0;
    const entries = input.Entries.map((entry) => {
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
        // EventBridge keeps an event's time to the second.
        time: (entry.Time ?? new Date()).toISOString().replace(/\.\d+Z$/, "Z"),
        detail,
      };
      this.events.push(event);
      if (this.events.length > 1000) this.events.shift();
      this.emit("event", event);
      // What an API destination POSTs: the whole EventBridge event.
      this.deliver(
        JSON.stringify({
          version: "0",
          id: event.id,
          "detail-type": event.detailType,
          source: event.source,
          account: LOCAL_ACCOUNT,
          time: event.time,
          region: LOCAL_REGION,
          resources: entry.Resources ?? [],
          detail,
        }),
      );
      return { EventId: event.id };
    });
    res.writeHead(200);
    res.end(JSON.stringify({ FailedEntryCount: failed, Entries: entries }));
  }
}
