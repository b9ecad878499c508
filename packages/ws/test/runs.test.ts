/**
 * Runs over the chat socket, on every host and both stores: a socket killed mid-answer and a
 * new socket that `resume`s gets the rest (every frame once, seq 1..n without a gap); the
 * same `message_id` over a reconnect is one run and one provider call (counted on the
 * loopback OpenAI fake); closing a socket cancels nothing unless the message said
 * `cancel_on_disconnect`; `cancel` by `run_id`; `resume` of an unknown or another user's run
 * is `not_found`. Real sockets, a real SQLite file or a fresh PostgreSQL database.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAgentDefinition } from '@sentinel/api-core';
import { FakeProviderServer } from '@sentinel/test-support/fakes/fake-server';
import { openAiStream, openAiTextEvents } from '@sentinel/test-support/fakes/openai-fake';
import { HOSTS } from '@sentinel/test-support/hosts';
import { createTestDatabase, type TestDatabase } from '@sentinel/test-support/postgres';
import { FrameClient, type Frame } from './ws-client.js';
import { ADMIN, bearer, eventually, longMessage, startWsEnv, type WsEnv } from './ws-env.js';

const STORES = ['sqlite', 'postgres'] as const;
const SLOW_PIECES = Array.from({ length: 30 }, (_, i) => `piece${i} `);

/** The frames of one run, as one client saw them. */
function runFrames(frames: Frame[], runId: string): Frame[] {
  return frames.filter((frame) => frame.run_id === runId);
}

/** Checks that `frames` are the whole run: seq 1..n, each once, in order, one terminal frame last. */
function expectWholeRun(frames: Frame[]): void {
  expect(frames.map((frame) => frame.seq)).toEqual(Array.from({ length: frames.length }, (_, i) => i + 1));
  expect(frames.filter((frame) => frame.type === 'stream_end' || frame.type === 'error')).toHaveLength(1);
  const end = frames.at(-1)!;
  expect(end.type).toBe('stream_end');
  expect(frames.filter((frame) => frame.type === 'stream_chunk').map((frame) => frame.content).join('')).toBe(end.content);
  expect(frames.slice(0, 2).map((frame) => frame.type)).toEqual(['event', 'stream_start']);
}

