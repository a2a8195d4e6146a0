import { isValidPhoneNumber, parsePhoneNumberFromString } from "libphonenumber-js";
import { z } from "zod";

/** A validated E.164 phone number, e.g. "+14155550100". */
export type E164 = string & { readonly __brand: "E164" };

/**
 * What a stored phone number looks like: E.164, "+" and at most 15 digits, no leading zero. The event
 * schemas read numbers back with this same pattern, so anything `toE164` accepts can always be read.
 */
export const E164_PATTERN = /^\+[1-9]\d{3,14}$/;

/**
 * Pseudonyms and erasure. A pseudonym stands for a phone number where the number itself must not be kept:
 * a stranger (someone texting or calling a pool number with no session) is stored only as one, and erasure
 * rewrites a person's number to theirs everywhere, events included. It is `anon:` and the base64url keyed
 * hash (HMAC-SHA-256, key in the secret store) of the E.164 number: the same person always gets the same
 * pseudonym, so an opt-out survives erasure, but without the key it cannot be turned back into the number,
 * and it can never validate as E.164, so nothing can be routed or sent to it.
 */
export const PSEUDONYM_PREFIX = "anon:";
export const PSEUDONYM_PATTERN = /^anon:[A-Za-z0-9_-]{43}$/;

export const isPseudonym = (value: unknown): boolean =>
  typeof value === "string" && PSEUDONYM_PATTERN.test(value);

/**
 * Parses a number that must be in international form ("+" and country code); undefined when it is not.
 * "Possible" (right length for its country) rather than "valid" on purpose: fictional ranges such as
 * +1 555 01xx are what test numbers and sandboxes use, and Twilio itself is the final judge of a real one.
 * libphonenumber-js calls some 16-digit numbers possible (+49 …): E.164's 15-digit limit refuses them.
 */
export function toE164(raw: string): E164 | undefined {
  const trimmed = raw.trim();
  if (!/^\+[\d\s().-]+$/.test(trimmed)) return undefined;
  const parsed = parsePhoneNumberFromString(trimmed);
  if (!parsed?.isPossible() || !E164_PATTERN.test(parsed.number)) return undefined;
  return parsed.number as E164;
}

/**
 * A number from a URL path, where its "+" may be left out (`/participants/14155550100`). With the "+", as
 * `toE164`. Without it the digits must be the whole international number: digits only (separators are a
 * national form, `617-555-1987`) and valid in its country, not merely possible, so a national number is
 * not read as another country's (`6175551987` is not +61 7555 1987): an erasure must not answer for someone
 * else. The "+" takes the fictional ranges `toE164` accepts.
 */
export function toE164FromPath(raw: string): E164 | undefined {
  if (raw.trim().startsWith("+")) return toE164(raw);
  if (!/^\d+$/.test(raw)) return undefined;
  const number = toE164(`+${raw}`);
  return number && isValidPhoneNumber(number) ? number : undefined;
}

/** The country calling code of a number ("1", "44" …), used to prefer local proxies. */
export function callingCode(number: E164): string {
  return parsePhoneNumberFromString(number)?.countryCallingCode ?? "";
}

/** The ISO country of a number ("US", "GB" …), where its calling code and prefix tell it. */
export function countryOf(number: E164): string | undefined {
  return parsePhoneNumberFromString(number)?.country;
}

/** Masks a number for logs: keeps the country code and the last two digits. */
export function maskNumber(number: string): string {
  if (number.length <= 5) return "***";
  return `${number.slice(0, 3)}${"*".repeat(number.length - 5)}${number.slice(-2)}`;
}

// Pure: a bundle that never uses this schema drops it, and with it libphonenumber-js (forward, publisher).
export const e164Schema = /* @__PURE__ */ z.string().transform((value, ctx) => {
  const number = toE164(value);
  if (!number) {
    ctx.addIssue({
      code: z.ZodIssueCode.custom,
      message: "must be a valid phone number in E.164 form (+14155550100)",
    });
    return z.NEVER;
  }
  return number;
});
