import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, writeFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";
import { ESBUILD_OPTIONS, repoRoot } from "/work/wt2/infra/constructs/maskline-function.ts";
import { functions } from "/work/wt2/shared/resources.ts";
const name = process.argv[2] as keyof typeof functions; const runs = Number(process.argv[3] ?? 5);
const dir = `/tmp/cs2/prof-${name}`; rmSync(dir, { recursive: true, force: true }); mkdirSync(dir, { recursive: true });
const out = join(dir, "index.mjs");
await build({ ...ESBUILD_OPTIONS, entryPoints: [join(repoRoot, functions[name].entry)], outfile: out, minify: false, logLevel: "error" });
const lines = readFileSync(out, "utf8").split("\n");
const modAt: string[] = []; let cur = "(banner)";
for (const [i, l] of lines.entries()) { const m = /^\/\/ (\S+\.(?:js|ts|mjs|cjs|json))$/.exec(l); if (m) cur = m[1]; modAt[i] = cur; }
const pkg = (p: string) => { const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(p); return m ? m[1] : p.startsWith("(") ? p : `maskline:${p.split("/").slice(0, 2).join("/")}`; };
const ENV = { PATH: process.env.PATH!, AWS_REGION: "us-east-1", AWS_ACCESS_KEY_ID: "A", AWS_SECRET_ACCESS_KEY: "b", TABLE_NAME: "t", FORWARD_QUEUE_URL: "https://sqs.us-east-1.amazonaws.com/123456789012/maskline-forward.fifo", PUBLIC_BASE_URL: "https://maskline.example.com", TWILIO_ACCOUNT_SID: `AC${"0".repeat(32)}`, TWILIO_AUTH_TOKEN: "0123456789abcdef0123456789abcdef", MASKLINE_API_TOKEN: "bench-token-0123456789", EVENT_BUS_NAME: "maskline", PUBLISHER_FAILURES_QUEUE_URL: "https://sqs.us-east-1.amazonaws.com/123456789012/maskline-publisher-failures", POWERTOOLS_SERVICE_NAME: "maskline", POWERTOOLS_METRICS_NAMESPACE: "Maskline", LOG_LEVEL: "INFO", NODE_OPTIONS: "--enable-source-maps" };
const totals = new Map<string, number>(); let all = 0;
for (let r = 0; r < runs; r++) {
  const pd = join(dir, `p${r}`);
  const p = spawnSync(process.execPath, ["--cpu-prof", "--cpu-prof-interval", "100", "--cpu-prof-dir", pd, "-e", `await import(${JSON.stringify("file://" + out)})`, "--input-type=module"], { env: ENV, encoding: "utf8" });
  if (p.status) { console.error(p.stderr); process.exit(1); }
  const prof = JSON.parse(readFileSync(join(pd, readdirSync(pd)[0]), "utf8"));
  const byId = new Map(prof.nodes.map((n: any) => [n.id, n]));
  const dt = new Map<number, number>(); 
  for (let i = 0; i < prof.samples.length; i++) dt.set(prof.samples[i], (dt.get(prof.samples[i]) ?? 0) + (prof.timeDeltas[i + 1] ?? 0));
  const parent = new Map<number, number>(); for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  for (const [id, t] of dt) {
    let n: any = byId.get(id); let cf = n.callFrame;
    if (process.env.BY_CALLER && cf.url.endsWith("index.mjs") && pkg(modAt[cf.lineNumber] ?? "?") === process.env.BY_CALLER) {
      let m: any = n; while (m && m.callFrame.url.endsWith("index.mjs") && pkg(modAt[m.callFrame.lineNumber] ?? "?") === process.env.BY_CALLER) m = byId.get(parent.get(m.id)!);
      if (m) { n = m; cf = m.callFrame; const k = "via " + (cf.url.endsWith("index.mjs") ? (modAt[cf.lineNumber] ?? "?") : cf.functionName); totals.set(k, (totals.get(k) ?? 0) + t / 1000); }
    }
    let key: string;
    if (cf.url.endsWith("index.mjs")) key = pkg(modAt[cf.lineNumber] ?? "?");
    else if (cf.url === "") key = cf.functionName || "(native)";
    else key = cf.url.startsWith("node:") ? "node internals" : cf.url;
    totals.set(key, (totals.get(key) ?? 0) + t / 1000); all += t / 1000;
  }
}
const rows = [...totals].sort((a, b) => b[1] - a[1]).slice(0, 25);
console.log(name, "total sampled ms/run", (all / runs).toFixed(1));
for (const [k, v] of rows) console.log(k.padEnd(50), (v / runs).toFixed(1));
