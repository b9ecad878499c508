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

/** One row of run_frames: consecutive frames first_seq..last_seq, their JSON texts joined with '\n'. */
export interface RunFrameBatch {
  first: number;
  last: number;
  body: string;
}

/**
 * The rows an appendRunFrames batch is stored as (one per stretch of consecutive seqs: one
 * for every batch the journal writes) and its highest seq. `invalid_request` unless every seq
 * is a positive integer and every text is JSON without a raw newline (the row separator;
 * JSON.stringify never writes one); `conflict` when the batch holds a seq twice.
 */
export function runFrameBatches(frames: readonly { seq: number; json: string }[], runId: string): { highest: number; batches: RunFrameBatch[] } {
  let ascending = true;
  for (let i = 0; i < frames.length; i++) {
    const frame = frames[i]!;
    if (!Number.isSafeInteger(frame.seq) || frame.seq < 1) throw new SentinelError('invalid_request', 'a run frame seq must be a positive integer');
    if (typeof frame.json !== 'string') throw new SentinelError('invalid_request', 'a run frame must be JSON text');
    if (frame.json.includes('\n')) throw new SentinelError('invalid_request', 'a run frame must be JSON text without a raw newline');
    if (i > 0 && frame.seq <= frames[i - 1]!.seq) ascending = false;
  }
  const sorted = ascending ? frames : [...frames].sort((a, b) => a.seq - b.seq);
  const batches: RunFrameBatch[] = [];
  let start = 0;
  for (let i = 1; i <= sorted.length; i++) {
    if (i < sorted.length && sorted[i]!.seq === sorted[i - 1]!.seq) throw new SentinelError('conflict', `frame ${sorted[i]!.seq} of run "${runId}" is in the batch twice`);
    if (i < sorted.length && sorted[i]!.seq === sorted[i - 1]!.seq + 1) continue;
    const stretch = sorted.slice(start, i);
    batches.push({ first: stretch[0]!.seq, last: stretch[stretch.length - 1]!.seq, body: stretch.length === 1 ? stretch[0]!.json : stretch.map((f) => f.json).join('\n') });
    start = i;
  }
  return { highest: sorted.length === 0 ? 0 : sorted[sorted.length - 1]!.seq, batches };
}

/**
 * Appends to `out` the frames of one stored batch (first seq `first`) after `afterSeq`, until
 * `out` holds `limit`. Returns false once it does (the caller stops reading rows).
 */
export function splitRunFrameBatch(first: number, body: string, afterSeq: number, limit: number, out: { seq: number; json: string }[]): boolean {
  let seq = first;
  let from = 0;
  while (out.length < limit) {
    const to = body.indexOf('\n', from);
    if (seq > afterSeq) out.push({ seq, json: to === -1 ? body.slice(from) : body.slice(from, to) });
    if (to === -1) return out.length < limit;
    from = to + 1;
    seq++;
  }
  return false;
}
