import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AgentBusMessage, EventRecord } from '@sentinel/api-core';
import type { UserChange } from '../src/auth/users.js';
import { createRedisEventBus, maskRedisUrl, parseRedisUrl, type RedisEventBus } from '@sentinel/api-core/redis';
import { assertRedisRunning, busUrl, deletePrefix, uniquePrefix, withRedis } from '@sentinel/test-support/redis';

async function until<T>(fn: () => T | undefined | false | null, what: string, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function event(agentId: string, seq: number): EventRecord {
  return { agent_id: agentId, seq, event_type: 'agent_status', timestamp: new Date(0).toISOString(), content: `event ${seq}`, data: { n: seq } };
}

describe('parseRedisUrl', () => {
  it('reads host, port, db, credentials, TLS, prefix and lease; masks the password', () => {
    const target = parseRedisUrl('rediss://app:s%40cret@cache.example:6380/3?prefix=blue:&turn_lease_ms=5000');
    expect(target.connection).toMatchObject({ host: 'cache.example', port: 6380, username: 'app', password: 's@cret', db: 3, tls: { servername: 'cache.example' } });
    expect(target.keyPrefix).toBe('blue:');
    expect(target.turnLeaseMs).toBe(5000);
    expect(target.display).not.toContain('cret');
    expect(maskRedisUrl('redis://:hunter2@h:1')).toBe('redis://:***@h:1');
    expect(parseRedisUrl('redis://[::1]').connection).toMatchObject({ host: '::1', port: 6379 });
  });

  it('refuses other schemes, unknown parameters, bad prefixes and bad databases without echoing the password', () => {
    for (const [url, message] of [
      ['http://h:1', /scheme must be redis/],
      ['redis://:hunter2@h/0?family=6', /unknown parameter "family"/],
      ['redis://h/0?prefix=has space', /key prefix/],
      ['redis://h/db1', /database number/],
      ['redis://h?turn_lease_ms=5', /turn_lease_ms/],
      ['not a url', /invalid bus URL/],
    ] as const) {
      let caught: unknown;
      try {
        parseRedisUrl(url);
      } catch (err) {
        caught = err;
      }
      expect(caught, url).toMatchObject({ code: 'invalid_request', message: expect.stringMatching(message) });
      expect(String((caught as Error).message)).not.toContain('hunter2');
    }
  });
});

describe('Redis event bus', () => {
  const prefix = uniquePrefix();
  const buses: RedisEventBus[] = [];

  async function instance(): Promise<RedisEventBus> {
    const bus = createRedisEventBus({ url: busUrl(prefix) });
    buses.push(bus);
    await bus.ready();
    return bus;
  }

  /** Resolves once Redis counts `count` subscribers on the channel (SUBSCRIBE is async). */
  async function numsub(channel: string, count: number): Promise<void> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const [, n] = (await withRedis((c) => c.pubsub('NUMSUB', channel))) as [string, number];
      if (n === count) return;
      if (Date.now() > deadline) throw new Error(`channel ${channel} has ${n} subscribers, expected ${count}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  const subscribers = (agentId: string, count: number) => numsub(`${prefix}agent:${agentId}`, count);

  beforeAll(assertRedisRunning);
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((bus) => bus.close()));
  });
  afterAll(() => deletePrefix(prefix));

  it('delivers what one instance publishes to subscribers on every instance, in order, once each', async () => {
    const [a, b] = [await instance(), await instance()];
    const onA: AgentBusMessage[] = [];
    const onB: AgentBusMessage[] = [];
    const resyncs: string[] = [];
    a.subscribe('agent-1', (m) => (m.kind === 'resync' ? resyncs.push('a') : onA.push(m)));
    b.subscribe('agent-1', (m) => (m.kind === 'resync' ? resyncs.push('b') : onB.push(m)));
    await subscribers('agent-1', 2);
    // Each instance told its subscriber to catch up once Redis confirmed the SUBSCRIBE.
    await until(() => resyncs.length === 2, 'the resync notices');
    expect(resyncs.sort()).toEqual(['a', 'b']);
    for (let seq = 1; seq <= 50; seq++) a.publish('agent-1', { kind: 'event', event: event('agent-1', seq) });
    await until(() => onB.length === 50, '50 events on B');
    const seqs = (list: AgentBusMessage[]) => list.map((m) => (m.kind === 'event' ? m.event.seq : -1));
    expect(seqs(onB)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(onB[0]).toEqual({ kind: 'event', event: event('agent-1', 1) });
    // A's own subscriber got each message once, synchronously, and never again from Redis.
    await new Promise((r) => setTimeout(r, 50));
    expect(seqs(onA)).toEqual(seqs(onB));
  });

  it('subscribes to an agent channel only while the instance has a subscriber for it', async () => {
    const a = await instance();
    const stop1 = a.subscribe('agent-2', () => {});
    const stop2 = a.subscribe('agent-2', () => {});
    await subscribers('agent-2', 1);
    stop1();
    stop1();
    await new Promise((r) => setTimeout(r, 30));
    await subscribers('agent-2', 1);
    stop2();
    await subscribers('agent-2', 0);
    // Other agents' messages never reach this instance's listeners.
    const seen: AgentBusMessage[] = [];
    a.subscribe('agent-3', (m) => m.kind !== 'resync' && seen.push(m));
    const b = await instance();
    b.publish('agent-4', { kind: 'deleted', agent_id: 'agent-4' });
    b.publish('agent-3', { kind: 'control', action: 'cancel', message_id: 'm-1' });
    await until(() => seen.length === 1, 'the control message');
    expect(seen).toEqual([{ kind: 'control', action: 'cancel', message_id: 'm-1' }]);
  });

  it('carries user changes, with the user id and token version, to the other instances only', async () => {
    const [a, b] = [await instance(), await instance()];
    const onA: (UserChange | null)[] = [];
    const onB: (UserChange | null)[] = [];
    a.userChanges.subscribe((change) => onA.push(change));
    b.userChanges.subscribe((change) => onB.push(change));
    await numsub(`${prefix}users`, 2);
    // Once subscribed, each instance drops everything it cached (changes may have been missed).
    await until(() => onA.length === 1 && onB.length === 1, 'the initial resync');
    a.userChanges.publish({ username: 'alice', user_id: 'id-1', token_version: 3 });
    a.userChanges.publish({ username: 'alice', user_id: 'id-1', token_version: null });
    await until(() => onB.length === 3, 'the changes on B');
    expect(onB).toEqual([
      null,
      { username: 'alice', user_id: 'id-1', token_version: 3 },
      { username: 'alice', user_id: 'id-1', token_version: null },
    ]);
    // An announcement from an instance that predates user ids still invalidates by name.
    await withRedis((client) => client.publish(`${prefix}users`, JSON.stringify({ i: 'an-older-instance', u: 'bob' })));
    await until(() => onB.length === 4, 'the old-style change on B');
    expect(onB[3]).toEqual({ username: 'bob' });
    await new Promise((r) => setTimeout(r, 50));
    expect(onA).toEqual([null, { username: 'bob' }]);
  });

  it('answers ping, is marked shared, and ignores publishes after close', async () => {
    const a = await instance();
    expect(a.shared).toBe(true);
    await expect(a.ping()).resolves.toBeUndefined();
    await a.close();
    await expect(a.ping()).rejects.toMatchObject({ code: 'unavailable' });
    expect(() => a.publish('agent-5', { kind: 'deleted', agent_id: 'agent-5' })).not.toThrow();
    expect(a.subscribe('agent-5', () => {})).toBeTypeOf('function');
  });

  it('fails ready() with unavailable when nothing listens at the URL', async () => {
    const bus = createRedisEventBus({ url: 'redis://127.0.0.1:1/0?prefix=x:', connectTimeoutMs: 200 });
    buses.push(bus);
    const started = Date.now();
    await expect(bus.ready()).rejects.toMatchObject({ code: 'unavailable', message: expect.stringContaining('127.0.0.1:1') });
    expect(Date.now() - started).toBeLessThan(3000);
  });
});
