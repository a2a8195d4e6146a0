import { createHmac, randomBytes } from "node:crypto";
import { type Consent, latestConsent } from "../domain/consent.ts";
import type { E164 } from "../domain/phone.ts";
import { PSEUDONYM_PREFIX } from "../domain/phone.ts";
import type { ConsentRecords, Pseudonyms } from "../ports.ts";

/**
 * Pseudonyms as HMAC-SHA-256 of the E.164 number under a secret key, read once (on first use, so a route
 * that needs none pays nothing at cold start). The key must never change: pseudonyms made under another key
 * would not match, and an erased person's opt-out would be lost.
 */
export class KeyedPseudonyms implements Pseudonyms {
  private key: Promise<Buffer> | undefined;

  constructor(private readonly loadKey: () => Promise<string | Buffer>) {}

  async pseudonymOf(phoneNumber: E164): Promise<string> {
    this.key ??= this.loadKey()
      .then((k) => (typeof k === "string" ? Buffer.from(k, "utf8") : k))
      .catch((error) => {
        this.key = undefined;
        throw error;
      });
    const digest = createHmac("sha256", await this.key)
      .update(phoneNumber)
      .digest("base64url");
    return `${PSEUDONYM_PREFIX}${digest}`;
  }
}

let ephemeral: KeyedPseudonyms | undefined;

/**
 * A random key for this process only, for services composed without one (tests, benchmarks). Every
 * composition root that serves traffic wires the configured key (PSEUDONYM_SECRET_ARN / PSEUDONYM_KEY).
 */
export function ephemeralPseudonyms(): Pseudonyms {
  ephemeral ??= new KeyedPseudonyms(async () => randomBytes(32));
  return ephemeral;
}

/** A person's consent: the record under their number and the one under their pseudonym, latest wins. */
export async function consentOf(
  store: ConsentRecords,
  pseudonyms: Pseudonyms,
  phoneNumber: E164,
): Promise<Consent | undefined> {
  const [byNumber, byPseudonym] = await store.getConsents([
    phoneNumber,
    await pseudonyms.pseudonymOf(phoneNumber),
  ]);
  return latestConsent(byNumber, byPseudonym);
}
