import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLocalEventBus, createSentinelApi, isSentinelError, parseAgentDefinition, type AgentBusMessage, type Principal, type RequestOrigin, type SentinelApi } from '@sentinel/api-core';
import { parseLogSince } from '../src/agents/log-query.js';

async function rejection(promise: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await promise;
  } catch (err) {
    expect(isSentinelError(err)).toBe(true);
    return err as { code: string; message: string };
  }
  throw new Error('expected a rejection');
}

const origin: RequestOrigin = { secure: false, host: 'localhost:8080' };
const admin: Principal = { username: 'admin', role: 'admin' };
const alice: Principal = { username: 'alice', role: 'user' };
const bob: Principal = { username: 'bob', role: 'user' };

describe('AgentService on SQLite', () => {
  let dir: string;
  let api: SentinelApi;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-agents-'));
    api = await createSentinelApi({ dataDir: dir, adminPassword: 'admin-password-1' });
    await api.users.create({ username: 'alice', password: 'alice-password' });
    await api.users.create({ username: 'bob', password: 'bob-password-1' });
    await api.images.build(parseAgentDefinition({ name: 'acme/tuned', tag: 'v1', model: { provider: 'echo', name: 'echo', parameters: { temperature: 0.2, top_p: 0.9 } } }));
  });

  afterAll(async () => {
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates a running agent with the documented shape; environment values never come back', async () => {
    const agent = await api.agents.create(
      alice,
      { image: 'acme/tuned:v1', parameters: { temperature: 0.7 }, environment: { ZED: 'z', API_KEY: 'sk-secret' } },
      { secure: true, host: 'api.example.com' },
    );
    expect(agent.id).toMatch(/^[0-9a-f]{16}$/);
    expect(agent).toMatchObject({
      name: `tuned-${agent.id.slice(0, 6)}`,
      image: 'acme/tuned:v1',
      status: 'running',
      owner: 'alice',
      model: 'echo/echo',
      parameters: { temperature: 0.7, top_p: 0.9 },
      environment: ['API_KEY', 'ZED'],
      api_usage: { requests: 0, tokens: 0 },
      endpoints: { chat: `wss://api.example.com/v1/agents/${agent.id}/chat`, events: `wss://api.example.com/v1/agents/${agent.id}/events` },
    });
    expect(agent.image_id).toBe((await api.images.get('acme/tuned:v1')).id);
    expect(JSON.stringify(agent)).not.toContain('sk-secret');
    // The secret is kept for the runtime, only never returned.
    expect((await api.store.getAgent(agent.id))?.environment.API_KEY).toBe('sk-secret');
  });

  it('records the image the client meant: name → name:latest, digest → the image tag', async () => {
    const byName = await api.agents.create(alice, { image: 'sentinel/echo', name: 'by name' }, origin);
    expect(byName.image).toBe('sentinel/echo:latest');
    const starter = await api.images.get('sentinel/echo');
    const byDigest = await api.agents.create(alice, { image: starter.short_id, name: 'by digest' }, origin);
    expect(byDigest.image).toBe('sentinel/echo:latest');
    expect(byDigest.image_id).toBe(starter.id);
    expect(byDigest.endpoints.chat).toBe(`ws://localhost:8080/v1/agents/${byDigest.id}/chat`);
  });

  it('unknown image is a 404 naming it; a malformed one is a 400; a duplicate name is a 409', async () => {
    expect(await rejection(api.agents.create(alice, { image: 'acme/missing:v9' }, origin))).toMatchObject({
      code: 'not_found',
      message: 'image "acme/missing:v9" not found',
    });
    expect((await rejection(api.agents.create(alice, { image: 'NOT VALID' }, origin))).code).toBe('invalid_request');
    expect((await rejection(api.agents.create(alice, { image: 'sentinel/echo', name: '-bad' }, origin))).code).toBe('invalid_request');
    await api.agents.create(alice, { image: 'sentinel/echo', name: 'Été 2026' }, origin);
    const dup = await rejection(api.agents.create(alice, { image: 'sentinel/echo', name: 'Été 2026' }, origin));
    expect(dup.code).toBe('conflict');
    expect(dup.message).toContain('Été 2026');
    // Names are unique per owner, not globally.
    expect((await api.agents.create(bob, { image: 'sentinel/echo', name: 'Été 2026' }, origin)).owner).toBe('bob');
  });

  it('tenancy: users see only their own agents (another user\'s is a 404); admins see all', async () => {
    const mine = await api.agents.create(alice, { image: 'sentinel/echo', name: 'tenancy-a' }, origin);
    const theirs = await api.agents.create(bob, { image: 'sentinel/echo', name: 'tenancy-b' }, origin);

    const aliceList = await api.agents.list(alice, origin);
    expect(aliceList.every((a) => a.owner === 'alice')).toBe(true);
    expect(aliceList.map((a) => a.id)).toContain(mine.id);
    expect(aliceList.map((a) => a.id)).not.toContain(theirs.id);
    const all = (await api.agents.list(admin, origin)).map((a) => a.id);
    expect(all).toEqual(expect.arrayContaining([mine.id, theirs.id]));

    for (const attempt of [api.agents.get(alice, theirs.id, origin), api.agents.delete(alice, theirs.id), api.agents.logs(alice, theirs.id)]) {
      expect(await rejection(attempt)).toMatchObject({ code: 'not_found', message: `agent "${theirs.id}" not found` });
    }
    expect((await api.agents.get(bob, theirs.id, origin)).name).toBe('tenancy-b');
    expect((await api.agents.get(admin, theirs.id, origin)).owner).toBe('bob');
    await api.agents.delete(admin, theirs.id);
    expect((await rejection(api.agents.get(bob, theirs.id, origin))).code).toBe('not_found');
  });

  it('journals real created/started lines and sequenced agent_status events', async () => {
    const agent = await api.agents.create(alice, { image: 'acme/tuned:v1', name: 'journaled' }, origin);
    const short = agent.image_id.slice(7, 19);
    const logs = await api.agents.logs(alice, agent.id);
    expect(logs.map((l) => l.message)).toEqual([`agent created from image acme/tuned:v1 (${short})`, 'agent started']);
    expect(logs.map((l) => l.seq)).toEqual([logs[0]!.seq, logs[0]!.seq + 1]);
    expect(logs.every((l) => l.agent_id === agent.id && l.level === 'info')).toBe(true);

    const events = await api.store.listEvents(agent.id, 0);
    expect(events.map((e) => [e.seq, e.event_type, e.data.status])).toEqual([
      [1, 'agent_status', 'created'],
      [2, 'agent_status', 'running'],
    ]);
    expect(events[1]).toMatchObject({
      content: 'Agent journaled is running',
      data: { agent_id: agent.id, status: 'running', memory: null, api_usage: { requests: 0, tokens: 0 } },
    });
  });

  it('logs filter by since (RFC 3339, unix seconds, durations), tail and level', async () => {
    const agent = await api.agents.create(alice, { image: 'sentinel/echo', name: 'filtered' }, origin);
    await api.journal.log(agent.id, 'warn', 'disk almost full', { percent: 93 });
    await api.journal.log(agent.id, 'debug', 'noise');
    const all = await api.agents.logs(alice, agent.id, { tail: 'all' });
    expect(all.map((l) => l.message)).toEqual([expect.stringMatching(/^agent created from image sentinel\/echo:latest/), 'agent started', 'disk almost full', 'noise']);
    expect((await api.agents.logs(alice, agent.id, { tail: 2 })).map((l) => l.message)).toEqual(['disk almost full', 'noise']);
    expect((await api.agents.logs(alice, agent.id, { tail: 0 })).length).toBe(0);
    const warn = await api.agents.logs(alice, agent.id, { level: 'warn' });
    expect(warn).toHaveLength(1);
    expect(warn[0]).toMatchObject({ level: 'warn', message: 'disk almost full', fields: { percent: 93 } });
    expect((await api.agents.logs(alice, agent.id, { level: 'info', tail: 1 })).map((l) => l.message)).toEqual(['disk almost full']);
    expect((await api.agents.logs(alice, agent.id, { since: '10m' })).length).toBe(4);
    expect((await api.agents.logs(alice, agent.id, { since: '1h30m' })).length).toBe(4);
    expect((await api.agents.logs(alice, agent.id, { since: String(Math.floor(Date.now() / 1000) + 3600) })).length).toBe(0);
    expect((await api.agents.logs(alice, agent.id, { since: new Date(Date.now() + 60_000).toISOString() })).length).toBe(0);
    expect((await api.agents.logs(alice, agent.id, { since: '2020-01-01T00:00:00Z' })).length).toBe(4);
    for (const since of ['yesterday', '10x', '-5m', '2024-13-45T99:00:00Z']) {
      expect((await rejection(api.agents.logs(alice, agent.id, { since }))).code).toBe('invalid_request');
    }
    expect((await rejection(api.agents.logs(alice, agent.id, { tail: -1 }))).code).toBe('invalid_request');
  });

  it('delete stops the agent (seen live on the bus), removes it with its history, then announces it', async () => {
    const agent = await api.agents.create(alice, { image: 'sentinel/echo', name: 'doomed' }, origin);
    const seen: AgentBusMessage[] = [];
    const unsubscribe = api.bus.subscribe(agent.id, (m) => seen.push(m));
    await api.agents.delete(alice, agent.id);
    unsubscribe();
    expect(seen.map((m) => (m.kind === 'log' ? `log:${m.log.message}` : m.kind === 'event' ? `event:${m.event.data.status}` : m.kind))).toEqual([
      'log:agent stopped',
      'event:stopped',
      'deleted',
    ]);
    const stoppedEvent = seen[1];
    expect(stoppedEvent?.kind === 'event' && stoppedEvent.event.seq).toBe(3);
    expect((await rejection(api.agents.get(alice, agent.id, origin))).code).toBe('not_found');
    expect((await rejection(api.agents.logs(alice, agent.id))).code).toBe('not_found');
    expect(await api.store.listLogs(agent.id)).toEqual([]);
    expect(await api.store.listEvents(agent.id, 0)).toEqual([]);
    expect((await rejection(api.agents.delete(alice, agent.id))).code).toBe('not_found');
  });
});

