import type { Logger } from "@aws-lambda-powertools/logger";
import middy from "@middy/core";
import { z } from "zod";
import type { SessionService } from "../../shared/app/sessions.ts";
import { sessionModes, ttlModes } from "../../shared/domain/events.ts";
import { e164Schema, toE164 } from "../../shared/domain/phone.ts";
import type { Session } from "../../shared/domain/session.ts";
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

/** TTL bounds: at least a second (tests and demos), at most 90 days (a long stay plus its follow-up). */
export const TTL_BOUNDS = { min: 1, max: 90 * 24 * 3600, default: 7 * 24 * 3600 };

const participantInput = z.object({
  phoneNumber: e164Schema,
  id: z.string().min(1).max(128).optional(),
  name: z.string().min(1).max(128).optional(),
});

const openSessionBody = z
  .object({
    participants: z.array(participantInput).length(2, "exactly two participants"),
    mode: z.enum(sessionModes).default("sms+voice"),
    ttlSeconds: z.number().int().min(TTL_BOUNDS.min).max(TTL_BOUNDS.max).default(TTL_BOUNDS.default),
    ttlMode: z.enum(ttlModes).default("absolute"),
    policy: z
      .object({
        ttlMode: z.enum(ttlModes).optional(),
        contacts: z.enum(["allow", "redact", "block"]).optional(),
      })
      .strict()
      .optional(),
  })
  .superRefine((body, ctx) => {
    const [a, b] = body.participants;
    if (a && b && a.phoneNumber === b.phoneNumber)
      ctx.addIssue({
        code: "custom",
        path: ["participants", 1, "phoneNumber"],
        message: "participants must differ",
      });
    if (a?.id && b?.id && a.id === b.id)
      ctx.addIssue({
        code: "custom",
        path: ["participants", 1, "id"],
        message: "participant ids must differ",
      });
  });

const platformMessageBody = z.object({
  to: z.string().min(1).max(128),
  body: z.string().min(1).max(1600),
});

const numberBody = z.object({ phoneNumber: e164Schema });

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
  const phoneNumber = toE164(raw.startsWith("+") ? raw : `+${raw}`);
  if (!phoneNumber) throw problems.validation("The path must end in an E.164 number");
  return phoneNumber;
};

const sessionIdParam = (event: HttpEvent) => {
  const id = pathParam(event, "id");
  if (!/^[\w-]{1,64}$/.test(id)) throw problems.notFound(`No session ${id.slice(0, 64)}`);
  return id;
};

export function sessionView(session: Session, optedOut: ReadonlySet<string> = new Set()) {
  return {
    sessionId: session.sessionId,
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
    })),
  };
}

export interface AllocateAppDeps {
  service: SessionService;
  auth: ProductAuth;
  logger: Logger;
  health: () => Promise<Record<string, "ok" | "error">>;
}

/** The product API: thin routes over SessionService. */
export function createAllocateHandler({ service, auth, logger, health }: AllocateAppDeps) {
  const routes: Record<string, (event: HttpEvent) => Promise<HttpResult>> = {
    "GET /health": async () => {
      const checks = await health();
      const ok = Object.values(checks).every((c) => c === "ok");
      return json(ok ? 200 : 503, { status: ok ? "ok" : "degraded", checks });
    },
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
        },
        key,
      );
      return json(replayed ? 200 : 201, sessionView(session, await service.optedOut(session)), {
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
    "GET /sessions/{id}/events": async (event) => {
      const events = await service.sessionEvents(sessionIdParam(event));
      return json(200, { events });
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
    "GET /numbers": async () => json(200, { numbers: await service.listNumbers() }),
    "DELETE /numbers/{e164}": async (event) => json(200, await service.retireNumber(phonePathParam(event))),
    "GET /participants/{e164}": async (event) => json(200, await service.participant(phonePathParam(event))),
  };
  return middy<HttpEvent, HttpResult>()
    .use(problemJson(logger))
    .use(productAuth(auth, (event) => event.routeKey === "GET /health"))
    .handler(async (event) => {
      const route = routes[event.routeKey];
      if (!route) throw problems.routeNotFound();
      return route(event);
    });
}
