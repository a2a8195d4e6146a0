/**
 * The functions as AWS runs them: each composition root in a process of its own, with the environment the
 * synthesized template sets (its CloudFormation references replaced by DynamoDB Local, the SQS server and
 * stand-ins for Secrets Manager and EventBridge), invoked with the event shapes AWS sends: API Gateway HTTP
 * API payload 2.0 (form bodies base64-encoded, decoded path parameters, IAM authorizer context), SQS event
 * source mapping batches, DynamoDB stream batches and the EventBridge schedule. What the processes log is
 * checked too: no phone number and no message body in it.
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { AttributeValue } from "@aws-sdk/client-dynamodb";
import { ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { ScanCommand } from "@aws-sdk/lib-dynamodb";
import { marshall } from "@aws-sdk/util-dynamodb";
import { App } from "aws-cdk-lib";
import { getExpectedTwilioSignature } from "twilio/lib/webhooks/webhooks.js";
import { buildMaskline } from "../../infra/maskline.ts";
import { freePort, provisionStandardQueue } from "../../local/aws-local.ts";
import { LocalEventBus } from "../../local/event-bus.ts";
import { createLocalServer } from "../../local/server.ts";
import { TwilioSandbox } from "../../local/twilio-sandbox.ts";
import { type FunctionName, functions } from "../../shared/resources.ts";
import { bundleFunction, LambdaProcess } from "../support/lambda-process.ts";
import { startSecretsManager } from "../support/secrets-manager.ts";
import { startLocalAws } from "../support/stack.ts";

type Json = Record<string, unknown>;
const ACCOUNT_SID = `AC${"5a5a5a5a5a5a5a5a".repeat(2)}`;
const AUTH_TOKEN = `tok-${randomBytes(12).toString("hex")}`;
const PSEUDONYM_KEY = randomBytes(32).toString("hex");
const TWILIO_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:maskline-twilio-AbCdEf";
const PSEUDONYM_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:maskline-pseudo-AbCdEf";
const API_ID = "a1b2c3d4e5";
const DOMAIN = `${API_ID}.execute-api.us-east-1.amazonaws.com`;
const PUBLIC_BASE_URL = `https://${DOMAIN}`;
const BUS = "maskline-test-bus";
// Fictional numbers whose digits must never show up in a log line.
const GUEST = "+12025550143";
const HOST = "+12025550178";
const STRANGER = "+12025550111";
const POOL = ["+14155550161", "+14155550162"];
const SECRET_TEXT = `meet at the blue door + 2nd floor & café 🙂 ${randomBytes(4).toString("hex")}`;
const digits = (e164: string) => e164.slice(1);

/** The environment of each function in the template (`aws:cdk:bundling-stacks` empty: no bundling). */
function templateEnvironments(): Record<FunctionName, Record<string, unknown>> {
  const app = new App({ context: { "aws:cdk:bundling-stacks": [] } });
  const built = buildMaskline(app);
  const template = app.synth().getStackByName(built.app.stackName).template as {
    Resources: Record<string, { Type: string; Properties: Json }>;
  };
  const result = {} as Record<FunctionName, Record<string, unknown>>;
  for (const [name, fn] of Object.entries(built.app.functions) as [FunctionName, { fn: unknown }][]) {
    const id = built.app.getLogicalId((fn.fn as { node: { defaultChild: never } }).node.defaultChild);
    const props = template.Resources[id]?.Properties as {
      Environment: { Variables: Record<string, unknown> };
    };
    result[name] = props.Environment.Variables;
  }
  return result;
}

