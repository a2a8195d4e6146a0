import { type Holding, type PoolNumber, rankProxies, spreadIndex } from "./allocation.ts";
import type { ContactPolicy } from "./contacts.ts";
import { PoolExhaustedError } from "./errors.ts";
import type { SessionMode } from "./events.ts";
import { fitSms } from "./message.ts";
import type { E164 } from "./phone.ts";
import type { Route } from "./session.ts";

/**
 * Hub numbers: below the lower bound. With a per-participant proxy cap, a participant who already holds
 * `cap` proxies in open sessions gets their next sessions on one shared **hub number**. Each hub session has
 * a short thread tag (`#K7`), unique among that person's open hub sessions and not reused within the
 * quarantine; texts to them are prefixed `[#K7] …`, their replies are routed by the tag, never guessed.
 */

/** One hub session of a participant, as its tag item holds it (what routing from the hub reads). */
export interface HubThread {
  participantNumber: E164;
  hubNumber: E164;
  /** `#K7`. */
  tag: string;
  state: "held" | "released";
  sessionId: string | null;
  counterpartNumber: E164 | null;
  counterpartProxy: E164 | null;
  /** The counterpart's own tag when both are on hubs. */
  counterpartTag: string | null;
  counterpartName: string | null;
  mode: SessionMode | null;
  expiresAt: number | null;
  quarantineUntil: number | null;
  contacts?: ContactPolicy | null;
}

