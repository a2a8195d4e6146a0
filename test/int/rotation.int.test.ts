/**
 * Twilio auth-token rotation without downtime, walked through the deployed inbound and forward handlers
 * (functions/inbound/handler.ts and functions/forward/handler.ts, imported as Lambda would at a cold start), DynamoDB Local, the SQS server, the
 * Twilio sandbox and a Secrets Manager stand-in read by the real SDK client. The handlers are imported
 * once: every change below reaches them through the secret's bounded cache age, never a restart.
 */

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import type { Server } from "node:http";
import { after, before, describe, test } from "node:test";
import { GetQueueAttributesCommand } from "@aws-sdk/client-sqs";
import { ScanCommand } from "@aws-sdk/lib-dynamodb";
import { getExpectedTwilioSignature } from "twilio/lib/webhooks/webhooks.js";
import { freePort } from "../../local/aws-local.ts";
import { LocalEventBus } from "../../local/event-bus.ts";
import { type Poller, startSqsPoller } from "../../local/pollers.ts";
import { createLocalServer, type HttpHandler } from "../../local/server.ts";
import { type SandboxOptions, TwilioSandbox } from "../../local/twilio-sandbox.ts";
import { newId } from "../../shared/adapters/ids.ts";
import { SqsForwardQueue } from "../../shared/adapters/sqs-queue.ts";
import { SessionService } from "../../shared/app/sessions.ts";
import type { E164 } from "../../shared/domain/phone.ts";
import { startSecretsManager } from "../support/secrets-manager.ts";
import { startLocalAws } from "../support/stack.ts";

const ACCOUNT_SID = `AC${"1234567890abcdef".repeat(2)}`;
const OLD = `old-${randomBytes(12).toString("hex")}`;
const NEW = `new-${randomBytes(12).toString("hex")}`;
const SECRET_ARN = "arn:aws:secretsmanager:us-east-1:000000000000:secret:maskline-twilio-AbCdEf";
const MAX_AGE_SECONDS = 1;
const A = "+12025550181" as E164;
const B = "+12025550182" as E164;
const PROXIES = ["+14155550181", "+14155550182"] as E164[];

let aws: Awaited<ReturnType<typeof startLocalAws>>;
let secrets: Awaited<ReturnType<typeof startSecretsManager>>;
let server: Server;
let poller: Poller;
let sandbox: TwilioSandbox;
let sandboxOptions: SandboxOptions;
let baseUrl: string;
let tableName: string;
let sessions: SessionService;
const publicBaseUrl = "https://sms.maskline.example.com";

/** Waits past the secret's cache age, so the next request reads the secret again. */
const pastCacheAge = () => new Promise((r) => setTimeout(r, MAX_AGE_SECONDS * 1000 + 200));

/** A text from A to proxy(A), signed with `token` as Twilio would sign it. */
async function textSignedWith(token: string, to: string, body: string) {
  const params = {
    MessageSid: `SM${randomBytes(16).toString("hex")}`,
    AccountSid: ACCOUNT_SID,
    From: A,
    To: to,
    Body: body,
    NumMedia: "0",
  };
  const signature = getExpectedTwilioSignature(token, `${publicBaseUrl}/twilio/sms`, params);
  const res = await fetch(`${baseUrl}/twilio/sms`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature },
    body: new URLSearchParams(params).toString(),
  });
  return {
    status: res.status,
    type: res.headers.get("content-type"),
    body: await res.text(),
    messageSid: params.MessageSid,
  };
}

