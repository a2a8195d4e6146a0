import { ConcurrentWriteError, type Conflict } from "../domain/errors.ts";
import type { DomainEvent } from "../domain/events.ts";
import type { SessionContext } from "../domain/session.ts";
import { type AppendOptions, type Clock, decisionContext, type EventStore } from "../ports.ts";

export interface CommandDeps {
  store: EventStore;
  clock: Clock;
  newId: (prefix: string) => string;
  quarantineSeconds: number;
}

export interface CommandSpec<S> {
  /** Reads the state the decision needs (again after each lost race). */
  load: () => Promise<S>;
  /**
   * Pure: the events of this command given the state; `attempt` counts lost races so far, `lost` holds the
   * conflicts they were lost on (oldest first).
   */
  decide: (state: S, ctx: SessionContext, attempt: number, lost: readonly Conflict[]) => DomainEvent[];
  options?: AppendOptions;
  /** Conflicts that settle the command instead of retrying it (e.g. a duplicate webhook, a replayed key). */
  settles?: (conflicts: readonly Conflict[]) => boolean;
  attempts?: number;
  backoffMs?: (attempt: number) => number;
}

export type CommandResult<S> =
  | { outcome: "appended"; state: S; events: DomainEvent[] }
  | { outcome: "nothing-to-do"; state: S; events: [] }
  | { outcome: "settled"; state: S; events: DomainEvent[]; conflicts: readonly Conflict[] };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const jitter = (attempt: number) => 2 + Math.random() * 8 * Math.min(attempt + 1, 5);

/**
 * Load → decide → append, the one way a command changes state. A lost race (a guard failed, or a concurrent
 * transaction) re-reads and decides again, up to `attempts`; the last conflict is thrown.
 */
export async function handleCommand<S>(deps: CommandDeps, spec: CommandSpec<S>): Promise<CommandResult<S>> {
  const attempts = spec.attempts ?? 5;
  const lost: Conflict[] = [];
  for (let attempt = 0; ; attempt++) {
    const state = await spec.load();
    const events = spec.decide(state, decisionContext(deps), attempt, lost);
    if (events.length === 0) return { outcome: "nothing-to-do", state, events: [] };
    try {
      await deps.store.append(events, spec.options);
      return { outcome: "appended", state, events };
    } catch (error) {
      if (!(error instanceof ConcurrentWriteError)) throw error;
      if (spec.settles?.(error.conflicts))
        return { outcome: "settled", state, events, conflicts: error.conflicts };
      if (attempt + 1 >= attempts) throw error;
      lost.push(...error.conflicts);
      await sleep((spec.backoffMs ?? jitter)(attempt));
    }
  }
}

/** A conflict that only a guard raised: the state already says this was done (a duplicate). */
export const alreadyDone = (conflicts: readonly Conflict[]) => conflicts.every((c) => !c.contention);
