import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AnthropicProvider, type AnthropicProviderOptions } from '@sentinel/api-core';
import { toAnthropicMessages } from '../src/providers/anthropic.js';
import { anthropicErrorEvent, anthropicErrorReply, anthropicEvents, anthropicStream, ANTHROPIC_SSE_HEADERS } from '@sentinel/test-support/fakes/anthropic-fake';
import { closedPort, FakeProviderServer } from '@sentinel/test-support/fakes/fake-server';
import { FAST_RETRIES, providerRequest, run, textOf } from '@sentinel/test-support/fakes/provider-harness';

const KEY = 'sk-ant-api03-TEST-abcdefghijklmnopSECRET';

let fake: FakeProviderServer;
let provider: AnthropicProvider;

function makeProvider(options: AnthropicProviderOptions = {}): AnthropicProvider {
  provider = new AnthropicProvider({ apiKey: KEY, baseUrl: fake.url, retries: FAST_RETRIES, ...options });
  return provider;
}

beforeEach(async () => {
  fake = await FakeProviderServer.start();
});

afterEach(async () => {
  await provider?.close();
  await fake.close();
});

describe('anthropic provider: the request', () => {
  it('posts to /v1/messages with x-api-key and anthropic-version, the system prompt in `system`, tool_use/tool_result blocks and tools', async () => {
    fake.reply(anthropicStream(anthropicEvents([{ type: 'text', pieces: ['Eighty', '-four.'] }], { inputTokens: 120, outputTokens: 6 })));
    const result = await run(makeProvider().stream(providerRequest({ parameters: { temperature: 0.5, top_k: 40, stop: 'END', frequency_penalty: 1 } })));
    expect(result.error).toBeUndefined();
    expect(result.events).toEqual([
      { type: 'text', delta: 'Eighty' },
      { type: 'text', delta: '-four.' },
      { type: 'usage', input_tokens: 120, output_tokens: 6 },
      { type: 'finish', reason: 'stop' },
    ]);
    const [sent] = fake.requests;
    expect(sent?.path).toBe('/v1/messages');
    expect(sent?.headers['x-api-key']).toBe(KEY);
    expect(sent?.headers['anthropic-version']).toBe('2023-06-01');
    expect(sent?.headers.authorization).toBeUndefined();
    expect(sent?.json).toEqual({
      temperature: 0.5,
      top_k: 40,
      stop_sequences: ['END'],
      model: 'test-model',
      max_tokens: 1024,
      system: 'You are terse.',
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'What is 6*7?' }] },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'call_1', name: 'calculator', input: { expression: '6*7' } }] },
        // The tool result and the assistant's answer alternate properly; the result is a user turn.
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'call_1', content: '{"expression":"6*7","result":42}' }] },
        { role: 'assistant', content: [{ type: 'text', text: 'It is 42.' }] },
        { role: 'user', content: [{ type: 'text', text: 'And doubled?' }] },
      ],
      tools: [
        {
          name: 'calculator',
          description: 'Evaluates an arithmetic expression.',
          input_schema: { type: 'object', properties: { expression: { type: 'string' } }, required: ['expression'], additionalProperties: false },
        },
      ],
      stream: true,
    });
  });

  it('merges consecutive messages of one role and drops empty text, as the API requires', () => {
    const { system, messages } = toAnthropicMessages([
      { role: 'system', content: 'one' },
      { role: 'system', content: 'two' },
      { role: 'user', content: 'a' },
      { role: 'user', content: 'b' },
      { role: 'assistant', content: '', tool_calls: [{ id: 't1', name: 'x', arguments: {} }, { id: 't2', name: 'y', arguments: { n: 1 } }] },
      { role: 'tool', content: 'r1', tool_call_id: 't1' },
      { role: 'tool', content: 'r2', tool_call_id: 't2' },
      { role: 'user', content: 'thanks' },
    ]);
    expect(system).toBe('one\n\ntwo');
    expect(messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] },
      { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'x', input: {} }, { type: 'tool_use', id: 't2', name: 'y', input: { n: 1 } }] },
      {
        role: 'user',
        content: [
          { type: 'tool_result', tool_use_id: 't1', content: 'r1' },
          { type: 'tool_result', tool_use_id: 't2', content: 'r2' },
          { type: 'text', text: 'thanks' },
        ],
      },
    ]);
  });

  it('uses the image max_tokens when set, and accepts a base URL that already ends in /v1', async () => {
    fake.reply(anthropicStream(anthropicEvents([{ type: 'text', pieces: ['ok'] }])));
    await run(makeProvider({ baseUrl: `${fake.url}/v1` }).stream(providerRequest({ parameters: { max_tokens: 77 } })));
    expect(fake.requests[0]?.path).toBe('/v1/messages');
    expect(fake.requests[0]?.json.max_tokens).toBe(77);
  });
});

