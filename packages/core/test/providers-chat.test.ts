/**
 * The runtime's tool loop and cancellation with real providers over loopback fakes: what the
 * chat client receives, what each provider is sent on the next round, and that a cancel, an
 * agent deletion and a shutdown close the upstream connection.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createSentinelApi,
  parseAgentDefinition,
  type ChatSession,
  type Principal,
  type ProviderOptions,
  type SentinelApi,
  type ServerFrame,
} from '@sentinel/api-core';
import { anthropicEvents, anthropicStream, ANTHROPIC_SSE_HEADERS } from '@sentinel/test-support/fakes/anthropic-fake';
import { FakeProviderServer, type FakeReply } from '@sentinel/test-support/fakes/fake-server';
import { OLLAMA_NDJSON_HEADERS, ollamaLines, ollamaStream } from '@sentinel/test-support/fakes/ollama-fake';
import { openAiErrorReply, openAiStream, openAiTextEvents, openAiToolCallEvents, OPENAI_SSE_HEADERS } from '@sentinel/test-support/fakes/openai-fake';

const ADMIN: Principal = { username: 'admin', role: 'admin' };
const ORIGIN = { secure: false, host: 'localhost:8080' };
const OPENAI_KEY = 'sk-chat-test-openai-SECRET-1234567890';
const ANTHROPIC_KEY = 'sk-ant-chat-test-SECRET-0987654321';

type ProviderName = 'openai' | 'anthropic' | 'ollama';

interface Env {
  api: SentinelApi;
  fakes: Record<ProviderName, FakeProviderServer>;
  dir: string;
}

async function startEnv(extra: Partial<ProviderOptions> = {}): Promise<Env> {
  const dir = mkdtempSync(join(tmpdir(), 'sentinel-provider-chat-'));
  const fakes = { openai: await FakeProviderServer.start(), anthropic: await FakeProviderServer.start(), ollama: await FakeProviderServer.start() };
  const api = await createSentinelApi({
    dataDir: dir,
    tokenSecret: 'provider-chat-secret-0123456789abcdef',
    adminPassword: 'admin-password-for-tests',
    runtime: { echoChunkDelayMs: 0, maxToolRounds: 3 },
    providers: {
      env: {},
      file: false,
      openai: { apiKey: OPENAI_KEY, baseUrl: `${fakes.openai.url}/v1` },
      anthropic: { apiKey: ANTHROPIC_KEY, baseUrl: fakes.anthropic.url },
      ollama: { host: fakes.ollama.url },
      retries: { attempts: 2, baseDelayMs: 5 },
      ...extra,
    },
  });
  for (const provider of ['openai', 'anthropic', 'ollama'] as const) {
    await api.images.build(
      parseAgentDefinition({ name: `test/${provider}`, tag: 'v1', model: { provider, name: `${provider}-model` }, instructions: 'Be precise.', tools: ['calculator', 'current_time'] }),
    );
  }
  return { api, fakes, dir };
}

async function stopEnv(env: Env): Promise<void> {
  await env.api.close();
  for (const fake of Object.values(env.fakes)) await fake.close();
  rmSync(env.dir, { recursive: true, force: true });
}

let agentCounter = 0;

/** A recorded server frame, read field by field without narrowing on `type` first. */
type RecordedFrame = ServerFrame & Record<string, unknown>;

/** A chat session on a new agent of the provider's image, recording every frame. */
async function openChat(env: Env, provider: ProviderName): Promise<{ agentId: string; frames: RecordedFrame[]; session: ChatSession; closed: { reason?: string } }> {
  const agent = await env.api.agents.create(ADMIN, { image: `test/${provider}:v1`, name: `chat-${provider}-${++agentCounter}` }, ORIGIN);
  const frames: RecordedFrame[] = [];
  const closed: { reason?: string } = {};
  const prepared = await env.api.chat.prepare(ADMIN, agent.id);
  const session = prepared.open({ send: (out) => frames.push(out.frame as RecordedFrame), close: (reason) => (closed.reason = reason) });
  return { agentId: agent.id, frames, session, closed };
}

