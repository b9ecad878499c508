/**
 * `anthropic`: the Messages API (`POST /v1/messages`) with streaming SSE.
 *
 * Wire format (https://docs.anthropic.com/en/docs/build-with-claude/streaming): named events
 * `message_start` (usage.input_tokens), `content_block_start` (a `text`, `tool_use {id, name}`,
 * `thinking` or `redacted_thinking {data}` block at an index), `content_block_delta`
 * (`text_delta` text, `input_json_delta` partial_json fragments of the tool input,
 * `thinking_delta` reasoning text, `signature_delta` its signature), `content_block_stop`, `message_delta`
 * (stop_reason, cumulative usage.output_tokens), `message_stop`; `ping` keeps the stream alive;
 * an `error` event may arrive at any point. The system prompt goes in `system`, not in
 * `messages`; messages alternate user/assistant (consecutive ones of a role are merged); tool
 * calls are assistant `tool_use` blocks and their results user `tool_result` blocks.
 *
 * Extended thinking (the `thinking` parameter): reasoning deltas stream as `thinking` events;
 * each finished block (with its signature) comes as a `thinking_block` event, and the runtime
 * hands the blocks of a tool-use round back in that round's assistant message, first, as the
 * API requires (https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking).
 */
import { failedMidStream, SentinelError, streamEndedEarly, upstream } from '../contract/errors.js';
import type { Logger } from '../contract/logger.js';
import { checkBaseUrl, joinUrl, ProviderHttpClient, upstreamErrorDetail, type ProviderRetryPolicy, type ProviderTimeouts } from './http.js';
import { pickParameters } from './parameters.js';
import { parseSse } from './sse.js';
import { checkToolArguments, newToolCallId, parseToolArguments } from './tool-calls.js';
import type { ChatMessage, ModelProvider, ProviderEvent, ProviderFinishReason, ProviderRequest, ThinkingBlock } from './types.js';

export const ANTHROPIC_DEFAULT_BASE_URL = 'https://api.anthropic.com';
/** The API version this adapter speaks (header `anthropic-version`). */
export const ANTHROPIC_VERSION = '2023-06-01';
/** `max_tokens` is required by the API; this is used when the image sets none. */
export const ANTHROPIC_DEFAULT_MAX_TOKENS = 1024;
/** Model parameters sent to the Messages API (`max_tokens` is always sent; `stop` becomes `stop_sequences`). */
export const ANTHROPIC_PARAMETERS: readonly string[] = ['temperature', 'top_p', 'top_k', 'stop_sequences', 'thinking'];

export interface AnthropicProviderOptions {
  /** Sent as `x-api-key`. Required for api.anthropic.com; optional for other base URLs (proxies). Default none. */
  apiKey?: string;
  /** Base URL without `/v1` (a trailing `/v1` is tolerated). Default `https://api.anthropic.com`. */
  baseUrl?: string;
  /** Default: see {@link ProviderTimeouts}. */
  timeouts?: ProviderTimeouts;
  /** Default: see {@link ProviderRetryPolicy}. */
  retries?: ProviderRetryPolicy;
  /** Where retries are logged. Default: silent. */
  logger?: Logger;
}

type AnthropicBlock =
  | ThinkingBlock
  | { type: 'text'; text: string }
  | { type: 'tool_use'; id: string; name: string; input: Record<string, unknown> }
  | { type: 'tool_result'; tool_use_id: string; content: string };

export interface AnthropicMessage {
  role: 'user' | 'assistant';
  content: AnthropicBlock[];
}

const STOP_REASONS: Record<string, ProviderFinishReason> = {
  end_turn: 'stop',
  stop_sequence: 'stop',
  pause_turn: 'stop',
  max_tokens: 'length',
  tool_use: 'tool_calls',
  refusal: 'content_filter',
};

/**
 * The conversation in Messages API form: system messages joined into `system`, the rest as
 * content blocks, consecutive messages of one role merged (the API requires alternation), empty
 * text dropped (the API rejects empty text blocks).
 */