describe('parseLogSince', () => {
  const now = Date.parse('2026-03-01T12:00:00.000Z');
  it('reads RFC 3339, unix seconds and Docker-style durations', () => {
    expect(parseLogSince('2026-03-01T10:00:00+01:00', now)).toBe('2026-03-01T09:00:00.000Z');
    expect(parseLogSince('2026-03-01', now)).toBe('2026-03-01T00:00:00.000Z');
    expect(parseLogSince('1700000000', now)).toBe('2023-11-14T22:13:20.000Z');
    expect(parseLogSince('1700000000.5', now)).toBe('2023-11-14T22:13:20.500Z');
    expect(parseLogSince('90s', now)).toBe('2026-03-01T11:58:30.000Z');
    expect(parseLogSince('1h30m', now)).toBe('2026-03-01T10:30:00.000Z');
    expect(parseLogSince('1.5h', now)).toBe('2026-03-01T10:30:00.000Z');
    expect(parseLogSince('250ms', now)).toBe('2026-03-01T11:59:59.750Z');
    expect(() => parseLogSince('10 m', now)).toThrow(/invalid "since"/);
  });
});

describe('local event bus', () => {
  it('delivers per agent, isolates a throwing subscriber, unsubscribes, and goes quiet when closed', async () => {
    const bus = createLocalEventBus();
    const a: AgentBusMessage[] = [];
    const b: AgentBusMessage[] = [];
    const offBad = bus.subscribe('one', () => {
      throw new Error('subscriber bug');
    });
    const offA = bus.subscribe('one', (m) => a.push(m));
    bus.subscribe('two', (m) => b.push(m));
    const message: AgentBusMessage = { kind: 'deleted', agent_id: 'one' };
    expect(() => bus.publish('one', message)).not.toThrow();
    expect(a).toEqual([message]);
    expect(b).toEqual([]);
    offA();
    offA();
    offBad();
    bus.publish('one', message);
    expect(a).toHaveLength(1);
    await bus.close();
    bus.publish('two', { kind: 'deleted', agent_id: 'two' });
    expect(b).toEqual([]);
  });
});

