/**
 * Frames of the chat and events protocols (docs/ARCHITECTURE.md#the-protocol), transport-neutral. The core builds
 * frames as plain objects; an {@link Outgoing} carries one frame and its JSON text, serialized
 * at most once however many subscribers receive it (measured: serializing per subscriber is
 * most of the cost of a fan-out).
 */
import type { ErrorCode } from '../contract/errors.js';
import type { Principal } from '../contract/models.js';

/** Fields every server frame has. */
interface FrameBase {
  timestamp: string;
  /** Frames of a run (docs/ARCHITECTURE.md#runs): the run they belong to. */
  run_id?: string;
}

/**
 * `event`: something happened. On chat: `connection_established` (with `data`), `thinking`
 * (`message_id`, and `content` for a piece of reasoning), `tool_call` (`data: {call_id, tool,
 * parameters}`), `cancel_requested`. On the events stream: an `agent_status` snapshot (no `seq`),
 * `resync_required`, and every stored event with its `seq` and `agent_id`.
 */
export interface EventFrame extends FrameBase {
  type: 'event';
  event_type: string;
  content?: string;
  data?: Record<string, unknown>;
  message_id?: string;
  /** Stored events: increasing per agent; frames of a run: the run's 1, 2, 3… order. */
  seq?: number;
  agent_id?: string;
}

/** `stream_start`: the streamed answer to `message_id` begins. */
export interface StreamStartFrame extends FrameBase {
  /** Frames of a run: its 1, 2, 3… order, the cursor of a `resume`. */
  seq?: number;
  type: 'stream_start';
  message_id: string;
  response_id: string;
}

/** `stream_chunk`: the next piece of the answer (merged chunks keep the first `chunk_index`). */
export interface StreamChunkFrame extends FrameBase {
  /** Frames of a run: its 1, 2, 3… order, the cursor of a `resume`. */
  seq?: number;
  type: 'stream_chunk';
  message_id: string;
  response_id: string;
  chunk_index: number;
  content: string;
}

/** How an answer ended (README, frame reference). */
export type AnswerEndReason = 'stop' | 'length' | 'cancelled' | 'error' | 'shutdown' | 'deleted' | 'stopped' | 'tool_rounds';

/** Token counts of one answer. */
export interface AnswerUsage {
  input_tokens: number;
  output_tokens: number;
  total_tokens: number;
}

/** The terminal frame of a message: `stream_end` after a stream, `response` for `stream: false`. */
export interface AnswerEndFrame extends FrameBase {
  /** Frames of a run: its 1, 2, 3… order, the cursor of a `resume`. */
  seq?: number;
  type: 'stream_end' | 'response';
  message_id: string;
  response_id: string;
  /** The whole answer (the text streamed so far for a partial one). */
  content: string;
  reason: AnswerEndReason;
  usage: AnswerUsage;
}

/**
 * `tool_result`: a tool the model called (`message_id`, `call_id`) or a client's `tool_request`
 * (`request_id`) finished, with `result` on success or `error` on failure.
 */
export interface ToolResultFrame extends FrameBase {
  /** Frames of a run: its 1, 2, 3… order, the cursor of a `resume`. */
  seq?: number;
  type: 'tool_result';
  message_id?: string;
  call_id?: string;
  request_id?: string;
  tool: string;
  status: 'success' | 'error';
  result?: unknown;
  error?: string;
}

/** `error`: a human `error` message and its `code`, with the id of the frame it answers, if any. */
export interface ErrorFrame extends FrameBase {
  /** Frames of a run: its 1, 2, 3… order, the cursor of a `resume`. */
  seq?: number;
  type: 'error';
  error: string;
  code: ErrorCode;
  message_id?: string;
  request_id?: string;
  /** Seconds to wait before sending another such frame (`rate_limited` only). */
  retry_after?: number;
}

/**
 * `tool_approval_required`: the run stopped before a tool call that needs a person's decision
 * (one frame per gated call); a `tool_approval` frame or `POST …/runs/{run}/approvals` with
 * `request_id` decides it before `expires_at`.
 */
export interface ToolApprovalRequiredFrame extends FrameBase {
  type: 'tool_approval_required';
  run_id: string;
  seq: number;
  message_id: string;
  request_id: string;
  tool: string;
  parameters: Record<string, unknown>;
  expires_at: string;
}

/** A frame the server sends (snake_case fields), told apart by `type`. */
export type ServerFrame = EventFrame | StreamStartFrame | StreamChunkFrame | AnswerEndFrame | ToolResultFrame | ErrorFrame | ToolApprovalRequiredFrame;

