/**
 * Request body decoding: the `decode` function transports pass to `invokeRoute`. It turns
 * text into a plain value; validation against the route's schema happens afterwards.
 */
import { parse as parseYaml, Parser as YamlParser, type CST } from 'yaml';
import { invalidRequest } from './contract/errors.js';
import { MAX_JSON_DEPTH } from './contract/json-limits.js';
import type { BodyFormat } from './contract/route.js';

/** Parser messages can quote the input: keep what reaches the client (and logs) short. */
const MAX_REASON_LENGTH = 200;

function shortReason(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const oneLine = message.replace(/\s+/g, ' ').trim();
  return oneLine.length > MAX_REASON_LENGTH ? `${oneLine.slice(0, MAX_REASON_LENGTH)}…` : oneLine;
}

const YAML_COLLECTIONS = new Set(['block-map', 'block-seq', 'flow-collection']);

/**
 * Refuses YAML nested deeper than {@link MAX_JSON_DEPTH} collections before the `yaml` composer
 * sees it: the composer recurses per level and overflows the stack near 1 000 levels, while
 * its lexer and CST parser (walked here with an explicit stack) do not. A collection in the CST
 * is a collection in the value, so nothing this refuses would have passed the value's own check.
 */
function checkYamlDepth(text: string): void {
  const stack: { token: CST.Token; depth: number; field: string | undefined }[] = [];
  for (const token of new YamlParser().parse(text)) stack.push({ token, depth: 0, field: undefined });
  while (stack.length > 0) {
    const { token, depth: above, field } = stack.pop() as (typeof stack)[number];
    if (token.type === 'document') {
      if (token.value) stack.push({ token: token.value, depth: above, field });
      continue;
    }
    if (!YAML_COLLECTIONS.has(token.type)) continue;
    const depth = above + 1;
    if (depth > MAX_JSON_DEPTH) {
      throw invalidRequest(`${field === undefined ? 'body' : `body.${field}`}: nested deeper than ${MAX_JSON_DEPTH} levels`);
    }
    for (const item of (token as CST.BlockMap | CST.BlockSequence | CST.FlowCollection).items as CST.CollectionItem[]) {
      // The top-level key names the field in the message (`body.model`), when it is a plain word.
      const key = depth === 1 && item.key?.type === 'scalar' && /^[A-Za-z_][A-Za-z0-9_-]{0,63}$/.test(item.key.source) ? item.key.source : field;
      if (item.key) stack.push({ token: item.key, depth, field: key });
      if (item.value) stack.push({ token: item.value, depth, field: key });
    }
  }
}

/**
 * Decodes a request body. JSON via `JSON.parse`; YAML (one document) via the `yaml`
 * package with alias expansion capped (a "billion laughs" document is refused) and YAML
 * 1.2 core types, so `0.7` stays a number and `yes` stays a string.
 * YAML nested deeper than {@link MAX_JSON_DEPTH} is refused before it is composed (JSON is
 * checked after parsing, by the route's limits check: `JSON.parse` itself is not recursive).
 * Throws SentinelError `invalid_request` ('malformed JSON: …' / 'malformed YAML: …' /
 * 'body.<field>: nested deeper than 32 levels').
 */
export function decodeBody(format: BodyFormat, text: string): unknown {
  if (format === 'json') {
    try {
      return JSON.parse(text) as unknown;
    } catch (err) {
      throw invalidRequest(`malformed JSON: ${shortReason(err)}`);
    }
  }
  checkYamlDepth(text);
  try {
    // logLevel 'error': errors still throw, warnings are not printed to the console.
    return parseYaml(text, { maxAliasCount: 100, prettyErrors: false, logLevel: 'error' }) as unknown;
  } catch (err) {
    // The library's own wording points at its API (parseAllDocuments); say what the client did.
    const reason = /multiple documents/.test(String((err as Error)?.message)) ? 'expected one document, found several' : shortReason(err);
    throw invalidRequest(`malformed YAML: ${reason}`);
  }
}
