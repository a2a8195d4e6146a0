import { exponential, logNormal, type Random, seededRandom, zipfSampler } from "./rng.ts";

/**
 * A seeded marketplace trace: guests plan trips, each trip contacts one or more hosts (Zipf popularity),
 * one contact becomes a booking (a session of days), the others stay inquiries (a session of hours).
 * Arrivals follow a daily and weekly rhythm. Everything is a pure function of the options.
 */
export interface TraceOptions {
  hosts: number;
  guests: number;
  days: number;
  /** Zipf exponent of host popularity (1 = classic Zipf). */
  zipf: number;
  tripsPerDay: number;
  seed: number;
  /** Median booking session length (log-normal, sigma 0.6, capped at 21 days). */
  bookingMedianHours: number;
  /** Median inquiry session length (log-normal, sigma 0.8, capped at 3 days). */
  inquiryMedianHours: number;
}

export interface TraceSession {
  id: number;
  /** Participant ids: hosts are 0..hosts-1, guests are hosts..hosts+guests-1. */
  host: number;
  guest: number;
  /** Milliseconds since the trace start. */
  open: number;
  /** Milliseconds since the trace start; may lie after the end (still open when the trace stops). */
  close: number;
}

export interface Trace {
  options: TraceOptions;
  /** Epoch ms of the trace start (a Monday, 00:00 UTC). */
  start: number;
  /** Length in ms. */
  length: number;
  sessions: TraceSession[];
}

export const TRACE_START = Date.parse("2025-03-03T00:00:00Z");
const HOUR = 3600_000;
const DAY = 24 * HOUR;

/** Arrival-rate multiplier: evenings busier than nights, weekends busier than weekdays; mean ≈ 1. */
function rhythm(t: number): number {
  const hour = (t % DAY) / HOUR;
  const weekday = Math.floor(t / DAY) % 7; // 0 = Monday
  const daily = 1 + 0.6 * Math.sin((2 * Math.PI * (hour - 8)) / 24);
  const weekly = weekday >= 5 ? 1.15 : 0.94;
  return daily * weekly;
}
const RHYTHM_MAX = 1.6 * 1.15;

function contactsPerTrip(random: Random): number {
  const u = random();
  return u < 0.55 ? 1 : u < 0.8 ? 2 : u < 0.92 ? 3 : 4;
}

export function generateTrace(options: TraceOptions): Trace {
  const random = seededRandom(options.seed);
  const pickHost = zipfSampler(options.hosts, options.zipf, random);
  const length = options.days * DAY;
  const sessions: TraceSession[] = [];
  const peakRatePerMs = (options.tripsPerDay / DAY) * RHYTHM_MAX;
  // Non-homogeneous Poisson arrivals by thinning.
  for (
    let t = exponential(random, 1 / peakRatePerMs);
    t < length;
    t += exponential(random, 1 / peakRatePerMs)
  ) {
    if (random() * RHYTHM_MAX > rhythm(t)) continue;
    const guest = options.hosts + Math.floor(random() * options.guests);
    const contacts = Math.min(contactsPerTrip(random), options.hosts);
    const hosts = new Set<number>();
    while (hosts.size < contacts) hosts.add(pickHost());
    let at = t;
    let first = true;
    for (const host of hosts) {
      const duration = first
        ? Math.min(21 * DAY, logNormal(random, options.bookingMedianHours * HOUR, 0.6))
        : Math.min(3 * DAY, logNormal(random, options.inquiryMedianHours * HOUR, 0.8));
      const open = Math.round(at);
      sessions.push({
        id: sessions.length,
        host,
        guest,
        open,
        close: open + Math.max(60_000, Math.round(duration)),
      });
      at += exponential(random, 20 * 60_000);
      first = false;
    }
  }
  sessions.sort((a, b) => a.open - b.open || a.id - b.id);
  return { options, start: TRACE_START, length, sessions };
}

export type TraceEvent = { at: number; kind: "open" | "close"; session: TraceSession };

/** Opens and closes in time order; at the same instant a close comes first (its number is free again). */
export function traceEvents(sessions: readonly TraceSession[], until: number): TraceEvent[] {
  const events: TraceEvent[] = [];
  for (const s of sessions) {
    if (s.open >= until) continue;
    events.push({ at: s.open, kind: "open", session: s });
    if (s.close < until) events.push({ at: s.close, kind: "close", session: s });
  }
  return events.sort(
    (a, b) => a.at - b.at || (a.kind === b.kind ? a.session.id - b.session.id : a.kind === "close" ? -1 : 1),
  );
}

export interface Concurrency {
  /** The busiest participant's peak number of concurrently open sessions: the lower bound on the pool. */
  L: number;
  busiest: number;
  /** When L was first reached (ms since trace start). */
  lAt: number;
  peakSessions: number;
  peakAt: number;
  totalSessions: number;
  /** The busiest guest's peak (guests rarely hold more than a few at once). */
  guestL: number;
}

