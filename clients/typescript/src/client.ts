import { AwsClient } from "aws4fetch";
import { errorOf } from "./errors.ts";
import type {
  Health,
  MessageEntry,
  OpenSessionInput,
  PageOptions,
  PoolNumber,
  Problem,
  QueuedMessage,
  RetiredNumber,
  Session,
  SessionEvent,
  SessionFilter,
  UpdateSessionInput,
} from "./types.ts";

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string | undefined;
}

export type Auth =
  /** The local stack (`npm start` prints the token). */
  | { type: "bearer"; token: string }
  /** AWS: IAM (SigV4, service execute-api). A provider function is asked before each request (it may cache). */
  | {
      type: "sigv4";
      credentials: AwsCredentials | (() => Promise<AwsCredentials>);
      /** Defaults to the region in an execute-api endpoint's host name. */
      region?: string;
    }
  | { type: "none" };

export interface MasklineClientOptions {
  /** The API's base URL, e.g. https://abc123.execute-api.eu-west-1.amazonaws.com or http://localhost:3000 */
  endpoint: string;
  auth: Auth;
  /** Retries of 429, 503 and network failures (creates keep their Idempotency-Key, so they stay safe). */
  maxRetries?: number;
  fetch?: typeof fetch;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | undefined;
}

interface RequestOptions {
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  idempotencyKey?: string;
  retry?: boolean;
  /** Error statuses whose JSON body is the answer. */
  answers?: number[];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Pages through a list: yields every item, asking for the next page only when the last is consumed. */
export async function* paginate<T>(
  fetchPage: (cursor: string | undefined) => Promise<Page<T>>,
): AsyncGenerator<T, void, undefined> {
  let cursor: string | undefined;
  do {
    const page = await fetchPage(cursor);
    yield* page.items;
    cursor = page.nextCursor;
  } while (cursor);
}

/**
 * The Maskline API over fetch: no Node-only imports, so it runs in Node >= 20, Deno, Supabase edge
 * functions and browsers. Errors are typed (`PoolExhaustedError`, `SessionNotOpenError` …); creates carry an
 * `Idempotency-Key` (generated unless given) so retries never open a second session or send twice.
 */
export class MasklineClient {
  private readonly endpoint: string;
  private readonly maxRetries: number;
  private readonly fetchImpl: typeof fetch;

  constructor(private readonly options: MasklineClientOptions) {
    this.endpoint = options.endpoint.replace(/\/+$/, "");
    this.maxRetries = options.maxRetries ?? 2;
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
  }

  readonly sessions = {
    open: (input: OpenSessionInput, options: { idempotencyKey?: string } = {}) =>
      this.request<Session>("POST", "/sessions", {
        body: input,
        idempotencyKey: options.idempotencyKey ?? crypto.randomUUID(),
      }),
    get: (sessionId: string) => this.request<Session>("GET", `/sessions/${encodeURIComponent(sessionId)}`),
    update: (sessionId: string, input: UpdateSessionInput) =>
      this.request<Session>("PATCH", `/sessions/${encodeURIComponent(sessionId)}`, {
        body: input,
        retry: false,
      }),
    close: (sessionId: string) =>
      this.request<Session>("DELETE", `/sessions/${encodeURIComponent(sessionId)}`),
    list: async (filter: SessionFilter, page: PageOptions = {}): Promise<Page<Session>> => {
      const res = await this.request<{ sessions: Session[]; nextCursor?: string }>("GET", "/sessions", {
        query: { ...filter, ...page },
      });
      return { items: res.sessions, nextCursor: res.nextCursor };
    },
    /** Every session of the filter, newest first, a page at a time. */
    listAll: (filter: SessionFilter, options: { limit?: number } = {}) =>
      paginate((cursor) => this.sessions.list(filter, { ...options, ...(cursor ? { cursor } : {}) })),
    events: async (
      sessionId: string,
      page: PageOptions & { type?: string } = {},
    ): Promise<Page<SessionEvent>> => {
      const res = await this.request<{ events: SessionEvent[]; nextCursor?: string }>(
        "GET",
        `/sessions/${encodeURIComponent(sessionId)}/events`,
        { query: { ...page } },
      );
      return { items: res.events, nextCursor: res.nextCursor };
    },
    allEvents: (sessionId: string, options: { type?: string; limit?: number } = {}) =>
      paginate((cursor) => this.sessions.events(sessionId, { ...options, ...(cursor ? { cursor } : {}) })),
    messages: async (sessionId: string, page: PageOptions = {}): Promise<Page<MessageEntry>> => {
      const res = await this.request<{ messages: MessageEntry[]; nextCursor?: string }>(
        "GET",
        `/sessions/${encodeURIComponent(sessionId)}/messages`,
        { query: { ...page } },
      );
      return { items: res.messages, nextCursor: res.nextCursor };
    },
    allMessages: (sessionId: string, options: { limit?: number } = {}) =>
      paginate((cursor) => this.sessions.messages(sessionId, { ...options, ...(cursor ? { cursor } : {}) })),
    /** A platform message to a participant (phone number or participant id), from their own proxy number. */
    sendMessage: (
      sessionId: string,
      message: { to: string; body: string },
      options: { idempotencyKey?: string } = {},
    ) =>
      this.request<QueuedMessage>("POST", `/sessions/${encodeURIComponent(sessionId)}/messages`, {
        body: message,
        idempotencyKey: options.idempotencyKey ?? crypto.randomUUID(),
      }),
  };