export function toAnthropicMessages(messages: readonly ChatMessage[]): { system: string; messages: AnthropicMessage[] } {
  const system: string[] = [];
  const out: AnthropicMessage[] = [];
  const add = (role: AnthropicMessage['role'], blocks: AnthropicBlock[]) => {
    if (blocks.length === 0) return;
    const last = out[out.length - 1];
    if (last && last.role === role) last.content.push(...blocks);
    else out.push({ role, content: blocks });
  };
  for (const message of messages) {
    switch (message.role) {
      case 'system':
        if (message.content !== '') system.push(message.content);
        break;
      case 'user':
        add('user', message.content === '' ? [] : [{ type: 'text', text: message.content }]);
        break;
      case 'assistant': {
        // Thinking blocks first: the API checks that the assistant turn starts with them.
        const blocks: AnthropicBlock[] = (message.thinking ?? []).map((block): ThinkingBlock => ({ ...block }));
        if (message.content !== '') blocks.push({ type: 'text', text: message.content });
        for (const call of message.tool_calls ?? []) blocks.push({ type: 'tool_use', id: call.id, name: call.name, input: call.arguments });
        add('assistant', blocks);
        break;
      }
      case 'tool':
        add('user', [{ type: 'tool_result', tool_use_id: message.tool_call_id ?? '', content: message.content }]);
        break;
    }
  }
  return { system: system.join('\n\n'), messages: out };
}

/** The Messages API request body for a provider request. */
export function anthropicRequestBody(request: ProviderRequest): Record<string, unknown> {
  const { system, messages } = toAnthropicMessages(request.messages);
  const params = pickParameters(request.parameters, ANTHROPIC_PARAMETERS);
  const stop = request.parameters.stop;
  if (params.stop_sequences === undefined && stop !== undefined && stop !== null) params.stop_sequences = Array.isArray(stop) ? stop : [stop];
  const maxTokens = request.parameters.max_tokens;
  return {
    ...params,
    model: request.model,
    max_tokens: typeof maxTokens === 'number' && Number.isSafeInteger(maxTokens) && maxTokens > 0 ? maxTokens : ANTHROPIC_DEFAULT_MAX_TOKENS,
    ...(system === '' ? {} : { system }),
    messages,
    ...(request.tools.length > 0
      ? { tools: request.tools.map((tool) => ({ name: tool.name, description: tool.description, input_schema: tool.parameters })) }
      : {}),
    stream: true,
  };
}

interface OpenBlock {
  type: string;
  id: string;
  name: string;
  json: string;
  input: unknown;
  /** `thinking` blocks: the reasoning text and signature so far; `redacted_thinking`: its data. */
  thinking: string;
  signature: string;
}

function count(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0;
}

function recordOf(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
}

/** The `anthropic` provider. */
export class AnthropicProvider implements ModelProvider {
  readonly name = 'anthropic';
  private readonly apiKey: string | undefined;
  private readonly url: string;
  private readonly keyRequired: boolean;
  private readonly client: ProviderHttpClient;

  constructor(options: AnthropicProviderOptions = {}) {
    this.apiKey = options.apiKey || undefined;
    const base = checkBaseUrl(options.baseUrl ?? ANTHROPIC_DEFAULT_BASE_URL, 'ANTHROPIC_BASE_URL');
    this.url = joinUrl(base, /\/v1$/.test(base) ? 'messages' : 'v1/messages');
    this.keyRequired = new URL(base).hostname === 'api.anthropic.com';
    this.client = new ProviderHttpClient({
      provider: this.name,
      hints: { auth: 'check ANTHROPIC_API_KEY', endpoint: 'ANTHROPIC_BASE_URL' },
      ...(options.timeouts ? { timeouts: options.timeouts } : {}),
      ...(options.retries ? { retries: options.retries } : {}),
      ...(options.logger ? { logger: options.logger } : {}),
      secrets: this.apiKey ? [this.apiKey] : [],
    });
  }

  configurationProblem(): string | undefined {
    if (this.apiKey || !this.keyRequired) return undefined;
    return 'anthropic: no API key configured: set ANTHROPIC_API_KEY (environment or providers.json in the data directory)';
  }

  async *stream(request: ProviderRequest): AsyncGenerator<ProviderEvent, void, undefined> {
    const problem = this.configurationProblem();
    if (problem !== undefined) throw new SentinelError('upstream_error', problem);
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: 'text/event-stream',
      'anthropic-version': ANTHROPIC_VERSION,
    };
    if (this.apiKey) headers['x-api-key'] = this.apiKey;
    const body = this.client.stream({
      url: this.url,
      headers,
      body: JSON.stringify(anthropicRequestBody(request)),
      signal: request.signal,
      subject: `model "${request.model}"`,
    });

