import { type Change, guard, type ItemKey } from "./changes.ts";
import { assertNever } from "./session.ts";

/**
 * Hostile-traffic policies: replay markers, the out-of-session auto-reply throttle and the per-sender rate
 * limit. Their state is operational (markers and counters with a TTL, not rebuilt from events), but each is
 * written in the same transaction as the decision it guards, so concurrent webhooks cannot overshoot a limit
 * or reply twice: the guard fails and the command decides again.
 */

/** `<count>/<seconds>`: at most `count` accepted texts per sender in each fixed window of `seconds`. */
export interface RateLimit {
  count: number;
  seconds: number;
}

/** Parses `SENDER_RATE_LIMIT`: `30/60`, or `off` (undefined). Undefined for anything else too: callers validate. */
export function parseRateLimit(text: string): RateLimit | "off" | undefined {
  if (text.trim().toLowerCase() === "off") return "off";
  const match = /^\s*(\d{1,6})\s*\/\s*(\d{1,6})\s*$/.exec(text);
  if (!match) return undefined;
  const count = Number(match[1]);
  const seconds = Number(match[2]);
  return count > 0 && seconds > 0 ? { count, seconds } : undefined;
}

export const windowStart = (at: number, limit: RateLimit) =>
  Math.floor(at / (limit.seconds * 1000)) * limit.seconds * 1000;

/** An auto-reply is due when none went to this sender from this proxy within the interval. */
export const autoReplyDue = (lastReplyAt: number | undefined, now: number, intervalSeconds: number) =>
  lastReplyAt === undefined || lastReplyAt <= now - intervalSeconds * 1000;

export const trafficKeys = {
  replay: (messageSid: string): ItemKey => ({ pk: `REPLAY#${messageSid}`, sk: "REPLAY" }),
  autoReply: (proxy: string, sender: string): ItemKey => ({
    pk: `AUTOREPLY#${proxy}`,
    sk: `SENDER#${sender}`,
  }),
  senderWindow: (sender: string, start: number): ItemKey => ({ pk: `RATE#${sender}`, sk: `WINDOW#${start}` }),
};

/** An operational item written beside a decision, under its own guard. */
export type Marker =
  /** A MessageSid is accepted once for the whole replay window, whatever the body retention. */
  | { kind: "replay"; messageSid: string; at: number; windowDays: number }
  /** The out-of-session auto-reply just sent: none again to this sender from this proxy within the interval. */
  | { kind: "auto-reply"; proxy: string; sender: string; at: number; intervalSeconds: number }
  /** One more accepted text in the sender's window, only while under the limit. */
  | { kind: "sender-count"; sender: string; at: number; limit: RateLimit }
  /** The one notice of the window, only if none was given. */
  | { kind: "sender-notice"; sender: string; at: number; limit: RateLimit };

const epochSeconds = (ms: number) => Math.floor(ms / 1000);

export function markerChange(marker: Marker): Change {
  switch (marker.kind) {
    case "replay":
      return {
        type: "put",
        key: trafficKeys.replay(marker.messageSid),
        item: { kind: "replay", ttl: epochSeconds(marker.at) + marker.windowDays * 86_400 },
        guard: guard.absent,
        conflict: { kind: "replay", key: marker.messageSid },
      };
    case "auto-reply":
      return {
        type: "update",
        key: trafficKeys.autoReply(marker.proxy, marker.sender),
        set: {
          kind: "auto-reply",
          lastReplyAt: marker.at,
          ttl: epochSeconds(marker.at) + marker.intervalSeconds,
        },
        guard: guard.or(guard.absent, guard.lt("lastReplyAt", marker.at - marker.intervalSeconds * 1000 + 1)),
        conflict: { kind: "auto-reply", key: marker.proxy },
      };
    case "sender-count":
    case "sender-notice": {
      const start = windowStart(marker.at, marker.limit);
      const ttl = epochSeconds(start) + marker.limit.seconds + 60;
      const key = trafficKeys.senderWindow(marker.sender, start);
      return marker.kind === "sender-count"
        ? {
            type: "update",
            key,
            set: { kind: "sender-window", ttl },
            add: { count: 1 },
            guard: guard.or(guard.absent, guard.lt("count", marker.limit.count)),
            conflict: { kind: "sender-count", key: String(start) },
          }
        : {
            type: "update",
            key,
            set: { kind: "sender-window", ttl, noticed: true },
            guard: guard.or(guard.absent, guard.missing("noticed")),
            conflict: { kind: "sender-notice", key: String(start) },
          };
    }
    default:
      return assertNever(marker);
  }
}
