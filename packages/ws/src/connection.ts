/**
 * One open socket: its send queue, the FrameSink the core writes into, and the wiring of the
 * socket's events to the chat session or events subscription it serves.
 *
 * Memory per idle socket is what a server with thousands of open sockets pays, so a
 * connection is one object: it is the core's FrameSink itself, the socket's listeners are
 * module-level functions that find it through a symbol on the socket (EventEmitter calls them
 * with the socket as `this`), and nothing refers to the upgrade request or the prepared target
 * once the stream is open (measured here: about half the heap an idle socket used to cost).
 */
import type { Duplex } from 'node:stream';
import type { WebSocket, RawData } from 'ws';
import {
  outgoing,
  runInContext,
  startWebSocketMessageSpan,
  type ServerSpan,
  type ChatSession,
  type EventsSubscription,
  type FrameSink,
  type Logger,
  type Outgoing,
  type PreparedChat,
  type PreparedEvents,
  type StreamCloseReason,
  type WebSocketChannelMetrics,
} from '@sentinel/api-core';
import { CLOSE_INTERNAL_ERROR, closeCodeFor, fitCloseReason } from './close-codes.js';
import { SendQueue, type SendQueueCounters, type SlowConsumerListener } from './send-queue.js';

/** What a connection serves, already authorized before the upgrade completed. */
export type ConnectionTarget =
  | { kind: 'chat'; prepared: PreparedChat }
  | { kind: 'events'; prepared: PreparedEvents };

/** Settings shared by every connection of one attached transport (one object for all of them). */
export interface ConnectionOptions {
  highWaterMarkBytes: number;
  /** Queue size past which a socket is closed with 1008 (the send queue's `maxQueuedBytes`). */
  maxQueuedBytes: number;
  counters: SendQueueCounters;
  logger: Logger;
  /** Per-channel counters (`sentinel_ws_*`). Default: none. */
  metrics?: Readonly<Record<ConnectionTarget['kind'], WebSocketChannelMetrics>>;
  /** Called once per connection, after its socket closed. */
  onClosed(connection: Connection): void;
}

/** A served socket, as the transport's bookkeeping (heartbeat, shutdown) sees it. */
export interface Connection {
  readonly ws: WebSocket;
  /** False from a ping until its pong; a connection still false at the next ping is dead. */
  alive: boolean;
  /** Bytes waiting in this socket's send queue. */
  readonly pendingBytes: number;
  /** Closes after the frames already accepted; resolves once the socket is closed. */
  closeSocket(code: number, reason: string): Promise<void>;
}

function errorFrameJson(error: string): string {
  return outgoing({ type: 'error', timestamp: new Date().toISOString(), error, code: 'invalid_request' }).json;
}

const BINARY_REFUSED = 'binary frames are not supported: send each message as a JSON text frame';
const EVENTS_READ_ONLY = 'the events stream takes no messages from the client';

function textOf(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}

const CONNECTION = Symbol('sentinel.connection');
type ServedSocket = WebSocket & { [CONNECTION]?: ServedConnection };

// Shared listeners: `this` is the socket (see the file comment).
function onSocketError(this: ServedSocket, err: Error): void {
  this[CONNECTION]?.socketError(err);
}
function onSocketPong(this: ServedSocket): void {
  const connection = this[CONNECTION];
  if (connection) connection.alive = true;
}
function onSocketMessage(this: ServedSocket, data: RawData, isBinary: boolean): void {
  this[CONNECTION]?.message(data, isBinary);
}
function onSocketClose(this: ServedSocket, code: number): void {
  this[CONNECTION]?.socketClosed(code);
}

class ServedConnection implements Connection, FrameSink, SlowConsumerListener {
  alive = true;
  readonly ws: ServedSocket;
  readonly #queue: SendQueue;
  readonly #options: ConnectionOptions;
  readonly #kind: ConnectionTarget['kind'];
  readonly #agentId: string;
  /** Who connected, for the log lines (never the token). */
  readonly #username: string;
  #session: ChatSession | undefined;
  #subscription: EventsSubscription | undefined;
  #closed = false;
  readonly #metrics: WebSocketChannelMetrics | undefined;
  /** Resolvers of closeSocket() callers waiting for the 'close' event. */
  #waiters: Array<() => void> | undefined;
  /** The upgrade span's context, parent of every message's span; undefined when not traced. */
  readonly #traceContext: ServerSpan['context'];

  constructor(ws: WebSocket, socket: Duplex, kind: ConnectionTarget['kind'], agentId: string, username: string, options: ConnectionOptions, traceContext: ServerSpan['context']) {
    this.ws = ws;
    this.#traceContext = traceContext;
    this.#options = options;
    this.#kind = kind;
    this.#agentId = agentId;
    this.#username = username;
    this.#queue = new SendQueue(ws, socket, options, this);
    this.#metrics = options.metrics?.[kind];
    this.#metrics?.opened();
  }

