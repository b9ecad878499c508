/**
 * User management and quotas across instances: two built `sentinel api` processes on one fresh
 * PostgreSQL database and one Redis (under this run's own key prefix). Disabling a user on A
 * stops their token on B at once (the user-change feed), and the quota counters live in Redis,
 * so a day's turns used on A are used on B too.
 */
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createInstances, type Instance, type Instances } from './instances.js';
import { callJson as call } from './spawn-cli.js';

type Frame = Record<string, any>;

/** Sends one message on a fresh chat socket and resolves with the turn's terminal frame. */
function oneTurn(wsBase: string, agentId: string, token: string, messageId: string): Promise<Frame> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${wsBase}/v1/agents/${agentId}/chat`, { headers: { authorization: `Bearer ${token}` } });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no terminal frame for ${messageId}`));
    }, 15_000);
    ws.on('error', reject);
    ws.on('message', (data) => {
      const frame = JSON.parse(String(data)) as Frame;
      if (frame.event_type === 'connection_established') ws.send(JSON.stringify({ type: 'message', content: `hello ${messageId}`, message_id: messageId }));
      if (frame.message_id === messageId && (frame.type === 'stream_end' || frame.type === 'error')) {
        clearTimeout(timer);
        ws.close();
        resolve(frame);
      }
    });
  });
}

describe('user management and quotas across two instances on PostgreSQL and Redis', () => {
  let instances: Instances;
  let a: Instance;
  let b: Instance;
  let admin: string;

  beforeAll(async () => {
    instances = await createInstances('sentinel-multi-users-');
    [a, b] = await Promise.all([instances.start('a'), instances.start('b')]);
    admin = await instances.login(a);
  }, 60_000);

  afterAll(async () => {
    await instances?.close();
  });

  it("a user disabled on A is refused on B at once (REST 401), and enabled again there too", async () => {
    expect((await call('POST', `${a.url}/v1/users`, admin, { username: 'carol', password: 'carol-password' })).status).toBe(201);
    const carol = await instances.login(b, 'carol', 'carol-password');
    // B has carol's account cached now.
    for (const on of [a, b]) expect((await call('GET', `${on.url}/v1/agents`, carol)).status).toBe(200);
    expect((await call('PATCH', `${a.url}/v1/users/carol`, admin, { disabled: true })).status).toBe(200);
    const deadline = Date.now() + 1000;
    let onB = await call('GET', `${b.url}/v1/agents`, carol);
    while (onB.status === 200 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      onB = await call('GET', `${b.url}/v1/agents`, carol);
    }
    expect(onB).toMatchObject({ status: 401, json: { code: 'unauthorized', error: 'account disabled' } });
    expect((await call('GET', `${a.url}/v1/agents`, carol)).status).toBe(401);
    expect((await call('POST', `${b.url}/v1/auth/login`, undefined, { username: 'carol', password: 'carol-password' })).status).toBe(401);
    expect((await call('PATCH', `${b.url}/v1/users/carol`, admin, { disabled: false })).status).toBe(200);
    const back = Date.now() + 1000;
    let onA = await call('GET', `${a.url}/v1/agents`, carol);
    while (onA.status !== 200 && Date.now() < back) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      onA = await call('GET', `${a.url}/v1/agents`, carol);
    }
    expect(onA.status).toBe(200);
  });

  it('shares the quota counters through Redis: turns used on A count on B', async () => {
    expect((await call('POST', `${a.url}/v1/users`, admin, { username: 'dave', password: 'dave-password' })).status).toBe(201);
    expect((await call('PATCH', `${b.url}/v1/users/dave`, admin, { quotas: { turns_per_day: 2 } })).status).toBe(200);
    const dave = await instances.login(a, 'dave', 'dave-password');
    const created = await call('POST', `${a.url}/v1/agents`, dave, { image: 'sentinel/echo:latest', name: 'shared-quota' });
    expect(created.status, JSON.stringify(created.json)).toBe(201);
    const id = created.json.id as string;
    const first = await oneTurn(a.ws, id, dave, 'q1');
    const second = await oneTurn(b.ws, id, dave, 'q2');
    expect([first.type, second.type]).toEqual(['stream_end', 'stream_end']);
    expect(await oneTurn(a.ws, id, dave, 'q3')).toMatchObject({ type: 'error', code: 'quota_exceeded' });
    expect(await oneTurn(b.ws, id, dave, 'q4')).toMatchObject({ type: 'error', code: 'quota_exceeded' });
    for (const on of [a, b]) {
      const me = await call('GET', `${on.url}/v1/auth/me`, dave);
      expect(me.json).toMatchObject({ quotas: { turns_per_day: 2 }, usage: { turns_today: 2, agents: 1 } });
    }
    // Echo reports its usage: the tokens of the two answered turns are counted once each, seen alike on both.
    const tokens = (first.usage.total_tokens as number) + (second.usage.total_tokens as number);
    expect(tokens).toBeGreaterThan(0);
    const [onA, onB] = await Promise.all([call('GET', `${a.url}/v1/auth/me`, dave), call('GET', `${b.url}/v1/auth/me`, dave)]);
    expect([onA.json.usage.tokens_today, onB.json.usage.tokens_today]).toEqual([tokens, tokens]);
  });
});