  readonly numbers = {
    /** Idempotent: a number already in the pool answers as it is. */
    add: (phoneNumber: string) => this.request<PoolNumber>("POST", "/numbers", { body: { phoneNumber } }),
    list: async (page: PageOptions = {}): Promise<Page<PoolNumber>> => {
      const res = await this.request<{ numbers: PoolNumber[]; nextCursor?: string }>("GET", "/numbers", {
        query: { ...page },
      });
      return { items: res.numbers, nextCursor: res.nextCursor };
    },
    listAll: (options: { limit?: number } = {}) =>
      paginate((cursor) => this.numbers.list({ ...options, ...(cursor ? { cursor } : {}) })),
    retire: (phoneNumber: string) =>
      this.request<RetiredNumber>("DELETE", `/numbers/${encodeURIComponent(phoneNumber)}`),
  };

  /** Degraded (503) is an answer here, not an error. */
  health(): Promise<Health> {
    return this.request<Health>("GET", "/health", { retry: false, answers: [503] });
  }

  openapi(): Promise<Record<string, unknown>> {
    return this.request("GET", "/openapi.json");
  }

  private async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const url = new URL(`${this.endpoint}${path}`);
    for (const [key, value] of Object.entries(options.query ?? {}))
      if (value !== undefined) url.searchParams.set(key, String(value));
    const headers: Record<string, string> = { accept: "application/json" };
    if (options.body !== undefined) headers["content-type"] = "application/json";
    if (options.idempotencyKey) headers["idempotency-key"] = options.idempotencyKey;
    const body = options.body === undefined ? undefined : JSON.stringify(options.body);
    const retries = options.retry === false ? 0 : this.maxRetries;
    for (let attempt = 0; ; attempt++) {
      let response: Response;
      try {
        response = await this.send(new Request(url, { method, headers, body }));
      } catch (error) {
        if (attempt >= retries) throw error;
        await sleep(200 * 2 ** attempt);
        continue;
      }
      if (response.ok || options.answers?.includes(response.status)) return (await response.json()) as T;
      if ((response.status === 503 || response.status === 429) && attempt < retries) {
        const after = Number(response.headers.get("retry-after"));
        await response.body?.cancel();
        await sleep(Number.isFinite(after) && after > 0 ? Math.min(after, 5) * 1000 : 200 * 2 ** attempt);
        continue;
      }
      throw errorOf(await problemOf(response), response.status);
    }
  }

  private async send(request: Request): Promise<Response> {
    const auth = this.options.auth;
    if (auth.type === "bearer") {
      request.headers.set("authorization", `Bearer ${auth.token}`);
      return this.fetchImpl(request);
    }
    if (auth.type === "none") return this.fetchImpl(request);
    const credentials = typeof auth.credentials === "function" ? await auth.credentials() : auth.credentials;
    const region = auth.region ?? /\.execute-api\.([a-z0-9-]+)\./.exec(new URL(request.url).host)?.[1];
    const signer = new AwsClient({
      accessKeyId: credentials.accessKeyId,
      secretAccessKey: credentials.secretAccessKey,
      ...(credentials.sessionToken ? { sessionToken: credentials.sessionToken } : {}),
      service: "execute-api",
      ...(region ? { region } : {}),
      retries: 0,
    });
    return this.fetchImpl(await signer.sign(request));
  }
}

async function problemOf(response: Response): Promise<Problem> {
  const text = await response.text();
  try {
    const parsed = JSON.parse(text) as Problem;
    if (parsed && typeof parsed.type === "string") return parsed;
  } catch {
    // Not JSON: described below.
  }
  return {
    type: "about:blank",
    title: response.statusText || `HTTP ${response.status}`,
    status: response.status,
  };
}
