import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { inProcessTurnLock } from '../src/runtime/turn-lock.js';
import { createRedisEventBus, createRedisTurnLock, type RedisEventBus, type RedisTurnLock } from '@sentinel/api-core/redis';
import { assertRedisRunning, busUrl, deletePrefix, uniquePrefix, withRedis } from '@sentinel/test-support/redis';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('turn locks', () => {
  const prefix = uniquePrefix();
  const opened: { bus: RedisEventBus; lock: RedisTurnLock }[] = [];

  /** One "instance": its own connections, its own lock. */
  async function instance(leaseMs = 15_000): Promise<RedisTurnLock> {
    const bus = createRedisEventBus({ url: busUrl(prefix) });
    await bus.ready();
    const lock = createRedisTurnLock({ bus, leaseMs });
    opened.push({ bus, lock });
    return lock;
  }

  beforeAll(assertRedisRunning);
  afterEach(async () => {
    for (const { bus, lock } of opened.splice(0)) {
      lock.close();
      await bus.close();
    }
  });
  afterAll(() => deletePrefix(prefix));

  it('the in-process lock grants at once and refuses an aborted signal', async () => {
    const lease = await inProcessTurnLock.acquire('a', new AbortController().signal);
    expect(lease.lost.aborted).toBe(false);
    await lease.release();
    const aborted = new AbortController();
    aborted.abort(new Error('gone'));
    await expect(inProcessTurnLock.acquire('a', aborted.signal)).rejects.toThrow('gone');
  });

  it('lets one instance hold an agent at a time and hands over promptly on release', async () => {
    const [a, b] = [await instance(), await instance()];
    const held = await a.acquire('agent-1', new AbortController().signal);
    let bGot = false;
    const waiting = b.acquire('agent-1', new AbortController().signal).then((lease) => {
      bGot = true;
      return lease;
    });
    await sleep(250);
    expect(bGot).toBe(false);
    // Another agent is not blocked.
    await (await b.acquire('agent-2', new AbortController().signal)).release();
    const releasedAt = Date.now();
    await held.release();
    const next = await waiting;
    // Woken by the release notice, not by its next poll.
    expect(Date.now() - releasedAt).toBeLessThan(100);
    expect(await withRedis((c) => c.get(`${prefix}turn-lock:agent-1`))).not.toBeNull();
    await next.release();
    expect(await withRedis((c) => c.get(`${prefix}turn-lock:agent-1`))).toBeNull();
  });

  it('is fair: a waiter on another instance goes before the holder\'s next turn', async () => {
    const [a, b] = [await instance(), await instance()];
    const first = await a.acquire('agent-3', new AbortController().signal);
    const order: string[] = [];
    const bWaits = b.acquire('agent-3', new AbortController().signal).then(async (lease) => {
      order.push('b');
      await sleep(20);
      await lease.release();
    });
    await sleep(50);
    await first.release();
    // A asks again at once, as its runtime does for its next queued message.
    const aAgain = await a.acquire('agent-3', new AbortController().signal);
    order.push('a');
    await aAgain.release();
    await bWaits;
    expect(order).toEqual(['b', 'a']);
  });

  it('stops waiting when the signal aborts, and gives its place up', async () => {
    const [a, b, c] = [await instance(), await instance(), await instance()];
    const held = await a.acquire('agent-4', new AbortController().signal);
    const controller = new AbortController();
    const waiting = b.acquire('agent-4', controller.signal);
    await sleep(50);
    controller.abort(new Error('client cancelled'));
    await expect(waiting).rejects.toThrow('client cancelled');
    const cWaits = c.acquire('agent-4', new AbortController().signal);
    await held.release();
    const started = Date.now();
    await (await cWaits).release();
    // B's claim to be next was dropped, so C did not wait for it to lapse (1 s).
    expect(Date.now() - started).toBeLessThan(500);
  });

  it('expires the lock of a crashed holder after the lease; the holder learns it lost it', async () => {
    const crashed = createRedisEventBus({ url: busUrl(prefix) });
    await crashed.ready();
    const crashedLock = createRedisTurnLock({ bus: crashed, leaseMs: 400 });
    const lease = await crashedLock.acquire('agent-5', new AbortController().signal);
    // The "crash": the holder's connection is gone, so it cannot renew.
    crashed.client.disconnect();
    const b = await instance();
    const started = Date.now();
    const next = await b.acquire('agent-5', new AbortController().signal);
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThan(150);
    expect(waited).toBeLessThan(1500);
    await next.release();
    await new Promise<void>((resolve) => (lease.lost.aborted ? resolve() : lease.lost.addEventListener('abort', () => resolve())));
    expect(lease.lost.aborted).toBe(true);
    await lease.release();
    crashedLock.close();
    await crashed.close();
  });

  it('keeps a lock past its lease while the holder renews it', async () => {
    const [a, b] = [await instance(300), await instance(300)];
    const held = await a.acquire('agent-6', new AbortController().signal);
    const controller = new AbortController();
    const waiting = b.acquire('agent-6', controller.signal);
    await sleep(900);
    expect(held.lost.aborted).toBe(false);
    controller.abort(new Error('enough'));
    await expect(waiting).rejects.toThrow('enough');
    await held.release();
  });

  it('fails with unavailable when Redis cannot be reached', async () => {
    const bus = createRedisEventBus({ url: busUrl(prefix) });
    await bus.ready();
    const lock = createRedisTurnLock({ bus });
    bus.client.disconnect();
    await expect(lock.acquire('agent-7', new AbortController().signal)).rejects.toMatchObject({ code: 'unavailable', message: expect.stringContaining('event bus unavailable') });
    lock.close();
    await bus.close();
  });
});