/** What an API Gateway HTTP API (payload 2.0) sends a Lambda integration for one request. */
function httpEvent(options: {
  method: string;
  route: string;
  /** The path the client sent, percent-encoded as on the wire. */
  path: string;
  query?: string;
  headers?: Record<string, string>;
  body?: string;
  /** API Gateway base64-encodes every body that is not text/*, JSON, XML or JavaScript. */
  base64?: boolean;
  iam?: boolean;
  pathParameters?: Record<string, string>;
  /** The host the client called: the API's own domain, or a custom domain mapped to it. */
  domain?: string;
}): Json {
  const domain = options.domain ?? DOMAIN;
  const decodedPath = decodeURIComponent(options.path);
  const query = options.query ?? "";
  const queryStringParameters: Record<string, string> = {};
  for (const part of query.split("&").filter(Boolean)) {
    const [k = "", v = ""] = part.split("=");
    const key = decodeURIComponent(k);
    const value = decodeURIComponent(v);
    queryStringParameters[key] =
      key in queryStringParameters ? `${queryStringParameters[key]},${value}` : value;
  }
  const now = Date.now();
  return {
    version: "2.0",
    routeKey: options.route,
    rawPath: decodedPath,
    rawQueryString: query,
    cookies: ["session=abc", "theme=dark"],
    headers: {
      accept: "*/*",
      "content-length": String(Buffer.byteLength(options.body ?? "")),
      host: domain,
      "user-agent": "TwilioProxy/1.1",
      "x-amzn-trace-id": `Root=1-${now.toString(16)}-${randomBytes(12).toString("hex")}`,
      "x-forwarded-for": "54.172.60.1",
      "x-forwarded-port": "443",
      "x-forwarded-proto": "https",
      ...options.headers,
    },
    ...(query ? { queryStringParameters } : {}),
    ...(options.pathParameters ? { pathParameters: options.pathParameters } : {}),
    requestContext: {
      accountId: "123456789012",
      apiId: API_ID,
      ...(options.iam
        ? {
            authorizer: {
              iam: {
                accessKey: "AKIAIOSFODNN7EXAMPLE",
                accountId: "123456789012",
                callerId: "AIDACKCEVSQ6C2EXAMPLE",
                cognitoIdentity: null,
                principalOrgId: null,
                userArn: "arn:aws:iam::123456789012:user/backend",
                userId: "AIDACKCEVSQ6C2EXAMPLE",
              },
            },
          }
        : {}),
      domainName: domain,
      domainPrefix: domain.split(".")[0],
      http: {
        method: options.method,
        path: decodedPath,
        protocol: "HTTP/1.1",
        sourceIp: "54.172.60.1",
        userAgent: "TwilioProxy/1.1",
      },
      requestId: randomBytes(8).toString("base64url"),
      routeKey: options.route,
      stage: "$default",
      time: new Date(now).toUTCString(),
      timeEpoch: now,
    },
    ...(options.body === undefined
      ? {}
      : {
          body: options.base64 ? Buffer.from(options.body).toString("base64") : options.body,
        }),
    isBase64Encoded: Boolean(options.base64),
  };
}

/** A product call as the backend makes it: SigV4-signed, so the IAM authorizer context is present. */
const product = (
  method: string,
  route: string,
  path: string,
  extra: Partial<Parameters<typeof httpEvent>[0]> = {},
) => httpEvent({ method, route, path, iam: true, ...extra });

const jsonBody = (value: unknown) => ({
  body: JSON.stringify(value),
  headers: { "content-type": "application/json" },
});

/** A webhook Twilio signs for the URL it calls, form-encoded, as API Gateway passes it on (base64). */
function twilioWebhook(
  route: string,
  params: Record<string, string>,
  options: { query?: string; token?: string; publicBaseUrl?: string } = {},
) {
  const path = route.split(" ")[1] ?? "";
  const base = options.publicBaseUrl ?? PUBLIC_BASE_URL;
  const url = `${base}${path}${options.query ? `?${options.query}` : ""}`;
  return httpEvent({
    method: "POST",
    route,
    path,
    domain: new URL(base).host,
    ...(options.query ? { query: options.query } : {}),
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      "x-twilio-signature": getExpectedTwilioSignature(options.token ?? AUTH_TOKEN, url, params),
      "i-twilio-idempotency-token": randomUUID(),
    },
    body: new URLSearchParams(params).toString(),
    base64: true,
  });
}

interface Result {
  statusCode: number;
  headers?: Record<string, string>;
  body?: string;
}
const problemOf = (r: Result) => {
  assert.match(r.headers?.["content-type"] ?? "", /^application\/problem\+json/, JSON.stringify(r));
  return JSON.parse(r.body ?? "{}") as { type: string; status: number };
};

let aws: Awaited<ReturnType<typeof startLocalAws>>;
let secrets: Awaited<ReturnType<typeof startSecretsManager>>;
let twilioServer: Server;
let busServer: Server;
let webhookServer: Server;
let sandbox: TwilioSandbox;
let tableName: string;
let queueUrl: string;
let failuresUrl: string;
/** PutEvents entries the EventBridge stand-in received; entries whose Detail matches `failDetail` fail. */
const putEvents: Json[] = [];
let failDetail: RegExp | undefined;
/** The status callbacks Twilio (the sandbox) sent, as they reached the API. */
const statusCallbacks: { path: string; query: string; headers: Record<string, string>; body: string }[] = [];
let environments: Record<FunctionName, Record<string, string>>;
const bundles = {} as Record<FunctionName, string>;
const bundleDir = mkdtempSync(join(tmpdir(), "maskline-aws-shapes-"));
const processes: LambdaProcess[] = [];

