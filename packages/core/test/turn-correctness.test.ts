/**
 * What a turn sends to the model and to the client, with real providers over loopback fakes:
 * Anthropic extended thinking (streamed as `thinking` events, sent back within the tool-use
 * turn, never stored), a failed turn that must not leave two user messages in a row for the
 * next request, and the agent environment that reaches tools but never the model.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSentinelApi, parseAgentDefinition, type ChatSession, type Principal, type SentinelApi, type ServerFrame } from '@sentinel/api-core';
import { anthropicEvents, anthropicStream } from '@sentinel/test-support/fakes/anthropic-fake';
import { FakeProviderServer } from '@sentinel/test-support/fakes/fake-server';
import { ollamaLines, ollamaStream } from '@sentinel/test-support/fakes/ollama-fake';
import { openAiStream, openAiTextEvents, openAiToolCallEvents } from '@sentinel/test-support/fakes/openai-fake';

const ADMIN: Principal = { username: 'admin', role: 'admin' };
const ORIGIN = { secure: false, host: 'localhost:8080' };
const SECRET = 'probe-secret-value-6f1d2c9a';

let api: SentinelApi;
let dir: string;
const fakes: Record<'openai' | 'anthropic' | 'ollama', FakeProviderServer> = {} as never;
/** What the env-probe tool saw in its context, per run. */
const probeRuns: { agentId: string; env: Readonly<Record<string, string>> | undefined }[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sentinel-turns-'));
  fakes.openai = await FakeProviderServer.start();
  fakes.anthropic = await FakeProviderServer.start();
  fakes.ollama = await FakeProviderServer.start();
  api = await createSentinelApi({
    dataDir: dir,
    tokenSecret: 'turn-correctness-secret-0123456789',
    adminPassword: 'admin-password-for-tests',
    runtime: { echoChunkDelayMs: 0 },
    providers: {
      env: {},
      file: false,
      openai: { apiKey: 'sk-openai-test', baseUrl: `${fakes.openai.url}/v1` },
      anthropic: { apiKey: 'sk-ant-test', baseUrl: fakes.anthropic.url },
      ollama: { host: fakes.ollama.url },
      retries: { attempts: 1, baseDelayMs: 5 },
    },
  });
  api.tools.register({
    name: 'env_probe',
    description: 'Says whether the agent has a probe token.',
    parameters: { type: 'object', properties: {}, additionalProperties: false },
    run: async (_params, ctx) => {
      probeRuns.push({ agentId: ctx.agentId, env: ctx.env });
      return { has_token: typeof ctx.env?.PROBE_TOKEN === 'string', length: ctx.env?.PROBE_TOKEN?.length ?? 0 };
    },
  });
  await api.images.build(
    parseAgentDefinition({
      name: 'test/anthropic-thinking',
      tag: 'v1',
      model: { provider: 'anthropic', name: 'claude-test', parameters: { thinking: { type: 'enabled', budget_tokens: 1024 } } },
      tools: ['calculator'],
    }),
  );
  await api.images.build(parseAgentDefinition({ name: 'test/ollama-plain', tag: 'v1', model: { provider: 'ollama', name: 'llama-test' } }));
  await api.images.build(parseAgentDefinition({ name: 'test/openai-probe', tag: 'v1', model: { provider: 'openai', name: 'gpt-test' }, instructions: 'Be precise.', tools: ['env_probe'] }));
});

afterAll(async () => {
  await api.close();
  for (const fake of Object.values(fakes)) await fake.close();
  rmSync(dir, { recursive: true, force: true });
});

let agentCounter = 0;

/** A recorded server frame, read field by field without narrowing on `type` first. */
type RecordedFrame = ServerFrame & Record<string, unknown>;

async function openChat(image: string, environment?: Record<string, string>): Promise<{ agentId: string; frames: RecordedFrame[]; session: ChatSession }> {
  const agent = await api.agents.create(ADMIN, { image, name: `turns-${++agentCounter}`, ...(environment ? { environment } : {}) }, ORIGIN);
  const frames: RecordedFrame[] = [];
  const session = (await api.chat.prepare(ADMIN, agent.id)).open({ send: (out) => frames.push(out.frame as RecordedFrame), close: () => undefined });
  return { agentId: agent.id, frames, session };
}

