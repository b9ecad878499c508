/**
 * Tool approval with real `sentinel api` processes (issue 16): a run that waits for a person
 * survives a restart of its server (stopped, started again on the same SQLite file or
 * PostgreSQL database) and is approved afterwards; and with two instances sharing PostgreSQL
 * and Redis, a run paused on A is approved through B, which continues it, while a chat socket
 * on A follows the run to its end. The model is a loopback OpenAI-compatible fake that scripts
 * the calculator call and records what it is sent.
 */
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FakeProviderServer, type FakeReply } from '@sentinel/test-support/fakes/fake-server';
import { openAiStream, openAiTextEvents, openAiToolCallEvents } from '@sentinel/test-support/fakes/openai-fake';
import { createTestDatabase, type TestDatabase } from '@sentinel/test-support/postgres';
import { createInstances, type Instances } from './instances.js';
import { callJson as call, cleanEnv, runCli, useCliScratch, type CliProcess } from './spawn-cli.js';

const ADMIN_PASSWORD = 'run-approvals-admin-password';
const GATED_IMAGE = { name: 'approvals/gated', tag: 'v1', model: { provider: 'openai', name: 'gpt-gated' }, tools: [{ name: 'calculator', approval: 'required' }] };

type Frame = Record<string, any>;

function calculatorCall(callId: string): FakeReply {
  return openAiStream(openAiToolCallEvents([{ id: callId, name: 'calculator', argumentChunks: ['{"expression":', '"6*7"}'] }], { usage: { prompt_tokens: 9, completion_tokens: 4 } }), 1);
}

function answer(text: string): FakeReply {
  return openAiStream(openAiTextEvents([text], { usage: { prompt_tokens: 15, completion_tokens: 2 } }), 1);
}

/** The tool message of `callId` in the last request the fake got. */
function toolResultSent(fake: FakeProviderServer, callId: string): unknown {
  const messages = (fake.requests.at(-1)!.json as { messages: { role: string; content: unknown; tool_call_id?: string }[] }).messages;
  return messages.find((m) => m.role === 'tool' && m.tool_call_id === callId)?.content;
}

