/**
 * Refusing an upgrade before it completes: a plain HTTP response written on the raw socket,
 * then the socket is destroyed. No WebSocket exists yet, so no frame is ever sent to a
 * client that is not allowed in (DESIGN.md §5).
 */
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { errorBody, type ErrorCode, type SentinelError } from '@sentinel/api-core';

// Code → HTTP status, the same mapping the HTTP transport uses (which this package may not
// import). A Record over the union: a new code without a status is a compile error.
const STATUS_BY_ERROR_CODE: Record<ErrorCode, number> = {
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  agent_busy: 429,
  upstream_error: 502,
  unavailable: 503,
  internal: 500,
};

/** The HTTP status an upgrade refused with `code` gets; 500 for a code this table does not know. */
export function upgradeStatusFor(code: ErrorCode): number {
  return STATUS_BY_ERROR_CODE[code] ?? 500;
}

/** Writes `err` as an HTTP response (`{error, code}` JSON) and destroys the socket once it is flushed. */
export function refuseUpgrade(socket: Duplex, err: SentinelError): void {
  if (socket.destroyed) return;
  const status = upgradeStatusFor(err.code);
  const body = JSON.stringify(errorBody(err));
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`,
    'Connection: close',
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
  ];
  if (status === 401) lines.push('WWW-Authenticate: Bearer');
  if (err.retryAfter !== undefined) lines.push(`Retry-After: ${Math.max(0, Math.ceil(err.retryAfter))}`);
  socket.once('finish', () => socket.destroy());
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
}
