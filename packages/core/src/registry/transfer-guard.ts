/**
 * Deadlines for registry transfers. A registry (or anything in between) that answers slowly
 * enough never trips a per-read timeout: a few bytes every 20 seconds keep undici's body timeout
 * happy forever. So every push and pull also has an overall deadline and a minimum rate
 * averaged over a window; either one aborts the transfer with `upstream_timeout`. The transfer
 * code already stores nothing before everything was verified, so an abort leaves nothing behind.
 */
import { SentinelError } from '../contract/errors.js';

/** How long a transfer may take, and how slow it may get. */
export interface TransferLimits {
  /** Milliseconds for the whole push or pull; 0 for none. */
  timeoutMs: number;
  /** Bytes per second that must move, averaged over each `rateWindowMs`; 0 for no minimum. */
  minBytesPerSecond: number;
  /** Milliseconds the minimum rate is averaged over. */
  rateWindowMs: number;
}

/** The defaults: 10 minutes, 1 KiB/s over 30 s. */
export const DEFAULT_TRANSFER_LIMITS: Readonly<TransferLimits> = Object.freeze({ timeoutMs: 600_000, minBytesPerSecond: 1024, rateWindowMs: 30_000 });

function duration(ms: number): string {
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  if (ms % 1000 === 0) return `${ms / 1000} s`;
  return `${ms} ms`;
}

/**
 * Watches one transfer: `signal` aborts (reason: SentinelError `upstream_timeout`) when the
 * deadline passes, or when a whole window went by with fewer than `minBytesPerSecond × window`
 * bytes counted, or when `outer` aborts (its reason passes through). Call `dispose()` when done.
 */
export class TransferGuard {
  readonly signal: AbortSignal;
  private readonly controller = new AbortController();
  private readonly timers: NodeJS.Timeout[] = [];
  private moved = 0;

  constructor(limits: TransferLimits, what: { kind: 'push' | 'pull'; registry: string }, outer?: AbortSignal) {
    this.signal = outer ? AbortSignal.any([outer, this.controller.signal]) : this.controller.signal;
    const fail = (message: string) => {
      this.dispose();
      this.controller.abort(new SentinelError('upstream_timeout', message));
    };
    if (limits.timeoutMs > 0) {
      this.timers.push(setTimeout(() => fail(`the ${what.kind} ${what.kind === 'push' ? 'to' : 'from'} registry ${what.registry} did not finish within ${duration(limits.timeoutMs)}`), limits.timeoutMs));
    }
    if (limits.minBytesPerSecond > 0 && limits.rateWindowMs > 0) {
      const needed = Math.ceil((limits.minBytesPerSecond * limits.rateWindowMs) / 1000);
      let atWindowStart = 0;
      this.timers.push(
        setInterval(() => {
          const inWindow = this.moved - atWindowStart;
          atWindowStart = this.moved;
          if (inWindow < needed) {
            fail(
              `registry ${what.registry} moved ${inWindow} bytes in ${duration(limits.rateWindowMs)}, below the minimum of ${limits.minBytesPerSecond} bytes/s; the ${what.kind} was abandoned`,
            );
          }
        }, limits.rateWindowMs),
      );
    }
    for (const timer of this.timers) timer.unref();
  }

  /** Counts bytes that moved (either direction). */
  count = (bytes: number): void => {
    this.moved += bytes;
  };

  /** Stops the clocks. Idempotent. */
  dispose(): void {
    for (const timer of this.timers.splice(0)) clearTimeout(timer);
  }
}
