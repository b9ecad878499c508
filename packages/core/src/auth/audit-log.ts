/**
 * The audit log: the {@link AuditRecorder} the server records security-relevant actions through
 * (contract/audit.ts), kept in the Store's `audit_log` (migration 8) and read by
 * `GET /v1/audit`.
 *
 * `record()` is on the path of logins and deletes, so it neither throws nor waits: it stamps the
 * entry with the time and queues it. The queue is written in batches, one batch in flight at a
 * time (so seq order is record order), on the next turn of the event loop by default
 * (`flushDelayMs`). The flush window, the longest an entry may be lost to a `kill -9`, is
 * therefore that delay plus one write: with SQLite one group commit (a few ms), with PostgreSQL
 * one round trip. `close()` writes whatever is queued, so a clean shutdown loses nothing.
 *
 * A store failure is logged (count and actions, never an entry's fields) and the batch retried
 * a few times, then given up with an error line: the audit log must not take the server down,
 * nor grow without bound while the database is away (`maxQueued`).
 */
import { isSentinelError } from '../contract/errors.js';
import { silentLogger, type Logger } from '../contract/logger.js';
import type { AuditEntry, AuditEvent, AuditQuery, AuditReader, AuditRecorder, NewAuditEntry } from '../contract/audit.js';
import type { Store } from '../store/types.js';

export interface AuditLogOptions {
  store: Pick<Store, 'appendAudit' | 'listAudit'>;
  /** Where write failures are reported. Default silent. */
  logger?: Logger;
  /** How long an entry waits for more to join its batch. Default 0: the next turn of the event loop. */
  flushDelayMs?: number;
  /** Most entries waiting to be written (a slow or absent store); later ones are dropped and reported. Default 10,000. */
  maxQueued?: number;
  /** Wait before retrying a batch the store refused. Default 1000 ms. */
  retryDelayMs?: number;
  /** The clock entries are stamped with. Default `Date.now`. */
  now?: () => number;
}

/** Entries one store call writes at most (a burst is split). */
const MAX_BATCH = 500;
/** Attempts per batch before it is given up. */
const MAX_ATTEMPTS = 3;

/** The Store-backed audit log (see the file comment). */
export class AuditLog implements AuditRecorder, AuditReader {
  readonly #store: AuditLogOptions['store'];
  readonly #log: Logger;
  readonly #flushDelayMs: number;
  readonly #maxQueued: number;
  readonly #retryDelayMs: number;
  readonly #now: () => number;
  #queue: NewAuditEntry[] = [];
  /** Failed attempts of the batch at the head of the queue. */
  #attempts = 0;
  #timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  #draining: Promise<void> | undefined;
  #dropped = 0;
  #closed = false;

  constructor(options: AuditLogOptions) {
    this.#store = options.store;
    this.#log = options.logger ?? silentLogger;
    this.#flushDelayMs = options.flushDelayMs ?? 0;
    this.#maxQueued = options.maxQueued ?? 10_000;
    this.#retryDelayMs = options.retryDelayMs ?? 1000;
    this.#now = options.now ?? Date.now;
  }

  /** Queues the event, stamped now; never throws, never waits (see the file comment). */
  record(event: AuditEvent): void {
    try {
      if (this.#closed) {
        this.#log.warn('audit entry dropped: the audit log is closed', { action: event.action });
        return;
      }
      if (this.#queue.length >= this.#maxQueued) {
        if (this.#dropped++ === 0) this.#log.error('audit entries dropped: too many waiting for the store', { max_queued: this.#maxQueued });
        return;
      }
      this.#queue.push({
        at: new Date(this.#now()).toISOString(),
        action: event.action,
        actor: event.actor,
        target: event.target,
        address: event.address,
        request_id: event.request_id,
        // A copy taken now: the caller may change its object afterwards. Throws on what JSON
        // cannot hold (caught below), before it could fail a whole batch.
        ...(event.details === undefined ? {} : { details: JSON.parse(JSON.stringify(event.details)) as Record<string, unknown> }),
      });
      this.#schedule(this.#flushDelayMs);
    } catch (err) {
      this.#log.error('audit entry dropped: it could not be recorded', { action: event?.action, reason: reasonOf(err) });
    }
  }

  /** Entries oldest first (see {@link Store.listAudit}); only what is written, not what is queued. */
  list(query: AuditQuery = {}): Promise<AuditEntry[]> {
    return this.#store.listAudit(query);
  }

  /** Resolves once every entry recorded before the call is written (or given up after its retries). */
  async flush(): Promise<void> {
    while (this.#queue.length > 0 || this.#draining !== undefined) {
      this.#cancelTimer();
      await (this.#draining ?? this.#drain(true));
    }
    this.#cancelTimer();
  }

  /** Writes what is queued, then refuses new entries (they are dropped with a warning). Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.flush();
  }

  #schedule(delayMs: number): void {
    if (this.#timer !== undefined || this.#draining !== undefined) return;
    const run = (): void => {
      this.#timer = undefined;
      // A flush may have started a drain meanwhile; it reschedules when it is done.
      if (this.#draining === undefined) void this.#drain(false);
    };
    this.#timer = delayMs === 0 ? setImmediate(run) : setTimeout(run, delayMs);
  }

  #cancelTimer(): void {
    if (this.#timer === undefined) return;
    clearTimeout(this.#timer as NodeJS.Timeout);
    clearImmediate(this.#timer as NodeJS.Immediate);
    this.#timer = undefined;
  }

  /**
   * Writes batches until the queue is empty. On a failure the batch stays at the head and is
   * retried after `retryDelayMs`; `final` (flush/close) retries at once instead of waiting.
   */
  #drain(final: boolean): Promise<void> {
    const draining = (async () => {
      while (this.#queue.length > 0) {
        const batch = this.#queue.slice(0, MAX_BATCH);
        try {
          await this.#store.appendAudit(batch);
        } catch (err) {
          this.#attempts++;
          const givenUp = this.#attempts >= MAX_ATTEMPTS;
          this.#log.error(givenUp ? 'audit entries lost: the store refused them' : 'audit entries not stored yet: the store refused them; retrying', {
            count: batch.length,
            actions: [...new Set(batch.map((entry) => entry.action))],
            attempt: this.#attempts,
            reason: reasonOf(err),
          });
          if (!givenUp) {
            if (final) continue;
            return 'retry' as const;
          }
        }
        this.#queue.splice(0, batch.length);
        this.#attempts = 0;
        if (this.#dropped > 0) {
          this.#log.error('audit entries were dropped while the store was behind', { dropped: this.#dropped });
          this.#dropped = 0;
        }
      }
      return 'done' as const;
    })().then(
      (outcome) => {
        this.#draining = undefined;
        if (outcome === 'retry') this.#schedule(this.#retryDelayMs);
        else if (this.#queue.length > 0) this.#schedule(this.#flushDelayMs);
      },
      // Not reached (every await above is caught); kept so a bug cannot leave an unhandled rejection.
      (err: unknown) => {
        this.#draining = undefined;
        this.#log.error('audit log writer failed', { reason: reasonOf(err) });
      },
    );
    this.#draining = draining;
    return draining;
  }
}

/** A failure's message for a log line: ours are fixed texts; a foreign error gives only its name. */
function reasonOf(err: unknown): string {
  if (isSentinelError(err)) return err.message;
  return err instanceof Error ? err.name : typeof err;
}