describe.each(STORES.flatMap((store) => HOSTS.map((host) => [host, store] as const)))('runs over the chat socket on %s, %s store', (hostName, store) => {
  let env: WsEnv;
  let fake: FakeProviderServer;
  let database: TestDatabase | undefined;
  const clients: FrameClient[] = [];

  beforeAll(async () => {
    fake = await FakeProviderServer.start();
    if (store === 'postgres') database = await createTestDatabase();
    env = await startWsEnv(hostName, {
      // Slow enough that a socket can be killed in the middle of an answer.
      runtime: { echoChunkDelayMs: 3 },
      providers: { env: {}, file: false, openai: { apiKey: 'sk-runs-test', baseUrl: `${fake.url}/v1` } },
      ...(database ? { storeUrl: database.url } : {}),
    });
    await env.api.images.build(parseAgentDefinition({ name: 'test/gpt-runs', tag: 'v1', model: { provider: 'openai', name: 'gpt-runs' } }));
  });

  afterAll(async () => {
    for (const client of clients) client.close();
    await env?.close();
    await fake?.close();
    await database?.drop();
  });

  async function connect(agentId: string, token = env.adminToken): Promise<FrameClient> {
    const client = await FrameClient.connect(env.url(agentId, 'chat'), bearer(token));
    clients.push(client);
    await client.waitFor((frame) => frame.event_type === 'connection_established', 'the welcome frame');
    return client;
  }

  it('a socket killed mid-answer: a new socket resumes after the last seq it saw and gets the rest, every frame once, in order', async () => {
    const agent = await env.createAgent();
    const first = await connect(agent.id);
    first.send({ type: 'message', content: longMessage(300), message_id: 'resume-1' });
    await first.waitForCount((frame) => frame.type === 'stream_chunk', 5, 'five chunks');
    first.close();
    const seen = runFrames(first.frames, first.frames.find((frame) => frame.message_id === 'resume-1')!.run_id as string);
    const runId = seen[0]!.run_id as string;
    expect(runId).toMatch(/^run_[0-9a-f]{24}$/);
    expect(seen.every((frame) => frame.type !== 'stream_end')).toBe(true);
    const since = seen.at(-1)!.seq as number;

    const second = await connect(agent.id);
    second.send({ type: 'resume', run_id: runId, since });
    await second.terminal('resume-1');
    const rest = runFrames(second.frames, runId);
    expect(rest[0]!.seq).toBe(since + 1);
    expectWholeRun([...seen, ...rest]);
    expect(rest.at(-1)).toMatchObject({ type: 'stream_end', reason: 'stop', content: `Echo: ${longMessage(300)}` });
    const run = await env.api.runs.get(ADMIN, agent.id, runId);
    expect(run).toMatchObject({ status: 'completed', message_id: 'resume-1', output: { reason: 'stop', content: `Echo: ${longMessage(300)}` }, last_seq: rest.at(-1)!.seq });

    // A resume from 0 after the end replays the whole run from the Store.
    const third = await connect(agent.id);
    third.send({ type: 'resume', run_id: runId });
    await third.terminal('resume-1');
    expect(runFrames(third.frames, runId)).toEqual([...seen, ...rest]);
  });

  it('the same message_id over a reconnect is one run and one provider call: the second socket gets the run from seq 1, then live', async () => {
    const agent = await env.createAgent({ image: 'test/gpt-runs:v1' });
    const calls = fake.requests.length;
    fake.reply(openAiStream(openAiTextEvents(SLOW_PIECES), 15));
    const first = await connect(agent.id);
    first.send({ type: 'message', content: 'tell me a long story', message_id: 'idem-1' });
    await first.waitForCount((frame) => frame.type === 'stream_chunk', 2, 'two chunks');
    first.close();

    const second = await connect(agent.id);
    second.send({ type: 'message', content: 'tell me a long story', message_id: 'idem-1' });
    const end = await second.terminal('idem-1');
    expect(end).toMatchObject({ type: 'stream_end', reason: 'stop', content: SLOW_PIECES.join('') });
    expectWholeRun(runFrames(second.frames, end.run_id as string));
    expect(fake.requests.length - calls).toBe(1);
    const { runs } = await env.api.runs.list(ADMIN, agent.id, {});
    expect(runs.map((run) => [run.message_id, run.status])).toEqual([['idem-1', 'completed']]);

    // The same id with another content is refused, and starts nothing.
    second.send({ type: 'message', content: 'something else', message_id: 'idem-1' });
    const conflict = await second.waitFor((frame) => frame.type === 'error' && frame.message_id === 'idem-1', 'the conflict');
    expect(conflict).toMatchObject({ code: 'idempotency_conflict' });
    expect(fake.requests.length - calls).toBe(1);
  });

  it('closing the socket cancels nothing by default; with cancel_on_disconnect it cancels the run', async () => {
    const agent = await env.createAgent();
    const keep = await connect(agent.id);
    keep.send({ type: 'message', content: longMessage(200), message_id: 'keep-1' });
    const kept = await keep.waitFor((frame) => frame.type === 'stream_chunk', 'a chunk');
    keep.close();
    const done = await env.api.runs.wait(ADMIN, agent.id, kept.run_id as string, 10_000);
    expect(done).toMatchObject({ status: 'completed', output: { reason: 'stop', content: `Echo: ${longMessage(200)}` } });

    const drop = await connect(agent.id);
    drop.send({ type: 'message', content: longMessage(200), message_id: 'drop-1', cancel_on_disconnect: true });
    const dropped = await drop.waitFor((frame) => frame.type === 'stream_chunk', 'a chunk');
    drop.close();
    const cancelled = await env.api.runs.wait(ADMIN, agent.id, dropped.run_id as string, 10_000);
    expect(cancelled).toMatchObject({ status: 'cancelled', output: { reason: 'cancelled' } });
    expect(cancelled.output!.content.length).toBeLessThan(`Echo: ${longMessage(200)}`.length);
  });

  it('cancel by run_id from another socket ends the run; its own socket sees stream_end cancelled', async () => {
    const agent = await env.createAgent();
    const owner = await connect(agent.id);
    owner.send({ type: 'message', content: longMessage(300), message_id: 'cx-1' });
    const chunk = await owner.waitFor((frame) => frame.type === 'stream_chunk', 'a chunk');
    const other = await connect(agent.id);
    other.send({ type: 'cancel', run_id: chunk.run_id });
    const end = await owner.terminal('cx-1');
    expect(end).toMatchObject({ type: 'stream_end', reason: 'cancelled', run_id: chunk.run_id });
    await other.waitFor((frame) => frame.event_type === 'cancel_requested' && frame.run_id === chunk.run_id, 'cancel_requested');
    expectWholeRun(runFrames(owner.frames, chunk.run_id as string));
    expect((await env.api.runs.get(ADMIN, agent.id, chunk.run_id as string)).status).toBe('cancelled');
  });

  it('resume of an unknown run, or of another user\'s, is an error frame not_found; the socket stays usable', async () => {
    const agent = await env.createAgent();
    const client = await connect(agent.id);
    client.send({ type: 'message', content: 'hello', message_id: 'own-1' });
    const end = await client.terminal('own-1');
    client.send({ type: 'resume', run_id: 'run_000000000000000000000000' });
    const unknown = await client.waitFor((frame) => frame.type === 'error' && frame.run_id === 'run_000000000000000000000000', 'not_found');
    expect(unknown).toMatchObject({ code: 'not_found' });

    const bobs = await env.createAgent({ owner: { username: 'bob', role: 'user' } });
    const bob = await connect(bobs.id, env.bobToken);
    bob.send({ type: 'resume', run_id: end.run_id });
    expect(await bob.waitFor((frame) => frame.type === 'error', 'not_found')).toMatchObject({ code: 'not_found', run_id: end.run_id });
    bob.send({ type: 'message', content: 'still usable', message_id: 'bob-1' });
    expect(await bob.terminal('bob-1')).toMatchObject({ type: 'stream_end', content: 'Echo: still usable' });
  });

  it('stream: false still answers with one response frame (with run_id and seq), and a resume gets the streamed form', async () => {
    const agent = await env.createAgent();
    const client = await connect(agent.id);
    client.send({ type: 'message', content: 'one frame please', message_id: 'nostream-1', stream: false });
    const end = await client.terminal('nostream-1');
    expect(end).toMatchObject({ type: 'response', content: 'Echo: one frame please', reason: 'stop', run_id: expect.stringMatching(/^run_/) });
    expect(client.framesFor('nostream-1').map((frame) => frame.type)).toEqual(['event', 'response']);
    const from = client.frames.length;
    client.send({ type: 'resume', run_id: end.run_id });
    await eventually(() => client.frames.slice(from).some((frame) => frame.type === 'stream_end'), 'the streamed form');
    const replayed = runFrames(client.frames.slice(from), end.run_id as string);
    expectWholeRun(replayed);
    expect(replayed.at(-1)!.seq).toBe(end.seq);
  });
});
