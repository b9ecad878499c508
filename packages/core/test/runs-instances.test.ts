/**
 * Runs across two instances of the core (one PostgreSQL database, one Redis, separate
 * everything else), as two `sentinel api` processes would be: a run started on A is resumed
 * through B's chat socket (the Store's frames after the cursor, then B goes live on A's
 * published batches: every frame once, in order), cancelled through B, and a run whose
 * instance stopped beating is failed `interrupted` by the other's sweep.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createSentinelApi,
  parseAgentDefinition,
  type FrameSink,
  type ModelProvider,
  type Outgoing,
  type Principal,
  type ProviderEvent,
  type ProviderRequest,
  type RequestOrigin,
  type SentinelApi,
} from '@sentinel/api-core';
import { createTestDatabase, type TestDatabase } from '@sentinel/test-support/postgres';
import { assertRedisRunning, busUrl, deletePrefix, uniquePrefix, withRedis } from '@sentinel/test-support/redis';

type Frame = Record<string, any>;

class RecordingSink implements FrameSink {
  readonly frames: Frame[] = [];
  send(out: Outgoing): void {
    this.frames.push(JSON.parse(out.json) as Frame);
  }
  close(): void {}
  terminal(): Frame | undefined {
    return this.frames.find((f) => f.type === 'stream_end' || f.type === 'error');
  }
}

/** Streams one piece per release() (or per `tick` ms when `ticking`), `pieces` in all. */
class StepProvider implements ModelProvider {
  readonly name = 'step';
  calls = 0;
  private waiters: Array<() => void> = [];
  constructor(private readonly pieces: number) {}
  get waiting(): number {
    return this.waiters.length;
  }
  release(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
  async *stream(req: ProviderRequest): AsyncIterable<ProviderEvent> {
    this.calls++;
    for (let i = 0; i < this.pieces; i++) {
      yield { type: 'text', delta: `p${i} ` };
      await new Promise<void>((resolve, reject) => {
        this.waiters.push(resolve);
        req.signal.addEventListener('abort', () => reject(req.signal.reason as Error), { once: true });
      });
    }
    yield { type: 'finish', reason: 'stop' };
  }
}

async function until<T>(fn: () => T | undefined | false | null, what: string, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const origin: RequestOrigin = { secure: false, host: 'localhost:8080' };
const alice: Principal = { username: 'alice', role: 'user' };

describe('runs across two instances (PostgreSQL + Redis)', () => {
  const prefix = uniquePrefix();
  const step = new StepProvider(12);
  let dir: string;
  let database: TestDatabase;
  let a: SentinelApi;
  let b: SentinelApi;

  async function instance(name: string): Promise<SentinelApi> {
    const api = await createSentinelApi({
      dataDir: join(dir, name),
      storeUrl: database.url,
      tokenSecret: 'a-shared-secret-of-32-characters',
      adminPassword: 'admin-password-1',
      busUrl: busUrl(prefix, { turn_lease_ms: '3000' }),
      // A short flush interval: B goes live on A's batches within the test's patience.
      runs: { flushIntervalMs: 20, heartbeatMs: 100, sweepIntervalMs: 100 },
    });
    api.providers.register(step);
    return api;
  }

  async function openChat(api: SentinelApi, agentId: string) {
    const sink = new RecordingSink();
    const session = (await api.chat.prepare(alice, agentId)).open(sink);
    return { sink, send: (frame: Record<string, unknown>) => session.receive(JSON.stringify(frame)), session };
  }

  beforeAll(async () => {
    await assertRedisRunning();
    dir = mkdtempSync(join(tmpdir(), 'sentinel-runs-instances-'));
    database = await createTestDatabase();
    a = await instance('a');
    b = await instance('b');
    await a.users.create({ username: 'alice', password: 'alice-password' });
    await a.images.build(parseAgentDefinition({ name: 'test/step', model: { provider: 'step', name: 'm1' } }));
  });

  afterAll(async () => {
    for (let i = 0; i < 50; i++) step.release();
    await Promise.all([a?.close(), b?.close()]);
    await database?.drop();
    rmSync(dir, { recursive: true, force: true });
    await deletePrefix(prefix);
  });

  it('a run started on A, its socket gone, is resumed through B: the journaled frames after the cursor, then live; every frame once, in order', async () => {
    const id = (await a.agents.create(alice, { image: 'test/step' }, origin)).id;
    const chatA = await openChat(a, id);
    chatA.send({ type: 'message', content: 'count for me', message_id: 'x-1' });
    for (let i = 0; i < 3; i++) {
      await until(() => step.waiting > 0, 'the next piece');
      step.release();
    }
    await until(() => chatA.sink.frames.filter((f) => f.type === 'stream_chunk').length >= 3, 'three chunks on A');
    chatA.session.detach();
    const seenOnA = chatA.sink.frames.filter((f) => f.run_id !== undefined);
    const runId = seenOnA[0]!.run_id as string;
    const since = seenOnA.at(-2)!.seq as number;

    const chatB = await openChat(b, id);
    chatB.send({ type: 'resume', run_id: runId, since });
    // The rest of the answer happens on A while B relays it.
    for (let i = 3; i < 12; i++) {
      await until(() => step.waiting > 0, 'the next piece');
      step.release();
    }
    const end = await until(() => chatB.sink.terminal(), 'the end on B', 10_000);
    expect(end).toMatchObject({ type: 'stream_end', reason: 'stop', run_id: runId, content: Array.from({ length: 12 }, (_, i) => `p${i} `).join('') });
    const onB = chatB.sink.frames.filter((f) => f.run_id === runId);
    expect(onB.map((f) => f.seq)).toEqual(Array.from({ length: onB.length }, (_, i) => since + 1 + i));
    const whole = [...seenOnA.filter((f) => (f.seq as number) <= since), ...onB];
    expect(whole.map((f) => f.seq)).toEqual(Array.from({ length: whole.length }, (_, i) => i + 1));
    expect(whole.filter((f) => f.type === 'stream_chunk').map((f) => f.content).join('')).toBe(end.content);
    expect((await b.runs.get(alice, id, runId)).status).toBe('completed');
    expect(step.calls).toBe(1);
  });

  it('a run on A is cancelled through B (chat cancel by run_id, and RunService.cancel), ending cancelled with its partial answer', async () => {
    const id = (await a.agents.create(alice, { image: 'test/step' }, origin)).id;
    const { run } = await a.runs.create(alice, id, { content: 'long', message_id: 'c-1' });
    await until(() => step.waiting > 0, 'the first piece');
    const chatB = await openChat(b, id);
    chatB.send({ type: 'cancel', run_id: run.id });
    const ended = await b.runs.wait(alice, id, run.id, 5000);
    expect(ended).toMatchObject({ status: 'cancelled', output: { reason: 'cancelled', content: 'p0 ' } });
    await until(() => chatB.sink.frames.find((f) => f.event_type === 'cancel_requested' && f.run_id === run.id), 'cancel_requested on B');

    const second = await a.runs.create(alice, id, { content: 'long again', message_id: 'c-2' });
    await until(() => step.waiting > 0, 'the first piece');
    expect(await b.runs.cancel(alice, id, second.run.id)).toMatchObject({ status: 'cancelled', output: { reason: 'cancelled' } });
  });

  it('a run of an instance that stopped beating (killed) is failed interrupted by the other instance\'s sweep, with a terminal error frame B\'s subscriber gets', async () => {
    const id = (await a.agents.create(alice, { image: 'test/step' }, origin)).id;
    const nowMs = Date.now();
    // A third instance that beat once, then died with a run running.
    await withRedis((client) => client.sadd(`${prefix}instances`, 'instance-that-died'));
    const created = await b.store.createRun(
      {
        id: 'run_00000000000000000000beef',
        agent_id: id,
        owner: 'alice',
        message_id: 'dead-1',
        status: 'queued',
        input: { content: 'lost' },
        usage: { input_tokens: 0, output_tokens: 0, total_tokens: 0 },
        webhook: null,
        created_at: new Date(nowMs).toISOString(),
        idempotency_key: 'dead-1',
        request_hash: null,
        instance_id: 'instance-that-died',
      },
      { idempotencyWindowMs: 86_400_000, nowMs },
    );
    await b.store.updateRun(created.run.id, { status: 'running' });
    const frames: Frame[] = [];
    const { done } = await b.runs.subscribe(alice, id, created.run.id, 0, (frame) => frames.push(JSON.parse(frame.json) as Frame));
    await done;
    expect(frames).toEqual([expect.objectContaining({ type: 'error', code: 'interrupted', seq: 1, run_id: created.run.id })]);
    expect(await a.runs.get(alice, id, created.run.id)).toMatchObject({ status: 'failed', error: { code: 'interrupted' } });
    // A's and B's own runs are left alone: their instances beat.
    expect(await withRedis((client) => client.smembers(`${prefix}instances`))).not.toContain('instance-that-died');
  });
});
