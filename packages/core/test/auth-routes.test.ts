import { createSecretKey } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileRoute, compileValidator, invokeRoute, isSentinelError, openSqliteStore, silentLogger, type CompiledRoute, type Principal, type RouteContext, type Store } from '@sentinel/api-core';
import type { AuditEvent } from '../src/contract/audit.js';
import { AuthService } from '../src/auth/service.js';
import { TokenService } from '../src/auth/tokens.js';
import { UserService } from '../src/auth/users.js';
import { authRoutes } from '../src/routes/auth.js';

let dir: string;
let store: Store;
let routes: Map<string, CompiledRoute>;
let auth: AuthService;
const audited: AuditEvent[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sentinel-auth-routes-'));
  store = await openSqliteStore({ path: join(dir, 'sentinel.db') });
  const users = new UserService({ store });
  auth = new AuthService({ users, tokens: new TokenService({ key: createSecretKey(Buffer.from('routes-test-secret-0123456789', 'utf8')) }) });
  await users.create({ username: 'root', password: 'root-password', role: 'admin' });
  await users.create({ username: 'alice', password: 'alice-password' });
  routes = new Map(authRoutes({ auth, users, audit: { record: (event) => audited.push(event) } }).map((r) => [`${r.method} ${r.path}`, compileRoute(r)]));
});
afterAll(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const root: Principal = { username: 'root', role: 'admin' };
const alice: Principal = { username: 'alice', role: 'user' };

function ctx(principal: Principal | null): RouteContext {
  return { principal, requestId: 'req-1', signal: new AbortController().signal, log: silentLogger, origin: { secure: false, host: 'localhost' }, remoteAddress: '192.0.2.1' };
}

function call(key: string, principal: Principal | null, input: { params?: Record<string, string>; body?: unknown } = {}) {
  const route = routes.get(key);
  if (!route) throw new Error(`no route ${key}`);
  const body = input.body === undefined ? undefined : { format: 'json' as const, text: JSON.stringify(input.body) };
  return invokeRoute(route, { params: input.params ?? {}, query: {}, ...(body ? { body } : {}) }, ctx(principal), (_f, text) => JSON.parse(text));
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => expect.unreachable('should have failed'),
    (e: unknown) => e,
  );
  if (!isSentinelError(err)) throw err;
  return err.code;
}

