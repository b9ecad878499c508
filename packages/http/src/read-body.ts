/**
 * Reading a request body with a byte cap. The cap is enforced twice: by Content-Length before
 * a byte is read, and by counting while a chunked body streams, so nobody can make us buffer
 * more than the cap.
 */
import type { IncomingMessage } from 'node:http';
import { internal, invalidRequest, SentinelError } from '@sentinel/api-core';

/** Default body cap: 1 MiB. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

// fatal: invalid UTF-8 is a client error, not something to paper over with U+FFFD.
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Thrown when the client went away while we were reading; there is nobody left to answer. */
export class ClientGoneError extends Error {
  constructor() {
    super('client closed the connection while sending the body');
    this.name = 'ClientGoneError';
  }
}

function tooLarge(limit: number): SentinelError {
  return new SentinelError('payload_too_large', `request body exceeds ${limit} bytes`);
}

/** True when the request announces a body (a non-zero Content-Length, or Transfer-Encoding). */
export function announcesBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return length !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

/**
 * Reads the body as UTF-8 text, at most `limit` bytes. Rejects with `payload_too_large` (by
 * Content-Length, up front, or while counting), `invalid_request` for invalid UTF-8, or
 * {@link ClientGoneError}.
 */
export function readBodyText(req: IncomingMessage, limit: number): Promise<string> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(tooLarge(limit));
  if (req.destroyed) return Promise.reject(new ClientGoneError());
  if (req.readableEnded) {
    // A body parser of the host ran first and consumed the stream: a mounting mistake that
    // the developer must see in the log, not a client error.
    return Promise.reject(
      internal('the request body was already consumed: mount the listener before any body parser'),
    );
  }

  return new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;

    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onGone);
      req.off('close', onGone);
    };
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received <= limit) {
        chunks.push(chunk);
        return;
      }
      cleanup();
      chunks.length = 0;
      // Discard (never buffer) whatever else arrives until the connection is closed right
      // after the 413 is flushed: closing a socket with unread input makes the kernel send
      // a RST, which can destroy the 413 before the client has read it.
      req.on('data', discard);
      req.on('error', discard);
      reject(tooLarge(limit));
    };
    const onEnd = () => {
      cleanup();
      try {
        resolve(utf8.decode(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, received)));
      } catch {
        reject(invalidRequest('request body is not valid UTF-8'));
      }
    };
    const onGone = () => {
      cleanup();
      reject(new ClientGoneError());
    };

    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onGone);
    req.on('close', onGone);
  });
}

function discard(): void {}
