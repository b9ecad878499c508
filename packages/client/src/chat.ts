/**
 * `client.chat(agentId)`: a session over `/v1/agents/{id}/chat` (README, "A chat session").
 * Each `send` is one turn with a client-made message_id; its frames are routed to that turn's
 * iterable, which ends at the turn's terminal frame (`stream_end`, `response`, or an `error` with
 * its message_id: the server sends exactly one).
 *
 * When the socket drops the session reconnects with backoff. A message already written to the
 * dropped socket may have reached the agent, and the server cannot resume it yet (issue 16), so
 * it is NEVER sent again (that would run the turn twice): its iterable fails with
 * `connection_lost` instead, and the caller decides. Messages not yet written (sent while the
 * socket was down) go out once the next socket opens. Frame types are the server's own
 * (`import type` from the core: types only, nothing of the core is bundled).
 */
import type { ErrorFrame, ServerFrame, ToolResultFrame } from '@sentinel/api-core';
import { abortedError, SentinelApiError } from './errors.js';
import { AsyncQueue, backoffDelay, isRetryable, openSocket, sleep, type ReconnectOptions, type SocketAuth, type SocketEnd } from './socket.js';
import type { Transport, WebSocketLike } from './transport.js';

export type { ServerFrame } from '@sentinel/api-core';

export interface ChatOptions {
  /** Closes the session when it aborts. */
  signal?: AbortSignal;
  /**
   * Reconnection after a socket that was open drops. Default: retry without limit, 250 ms
   * doubling to 10 s, with jitter; `false`: a drop ends the session with `connection_lost`. The
   * first socket is not retried: a server that is down or refuses fails the session at once.
   */
  reconnect?: ReconnectOptions | false;
  /** How the socket authenticates: `subprotocol` (default) or a one-time `ticket` per connection (see {@link SocketAuth}). */
  auth?: SocketAuth;
  /** Sees every frame the server sends, those of turns too (e.g. `connection_established`). */
  onFrame?: (frame: ServerFrame) => void;
}

export interface ChatSendOptions {
  /** The message's id (`^[A-Za-z0-9._:-]{1,128}$`). Default: `crypto.randomUUID()`. */
  messageId?: string;
  /** `false` asks for one `response` frame instead of a stream. Default true. */
  stream?: boolean;
  /** Cancels the turn on the server and fails its iterable with `aborted`. */
  signal?: AbortSignal;
}

export interface ToolRequestOptions {
  /** Default: `crypto.randomUUID()`. */
  requestId?: string;
  /** Rejects with `aborted` (the server finishes the tool anyway; its result is dropped). */
  signal?: AbortSignal;
}

/**
 * One message's frames, in order, ending with its terminal frame. Fails with a SentinelApiError:
 * `connection_lost` (the socket dropped mid-turn; see the module comment), `session_closed`,
 * `aborted`, or the error that ended the session (e.g. `unauthorized` after a 4401 close).
 * Breaking out of the loop stops the delivery but does not cancel the turn (use `cancel`).
 */
export interface ChatTurn extends AsyncIterable<ServerFrame> {
  readonly messageId: string;
}

type Phase = 'queued' | 'sent';

interface Turn {
  id: string;
  text: string;
  phase: Phase;
  queue: AsyncQueue<ServerFrame>;
  /** The consumer stopped reading: frames are dropped until the terminal one. */
  detached: boolean;
  release(): void;
}

interface ToolCall {
  id: string;
  text: string;
  phase: Phase;
  resolve(frame: ToolResultFrame): void;
  reject(err: unknown): void;
  release(): void;
}

function isTerminal(frame: ServerFrame): boolean {
  return frame.type === 'stream_end' || frame.type === 'response' || frame.type === 'error';
}

