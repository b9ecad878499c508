/**
 * Group commit for the SQLite store: the writes every turn and every new agent make (events,
 * log lines, messages, usage, agent rows and status) are queued and committed together once
 * per turn of the event loop, each in its own savepoint (a failing write rolls back alone), and
 * each caller's promise settles only after the COMMIT. A WAL commit costs far more than an
 * insert (measured here: ≈ 15k single-row commits/s against ≈ 90k rows/s in 1,000-row
 * transactions), so concurrent turns of many agents share one. Every other write first commits
 * what is queued ({@link GroupCommit.flush}), so writes still land in call order.
 */
import type { Database as SqliteDatabase, Transaction } from 'better-sqlite3';
import { run, sqliteFailure } from './errors.js';

type WriteOutcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** A write waiting for the group commit, with the promise its caller awaits. */
interface QueuedWrite {
  write: () => unknown;
  /** No savepoint needed (see {@link GroupCommit.enqueue}). */
  singleStatement: boolean;
  resolve: (value: unknown) => void;
  reject: (reason: unknown) => void;
}

/** What the group commit needs from its store. */
export interface GroupCommitHooks {
  /** The open connection; throws when the store is closed. */
  open(): SqliteDatabase;
  /** Runs inside the group's transaction, holding the write lock, before the first write. */
  beforeWrites(): void;
  /** BEGIN or COMMIT failed: nothing was stored, whatever the writes already did to the read caches. */
  commitFailed(): void;
}

/** The queue of one SQLite store's group-committed writes (see the file comment). */
export class GroupCommit {
  readonly #hooks: GroupCommitHooks;
  #queued: QueuedWrite[] = [];
  #scheduled = false;
  /** The group's transaction function, made once (better-sqlite3 builds several wrappers per call). */
  #transaction: Transaction<(queued: readonly QueuedWrite[], outcomes: WriteOutcome[]) => void> | undefined;

  constructor(hooks: GroupCommitHooks) {
    this.#hooks = hooks;
  }

  /**
   * Queues `write` for the group commit at the end of this turn of the event loop and resolves
   * with its result once the COMMIT returned (rejects with its own error, mapped like `run`).
   * `singleStatement`: the write changes the database with one statement only (reads aside),
   * which SQLite already undoes whole when it fails, so it needs no savepoint of its own.
   */
  enqueue<T>(write: () => T, singleStatement: boolean): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queued.push({ write, singleStatement, resolve: resolve as (value: unknown) => void, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        // setImmediate, not a microtask: every append issued while this turn of the loop
        // handles its I/O joins the same transaction.
        setImmediate(this.#commitScheduled);
      }
    });
  }

  /** Runs every queued write in one IMMEDIATE transaction, each in its own savepoint, then settles their promises. */
  flush(): void {
    if (this.#queued.length === 0) return;
    const queued = this.#queued;
    this.#queued = [];
    const outcomes: WriteOutcome[] = [];
    try {
      this.#groupTransaction().immediate(queued, outcomes);
    } catch (err) {
      this.#hooks.commitFailed();
      const failure = sqliteFailure(err);
      for (const { reject } of queued) reject(failure);
      return;
    }
    queued.forEach(({ resolve, reject }, i) => {
      const outcome = outcomes[i];
      if (outcome?.ok) resolve(outcome.value);
      else reject(outcome?.error);
    });
  }

  readonly #commitScheduled = (): void => {
    this.#scheduled = false;
    this.flush();
  };

  #groupTransaction(): Transaction<(queued: readonly QueuedWrite[], outcomes: WriteOutcome[]) => void> {
    if (this.#transaction === undefined) {
      const db = this.#hooks.open();
      // Called inside the group's transaction, a transaction function runs as a SAVEPOINT.
      const inSavepoint = db.transaction((work: () => unknown) => work());
      this.#transaction = db.transaction((queued: readonly QueuedWrite[], outcomes: WriteOutcome[]) => {
        this.#hooks.beforeWrites();
        for (const { write, singleStatement } of queued) {
          try {
            outcomes.push({ ok: true, value: run(singleStatement ? write : () => inSavepoint(write)) });
          } catch (err) {
            outcomes.push({ ok: false, error: err });
          }
        }
      });
    }
    this.#hooks.open();
    return this.#transaction;
  }
}
