/**
 * One open socket: its send queue, the FrameSink the core writes into, and the wiring of the
 * socket's events to the chat session or events subscription it serves.
 */
import type { Duplex } from 'node:stream';
import type { WebSocket, RawData } from 'ws';
import { outgoing, type FrameSink, type Logger, type PreparedChat, type PreparedEvents } from '@sentinel/api-core';
import { CLOSE_INTERNAL_ERROR, closeCodeFor, fitCloseReason } from './close-codes.js';
import { SendQueue, type SendQueueCounters } from './send-queue.js';

/** What a connection serves, already authorized before the upgrade completed. */
export type ConnectionTarget =
  | { kind: 'chat'; prepared: PreparedChat }
  | { kind: 'events'; prepared: PreparedEvents };

export interface ConnectionOptions {
  highWaterMarkBytes: number;
  sendQueueMaxBytes: number;
  counters: SendQueueCounters;
  logger: Logger;
  /** Who connected, for the log lines (never the token). */
  username: string;
}

/** A served socket, as the transport's bookkeeping (heartbeat, shutdown) sees it. */
export interface Connection {
  readonly ws: WebSocket;
  /** False from a ping until its pong; a connection still false at the next ping is dead. */
  alive: boolean;
  /** Bytes waiting in this socket's send queue. */
  readonly pendingBytes: number;
  /** Closes after the frames already accepted; resolves once the socket is closed. */
  close(code: number, reason: string): Promise<void>;
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

/**
 * Starts serving `ws` (just upgraded over `socket`): opens the chat session or events
 * subscription through a sink backed by the socket's send queue, and tears it down when the
 * socket closes. `onClosed` runs once, after the socket is closed.
 */
export function serveConnection(
  ws: WebSocket,
  socket: Duplex,
  target: ConnectionTarget,
  options: ConnectionOptions,
  onClosed: (connection: Connection) => void,
): Connection {
  const agentId = target.prepared.agentId;
  const log = options.logger;
  const queue = new SendQueue(ws, socket, {
    highWaterMarkBytes: options.highWaterMarkBytes,
    maxQueuedBytes: options.sendQueueMaxBytes,
    counters: options.counters,
    onTooSlow: () => log.warn('websocket consumer too slow, closing', { agent_id: agentId, stream: target.kind, username: options.username }),
  });
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));

  const connection: Connection = {
    ws,
    alive: true,
    get pendingBytes() {
      return queue.pendingBytes;
    },
    close(code, reason) {
      queue.close(code, fitCloseReason(reason));
      return closed;
    },
  };

  // Without an 'error' listener a reset connection or a protocol violation from the client
  // would be an uncaught exception that takes the whole server down (tRPC adapters/ws.ts).
  ws.on('error', (err) => {
    log.info('websocket error', { agent_id: agentId, stream: target.kind, error: err.message });
  });
  ws.on('pong', () => {
    connection.alive = true;
  });

  const sink: FrameSink = {
    send: (out) => queue.send(out.json),
    close: (reason, message) => queue.close(closeCodeFor(reason), fitCloseReason(message)),
  };

  let release: () => void = () => {};
  try {
    if (target.kind === 'chat') {
      const session = target.prepared.open(sink);
      release = () => session.detach();
      ws.on('message', (data, isBinary) => {
        if (isBinary) {
          queue.send(errorFrameJson(BINARY_REFUSED));
          return;
        }
        // receive() promises not to throw; if a bug makes it, the exception would surface in
        // ws's frame parser and take the process down, so it stops here.
        try {
          session.receive(textOf(data));
        } catch (err) {
          log.error('chat frame handling failed', { agent_id: agentId, error: err instanceof Error ? err.message : String(err) });
        }
      });
    } else {
      const subscription = target.prepared.open(sink);
      release = () => subscription.close();
      ws.on('message', () => queue.send(errorFrameJson(EVENTS_READ_ONLY)));
    }
  } catch (err) {
    log.error('websocket stream failed to open', { agent_id: agentId, stream: target.kind, error: err instanceof Error ? err.message : String(err) });
    queue.close(CLOSE_INTERNAL_ERROR, 'internal server error');
  }

  ws.once('close', (code) => {
    queue.dispose();
    try {
      release();
    } catch (err) {
      log.error('websocket stream failed to close', { agent_id: agentId, stream: target.kind, error: err instanceof Error ? err.message : String(err) });
    }
    log.debug('websocket closed', { agent_id: agentId, stream: target.kind, code });
    onClosed(connection);
  });
  log.debug('websocket opened', { agent_id: agentId, stream: target.kind, username: options.username });
  return connection;
}
