/**
 * Redis going away and coming back, on a redis-server this file starts and kills (never the
 * shared one): requests that need Redis fail fast with 503 `unavailable`, writes that do not
 * need it still succeed, and once Redis is back the instances carry on by themselves:
 * reconnected, resubscribed, and caught up on what their subscribers missed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createSentinelApi,
  openSqliteStore,
  silentLogger,
  type FrameSink,
  type Outgoing,
  type Principal,
  type RequestOrigin,
  type RouteContext,
  type SentinelApi,
  type Store,
  type StreamCloseReason,
} from '@sentinel/api-core';
import { startOwnRedis, type OwnRedis } from '@sentinel/test-support/redis';

type Frame = Record<string, any>;

class RecordingSink implements FrameSink {
  readonly frames: Frame[] = [];
  closed: StreamCloseReason | undefined;
  send(out: Outgoing): void {
    this.frames.push(JSON.parse(out.json) as Frame);
  }
  close(reason: StreamCloseReason): void {
    this.closed ??= reason;
  }
}

async function until<T>(fn: () => Promise<T | undefined | false | null> | T | undefined | false | null, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const origin: RequestOrigin = { secure: false, host: 'localhost:8080' };
const alice: Principal = { username: 'alice', role: 'user' };

describe('Redis outage: 503 while it is down, recovery when it is back', () => {
  let redis: OwnRedis;
  let dir: string;
  let store: Store;
  let a: SentinelApi;
  let b: SentinelApi;

  beforeAll(async () => {
    redis = await startOwnRedis();
    dir = mkdtempSync(join(tmpdir(), 'sentinel-faults-'));
    store = await openSqliteStore({ path: join(dir, 'shared.db') });
    const options = {
      store,
      tokenSecret: 'a-shared-secret-of-32-characters',
      adminPassword: 'admin-password-1',
      busUrl: `${redis.url}/0?prefix=faults:`,
      runtime: { echoChunkDelayMs: 1 },
    };
    a = await createSentinelApi({ ...options, dataDir: join(dir, 'a') });
    b = await createSentinelApi({ ...options, dataDir: join(dir, 'b') });
    await a.users.create({ username: 'alice', password: 'alice-password' });
  });

  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await redis?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  function ctx(): RouteContext {
    return { principal: null, requestId: 'test', signal: new AbortController().signal, log: silentLogger, origin, remoteAddress: '127.0.0.1' };
  }

  async function ready(api: SentinelApi) {
    const route = api.routes.find((r) => r.method === 'GET' && r.path === '/v1/ready');
    if (!route) throw new Error('no /v1/ready route');
    return api.invoke(route, { params: {}, query: {} }, ctx());
  }

  it('fails fast with unavailable while Redis is down, keeps durable writes, and recovers by itself', async () => {
    const id = (await a.agents.create(alice, { image: 'sentinel/echo' }, origin)).id;
    // B follows the agent's events from before the outage.
    const follower = new RecordingSink();
    (await b.events.prepare(alice, id, { since: 0 })).open(follower);
    await until(() => follower.frames.some((f) => f.event_type === 'agent_status' && f.seq !== undefined), 'the replay');
    await expect(ready(a)).resolves.toMatchObject({ status: 200, body: { status: 'ready', store: 'ok', bus: 'ok' } });

    await redis.kill();

    // Login needs the shared throttle: 503 at once, not a hang.
    let started = Date.now();
    await expect(a.authService.login({ username: 'alice', password: 'alice-password' }, '10.0.0.1')).rejects.toMatchObject({
      code: 'unavailable',
      message: expect.stringContaining('event bus unavailable'),
    });
    expect(Date.now() - started).toBeLessThan(3000);
    started = Date.now();
    await expect(ready(a)).rejects.toMatchObject({ code: 'unavailable' });
    expect(Date.now() - started).toBeLessThan(3000);
    await expect(a.bus.ping?.()).rejects.toMatchObject({ code: 'unavailable' });

    // A chat message needs the agent's turn lock: an error frame with code unavailable.
    const chat = new RecordingSink();
    const session = (await a.chat.prepare(alice, id)).open(chat);
    session.receive(JSON.stringify({ type: 'message', content: 'anyone there?', message_id: 'f-1' }));
    expect(await until(() => chat.frames.find((f) => f.type === 'error'), 'the error frame', 5000)).toMatchObject({ code: 'unavailable', message_id: 'f-1' });

    // Writes that do not need Redis are acknowledged and kept; only their publish failed.
    const stopped = await a.agents.stop(alice, id, origin);
    expect(stopped.status).toBe('stopped');
    expect((await store.getAgent(id))?.status).toBe('stopped');

    await redis.start();
    await until(() => a.bus.ping?.().then(() => true, () => false), 'A reconnected');
    await until(() => b.bus.ping?.().then(() => true, () => false), 'B reconnected');
    await expect(ready(a)).resolves.toMatchObject({ status: 200, body: { status: 'ready' } });

    // B's follower missed the publishes of the outage; the Store had them, and it caught up.
    const stoppedEvent = await until(
      () => follower.frames.find((f) => f.event_type === 'agent_status' && f.data?.status === 'stopped'),
      'the stopped status on B',
    );
    expect(stoppedEvent.seq).toBeGreaterThan(0);
    const seqs = follower.frames.filter((f) => f.seq !== undefined).map((f) => f.seq as number);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
    expect(seqs.at(-1)).toBe((await store.listEvents(id, 0)).at(-1)?.seq);

    // And everything works again: login, chat on either instance, live events across.
    await expect(a.authService.login({ username: 'alice', password: 'alice-password' }, '10.0.0.1')).resolves.toMatchObject({ username: 'alice' });
    await a.agents.start(alice, id, origin);
    const chatB = new RecordingSink();
    (await b.chat.prepare(alice, id)).open(chatB).receive(JSON.stringify({ type: 'message', content: 'back again', message_id: 'f-2' }));
    expect(await until(() => chatB.frames.find((f) => f.type === 'stream_end'), 'the answer')).toMatchObject({ reason: 'stop' });
    await until(() => follower.frames.some((f) => f.event_type === 'message_processed' && f.data?.message_id === 'f-2'), 'the live event');
  });
});
