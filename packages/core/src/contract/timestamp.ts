/**
 * The one RFC 3339 parser for timestamps that come from outside (query parameters, stored or
 * pulled records). `Date.parse` is no validator: it rolls `2024-02-30` over to 1 March and
 * accepts many other shapes, so this checks the grammar with a regular expression and then
 * that every calendar field survives a round trip through `Date.UTC` (no 30 February, no
 * 29 February outside leap years, no hour 25, no month 13).
 */

// date-time = full-date "T" full-time (RFC 3339 §5.6); "t" and a space are allowed by its note.
const RFC3339_RE = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|([+-])(\d{2}):(\d{2})))?$/;

export interface ParseRfc3339Options {
  /** Accept a bare `YYYY-MM-DD` as midnight UTC (as `docker logs --since` does). Default false. */
  allowDateOnly?: boolean;
}

/**
 * Milliseconds since the epoch for an RFC 3339 date-time (`2024-02-29T12:00:00Z`,
 * `…T12:00:00.5+01:00`), or undefined when `value` is not one or names an instant the calendar
 * does not have. Leap seconds (`:60`) are refused: a JavaScript Date cannot hold them.
 */
export function parseRfc3339(value: string, options: ParseRfc3339Options = {}): number | undefined {
  const m = RFC3339_RE.exec(value);
  if (m === null) return undefined;
  const [, y, mo, d, h, mi, s, frac, zone, sign, oh, om] = m;
  if (h === undefined && !options.allowDateOnly) return undefined;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h ?? 0);
  const minute = Number(mi ?? 0);
  const second = Number(s ?? 0);
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return undefined;
  // Date.UTC maps years 0–99 to 1900–1999; setUTCFullYear does not.
  const date = new Date(Date.UTC(2000, month - 1, day, hour, minute, second));
  date.setUTCFullYear(year);
  if (date.getUTCFullYear() !== year || date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) return undefined;
  let offsetMinutes = 0;
  if (zone !== undefined && sign !== undefined) {
    const offsetHours = Number(oh);
    const offsetMins = Number(om);
    if (offsetHours > 23 || offsetMins > 59) return undefined;
    offsetMinutes = (sign === '-' ? -1 : 1) * (offsetHours * 60 + offsetMins);
  }
  const ms = frac === undefined ? 0 : Math.floor(Number(`0.${frac}`) * 1000);
  return date.getTime() + ms - offsetMinutes * 60_000;
}
