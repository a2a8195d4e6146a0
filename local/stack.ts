import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { GetQueueAttributesCommand, SendMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { z } from "zod";
import { DynamoStore } from "../shared/adapters/dynamo-store.ts";
import {
  awsCallConfigSchema,
  baseUrl,
  ConfigError,
  coreConfigSchema,
  cursorSigningKeyFields,
  forwardConfigSchema,
  httpUrl,
  messagingServiceConfigSchema,
  parseConfig,
  pseudonymConfigSchema,
  recyclerConfigSchema,
  secretValue,
  sessionRetentionSchema,
  twilioCallFields,
  twilioCredentialFields,
  webhookConfigSchema,
} from "../shared/config.ts";
import { toE164 } from "../shared/domain/phone.ts";
import { forwardConsumer, functions, publisherStream } from "../shared/resources.ts";
import {
  dataDirLockFile,
  dataDirLockHolder,
  LOCAL_CREDENTIALS,
  LOCAL_REGION,
  type LocalService,
  provisionQueue,
  provisionStandardQueue,
  provisionTable,
  startDynamoLocal,
  startSqsLocal,
} from "./aws-local.ts";
import { LocalEventBus } from "./event-bus.ts";
import { localContext, type Poller, startScheduler, startSqsPoller, startStreamPoller } from "./pollers.ts";
import { createLocalServer, type HttpHandler } from "./server.ts";
import { sandboxNumbers, TwilioSandbox } from "./twilio-sandbox.ts";

/** The embedded stack's own settings (the project's configuration names plus local knobs), validated at start-up. */
export const localConfigSchema = z
  .object({
    PORT: z.coerce.number().int().min(0).max(65535).default(3000),
    /** The address to listen on: loopback unless asked otherwise (0.0.0.0 or :: for every interface). */
    HOST: z
      .string()
      .max(253)
      .regex(
        /^(\[?[0-9A-Fa-f:.]+\]?|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)$/,
        "must be an IP address or a host name",
      )
      .transform((h) => h.replace(/^\[(.*)\]$/, "$1"))
      .default("127.0.0.1"),
    PUBLIC_BASE_URL: baseUrl.optional(),
    MASKLINE_API_TOKEN: secretValue.optional(),
    ...twilioCredentialFields,
    TWILIO_API_BASE_URL: baseUrl.optional(),
    MASKLINE_DATA_DIR: z.string().min(1).optional(),
    SANDBOX_POOL_SIZE: z.coerce.number().int().min(0).max(100).default(5),
    LOCAL_EVENTS_WEBHOOK_URL: httpUrl.optional(),
    LOCAL_VISIBILITY_TIMEOUT_SECONDS: z.coerce.number().int().min(1).default(10),
    RECYCLER_INTERVAL_SECONDS: z.coerce.number().min(0.1).default(5),
    /** The handlers' log level locally (Powertools), WARN unless set. */
    LOG_LEVEL: z
      .preprocess(
        (v) => (typeof v === "string" ? v.toUpperCase() : v),
        z.enum(["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "CRITICAL", "SILENT"]),
      )
      .optional(),
  })
  .extend(messagingServiceConfigSchema.shape);

/**
 * What the handlers read from the user's environment, checked with the local settings before anything
 * starts, so one message names every bad variable (the stack sets the rest itself).
 */
const startupConfigSchema = localConfigSchema
  .merge(webhookConfigSchema.omit({ PUBLIC_BASE_URL: true, LOCAL_SIGNATURE_ACCEPT_REQUEST_HOST: true }))
  .merge(coreConfigSchema.omit({ TABLE_NAME: true }))
  .merge(sessionRetentionSchema)
  .merge(forwardConfigSchema)
  .merge(recyclerConfigSchema)
  .merge(pseudonymConfigSchema)
  .merge(awsCallConfigSchema)
  .extend({ ...twilioCallFields, ...cursorSigningKeyFields });

/** Sandbox: no TWILIO_API_BASE_URL and no real credentials (both credentials and PUBLIC_BASE_URL). */
export type TwilioMode = "sandbox" | "custom" | "real";

export function twilioModeOf(config: {
  TWILIO_API_BASE_URL?: string;
  TWILIO_ACCOUNT_SID?: string;
  TWILIO_AUTH_TOKEN?: string;
  PUBLIC_BASE_URL?: string;
}): TwilioMode {
  if (config.TWILIO_API_BASE_URL) return "custom";
  if (config.TWILIO_ACCOUNT_SID && config.TWILIO_AUTH_TOKEN && config.PUBLIC_BASE_URL) return "real";
  return "sandbox";
}

/** Outside the sandbox the product API may be reachable through a tunnel: a guessable token is refused. */
export const MIN_API_TOKEN_LENGTH = 16;

export interface EmbeddedStack {
  url: string;
  /** The address the server listens on (HOST). */
  host: string;
  apiToken: string;
  twilioMode: TwilioMode;
  server: Server;
  sandbox: TwilioSandbox;
  bus: LocalEventBus;
  startupMs: number;
  stop(): Promise<void>;
}

/**
 * The pseudonym key of the embedded stack: PSEUDONYM_KEY when given; with a data directory, the one kept in
 * `<dir>/pseudonym.key` (made on first start, so pseudonyms and erasures stay valid across restarts); else a
 * fresh one (the data is in memory too).
 */
function localPseudonymKey(given: string | undefined, dataDir: string | undefined): string {
  if (given) return given;
  const fresh = randomBytes(32).toString("base64url");
  if (!dataDir) return fresh;
  const file = `${dataDir}/pseudonym.key`;
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(file, fresh, { mode: 0o600 });
  return fresh;
}

/**
 * One stack per data directory: `<dir>/maskline.lock` holds the pid of the stack using it. Two stacks on one
 * DynamoDB Local file would both poll its stream and run the recycler. A lock whose process is gone (a
 * SIGKILL) is taken over. Returns the release, also run when the process exits.
 */
function lockDataDir(dataDir: string): () => void {
  mkdirSync(dataDir, { recursive: true });
  const file = dataDirLockFile(dataDir);
  for (;;) {
    try {
      writeFileSync(file, String(process.pid), { flag: "wx" });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const holder = dataDirLockHolder(dataDir);
      if (holder !== undefined)
        throw new ConfigError(
          `Invalid configuration:\n  MASKLINE_DATA_DIR: ${dataDir} is in use by another npm start (pid ${holder}); stop it or use another --data-dir`,
        );
      rmSync(file, { force: true });
    }
  }
  const release = () => {
    process.off("exit", release);
    try {
      if (readFileSync(file, "utf8").trim() === String(process.pid)) rmSync(file, { force: true });
    } catch {
      // already gone
    }
  };
  process.once("exit", release);
  return release;
}

/** A port or address the server cannot take is a configuration error that names the variable. */
function listenError(error: NodeJS.ErrnoException, port: number, host: string): Error {
  const invalid = (line: string) => new ConfigError(`Invalid configuration:\n  ${line}`);
  if (error.code === "EADDRINUSE") return invalid(`PORT: ${port} is already in use on ${host}`);
  if (error.code === "EACCES") return invalid(`PORT: ${port} needs privileges; use 1024 or above`);
  if (error.code === "EADDRNOTAVAIL") return invalid(`HOST: ${host} is not an address of this machine`);
  return error;
}

export async function startEmbeddedStack(
  env: NodeJS.ProcessEnv = process.env,
  log: (line: string) => void = () => {},
): Promise<EmbeddedStack> {
  const started = Date.now();
  const local = parseConfig(startupConfigSchema, env);
  const twilioMode = twilioModeOf(local);
  if (
    twilioMode !== "sandbox" &&
    local.MASKLINE_API_TOKEN !== undefined &&
    local.MASKLINE_API_TOKEN.length < MIN_API_TOKEN_LENGTH
  )
    throw new ConfigError(
      `Invalid configuration:\n  MASKLINE_API_TOKEN: at least ${MIN_API_TOKEN_LENGTH} characters unless the Twilio sandbox is the Twilio (the API may be reachable beyond this machine)`,
    );
  const unlock = local.MASKLINE_DATA_DIR ? lockDataDir(local.MASKLINE_DATA_DIR) : () => {};
  const services: LocalService[] = [];
  const pollers: Poller[] = [];
  let server: Server | undefined;
  const stop = async () => {
    await Promise.all(pollers.map((p) => p.stop()));
    if (server) {
      server.closeAllConnections();
      await new Promise((resolve) => server?.close(resolve));
    }
    await Promise.all(services.map((s) => s.stop()));
    unlock();
  };
  try {
    // The HTTP server must be listening to know its port before handlers read PUBLIC_BASE_URL; until they
    // are loaded a contract route answers 503.
    let route: (req: IncomingMessage, res: ServerResponse, url: URL, body: string) => Promise<boolean> =
      async () => false;
    const handlers: Partial<Record<keyof typeof functions, HttpHandler>> = {};
    const bus = new LocalEventBus(local.LOCAL_EVENTS_WEBHOOK_URL);
    bus.on("warning", log);
    const sandboxHolder: { sandbox?: TwilioSandbox } = {};
    const lazySandbox = new Proxy({} as TwilioSandbox, {
      get: (_t, prop) => {
        const s = sandboxHolder.sandbox as unknown as Record<string | symbol, unknown>;
        const v = s[prop];
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(s) : v;
      },
    });
    let sandboxOn = false;
    const trustedOrigins: string[] = [];
    server = createLocalServer({
      handlers,
      sandbox: lazySandbox,
      bus,
      sandboxApi: (...a) => route(...a),
      sandboxEnabled: () => sandboxOn,
      trustedOrigins,
    });
    // Listening first: a port or address it cannot take stops start-up before anything else starts.
    await new Promise<void>((resolve, reject) => {
      server?.once("error", (error) => reject(listenError(error, local.PORT, local.HOST)));
      server?.listen(local.PORT, local.HOST, () => resolve());
    });
    const [dynamo, sqs] = await Promise.all([
      startDynamoLocal({ dataDir: local.MASKLINE_DATA_DIR }),
      startSqsLocal(),
    ]);
    services.push(dynamo, sqs);
    const tableName = "maskline";
    await provisionTable(dynamo.endpoint, tableName);
    const queue = await provisionQueue(sqs.endpoint, "maskline", {
      visibilityTimeoutSeconds: local.LOCAL_VISIBILITY_TIMEOUT_SECONDS,
    });
    const failuresQueueUrl = await provisionStandardQueue(
      sqs.endpoint,
      `maskline-${publisherStream.failuresQueueId}`,
    );

    const address = server.address();
    const port = typeof address === "object" && address ? address.port : local.PORT;
    const bound = typeof address === "object" && address ? address.address : local.HOST;
    const wildcard = bound === "0.0.0.0" || bound === "::";
    const loopback = bound === "::1" || bound.startsWith("127.");
    const bracket = (h: string) => (h.includes(":") ? `[${h}]` : h);
    // What users open, and what the stack itself calls (its own API, the Twilio stand-in, the bus).
    const url = wildcard || loopback ? `http://localhost:${port}` : `http://${bracket(local.HOST)}:${port}`;
    const internal = `http://${wildcard ? "127.0.0.1" : bracket(bound)}:${port}`;
    const publicBaseUrl = (local.PUBLIC_BASE_URL ?? url).replace(/\/$/, "");
    trustedOrigins.push(new URL(publicBaseUrl).origin, new URL(url).origin);

    const accountSid = local.TWILIO_ACCOUNT_SID ?? `AC${randomBytes(16).toString("hex")}`;
    const authToken = local.TWILIO_AUTH_TOKEN ?? randomBytes(16).toString("hex");
    const apiToken = local.MASKLINE_API_TOKEN ?? `dev-${randomBytes(12).toString("hex")}`;
    const twilioBase =
      local.TWILIO_API_BASE_URL ?? (twilioMode === "real" ? "https://api.twilio.com" : internal);

    const sandbox = new TwilioSandbox({
      accountSid,
      authToken,
      publicBaseUrl,
      webhookTarget: internal,
      messagingServiceSid: local.TWILIO_MESSAGING_SERVICE_SID,
    });
    sandboxHolder.sandbox = sandbox;
    sandboxOn = twilioMode === "sandbox";

    Object.assign(process.env, {
      AWS_REGION: LOCAL_REGION,
      AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
      AWS_ENDPOINT_URL_SQS: sqs.endpoint,
      AWS_ENDPOINT_URL_EVENTBRIDGE: `${internal}${bus.path}`,
      TABLE_NAME: tableName,
      FORWARD_QUEUE_URL: queue.queueUrl,
      PUBLIC_BASE_URL: publicBaseUrl,
      LOCAL_SIGNATURE_ACCEPT_REQUEST_HOST: local.PUBLIC_BASE_URL ? "false" : "true",
      MASKLINE_API_TOKEN: apiToken,
      MASKLINE_AUTH: "token",
      TWILIO_ACCOUNT_SID: accountSid,
      TWILIO_AUTH_TOKEN: authToken,
      ...(local.TWILIO_SECONDARY_AUTH_TOKEN
        ? { TWILIO_SECONDARY_AUTH_TOKEN: local.TWILIO_SECONDARY_AUTH_TOKEN }
        : {}),
      TWILIO_API_BASE_URL: twilioBase,
      PSEUDONYM_KEY: localPseudonymKey(env.PSEUDONYM_KEY, local.MASKLINE_DATA_DIR),
      PUBLISHER_FAILURES_QUEUE_URL: failuresQueueUrl,
      TWILIO_MESSAGING_SERVICE_SID: local.TWILIO_MESSAGING_SERVICE_SID ?? "",
      FORWARD_CLAIM_STALE_SECONDS: env.FORWARD_CLAIM_STALE_SECONDS || "20",
      POWERTOOLS_METRICS_DISABLED: "true",
      POWERTOOLS_LOG_LEVEL: local.LOG_LEVEL || env.POWERTOOLS_LOG_LEVEL || "WARN",
    });

    // The deployed handlers, imported after their environment is set (they read it once, at "cold start").
    const [allocate, inbound, forward, recycler, publisher] = await Promise.all([
      import("../functions/allocate/handler.ts"),
      import("../functions/inbound/handler.ts"),
      import("../functions/forward/handler.ts"),
      import("../functions/recycler/handler.ts"),
      import("../functions/publisher/handler.ts"),
    ]);
    handlers.allocate = allocate.handler as unknown as HttpHandler;
    handlers.inbound = inbound.handler as unknown as HttpHandler;

    const doc = DynamoDBDocumentClient.from(
      new DynamoDBClient({ endpoint: dynamo.endpoint, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS }),
    );
    const store = new DynamoStore({ tableName, client: doc, retentionSeconds: 3600 });
    const callApi = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${internal}${path}`, {
        method,
        headers: { authorization: `Bearer ${apiToken}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, json: await res.json().catch(() => undefined) };
    };
    route = sandboxApi({ sandbox, bus, store, callApi });

    const sqsClient = new SQSClient({
      endpoint: sqs.endpoint,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
    });
    const arn = await sqsClient.send(
      new GetQueueAttributesCommand({ QueueUrl: queue.queueUrl, AttributeNames: ["QueueArn"] }),
    );
    const onError = (what: string) => (error: unknown) =>
      log(`${what}: ${(error as Error)?.message ?? error}`);
    pollers.push(
      startSqsPoller({
        client: sqsClient,
        queueUrl: queue.queueUrl,
        queueArn: arn.Attributes?.QueueArn ?? "",
        handler: forward.handler,
        batchSize: forwardConsumer.batchSize,
        concurrency: forwardConsumer.localConcurrency,
        visibilityTimeoutSeconds: queue.visibilityTimeoutSeconds,
        timeoutMs: functions.forward.timeoutSeconds * 1000,
        onError: onError("forward poller"),
      }),
      startStreamPoller({
        endpoint: dynamo.endpoint,
        region: LOCAL_REGION,
        credentials: LOCAL_CREDENTIALS,
        tableName,
        handler: publisher.handler,
        batchSize: publisherStream.batchSize,
        maxRetries: publisherStream.retryAttempts,
        onFailure: async (failure) => {
          await sqsClient.send(
            new SendMessageCommand({ QueueUrl: failuresQueueUrl, MessageBody: JSON.stringify(failure) }),
          );
          log(`stream poller: gave up on record ${failure.DDBStreamBatchInfo.startSequenceNumber}`);
        },
        onError: onError("stream poller"),
      }),
      startScheduler(
        () => recycler.handler({}, localContext("recycler", functions.recycler.timeoutSeconds * 1000)),
        local.RECYCLER_INTERVAL_SECONDS * 1000,
        onError("recycler"),
      ),
      { stop: async () => sqsClient.destroy() },
      { stop: async () => doc.destroy() },
    );

    if (twilioMode === "sandbox" && local.SANDBOX_POOL_SIZE > 0 && (await store.listPool()).length === 0) {
      for (const number of sandboxNumbers(local.SANDBOX_POOL_SIZE))
        await callApi("POST", "/numbers", { phoneNumber: number });
    }
    // The sandbox's Messaging Service holds the pool, as the Console's Sender Pool would.
    if (twilioMode === "sandbox" && local.TWILIO_MESSAGING_SERVICE_SID)
      for (const { phoneNumber } of await store.listPool()) sandbox.joinService(phoneNumber);
    return {
      url,
      host: local.HOST,
      apiToken,
      twilioMode,
      server,
      sandbox,
      bus,
      startupMs: Date.now() - started,
      stop,
    };
  } catch (error) {
    await stop().catch(() => {});
    throw error;
  }
}

interface SandboxApiDeps {
  sandbox: TwilioSandbox;
  bus: LocalEventBus;
  store: DynamoStore;
  callApi: (method: string, path: string, body?: unknown) => Promise<{ status: number; json: unknown }>;
}

/** The sandbox page's JSON API: virtual phones, sessions, pool, faults and a live feed (SSE). */
function sandboxApi({ sandbox, bus, store, callApi }: SandboxApiDeps) {
  let phoneCounter = 100;
  const sendJson = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  const parse = (body: string) => {
    try {
      return JSON.parse(body || "{}") as Record<string, unknown>;
    } catch {
      return {};
    }
  };
  return async (req: IncomingMessage, res: ServerResponse, url: URL, body: string): Promise<boolean> => {
    const path = url.pathname;
    const method = req.method ?? "GET";
    if (method === "GET" && path === "/sandbox/events") {
      res.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-store",
        connection: "keep-alive",
      });
      const send = (type: string) => (data: unknown) =>
        res.write(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
      const listeners: [TwilioSandbox | LocalEventBus, string, (d: unknown) => void][] = [
        [sandbox, "phone-entry", send("phone-entry")],
        [sandbox, "phone", send("phone")],
        [sandbox, "message", send("twilio-message")],
        [sandbox, "opt-out", send("opt-out")],
        [bus, "event", send("domain-event")],
      ];
      for (const [emitter, name, fn] of listeners) emitter.on(name, fn);
      const ping = setInterval(() => res.write(": ping\n\n"), 15_000);
      req.on("close", () => {
        clearInterval(ping);
        for (const [emitter, name, fn] of listeners) emitter.off(name, fn);
      });
      res.write(": connected\n\n");
      return true;
    }
    if (method === "GET" && path === "/sandbox/state") {
      const [pool, sessions] = await Promise.all([store.listPool(), store.openSessions(200)]);
      sendJson(res, 200, {
        pool,
        sessions,
        phones: [...sandbox.phones].map(([phoneNumber, entries]) => ({
          phoneNumber,
          entries,
          optOut: sandbox.optOutOf(phoneNumber),
        })),
        messagingServices: [...sandbox.messagingServices].map(([sid, numbers]) => ({
          sid,
          phoneNumbers: [...numbers],
        })),
        events: bus.events.slice(-100),
        twilioMessages: sandbox.messages.length,
      });
      return true;
    }
    if (method === "GET" && path === "/sandbox/twilio/messages") {
      sendJson(res, 200, { messages: sandbox.messages });
      return true;
    }
    if (method === "GET" && path === "/sandbox/bus/events") {
      sendJson(res, 200, { events: bus.events });
      return true;
    }
    if (method === "POST" && path === "/sandbox/phones") {
      const requested = parse(body).phoneNumber;
      const number =
        typeof requested === "string" && requested
          ? toE164(requested)
          : `+1202555${String(phoneCounter++).padStart(4, "0")}`;
      if (!number) {
        sendJson(res, 400, { error: "not a valid E.164 number" });
        return true;
      }
      sandbox.addPhone(number);
      sendJson(res, 201, { phoneNumber: number });
      return true;
    }
    const phoneAction = /^\/sandbox\/phones\/([^/]+)\/(sms|call)$/.exec(path);
    if (method === "POST" && phoneAction) {
      const from = toE164(decodeURIComponent(phoneAction[1] ?? ""));
      const input = parse(body);
      const to = toE164(String(input.to ?? ""));
      if (!from || !to) {
        sendJson(res, 400, { error: "from and to must be E.164 numbers" });
        return true;
      }
      const media = z
        .array(
          z
            .string()
            .url()
            .max(2048)
            .regex(/^https?:/i),
        )
        .max(10)
        .optional()
        .safeParse(input.mediaUrls);
      if (!media.success) {
        sendJson(res, 400, { error: "mediaUrls: at most 10 http(s) URLs" });
        return true;
      }
      sandbox.addPhone(from);
      const result =
        phoneAction[2] === "sms"
          ? await sandbox.phoneSends(from, to, String(input.body ?? ""), { mediaUrls: media.data })
          : await sandbox.phoneCalls(from, to);
      sendJson(res, 200, result);
      return true;
    }
    if (method === "POST" && path === "/sandbox/sessions") {
      const result = await callApi("POST", "/sessions", parse(body));
      sendJson(res, result.status, result.json);
      return true;
    }
    const closing = /^\/sandbox\/sessions\/([\w-]+)$/.exec(path);
    if (method === "DELETE" && closing) {
      const result = await callApi("DELETE", `/sessions/${closing[1]}`);
      sendJson(res, result.status, result.json);
      return true;
    }
    if (method === "POST" && path === "/sandbox/faults") {
      const input = parse(body);
      sandbox.faults = {
        rate: Math.max(0, Math.min(1, Number(input.rate ?? 0))),
        statuses: Array.isArray(input.statuses) ? input.statuses.map(Number) : [429, 500],
      };
      if (Array.isArray(input.unsubscribed))
        for (const n of input.unsubscribed) sandbox.unsubscribed.add(String(n));
      if (typeof input.refuseBusEntries === "number") bus.refuseNext = input.refuseBusEntries;
      sendJson(res, 200, { faults: sandbox.faults });
      return true;
    }
    return false;
  };
}
