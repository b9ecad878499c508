import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSentinelApi, parseAgentDefinition, type MessageRecord, type ModelProvider, type Principal, type ProviderEvent, type ProviderFinishReason, type ProviderRequest, type SentinelApi, type SentinelError, type TurnEnd } from '@sentinel/api-core';
import { selectHistory, toChatMessage } from '../src/runtime/history.js';
import type { ToolCallOutcome, TurnListener } from '../src/runtime/runtime.js';

function message(seq: number, role: MessageRecord['role'], content: string, extra: Partial<MessageRecord> = {}): MessageRecord {
  return { agent_id: 'a', seq, role, content, created_at: '2026-01-01T00:00:00.000Z', ...extra };
}

describe('selectHistory', () => {
  const call = { id: 'c1', name: 'calculator', arguments: { expression: '1+1' } };
  const history: MessageRecord[] = [
    message(1, 'user', 'u1 ' + 'x'.repeat(100)),
    message(2, 'assistant', 'a1'),
    message(3, 'user', 'u2'),
    message(4, 'assistant', '', { tool_calls: [call] }),
    message(5, 'tool', '{"result":2}', { tool_call_id: 'c1', tool_name: 'calculator' }),
    message(6, 'assistant', 'a2'),
    message(7, 'user', 'u3'),
  ];

  it('keeps everything within budget', () => {
    expect(selectHistory(history, { maxMessages: 100, maxChars: 10_000 })).toEqual(history);
  });

  it('drops the oldest whole messages first, by count and by characters', () => {
    expect(selectHistory(history, { maxMessages: 5, maxChars: 10_000 }).map((m) => m.seq)).toEqual([3, 4, 5, 6, 7]);
    expect(selectHistory(history, { maxMessages: 100, maxChars: 100 }).map((m) => m.seq)).toEqual([3, 4, 5, 6, 7]);
  });

  it('never splits a tool call from its result, and starts at a user message', () => {
    // 4 messages would cut between the call (4) and its result (5): the pair goes together,
    // and the selection then begins at the next user message.
    expect(selectHistory(history, { maxMessages: 4, maxChars: 10_000 }).map((m) => m.seq)).toEqual([7]);
    // A window that begins with an orphaned tool result drops it.
    expect(selectHistory(history.slice(4), { maxMessages: 100, maxChars: 10_000 }).map((m) => m.seq)).toEqual([7]);
  });

  it('always keeps the newest message, even over budget', () => {
    const big = [message(1, 'user', 'old'), message(2, 'user', 'y'.repeat(500))];
    expect(selectHistory(big, { maxMessages: 1, maxChars: 10 }).map((m) => m.seq)).toEqual([2]);
  });

  it('converts stored messages to the provider shape', () => {
    expect(toChatMessage(history[3]!)).toEqual({ role: 'assistant', content: '', tool_calls: [call] });
    expect(toChatMessage(history[4]!)).toEqual({ role: 'tool', content: '{"result":2}', tool_call_id: 'c1', name: 'calculator' });
  });
});

/** Records each request; answers "answer <n>" and finishes with the reason asked for in the last user message. */
class ScriptedProvider implements ModelProvider {
  readonly name = 'scripted';
  readonly requests: ProviderRequest[] = [];
  async *stream(req: ProviderRequest): AsyncIterable<ProviderEvent> {
    this.requests.push(req);
    const last = req.messages.at(-1)?.content ?? '';
    yield { type: 'text', delta: `answer ${this.requests.length}` };
    yield { type: 'usage', input_tokens: 3, output_tokens: 4 };
    const reason = (['length', 'content_filter'] as ProviderFinishReason[]).find((r) => last === r) ?? 'stop';
    yield { type: 'finish', reason };
  }
}

interface Recorded {
  started: boolean;
  chunks: string[];
  toolResults: ToolCallOutcome[];
  end?: TurnEnd;
  error?: SentinelError;
  terminals: number;
}

