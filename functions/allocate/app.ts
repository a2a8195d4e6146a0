import type { Logger } from "@aws-lambda-powertools/logger";
import middy from "@middy/core";
import type { z } from "zod";
import type { SessionService } from "../../shared/app/sessions.ts";
import { toE164FromPath } from "../../shared/domain/phone.ts";
import type { Session } from "../../shared/domain/session.ts";
import { CursorCodec } from "../../shared/http/cursor.ts";
import {
  type HttpEvent,
  type HttpResult,
  headerOf,
  json,
  jsonBody,
  type ProductAuth,
  problemJson,
  productAuth,
} from "../../shared/http/middleware.ts";
import { problems } from "../../shared/http/problem.ts";
import {
  eventsQuery,
  listSessionsQuery,
  MAX_PAGE_BYTES,
  messagesQuery,
  numberBody,
  numbersQuery,
  openSessionBody,
  type participantInput,
  platformMessageBody,
  updateSessionBody,
} from "./schemas.ts";

export { TTL_BOUNDS } from "./schemas.ts";

const idempotencyKey = (event: HttpEvent) => {
  const key = headerOf(event, "idempotency-key");
  if (key === undefined) return undefined;
  if (key.length < 1 || key.length > 255)
    throw problems.validation("Idempotency-Key must be 1 to 255 characters");
  return key;
};

const pathParam = (event: HttpEvent, name: string) => {
  const value = event.pathParameters?.[name];
  if (!value) throw problems.routeNotFound();
  return value;
};

/** Path parameters may arrive encoded or not (API Gateway vs. proxies); a stray "%" is just a character. */
const safeDecode = (value: string) => {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
};

/** An E.164 number in the path, encoded or not, with or without its "+". */
const phonePathParam = (event: HttpEvent) => {
  const raw = safeDecode(pathParam(event, "e164")).replace(/^ /, "+");
  const phoneNumber = toE164FromPath(raw);
  if (!phoneNumber) throw problems.validation("The path must end in an E.164 number");
  return phoneNumber;
};

const sessionIdParam = (event: HttpEvent) => {
  const id = pathParam(event, "id");
  if (!/^[\w-]{1,64}$/.test(id)) throw problems.notFound(`No session ${id.slice(0, 64)}`);
  return id;
};

/** Query parameters, validated like bodies: every failure is a 400 problem naming the parameter. */
function queryOf<T extends z.ZodTypeAny>(event: HttpEvent, schema: T): z.output<T> {
  const parsed = schema.safeParse(event.queryStringParameters ?? {});
  if (!parsed.success) throw problems.validation(parsed.error);
  return parsed.data;
}

export function sessionView(session: Session, optedOut: ReadonlySet<string> = new Set()) {
  return {
    sessionId: session.sessionId,
    uniqueName: session.uniqueName ?? null,
    status: session.status,
    mode: session.mode,
    ttlSeconds: session.ttlSeconds,
    ttlMode: session.ttlMode,
    createdAt: session.createdAt,
    expiresAt: session.expiresAt,
    closedAt: session.closedAt,
    ...(session.contacts ? { policy: { contacts: session.contacts } } : {}),
    participants: session.participants.map((p) => ({
      phoneNumber: p.phoneNumber,
      id: p.id,
      name: p.name,
      proxyNumber: p.proxyNumber,
      optedOut: optedOut.has(p.phoneNumber),
      ...(p.hub && p.threadTag ? { hub: true as const, threadTag: p.threadTag } : {}),
    })),
  };
}

const PUBLIC_ROUTES = new Set(["GET /health", "GET /openapi.json"]);

/**
 * Built on the first request for it, then kept for the life of the function instance. The schema tooling
 * is imported only then, so it costs the product routes' cold start nothing.
 */
let openApi: Promise<unknown> | undefined;
const openApiDocument = () => {
  openApi ??= import("#on-demand/allocate-openapi").then((m) => m.buildOpenApiDocument());
  return openApi;
};

export interface AllocateAppDeps {
  service: SessionService;
  auth: ProductAuth;
  logger: Logger;
  health: () => Promise<Record<string, "ok" | "error">>;
  /** Signs page cursors; by default derived from the API token (set CURSOR_SIGNING_KEY in AWS). */
  cursorKey?: string;
}

