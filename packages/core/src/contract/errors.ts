/**
 * The one error type of the SentinelStacks core. Transports map `code` to their own
 * vocabulary (HTTP status, WebSocket close code) through tables; nothing else about an
 * error crosses the seam. Check errors with {@link isSentinelError}, never `instanceof`
 * across packages (two copies of core in one process would break `instanceof`).
 */
import { errorDocsUrl } from './error-catalogue.js';

export type ErrorCode =
  | 'invalid_request'
  | 'unauthorized'
  | 'forbidden'
  | 'insufficient_scope'
  | 'not_found'
  | 'method_not_allowed'
  | 'conflict'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'rate_limited'
  | 'quota_exceeded'
  | 'agent_busy'
  | 'approval_timeout'
  | 'idempotency_conflict'
  | 'interrupted'
  | 'upstream_error'
  | 'upstream_timeout'
  | 'unavailable'
  | 'internal';

/** Every code, in one list, so transports can check their mapping tables are complete. */
export const ERROR_CODES: readonly ErrorCode[] = [
  'invalid_request',
  'unauthorized',
  'forbidden',
  'insufficient_scope',
  'not_found',
  'method_not_allowed',
  'conflict',
  'payload_too_large',
  'unsupported_media_type',
  'rate_limited',
  'quota_exceeded',
  'agent_busy',
  'approval_timeout',
  'idempotency_conflict',
  'interrupted',
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
  /**
   * The `WWW-Authenticate` challenge for this error (RFC 6750 §3), e.g.
   * `Bearer error="insufficient_scope", scope="agents:write"`. Default: `Bearer` for
   * `unauthorized`, none otherwise.
   */
  challenge?: string;
  /**
   * Response headers the error carries to the client, e.g. the RateLimit fields of a limited
   * route (a transport that speaks HTTP sets them; others ignore them). Default none.
   */
  headers?: Readonly<Record<string, string>>;
  cause?: unknown;
}

export class SentinelError extends Error {
  readonly [BRAND] = true;
  readonly code: ErrorCode;
  readonly retryAfter: number | undefined;
  readonly details: unknown;
  readonly allow: string[] | undefined;
  readonly challenge: string | undefined;
  readonly headers: Readonly<Record<string, string>> | undefined;

  constructor(code: ErrorCode, message: string, options: SentinelErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SentinelError';
    this.code = code;
    this.retryAfter = options.retryAfter;
    this.details = options.details;
    this.allow = options.allow;
    this.challenge = options.challenge;
    this.headers = options.headers;
  }
}

/**
 * `err` (anything thrown) as a SentinelError that also carries `headers` (merged over its own),
 * so the seam can put response headers on an error it did not raise. A copy: errors may be
 * shared, and the headers belong to one response.
 */
