/**
 * A Server-Sent Events parser over a byte stream, following the WHATWG HTML "event stream
 * interpretation" rules: a leading BOM is dropped; lines end with CRLF, LF or CR (a CR at the
 * end of one read and an LF at the start of the next are one line end); `:` lines are comments;
 * `data:` lines accumulate (joined by LF); `event:` names the event; `id:` sets the last event
 * id (unless it holds NUL); `retry:` is read and ignored; a blank line dispatches. An event
 * without data is not dispatched, and an unterminated event at the end of the stream is dropped.
 */
import { SentinelError, upstream } from '../contract/errors.js';

/** One dispatched event. */
export interface SseEvent {
  /** The `event:` field; `message` when the event had none. */
  event: string;
  /** The `data:` lines joined with LF. */
  data: string;
  /** The last event id seen so far in the stream (`''` when none). */
  id: string;
}

export interface SseParseOptions {
  /** Longest line or event data, in characters; a stream that exceeds it fails with `upstream_error`. Default 8388608 (8 Mi). */
  maxEventChars?: number;
  /** Names the stream in errors (e.g. the provider). Default `'event stream'`. */
  source?: string;
}

const LF = 10;
const CR = 13;

/**
 * Splits a byte stream into lines (CRLF, LF or CR), decoding UTF-8 across read boundaries.
 * Yields each line without its terminator; a last line without a terminator is yielded too when
 * `yieldUnterminated` is set.
 */
export async function* readLines(
  chunks: AsyncIterable<Uint8Array>,
  options: { maxLineChars: number; source: string; yieldUnterminated: boolean },
): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8');
  let pending = '';
  // The previous chunk ended on a CR: an LF opening this chunk belongs to that line end.
  let skipLf = false;
  for await (const chunk of chunks) {
    if (chunk.length === 0) continue;
    let start = 0;
    if (skipLf && chunk[0] === LF) start = 1;
    skipLf = false;
    let lineStart = start;
    for (let i = start; i < chunk.length; i++) {
      const byte = chunk[i];
      if (byte !== LF && byte !== CR) continue;
      const line = pending + decoder.decode(chunk.subarray(lineStart, i));
      pending = '';
      if (line.length > options.maxLineChars) throw tooLong(options);
      yield line;
      if (byte === CR) {
        if (i + 1 < chunk.length) {
          if (chunk[i + 1] === LF) i++;
        } else {
          skipLf = true;
        }
      }
      lineStart = i + 1;
    }
    if (lineStart < chunk.length) {
      pending += decoder.decode(chunk.subarray(lineStart), { stream: true });
      if (pending.length > options.maxLineChars) throw tooLong(options);
    }
  }
  pending += decoder.decode();
  if (options.yieldUnterminated && pending.length > 0) yield pending;
}

function tooLong(options: { maxLineChars: number; source: string }): SentinelError {
  return upstream(options.source, `a line of the stream is longer than ${options.maxLineChars} characters`);
}

/** Parses an SSE byte stream into events (see the module comment for the rules). */
export async function* parseSse(chunks: AsyncIterable<Uint8Array>, options: SseParseOptions = {}): AsyncGenerator<SseEvent> {
  const maxEventChars = options.maxEventChars ?? 8 * 1024 * 1024;
  const source = options.source ?? 'event stream';
  let first = true;
  let data = '';
  let hasData = false;
  let eventType = '';
  let lastId = '';
  for await (let line of readLines(chunks, { maxLineChars: maxEventChars, source, yieldUnterminated: false })) {
    if (first) {
      first = false;
      if (line.charCodeAt(0) === 0xfeff) line = line.slice(1);
    }
    if (line === '') {
      if (hasData) {
        yield { event: eventType === '' ? 'message' : eventType, data, id: lastId };
      }
      data = '';
      hasData = false;
      eventType = '';
      continue;
    }
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'data':
        data = hasData ? `${data}\n${value}` : value;
        hasData = true;
        if (data.length > maxEventChars) throw upstream(source, `an event is longer than ${maxEventChars} characters`);
        break;
      case 'event':
        eventType = value;
        break;
      case 'id':
        if (!value.includes('\u0000')) lastId = value;
        break;
      default:
        // `retry` and unknown fields are ignored, as the spec says.
        break;
    }
  }
}
