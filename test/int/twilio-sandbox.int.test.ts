import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, describe, test } from "node:test";
import { freePort } from "../../local/aws-local.ts";
import { carrierKeyword, TwilioSandbox } from "../../local/twilio-sandbox.ts";
import { TwilioGateway, twilioClient } from "../../shared/adapters/twilio-gateway.ts";
import { TwilioNumberProvider, twilioNumbers } from "../../shared/adapters/twilio-numbers.ts";

import type { E164 } from "../../shared/domain/phone.ts";
import { SmsSendError } from "../../shared/ports.ts";

/**
 * The Twilio sandbox where it must behave like Twilio, driven through the official twilio resources (the
 * production adapters): A2P 10DLC sends through a Messaging Service, numbers joining it, the carrier-level
 * opt-out (21610) per number or per service, OptOutType only with a service, From = To refused (21266).
 * The webhook side is a plain receiver that records what the sandbox posts.
 */

const ACCOUNT_SID = `AC${"0123456789abcdef".repeat(2)}`;
const AUTH_TOKEN = "sandbox-auth-token-for-tests";
const SERVICE = `MG${"a1".repeat(16)}`;
const HOST = "+12025550201" as E164;
const GUEST = "+12025550202" as E164;
const N1 = "+14155550101" as E164;
const N2 = "+14155550102" as E164;
const N3 = "+14155550103" as E164;

interface Harness {
  sandbox: TwilioSandbox;
  baseUrl: string;
  webhooks: Record<string, string>[];
  /** What the fake app answers to the next SMS webhooks (TwiML <Message> body), if anything. */
  replyWith: { text?: string };
  gateway(options?: { messagingServiceSid?: string }): TwilioGateway;
  stop(): Promise<void>;
}