async function until<T>(probe: () => T | undefined, what: string, timeoutMs = 8000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const isTerminal = (f: RecordedFrame) => f.type === 'stream_end' || f.type === 'response' || f.type === 'error';
const terminalOf = (frames: RecordedFrame[], messageId: string) => until(() => frames.find((f) => f.message_id === messageId && isTerminal(f)), `terminal frame of ${messageId}`);

describe('the tool loop with real providers', () => {
  let env: Env;
  beforeAll(async () => {
    env = await startEnv();
  });
  afterAll(async () => {
    await stopEnv(env);
  });

  it('anthropic: tool_use → calculator → tool_result fed back → final answer; frames, usage and tool_used event', async () => {
    const fake = env.fakes.anthropic;
    fake.reply(
      anthropicStream(
        anthropicEvents(
          [
            { type: 'text', pieces: ['Computing.'] },
            { type: 'tool_use', id: 'toolu_calc', name: 'calculator', jsonChunks: ['{"expression"', ': "(2 + 3) ', '* 4"}'] },
          ],
          { inputTokens: 100, outputTokens: 20 },
        ),
      ),
      anthropicStream(anthropicEvents([{ type: 'text', pieces: [' The answer', ' is 20.'] }], { inputTokens: 150, outputTokens: 8 })),
    );
    const { agentId, frames, session } = await openChat(env, 'anthropic');
    session.receive(JSON.stringify({ type: 'message', content: 'What is (2+3)*4?', message_id: 'm1' }));
    const end = await terminalOf(frames, 'm1');
    expect(end).toMatchObject({ type: 'stream_end', content: 'Computing. The answer is 20.', reason: 'stop', usage: { input_tokens: 250, output_tokens: 28, total_tokens: 278 } });
    expect(frames.find((f) => f.event_type === 'tool_call')).toMatchObject({ data: { call_id: 'toolu_calc', tool: 'calculator', parameters: { expression: '(2 + 3) * 4' } } });
    expect(frames.find((f) => f.type === 'tool_result')).toMatchObject({ call_id: 'toolu_calc', tool: 'calculator', status: 'success', result: { expression: '(2 + 3) * 4', result: 20 } });
    const types = frames.filter((f) => f.message_id === 'm1').map((f) => (f.type === 'event' ? `event:${f.event_type}` : f.type));
    expect(types).toEqual(['event:thinking', 'stream_start', 'stream_chunk', 'event:tool_call', 'tool_result', 'stream_chunk', 'stream_chunk', 'stream_end']);

    const second = fake.requests[1]?.json;
    expect(second.system).toBe('Be precise.');
    expect(second.messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'What is (2+3)*4?' }] },
      { role: 'assistant', content: [{ type: 'text', text: 'Computing.' }, { type: 'tool_use', id: 'toolu_calc', name: 'calculator', input: { expression: '(2 + 3) * 4' } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_calc', content: '{"expression":"(2 + 3) * 4","result":20}' }] },
    ]);
    expect(fake.requests[1]?.json.tools.map((t: { name: string }) => t.name)).toEqual(['calculator', 'current_time']);

    const record = await env.api.store.getAgent(agentId);
    expect([record?.usage_requests, record?.usage_tokens]).toEqual([1, 278]);
    const events = await env.api.store.listEvents(agentId, 0);
    expect(events.find((e) => e.event_type === 'tool_used')?.data).toMatchObject({ tool: 'calculator', status: 'success', call_id: 'toolu_calc', message_id: 'm1' });
  });

  it('ollama: the whole history goes back with the tool message on the next round', async () => {
    const fake = env.fakes.ollama;
    fake.reply(ollamaStream(ollamaLines([], [{ name: 'calculator', arguments: { expression: '6*7' } }])), ollamaStream(ollamaLines(['It is ', '42.'])));
    const { frames, session } = await openChat(env, 'ollama');
    session.receive(JSON.stringify({ type: 'message', content: 'six times seven?', message_id: 'o1' }));
    expect(await terminalOf(frames, 'o1')).toMatchObject({ type: 'stream_end', content: 'It is 42.', reason: 'stop' });
    const messages = fake.requests[1]?.json.messages;
    expect(messages).toEqual([
      { role: 'system', content: 'Be precise.' },
      { role: 'user', content: 'six times seven?' },
      { role: 'assistant', content: '', tool_calls: [{ function: { name: 'calculator', arguments: { expression: '6*7' } } }] },
      { role: 'tool', content: '{"expression":"6*7","result":42}', tool_name: 'calculator' },
    ]);
  });

  it('openai: invalid JSON arguments, schema failures and unlisted tools are answered with errors the model can read', async () => {
    const fake = env.fakes.openai;
    fake.reply(
      openAiStream(
        openAiToolCallEvents([
          { id: 'call_json', name: 'calculator', argumentChunks: ['{"expression": 6*', '7'] },
          { id: 'call_schema', name: 'calculator', argumentChunks: ['{"expr": "1"}'] },
          { id: 'call_unlisted', name: 'http_fetch', argumentChunks: ['{"url": "http://example.com"}'] },
        ]),
      ),
      openAiStream(openAiTextEvents(['Sorry, let me fix that.'])),
    );
    const { frames, session } = await openChat(env, 'openai');
    session.receive(JSON.stringify({ type: 'message', content: 'compute', message_id: 'x1' }));
    expect(await terminalOf(frames, 'x1')).toMatchObject({ type: 'stream_end', content: 'Sorry, let me fix that.' });
    const results = frames.filter((f) => f.type === 'tool_result');
    expect(results.map((r) => [r.call_id, r.status])).toEqual([
      ['call_json', 'error'],
      ['call_schema', 'error'],
      ['call_unlisted', 'error'],
    ]);
    expect(results[0]?.error).toMatch(/arguments of the calculator call are not valid JSON/);
    expect(results[1]?.error).toMatch(/invalid parameters of tool calculator/);
    expect(results[2]?.error).toBe('tool http_fetch is not allowed for this agent');
    const toolMessages = fake.requests[1]?.json.messages.filter((m: { role: string }) => m.role === 'tool');
    expect(toolMessages.map((m: { tool_call_id: string }) => m.tool_call_id)).toEqual(['call_json', 'call_schema', 'call_unlisted']);
    expect(JSON.parse(toolMessages[2].content)).toEqual({ error: 'tool http_fetch is not allowed for this agent' });
  });

  it('openai: tool arguments nested 10 000 deep are answered with an error the model can read, and the turn ends normally', async () => {
    const fake = env.fakes.openai;
    const deep = '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000);
    fake.reply(openAiStream(openAiToolCallEvents([{ id: 'call_deep', name: 'calculator', argumentChunks: [deep] }])), openAiStream(openAiTextEvents(['Flattened.'])));
    const { frames, session } = await openChat(env, 'openai');
    session.receive(JSON.stringify({ type: 'message', content: 'deep', message_id: 'x-deep' }));
    expect(await terminalOf(frames, 'x-deep')).toMatchObject({ type: 'stream_end', content: 'Flattened.' });
    const result = frames.find((f) => f.type === 'tool_result');
    expect(result).toMatchObject({ call_id: 'call_deep', status: 'error', error: 'the arguments of the calculator call are invalid: arguments.a: nested deeper than 32 levels' });
  });

  it('an upstream failure is an upstream_error frame that says what to check; the agent answers the next message', async () => {
    const fake = env.fakes.openai;
    fake.reply(openAiErrorReply(401, `Incorrect API key provided: ${OPENAI_KEY}`), openAiStream(openAiTextEvents(['Working again.'])));
    const { frames, session } = await openChat(env, 'openai');
    session.receive(JSON.stringify({ type: 'message', content: 'hello', message_id: 'e1' }));
    const error = await terminalOf(frames, 'e1');
    expect(error).toMatchObject({ type: 'error', code: 'upstream_error' });
    expect(error.error).toMatch(/^openai: 401 Unauthorized: .* — check OPENAI_API_KEY$/);
    expect(JSON.stringify(frames)).not.toContain(OPENAI_KEY);
    session.receive(JSON.stringify({ type: 'message', content: 'hello again', message_id: 'e2' }));
    expect(await terminalOf(frames, 'e2')).toMatchObject({ type: 'stream_end', content: 'Working again.' });
    // The failed turn's user message got no answer: it is left out of what the model sees, so
    // the request does not hold two user messages in a row (see turn-correctness.test.ts).
    expect(fake.requests.at(-1)?.json.messages.map((m: { content: string }) => m.content)).toEqual(['Be precise.', 'hello again']);
  });
});