/** A SentinelApiError for an `error` frame (status 0: no HTTP answer carried it). */
export function frameError(frame: ErrorFrame): SentinelApiError {
  return new SentinelApiError({
    status: 0,
    code: frame.code,
    message: frame.error,
    docs: `/docs/errors#${frame.code}`,
    details: frame,
    ...(frame.retry_after === undefined ? {} : { retryAfter: frame.retry_after }),
  });
}

function listen(signal: AbortSignal | undefined, onAbort: () => void): () => void {
  if (!signal) return () => undefined;
  signal.addEventListener('abort', onAbort, { once: true });
  return () => signal.removeEventListener('abort', onAbort);
}

export class ChatSession {
  readonly #transport: Transport;
  readonly #agentId: string;
  readonly #options: ChatOptions;
  readonly #turns = new Map<string, Turn>();
  readonly #tools = new Map<string, ToolCall>();
  /** Frames waiting for an open socket, in the order they were asked for. */
  #outbox: Array<Turn | ToolCall> = [];
  #ws: WebSocketLike | undefined;
  /** Why the session ended, once it has. */
  #ended: SentinelApiError | undefined;
  readonly #stop = new AbortController();
  #opens = 0;
  #readyWaiters: Array<{ resolve: () => void; reject: (err: unknown) => void }> = [];
  #endWaiters: Array<(reason: SentinelApiError) => void> = [];
  #dropped: (() => void) | undefined;
  readonly #unlisten: () => void;

  constructor(transport: Transport, agentId: string, options: ChatOptions = {}) {
    this.#transport = transport;
    this.#agentId = agentId;
    this.#options = options;
    this.#unlisten = listen(options.signal, () => this.#end(abortedError(options.signal)));
    if (options.signal?.aborted) this.#end(abortedError(options.signal));
    else void this.#run();
  }

  /** Times a socket opened (1 after the first connect, 2 after one reconnect, ...). */
  get connections(): number {
    return this.#opens;
  }

  /** Whether a socket is open now. */
  get connected(): boolean {
    return this.#ws !== undefined;
  }