describe('anthropic provider: parsing the stream', () => {
  it('assembles tool_use input from input_json_delta fragments, after the text block', async () => {
    fake.reply(
      anthropicStream(
        anthropicEvents(
          [
            { type: 'text', pieces: ['Let me compute.'] },
            { type: 'tool_use', id: 'toolu_01A', name: 'calculator', jsonChunks: ['', '{"expres', 'sion": "84', ' * 2"}'] },
            { type: 'tool_use', id: 'toolu_01B', name: 'current_time', jsonChunks: [] },
          ],
          { inputTokens: 300, outputTokens: 40 },
        ),
      ),
    );
    const { events, error } = await run(makeProvider().stream(providerRequest()));
    expect(error).toBeUndefined();
    expect(events).toEqual([
      { type: 'text', delta: 'Let me compute.' },
      { type: 'tool_call', call: { id: 'toolu_01A', name: 'calculator', arguments: { expression: '84 * 2' } } },
      { type: 'tool_call', call: { id: 'toolu_01B', name: 'current_time', arguments: {} } },
      { type: 'usage', input_tokens: 300, output_tokens: 40 },
      { type: 'finish', reason: 'tool_calls' },
    ]);
  });

  it('streams thinking_delta as thinking events and hands back each finished block with its signature; the text stays the answer', async () => {
    fake.reply(
      anthropicStream(
        anthropicEvents(
          [
            { type: 'thinking', pieces: ['The user wants', ' 84 doubled.'], signature: 'EqQBCgIYAhIMsig-first' },
            { type: 'redacted_thinking', data: 'EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP' },
            { type: 'text', pieces: ['Computing.'] },
            { type: 'tool_use', id: 'toolu_T', name: 'calculator', jsonChunks: ['{"expression": "84*2"}'] },
          ],
          { inputTokens: 50, outputTokens: 30 },
        ),
      ),
    );
    const { events, error } = await run(makeProvider().stream(providerRequest({ parameters: { thinking: { type: 'enabled', budget_tokens: 2048 } } })));
    expect(error).toBeUndefined();
    expect(events).toEqual([
      { type: 'thinking', delta: 'The user wants' },
      { type: 'thinking', delta: ' 84 doubled.' },
      { type: 'thinking_block', block: { type: 'thinking', thinking: 'The user wants 84 doubled.', signature: 'EqQBCgIYAhIMsig-first' } },
      { type: 'thinking_block', block: { type: 'redacted_thinking', data: 'EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP' } },
      { type: 'text', delta: 'Computing.' },
      { type: 'tool_call', call: { id: 'toolu_T', name: 'calculator', arguments: { expression: '84*2' } } },
      { type: 'usage', input_tokens: 50, output_tokens: 30 },
      { type: 'finish', reason: 'tool_calls' },
    ]);
    expect(textOf(events)).toBe('Computing.');
    // The thinking parameter is passed through (it is what turns extended thinking on).
    expect(fake.requests[0]?.json.thinking).toEqual({ type: 'enabled', budget_tokens: 2048 });
  });

  it('sends thinking blocks back first in the assistant message of a tool-use round', () => {
    const { messages } = toAnthropicMessages([
      { role: 'user', content: 'Double 84.' },
      {
        role: 'assistant',
        content: 'Computing.',
        tool_calls: [{ id: 'toolu_T', name: 'calculator', arguments: { expression: '84*2' } }],
        thinking: [
          { type: 'thinking', thinking: 'The user wants 84 doubled.', signature: 'sig-1' },
          { type: 'redacted_thinking', data: 'opaque' },
        ],
      },
      { role: 'tool', content: '168', tool_call_id: 'toolu_T', name: 'calculator' },
    ]);
    expect(messages[1]).toEqual({
      role: 'assistant',
      content: [
        { type: 'thinking', thinking: 'The user wants 84 doubled.', signature: 'sig-1' },
        { type: 'redacted_thinking', data: 'opaque' },
        { type: 'text', text: 'Computing.' },
        { type: 'tool_use', id: 'toolu_T', name: 'calculator', input: { expression: '84*2' } },
      ],
    });
  });

  it('maps stop_reason max_tokens to length', async () => {
    fake.reply(anthropicStream(anthropicEvents([{ type: 'text', pieces: ['cut'] }], { stopReason: 'max_tokens' })));
    const { events } = await run(makeProvider().stream(providerRequest()));
    expect(events.at(-1)).toEqual({ type: 'finish', reason: 'length' });
  });

  it('an error event mid-stream is upstream_error with the API message', async () => {
    const events = anthropicEvents([{ type: 'text', pieces: ['Hel', 'lo'] }]);
    fake.reply(anthropicStream([...events.slice(0, 4), anthropicErrorEvent('overloaded_error', 'Overloaded')]));
    const result = await run(makeProvider().stream(providerRequest()));
    expect(textOf(result.events)).toBe('Hel');
    expect(result.error?.message).toBe('anthropic: the model failed mid-stream: overloaded_error: Overloaded');
  });

  it('a stream without message_stop is an error', async () => {
    const events = anthropicEvents([{ type: 'text', pieces: ['Hel', 'lo'] }]);
    fake.reply(anthropicStream(events.slice(0, -1)));
    const result = await run(makeProvider().stream(providerRequest()));
    expect(result.error?.message).toBe('anthropic: the stream ended before the answer was complete');
  });
});

