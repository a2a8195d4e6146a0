/**
 * Keywords and consent. A keyword is the whole message (case-insensitive; surrounding white space and trailing
 * punctuation ignored), or Twilio's `OptOutType` when it sends one. Keywords are never relayed. An opt-out is
 * per person across the whole pool: nothing is sent to them from any number we own until they opt in again.
 */
export type KeywordKind = "opt-out" | "opt-in" | "help";

const WORDS: Record<string, KeywordKind> = {
  STOP: "opt-out",
  STOPALL: "opt-out",
  UNSUBSCRIBE: "opt-out",
  CANCEL: "opt-out",
  END: "opt-out",
  QUIT: "opt-out",
  REVOKE: "opt-out",
  OPTOUT: "opt-out",
  START: "opt-in",
  YES: "opt-in",
  UNSTOP: "opt-in",
  HELP: "help",
  INFO: "help",
};

const OPT_OUT_TYPES: Record<string, KeywordKind> = { STOP: "opt-out", START: "opt-in", HELP: "help" };

export interface Keyword {
  kind: KeywordKind;
  /** The keyword as matched (upper case), never the rest of a message. */
  word: string;
}

/** The keyword a text is, if it is one. "Stop texting me at night" is not a keyword. */
export function detectKeyword(body: string, optOutType?: string): Keyword | undefined {
  // Compatibility forms are the same letters (a full-width keyboard's "ＳＴＯＰ！" is "STOP!"), and any
  // Unicode punctuation at the end is trailing punctuation ("STOP。", "STOP”", "stop -").
  const word = body
    .normalize("NFKC")
    .trim()
    .replace(/[\s\p{P}]+$/u, "")
    .toUpperCase();
  const kind = Object.hasOwn(WORDS, word) ? WORDS[word] : undefined;
  if (kind) return { kind, word };
  const type = optOutType?.trim().toUpperCase() ?? "";
  const byType = Object.hasOwn(OPT_OUT_TYPES, type) ? OPT_OUT_TYPES[type] : undefined;
  return byType ? { kind: byType, word: type } : undefined;
}

/** A person's consent as the consent projection holds it. */
export interface Consent {
  phoneNumber: string;
  optedOut: boolean;
  changedAt: string | null;
}

/**
 * A person's consent from the records kept under their number and under their pseudonym (an erased person's
 * or a stranger's consent is kept under the pseudonym only): what they said most recently wins.
 */
export function latestConsent(...records: (Consent | undefined)[]): Consent | undefined {
  let latest: Consent | undefined;
  for (const record of records)
    if (record && (!latest || (record.changedAt ?? "") > (latest.changedAt ?? ""))) latest = record;
  return latest;
}
