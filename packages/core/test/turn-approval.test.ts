/**
 * The runtime half of tool approval: a round calling a gated tool pauses the turn
 * (`requires_action`, nothing run, the assistant message with its calls stored), new messages
 * are refused while it waits, and a continuation turn runs the approved calls, answers refused
 * ones with the person's reason and carries on with the model. A real SQLite store, the real
 * calculator and current_time tools; the provider is scripted in-process (the HTTP fakes are
 * used by the run-layer specs).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSentinelApi, parseAgentDefinition, type ModelProvider, type Principal, type ProviderEvent, type ProviderRequest, type SentinelApi, type SentinelError, type TurnEnd } from '@sentinel/api-core';
import type { ApprovalRequired, ToolCallOutcome, TurnListener, TurnRequest } from '../src/runtime/runtime.js';

/**
 * A user message "calc <expr>" gets one round calling calculator (gated) and current_time
 * (not gated); after tool results it answers "done: <each tool message's content, joined by |>".
 */
class ToolScriptProvider implements ModelProvider {
  readonly name = 'toolscript';
  readonly requests: ProviderRequest[] = [];
  async *stream(req: ProviderRequest): AsyncIterable<ProviderEvent> {
    this.requests.push(req);
    const last = req.messages.at(-1);
    if (last?.role === 'user' && last.content.startsWith('calc ')) {
      yield { type: 'text', delta: 'let me compute' };
      const n = this.requests.length;
      yield { type: 'tool_call', call: { id: `call_calc_${n}`, name: 'calculator', arguments: { expression: last.content.slice(5) } } };
      yield { type: 'tool_call', call: { id: `call_time_${n}`, name: 'current_time', arguments: {} } };
      yield { type: 'usage', input_tokens: 5, output_tokens: 2 };
      yield { type: 'finish', reason: 'tool_calls' };
      return;
    }
    const results: string[] = [];
    for (let i = req.messages.length - 1; i >= 0 && req.messages[i]?.role === 'tool'; i--) results.unshift(req.messages[i]?.content ?? '');
    yield { type: 'text', delta: results.length > 0 ? `done: ${results.join('|')}` : `echo: ${last?.content ?? ''}` };
    yield { type: 'usage', input_tokens: 7, output_tokens: 3 };
    yield { type: 'finish', reason: 'stop' };
  }
}

interface Recorded {
  started: number;
  toolCalls: string[];
  toolResults: ToolCallOutcome[];
  approvals: ApprovalRequired[];
  end?: TurnEnd;
  error?: SentinelError;
  terminals: number;
}

function recordingListener(withApprovals = true): { listener: TurnListener; rec: Recorded } {
  const rec: Recorded = { started: 0, toolCalls: [], toolResults: [], approvals: [], terminals: 0 };
  const listener: TurnListener = {
    onStart: () => rec.started++,
    onChunk: () => {},
    onToolCall: (call) => rec.toolCalls.push(call.name),
    onToolResult: (outcome) => rec.toolResults.push(outcome),
    onEnd: (end) => ((rec.end = end), rec.terminals++),
    onError: (err) => ((rec.error = err), rec.terminals++),
  };
  if (withApprovals) listener.onApprovalRequired = (required) => rec.approvals.push(required);
  return { rec, listener };
}

