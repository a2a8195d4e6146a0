import { parseArgs } from "node:util";
import { ConfigError } from "../shared/config.ts";
import { MIN_API_TOKEN_LENGTH, startEmbeddedStack } from "./stack.ts";

/** `npm start`: the whole system on this machine. Ctrl-C stops every part of it. */
const USAGE = `Usage: npm start [-- options]

Runs Maskline on this machine: DynamoDB Local, an SQS server, the pollers and scheduler, a Twilio sandbox
and its web page. Ctrl-C stops everything.

Options:
  --data-dir <dir>  keep the data in <dir> across restarts (MASKLINE_DATA_DIR); default: in memory
  --port <port>     the HTTP port (PORT, default 3000)
  -h, --help        this help

Environment variables (PORT, MASKLINE_API_TOKEN, TWILIO_*, …) are listed in the README.
`;

const parsed = (() => {
  try {
    return parseArgs({
      options: {
        "data-dir": { type: "string" },
        port: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: false,
    });
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
})();
const { values } = parsed;
if (values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
// Lambda runs Node 22; the SDK's notice about local Node 20 is noise in the console.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
if (values["data-dir"]) process.env.MASKLINE_DATA_DIR = values["data-dir"];
if (values.port) process.env.PORT = values.port;

const log = (line: string) => process.stdout.write(`${line}\n`);
const hostNote = (host: string) =>
  host === "0.0.0.0" || host === "::"
    ? "every interface: reachable from other machines"
    : host === "localhost" || host === "::1" || host.startsWith("127.")
      ? "this machine only"
      : "that address only";

// A token the user chose is a secret kept elsewhere: named, never printed (a generated one is printed).
const tokenGiven = Boolean(process.env.MASKLINE_API_TOKEN);

try {
  const stack = await startEmbeddedStack(process.env, (line) => process.stderr.write(`[maskline] ${line}\n`));
  const twilioLine = {
    sandbox: "Twilio sandbox (local stand-in; no account needed)",
    custom: `Twilio API at ${process.env.TWILIO_API_BASE_URL}`,
    real: "real Twilio (api.twilio.com)",
  }[stack.twilioMode];
  log(
    [
      "",
      "  Maskline is running",
      `  API and webhooks  ${stack.url}   (webhooks signed for ${process.env.PUBLIC_BASE_URL})`,
      `  Listening on      ${stack.host}   (${hostNote(stack.host)}; set HOST to change it)`,
      stack.twilioMode === "sandbox"
        ? `  Sandbox page      ${stack.url}/`
        : "  Sandbox page      off (another Twilio is configured: only the API and webhooks answer)",
      `  Twilio            ${twilioLine}`,
      `  API token         ${tokenGiven ? "from MASKLINE_API_TOKEN (not shown)" : stack.apiToken}`,
      `  Data              ${process.env.MASKLINE_DATA_DIR ? `persisted in ${process.env.MASKLINE_DATA_DIR}` : "in memory"}`,
      "",
      "  Open a session:",
      `    curl -s -X POST ${stack.url}/sessions -H ${tokenGiven ? '"authorization: Bearer $MASKLINE_API_TOKEN"' : `'authorization: Bearer ${stack.apiToken}'`} \\`,
      `      -H 'content-type: application/json' \\`,
      `      -d '{"participants":[{"phoneNumber":"+12025550100"},{"phoneNumber":"+12025550101"}]}'`,
      "",
      `  Started in ${stack.startupMs} ms. Ctrl-C to stop.`,
      "",
    ].join("\n"),
  );
  if (stack.apiToken.length < MIN_API_TOKEN_LENGTH)
    log(
      `  warning: MASKLINE_API_TOKEN is shorter than ${MIN_API_TOKEN_LENGTH} characters; accepted with the sandbox only.\n`,
    );
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(`\n  ${signal}: stopping…`);
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    await stack.stop();
    log("  stopped.");
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGHUP", () => void shutdown("SIGHUP"));
  process.on("uncaughtException", (error) => {
    process.stderr.write(`[maskline] fatal: ${error.stack ?? error}\n`);
    void shutdown("fatal error");
  });
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`${error.message}\n`);
    process.exit(2);
  }
  // Everything started has been stopped (startEmbeddedStack cleans up): one message, no stack trace.
  process.stderr.write(`Maskline could not start: ${(error as Error)?.message ?? error}\n`);
  process.exit(1);
}
