/**
 * Every REST method of the SDK against a real server on port 0 (SQLite): agents (list, get,
 * create, start, stop, delete), logs and followLogs (a line written after the follow started),
 * images (build from YAML text and from an object), keys, tickets, me; errors as
 * SentinelApiError with the server's status, code and docs; abort of a request and of a stream.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type LogRecord, type SentinelClient } from '@sentinel/api-client';
import { ADMIN_PASSWORD, drain, rejection, startServer, type TestServer } from './server.js';

const SENTINELFILE = `name: alice/greeter
tag: v1
description: Says hello
model: echo/echo
instructions: Greet whoever writes.
tools: [calculator]
`;

describe('the SDK REST namespaces', () => {
  let node: TestServer;
  let admin: SentinelClient;
  let alice: SentinelClient;

  beforeAll(async () => {
    node = await startServer();
    admin = createClient({ baseUrl: node.url });
    await admin.login('admin', ADMIN_PASSWORD);
    await admin.transport.request('POST', '/v1/users', { body: { username: 'alice', password: 'alice-password-123', role: 'user' } });
    alice = createClient({ baseUrl: node.url });
    await alice.login('alice', 'alice-password-123');
  });

  afterAll(async () => {
    await node?.close();
  });

  it('me() names the caller', async () => {
    expect(await alice.me()).toMatchObject({ username: 'alice', role: 'user', can_push: false });
    expect(await admin.me()).toMatchObject({ username: 'admin', role: 'admin' });
  });

  it('images: build from Sentinelfile YAML text and from an object, list, get, delete', async () => {
    const fromYaml = await alice.images.build(SENTINELFILE);
    expect(fromYaml).toMatchObject({ name: 'alice/greeter', tag: 'v1', description: 'Says hello', tools: ['calculator'] });
    const fromObject = await alice.images.build({ name: 'alice/other', tag: 'v2', model: { provider: 'echo', name: 'echo' }, instructions: 'Be brief.' }, { visibility: 'private' });
    expect(fromObject).toMatchObject({ name: 'alice/other', tag: 'v2' });

    const names = (await alice.images.list()).map((image) => `${image.name}:${image.tag}`);
    expect(names).toEqual(expect.arrayContaining(['alice/greeter:v1', 'alice/other:v2', 'sentinel/echo:latest']));
    expect((await alice.images.get('alice/greeter:v1')).id).toBe(fromYaml.id);
    expect((await alice.images.get(fromObject.short_id)).digest).toBe(fromObject.digest);

    await alice.images.delete('alice/other:v2');
    const gone = await rejection(alice.images.get('alice/other:v2'));
    expect(gone).toMatchObject({ status: 404, code: 'not_found', docs: '/docs/errors#not_found' });
  });

  it('image errors: an invalid Sentinelfile is a 400 with details, a sentinel/ build by a user a 403', async () => {
    const invalid = await rejection(alice.images.build('name: alice/broken\nmodel: 12\n'));
    expect(invalid).toMatchObject({ status: 400, code: 'invalid_request', docs: '/docs/errors#invalid_request' });
    expect(invalid.details).toBeDefined();
    const forbidden = await rejection(alice.images.build({ name: 'sentinel/mine', model: 'echo/echo' }));
    expect(forbidden).toMatchObject({ status: 403, code: 'forbidden', docs: '/docs/errors#forbidden' });
  });

  it('agents: create, get by id and name, list, stop, start, delete; a taken name is a 409', async () => {
    const agent = await alice.agents.create({ image: 'sentinel/echo:latest', name: 'sdk-helper', environment: { LANG: 'en' } });
    expect(agent).toMatchObject({ name: 'sdk-helper', image: 'sentinel/echo:latest', owner: 'alice', status: 'running', environment: ['LANG'] });
    expect(agent.endpoints.chat).toBe(`${node.url.replace('http', 'ws')}/v1/agents/${agent.id}/chat`);
    expect((await alice.agents.get('sdk-helper')).id).toBe(agent.id);
    expect((await alice.agents.list()).map((a) => a.id)).toContain(agent.id);
    expect((await admin.agents.list()).map((a) => a.id)).toContain(agent.id);

    const taken = await rejection(alice.agents.create({ image: 'sentinel/echo:latest', name: 'sdk-helper' }));
    expect(taken).toMatchObject({ status: 409, code: 'conflict', docs: '/docs/errors#conflict' });

    expect((await alice.agents.stop(agent.id)).status).toBe('stopped');
    expect((await alice.agents.start(agent.id)).status).toBe('running');
    await alice.agents.delete(agent.id);
    expect(await rejection(alice.agents.get(agent.id))).toMatchObject({ status: 404, code: 'not_found', docs: '/docs/errors#not_found' });
    expect(await rejection(alice.agents.delete(agent.id))).toMatchObject({ status: 404, code: 'not_found' });
  });

  it("another user's agent is a 404, as on every route", async () => {
    const mine = await admin.agents.create({ image: 'sentinel/echo:latest' });
    expect(await rejection(alice.agents.get(mine.id))).toMatchObject({ status: 404, code: 'not_found' });
    expect(await rejection(alice.agents.logs(mine.id))).toMatchObject({ status: 404, code: 'not_found' });
    await admin.agents.delete(mine.id);
  });

  it('logs: the kept lines with tail and level filters', async () => {
    const agent = await alice.agents.create({ image: 'sentinel/echo:latest' });
    await node.api.journal.log(agent.id, 'warn', 'careful', { n: 1 });
    await node.api.journal.log(agent.id, 'error', 'broken');
    const all = await alice.agents.logs(agent.id);
    expect(all.map((line) => line.message).slice(-2)).toEqual(['careful', 'broken']);
    expect((await alice.agents.logs(agent.id, { tail: 1 })).map((line) => line.message)).toEqual(['broken']);
    expect((await alice.agents.logs(agent.id, { level: 'warn' })).map((line) => [line.level, line.message])).toEqual([['warn', 'careful'], ['error', 'broken']]);
    expect((await alice.agents.logs(agent.id, { tail: 'all', since: '1h' })).length).toBe(all.length);
    expect(await rejection(alice.agents.logs(agent.id, { since: 'not a time' }))).toMatchObject({ status: 400, code: 'invalid_request' });
    await alice.agents.delete(agent.id);
  });

  it('followLogs: the kept lines, then a line written after the follow started; ends on break', async () => {
    const agent = await alice.agents.create({ image: 'sentinel/echo:latest' });
    const seen: LogRecord[] = [];
    for await (const line of alice.agents.followLogs(agent.id)) {
      seen.push(line);
      if (line.message === 'agent started') await node.api.journal.log(agent.id, 'info', 'written while following', { n: 2 });
      if (line.message === 'written while following') break;
    }
    expect(seen.at(-1)).toMatchObject({ agent_id: agent.id, level: 'info', message: 'written while following', fields: { n: 2 } });
    expect(seen.map((line) => line.seq)).toEqual(seen.map((_, i) => i + 1));
    await alice.agents.delete(agent.id);
  });

  it('followLogs ends without an error on abort, and when the agent is deleted', async () => {
    const agent = await alice.agents.create({ image: 'sentinel/echo:latest' });
    const controller = new AbortController();
    const seen: string[] = [];
    for await (const line of alice.agents.followLogs(agent.id, { level: 'info', signal: controller.signal })) {
      seen.push(line.message);
      if (line.message === 'agent started') controller.abort();
    }
    expect(seen.at(-1)).toBe('agent started');

    // The first kept line proves the follow is open before the delete.
    const lines = alice.agents.followLogs(agent.id);
    const first = await lines.next();
    expect(first.done).toBe(false);
    await alice.agents.delete(agent.id);
    const ended = await drain(lines);
    expect(ended.error).toBeUndefined();
    expect(ended.items.at(-1)?.message).toBe('agent stopped');
  });

  it('followLogs of a missing agent fails with a 404 before any line', async () => {
    const { items, error } = await drain(alice.agents.followLogs('no-such-agent'));
    expect(items).toEqual([]);
    expect(error).toMatchObject({ status: 404, code: 'not_found', docs: '/docs/errors#not_found' });
  });

  it('keys: create (secret once), list, use, revoke; more scopes than the caller holds is a 403', async () => {
    const created = await alice.keys.create({ name: 'ci', scopes: ['agents:read'] });
    expect(created.key).toMatch(/^sk_sentinel_/);
    expect(created).toMatchObject({ name: 'ci', scopes: ['agents:read'], expires_at: null });
    const listed = await alice.keys.list();
    expect(listed.map((key) => key.id)).toContain(created.id);
    expect(listed.find((key) => key.id === created.id)).not.toHaveProperty('key');

    const robot = createClient({ baseUrl: node.url, apiKey: created.key });
    expect(await robot.me()).toMatchObject({ username: 'alice' });
    expect(Array.isArray(await robot.agents.list())).toBe(true);
    const scoped = await rejection(robot.agents.create({ image: 'sentinel/echo:latest' }));
    expect(scoped).toMatchObject({ status: 403, code: 'insufficient_scope', docs: '/docs/errors#insufficient_scope' });

    const tooMuch = await rejection(alice.keys.create({ name: 'root', scopes: ['admin'] }));
    expect(tooMuch).toMatchObject({ status: 403, code: 'insufficient_scope' });

    await alice.keys.revoke(created.id);
    expect((await alice.keys.list()).map((key) => key.id)).not.toContain(created.id);
    expect(await rejection(robot.me())).toMatchObject({ status: 401, code: 'unauthorized' });
  });

  it('tickets: a one-time ticket for an agent channel; a missing agent is a 404', async () => {
    const agent = await alice.agents.create({ image: 'sentinel/echo:latest' });
    const ticket = await alice.tickets.create(agent.id, 'events');
    expect(ticket.ticket.length).toBeGreaterThan(10);
    expect(Date.parse(ticket.expires_at)).toBeGreaterThan(Date.now());
    expect(await rejection(alice.tickets.create('no-such-agent', 'chat'))).toMatchObject({ status: 404, code: 'not_found' });
    await alice.agents.delete(agent.id);
  });

  it('an aborted request fails with aborted, whether before or while it runs', async () => {
    const before = new AbortController();
    before.abort();
    expect(await rejection(alice.agents.list({ signal: before.signal }))).toMatchObject({ status: 0, code: 'aborted' });
    const during = new AbortController();
    const pending = alice.images.build(SENTINELFILE.replace('alice/greeter', 'alice/aborted'), { signal: during.signal });
    during.abort();
    expect(await rejection(pending)).toMatchObject({ status: 0, code: 'aborted' });
    for (const call of [alice.me({ signal: before.signal }), alice.keys.list({ signal: before.signal }), alice.tickets.create('x', 'chat', { signal: before.signal }), alice.registry.search({}, { signal: before.signal })]) {
      expect(await rejection(call)).toMatchObject({ code: 'aborted' });
    }
  });
});
