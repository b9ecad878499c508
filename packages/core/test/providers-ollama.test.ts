import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OllamaProvider, type OllamaProviderOptions } from '@sentinel/api-core';
import { normalizeOllamaHost } from '../src/providers/ollama.js';
import { closedPort, FakeProviderServer } from '@sentinel/test-support/fakes/fake-server';
import { OLLAMA_NDJSON_HEADERS, ollamaErrorReply, ollamaLines, ollamaStream } from '@sentinel/test-support/fakes/ollama-fake';
import { FAST_RETRIES, providerRequest, run, textOf } from '@sentinel/test-support/fakes/provider-harness';

let fake: FakeProviderServer;
let provider: OllamaProvider;

function makeProvider(options: OllamaProviderOptions = {}): OllamaProvider {
  provider = new OllamaProvider({ host: fake.url, retries: FAST_RETRIES, ...options });
  return provider;
}

beforeEach(async () => {
  fake = await FakeProviderServer.start();
});

afterEach(async () => {
  await provider?.close();
  await fake.close();
});

describe('ollama provider', () => {
  it('posts the history, tools and options to /api/chat and streams NDJSON text with usage', async () => {
    fake.reply(ollamaStream(ollamaLines(['Eighty', '-four', '.'], [], { promptEvalCount: 61, evalCount: 5 })));
    const result = await run(makeProvider().stream(providerRequest({ parameters: { temperature: 0.1, max_tokens: 64, num_ctx: 8192, format: 'json' } })));
    expect(result.error).toBeUndefined();
    expect(result.events).toEqual([
      { type: 'text', delta: 'Eighty' },
      { type: 'text', delta: '-four' },
      { type: 'text', delta: '.' },
      { type: 'usage', input_tokens: 61, output_tokens: 5 },
      { type: 'finish', reason: 'stop' },
    ]);
    const [sent] = fake.requests;
    expect(sent?.path).toBe('/api/chat');
    expect(sent?.json).toEqual({
      model: 'test-model',
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'What is 6*7?' },
        { role: 'assistant', content: '', tool_calls: [{ function: { name: 'calculator', arguments: { expression: '6*7' } } }] },
        { role: 'tool', content: '{"expression":"6*7","result":42}', tool_name: 'calculator' },
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
      stream: true,
      options: { temperature: 0.1, num_predict: 64, num_ctx: 8192 },
    });
  });

  it('reports tool calls (arguments as objects, ids generated) and finishes with tool_calls', async () => {
    fake.reply(ollamaStream(ollamaLines([], [{ name: 'calculator', arguments: { expression: '84*2' } }, { name: 'current_time', arguments: {} }])));
    const { events, error } = await run(makeProvider().stream(providerRequest()));
    expect(error).toBeUndefined();
    const calls = events.filter((e) => e.type === 'tool_call');
    expect(calls).toMatchObject([
      { call: { name: 'calculator', arguments: { expression: '84*2' } } },
      { call: { name: 'current_time', arguments: {} } },
    ]);
    for (const call of calls) expect((call as { call: { id: string } }).call.id).toMatch(/^call_[0-9a-f]{16}$/);
    expect(events.at(-1)).toEqual({ type: 'finish', reason: 'tool_calls' });
  });

  it('maps done_reason length', async () => {
    fake.reply(ollamaStream(ollamaLines(['cut'], [], { doneReason: 'length' })));
    const { events } = await run(makeProvider().stream(providerRequest()));
    expect(events.at(-1)).toEqual({ type: 'finish', reason: 'length' });
  });

  it('an error line mid-stream is upstream_error', async () => {
    fake.reply(ollamaStream([...ollamaLines(['par', 'tial']).slice(0, 1), '{"error":"an error was encountered while running the model: unexpected EOF"}\n']));
    const result = await run(makeProvider().stream(providerRequest()));
    expect(textOf(result.events)).toBe('par');
    expect(result.error?.message).toBe('ollama: the model failed mid-stream: an error was encountered while running the model: unexpected EOF');
  });

  it('a model that is not pulled gives a 404 that says how to get it', async () => {
    fake.reply(ollamaErrorReply(404, 'model "llama9" not found, try pulling it first'));
    const { error } = await run(makeProvider().stream(providerRequest({ model: 'llama9' })));
    expect(fake.requests).toHaveLength(1);
    expect(error?.message).toBe(`ollama: 404 Not Found: model "llama9" not found, try pulling it first — check the model "llama9" (ollama pull llama9) and OLLAMA_HOST (${fake.url})`);
  });

  it('a stream without the done line is an error', async () => {
    fake.reply(ollamaStream(ollamaLines(['never', 'done']).slice(0, 2)));
    const { error } = await run(makeProvider().stream(providerRequest()));
    expect(error?.message).toBe('ollama: the stream ended before the answer was complete');
  });

  it('a stream that stalls hits the idle timeout', async () => {
    fake.reply({ status: 200, headers: OLLAMA_NDJSON_HEADERS, steps: [{ write: ollamaLines(['slow'])[0] as string }, { stall: true }] });
    const result = await run(makeProvider({ timeouts: { idleMs: 300 } }).stream(providerRequest()));
    expect(textOf(result.events)).toBe('slow');
    expect(result.error?.message).toBe('ollama: the stream stalled: no data for 0.3 s');
  });

  it('an Ollama that is not running is reported with OLLAMA_HOST', async () => {
    const port = await closedPort();
    provider = new OllamaProvider({ host: `127.0.0.1:${port}`, retries: { attempts: 2, baseDelayMs: 1 } });
    const { error } = await run(provider.stream(providerRequest()));
    expect(error?.message).toBe(`ollama: cannot connect to http://127.0.0.1:${port}: ECONNREFUSED (after 2 attempts) — check OLLAMA_HOST`);
  });

  it('aborting mid-stream closes the upstream connection', async () => {
    fake.reply({ status: 200, headers: OLLAMA_NDJSON_HEADERS, steps: [{ write: ollamaLines(['first'])[0] as string }, { stall: true }] });
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

  it('reads OLLAMA_HOST the way Ollama does', () => {
    expect(normalizeOllamaHost('127.0.0.1')).toBe('http://127.0.0.1:11434');
    expect(normalizeOllamaHost('gpu-box:8080')).toBe('http://gpu-box:8080');
    expect(normalizeOllamaHost('http://gpu-box')).toBe('http://gpu-box');
    expect(normalizeOllamaHost('https://ollama.example.com/')).toBe('https://ollama.example.com');
    expect(() => normalizeOllamaHost('ftp://x')).toThrow(/OLLAMA_HOST must be an http/);
  });
});
