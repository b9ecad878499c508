/**
 * What the chat session and the events iterator share: opening one WebSocket with the client's
 * credential and telling a refusal that will not change (401/403/404, 4401, 1008) from a drop
 * worth another try, the reconnect backoff, and a small async queue. Browser-safe: only the
 * WebSocketLike surface, no node: imports.
 */
import { abortedError, SentinelApiError } from './errors.js';
import { SUBPROTOCOL, type QueryValue, type Transport, type WebSocketLike } from './transport.js';

/** How a live socket reconnects after a drop. */
export interface ReconnectOptions {
  /** The first wait, in ms. Default 250. */
  initialDelayMs?: number;
  /** The longest wait, in ms. Default 10 000. */
  maxDelayMs?: number;
  /** Attempts in a row without an open socket before giving up (`connection_lost`). Default: no limit. */
  maxAttempts?: number;
}

/** Upgrade statuses that another attempt cannot fix: a bad `since`, no or a revoked credential, a missing scope, an unknown agent. */
const FATAL_STATUSES = new Set([400, 401, 403, 404]);

/**
 * The wait before attempt `attempt` (0 for the first retry): exponential, capped, with "equal
 * jitter" (half fixed, half random) so many clients dropped together do not come back together.
 */
export function backoffDelay(attempt: number, options: ReconnectOptions = {}): number {
  const initial = options.initialDelayMs ?? 250;
  const max = options.maxDelayMs ?? 10_000;
  const ceiling = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/** Resolves after `ms`, or rejects with `aborted` when the signal ends first. */
export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortedError(signal));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortedError(signal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A socket that failed or ended: whether to try again, and the error to report if not. */
export interface SocketEnd {
  retry: boolean;
  /** The server closed normally (1000, e.g. the agent was deleted): nothing more will come. */
  finished: boolean;
  error: SentinelApiError;
}

/** The end of an open socket, by its close code (README, "Close codes"). */
export function classifyClose(code: number, reason: string): SocketEnd {
  if (code === 4401) {
    return { retry: false, finished: false, error: new SentinelApiError({ status: 401, code: 'unauthorized', message: `the server closed the socket: ${reason || 'credential revoked'}` }) };
  }
  if (code === 1008) {
    return { retry: false, finished: false, error: new SentinelApiError({ status: 0, code: 'connection_closed', message: `the server closed the socket: ${reason || 'policy violation'} (1008)` }) };
  }
  if (code === 1000) {
    return { retry: false, finished: true, error: new SentinelApiError({ status: 0, code: 'connection_closed', message: `the server closed the socket: ${reason || 'normal closure'}` }) };
  }
  return { retry: true, finished: false, error: new SentinelApiError({ status: 0, code: 'connection_lost', message: `the connection dropped (${code}${reason ? ` ${reason}` : ''})` }) };
}

/** Handlers of one socket, called after it opened. */
export interface SocketHandlers {
  onText(text: string): void;
  onClose(end: SocketEnd): void;
}

/**
 * How a socket authenticates: `subprotocol` sends the credential as `bearer.<credential>` next to
 * `sentinel.v1` (works in browsers and Node); `ticket` first mints a one-time ticket
 * (`POST /v1/ws-tickets`, one per connection, reconnects included) and opens `?ticket=`, so the
 * long-lived credential never rides on the upgrade (README, "WebSocket tickets").
 */
export type SocketAuth = 'subprotocol' | 'ticket';

/** Which socket to open. */
export interface SocketTarget {
  agentId: string;
  channel: 'chat' | 'events';
  query?: Record<string, QueryValue>;
  auth?: SocketAuth;
}

/**
 * Opens the agent's chat or events WebSocket and resolves once it is open. Rejects with a
 * SentinelApiError: a refused upgrade with its status (when the WebSocket says it, as `ws` does;
 * a browser does not, so then a GET of the agent asks the API why), `network_error` when the
 * server cannot be reached, `aborted` for the signal. {@link isRetryable} tells whether another
 * attempt may succeed.
 */
export async function openSocket(transport: Transport, target: SocketTarget, signal: AbortSignal | undefined, handlers: SocketHandlers): Promise<WebSocketLike> {
  const WebSocketClass = transport.WebSocket;
  if (WebSocketClass === undefined) throw new TypeError('no WebSocket: pass options.WebSocket (or use the Node entry, which brings `ws`)');
  if (signal?.aborted) throw abortedError(signal);
  const { agentId, channel } = target;
  const path = `/v1/agents/${encodeURIComponent(agentId)}/${channel}`;
  let query = target.query ?? {};
  let protocols = transport.protocols();
  if (target.auth === 'ticket') {
    let ticket: string;
    try {
      ({ ticket } = await transport.request<{ ticket: string }>('POST', '/v1/ws-tickets', { body: { agent_id: agentId, channel }, ...(signal ? { signal } : {}) }));
    } catch (err) {
      if (err instanceof SentinelApiError) throw retryable(err, !FATAL_STATUSES.has(err.status) && err.code !== 'aborted');
      throw err;
    }
    query = { ...query, ticket };
    protocols = [SUBPROTOCOL];
  }
  return new Promise<WebSocketLike>((resolve, reject) => {
    let opened = false;
    let failure = '';
    const ws = new WebSocketClass(transport.wsUrl(path, query), protocols);
    const onAbort = () => {
      try {
        ws.close(1000);
      } catch {
        // Closing a socket still connecting may throw in some implementations; it is dropped anyway.
      }
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    ws.addEventListener('open', () => {
      opened = true;
      signal?.removeEventListener('abort', onAbort);
      resolve(ws);
    });
    ws.addEventListener('message', (event) => {
      if (opened) handlers.onText(textOf(event.data));
    });
    ws.addEventListener('error', (event) => {
      const message = (event as { message?: unknown }).message;
      if (typeof message === 'string') failure = message;
    });
    ws.addEventListener('close', (event) => {
      if (opened) {
        handlers.onClose(classifyClose(event.code, event.reason));
        return;
      }
      signal?.removeEventListener('abort', onAbort);
      if (signal?.aborted) {
        reject(abortedError(signal));
        return;
      }
      refusal(transport, agentId, failure, signal).then(reject, reject);
    });
  });
}

/** A SentinelApiError for an upgrade that never opened, with `retryable` set. */
async function refusal(transport: Transport, agentId: string, failure: string, signal: AbortSignal | undefined): Promise<SentinelApiError> {
  const status = /Unexpected server response: (\d{3})/.exec(failure)?.[1];
  if (status !== undefined) {
    const code = Number(status);
    if (FATAL_STATUSES.has(code)) {
      // The refusal's body is not readable through a WebSocket: the same question over REST gives
      // the server's own code, message and docs (the upgrade refused for the same reason).
      const detail = await askWhy(transport, agentId, signal);
      return retryable(detail?.status === code ? detail : new SentinelApiError({ status: code, code: `http_${code}`, message: `the server refused the WebSocket: HTTP ${code}` }), false);
    }
    return retryable(new SentinelApiError({ status: code, code: code === 429 ? 'rate_limited' : 'unavailable', message: `the server refused the WebSocket: HTTP ${code}` }), true);
  }
  // No status (a browser hides it, or the server is unreachable): the API tells what it would refuse.
  const detail = await askWhy(transport, agentId, signal);
  if (detail !== undefined && FATAL_STATUSES.has(detail.status)) return retryable(detail, false);
  return retryable(new SentinelApiError({ status: 0, code: 'network_error', message: `cannot open the WebSocket${failure ? `: ${failure}` : ''}` }), true);
}

/** The API's error for this agent and credential, if it refuses (undefined when it answers, or cannot be reached). */
async function askWhy(transport: Transport, agentId: string, signal: AbortSignal | undefined): Promise<SentinelApiError | undefined> {
  try {
    await transport.request('GET', `/v1/agents/${encodeURIComponent(agentId)}`, signal ? { signal } : {});
    return undefined;
  } catch (err) {
    return err instanceof SentinelApiError && err.status !== 0 ? err : undefined;
  }
}

const RETRYABLE = new WeakMap<SentinelApiError, boolean>();

function retryable(error: SentinelApiError, value: boolean): SentinelApiError {
  RETRYABLE.set(error, value);
  return error;
}

/** Whether an error from {@link openSocket} may go away with another attempt. */
export function isRetryable(error: unknown): boolean {
  return error instanceof SentinelApiError && RETRYABLE.get(error) === true;
}

function textOf(data: unknown): string {
  if (typeof data === 'string') return data;
  if (data instanceof ArrayBuffer) return new TextDecoder().decode(data);
  if (ArrayBuffer.isView(data)) return new TextDecoder().decode(data);
  return String(data);
}

/**
 * An unbounded async queue read by one consumer: `push` items, then `end()` or `fail(err)`.
 * The sockets are read as fast as frames come (so the server never closes a slow reader with
 * 1008); the queue holds them until the consumer takes them.
 */
export class AsyncQueue<T> {
  readonly #items: T[] = [];
  #waiter: { resolve: (result: IteratorResult<T>) => void; reject: (err: unknown) => void } | undefined;
  #done = false;
  #error: unknown;
  #failed = false;

  get done(): boolean {
    return this.#done;
  }

  push(item: T): void {
    if (this.#done) return;
    if (this.#waiter) {
      const waiter = this.#waiter;
      this.#waiter = undefined;
      waiter.resolve({ value: item, done: false });
    } else this.#items.push(item);
  }

  end(): void {
    if (this.#done) return;
    this.#done = true;
    this.#settle();
  }

  fail(error: unknown): void {
    if (this.#done) return;
    this.#done = true;
    this.#failed = true;
    this.#error = error;
    this.#settle();
  }

  #settle(): void {
    if (!this.#waiter || this.#items.length > 0) return;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (this.#failed) {
      this.#failed = false;
      waiter.reject(this.#error);
    } else waiter.resolve({ value: undefined, done: true });
  }

  /** The next item; after the end, done (or the failure, once). */
  next(): Promise<IteratorResult<T>> {
    if (this.#items.length > 0) return Promise.resolve({ value: this.#items.shift() as T, done: false });
    if (this.#done) {
      if (this.#failed) {
        this.#failed = false;
        return Promise.reject(this.#error);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }
}
