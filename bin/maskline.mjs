#!/usr/bin/env node
// `npx maskline …`: the operator CLI (cli/main.ts), run through tsx from a checkout of this repository.
import { register } from "tsx/esm/api";

register();
const { runCli } = await import("../cli/main.ts");
process.exitCode = await runCli(process.argv.slice(2), {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  env: process.env,
});
