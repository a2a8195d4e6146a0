import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { Agent, createServer, request as httpRequest, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { after, before, describe, test } from "node:test";
import { DynamoDBClient, ListTablesCommand } from "@aws-sdk/client-dynamodb";
import { EventBridgeClient, PutEventsCommand } from "@aws-sdk/client-eventbridge";
import { matchRoute, toApiGatewayEvent } from "../../local/apigw.ts";
import {
  freePort,
  LOCAL_CREDENTIALS,
  LOCAL_REGION,
  provisionTable,
  startDynamoLocal,
} from "../../local/aws-local.ts";
import { LocalEventBus } from "../../local/event-bus.ts";
import { createLocalServer, type HttpHandler } from "../../local/server.ts";
import { startEmbeddedStack } from "../../local/stack.ts";
import { TwilioSandbox } from "../../local/twilio-sandbox.ts";
import { ConfigError } from "../../shared/config.ts";

/**
 * The local server's side doors, without DynamoDB: the public port answers the HTTP contract and nothing
 * of the embedded stack's plumbing; the sandbox's own routes refuse cross-site requests.
 */

const ok: HttpHandler = async () => ({
  statusCode: 200,
  headers: { "content-type": "application/json" },
  body: '{"status":"ok"}',
});

async function startServer(sandboxOn: boolean, bus = new LocalEventBus()) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const sandboxCalls: string[] = [];
  const server: Server = createLocalServer({
    handlers: { allocate: ok, inbound: ok },
    sandbox: new TwilioSandbox({
      accountSid: `AC${"a".repeat(32)}`,
      authToken: "local-server-test-token",
      publicBaseUrl: base,
      webhookTarget: base,
    }),
    bus,
    sandboxApi: async (req, res, url) => {
      sandboxCalls.push(`${req.method} ${url.pathname}`);
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
      return true;
    },
    sandboxEnabled: () => sandboxOn,
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    base,
    port,
    bus,
    sandboxCalls,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const putEvents = (entries: unknown) =>
  JSON.stringify({
    Entries: entries,
  });

const forgedEvent = {
  Source: "maskline",
  DetailType: "SessionOpened",
  Detail: JSON.stringify({ forged: true }),
  EventBusName: "maskline",
};

describe("local server: the public port is the HTTP contract only", () => {
  for (const sandboxOn of [false, true]) {
    describe(sandboxOn ? "sandbox mode" : "non-sandbox mode", () => {
      let s: Awaited<ReturnType<typeof startServer>>;
      before(async () => {
        s = await startServer(sandboxOn);
      });
      after(async () => s.stop());

      test("PutEvents at POST / is not an endpoint: 404, nothing published", async () => {
        const res = await fetch(`${s.base}/`, {
          method: "POST",
          headers: { "x-amz-target": "AWSEvents.PutEvents", "content-type": "application/x-amz-json-1.1" },
          body: putEvents([forgedEvent]),
        });
        assert.equal(res.status, 404);
        assert.equal(res.headers.get("content-type"), "application/problem+json");
        assert.equal(s.bus.events.length, 0, "no forged event");
      });

      test("the contract routes answer", async () => {
        assert.equal((await fetch(`${s.base}/health`)).status, 200);
      });

      test("another method on a contract path: 405 problem whose Allow lists every method of the path", async () => {
        for (const [method, path, allow] of [
          ["PUT", "/sessions/ses_x", "GET, PATCH, DELETE"],
          ["PATCH", "/sessions", "GET, POST"],
          ["PUT", "/numbers/%2B14155550100", "DELETE"],
        ] as const) {
          const res = await fetch(`${s.base}${path}`, { method });
          assert.equal(res.status, 405, `${method} ${path}`);
          assert.equal(res.headers.get("content-type"), "application/problem+json");
          assert.equal(res.headers.get("allow"), allow, `${method} ${path}`);
          assert.equal(
            ((await res.json()) as { type: string }).type,
            "https://maskline.dev/problems/method-not-allowed",
          );
        }
      });

      if (!sandboxOn)
        test("no sandbox page, sandbox API or Twilio stand-in", async () => {
          for (const path of ["/", "/app.js", "/sandbox/state", "/2010-04-01/Accounts/ACx/Messages.json"])
            assert.equal((await fetch(`${s.base}${path}`)).status, 404, path);
          const res = await fetch(`${s.base}/sandbox/sessions`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: "{}",
          });
          assert.equal(res.status, 404);
          assert.deepEqual(s.sandboxCalls, []);
        });
    });
  }
});

describe("local server: the events are API Gateway's (HTTP API, payload format 2.0)", () => {
  const eventOf = (
    method: string,
    path: string,
    query: string,
    headers: Record<string, string>,
    body?: string,
  ) => {
    const match = matchRoute(method, path);
    assert.ok(match);
    return toApiGatewayEvent({ method, path, rawQueryString: query, headers, body }, match);
  };

  test("a body that is not text, JSON, XML or JavaScript arrives base64-encoded, as Twilio's form posts do in AWS", () => {
    const form = "MessageSid=SM1&Body=caf%C3%A9+%2B1";
    const twilio = eventOf(
      "POST",
      "/twilio/sms",
      "",
      { "content-type": "application/x-www-form-urlencoded" },
      form,
    );
    assert.equal(twilio.isBase64Encoded, true);
    assert.equal(Buffer.from(twilio.body ?? "", "base64").toString("utf8"), form);
    for (const type of ["application/json; charset=utf-8", "text/plain", "application/xml"]) {
      const plain = eventOf("POST", "/sessions", "", { "Content-Type": type }, '{"a":1}');
      assert.equal(plain.isBase64Encoded, false, type);
      assert.equal(plain.body, '{"a":1}');
    }
    const patch = eventOf(
      "PATCH",
      "/sessions/s1",
      "",
      { "content-type": "application/merge-patch+json" },
      "{}",
    );
    assert.equal(patch.isBase64Encoded, true);
  });

  test("path parameters decoded, duplicate query parameters joined with commas, header names lower-case", () => {
    const event = eventOf("GET", "/participants/%2B12025550143", "status=open&status=closed&limit=5", {
      "X-Custom": "a",
    });
    assert.deepEqual(event.pathParameters, { e164: "+12025550143" });
    assert.deepEqual(event.queryStringParameters, { status: "open,closed", limit: "5" });
    assert.equal(event.headers["x-custom"], "a");
  });
});

describe("local server: LOCAL_EVENTS_WEBHOOK_URL", () => {
  test("events reach the webhook one at a time, in order; a 5xx is retried", async () => {
    const received: { n: number; concurrent: number }[] = [];
    let inFlight = 0;
    let refuse = 1; // the first delivery is answered 503
    const receiver = createServer((req, res) => {
      inFlight++;
      let body = "";
      req.on("data", (c) => {
        body += c;
      });
      req.on("end", () => {
        const { detail } = JSON.parse(body) as { detail: { n: number } };
        // Hold each answer a moment: a second delivery arriving meanwhile would be concurrent.
        setTimeout(() => {
          inFlight--;
          if (refuse > 0) {
            refuse--;
            res.writeHead(503);
            return res.end();
          }
          received.push({ n: detail.n, concurrent: inFlight });
          res.writeHead(200);
          res.end();
        }, 30);
      });
    });
    const port = await freePort();
    await new Promise<void>((resolve) => receiver.listen(port, "127.0.0.1", resolve));
    const s = await startServer(true, new LocalEventBus(`http://127.0.0.1:${port}/events`));
    const client = new EventBridgeClient({
      endpoint: `${s.base}${s.bus.path}`,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
    });
    try {
      for (const batch of [
        [1, 2, 3, 4, 5],
        [6, 7, 8],
      ])
        await client.send(
          new PutEventsCommand({
            Entries: batch.map((n) => ({
              Source: "maskline",
              DetailType: "T",
              Detail: JSON.stringify({ n }),
            })),
          }),
        );
      const deadline = Date.now() + 10_000;
      while (received.length < 8 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(
        received.map((r) => r.n),
        [1, 2, 3, 4, 5, 6, 7, 8],
        "every event once, in order",
      );
      assert.ok(
        received.every((r) => r.concurrent === 0),
        "no delivery while another is in flight",
      );
    } finally {
      client.destroy();
      await s.stop();
      receiver.closeAllConnections();
      await new Promise((resolve) => receiver.close(resolve));
    }
  });

  test("each POST is the whole EventBridge event, as an API destination sends it: JSON, with the bus's id, time to the second", async () => {
    const posts: { method?: string; contentType?: string; body: Record<string, unknown> }[] = [];
    const receiver = createServer(async (req, res) => {
      let body = "";
      for await (const chunk of req) body += chunk;
      posts.push({ method: req.method, contentType: req.headers["content-type"], body: JSON.parse(body) });
      res.writeHead(204);
      res.end();
    });
    const port = await freePort();
    await new Promise<void>((resolve) => receiver.listen(port, "127.0.0.1", resolve));
    const s = await startServer(true, new LocalEventBus(`http://127.0.0.1:${port}/events`));
    const client = new EventBridgeClient({
      endpoint: `${s.base}${s.bus.path}`,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
    });
    try {
      const detail = { id: "evt_1", type: "SessionClosed" };
      const sent = await client.send(
        new PutEventsCommand({
          Entries: [
            {
              Source: "maskline",
              DetailType: "SessionClosed",
              Time: new Date("2026-11-28T05:15:11.889Z"),
              Detail: JSON.stringify(detail),
            },
          ],
        }),
      );
      const deadline = Date.now() + 10_000;
      while (posts.length < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const [post] = posts;
      assert.equal(post?.method, "POST");
      assert.match(post?.contentType ?? "", /^application\/json/);
      assert.deepEqual(post?.body, {
        version: "0",
        id: sent.Entries?.[0]?.EventId,
        "detail-type": "SessionClosed",
        source: "maskline",
        account: "000000000000",
        time: "2026-11-28T05:15:11Z",
        region: LOCAL_REGION,
        resources: [],
        detail,
      });
    } finally {
      client.destroy();
      await s.stop();
      receiver.closeAllConnections();
      await new Promise((resolve) => receiver.close(resolve));
    }
  });

  test("a webhook down for a while (5xx, 429, 401, 409: what EventBridge retries) gets every event once it is back, once each, in order", async () => {
    const received: number[] = [];
    let refused = 0;
    let down = true;
    const receiver = createServer((req, res) => {
      let body = "";
      req.on("data", (c) => {
        body += c;
      });
      req.on("end", () => {
        if (down) {
          refused++;
          res.writeHead([500, 503, 429, 401, 409][refused % 5] ?? 500);
          return res.end();
        }
        received.push((JSON.parse(body) as { detail: { n: number } }).detail.n);
        res.writeHead(204);
        res.end();
      });
    });
    const port = await freePort();
    await new Promise<void>((resolve) => receiver.listen(port, "127.0.0.1", resolve));
    const s = await startServer(
      true,
      new LocalEventBus(`http://127.0.0.1:${port}/events`, { maxBackoffMs: 100 }),
    );
    const put = (n: number) =>
      fetch(`${s.base}${s.bus.path}`, {
        method: "POST",
        headers: { "x-amz-target": "AWSEvents.PutEvents", "content-type": "application/x-amz-json-1.1" },
        body: putEvents([{ Source: "maskline", DetailType: "T", Detail: JSON.stringify({ n }) }]),
      });
    try {
      for (const n of [1, 2, 3]) assert.equal((await put(n)).status, 200);
      // Far more failed attempts than one event's first retries: the endpoint is down, not flaky.
      const deadline = Date.now() + 20_000;
      while (refused < 15 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.ok(refused >= 15, `the webhook refused ${refused} attempts`);
      for (const n of [4, 5]) assert.equal((await put(n)).status, 200);
      down = false;
      while (received.length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(received, [1, 2, 3, 4, 5], "every event once it is back, once each, in order");
    } finally {
      await s.stop();
      receiver.closeAllConnections();
      await new Promise((resolve) => receiver.close(resolve));
    }
  });
});

describe("local server: the embedded stack's EventBridge endpoint", () => {
  let s: Awaited<ReturnType<typeof startServer>>;
  before(async () => {
    s = await startServer(true);
  });
  after(async () => s.stop());

  test("the SDK's PutEvents reaches the bus at its private endpoint", async () => {
    const client = new EventBridgeClient({
      endpoint: `${s.base}${s.bus.path}`,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
    });
    try {
      const out = await client.send(
        new PutEventsCommand({
          Entries: [{ Source: "maskline", DetailType: "NumberAdded", Detail: '{"n":1}', EventBusName: "x" }],
        }),
      );
      assert.equal(out.FailedEntryCount, 0);
      assert.equal(s.bus.events.length, 1);
      assert.deepEqual(s.bus.events[0]?.detail, { n: 1 });
    } finally {
      client.destroy();
    }
  });

  test("bad input is a 400, never a 500: Time=1e20, wrong shapes, not JSON", async () => {
    const before = s.bus.events.length;
    const bodies = [
      putEvents([{ ...forgedEvent, Time: 1e20 }]),
      putEvents([{ ...forgedEvent, Time: "not a date" }]),
      putEvents([{ ...forgedEvent, Detail: { not: "a string" } }]),
      putEvents("not a list"),
      putEvents([null]),
      JSON.stringify([1, 2, 3]),
      "null",
      "{not json",
    ];
    for (const body of bodies) {
      const res = await fetch(`${s.base}${s.bus.path}`, {
        method: "POST",
        headers: { "x-amz-target": "AWSEvents.PutEvents", "content-type": "application/x-amz-json-1.1" },
        body,
      });
      assert.equal(res.status, 400, body);
      const answer = (await res.json()) as { __type: string };
      assert.match(answer.__type, /ValidationException|SerializationException/, body);
    }
    assert.equal(s.bus.events.length, before);
  });
});

describe("local server: the sandbox API refuses cross-site requests", () => {
  let s: Awaited<ReturnType<typeof startServer>>;
  before(async () => {
    s = await startServer(true);
  });
  after(async () => s.stop());

  test("text/plain, foreign Origin, cross-site fetch or a foreign Host never reach the sandbox API", async () => {
    const own = `http://localhost:${s.port}`;
    const cases: [string, RequestInit, number][] = [
      [
        "text/plain body (a simple request, no preflight)",
        { method: "POST", headers: { "content-type": "text/plain" }, body: "{}" },
        415,
      ],
      [
        "form body",
        { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" } },
        415,
      ],
      ["no content type", { method: "POST", body: "{}" }, 415],
      [
        "foreign Origin",
        {
          method: "POST",
          headers: { "content-type": "application/json", origin: "https://evil.example" },
          body: "{}",
        },
        403,
      ],
      [
        "Origin null",
        { method: "POST", headers: { "content-type": "application/json", origin: "null" }, body: "{}" },
        403,
      ],
      [
        "another local port",
        {
          method: "POST",
          headers: { "content-type": "application/json", origin: "http://localhost:1" },
          body: "{}",
        },
        403,
      ],
      [
        "Sec-Fetch-Site: cross-site",
        {
          method: "POST",
          headers: { "content-type": "application/json", "sec-fetch-site": "cross-site" },
          body: "{}",
        },
        403,
      ],
    ];
    for (const [name, init, status] of cases) {
      const res = await fetch(`${s.base}/sandbox/sessions`, init);
      assert.equal(res.status, status, name);
      assert.equal(res.headers.get("content-type"), "application/problem+json", name);
    }
    const deleted = await fetch(`${s.base}/sandbox/sessions/ses_1`, {
      method: "DELETE",
      headers: { origin: "https://evil.example" },
    });
    assert.equal(deleted.status, 403, "DELETE from a foreign origin");
    const state = await fetch(`${s.base}/sandbox/state`, { headers: { "sec-fetch-site": "cross-site" } });
    assert.equal(state.status, 403, "cross-site read of the state");
    assert.deepEqual(s.sandboxCalls, [], "nothing reached the sandbox API");

    // DNS rebinding: a foreign name resolving to 127.0.0.1 is same-origin for the browser, not for us.
    const rebound = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        {
          host: "127.0.0.1",
          port: s.port,
          path: "/sandbox/state",
          headers: { host: `evil.example:${s.port}` },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on("error", reject);
      req.end();
    });
    assert.equal(rebound, 403, "foreign Host");
    assert.deepEqual(s.sandboxCalls, []);

    // The page itself: same origin, JSON bodies.
    const json = { "content-type": "application/json" };
    const same = await fetch(`${s.base}/sandbox/sessions`, {
      method: "POST",
      headers: { ...json, origin: own, "sec-fetch-site": "same-origin" },
      body: "{}",
    });
    assert.equal(same.status, 200);
    assert.equal((await fetch(`${s.base}/sandbox/state`)).status, 200, "curl: no Origin, no Sec-Fetch-Site");
    assert.equal(
      (await fetch(`${s.base}/sandbox/sessions/ses_1`, { method: "DELETE", headers: { origin: own } }))
        .status,
      200,
    );
    assert.deepEqual(s.sandboxCalls, [
      "POST /sandbox/sessions",
      "GET /sandbox/state",
      "DELETE /sandbox/sessions/ses_1",
    ]);
  });
});

describe("local server: a 413 leaves the connection usable", () => {
  let s: Awaited<ReturnType<typeof startServer>>;
  before(async () => {
    s = await startServer(false);
  });
  after(async () => s.stop());

  test("an oversize body is a 413; the next request on the same keep-alive agent is answered", async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const send = (method: string, path: string, body?: Buffer) =>
      new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = httpRequest(
          {
            host: "127.0.0.1",
            port: s.port,
            method,
            path,
            agent,
            headers: body ? { "content-type": "application/json", "content-length": body.length } : {},
          },
          (res) => {
            let text = "";
            res.setEncoding("utf8");
            res.on("data", (c: string) => {
              text += c;
            });
            res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
          },
        );
        req.on("error", reject);
        req.end(body);
      });
    try {
      const big = await send("POST", "/sessions", Buffer.alloc(2 * 1024 * 1024, "x"));
      assert.equal(big.status, 413);
      const next = await send("GET", "/health");
      assert.equal(next.status, 200, next.text);
      const chunked = await fetch(`${s.base}/sessions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: new ReadableStream({
          start(controller) {
            for (let i = 0; i < 3; i++) controller.enqueue(new Uint8Array(512 * 1024));
            controller.close();
          },
        }),
        duplex: "half",
      } as RequestInit);
      assert.equal(chunked.status, 413, "chunked, no content-length");
      assert.equal((await fetch(`${s.base}/health`)).status, 200);
    } finally {
      agent.destroy();
    }
  });
});

describe("embedded stack configuration", () => {
  test("outside the sandbox a MASKLINE_API_TOKEN shorter than 16 characters stops start-up, naming it", async () => {
    await assert.rejects(
      startEmbeddedStack({
        PORT: "0",
        MASKLINE_API_TOKEN: "short-token",
        TWILIO_API_BASE_URL: "http://127.0.0.1:9",
        TWILIO_ACCOUNT_SID: `AC${"a".repeat(32)}`,
        TWILIO_AUTH_TOKEN: "x",
      }),
      (error: unknown) => error instanceof ConfigError && /MASKLINE_API_TOKEN/.test(error.message),
    );
  });

  test("HOST must be an address", async () => {
    await assert.rejects(
      startEmbeddedStack({ PORT: "0", HOST: "not a host/…" }),
      (error: unknown) => error instanceof ConfigError && /HOST/.test(error.message),
    );
  });

  test("a PORT already in use stops start-up with a message naming PORT, and leaves nothing running", async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      await assert.rejects(
        startEmbeddedStack({ PORT: String(port) }),
        (error: unknown) => error instanceof ConfigError && /^ {2}PORT: .*in use/m.test(error.message),
      );
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  test("--data-dir is relative to the current directory, created when missing, and keeps the table across restarts", async () => {
    const parent = mkdtempSync(join(tmpdir(), "maskline-data-dir-"));
    // As `npm start -- --data-dir .local-data` gives it: relative, and not there yet.
    const dataDir = join(relative(process.cwd(), parent), "nested", ".local-data");
    const tables = async (endpoint: string) => {
      const client = new DynamoDBClient({ endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
      try {
        return (await client.send(new ListTablesCommand({}))).TableNames ?? [];
      } finally {
        client.destroy();
      }
    };
    try {
      const first = await startDynamoLocal({ dataDir });
      try {
        await provisionTable(first.endpoint, "maskline");
      } finally {
        await first.stop();
      }
      assert.ok(existsSync(join(parent, "nested", ".local-data", "shared-local-instance.db")));
      const second = await startDynamoLocal({ dataDir });
      try {
        assert.deepEqual(await tables(second.endpoint), ["maskline"]);
      } finally {
        await second.stop();
      }
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  });

  test("a second npm start on the same data directory stops at once, naming MASKLINE_DATA_DIR; a stale lock is taken over", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "maskline-lock-"));
    try {
      // A lock left by a process that is gone (a SIGKILL) does not block.
      writeFileSync(join(dataDir, "maskline.lock"), "999999999");
      const first = await startEmbeddedStack({ PORT: "0", MASKLINE_DATA_DIR: dataDir });
      try {
        await assert.rejects(
          startEmbeddedStack({ PORT: "0", MASKLINE_DATA_DIR: dataDir }),
          (error: unknown) =>
            error instanceof ConfigError &&
            /^ {2}MASKLINE_DATA_DIR: .*in use by another npm start \(pid \d+\)/m.test(error.message),
        );
      } finally {
        await first.stop();
      }
      assert.equal(existsSync(join(dataDir, "maskline.lock")), false, "the lock goes with the stack");
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test("without Java, DynamoDB Local's start fails with one clear message (was an unhandled spawn error)", async () => {
    const path = process.env.PATH;
    const empty = mkdtempSync(join(tmpdir(), "maskline-no-java-"));
    process.env.PATH = empty;
    try {
      await assert.rejects(startDynamoLocal(), /Java was not found/);
    } finally {
      process.env.PATH = path;
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
