/**
 * The chat protocol of `/v1/agents/{id}/chat` (docs/ARCHITECTURE.md#the-protocol), transport-neutral: client frames
 * in, server frames out through a {@link FrameSink}. Messages go to the {@link AgentRuntime}
 * queue; its callbacks become frames. Every message gets exactly one terminal frame
 * (`stream_end`, `response` or `error`); a bad frame gets an `error` frame and the session
 * stays usable.
 */
import type { AgentService } from '../agents/service.js';
import { isoTimestamp } from '../clock.js';
import type { EventBus } from '../bus.js';
import { isSentinelError, SentinelError } from '../contract/errors.js';
import type { Logger } from '../contract/logger.js';
import { silentLogger } from '../contract/logger.js';
import type { AgentRecord, Principal } from '../contract/models.js';
import { parseClientFrame, type ClientCancelFrame, type ClientFrame, type ClientMessageFrame, type ClientToolRequestFrame } from './client-frames.js';
import { outgoing, type ChatService, type ChatSession, type FrameSink, type PreparedChat, type ServerFrame, type StreamCloseReason } from './frames.js';
import { CHAT_ENDPOINT, checkEndpointScope } from './endpoints.js';
import { newMessageId, newRequestId, newResponseId } from '../contract/ids.js';
import { rateLimited, ratePartitionOf, type RateDecision, type RateLimiter, type ResolvedRateRule } from '../auth/rate-limit.js';
import type { AgentRuntime, TurnAbortReason, TurnEnd, TurnListener, TurnUsage } from '../runtime/runtime.js';

export interface AgentChatServiceOptions {
  agents: AgentService;
  runtime: AgentRuntime;
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

/** A message of this session that has not had its terminal frame yet. */
interface PendingMessage {
  stream: boolean;
  responseId: string;
  /** The text streamed so far (for a terminal frame the session must send itself). */
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
  private readonly pending = new Map<string, PendingMessage>();
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
      if (frame.type !== 'cancel' && this.rateRule !== undefined) {
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
    else this.onCancel(frame);
  }

  private failed(err: unknown): void {
    this.logger.error('chat frame handling failed', { agent_id: this.agentId, error: err instanceof Error ? err.message : String(err) });
    this.sendError(new SentinelError('internal', 'internal server error'), {});
  }

  /** The frame over the limit is not processed: an `error` frame `rate_limited` with the wait, and the session goes on. */
  private refuse(frame: ClientMessageFrame | ClientToolRequestFrame, decision: RateDecision): void {
    const ids = frame.type === 'message' ? (frame.message_id === undefined ? {} : { message_id: frame.message_id }) : frame.request_id === undefined ? {} : { request_id: frame.request_id };
    const err = rateLimited(this.rateRule!, decision);
    this.send({ type: 'error', timestamp: this.timestamp(), error: err.message, code: err.code, retry_after: decision.retryAfterSeconds, ...ids });
  }

  /** A check answered by Redis: frames that arrive meanwhile wait in `inbox`, in order. */
  private waitFor(taken: Promise<RateDecision>, frame: ClientMessageFrame | ClientToolRequestFrame): void {
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
    for (const [messageId, pending] of this.pending) {
      this.sendTerminal(messageId, pending, { content: pending.content, reason: turnReason, usage: { ...ZERO_USAGE } });
    }
    this.pending.clear();
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
    this.runtime.dropQueued(this.agentId, this);
    for (const controller of this.toolRequests) controller.abort();
    this.toolRequests.clear();
    this.onEnded();
  }

  // ---- client frames -----------------------------------------------------------------------

