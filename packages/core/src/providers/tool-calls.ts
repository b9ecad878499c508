/**
 * Tool calls as models stream them: arguments arrive as JSON text (often split across many
 * chunks) that only parses once complete, and some models write invalid JSON. A call whose
 * arguments are not a JSON object is still reported (with an error) so the runtime can answer
 * it and the model can try again, instead of the turn failing.
 */
import { randomBytes } from 'node:crypto';
import { isSentinelError } from '../contract/errors.js';
import { checkJsonDepth } from '../contract/json-limits.js';

/** The arguments of one call, parsed; `error` says why they could not be used. */
export interface ParsedToolArguments {
  /** The parsed object; `{}` when `error` is set. */
  arguments: Record<string, unknown>;
  error?: string;
}

/** Longest arguments text accepted from a model, in characters. */
export const MAX_TOOL_ARGUMENTS_CHARS = 1_000_000;

/** Parses a model's arguments text: empty means `{}`; anything but a JSON object is an error (with a short reason). */
export function parseToolArguments(text: string, toolName: string): ParsedToolArguments {
  if (text.length > MAX_TOOL_ARGUMENTS_CHARS) {
    return { arguments: {}, error: `the arguments of the ${toolName} call are longer than ${MAX_TOOL_ARGUMENTS_CHARS} characters` };
  }
  if (text.trim() === '') return { arguments: {} };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const reason = err instanceof Error ? err.message : 'syntax error';
    return { arguments: {}, error: `the arguments of the ${toolName} call are not valid JSON (${reason}); send a JSON object` };
  }
  return checkToolArguments(value, toolName);
}

/** Checks already-decoded arguments (Anthropic's `input`, Ollama's `arguments`) are an object. */
export function checkToolArguments(value: unknown, toolName: string): ParsedToolArguments {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { arguments: {}, error: `the arguments of the ${toolName} call must be a JSON object` };
  }
  // A model is input too: arguments nested thousands deep would overflow every recursive walk
  // after this one (validation, the store's JSON.stringify).
  try {
    checkJsonDepth(value, 'arguments');
  } catch (err) {
    if (!isSentinelError(err)) throw err;
    return { arguments: {}, error: `the arguments of the ${toolName} call are invalid: ${err.message}` };
  }
  return { arguments: value as Record<string, unknown> };
}

/** A call id for providers that send none (Ollama): `call_<16 hex>`. */
export function newToolCallId(): string {
  return `call_${randomBytes(8).toString('hex')}`;
}
