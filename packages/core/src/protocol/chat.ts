/**
 * The chat protocol of `/v1/agents/{id}/chat` (docs/ARCHITECTURE.md#the-protocol), transport-neutral: client frames
 * in, server frames out through a {@link FrameSink}. A message is a run (runs/service.ts): the
 * session creates it and relays the run's journaled frames (each with `run_id` and `seq`). A
 * `resume` relays another run's frames after a cursor; the same `message_id` again relays the
 * existing run's frames from the start instead of starting a second turn. Closing the socket
 * ends only the relaying, not the run, unless the message asked for `cancel_on_disconnect`.
 * Every message gets exactly one terminal frame (`stream_end`, `response` or `error`); a bad
 * frame gets an `error` frame and the session stays usable.
 */
import type { AgentService } from '../agents/service.js';
import { captureTraceContext } from '../telemetry/tracing.js';
import { isoTimestamp } from '../clock.js';
import type { EventBus } from '../bus.js';
import { isSentinelError, SentinelError } from '../contract/errors.js';
import type { Logger } from '../contract/logger.js';
import { silentLogger } from '../contract/logger.js';
import type { AgentRecord, Principal } from '../contract/models.js';
import {
  parseClientFrame,
  type ClientCancelFrame,
  type ClientToolApprovalFrame,
  type ClientFrame,
  type ClientMessageFrame,
  type ClientResumeFrame,
  type ClientToolRequestFrame,
} from './client-frames.js';
import { outgoing, type ChatService, type ChatSession, type FrameSink, type Outgoing, type PreparedChat, type ServerFrame, type StreamCloseReason } from './frames.js';
import { CHAT_ENDPOINT, checkEndpointScope } from './endpoints.js';
import { newMessageId, newRequestId } from '../contract/ids.js';
import { rateLimited, ratePartitionOf, type RateDecision, type RateLimiter, type ResolvedRateRule } from '../auth/rate-limit.js';
import type { AgentRuntime, TurnAbortReason, TurnUsage } from '../runtime/runtime.js';
import { frameOf, type JournaledFrame } from '../runs/journal.js';
import type { RunService } from '../runs/service.js';

export interface AgentChatServiceOptions {
  agents: AgentService;
  runtime: AgentRuntime;
  /** Messages become runs here. */
  runs: RunService;
  bus: EventBus;
  /** Default: silent. */
  logger?: Logger;
  /** Direct `tool_request`s one session may have running at once; more get `agent_busy`. Default 4. */
  maxToolRequestsPerSession?: number;
  /** Clock for frame timestamps. Default `Date.now`. */
  now?: () => number;
  /**
   * Limits `message` and `tool_request` frames per caller (class `chat`): a frame over the limit
   * gets an `error` frame `rate_limited` (with `retry_after` seconds) and is not processed; the
   * socket stays open. Default none: no limit.
   */
  rateLimiter?: RateLimiter;
}

/** A run this session relays (its message, or a `resume`) that has not had its terminal frame yet. */
interface RelayedRun {
  /** The message id (known at once for a message, once the run was read for a resume). */
  messageId: string | undefined;
  /** The run id, once it was created or read. */
  runId: string | undefined;
  /** Relay the streamed form, or translate to one `response` (`stream: false`). */
  stream: boolean;
  cancelOnDisconnect: boolean;
  /** Ends the relaying (not the run). */
  readonly controller: AbortController;
  /** Resolves to the run id once it exists (undefined when the message was refused). */
  created: Promise<string | undefined>;
  responseId: string | undefined;
  /** The text relayed so far (for a terminal frame the session must send itself). */
  content: string;
}

/** Frames a session holds while a rate-limit answer is awaited; more get `agent_busy`. */
const MAX_FRAMES_WAITING = 256;

const ZERO_USAGE: TurnUsage = Object.freeze({ input_tokens: 0, output_tokens: 0, total_tokens: 0 });

/** The chat service (named so it does not clash with the {@link ChatService} interface). */
export class AgentChatService implements ChatService {
  private readonly sessions = new Set<AgentChatSession>();
  private closed = false;

  constructor(private readonly options: AgentChatServiceOptions) {}

  /** Open sessions. */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /**
   * Authorizes the principal for the agent (`not_found` for another user's or an unknown agent;
   * `unavailable` during shutdown). `open` sends the welcome frame synchronously.
   */
  async prepare(principal: Principal, agentId: string): Promise<PreparedChat> {
    if (this.closed || this.options.runtime.isShuttingDown) throw new SentinelError('unavailable', 'server is shutting down');
    checkEndpointScope(CHAT_ENDPOINT, principal);
    const record = await this.options.agents.getRecord(principal, agentId);
    return { agentId: record.id, open: (sink) => this.open(record, sink, principal) };
  }