async function terminalOf(frames: RecordedFrame[], messageId: string): Promise<RecordedFrame> {
  const deadline = Date.now() + 8000;
  for (;;) {
    const found = frames.find((f) => f.message_id === messageId && (f.type === 'stream_end' || f.type === 'response' || f.type === 'error'));
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for the terminal frame of ${messageId}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** The roles of a request's messages, system prompt left out. */
function rolesOf(messages: { role: string }[]): string[] {
  return messages.map((m) => m.role).filter((role) => role !== 'system');
}

function expectAlternating(roles: string[]): void {
  for (let i = 1; i < roles.length; i++) expect(`${roles[i - 1]} → ${roles[i]}`).not.toBe(`${roles[i]} → ${roles[i]}`);
}

describe('anthropic extended thinking through a turn', () => {
  it('streams thinking as event frames with content, sends the signed block back in the tool-use round, and never stores it', async () => {
    const fake = fakes.anthropic;
    fake.reply(
      anthropicStream(
        anthropicEvents([
          { type: 'thinking', pieces: ['I should use', ' the calculator.'], signature: 'sig-round-1' },
          { type: 'tool_use', id: 'toolu_1', name: 'calculator', jsonChunks: ['{"expression": "6*7"}'] },
        ]),
      ),
      anthropicStream(anthropicEvents([{ type: 'thinking', pieces: ['42 it is.'], signature: 'sig-round-2' }, { type: 'text', pieces: ['It is ', '42.'] }])),
      anthropicStream(anthropicEvents([{ type: 'text', pieces: ['84.'] }])),
    );
    const { agentId, frames, session } = await openChat('test/anthropic-thinking:v1');
    session.receive(JSON.stringify({ type: 'message', content: 'What is 6*7?', message_id: 't1' }));
    expect(await terminalOf(frames, 't1')).toMatchObject({ type: 'stream_end', content: 'It is 42.', reason: 'stop' });

    const thinking = frames.filter((f) => f.event_type === 'thinking');
    // The start frame first (no content), then one frame per thinking delta, in order.
    expect(thinking[0]).toEqual({ type: 'event', event_type: 'thinking', timestamp: expect.any(String), run_id: expect.stringMatching(/^run_/), seq: 1, message_id: 't1' });
    expect(thinking.slice(1).map((f) => [f.message_id, f.content])).toEqual([
      ['t1', 'I should use'],
      ['t1', ' the calculator.'],
      ['t1', '42 it is.'],
    ]);
    // Thinking is no answer text.
    expect(frames.filter((f) => f.type === 'stream_chunk').map((f) => f.content).join('')).toBe('It is 42.');

    // The tool-use round's assistant message carries the thinking block first, with its signature.
    const second = fake.requests[1]?.json;
    expect(second.thinking).toEqual({ type: 'enabled', budget_tokens: 1024 });
    expect(second.messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'What is 6*7?' }] },
      {
        role: 'assistant',
        content: [
          { type: 'thinking', thinking: 'I should use the calculator.', signature: 'sig-round-1' },
          { type: 'tool_use', id: 'toolu_1', name: 'calculator', input: { expression: '6*7' } },
        ],
      },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: '{"expression":"6*7","result":42}' }] },
    ]);

    // The next turn's history holds no thinking, and neither does the Store.
    session.receive(JSON.stringify({ type: 'message', content: 'Doubled?', message_id: 't2' }));
    expect(await terminalOf(frames, 't2')).toMatchObject({ type: 'stream_end', content: '84.' });
    const third = JSON.stringify(fake.requests[2]?.json.messages);
    expect(third).not.toContain('thinking');
    expect(third).not.toContain('sig-round');
    const stored = JSON.stringify(await api.store.listMessages(agentId));
    expect(stored).not.toContain('calculator.');
    expect(stored).not.toContain('42 it is');
    expect(stored).not.toContain('sig-round');
  });
});