  private onMessage(frame: ClientMessageFrame): void {
    const messageId = frame.message_id ?? newMessageId();
    if (this.pending.has(messageId)) {
      this.sendError(new SentinelError('conflict', `message_id "${messageId}" is already in progress`), { message_id: messageId });
      return;
    }
    const pending: PendingMessage = { stream: frame.stream !== false, responseId: newResponseId(), content: '' };
    this.pending.set(messageId, pending);
    const result = this.runtime.submit(
      this.agentId,
      { messageId, content: frame.content, responseId: pending.responseId, owner: this },
      this.listenerFor(messageId, pending),
    );
    if (!result.accepted) {
      this.pending.delete(messageId);
      this.sendError(result.error, { message_id: messageId });
    }
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

  private onCancel(frame: ClientCancelFrame): void {
    const messageId = frame.message_id;
    if (this.pending.has(messageId)) {
      if (this.runtime.cancel(this.agentId, messageId, this)) return;
    } else if (this.runtime.cancelElsewhere(this.agentId, messageId)) {
      // Several instances: the message may be queued or running on another one (sent through
      // another connection); whoever has it ends it there, with `stream_end` reason cancelled.
      this.send({
        type: 'event',
        event_type: 'cancel_requested',
        timestamp: this.timestamp(),
        message_id: messageId,
        content: `Cancel of message ${messageId} sent to every instance`,
      });
      return;
    }
    this.sendError(new SentinelError('not_found', `no message "${messageId}" in progress`), { message_id: messageId });
  }

  // ---- runtime callbacks → frames ----------------------------------------------------------

  private listenerFor(messageId: string, pending: PendingMessage): TurnListener {
    const responseId = pending.responseId;
    // After a terminal frame or the end of the session, late callbacks send nothing.
    const live = () => !this.ended && this.pending.get(messageId) === pending;
    // The chunk frames of this turn differ only in timestamp, index and content: their JSON is
    // built from this middle part (the ids, escaped once per turn) instead of a JSON.stringify
    // of each frame, byte for byte what JSON.stringify gives (same keys, same order).
    let chunkIds: string | undefined;
    return {
      onStart: () => {
        if (!live()) return;
        this.send({ type: 'event', event_type: 'thinking', timestamp: this.timestamp(), message_id: messageId });
        if (pending.stream) this.send({ type: 'stream_start', timestamp: this.timestamp(), message_id: messageId, response_id: responseId });
      },
      onChunk: (delta, index) => {
        if (!live()) return;
        pending.content += delta;
        if (pending.stream) {
          const timestamp = this.timestamp();
          chunkIds ??= `,"message_id":${JSON.stringify(messageId)},"response_id":${JSON.stringify(responseId)},"chunk_index":`;
          this.send(
            { type: 'stream_chunk', timestamp, message_id: messageId, response_id: responseId, chunk_index: index, content: delta },
            `{"type":"stream_chunk","timestamp":${JSON.stringify(timestamp)}${chunkIds}${index},"content":${JSON.stringify(delta)}}`,
          );
        }
      },
      onThinking: (delta) => {
        // Streamed like the answer (not with stream: false, which asks for one final frame).
        // The same event_type as the start frame above, told apart by its non-empty content.
        if (!live() || !pending.stream) return;
        this.send({ type: 'event', event_type: 'thinking', timestamp: this.timestamp(), message_id: messageId, content: delta });
      },
      onToolCall: (call) => {
        if (!live()) return;
        this.send({
          type: 'event',
          event_type: 'tool_call',
          timestamp: this.timestamp(),
          message_id: messageId,
          data: { call_id: call.id, tool: call.name, parameters: call.arguments },
        });
      },
      onToolResult: (outcome) => {
        if (!live()) return;
        this.send({
          type: 'tool_result',
          timestamp: this.timestamp(),
          message_id: messageId,
          call_id: outcome.call_id,
          tool: outcome.tool,
          status: outcome.status,
          ...(outcome.status === 'success' ? { result: outcome.result } : { error: outcome.error }),
        });
      },
      onEnd: (end) => {
        if (!live()) return;
        this.pending.delete(messageId);
        this.sendTerminal(messageId, pending, end);
      },
      onError: (err) => {
        if (!live()) return;
        this.pending.delete(messageId);
        this.sendError(err, { message_id: messageId });
      },
    };
  }

  private sendTerminal(messageId: string, pending: PendingMessage, end: TurnEnd): void {
    this.send({
      type: pending.stream ? 'stream_end' : 'response',
      timestamp: this.timestamp(),
      message_id: messageId,
      response_id: pending.responseId,
      content: end.content,
      // Never requires_action here: this listener takes no approvals (gated calls are answered with an error).
      reason: end.reason === 'requires_action' ? 'error' : end.reason,
      usage: end.usage,
    });
  }

  // ---- sending -----------------------------------------------------------------------------

  private publicError(err: unknown): SentinelError {
    if (isSentinelError(err)) return err;
    this.logger.error('chat request failed', { agent_id: this.agentId, error: err instanceof Error ? err.message : String(err) });
    return new SentinelError('internal', 'internal server error');
  }

  private sendError(err: SentinelError, ids: { message_id?: string; request_id?: string }): void {
    this.send({ type: 'error', timestamp: this.timestamp(), error: err.message, code: err.code, ...ids });
  }

  /** `json`: the frame's JSON when the caller built it already (see `outgoing`). Default: serialized on first use. */
  private send(frame: ServerFrame, json?: string): void {
    if (this.ended) return;
    try {
      this.sink.send(outgoing(frame, undefined, json));
    } catch (err) {
      this.logger.error('chat sink send failed', { agent_id: this.agentId, error: err instanceof Error ? err.message : String(err) });
    }
  }

  private timestamp(): string {
    return isoTimestamp(this.now());
  }
}
