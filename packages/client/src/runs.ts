/**
 * `client.runs`: an agent's turns as resources (README, "Runs"). A run is created over REST
 * (no socket held), read, listed, waited for, cancelled, approved, and its frames streamed over
 * SSE. The stream resumes by itself after a dropped connection: it reconnects with
 * `Last-Event-ID: <the last seq it delivered>`, the server replays from its journal after that
 * seq, and frames are de-duplicated by seq here, so the consumer sees every frame once, in order.
 */
import { abortedError, isSentinelApiError, SentinelApiError } from './errors.js';
import { segment, signalOf, type CallOptions, type TransportHolder } from './call.js';
import { isTerminalFrame, TERMINAL_RUN_STATUSES, type Run, type RunFrame, type RunStatus } from './run-types.js';
import { backoffDelay, sleep, type ReconnectOptions } from './socket.js';

/** The body of POST /v1/agents/{id}/runs. */
export interface CreateRunInput {
  /** The message (1 to 100 000 characters). */
  content: string;
  /** The turn's message id (`^[A-Za-z0-9._:-]{1,128}$`); also the idempotency key when no `idempotencyKey` is given. Default: one the server makes. */
  message_id?: string;
  /** An absolute http(s) URL the server POSTs the run to when it ends or needs a decision. Default: the agent's default webhook, if any. */
  webhook?: string;
}

export interface CreateRunOptions extends CallOptions {
  /** Sent as `Idempotency-Key`: the same key (per agent, 24 h) returns the existing run instead of starting another. Default none. */
  idempotencyKey?: string;
}

/** Which runs `list` returns. */
export interface ListRunsQuery {
  /** Only runs in this status. Default: every status. */
  status?: RunStatus;
  /** Start after this run id (the `next` cursor of a page). Default: the newest. */
  before?: string;
  /** Runs per page (the server caps it). Default: the server's. */
  limit?: number;
}

/** One page of GET /v1/agents/{id}/runs, newest first; `next` is the cursor of the following page (null: the last one). */
export interface RunPage {
  runs: Run[];
  next: string | null;
}

export interface WaitOptions extends CallOptions {
  /** How long to wait in all, in seconds. Default 30. */
  timeoutSeconds?: number;
}

export interface StreamOptions extends CallOptions {
  /** Start after this seq (frames up to it are not replayed). Default 0: every frame of the run. */
  since?: number;
  /**
   * Reconnection after the stream broke before the run's terminal frame. Default: 5 attempts in
   * a row without a new frame, 250 ms doubling to 10 s, with jitter; `false`: a break fails the
   * iteration with `connection_lost`.
   */
  reconnect?: ReconnectOptions | false;
}

/** The body of POST /v1/agents/{id}/runs/{run}/approvals. */
export interface ApprovalDecision {
  /** The `request_id` of the `tool_approval_required` frame (or of `required_action.requests`). */
  request_id: string;
  /** true runs the tool; false refuses it and the model is told so. */
  approve: boolean;
  /** Why (shown to the model with a refusal). Default none. */
  reason?: string;
}

/** The longest single `?wait=` the SDK asks for; longer waits are several requests. */
const MAX_WAIT_SECONDS = 30;
/** The stream's default: give up after this many reconnects in a row that brought no frame. */
const DEFAULT_STREAM_ATTEMPTS = 5;

function runPath(agent: string, run?: string, tail = ''): string {
  return `/v1/agents/${segment(agent)}/runs${run === undefined ? '' : `/${segment(run)}`}${tail}`;
}

/** Statuses in which a run is still working by itself (`wait` goes on waiting). */
function isWorking(status: RunStatus): boolean {
  return status === 'queued' || status === 'running';
}

export class RunsApi {
  readonly #holder: TransportHolder;

  constructor(holder: TransportHolder) {
    this.#holder = holder;
  }