function start(name: FunctionName, change: (env: Record<string, string>) => void = () => {}) {
  const env = { ...environments[name] };
  change(env);
  const p = new LambdaProcess(name, bundles[name], env);
  processes.push(p);
  return p;
}

async function listen(server: Server): Promise<string> {
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return `http://127.0.0.1:${port}`;
}

let allocate: LambdaProcess;
let inbound: LambdaProcess;

describe("the functions under AWS's own event shapes and the template's environment", () => {
  before(async () => {
    for (const name of Object.keys(functions) as FunctionName[])
      bundles[name] = await bundleFunction(name, bundleDir);
    aws = await startLocalAws();
    secrets = await startSecretsManager();
    const fresh = await aws.fresh({ visibilityTimeoutSeconds: 5 });
    tableName = fresh.tableName;
    queueUrl = fresh.queue.queueUrl;
    failuresUrl = await provisionStandardQueue(aws.sqs.endpoint, `${tableName}-PublisherFailures`);
    secrets.put(TWILIO_SECRET_ARN, { accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN });
    secrets.put(PSEUDONYM_SECRET_ARN, PSEUDONYM_KEY);

    busServer = createServer(async (req, res) => {
      let body = "";
      for await (const chunk of req) body += chunk;
      const input = JSON.parse(body || "{}") as { Entries?: Json[] };
      const entries = (input.Entries ?? []).map((entry) => {
        if (failDetail?.test(String(entry.Detail)))
          return { ErrorCode: "InternalFailure", ErrorMessage: "try again" };
        putEvents.push(entry);
        return { EventId: randomUUID() };
      });
      res.writeHead(200, { "content-type": "application/x-amz-json-1.1" });
      res.end(
        JSON.stringify({
          FailedEntryCount: entries.filter((e) => "ErrorCode" in e).length,
          Entries: entries,
        }),
      );
    });
    const busUrl = await listen(busServer);

    webhookServer = createServer(async (req, res) => {
      let body = "";
      for await (const chunk of req) body += chunk;
      const url = new URL(req.url ?? "/", "http://x");
      statusCallbacks.push({
        path: url.pathname,
        query: url.search.slice(1),
        headers: req.headers as Record<string, string>,
        body,
      });
      res.writeHead(204);
      res.end();
    });
    const webhookUrl = await listen(webhookServer);
    sandbox = new TwilioSandbox({
      accountSid: ACCOUNT_SID,
      authToken: AUTH_TOKEN,
      publicBaseUrl: PUBLIC_BASE_URL,
      webhookTarget: webhookUrl,
      statusCallbackDelayMs: 10,
    });
    twilioServer = createLocalServer({
      handlers: {},
      sandbox,
      bus: new LocalEventBus(),
      sandboxApi: async () => false,
      sandboxEnabled: () => true,
    });
    const twilioUrl = await listen(twilioServer);

    const references: Record<string, string> = {
      TABLE_NAME: tableName,
      FORWARD_QUEUE_URL: queueUrl,
      PUBLIC_BASE_URL,
      TWILIO_SECRET_ARN,
      PSEUDONYM_SECRET_ARN,
      EVENT_BUS_NAME: BUS,
      PUBLISHER_FAILURES_QUEUE_URL: failuresUrl,
    };
    const lambdaRuntime = {
      AWS_REGION: "us-east-1",
      AWS_DEFAULT_REGION: "us-east-1",
      AWS_ACCESS_KEY_ID: "AKIDLOCAL",
      AWS_SECRET_ACCESS_KEY: "local-secret",
      AWS_SESSION_TOKEN: "local-session",
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: "512",
      AWS_ENDPOINT_URL_DYNAMODB: aws.dynamo.endpoint,
      AWS_ENDPOINT_URL_SQS: aws.sqs.endpoint,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: secrets.endpoint,
      AWS_ENDPOINT_URL_EVENTBRIDGE: busUrl,
      // The only difference from AWS: Twilio's REST API is the sandbox.
      TWILIO_API_BASE_URL: twilioUrl,
    };
    environments = {} as typeof environments;
    for (const [name, variables] of Object.entries(templateEnvironments()) as [FunctionName, Json][]) {
      const env: Record<string, string> = { ...lambdaRuntime, AWS_LAMBDA_FUNCTION_NAME: `maskline-${name}` };
      for (const [key, value] of Object.entries(variables)) {
        const resolved = typeof value === "string" ? value : references[key];
        if (resolved === undefined)
          throw new Error(`no local value for ${name}'s ${key}: ${JSON.stringify(value)}`);
        env[key] = resolved;
      }
      environments[name] = env;
    }
    allocate = start("allocate");
    inbound = start("inbound");
  });

  after(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    for (const server of [twilioServer, busServer, webhookServer]) server?.close();
    await secrets?.stop();
    await aws?.stop();
    rmSync(bundleDir, { recursive: true, force: true });
  });

  let sessionId = "";
  let guestProxy = "";

  describe("API Gateway HTTP API, payload format 2.0", () => {
    test("product routes: numbers and a session, with the IAM authorizer context", async () => {
      for (const phoneNumber of POOL) {
        const r = await allocate.invoke<Result>(
          product("POST", "POST /numbers", "/numbers", jsonBody({ phoneNumber })),
        );
        assert.equal(r.statusCode, 201, r.body);
      }
      const opened = await allocate.invoke<Result>(
        product("POST", "POST /sessions", "/sessions", {
          ...jsonBody({ participants: [{ phoneNumber: GUEST }, { phoneNumber: HOST }] }),
          headers: { "content-type": "application/json; charset=utf-8", "idempotency-key": randomUUID() },
        }),
      );
      assert.equal(opened.statusCode, 201, opened.body);
      const session = JSON.parse(opened.body ?? "{}") as {
        sessionId: string;
        participants: { phoneNumber: string; proxyNumber: string }[];
      };
      sessionId = session.sessionId;
      guestProxy = session.participants.find((p) => p.phoneNumber === GUEST)?.proxyNumber ?? "";
      assert.ok(guestProxy);

      const got = await allocate.invoke<Result>(
        product("GET", "GET /sessions/{id}", `/sessions/${sessionId}`, { pathParameters: { id: sessionId } }),
      );
      assert.equal(got.statusCode, 200);

      // Open routes: no authorizer context. The OpenAPI document loads from its on-demand module.
      const openapi = await allocate.invoke<Result>(
        httpEvent({ method: "GET", route: "GET /openapi.json", path: "/openapi.json" }),
      );
      assert.equal(openapi.statusCode, 200, openapi.body?.slice(0, 500));
      assert.equal((JSON.parse(openapi.body ?? "{}") as { openapi: string }).openapi.slice(0, 3), "3.1");
      const health = await allocate.invoke<Result>(
        httpEvent({ method: "GET", route: "GET /health", path: "/health" }),
      );
      assert.equal(health.statusCode, 200, health.body);
    });

    test("a product route without the IAM authorizer context is refused and writes nothing", async () => {
      const count = async () =>
        (await aws.doc.send(new ScanCommand({ TableName: tableName, Select: "COUNT" }))).Count;
      const before = await count();
      const r = await allocate.invoke<Result>(
        httpEvent({
          method: "POST",
          route: "POST /numbers",
          path: "/numbers",
          ...jsonBody({ phoneNumber: "+14155550169" }),
        }),
      );
      assert.equal(r.statusCode, 401);
      assert.equal(problemOf(r).type, "https://maskline.dev/problems/unauthorized");
      // In AWS the credential is a SigV4 signature: the answer must not ask for a bearer token.
      assert.doesNotMatch(`${r.body} ${r.headers?.["www-authenticate"]}`, /Bearer/, r.body);
      assert.equal(await count(), before);
    });

    test("a JSON body API Gateway base64-encoded (a content type it treats as binary) is read", async () => {
      const r = await allocate.invoke<Result>(
        product("PATCH", "PATCH /sessions/{id}", `/sessions/${sessionId}`, {
          pathParameters: { id: sessionId },
          body: JSON.stringify({ ttlSeconds: 7200 }),
          headers: { "content-type": "application/merge-patch+json" },
          base64: true,
        }),
      );
      assert.equal(r.statusCode, 200, r.body);
    });

    test("%2B in path parameters (decoded by API Gateway) and + in query strings", async () => {
      const guest = await allocate.invoke<Result>(
        product("GET", "GET /participants/{e164}", `/participants/%2B${digits(GUEST)}`, {
          pathParameters: { e164: GUEST },
        }),
      );
      assert.equal(guest.statusCode, 200, guest.body);
      // A bare "+" in the path, should API Gateway decode it as a space.
      const bare = await allocate.invoke<Result>(
        product("GET", "GET /participants/{e164}", `/participants/+${digits(GUEST)}`, {
          pathParameters: { e164: ` ${digits(GUEST)}` },
        }),
      );
      assert.equal(bare.statusCode, 200, bare.body);
      for (const query of [`participant=%2B${digits(GUEST)}`, `participant=+${digits(GUEST)}`]) {
        const event = product("GET", "GET /sessions", "/sessions", { query });
        const r = await allocate.invoke<Result>(event);
        assert.equal(r.statusCode, 200, `${query}: ${r.body}`);
        assert.equal((JSON.parse(r.body ?? "{}") as { sessions: unknown[] }).sessions.length, 1, query);
      }
      // Should API Gateway read an unencoded "+" as a space, as form decoding does.
      const spaced = product("GET", "GET /sessions", "/sessions", { query: `participant=+${digits(GUEST)}` });
      spaced.queryStringParameters = { participant: ` ${digits(GUEST)}` };
      const r = await allocate.invoke<Result>(spaced);
      assert.equal((JSON.parse(r.body ?? "{}") as { sessions: unknown[] }).sessions.length, 1, r.body);
      const retire = await allocate.invoke<Result>(
        product("DELETE", "DELETE /numbers/{e164}", `/numbers/%2B${digits(POOL[1] ?? "")}`, {
          pathParameters: { e164: POOL[1] ?? "" },
        }),
      );
      assert.ok([200, 409].includes(retire.statusCode), retire.body);
    });

    test("problems: 400, 404, 409, 413, 415 and 422-class answers are problem+json", async () => {
      const cases: [Json, number][] = [
        [
          product("POST", "POST /sessions", "/sessions", {
            body: "{",
            headers: { "content-type": "application/json" },
          }),
          400,
        ],
        [product("POST", "POST /sessions", "/sessions", jsonBody({ participants: [] })), 400],
        [product("GET", "GET /sessions/{id}", "/sessions/nope", { pathParameters: { id: "nope" } }), 404],
        [
          product("POST", "POST /sessions", "/sessions", {
            body: "x".repeat(40_000),
            headers: { "content-type": "application/json" },
          }),
          413,
        ],
        [
          product("POST", "POST /sessions", "/sessions", {
            body: "a=b",
            headers: { "content-type": "text/plain" },
          }),
          415,
        ],
        [product("POST", "POST /numbers", "/numbers", jsonBody({ phoneNumber: GUEST })), 409],
        [
          product("GET", "GET /participants/{e164}", "/participants/12", { pathParameters: { e164: "12" } }),
          400,
        ],
        [
          product("POST", "POST /sessions/{id}/messages", `/sessions/${sessionId}/messages`, {
            pathParameters: { id: sessionId },
            ...jsonBody({ to: "+12025550199", body: "hello" }),
          }),
          422,
        ],
      ];
      for (const [event, status] of cases) {
        const r = await allocate.invoke<Result>(event);
        assert.equal(r.statusCode, status, `${event.routeKey}: ${r.body}`);
        assert.equal(problemOf(r).status, status);
      }
    });

    test("a signed Twilio webhook, base64-encoded by API Gateway, is accepted and answered with TwiML", async () => {
      const r = await inbound.invoke<Result>(
        twilioWebhook("POST /twilio/sms", {
          MessageSid: `SM${randomBytes(16).toString("hex")}`,
          AccountSid: ACCOUNT_SID,
          From: GUEST,
          To: guestProxy,
          Body: SECRET_TEXT,
          NumMedia: "0",
          FromCountry: "US",
          ApiVersion: "2010-04-01",
        }),
      );
      assert.equal(r.statusCode, 200, r.body);
      assert.match(r.headers?.["content-type"] ?? "", /^text\/xml/);
      assert.match(r.body ?? "", /^<\?xml version="1.0" encoding="UTF-8"\?><Response\/?>/);
    });

    test("behind a custom domain with an API mapping path, the signature is checked against that URL", async () => {
      // API Gateway leaves the mapping's path out of rawPath: PUBLIC_BASE_URL carries it.
      const publicBaseUrl = "https://api.example.com/maskline";
      const behindDomain = start("inbound", (env) => {
        env.PUBLIC_BASE_URL = publicBaseUrl;
      });
      const r = await behindDomain.invoke<Result>(
        twilioWebhook(
          "POST /twilio/sms",
          {
            MessageSid: `SM${randomBytes(16).toString("hex")}`,
            AccountSid: ACCOUNT_SID,
            From: STRANGER,
            To: guestProxy,
            Body: "hi",
            NumMedia: "0",
          },
          { publicBaseUrl },
        ),
      );
      assert.equal(r.statusCode, 200, r.body);
    });

    test("a forged webhook is refused with 403 and writes nothing", async () => {
      const before = (await aws.doc.send(new ScanCommand({ TableName: tableName, Select: "COUNT" }))).Count;
      const event = twilioWebhook(
        "POST /twilio/sms",
        {
          MessageSid: `SM${randomBytes(16).toString("hex")}`,
          AccountSid: ACCOUNT_SID,
          From: GUEST,
          To: guestProxy,
          Body: "forged",
          NumMedia: "0",
        },
        { token: "not-the-token" },
      );
      const r = await inbound.invoke<Result>(event);
      assert.equal(r.statusCode, 403);
      problemOf(r);
      const afterCount = (await aws.doc.send(new ScanCommand({ TableName: tableName, Select: "COUNT" })))
        .Count;
      assert.equal(afterCount, before);
    });

    test("a signed voice webhook answers TwiML that dials the other side", async () => {
      const r = await inbound.invoke<Result>(
        twilioWebhook("POST /twilio/voice", {
          CallSid: `CA${randomBytes(16).toString("hex")}`,
          AccountSid: ACCOUNT_SID,
          From: GUEST,
          To: guestProxy,
          CallStatus: "ringing",
          Direction: "inbound",
        }),
      );
      assert.equal(r.statusCode, 200, r.body);
      assert.match(r.body ?? "", /<Dial callerId="\+\d+"><Number>\+\d+<\/Number><\/Dial>/);
    });
  });

  describe("SQS event source mapping → forward", () => {
    test("a batch with a poison record: only it and the rest of its group are reported failed", async () => {
      const received = await aws.sqsClient.send(
        new ReceiveMessageCommand({
          QueueUrl: queueUrl,
          MaxNumberOfMessages: 10,
          AttributeNames: ["All"],
          MessageAttributeNames: ["All"],
          WaitTimeSeconds: 1,
        }),
      );
      const jobs = received.Messages ?? [];
      assert.equal(jobs.length, 1, "the inbound text queued one job");
      const [job] = jobs;
      const queueArn = "arn:aws:sqs:us-east-1:123456789012:MasklineStateful-ForwardQueue.fifo";
      const record = (messageId: string, body: string, group: string, seq: number) => ({
        messageId,
        receiptHandle: randomBytes(24).toString("base64"),
        body,
        attributes: {
          ApproximateReceiveCount: "1",
          AWSTraceHeader: "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
          SentTimestamp: String(Date.now()),
          SequenceNumber: String(18849496460467696000 + seq),
          MessageGroupId: group,
          SenderId: "AROAEXAMPLE:maskline-inbound",
          MessageDeduplicationId: randomUUID(),
          ApproximateFirstReceiveTimestamp: String(Date.now()),
        },
        messageAttributes: {},
        md5OfBody: "0".repeat(32),
        eventSource: "aws:sqs",
        eventSourceARN: queueArn,
        awsRegion: "us-east-1",
      });
      const event = {
        Records: [
          record("p-1", "{not json", "poisoned", 1),
          record("p-2", JSON.stringify({ messageId: "m-x", sessionId: "s-x" }), "poisoned", 2),
          record(job?.MessageId ?? "", job?.Body ?? "", job?.Attributes?.MessageGroupId ?? "", 3),
          record("p-3", JSON.stringify({ nope: true }), "other", 4),
        ],
      };
      const forward = start("forward");
      const r = await forward.invoke<{ batchItemFailures: { itemIdentifier: string }[] }>(event);
      assert.deepEqual(r.batchItemFailures.map((f) => f.itemIdentifier).sort(), ["p-1", "p-2", "p-3"]);
      assert.equal(sandbox.messages.filter((m) => m.body.includes(SECRET_TEXT)).length, 1);
    });
  });

  describe("Twilio's status callback", () => {
    test("the callback Twilio sent for the forwarded text (its URL has a query string) is accepted", async () => {
      const deadline = Date.now() + 10_000;
      while (!statusCallbacks.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const [callback] = statusCallbacks;
      assert.ok(callback, "Twilio called back");
      assert.ok(callback.query, "the status callback URL carries the message id");
      const r = await inbound.invoke<Result>(
        httpEvent({
          method: "POST",
          route: "POST /twilio/status",
          path: callback.path,
          query: callback.query,
          headers: {
            "content-type": callback.headers["content-type"] ?? "",
            "x-twilio-signature": callback.headers["x-twilio-signature"] ?? "",
          },
          body: callback.body,
          base64: true,
        }),
      );
      assert.equal(r.statusCode, 204, r.body);
    });
  });

  describe("DynamoDB stream → publisher", () => {
    test("INSERT events are published; MODIFY, TTL REMOVE and non-event items are skipped; failures name the first sequence number", async () => {
      const items = ((await aws.doc.send(new ScanCommand({ TableName: tableName }))).Items ?? []) as Json[];
      const events = items.filter((i) => i.kind === "event");
      const others = items.filter((i) => i.kind !== "event");
      assert.ok(events.length >= 3 && others.length > 0);
      let seq = 100;
      const streamRecord = (eventName: string, item: Json, extra: Json = {}) => ({
        eventID: randomBytes(16).toString("hex"),
        eventName,
        eventVersion: "1.1",
        eventSource: "aws:dynamodb",
        awsRegion: "us-east-1",
        dynamodb: {
          ApproximateCreationDateTime: Math.floor(Date.now() / 1000),
          Keys: marshall({ pk: item.pk, sk: item.sk }),
          ...(eventName === "REMOVE"
            ? {}
            : {
                NewImage: marshall(item, { removeUndefinedValues: true }) as Record<string, AttributeValue>,
              }),
          SequenceNumber: String(++seq).padStart(21, "0"),
          SizeBytes: 512,
          StreamViewType: "NEW_IMAGE",
        },
        eventSourceARN: `arn:aws:dynamodb:us-east-1:123456789012:table/${tableName}/stream/2026-11-27T00:00:00.000`,
        ...extra,
      });
      const [first, second, ...rest] = events as [Json, Json, ...Json[]];
      const records = [
        streamRecord("INSERT", first),
        streamRecord("MODIFY", others[0] as Json),
        streamRecord("REMOVE", others[0] as Json, {
          userIdentity: { type: "Service", principalId: "dynamodb.amazonaws.com" },
        }),
        streamRecord("INSERT", { ...second }),
        ...rest.map((e) => streamRecord("INSERT", e)),
      ];
      // An event item whose detail fails its schema: set aside at once, the batch goes on.
      const broken = { ...first, sk: `${String(first.sk)}-broken`, id: randomUUID(), detail: { nope: 1 } };
      records.push(streamRecord("INSERT", broken));
      const publisher = start("publisher");
      const ok = await publisher.invoke<{ batchItemFailures: unknown[] }>({ Records: records });
      assert.deepEqual(ok.batchItemFailures, []);
      assert.equal(putEvents.length, events.length);
      const setAside = await aws.sqsClient.send(
        new ReceiveMessageCommand({ QueueUrl: failuresUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }),
      );
      assert.deepEqual(
        (setAside.Messages ?? []).map((m) => (JSON.parse(m.Body ?? "{}") as { eventId: string }).eventId),
        [broken.id],
      );
      records.pop();
      assert.ok(putEvents.every((e) => e.Source === "maskline" && e.EventBusName === BUS));

      failDetail = new RegExp(String(second.id));
      const partial = await publisher.invoke<{ batchItemFailures: { itemIdentifier: string }[] }>({
        Records: records,
      });
      failDetail = undefined;
      assert.deepEqual(partial.batchItemFailures, [{ itemIdentifier: records[3]?.dynamodb.SequenceNumber }]);
    });
  });

  describe("EventBridge schedule → recycler", () => {
    test("the scheduled event runs a recycling pass", async () => {
      const recycler = start("recycler");
      const r = await recycler.invoke<Json>({
        version: "0",
        id: randomUUID(),
        "detail-type": "Scheduled Event",
        source: "aws.events",
        account: "123456789012",
        time: new Date().toISOString(),
        region: "us-east-1",
        resources: ["arn:aws:events:us-east-1:123456789012:rule/MasklineApp-RecyclerSchedule"],
        detail: {},
      });
      assert.equal(typeof r.expired, "number");
    });
  });

  describe("start-up configuration", () => {
    test("a missing or bad variable fails the cold start with a message naming it", async () => {
      const cases: [FunctionName, string, string | undefined][] = [
        ["allocate", "MASKLINE_AUTH", "sigv4"],
        ["inbound", "PUBLIC_BASE_URL", undefined],
        ["forward", "TWILIO_TIMEOUT_MS", "0"],
        ["publisher", "PUBLISHER_FAILURES_QUEUE_URL", undefined],
        ["recycler", "QUARANTINE_SECONDS", "a day"],
      ];
      await Promise.all(
        cases.map(async ([name, variable, value]) => {
          const p = start(name, (env) => {
            if (value === undefined) delete env[variable];
            else env[variable] = value;
          });
          assert.notEqual(await p.exited, 0, `${name} started without ${variable}`);
          assert.match(p.stderr, new RegExp(`\\b${variable}\\b`), `${name}: ${p.stderr.slice(0, 2000)}`);
        }),
      );
    });

    test("a Twilio secret that cannot be read fails the cold start", async () => {
      const p = start("inbound", (env) => {
        env.TWILIO_SECRET_ARN = `${TWILIO_SECRET_ARN}-missing`;
      });
      assert.notEqual(await p.exited, 0);
      assert.match(p.stderr, /ResourceNotFound/);
    });
  });

  describe("error paths and what they let out", () => {
    test("5xx and webhook error answers name no number and no body, and their logs neither (the logs test below)", async () => {
      // `instance` is the path the caller sent (its own input, as API Gateway's access log keeps only the
      // route key): everything else must name nothing the request carried.
      const leaks = (body: string | undefined) => {
        const { instance: _path, ...rest } = JSON.parse(body || "{}") as Json;
        const text = JSON.stringify(rest);
        return [GUEST, HOST].map(digits).some((d) => text.includes(d)) || text.includes(SECRET_TEXT);
      };
      // DynamoDB unreachable: every write and read fails, so each request ends in the 5xx that is logged
      // with its error's message and stack.
      const closedPort = `http://127.0.0.1:${await freePort()}`;
      const unreachable = (env: Record<string, string>) => {
        env.AWS_ENDPOINT_URL_DYNAMODB = closedPort;
      };
      const brokenInbound = start("inbound", unreachable);
      const brokenAllocate = start("allocate", unreachable);
      const sms = (extra: Record<string, string> = {}) => ({
        MessageSid: `SM${randomBytes(16).toString("hex")}`,
        AccountSid: ACCOUNT_SID,
        From: GUEST,
        To: guestProxy,
        Body: SECRET_TEXT,
        NumMedia: "0",
        ...extra,
      });
      const failures: [LambdaProcess, Json][] = [
        [brokenInbound, twilioWebhook("POST /twilio/sms", sms())],
        [
          brokenInbound,
          twilioWebhook("POST /twilio/voice", {
            CallSid: `CA${randomBytes(16).toString("hex")}`,
            AccountSid: ACCOUNT_SID,
            From: GUEST,
            To: guestProxy,
          }),
        ],
        [
          brokenAllocate,
          product(
            "POST",
            "POST /sessions",
            "/sessions",
            jsonBody({ participants: [{ phoneNumber: GUEST, name: SECRET_TEXT }, { phoneNumber: HOST }] }),
          ),
        ],
        [
          brokenAllocate,
          product("POST", "POST /sessions/{id}/messages", `/sessions/${sessionId}/messages`, {
            pathParameters: { id: sessionId },
            ...jsonBody({ to: HOST, body: SECRET_TEXT }),
          }),
        ],
        [
          brokenAllocate,
          product("DELETE", "DELETE /participants/{e164}", `/participants/${encodeURIComponent(GUEST)}`, {
            pathParameters: { e164: GUEST },
          }),
        ],
      ];
      for (const [p, event] of failures) {
        const r = await p.invoke<Result>(event);
        assert.ok(r.statusCode >= 500, `${event.routeKey}: ${r.statusCode} ${r.body}`);
        assert.ok(!leaks(r.body), `${event.routeKey} answered ${r.body}`);
      }
      for (const p of [brokenInbound, brokenAllocate]) assert.match(p.output, /"request failed"/);

      // Webhooks Twilio's debugger records the answer of: refused ones must not echo what was sent.
      const refused = [
        twilioWebhook("POST /twilio/sms", sms({ Body: `${SECRET_TEXT}${"x".repeat(1600)}` })),
        twilioWebhook("POST /twilio/sms", sms({ To: digits(GUEST), NumMedia: SECRET_TEXT })),
        twilioWebhook("POST /twilio/sms", sms({ AccountSid: `AC${"0".repeat(32)}` })),
        twilioWebhook("POST /twilio/sms", sms(), { token: "not-the-token" }),
      ];
      for (const event of refused) {
        const r = await inbound.invoke<Result>(event);
        assert.ok(r.statusCode >= 400 && r.statusCode < 500, `${r.statusCode} ${r.body}`);
        assert.ok(!leaks(r.body), `answered ${r.body}`);
      }
    });
  });

  describe("logs", () => {
    test("no process logged a phone number, a message body or a secret", async () => {
      for (const p of processes) {
        for (const secret of [
          ...[GUEST, HOST, STRANGER, ...POOL].map(digits),
          SECRET_TEXT,
          AUTH_TOKEN,
          PSEUDONYM_KEY,
        ])
          assert.ok(!p.output.includes(secret), `${secret} logged:\n${p.output.slice(0, 3000)}`);
      }
    });
  });
});