  /** Closes every session with `shutdown` (call after the runtime ended its turns). Idempotent; later opens close at once. */
  shutdown(): void {
    this.closed = true;
    for (const session of [...this.sessions]) session.close('shutdown', 'server shutting down', 'shutdown');
  }

  private open(record: AgentRecord, sink: FrameSink, principal: Principal): ChatSession {
    const session = new AgentChatSession(record, sink, this.options, principal, () => this.sessions.delete(session));
    if (this.closed) {
      session.close('shutdown', 'server shutting down', 'shutdown');
      return session;
    }
    this.sessions.add(session);
    session.welcome(record);
    return session;
  }
}

class AgentChatSession implements ChatSession {
  private readonly agentId: string;
  private readonly runtime: AgentRuntime;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly maxToolRequests: number;
  private readonly relayed = new Set<RelayedRun>();
  /** The last `message`'s run creation (settled), which the next one waits for. */
  private creating: Promise<void> = Promise.resolve();
  private readonly runs: RunService;
  private readonly principal: Principal;
  private readonly toolRequests = new Set<AbortController>();
  private readonly unsubscribe: () => void;
  /** Detached or closed: nothing more is sent. */
  private ended = false;
  private readonly limiter: RateLimiter | undefined;
  private readonly rateRule: ResolvedRateRule | undefined;
  private readonly ratePartition: string;
  /**
   * Frames that arrived while a rate-limit answer from Redis was awaited: they are processed
   * after it, in order, so a `cancel` never overtakes the `message` it cancels. Undefined while
   * nothing is awaited.
   */
  private inbox: string[] | undefined;

  constructor(
    record: AgentRecord,
    private readonly sink: FrameSink,
    options: AgentChatServiceOptions,
    principal: Principal,
    private readonly onEnded: () => void,
  ) {
    this.limiter = options.rateLimiter;
    this.rateRule = options.rateLimiter?.ruleFor('chat');
    // A socket has no client address in the core; a chat socket always has a principal.
    this.ratePartition = ratePartitionOf(principal, '');
    this.agentId = record.id;
    this.runtime = options.runtime;
    this.runs = options.runs;
    this.principal = principal;
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? Date.now;
    this.maxToolRequests = options.maxToolRequestsPerSession ?? 4;
    this.unsubscribe = options.bus.subscribe(record.id, (message) => {
      if (message.kind === 'deleted') this.close('agent_deleted', 'agent deleted', 'deleted');
    });
  }

  welcome(record: AgentRecord): void {
    this.send({
      type: 'event',
      event_type: 'connection_established',
      timestamp: this.timestamp(),
      content: `Connected to agent ${record.name}`,
      data: { agent_id: record.id, agent_name: record.name, status: record.status },
    });
  }

  receive(text: string): void {
    if (this.ended) return;
    if (this.inbox !== undefined) {
      if (this.inbox.length >= MAX_FRAMES_WAITING) {
        this.sendError(new SentinelError('agent_busy', `too many frames waiting for the rate limit (at most ${MAX_FRAMES_WAITING})`), {});
        return;
      }
      this.inbox.push(text);
      return;
    }
    this.process(text);
  }

  private process(text: string): void {
    try {
      const parsed = parseClientFrame(text);
      if (!parsed.ok) {
        this.sendError(parsed.error, parsed.ids);
        return;
      }
      const frame = parsed.frame;
      // A cancel or a decision only ends or continues a run already counted.
      if (frame.type !== 'cancel' && frame.type !== 'tool_approval' && this.rateRule !== undefined) {
        const taken = this.limiter!.take(this.rateRule, this.ratePartition);
        if (taken instanceof Promise) {
          this.waitFor(taken, frame);
          return;
        }
        if (!taken.allowed) {
          this.refuse(frame, taken);
          return;
        }
      }
      this.dispatch(frame);
    } catch (err) {
      this.failed(err);
    }
  }

  private dispatch(frame: ClientFrame): void {
    if (frame.type === 'message') this.onMessage(frame);
    else if (frame.type === 'tool_request') this.onToolRequest(frame);
    else if (frame.type === 'resume') this.onResume(frame);
    else if (frame.type === 'tool_approval') this.onToolApproval(frame);
    else this.onCancel(frame);
  }

