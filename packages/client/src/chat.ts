/**
 * `client.chat(agentId)`: a session over `/v1/agents/{id}/chat` (README, "A chat session").
 * Each `send` is one turn with a client-made message_id; its frames are routed to that turn's
 * iterable, which ends at the turn's terminal frame (`stream_end`, `response`, or an `error` with
 * its message_id: the server sends exactly one).
 *
 * Every turn is a run on the server (README, "Runs"): its frames carry `run_id` and `seq`, and
 * the run goes on when the socket drops. So after a drop the session reconnects with backoff
 * and sends `resume {run_id, since: <the last seq it saw>}` for each turn cut short; the server
 * replays the journal after that seq and goes on live, and frames are de-duplicated by seq here,
 * so the iterable sees every frame once and ends with the whole answer. A turn whose message was
 * written but whose first frame never came is sent again with the same message_id, which the
 * server answers with the existing run (never a second turn). Resuming is bounded
 * ({@link ChatOptions.resume}); past it, or against a server without runs (frames without
 * `run_id`), a cut turn fails with `connection_lost` and is never sent again. Messages not yet
 * written (sent while the socket was down) go out once the next socket opens. Frame types are
 * the server's own (`import type` from the core: types only, nothing of the core is bundled).
 */
import type { AnswerEndFrame, ErrorFrame, ToolResultFrame } from '@sentinel/api-core';
import { abortedError, SentinelApiError } from './errors.js';
import { isTerminalFrame, type ServerFrame } from './run-types.js';
import { AsyncQueue, backoffDelay, isRetryable, openSocket, sleep, type ReconnectOptions, type SocketAuth, type SocketEnd } from './socket.js';
import type { Transport, WebSocketLike } from './transport.js';

export type { ServerFrame } from './run-types.js';

/** How a session resumes turns cut by a dropped socket. */
export interface ResumeOptions {
  /** Drops in a row, without a new frame of the turn in between, after which the turn fails with `connection_lost`. Default 5. */
  maxAttempts?: number;
}

export interface ChatOptions {
  /** Closes the session when it aborts. */
  signal?: AbortSignal;
  /**
   * Reconnection after a socket that was open drops. Default: retry without limit, 250 ms
   * doubling to 10 s, with jitter; `false`: a drop ends the session with `connection_lost`. The
   * first socket is not retried: a server that is down or refuses fails the session at once.
   */
  reconnect?: ReconnectOptions | false;
  /**
   * Resuming the turns a drop cut short, once the session has reconnected. Default: up to 5
   * drops in a row per turn (see {@link ResumeOptions}); `false`: a cut turn fails with
   * `connection_lost` (its run goes on on the server: `client.runs` can still read it).
   */
  resume?: ResumeOptions | false;
  /** How the socket authenticates: `subprotocol` (default) or a one-time `ticket` per connection (see {@link SocketAuth}). */
  auth?: SocketAuth;
  /** Sees every frame the server sends, those of turns too (e.g. `connection_established`; replayed duplicates included). */
  onFrame?: (frame: ServerFrame) => void;
}

export interface ChatSendOptions {
  /** The message's id (`^[A-Za-z0-9._:-]{1,128}$`). Default: `crypto.randomUUID()`. */
  messageId?: string;
  /** `false` asks for one `response` frame instead of a stream. Default true. */
  stream?: boolean;
  /** Cancels the turn on the server and fails its iterable with `aborted`. */
  signal?: AbortSignal;
  /** The server cancels the run when this socket closes (it is then resumed only to read its `cancelled` end). Default false: the run goes on. */
  cancelOnDisconnect?: boolean;
}

export interface ToolRequestOptions {
  /** Default: `crypto.randomUUID()`. */
  requestId?: string;
  /** Rejects with `aborted` (the server finishes the tool anyway; its result is dropped). */
  signal?: AbortSignal;
}

/** A turn's last frame as `result` resolves it: the whole answer in `content`. */
export type TurnResult = AnswerEndFrame & { run_id?: string; seq?: number };

/**
 * One message's frames, in order, ending with its terminal frame. Fails with a SentinelApiError:
 * `connection_lost` (the socket dropped mid-turn and resuming gave up; see the module comment),
 * `session_closed`, `aborted`, or the error that ended the session (e.g. `unauthorized` after a
 * 4401 close). Breaking out of the loop stops the delivery but does not cancel the turn (use
 * `cancel`).
 */
export interface ChatTurn extends AsyncIterable<ServerFrame> {
  readonly messageId: string;
  /** The run of the turn, once its first frame said it (undefined before, or on a server without runs). */
  readonly runId: string | undefined;
  /**
   * Resolves with the terminal `stream_end`/`response` (the whole answer, however many
   * reconnects it took) whether or not the frames are iterated; rejects with the `error` frame as
   * a SentinelApiError, or as the iteration fails.
   */
  readonly result: Promise<TurnResult>;
}

