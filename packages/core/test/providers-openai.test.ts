import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OpenAiProvider, type OpenAiProviderOptions } from '@sentinel/api-core';
import { closedPort, FakeProviderServer, splitText } from '@sentinel/test-support/fakes/fake-server';
import { openAiErrorEvent, openAiErrorReply, openAiStream, openAiTextEvents, openAiToolCallEvents, OPENAI_SSE_HEADERS } from '@sentinel/test-support/fakes/openai-fake';
import { FAST_RETRIES, providerRequest, run, textOf } from '@sentinel/test-support/fakes/provider-harness';

const KEY = 'sk-test-OPENAI-0123456789abcdefSECRET';

let fake: FakeProviderServer;
let provider: OpenAiProvider;

function makeProvider(options: OpenAiProviderOptions = {}): OpenAiProvider {
  provider = new OpenAiProvider({ apiKey: KEY, baseUrl: `${fake.url}/v1`, retries: FAST_RETRIES, ...options });
  return provider;
}

beforeEach(async () => {
  fake = await FakeProviderServer.start();
});

afterEach(async () => {
  await provider?.close();
  await fake.close();
});

describe('openai provider: the request', () => {
  it('sends the full history, system prompt, tools, allowed parameters and the bearer key; streams text, usage, finish', async () => {
    fake.reply(openAiStream(openAiTextEvents(['It ', 'is ', '84.'], { usage: { prompt_tokens: 57, completion_tokens: 4 } })));
    const result = await run(
      makeProvider().stream(providerRequest({ parameters: { temperature: 0.2, max_tokens: 50, stream: false, model: 'other', api_key: 'x', unknown_knob: 1 } })),
    );
    expect(result.error).toBeUndefined();
    expect(result.events).toEqual([
      { type: 'text', delta: 'It ' },
      { type: 'text', delta: 'is ' },
      { type: 'text', delta: '84.' },
      { type: 'usage', input_tokens: 57, output_tokens: 4 },
      { type: 'finish', reason: 'stop' },
    ]);

    const [sent] = fake.requests;
    expect(sent?.method).toBe('POST');
    expect(sent?.path).toBe('/v1/chat/completions');
    expect(sent?.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(sent?.headers['content-type']).toBe('application/json');
    expect(sent?.headers.accept).toBe('text/event-stream');
    expect(sent?.json).toEqual({
      temperature: 0.2,
      max_tokens: 50,
      model: 'test-model',
      stream: true,
      stream_options: { include_usage: true },
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'What is 6*7?' },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'calculator', arguments: '{"expression":"6*7"}' } }] },
        { role: 'tool', tool_call_id: 'call_1', content: '{"expression":"6*7","result":42}' },
        { role: 'assistant', content: 'It is 42.' },
        { role: 'user', content: 'And doubled?' },
      ],
      tools: [
        {
          type: 'function',
          function: {
            name: 'calculator',
            description: 'Evaluates an arithmetic expression.',
            parameters: { type: 'object', properties: { expression: { type: 'string' } }, required: ['expression'], additionalProperties: false },
          },
        },
      ],
    });
  });

  it('works without a key against a self-hosted compatible server (no Authorization header, no tools key when none)', async () => {
    fake.reply(openAiStream(openAiTextEvents(['ok'])));
    const result = await run(makeProvider({ apiKey: undefined }).stream(providerRequest({ tools: [] })));
    expect(textOf(result.events)).toBe('ok');
    expect(fake.requests[0]?.headers.authorization).toBeUndefined();
    expect(fake.requests[0]?.json).not.toHaveProperty('tools');
  });

  it('reuses the keep-alive connection for the next request', async () => {
    fake.reply(openAiStream(openAiTextEvents(['one'])), openAiStream(openAiTextEvents(['two'])));
    makeProvider();
    expect(textOf((await run(provider.stream(providerRequest()))).events)).toBe('one');
    // undici hands the socket back to its pool a tick after the body ends.
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(textOf((await run(provider.stream(providerRequest()))).events)).toBe('two');
    expect(fake.requests[1]?.remotePort).toBe(fake.requests[0]?.remotePort);
  });
});

