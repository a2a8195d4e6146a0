import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createServer, type Server } from "node:http";

/**
 * The smallest Twilio REST stand-in the forwarder can talk to: POST Messages.json answers 201 with a
 * message resource, GET Messages.json answers an empty page (nothing to reconcile). Each send is recorded
 * with the bench process's own clock the moment its request body has arrived, so latencies measured
 * against it need no clock agreement between processes.
 */
export interface ReceivedSms {
  at: number;
  from: string;
  to: string;
  body: string;
}

export interface TwilioStandIn {
  url: string;
  received: ReceivedSms[];
  onReceive: ((sms: ReceivedSms) => void) | undefined;
  stop(): Promise<void>;
}

const MESSAGES = /^\/2010-04-01\/Accounts\/(AC\w+)\/Messages\.json$/;

export async function startTwilioStandIn(): Promise<TwilioStandIn> {
  const standIn: TwilioStandIn = { url: "", received: [], onReceive: undefined, stop: async () => {} };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://localhost");
      const match = MESSAGES.exec(url.pathname);
      const reply = (status: number, body: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      };
      if (!match) return reply(404, { code: 20404, message: "not found", status: 404 });
      if (req.method === "GET")
        return reply(200, { messages: [], next_page_uri: null, page: 0, page_size: 50 });
      const at = performance.now();
      const form = new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
      const sms = {
        at,
        from: form.get("From") ?? "",
        to: form.get("To") ?? "",
        body: form.get("Body") ?? "",
      };
      standIn.received.push(sms);
      standIn.onReceive?.(sms);
      const now = new Date().toUTCString();
      reply(201, {
        sid: `SM${randomBytes(16).toString("hex")}`,
        account_sid: match[1],
        from: sms.from,
        to: sms.to,
        body: sms.body,
        status: "queued",
        direction: "outbound-api",
        num_segments: "1",
        num_media: "0",
        date_created: now,
        date_updated: now,
        api_version: "2010-04-01",
      });
    });
  });
  server.keepAliveTimeout = 30_000;
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("stand-in did not bind");
  standIn.url = `http://127.0.0.1:${address.port}`;
  standIn.stop = () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return standIn;
}