/** `#K7 text`, `[#k7] text`, `#K7: text`: the tag (upper case, with `#`) and the rest. */
const LEADING_TAG = /^\s*(\[\s*#([a-z]\d{1,2})\s*\]|#([a-z]\d{1,2})(?![a-z0-9]))[\s:,.-]*/i;

export function splitTag(body: string): { tag: string | undefined; rest: string } {
  const match = LEADING_TAG.exec(body);
  const code = match?.[2] ?? match?.[3];
  if (!match || !code) return { tag: undefined, rest: body };
  return { tag: `#${code.toUpperCase()}`, rest: body.slice(match[0].length) };
}

/**
 * What the hub participant receives: the text behind its session's tag, shortened if the tag would push it
 * past what Twilio takes.
 */
export const withTag = (tag: string, body: string) => fitSms(`[${tag}] ${body}`);

/** I and O are left out: on a phone keyboard they are too close to 1 and 0. */
const LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ";

/**
 * Tags in the order they are handed out: the counterpart's initial first (`#K1` … `#K9` for Kate, easy to
 * remember), then every other letter with one digit, then two digits.
 */
export function tagCandidates(counterpartName: string | null): string[] {
  const initial = counterpartName?.trim().charAt(0).toUpperCase() ?? "";
  const first = LETTERS.includes(initial) && initial !== "" ? initial : "A";
  const letters = [first, ...[...LETTERS].filter((l) => l !== first)];
  const out: string[] = [];
  for (const digits of [1, 2])
    for (const letter of letters)
      for (let n = digits === 1 ? 1 : 10; n <= (digits === 1 ? 9 : 99); n++) out.push(`#${letter}${n}`);
  return out;
}

/** A tag is taken while its session is open (expired or not) and through its quarantine after. */
export const tagTaken = (thread: HubThread, now: number) =>
  thread.state === "held" || (thread.quarantineUntil !== null && thread.quarantineUntil > now);

/** The proxies a participant holds in open sessions (hub sessions do not count): what the cap limits. */
export const proxiesHeld = (holdings: readonly Holding[]) =>
  holdings.filter((h) => h.state === "held").length;

/** Whether a new session of this participant goes on their hub: the cap is set and reached. */
export const needsHub = (holdings: readonly Holding[], cap: number | undefined) =>
  cap !== undefined && proxiesHeld(holdings) >= cap;

/**
 * The cap slot a new proxy of this participant takes (0 … cap − 1, one the holdings show free), or undefined
 * when the participant is at the cap (their hub then). The search starts at the participant's spread ticket
 * (modulo the cap) and goes up, wrapping: concurrent opens draw consecutive tickets, so they start on
 * different slots, and as tickets go up a participant's slots are used in turn, the longest free first.
 * Without a ticket (a retry) a hash of the seed picks the start. Slots other opens were found taking
 * (`avoid`) are taken only when no other is free.
 */
export function chooseCapSlot(
  holdings: readonly Holding[],
  cap: number | undefined,
  spread: { seed: string; ticket?: number | undefined; avoid?: ReadonlySet<number> | undefined },
): number | undefined {
  if (cap === undefined || needsHub(holdings, cap)) return undefined;
  const held = new Set(
    holdings.flatMap((h) => (h.state === "held" && typeof h.capSlot === "number" ? [h.capSlot] : [])),
  );
  const start = spread.ticket === undefined ? spreadIndex(spread.seed, cap) : spread.ticket % cap;
  const free = Array.from({ length: cap }, (_, i) => (start + i) % cap).filter((slot) => !held.has(slot));
  const open = free.filter((slot) => spread.avoid?.has(slot) !== true);
  // Fewer than `cap` proxies held (not at the cap), each on its own slot: at least one slot is free.
  return (open[0] ?? free[0]) as number;
}

export interface HubAllocation {
  proxyNumber: E164;
  hub: true;
  threadTag: string;
  /** The person's previous hub, no longer active (retired or draining): this session moves them off it. */
  replacesHub?: E164;
}

/**
 * The hub side of a new session: the participant's hub number (the one they already have while it is
 * active, else the best number they hold nothing on) and a free tag. Voice cannot be routed by a tag:
 * a voice-only session that needs a hub is refused as pool-exhausted.
 */
export function allocateHub(request: {
  participant: E164;
  participantCallingCode: string;
  counterpart: E164;
  counterpartName: string | null;
  mode: SessionMode;
  pool: readonly PoolNumber[];
  holdings: readonly Holding[];
  threads: readonly HubThread[];
  /** The person's hub as their hub item names it (one hub at a time, guarded); undefined: none yet. */
  previousHub?: E164 | undefined;
  now: number;
}): HubAllocation {
  if (request.mode === "voice") throw new PoolExhaustedError(request.participant);
  const active = new Set(request.pool.filter((n) => n.status === "active").map((n) => n.phoneNumber));
  const previous = request.previousHub;
  const current = previous && active.has(previous) ? previous : undefined;
  const hubNumber = current ?? rankProxies(request)[0];
  const taken = new Set(request.threads.filter((t) => tagTaken(t, request.now)).map((t) => t.tag));
  const tag = tagCandidates(request.counterpartName).find((t) => !taken.has(t));
  if (!hubNumber || !tag) throw new PoolExhaustedError(request.participant);
  const moved = previous && !current ? { replacesHub: previous } : {};
  return { proxyNumber: hubNumber, hub: true, threadTag: tag, ...moved };
}

/** The route a hub thread gives its participant's text: as a pair would, with the counterpart's tag. */
export function threadRoute(thread: HubThread): Route {
  return {
    proxyNumber: thread.hubNumber,
    senderNumber: thread.participantNumber,
    state: thread.state,
    sessionId: thread.sessionId,
    counterpartNumber: thread.counterpartNumber,
    counterpartProxy: thread.counterpartProxy,
    counterpartTag: thread.counterpartTag,
    mode: thread.mode,
    expiresAt: thread.expiresAt,
    contacts: thread.contacts ?? null,
  };
}

const isOpenOn = (hubNumber: string, now: number) => (t: HubThread) =>
  t.state === "held" && t.hubNumber === hubNumber && (t.expiresAt === null || t.expiresAt > now);

export type HubResolution =
  | { kind: "thread"; thread: HubThread }
  | { kind: "prompt"; reply: string }
  | { kind: "none" };

/**
 * Which session a text to a hub number belongs to. Tagged: the tag's thread on this hub (an ended one is
 * out of session, never another session), else a prompt. Untagged: the one open thread, else a prompt
 * listing the open tags; nothing is guessed. No open thread at all: out of session.
 */
export function resolveHub(
  request: { hubNumber: E164; tag: string | undefined; threads: readonly HubThread[] },
  now: number,
): HubResolution {
  const { hubNumber, tag, threads } = request;
  if (tag) {
    const thread = threads.find((t) => t.tag === tag && t.hubNumber === hubNumber);
    if (thread) return { kind: "thread", thread };
  }
  const open = threads.filter(isOpenOn(hubNumber, now));
  const only = open[0];
  if (!tag && open.length === 1 && only) return { kind: "thread", thread: only };
  if (open.length === 0) return { kind: "none" };
  return { kind: "prompt", reply: hubPrompt(open, tag) };
}

/** The answer to a call where the caller's side takes texts only: a hub side, or a session of mode `sms`. */
export const HUB_VOICE_REPLY = "This number takes text messages only. Please send a text instead. Goodbye.";

const PROMPT_LIMIT = 1500;

/** How to tag, and the open tags with the counterpart's name where the session has one. */
export function hubPrompt(open: readonly HubThread[], unknownTag: string | undefined): string {
  const order = (tag: string) => tag.charCodeAt(1) * 1000 + Number(tag.slice(2));
  const sorted = [...open].sort((a, b) => order(a.tag) - order(b.tag));
  const example = sorted[0]?.tag ?? "#A1";
  let text = unknownTag ? `No open conversation has the tag ${unknownTag}. Start` : "Not sent: start";
  text += ` your message with the conversation's tag, e.g. "${example} see you at 3". Open:`;
  for (const [i, t] of sorted.entries()) {
    const entry = ` ${t.tag}${t.counterpartName ? ` ${t.counterpartName}` : ""}${i < sorted.length - 1 ? "," : ""}`;
    if (text.length + entry.length > PROMPT_LIMIT) {
      text += ` … and ${sorted.length - i} more`;
      break;
    }
    text += entry;
  }
  return text;
}
