import { newId } from "../../shared/adapters/ids.ts";
import { MemoryStore } from "../../shared/adapters/memory-store.ts";
import { InboundService } from "../../shared/app/inbound.ts";
import { SessionService } from "../../shared/app/sessions.ts";
import { PoolExhaustedError } from "../../shared/domain/errors.ts";
import type { SessionParticipant } from "../../shared/domain/events.ts";
import { withTag } from "../../shared/domain/hub.ts";
import type { E164 } from "../../shared/domain/phone.ts";
import { seededRandom } from "./rng.ts";
import { phoneOf, TRACE_START, type TraceSession } from "./trace.ts";

/**
 * The hub replay of bench:pool: a month of sessions opened through the real SessionService with
 * MAX_PROXIES_PER_PARTICIPANT, and every message of it through the real InboundService (routing, tags,
 * prompts) on the in-memory store. Each message's outcome is checked against the session it belongs to.
 */
export interface HubReplayOptions {
  sessions: readonly TraceSession[];
  until: number;
  hosts: number;
  poolSize: number;
  cap: number | undefined;
  quarantineSeconds: number;
  /**
   * The forgetful model: with this probability a hub participant's reply is also sent once more without
   * its tag (as the forgetful user would have sent it). Messages never change allocation, so one replay
   * measures both models: the tagged replies are the always-tag model, the copies the forgetful one.
   */
  forgetTag: number;
  /** Messages per session: alternately guest → host and host → guest, spread over the session. */
  messagesPerSession: number;
  seed: number;
}

export interface HubReplayResult {
  opened: number;
  failures: number;
  otherErrors: number;
  messages: number;
  /** Messages whose sender or recipient side is a hub number. */
  viaHub: number;
  /** Forwarded to the right counterpart, from the right proxy, with the right text. */
  delivered: number;
  /** Forwarded anywhere else, or with another text: must stay 0. */
  misrouted: number;
  /** Untagged replies with several open hub threads: answered with the prompt, forwarded nowhere. */
  prompted: number;
  /** The forgetful model's untagged copies, and how many of them were forwarded (to their only thread). */
  untagged: number;
  untaggedDelivered: number;
  untaggedMisrouted: number;
  /** Neither forwarded nor prompted (e.g. the session had already expired). */
  other: number;
  /** Hub sessions opened, and the most hub threads one person had open at once. */
  hubSessions: number;
  maxOpenThreads: number;
  wallMs: number;
}

type Event =
  | { at: number; kind: "open"; session: TraceSession }
  | { at: number; kind: "close"; session: TraceSession }
  | { at: number; kind: "message"; session: TraceSession; seq: number };