describe('openai provider: parsing the stream', () => {
  it('assembles tool-call arguments streamed in fragments, for interleaved calls, in index order', async () => {
    fake.reply(
      openAiStream(
        openAiToolCallEvents(
          [
            { id: 'call_a', name: 'calculator', argumentChunks: ['{"expr', 'ession"', ': "2 + ', '3"}'] },
            { id: 'call_b', name: 'current_time', argumentChunks: ['{"time', 'zone": "Europe/Paris"}'] },
          ],
          { usage: { prompt_tokens: 80, completion_tokens: 30 } },
        ),
      ),
    );
    const { events, error } = await run(makeProvider().stream(providerRequest()));
    expect(error).toBeUndefined();
    expect(events).toEqual([
      { type: 'tool_call', call: { id: 'call_a', name: 'calculator', arguments: { expression: '2 + 3' } } },
      { type: 'tool_call', call: { id: 'call_b', name: 'current_time', arguments: { timezone: 'Europe/Paris' } } },
      { type: 'usage', input_tokens: 80, output_tokens: 30 },
      { type: 'finish', reason: 'tool_calls' },
    ]);
  });

  it('reports a call whose arguments are not JSON with an error instead of failing the stream', async () => {
    fake.reply(openAiStream(openAiToolCallEvents([{ id: 'call_bad', name: 'calculator', argumentChunks: ['{"expression": ', '6*7}'] }])));
    const { events, error } = await run(makeProvider().stream(providerRequest()));
    expect(error).toBeUndefined();
    const call = events.find((e) => e.type === 'tool_call');
    expect(call).toMatchObject({ type: 'tool_call', call: { id: 'call_bad', name: 'calculator', arguments: {} } });
    expect((call as { error?: string }).error).toMatch(/arguments of the calculator call are not valid JSON/);
  });

  it('parses events that arrive split across many small reads', async () => {
    const text = openAiTextEvents(['Hé', 'llo ', '世界'], { usage: { prompt_tokens: 3, completion_tokens: 3 } }).join('');
    fake.reply({ status: 200, headers: OPENAI_SSE_HEADERS, steps: splitText(text, 7) });
    const { events, error } = await run(makeProvider().stream(providerRequest()));
    expect(error).toBeUndefined();
    expect(textOf(events)).toBe('Héllo 世界');
    expect(events.at(-1)).toEqual({ type: 'finish', reason: 'stop' });
  });

  it('maps finish_reason length', async () => {
    fake.reply(openAiStream(openAiTextEvents(['cut'], { finishReason: 'length' })));
    const { events } = await run(makeProvider().stream(providerRequest()));
    expect(events.at(-1)).toEqual({ type: 'finish', reason: 'length' });
  });

  it('turns an error object mid-stream into upstream_error, after the text before it', async () => {
    const events = openAiTextEvents(['partial ']).slice(0, 2);
    fake.reply(openAiStream([...events, openAiErrorEvent('The server had an error while processing your request.')]));
    const result = await run(makeProvider().stream(providerRequest()));
    expect(textOf(result.events)).toBe('partial ');
    expect(result.error?.code).toBe('upstream_error');
    expect(result.error?.message).toBe('openai: the model failed mid-stream: server_error: The server had an error while processing your request.');
  });

  it('a stream that ends without [DONE] or a finish reason is an error', async () => {
    fake.reply(openAiStream(openAiTextEvents(['half']).slice(0, 2)));
    const result = await run(makeProvider().stream(providerRequest()));
    expect(result.error?.message).toBe('openai: the stream ended before the answer was complete');
  });
});