const delivered = (body: string) => sandbox.messages.filter((m) => m.to === B && m.body === body).length;
async function waitFor(predicate: () => boolean, what: string, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("Twilio auth-token rotation without downtime (docs/deploy.md runbook)", () => {
  before(async () => {
    aws = await startLocalAws();
    secrets = await startSecretsManager();
    const fresh = await aws.fresh({ visibilityTimeoutSeconds: 5 });
    tableName = fresh.tableName;
    const port = await freePort();
    baseUrl = `http://127.0.0.1:${port}`;
    // The secret as the operator first puts it.
    secrets.put(SECRET_ARN, { accountSid: ACCOUNT_SID, authToken: OLD });
    // Twilio: signs webhooks and authenticates REST calls with its primary token (mutable: promotion).
    sandboxOptions = { accountSid: ACCOUNT_SID, authToken: OLD, publicBaseUrl, webhookTarget: baseUrl };
    sandbox = new TwilioSandbox(sandboxOptions);

    Object.assign(process.env, {
      ...aws.env(tableName, fresh.queue),
      AWS_ENDPOINT_URL_SECRETS_MANAGER: secrets.endpoint,
      PUBLIC_BASE_URL: publicBaseUrl,
      TWILIO_SECRET_ARN: SECRET_ARN,
      TWILIO_SECRET_MAX_AGE_SECONDS: String(MAX_AGE_SECONDS),
      TWILIO_API_BASE_URL: baseUrl,
      POWERTOOLS_METRICS_DISABLED: "true",
    });
    for (const name of ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_SECONDARY_AUTH_TOKEN"])
      delete process.env[name];
    const [inbound, forward] = await Promise.all([
      import("../../functions/inbound/handler.ts"),
      import("../../functions/forward/handler.ts"),
    ]);
    server = createLocalServer({
      handlers: { inbound: inbound.handler as unknown as HttpHandler },
      sandbox,
      bus: new LocalEventBus(),
      sandboxApi: async () => false,
      sandboxEnabled: () => true,
    });
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    const arn = await aws.sqsClient.send(
      new GetQueueAttributesCommand({ QueueUrl: fresh.queue.queueUrl, AttributeNames: ["QueueArn"] }),
    );
    poller = startSqsPoller({
      client: aws.sqsClient,
      queueUrl: fresh.queue.queueUrl,
      queueArn: arn.Attributes?.QueueArn ?? "",
      handler: forward.handler,
      visibilityTimeoutSeconds: fresh.queue.visibilityTimeoutSeconds,
    });
    sessions = new SessionService({
      store: fresh.store,
      queue: new SqsForwardQueue({ queueUrl: fresh.queue.queueUrl, client: aws.sqsClient }),
      clock: { now: () => Date.now() },
      newId,
      quarantineSeconds: 60,
    });
    for (const number of PROXIES) await sessions.addNumber(number);
  });

  after(async () => {
    await poller?.stop();
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    await secrets?.stop();
    await aws?.stop();
  });

  test("old token → secondary added → promoted → old removed: no webhook or send fails until the old one is retired", async () => {
    const { session } = await sessions.openSession({
      participants: [{ phoneNumber: A }, { phoneNumber: B }],
      mode: "sms",
      ttlSeconds: 3600,
      ttlMode: "absolute",
    });
    const proxyA = session.participants[0].proxyNumber;
    const readsAtStart = secrets.reads();

    // 1. Before the rotation: Twilio signs with the old token; our sends authenticate with it.
    const first = await textSignedWith(OLD, proxyA, "one");
    assert.equal(first.status, 200, "signed with the old token: accepted");
    await waitFor(() => delivered("one") === 1, "'one' forwarded with the old token");
    // The secret is read at most once per cache age, however many requests arrive (one process-wide copy,
    // concurrent callers share one read).
    const burstStart = Date.now();
    const readsBefore = secrets.reads();
    const burst = await Promise.all(
      Array.from({ length: 8 }, (_, i) => textSignedWith(OLD, proxyA, `burst-${i}`)),
    );
    assert.ok(burst.every((r) => r.status === 200));
    const ages = Math.ceil((Date.now() - burstStart) / (MAX_AGE_SECONDS * 1000));
    assert.ok(secrets.reads() - readsBefore <= ages + 1, `at most one read per cache age (${ages + 1})`);

    // 2. A secondary token is created in Twilio and added to the secret (put-secret-value).
    secrets.put(SECRET_ARN, { accountSid: ACCOUNT_SID, authToken: OLD, secondaryAuthToken: NEW });
    await pastCacheAge();
    assert.equal((await textSignedWith(OLD, proxyA, "two")).status, 200, "old token still accepted");
    assert.equal((await textSignedWith(NEW, proxyA, "three")).status, 200, "new (secondary) token accepted");
    await waitFor(() => delivered("two") === 1 && delivered("three") === 1, "'two' and 'three' forwarded");

    // 3. The secondary is promoted in Twilio: Twilio signs with it, and the old token stops working for
    //    REST calls at once — before the operator has touched the secret again.
    sandboxOptions.authToken = NEW;
    const promoted = await sandbox.phoneSends(A, proxyA, "four");
    assert.equal(promoted.status, 200, "Twilio's webhooks, now signed with the promoted token: accepted");
    await waitFor(
      () => delivered("four") === 1,
      "'four' forwarded: the REST call falls back to the secondary",
    );

    // 4. The old token is removed from the secret.
    secrets.put(SECRET_ARN, { accountSid: ACCOUNT_SID, authToken: NEW });
    await pastCacheAge();
    const stale = await textSignedWith(OLD, proxyA, "five");
    assert.equal(stale.status, 403, "signed with the removed token: refused");
    assert.match(stale.type ?? "", /application\/problem\+json/);
    assert.equal(JSON.parse(stale.body).type, "https://maskline.dev/problems/invalid-twilio-signature");
    assert.equal((await sandbox.phoneSends(A, proxyA, "six")).status, 200, "the new token: accepted");
    await waitFor(() => delivered("six") === 1, "'six' forwarded with the new token");

    // Nothing of the refused webhook was stored; everything else was, once.
    const items = (await aws.doc.send(new ScanCommand({ TableName: tableName }))).Items ?? [];
    assert.ok(
      !items.some((i) => JSON.stringify(i).includes(stale.messageSid)),
      "the refused text left no trace",
    );
    await new Promise((r) => setTimeout(r, 500));
    for (const body of ["one", "two", "three", "four", "six"])
      assert.equal(delivered(body), 1, `'${body}' once`);
    assert.equal(delivered("five"), 0);
    assert.ok(secrets.reads() - readsAtStart >= 2, "the secret was re-read after each change");
  });
});

describe("the local stack's tokens (npm start)", () => {
  test("TWILIO_SECONDARY_AUTH_TOKEN is accepted for signatures beside TWILIO_AUTH_TOKEN", async () => {
    const { twilioSecretFromEnv } = await import("../../shared/adapters/secrets.ts");
    const env = { TWILIO_ACCOUNT_SID: ACCOUNT_SID, TWILIO_AUTH_TOKEN: OLD, TWILIO_SECONDARY_AUTH_TOKEN: NEW };
    assert.deepEqual(await twilioSecretFromEnv(env).authTokens(), [OLD, NEW]);
    assert.deepEqual(
      await twilioSecretFromEnv({ ...env, TWILIO_SECONDARY_AUTH_TOKEN: undefined }).authTokens(),
      [OLD],
    );
  });
});
