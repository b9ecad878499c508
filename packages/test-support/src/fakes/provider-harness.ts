/** Small helpers for the provider tests: drive a provider's stream and look at what came out. */
import { isSentinelError, type ChatMessage, type ProviderEvent, type ProviderRequest, type SentinelError, type ToolSpec } from '@sentinel/api-core';

/** Every event of a stream, or the error it failed with (and the events before it). */
export async function run(stream: AsyncIterable<ProviderEvent>): Promise<{ events: ProviderEvent[]; error?: SentinelError; thrown?: unknown }> {
  const events: ProviderEvent[] = [];
  try {
    for await (const event of stream) events.push(event);
    return { events };
  } catch (err) {
    if (isSentinelError(err)) return { events, error: err };
    return { events, thrown: err };
  }
}

export const textOf = (events: ProviderEvent[]): string => events.flatMap((e) => (e.type === 'text' ? [e.delta] : [])).join('');

export const CALCULATOR_SPEC: ToolSpec = {
  name: 'calculator',
  description: 'Evaluates an arithmetic expression.',
  parameters: { type: 'object', properties: { expression: { type: 'string' } }, required: ['expression'], additionalProperties: false },
};

/** A conversation with history, a system prompt and a completed tool round. */
export const HISTORY: ChatMessage[] = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'What is 6*7?' },
  { role: 'assistant', content: '', tool_calls: [{ id: 'call_1', name: 'calculator', arguments: { expression: '6*7' } }] },
  { role: 'tool', content: '{"expression":"6*7","result":42}', tool_call_id: 'call_1', name: 'calculator' },
  { role: 'assistant', content: 'It is 42.' },
  { role: 'user', content: 'And doubled?' },
];

export function providerRequest(overrides: Partial<ProviderRequest> = {}): ProviderRequest {
  return {
    model: 'test-model',
    messages: HISTORY,
    tools: [CALCULATOR_SPEC],
    parameters: {},
    signal: new AbortController().signal,
    ...overrides,
  };
}

/** Retries fast enough for tests. */
export const FAST_RETRIES = { attempts: 3, baseDelayMs: 5, maxDelayMs: 2000 };
