/**
 * The events stream without `since` on the Redis bus: an event another instance published
 * before this instance's SUBSCRIBE took effect never arrives on the bus here. The stream must
 * still deliver it, from the Store, when the bus says messages may have been missed (once Redis
 * confirmed the SUBSCRIBE), even when no later event comes to reveal the gap.
 *
 * The window is provoked deterministically: the instance runs on a real SQLite store behind a
 * Proxy whose getAgent, when a subscriber starts, first writes the event straight into the
 * Store (as the other instance did; its publish is the one this instance missed).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSentinelApi, openSqliteStore, type AgentEventsService, type FrameSink, type Outgoing, type SentinelApi, type Store } from '@sentinel/api-core';
import { assertRedisRunning, busUrl, deletePrefix, uniquePrefix } from '@sentinel/test-support/redis';

const ADMIN = { username: 'admin', role: 'admin' } as const;
const ORIGIN = { secure: false, host: 'localhost' };

describe('events without since on the Redis bus', () => {
  const prefix = uniquePrefix();
  let dir: string;
  let inner: Store;
  let api: SentinelApi;
  let armed: { agentId: string; fired: boolean } | undefined;

  beforeAll(async () => {
    await assertRedisRunning();
    dir = mkdtempSync(join(tmpdir(), 'sentinel-redis-race-'));
    inner = await openSqliteStore({ path: join(dir, 'shared.db') });
    const store = new Proxy(inner, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver) as unknown;
        if (typeof value !== 'function') return value;
        if (property !== 'getAgent') return (value as (...args: unknown[]) => unknown).bind(target);
        return async (agentId: string) => {
          const hook = armed;
          if (hook && !hook.fired && hook.agentId === agentId && (api.events as AgentEventsService).subscriptionCount(agentId) > 0) {
            hook.fired = true;
            await target.appendEvents(agentId, [{ agent_id: agentId, event_type: 'elsewhere', timestamp: new Date().toISOString(), content: 'from another instance', data: {} }]);
          }
          return target.getAgent(agentId);
        };
      },
    });
    api = await createSentinelApi({ dataDir: dir, store, tokenSecret: 'redis-race-secret-0123456789abcdef', adminPassword: 'admin-password-1', busUrl: busUrl(prefix) });
  });

  afterAll(async () => {
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
    await deletePrefix(prefix);
  });

  it('delivers the event the bus missed while subscribing, from the Store, with no later event needed', async () => {
    const agentId = (await api.agents.create(ADMIN, { image: 'sentinel/echo:latest', name: 'redis-race' }, ORIGIN)).id;
    const expectedSeq = (await inner.lastEventSeq(agentId)) + 1;
    const frames: Record<string, unknown>[] = [];
    const sink: FrameSink = { send: (out: Outgoing) => void frames.push(JSON.parse(out.json) as Record<string, unknown>), close: () => undefined };
    armed = { agentId, fired: false };
    const subscription = (await api.events.prepare(ADMIN, agentId)).open(sink);
    const deadline = Date.now() + 5000;
    while (!frames.some((f) => f.seq === expectedSeq)) {
      if (Date.now() > deadline) throw new Error(`event ${expectedSeq} never arrived; got ${JSON.stringify(frames)}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(armed.fired).toBe(true);
    expect(frames.map((f) => [f.event_type, f.seq])).toEqual([
      ['agent_status', undefined],
      ['elsewhere', expectedSeq],
    ]);
    subscription.close();
  });
});
