/**
 * One turn at a time per agent across every instance (docs/ARCHITECTURE.md#runtime-providers-and-tools). Within one process
 * the runtime's per-agent queue already serializes turns; with several instances sharing one
 * Store, each turn also holds the agent's {@link TurnLock} while it runs, so two instances never
 * answer the same agent at once (each would read a history missing the other's answer).
 *
 * A lock is a lease: the holder renews it while the turn runs, and a holder that crashed stops
 * renewing, so its lock lapses after the lease instead of blocking the agent forever.
 */

/** A held turn lock. */
export interface TurnLease {
  /**
   * Aborted when the lease could not be kept (it expired before a renewal got through, or
   * another holder has it now): the turn must end, since it no longer runs alone.
   */
  readonly lost: AbortSignal;
  /** Gives the lock up. Idempotent; never rejects (a failed release lapses with the lease). */
  release(): Promise<void>;
}

/** Serializes the turns of each agent. */
export interface TurnLock {
  /**
   * Resolves once the caller holds the agent's lock, waiting as long as another holder has it.
   * Rejects with `signal.reason` when `signal` aborts first, and with SentinelError
   * `unavailable` when the lock service cannot be reached.
   */
  acquire(agentId: string, signal: AbortSignal): Promise<TurnLease>;
}

const NEVER_LOST = new AbortController().signal;
const GRANTED: TurnLease = Object.freeze({ lost: NEVER_LOST, release: () => Promise.resolve() });

/**
 * The single-instance lock (the default): always granted at once, because the runtime's own
 * per-agent queue already runs one turn at a time.
 */
export const inProcessTurnLock: TurnLock = Object.freeze({
  acquire(_agentId: string, signal: AbortSignal): Promise<TurnLease> {
    if (signal.aborted) return Promise.reject(signal.reason);
    return Promise.resolve(GRANTED);
  },
});
