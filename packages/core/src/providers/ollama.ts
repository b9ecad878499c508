/**
 * `ollama`: Ollama's native `POST /api/chat` with NDJSON streaming.
 *
 * Wire format (https://github.com/ollama/ollama/blob/main/docs/api.md#generate-a-chat-completion):
 * one JSON object per line, `{model, created_at, message: {role, content, tool_calls?}, done: false}`,
 * then a last line `{done: true, done_reason, prompt_eval_count, eval_count, …}`. Tool calls come
 * whole, `{function: {name, arguments: {…}}}` (arguments an object, usually no id). A failure is
 * a line `{error: "…"}`, mid-stream or as the body of an error status.
 */
import { failedMidStream, streamEndedEarly } from '../contract/errors.js';
import type { Logger } from '../contract/logger.js';
import { checkBaseUrl, joinUrl, ProviderHttpClient, type ProviderRetryPolicy, type ProviderTimeouts } from './http.js';
import { parseNdjson } from './ndjson.js';
import { pickParameters } from './parameters.js';
import { checkToolArguments, newToolCallId, parseToolArguments } from './tool-calls.js';
import type { ChatMessage, ModelProvider, ProviderEvent, ProviderFinishReason, ProviderRequest } from './types.js';

export const OLLAMA_DEFAULT_HOST = 'http://127.0.0.1:11434';
/** Model parameters sent as Ollama `options` (`max_tokens` is sent as `num_predict`). */
export const OLLAMA_OPTIONS: readonly string[] = [
  'temperature',
  'top_p',
  'top_k',
  'min_p',
  'seed',
  'stop',
  'num_ctx',
  'num_predict',
  'max_tokens',
  'repeat_penalty',
  'repeat_last_n',
  'presence_penalty',
  'frequency_penalty',
];

export interface OllamaProviderOptions {
  /** Where Ollama listens, as `OLLAMA_HOST` takes it (`host:port`, `http://host:port`). Default `http://127.0.0.1:11434`. */
  host?: string;
  /** Default: see {@link ProviderTimeouts}. */
  timeouts?: ProviderTimeouts;
  /** Default: see {@link ProviderRetryPolicy}. */
  retries?: ProviderRetryPolicy;
  /** Where retries are logged. Default: silent. */
  logger?: Logger;
}

/**
 * `OLLAMA_HOST` as Ollama's own client reads it: without a scheme it is `http://` with port
 * 11434 by default; with `http://`/`https://` the scheme's default port applies.
 */
export function normalizeOllamaHost(value: string): string {
  const trimmed = value.trim();
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed)) return checkBaseUrl(trimmed, 'OLLAMA_HOST');
  const url = checkBaseUrl(`http://${trimmed}`, 'OLLAMA_HOST');
  const parsed = new URL(url);
  if (parsed.port === '') parsed.port = '11434';
  return parsed.toString().replace(/\/+$/, '');
}

/** A conversation message in Ollama's form. */
export function toOllamaMessage(message: ChatMessage): Record<string, unknown> {
  if (message.role === 'assistant' && message.tool_calls && message.tool_calls.length > 0) {
    return {
      role: 'assistant',
      content: message.content,
      tool_calls: message.tool_calls.map((call) => ({ function: { name: call.name, arguments: call.arguments } })),
    };
  }
  if (message.role === 'tool') return { role: 'tool', content: message.content, ...(message.name === undefined ? {} : { tool_name: message.name }) };
  return { role: message.role, content: message.content };
}

/** The `/api/chat` request body for a provider request. */
export function ollamaRequestBody(request: ProviderRequest): Record<string, unknown> {
  const options = pickParameters(request.parameters, OLLAMA_OPTIONS, { max_tokens: 'num_predict' });
  if (request.parameters.num_predict !== undefined && request.parameters.num_predict !== null) options.num_predict = request.parameters.num_predict;
  return {
    model: request.model,
    messages: request.messages.map(toOllamaMessage),
    ...(request.tools.length > 0
      ? { tools: request.tools.map((tool) => ({ type: 'function', function: { name: tool.name, description: tool.description, parameters: tool.parameters } })) }
      : {}),
    stream: true,
    ...(Object.keys(options).length > 0 ? { options } : {}),
  };
}

function count(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0;
}

function recordOf(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
}

/** The `ollama` provider. */
export class OllamaProvider implements ModelProvider {
  readonly name = 'ollama';
  private readonly url: string;
  private readonly client: ProviderHttpClient;

  constructor(options: OllamaProviderOptions = {}) {
    this.url = joinUrl(normalizeOllamaHost(options.host ?? OLLAMA_DEFAULT_HOST), 'api/chat');
    this.client = new ProviderHttpClient({
      provider: this.name,
      hints: { auth: 'check the proxy in front of Ollama', endpoint: 'OLLAMA_HOST' },
      ...(options.timeouts ? { timeouts: options.timeouts } : {}),
      ...(options.retries ? { retries: options.retries } : {}),
      ...(options.logger ? { logger: options.logger } : {}),
    });
  }

  async *stream(request: ProviderRequest): AsyncGenerator<ProviderEvent, void, undefined> {
    const body = this.client.stream({
      url: this.url,
      headers: { 'content-type': 'application/json', accept: 'application/x-ndjson' },
      body: JSON.stringify(ollamaRequestBody(request)),
      signal: request.signal,
      subject: `model "${request.model}" (ollama pull ${request.model})`,
    });
    let done = false;
    let sawToolCall = false;
    let finish: ProviderFinishReason = 'stop';
    let usage: { input_tokens: number; output_tokens: number } | undefined;
    try {
      for await (const value of parseNdjson(body, { source: this.name })) {
        // After the done line the rest is read, not parsed: ending the response lets the pool reuse the connection.
        if (done) continue;
        const line = recordOf(value);
        if (line.error !== undefined) {
          const detail = this.client.sanitize(typeof line.error === 'string' ? line.error : JSON.stringify(line.error));
          throw failedMidStream('ollama', detail);
        }
        const message = recordOf(line.message);
        if (typeof message.content === 'string' && message.content !== '') yield { type: 'text', delta: message.content };
        if (Array.isArray(message.tool_calls)) {
          for (const raw of message.tool_calls) {
            const call = recordOf(raw);
            const fn = recordOf(call.function);
            const name = typeof fn.name === 'string' && fn.name !== '' ? fn.name : 'unnamed_tool';
            const parsed = typeof fn.arguments === 'string' ? parseToolArguments(fn.arguments, name) : checkToolArguments(fn.arguments ?? {}, name);
            sawToolCall = true;
            yield {
              type: 'tool_call',
              call: { id: typeof call.id === 'string' && call.id !== '' ? call.id : newToolCallId(), name, arguments: parsed.arguments },
              ...(parsed.error === undefined ? {} : { error: parsed.error }),
            };
          }
        }
        if (line.done === true) {
          done = true;
          if (line.done_reason === 'length') finish = 'length';
          usage = { input_tokens: count(line.prompt_eval_count), output_tokens: count(line.eval_count) };
        }
      }
    } catch (err) {
      // A connection that fails after the done line lost nothing.
      if (!done || request.signal.aborted) throw err;
    }
    if (!done) throw streamEndedEarly('ollama');
    if (usage) yield { type: 'usage', ...usage };
    yield { type: 'finish', reason: sawToolCall ? 'tool_calls' : finish };
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