describe('missing configuration', () => {
  it('a provider without its key answers an upstream_error frame naming the variable, and the session stays usable', async () => {
    const env = await startEnv({ anthropic: { baseUrl: 'https://api.anthropic.com' } });
    try {
      const { frames, session, closed } = await openChat(env, 'anthropic');
      for (const id of ['k1', 'k2']) {
        session.receive(JSON.stringify({ type: 'message', content: 'hi', message_id: id }));
        const error = await terminalOf(frames, id);
        expect(error).toMatchObject({ type: 'error', code: 'upstream_error' });
        expect(error.error).toMatch(/^anthropic: no API key configured: set ANTHROPIC_API_KEY/);
      }
      expect(closed.reason).toBeUndefined();
    } finally {
      await stopEnv(env);
    }
  });
});

/** A reply that streams a little text, then stalls until the client goes away. */
function stallingReply(provider: ProviderName): FakeReply {
  if (provider === 'openai') return { status: 200, headers: OPENAI_SSE_HEADERS, steps: [{ write: openAiTextEvents(['Thinking about it']).slice(0, 2).join('') }, { stall: true }] };
  if (provider === 'anthropic') {
    return { status: 200, headers: ANTHROPIC_SSE_HEADERS, steps: [{ write: anthropicEvents([{ type: 'text', pieces: ['Thinking about it'] }]).slice(0, 4).join('') }, { stall: true }] };
  }
  return { status: 200, headers: OLLAMA_NDJSON_HEADERS, steps: [{ write: ollamaLines(['Thinking about it'])[0] as string }, { stall: true }] };
}