/** The `type`s of server frames. */
export type ServerFrameType = ServerFrame['type'];

/** A frame and its serialization, shared by every subscriber that receives it. */
export interface Outgoing {
  readonly frame: ServerFrame;
  /** The frame as JSON text; computed on first use, then cached. */
  readonly json: string;
  /** For SSE: the event id (the event's `seq`), when the frame has one. */
  readonly id?: string;
}

// A class, not an object literal with a getter: a literal with accessors costs a closure per
// frame and made V8 keep such objects in the old generation (see the HTTP request context),
// and every chat chunk and every fanned-out event is one of these.
class OutgoingFrame implements Outgoing {
  readonly frame: ServerFrame;
  // `declare`: no own `id` property at all unless there is one (as the literal had it).
  declare readonly id?: string;
  #json: string | undefined;

  constructor(frame: ServerFrame, id: string | undefined, json: string | undefined) {
    this.frame = frame;
    if (id !== undefined) (this as { id?: string }).id = id;
    this.#json = json;
  }

  get json(): string {
    return (this.#json ??= JSON.stringify(this.frame));
  }
}

/**
 * Wraps a frame; `json` is serialized lazily, once. `json`, when given, must be exactly
 * `JSON.stringify(frame)` (a hot path that builds it faster, e.g. chat chunks). Default: none.
 */
export function outgoing(frame: ServerFrame, id?: string, json?: string): Outgoing {
  return new OutgoingFrame(frame, id, json);
}

/**
 * Why the core asks a transport to close a stream. Transports map these to their own codes
 * (WebSocket: agent_deleted → 1000, shutdown → 1001, too_slow → 1008).
 */
export type StreamCloseReason = 'agent_deleted' | 'shutdown' | 'too_slow';

/** Where the core sends frames of one connection. Implemented by each transport. */
export interface FrameSink {
  /** Queue one frame for the client. Must not throw; a closed sink ignores it. */
  send(out: Outgoing): void;
  /** Ends the connection (after the frames already sent) for `reason`, with a human `message`. */
  close(reason: StreamCloseReason, message: string): void;
  /**
   * Optional backpressure for bulk sends (an events replay of thousands of stored events):
   * resolves when the sink has passed on what it queued and can take another batch. The core
   * awaits it between batches, so it must also resolve once the sink is closed. Default
   * (absent): the core yields to the event loop instead.
   */
  whenReady?(): Promise<void>;
}

/** One open chat connection, as the core sees it. */
export interface ChatSession {
  /** Handles one text frame from the client. Never throws: bad input becomes an `error` frame. */
  receive(text: string): void;
  /**
   * The client went away. Turns this session queued are dropped; a turn already running
   * finishes (its result is kept in the history) but sends nothing more.
   */
  detach(): void;
}

/** A chat connection the core has authorized but not opened yet (see {@link ChatService.prepare}). */
export interface PreparedChat {
  readonly agentId: string;
  /** Opens the session: sends the welcome frame through `sink` synchronously. */
  open(sink: FrameSink): ChatSession;
}

/** The chat protocol of `/v1/agents/{id}/chat`, transport-neutral. */
export interface ChatService {
  /**
   * Checks that `principal` may chat with the agent (SentinelError `not_found` otherwise,
   * docs/ARCHITECTURE.md#auth-and-tenancy). Transports call it before accepting a connection (before the WebSocket
   * upgrade completes), then `open` once the connection exists.
   */
  prepare(principal: Principal, agentId: string): Promise<PreparedChat>;
}

export interface EventsSubscribeOptions {
  /** Replay events with `seq` greater than this from the durable log before going live. Default: no replay. */
  since?: number;
}

/** One live events subscription. */
export interface EventsSubscription {
  /** Stops delivery (idempotent). */
  close(): void;
}

export interface PreparedEvents {
  readonly agentId: string;
  /**
   * Starts delivery into `sink`: first an `agent_status` snapshot frame, then (with `since`)
   * the replay from the Store, then live events, in `seq` order with no gap and no duplicate.
   * A `since` older than retention gets a `resync_required` event first.
   */
  open(sink: FrameSink): EventsSubscription;
}

/** The events stream of `/v1/agents/{id}/events` (WebSocket and SSE). */
export interface EventsService {
  /** Authorizes like {@link ChatService.prepare}. */
  prepare(principal: Principal, agentId: string, options?: EventsSubscribeOptions): Promise<PreparedEvents>;
}