function recordingListener(overrides: Partial<TurnListener> = {}): { listener: TurnListener; rec: Recorded } {
  const rec: Recorded = { started: false, chunks: [], toolResults: [], terminals: 0 };
  return {
    rec,
    listener: {
      onStart: () => (rec.started = true),
      onChunk: (delta) => rec.chunks.push(delta),
      onToolCall: () => {},
      onToolResult: (outcome) => rec.toolResults.push(outcome),
      onEnd: (end) => ((rec.end = end), rec.terminals++),
      onError: (err) => ((rec.error = err), rec.terminals++),
      ...overrides,
    },
  };
}

async function until(fn: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('AgentRuntime with its knobs from createSentinelApi', () => {
  const alice: Principal = { username: 'alice', role: 'user' };
  const origin = { secure: false, host: 'localhost' };
  let dir: string;
  let api: SentinelApi;
  const scripted = new ScriptedProvider();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-runtime-'));
    api = await createSentinelApi({
      dataDir: dir,
      adminPassword: 'admin-password-1',
      runtime: { queueLimit: 2, historyMaxMessages: 3, historyMaxChars: 1000, maxToolRounds: 1, echoChunkDelayMs: 0 },
    });
    await api.users.create({ username: 'alice', password: 'alice-password' });
    api.providers.register(scripted);
    await api.images.build(parseAgentDefinition({ name: 'test/scripted', model: 'scripted/m', tools: [] }));
  });

  afterAll(async () => {
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs turns in FIFO order with queueLimit from the options, counting usage per turn', async () => {
    const id = (await api.agents.create(alice, { image: 'test/scripted' }, origin)).id;
    const base = scripted.requests.length;
    const recs = [0, 1, 2, 3].map(() => recordingListener());
    const results = recs.map((r, i) => api.runtime.submit(id, { messageId: `m${i}`, content: `q${i}` }, r.listener));
    expect(results.slice(0, 3).every((r) => r.accepted)).toBe(true);
    expect(results[3]).toMatchObject({ accepted: false, error: { code: 'agent_busy', message: 'agent is busy: 2 messages are already waiting' } });
    await until(() => recs.slice(0, 3).every((r) => r.rec.terminals === 1), 'three turns');
    expect(recs.slice(0, 3).map((r) => r.rec.end?.content)).toEqual([`answer ${base + 1}`, `answer ${base + 2}`, `answer ${base + 3}`]);
    expect(scripted.requests.slice(base).map((r) => r.messages.at(-1)?.content)).toEqual(['q0', 'q1', 'q2']);
    expect(recs[3]?.rec.started).toBe(false);
    const agent = await api.agents.get(alice, id, origin);
    expect(agent.api_usage).toEqual({ requests: 3, tokens: 21 });
  });

  it('sends at most historyMaxMessages, oldest dropped first', async () => {
    const id = (await api.agents.create(alice, { image: 'test/scripted' }, origin)).id;
    for (let i = 0; i < 3; i++) {
      const { listener, rec } = recordingListener();
      api.runtime.submit(id, { messageId: `h${i}`, content: `question ${i}` }, listener);
      await until(() => rec.terminals === 1, `turn ${i}`);
    }
    const last = scripted.requests.at(-1);
    // Five stored (q0 a0 q1 a1 q2); the budget of 3 keeps the newest three.
    expect(last?.messages.map((m) => m.content)).toEqual(['question 1', expect.stringMatching(/^answer/), 'question 2']);
    expect(last?.messages[0]?.role).toBe('user');
  });

  it('maps provider finish reasons: length stays length, content_filter ends as error', async () => {
    const id = (await api.agents.create(alice, { image: 'test/scripted' }, origin)).id;
    for (const [content, reason] of [['length', 'length'], ['content_filter', 'error']] as const) {
      const { listener, rec } = recordingListener();
      api.runtime.submit(id, { messageId: content, content }, listener);
      await until(() => rec.terminals === 1, content);
      expect(rec.end?.reason).toBe(reason);
    }
  });

  it('survives a listener that throws, and still delivers exactly one terminal', async () => {
    const id = (await api.agents.create(alice, { image: 'test/scripted' }, origin)).id;
    const { listener, rec } = recordingListener({ onChunk: () => { throw new Error('transport bug'); } });
    api.runtime.submit(id, { messageId: 'x', content: 'hello' }, listener);
    await until(() => rec.terminals === 1, 'terminal');
    expect(rec.end?.reason).toBe('stop');
  });

  it('cancel is scoped to the owner that submitted', async () => {
    const id = (await api.agents.create(alice, { image: 'test/scripted' }, origin)).id;
    const ownerA = {};
    const ownerB = {};
    const first = recordingListener();
    const second = recordingListener();
    api.runtime.submit(id, { messageId: 'same', content: 'a', owner: ownerA }, first.listener);
    api.runtime.submit(id, { messageId: 'same2', content: 'b', owner: ownerA }, second.listener);
    expect(api.runtime.cancel(id, 'same2', ownerB)).toBe(false);
    expect(api.runtime.cancel(id, 'same2', ownerA)).toBe(true);
    expect(second.rec.end).toEqual({ content: '', reason: 'cancelled', usage: { input_tokens: 0, output_tokens: 0, total_tokens: 0 } });
    expect(api.runtime.cancel(id, 'unknown')).toBe(false);
    await until(() => first.rec.terminals === 1, 'first');
    expect(first.rec.end?.reason).toBe('stop');
  });

  it('refuses messages and stores nothing for an agent being deleted', async () => {
    const id = (await api.agents.create(alice, { image: 'test/scripted' }, origin)).id;
    await api.runtime.remove(id);
    const refused = api.runtime.submit(id, { messageId: 'late', content: 'x' }, recordingListener().listener);
    expect(refused).toMatchObject({ accepted: false, error: { code: 'not_found' } });
    await expect(api.runtime.runTool(id, { tool: 'calculator', parameters: { expression: '1' } }, new AbortController().signal)).rejects.toMatchObject({ code: 'not_found' });
    api.runtime.forget(id);
    const { listener, rec } = recordingListener();
    expect(api.runtime.submit(id, { messageId: 'again', content: 'x' }, listener).accepted).toBe(true);
    await until(() => rec.terminals === 1, 'answer');
    expect(rec.end?.reason).toBe('stop');
  });

  it('validates its knobs', async () => {
    await expect(createSentinelApi({ dataDir: dir, runtime: { queueLimit: -1 } })).rejects.toThrow('runtime option queueLimit must be a non-negative integer, got -1');
  });

  it('stop refuses new turns with conflict until start; a stopped agent found at turn start is refused too', async () => {
    const id = (await api.agents.create(alice, { image: 'test/scripted' }, origin)).id;
    await api.agents.stop(alice, id, origin);
    const refused = api.runtime.submit(id, { messageId: 'r', content: 'x' }, recordingListener().listener);
    expect(refused).toMatchObject({ accepted: false, error: { code: 'conflict', message: 'agent is stopped' } });
    // A runtime that does not know (another instance stopped it, or a restart): the stored status decides.
    api.runtime.start(id);
    const { listener, rec } = recordingListener();
    expect(api.runtime.submit(id, { messageId: 'r2', content: 'x' }, listener).accepted).toBe(true);
    await until(() => rec.terminals === 1, 'refusal');
    expect(rec.error).toMatchObject({ code: 'conflict', message: 'agent is stopped' });
    expect(rec.started).toBe(false);
    await api.agents.start(alice, id, origin);
    const again = recordingListener();
    api.runtime.submit(id, { messageId: 'r3', content: 'x' }, again.listener);
    await until(() => again.rec.terminals === 1, 'answer');
    expect(again.rec.end?.reason).toBe('stop');
  });
});
