/**
 * Tool approval over the chat socket, on every host and both stores: the model (a loopback
 * OpenAI fake) calls the image's gated calculator; the run stops in requires_action with a
 * `tool_approval_required` frame and holds no provider connection; a `tool_approval` frame
 * approves it (the calculator runs, the model gets its result and answers) or refuses it (the
 * fake receives the refusal as the tool result); an undecided request expires (run failed,
 * approval_timeout). Every frame the sockets get is checked against the AsyncAPI document.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAgentDefinition } from '@sentinel/api-core';
import { FakeProviderServer, type FakeReply } from '@sentinel/test-support/fakes/fake-server';
import { openAiStream, openAiTextEvents, openAiToolCallEvents } from '@sentinel/test-support/fakes/openai-fake';
import { HOSTS } from '@sentinel/test-support/hosts';
import { createTestDatabase, type TestDatabase } from '@sentinel/test-support/postgres';
import { FrameClient, type Frame } from './ws-client.js';
import { ADMIN, bearer, startWsEnv, type WsEnv } from './ws-env.js';

const STORES = ['sqlite', 'postgres'] as const;
const APPROVAL_TIMEOUT_MS = 2_500;

/** The model's first round: text, then a calculator call (gated) and a current_time call (not). */
function toolRound(callId: string) {
  return openAiStream(
    [
      ...openAiTextEvents(['Let me ', 'compute. '], { finishReason: 'tool_calls' }).slice(0, -2),
      ...openAiToolCallEvents(
        [
          { id: callId, name: 'calculator', argumentChunks: ['{"expression":', '"6*7"}'] },
          { id: `${callId}_t`, name: 'current_time', argumentChunks: ['{}'] },
        ],
        { usage: { prompt_tokens: 11, completion_tokens: 5 } },
      ).slice(1),
    ],
    1,
  );
}

