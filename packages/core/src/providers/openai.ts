/**
 * `openai`: the Chat Completions API with `stream: true` over SSE. The base URL is
 * configurable, so the same adapter serves OpenAI and every server that speaks its dialect:
 * Ollama's `/v1`, vLLM, llama.cpp's server, LM Studio, OpenRouter.
 *
 * Wire format (https://platform.openai.com/docs/api-reference/chat/streaming): `data: {chunk}`
 * events; a chunk's `choices[0].delta` carries `content` pieces and `tool_calls` pieces keyed
 * by `index` (the id and name come first, the arguments JSON in fragments after); the last
 * choice chunk has `finish_reason`; with `stream_options.include_usage` a final chunk with empty
 * `choices` carries `usage`; then `data: [DONE]`. An `error` object may arrive instead of a chunk.
 */
import { failedMidStream, SentinelError, streamEndedEarly, upstream } from '../contract/errors.js';
import type { Logger } from '../contract/logger.js';
import { checkBaseUrl, joinUrl, ProviderHttpClient, upstreamErrorDetail, type ProviderRetryPolicy, type ProviderTimeouts } from './http.js';
import { pickParameters } from './parameters.js';
import { parseSse } from './sse.js';
import { newToolCallId, parseToolArguments } from './tool-calls.js';
import type { ChatMessage, ModelProvider, ProviderEvent, ProviderFinishReason, ProviderRequest } from './types.js';

/** OpenAI's own endpoint, the default base URL. */
export const OPENAI_DEFAULT_BASE_URL = 'https://api.openai.com/v1';

/**
 * Model parameters sent to Chat Completions (others are dropped). The last three are not
 * OpenAI's but vLLM's and llama.cpp's sampling extensions, which those servers accept here.
 */
export const OPENAI_PARAMETERS: readonly string[] = [
  'temperature',
  'top_p',
  'max_tokens',
  'max_completion_tokens',
  'presence_penalty',
  'frequency_penalty',
  'stop',
  'seed',
  'logit_bias',
  'response_format',
  'reasoning_effort',
  'parallel_tool_calls',
  'user',
  'top_k',
  'min_p',
  'repetition_penalty',
];

export interface OpenAiProviderOptions {
  /** Sent as `Authorization: Bearer`. Required for api.openai.com; optional for other base URLs. Default none. */
  apiKey?: string;
  /** Base URL, up to and including `/v1`. Default `https://api.openai.com/v1`. */
  baseUrl?: string;
  /** Default: see {@link ProviderTimeouts}. */
  timeouts?: ProviderTimeouts;
  /** Default: see {@link ProviderRetryPolicy}. */
  retries?: ProviderRetryPolicy;
  /** Where retries are logged. Default: silent. */
  logger?: Logger;
  /** The name images use (`model.provider`). Default `openai`; another name serves a second OpenAI-compatible server. */
  name?: string;
  /** Environment variable names shown in error hints. Default `OPENAI_API_KEY` / `OPENAI_BASE_URL`. */
  hintVariables?: { apiKey: string; baseUrl: string };
}

interface OpenAiToolCallPart {
  index?: number;
  id?: string;
  function?: { name?: string; arguments?: string };
}

interface OpenAiChunk {
  choices?: { delta?: { content?: string | null; tool_calls?: OpenAiToolCallPart[] }; finish_reason?: string | null }[];
  usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
  error?: unknown;
}

interface PendingCall {
  id: string;
  name: string;
  arguments: string;
}

const FINISH_REASONS: Record<string, ProviderFinishReason> = {
  stop: 'stop',
  length: 'length',
  tool_calls: 'tool_calls',
  function_call: 'tool_calls',
  content_filter: 'content_filter',
};

/** A conversation message in Chat Completions form. */
export function toOpenAiMessage(message: ChatMessage): Record<string, unknown> {
  switch (message.role) {
    case 'assistant':
      if (message.tool_calls && message.tool_calls.length > 0) {
        return {
          role: 'assistant',
          // OpenAI wants null, not '', for "no text, only tool calls".
          content: message.content === '' ? null : message.content,
          tool_calls: message.tool_calls.map((call) => ({
            id: call.id,
            type: 'function',
            function: { name: call.name, arguments: JSON.stringify(call.arguments) },
          })),
        };
      }
      return { role: 'assistant', content: message.content };
    case 'tool':
      return { role: 'tool', tool_call_id: message.tool_call_id ?? '', content: message.content };
    default:
      return { role: message.role, content: message.content };
  }
}

/** The Chat Completions request body for a provider request. */
export function openAiRequestBody(request: ProviderRequest): Record<string, unknown> {
  return {
    ...pickParameters(request.parameters, OPENAI_PARAMETERS),
    model: request.model,
    messages: request.messages.map(toOpenAiMessage),
    ...(request.tools.length > 0
      ? { tools: request.tools.map((tool) => ({ type: 'function', function: { name: tool.name, description: tool.description, parameters: tool.parameters } })) }
      : {}),
    stream: true,
    stream_options: { include_usage: true },
  };
}

function nonNegative(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0;
}