  /** Resolves once a socket is open (at once if one is); rejects if the session ended. */
  ready(): Promise<void> {
    if (this.#ended) return Promise.reject(this.#ended);
    if (this.#ws) return Promise.resolve();
    return new Promise((resolve, reject) => this.#readyWaiters.push({ resolve, reject }));
  }

  /**
   * Resolves, never rejects, once the session has ended, with why: `session_closed` (close()),
   * `aborted`, `unauthorized` (a 4401 close), `connection_closed` (1000 agent deleted, 1008),
   * `connection_lost` (reconnecting gave up), or the refusal of the first socket (e.g. 404).
   */
  closed(): Promise<SentinelApiError> {
    if (this.#ended) return Promise.resolve(this.#ended);
    return new Promise((resolve) => this.#endWaiters.push(resolve));
  }

  /** Sends one message (now, or once the socket is open) and returns its frames. */
  send(content: string, options: ChatSendOptions = {}): ChatTurn {
    const id = options.messageId ?? globalThis.crypto.randomUUID();
    const queue = new AsyncQueue<ServerFrame>();
    const iterable: ChatTurn = {
      messageId: id,
      [Symbol.asyncIterator]: () => ({
        next: () => queue.next(),
        return: (): Promise<IteratorResult<ServerFrame>> => {
          const turn = this.#turns.get(id);
          if (turn?.queue === queue) turn.detached = true;
          queue.end();
          return Promise.resolve({ value: undefined, done: true });
        },
      }),
    };
    if (this.#ended) {
      queue.fail(this.#ended);
      return iterable;
    }
    if (this.#turns.has(id)) {
      queue.fail(new SentinelApiError({ status: 0, code: 'conflict', message: `message_id "${id}" is already in progress in this session` }));
      return iterable;
    }
    if (options.signal?.aborted) {
      queue.fail(abortedError(options.signal));
      return iterable;
    }
    const text = JSON.stringify({ type: 'message', content, message_id: id, ...(options.stream === false ? { stream: false } : {}) });
    const turn: Turn = { id, text, phase: 'queued', queue, detached: false, release: () => undefined };
    turn.release = listen(options.signal, () => {
      if (this.#turns.get(id) !== turn) return;
      if (turn.phase === 'sent') this.#write(JSON.stringify({ type: 'cancel', message_id: id }));
      this.#forget(turn);
      queue.fail(abortedError(options.signal));
    });
    this.#turns.set(id, turn);
    this.#dispatch(turn);
    return iterable;
  }

  /**
   * Runs one of the image's tools directly. Resolves with its `tool_result` (whatever its
   * `status`), rejects with the `error` frame as a SentinelApiError (e.g. `forbidden`), or with
   * `connection_lost` when the socket dropped before the answer (it is not sent again).
   */
  toolRequest(tool: string, parameters: Record<string, unknown> = {}, options: ToolRequestOptions = {}): Promise<ToolResultFrame> {
    if (this.#ended) return Promise.reject(this.#ended);
    if (options.signal?.aborted) return Promise.reject(abortedError(options.signal));
    const id = options.requestId ?? globalThis.crypto.randomUUID();
    if (this.#tools.has(id)) return Promise.reject(new SentinelApiError({ status: 0, code: 'conflict', message: `request_id "${id}" is already in progress in this session` }));
    return new Promise<ToolResultFrame>((resolve, reject) => {
      const call: ToolCall = {
        id,
        text: JSON.stringify({ type: 'tool_request', tool, parameters, request_id: id }),
        phase: 'queued',
        resolve,
        reject,
        release: () => undefined,
      };
      call.release = listen(options.signal, () => {
        if (this.#tools.get(id) !== call) return;
        this.#forget(call);
        reject(abortedError(options.signal));
      });
      this.#tools.set(id, call);
      this.#dispatch(call);
    });
  }

  /**
   * Asks the server to end a message (`stream_end` with reason `cancelled` follows on its
   * iterable). A message still waiting for the socket is never sent: its iterable just ends.
   */
  cancel(messageId: string): void {
    const turn = this.#turns.get(messageId);
    if (turn?.phase === 'queued') {
      this.#forget(turn);
      turn.queue.end();
      return;
    }
    this.#write(JSON.stringify({ type: 'cancel', message_id: messageId }));
  }

  /** Closes the socket and ends the session: open turns and tool requests fail with `session_closed`. */
  close(): void {
    this.#end(new SentinelApiError({ status: 0, code: 'session_closed', message: 'the chat session was closed' }));
  }

  // ---- the connection ----------------------------------------------------------------------

  async #run(): Promise<void> {
    const reconnect = this.#options.reconnect;
    let attempt = 0;
    while (!this.#ended) {
      try {
        const target = { agentId: this.#agentId, channel: 'chat' as const, ...(this.#options.auth ? { auth: this.#options.auth } : {}) };
        const ws = await openSocket(this.#transport, target, this.#stop.signal, {
          onText: (text) => this.#receive(text),
          onClose: (end) => this.#onDrop(end),
        });
        if (this.#ended) {
          ws.close(1000);
          return;
        }
        attempt = 0;
        this.#opens += 1;
        this.#ws = ws;
        for (const waiter of this.#readyWaiters.splice(0)) waiter.resolve();
        for (const item of this.#outbox.splice(0)) this.#dispatch(item);
        await new Promise<void>((resolve) => {
          this.#dropped = resolve;
        });
      } catch (err) {
        if (this.#ended) return;
        // Before any socket opened, a failure is the answer (a server down is not waited for).
        if (!isRetryable(err) || this.#opens === 0) {
          this.#end(err instanceof SentinelApiError ? err : new SentinelApiError({ status: 0, code: 'network_error', message: String(err), cause: err }));
          return;
        }
      }
      if (this.#ended) return;
      if (reconnect === false || (reconnect?.maxAttempts !== undefined && attempt >= reconnect.maxAttempts)) {
        this.#end(new SentinelApiError({ status: 0, code: 'connection_lost', message: 'the chat connection dropped and was not reopened' }));
        return;
      }
      try {
        await sleep(backoffDelay(attempt++, reconnect === undefined ? {} : reconnect), this.#stop.signal);
      } catch {
        return;
      }
    }
  }

  /** The open socket closed: what was written to it and not answered is lost (never resent). */
  #onDrop(end: SocketEnd): void {
    this.#ws = undefined;
    const lost = new SentinelApiError({ status: 0, code: 'connection_lost', message: `${end.error.message}: this turn's answer was cut off; it was not sent again`, cause: end.error });
    for (const turn of [...this.#turns.values()]) {
      if (turn.phase !== 'sent') continue;
      this.#forget(turn);
      turn.queue.fail(lost);
    }
    for (const call of [...this.#tools.values()]) {
      if (call.phase !== 'sent') continue;
      this.#forget(call);
      call.reject(lost);
    }
    if (!end.retry) this.#end(end.error);
    const dropped = this.#dropped;
    this.#dropped = undefined;
    dropped?.();
  }

  #end(error: SentinelApiError): void {
    if (this.#ended) return;
    this.#ended = error;
    this.#unlisten();
    this.#stop.abort();
    const ws = this.#ws;
    this.#ws = undefined;
    if (ws) {
      try {
        ws.close(1000);
      } catch {
        // Already closing.
      }
    }
    for (const turn of [...this.#turns.values()]) {
      this.#forget(turn);
      turn.queue.fail(error);
    }
    for (const call of [...this.#tools.values()]) {
      this.#forget(call);
      call.reject(error);
    }
    for (const waiter of this.#readyWaiters.splice(0)) waiter.reject(error);
    for (const waiter of this.#endWaiters.splice(0)) waiter(error);
    const dropped = this.#dropped;
    this.#dropped = undefined;
    dropped?.();
  }

  /** Writes a turn or tool request now if a socket is open, else queues it for the next one. */
  #dispatch(item: Turn | ToolCall): void {
    if (item.phase === 'sent') return;
    if (this.#ws && this.#write(item.text)) item.phase = 'sent';
    else if (!this.#outbox.includes(item)) this.#outbox.push(item);
  }

  #write(text: string): boolean {
    const ws = this.#ws;
    if (!ws) return false;
    try {
      ws.send(text);
      return true;
    } catch {
      return false;
    }
  }

  #forget(item: Turn | ToolCall): void {
    item.release();
    if ('queue' in item) {
      if (this.#turns.get(item.id) === item) this.#turns.delete(item.id);
    } else if (this.#tools.get(item.id) === item) this.#tools.delete(item.id);
    const index = this.#outbox.indexOf(item);
    if (index !== -1) this.#outbox.splice(index, 1);
  }

  #receive(text: string): void {
    let frame: ServerFrame;
    try {
      frame = JSON.parse(text) as ServerFrame;
    } catch {
      return;
    }
    this.#options.onFrame?.(frame);
    if (frame.type === 'tool_result' && frame.request_id !== undefined) {
      const call = this.#tools.get(frame.request_id);
      if (call) {
        this.#forget(call);
        call.resolve(frame);
      }
      return;
    }
    if (frame.type === 'error' && frame.request_id !== undefined && frame.message_id === undefined) {
      const call = this.#tools.get(frame.request_id);
      if (call) {
        this.#forget(call);
        call.reject(frameError(frame));
      }
      return;
    }
    const messageId = 'message_id' in frame ? frame.message_id : undefined;
    if (messageId === undefined) return;
    const turn = this.#turns.get(messageId);
    if (!turn || turn.phase !== 'sent') return;
    if (!turn.detached) turn.queue.push(frame);
    if (isTerminal(frame)) {
      this.#forget(turn);
      turn.queue.end();
    }
  }
}