describe('openai provider: failures, retries and timeouts', () => {
  it('honours retry-after on 429, then streams the retry', async () => {
    fake.reply(openAiErrorReply(429, 'Rate limit reached for gpt-4o-mini', { type: 'requests', headers: { 'retry-after': '1' } }), openAiStream(openAiTextEvents(['after the wait'])));
    const started = Date.now();
    const { events, error } = await run(makeProvider().stream(providerRequest()));
    expect(error).toBeUndefined();
    expect(textOf(events)).toBe('after the wait');
    expect(fake.requests).toHaveLength(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
  });

  it('reads retry-after-ms and HTTP-date retry-after, and caps any wait at maxDelayMs', async () => {
    // An HTTP date has whole seconds: 2.5 s ahead still leaves ≥ 1.5 s after truncation.
    const inOneSecond = new Date(Date.now() + 2500).toUTCString();
    fake.reply(
      openAiErrorReply(429, 'slow down', { headers: { 'retry-after-ms': '250' } }),
      openAiErrorReply(503, 'busy', { headers: { 'retry-after': inOneSecond } }),
      openAiStream(openAiTextEvents(['third time lucky'])),
    );
    const started = Date.now();
    const { events } = await run(makeProvider({ retries: { attempts: 3, baseDelayMs: 5, maxDelayMs: 5000 } }).stream(providerRequest()));
    expect(textOf(events)).toBe('third time lucky');
    expect(Date.now() - started).toBeGreaterThanOrEqual(250 + 400);
    await provider.close();

    fake.reply(openAiErrorReply(429, 'come back in an hour', { headers: { 'retry-after': '3600' } }), openAiStream(openAiTextEvents(['capped'])));
    const capped = Date.now();
    const again = await run(makeProvider({ retries: { attempts: 2, baseDelayMs: 5, maxDelayMs: 100 } }).stream(providerRequest()));
    expect(textOf(again.events)).toBe('capped');
    expect(Date.now() - capped).toBeLessThan(2000);
  });

  it('gives up after the configured attempts on 5xx, saying so', async () => {
    for (let i = 0; i < 3; i++) fake.reply(openAiErrorReply(503, 'The engine is currently overloaded', { type: 'server_error' }));
    const { error } = await run(makeProvider().stream(providerRequest()));
    expect(fake.requests).toHaveLength(3);
    expect(error?.code).toBe('upstream_error');
    expect(error?.message).toBe('openai: 503 Service Unavailable: server_error: The engine is currently overloaded (after 3 attempts)');
  });

  it('does not retry a 401, says what to configure, and never repeats the key the upstream echoed', async () => {
    fake.reply(openAiErrorReply(401, `Incorrect API key provided: ${KEY}. You can find your API key at https://platform.openai.com/account/api-keys.`, { code: 'invalid_api_key' }));
    const { error } = await run(makeProvider().stream(providerRequest()));
    expect(fake.requests).toHaveLength(1);
    expect(error?.message).toMatch(/^openai: 401 Unauthorized: invalid_request_error: Incorrect API key provided: \[redacted\]\. .* — check OPENAI_API_KEY$/);
    expect(error?.message).not.toContain(KEY);
  });

  it('a 404 names the model and the base URL setting', async () => {
    fake.reply(openAiErrorReply(404, 'The model `nope` does not exist or you do not have access to it.', { code: 'model_not_found' }));
    const { error } = await run(makeProvider().stream(providerRequest({ model: 'nope' })));
    expect(error?.message).toContain(`— check the model "nope" and OPENAI_BASE_URL (${fake.url})`);
  });

  it('a stream that stalls ends with upstream_error after the idle timeout, keeping what came before', async () => {
    const events = openAiTextEvents(['before the stall']);
    fake.reply({ status: 200, headers: OPENAI_SSE_HEADERS, steps: [{ write: events[0] as string }, { write: events[1] as string }, { stall: true }] });
    const started = Date.now();
    const result = await run(makeProvider({ timeouts: { idleMs: 300 } }).stream(providerRequest()));
    expect(textOf(result.events)).toBe('before the stall');
    expect(result.error?.message).toBe('openai: the stream stalled: no data for 0.3 s');
    expect(Date.now() - started).toBeLessThan(5000);
    expect(fake.requests).toHaveLength(1);
  });

  it('a connection reset after some chunks is an error, never a retry (the answer was under way)', async () => {
    const events = openAiTextEvents(['one ', 'two ', 'three']);
    fake.reply({ status: 200, headers: OPENAI_SSE_HEADERS, steps: [{ write: events.slice(0, 3).join('') }, { delayMs: 20 }, { reset: true }] });
    fake.reply(openAiStream(openAiTextEvents(['must not be requested'])));
    const result = await run(makeProvider().stream(providerRequest()));
    expect(textOf(result.events)).toBe('one two ');
    expect(result.error?.code).toBe('upstream_error');
    expect(result.error?.message).toMatch(/^openai: the connection was lost mid-stream \(/);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(fake.requests).toHaveLength(1);
  });

  it('a reset before the first byte of the body is retried', async () => {
    fake.reply({ status: 200, headers: OPENAI_SSE_HEADERS, steps: [{ reset: true }] }, openAiStream(openAiTextEvents(['second try'])));
    const { events, error } = await run(makeProvider().stream(providerRequest()));
    expect(error).toBeUndefined();
    expect(textOf(events)).toBe('second try');
    expect(fake.requests).toHaveLength(2);
  });

  it('an unreachable server is reported with the address and what to configure', async () => {
    const port = await closedPort();
    provider = new OpenAiProvider({ apiKey: KEY, baseUrl: `http://127.0.0.1:${port}/v1`, retries: FAST_RETRIES });
    const { error } = await run(provider.stream(providerRequest()));
    expect(error?.message).toBe(`openai: cannot connect to http://127.0.0.1:${port}: ECONNREFUSED (after 3 attempts) — check OPENAI_BASE_URL`);
  });

  it('refuses to call api.openai.com without a key, naming the variable', async () => {
    provider = new OpenAiProvider({});
    const { error } = await run(provider.stream(providerRequest()));
    expect(error?.code).toBe('upstream_error');
    expect(error?.message).toMatch(/^openai: no API key configured: set OPENAI_API_KEY/);
  });

  it('aborting the signal mid-stream closes the upstream connection', async () => {
    const events = openAiTextEvents(['first ', 'second']);
    fake.reply({ status: 200, headers: OPENAI_SSE_HEADERS, steps: [{ write: events.slice(0, 2).join('') }, { stall: true }] });
    const controller = new AbortController();
    const seen: string[] = [];
    let thrown: unknown;
    try {
      for await (const event of makeProvider().stream(providerRequest({ signal: controller.signal }))) {
        if (event.type === 'text') {
          seen.push(event.delta);
          controller.abort(new Error('cancelled by the test'));
        }
      }
    } catch (err) {
      thrown = err;
    }
    expect(seen).toEqual(['first ']);
    expect((thrown as Error).message).toBe('cancelled by the test');
    expect(await fake.requests[0]?.ended).toBe('closed-early');
  });
});
