import { parseArgs } from "node:util";

/**
 * Command-line options of a bench: each has a full default and a `--quick` default (small sizes so CI can run
 * every bench in under a minute). `--name value` overrides either.
 */
export type OptionSpec = Record<string, { full: number; quick: number; help: string }>;

export function benchOptions<T extends OptionSpec>(
  spec: T,
  argv: string[] = process.argv.slice(2),
): { quick: boolean } & { [K in keyof T]: number } {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
      ...Object.fromEntries(Object.keys(spec).map((k) => [k, { type: "string" as const }])),
    },
    allowPositionals: false,
    strict: true,
  });
  if (values.help) {
    const lines = Object.entries(spec).map(
      ([k, o]) => `  --${k.padEnd(22)} ${o.help} (default ${o.full}; --quick ${o.quick})`,
    );
    process.stdout.write(`options:\n  --quick                  small sizes, < 60 s\n${lines.join("\n")}\n`);
    process.exit(0);
  }
  const quick = values.quick === true;
  const out: Record<string, number | boolean> = { quick };
  for (const [k, o] of Object.entries(spec)) {
    const raw = (values as Record<string, unknown>)[k];
    const value = typeof raw === "string" ? Number(raw) : quick ? o.quick : o.full;
    if (!Number.isFinite(value)) throw new Error(`--${k} must be a number, got ${String(raw)}`);
    out[k] = value;
  }
  return out as { quick: boolean } & { [K in keyof T]: number };
}

export const log = (line = "") => process.stdout.write(`${line}\n`);

export function heading(title: string) {
  log();
  log(title);
  log("=".repeat(title.length));
}

/** The AWS SDK warns about Node 20 once per process; it says nothing about the figures, so keep it out. */
export function quietNodeWarnings() {
  const emit = process.emitWarning.bind(process);
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const text = typeof warning === "string" ? warning : warning.message;
    if (/node >=22|NodeVersionSupportWarning/i.test(text)) return;
    (emit as (...a: unknown[]) => void)(warning, ...rest);
  }) as typeof process.emitWarning;
}
