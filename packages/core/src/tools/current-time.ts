/** `current_time`: the time now, in an IANA time zone (default UTC). */
import { invalidRequest } from '../contract/errors.js';
import type { Tool } from './types.js';

const MAX_ZONE_LENGTH = 64;

/**
 * The zone's name as Intl spells it (`europe/paris` → `Europe/Paris`), or as given when Intl
 * maps it to an older alias (ICU answers `Asia/Calcutta` for `Asia/Kolkata`); SentinelError
 * `invalid_request` when Intl does not know it.
 */
function canonicalZone(zone: string): string {
  try {
    const resolved = new Intl.DateTimeFormat('en-US', { timeZone: zone }).resolvedOptions().timeZone;
    return resolved.toLowerCase() === zone.toLowerCase() ? resolved : zone;
  } catch {
    throw invalidRequest(`unknown time zone "${zone}": use an IANA name such as "Europe/Paris" or "UTC"`);
  }
}

function pad(n: number, width = 2): string {
  return String(Math.abs(n)).padStart(width, '0');
}

/**
 * `at` as ISO 8601 local time in `zone` with its UTC offset (`2026-05-01T14:03:07.123+02:00`;
 * `Z` when the offset is zero).
 */
export function isoInZone(at: Date, zone: string): string {
  const parts: Record<string, string> = {};
  const format = new Intl.DateTimeFormat('en-US', {
    timeZone: zone,
    hourCycle: 'h23',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  });
  for (const part of format.formatToParts(at)) parts[part.type] = part.value;
  const year = Number(parts.year);
  const month = Number(parts.month);
  const day = Number(parts.day);
  const hour = Number(parts.hour);
  const minute = Number(parts.minute);
  const second = Number(parts.second);
  const wholeSeconds = Math.floor(at.getTime() / 1000) * 1000;
  const offsetMinutes = Math.round((Date.UTC(year, month - 1, day, hour, minute, second) - wholeSeconds) / 60_000);
  const offset = offsetMinutes === 0 ? 'Z' : `${offsetMinutes < 0 ? '-' : '+'}${pad(Math.trunc(offsetMinutes / 60))}:${pad(offsetMinutes % 60)}`;
  return `${pad(year, 4)}-${pad(month)}-${pad(day)}T${pad(hour)}:${pad(minute)}:${pad(second)}.${pad(at.getUTCMilliseconds(), 3)}${offset}`;
}

export interface CurrentTimeToolOptions {
  /** Clock. Default `Date.now`. */
  now?: () => number;
}

/** Makes the `current_time` tool: `{timezone?}` → `{iso, timezone, unix}` (unix seconds). */
export function createCurrentTimeTool(options: CurrentTimeToolOptions = {}): Tool {
  const now = options.now ?? Date.now;
  return {
    name: 'current_time',
    description: 'Returns the current date and time, in the given IANA time zone (default UTC), with the Unix time in seconds.',
    parameters: {
      type: 'object',
      properties: { timezone: { type: 'string', minLength: 1, maxLength: MAX_ZONE_LENGTH } },
      additionalProperties: false,
    },
    run: async (params) => {
      const zone = canonicalZone(typeof params.timezone === 'string' ? params.timezone : 'UTC');
      const at = new Date(now());
      return { iso: isoInZone(at, zone), timezone: zone, unix: Math.floor(at.getTime() / 1000) };
    },
  };
}

/** The `current_time` tool on the system clock. */
export const currentTimeTool: Tool = createCurrentTimeTool();
