import { parseArgs } from "node:util";
import { defaultProvider } from "@aws-sdk/credential-provider-node";
import { type Auth, MasklineClient, MasklineError } from "../clients/typescript/src/index.ts";

/** The operator CLI (`npx maskline …`), built on the TypeScript client. */

export interface CliIo {
  out: (text: string) => void;
  err: (text: string) => void;
  env: Record<string, string | undefined>;
  /** Between polls of `events tail --follow`; tests stop the loop through it. */
  sleep?: (ms: number) => Promise<boolean>;
}

const GLOBAL = `Global options:
  --endpoint <url>   the API (or MASKLINE_ENDPOINT); an execute-api URL is signed with SigV4
                     from the standard AWS credential chain (env, profile, SSO, role…)
  --token <token>    bearer token of the local stack (or MASKLINE_API_TOKEN); no SigV4 then
  --region <region>  SigV4 region (default: from the endpoint's host name, else AWS_REGION)
  -h, --help         this help`;

const HELP: Record<string, string> = {
  "": `Usage: maskline <command> [options]

Commands:
  numbers add <e164>...        add numbers to the pool (one command for a whole pool)
  numbers list [--all]         the pool, a page at a time
  numbers retire <e164>        retire a number (drains while sessions hold it)
  sessions open ...            open a session between two participants
  sessions get <id>            a session, its status as of now
  sessions close <id>          close a session
  sessions list ...            sessions of a participant or a unique name
  events tail <sessionId>      a session's events, oldest first; --follow for new ones

Run "maskline <command> --help" for a command's options.

${GLOBAL}`,
  numbers: `Usage: maskline numbers add <e164>... | list [--limit n] [--cursor c] [--all] | retire <e164>

${GLOBAL}`,
  "numbers add": `Usage: maskline numbers add <e164>...

Adds each number to the pool (idempotent: a number already there is reported as it is).

${GLOBAL}`,
  "numbers list": `Usage: maskline numbers list [--limit n] [--cursor c] [--all]

One page (with its nextCursor), or every page with --all.

${GLOBAL}`,
  "numbers retire": `Usage: maskline numbers retire <e164>

${GLOBAL}`,
  sessions: `Usage: maskline sessions open|get|close|list ...

${GLOBAL}`,
  "sessions open": `Usage: maskline sessions open --a <e164>[=id] --b <e164>[=id] [options]

  --a, --b <e164>[=id]        the two participants, optionally with their product ids
  --ttl <seconds>             time to live (default 7 days)
  --ttl-mode absolute|sliding
  --mode sms|voice|sms+voice
  --unique-name <name>        unique among open sessions
  --fail-on-conflict          refuse when the two already share an open session
  --geo-match area-code|country
  --idempotency-key <key>     default: a random one (retries stay safe)

${GLOBAL}`,
  "sessions get": `Usage: maskline sessions get <sessionId>

${GLOBAL}`,
  "sessions close": `Usage: maskline sessions close <sessionId>

${GLOBAL}`,
  "sessions list": `Usage: maskline sessions list (--participant <e164 or id> | --unique-name <name>)
                             [--status open|closed|expired] [--limit n] [--cursor c] [--all]

${GLOBAL}`,
  events: `Usage: maskline events tail <sessionId> [--type <EventType>] [--follow] [--interval <seconds>]

${GLOBAL}`,
  "events tail": `Usage: maskline events tail <sessionId> [--type <EventType>] [--follow] [--interval <seconds>]

Prints the session's events, one JSON line each, oldest first; with --follow keeps polling for new ones
(every --interval seconds, default 2) until interrupted.

${GLOBAL}`,
};

const options = {
  endpoint: { type: "string" },
  token: { type: "string" },
  region: { type: "string" },
  help: { type: "boolean", short: "h" },
  limit: { type: "string" },
  cursor: { type: "string" },
  all: { type: "boolean" },
  a: { type: "string" },
  b: { type: "string" },
  ttl: { type: "string" },
  "ttl-mode": { type: "string" },
  mode: { type: "string" },
  "unique-name": { type: "string" },
  "fail-on-conflict": { type: "boolean" },
  "geo-match": { type: "string" },
  "idempotency-key": { type: "string" },
  participant: { type: "string" },
  status: { type: "string" },
  type: { type: "string" },
  follow: { type: "boolean", short: "f" },
  interval: { type: "string" },
} as const;

class UsageError extends Error {}

