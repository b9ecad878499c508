/** Checks and bounds of Store call arguments that both back ends apply the same way. */
import { AUDIT_DEFAULT_LIMIT, AUDIT_MAX_LIMIT, type AuditQuery } from '../contract/audit.js';
import { SentinelError } from '../contract/errors.js';
import { parseRfc3339 } from '../contract/timestamp.js';

/** Events listEvents returns when no `limit` is given. */
export const DEFAULT_EVENT_LIMIT = 1000;
/** Default and largest `limit` of findAgents. */
export const FIND_AGENTS_LIMIT = 100;
/** What an id or digest prefix may be: lower-case hex, nothing that could widen a range query. */
export const HEX_PREFIX = /^[0-9a-f]*$/;
/** Sorts after every hex digit, so `[sha256:<prefix>, sha256:<prefix>g)` is exactly the prefix range. */
export const AFTER_HEX = 'g';

/** `value` in canonical `toISOString()` form (so timestamps compare as text); `invalid_request` naming `what` when it is not RFC 3339. */
export function canonicalTimestamp(value: string, what: string): string {
  const ms = parseRfc3339(value);
  if (ms === undefined) throw new SentinelError('invalid_request', `${what} must be an RFC 3339 timestamp`);
  return new Date(ms).toISOString();
}

/** `value` when it is a non-negative safe integer; `invalid_request` naming `what` otherwise. */
export function nonNegativeInteger(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new SentinelError('invalid_request', `${what} must be a non-negative integer`);
  return value;
}

/** listAudit's arguments checked and defaulted the same way on both back ends. */
export function auditQueryArguments(query: AuditQuery): { since: number; actor: string | null; action: string | null; limit: number } {
  const limit = Math.min(nonNegativeInteger(query.limit ?? AUDIT_DEFAULT_LIMIT, 'limit'), AUDIT_MAX_LIMIT);
  return { since: nonNegativeInteger(query.since ?? 0, 'since'), actor: query.actor ?? null, action: query.action ?? null, limit };
}

/** Frames listRunFrames returns when no `limit` is given. */
export const DEFAULT_RUN_FRAME_LIMIT = 1000;
/** findRuns' default `limit`. */
export const FIND_RUNS_LIMIT = 100;
/** The largest `limit` of listRuns and findRuns. */
export const MAX_RUNS_LIMIT = 1000;

/** A runs `limit` checked and capped at {@link MAX_RUNS_LIMIT}. */
export function runsLimit(limit: number): number {
  return Math.min(nonNegativeInteger(limit, 'limit'), MAX_RUNS_LIMIT);
}

/**
 * The instant (canonical text) at or before which a run's idempotency key no longer holds:
 * a holder created after it is still inside the window.
 */
export function idempotencyCutoff(options: { idempotencyWindowMs: number; nowMs: number }): string {
  const windowMs = nonNegativeInteger(options.idempotencyWindowMs, 'idempotencyWindowMs');
  const nowMs = nonNegativeInteger(options.nowMs, 'nowMs');
  return new Date(nowMs - windowMs).toISOString();
}

/** The highest seq of a batch of run frames; `invalid_request` unless every seq is a positive integer. */
export function runFrameSeqs(frames: readonly { seq: number; json: string }[]): number {
  let highest = 0;
  for (const frame of frames) {
    if (!Number.isSafeInteger(frame.seq) || frame.seq < 1) throw new SentinelError('invalid_request', 'a run frame seq must be a positive integer');
    if (typeof frame.json !== 'string') throw new SentinelError('invalid_request', 'a run frame must be JSON text');
    highest = Math.max(highest, frame.seq);
  }
  return highest;
}