/** The `openai` provider (and any OpenAI-compatible server, by base URL). */
export class OpenAiProvider implements ModelProvider {
  readonly name: string;
  private readonly apiKey: string | undefined;
  private readonly baseUrl: string;
  private readonly client: ProviderHttpClient;
  private readonly keyRequired: boolean;
  private readonly vars: { apiKey: string; baseUrl: string };

  constructor(options: OpenAiProviderOptions = {}) {
    this.name = options.name ?? 'openai';
    this.apiKey = options.apiKey || undefined;
    this.vars = options.hintVariables ?? { apiKey: 'OPENAI_API_KEY', baseUrl: 'OPENAI_BASE_URL' };
    this.baseUrl = checkBaseUrl(options.baseUrl ?? OPENAI_DEFAULT_BASE_URL, this.vars.baseUrl);
    // Self-hosted compatible servers usually run without a key; OpenAI itself never does.
    this.keyRequired = new URL(this.baseUrl).hostname === 'api.openai.com';
    this.client = new ProviderHttpClient({
      provider: this.name,
      hints: { auth: `check ${this.vars.apiKey}`, endpoint: this.vars.baseUrl },
      ...(options.timeouts ? { timeouts: options.timeouts } : {}),
      ...(options.retries ? { retries: options.retries } : {}),
      ...(options.logger ? { logger: options.logger } : {}),
      secrets: this.apiKey ? [this.apiKey] : [],
    });
  }

  configurationProblem(): string | undefined {
    if (this.apiKey || !this.keyRequired) return undefined;
    return `${this.name}: no API key configured: set ${this.vars.apiKey} (environment or providers.json in the data directory), or ${this.vars.baseUrl} for an OpenAI-compatible server`;
  }

  async *stream(request: ProviderRequest): AsyncGenerator<ProviderEvent, void, undefined> {
    const problem = this.configurationProblem();
    if (problem !== undefined) throw new SentinelError('upstream_error', problem);
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'text/event-stream' };
    if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
    const body = this.client.stream({
      url: joinUrl(this.baseUrl, 'chat/completions'),
      headers,
      body: JSON.stringify(openAiRequestBody(request)),
      signal: request.signal,
      subject: `model "${request.model}"`,
    });

    const calls = new Map<number, PendingCall>();
    let finish: ProviderFinishReason | undefined;
    let usage: { input_tokens: number; output_tokens: number } | undefined;
    let done = false;
    try {
      for await (const event of parseSse(body, { source: this.name })) {
        // After [DONE] the rest is read, not parsed: ending the response lets the pool reuse the connection.
        if (done) continue;
        if (event.data === '[DONE]') {
          done = true;
          continue;
        }
        let chunk: OpenAiChunk;
        try {
          chunk = JSON.parse(event.data) as OpenAiChunk;
        } catch {
          throw upstream(this.name, 'the stream held an event that is not JSON');
        }
        if (typeof chunk !== 'object' || chunk === null) continue;
        if (chunk.error !== undefined && chunk.error !== null) {
          const detail = this.client.sanitize(upstreamErrorDetail(JSON.stringify({ error: chunk.error })));
          throw failedMidStream(this.name, detail);
        }
        if (chunk.usage) usage = { input_tokens: nonNegative(chunk.usage.prompt_tokens), output_tokens: nonNegative(chunk.usage.completion_tokens) };
        const choice = chunk.choices?.[0];
        if (!choice) continue;
        const delta = choice.delta ?? {};
        if (typeof delta.content === 'string' && delta.content.length > 0) yield { type: 'text', delta: delta.content };
        if (Array.isArray(delta.tool_calls)) {
          for (const [position, part] of delta.tool_calls.entries()) {
            const index = typeof part.index === 'number' ? part.index : position;
            let call = calls.get(index);
            if (!call) {
              call = { id: '', name: '', arguments: '' };
              calls.set(index, call);
            }
            if (typeof part.id === 'string' && part.id !== '') call.id = part.id;
            if (typeof part.function?.name === 'string' && call.name === '') call.name = part.function.name;
            if (typeof part.function?.arguments === 'string') call.arguments += part.function.arguments;
          }
        }
        if (typeof choice.finish_reason === 'string') finish = FINISH_REASONS[choice.finish_reason] ?? 'stop';
      }
    } catch (err) {
      // A connection that fails after [DONE] lost nothing.
      if (!done || request.signal.aborted) throw err;
    }
    if (!done && finish === undefined) {
      throw streamEndedEarly(this.name);
    }
    for (const index of [...calls.keys()].sort((a, b) => a - b)) {
      const call = calls.get(index) as PendingCall;
      const name = call.name || 'unnamed_tool';
      const parsed = parseToolArguments(call.arguments, name);
      yield {
        type: 'tool_call',
        call: { id: call.id || newToolCallId(), name, arguments: parsed.arguments },
        ...(parsed.error === undefined ? {} : { error: parsed.error }),
      };
    }
    if (usage) yield { type: 'usage', ...usage };
    // Some compatible servers say "stop" after tool calls; the calls are what counts.
    yield { type: 'finish', reason: calls.size > 0 ? 'tool_calls' : (finish ?? 'stop') };
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