describe.each(STORES.flatMap((store) => HOSTS.map((host) => [host, store] as const)))('tool approval over the chat socket on %s, %s store', (hostName, store) => {
  let env: WsEnv;
  let fake: FakeProviderServer;
  let database: TestDatabase | undefined;
  const clients: FrameClient[] = [];

  beforeAll(async () => {
    fake = await FakeProviderServer.start();
    if (store === 'postgres') database = await createTestDatabase();
    env = await startWsEnv(hostName, {
      providers: { env: {}, file: false, openai: { apiKey: 'sk-approval-test', baseUrl: `${fake.url}/v1` } },
      runs: { approvalTimeoutMs: APPROVAL_TIMEOUT_MS, approvalSweepIntervalMs: 100 },
      ...(database ? { storeUrl: database.url } : {}),
    });
    await env.api.images.build(
      parseAgentDefinition({ name: 'test/gated', tag: 'v1', model: { provider: 'openai', name: 'gpt-gated' }, tools: [{ name: 'calculator', approval: 'required' }, 'current_time'] }),
    );
  });

  afterAll(async () => {
    for (const client of clients) client.close();
    await env?.close();
    await fake?.close();
    await database?.drop();
  });

  async function connect(agentId: string): Promise<FrameClient> {
    const client = await FrameClient.connect(env.url(agentId, 'chat'), bearer(env.adminToken));
    clients.push(client);
    await client.waitFor((frame) => frame.event_type === 'connection_established', 'the welcome frame');
    return client;
  }

  it('approved: the calculator runs, the model gets 42 and answers; the run completes with every frame in order', async () => {
    const agent = await env.createAgent({ image: 'test/gated:v1' });
    const client = await connect(agent.id);
    const required = await pausedIn(agent.id, client, 'ok-1', 'call_ok1', openAiStream(openAiTextEvents(['It is ', '42.'], { usage: { prompt_tokens: 20, completion_tokens: 3 } }), 1));
    // While it waits, the agent takes no other message.
    client.send({ type: 'message', content: 'hello?', message_id: 'ok-2' });
    expect(await client.waitFor((frame) => frame.type === 'error' && frame.message_id === 'ok-2', 'the refusal')).toMatchObject({ code: 'agent_busy', error: expect.stringContaining(required.run_id as string) });

    client.send({ type: 'tool_approval', request_id: required.request_id, approve: true });
    const end = await client.terminal('ok-1');
    expect(end).toMatchObject({ type: 'stream_end', reason: 'stop', content: 'Let me compute. It is 42.' });
    const frames = client.frames.filter((frame) => frame.run_id === required.run_id);
    expect(frames.map((frame) => frame.seq)).toEqual(frames.map((_, i) => i + 1));
    const kinds = frames.map((frame) => (frame.type === 'event' ? `event:${frame.event_type as string}` : (frame.type as string)));
    expect(kinds.filter((k) => k !== 'stream_chunk')).toEqual([
      'event:thinking',
      'stream_start',
      'event:tool_call',
      'event:tool_call',
      'tool_approval_required',
      'event:tool_approval',
      'tool_result',
      'tool_result',
      'stream_end',
    ]);
    expect(frames.find((frame) => frame.event_type === 'tool_approval')).toMatchObject({ data: { request_id: required.request_id, approve: true } });
    expect(frames.filter((frame) => frame.type === 'tool_result').map((frame) => [frame.tool, frame.status])).toEqual([['calculator', 'success'], ['current_time', 'success']]);
    // The model got both results after its paused round.
    const second = fake.requests.at(-1)!.json as { messages: { role: string; content: unknown; tool_call_id?: string }[] };
    expect(second.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'tool']);
    expect(second.messages[2]).toMatchObject({ tool_call_id: 'call_ok1', content: '{"expression":"6*7","result":42}' });
    const run = await env.api.runs.get(ADMIN, agent.id, required.run_id as string);
    expect(run).toMatchObject({ status: 'completed', required_action: null, output: { content: 'Let me compute. It is 42.', reason: 'stop' }, usage: { input_tokens: 31, output_tokens: 8, total_tokens: 39 } });
    // A decision after the end is refused, naming the request.
    client.send({ type: 'tool_approval', request_id: required.request_id, approve: true });
    expect(await client.waitFor((frame) => frame.type === 'error' && frame.request_id === required.request_id, 'the late decision')).toMatchObject({ code: 'not_found' });
  });

  it('refused: the fake receives the refusal as the tool result and the model answers without it', async () => {
    const agent = await env.createAgent({ image: 'test/gated:v1' });
    const client = await connect(agent.id);
    const required = await pausedIn(agent.id, client, 'no-1', 'call_no1', openAiStream(openAiTextEvents(['I may not compute.'], { usage: { prompt_tokens: 20, completion_tokens: 4 } }), 1));
    client.send({ type: 'tool_approval', request_id: required.request_id, approve: false, reason: 'not today' });
    const end = await client.terminal('no-1');
    expect(end).toMatchObject({ type: 'stream_end', reason: 'stop', content: 'Let me compute. I may not compute.' });
    const second = fake.requests.at(-1)!.json as { messages: { role: string; content: unknown; tool_call_id?: string }[] };
    expect(second.messages[2]).toMatchObject({ role: 'tool', tool_call_id: 'call_no1', content: '{"error":"refused by a person: not today"}' });
    const results = client.frames.filter((frame) => frame.run_id === required.run_id && frame.type === 'tool_result');
    expect(results.map((frame) => [frame.tool, frame.status, frame.error])).toEqual([['calculator', 'error', 'refused by a person: not today'], ['current_time', 'success', undefined]]);
    // Bad frames are refused at the edge.
    client.send({ type: 'tool_approval', request_id: 'not-an-id', approve: true });
    expect(await client.waitFor((frame) => frame.type === 'error' && frame.code === 'invalid_request', 'the schema error')).toMatchObject({ error: expect.stringContaining('request_id') });
  });

  it('expired: an undecided request fails the run with approval_timeout, and the agent takes messages again', async () => {
    const agent = await env.createAgent({ image: 'test/gated:v1' });
    const client = await connect(agent.id);
    const required = await pausedIn(agent.id, client, 'late-1', 'call_late1');
    const end = await client.waitFor((frame) => frame.type === 'error' && frame.run_id === required.run_id, 'the expiry', APPROVAL_TIMEOUT_MS + 5_000);
    expect(end).toMatchObject({ code: 'approval_timeout', message_id: 'late-1' });
    const run = await env.api.runs.get(ADMIN, agent.id, required.run_id as string);
    expect(run).toMatchObject({ status: 'failed', required_action: null, error: { code: 'approval_timeout' } });
    expect(end.seq).toBe(run.last_seq);
    // The paused calls were answered, so a new message is a valid conversation for the provider.
    fake.reply(openAiStream(openAiTextEvents(['Fine.']), 1));
    client.send({ type: 'message', content: 'never mind', message_id: 'late-2' });
    expect(await client.terminal('late-2')).toMatchObject({ type: 'stream_end', content: 'Fine.' });
    const sent = fake.requests.at(-1)!.json as { messages: { role: string; content: unknown }[] };
    expect(sent.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'tool', 'user']);
    expect(sent.messages[2]?.content).toBe('{"error":"not run: nobody approved the call in time"}');
  });

  /**
   * Sends `messageId`; the model's first round calls the gated calculator (`callId`), `after` is
   * its answer once the run continues. Returns the approval request frame, once the run waits
   * and the provider request has ended (no connection is held while it waits).
   */
  async function pausedIn(agentId: string, client: FrameClient, messageId: string, callId: string, after?: FakeReply): Promise<Frame> {
    const before = fake.requests.length;
    fake.reply(toolRound(callId), ...(after === undefined ? [] : [after]));
    client.send({ type: 'message', content: 'what is 6*7?', message_id: messageId });
    const required = await client.waitFor((frame) => frame.type === 'tool_approval_required' && frame.message_id === messageId, 'the approval request');
    expect(required).toMatchObject({ tool: 'calculator', parameters: { expression: '6*7' }, request_id: expect.stringMatching(/^apr_[0-9a-f]{16}$/) });
    expect(Date.parse(required.expires_at as string) - Date.now()).toBeLessThanOrEqual(APPROVAL_TIMEOUT_MS);
    expect(fake.requests.length - before).toBe(1);
    expect(await fake.requests.at(-1)!.ended).toBe('complete');
    const run = await env.api.runs.get(ADMIN, agentId, required.run_id as string);
    expect(run).toMatchObject({ status: 'requires_action', required_action: { type: 'tool_approval', requests: [{ request_id: required.request_id, call_id: callId, tool: 'calculator' }] } });
    expect(run.required_action?.calls.map((c) => c.name)).toEqual(['calculator', 'current_time']);
    expect((await env.api.runs.runAwaitingApproval(ADMIN, agentId))?.id).toBe(run.id);
    return required;
  }
});