    const blocks = new Map<number, OpenBlock>();
    let inputTokens = 0;
    let outputTokens = 0;
    let finish: ProviderFinishReason | undefined;
    let sawToolCall = false;
    let stopped = false;
    try {
      for await (const event of parseSse(body, { source: this.name })) {
        // After message_stop the rest is read, not parsed: ending the response lets the pool reuse the connection.
        if (stopped) continue;
        let data: Record<string, unknown>;
        try {
          data = recordOf(JSON.parse(event.data));
        } catch {
          throw upstream('anthropic', 'the stream held an event that is not JSON');
        }
        const type = typeof data.type === 'string' ? data.type : event.event;
        if (type === 'message_stop') {
          stopped = true;
          continue;
        }
        switch (type) {
          case 'message_start': {
            const usage = recordOf(recordOf(data.message).usage);
            // Cached prompt tokens are input too (billed at other rates, but read by the model).
            inputTokens = count(usage.input_tokens) + count(usage.cache_creation_input_tokens) + count(usage.cache_read_input_tokens);
            outputTokens = count(usage.output_tokens);
            break;
          }
          case 'content_block_start': {
            const block = recordOf(data.content_block);
            const index = count(data.index);
            const open: OpenBlock = {
              type: typeof block.type === 'string' ? block.type : '',
              id: typeof block.id === 'string' ? block.id : '',
              name: typeof block.name === 'string' ? block.name : '',
              json: '',
              input: block.input,
              thinking: typeof block.thinking === 'string' ? block.thinking : typeof block.data === 'string' ? block.data : '',
              signature: typeof block.signature === 'string' ? block.signature : '',
            };
            blocks.set(index, open);
            if (open.type === 'text' && typeof block.text === 'string' && block.text !== '') yield { type: 'text', delta: block.text };
            if (open.type === 'thinking' && open.thinking !== '') yield { type: 'thinking', delta: open.thinking };
            break;
          }
          case 'content_block_delta': {
            const delta = recordOf(data.delta);
            if (delta.type === 'text_delta' && typeof delta.text === 'string' && delta.text !== '') {
              yield { type: 'text', delta: delta.text };
            } else if (delta.type === 'input_json_delta' && typeof delta.partial_json === 'string') {
              const block = blocks.get(count(data.index));
              if (block) block.json += delta.partial_json;
            } else if (delta.type === 'thinking_delta' && typeof delta.thinking === 'string' && delta.thinking !== '') {
              const block = blocks.get(count(data.index));
              if (block) block.thinking += delta.thinking;
              yield { type: 'thinking', delta: delta.thinking };
            } else if (delta.type === 'signature_delta' && typeof delta.signature === 'string') {
              const block = blocks.get(count(data.index));
              if (block) block.signature += delta.signature;
            }
            // citations: not part of the answer text.
            break;
          }
          case 'content_block_stop': {
            const index = count(data.index);
            const block = blocks.get(index);
            blocks.delete(index);
            if (block?.type === 'thinking') {
              yield { type: 'thinking_block', block: { type: 'thinking', thinking: block.thinking, signature: block.signature } };
              break;
            }
            if (block?.type === 'redacted_thinking') {
              yield { type: 'thinking_block', block: { type: 'redacted_thinking', data: block.thinking } };
              break;
            }
            if (block?.type !== 'tool_use') break;
            const name = block.name || 'unnamed_tool';
            const parsed = block.json !== '' ? parseToolArguments(block.json, name) : checkToolArguments(block.input ?? {}, name);
            sawToolCall = true;
            yield {
              type: 'tool_call',
              call: { id: block.id || newToolCallId(), name, arguments: parsed.arguments },
              ...(parsed.error === undefined ? {} : { error: parsed.error }),
            };
            break;
          }
          case 'message_delta': {
            const delta = recordOf(data.delta);
            if (typeof delta.stop_reason === 'string') finish = STOP_REASONS[delta.stop_reason] ?? 'stop';
            const usage = recordOf(data.usage);
            // Cumulative counts: the latest one wins.
            if (usage.output_tokens !== undefined) outputTokens = count(usage.output_tokens);
            if (usage.input_tokens !== undefined && count(usage.input_tokens) > 0) {
              inputTokens = count(usage.input_tokens) + count(usage.cache_creation_input_tokens) + count(usage.cache_read_input_tokens);
            }
            break;
          }
          case 'error': {
            const detail = this.client.sanitize(upstreamErrorDetail(event.data));
            throw failedMidStream('anthropic', detail);
          }
          default:
            // ping, and event types added to the API later.
            break;
        }
      }
    } catch (err) {
      // A connection that fails after message_stop lost nothing.
      if (!stopped || request.signal.aborted) throw err;
    }
    if (!stopped) throw streamEndedEarly('anthropic');
    yield { type: 'usage', input_tokens: inputTokens, output_tokens: outputTokens };
    yield { type: 'finish', reason: sawToolCall ? 'tool_calls' : (finish ?? 'stop') };
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
