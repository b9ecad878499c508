/**
 * Frames of the chat and events protocols (docs/ARCHITECTURE.md#the-protocol), transport-neutral. The core builds
 * frames as plain objects; an {@link Outgoing} carries one frame and its JSON text, serialized
 * at most once however many subscribers receive it (measured: serializing per subscriber is
 * most of the cost of a fan-out).
 */
import type { Principal } from '../contract/models.js';

/** A frame the server sends: `{type, timestamp, ...}` (snake_case fields). */
export interface ServerFrame {
  type: string;
  timestamp: string;
  [field: string]: unknown;
}

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
