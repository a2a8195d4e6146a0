import type { E164 } from "./phone.ts";

export interface PoolNumber {
  phoneNumber: E164;
  /** draining: retirement requested; open sessions keep it, no new pair may take it. */
  status: "active" | "draining";
  callingCode: string;
  /** Open (proxy, participant) pairs on this number: a proxy for the per-number send rate. */
  load: number;
}

/** What a participant holds or held on one proxy number: the (proxy, participant) pair. */
export interface Holding {
  proxyNumber: E164;
  /** hub: the participant's hub number (their over-cap sessions share it); never a proxy of theirs. */
  state: "held" | "released" | "hub";
  sessionId: string | null;
  counterpartNumber: E164 | null;
  /** Epoch ms until which a released pair is not handed to a different counterpart. */
  quarantineUntil: number | null;
  /** Epoch ms when the held pair's session expires (absent when unknown). */
  expiresAt?: number | null;
  /** A held proxy under a cap: the participant's cap slot it holds (hub.ts). */
  capSlot?: number | null;
}

/** How close to the participant a proxy should be: same country, or (NANP) the same area code too. */
export const geoMatches = ["country", "area-code"] as const;
export type GeoMatch = (typeof geoMatches)[number];

export interface AllocationRequest {
  participant: E164;
  participantCallingCode: string;
  counterpart: E164;
  pool: readonly PoolNumber[];
  holdings: readonly Holding[];
  now: number;
  /** Default "area-code": within the country, a proxy of the participant's area code first (soft). */
  geoMatch?: GeoMatch;
}

/** The NANP area code (the three digits after +1), or undefined for other numbers. */
export function nanpAreaCode(phoneNumber: string): string | undefined {
  return /^\+1(\d{3})\d{7}$/.exec(phoneNumber)?.[1];
}

/** A pair (or hub thread) of an open session: held, and its session not past its expiry (swept or not). */
export const isOpenHolding = (h: Pick<Holding, "state" | "expiresAt">, now: number) =>
  h.state === "held" && (h.expiresAt === undefined || h.expiresAt === null || h.expiresAt > now);

/** Whether the participant already shares an open (held, unexpired) session with the counterpart. */
export function sharedOpenSession<H extends Pick<Holding, "state" | "expiresAt" | "counterpartNumber">>(
  holdings: readonly H[],
  counterpart: string,
  now: number,
): H | undefined {
  return holdings.find((h) => isOpenHolding(h, now) && h.counterpartNumber === counterpart);
}

/**
 * Ranks the proxy numbers a participant may be given, best first. A number is eligible when it is active
 * and the participant holds it in no open session. Preference: the pair's previous number (sticky), then
 * free numbers of the participant's area code (NANP, unless `geoMatch` is "country"), then of the
 * participant's country, then the least loaded; pairs still in quarantine with a
 * different counterpart come last (quarantine is soft: reused, longest-quarantined first, rather than fail).
 * An empty result means the pool is exhausted for this participant.
 */
export function rankProxies(request: AllocationRequest): E164[] {
  const { sticky, free, quarantined } = rankTiers(request);
  return [...sticky, ...free, ...quarantined].map((n) => n.phoneNumber);
}

/** How `chooseProxy` picks among the free numbers exactly as good as the best. */
export interface Spread {
  /** Differs per open and attempt: without a ticket, a hash of it picks among the ties. */
  seed: string;
  /**
   * The participant's spread ticket: concurrent opens for one participant draw consecutive tickets, so with
   * the same view they take different ties instead of independent draws (which collide: 20 draws over 20).
   */
  ticket?: number | undefined;
  /** Numbers another open is taking right now (its transaction cancelled ours on them): chosen last. */
  avoid?: ReadonlySet<string> | undefined;
  /** The number the session's other side takes: chosen when it is among the ties (one number item to write). */
  share?: string | undefined;
}

/**
 * The proxy to give, or undefined when the pool is exhausted for this participant: the best ranked, except
 * that among the free numbers exactly as good as the best (same locality, same load, not avoided) the choice
 * is spread (see `Spread`): the other side's number if it is one of them, else by ticket or by seed. A
 * sticky or quarantined best is taken as ranked; an avoided number only when no other is free.
 */
export function chooseProxy(request: AllocationRequest, spread: Spread): E164 | undefined {
  const { sticky, free: ranked, quarantined, local } = rankTiers(request);
  const avoided = (n: PoolNumber) => spread.avoid?.has(n.phoneNumber) === true;
  const free = [...ranked.filter((n) => !avoided(n)), ...ranked.filter(avoided)];
  const best = free[0];
  if (sticky[0] || !best) return (sticky[0] ?? quarantined[0])?.phoneNumber;
  let ties = 1;
  while (ties < free.length && sameRank(free[ties] as PoolNumber, best, local, avoided)) ties++;
  const tied = free.slice(0, ties);
  const shared = tied.find((n) => n.phoneNumber === spread.share);
  if (shared) return shared.phoneNumber;
  const index =
    spread.ticket === undefined
      ? spreadIndex(spread.seed, ties)
      : (spreadIndex(request.participant, ties) + spread.ticket) % ties;
  return (tied[index] as PoolNumber).phoneNumber;
}

const sameRank = (
  n: PoolNumber,
  best: PoolNumber,
  local: (n: PoolNumber) => number,
  avoided: (n: PoolNumber) => boolean,
) => local(n) === local(best) && n.load === best.load && avoided(n) === avoided(best);

/** FNV-1a over the seed, modulo `n`: the same seed gives the same choice. */
export function spreadIndex(seed: string, n: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < seed.length; i++) h = Math.imul(h ^ seed.charCodeAt(i), 0x01000193) >>> 0;
  return h % n;
}

function rankTiers(request: AllocationRequest) {
  const byProxy = new Map(request.holdings.map((h) => [h.proxyNumber, h]));
  const sticky: PoolNumber[] = [];
  const free: PoolNumber[] = [];
  const quarantined: { number: PoolNumber; until: number }[] = [];
  for (const number of request.pool) {
    if (number.status !== "active") continue;
    const holding = byProxy.get(number.phoneNumber);
    if (!holding) {
      free.push(number);
    } else if (holding.state === "released") {
      if (holding.counterpartNumber === request.counterpart) sticky.push(number);
      else if (holding.quarantineUntil !== null && holding.quarantineUntil > request.now)
        quarantined.push({ number, until: holding.quarantineUntil });
      else free.push(number);
    }
  }
  const area =
    (request.geoMatch ?? "area-code") === "area-code" ? nanpAreaCode(request.participant) : undefined;
  // 0: same area code (NANP), 1: same country, 2: elsewhere.
  const local = (n: PoolNumber) =>
    n.callingCode !== request.participantCallingCode
      ? 2
      : area && nanpAreaCode(n.phoneNumber) === area
        ? 0
        : 1;
  free.sort((a, b) => local(a) - local(b) || a.load - b.load || a.phoneNumber.localeCompare(b.phoneNumber));
  quarantined.sort((a, b) => a.until - b.until || a.number.phoneNumber.localeCompare(b.number.phoneNumber));
  return { sticky, free, quarantined: quarantined.map((q) => q.number), local };
}

/** The lower bound on pool size: the largest number of sessions any one participant has open at once. */
export function busiestParticipantLoad(openSessions: Iterable<readonly [string, string]>): number {
  const counts = new Map<string, number>();
  let max = 0;
  for (const pair of openSessions) {
    for (const p of pair) {
      const c = (counts.get(p) ?? 0) + 1;
      counts.set(p, c);
      max = Math.max(max, c);
    }
  }
  return max;
}
