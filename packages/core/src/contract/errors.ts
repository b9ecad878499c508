/**
 * The one error type of the SentinelStacks core. Transports map `code` to their own
 * vocabulary (HTTP status, WebSocket close code) through tables; nothing else about an
 * error crosses the seam. Check errors with {@link isSentinelError}, never `instanceof`
 * across packages (two copies of core in one process would break `instanceof`).
 */
export type ErrorCode =
  | 'invalid_request'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'method_not_allowed'
  | 'conflict'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'rate_limited'
  | 'agent_busy'
  | 'upstream_error'
  | 'upstream_timeout'
  | 'unavailable'
  | 'internal';

/** Every code, in one list, so transports can check their mapping tables are complete. */
export const ERROR_CODES: readonly ErrorCode[] = [
  'invalid_request',
  'unauthorized',
  'forbidden',
  'not_found',
  'method_not_allowed',
  'conflict',
  'payload_too_large',
  'unsupported_media_type',
  'rate_limited',
  'agent_busy',
  'upstream_error',
  'upstream_timeout',
  'unavailable',
  'internal',
];

const BRAND = Symbol.for('sentinel.error');

export interface SentinelErrorOptions {
  /** Seconds a client should wait before retrying (rate limits). */
  retryAfter?: number;
  /** Extra machine-readable detail that is safe to show the client (e.g. validation issues). */
  details?: unknown;
  /** HTTP `Allow` list for `method_not_allowed`. */
  allow?: string[];
  cause?: unknown;
}

export class SentinelError extends Error {
  readonly [BRAND] = true;
  readonly code: ErrorCode;
  readonly retryAfter: number | undefined;
  readonly details: unknown;
  readonly allow: string[] | undefined;

  constructor(code: ErrorCode, message: string, options: SentinelErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SentinelError';
    this.code = code;
    this.retryAfter = options.retryAfter;
    this.details = options.details;
    this.allow = options.allow;
  }
}

/** Brand check that survives duplicated module copies. */
export function isSentinelError(value: unknown): value is SentinelError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
}

/**
 * Turns anything thrown into a SentinelError safe to show a client: known errors pass
 * through, everything else becomes `internal` with a generic message (the original goes
 * to the log, never to the client).
 */
export function toPublicError(value: unknown): SentinelError {
  if (isSentinelError(value)) return value;
  return new SentinelError('internal', 'internal server error', { cause: value });
}

/** The JSON body every transport sends for an error: the seed's `{error}` plus a code. */
export function errorBody(err: SentinelError): { error: string; code: ErrorCode; details?: unknown } {
  return err.details === undefined
    ? { error: err.message, code: err.code }
    : { error: err.message, code: err.code, details: err.details };
}

/**
 * Error code → HTTP status, shared by every transport that speaks HTTP (the REST listener and
 * the WebSocket upgrade refusals). A `Record` over the union: a new code without a status is a
 * compile error, not a silent 500. WebSocket close codes have their own table in the ws package.
 */
const HTTP_STATUS_BY_ERROR_CODE: Record<ErrorCode, number> = {
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
  // A registry transfer that ran past its deadline or below its minimum rate (a gateway timeout).
  upstream_timeout: 504,
  unavailable: 503,
  internal: 500,
};

/** The HTTP status for an error code; 500 for anything unknown (a code from a newer core). */
export function httpStatusForErrorCode(code: ErrorCode): number {
  return HTTP_STATUS_BY_ERROR_CODE[code] ?? 500;
}
