import { type CountryCode, findPhoneNumbersInText } from "libphonenumber-js";

/**
 * The contact-info policy: phone numbers and e-mail addresses in a forwarded text, and their usual
 * disguises, are redacted or the text is blocked. Events say which kinds were found, never the contact.
 */
export type ContactKind = "phone" | "email";
export type ContactPolicy = "allow" | "redact" | "block";

export const REDACTED = "[removed]";

interface Span {
  kind: ContactKind;
  start: number;
  end: number;
}

const DIGIT_WORDS = "zero|oh|one|two|three|four|five|six|seven|eight|nine";
const AT = String.raw`(?:@|\s*[([{<]\s*at\s*[)\]}>]\s*|\s+at\s+)`;
const DOT = String.raw`(?:\.|\s*[([{<]\s*dot\s*[)\]}>]\s*|\s+dot\s+)`;
const LABEL = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?";
/** name@host.tld, and "name at host dot com", "name [at] host [dot] com", "name(at)host.com". */
const EMAIL = new RegExp(
  String.raw`[a-z0-9._%+-]+${AT}${LABEL}(?:${DOT}${LABEL})*${DOT}(?:com|net|org|io|co|uk|de|fr|es|it|nl|edu|gov|me|info|biz|us|ca|au|[a-z]{2})\b`,
  "gi",
);
/** Seven or more digits however separated (spaces, dots, dashes, slashes, brackets): "4 1 5-555 01 00". */
const SPACED_DIGITS = /(?:\+\s*)?\d(?:[\s().\-/]{0,3}\d){6,}/g;
/** Dates are not phone numbers: 2026-05-01, 05/01/2026, 1.5.2026. */
const DATE = /^(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})$/;
/** Seven or more digits spelled out: "four one five five five five zero one zero zero". */
const SPELLED_DIGITS = new RegExp(String.raw`\b(?:${DIGIT_WORDS})(?:[\s,.-]+(?:${DIGIT_WORDS})){6,}\b`, "gi");

/**
 * The text in Unicode compatibility form (NFKC), one character at a time: a full-width keyboard's "＠" and
 * "４１５" are "@" and "415". `end[i]` is where, in the original, the character that gave unit `i` ends.
 */
function folded(original: string): { text: string; start: number[]; end: number[] } {
  let text = "";
  const start: number[] = [];
  const end: number[] = [];
  let at = 0;
  for (const ch of original) {
    const form = ch.normalize("NFKC");
    for (let k = 0; k < form.length; k++) {
      start.push(at);
      end.push(at + ch.length);
    }
    text += form;
    at += ch.length;
  }
  return { text, start, end };
}

/** Where contact information stands in `text`; `country` is the sender's, for numbers written nationally. */
export function findContacts(text: string, country: string | undefined): Span[] {
  // Plain ASCII (most texts) is its own compatibility form.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the whole ASCII range.
  if (/^[\u0000-\u007F]*$/.test(text)) return findIn(text, country);
  const form = folded(text);
  return findIn(form.text, country).map((span) => ({
    kind: span.kind,
    start: form.start[span.start] as number,
    end: form.end[span.end - 1] as number,
  }));
}

function findIn(text: string, country: string | undefined): Span[] {
  const spans: Span[] = [];
  for (const m of text.matchAll(EMAIL))
    spans.push({ kind: "email", start: m.index, end: m.index + m[0].length });
  for (const found of findPhoneNumbersInText(text, { defaultCountry: country as CountryCode | undefined }))
    spans.push({ kind: "phone", start: found.startsAt, end: found.endsAt });
  for (const pattern of [SPACED_DIGITS, SPELLED_DIGITS])
    for (const m of text.matchAll(pattern))
      if (!DATE.test(m[0].trim())) spans.push({ kind: "phone", start: m.index, end: m.index + m[0].length });
  return merge(spans);
}

/** Overlapping finds become one span (an e-mail wins over digits inside it). */
function merge(spans: Span[]): Span[] {
  const sorted = spans.sort((a, b) => a.start - b.start || b.end - a.end);
  const out: Span[] = [];
  for (const span of sorted) {
    const last = out[out.length - 1];
    if (last && span.start < last.end) {
      last.end = Math.max(last.end, span.end);
      if (span.kind === "email") last.kind = "email";
    } else out.push({ ...span });
  }
  return out;
}

/** The kinds found, each once, in a stable order. */
export const contactKinds = (spans: readonly Span[]): ContactKind[] =>
  (["phone", "email"] as const).filter((k) => spans.some((s) => s.kind === k));

/** Replaces each contact with "[removed]"; the rest of the text is unchanged. */
export function redactContacts(text: string, spans: readonly Span[]): string {
  let out = "";
  let at = 0;
  for (const span of spans) {
    out += text.slice(at, span.start) + REDACTED;
    at = span.end;
  }
  return out + text.slice(at);
}

/** The policy in force for a text: the session's own, else the global default. */
export function contactPolicy(
  session: ContactPolicy | undefined,
  global: "off" | "redact-contacts" | "block-contacts",
): ContactPolicy {
  if (session) return session;
  return global === "redact-contacts" ? "redact" : global === "block-contacts" ? "block" : "allow";
}
