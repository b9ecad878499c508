/**
 * Agent references like Docker's container references, through the real HTTP transport on every
 * host: the full id, the name, or a unique id prefix, on every `/v1/agents/{id}…` route, within
 * the agents the caller may see. An exact id wins over a name, a name over a prefix; an
 * ambiguous reference is a 409 listing the matches.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createSentinelApi, type AgentRecord, type SentinelApi } from '@sentinel/api-core';
import { HOSTS, mountApi } from '@sentinel/test-support/hosts';

const SECRET = 'references-spec-secret-012345678';
const ADMIN_PASSWORD = 'admin-password-123';

interface Reply {
  status: number;
  body: any;
}

describe.each(HOSTS)('agent references on %s', (hostName) => {
  let dir: string;
  let api: SentinelApi;
  let base: string;
  let close: () => Promise<void>;
  let admin: string;
  let bob: string;
  let carol: string;
  let starterDigest: string;

  async function call(method: string, path: string, token: string, body?: unknown): Promise<Reply> {
    const headers: Record<string, string> = { authorization: `Bearer ${token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await request(`${base}${path}`, { method: method as 'GET', headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    const text = await res.body.text();
    return { status: res.statusCode, body: text && text.startsWith('{') ? JSON.parse(text) : text };
  }

  async function login(username: string, password: string): Promise<string> {
    const res = await request(`${base}/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }) });
    expect(res.statusCode).toBe(200);
    return ((await res.body.json()) as { token: string }).token;
  }

  /** An agent with a chosen id, so prefixes collide on purpose (the id is all a prefix depends on). */
  async function agentWithId(id: string, owner: string, name: string): Promise<AgentRecord> {
    const now = new Date().toISOString();
    const record: AgentRecord = {
      id,
      name,
      owner,
      image: 'sentinel/echo:latest',
      image_id: starterDigest,
      status: 'running',
      model: 'echo/echo',
      parameters: {},
      environment: {},
      usage_requests: 0,
      usage_tokens: 0,
      created_at: now,
      updated_at: now,
    };
    await api.store.createAgent(record);
    return record;
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-references-'));
    api = await createSentinelApi({ dataDir: dir, tokenSecret: SECRET, adminPassword: ADMIN_PASSWORD });
    await api.users.create({ username: 'bob', password: 'bob-password-1' });
    await api.users.create({ username: 'carol', password: 'carol-password' });
    starterDigest = (await api.images.get('sentinel/echo:latest')).id;
    const mounted = await mountApi(hostName, api, { logRequests: false });
    base = mounted.baseUrl;
    close = mounted.close;
    [admin, bob, carol] = await Promise.all([login('admin', ADMIN_PASSWORD), login('bob', 'bob-password-1'), login('carol', 'carol-password')]);
  });

  afterAll(async () => {
    await close?.();
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('GET, logs, stop, start and DELETE take the name or a unique id prefix as well as the id', async () => {
    const created = await call('POST', '/v1/agents', bob, { image: 'sentinel/echo', name: 'helper' });
    expect(created.status).toBe(201);
    const id = created.body.id as string;

    for (const ref of [id, 'helper', id.slice(0, 8), id.slice(0, 1)]) {
      const got = await call('GET', `/v1/agents/${encodeURIComponent(ref)}`, bob);
      expect(got.status, ref).toBe(200);
      expect(got.body.id).toBe(id);
    }
    const logs = await call('GET', '/v1/agents/helper/logs', bob);
    expect(logs.status).toBe(200);
    expect(logs.body.agent_id).toBe(id);
    expect(logs.body.logs.map((l: { message: string }) => l.message)).toContain('agent started');
    expect((await call('POST', '/v1/agents/helper/stop', bob)).body).toMatchObject({ id, status: 'stopped' });
    expect((await call('POST', `/v1/agents/${id.slice(0, 6)}/start`, bob)).body).toMatchObject({ id, status: 'running' });
    // The endpoints always carry the id: a name may be reused later by another agent.
    expect(created.body.endpoints.chat).toContain(`/v1/agents/${id}/chat`);

    // Within what the caller may see: carol gets a 404 for bob's agent by every reference,
    // an admin finds it by name (no admin agent has that name).
    for (const ref of [id, 'helper', id.slice(0, 8)]) expect((await call('GET', `/v1/agents/${ref}`, carol)).status, ref).toBe(404);
    expect((await call('GET', '/v1/agents/helper', admin)).body.id).toBe(id);
    expect((await call('DELETE', '/v1/agents/helper', carol)).status).toBe(404);

    expect((await call('DELETE', '/v1/agents/helper', bob)).status).toBe(204);
    expect((await call('GET', `/v1/agents/${id}`, bob)).status).toBe(404);
    expect((await call('GET', '/v1/agents/helper', bob)).status).toBe(404);
  });

  it('names with spaces and unicode are references too', async () => {
    const created = await call('POST', '/v1/agents', bob, { image: 'sentinel/echo', name: 'мой помощник 2' });
    expect(created.status).toBe(201);
    const got = await call('GET', `/v1/agents/${encodeURIComponent('мой помощник 2')}`, bob);
    expect(got.status).toBe(200);
    expect(got.body.id).toBe(created.body.id);
    expect((await call('DELETE', `/v1/agents/${encodeURIComponent('мой помощник 2')}`, bob)).status).toBe(204);
  });

  it('an ambiguous prefix is a 409 conflict listing the matches; more digits resolve it', async () => {
    const one = await agentWithId('deadbeef00000001', 'bob', 'first');
    const two = await agentWithId('deadbeef00000002', 'bob', 'second');
    await agentWithId('deadbeef00000003', 'carol', 'carols');

    const ambiguous = await call('GET', '/v1/agents/deadbeef', bob);
    expect(ambiguous.status).toBe(409);
    expect(ambiguous.body.code).toBe('conflict');
    expect(ambiguous.body.error).toContain('ambiguous');
    // Only what bob may see: carol's agent is neither a match nor mentioned.
    expect(ambiguous.body.details.matches).toEqual(
      expect.arrayContaining([
        { id: one.id, name: 'first', owner: 'bob' },
        { id: two.id, name: 'second', owner: 'bob' },
      ]),
    );
    expect(ambiguous.body.details.matches).toHaveLength(2);
    // The same on every agent route.
    expect((await call('POST', '/v1/agents/deadbeef/stop', bob)).status).toBe(409);
    expect((await call('GET', '/v1/agents/deadbeef/logs', bob)).status).toBe(409);
    expect((await call('DELETE', '/v1/agents/deadbeef', bob)).status).toBe(409);
    expect((await call('GET', '/v1/agents/deadbeef000000', bob)).status).toBe(409);
    expect((await call('GET', '/v1/agents/deadbeef00000002', bob)).body.id).toBe(two.id);
    // For carol the same prefix is unique.
    expect((await call('GET', '/v1/agents/deadbeef', carol)).body.id).toBe('deadbeef00000003');
    // An admin sees all three.
    expect((await call('GET', '/v1/agents/deadbeef', admin)).body.details.matches).toHaveLength(3);
    // Prefixes are hex; anything else is a name only.
    expect((await call('GET', '/v1/agents/deadbeeg', bob)).status).toBe(404);
  });

  it('an exact id wins over a name, and a name over an id prefix', async () => {
    const target = await agentWithId('cafe000000000001', 'bob', 'target');
    // An agent whose name is another agent's id, and one whose name is a prefix of that id.
    const impostor = await agentWithId('0123456789abcdef', 'bob', target.id);
    const named = await agentWithId('0123456789abcd00', 'bob', 'cafe');

    expect((await call('GET', `/v1/agents/${target.id}`, bob)).body.id).toBe(target.id);
    expect((await call('GET', `/v1/agents/${impostor.id}`, bob)).body.id).toBe(impostor.id);
    expect((await call('GET', '/v1/agents/cafe', bob)).body.id).toBe(named.id);
    expect((await call('GET', '/v1/agents/caf', bob)).body.id).toBe(target.id);
    // A name used by two owners is ambiguous for an admin; an admin's own agent of that name wins.
    await agentWithId('beef000000000001', 'carol', 'twin');
    await agentWithId('beef000000000002', 'bob', 'twin');
    const twins = await call('GET', '/v1/agents/twin', admin);
    expect(twins.status).toBe(409);
    expect(twins.body.details.matches.map((m: { owner: string }) => m.owner).sort()).toEqual(['bob', 'carol']);
    expect((await call('GET', '/v1/agents/twin', bob)).body.id).toBe('beef000000000002');
    await agentWithId('beef000000000003', 'admin', 'twin');
    expect((await call('GET', '/v1/agents/twin', admin)).body.id).toBe('beef000000000003');
  });

  it('refuses traversal-looking references with a 4xx before any lookup', async () => {
    for (const ref of ['..%2F..%2Fetc%2Fpasswd', '%2e%2e', '.hidden', ' leading-space']) {
      const r = await call('GET', `/v1/agents/${ref.startsWith(' ') ? encodeURIComponent(ref) : ref}`, bob);
      expect(r.status, ref).toBeGreaterThanOrEqual(400);
      expect(r.status, ref).toBeLessThan(500);
    }
  });

  it('the events stream (SSE / NDJSON) takes a name too', async () => {
    const created = await call('POST', '/v1/agents', bob, { image: 'sentinel/echo', name: 'streamer' });
    const controller = new AbortController();
    const res = await request(`${base}/v1/agents/streamer/events?since=0`, { headers: { authorization: `Bearer ${bob}` }, signal: controller.signal });
    expect(res.statusCode).toBe(200);
    let text = '';
    for await (const chunk of res.body) {
      text += String(chunk);
      if (text.includes('\n') && text.split('\n').filter(Boolean).length >= 2) break;
    }
    controller.abort();
    const frames = text.split('\n').filter(Boolean).map((line) => JSON.parse(line) as { agent_id?: string; event_type?: string });
    expect(frames[0]).toMatchObject({ event_type: 'agent_status', agent_id: created.body.id });
    expect(frames[1]?.agent_id).toBe(created.body.id);
  });
});
