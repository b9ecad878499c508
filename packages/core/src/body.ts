/**
 * Request body decoding: the `decode` function transports pass to `invokeRoute`. It turns
 * text into a plain value; validation against the route's schema happens afterwards.
 */
import { parse as parseYaml } from 'yaml';
import { SentinelError } from './errors.js';
import type { BodyFormat } from './routes/types.js';

/** Parser messages can quote the input: keep what reaches the client (and logs) short. */
const MAX_REASON_LENGTH = 200;

function shortReason(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const oneLine = message.replace(/\s+/g, ' ').trim();
  return oneLine.length > MAX_REASON_LENGTH ? `${oneLine.slice(0, MAX_REASON_LENGTH)}…` : oneLine;
}

/**
 * Decodes a request body. JSON via `JSON.parse`; YAML (one document) via the `yaml`
 * package with alias expansion capped (a "billion laughs" document is refused) and YAML
 * 1.2 core types, so `0.7` stays a number and `yes` stays a string.
 * Throws SentinelError `invalid_request` ('malformed JSON: …' / 'malformed YAML: …').
 */
export function decodeBody(format: BodyFormat, text: string): unknown {
  if (format === 'json') {
    try {
      return JSON.parse(text) as unknown;
    } catch (err) {
      throw new SentinelError('invalid_request', `malformed JSON: ${shortReason(err)}`);
    }
  }
  try {
    // logLevel 'error': errors still throw, warnings are not printed to the console.
    return parseYaml(text, { maxAliasCount: 100, prettyErrors: false, logLevel: 'error' }) as unknown;
  } catch (err) {
    // The library's own wording points at its API (parseAllDocuments); say what the client did.
    const reason = /multiple documents/.test(String((err as Error)?.message)) ? 'expected one document, found several' : shortReason(err);
    throw new SentinelError('invalid_request', `malformed YAML: ${reason}`);
  }
}
