/**
 * A bounded bridge from push (bus listeners, FrameSinks) to pull (the AsyncIterable a streamed
 * route returns and a transport drains at the client's pace). The buffer is bounded on purpose:
 * a client that reads slower than events arrive must not grow the server's memory, so past
 * `maxBuffered` the stream fails (the transport then closes the response) instead.
 */
import { SentinelError } from './errors.js';

export interface PushIterableOptions {
  /** Items held for a consumer that has not taken them yet; one more fails the stream. Default 1000. */
  maxBuffered?: number;
  /** Aborting ends the stream at once, dropping what is buffered (the client is gone). Default: none. */
  signal?: AbortSignal;
  /**
   * Called once when the stream is over for any reason: the consumer stopped (`return()`), the
   * signal aborted, the producer called `end()`/`fail()`, or the buffer overflowed. The place
   * for the producer to let go of its source (unsubscribe). Default: none.
   */
  onReturn?: () => void;
}

export interface PushIterable<T> {
  /** Single-consumer: iterating it a second time throws. */
  readonly iterable: AsyncIterable<T>;
  /**
   * Queues one item, in order. Returns false when the item was not taken: the stream is over,
   * or the buffer was full (the stream then fails with `unavailable`, after the buffered items).
   */
  push(item: T): boolean;
  /** Ends the stream once the consumer has taken what is buffered. Idempotent. */
  end(): void;
  /** Fails the stream: the consumer gets the buffered items, then `err` is thrown. Ignored once over. */
  fail(err: unknown): void;
  /** Items pushed and not taken yet. */
  readonly buffered: number;
  /**
   * Resolves once the consumer has taken every buffered item, or the stream is over: lets a
   * producer with a backlog (a replay) push it in batches at the consumer's pace.
   */
  drained(): Promise<void>;
}

/** Past this many consumed slots the buffer array is compacted (amortized O(1) dequeue). */
const COMPACT_AFTER = 1024;

/** Creates a {@link PushIterable} (see {@link PushIterableOptions} for the defaults). */
export function createPushIterable<T>(options: PushIterableOptions = {}): PushIterable<T> {
  const maxBuffered = options.maxBuffered ?? 1000;
  if (!Number.isSafeInteger(maxBuffered) || maxBuffered < 1) throw new RangeError('maxBuffered must be a positive integer');
  const { signal, onReturn } = options;

  let buffer: T[] = [];
  let head = 0;
  // open → (ending | failing) → done. `closed` drops the buffer (consumer left).
  let state: 'open' | 'ending' | 'failing' | 'closed' = 'open';
  let failure: unknown;
  let waiter: { resolve(r: IteratorResult<T>): void; reject(err: unknown): void } | undefined;
  let released = false;
  let iterated = false;
  let drainWaiters: (() => void)[] = [];

  const buffered = () => buffer.length - head;

  function wakeDrainWaiters(): void {
    if (drainWaiters.length === 0 || (buffered() > 0 && state !== 'closed')) return;
    const waiters = drainWaiters;
    drainWaiters = [];
    for (const wake of waiters) wake();
  }

  function release(): void {
    if (released) return;
    released = true;
    signal?.removeEventListener('abort', onAbort);
    onReturn?.();
  }

  function settleWaiter(): void {
    if (!waiter) return;
    const w = waiter;
    if (buffered() > 0) {
      waiter = undefined;
      w.resolve({ value: take(), done: false });
    } else if (state === 'ending' || state === 'closed') {
      waiter = undefined;
      w.resolve({ value: undefined, done: true });
    } else if (state === 'failing') {
      waiter = undefined;
      state = 'closed';
      w.reject(failure);
    }
  }

  function take(): T {
    const item = buffer[head] as T;
    buffer[head] = undefined as T;
    head++;
    if (head === buffer.length) {
      buffer = [];
      head = 0;
      wakeDrainWaiters();
    } else if (head >= COMPACT_AFTER) {
      buffer = buffer.slice(head);
      head = 0;
    }
    return item;
  }

  function close(): void {
    if (state === 'closed') return;
    state = 'closed';
    buffer = [];
    head = 0;
    settleWaiter();
    wakeDrainWaiters();
    release();
  }

  function onAbort(): void {
    close();
  }

  function fail(err: unknown): void {
    if (state !== 'open') return;
    state = 'failing';
    failure = err;
    settleWaiter();
    release();
  }

  if (signal?.aborted) close();
  else signal?.addEventListener('abort', onAbort, { once: true });

  const iterator: AsyncIterator<T> = {
    next(): Promise<IteratorResult<T>> {
      if (buffered() > 0) return Promise.resolve({ value: take(), done: false });
      if (state === 'failing') {
        state = 'closed';
        return Promise.reject(failure);
      }
      if (state !== 'open') return Promise.resolve({ value: undefined, done: true });
      if (waiter) return Promise.reject(new Error('push iterable: next() called while a previous next() is pending'));
      return new Promise((resolve, reject) => {
        waiter = { resolve, reject };
      });
    },
    return(): Promise<IteratorResult<T>> {
      close();
      return Promise.resolve({ value: undefined, done: true });
    },
  };

  return {
    iterable: {
      [Symbol.asyncIterator]() {
        if (iterated) throw new TypeError('a push iterable can be iterated only once');
        iterated = true;
        return iterator;
      },
    },
    push(item: T): boolean {
      if (state !== 'open') return false;
      if (waiter) {
        const w = waiter;
        waiter = undefined;
        w.resolve({ value: item, done: false });
        return true;
      }
      if (buffered() >= maxBuffered) {
        fail(new SentinelError('unavailable', `the client reads too slowly: more than ${maxBuffered} items waiting; the stream was closed`));
        return false;
      }
      buffer.push(item);
      return true;
    },
    end(): void {
      if (state !== 'open') return;
      state = 'ending';
      settleWaiter();
      release();
    },
    fail,
    get buffered() {
      return buffered();
    },
    drained(): Promise<void> {
      if (buffered() === 0 || state === 'closed') return Promise.resolve();
      return new Promise((resolve) => drainWaiters.push(resolve));
    },
  };
}
