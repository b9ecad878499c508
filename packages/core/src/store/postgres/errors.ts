/**
 * Turns what `pg` throws into the SentinelError codes the services branch on, the same way
 * the SQLite store does: constraint violations are the client's fault (`conflict`,
 * `invalid_request`), everything about reaching the server or waiting on it is `unavailable`
 * (HTTP 503, retry later), and anything else is a bug that stays `internal`.
 */
import { SentinelError, isSentinelError } from '../../contract/errors.js';
import { STORE_REFUSED_MESSAGE } from '../types.js';

/** How one write phrases its constraint failures; `constraint` is PostgreSQL's constraint name. */
export interface ConstraintMessages {
  /** Message for a UNIQUE / PRIMARY KEY violation. Default: "the record already exists". */
  conflict?: (constraint: string | undefined) => string;
  /** Message for a FOREIGN KEY violation. Default: "a referenced record does not exist". */
  foreignKey?: (constraint: string | undefined) => string;
  /** Code for a FOREIGN KEY violation (a delete blocked by a reference is a conflict). Default `invalid_request`. */
  foreignKeyCode?: 'invalid_request' | 'conflict';
}

interface PgErrorShape {
  code?: unknown;
  constraint?: unknown;
  message?: unknown;
  severity?: unknown;
}

/** Node socket errors that mean "the server cannot be reached (right now)". */
const NETWORK_ERRNOS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ECONNABORTED: 'connection aborted',
  EPIPE: 'connection closed',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EHOSTDOWN: 'host down',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
};

/** pg's own (non-SQLSTATE) errors for a dead or slow connection, matched on their message. */
const CONNECTION_MESSAGES: readonly [RegExp, string][] = [
  [/timeout exceeded when trying to connect/i, 'timed out waiting for a connection'],
  [/connection timeout/i, 'connection timed out'],
  [/query read timeout/i, 'the server did not answer in time'],
  [/connection terminated/i, 'connection lost'],
  [/client has encountered a connection error/i, 'connection lost'],
  [/client was closed|not queryable/i, 'connection lost'],
  [/cannot use a pool after calling end/i, 'the store is closed'],
];

function shapeOf(err: unknown): PgErrorShape {
  return typeof err === 'object' && err !== null ? (err as PgErrorShape) : {};
}

/** The SQLSTATE of a server error (`23505`), or undefined for client-side failures. */
function sqlState(err: unknown): string | undefined {
  const { code, severity } = shapeOf(err);
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && typeof severity === 'string' ? code : undefined;
}

function messageOf(err: unknown): string {
  const { message } = shapeOf(err);
  return typeof message === 'string' ? message : '';
}

/**
 * Why the server is unreachable or refused to serve, in a few words safe to show a client
 * (never the URL, hence never a password), or undefined when `err` is no such failure.
 */
export function unavailableReason(err: unknown): string | undefined {
  const state = sqlState(err);
  if (state !== undefined) {
    if (state === '57014') return 'statement timed out';
    if (state === '55P03') return 'lock wait timed out';
    if (state === '25P03') return 'transaction idle timeout';
    if (state === '3D000') return messageOf(err) || 'the database does not exist';
    if (state === '57P01' || state === '57P02' || state === '57P03') return 'the server is shutting down or starting up';
    if (state === '53300') return 'too many connections';
    switch (state.slice(0, 2)) {
      case '08':
        return 'connection failure';
      case '28':
        return messageOf(err) || 'authentication failed';
      case '40':
        return 'the database is busy; try again';
      case '53':
        return 'the server is out of resources';
      case '58':
        return 'the server had an I/O error';
      default:
        return undefined;
    }
  }
  const { code } = shapeOf(err);
  if (typeof code === 'string' && NETWORK_ERRNOS[code] !== undefined) return NETWORK_ERRNOS[code];
  const message = messageOf(err);
  for (const [pattern, reason] of CONNECTION_MESSAGES) if (pattern.test(message)) return reason;
  return undefined;
}

/**
 * True when the connection that produced `err` must not go back to the pool: the socket died,
 * or a client-side timeout left a query running on it.
 */
export function isBrokenConnectionError(err: unknown): boolean {
  const state = sqlState(err);
  if (state !== undefined) return state.startsWith('08') || state === '57P01' || state === '57P02' || state === '57P03' || state === '25P03';
  return unavailableReason(err) !== undefined;
}

/**
 * The error a store method rethrows for `err`: SentinelErrors pass through, constraint and
 * data errors become `conflict` / `invalid_request`, unreachable or timed-out servers become
 * `unavailable` ("database unavailable: …"), anything else is returned as is (→ `internal`).
 */
export function toStoreError(err: unknown, messages: ConstraintMessages = {}): unknown {
  if (isSentinelError(err)) return err;
  const state = sqlState(err);
  const constraint = typeof shapeOf(err).constraint === 'string' ? (shapeOf(err).constraint as string) : undefined;
  if (state === '23505') {
    return new SentinelError('conflict', messages.conflict?.(constraint) ?? 'the record already exists', { cause: err });
  }
  if (state === '23503') {
    return new SentinelError(messages.foreignKeyCode ?? 'invalid_request', messages.foreignKey?.(constraint) ?? 'a referenced record does not exist', { cause: err });
  }
  // Check and not-null violations, and data the server cannot store (a NUL character in text or
  // JSON, a number out of range, a malformed value): the input is wrong, not the server.
  // The server's text names constraints, columns and values: it stays in `cause` (logged), never in the message.
  if (state === '23514' || state === '23502' || state?.startsWith('22')) {
    return new SentinelError('invalid_request', STORE_REFUSED_MESSAGE, { cause: err });
  }
  const reason = unavailableReason(err);
  if (reason !== undefined) return new SentinelError('unavailable', `database unavailable: ${reason}`, { cause: err });
  return err;
}