/** One sweep over the events: per-participant open counts. */
export function concurrency(sessions: readonly TraceSession[], until: number, hosts: number): Concurrency {
  const counts = new Map<number, number>();
  const result: Concurrency = {
    L: 0,
    busiest: -1,
    lAt: 0,
    peakSessions: 0,
    peakAt: 0,
    totalSessions: 0,
    guestL: 0,
  };
  let open = 0;
  for (const e of traceEvents(sessions, until)) {
    const delta = e.kind === "open" ? 1 : -1;
    open += delta;
    if (e.kind === "open") result.totalSessions++;
    if (open > result.peakSessions) {
      result.peakSessions = open;
      result.peakAt = e.at;
    }
    for (const p of [e.session.host, e.session.guest]) {
      const c = (counts.get(p) ?? 0) + delta;
      counts.set(p, c);
      if (c > result.L) {
        result.L = c;
        result.busiest = p;
        result.lAt = e.at;
      }
      if (p >= hosts && c > result.guestL) result.guestL = c;
    }
  }
  return result;
}

/** The sessions open at instant `at` (for checks against the domain's own `busiestParticipantLoad`). */
export function openAt(sessions: readonly TraceSession[], at: number): TraceSession[] {
  return sessions.filter((s) => s.open <= at && s.close > at);
}

export interface SharedNumberResult {
  /** Numbers used (first fit: the pool it needed; least loaded: the pool it was given). */
  needed: number;
  failures: number;
  /** Open sessions per number at the busiest instant. */
  loadAtPeak: number[];
}

/**
 * A shared-number-per-session allocator (Plivo's model): each session gets ONE number that neither
 * participant holds in another open session; its published worst case is a pool of 2L−1.
 * - "first-fit" takes the lowest free index from an unbounded pool: the smallest pool this model can get
 *   away with, at the price of piling sessions onto the first numbers;
 * - "least-loaded" balances sessions over a pool of `poolSize`, as a real deployment would for per-number
 *   send limits; sessions with no eligible number fail.
 */
export function simulateSharedNumber(
  sessions: readonly TraceSession[],
  until: number,
  policy: { kind: "first-fit" } | { kind: "least-loaded"; poolSize: number },
  peakAt: number,
): SharedNumberResult {
  const held = new Map<number, Set<number>>();
  const numberOf = new Map<number, number>();
  const size = policy.kind === "least-loaded" ? policy.poolSize : 0;
  const load: number[] = new Array(size).fill(0);
  const result: SharedNumberResult = { needed: size, failures: 0, loadAtPeak: [] };
  let snapshot = false;
  const heldBy = (p: number) => {
    let set = held.get(p);
    if (!set) {
      set = new Set();
      held.set(p, set);
    }
    return set;
  };
  for (const e of traceEvents(sessions, until)) {
    if (!snapshot && e.at > peakAt) {
      result.loadAtPeak = [...load];
      snapshot = true;
    }
    const a = heldBy(e.session.host);
    const b = heldBy(e.session.guest);
    if (e.kind === "open") {
      let n = -1;
      if (policy.kind === "first-fit") {
        n = 0;
        while (a.has(n) || b.has(n)) n++;
        result.needed = Math.max(result.needed, n + 1);
        while (load.length <= n) load.push(0);
      } else {
        for (let i = 0; i < size; i++) {
          if (a.has(i) || b.has(i)) continue;
          if (n < 0 || (load[i] ?? 0) < (load[n] ?? 0)) n = i;
        }
        if (n < 0) {
          result.failures++;
          continue;
        }
      }
      a.add(n);
      b.add(n);
      load[n] = (load[n] ?? 0) + 1;
      numberOf.set(e.session.id, n);
    } else {
      const n = numberOf.get(e.session.id);
      if (n === undefined) continue;
      a.delete(n);
      b.delete(n);
      load[n] = (load[n] ?? 0) - 1;
    }
  }
  if (!snapshot) result.loadAtPeak = [...load];
  return result;
}

/** The smallest pool with zero failures for the least-loaded shared-number model, by bisection in [lo, hi]. */
export function smallestSharedPool(
  sessions: readonly TraceSession[],
  until: number,
  lo: number,
  hi: number,
  peakAt: number,
): { poolSize: number; result: SharedNumberResult } {
  const run = (poolSize: number) =>
    simulateSharedNumber(sessions, until, { kind: "least-loaded", poolSize }, peakAt);
  // Nothing below the lower bound can work: try it first, it is the usual answer on marketplace traces.
  const atLow = run(lo);
  if (atLow.failures === 0) return { poolSize: lo, result: atLow };
  let best = { poolSize: hi, result: run(hi) };
  let low = lo + 1;
  let high = hi - 1;
  while (low <= high) {
    const mid = Math.floor((low + high) / 2);
    const result = run(mid);
    if (result.failures === 0) {
      best = { poolSize: mid, result };
      high = mid - 1;
    } else low = mid + 1;
  }
  return best;
}

/** Sessions that open inside [from, to): a window of the trace that is itself a valid trace. */
export function windowOf(sessions: readonly TraceSession[], from: number, to: number): TraceSession[] {
  return sessions.filter((s) => s.open >= from && s.open < to);
}

/** Fictional but well-formed E.164 numbers for trace participants and pool numbers. */
export const phoneOf = {
  participant: (id: number, hosts: number) =>
    id < hosts ? `+1212${String(2_000_000 + id)}` : `+1303${String(2_000_000 + (id - hosts))}`,
  pool: (index: number) => `+1415${String(2_000_000 + index)}`,
};