/** A chat socket that records every frame. */
async function chat(url: string, agentId: string, token: string): Promise<{ ws: WebSocket; frames: Frame[]; until: (probe: (frames: Frame[]) => boolean, what: string) => Promise<void> }> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/agents/${agentId}/chat`, { headers: { authorization: `Bearer ${token}` } });
  const frames: Frame[] = [];
  ws.on('message', (data) => frames.push(JSON.parse(String(data)) as Frame));
  ws.on('error', () => undefined);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const until = async (probe: (frames: Frame[]) => boolean, what: string) => {
    for (const deadline = Date.now() + 15_000; !probe(frames); ) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(frames.slice(-3))}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };
  return { ws, frames, until };
}

describe('a run waiting for approval across a restart of its server', () => {
  const scratch = useCliScratch('sentinel-cli-approvals-');
  let db: TestDatabase;
  let fake: FakeProviderServer;

  beforeAll(async () => {
    db = await createTestDatabase();
    fake = await FakeProviderServer.start();
  });

  afterAll(async () => {
    await fake?.close();
    await db?.drop();
  });

  function startApi(dataDir: string, extra: string[]): CliProcess {
    return runCli(
      ['api', '--port', '0', '--host', '127.0.0.1', '--data-dir', dataDir, '--no-log-requests', '--openai-base-url', `${fake.url}/v1`, ...extra],
      cleanEnv(scratch.dir, { SENTINEL_ADMIN_PASSWORD: ADMIN_PASSWORD, OPENAI_API_KEY: 'sk-approvals-restart' }),
    );
  }

  it.each(['sqlite', 'postgres'] as const)('is approved after the restart (%s): the calculator runs and the run completes', async (kind) => {
    const dataDir = join(scratch.dir, 'data');
    const storeArgs = kind === 'postgres' ? ['--store', db.url] : [];
    const first = startApi(dataDir, storeArgs);
    const url = await first.url();
    const token = (await call('POST', `${url}/v1/auth/login`, undefined, { username: 'admin', password: ADMIN_PASSWORD })).json.token as string;
    expect((await call('POST', `${url}/v1/images`, token, GATED_IMAGE)).status).toBe(201);
    const agent = await call('POST', `${url}/v1/agents`, token, { image: 'approvals/gated:v1', name: `restart-${kind}` });
    expect(agent.status, JSON.stringify(agent.json)).toBe(201);
    const agentId = agent.json.id as string;
    const callId = `call_restart_${kind}`;
    fake.reply(calculatorCall(callId), answer('It is 42.'));
    const started = await call('POST', `${url}/v1/agents/${agentId}/runs`, token, { content: 'what is 6*7?' });
    expect(started.status).toBe(202);
    const runPath = `/v1/agents/${agentId}/runs/${started.json.id as string}`;
    const waiting = (await call('GET', `${url}${runPath}?wait=20`, token)).json;
    expect(waiting).toMatchObject({ status: 'requires_action', required_action: { requests: [{ call_id: callId, tool: 'calculator' }] } });
    expect(await first.stop('SIGTERM')).toMatchObject({ code: 0 });

    const second = startApi(dataDir, storeArgs);
    const url2 = await second.url();
    const token2 = (await call('POST', `${url2}/v1/auth/login`, undefined, { username: 'admin', password: ADMIN_PASSWORD })).json.token as string;
    // The restart interrupted nothing: the run still waits, with the same request.
    expect((await call('GET', `${url2}${runPath}`, token2)).json).toMatchObject({ status: 'requires_action', required_action: waiting.required_action });
    const decided = await call('POST', `${url2}${runPath}/approvals`, token2, { request_id: waiting.required_action.requests[0].request_id, approve: true });
    expect(decided.status, JSON.stringify(decided.json)).toBe(200);
    const done = (await call('GET', `${url2}${runPath}?wait=20`, token2)).json;
    expect(done).toMatchObject({ status: 'completed', output: { content: 'It is 42.', reason: 'stop' }, usage: { total_tokens: 30 } });
    expect(toolResultSent(fake, callId)).toBe('{"expression":"6*7","result":42}');
    // A socket that resumes the run from 0 gets its whole journal, before and after the restart.
    const socket = await chat(url2, agentId, token2);
    socket.ws.send(JSON.stringify({ type: 'resume', run_id: started.json.id }));
    await socket.until((frames) => frames.some((f) => f.type === 'stream_end'), 'the end of the run');
    const frames = socket.frames.filter((f) => f.run_id === started.json.id);
    expect(frames.map((f) => f.seq)).toEqual(frames.map((_, i) => i + 1));
    expect(frames.map((f) => f.type)).toEqual(['event', 'stream_start', 'event', 'tool_approval_required', 'event', 'tool_result', 'stream_chunk', 'stream_end']);
    socket.ws.close();
    await second.stop();
  });
});

describe('approval through another instance (PostgreSQL + Redis)', () => {
  let instances: Instances;
  let fake: FakeProviderServer;

  beforeEach(async () => {
    fake = await FakeProviderServer.start();
    instances = await createInstances('sentinel-cli-approvals-multi-');
  });

  afterEach(async () => {
    await instances?.close();
    await fake?.close();
  });

  it('a run paused on A is approved through B, which continues it; a chat socket on A follows it to the end', async () => {
    const flags = { args: ['--openai-base-url', `${fake.url}/v1`], env: { OPENAI_API_KEY: 'sk-approvals-multi' } };
    const a = await instances.start('a', flags);
    const b = await instances.start('b', flags);
    const token = await instances.login(a);
    expect((await call('POST', `${a.url}/v1/images`, token, GATED_IMAGE)).status).toBe(201);
    const agent = await call('POST', `${a.url}/v1/agents`, token, { image: 'approvals/gated:v1', name: 'across' });
    expect(agent.status, JSON.stringify(agent.json)).toBe(201);
    const agentId = agent.json.id as string;
    fake.reply(calculatorCall('call_multi'), answer('Forty-two.'));
    const socket = await chat(a.url, agentId, token);
    socket.ws.send(JSON.stringify({ type: 'message', content: 'what is 6*7?', message_id: 'multi-1' }));
    await socket.until((frames) => frames.some((f) => f.type === 'tool_approval_required'), 'the approval request on A');
    const required = socket.frames.find((f) => f.type === 'tool_approval_required')!;
    const runPath = `/v1/agents/${agentId}/runs/${required.run_id as string}`;
    // B reads the waiting run from the shared Store.
    expect((await call('GET', `${b.url}${runPath}`, token)).json.status).toBe('requires_action');

    // Two decisions at once, one on each instance: one continues the run, the other is told it no longer waits.
    const [onB, onA] = await Promise.all([
      call('POST', `${b.url}${runPath}/approvals`, token, { request_id: required.request_id, approve: true }),
      call('POST', `${a.url}${runPath}/approvals`, token, { request_id: required.request_id, approve: true }),
    ]);
    expect([onB.status, onA.status].sort()).toContain(200);
    for (const reply of [onB, onA]) if (reply.status !== 200) expect(reply.json.code).toBe('conflict');

    await socket.until((frames) => frames.some((f) => f.type === 'stream_end'), 'the end of the run on A');
    const frames = socket.frames.filter((f) => f.run_id === required.run_id);
    expect(frames.map((f) => f.seq)).toEqual(frames.map((_, i) => i + 1));
    expect(frames.at(-1)).toMatchObject({ type: 'stream_end', content: 'Forty-two.', reason: 'stop' });
    expect(frames.filter((f) => f.type === 'tool_result')).toMatchObject([{ tool: 'calculator', status: 'success', result: { result: 42 } }]);
    // One continuation: the provider was asked twice in all (the paused round, then the answer).
    expect(fake.requests).toHaveLength(2);
    expect(toolResultSent(fake, 'call_multi')).toBe('{"expression":"6*7","result":42}');
    expect((await call('GET', `${a.url}${runPath}`, token)).json).toMatchObject({ status: 'completed', output: { content: 'Forty-two.' } });
    socket.ws.close();
  });
});
