/**
 * The one streaming interface every model provider implements (docs/ARCHITECTURE.md#runtime-providers-and-tools). The runtime
 * speaks only this; adapters (echo, openai, anthropic, ollama) translate it to their wire
 * formats. A provider streams: text deltas as they come, tool calls once complete, usage,
 * then one `finish`.
 */
import type { ToolCallRecord } from '../contract/models.js';
import type { JsonSchema } from '../contract/route.js';

export type ChatRole = 'system' | 'user' | 'assistant' | 'tool';

/**
 * A reasoning block as the model returned it (Anthropic extended thinking): the text with the
 * signature that lets the API verify it, or a `redacted_thinking` block's opaque `data`.
 */
export type ThinkingBlock = { type: 'thinking'; thinking: string; signature: string } | { type: 'redacted_thinking'; data: string };

/** One message sent to a model. */
export interface ChatMessage {
  role: ChatRole;
  content: string;
  /** Assistant messages that called tools. */
  tool_calls?: ToolCallRecord[];
  /**
   * Assistant messages of the tool-use rounds of the turn in progress only: the model's
   * reasoning blocks of that round, sent back unchanged (Anthropic requires them, with their
   * signatures, in the assistant message of a tool-use round when thinking is on). Never stored
   * in the history, so never part of a later turn's request.
   */
  thinking?: ThinkingBlock[];
  /** Tool messages: the call this answers. */
  tool_call_id?: string;
  /** Tool messages: the tool's name. */
  name?: string;
}

/** A tool offered to the model (function calling). */
export interface ToolSpec {
  name: string;
  description: string;
  /** JSON Schema of the tool's parameters object. */
  parameters: JsonSchema;
}

/** One call to a model. */
export interface ProviderRequest {
  /** The model name inside the provider (the image's `model.name`). */
  model: string;
  /** System prompt first, then the conversation, oldest first. */
  messages: ChatMessage[];
  /** Tools the model may call (empty: none). */
  tools: ToolSpec[];
  /** Model parameters (temperature, max_tokens...), the image's with the agent's on top. */
  parameters: Record<string, unknown>;
  /** Aborted when the turn is cancelled, stopped, deleted or the server shuts down: stop promptly. */
  signal: AbortSignal;
}

export type ProviderFinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter';

/** What a provider streams. `finish` comes once, last. */
export type ProviderEvent =
  | { type: 'text'; delta: string }
  /** A delta of the model's reasoning text: shown to a streaming client, not part of the answer or the history. */
  | { type: 'thinking'; delta: string }
  /** One complete reasoning block of this round, to be sent back with its tool results (see {@link ChatMessage.thinking}). */
  | { type: 'thinking_block'; block: ThinkingBlock }
  /**
   * A complete tool call. `error` is set when the model's call cannot be run as sent (its
   * arguments were not a JSON object): the runtime then answers the call with that error
   * instead of running the tool, so the model can correct itself.
   */
  | { type: 'tool_call'; call: ToolCallRecord; error?: string }
  | { type: 'usage'; input_tokens: number; output_tokens: number }
  | { type: 'finish'; reason: ProviderFinishReason };

/**
 * A model provider. `stream` throws SentinelError `upstream_error` (with a message safe to show
 * a client) when the model service fails; anything else it throws is treated as internal.
 */
export interface ModelProvider {
  /** The name images use in `model.provider` (e.g. `echo`, `openai`). */
  readonly name: string;
  stream(request: ProviderRequest): AsyncIterable<ProviderEvent>;
  /** Releases what the provider holds (connection pools); `api.close()` calls it. Optional. */
  close?(): Promise<void>;
  /**
   * Why this provider cannot serve requests as the server configured it (e.g. no API key for
   * the public endpoint), or undefined when it can. Checked when agents are created and shown
   * (`runnable`, `warnings`); never contains a secret. Optional: without it, configured.
   */
  configurationProblem?(): string | undefined;
}
