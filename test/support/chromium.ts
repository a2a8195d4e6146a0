import { spawnSync } from "node:child_process";
import { createReadStream, createWriteStream, existsSync, readFileSync } from "node:fs";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { createBrotliDecompress } from "node:zlib";

/**
 * The headless Chromium of the browser tests, with nothing installed by hand.
 *
 * By default it is the one the `@sparticuz/chromium` devDependency carries inside itself (Linux x64 only):
 * a brotli-compressed headless Chromium, the NSS, NSPR and expat libraries it links against, and fonts.
 * The package's own loader unpacks into the shared system temp folder and adds those libraries only on
 * AWS Lambda-like hosts, so this unpacks the same files once per package version into
 * `node_modules/.cache/maskline-chromium/<version>/` and runs the browser with `LD_LIBRARY_PATH` and
 * fontconfig pointed there: besides glibc and libgcc, the browser loads nothing from the system.
 *
 * `CHROMIUM_PATH` (for example Debian's `/usr/bin/chromium`) overrides it, with the environment as is.
 */

export interface ChromiumBinary {
  executablePath: string;
  /** The environment to launch it with (playwright's `env`). */
  env: Record<string, string>;
}

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const PACKAGE = "@sparticuz/chromium";

/** The browser to launch, or why there is none on this machine. */
export async function findChromium(): Promise<ChromiumBinary | { unavailable: string }> {
  const override = process.env.CHROMIUM_PATH;
  if (override) {
    if (!existsSync(override)) throw new Error(`CHROMIUM_PATH=${override} does not exist`);
    return { executablePath: override, env: environment() };
  }
  if (process.platform !== "linux" || process.arch !== "x64") {
    return {
      unavailable:
        `${PACKAGE} ships Chromium for linux/x64 only (this is ${process.platform}/${process.arch}); ` +
        "set CHROMIUM_PATH to a Chromium binary to run the browser test",
    };
  }
  const { binDir, version } = packageFiles();
  const dir = join(repoRoot, "node_modules", ".cache", "maskline-chromium", version);
  if (!existsSync(join(dir, "chromium"))) await unpack(binDir, dir);
  return {
    executablePath: join(dir, "chromium"),
    env: {
      ...environment(),
      LD_LIBRARY_PATH: join(dir, "lib"),
      FONTCONFIG_FILE: join(dir, "fonts.conf"),
      FONTCONFIG_PATH: dir,
    },
  };
}

function environment(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined) env[key] = value;
  return env;
}

/** The package's folder of compressed files and its version, found the way Node resolves the import. */
function packageFiles(): { binDir: string; version: string } {
  let dir = dirname(fileURLToPath(import.meta.resolve(PACKAGE)));
  while (!existsSync(join(dir, "bin", "chromium.br"))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`${PACKAGE} has no bin/chromium.br: run npm install`);
    dir = parent;
  }
  const { version } = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version: string };
  return { binDir: join(dir, "bin"), version };
}

/**
 * Unpacks the browser (`chromium`), its libraries (`lib/`) and fonts (`fonts/`) into `target`, through a
 * temporary sibling folder renamed at the end, so a run that dies half-way leaves nothing that looks ready.
 */
async function unpack(binDir: string, target: string): Promise<void> {
  const staging = `${target}.${process.pid}.partial`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  await pipeline(
    createReadStream(join(binDir, "chromium.br")),
    createBrotliDecompress(),
    createWriteStream(join(staging, "chromium"), { mode: 0o755 }),
  );
  await untarBrotli(join(binDir, "al2023.tar.br"), staging);
  await untarBrotli(join(binDir, "fonts.tar.br"), staging);
  // The package's fonts.conf names Lambda's folders; this one names only the unpacked fonts.
  await writeFile(
    join(staging, "fonts.conf"),
    `<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n` +
      `  <dir>${join(target, "fonts")}</dir>\n  <cachedir>${join(target, "fonts-cache")}</cachedir>\n` +
      `</fontconfig>\n`,
  );
  try {
    await rename(staging, target);
  } catch (error) {
    // Another test process unpacked the same version first: use that one.
    await rm(staging, { recursive: true, force: true });
    if (!existsSync(join(target, "chromium"))) throw error;
  }
}

/** `.tar.br` into `dir`: Node's brotli to a temporary `.tar`, then the system's `tar`. */
async function untarBrotli(archive: string, dir: string): Promise<void> {
  const tarFile = join(dir, `${basename(archive, ".br")}`);
  await pipeline(createReadStream(archive), createBrotliDecompress(), createWriteStream(tarFile));
  const result = spawnSync("tar", ["-x", "--no-same-owner", "-f", tarFile, "-C", dir], { encoding: "utf8" });
  await rm(tarFile);
  if (result.status !== 0) {
    throw new Error(`tar -x of ${archive} failed: ${result.error?.message ?? result.stderr.trim()}`);
  }
}