describe('authRoutes', () => {
  it('declares the seven routes with their auth levels, strict schemas and body caps', () => {
    expect([...routes.values()].map((r) => [r.method, r.path, r.auth, r.status ?? 200])).toEqual([
      ['POST', '/v1/auth/login', 'public', 200],
      ['GET', '/v1/auth/me', 'user', 200],
      ['POST', '/v1/users', 'admin', 201],
      ['GET', '/v1/users', 'admin', 200],
      ['DELETE', '/v1/users/:name', 'admin', 200],
      ['PATCH', '/v1/users/:name', 'admin', 200],
      ['PUT', '/v1/users/:name/password', 'user', 200],
    ]);
    for (const route of routes.values()) {
      expect(route.summary.length).toBeGreaterThan(0);
      if (route.schemas?.body) {
        expect(route.schemas.body.additionalProperties).toBe(false);
        expect(route.maxBodyBytes).toBeLessThanOrEqual(16 * 1024);
      }
      // Response schemas feed the API document: they must compile under ajv strict mode too.
      if (route.schemas?.response) expect(() => compileValidator(route.schemas?.response ?? {}, 'response')).not.toThrow();
    }
  });

  it('logs in, and validates the login body', async () => {
    const res = await call('POST /v1/auth/login', null, { body: { username: 'alice', password: 'alice-password' } });
    expect(res.status).toBe(200);
    const body = res.body as { token: string; username: string; expires: string };
    expect(body.username).toBe('alice');
    expect(await auth.authenticate(`Bearer ${body.token}`)).toMatchObject({ ...alice, via: 'session' });
    const loginResponse = compileValidator(routes.get('POST /v1/auth/login')?.schemas?.response ?? {}, 'response');
    expect(loginResponse(body)).toBe(body);

    expect(await codeOf(call('POST /v1/auth/login', null, { body: { username: 'alice', password: 'wrong-password' } }))).toBe('unauthorized');
    expect(await codeOf(call('POST /v1/auth/login', null, { body: { username: 'alice', password: 'x', admin: true } }))).toBe('invalid_request');
    expect(await codeOf(call('POST /v1/auth/login', null, { body: { username: 'alice', password: 'x'.repeat(1025) } }))).toBe('invalid_request');
    expect(await codeOf(call('POST /v1/auth/login', null, { body: { username: 'alice' } }))).toBe('invalid_request');
    expect(await codeOf(call('POST /v1/auth/login', null))).toBe('invalid_request');
  });

  it('returns the caller from /v1/auth/me', async () => {
    const res = await call('GET /v1/auth/me', alice);
    expect(res).toEqual({ status: 200, body: expect.objectContaining({ username: 'alice', role: 'user', can_push: false }) });
    expect(await codeOf(call('GET /v1/auth/me', null))).toBe('unauthorized');
  });

  it('lets admins create, list and delete users; others are refused', async () => {
    const created = await call('POST /v1/users', root, { body: { username: 'carol', password: 'carol-password', can_push: true } });
    expect(created).toEqual({ status: 201, body: expect.objectContaining({ username: 'carol', role: 'user', can_push: true }) });
    expect(await codeOf(call('POST /v1/users', root, { body: { username: 'carol', password: 'carol-password' } }))).toBe('conflict');
    expect(await codeOf(call('POST /v1/users', root, { body: { username: 'bad name', password: 'long-enough' } }))).toBe('invalid_request');
    expect(await codeOf(call('POST /v1/users', root, { body: { username: 'dave', password: 'short' } }))).toBe('invalid_request');
    expect(await codeOf(call('POST /v1/users', root, { body: { username: 'dave', password: 'long-enough', role: 'root' } }))).toBe('invalid_request');
    expect(await codeOf(call('POST /v1/users', root, { body: { username: 'dave', password: 'long-enough', password_hash: 'x' } }))).toBe('invalid_request');
    expect(await codeOf(call('POST /v1/users', alice, { body: { username: 'dave', password: 'long-enough' } }))).toBe('forbidden');
    expect(await codeOf(call('GET /v1/users', null))).toBe('unauthorized');

    const list = await call('GET /v1/users', root);
    const names = (list.body as { users: { username: string }[] }).users.map((u) => u.username).sort();
    expect(names).toEqual(['alice', 'carol', 'root']);
    expect(JSON.stringify(list.body)).not.toContain('scrypt');
    expect(compileValidator(routes.get('GET /v1/users')?.schemas?.response ?? {}, 'response')(list.body)).toBe(list.body);

    expect(await codeOf(call('DELETE /v1/users/:name', alice, { params: { name: 'carol' } }))).toBe('forbidden');
    expect(await call('DELETE /v1/users/:name', root, { params: { name: 'carol' } })).toEqual({ status: 204, body: undefined });
    expect(await codeOf(call('DELETE /v1/users/:name', root, { params: { name: 'carol' } }))).toBe('not_found');
    expect(await codeOf(call('DELETE /v1/users/:name', root, { params: { name: 'root' } }))).toBe('conflict');
    expect(await codeOf(call('DELETE /v1/users/:name', root, { params: { name: '..' } }))).toBe('invalid_request');
  });

  it('changes passwords through PUT /v1/users/:name/password', async () => {
    const path = 'PUT /v1/users/:name/password';
    expect(await call(path, alice, { params: { name: 'alice' }, body: { current_password: 'alice-password', new_password: 'alice-password-2' } })).toEqual({
      status: 204,
      body: undefined,
    });
    expect((await auth.login({ username: 'alice', password: 'alice-password-2' }, '192.0.2.2')).username).toBe('alice');
    expect(await codeOf(call(path, alice, { params: { name: 'alice' }, body: { current_password: 'nope-nope', new_password: 'alice-password-3' } }))).toBe('forbidden');
    expect(await codeOf(call(path, alice, { params: { name: 'root' }, body: { new_password: 'owned-password' } }))).toBe('not_found');
    expect(await codeOf(call(path, alice, { params: { name: 'alice' }, body: { new_password: 'short' } }))).toBe('invalid_request');
    expect(await call(path, root, { params: { name: 'alice' }, body: { new_password: 'reset-by-admin' } })).toEqual({ status: 204, body: undefined });
    expect((await auth.login({ username: 'alice', password: 'reset-by-admin' }, '192.0.2.2')).username).toBe('alice');
  });
  it('audits user.updated with the changed fields only, and nothing for a PATCH that changes nothing', async () => {
    await call('POST /v1/users', root, { body: { username: 'erin', password: 'erin-password' } });
    audited.length = 0;
    const res = await call('PATCH /v1/users/:name', root, { params: { name: 'erin' }, body: { role: 'user', can_push: true, quotas: { turns_per_day: 5, tokens_per_day: null } } });
    expect(res.body).toMatchObject({ username: 'erin', role: 'user', can_push: true, quotas: { turns_per_day: 5, tokens_per_day: null, concurrent_agents: null } });
    expect(audited).toEqual([
      {
        action: 'user.updated',
        actor: 'root',
        target: 'user:erin',
        address: '192.0.2.1',
        request_id: 'req-1',
        details: { changed: { can_push: true, quotas: { turns_per_day: 5 } } },
      },
    ]);
    await call('PATCH /v1/users/:name', root, { params: { name: 'erin' }, body: { can_push: true } });
    expect(audited).toHaveLength(1);
    expect(JSON.stringify(audited)).not.toContain('password');
    expect(await codeOf(call('PATCH /v1/users/:name', alice, { params: { name: 'erin' }, body: { disabled: true } }))).toBe('forbidden');
  });
});
