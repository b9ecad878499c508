/**
 * One behavioural spec for both login limiters: the in-process LoginThrottle and the Redis one
 * shared by instances must throttle the same way (real clocks, real Redis, short delays).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSentinelError, type LoginLimiter } from '@sentinel/api-core';
import { LoginThrottle, type LoginThrottlePolicy } from '../src/auth/throttle.js';
import { RedisLoginLimiter, createRedisEventBus, type RedisEventBus } from '@sentinel/api-core/redis';
import { assertRedisRunning, busUrl, deletePrefix, uniquePrefix } from '@sentinel/test-support/redis';

const POLICY: LoginThrottlePolicy = {
  freeFailuresPerUserAddress: 3,
  freeFailuresPerAddress: 8,
  baseDelayMs: 400,
  maxDelayMs: 1600,
  forgetAfterMs: 5000,
  userSlowdownAfter: 6,
  userSlowdownStepMs: 60,
  maxUserSlowdownMs: 180,
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** 'ok' when the attempt may go ahead, else the refusal's code and Retry-After. */
async function attempt(limiter: LoginLimiter, username: string, address: string, outcome: 'fail' | 'succeed' = 'fail'): Promise<string> {
  try {
    await limiter.check(username, address);
  } catch (err) {
    if (!isSentinelError(err)) throw err;
    return `${err.code} ${err.retryAfter}`;
  }
  if (outcome === 'fail') await limiter.recordFailure(username, address);
  else await limiter.recordSuccess(username, address);
  return 'ok';
}

const prefix = uniquePrefix();
const buses: RedisEventBus[] = [];
let run = 0;

async function redisLimiter(): Promise<RedisLoginLimiter> {
  const bus = createRedisEventBus({ url: busUrl(prefix) });
  buses.push(bus);
  await bus.ready();
  return new RedisLoginLimiter({ bus, ...POLICY });
}

beforeAll(async () => {
  await assertRedisRunning();
});

afterAll(async () => {
  await Promise.all(buses.map((bus) => bus.close()));
  await deletePrefix(prefix);
});

describe.each([
  ['in process', async () => new LoginThrottle(POLICY)],
  ['on Redis', redisLimiter],
] as const)('login limiter %s', (_name, makeLimiter) => {
  // Names no other case (or run) uses, since Redis keeps counters between cases.
  const name = (base: string) => `${base}-${process.pid}-${++run}`;

  it('stops a storm from one address while the same username logs in at once from another', async () => {
    const limiter = await makeLimiter();
    const admin = name('admin');
    const outcomes: string[] = [];
    for (let i = 0; i < 50; i++) outcomes.push(await attempt(limiter, admin, '198.51.100.1'));
    expect(outcomes.slice(0, 3)).toEqual(['ok', 'ok', 'ok']);
    expect(outcomes.slice(3).every((o) => o === 'rate_limited 1')).toBe(true);
    const started = Date.now();
    expect(await attempt(limiter, admin, '203.0.113.2', 'succeed')).toBe('ok');
    expect(Date.now() - started).toBeLessThan(150);
  });

  it('doubles the wait with each failure past the free ones, counted from the last failure', async () => {
    const limiter = await makeLimiter();
    const user = name('bob');
    for (let i = 0; i < 3; i++) expect(await attempt(limiter, user, '198.51.100.2')).toBe('ok');
    expect(await attempt(limiter, user, '198.51.100.2')).toBe('rate_limited 1');
    await sleep(450);
    expect(await attempt(limiter, user, '198.51.100.2')).toBe('ok'); // 4th failure: the next wait is 800 ms
    await sleep(450);
    expect(await attempt(limiter, user, '198.51.100.2')).toBe('rate_limited 1');
    await sleep(400);
    expect(await attempt(limiter, user, '198.51.100.2', 'succeed')).toBe('ok');
    // The success wiped the pair's slate: three free failures again.
    for (let i = 0; i < 3; i++) expect(await attempt(limiter, user, '198.51.100.2')).toBe('ok');
    expect(await attempt(limiter, user, '198.51.100.2')).toBe('rate_limited 1');
  });

  it('makes one address wait after its free failures across usernames, and nobody else', async () => {
    const limiter = await makeLimiter();
    const address = `198.51.100.${10 + run}`;
    for (let i = 0; i < 8; i++) expect(await attempt(limiter, name('spray'), address)).toBe('ok');
    expect(await attempt(limiter, name('fresh'), address)).toBe('rate_limited 1');
    expect(await attempt(limiter, name('fresh'), '203.0.113.3', 'succeed')).toBe('ok');
  });

  it('only slows a username down, by a bounded delay, when failures come from many addresses', async () => {
    const limiter = await makeLimiter();
    const user = name('carol');
    for (let i = 0; i < 9; i++) expect(await attempt(limiter, user, `192.0.2.${i}`)).toBe('ok');
    // 9 failures, 6 free: (9 − 6 + 1) × 60 ms = 240 ms, capped at 180 ms; never a refusal.
    const started = Date.now();
    expect(await attempt(limiter, user, '203.0.113.4', 'succeed')).toBe('ok');
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(170);
    expect(took).toBeLessThan(600);
  });

  it('counts concurrent attempts up front', async () => {
    const limiter = await makeLimiter();
    const user = name('dave');
    const outcomes = await Promise.allSettled(Array.from({ length: 7 }, () => limiter.check(user, '198.51.100.3')));
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(3);
    for (const o of outcomes) if (o.status === 'rejected') expect(o.reason).toMatchObject({ code: 'rate_limited', retryAfter: 1 });
    for (let i = 0; i < 3; i++) await limiter.recordFailure(user, '198.51.100.3');
  });
});

describe('login limiter on Redis, two instances', () => {
  it('shares every counter: failures through one instance make the other refuse', async () => {
    const [a, b] = [await redisLimiter(), await redisLimiter()];
    const user = `erin-${process.pid}`;
    for (let i = 0; i < 3; i++) expect(await attempt(i % 2 === 0 ? a : b, user, '198.51.100.4')).toBe('ok');
    expect(await attempt(a, user, '198.51.100.4')).toBe('rate_limited 1');
    expect(await attempt(b, user, '198.51.100.4')).toBe('rate_limited 1');
    expect(await attempt(b, user, '203.0.113.5', 'succeed')).toBe('ok');
  });
});
