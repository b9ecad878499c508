/**
 * The `since` of `docker logs`: an absolute time (RFC 3339, or unix seconds) or a duration
 * back from now (`90s`, `10m`, `2h`, `1h30m`, `1.5h`).
 */
import { invalidRequest } from '../contract/errors.js';
import { parseRfc3339 } from '../contract/timestamp.js';

const UNIX_SECONDS_RE = /^\d{1,12}(?:\.\d{1,9})?$/;
// Looks like a date: then it must be a real one (parseRfc3339), never a Date.parse roll-over.
const DATE_LIKE_RE = /^\d{4}-/;
const DURATION_RE = /^(?:\d{1,9}(?:\.\d{1,9})?(?:ms|h|m|s))+$/;
const DURATION_PART_RE = /(\d{1,9}(?:\.\d{1,9})?)(ms|h|m|s)/g;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Turns a `since` value into an ISO 8601 instant, relative durations counted back from
 * `nowMs`. Throws SentinelError `invalid_request` for anything else.
 */
export function parseLogSince(since: string, nowMs: number): string {
  let ms = Number.NaN;
  if (UNIX_SECONDS_RE.test(since)) {
    ms = Number(since) * 1000;
  } else if (DATE_LIKE_RE.test(since)) {
    // A bare date means midnight UTC, as Docker reads it.
    ms = parseRfc3339(since, { allowDateOnly: true }) ?? Number.NaN;
  } else if (DURATION_RE.test(since)) {
    let total = 0;
    for (const [, amount, unit] of since.matchAll(DURATION_PART_RE)) total += Number(amount) * (UNIT_MS[unit ?? 's'] ?? 1000);
    ms = nowMs - total;
  }
  const date = new Date(ms);
  if (!Number.isFinite(ms) || Number.isNaN(date.getTime())) {
    throw invalidRequest('invalid "since": use an RFC 3339 time, unix seconds, or a duration like 90s, 10m, 1h30m');
  }
  return date.toISOString();
}