/** `tool_approval_required` frames, as `approve` needs them. */
interface PendingApproval {
  runId: string;
  messageId: string;
}

/** A decision sent (or waiting for a socket), settled by the server's `tool_approval` echo. */
interface ApprovalCall {
  id: string;
  text: string;
  phase: Phase;
  resolve(): void;
  reject(err: unknown): void;
}

type Phase = 'queued' | 'sent';

interface Turn {
  id: string;
  /** The `message` frame, written again (same message_id) when a drop came before any frame of its run. */
  text: string;
  stream: boolean;
  phase: Phase;
  queue: AsyncQueue<ServerFrame>;
  /** The consumer stopped reading: frames are dropped until the terminal one. */
  detached: boolean;
  runId: string | undefined;
  /** The highest seq delivered: resume after it, drop replays up to it. */
  lastSeq: number;
  /** Drops since the last new frame (bounded by `resume.maxAttempts`). */
  drops: number;
  settle: { resolve(frame: TurnResult): void; reject(err: unknown): void };
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

type Outbound = Turn | ToolCall | ApprovalCall;

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

const DEFAULT_RESUME_ATTEMPTS = 5;

export class ChatSession {
  readonly #transport: Transport;
  readonly #agentId: string;
  readonly #options: ChatOptions;
  readonly #turns = new Map<string, Turn>();
  readonly #tools = new Map<string, ToolCall>();
  readonly #approvals = new Map<string, ApprovalCall>();
  /** `tool_approval_required` requests seen and not yet decided here, by request_id. */
  readonly #pending = new Map<string, PendingApproval>();
  /** Frames waiting for an open socket, in the order they were asked for. */
  #outbox: Outbound[] = [];
  #ws: WebSocketLike | undefined;
  /** Why the session ended, once it has. */
  #ended: SentinelApiError | undefined;
  readonly #stop = new AbortController();
  #opens = 0;
  /** The server has said a frame's `run_id`: it journals turns, so a message can be sent again safely. */
  #runs = false;
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
    let settle: Turn['settle'] = { resolve: () => undefined, reject: () => undefined };
    const result = new Promise<TurnResult>((resolve, reject) => (settle = { resolve, reject }));
    // Callers that only iterate never look at `result`: its rejection is theirs to see, not unhandled.
    result.catch(() => undefined);
    const fail = (err: unknown): void => {
      queue.fail(err);
      settle.reject(err);
    };
    // The getter outlives the turn's place in the session's map (runId stays readable after the end).
    const holder: { turn?: Turn } = {};
    const iterable: ChatTurn = {
      messageId: id,
      get runId() {
        return holder.turn?.runId;
      },
      result,
      [Symbol.asyncIterator]: () => ({
        next: () => queue.next(),
        return: (): Promise<IteratorResult<ServerFrame>> => {
          const current = this.#turns.get(id);
          if (current?.queue === queue) current.detached = true;
          queue.end();
          return Promise.resolve({ value: undefined, done: true });
        },
      }),
    };
    if (this.#ended) {
      fail(this.#ended);
      return iterable;
    }
    if (this.#turns.has(id)) {
      fail(new SentinelApiError({ status: 0, code: 'conflict', message: `message_id "${id}" is already in progress in this session` }));
      return iterable;
    }
    if (options.signal?.aborted) {
      fail(abortedError(options.signal));
      return iterable;
    }
    const text = JSON.stringify({
      type: 'message',
      content,
      message_id: id,
      ...(options.stream === false ? { stream: false } : {}),
      ...(options.cancelOnDisconnect === true ? { cancel_on_disconnect: true } : {}),
    });
    const created: Turn = {
      id,
      text,
      stream: options.stream !== false,
      phase: 'queued',
      queue,
      detached: false,
      runId: undefined,
      lastSeq: 0,
      drops: 0,
      settle,
      release: () => undefined,
    };
    holder.turn = created;
    created.release = listen(options.signal, () => {
      if (this.#turns.get(id) !== created) return;
      this.#cancelOnServer(created);
      this.#forget(created);
      fail(abortedError(options.signal));
    });
    this.#turns.set(id, created);
    this.#dispatch(created);
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
   * Decides a `tool_approval_required` request of one of this session's turns (the frame's
   * `request_id`): `approve` true runs the tool, false refuses it (`reason` goes to the model).
   * Sent now, or once the socket is open. Resolves when the server has taken the decision (its
   * `tool_approval` event); rejects with the `error` frame (e.g. `not_found` for a request that
   * is no longer pending), or `connection_lost` when the socket dropped before the answer (the
   * run's `required_action` tells whether it was taken). To decide a run's request without a
   * session, see `client.runs.approve`.
   */
  approve(requestId: string, approve: boolean, reason?: string): Promise<void> {
    if (this.#ended) return Promise.reject(this.#ended);
    if (this.#approvals.has(requestId)) return Promise.reject(new SentinelApiError({ status: 0, code: 'conflict', message: `request_id "${requestId}" is already being decided in this session` }));
    return new Promise<void>((resolve, reject) => {
      const call: ApprovalCall = {
        id: requestId,
        text: JSON.stringify({ type: 'tool_approval', request_id: requestId, approve, ...(reason === undefined || reason === '' ? {} : { reason }) }),
        phase: 'queued',
        resolve,
        reject,
      };
      this.#approvals.set(requestId, call);
      this.#dispatch(call);
    });
  }

  /** The `tool_approval_required` requests of this session's turns not decided yet, oldest first. */
  pendingApprovals(): { request_id: string; run_id: string; message_id: string }[] {
    return [...this.#pending].map(([request_id, p]) => ({ request_id, run_id: p.runId, message_id: p.messageId }));
  }

  /**
   * Asks the server to end a message (`stream_end` with reason `cancelled` follows on its
   * iterable). A message still waiting for the socket is never sent: its iterable just ends.
   * A turn being resumed (no socket now) is cancelled through its run's REST route.
   */
  cancel(messageId: string): void {
    const turn = this.#turns.get(messageId);
    if (turn?.phase === 'queued' && turn.runId === undefined) {
      this.#forget(turn);
      turn.queue.end();
      turn.settle.reject(new SentinelApiError({ status: 0, code: 'aborted', message: 'the message was cancelled before it was sent' }));
      return;
    }
    if (turn) this.#cancelOnServer(turn);
    else this.#write(JSON.stringify({ type: 'cancel', message_id: messageId }));
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

  /**
   * The open socket closed. Turns of a run are resumed on the next socket (bounded); what cannot
   * be resumed, tool requests and decisions written to it fail with `connection_lost` (never
   * sent again: they may have been carried out).
   */
  #onDrop(end: SocketEnd): void {
    this.#ws = undefined;
    const lost = new SentinelApiError({ status: 0, code: 'connection_lost', message: `${end.error.message}: this turn's answer was cut off; it was not sent again`, cause: end.error });
    const resume = this.#options.resume;
    const maxDrops = resume === false ? 0 : (resume?.maxAttempts ?? DEFAULT_RESUME_ATTEMPTS);
    for (const turn of [...this.#turns.values()]) {
      if (turn.phase !== 'sent') continue;
      turn.drops += 1;
      const resumable = end.retry && turn.drops <= maxDrops && (turn.runId !== undefined || this.#runs);
      if (resumable) {
        turn.phase = 'queued';
        if (!this.#outbox.includes(turn)) this.#outbox.push(turn);
        continue;
      }
      this.#forget(turn);
      turn.queue.fail(lost);
      turn.settle.reject(lost);
    }
    for (const call of [...this.#tools.values()]) {
      if (call.phase !== 'sent') continue;
      this.#forget(call);
      call.reject(lost);
    }
    for (const call of [...this.#approvals.values()]) {
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
      turn.settle.reject(error);
    }
    for (const call of [...this.#tools.values()]) {
      this.#forget(call);
      call.reject(error);
    }
    for (const call of [...this.#approvals.values()]) {
      this.#forget(call);
      call.reject(error);
    }
    for (const waiter of this.#readyWaiters.splice(0)) waiter.reject(error);
    for (const waiter of this.#endWaiters.splice(0)) waiter(error);
    const dropped = this.#dropped;
    this.#dropped = undefined;
    dropped?.();
  }

  /**
   * Writes a turn, tool request or decision now if a socket is open, else queues it for the next
   * one. A turn whose run is known is resumed after the last seq it delivered.
   */
  #dispatch(item: Outbound): void {
    if (item.phase === 'sent') return;
    const text = 'queue' in item && item.runId !== undefined ? JSON.stringify({ type: 'resume', run_id: item.runId, since: item.lastSeq }) : item.text;
    if (this.#ws && this.#write(text)) item.phase = 'sent';
    else if (!this.#outbox.includes(item)) this.#outbox.push(item);
  }

  /** Ends a turn on the server: over the socket when one is open, else through its run's REST route. */
  #cancelOnServer(turn: Turn): void {
    if (turn.phase === 'sent' && this.#write(JSON.stringify({ type: 'cancel', message_id: turn.id }))) return;
    if (turn.runId === undefined) return;
    const path = `/v1/agents/${encodeURIComponent(this.#agentId)}/runs/${encodeURIComponent(turn.runId)}/cancel`;
    // Best effort, like a cancel frame: the turn's iterable has its answer (aborted) already.
    this.#transport.request('POST', path).catch(() => undefined);
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

  #forget(item: Outbound): void {
    if ('queue' in item) {
      item.release();
      if (this.#turns.get(item.id) === item) this.#turns.delete(item.id);
      for (const [requestId, pending] of this.#pending) if (pending.messageId === item.id) this.#pending.delete(requestId);
    } else if ('release' in item) {
      item.release();
      if (this.#tools.get(item.id) === item) this.#tools.delete(item.id);
    } else if (this.#approvals.get(item.id) === item) this.#approvals.delete(item.id);
    const index = this.#outbox.indexOf(item);
    if (index !== -1) this.#outbox.splice(index, 1);
  }

  #turnOfRun(runId: string): Turn | undefined {
    for (const turn of this.#turns.values()) if (turn.runId === runId) return turn;
    return undefined;
  }

  #receive(text: string): void {
    let frame: ServerFrame;
    try {
      frame = JSON.parse(text) as ServerFrame;
    } catch {
      return;
    }
    this.#options.onFrame?.(frame);
    if (typeof frame.run_id === 'string') this.#runs = true;
    if (frame.type === 'tool_result' && frame.request_id !== undefined && frame.message_id === undefined) {
      const call = this.#tools.get(frame.request_id);
      if (call) {
        this.#forget(call);
        call.resolve(frame);
      }
      return;
    }
    if (frame.type === 'error' && frame.request_id !== undefined && frame.message_id === undefined && frame.run_id === undefined) {
      const approval = this.#approvals.get(frame.request_id);
      if (approval) {
        this.#forget(approval);
        approval.reject(frameError(frame));
        return;
      }
      const call = this.#tools.get(frame.request_id);
      if (call) {
        this.#forget(call);
        call.reject(frameError(frame));
      }
      return;
    }
    // The echo of a decision settles it even when this session does not relay the run.
    if (frame.type === 'event' && frame.event_type === 'tool_approval') this.#decided(frame);
    const messageId = 'message_id' in frame ? frame.message_id : undefined;
    const turn = messageId !== undefined ? this.#turns.get(messageId) : typeof frame.run_id === 'string' ? this.#turnOfRun(frame.run_id) : undefined;
    if (!turn || turn.phase !== 'sent') return;
    if (typeof frame.seq === 'number') {
      // A replay after a resume (or a message sent again) starts at or before what was delivered.
      if (frame.seq <= turn.lastSeq) return;
      turn.lastSeq = frame.seq;
    }
    if (turn.runId === undefined && typeof frame.run_id === 'string') turn.runId = frame.run_id;
    turn.drops = 0;
    this.#track(turn, frame);
    const shown = turn.stream ? frame : unstreamed(frame);
    if (shown !== undefined && !turn.detached) turn.queue.push(shown);
    if (isTerminalFrame(frame)) {
      this.#forget(turn);
      turn.queue.end();
      if (frame.type === 'error') turn.settle.reject(frameError(frame));
      else turn.settle.resolve((shown ?? frame) as TurnResult);
    }
  }

  /** The server took a decision (its `event tool_approval`, `data.request_id`): the request is no longer pending. */
  #decided(frame: ServerFrame & { type: 'event' }): void {
    const requestId = (frame.data as { request_id?: unknown } | undefined)?.request_id;
    if (typeof requestId !== 'string') return;
    this.#pending.delete(requestId);
    const call = this.#approvals.get(requestId);
    if (call) {
      this.#forget(call);
      call.resolve();
    }
  }

  /** Keeps the pending approvals of a turn; its end makes them moot. */
  #track(turn: Turn, frame: ServerFrame): void {
    if (frame.type === 'tool_approval_required') {
      this.#pending.set(frame.request_id, { runId: frame.run_id, messageId: turn.id });
      return;
    }
    if (isTerminalFrame(frame)) {
      // The run ended (cancelled, expired): its undecided requests are gone, decisions in flight moot.
      for (const [requestId, pending] of [...this.#pending]) {
        if (pending.messageId !== turn.id) continue;
        this.#pending.delete(requestId);
        const call = this.#approvals.get(requestId);
        if (call) {
          this.#forget(call);
          call.reject(new SentinelApiError({ status: 0, code: 'conflict', message: `the run ended before the decision on ${requestId} was taken` }));
        }
      }
    }
  }
}

/**
 * A `stream: false` turn's frames after a resume: the journal holds the streamed form, so the
 * stream's start and chunks are left out and its end becomes the `response` the turn expects.
 */
function unstreamed(frame: ServerFrame): ServerFrame | undefined {
  if (frame.type === 'stream_start' || frame.type === 'stream_chunk') return undefined;
  if (frame.type === 'stream_end') return { ...frame, type: 'response' };
  return frame;
}
