import type { PoolNumber } from "./allocation.ts";
import { NumberNotFoundError } from "./errors.ts";
import { type DomainEvent, type EventContext, makeEvent } from "./events.ts";
import { callingCode, type E164 } from "./phone.ts";
import { assertNever } from "./session.ts";

/**
 * The number aggregate (one pool number: added → active ⇄ draining → retired) and the pool's health report.
 * A number's state is its pool projection; `load` counts the open pairs on it.
 */
export type NumberCommand =
  | { type: "AddNumber"; phoneNumber: E164 }
  | { type: "RetireNumber"; phoneNumber: E164 }
  /** The recycler's sweep: a draining number leaves the pool once nothing holds it. */
  | { type: "RetireIfDrained"; phoneNumber: E164 };

export function decideNumber(
  command: NumberCommand,
  state: PoolNumber | null,
  ctx: EventContext,
): DomainEvent[] {
  const { phoneNumber } = command;
  switch (command.type) {
    case "AddNumber":
      if (state?.status === "active") return [];
      return [makeEvent(ctx, "NumberAdded", null, { phoneNumber, callingCode: callingCode(phoneNumber) })];
    case "RetireNumber":
      if (!state) throw new NumberNotFoundError(phoneNumber);
      if (state.load === 0) return [makeEvent(ctx, "NumberRetired", null, { phoneNumber })];
      if (state.status === "draining") return [];
      return [makeEvent(ctx, "NumberDraining", null, { phoneNumber, openPairs: state.load })];
    case "RetireIfDrained":
      if (state?.status !== "draining" || state.load !== 0) return [];
      return [makeEvent(ctx, "NumberRetired", null, { phoneNumber })];
    default:
      return assertNever(command);
  }
}

export interface PoolHealthView {
  activeNumbers: number;
  openPairs: number;
  /** The lower bound: the most sessions any one participant has open. */
  busiestParticipantSessions: number;
  /** That participant's number, if any: top-up buys in their country. */
  busiestParticipant: E164 | undefined;
  /** PoolLow when the busiest participant has fewer free numbers than this. */
  lowHeadroom: number;
}

/** PoolHealthReported, and PoolLow when the headroom is under the threshold. */
export function decidePoolHealth(view: PoolHealthView, ctx: EventContext): DomainEvent[] {
  const headroom = view.activeNumbers - view.busiestParticipantSessions;
  const events: DomainEvent[] = [
    makeEvent(ctx, "PoolHealthReported", null, {
      activeNumbers: view.activeNumbers,
      openPairs: view.openPairs,
      pairsPerNumber: view.activeNumbers ? view.openPairs / view.activeNumbers : 0,
      busiestParticipantSessions: view.busiestParticipantSessions,
      headroom,
    }),
  ];
  if (headroom < view.lowHeadroom)
    events.push(
      makeEvent(ctx, "PoolLow", null, {
        headroom,
        threshold: view.lowHeadroom,
        callingCode: view.busiestParticipant ? callingCode(view.busiestParticipant) : null,
      }),
    );
  return events;
}