/** Runs one command; resolves to the process exit code (0 ok, 1 API error, 2 usage). */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof options; allowPositionals: true }>>;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (error) {
    io.err(`${(error as Error).message}\n\n${HELP[""]}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [group = "", action = "", ...rest] = positionals;
  const topic = HELP[`${group} ${action}`] ? `${group} ${action}` : HELP[group] ? group : "";
  if (values.help || !group) {
    (values.help ? io.out : io.err)(`${HELP[topic]}\n`);
    return values.help ? 0 : 2;
  }
  const print = (value: unknown) => io.out(`${JSON.stringify(value, null, 2)}\n`);
  try {
    const client = clientFrom(values, io.env);
    const page = () => ({
      ...(values.limit ? { limit: positiveInt(values.limit, "--limit") } : {}),
      ...(values.cursor ? { cursor: values.cursor } : {}),
    });
    switch (`${group} ${action}`) {
      case "numbers add": {
        if (!rest.length) throw new UsageError("numbers add needs at least one number");
        for (const phoneNumber of rest) print(await client.numbers.add(phoneNumber));
        return 0;
      }
      case "numbers list":
        if (values.all) print({ numbers: await collect(client.numbers.listAll(page())) });
        else {
          const result = await client.numbers.list(page());
          print({ numbers: result.items, ...(result.nextCursor ? { nextCursor: result.nextCursor } : {}) });
        }
        return 0;
      case "numbers retire":
        print(await client.numbers.retire(one(rest, "numbers retire <e164>")));
        return 0;
      case "sessions open": {
        const a = participant(values.a, "--a");
        const b = participant(values.b, "--b");
        const session = await client.sessions.open(
          {
            participants: [a, b],
            ...(values.ttl ? { ttlSeconds: positiveInt(values.ttl, "--ttl") } : {}),
            ...(values["ttl-mode"] ? { ttlMode: values["ttl-mode"] as "absolute" | "sliding" } : {}),
            ...(values.mode ? { mode: values.mode as "sms" | "voice" | "sms+voice" } : {}),
            ...(values["unique-name"] ? { uniqueName: values["unique-name"] } : {}),
            ...(values["fail-on-conflict"] ? { failOnParticipantConflict: true } : {}),
            ...(values["geo-match"] ? { geoMatch: values["geo-match"] as "area-code" | "country" } : {}),
          },
          values["idempotency-key"] ? { idempotencyKey: values["idempotency-key"] } : {},
        );
        print(session);
        return 0;
      }
      case "sessions get":
        print(await client.sessions.get(one(rest, "sessions get <sessionId>")));
        return 0;
      case "sessions close":
        print(await client.sessions.close(one(rest, "sessions close <sessionId>")));
        return 0;
      case "sessions list": {
        const filter = {
          ...(values.participant ? { participant: values.participant } : {}),
          ...(values["unique-name"] ? { uniqueName: values["unique-name"] } : {}),
          ...(values.status ? { status: values.status as "open" | "closed" | "expired" } : {}),
        };
        if (!filter.participant && !filter.uniqueName)
          throw new UsageError("sessions list needs --participant or --unique-name");
        if (values.all) print({ sessions: await collect(client.sessions.listAll(filter, page())) });
        else {
          const result = await client.sessions.list(filter, page());
          print({ sessions: result.items, ...(result.nextCursor ? { nextCursor: result.nextCursor } : {}) });
        }
        return 0;
      }
      case "events tail":
        await tail(client, one(rest, "events tail <sessionId>"), values, io);
        return 0;
      default:
        throw new UsageError(`unknown command: ${[group, action].filter(Boolean).join(" ")}`);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`${error.message}\n\n${HELP[topic]}\n`);
      return 2;
    }
    if (error instanceof MasklineError) {
      io.err(
        `${error.name} (${error.status} ${error.type}): ${error.message}\n${JSON.stringify(error.problem)}\n`,
      );
      return 1;
    }
    io.err(`${(error as Error).message}\n`);
    return 1;
  }
}

type Values = Partial<Record<keyof typeof options, string | boolean>>;

function clientFrom(values: Values, env: CliIo["env"]): MasklineClient {
  const endpoint = String(values.endpoint ?? env.MASKLINE_ENDPOINT ?? "");
  if (!endpoint) throw new UsageError("give --endpoint (or MASKLINE_ENDPOINT)");
  if (!/^https?:\/\//.test(endpoint)) throw new UsageError("--endpoint must be an http(s) URL");
  const token = values.token ?? env.MASKLINE_API_TOKEN;
  const region = values.region ?? env.AWS_REGION;
  const auth: Auth = token
    ? { type: "bearer", token: String(token) }
    : {
        type: "sigv4",
        // The standard chain: environment, shared config and credentials files, SSO, web identity, IMDS/ECS.
        credentials: defaultProvider(),
        ...(region && !/\.execute-api\./.test(endpoint) ? { region: String(region) } : {}),
        ...(values.region ? { region: String(values.region) } : {}),
      };
  return new MasklineClient({ endpoint, auth });
}

async function tail(client: MasklineClient, sessionId: string, values: Values, io: CliIo) {
  const seen = new Set<string>();
  const interval = values.interval ? positiveInt(String(values.interval), "--interval") * 1000 : 2000;
  const sleep = io.sleep ?? ((ms: number) => new Promise<boolean>((r) => setTimeout(() => r(true), ms)));
  do {
    for await (const event of client.sessions.allEvents(
      sessionId,
      values.type ? { type: String(values.type) } : {},
    ))
      if (!seen.has(event.id)) {
        seen.add(event.id);
        io.out(`${JSON.stringify(event)}\n`);
      }
  } while (values.follow && (await sleep(interval)));
}

function one(rest: string[], usage: string): string {
  if (rest.length !== 1 || !rest[0]) throw new UsageError(`usage: maskline ${usage}`);
  return rest[0];
}

function positiveInt(value: string, name: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${name} must be a positive integer`);
  return n;
}

function participant(value: string | boolean | undefined, name: string) {
  if (typeof value !== "string" || !value) throw new UsageError(`sessions open needs ${name} <e164>[=id]`);
  const [phoneNumber = "", id] = value.split("=", 2);
  return { phoneNumber, ...(id ? { id } : {}) };
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}
