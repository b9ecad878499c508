/**
 * Chat Completions streaming replies exactly as OpenAI sends them
 * (https://platform.openai.com/docs/api-reference/chat/streaming): `data: <chunk>\n\n` events of
 * `chat.completion.chunk` objects, the role first, content deltas, tool-call deltas keyed by
 * `index` with the arguments JSON in fragments, `finish_reason` on the last choice chunk, a usage
 * chunk with empty `choices` (`stream_options.include_usage`), then `data: [DONE]\n\n`.
 */
import type { FakeReply, ReplyStep } from './fake-server.js';

export const OPENAI_SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' };

let counter = 0;

function envelope(id: string, model: string, choices: unknown[], extra: Record<string, unknown> = {}): string {
  return `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created: 1_726_000_000, model, system_fingerprint: 'fp_fake', choices, ...extra })}\n\n`;
}

function choice(delta: Record<string, unknown>, finishReason: string | null = null): Record<string, unknown> {
  return { index: 0, delta, logprobs: null, finish_reason: finishReason };
}

export interface OpenAiUsage {
  prompt_tokens: number;
  completion_tokens: number;
}

export interface OpenAiStreamOptions {
  model?: string;
  usage?: OpenAiUsage;
  finishReason?: string;
  /** Pause between events, in ms. Default 1. */
  delayMs?: number;
}

/** The SSE events of a text answer streamed in `pieces`. */
export function openAiTextEvents(pieces: string[], options: OpenAiStreamOptions = {}): string[] {
  const id = `chatcmpl-fake${++counter}`;
  const model = options.model ?? 'gpt-4o-mini-2024-07-18';
  const events = [envelope(id, model, [choice({ role: 'assistant', content: '', refusal: null })])];
  for (const piece of pieces) events.push(envelope(id, model, [choice({ content: piece })]));
  events.push(envelope(id, model, [choice({}, options.finishReason ?? 'stop')]));
  if (options.usage) events.push(envelope(id, model, [], { usage: { ...options.usage, total_tokens: options.usage.prompt_tokens + options.usage.completion_tokens } }));
  events.push('data: [DONE]\n\n');
  return events;
}

export interface ScriptedToolCall {
  id: string;
  name: string;
  /** The arguments JSON text, in the fragments the model streams. */
  argumentChunks: string[];
}

/** The SSE events of an answer that calls tools (several calls interleave by `index`). */
export function openAiToolCallEvents(calls: ScriptedToolCall[], options: OpenAiStreamOptions = {}): string[] {
  const id = `chatcmpl-fake${++counter}`;
  const model = options.model ?? 'gpt-4o-mini-2024-07-18';
  const events = [envelope(id, model, [choice({ role: 'assistant', content: null, refusal: null })])];
  for (const [index, call] of calls.entries()) {
    events.push(envelope(id, model, [choice({ tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.name, arguments: '' } }] })]));
  }
  const longest = Math.max(...calls.map((c) => c.argumentChunks.length));
  for (let i = 0; i < longest; i++) {
    for (const [index, call] of calls.entries()) {
      const fragment = call.argumentChunks[i];
      if (fragment !== undefined) events.push(envelope(id, model, [choice({ tool_calls: [{ index, function: { arguments: fragment } }] })]));
    }
  }
  events.push(envelope(id, model, [choice({}, options.finishReason ?? 'tool_calls')]));
  if (options.usage) events.push(envelope(id, model, [], { usage: { ...options.usage, total_tokens: options.usage.prompt_tokens + options.usage.completion_tokens } }));
  events.push('data: [DONE]\n\n');
  return events;
}

/** Events as reply steps with a pause between them. */
export function eventSteps(events: string[], delayMs = 1): ReplyStep[] {
  return events.flatMap((event) => [{ write: event }, { delayMs }] as ReplyStep[]);
}

/** A 200 SSE reply of these events. */
export function openAiStream(events: string[], delayMs = 1): FakeReply {
  return { status: 200, headers: OPENAI_SSE_HEADERS, steps: eventSteps(events, delayMs) };
}

/** An error event in the middle of a stream, as OpenAI sends one (no `choices`, an `error` object). */
export function openAiErrorEvent(message: string, type = 'server_error'): string {
  return `data: ${JSON.stringify({ error: { message, type, param: null, code: null } })}\n\n`;
}

/** An OpenAI error response: `{error: {message, type, param, code}}` with a status. */
export function openAiErrorReply(status: number, message: string, options: { type?: string; code?: string | null; headers?: Record<string, string> } = {}): FakeReply {
  return {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...options.headers },
    steps: [{ write: JSON.stringify({ error: { message, type: options.type ?? 'invalid_request_error', param: null, code: options.code ?? null } }) }],
  };
}