describe('anthropic provider: failures', () => {
  it('retries 529 overloaded and 429 (honouring retry-after), then streams', async () => {
    fake.reply(
      anthropicErrorReply(529, 'overloaded_error', 'Overloaded'),
      anthropicErrorReply(429, 'rate_limit_error', 'Number of request tokens has exceeded your per-minute rate limit', { 'retry-after': '0' }),
      anthropicStream(anthropicEvents([{ type: 'text', pieces: ['finally'] }])),
    );
    const { events, error } = await run(makeProvider().stream(providerRequest()));
    expect(error).toBeUndefined();
    expect(textOf(events)).toBe('finally');
    expect(fake.requests).toHaveLength(3);
  });

  it('a 401 says to check ANTHROPIC_API_KEY and does not repeat the key', async () => {
    fake.reply(anthropicErrorReply(401, 'authentication_error', `invalid x-api-key ${KEY}`));
    const { error } = await run(makeProvider().stream(providerRequest()));
    expect(error?.message).toBe('anthropic: 401 Unauthorized: authentication_error: invalid x-api-key [redacted] — check ANTHROPIC_API_KEY');
  });

  it('refuses to call api.anthropic.com without a key', async () => {
    provider = new AnthropicProvider({});
    const { error } = await run(provider.stream(providerRequest()));
    expect(error?.message).toMatch(/^anthropic: no API key configured: set ANTHROPIC_API_KEY/);
  });

  it('an unreachable server names ANTHROPIC_BASE_URL', async () => {
    const port = await closedPort();
    provider = new AnthropicProvider({ apiKey: KEY, baseUrl: `http://127.0.0.1:${port}`, retries: { attempts: 1 } });
    const { error } = await run(provider.stream(providerRequest()));
    expect(error?.message).toBe(`anthropic: cannot connect to http://127.0.0.1:${port}: ECONNREFUSED — check ANTHROPIC_BASE_URL`);
  });

  it('a reset mid-stream is an error, not a retry', async () => {
    const events = anthropicEvents([{ type: 'text', pieces: ['a', 'b', 'c'] }]);
    fake.reply({ status: 200, headers: ANTHROPIC_SSE_HEADERS, steps: [{ write: events.slice(0, 4).join('') }, { delayMs: 20 }, { reset: true }] });
    const result = await run(makeProvider().stream(providerRequest()));
    expect(textOf(result.events)).toBe('a');
    expect(result.error?.message).toMatch(/^anthropic: the connection was lost mid-stream/);
    expect(fake.requests).toHaveLength(1);
  });

  it('aborting mid-stream closes the upstream connection', async () => {
    const events = anthropicEvents([{ type: 'text', pieces: ['first', 'second'] }]);
    fake.reply({ status: 200, headers: ANTHROPIC_SSE_HEADERS, steps: [{ write: events.slice(0, 4).join('') }, { stall: true }] });
    const controller = new AbortController();
    let thrown: unknown;
    try {
      for await (const event of makeProvider().stream(providerRequest({ signal: controller.signal }))) {
        if (event.type === 'text') controller.abort(new Error('stop'));
      }
    } catch (err) {
      thrown = err;
    }
    expect((thrown as Error).message).toBe('stop');
    expect(await fake.requests[0]?.ended).toBe('closed-early');
  });
});