  private failed(err: unknown): void {
    this.logger.error('chat frame handling failed', { agent_id: this.agentId, error: err instanceof Error ? err.message : String(err) });
    this.sendError(new SentinelError('internal', 'internal server error'), {});
  }

  /** The frame over the limit is not processed: an `error` frame `rate_limited` with the wait, and the session goes on. */
  private refuse(frame: ClientMessageFrame | ClientToolRequestFrame | ClientResumeFrame, decision: RateDecision): void {
    const ids =
      frame.type === 'message'
        ? frame.message_id === undefined ? {} : { message_id: frame.message_id }
        : frame.type === 'resume'
          ? { run_id: frame.run_id }
          : frame.request_id === undefined ? {} : { request_id: frame.request_id };
    const err = rateLimited(this.rateRule!, decision);
    this.send({ type: 'error', timestamp: this.timestamp(), error: err.message, code: err.code, retry_after: decision.retryAfterSeconds, ...ids });
  }

  /** A check answered by Redis: frames that arrive meanwhile wait in `inbox`, in order. */
  private waitFor(taken: Promise<RateDecision>, frame: ClientMessageFrame | ClientToolRequestFrame | ClientResumeFrame): void {
    this.inbox = [];
    void taken
      .then(
        (decision) => {
          if (this.ended) return;
          if (decision.allowed) this.dispatch(frame);
          else this.refuse(frame, decision);
        },
        (err: unknown) => this.failed(err),
      )
      .then(() => this.drain());
  }

  private drain(): void {
    const waiting = this.inbox ?? [];
    this.inbox = undefined;
    while (waiting.length > 0 && !this.ended) {
      this.process(waiting.shift()!);
      // process() may have started waiting again (TypeScript cannot see that through the call).
      const again = this.inbox as string[] | undefined;
      if (again !== undefined) {
        // The rest keep their place ahead of anything newer.
        again.push(...waiting);
        return;
      }
    }
  }

  detach(): void {
    if (this.ended) return;
    this.ended = true;
    this.release();
  }

  /**
   * Ends the session from the server side: terminal frames for messages still pending (the
   * runtime normally sent them already; this is the guarantee), then the sink closes.
   */
  close(reason: StreamCloseReason, message: string, turnReason: TurnAbortReason): void {
    if (this.ended) return;
    for (const entry of this.relayed) {
      if (entry.messageId === undefined) continue;
      this.send({
        type: entry.stream ? 'stream_end' : 'response',
        timestamp: this.timestamp(),
        ...(entry.runId === undefined ? {} : { run_id: entry.runId }),
        message_id: entry.messageId,
        response_id: entry.responseId ?? '',
        content: entry.content,
        reason: turnReason,
        usage: { ...ZERO_USAGE },
      });
    }
    this.ended = true;
    this.release();
    try {
      this.sink.close(reason, message);
    } catch (err) {
      this.logger.error('chat sink close failed', { agent_id: this.agentId, error: err instanceof Error ? err.message : String(err) });
    }
  }

  private release(): void {
    this.unsubscribe();
    for (const entry of this.relayed) {
      entry.controller.abort();
      // The run goes on without this socket unless its message said otherwise.
      if (entry.cancelOnDisconnect) {
        void entry.created.then((runId) => {
          if (runId !== undefined) return this.runs.cancel(this.principal, this.agentId, runId);
        }).catch((err: unknown) => this.logger.warn('cancel on disconnect failed', { agent_id: this.agentId, error: err instanceof Error ? err.message : String(err) }));
      }
    }
    this.relayed.clear();
    for (const controller of this.toolRequests) controller.abort();
    this.toolRequests.clear();
    this.onEnded();
  }

  // ---- client frames -----------------------------------------------------------------------

  private onMessage(frame: ClientMessageFrame): void {
    const messageId = frame.message_id ?? newMessageId();
    if (this.relayedMessage(messageId)) {
      this.sendError(new SentinelError('conflict', `message_id "${messageId}" is already in progress`), { message_id: messageId });
      return;
    }
    const entry = this.relay(messageId, frame.stream !== false, frame.cancel_on_disconnect === true);
    // One create at a time per socket: the runs reach the agent's queue in the order the
    // messages arrived (two creates in flight can finish in either order on PostgreSQL).
    const previous = this.creating;
    // Taken now, inside the message's span: the create below runs after an await.
    const traceContext = captureTraceContext();
    const creating = previous.then(() =>
      this.runs.create(this.principal, this.agentId, {
        content: frame.content,
        message_id: messageId,
        ...(traceContext === undefined ? {} : { traceContext }),
        // A message id the server made up is no idempotency key: nobody can send it again.
        ...(frame.message_id === undefined ? { idempotency_key: null } : {}),
      }),
    );
    this.creating = creating.then(
      () => undefined,
      () => undefined,
    );
    entry.created = creating
      .then(
        // The same message_id again (created: false) relays the existing run from its first frame.
        ({ run }) => this.follow(entry, run.id, 0),
        (err: unknown) => {
          this.relayed.delete(entry);
          this.sendError(this.publicError(err), { message_id: messageId });
          return undefined;
        },
      );
  }

