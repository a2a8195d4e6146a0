import { join } from "node:path";
import { build } from "esbuild";
import { ESBUILD_OPTIONS, ON_DEMAND_MODULES, repoRoot } from "/work/wt2/infra/constructs/maskline-function.ts";
for (const [spec, src] of Object.entries(ON_DEMAND_MODULES)) {
const r = await build({ ...ESBUILD_OPTIONS, entryPoints: [join(repoRoot, src)], write: false, metafile: true, outfile: "/tmp/cs2/od/x.mjs", logLevel: "error" });
const out = Object.values(r.metafile.outputs).find(o => o.entryPoint)!;
const byPkg = new Map<string, number>();
for (const [p, i] of Object.entries(out.inputs)) { const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(p); const k = m ? m[1] : p.split("/").slice(0, 2).join("/"); byPkg.set(k, (byPkg.get(k) ?? 0) + i.bytesInOutput); }
console.log(spec, [...byPkg].sort((a, b) => b[1] - a[1]).slice(0, 14).map(([k, v]) => `${k} ${(v / 1024).toFixed(0)}K`).join(", "));
}