export function withResponseHeaders(err: unknown, headers: Readonly<Record<string, string>>): SentinelError {
  const base = toPublicError(err);
  return new SentinelError(base.code, base.message, {
    retryAfter: base.retryAfter,
    details: base.details,
    allow: base.allow,
    challenge: base.challenge,
    headers: base.headers === undefined ? headers : { ...base.headers, ...headers },
    cause: base.cause,
  });
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

/** The JSON body of an HTTP error: the seed's `{error}`, a code, optional details and the code's docs anchor. */
export interface ErrorBody {
  error: string;
  code: ErrorCode;
  details?: unknown;
  /** Relative URL of the code's entry in the error catalogue, e.g. `/docs/errors#not_found`. */
  docs: string;
}

/**
 * The JSON body every transport sends for an error: the seed's `{error}` plus a code and
 * `docs`, the catalogue anchor that says what the code means and what to do about it.
 * An `internal` error shows its own message here: transports send {@link publicErrorBody}.
 */
export function errorBody(err: SentinelError): ErrorBody {
  const docs = errorDocsUrl(err.code);
  return err.details === undefined
    ? { error: err.message, code: err.code, docs }
    : { error: err.message, code: err.code, details: err.details, docs };
}

/**
 * {@link errorBody} as a client may see it: an `internal` error's message and details belong
 * in the log, so the client gets the generic text. Every HTTP error body (responses, refused
 * upgrades, the error line of a stream) is built here, so none lacks `docs`.
 */
export function publicErrorBody(err: SentinelError): ErrorBody {
  return err.code === 'internal' ? { error: 'internal server error', code: 'internal', docs: errorDocsUrl('internal') } : errorBody(err);
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
  insufficient_scope: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  quota_exceeded: 429,
  agent_busy: 429,
  // Nobody decided a run's tool approval in time: the person's answer is what timed out.
  approval_timeout: 408,
  idempotency_conflict: 409,
  // A run whose server went away under it (crash, kill, shutdown): the same request may be sent again.
  interrupted: 503,
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

// The catalogue: one constructor per error that more than one place raises, so the code and
// the message shape are chosen once (like Fastify's lib/errors.js). Messages are part of the
// wire (tests and the README quote them): change a shape here only on purpose. One-off errors
// with a code of their own keep `new SentinelError(code, message)`.

/** `unauthorized`: the request carries no credentials where a user is needed. */
export function authenticationRequired(): SentinelError {
  return new SentinelError('unauthorized', 'authentication required');
}

/** `unauthorized`: the bearer token is malformed, or its signature or claims do not check out. */
export function invalidToken(): SentinelError {
  return new SentinelError('unauthorized', 'invalid token');
}

/** `unauthorized`: the bearer token was valid once but its lifetime is over. */
export function tokenExpired(): SentinelError {
  return new SentinelError('unauthorized', 'token expired');
}

/** `forbidden`: the caller is logged in but the action needs the admin role. */
export function adminRequired(): SentinelError {
  return new SentinelError('forbidden', 'admin role required');
}

/**
 * `insufficient_scope`: the credential (an API key, a ticket) lacks the scope the route or
 * socket needs; the challenge names it, as RFC 6750 §3.1 says.
 */
export function insufficientScope(scope: string): SentinelError {
  return new SentinelError('insufficient_scope', `this credential lacks the scope "${scope}"`, {
    challenge: `Bearer error="insufficient_scope", scope="${scope}"`,
    details: { scope },
  });
}

/** `insufficient_scope` for a route only a login session may call (never an API key or a ticket). */
export function sessionRequired(): SentinelError {
  return new SentinelError('insufficient_scope', 'this route needs a login session, not an API key or a ticket', {
    challenge: 'Bearer error="insufficient_scope"',
  });
}

/**
 * `quota_exceeded`: an admin-set daily or agent quota of the user is used up (`details` names
 * which, the limit and the use so far). Daily quotas reset at 00:00 UTC.
 */
export function quotaExceeded(quota: 'tokens_per_day' | 'turns_per_day' | 'concurrent_agents', limit: number, used: number): SentinelError {
  const what = quota === 'tokens_per_day' ? 'tokens per day' : quota === 'turns_per_day' ? 'turns per day' : 'agents';
  const when = quota === 'concurrent_agents' ? 'delete an agent first' : 'it resets at 00:00 UTC';
  return new SentinelError('quota_exceeded', `quota exceeded: ${used} of ${limit} ${what} used (${when})`, {
    details: { quota, limit, used },
  });
}

/** `forbidden` with the reason, e.g. whose repository it is or which role is missing. */
export function forbidden(reason: string): SentinelError {
  return new SentinelError('forbidden', reason);
}

/** `not_found` for a thing the client named: `agent "x" not found`. */
export function notFound(kind: string, ref: string): SentinelError {
  return new SentinelError('not_found', `${kind} "${ref}" not found`);
}

/** `conflict` for a create whose name is taken: `user "x" already exists`. */
export function alreadyExists(kind: string, ref: string): SentinelError {
  return new SentinelError('conflict', `${kind} "${ref}" already exists`);
}

/** `conflict` with the reason: the request is valid but the current state does not allow it. */
export function conflict(reason: string, options: Pick<SentinelErrorOptions, 'details'> = {}): SentinelError {
  return new SentinelError('conflict', reason, options);
}

/** `invalid_request` with the reason, for input the client can correct. */
export function invalidRequest(reason: string, options: Pick<SentinelErrorOptions, 'details' | 'cause'> = {}): SentinelError {
  return new SentinelError('invalid_request', reason, options);
}

/**
 * `invalid_request` listing every schema issue of an input: `invalid body: /name: is required`,
 * with the issues (JSON pointer `path` and `message`) as `details.issues` for clients to show.
 */
export function invalidInput(what: string, issues: ReadonlyArray<{ path: string; message: string }>): SentinelError {
  const summary = issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ');
  return new SentinelError('invalid_request', `invalid ${what}: ${summary}`, { details: { issues } });
}

/** `payload_too_large` for a stored or fetched object over its cap: `manifest is 9 bytes, more than the 8-byte limit`. */
export function tooLarge(what: string, size: number, cap: number): SentinelError {
  return new SentinelError('payload_too_large', `${what} is ${size} bytes, more than the ${cap}-byte limit`);
}

/** `unavailable`: something this server needs is missing, closed or not configured right now. */
export function unavailable(reason: string, options: Pick<SentinelErrorOptions, 'details' | 'cause'> = {}): SentinelError {
  return new SentinelError('unavailable', reason, options);
}

/** `unavailable` for a data directory the server cannot read or write. */
export function dataDirectoryUnusable(dir: string, reason: string, cause: unknown): SentinelError {
  return unavailable(`cannot use data directory ${dir}: ${reason}`, { cause });
}

/**
 * `upstream_error` from a service this server calls (a model provider, a registry, a tool's
 * target), prefixed with who failed: `openai: the stream ended before the answer was complete`.
 */
export function upstream(source: string, problem: string, options: Pick<SentinelErrorOptions, 'cause'> = {}): SentinelError {
  return new SentinelError('upstream_error', `${source}: ${problem}`, options);
}

/** `upstream_error`: a streamed answer stopped without its final event. */
export function streamEndedEarly(source: string): SentinelError {
  return upstream(source, 'the stream ended before the answer was complete');
}

/** `upstream_error`: the model reported an error in the middle of its streamed answer. */
export function failedMidStream(source: string, detail: string): SentinelError {
  return upstream(source, `the model failed mid-stream: ${detail || 'unknown error'}`);
}

/**
 * `internal`: a bug or a broken invariant. The message goes to the log; a transport shows the
 * client only the generic 500 text.
 */
export function internal(reason: string, cause?: unknown): SentinelError {
  return new SentinelError('internal', reason, cause === undefined ? {} : { cause });
}
