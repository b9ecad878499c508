/** Options of {@link attachWebSocket}, each with its default next to it. */
import type { Logger } from '@sentinel/api-core';

export interface WebSocketOptions {
  /** Largest incoming message in bytes; a bigger one closes the socket with 1009. Default 65536 (64 KiB). */
  maxPayload?: number;
  /** Milliseconds between pings; a peer that has not answered the previous ping is terminated. Default 30000. */
  pingIntervalMs?: number;
  /** Bytes a socket may have waiting in its send queue before it is closed with 1008 as too slow. Default 1048576 (1 MiB). */
  sendQueueMaxBytes?: number;
  /** Bytes buffered in the socket (`bufferedAmount`) above which frames wait in the send queue. Default 262144 (256 KiB). */
  highWaterMarkBytes?: number;
  /** Milliseconds a closing socket waits for the peer's close frame before it is destroyed. Default 5000. */
  closeTimeoutMs?: number;
  /**
   * Negotiate permessage-deflate. Default false: measured here it is ≈ 6× slower and costs
   * ≈ 200 KiB per socket once used (docs/ARCHITECTURE.md#the-protocol).
   */
  perMessageDeflate?: boolean;
  /**
   * Milliseconds between rechecks of every open socket's credential (a safety net: revocations
   * close sockets at once, expiry by a timer). Default 60000.
   */
  credentialRecheckIntervalMs?: number;
  /** Where connection events and failures are logged (never tokens). Default: the api's logger. */
  logger?: Logger;
}

export interface ResolvedWebSocketOptions {
  maxPayload: number;
  pingIntervalMs: number;
  sendQueueMaxBytes: number;
  highWaterMarkBytes: number;
  closeTimeoutMs: number;
  perMessageDeflate: boolean;
  credentialRecheckIntervalMs: number;
  logger: Logger;
}

/** The defaults of {@link WebSocketOptions} (the logger defaults to the api's). */
export const WEBSOCKET_DEFAULTS: Readonly<Omit<ResolvedWebSocketOptions, 'logger'>> = Object.freeze({
  maxPayload: 64 * 1024,
  pingIntervalMs: 30_000,
  sendQueueMaxBytes: 1024 * 1024,
  highWaterMarkBytes: 256 * 1024,
  closeTimeoutMs: 5_000,
  perMessageDeflate: false,
  credentialRecheckIntervalMs: 60_000,
});

/** Every option with its default filled in; throws RangeError for a limit that is not a positive integer. */
export function resolveWebSocketOptions(options: WebSocketOptions, fallbackLogger: Logger): ResolvedWebSocketOptions {
  const resolved: ResolvedWebSocketOptions = {
    maxPayload: options.maxPayload ?? WEBSOCKET_DEFAULTS.maxPayload,
    pingIntervalMs: options.pingIntervalMs ?? WEBSOCKET_DEFAULTS.pingIntervalMs,
    sendQueueMaxBytes: options.sendQueueMaxBytes ?? WEBSOCKET_DEFAULTS.sendQueueMaxBytes,
    highWaterMarkBytes: options.highWaterMarkBytes ?? WEBSOCKET_DEFAULTS.highWaterMarkBytes,
    closeTimeoutMs: options.closeTimeoutMs ?? WEBSOCKET_DEFAULTS.closeTimeoutMs,
    perMessageDeflate: options.perMessageDeflate ?? WEBSOCKET_DEFAULTS.perMessageDeflate,
    credentialRecheckIntervalMs: options.credentialRecheckIntervalMs ?? WEBSOCKET_DEFAULTS.credentialRecheckIntervalMs,
    logger: options.logger ?? fallbackLogger,
  };
  for (const key of ['maxPayload', 'pingIntervalMs', 'sendQueueMaxBytes', 'highWaterMarkBytes', 'closeTimeoutMs', 'credentialRecheckIntervalMs'] as const) {
    const value = resolved[key];
    // A zero or negative limit would silently mean "no limit" to ws, or a busy ping loop.
    if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`WebSocket option ${key} must be a positive integer, got ${String(value)}`);
  }
  return resolved;
}
