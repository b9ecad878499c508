/**
 * Refusing an upgrade before it completes: a plain HTTP response written on the raw socket,
 * then the socket is destroyed. No WebSocket exists yet, so no frame is ever sent to a
 * client that is not allowed in (docs/ARCHITECTURE.md#auth-and-tenancy).
 */
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { API_VERSION_HEADER, apiVersionHeader, httpStatusForErrorCode, publicErrorBody, type SentinelError } from '@sentinel/api-core';

/** Writes `err` as an HTTP response (`{error, code, docs}` JSON, with `Sentinel-Api-Version`) and destroys the socket once it is flushed. */
export function refuseUpgrade(socket: Duplex, err: SentinelError): void {
  if (socket.destroyed) return;
  const status = httpStatusForErrorCode(err.code);
  // publicErrorBody: an `internal` refusal must not show its message (it goes to the log).
  const body = JSON.stringify(publicErrorBody(err));
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`,
    'Connection: close',
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    `${API_VERSION_HEADER}: ${apiVersionHeader()}`,
  ];
  if (err.challenge !== undefined) lines.push(`WWW-Authenticate: ${err.challenge}`);
  else if (status === 401) lines.push('WWW-Authenticate: Bearer');
  if (err.retryAfter !== undefined) lines.push(`Retry-After: ${Math.max(0, Math.ceil(err.retryAfter))}`);
  socket.once('finish', () => socket.destroy());
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
}
