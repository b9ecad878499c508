import { describe, expect, it } from 'vitest';
import { EchoProvider, isSentinelError, type ChatMessage, type ProviderEvent, type ProviderRequest } from '@sentinel/api-core';
import { estimateTokens, splitIntoChunks } from '../src/providers/echo.js';
import { ProviderCatalog } from '../src/providers/catalog.js';

function request(messages: ChatMessage[], signal = new AbortController().signal): ProviderRequest {
  return { model: 'echo', messages, tools: [], parameters: {}, signal };
}

async function collect(stream: AsyncIterable<ProviderEvent>): Promise<ProviderEvent[]> {
  const events: ProviderEvent[] = [];
  for await (const event of stream) events.push(event);
  return events;
}

const textOf = (events: ProviderEvent[]) => events.flatMap((e) => (e.type === 'text' ? [e.delta] : [])).join('');

describe('echo provider', () => {
  const echo = new EchoProvider({ chunkDelayMs: 0 });

  it('splits on word boundaries into chunks of 1-3 words that join back exactly', () => {
    const text = 'Echo: the quick  brown fox\njumps over the lazy dog ';
    const chunks = splitIntoChunks(text);
    expect(chunks.join('')).toBe(text);
    expect(chunks.length).toBeGreaterThan(3);
    for (const chunk of chunks) {
      const words = chunk.trim().split(/\s+/).length;
      expect(words).toBeGreaterThanOrEqual(1);
      expect(words).toBeLessThanOrEqual(3);
    }
    expect(splitIntoChunks('  lead')).toEqual(['  lead']);
    expect(splitIntoChunks('')).toEqual([]);
  });

  it('answers "Echo: <last user message>" in several chunks, then usage and finish', async () => {
    const messages: ChatMessage[] = [
      { role: 'system', content: 'You are a test.' },
      { role: 'user', content: 'first question' },
      { role: 'assistant', content: 'Echo: first question' },
      { role: 'user', content: 'tell me about the weather in Paris today' },
    ];
    const events = await collect(echo.stream(request(messages)));
    const answer = 'Echo: tell me about the weather in Paris today';
    expect(textOf(events)).toBe(answer);
    expect(events.filter((e) => e.type === 'text').length).toBeGreaterThanOrEqual(4);
    const chars = messages.reduce((n, m) => n + m.content.length, 0);
    expect(events.at(-2)).toEqual({ type: 'usage', input_tokens: Math.ceil(chars / 4), output_tokens: Math.ceil(answer.length / 4) });
    expect(events.at(-1)).toEqual({ type: 'finish', reason: 'stop' });
    expect(estimateTokens(9)).toBe(3);
  });

  it('calls a tool for "/tool <name> <json>", and answers the tool result', async () => {
    const call = await collect(echo.stream(request([{ role: 'user', content: '/tool calculator {"expression":"6*7"}' }])));
    expect(call[0]).toMatchObject({ type: 'tool_call', call: { name: 'calculator', arguments: { expression: '6*7' } } });
    expect((call[0] as { call: { id: string } }).call.id).toMatch(/^call_[0-9a-f]{16}$/);
    expect(call.at(-1)).toEqual({ type: 'finish', reason: 'tool_calls' });

    const noArgs = await collect(echo.stream(request([{ role: 'user', content: '/tool current_time' }])));
    expect(noArgs[0]).toMatchObject({ type: 'tool_call', call: { name: 'current_time', arguments: {} } });

    const answer = await collect(
      echo.stream(
        request([
          { role: 'user', content: '/tool calculator {"expression":"6*7"}' },
          { role: 'assistant', content: '', tool_calls: [{ id: 'c1', name: 'calculator', arguments: { expression: '6*7' } }] },
          { role: 'tool', content: '{"result":42}', tool_call_id: 'c1', name: 'calculator' },
        ]),
      ),
    );
    expect(textOf(answer)).toBe('Tool calculator returned: {"result":42}');
  });

  it('explains malformed tool arguments instead of calling', async () => {
    const events = await collect(echo.stream(request([{ role: 'user', content: '/tool calculator [1,2]' }])));
    expect(events.some((e) => e.type === 'tool_call')).toBe(false);
    expect(textOf(events)).toBe('Echo: cannot call tool calculator: the arguments must be a JSON object');
  });

  it('waits chunkDelayMs before chunks and stops promptly when aborted mid-delay', async () => {
    const slow = new EchoProvider({ chunkDelayMs: 30 });
    const started = Date.now();
    await collect(slow.stream(request([{ role: 'user', content: 'a b c' }])));
    // "Echo: a b c" is 4 words → 3 chunks (1, 2, 1 words), each after a 30 ms pause.
    expect(Date.now() - started).toBeGreaterThanOrEqual(80);

    const verySlow = new EchoProvider({ chunkDelayMs: 10_000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 20);
    const abortedAt = Date.now();
    await expect(collect(verySlow.stream(request([{ role: 'user', content: 'hello' }], controller.signal)))).rejects.toThrow();
    expect(Date.now() - abortedAt).toBeLessThan(1000);
  });
});

describe('ProviderCatalog', () => {
  it('finds providers by name and refuses unknown ones with upstream_error', () => {
    const registry = new ProviderCatalog().register(new EchoProvider());
    expect(registry.get('echo').name).toBe('echo');
    expect(registry.names()).toEqual(['echo']);
    try {
      registry.get('openai');
      throw new Error('expected a throw');
    } catch (err) {
      expect(isSentinelError(err)).toBe(true);
      expect(err).toMatchObject({ code: 'upstream_error', message: 'model provider "openai" is not configured on this server' });
    }
  });
});