describe('AgentService default names', () => {
  it('falls back to the whole id when a generated name is already taken, instead of refusing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sentinel-agent-names-'));
    const { openSqliteStore, SentinelError } = await import('@sentinel/api-core');
    const inner = await openSqliteStore({ path: join(dir, 'sentinel.db') });
    let collisions = 0;
    // The Store as the service sees it, except that the first generated (6-hex) name collides,
    // as two unnamed agents of one owner eventually do by the birthday bound.
    const store = new Proxy(inner, {
      get(target, property) {
        if (property === 'createAgent') {
          return async (record: { name: string }) => {
            if (collisions === 0 && /-[0-9a-f]{6}$/.test(record.name)) {
              collisions++;
              throw new SentinelError('conflict', `agent named "${record.name}" already exists`);
            }
            return target.createAgent(record as never);
          };
        }
        const value = Reflect.get(target, property, target) as unknown;
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    const api = await createSentinelApi({ dataDir: dir, store, adminPassword: 'admin-password-1' });
    try {
      const agent = await api.agents.create(admin, { image: 'sentinel/echo:latest' }, origin);
      expect(collisions).toBe(1);
      expect(agent.name).toBe(`echo-${agent.id}`);
      expect(agent.status).toBe('running');
      // A name the client chose still gets its conflict.
      await api.agents.create(admin, { image: 'sentinel/echo:latest', name: 'taken' }, origin);
      expect((await rejection(api.agents.create(admin, { image: 'sentinel/echo:latest', name: 'taken' }, origin))).code).toBe('conflict');
    } finally {
      await api.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