/** The product API: thin routes over SessionService. */
export function createAllocateHandler({ service, auth, logger, health, cursorKey }: AllocateAppDeps) {
  const cursors = new CursorCodec(cursorKey ?? (auth.mode === "token" ? auth.token : "maskline"));
  let sessionQueries: ReturnType<SessionService["queries"]> | undefined;
  const queries = () => {
    sessionQueries ??= service.queries();
    return sessionQueries;
  };
  /** The page request of a query, its cursor checked against the query it belongs to. */
  const pageOf = (scope: string, q: { limit: number; cursor?: string | undefined }) => ({
    limit: q.limit,
    after: cursors.open(scope, q.cursor),
    maxBytes: MAX_PAGE_BYTES,
  });
  const nextCursor = (scope: string, next: Parameters<CursorCodec["seal"]>[1]) => {
    const cursor = cursors.seal(scope, next);
    return cursor ? { nextCursor: cursor } : {};
  };
  const routes: Record<string, (event: HttpEvent) => Promise<HttpResult>> = {
    "GET /health": async () => {
      const checks = await health();
      const ok = Object.values(checks).every((c) => c === "ok");
      return json(ok ? 200 : 503, { status: ok ? "ok" : "degraded", checks });
    },
    "GET /openapi.json": async () => json(200, await openApiDocument()),
    "POST /sessions": async (event) => {
      const key = idempotencyKey(event);
      const body = jsonBody(event, openSessionBody);
      const [a, b] = body.participants as [
        z.output<typeof participantInput>,
        z.output<typeof participantInput>,
      ];
      const { session, replayed } = await service.openSession(
        {
          participants: [a, b],
          mode: body.mode,
          ttlSeconds: body.ttlSeconds,
          ttlMode: body.policy?.ttlMode ?? body.ttlMode,
          contacts: body.policy?.contacts,
          ...(body.uniqueName ? { uniqueName: body.uniqueName } : {}),
          ...(body.failOnParticipantConflict ? { failOnParticipantConflict: true } : {}),
          ...(body.geoMatch !== "area-code" ? { geoMatch: body.geoMatch } : {}),
        },
        key,
      );
      // A replay is the same answer (201 and the body); only the header tells it apart.
      return json(201, sessionView(session, await service.optedOut(session)), {
        location: `/sessions/${session.sessionId}`,
        ...(replayed ? { "idempotent-replayed": "true" } : {}),
      });
    },
    "GET /sessions/{id}": async (event) => {
      const session = await service.getSession(sessionIdParam(event));
      return json(200, sessionView(session, await service.optedOut(session)));
    },
    "DELETE /sessions/{id}": async (event) => {
      const session = await service.closeSession(sessionIdParam(event));
      return json(200, sessionView(session, await service.optedOut(session)));
    },
    "GET /sessions": async (event) => {
      const q = queryOf(event, listSessionsQuery);
      const scope = `sessions\n${q.participant ?? ""}\n${q.uniqueName ?? ""}\n${q.status ?? ""}`;
      const page = await queries().listSessions(q, pageOf(scope, q));
      return json(200, { sessions: page.items.map((s) => sessionView(s)), ...nextCursor(scope, page.next) });
    },
    "PATCH /sessions/{id}": async (event) => {
      const id = sessionIdParam(event);
      const body = jsonBody(event, updateSessionBody);
      const session = await service.updateSession(id, body);
      return json(200, sessionView(session, await service.optedOut(session)));
    },
    "GET /sessions/{id}/events": async (event) => {
      const id = sessionIdParam(event);
      const q = queryOf(event, eventsQuery);
      const scope = `events\n${id}\n${q.type ?? ""}`;
      const page = await queries().events(id, pageOf(scope, q), q.type);
      return json(200, { events: page.items, ...nextCursor(scope, page.next) });
    },
    "GET /sessions/{id}/messages": async (event) => {
      const id = sessionIdParam(event);
      const q = queryOf(event, messagesQuery);
      const scope = `messages\n${id}`;
      const page = await queries().messages(id, pageOf(scope, q));
      return json(200, { messages: page.items, ...nextCursor(scope, page.next) });
    },
    "POST /sessions/{id}/messages": async (event) => {
      const id = sessionIdParam(event);
      const key = idempotencyKey(event);
      const body = jsonBody(event, platformMessageBody);
      const { messageId, replayed } = await service.sendPlatformMessage(id, body, key);
      return json(
        202,
        { messageId, sessionId: id, status: "queued" },
        replayed ? { "idempotent-replayed": "true" } : {},
      );
    },
    "POST /numbers": async (event) => {
      const { phoneNumber } = jsonBody(event, numberBody);
      const { created } = await service.addNumber(phoneNumber);
      const number = (await service.listNumbers()).find((n) => n.phoneNumber === phoneNumber);
      return json(created ? 201 : 200, number);
    },
    "GET /numbers": async (event) => {
      const q = queryOf(event, numbersQuery);
      const page = await queries().numbers(pageOf("numbers", q));
      return json(200, { numbers: page.items, ...nextCursor("numbers", page.next) });
    },
    "DELETE /numbers/{e164}": async (event) => json(200, await service.retireNumber(phonePathParam(event))),
    "GET /participants/{e164}": async (event) => json(200, await service.participant(phonePathParam(event))),
    "DELETE /participants/{e164}": async (event) =>
      json(200, { erased: await service.erase(phonePathParam(event)) }),
  };
  return middy<HttpEvent, HttpResult>()
    .use(problemJson(logger))
    .use(productAuth(auth, (event) => PUBLIC_ROUTES.has(event.routeKey)))
    .handler(async (event) => {
      const route = routes[event.routeKey];
      if (!route) throw problems.routeNotFound();
      return route(event);
    });
}