export async function hubReplay(options: HubReplayOptions): Promise<HubReplayResult> {
  const store = new MemoryStore();
  let now = TRACE_START;
  const common = {
    store,
    queue: { enqueue: async () => {} },
    clock: { now: () => now },
    newId,
    quarantineSeconds: options.quarantineSeconds,
  };
  const sessions = new SessionService({ ...common, maxProxiesPerParticipant: options.cap });
  const inbound = new InboundService({
    ...common,
    outOfSessionReply: "This conversation has ended.",
    outOfSessionVoice: "Goodbye.",
    helpReply: "Help.",
    traffic: {
      autoReplyIntervalSeconds: 86_400,
      senderRateLimit: undefined,
      rateLimitReply: "Slow down.",
      replayWindowDays: 30,
      contentPolicy: "off",
      contentBlockedReply: "Blocked.",
    },
  });
  for (let i = 0; i < options.poolSize; i++) await sessions.addNumber(phoneOf.pool(i) as E164);
  const random = seededRandom(options.seed);
  const events: Event[] = [];
  for (const s of options.sessions) {
    if (s.open >= options.until) continue;
    events.push({ at: s.open, kind: "open", session: s });
    const end = Math.min(s.close, options.until);
    for (let k = 0; k < options.messagesPerSession; k++) {
      const at = s.open + Math.floor(((end - s.open) * (k + 1)) / (options.messagesPerSession + 1));
      if (at > s.open && at < end) events.push({ at, kind: "message", session: s, seq: k });
    }
    if (s.close < options.until) events.push({ at: s.close, kind: "close", session: s });
  }
  const order = { close: 0, message: 1, open: 2 } as const;
  events.sort((a, b) => a.at - b.at || order[a.kind] - order[b.kind] || a.session.id - b.session.id);

  const opened = new Map<number, { sessionId: string; participants: SessionParticipant[] }>();
  const openThreads = new Map<string, number>();
  const result: HubReplayResult = {
    opened: 0,
    failures: 0,
    otherErrors: 0,
    messages: 0,
    viaHub: 0,
    delivered: 0,
    misrouted: 0,
    prompted: 0,
    untagged: 0,
    untaggedDelivered: 0,
    untaggedMisrouted: 0,
    other: 0,
    hubSessions: 0,
    maxOpenThreads: 0,
    wallMs: 0,
  };
  let sid = 0;
  const began = performance.now();
  for (const event of events) {
    now = TRACE_START + event.at;
    const s = event.session;
    if (event.kind === "open") {
      try {
        const { session } = await sessions.openSession({
          participants: [
            { phoneNumber: phoneOf.participant(s.host, options.hosts) as E164 },
            { phoneNumber: phoneOf.participant(s.guest, options.hosts) as E164, name: `Guest ${s.guest}` },
          ],
          mode: "sms",
          ttlSeconds: Math.max(60, Math.ceil((s.close - s.open) / 1000) + 3600),
          ttlMode: "absolute",
        });
        opened.set(s.id, { sessionId: session.sessionId, participants: session.participants });
        result.opened++;
        for (const p of session.participants) {
          if (!p.hub) continue;
          result.hubSessions++;
          const open = (openThreads.get(p.phoneNumber) ?? 0) + 1;
          openThreads.set(p.phoneNumber, open);
          result.maxOpenThreads = Math.max(result.maxOpenThreads, open);
        }
      } catch (error) {
        if (error instanceof PoolExhaustedError) result.failures++;
        else if (++result.otherErrors <= 3) console.error(`  unexpected: ${(error as Error).message}`);
      }
      continue;
    }
    const session = opened.get(s.id);
    if (!session) continue;
    if (event.kind === "close") {
      await sessions.closeSession(session.sessionId);
      for (const p of session.participants)
        if (p.hub) openThreads.set(p.phoneNumber, (openThreads.get(p.phoneNumber) ?? 1) - 1);
      opened.delete(s.id);
      continue;
    }
    // Guest first, then the host replies, alternately.
    const fromGuest = event.seq % 2 === 0;
    const [host, guest] = session.participants as [SessionParticipant, SessionParticipant];
    const [sender, recipient] = fromGuest ? [guest, host] : [host, guest];
    const text = `m${s.id}.${event.seq}`;
    const send = async (body: string) => {
      const messageSid = `SM${(++sid).toString(16).padStart(32, "0")}`;
      const { reply } = await inbound.receiveSms({
        messageSid,
        from: sender.phoneNumber as E164,
        to: sender.proxyNumber as E164,
        body,
        mediaUrls: [],
        optOutType: undefined,
      });
      const stored = await store.getMessage(messageSid);
      if (stored?.state !== "received") return reply && /tag/.test(reply) ? "prompted" : "other";
      const expected = recipient.hub && recipient.threadTag ? withTag(recipient.threadTag, text) : text;
      const right =
        stored.sessionId === session.sessionId &&
        stored.recipient === recipient.phoneNumber &&
        stored.recipientProxy === recipient.proxyNumber &&
        stored.body === expected;
      return right ? "delivered" : "misrouted";
    };
    result.messages++;
    if (sender.hub || recipient.hub) result.viaHub++;
    const outcome = await send(sender.hub ? `${sender.threadTag} ${text}` : text);
    result[outcome]++;
    if (sender.hub && random() < options.forgetTag) {
      result.untagged++;
      const forgot = await send(text);
      if (forgot === "prompted") result.prompted++;
      else if (forgot === "delivered") result.untaggedDelivered++;
      else if (forgot === "misrouted") result.untaggedMisrouted++;
      else result.other++;
    }
  }
  result.wallMs = performance.now() - began;
  return result;
}
