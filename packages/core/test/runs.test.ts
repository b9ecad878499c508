/**
 * The run service on both stores (a real SQLite file, a fresh PostgreSQL database), through
 * createSentinelApi: a run's journal in the Store is exactly what its subscribers got; a
 * subscriber after the end replays it from the Store; idempotency (one run per key, 409 for
 * another request with the key, no key for a generated message id); wait, list, cancel;
 * `run_id` in the turn's events; runs left running by an earlier start end
 * `failed`/`interrupted` with a terminal `error` frame when the api starts again; a graceful
 * shutdown mid-run ends it `failed`/`interrupted` with the partial answer; journaling off.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createSentinelApi,
  openSqliteStore,
  parseAgentDefinition,
  type ModelProvider,
  type Principal,
  type ProviderEvent,
  type ProviderRequest,
  type RequestOrigin,
  type SentinelApi,
  type SentinelApiOptions,
  type Store,
} from '@sentinel/api-core';
import { createTestDatabase, type TestDatabase } from '@sentinel/test-support/postgres';

const origin: RequestOrigin = { secure: false, host: 'localhost:8080' };
const alice: Principal = { username: 'alice', role: 'user' };
const bob: Principal = { username: 'bob', role: 'user' };

type Frame = Record<string, any>;

/** Streams "partial ", waits for release() (or the abort), then "done"; counts its calls. */
class GateProvider implements ModelProvider {
  readonly name = 'gate';
  calls = 0;
  private waiters: Array<() => void> = [];
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
    yield { type: 'text', delta: 'partial ' };
    await new Promise<void>((resolve, reject) => {
      this.waiters.push(resolve);
      req.signal.addEventListener('abort', () => reject(req.signal.reason as Error), { once: true });
    });
    yield { type: 'text', delta: 'done' };
    yield { type: 'usage', input_tokens: 3, output_tokens: 2 };
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

const STORES = ['sqlite', 'postgres'] as const;

describe.each(STORES)('runs on the %s store', (kind) => {
  let dir: string;
  let database: TestDatabase | undefined;
  let api: SentinelApi;
  const gate = new GateProvider();

  async function openStore(): Promise<Store> {
    if (kind === 'sqlite') return openSqliteStore({ path: join(dir, 'sentinel.db') });
    const { openPostgresStore } = await import('../src/store/postgres/index.js');
    return openPostgresStore({ url: database!.url });
  }

  async function start(extra: Partial<SentinelApiOptions> = {}): Promise<SentinelApi> {
    const started = await createSentinelApi({
      dataDir: dir,
      store: await openStore(),
      tokenSecret: 'runs-test-secret-0123456789abcdef',
      adminPassword: 'admin-password-1',
      runtime: { echoChunkDelayMs: 1 },
      rateLimits: { chat: 0 },
      ...extra,
    });
    started.providers.register(gate);
    return started;
  }

  async function agent(on: SentinelApi = api, image = 'sentinel/echo'): Promise<string> {
    return (await on.agents.create(alice, { image }, origin)).id;
  }

  /** Every frame of the run, as a subscriber from `since` gets them, until the terminal one. */
  async function framesOf(on: SentinelApi, agentId: string, runId: string, since = 0): Promise<Frame[]> {
    const frames: Frame[] = [];
    const { done } = await on.runs.subscribe(alice, agentId, runId, since, (frame) => frames.push(JSON.parse(frame.json) as Frame));
    await done;
    return frames;
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), `sentinel-runs-${kind}-`));
    if (kind === 'postgres') database = await createTestDatabase();
    api = await start();
    await api.users.create({ username: 'alice', password: 'alice-password' });
    await api.users.create({ username: 'bob', password: 'bob-password-1' });
    await api.images.build(parseAgentDefinition({ name: 'test/gate', model: { provider: 'gate', name: 'm1' } }));
  });

  afterAll(async () => {
    gate.release();
    await api?.close();
    await database?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a run: queued → completed; the Store holds exactly the frames its live subscriber got, seq 1..n; late subscribers replay from the Store', async () => {
    const id = await agent();
    const live: Frame[] = [];
    const { run, created } = await api.runs.create(alice, id, { content: 'hello runs', message_id: 'r-1' });
    expect(created).toBe(true);
    expect(run).toMatchObject({ id: expect.stringMatching(/^run_[0-9a-f]{24}$/), agent_id: id, owner: 'alice', message_id: 'r-1', status: 'queued', input: { content: 'hello runs' }, output: null, error: null });
    const subscribed = await api.runs.subscribe(alice, id, run.id, 0, (frame) => live.push(JSON.parse(frame.json) as Frame));
    await subscribed.done;
    expect(live.map((f) => f.seq)).toEqual(live.map((_, i) => i + 1));
    expect(live.map((f) => f.type)).toEqual(['event', 'stream_start', ...live.slice(2, -1).map(() => 'stream_chunk'), 'stream_end']);
    expect(live.at(-1)).toMatchObject({ type: 'stream_end', run_id: run.id, message_id: 'r-1', content: 'Echo: hello runs', reason: 'stop' });
    const ended = await api.runs.get(alice, id, run.id);
    expect(ended).toMatchObject({ status: 'completed', output: { content: 'Echo: hello runs', reason: 'stop' }, last_seq: live.length });
    expect(ended.started_at).not.toBeNull();
    expect(ended.ended_at).not.toBeNull();
    const stored = await api.store.listRunFrames(run.id, 0);
    expect(stored.map((f) => JSON.parse(f.json) as Frame)).toEqual(live);
    // After the end: from the Store, from any cursor.
    expect(await framesOf(api, id, run.id)).toEqual(live);
    expect(await framesOf(api, id, run.id, 3)).toEqual(live.slice(3));
    const events = await api.store.listEvents(id, 0);
    expect(events.find((e) => e.event_type === 'message_received')?.data).toMatchObject({ message_id: 'r-1', run_id: run.id });
    expect(events.find((e) => e.event_type === 'message_processed')?.data).toMatchObject({ message_id: 'r-1', run_id: run.id, reason: 'stop' });
  });

  it('idempotency: the same key is the same run (no second provider call); another body with it is idempotency_conflict; a generated message id is no key', async () => {
    const id = await agent(api, 'test/gate');
    const calls = gate.calls;
    const first = await api.runs.create(alice, id, { content: 'once', message_id: 'idem' });
    await until(() => gate.waiting > 0, 'the turn at the gate');
    const again = await api.runs.create(alice, id, { content: 'once', message_id: 'idem' });
    expect(again).toMatchObject({ created: false, run: { id: first.run.id, status: 'running' } });
    await expect(api.runs.create(alice, id, { content: 'twice', message_id: 'idem' })).rejects.toMatchObject({ code: 'idempotency_conflict' });
    gate.release();
    expect(await api.runs.wait(alice, id, first.run.id, 5000)).toMatchObject({ status: 'completed', output: { content: 'partial done' }, usage: { total_tokens: 5 } });
    expect(gate.calls - calls).toBe(1);
    const a = await api.runs.create(alice, id, { content: 'no key', idempotency_key: null, message_id: 'gen-1' });
    await until(() => gate.waiting > 0, 'the turn at the gate');
    gate.release();
    await api.runs.wait(alice, id, a.run.id, 5000);
    const b = await api.runs.create(alice, id, { content: 'no key', idempotency_key: null, message_id: 'gen-1' });
    expect(b.created).toBe(true);
    await until(() => gate.waiting > 0, 'the turn at the gate');
    gate.release();
    await api.runs.wait(alice, id, b.run.id, 5000);
    expect(gate.calls - calls).toBe(3);
  });

  it('list pages newest first and filters by status; get, wait, cancel and subscribe are not_found for another user', async () => {
    const id = await agent();
    const made: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { run } = await api.runs.create(alice, id, { content: `n${i}` });
      made.push(run.id);
      await api.runs.wait(alice, id, run.id, 5000);
    }
    const page = await api.runs.list(alice, id, { limit: 2 });
    expect(page.runs.map((r) => r.id)).toEqual([made[2], made[1]]);
    expect(page.next).toBe(made[1]);
    expect((await api.runs.list(alice, id, { limit: 2, before: page.next! })).runs.map((r) => r.id)).toEqual([made[0]]);
    expect((await api.runs.list(alice, id, { status: 'cancelled' })).runs).toEqual([]);
    await expect(api.runs.get(bob, id, made[0]!)).rejects.toMatchObject({ code: 'not_found' });
    await expect(api.runs.cancel(bob, id, made[0]!)).rejects.toMatchObject({ code: 'not_found' });
    await expect(api.runs.subscribe(bob, id, made[0]!, 0, () => undefined)).rejects.toMatchObject({ code: 'not_found' });
    const other = await agent();
    await expect(api.runs.get(alice, other, made[0]!)).rejects.toMatchObject({ code: 'not_found' });
  });

  it('cancel of a running run ends it cancelled with its partial answer; of a queued one at once; of a terminal one changes nothing', async () => {
    const id = await agent(api, 'test/gate');
    const running = await api.runs.create(alice, id, { content: 'one' });
    const queued = await api.runs.create(alice, id, { content: 'two' });
    await until(() => gate.waiting > 0, 'the turn at the gate');
    expect(await api.runs.cancel(alice, id, queued.run.id)).toMatchObject({ status: 'cancelled', output: { content: '', reason: 'cancelled' } });
    const cancelled = await api.runs.cancel(alice, id, running.run.id);
    expect(cancelled).toMatchObject({ status: 'cancelled', output: { content: 'partial ', reason: 'cancelled' } });
    expect(await api.runs.cancel(alice, id, running.run.id)).toEqual(cancelled);
    const frames = await framesOf(api, id, running.run.id);
    expect(frames.at(-1)).toMatchObject({ type: 'stream_end', reason: 'cancelled', content: 'partial ' });
    expect((await framesOf(api, id, queued.run.id)).map((f) => [f.seq, f.type, f.reason])).toEqual([[1, 'stream_end', 'cancelled']]);
  });

  it('wait returns at the timeout with the current record while the run is still running', async () => {
    const id = await agent(api, 'test/gate');
    const { run } = await api.runs.create(alice, id, { content: 'slow' });
    await until(() => gate.waiting > 0, 'the turn at the gate');
    const startedAt = Date.now();
    expect(await api.runs.wait(alice, id, run.id, 150)).toMatchObject({ status: 'running' });
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(140);
    gate.release();
    expect(await api.runs.wait(alice, id, run.id, 5000)).toMatchObject({ status: 'completed' });
  });

  it('onTransition hears each terminal transition once, with the stored run', async () => {
    const id = await agent();
    const heard: [string, string][] = [];
    const off = api.runs.onTransition((run, event) => heard.push([run.id, event]));
    const { run } = await api.runs.create(alice, id, { content: 'transition' });
    await api.runs.wait(alice, id, run.id, 5000);
    await until(() => heard.some(([runId]) => runId === run.id), 'the transition');
    off();
    expect(heard.filter(([runId]) => runId === run.id)).toEqual([[run.id, 'completed']]);
  });

  it('runs an earlier start left queued or running end failed / interrupted (terminal error frame, partial answer kept) when the api starts again', async () => {
    const id = await agent();
    // What a killed process leaves behind: a run running, two frames journaled, nobody to end it.
    const nowMs = Date.now();
    const { run } = (await api.store.createRun(
      {
        id: 'run_00000000000000000000dead',
        agent_id: id,
        owner: 'alice',
        message_id: 'crashed-1',
        status: 'queued',
        input: { content: 'never answered' },
        usage: { input_tokens: 0, output_tokens: 0, total_tokens: 0 },
        webhook: null,
        created_at: new Date(nowMs).toISOString(),
        idempotency_key: 'crashed-1',
        request_hash: null,
        instance_id: 'a-dead-instance',
      },
      { idempotencyWindowMs: 86_400_000, nowMs },
    )) as { run: { id: string } };
    await api.store.updateRun(run.id, { status: 'running', started_at: new Date(nowMs).toISOString() });
    await api.store.appendRunFrames(run.id, [
      { seq: 1, json: JSON.stringify({ type: 'stream_start', timestamp: new Date(nowMs).toISOString(), run_id: run.id, seq: 1, message_id: 'crashed-1', response_id: 'resp_1' }) },
      { seq: 2, json: JSON.stringify({ type: 'stream_chunk', timestamp: new Date(nowMs).toISOString(), run_id: run.id, seq: 2, message_id: 'crashed-1', response_id: 'resp_1', chunk_index: 0, content: 'half an ans' }) },
    ]);
    await api.close();
    api = await start();
    const failed = await api.runs.get(alice, id, run.id);
    expect(failed).toMatchObject({ status: 'failed', error: { code: 'interrupted' }, output: { content: 'half an ans', reason: 'shutdown' }, last_seq: 3 });
    const frames = await framesOf(api, id, run.id);
    expect(frames.map((f) => [f.seq, f.type])).toEqual([[1, 'stream_start'], [2, 'stream_chunk'], [3, 'error']]);
    expect(frames[2]).toMatchObject({ code: 'interrupted', run_id: run.id, message_id: 'crashed-1' });
  });

  it('a graceful shutdown mid-run ends it failed / interrupted with the partial answer; stream_end reason shutdown', async () => {
    const id = await agent(api, 'test/gate');
    const { run } = await api.runs.create(alice, id, { content: 'cut me off' });
    await until(() => gate.waiting > 0, 'the turn at the gate');
    const frames: Frame[] = [];
    await api.runs.subscribe(alice, id, run.id, 0, (frame) => frames.push(JSON.parse(frame.json) as Frame));
    await api.close();
    expect(frames.at(-1)).toMatchObject({ type: 'stream_end', reason: 'shutdown', content: 'partial ' });
    api = await start();
    expect(await api.runs.get(alice, id, run.id)).toMatchObject({ status: 'failed', error: { code: 'interrupted' }, output: { content: 'partial ', reason: 'shutdown' } });
    expect((await framesOf(api, id, run.id)).at(-1)).toMatchObject({ type: 'stream_end', reason: 'shutdown' });
  });

  it('with runs: { journal: false } (the benchmark baseline) frames reach live subscribers but are not written', async () => {
    await api.close();
    api = await start({ runs: { journal: false } });
    try {
      const id = await agent();
      const live: Frame[] = [];
      const { run } = await api.runs.create(alice, id, { content: 'unjournaled' });
      await (await api.runs.subscribe(alice, id, run.id, 0, (frame) => live.push(JSON.parse(frame.json) as Frame))).done;
      expect(live.at(-1)).toMatchObject({ type: 'stream_end', content: 'Echo: unjournaled' });
      expect(await api.store.listRunFrames(run.id, 0)).toEqual([]);
      expect(await api.runs.get(alice, id, run.id)).toMatchObject({ status: 'completed', last_seq: live.length });
    } finally {
      await api.close();
      api = await start();
    }
  });
});
