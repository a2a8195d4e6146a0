import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer } from "node:http";
import { networkInterfaces } from "node:os";
import { after, before, describe, test } from "node:test";
import { getExpectedTwilioSignature } from "twilio/lib/webhooks/webhooks.js";
import { type NpmStart, startNpmStart } from "../support/npm-start.ts";

const TOKEN = "e2e-api-token-0123456789";
const AUTH_TOKEN = "e2e-twilio-auth-token";
const ACCOUNT_SID = `AC${"ab".repeat(16)}`;
const HOST = "+12025550141";
const GUEST = "+12025550142";

const groupAlive = (pid: number) => {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Plays Twilio against a running stack: signed form posts, as Twilio sends them. */
function twilioPlayer(baseUrl: string, publicBaseUrl = baseUrl) {
  let n = 0;
  return async (path: string, fields: Record<string, string>) => {
    const params = { AccountSid: ACCOUNT_SID, ...fields };
    const signature = getExpectedTwilioSignature(AUTH_TOKEN, `${publicBaseUrl}${path}`, params);
    const res = await fetch(`${baseUrl}${path}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature },
      body: new URLSearchParams(params).toString(),
    });
    n++;
    return { status: res.status, text: await res.text(), n };
  };
}

const api = (stack: NpmStart) => async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${stack.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON shapes
  return { status: res.status, json: (await res.json().catch(() => undefined)) as any };
};

const until = async (predicate: () => Promise<boolean>, timeoutMs: number, what: string) => {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

describe("npm start, as a user runs it", () => {
  let stack: NpmStart;
  before(async () => {
    stack = await startNpmStart({
      MASKLINE_API_TOKEN: TOKEN,
      TWILIO_AUTH_TOKEN: AUTH_TOKEN,
      TWILIO_ACCOUNT_SID: ACCOUNT_SID,
    });
    process.stdout.write(`# npm start: ready in ${stack.startupMs} ms\n`);
  });
  after(async () => stack?.stop());

  test("a MASKLINE_API_TOKEN it was given is never printed (the banner names the variable)", async () => {
    assert.ok(!stack.output().includes(TOKEN), "the token is not in the output");
    assert.match(stack.output(), /API token\s+from MASKLINE_API_TOKEN/);
    assert.match(stack.output(), /Bearer \$MASKLINE_API_TOKEN/);
    assert.equal(stack.token, TOKEN);
  });

  test("listens on 127.0.0.1 only by default, and says so", async () => {
    assert.match(stack.output(), /Listening on\s+127\.0\.0\.1\b/);
    const port = new URL(stack.url).port;
    assert.equal((await fetch(`http://127.0.0.1:${port}/health`)).status, 200);
    const outside = Object.values(networkInterfaces())
      .flat()
      .find((i) => i && i.family === "IPv4" && !i.internal)?.address;
    if (outside)
      await assert.rejects(fetch(`http://${outside}:${port}/health`), "not reachable on another interface");
  });

  test("the sandbox page's own requests work (same origin, JSON); domain events reach the local bus", async () => {
    const page = { origin: stack.url, "sec-fetch-site": "same-origin", "content-type": "application/json" };
    const sandbox = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${stack.url}${path}`, {
        method,
        headers: body === undefined ? { origin: stack.url, "sec-fetch-site": "same-origin" } : page,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON shapes
      return { status: res.status, json: (await res.json().catch(() => undefined)) as any };
    };
    assert.equal((await fetch(`${stack.url}/`)).status, 200, "the page");
    const a = await sandbox("POST", "/sandbox/phones", { phoneNumber: "+12025550161" });
    const b = await sandbox("POST", "/sandbox/phones", { phoneNumber: "+12025550162" });
    assert.equal(a.status, 201);
    assert.equal(b.status, 201);
    const opened = await sandbox("POST", "/sandbox/sessions", {
      participants: [{ phoneNumber: "+12025550161" }, { phoneNumber: "+12025550162" }],
    });
    assert.equal(opened.status, 201);
    // A stranger texts a proxy: a signed webhook from the sandbox, answered with TwiML, nothing forwarded.
    const sent = await sandbox("POST", `/sandbox/phones/${encodeURIComponent("+12025550163")}/sms`, {
      to: opened.json.participants[0].proxyNumber,
      body: "from the page",
    });
    assert.equal(sent.status, 200);
    assert.equal(sent.json.status, 200, "the signed webhook was accepted");
    assert.match(sent.json.twiml, /<Message>/);
    await until(
      async () => {
        const { json } = await sandbox("GET", "/sandbox/bus/events");
        return json.events.some(
          (e: { detailType: string; detail: { sessionId?: string } }) =>
            e.detailType === "SessionOpened" && e.detail.sessionId === opened.json.sessionId,
        );
      },
      20_000,
      "the session's events on the local bus",
    );
    const closed = await sandbox("DELETE", `/sandbox/sessions/${opened.json.sessionId}`);
    assert.equal(closed.status, 200);
    assert.equal(closed.json.status, "closed");
    const crossSite = await fetch(`${stack.url}/sandbox/sessions`, {
      method: "POST",
      headers: { "content-type": "text/plain", origin: "https://evil.example" },
      body: JSON.stringify({
        participants: [{ phoneNumber: "+12025550163" }, { phoneNumber: "+12025550164" }],
      }),
    });
    assert.equal(crossSite.status, 403);
  });

  test("open a session, text both ways with signed webhooks, each forwarded once, close, shut down cleanly", async () => {
    const call = api(stack);
    const health = await fetch(`${stack.url}/health`);
    assert.equal(health.status, 200);
    const numbers = await call("GET", "/numbers");
    assert.ok(numbers.json.numbers.length >= 2, "the sandbox pool is seeded");

    const opened = await call("POST", "/sessions", {
      participants: [
        { phoneNumber: HOST, id: "host-1" },
        { phoneNumber: GUEST, id: "guest-1" },
      ],
    });
    assert.equal(opened.status, 201);
    const [host, guest] = opened.json.participants;
    const twilio = twilioPlayer(stack.url);
    const sid = (k: number) => `SM${String(k).padStart(32, "0")}`;
    const first = await twilio("/twilio/sms", {
      MessageSid: sid(1),
      From: HOST,
      To: host.proxyNumber,
      Body: "Hi, door code?",
      NumMedia: "0",
    });
    assert.equal(first.status, 200);
    await twilio("/twilio/sms", {
      MessageSid: sid(1),
      From: HOST,
      To: host.proxyNumber,
      Body: "Hi, door code?",
      NumMedia: "0",
    });
    const reply = await twilio("/twilio/sms", {
      MessageSid: sid(2),
      From: GUEST,
      To: guest.proxyNumber,
      Body: "4711",
      NumMedia: "0",
    });
    assert.equal(reply.status, 200);

    const sent = async () =>
      (
        (await (await fetch(`${stack.url}/sandbox/twilio/messages`)).json()) as {
          messages: { from: string; to: string; body: string }[];
        }
      ).messages;
    await until(async () => (await sent()).length >= 2, 20_000, "both messages at the Twilio sandbox");
    await new Promise((r) => setTimeout(r, 1000));
    const messages = await sent();
    assert.equal(messages.length, 2, "each forwarded exactly once");
    assert.deepEqual(
      messages.map((m) => [m.from, m.to, m.body]).sort(),
      [
        [guest.proxyNumber, GUEST, "Hi, door code?"],
        [host.proxyNumber, HOST, "4711"],
      ].sort(),
    );

    const closed = await call("DELETE", `/sessions/${opened.json.sessionId}`);
    assert.equal(closed.json.status, "closed");
    const late = await twilio("/twilio/sms", {
      MessageSid: sid(3),
      From: HOST,
      To: host.proxyNumber,
      Body: "hello?",
      NumMedia: "0",
    });
    assert.match(late.text, /<Message>/);

    const status = await stack.stop();
    assert.ok(status.code === 0 || status.signal === "SIGINT", `clean exit (${JSON.stringify(status)})`);
    assert.match(stack.output(), /stopped\./);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(groupAlive(stack.pid), false, "no process of the stack is left");
  });
});

describe("npm start against an outside Twilio (TWILIO_API_BASE_URL), as the black-box scenarios run it", () => {
  const received: { path: string; form: URLSearchParams; auth: string | undefined }[] = [];
  const fakeTwilio = createServer(async (req, res) => {
    let body = "";
    for await (const chunk of req) body += chunk;
    received.push({ path: req.url ?? "", form: new URLSearchParams(body), auth: req.headers.authorization });
    res.writeHead(201, { "content-type": "application/json" });
    res.end(JSON.stringify({ sid: `SM${String(received.length).padStart(32, "f")}`, status: "queued" }));
  });
  let stack: NpmStart;
  before(async () => {
    fakeTwilio.listen(0, "127.0.0.1");
    await once(fakeTwilio, "listening");
    const address = fakeTwilio.address();
    const port = typeof address === "object" && address ? address.port : 0;
    stack = await startNpmStart({
      MASKLINE_API_TOKEN: TOKEN,
      TWILIO_AUTH_TOKEN: AUTH_TOKEN,
      TWILIO_ACCOUNT_SID: ACCOUNT_SID,
      TWILIO_API_BASE_URL: `http://127.0.0.1:${port}`,
    });
  });
  after(async () => {
    await stack?.stop();
    fakeTwilio.close();
  });

  test("only the HTTP contract answers: no sandbox, no Twilio stand-in, no local EventBridge", async () => {
    const putEvents = await fetch(`${stack.url}/`, {
      method: "POST",
      headers: { "x-amz-target": "AWSEvents.PutEvents", "content-type": "application/x-amz-json-1.1" },
      body: JSON.stringify({
        Entries: [
          { Source: "maskline", DetailType: "SessionOpened", Detail: "{}", EventBusName: "maskline" },
        ],
      }),
    });
    assert.equal(putEvents.status, 404);
    for (const path of ["/", "/sandbox/state", "/sandbox/twilio/messages"])
      assert.equal((await fetch(`${stack.url}${path}`)).status, 404, path);
    assert.match(stack.output(), /Sandbox page\s+off/);
  });

  test("no seeded pool; sends reach the configured Twilio with Basic auth; pool exhaustion is a 409", async () => {
    const call = api(stack);
    assert.deepEqual(
      (await call("GET", "/numbers")).json.numbers,
      [],
      "nothing seeded when Twilio is not the sandbox",
    );
    assert.equal((await call("POST", "/numbers", { phoneNumber: "+14155550177" })).status, 201);
    const opened = await call("POST", "/sessions", {
      participants: [{ phoneNumber: HOST }, { phoneNumber: GUEST }],
    });
    assert.equal(opened.status, 201);
    const [host, guest] = opened.json.participants;
    assert.equal(host.proxyNumber, "+14155550177");
    assert.equal(guest.proxyNumber, "+14155550177");
    const exhausted = await call("POST", "/sessions", {
      participants: [{ phoneNumber: HOST }, { phoneNumber: "+12025550143" }],
    });
    assert.equal(exhausted.status, 409);
    assert.equal(exhausted.json.type, "https://maskline.dev/problems/pool-exhausted");

    const twilio = twilioPlayer(stack.url);
    await twilio("/twilio/sms", {
      MessageSid: `SM${"7".repeat(32)}`,
      From: HOST,
      To: host.proxyNumber,
      Body: "checking in",
      NumMedia: "0",
    });
    await until(async () => received.length >= 1, 20_000, "the send at the outside Twilio");
    const [send] = received;
    assert.equal(send?.path, `/2010-04-01/Accounts/${ACCOUNT_SID}/Messages.json`);
    assert.equal(send?.auth, `Basic ${Buffer.from(`${ACCOUNT_SID}:${AUTH_TOKEN}`).toString("base64")}`);
    assert.equal(send?.form.get("From"), guest.proxyNumber);
    assert.equal(send?.form.get("To"), GUEST);
    assert.equal(send?.form.get("Body"), "checking in");
    assert.match(send?.form.get("StatusCallback") ?? "", /\/twilio\/status\?m=/);
  });
});

describe("npm start refuses a weak API token outside the sandbox", () => {
  test("MASKLINE_API_TOKEN shorter than 16 characters with another Twilio: exit 2, naming the variable", async () => {
    await assert.rejects(
      startNpmStart({
        MASKLINE_API_TOKEN: "short-token",
        TWILIO_AUTH_TOKEN: AUTH_TOKEN,
        TWILIO_ACCOUNT_SID: ACCOUNT_SID,
        TWILIO_API_BASE_URL: "http://127.0.0.1:9",
      }),
      (error: Error) => /exited \(code 2\b/.test(error.message) && /MASKLINE_API_TOKEN/.test(error.message),
    );
  });
});
