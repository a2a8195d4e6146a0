import { parsePhoneNumberFromString } from "libphonenumber-js";
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
 * Why `toE164` refuses a string: it is not an international number we can place (`not-e164`: no "+",
 * too short or long for its country, an extension, a `tel:` URI, non-ASCII digits, an emergency number or a
 * short code, which are all too short), or it is one we will never bridge or text (`premium-rate`: a call
 * to it bills the account per minute, the classic revenue-share fraud, and no person of a booking needs
 * one). Toll-free numbers and numbers of another country than the pool's are people we can reach: accepted.
 */
export type PhoneRefusal = "not-e164" | "premium-rate";

/**
 * The one phone-number rule: parses a number that must be in international form ("+" and country code),
 * or says why not. "Possible" (right length for its country) rather than "valid" on purpose: fictional
 * ranges such as +1 555 01xx are what test numbers and sandboxes use, and Twilio itself is the final judge
 * of a real one. libphonenumber-js calls some 16-digit numbers possible (+49 …): E.164's 15-digit limit
 * refuses them. The number type comes from the metadata libphonenumber-js ships by default, which types
 * premium rate for some countries only (NANP +1 900/976, UK +44 9…, not France's 089…): the smaller bundle
 * over the fuller list.
 */
export function readPhoneNumber(raw: string): { number: E164 } | { refused: PhoneRefusal } {
  const trimmed = raw.trim();
  if (!/^\+[\d\s().-]+$/.test(trimmed)) return { refused: "not-e164" };
  const parsed = parsePhoneNumberFromString(trimmed);
  if (!parsed?.isPossible() || !E164_PATTERN.test(parsed.number)) return { refused: "not-e164" };
  if (parsed.getType() === "PREMIUM_RATE") return { refused: "premium-rate" };
  return { number: parsed.number as E164 };
}

/** `readPhoneNumber` where only the number matters: undefined when it is refused. */
export function toE164(raw: string): E164 | undefined {
  const read = readPhoneNumber(raw);
  return "number" in read ? read.number : undefined;
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
  const read = readPhoneNumber(value);
  if ("refused" in read) {
    ctx.addIssue({
      code: z.ZodIssueCode.custom,
      message:
        read.refused === "premium-rate"
          ? "premium-rate numbers are refused"
          : "must be a valid phone number in E.164 form (+14155550100)",
    });
    return z.NEVER;
  }
  return read.number;
});
