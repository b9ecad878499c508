/**
 * The quota counters: in process (a new UTC day starts from zero) and in Redis (INCRBY under
 * the prefix, expiring an hour after the end of the counter's UTC day, shared by instances).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { InProcessUsageCounters, utcDay } from '../src/auth/quotas.js';
import { createRedisEventBus, RedisUsageCounters, type RedisEventBus } from '@sentinel/api-core/redis';
import { assertRedisRunning, busUrl, deletePrefix, uniquePrefix, withRedis } from '@sentinel/test-support/redis';

describe('utcDay', () => {
  it('names the UTC date and when it ends, whatever the time of day', () => {
    expect(utcDay(Date.UTC(2026, 11, 3, 23, 59, 59, 999))).toEqual({ day: '2026-12-03', endMs: Date.UTC(2026, 11, 4) });
    expect(utcDay(Date.UTC(2026, 11, 4))).toEqual({ day: '2026-12-04', endMs: Date.UTC(2026, 11, 5) });
    expect(utcDay(Date.UTC(2024, 1, 29, 12)).day).toBe('2024-02-29');
  });
});

describe('InProcessUsageCounters', () => {
  it('adds per user and kind, and starts a new day from zero', async () => {
    const counters = new InProcessUsageCounters();
    expect(await counters.add('u1', '2026-12-03', 'turns', 1)).toBe(1);
    expect(await counters.add('u1', '2026-12-03', 'turns', 1)).toBe(2);
    expect(await counters.add('u1', '2026-12-03', 'tokens', 120)).toBe(120);
    expect(await counters.get('u2', '2026-12-03', 'turns')).toBe(0);
    expect(await counters.add('u1', '2026-12-03', 'turns', -1)).toBe(1);
    expect(await counters.get('u1', '2026-12-04', 'turns')).toBe(0);
    expect(await counters.get('u1', '2026-12-04', 'tokens')).toBe(0);
  });
});

describe('RedisUsageCounters', () => {
  const prefix = uniquePrefix();
  const buses: RedisEventBus[] = [];

  async function instance(): Promise<RedisUsageCounters> {
    const bus = createRedisEventBus({ url: busUrl(prefix) });
    await bus.ready();
    buses.push(bus);
    return new RedisUsageCounters({ bus });
  }

  beforeAll(assertRedisRunning);
  afterEach(async () => {
    for (const bus of buses.splice(0)) await bus.close();
  });
  afterAll(() => deletePrefix(prefix));

  it('shares counters between instances and expires them an hour after their UTC day', async () => {
    const [a, b] = [await instance(), await instance()];
    const { day, endMs } = utcDay(Date.now());
    expect(await a.add('uid-1', day, 'turns', 1, endMs)).toBe(1);
    expect(await b.add('uid-1', day, 'turns', 1, endMs)).toBe(2);
    expect(await b.add('uid-1', day, 'tokens', 250, endMs)).toBe(250);
    expect(await a.get('uid-1', day, 'tokens')).toBe(250);
    expect(await a.get('uid-2', day, 'turns')).toBe(0);
    const expiresAt = await withRedis((client) => client.pexpiretime(`${prefix}quota:${day}:uid-1:turns`));
    expect(expiresAt).toBe(endMs + 3_600_000);
    // Two instances counting at once lose nothing.
    await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).add('uid-3', day, 'turns', 1, endMs)));
    expect(await a.get('uid-3', day, 'turns')).toBe(20);
  });
});