  private onResume(frame: ClientResumeFrame): void {
    if (this.relayedRun(frame.run_id)) {
      this.sendError(new SentinelError('conflict', `run "${frame.run_id}" is already relayed on this socket`), { run_id: frame.run_id });
      return;
    }
    const entry = this.relay(undefined, true, false);
    entry.created = this.follow(entry, frame.run_id, frame.since ?? 0);
  }

  /** A new relayed run of this session. */
  private relay(messageId: string | undefined, stream: boolean, cancelOnDisconnect: boolean): RelayedRun {
    const entry: RelayedRun = {
      messageId,
      runId: undefined,
      stream,
      cancelOnDisconnect,
      controller: new AbortController(),
      created: Promise.resolve(undefined),
      responseId: undefined,
      content: '',
    };
    this.relayed.add(entry);
    return entry;
  }

  /** Relays the frames of run `runId` after `since` until its terminal frame; resolves to the run id (undefined when it cannot be read). */
  private follow(entry: RelayedRun, runId: string, since: number): Promise<string | undefined> {
    entry.runId = runId;
    if (this.ended) return Promise.resolve(runId);
    return this.runs
      .subscribe(this.principal, this.agentId, runId, since, (frame) => this.relayFrame(entry, frame), entry.controller.signal)
      .then(
        ({ run, done }) => {
          entry.messageId ??= run.message_id;
          void done.then(() => this.relayed.delete(entry));
          return runId;
        },
        (err: unknown) => {
          this.relayed.delete(entry);
          this.sendError(this.publicError(err), { ...(entry.messageId === undefined ? {} : { message_id: entry.messageId }), run_id: runId });
          return undefined;
        },
      );
  }

  /** One frame of a relayed run, as this socket asked for it (streamed, or translated for `stream: false`). */
  private relayFrame(entry: RelayedRun, journaled: JournaledFrame): void {
    if (this.ended || !this.relayed.has(entry)) return;
    const frame = frameOf(journaled);
    if (frame.type === 'stream_start') entry.responseId = frame.response_id;
    else if (frame.type === 'stream_chunk') entry.content += frame.content;
    if ('message_id' in frame && typeof frame.message_id === 'string') entry.messageId ??= frame.message_id;
    const terminal = frame.type === 'stream_end' || frame.type === 'error';
    if (terminal) this.relayed.delete(entry);
    if (entry.stream) {
      this.sendOut(outgoing(frame, undefined, journaled.json));
      return;
    }
    // stream: false asks for one final frame: no stream frames, no pieces of reasoning.
    if (frame.type === 'stream_start' || frame.type === 'stream_chunk') return;
    if (frame.type === 'event' && frame.event_type === 'thinking' && frame.content !== undefined) return;
    if (frame.type === 'stream_end') {
      this.send({ ...frame, type: 'response' });
      return;
    }
    this.sendOut(outgoing(frame, undefined, journaled.json));
  }

  private relayedMessage(messageId: string): RelayedRun | undefined {
    for (const entry of this.relayed) if (entry.messageId === messageId) return entry;
    return undefined;
  }

  private relayedRun(runId: string): RelayedRun | undefined {
    for (const entry of this.relayed) if (entry.runId === runId) return entry;
    return undefined;
  }

  private onToolRequest(frame: ClientToolRequestFrame): void {
    const requestId = frame.request_id ?? newRequestId();
    if (this.toolRequests.size >= this.maxToolRequests) {
      this.sendError(new SentinelError('agent_busy', `too many tool requests in progress (at most ${this.maxToolRequests})`), { request_id: requestId });
      return;
    }
    const controller = new AbortController();
    this.toolRequests.add(controller);
    this.runtime
      .runTool(this.agentId, { tool: frame.tool, parameters: frame.parameters ?? {}, requestId }, controller.signal)
      .then((outcome) => {
        this.send({
          type: 'tool_result',
          timestamp: this.timestamp(),
          request_id: requestId,
          tool: outcome.tool,
          status: outcome.status,
          ...(outcome.status === 'success' ? { result: outcome.result } : { error: outcome.error }),
        });
      })
      .catch((err: unknown) => this.sendError(this.publicError(err), { request_id: requestId }))
      .finally(() => this.toolRequests.delete(controller));
  }

