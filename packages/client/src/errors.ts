/**
 * The one error type of the SDK: every failed call (an API error answer, a dropped connection,
 * an aborted call, a protocol violation) rejects with a SentinelApiError, so callers branch on
 * `status` and `code` the way the server's error catalogue explains them.
 */

/**
 * Codes the SDK itself gives to failures that never reached an API answer. The live side adds:
 * `connection_lost`, a chat message (or a run's SSE stream) cut off before its terminal frame
 * that could not be resumed within its bounds (the run goes on on the server: `client.runs`
 * reads it), or a socket that could not be reopened; `connection_closed`, a socket the server
 * closed for good (1000 agent deleted, 1008 policy); `session_closed`, a chat session closed by
 * the caller.
 */
export type ClientErrorCode = 'network_error' | 'aborted' | 'invalid_response' | 'connection_lost' | 'connection_closed' | 'session_closed';

export interface SentinelApiErrorInit {
  /** HTTP status of the answer; 0 when no answer came (network, abort). */
  status: number;
  /** The server's `code` (see /docs/errors), or a {@link ClientErrorCode}. */
  code: string;
  message: string;
  /** The server's `docs` link (relative to the server), when it sent one. */
  docs?: string;
  /** The server's `details` (e.g. validation issues), when it sent them. */
  details?: unknown;
  /** The answer's `X-Request-Id`, to quote in a report. */
  requestId?: string;
  /** Seconds the server asked to wait (`Retry-After`), on 429 and 503. */
  retryAfter?: number;
  cause?: unknown;
}

export class SentinelApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly docs: string | undefined;
  readonly details: unknown;
  readonly requestId: string | undefined;
  readonly retryAfter: number | undefined;

  constructor(init: SentinelApiErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'SentinelApiError';
    this.status = init.status;
    this.code = init.code;
    this.docs = init.docs;
    this.details = init.details;
    this.requestId = init.requestId;
    this.retryAfter = init.retryAfter;
  }
}

/** True for a SentinelApiError (also across duplicated copies of the SDK). */
export function isSentinelApiError(value: unknown): value is SentinelApiError {
  return value instanceof Error && value.name === 'SentinelApiError' && typeof (value as { code?: unknown }).code === 'string';
}

/** The error for a call its AbortSignal ended. */
export function abortedError(signal: AbortSignal | undefined): SentinelApiError {
  return new SentinelApiError({ status: 0, code: 'aborted', message: 'the call was aborted', cause: signal?.reason });
}