  /**
   * Starts a run (202): it goes on on the server whether or not anyone streams it. With the same
   * `idempotencyKey` (or `message_id`) again the existing run is returned and no second turn
   * starts; the same key with another body is 409 `idempotency_conflict`.
   */
  create(agent: string, input: CreateRunInput, options: CreateRunOptions = {}): Promise<Run> {
    return this.#holder.transport.request<Run>('POST', runPath(agent), {
      body: input,
      ...(options.idempotencyKey === undefined ? {} : { headers: { 'idempotency-key': options.idempotencyKey } }),
      ...signalOf(options),
    });
  }

  /** One run (404 `not_found` for an unknown run or another user's). */
  get(agent: string, run: string, options: CallOptions = {}): Promise<Run> {
    return this.#holder.transport.request<Run>('GET', runPath(agent, run), signalOf(options));
  }

  /** One page of the agent's runs, newest first. */
  page(agent: string, query: ListRunsQuery = {}, options: CallOptions = {}): Promise<RunPage> {
    return this.#holder.transport.request<RunPage>('GET', runPath(agent), { query: { status: query.status, before: query.before, limit: query.limit }, ...signalOf(options) });
  }

  /**
   * The agent's runs, newest first, page after page as the loop goes (`limit` is the page
   * size): `for await (const run of client.runs.list(agent, {status: 'failed'}))`.
   */
  async *list(agent: string, query: ListRunsQuery = {}, options: CallOptions = {}): AsyncGenerator<Run, void, undefined> {
    let before = query.before;
    for (;;) {
      const page = await this.page(agent, { ...query, ...(before === undefined ? {} : { before }) }, options);
      for (const run of page.runs) yield run;
      if (page.next === null || page.runs.length === 0) return;
      before = page.next;
    }
  }

  /**
   * Resolves once the run has stopped working by itself (a terminal status, or
   * `requires_action`), or after `timeoutSeconds` with the run as it is then. Long waits are
   * several bounded `?wait=` requests.
   */
  async wait(agent: string, run: string, options: WaitOptions = {}): Promise<Run> {
    const deadline = Date.now() + (options.timeoutSeconds ?? 30) * 1000;
    for (;;) {
      const left = Math.ceil((deadline - Date.now()) / 1000);
      const wait = Math.max(0, Math.min(MAX_WAIT_SECONDS, left));
      // `wait` must be positive: with no time left the run is read as it is.
      const current = await this.#holder.transport.request<Run>('GET', runPath(agent, run), { query: { wait: wait > 0 ? wait : undefined }, ...signalOf(options) });
      if (!isWorking(current.status) || Date.now() >= deadline || wait === 0) return current;
    }
  }

  /** Cancels a queued, running or waiting run (on whichever instance runs it); a run that has ended is returned unchanged. */
  cancel(agent: string, run: string, options: CallOptions = {}): Promise<Run> {
    return this.#holder.transport.request<Run>('POST', runPath(agent, run, '/cancel'), signalOf(options));
  }

  /** Decides one pending tool call of a run in `requires_action`; the run goes on once every request of the round is decided. */
  approve(agent: string, run: string, decision: ApprovalDecision, options: CallOptions = {}): Promise<Run> {
    const body = { request_id: decision.request_id, approve: decision.approve, ...(decision.reason === undefined ? {} : { reason: decision.reason }) };
    return this.#holder.transport.request<Run>('POST', runPath(agent, run, '/approvals'), { body, ...signalOf(options) });
  }

  /**
   * The run's frames over SSE, replayed from the journal after `since`, then live; ends after
   * the terminal frame (`stream_end` or `error`). A dropped connection is resumed with
   * `Last-Event-ID` (bounded, see {@link StreamOptions.reconnect}); a refusal (404, 401, 403)
   * fails at once. Breaking out of the loop or the signal ends it without an error.
   */
  stream(agent: string, run: string, options: StreamOptions = {}): AsyncGenerator<RunFrame, void, undefined> {
    return runStream(this.#holder, agent, run, options);
  }
}

/** A failure another attempt may cure: no answer at all, or the server busy or restarting. */
function isTransient(err: unknown): boolean {
  return isSentinelApiError(err) && (err.status === 0 || err.status === 429 || err.status >= 500) && err.code !== 'aborted';
}

