/**
 * The rate-limit mechanism of the core (auth/rate-limit.ts, redis/rate-limit-store.ts): the token
 * bucket's arithmetic on a clock of the test's own, the partition of a caller (an API key apart
 * from its owner), the check in the seam (`api.invoke`), and the Redis store shared by two APIs
 * on one real Redis (each on its own SQLite file), for REST and for chat frames, whose order
 * survives the asynchronous check.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSentinelApi, isSentinelError, silentLogger, type FrameSink, type Outgoing, type Principal, type RouteContext, type SentinelApi } from '@sentinel/api-core';
import { MemoryRateLimitStore, RateLimiter, ratePartitionOf, resolveRateRules } from '../src/auth/rate-limit.js';
import { assertRedisRunning, busUrl, deletePrefix, uniquePrefix } from '@sentinel/test-support/redis';

const origin = { secure: false, host: 'localhost' };

function ctx(principal: Principal | null, remoteAddress = '192.0.2.1'): RouteContext {
  return { principal, requestId: 'test', signal: new AbortController().signal, log: silentLogger, origin, remoteAddress };
}

async function outcome(promise: Promise<unknown>): Promise<{ status: number | string; headers: Record<string, string> | undefined; retryAfter?: number }> {
  try {
    const response = (await promise) as { status: number; headers?: Record<string, string> };
    return { status: response.status, headers: response.headers };
  } catch (err) {
    if (!isSentinelError(err)) throw err;
    return { status: err.code, headers: err.headers as Record<string, string> | undefined, ...(err.retryAfter === undefined ? {} : { retryAfter: err.retryAfter }) };
  }
}

function route(api: SentinelApi, method: string, path: string) {
  const found = api.routes.find((r) => r.method === method && r.path === path);
  if (!found) throw new Error(`no route ${method} ${path}`);
  return found;
}

describe('token buckets', () => {
  it('refills at perMinute, holds at most burst, and says when the next unit comes', () => {
    let now = 1_000_000;
    const store = new MemoryRateLimitStore({ now: () => now });
    const rule = resolveRateRules({ read: { perMinute: 60, burst: 3 } }).read!;
    expect(rule.policy).toBe('"read";q=3;w=3');
    const taken = [store.take('k', rule), store.take('k', rule), store.take('k', rule)];
    expect(taken.map((d) => [d.allowed, d.remaining])).toEqual([[true, 2], [true, 1], [true, 0]]);
    const refused = store.take('k', rule);
    expect(refused).toMatchObject({ allowed: false, remaining: 0, retryAfterSeconds: 1, resetSeconds: 3 });
    now += 1000;
    expect(store.take('k', rule)).toMatchObject({ allowed: true, remaining: 0 });
    now += 60_000;
    // Never more than the burst, however long the bucket was idle.
    expect(store.take('k', rule)).toMatchObject({ allowed: true, remaining: 2, resetSeconds: 1 });
  });

  it('turns a class off with 0 or false and refuses nonsense', () => {
    const rules = resolveRateRules({ read: 0, write: false, chat: 7 });
    expect(Object.keys(rules).sort()).toEqual(['auth', 'chat']);
    expect(rules.chat?.policy).toBe('"chat";q=7;w=60');
    expect(() => resolveRateRules({ read: -1 })).toThrow(RangeError);
    expect(() => resolveRateRules({ read: 1.5 })).toThrow(RangeError);
  });

  it('stays bounded: past maxBuckets full buckets are swept, then the oldest go', () => {
    let now = 0;
    const store = new MemoryRateLimitStore({ now: () => now, maxBuckets: 100 });
    const rule = resolveRateRules({ read: 6000 }).read!;
    for (let i = 0; i < 1000; i++) store.take(`k${i}`, rule);
    expect(store.size).toBeLessThanOrEqual(100);
    now += 60_000;
    store.take('late', rule);
    expect(store.size).toBeLessThanOrEqual(2);
  });

  it('gives an API key a bucket apart from its owner, and anonymous callers one per address', () => {
    expect(ratePartitionOf({ username: 'alice', role: 'user' }, '192.0.2.1')).toBe('user:alice');
    expect(ratePartitionOf({ username: 'alice', role: 'user', via: 'key', credentialId: 'key_1' }, '192.0.2.1')).toBe('key:key_1');
    expect(ratePartitionOf(null, '192.0.2.1')).toBe('addr:192.0.2.1');
  });
});

describe('the check in the seam', () => {
  let dir: string;
  let api: SentinelApi;
  const alice: Principal = { username: 'alice', role: 'user' };
  const aliceKey: Principal = { username: 'alice', role: 'user', via: 'key', credentialId: 'key_test_1', scopes: ['agents:read'] };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-rate-core-'));
    api = await createSentinelApi({ dataDir: dir, adminPassword: 'admin-password-1', rateLimits: { read: 2 } });
    await api.users.create({ username: 'alice', password: 'alice-password' });
  });

  afterAll(async () => {
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a key and its owner have separate buckets: the key runs dry, the user still reads', async () => {
    const list = route(api, 'GET', '/v1/agents');
    const byKey = () => outcome(api.invoke(list, { params: {}, query: {} }, ctx(aliceKey)));
    expect((await byKey()).status).toBe(200);
    expect((await byKey()).headers).toEqual({ 'RateLimit-Policy': '"read";q=2;w=60', RateLimit: '"read";r=0;t=60' });
    const refused = await byKey();
    expect(refused).toMatchObject({ status: 'rate_limited', retryAfter: 30, headers: { RateLimit: '"read";r=0;t=60' } });
    const asUser = await outcome(api.invoke(list, { params: {}, query: {} }, ctx(alice)));
    expect(asUser).toMatchObject({ status: 200, headers: { RateLimit: '"read";r=1;t=30' } });
  });

  it('runs no handler for a refused request', async () => {
    const create = route(api, 'POST', '/v1/agents');
    const limited = await createSentinelApi({ dataDir: join(dir, 'second'), adminPassword: 'admin-password-1', rateLimits: { write: 1 } });
    try {
      const body = (name: string) => ({ format: 'json' as const, text: JSON.stringify({ image: 'sentinel/echo:latest', name }) });
      const admin: Principal = { username: 'admin', role: 'admin' };
      const limitedCreate = route(limited, create.method, create.path);
      expect((await outcome(limited.invoke(limitedCreate, { params: {}, query: {}, body: body('first') }, ctx(admin)))).status).toBe(201);
      expect((await outcome(limited.invoke(limitedCreate, { params: {}, query: {}, body: body('second') }, ctx(admin)))).status).toBe('rate_limited');
      expect((await limited.agents.list(admin, origin)).map((agent) => agent.name)).toEqual(['first']);
    } finally {
      await limited.close();
    }
  });
});

class RecordingSink implements FrameSink {
  readonly frames: Record<string, any>[] = [];
  send(out: Outgoing): void {
    this.frames.push(JSON.parse(out.json) as Record<string, any>);
  }
  close(): void {}
}

describe('buckets in Redis, shared by two instances', () => {
  const prefix = uniquePrefix();
  let dir: string;
  let a: SentinelApi;
  let b: SentinelApi;
  const carol: Principal = { username: 'carol', role: 'user' };

  beforeAll(async () => {
    await assertRedisRunning();
    dir = mkdtempSync(join(tmpdir(), 'sentinel-rate-redis-'));
    const options = { adminPassword: 'admin-password-1', busUrl: busUrl(prefix), rateLimits: { read: 4, chat: 3 } };
    a = await createSentinelApi({ ...options, dataDir: join(dir, 'a') });
    b = await createSentinelApi({ ...options, dataDir: join(dir, 'b') });
    for (const api of [a, b]) await api.users.create({ username: 'carol', password: 'carol-password' });
  });

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await deletePrefix(prefix);
    rmSync(dir, { recursive: true, force: true });
  });

  it('counts requests on A and B against one bucket: the fifth read, on either, is refused', async () => {
    const on = (api: SentinelApi) => outcome(api.invoke(route(api, 'GET', '/v1/agents'), { params: {}, query: {} }, ctx(carol)));
    const results = [await on(a), await on(b), await on(a), await on(b)];
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(results.map((r) => r.headers?.RateLimit)).toEqual(['"read";r=3;t=15', '"read";r=2;t=30', '"read";r=1;t=45', '"read";r=0;t=60']);
    expect(await on(b)).toMatchObject({ status: 'rate_limited', retryAfter: 15 });
    expect(await on(a)).toMatchObject({ status: 'rate_limited' });
  });

  it('takes concurrent requests atomically: 10 at once on two instances, exactly the burst pass', async () => {
    const dave: Principal = { username: 'dave', role: 'user' };
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => {
        const api = i % 2 === 0 ? a : b;
        return outcome(api.invoke(route(api, 'GET', '/v1/auth/me'), { params: {}, query: {} }, ctx(dave)));
      }),
    );
    // dave has no account, so the requests that pass end in not_found: what counts is that
    // exactly the burst of 4 got past the bucket and the other 6 were refused by it.
    expect(results.filter((r) => r.status === 'rate_limited')).toHaveLength(6);
    expect(results.filter((r) => r.status !== 'rate_limited').every((r) => r.headers?.RateLimit !== undefined)).toBe(true);
  });

  it('limits chat frames across instances and keeps their order while Redis answers', async () => {
    const agentOnA = await a.agents.create(carol, { image: 'sentinel/echo:latest', name: 'chat-a' }, origin);
    const agentOnB = await b.agents.create(carol, { image: 'sentinel/echo:latest', name: 'chat-b' }, origin);
    const sinkA = new RecordingSink();
    const sinkB = new RecordingSink();
    const sessionA = (await a.chat.prepare(carol, agentOnA.id)).open(sinkA);
    const sessionB = (await b.chat.prepare(carol, agentOnB.id)).open(sinkB);
    // Sent back to back: the cancel and the bad frame must wait for the check before them. Had
    // the cancel overtaken m1, it would find nothing to cancel and m1 would end with "stop".
    const long = Array.from({ length: 200 }, (_, i) => `w${i}`).join(' ');
    sessionA.receive(JSON.stringify({ type: 'message', content: long, message_id: 'm1' }));
    sessionA.receive(JSON.stringify({ type: 'cancel', message_id: 'm1' }));
    sessionA.receive('not json');
    sessionA.receive(JSON.stringify({ type: 'message', content: 'two', message_id: 'm2', stream: false }));
    const until = async (probe: () => boolean) => {
      for (let i = 0; i < 300 && !probe(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(probe()).toBe(true);
    };
    await until(() => sinkA.frames.some((f) => f.message_id === 'm2' && f.type === 'response'));
    expect(sinkA.frames.find((f) => f.message_id === 'm1' && f.type === 'stream_end')).toMatchObject({ reason: 'cancelled' });
    const malformed = sinkA.frames.findIndex((f) => f.code === 'invalid_request');
    expect(malformed).toBeGreaterThan(0);
    expect(malformed).toBeLessThan(sinkA.frames.findIndex((f) => f.message_id === 'm2'));
    sessionB.receive(JSON.stringify({ type: 'message', content: 'three', message_id: 'm3', stream: false }));
    sessionB.receive(JSON.stringify({ type: 'message', content: 'four', message_id: 'm4', stream: false }));
    await until(() => sinkB.frames.some((f) => f.message_id === 'm4'));
    await until(() => sinkB.frames.some((f) => f.message_id === 'm3' && f.type === 'response'));

    expect(sinkB.frames.find((f) => f.message_id === 'm4')).toMatchObject({ type: 'error', code: 'rate_limited', retry_after: 20 });
    sessionA.detach();
    sessionB.detach();
  });
});

describe('a limiter of its own', () => {
  it('answers synchronously in process (no promise on the hot path)', () => {
    const limiter = new RateLimiter({ limits: { read: 10 } });
    const decision = limiter.take(limiter.ruleFor('read')!, 'user:x');
    expect(decision).not.toBeInstanceOf(Promise);
    expect(limiter.ruleFor('write')?.policy).toBe('"write";q=600;w=60');
  });
});
