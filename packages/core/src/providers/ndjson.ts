/**
 * Newline-delimited JSON over a byte stream (Ollama's native streaming format): one JSON value
 * per line, blank lines skipped, a last line without its newline still read.
 */
import { upstream } from '../contract/errors.js';
import { readLines } from './sse.js';

export interface NdjsonParseOptions {
  /** Longest line, in characters; longer fails with `upstream_error`. Default 8388608 (8 Mi). */
  maxLineChars?: number;
  /** Names the stream in errors (e.g. the provider). Default `'NDJSON stream'`. */
  source?: string;
}

/** Parses NDJSON into values; a line that is not JSON fails with SentinelError `upstream_error`. */
export async function* parseNdjson(chunks: AsyncIterable<Uint8Array>, options: NdjsonParseOptions = {}): AsyncGenerator<unknown> {
  const source = options.source ?? 'NDJSON stream';
  const lines = readLines(chunks, { maxLineChars: options.maxLineChars ?? 8 * 1024 * 1024, source, yieldUnterminated: true });
  for await (const line of lines) {
    const text = line.trim();
    if (text === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw upstream(source, 'the stream held a line that is not JSON');
    }
    yield value;
  }
}
