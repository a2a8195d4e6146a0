import { join } from "node:path";
import { build } from "esbuild";
import { ESBUILD_OPTIONS, repoRoot } from "/work/wt2/infra/constructs/maskline-function.ts";
import { functions } from "/work/wt2/shared/resources.ts";
const [name, target] = process.argv.slice(2) as [keyof typeof functions, string];
const r = await build({ ...ESBUILD_OPTIONS, entryPoints: [join(repoRoot, functions[name].entry)], write: false, metafile: true, outfile: "/tmp/cs2/why/index.mjs", logLevel: "error" });
const inputs = r.metafile.inputs; const out = Object.values(r.metafile.outputs).find(o => o.entryPoint)!;
const importers = (p: string) => Object.entries(inputs).filter(([, i]) => i.imports.some(x => x.path === p)).map(([k, i]) => `${k}${i.imports.find(x => x.path === p)!.kind === "dynamic-import" ? " (dynamic)" : ""}`);
for (const p of Object.keys(inputs).filter(p => !p.includes("node_modules") && (out.inputs[p]?.bytesInOutput ?? 0) > 0 && Object.keys(inputs).length)) {
  const imps = inputs[p].imports.filter(i => i.path.includes(target)).map(i => i.path);
  if (imps.length) console.log(p, "->", imps.join(", "));
}
const byPkg = new Map<string, number>();
for (const [p, i] of Object.entries(out.inputs)) { const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(p); const k = m ? m[1] : p.split("/").slice(0, 2).join("/"); byPkg.set(k, (byPkg.get(k) ?? 0) + i.bytesInOutput); }
console.log([...byPkg].sort((a, b) => b[1] - a[1]).slice(0, 14).map(([k, v]) => `${k} ${(v / 1024).toFixed(0)}K`).join(", "));
console.log("emitted own:", Object.entries(out.inputs).filter(([p, i]) => !p.includes("node_modules") && i.bytesInOutput > 0).map(([p, i]) => `${p.replace(/^.*?(shared|functions)\//, "$1/")} ${(i.bytesInOutput/1024).toFixed(1)}`).join(", "));
