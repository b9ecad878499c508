/**
 * Scopes in the route and endpoint tables: every route that acts on something declares the
 * scope it needs, and the one check in invokeRoute (REST) and in the services' `prepare`
 * (WebSocket) refuses a credential without it, naming the scope as RFC 6750 §3.1 says.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  SCOPES,
  WEBSOCKET_ENDPOINTS,
  buildOpenApiDocument,
  createSentinelApi,
  hasScope,
  isSentinelError,
  principalScopes,
  roleScopes,
  silentLogger,
  type CompiledRoute,
  type Principal,
  type RouteContext,
  type SentinelApi,
} from '@sentinel/api-core';

function ctx(principal: Principal): RouteContext {
  return { principal, requestId: 'scopes', signal: new AbortController().signal, log: silentLogger, origin: { secure: false, host: 'localhost' }, remoteAddress: '127.0.0.1' };
}

async function refusal(promise: Promise<unknown>): Promise<{ code: string; message: string; challenge?: string; details?: unknown }> {
  try {
    await promise;
  } catch (err) {
    expect(isSentinelError(err)).toBe(true);
    return err as { code: string; message: string; challenge?: string };
  }
  throw new Error('expected a refusal');
}

describe('scopes', () => {
  let dir: string;
  let api: SentinelApi;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-scopes-'));
    api = await createSentinelApi({ dataDir: dir, adminPassword: 'admin-password-1' });
  });

  afterAll(async () => {
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const route = (method: string, path: string): CompiledRoute => {
    const found = api.routes.find((r) => r.method === method && r.path === path);
    if (!found) throw new Error(`no route ${method} ${path}`);
    return found;
  };

  it('every non-public route declares a scope, but those about the caller itself', () => {
    const unscoped = api.routes.filter((r) => r.auth !== 'public' && r.scope === undefined).map((r) => `${r.method} ${r.path}`);
    expect(unscoped.sort()).toEqual(['GET /v1/auth/me', 'POST /v1/auth/logout', 'PUT /v1/users/:name/password']);
    for (const r of api.routes) if (r.scope !== undefined) expect(SCOPES).toContain(r.scope);
    // Admin-only routes need the admin scope too, so a key of an admin without it cannot use them.
    for (const r of api.routes.filter((x) => x.auth === 'admin')) expect(r.scope).toBe('admin');
    expect(WEBSOCKET_ENDPOINTS.map((e) => [e.name, e.scope])).toEqual([
      ['chat', 'agents:chat'],
      ['events', 'agents:read'],
    ]);
  });

  it('the OpenAPI document shows each route\'s scope in its security requirement and its 403', () => {
    const doc = buildOpenApiDocument(api.routes) as { paths: Record<string, Record<string, { security: Array<Record<string, string[]>>; responses: Record<string, unknown>; 'x-sentinel-scope'?: string }>> };
    for (const r of api.routes) {
      const op = doc.paths[r.path.replace(/:([A-Za-z_]+)/g, '{$1}')]?.[r.method.toLowerCase()];
      expect(op, `${r.method} ${r.path}`).toBeDefined();
      if (r.auth === 'public') {
        expect(op?.security).toEqual([]);
        continue;
      }
      expect(op?.security).toEqual([{ bearerAuth: r.scope === undefined ? [] : [r.scope] }]);
      expect(op?.['x-sentinel-scope']).toBe(r.scope);
      if (r.scope !== undefined) expect(JSON.stringify(op?.responses['403'])).toContain('insufficient_scope');
    }
  });

  it('a session holds its role; a scoped credential only its scopes, and admin only as an admin', () => {
    const user: Principal = { username: 'u', role: 'user' };
    const admin: Principal = { username: 'a', role: 'admin' };
    expect(principalScopes(user)).toEqual(roleScopes('user'));
    expect(roleScopes('user')).not.toContain('admin');
    expect(principalScopes(admin)).toEqual(SCOPES);
    expect(hasScope(user, 'agents:write')).toBe(true);
    expect(hasScope(user, 'admin')).toBe(false);
    expect(hasScope(admin, 'admin')).toBe(true);
    const readKey: Principal = { username: 'u', role: 'user', scopes: ['agents:read'], via: 'key' };
    expect(hasScope(readKey, 'agents:read')).toBe(true);
    expect(hasScope(readKey, 'agents:write')).toBe(false);
    // A user's key listing `admin` (it could not be created so, but a demoted owner's could) is not admin.
    expect(hasScope({ username: 'u', role: 'user', scopes: ['admin'], via: 'key' }, 'admin')).toBe(false);
    // An admin's key with `admin` may do everything an admin may.
    expect(hasScope({ username: 'a', role: 'admin', scopes: ['admin'], via: 'key' }, 'images:write')).toBe(true);
  });

  it('invokeRoute refuses a route without its scope, with the RFC 6750 challenge, before the handler runs', async () => {
    const key: Principal = { username: 'admin', role: 'admin', scopes: ['agents:read'], via: 'key' };
    const before = (await api.store.listAgents()).length;
    const err = await refusal(
      api.invoke(route('POST', '/v1/agents'), { params: {}, query: {}, body: { format: 'json', text: JSON.stringify({ name: 'x', image: 'sentinel/echo:latest' }) } }, ctx(key)),
    );
    expect(err.code).toBe('insufficient_scope');
    expect(err.challenge).toBe('Bearer error="insufficient_scope", scope="agents:write"');
    expect(err.details).toEqual({ scope: 'agents:write' });
    expect((await api.store.listAgents()).length).toBe(before);
    // The scope it holds works.
    const listed = await api.invoke(route('GET', '/v1/agents'), { params: {}, query: {} }, ctx(key));
    expect(listed.status).toBe(200);
    // An admin route needs the admin scope, even for an admin's key.
    expect((await refusal(api.invoke(route('GET', '/v1/users'), { params: {}, query: {} }, ctx(key)))).code).toBe('insufficient_scope');
  });

  it('a session-only route refuses an API key whatever its scopes', async () => {
    const key: Principal = { username: 'admin', role: 'admin', scopes: [...SCOPES], via: 'key' };
    const err = await refusal(
      api.invoke(
        route('PUT', '/v1/users/:name/password'),
        { params: { name: 'admin' }, query: {}, body: { format: 'json', text: JSON.stringify({ current_password: 'admin-password-1', new_password: 'another-password-2' }) } },
        ctx(key),
      ),
    );
    expect(err.code).toBe('insufficient_scope');
    expect(err.message).toMatch(/login session/);
  });

  it('the WebSocket services refuse a credential without the endpoint scope before resolving the agent', async () => {
    const key: Principal = { username: 'admin', role: 'admin', scopes: ['agents:read'], via: 'key' };
    const chat = await refusal(api.chat.prepare(key, 'no-such-agent'));
    expect(chat.code).toBe('insufficient_scope');
    expect(chat.challenge).toBe('Bearer error="insufficient_scope", scope="agents:chat"');
    // agents:read suffices for events: the refusal is now about the agent.
    expect((await refusal(api.events.prepare(key, 'no-such-agent'))).code).toBe('not_found');
    const chatOnly: Principal = { username: 'admin', role: 'admin', scopes: ['agents:chat'], via: 'key' };
    expect((await refusal(api.events.prepare(chatOnly, 'no-such-agent'))).code).toBe('insufficient_scope');
  });
});
