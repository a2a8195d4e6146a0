import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { LOCAL_CREDENTIALS } from "../../local/aws-local.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** The rebuild CLI as an operator runs it (`npm run rebuild -- …`), in its own process, on DynamoDB Local. */
export async function runRebuildCli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "scripts/rebuild.ts", ...args], {
    cwd: ROOT,
    env: {
      ...process.env,
      ...env,
      AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (d) => {
    output += d;
  });
  child.stderr.on("data", (d) => {
    output += d;
  });
  const [code] = (await once(child, "exit")) as [number | null];
  return { code, output };
}
