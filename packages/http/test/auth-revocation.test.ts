/**
 * Tokens bound to accounts, and login throttling that cannot lock anyone out, through real
 * HTTP on every host (standalone, node:http, Express, Fastify) against the real core on a real
 * SQLite file. Client addresses are simulated with X-Forwarded-For under `trustProxy`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createSentinelApi, type SentinelApi } from '@sentinel/api-core';
import { HOSTS, mountApi } from '@sentinel/test-support/hosts';

const ADMIN_PASSWORD = 'admin-password-123';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

describe.each(HOSTS)('tokens and login throttling on %s', (hostName) => {
  let dir: string;
  let api: SentinelApi;
  let base: string;
  let close: () => Promise<void>;
  let adminToken: string;

  async function call(method: string, path: string, options: { token?: string | null; body?: unknown; from?: string } = {}): Promise<Reply> {
    const headers: Record<string, string> = {};
    const token = options.token === undefined ? adminToken : options.token;
    if (token) headers.authorization = `Bearer ${token}`;
    if (options.from) headers['x-forwarded-for'] = options.from;
    let body: string | undefined;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['content-type'] = 'application/json';
    }
    const res = await request(`${base}${path}`, { method: method as 'GET', headers, body });
    const text = await res.body.text();
    return { status: res.statusCode, headers: res.headers, body: text && String(res.headers['content-type']).includes('json') ? JSON.parse(text) : text };
  }

  function login(username: string, password: string, from = '192.0.2.200'): Promise<Reply> {
    return call('POST', '/v1/auth/login', { token: null, body: { username, password }, from });
  }

  async function tokenFor(username: string, password: string): Promise<string> {
    const r = await login(username, password);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body.token as string;
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-auth-http-'));
    api = await createSentinelApi({ dataDir: dir, tokenSecret: 'auth-http-secret-0123456789abcdef', adminPassword: ADMIN_PASSWORD });
    const mounted = await mountApi(hostName, api, { logRequests: false, trustProxy: true });
    base = mounted.baseUrl;
    close = mounted.close;
    adminToken = await tokenFor('admin', ADMIN_PASSWORD);
  });

  afterAll(async () => {
    await close?.();
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a token issued before a password change (401 unauthorized); a new login works', async () => {
    expect((await call('POST', '/v1/users', { body: { username: 'alice', password: 'alice-password' } })).status).toBe(201);
    const old = await tokenFor('alice', 'alice-password');
    expect((await call('GET', '/v1/auth/me', { token: old })).status).toBe(200);
    const changed = await call('PUT', '/v1/users/alice/password', { token: old, body: { current_password: 'alice-password', new_password: 'alice-password-2' } });
    expect(changed.status).toBe(204);
    const refused = await call('GET', '/v1/agents', { token: old });
    expect(refused.status).toBe(401);
    expect(refused.body).toEqual({ error: 'token revoked', code: 'unauthorized', docs: '/docs/errors#unauthorized' });
    const fresh = await tokenFor('alice', 'alice-password-2');
    expect((await call('GET', '/v1/auth/me', { token: fresh })).body).toMatchObject({ username: 'alice' });

    // An admin reset revokes too.
    expect((await call('PUT', '/v1/users/alice/password', { body: { new_password: 'alice-password-3' } })).status).toBe(204);
    expect((await call('GET', '/v1/agents', { token: fresh })).status).toBe(401);
    expect((await call('GET', '/v1/agents', { token: await tokenFor('alice', 'alice-password-3') })).status).toBe(200);
  });

  it('refuses the token of a deleted user after the name is created again, and it never sees the new account\'s agents', async () => {
    expect((await call('POST', '/v1/users', { body: { username: 'bob', password: 'bob-password-1' } })).status).toBe(201);
    const old = await tokenFor('bob', 'bob-password-1');
    expect((await call('GET', '/v1/agents', { token: old })).status).toBe(200);
    expect((await call('DELETE', '/v1/users/bob')).status).toBe(204);
    expect((await call('POST', '/v1/users', { body: { username: 'bob', password: 'bob-password-2' } })).status).toBe(201);
    const fresh = await tokenFor('bob', 'bob-password-2');
    const created = await call('POST', '/v1/agents', { token: fresh, body: { image: 'sentinel/echo:latest', name: 'new-bobs-agent' } });
    expect(created.status).toBe(201);

    const refused = await call('GET', '/v1/agents', { token: old });
    expect(refused.status).toBe(401);
    expect(refused.body).toEqual({ error: 'user no longer exists', code: 'unauthorized', docs: '/docs/errors#unauthorized' });
    expect((await call('GET', `/v1/agents/${created.body.id}`, { token: old })).status).toBe(401);
    const mine = await call('GET', '/v1/agents', { token: fresh });
    expect(mine.status).toBe(200);
    expect(mine.body.agents.map((agent: { id: string }) => agent.id)).toEqual([created.body.id]);
  });

  it('a storm of 50 wrong passwords for admin from one address gets 429s; the right one from another address succeeds at once', async () => {
    const statuses: number[] = [];
    let lastRefusal: Reply | undefined;
    for (let i = 0; i < 50; i++) {
      const r = await login('admin', `wrong-password-${i}`, '198.51.100.66');
      statuses.push(r.status);
      if (r.status === 429) lastRefusal = r;
    }
    expect(statuses.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
    // Past the free failures the backoff (1 s, 2 s, …) lets at most one more guess through during the storm.
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(6);
    expect(statuses.at(-1)).toBe(429);
    expect(lastRefusal?.body).toEqual({ error: expect.stringMatching(/^too many failed logins; try again in \d+ s$/), code: 'rate_limited', docs: '/docs/errors#rate_limited' });
    expect(Number(lastRefusal?.headers['retry-after'])).toBeGreaterThan(0);
    // The storm's address learns nothing, not even from the right password.
    expect((await login('admin', ADMIN_PASSWORD, '198.51.100.66')).status).toBe(429);

    const started = Date.now();
    const clean = await login('admin', ADMIN_PASSWORD, '203.0.113.77');
    expect(clean.status).toBe(200);
    expect(Date.now() - started).toBeLessThan(1000);
    expect((await call('GET', '/v1/users', { token: clean.body.token as string })).status).toBe(200);
  });
});
