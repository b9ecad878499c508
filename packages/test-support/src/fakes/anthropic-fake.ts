/**
 * Messages API streaming replies exactly as Anthropic sends them
 * (https://docs.anthropic.com/en/docs/build-with-claude/streaming): named SSE events
 * `message_start`, `content_block_start`, `ping`, `content_block_delta` (`text_delta`,
 * `input_json_delta`, and with extended thinking `thinking_delta` and `signature_delta`),
 * `content_block_stop`, `message_delta`, `message_stop`; and `error`.
 */
import type { FakeReply, ReplyStep } from './fake-server.js';

export const ANTHROPIC_SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'request-id': 'req_fake' };

let counter = 0;

function event(name: string, data: Record<string, unknown>): string {
  return `event: ${name}\ndata: ${JSON.stringify({ type: name, ...data })}\n\n`;
}

export type AnthropicBlockScript =
  | { type: 'text'; pieces: string[] }
  | { type: 'tool_use'; id: string; name: string; jsonChunks: string[] }
  /** Extended thinking: the block starts empty, then thinking_delta pieces, then one signature_delta. */
  | { type: 'thinking'; pieces: string[]; signature: string }
  | { type: 'redacted_thinking'; data: string };

export interface AnthropicStreamOptions {
  model?: string;
  inputTokens?: number;
  outputTokens?: number;
  stopReason?: string;
}

/** The SSE events of a message made of `blocks`. */
export function anthropicEvents(blocks: AnthropicBlockScript[], options: AnthropicStreamOptions = {}): string[] {
  const events = [
    event('message_start', {
      message: {
        id: `msg_fake${++counter}`,
        type: 'message',
        role: 'assistant',
        content: [],
        model: options.model ?? 'claude-3-5-haiku-20241022',
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: options.inputTokens ?? 10, output_tokens: 1 },
      },
    }),
  ];
  for (const [index, block] of blocks.entries()) {
    if (block.type === 'text') {
      events.push(event('content_block_start', { index, content_block: { type: 'text', text: '' } }));
      if (index === 0) events.push(event('ping', {}));
      for (const text of block.pieces) events.push(event('content_block_delta', { index, delta: { type: 'text_delta', text } }));
    } else if (block.type === 'thinking') {
      events.push(event('content_block_start', { index, content_block: { type: 'thinking', thinking: '', signature: '' } }));
      for (const thinking of block.pieces) events.push(event('content_block_delta', { index, delta: { type: 'thinking_delta', thinking } }));
      events.push(event('content_block_delta', { index, delta: { type: 'signature_delta', signature: block.signature } }));
    } else if (block.type === 'redacted_thinking') {
      events.push(event('content_block_start', { index, content_block: { type: 'redacted_thinking', data: block.data } }));
    } else {
      events.push(event('content_block_start', { index, content_block: { type: 'tool_use', id: block.id, name: block.name, input: {} } }));
      for (const partial_json of block.jsonChunks) events.push(event('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json } }));
    }
    events.push(event('content_block_stop', { index }));
  }
  const toolUse = blocks.some((b) => b.type === 'tool_use');
  events.push(event('message_delta', { delta: { stop_reason: options.stopReason ?? (toolUse ? 'tool_use' : 'end_turn'), stop_sequence: null }, usage: { output_tokens: options.outputTokens ?? 5 } }));
  events.push(event('message_stop', {}));
  return events;
}

/** The `error` event Anthropic sends mid-stream (e.g. when overloaded). */
export function anthropicErrorEvent(type: string, message: string): string {
  return `event: error\ndata: ${JSON.stringify({ type: 'error', error: { type, message } })}\n\n`;
}

export function anthropicStream(events: string[], delayMs = 1): FakeReply {
  return { status: 200, headers: ANTHROPIC_SSE_HEADERS, steps: events.flatMap((e) => [{ write: e }, { delayMs }] as ReplyStep[]) };
}

/** An Anthropic error response: `{type: "error", error: {type, message}}`. */
export function anthropicErrorReply(status: number, type: string, message: string, headers: Record<string, string> = {}): FakeReply {
  return {
    status,
    headers: { 'content-type': 'application/json', ...headers },
    steps: [{ write: JSON.stringify({ type: 'error', error: { type, message } }) }],
  };
}