describe('a failed turn', () => {
  it('leaves no two user messages in a row in the next request (ollama)', async () => {
    const fake = fakes.ollama;
    fake.reply(
      ollamaStream(ollamaLines(['Fine, thanks.'])),
      // A mid-stream error line, as Ollama sends it when the model fails.
      ollamaStream([`${JSON.stringify({ error: 'model runner has unexpectedly stopped' })}\n`]),
      ollamaStream(ollamaLines(['Here again.'])),
    );
    const { agentId, frames, session } = await openChat('test/ollama-plain:v1');
    session.receive(JSON.stringify({ type: 'message', content: 'How are you?', message_id: 'f1' }));
    expect(await terminalOf(frames, 'f1')).toMatchObject({ type: 'stream_end' });
    session.receive(JSON.stringify({ type: 'message', content: 'Tell me a story.', message_id: 'f2' }));
    expect(await terminalOf(frames, 'f2')).toMatchObject({ type: 'error', code: 'upstream_error' });
    session.receive(JSON.stringify({ type: 'message', content: 'Are you there?', message_id: 'f3' }));
    expect(await terminalOf(frames, 'f3')).toMatchObject({ type: 'stream_end', content: 'Here again.' });

    const sent = fake.requests[2]?.json.messages as { role: string; content: string }[];
    expect(sent.map((m) => [m.role, m.content])).toEqual([
      ['user', 'How are you?'],
      ['assistant', 'Fine, thanks.'],
      ['user', 'Are you there?'],
    ]);
    expectAlternating(rolesOf(sent));
    // The failed message is still in the stored conversation, and its failure in the events.
    expect((await api.store.listMessages(agentId)).map((m) => m.content)).toContain('Tell me a story.');
    expect((await api.store.listEvents(agentId, 0)).some((e) => e.event_type === 'error' && e.data.message_id === 'f2')).toBe(true);
  });

  it('a first turn that fails leaves the second request with one user message (openai)', async () => {
    const fake = fakes.openai;
    fake.reply({ status: 500, headers: { 'content-type': 'application/json' }, steps: [{ write: '{"error":{"message":"boom","type":"server_error"}}' }] }, openAiStream(openAiTextEvents(['Hi.'])));
    const before = fake.requests.length;
    const { frames, session } = await openChat('test/openai-probe:v1');
    session.receive(JSON.stringify({ type: 'message', content: 'first', message_id: 'o1' }));
    expect(await terminalOf(frames, 'o1')).toMatchObject({ type: 'error', code: 'upstream_error' });
    session.receive(JSON.stringify({ type: 'message', content: 'second', message_id: 'o2' }));
    expect(await terminalOf(frames, 'o2')).toMatchObject({ type: 'stream_end', content: 'Hi.' });
    const sent = fake.requests.at(-1)?.json.messages as { role: string; content: string }[];
    expect(fake.requests.length - before).toBe(2);
    expect(sent.map((m) => [m.role, m.content])).toEqual([
      ['system', 'Be precise.'],
      ['user', 'second'],
    ]);
  });
});

describe('agent environment', () => {
  it('reaches the tool run context of the agent, never the model, and the API shows only its names', async () => {
    const fake = fakes.openai;
    fake.reply(
      openAiStream(openAiToolCallEvents([{ id: 'call_probe', name: 'env_probe', argumentChunks: ['{}'] }])),
      openAiStream(openAiTextEvents(['The token is set.'])),
    );
    const before = fake.requests.length;
    const runsBefore = probeRuns.length;
    const { agentId, frames, session } = await openChat('test/openai-probe:v1', { PROBE_TOKEN: SECRET, OTHER: 'x' });
    session.receive(JSON.stringify({ type: 'message', content: 'Do you have a token?', message_id: 'p1' }));
    expect(await terminalOf(frames, 'p1')).toMatchObject({ type: 'stream_end', content: 'The token is set.' });

    expect(probeRuns.slice(runsBefore)).toEqual([{ agentId, env: { PROBE_TOKEN: SECRET, OTHER: 'x' } }]);
    expect(Object.isFrozen(probeRuns.at(-1)?.env)).toBe(true);
    expect(frames.find((f) => f.type === 'tool_result')).toMatchObject({ status: 'success', result: { has_token: true, length: SECRET.length } });

    // Neither request to the model carries the value (nor its name: the environment is not offered to the model).
    const requests = fake.requests.slice(before);
    expect(requests).toHaveLength(2);
    for (const request of requests) {
      expect(request.body).not.toContain(SECRET);
      expect(request.body).not.toContain('PROBE_TOKEN');
    }
    expect(JSON.stringify(frames)).not.toContain(SECRET);
    const resource = await api.agents.get(ADMIN, agentId, ORIGIN);
    expect(resource.environment).toEqual(['OTHER', 'PROBE_TOKEN']);
    expect(JSON.stringify(resource)).not.toContain(SECRET);

    // A direct tool_request gets the same environment.
    session.receive(JSON.stringify({ type: 'tool_request', tool: 'env_probe', parameters: {}, request_id: 'r1' }));
    const deadline = Date.now() + 5000;
    while (!frames.some((f) => f.type === 'tool_result' && f.request_id === 'r1')) {
      if (Date.now() > deadline) throw new Error('no tool_result for r1');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(probeRuns.at(-1)).toEqual({ agentId, env: { PROBE_TOKEN: SECRET, OTHER: 'x' } });
  });
});
