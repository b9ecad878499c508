/**
 * User management an admin can do (PATCH /v1/users/{name}: role, can_push, disabled, quotas)
 * and the agents quota, through real HTTP on every host, against the real core on both stores
 * (a SQLite file; a fresh PostgreSQL database).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createSentinelApi, type SentinelApi } from '@sentinel/api-core';
import { HOSTS, mountApi } from '@sentinel/test-support/hosts';
import { createTestDatabase, type TestDatabase } from '@sentinel/test-support/postgres';

const ADMIN_PASSWORD = 'admin-password-123';
const UNLIMITED = { tokens_per_day: null, turns_per_day: null, concurrent_agents: null };

interface Reply {
  status: number;
  body: any;
}

const CASES = HOSTS.flatMap((host) => (['sqlite', 'postgres'] as const).map((store) => [host, store] as const));

describe.each(CASES)('user management on %s with %s', (hostName, storeKind) => {
  let dir: string;
  let database: TestDatabase | undefined;
  let api: SentinelApi;
  let base: string;
  let close: () => Promise<void>;
  let adminToken: string;

  async function call(method: string, path: string, options: { token?: string | null; body?: unknown } = {}): Promise<Reply> {
    const headers: Record<string, string> = {};
    const token = options.token === undefined ? adminToken : options.token;
    if (token) headers.authorization = `Bearer ${token}`;
    let body: string | undefined;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['content-type'] = 'application/json';
    }
    const res = await request(`${base}${path}`, { method: method as 'GET', headers, body });
    const text = await res.body.text();
    return { status: res.statusCode, body: text && String(res.headers['content-type']).includes('json') ? JSON.parse(text) : text };
  }

  async function tokenFor(username: string, password: string): Promise<string> {
    const r = await call('POST', '/v1/auth/login', { token: null, body: { username, password } });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body.token as string;
  }

  async function newUser(username: string, extra: Record<string, unknown> = {}): Promise<string> {
    expect((await call('POST', '/v1/users', { body: { username, password: `${username}-password`, ...extra } })).status).toBe(201);
    return tokenFor(username, `${username}-password`);
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-users-http-'));
    if (storeKind === 'postgres') database = await createTestDatabase();
    api = await createSentinelApi({
      dataDir: dir,
      tokenSecret: 'users-http-secret-0123456789abcdef',
      adminPassword: ADMIN_PASSWORD,
      ...(database ? { storeUrl: database.url } : {}),
    });
    const mounted = await mountApi(hostName, api, { logRequests: false });
    base = mounted.baseUrl;
    close = mounted.close;
    adminToken = await tokenFor('admin', ADMIN_PASSWORD);
  }, 30_000);

  afterAll(async () => {
    await close?.();
    await api?.close();
    await database?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('shows disabled and quotas in user resources and the list', async () => {
    const created = await call('POST', '/v1/users', { body: { username: 'viewer', password: 'viewer-password' } });
    expect(created.body).toMatchObject({ username: 'viewer', disabled: false, quotas: UNLIMITED });
    const listed = await call('GET', '/v1/users');
    expect(listed.body.users.find((u: any) => u.username === 'viewer')).toMatchObject({ disabled: false, quotas: UNLIMITED });
  });

  it('PATCHes each field and answers the updated user; absent fields stay, a quota goes back to null', async () => {
    await newUser('patchy');
    const role = await call('PATCH', '/v1/users/patchy', { body: { role: 'admin' } });
    expect(role).toMatchObject({ status: 200, body: { username: 'patchy', role: 'admin', can_push: false, disabled: false, quotas: UNLIMITED } });
    expect((await call('PATCH', '/v1/users/patchy', { body: { can_push: true } })).body).toMatchObject({ role: 'admin', can_push: true });
    const quotas = await call('PATCH', '/v1/users/patchy', { body: { quotas: { tokens_per_day: 5000, turns_per_day: 20 } } });
    expect(quotas.body).toMatchObject({ role: 'admin', can_push: true, quotas: { tokens_per_day: 5000, turns_per_day: 20, concurrent_agents: null } });
    const more = await call('PATCH', '/v1/users/patchy', { body: { quotas: { concurrent_agents: 2, tokens_per_day: null } } });
    expect(more.body.quotas).toEqual({ tokens_per_day: null, turns_per_day: 20, concurrent_agents: 2 });
    expect((await call('PATCH', '/v1/users/patchy', { body: { disabled: true } })).body).toMatchObject({ disabled: true });
    expect((await call('PATCH', '/v1/users/patchy', { body: { disabled: false, role: 'user' } })).body).toMatchObject({ disabled: false, role: 'user' });
    expect((await call('GET', '/v1/users')).body.users.find((u: any) => u.username === 'patchy')).toMatchObject({
      role: 'user',
      can_push: true,
      disabled: false,
      quotas: { tokens_per_day: null, turns_per_day: 20, concurrent_agents: 2 },
    });
  });

  it('refuses invalid bodies (400), unknown users (404) and non-admins (403)', async () => {
    const userToken = await newUser('plain');
    for (const body of [
      {},
      { quotas: {} },
      { role: 'root' },
      { can_push: 'yes' },
      { disabled: 1 },
      { quotas: { turns_per_day: -1 } },
      { quotas: { turns_per_day: 1.5 } },
      { quotas: { tokens_per_month: 10 } },
      { password: 'x-new-password' },
      { username: 'renamed' },
    ]) {
      const r = await call('PATCH', '/v1/users/plain', { body });
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.code).toBe('invalid_request');
    }
    expect((await call('PATCH', '/v1/users/nobody', { body: { can_push: true } })).status).toBe(404);
    expect((await call('PATCH', '/v1/users/plain', { token: userToken, body: { role: 'admin' } })).status).toBe(403);
    expect((await call('GET', '/v1/users', { token: userToken })).status).toBe(403);
  });

  it('refuses to demote or disable the last enabled admin (409), and allows it once there is another', async () => {
    for (const body of [{ role: 'user' }, { disabled: true }]) {
      const r = await call('PATCH', '/v1/users/admin', { body });
      expect(r.status).toBe(409);
      expect(r.body).toMatchObject({ code: 'conflict', error: expect.stringContaining('last enabled admin') });
    }
    const deputy = await newUser('deputy', { role: 'admin' });
    // A disabled admin does not count: disable the deputy, and admin is the last again.
    expect((await call('PATCH', '/v1/users/deputy', { body: { disabled: true } })).status).toBe(200);
    expect((await call('PATCH', '/v1/users/admin', { body: { role: 'user' } })).status).toBe(409);
    expect((await call('PATCH', '/v1/users/deputy', { body: { disabled: false } })).status).toBe(200);
    // Now the deputy may demote admin, and admin can no longer demote the deputy (role is read from the store at once).
    expect((await call('PATCH', '/v1/users/admin', { token: deputy, body: { role: 'user' } })).body).toMatchObject({ role: 'user' });
    expect((await call('GET', '/v1/users')).status).toBe(403);
    expect((await call('PATCH', '/v1/users/deputy', { token: deputy, body: { role: 'user' } })).status).toBe(409);
    expect((await call('PATCH', '/v1/users/admin', { token: deputy, body: { role: 'admin' } })).body).toMatchObject({ role: 'admin' });
    expect((await call('GET', '/v1/users')).status).toBe(200);
  });

  it("stops a disabled user's token at once (401 'account disabled'), refuses their login, and lets them back when enabled", async () => {
    const token = await newUser('paused');
    expect((await call('GET', '/v1/agents', { token })).status).toBe(200);
    expect((await call('PATCH', '/v1/users/paused', { body: { disabled: true } })).status).toBe(200);
    const refused = await call('GET', '/v1/agents', { token });
    expect(refused.status).toBe(401);
    expect(refused.body).toMatchObject({ code: 'unauthorized', error: 'account disabled' });
    expect((await call('GET', '/v1/auth/me', { token })).status).toBe(401);
    const login = await call('POST', '/v1/auth/login', { token: null, body: { username: 'paused', password: 'paused-password' } });
    expect(login.status).toBe(401);
    expect(login.body).toMatchObject({ code: 'unauthorized', error: 'account disabled' });
    // A wrong password for a disabled account still says only that the credentials are wrong.
    const wrong = await call('POST', '/v1/auth/login', { token: null, body: { username: 'paused', password: 'not-the-password' } });
    expect(wrong.body).toMatchObject({ code: 'unauthorized', error: 'invalid username or password' });
    expect((await call('PATCH', '/v1/users/paused', { body: { disabled: false } })).status).toBe(200);
    expect((await call('GET', '/v1/agents', { token })).status).toBe(200);
  });

  it('limits the agents a user owns at once (429 quota_exceeded), and shows usage against quota in /v1/auth/me', async () => {
    const token = await newUser('builder');
    expect((await call('PATCH', '/v1/users/builder', { body: { quotas: { concurrent_agents: 2 } } })).status).toBe(200);
    const ids: string[] = [];
    for (const name of ['one', 'two']) {
      const r = await call('POST', '/v1/agents', { token, body: { image: 'sentinel/echo:latest', name } });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      ids.push(r.body.id as string);
    }
    const third = await call('POST', '/v1/agents', { token, body: { image: 'sentinel/echo:latest', name: 'three' } });
    expect(third.status).toBe(429);
    expect(third.body).toMatchObject({ code: 'quota_exceeded', details: { quota: 'concurrent_agents', limit: 2, used: 2 } });
    // Stopped agents still count: they exist and may start again at any moment.
    expect((await call('POST', `/v1/agents/${ids[0]}/stop`, { token })).status).toBe(200);
    expect((await call('POST', '/v1/agents', { token, body: { image: 'sentinel/echo:latest', name: 'three' } })).status).toBe(429);
    const me = await call('GET', '/v1/auth/me', { token });
    expect(me.body).toMatchObject({
      username: 'builder',
      quotas: { tokens_per_day: null, turns_per_day: null, concurrent_agents: 2 },
      usage: { tokens_today: 0, turns_today: 0, agents: 2 },
    });
    expect((await call('DELETE', `/v1/agents/${ids[0]}`, { token })).status).toBe(204);
    expect((await call('POST', '/v1/agents', { token, body: { image: 'sentinel/echo:latest', name: 'three' } })).status).toBe(201);
  });
});