describe('cancellation reaches the provider', () => {
  let env: Env;
  beforeAll(async () => {
    env = await startEnv();
  });
  afterAll(async () => {
    await stopEnv(env);
  });

  for (const provider of ['openai', 'anthropic', 'ollama'] as const) {
    it(`${provider}: a client cancel closes the upstream connection`, async () => {
      const fake = env.fakes[provider];
      fake.reply(stallingReply(provider));
      const before = fake.requests.length;
      const { frames, session } = await openChat(env, provider);
      session.receive(JSON.stringify({ type: 'message', content: 'think hard', message_id: 'c1' }));
      await until(() => frames.find((f) => f.type === 'stream_chunk'), 'the first chunk');
      session.receive(JSON.stringify({ type: 'cancel', message_id: 'c1' }));
      expect(await terminalOf(frames, 'c1')).toMatchObject({ type: 'stream_end', reason: 'cancelled', content: 'Thinking about it' });
      expect(await fake.requests[before]?.ended).toBe('closed-early');
    });

    it(`${provider}: deleting the agent closes the upstream connection`, async () => {
      const fake = env.fakes[provider];
      fake.reply(stallingReply(provider));
      const before = fake.requests.length;
      const { agentId, frames, session } = await openChat(env, provider);
      session.receive(JSON.stringify({ type: 'message', content: 'think hard', message_id: 'd1' }));
      await until(() => frames.find((f) => f.type === 'stream_chunk'), 'the first chunk');
      await env.api.agents.delete(ADMIN, agentId);
      expect(await terminalOf(frames, 'd1')).toMatchObject({ type: 'stream_end', reason: 'deleted' });
      expect(await fake.requests[before]?.ended).toBe('closed-early');
    });
  }

  it('shutdown closes the upstream connections of every provider', async () => {
    const own = await startEnv();
    try {
      const chats = [];
      for (const provider of ['openai', 'anthropic', 'ollama'] as const) {
        own.fakes[provider].reply(stallingReply(provider));
        const chat = await openChat(own, provider);
        chat.session.receive(JSON.stringify({ type: 'message', content: 'think hard', message_id: 's1' }));
        chats.push(chat);
      }
      for (const chat of chats) await until(() => chat.frames.find((f) => f.type === 'stream_chunk'), 'the first chunk');
      await own.api.shutdown();
      for (const chat of chats) expect(await terminalOf(chat.frames, 's1')).toMatchObject({ type: 'stream_end', reason: 'shutdown' });
      for (const provider of ['openai', 'anthropic', 'ollama'] as const) expect(await own.fakes[provider].requests[0]?.ended).toBe('closed-early');
    } finally {
      await stopEnv(own);
    }
  });
});