async function start(options: { messagingServiceSid?: string } = {}): Promise<Harness> {
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const sandbox = new TwilioSandbox({
    accountSid: ACCOUNT_SID,
    authToken: AUTH_TOKEN,
    publicBaseUrl: "https://maskline.example.com",
    webhookTarget: baseUrl,
    statusCallbackDelayMs: 5,
    ...options,
  });
  const webhooks: Record<string, string>[] = [];
  const replyWith: { text?: string } = {};
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    const url = new URL(req.url ?? "/", baseUrl);
    if (sandbox.handles(url.pathname)) return sandbox.handle(req, res, url, body);
    if (url.pathname === "/twilio/sms") {
      webhooks.push(Object.fromEntries(new URLSearchParams(body)));
      res.writeHead(200, { "content-type": "text/xml" });
      res.end(
        `<?xml version="1.0" encoding="UTF-8"?><Response>${replyWith.text ? `<Message>${replyWith.text}</Message>` : ""}</Response>`,
      );
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    sandbox,
    baseUrl,
    webhooks,
    replyWith,
    gateway: (g = {}) =>
      new TwilioGateway({ accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN, apiBaseUrl: baseUrl, ...g }),
    async stop() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

const sms = (from: E164, to: E164, body = "hello") => ({
  from,
  to,
  body,
  mediaUrls: [],
  statusCallback: undefined,
});

/** The Twilio error code of a refused send, through the production adapter. */
async function refusal(
  send: Promise<unknown>,
): Promise<{ kind: string; status: number | null; code: string | null }> {
  try {
    await send;
  } catch (error) {
    assert.ok(error instanceof SmsSendError, `expected SmsSendError, got ${error}`);
    return { kind: error.kind, status: error.status, code: error.errorCode };
  }
  assert.fail("the send was accepted");
}

describe("Twilio sandbox fidelity through the official twilio resources", () => {
  let h: Harness;
  before(async () => {
    h = await start();
  });
  after(async () => h.stop());

  test("carrier keywords: the whole text, trimmed, any case, trailing punctuation ignored", () => {
    for (const text of [
      "STOP",
      " stop ",
      "Stop.",
      "STOP!!",
      "stopall",
      "Unsubscribe",
      "cancel",
      "END",
      "quit",
      "revoke",
      "OptOut?",
    ])
      assert.equal(carrierKeyword(text), "STOP", text);
    for (const text of ["start", "YES!", " unstop "]) assert.equal(carrierKeyword(text), "START", text);
    for (const text of ["help", "INFO?"]) assert.equal(carrierKeyword(text), "HELP", text);
    for (const text of ["Stop texting me at night", "stop it", "S T O P", "please stop", ""])
      assert.equal(carrierKeyword(text), undefined, text);
  });

  test("without a Messaging Service a send names no service, and From = To is refused with 21266", async () => {
    const gateway = h.gateway();
    const sent = await gateway.send(sms(N1, GUEST));
    const message = h.sandbox.messages.find((m) => m.sid === sent.sid);
    assert.equal(message?.from, N1);
    assert.equal(message?.messagingServiceSid, null);

    assert.deepEqual(await refusal(gateway.send(sms(N1, N1))), {
      kind: "permanent",
      status: 400,
      code: "21266",
    });
    // Twilio's JSON error shape, as the REST API returns it.
    const raw = await fetch(`${h.baseUrl}/2010-04-01/Accounts/${ACCOUNT_SID}/Messages.json`, {
      method: "POST",
      headers: {
        authorization: `Basic ${Buffer.from(`${ACCOUNT_SID}:${AUTH_TOKEN}`).toString("base64")}`,
        "content-type": "application/x-www-form-urlencoded",
      },
      body: new URLSearchParams({ From: N2, To: N2, Body: "x" }).toString(),
    });
    assert.equal(raw.status, 400);
    assert.deepEqual(await raw.json(), {
      code: 21266,
      message: "'To' and 'From' number cannot be the same",
      more_info: "https://www.twilio.com/docs/errors/21266",
      status: 400,
    });
  });

  test("STOP to a bare number blocks that number only (21610, no OptOutType) until START", async () => {
    const gateway = h.gateway();
    h.webhooks.length = 0;
    await h.sandbox.phoneSends(HOST, N1, "Stop.");
    assert.equal(h.webhooks.length, 1, "Twilio still posts the keyword to the app");
    assert.equal(h.webhooks[0]?.Body, "Stop.");
    assert.equal("OptOutType" in (h.webhooks[0] ?? {}), false, "no OptOutType without a Messaging Service");
    assert.deepEqual(h.sandbox.optOutOf(HOST), { numbers: [N1], messagingServices: [] });
    // The carrier's confirmation reaches the phone.
    assert.ok(h.sandbox.phones.get(HOST)?.some((e) => e.detail === "carrier" && /unsubscribed/.test(e.body)));

    assert.deepEqual(await refusal(gateway.send(sms(N1, HOST))), {
      kind: "permanent",
      status: 400,
      code: "21610",
    });
    // Another number of the account still reaches the handset: Twilio's block is per number.
    await gateway.send(sms(N2, HOST, "from another number"));
    // Another handset is not affected.
    await gateway.send(sms(N1, GUEST, "to someone else"));

    await h.sandbox.phoneSends(HOST, N1, "start");
    assert.equal("OptOutType" in (h.webhooks[1] ?? {}), false);
    assert.deepEqual(h.sandbox.optOutOf(HOST), { numbers: [], messagingServices: [] });
    const again = await gateway.send(sms(N1, HOST, "welcome back"));
    assert.ok(h.sandbox.messages.some((m) => m.sid === again.sid && m.to === HOST));
  });

  test("a text that only mentions stop is no keyword: nothing is blocked", async () => {
    await h.sandbox.phoneSends(GUEST, N3, "Stop texting me at night");
    assert.deepEqual(h.sandbox.optOutOf(GUEST), { numbers: [], messagingServices: [] });
    await h.gateway().send(sms(N3, GUEST));
  });

  test("the app's TwiML reply to a STOP is not delivered to the handset that just opted out; HELP's is", async () => {
    h.replyWith.text = "Maskline: reply STOP to opt out.";
    try {
      await h.sandbox.phoneSends(GUEST, N2, "HELP");
      const replies = () => (h.sandbox.phones.get(GUEST) ?? []).filter((e) => e.detail === "auto-reply");
      assert.equal(replies().length, 1);
      await h.sandbox.phoneSends(GUEST, N2, "UNSUBSCRIBE");
      assert.equal(replies().length, 1, "no reply after the opt-out");
    } finally {
      h.replyWith.text = undefined;
      await h.sandbox.phoneSends(GUEST, N2, "UNSTOP");
    }
  });
});

describe("Twilio sandbox in Messaging Service mode (A2P 10DLC, Advanced Opt-Out)", () => {
  let h: Harness;
  before(async () => {
    h = await start({ messagingServiceSid: SERVICE });
    for (const n of [N1, N2]) h.sandbox.joinService(n);
  });
  after(async () => h.stop());

  test("every send carries the MessagingServiceSid and the proxy number as From", async () => {
    const gateway = h.gateway({ messagingServiceSid: SERVICE });
    const sent = await gateway.send(sms(N2, GUEST, "hi"));
    const message = h.sandbox.messages.find((m) => m.sid === sent.sid);
    assert.equal(message?.messagingServiceSid, SERVICE);
    assert.equal(message?.from, N2, "the recipient still sees their own proxy number");
    // Twilio's resource shows it too, as the client reads it back.
    const listed = await twilioClient({
      accountSid: ACCOUNT_SID,
      authToken: AUTH_TOKEN,
      apiBaseUrl: h.baseUrl,
    }).messages.list({ from: N2, to: GUEST, limit: 5 });
    assert.equal(listed[0]?.messagingServiceSid, SERVICE);
  });

  test("an unknown Messaging Service is refused (21705)", async () => {
    const gateway = h.gateway({ messagingServiceSid: `MG${"0".repeat(32)}` });
    assert.deepEqual(await refusal(gateway.send(sms(N1, GUEST))), {
      kind: "permanent",
      status: 400,
      code: "21705",
    });
  });

  test("auto top-up: a bought number joins the Messaging Service", async () => {
    const client = twilioNumbers({ accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN, apiBaseUrl: h.baseUrl });
    const bought = await new TwilioNumberProvider(client, "https://maskline.example.com", SERVICE).buy({
      country: "US",
    });
    assert.ok(bought);
    assert.equal(h.sandbox.serviceOf(bought), SERVICE);
    const members = await client.servicePhoneNumbers(SERVICE).list({ limit: 50 });
    assert.ok(members.some((m) => m.phoneNumber === bought));
    // Without a service the number is bought and stays outside any service.
    const plain = await new TwilioNumberProvider(client, "https://maskline.example.com").buy({
      country: "US",
    });
    assert.ok(plain);
    assert.equal(h.sandbox.serviceOf(plain), undefined);
    // Joining an unknown number SID is Twilio's 21421.
    await assert.rejects(
      client.servicePhoneNumbers(SERVICE).create({ phoneNumberSid: `PN${"0".repeat(32)}` }),
      (error: { code?: number; status?: number }) => error.code === 21421 && error.status === 400,
    );
  });

  test("STOP to one number of the service blocks every number of it, OptOutType is sent; START on another lifts it", async () => {
    const gateway = h.gateway({ messagingServiceSid: SERVICE });
    h.webhooks.length = 0;
    await h.sandbox.phoneSends(HOST, N1, "stop");
    assert.equal(h.webhooks[0]?.OptOutType, "STOP");
    assert.deepEqual(h.sandbox.optOutOf(HOST), { numbers: [], messagingServices: [SERVICE] });

    for (const from of [N1, N2])
      assert.deepEqual(await refusal(gateway.send(sms(from, HOST))), {
        kind: "permanent",
        status: 400,
        code: "21610",
      });
    // The service's other handsets are unaffected.
    await gateway.send(sms(N1, GUEST));

    await h.sandbox.phoneSends(HOST, N2, "HELP");
    assert.equal(h.webhooks[1]?.OptOutType, "HELP");
    await h.sandbox.phoneSends(HOST, N2, "Yes");
    assert.equal(h.webhooks[2]?.OptOutType, "START");
    assert.deepEqual(h.sandbox.optOutOf(HOST), { numbers: [], messagingServices: [] });
    await gateway.send(sms(N1, HOST, "back"));
    // An ordinary text carries no OptOutType.
    await h.sandbox.phoneSends(HOST, N1, "thanks");
    assert.equal("OptOutType" in (h.webhooks[3] ?? {}), false);
  });

  test("a number outside the service keeps Twilio's per-number behaviour: no OptOutType, its own block", async () => {
    const gateway = h.gateway();
    h.webhooks.length = 0;
    await h.sandbox.phoneSends(GUEST, N3, "END");
    assert.equal("OptOutType" in (h.webhooks[0] ?? {}), false);
    assert.deepEqual(h.sandbox.optOutOf(GUEST), { numbers: [N3], messagingServices: [] });
    assert.equal((await refusal(gateway.send(sms(N3, GUEST)))).code, "21610");
    await gateway.send(sms(N1, GUEST, "the service's numbers are not blocked"));
  });
});

describe("Twilio answers the forwarder cannot read", () => {
  test("a 2xx without a message SID (or not JSON) is an unknown outcome, never a send recorded without its SID", async () => {
    const answers = ["{}", '{"sid": null, "status": "queued"}', "{not json"];
    const port = await freePort();
    const server = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(201, { "content-type": "application/json" });
        res.end(answers.shift() ?? "{}");
      });
    });
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    const gateway = new TwilioGateway({
      accountSid: ACCOUNT_SID,
      authToken: AUTH_TOKEN,
      apiBaseUrl: `http://127.0.0.1:${port}`,
    });
    try {
      for (let i = 0; i < 3; i++)
        await assert.rejects(
          gateway.send({ from: N1, to: GUEST, body: "hello", mediaUrls: [], statusCallback: undefined }),
          (error: unknown) => error instanceof SmsSendError && error.kind === "ambiguous",
          `answer ${i + 1}`,
        );
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