async function until(fn: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('tool approval in the turn runner', () => {
  const alice: Principal = { username: 'alice', role: 'user' };
  const origin = { secure: false, host: 'localhost' };
  const provider = new ToolScriptProvider();
  let dir: string;
  let api: SentinelApi;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-approval-'));
    api = await createSentinelApi({ dataDir: dir, adminPassword: 'admin-password-1', runtime: { echoChunkDelayMs: 0 } });
    await api.users.create({ username: 'alice', password: 'alice-password' });
    api.providers.register(provider);
    await api.images.build(
      parseAgentDefinition({ name: 'test/gated', model: 'toolscript/m', tools: [{ name: 'calculator', approval: 'required' }, 'current_time'] }),
    );
  });

  afterAll(async () => {
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function turn(agentId: string, request: TurnRequest, withApprovals = true): Promise<Recorded> {
    const { listener, rec } = recordingListener(withApprovals);
    const submitted = api.runtime.submit(agentId, request, listener);
    expect(submitted.accepted).toBe(true);
    await until(() => rec.terminals === 1, `turn ${request.messageId}`);
    return rec;
  }

  async function paused(agentId: string, messageId: string): Promise<{ rec: Recorded; required: ApprovalRequired }> {
    const rec = await turn(agentId, { messageId, content: 'calc 6*7' });
    expect(rec.end?.reason).toBe('requires_action');
    expect(rec.approvals).toHaveLength(1);
    return { rec, required: rec.approvals[0] as ApprovalRequired };
  }

  it('pauses before running any call, stores the calls, refuses new messages, and continues once approved', async () => {
    const id = (await api.agents.create(alice, { image: 'test/gated' }, origin)).id;
    const { rec, required } = await paused(id, 'm1');
    expect(rec.end?.content).toBe('let me compute');
    expect(rec.toolCalls).toEqual(['calculator', 'current_time']);
    // Neither call ran, the ungated one included: the round runs as a whole after the decision.
    expect(rec.toolResults).toEqual([]);
    expect(required.calls.map((c) => c.name)).toEqual(['calculator', 'current_time']);
    expect(required.requests).toEqual([{ request_id: expect.stringMatching(/^apr_[0-9a-f]{16}$/), call_id: required.calls[0]?.id, tool: 'calculator', parameters: { expression: '6*7' } }]);
    const history = await api.store.listMessages(id);
    expect(history.map((m) => m.role)).toEqual(['user', 'assistant']);
    expect(history[1]).toMatchObject({ content: 'let me compute', tool_calls: required.calls });

    const busy = await turn(id, { messageId: 'm2', content: 'hello?' });
    expect(busy.error).toMatchObject({ code: 'agent_busy' });
    expect(busy.error?.message).toContain('approval');
    expect(busy.started).toBe(0);
    expect((await api.store.listMessages(id)).length).toBe(2);

    const before = provider.requests.length;
    const request_id = required.requests[0]?.request_id as string;
    expect(request_id).toBeDefined();
    const done = await turn(id, { messageId: 'm1', content: '', continuation: { calls: required.calls, decisions: { [required.calls[0]!.id]: { approve: true } } } });
    expect(done.end?.reason).toBe('stop');
    expect(done.started).toBe(0);
    expect(done.toolCalls).toEqual([]);
    expect(done.toolResults.map((o) => [o.tool, o.status])).toEqual([['calculator', 'success'], ['current_time', 'success']]);
    expect(done.toolResults[0]?.result).toEqual({ expression: '6*7', result: 42 });
    expect(done.end?.content).toMatch(/^done: \{"expression":"6\*7","result":42\}\|\{"iso":/);
    // One more provider call, sent the paused round and both results.
    expect(provider.requests.length).toBe(before + 1);
    const sent = provider.requests.at(-1)?.messages ?? [];
    expect(sent.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'tool']);
    expect(sent[1]?.tool_calls?.map((c) => c.id)).toEqual(required.calls.map((c) => c.id));
    const stored = await api.store.listMessages(id);
    expect(stored.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'tool', 'assistant']);
    // The agent takes messages again.
    expect((await turn(id, { messageId: 'm3', content: 'thanks' })).end?.content).toBe('echo: thanks');
  });

  it('feeds a refusal back to the model as the tool result, with the reason', async () => {
    const id = (await api.agents.create(alice, { image: 'test/gated' }, origin)).id;
    const { required } = await paused(id, 'r1');
    const calc = required.calls[0]!;
    const done = await turn(id, { messageId: 'r1', content: '', continuation: { calls: required.calls, decisions: { [calc.id]: { approve: false, reason: 'not today' } } } });
    expect(done.end?.reason).toBe('stop');
    expect(done.toolResults[0]).toMatchObject({ call_id: calc.id, tool: 'calculator', status: 'error', error: 'refused by a person: not today' });
    const sent = provider.requests.at(-1)?.messages ?? [];
    expect(sent[2]).toEqual({ role: 'tool', content: '{"error":"refused by a person: not today"}', tool_call_id: calc.id, name: 'calculator' });
    // The ungated call of the round still ran.
    expect(done.toolResults[1]).toMatchObject({ tool: 'current_time', status: 'success' });
    expect(done.end?.content.startsWith('done: {"error":"refused by a person: not today"}|')).toBe(true);
  });

  it('refuses a continuation of calls that no longer wait, and answerPendingCalls frees a paused agent', async () => {
    const id = (await api.agents.create(alice, { image: 'test/gated' }, origin)).id;
    const { required } = await paused(id, 'x1');
    const wrong = await turn(id, { messageId: 'x1', content: '', continuation: { calls: [{ id: 'other', name: 'calculator', arguments: {} }], decisions: {} } });
    expect(wrong.error).toMatchObject({ code: 'conflict' });
    expect(await api.runtime.answerPendingCalls(id, [{ id: 'other', name: 'calculator', arguments: {} }], 'cancelled')).toBe(false);
    expect(await api.runtime.answerPendingCalls(id, required.calls, 'the run was cancelled')).toBe(true);
    const stored = await api.store.listMessages(id);
    expect(stored.slice(-2).map((m) => m.content)).toEqual(['{"error":"not run: the run was cancelled"}', '{"error":"not run: the run was cancelled"}']);
    // A late continuation finds nothing to continue; the agent answers new messages.
    const late = await turn(id, { messageId: 'x1', content: '', continuation: { calls: required.calls, decisions: {} } });
    expect(late.error).toMatchObject({ code: 'conflict' });
    const next = await turn(id, { messageId: 'x2', content: 'still there?' });
    expect(next.end?.content).toBe('echo: still there?');
    expect(provider.requests.at(-1)?.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'tool', 'user']);
  });

  it('answers a gated call with an error, and goes on, for a listener that cannot take approvals', async () => {
    const id = (await api.agents.create(alice, { image: 'test/gated' }, origin)).id;
    const rec = await turn(id, { messageId: 'n1', content: 'calc 1+1' }, false);
    expect(rec.end?.reason).toBe('stop');
    expect(rec.toolResults.map((o) => [o.tool, o.status])).toEqual([['calculator', 'error'], ['current_time', 'success']]);
    expect(rec.toolResults[0]?.error).toBe("tool calculator needs a person's approval, which this client cannot give");
  });

  it('counts a paused turn and its continuation as one quota turn', async () => {
    await api.users.create({ username: 'carol', password: 'carol-password' });
    await api.users.update({ username: 'admin', role: 'admin' }, 'carol', { quotas: { turns_per_day: 1, tokens_per_day: null, concurrent_agents: null } });
    const carol: Principal = { username: 'carol', role: 'user' };
    const id = (await api.agents.create(carol, { image: 'test/gated' }, origin)).id;
    const { required } = await paused(id, 'q1');
    const done = await turn(id, { messageId: 'q1', content: '', continuation: { calls: required.calls, decisions: { [required.calls[0]!.id]: { approve: true } } } });
    expect(done.end?.reason).toBe('stop');
    // The day's one turn was the paused one: a new message is over quota.
    const over = await turn(id, { messageId: 'q2', content: 'again' });
    expect(over.error).toMatchObject({ code: 'quota_exceeded' });
  });

  it('answers the paused calls when the continuation cannot run them (agent stopped)', async () => {
    const id = (await api.agents.create(alice, { image: 'test/gated' }, origin)).id;
    const { required } = await paused(id, 's1');
    await api.agents.stop(alice, id, origin);
    api.runtime.start(id);
    const refused = await turn(id, { messageId: 's1', content: '', continuation: { calls: required.calls, decisions: { [required.calls[0]!.id]: { approve: true } } } });
    expect(refused.error).toMatchObject({ code: 'conflict', message: 'agent is stopped' });
    const stored = await api.store.listMessages(id);
    expect(stored.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'tool']);
    expect(stored[2]?.content).toBe('{"error":"not run: agent is stopped"}');
  });
});
