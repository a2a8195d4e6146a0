import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";
import { ESBUILD_OPTIONS, repoRoot } from "/work/wt2/infra/constructs/maskline-function.ts";
const dir = "/tmp/cs2/out";
const entries: Record<string, string> = JSON.parse(process.argv[2]);
const runs = Number(process.argv[3] ?? 11);
const probe = join(dir, "probe.mjs");
mkdirSync(dir, { recursive: true });
writeFileSync(probe, `import { pathToFileURL } from "node:url";
const cpu = process.cpuUsage(); const t=performance.now();
await import(pathToFileURL(process.argv[2]).href);
const u = process.cpuUsage(cpu); process.stdout.write(JSON.stringify({cpu:(u.user+u.system)/1000, ms: performance.now()-t}));`);
const files: [string, string][] = [];
for (let [name, contents] of Object.entries({ empty: "export const x = 1;", ...entries })) {
  const out = join(dir, name.replace(/\W/g, "_"), "index.mjs");
  const isFile = contents.startsWith("FILE:");
  const stubs: string[] = isFile && contents.includes("|") ? contents.split("|").slice(1) : [];
  if (isFile) contents = contents.split("|")[0];
  const plugins = [{ name: "stub", setup(b: any) {
    b.onResolve({ filter: /.*/ }, (a: any) => stubs.some((s) => a.path.includes(s)) ? { path: a.path, namespace: "stub" } : undefined);
    b.onLoad({ filter: /.*/, namespace: "stub" }, () => ({ contents: "const h={get:(t,k)=>k===Symbol.toPrimitive?(()=>''):k==='then'?undefined:k==='__esModule'?false:p,apply:()=>p,construct:()=>p};const p=new Proxy(function(){},h);module.exports=p;", loader: "js" }));
  } }];
  await build({ ...ESBUILD_OPTIONS, plugins, ...(isFile ? { entryPoints: [contents.slice(5)] } : { stdin: { contents, resolveDir: repoRoot, loader: "ts", sourcefile: "x.ts" } }), outfile: out, logLevel: "error" });
  files.push([name, out]);
}
const ENV = { PATH: process.env.PATH!, AWS_REGION: "us-east-1", AWS_ACCESS_KEY_ID: "A", AWS_SECRET_ACCESS_KEY: "b", TABLE_NAME: "t", FORWARD_QUEUE_URL: "https://sqs.us-east-1.amazonaws.com/123456789012/maskline-forward.fifo", PUBLIC_BASE_URL: "https://maskline.example.com", TWILIO_ACCOUNT_SID: `AC${"0".repeat(32)}`, TWILIO_AUTH_TOKEN: "0123456789abcdef0123456789abcdef", MASKLINE_API_TOKEN: "bench-token-0123456789", EVENT_BUS_NAME: "maskline", PUBLISHER_FAILURES_QUEUE_URL: "https://sqs.us-east-1.amazonaws.com/123456789012/maskline-publisher-failures", POWERTOOLS_SERVICE_NAME: "maskline", POWERTOOLS_METRICS_NAMESPACE: "Maskline", LOG_LEVEL: "INFO", NODE_OPTIONS: "--enable-source-maps" };
const t = new Map<string, number[]>();
for (let r = 0; r < runs; r++) for (const [name, f] of files) {
  const p = spawnSync(process.execPath, [probe, f], { env: ENV, encoding: "utf8" });
  if (p.status) { console.error(name, p.stderr); process.exit(1); }
  t.set(name, [...(t.get(name) ?? []), JSON.parse(p.stdout).cpu]);
}
const med = (a: number[]) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
const base = med(t.get("empty")!);
for (const [name, f] of files) console.log(name.padEnd(28), (statSync(f).size / 1024).toFixed(0).padStart(6), "KiB", med(t.get(name)!).toFixed(1).padStart(7), "ms CPU", (med(t.get(name)!) - base).toFixed(1).padStart(7), "over empty");