  get pendingBytes(): number {
    return this.#queue.pendingBytes;
  }

  /** Opens the chat session or events subscription; the core writes into this connection. */
  open(target: ConnectionTarget): void {
    if (target.kind === 'chat') this.#session = target.prepared.open(this);
    else this.#subscription = target.prepared.open(this);
  }

  // FrameSink (the core's side).
  send(out: Outgoing): void {
    // sendFrame: chunks of a stream may be merged while the socket is backed up.
    this.#queue.sendFrame(out);
    this.#metrics?.sent();
  }

  close(reason: StreamCloseReason, message: string): void {
    this.#queue.close(closeCodeFor(reason), fitCloseReason(message));
  }

  // SlowConsumerListener.
  onTooSlow(): void {
    this.#metrics?.slowConsumerClosed();
    this.#options.logger.warn('websocket consumer too slow, closing', { agent_id: this.#agentId, stream: this.#kind, username: this.#username });
  }

  closeSocket(code: number, reason: string): Promise<void> {
    this.#queue.close(code, fitCloseReason(reason));
    if (this.#closed) return Promise.resolve();
    return new Promise<void>((resolve) => (this.#waiters ??= []).push(resolve));
  }

  /** Fails the stream before it opened: an internal error, 1011. */
  failToOpen(err: unknown): void {
    this.#options.logger.error('websocket stream failed to open', {
      agent_id: this.#agentId,
      stream: this.#kind,
      error: err instanceof Error ? err.message : String(err),
    });
    this.#queue.close(CLOSE_INTERNAL_ERROR, 'internal server error');
  }

  socketError(err: Error): void {
    // Without an 'error' listener a reset connection or a protocol violation from the client
    // would be an uncaught exception that takes the whole server down (tRPC adapters/ws.ts).
    this.#options.logger.info('websocket error', { agent_id: this.#agentId, stream: this.#kind, error: err.message });
  }

  message(data: RawData, isBinary: boolean): void {
    this.#metrics?.received();
    if (this.#kind === 'events') {
      this.#sendError(EVENTS_READ_ONLY);
      return;
    }
    const session = this.#session;
    if (session === undefined) return;
    if (isBinary) {
      this.#sendError(BINARY_REFUSED);
      return;
    }
    // receive() promises not to throw; if a bug makes it, the exception would surface in ws's
    // frame parser and take the process down, so it stops here.
    const traced = startWebSocketMessageSpan(this.#traceContext, this.#kind, this.#agentId);
    try {
      // A turn the message queues captures this context: its span is the message's child.
      runInContext(traced.context, () => session.receive(textOf(data)));
    } catch (err) {
      this.#options.logger.error('chat frame handling failed', { agent_id: this.#agentId, error: err instanceof Error ? err.message : String(err) });
    } finally {
      traced.span.end();
    }
  }

  #sendError(error: string): void {
    this.#queue.send(errorFrameJson(error));
    this.#metrics?.sent();
  }

  socketClosed(code: number): void {
    this.#closed = true;
    this.#metrics?.closed();
    this.#queue.dispose();
    try {
      this.#session?.detach();
      this.#subscription?.close();
    } catch (err) {
      this.#options.logger.error('websocket stream failed to close', {
        agent_id: this.#agentId,
        stream: this.#kind,
        error: err instanceof Error ? err.message : String(err),
      });
    }
    this.#session = undefined;
    this.#subscription = undefined;
    this.#options.logger.debug('websocket closed', { agent_id: this.#agentId, stream: this.#kind, code });
    this.#options.onClosed(this);
    for (const resolve of this.#waiters?.splice(0) ?? []) resolve();
  }
}

/**
 * Starts serving `ws` (just upgraded over `socket`) for `username`: opens the chat session or
 * events subscription with the connection as its sink, and tears it down when the socket
 * closes (then `options.onClosed` runs, once). `traceContext`: the upgrade span's, parent of the
 * socket's message spans. Default none: messages are not traced.
 */
export function serveConnection(
  ws: WebSocket,
  socket: Duplex,
  target: ConnectionTarget,
  username: string,
  options: ConnectionOptions,
  traceContext?: ServerSpan['context'],
): Connection {
  const connection = new ServedConnection(ws, socket, target.kind, target.prepared.agentId, username, options, traceContext);
  const served = ws as ServedSocket;
  served[CONNECTION] = connection;
  served.on('error', onSocketError);
  served.on('pong', onSocketPong);
  served.on('message', onSocketMessage);
  served.once('close', onSocketClose);
  try {
    connection.open(target);
  } catch (err) {
    connection.failToOpen(err);
  }
  options.logger.debug('websocket opened', { agent_id: target.prepared.agentId, stream: target.kind, username });
  return connection;
}
