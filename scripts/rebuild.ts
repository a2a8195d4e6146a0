import { existsSync, statSync } from "node:fs";
import { parseArgs } from "node:util";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import {
  dataDirLockHolder,
  LOCAL_CREDENTIALS,
  LOCAL_REGION,
  type LocalService,
  startDynamoLocal,
} from "../local/aws-local.ts";
import { ConfigError, coreConfigSchema, parseConfig, sessionRetentionSchema } from "../shared/config.ts";
import { describeDifference, PROJECTION_KINDS } from "../shared/rebuild.ts";
import {
  type RebuildTableResult,
  rebuildTable,
  rebuiltTableName,
  TableNotFoundError,
} from "./rebuild-lib.ts";

/** `npm run rebuild`: rebuilds the table's projections from its events and compares them with the live items. */
const USAGE = `Usage:
  npm run rebuild -- --data-dir DIR [--table NAME] [--check | --dry-run] [--target NAME]
  npm run rebuild -- --region REGION [--endpoint URL] --table NAME [--check | --dry-run] [--target NAME]

Reads every event of the table, folds them in order through the projection rules, compares the result
with the live session, pair, number, message, call, consent and hub items, and (unless --check or
--dry-run) writes the rebuilt items into a NEW table. The live table is only read.

  --data-dir DIR   the DynamoDB Local data directory of \`npm start -- --data-dir DIR\` (stop the stack
                   first); DynamoDB Local is started on it for the run
  --region REGION  a deployed table: the AWS SDK's default credential chain, no DynamoDB Local
  --endpoint URL   a DynamoDB endpoint (with or without --region)
  --table NAME     the live table (default: TABLE_NAME, else "maskline")
  --target NAME    the new table to write (default: <table>-rebuilt-<UTC timestamp>)
  --dry-run        read and compare only; exit 0
  --check          read and compare only; exit 0 when there is no difference, 1 otherwise
  --help           this text

MESSAGE_RETENTION_HOURS (default 72) and SESSION_RETENTION_DAYS (default 90) must match the live writers:
they set the rebuilt messages' and closed sessions' ttl. Events past their ttl count as gone.
Exit codes: 0 done, 1 differences (--check), 2 usage or configuration error, 3 failure.`;

const out = (line = "") => process.stdout.write(`${line}\n`);
const fail = (message: string, code: number): number => {
  process.stderr.write(`rebuild: ${message}\n`);
  return code;
};

function parse() {
  try {
    return parseArgs({
      options: {
        "data-dir": { type: "string" },
        table: { type: "string" },
        target: { type: "string" },
        endpoint: { type: "string" },
        region: { type: "string" },
        check: { type: "boolean", default: false },
        "dry-run": { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
      allowPositionals: false,
    }).values;
  } catch (error) {
    fail(`${(error as Error).message}\n\n${USAGE}`, 2);
    return undefined;
  }
}

function report(result: RebuildTableResult, where: string) {
  out(`Rebuild of table "${result.tableName}" (${where})`);
  out(`  items read ${result.scanned}, events ${result.events}`);
  out(`  ${"kind".padEnd(11)} ${"live".padStart(8)} ${"rebuilt".padStart(8)}`);
  for (const kind of PROJECTION_KINDS) {
    const c = result.counts[kind];
    out(`  ${kind.padEnd(11)} ${String(c.live).padStart(8)} ${String(c.rebuilt).padStart(8)}`);
  }
  if (result.target)
    out(`  rebuilt items written to the new table "${result.target}" (${result.rebuilt.length})`);
  for (const d of result.differences) out(`  - ${describeDifference(d)}`);
  const n = result.differences.length;
  out(`${n} difference${n === 1 ? "" : "s"}`);
}

async function main(): Promise<number> {
  const args = parse();
  if (!args) return 2;
  if (args.help) {
    out(USAGE);
    return 0;
  }
  const schema = coreConfigSchema.merge(sessionRetentionSchema);
  let config: ReturnType<typeof parseConfig<typeof schema>>;
  try {
    config = parseConfig(schema);
  } catch (error) {
    if (error instanceof ConfigError) return fail(error.message, 2);
    throw error;
  }
  const remote = Boolean(args.endpoint || args.region);
  const dataDir = args["data-dir"];
  if (remote && dataDir) return fail("--data-dir is for DynamoDB Local; not with --endpoint or --region", 2);
  if (!remote && !dataDir) return fail(`give --data-dir, or --region/--endpoint\n\n${USAGE}`, 2);
  if (dataDir && !(existsSync(dataDir) && statSync(dataDir).isDirectory()))
    return fail(`no data directory ${dataDir}`, 2);
  const holder = dataDirLockHolder(dataDir ?? "");
  if (dataDir && holder !== undefined)
    return fail(`${dataDir} is in use by npm start (pid ${holder}): stop it first`, 2);
  const tableName = args.table ?? config.TABLE_NAME;
  const readOnly = args.check || args["dry-run"];
  const now = Date.now();
  const target = readOnly ? undefined : (args.target ?? rebuiltTableName(tableName, now));

  let local: LocalService | undefined;
  let client: DynamoDBClient;
  if (dataDir) {
    local = await startDynamoLocal({ dataDir });
    client = new DynamoDBClient({
      endpoint: local.endpoint,
      region: LOCAL_REGION,
      credentials: LOCAL_CREDENTIALS,
    });
  } else {
    // The default credential chain (environment, profile, SSO, instance role …).
    client = new DynamoDBClient({
      ...(args.endpoint ? { endpoint: args.endpoint } : {}),
      ...(args.region ? { region: args.region } : {}),
    });
  }
  const doc = DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
  const where = dataDir
    ? `DynamoDB Local on ${dataDir}`
    : `${args.endpoint ?? "AWS"}${args.region ? ` ${args.region}` : ""}`;
  try {
    const result = await rebuildTable({
      client,
      doc,
      tableName,
      retentionSeconds: config.MESSAGE_RETENTION_HOURS * 3600,
      sessionRetentionSeconds: config.SESSION_RETENTION_DAYS * 86_400,
      now,
      target,
    });
    report(result, where);
    return args.check && result.differences.length > 0 ? 1 : 0;
  } catch (error) {
    if (error instanceof TableNotFoundError)
      return fail(
        `${error.message} in ${where}${dataDir ? " (was `npm start -- --data-dir` run on it?)" : ""}`,
        2,
      );
    return fail(error instanceof Error ? (error.stack ?? error.message) : String(error), 3);
  } finally {
    client.destroy();
    await local?.stop();
  }
}

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
process.exitCode = await main();
