/**
 * `echo`: the offline, deterministic provider of the starter image. It needs no network and no
 * key, so agents, streaming, cancellation and the tool path can be tried (and tested) anywhere.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ChatMessage, ModelProvider, ProviderEvent, ProviderRequest } from './types.js';

export interface EchoProviderOptions {
  /** Pause before each chunk, in ms, to look like a model streaming. Default 15; 0 sends chunks back to back (benchmarks). */
  chunkDelayMs?: number;
}

/** Words per chunk cycle through this pattern, so answers stream in chunks of 1-3 words. */
const WORDS_PER_CHUNK = [1, 2, 3] as const;

const TOOL_COMMAND = /^\/tool\s+([a-z][a-z0-9_]{0,63})(?:\s+([\s\S]*))?$/;

/**
 * The usage convention of the echo provider (a rough "4 characters per token"):
 * `input_tokens = ceil(total characters of every request message / 4)`,
 * `output_tokens = ceil(characters of the answer / 4)`; a tool call counts its JSON arguments
 * as the answer.
 */
export function estimateTokens(chars: number): number {
  return Math.ceil(chars / 4);
}

/**
 * Splits `text` on word boundaries into chunks of 1-3 words (each chunk keeps the whitespace
 * that follows its words), so joining the chunks gives `text` back exactly.
 */
export function splitIntoChunks(text: string): string[] {
  const lead = /^\s*/.exec(text)?.[0] ?? '';
  const words = text.slice(lead.length).match(/\S+\s*/g) ?? [];
  const chunks: string[] = [];
  let i = 0;
  let cycle = 0;
  while (i < words.length) {
    const n = WORDS_PER_CHUNK[cycle % WORDS_PER_CHUNK.length] ?? 1;
    chunks.push(words.slice(i, i + n).join(''));
    i += n;
    cycle++;
  }
  if (chunks.length === 0) return lead ? [lead] : [];
  if (lead) chunks[0] = lead + chunks[0];
  return chunks;
}

type EchoPlan = { kind: 'text'; text: string } | { kind: 'tool'; name: string; args: Record<string, unknown> };

/** What the echo model "decides" to do with the conversation. */
function plan(messages: readonly ChatMessage[]): EchoPlan {
  const last = messages[messages.length - 1];
  if (last?.role === 'tool') {
    // Answer every tool result of the last round, in order.
    let first = messages.length - 1;
    while (first > 0 && messages[first - 1]?.role === 'tool') first--;
    const lines = messages.slice(first).map((m) => `Tool ${m.name ?? 'tool'} returned: ${m.content}`);
    return { kind: 'text', text: lines.join('\n') };
  }
  let lastUser: ChatMessage | undefined;
  for (let i = messages.length - 1; i >= 0 && !lastUser; i--) if (messages[i]?.role === 'user') lastUser = messages[i];
  const content = lastUser?.content ?? '';
  const command = TOOL_COMMAND.exec(content.trim());
  if (command) {
    const name = command[1] ?? '';
    const rawArgs = command[2]?.trim() ?? '';
    let args: unknown = {};
    if (rawArgs !== '') {
      try {
        args = JSON.parse(rawArgs);
      } catch {
        args = undefined;
      }
    }
    if (typeof args !== 'object' || args === null || Array.isArray(args)) {
      return { kind: 'text', text: `Echo: cannot call tool ${name}: the arguments must be a JSON object` };
    }
    return { kind: 'tool', name, args: args as Record<string, unknown> };
  }
  return { kind: 'text', text: `Echo: ${content}` };
}

/**
 * The echo provider. It answers `Echo: <last user message>`, streamed in chunks of 1-3 words
 * with `chunkDelayMs` before each chunk, and stops as soon as the request's signal aborts
 * (mid-delay too). A user message `/tool <name> <json-args>` (e.g.
 * `/tool calculator {"expression":"6*7"}`) makes it call that tool (finish `tool_calls`); when the
 * last message is a tool result it answers `Tool <name> returned: <content>`. Usage follows
 * {@link estimateTokens}.
 */
export class EchoProvider implements ModelProvider {
  readonly name = 'echo';
  private readonly chunkDelayMs: number;

  constructor(options: EchoProviderOptions = {}) {
    this.chunkDelayMs = Math.max(0, options.chunkDelayMs ?? 15);
  }

  async *stream(request: ProviderRequest): AsyncIterable<ProviderEvent> {
    const { signal } = request;
    signal.throwIfAborted();
    const inputChars = request.messages.reduce((sum, m) => sum + m.content.length, 0);
    const decision = plan(request.messages);
    if (decision.kind === 'tool') {
      if (this.chunkDelayMs > 0) await sleep(this.chunkDelayMs, undefined, { signal });
      const call = { id: `call_${randomBytes(8).toString('hex')}`, name: decision.name, arguments: decision.args };
      yield { type: 'tool_call', call };
      yield { type: 'usage', input_tokens: estimateTokens(inputChars), output_tokens: estimateTokens(JSON.stringify(decision.args).length) };
      yield { type: 'finish', reason: 'tool_calls' };
      return;
    }
    for (const chunk of splitIntoChunks(decision.text)) {
      if (this.chunkDelayMs > 0) await sleep(this.chunkDelayMs, undefined, { signal });
      signal.throwIfAborted();
      yield { type: 'text', delta: chunk };
    }
    yield { type: 'usage', input_tokens: estimateTokens(inputChars), output_tokens: estimateTokens(decision.text.length) };
    yield { type: 'finish', reason: 'stop' };
  }
}