  /**
   * Decides a request of the agent's run waiting for an approval. The decision's `event
   * tool_approval` frame comes through the relay when this socket relays the run; otherwise it
   * is sent here (not journaled) so the client hears it was taken. Errors name the request.
   */
  private onToolApproval(frame: ClientToolApprovalFrame): void {
    const ids = { request_id: frame.request_id };
    const decision = { request_id: frame.request_id, approve: frame.approve, ...(frame.reason === undefined ? {} : { reason: frame.reason }) };
    void this.runs
      .runAwaitingApproval(this.principal, this.agentId)
      .then((waiting) => {
        if (!waiting) throw new SentinelError('not_found', `no run of this agent waits for tool approval "${frame.request_id}"`);
        return this.runs.decide(this.principal, this.agentId, waiting.id, decision);
      })
      .then((run) => {
        if (this.relayedRun(run.id)) return;
        const data = { request_id: decision.request_id, approve: decision.approve, ...(decision.reason === undefined ? {} : { reason: decision.reason }) };
        this.send({ type: 'event', event_type: 'tool_approval', timestamp: this.timestamp(), run_id: run.id, message_id: run.message_id, data });
      })
      .catch((err: unknown) => this.sendError(this.publicError(err), ids));
  }

  private onCancel(frame: ClientCancelFrame): void {
    const entry = frame.run_id !== undefined ? this.relayedRun(frame.run_id) : frame.message_id !== undefined ? this.relayedMessage(frame.message_id) : undefined;
    const ids = { ...(frame.message_id === undefined ? {} : { message_id: frame.message_id }), ...(frame.run_id === undefined ? {} : { run_id: frame.run_id }) };
    if (entry) {
      // Its terminal frame (`stream_end` reason cancelled) comes through the relay.
      void entry.created
        .then((runId) => (runId === undefined ? undefined : this.runs.cancel(this.principal, this.agentId, runId)))
        .catch((err: unknown) => this.sendError(this.publicError(err), ids));
      return;
    }
    if (frame.run_id !== undefined) {
      const runId = frame.run_id;
      this.runs.cancel(this.principal, this.agentId, runId).then(
        (run) => this.cancelRequested({ run_id: run.id, message_id: run.message_id }, `Cancel of run ${run.id} requested (${run.status})`),
        (err: unknown) => this.sendError(this.publicError(err), ids),
      );
      return;
    }
    const messageId = frame.message_id!;
    if (this.runtime.cancel(this.agentId, messageId) || this.runtime.cancelElsewhere(this.agentId, messageId)) {
      // Another socket's (or another instance's) message: whoever relays it sees `stream_end` reason cancelled.
      this.cancelRequested({ message_id: messageId }, `Cancel of message ${messageId} sent to every instance`);
      return;
    }
    this.sendError(new SentinelError('not_found', `no message "${messageId}" in progress`), ids);
  }

  private cancelRequested(ids: { message_id: string; run_id?: string }, content: string): void {
    this.send({ type: 'event', event_type: 'cancel_requested', timestamp: this.timestamp(), ...(ids.run_id === undefined ? {} : { run_id: ids.run_id }), message_id: ids.message_id, content });
  }

  // ---- sending -----------------------------------------------------------------------------

  private publicError(err: unknown): SentinelError {
    if (isSentinelError(err)) return err;
    this.logger.error('chat request failed', { agent_id: this.agentId, error: err instanceof Error ? err.message : String(err) });
    return new SentinelError('internal', 'internal server error');
  }

  private sendError(err: SentinelError, ids: { message_id?: string; request_id?: string; run_id?: string }): void {
    this.send({ type: 'error', timestamp: this.timestamp(), error: err.message, code: err.code, ...ids });
  }

  /** `json`: the frame's JSON when the caller built it already (see `outgoing`). Default: serialized on first use. */
  private send(frame: ServerFrame, json?: string): void {
    this.sendOut(outgoing(frame, undefined, json));
  }

  private sendOut(out: Outgoing): void {
    if (this.ended) return;
    try {
      this.sink.send(out);
    } catch (err) {
      this.logger.error('chat sink send failed', { agent_id: this.agentId, error: err instanceof Error ? err.message : String(err) });
    }
  }

  private timestamp(): string {
    return isoTimestamp(this.now());
  }
}
