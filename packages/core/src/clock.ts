/**
 * RFC 3339 timestamps from a clock in ms. A chat turn stamps a dozen frames and rows within the
 * same millisecond; `new Date(ms).toISOString()` for each was ~3% of a turn's CPU (profiled
 * under 100 chatting sockets), so the last conversion is kept and reused while `ms` is the same.
 */
let lastMs = Number.NaN;
let lastIso = '';

/** `new Date(ms).toISOString()`, reusing the previous result for the same `ms`. */
export function isoTimestamp(ms: number): string {
  if (ms !== lastMs) {
    lastIso = new Date(ms).toISOString();
    lastMs = ms;
  }
  return lastIso;
}