async function* runStream(holder: TransportHolder, agent: string, run: string, options: StreamOptions): AsyncGenerator<RunFrame, void, undefined> {
  const { signal } = options;
  const reconnect = options.reconnect;
  const maxAttempts = reconnect === false ? 0 : (reconnect?.maxAttempts ?? DEFAULT_STREAM_ATTEMPTS);
  // A private controller also ends the request when the consumer breaks out of the loop.
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  let cursor = options.since ?? 0;
  let attempt = 0;
  try {
    for (;;) {
      if (signal?.aborted) return;
      let broke: unknown;
      let progressed = false;
      try {
        for await (const event of sse(holder, runPath(agent, run, '/stream'), cursor, stop.signal)) {
          const frame = parseFrame(event.data);
          // Keep-alives and anything that is not one of the run's frames carry no seq.
          if (frame === undefined || typeof frame.seq !== 'number') continue;
          if (frame.seq <= cursor) continue;
          cursor = frame.seq;
          progressed = true;
          attempt = 0;
          yield frame;
          if (isTerminalFrame(frame)) return;
        }
      } catch (err) {
        if (signal?.aborted) return;
        if (!isTransient(err)) throw err;
        broke = err;
      }
      // The answer ended (or broke) before the terminal frame: a proxy's timeout, a restart. A run
      // that has ended meanwhile (its frames pruned, say) is not waited for.
      if (broke === undefined && !progressed) {
        const current = await holder.transport.request<Run>('GET', runPath(agent, run), { signal: stop.signal }).catch((err: unknown) => {
          if (signal?.aborted) return undefined;
          if (!isTransient(err)) throw err;
          return undefined;
        });
        if (current !== undefined && TERMINAL_RUN_STATUSES.includes(current.status) && current.last_seq <= cursor) return;
      }
      if (attempt >= maxAttempts) {
        throw new SentinelApiError({ status: 0, code: 'connection_lost', message: `the run's stream broke after seq ${cursor} and was not resumed`, ...(broke === undefined ? {} : { cause: broke }) });
      }
      try {
        await sleep(backoffDelay(attempt++, reconnect === undefined || reconnect === false ? {} : reconnect), stop.signal);
      } catch {
        return;
      }
    }
  } finally {
    signal?.removeEventListener('abort', onAbort);
    stop.abort();
  }
}

function parseFrame(data: string): RunFrame | undefined {
  try {
    const value = JSON.parse(data) as unknown;
    return typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string' ? (value as RunFrame) : undefined;
  } catch {
    return undefined;
  }
}

/** One event of a `text/event-stream` answer. */
interface SseEvent {
  id: string | undefined;
  event: string;
  data: string;
}

/**
 * Reads one SSE answer (the WHATWG event-stream rules: `id`, `event`, `data` lines, comments,
 * a blank line ends an event). `since` goes out as `Last-Event-ID`.
 */
async function* sse(holder: TransportHolder, path: string, since: number, signal: AbortSignal): AsyncGenerator<SseEvent, void, undefined> {
  const response = await holder.transport.send('GET', path, { accept: 'text/event-stream', headers: since > 0 ? { 'last-event-id': String(since) } : {}, signal });
  if (response.body === null) return;
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let event: SseEvent = { id: undefined, event: 'message', data: '' };
  let hasData = false;
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (err) {
        if (signal.aborted) throw abortedError(signal);
        throw new SentinelApiError({ status: 0, code: 'network_error', message: `the stream broke: ${err instanceof Error ? err.message : String(err)}`, cause: err });
      }
      if (chunk.done) return;
      buffer += decoder.decode(chunk.value, { stream: true });
      let newline: number;
      while ((newline = buffer.search(/\r\n|\r|\n/)) !== -1) {
        // A CR that ends the chunk may be the first half of a CRLF: wait for the next byte.
        if (buffer[newline] === '\r' && newline === buffer.length - 1) break;
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + (buffer.startsWith('\r\n', newline) ? 2 : 1));
        if (line === '') {
          if (hasData) yield event;
          event = { id: undefined, event: 'message', data: '' };
          hasData = false;
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon === -1 ? line : line.slice(0, colon);
        const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'data') {
          event.data = hasData ? `${event.data}\n${value}` : value;
          hasData = true;
        } else if (field === 'event') event.event = value;
        else if (field === 'id') event.id = value;
      }
    }
  } finally {
    reader.cancel().catch(() => undefined);
  }
}
