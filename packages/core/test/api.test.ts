import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSentinelApi, isSentinelError, silentLogger, type CompiledRoute, type HttpMethod, type Principal, type RawRouteInput, type RouteContext, type SentinelApi } from '@sentinel/api-core';
import { assertUniqueRoutes } from '../src/routes/index.js';
import { toOpenApiPath } from '../src/routes/openapi.js';

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sentinel-api-'));
  dirs.push(dir);
  return dir;
}

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function ctx(principal: Principal | null): RouteContext {
  return {
    principal,
    requestId: 'test',
    signal: new AbortController().signal,
    log: silentLogger,
    origin: { secure: false, host: 'localhost:8080' },
    remoteAddress: '127.0.0.1',
  };
}

async function rejection(promise: Promise<unknown>): Promise<{ code: string; message: string; details?: unknown }> {
  try {
    await promise;
  } catch (err) {
    expect(isSentinelError(err)).toBe(true);
    return err as { code: string; message: string };
  }
  throw new Error('expected a rejection');
}

describe('createSentinelApi and the compiled route table', () => {
  let api: SentinelApi;
  let admin: Principal;
  let user: Principal;

  function route(method: HttpMethod, path: string): CompiledRoute {
    const found = api.routes.find((r) => r.method === method && r.path === path);
    if (!found) throw new Error(`no route ${method} ${path}`);
    return found;
  }

  function call(method: HttpMethod, path: string, principal: Principal | null, raw: Partial<RawRouteInput> = {}) {
    return api.invoke(route(method, path), { params: {}, query: {}, ...raw }, ctx(principal));
  }

  const json = (value: unknown) => ({ format: 'json' as const, text: JSON.stringify(value) });

  beforeAll(async () => {
    // Exact RouteResponse comparisons: the RateLimit headers are the subject of rate-limit.test.ts.
    api = await createSentinelApi({ dataDir: tempDir(), adminUsername: 'root', adminPassword: 'root-password-1', rateLimits: false });
    const login = await call('POST', '/v1/auth/login', null, { body: json({ username: 'root', password: 'root-password-1' }) });
    admin = await api.authenticate(`Bearer ${(login.body as { token: string }).token}`);
    await call('POST', '/v1/users', admin, { body: json({ username: 'carol', password: 'carol-password' }) });
    const userLogin = await call('POST', '/v1/auth/login', null, { body: json({ username: 'carol', password: 'carol-password' }) });
    user = await api.authenticate(`Bearer ${(userLogin.body as { token: string }).token}`);
  });

  afterAll(async () => {
    await api?.close();
  });

  it('bootstraps the admin and the starter image; authenticate maps tokens to principals', async () => {
    expect(admin).toMatchObject({ username: 'root', role: 'admin', via: 'session' });
    expect(user).toMatchObject({ username: 'carol', role: 'user', via: 'session' });
    expect(api.generatedAdminPassword).toBeUndefined();
    expect((await api.images.get('sentinel/echo:latest')).base_model).toBe('echo/echo');
    expect((await rejection(api.authenticate(undefined))).code).toBe('unauthorized');
  });

  it('enforces each route\'s auth level: public, user (401 without principal), admin (403 for users)', async () => {
    expect(await call('GET', '/v1/health', null)).toEqual({ status: 200, body: { status: 'ok' } });
    expect((await call('GET', '/v1/openapi.json', null)).status).toBe(200);
    for (const [method, path] of [['GET', '/v1/agents'], ['POST', '/v1/agents'], ['GET', '/v1/images'], ['POST', '/v1/images'], ['DELETE', '/v1/images/:ref']] as const) {
      expect((await rejection(call(method, path, null, { params: { ref: 'x' } }))).code).toBe('unauthorized');
    }
    const forbidden = await rejection(call('DELETE', '/v1/images/:ref', user, { params: { ref: 'sentinel/echo' } }));
    expect(forbidden.code).toBe('forbidden');
    expect((await call('GET', '/v1/images', user)).status).toBe(200);
  });

  it('builds an image from a YAML body (numbers stay numbers) and lists every problem of a bad one', async () => {
    const yaml = 'name: carol/helper\ntag: "1.0"\nmodel:\n  provider: echo\n  name: echo\n  parameters:\n    temperature: 0.7\ntools: [calculator]\n';
    const built = await call('POST', '/v1/images', user, { body: { format: 'yaml', text: yaml } });
    expect(built.status).toBe(201);
    expect(built.body).toMatchObject({ name: 'carol/helper', tag: '1.0', model: { parameters: { temperature: 0.7 } }, features: ['calculator'] });
    const got = await call('GET', '/v1/images/:ref', user, { params: { ref: 'carol/helper:1.0' } });
    expect((got.body as { id: string }).id).toBe((built.body as { id: string }).id);
    expect(((await call('GET', '/v1/images', user)).body as { images: unknown[] }).images.length).toBeGreaterThanOrEqual(2);

    const bad = await rejection(call('POST', '/v1/images', user, { body: json({ name: 'UPPER', model: 'echo', color: 'red' }) }));
    expect(bad.code).toBe('invalid_request');
    expect(bad.message).toContain('unknown field "color"');
    expect(bad.message).toContain('/name');
    expect(bad.message).toContain('/model');
    expect((bad.details as { issues: unknown[] }).issues).toHaveLength(3);
    expect((await rejection(call('POST', '/v1/images', user, { body: { format: 'yaml', text: 'name: [' } }))).message).toMatch(/^malformed YAML/);
    expect((await rejection(call('POST', '/v1/images', user))).message).toBe('request body is required');
    // Tags are shared: only admins may (re)tag the built-in namespace everyone starts from.
    const hijack = { name: 'sentinel/echo', model: 'echo/echo', instructions: 'something else' };
    expect((await rejection(call('POST', '/v1/images', user, { body: json(hijack) }))).code).toBe('forbidden');
    const starter = (await api.images.get('sentinel/echo')).id;
    const rebuilt = await call('POST', '/v1/images', admin, { body: json({ ...hijack, tag: 'alt' }) });
    expect(rebuilt.status).toBe(201);
    expect((await api.images.get('sentinel/echo')).id).toBe(starter);
  });

  it('runs the agent lifecycle through the routes, with tenancy and validated params and query', async () => {
    const created = await call('POST', '/v1/agents', user, { body: json({ image: 'sentinel/echo', name: 'route agent', environment: { TOKEN: 'secret-value' } }) });
    expect(created.status).toBe(201);
    const agent = created.body as { id: string; status: string; environment: string[]; endpoints: { events: string } };
    expect(agent).toMatchObject({ status: 'running', environment: ['TOKEN'], endpoints: { events: `ws://localhost:8080/v1/agents/${agent.id}/events` } });

    const listed = (await call('GET', '/v1/agents', user)).body as { agents: Array<{ id: string }> };
    expect(listed.agents.map((a) => a.id)).toEqual([agent.id]);
    expect(((await call('GET', '/v1/agents/:id', user, { params: { id: agent.id } })).body as { id: string }).id).toBe(agent.id);

    const logs = await call('GET', '/v1/agents/:id/logs', user, { params: { id: agent.id }, query: { tail: '1', level: 'info' } });
    expect(logs.body).toMatchObject({ agent_id: agent.id, logs: [{ message: 'agent started' }] });
    expect(((await call('GET', '/v1/agents/:id/logs', user, { params: { id: agent.id }, query: { since: '5m', tail: 'all' } })).body as { logs: unknown[] }).logs).toHaveLength(2);
    const badQueries: Array<Record<string, string | string[]>> = [{ tail: 'some' }, { level: 'loud' }, { follow: '1' }, { since: 'whenever' }, { tail: ['1', '2'] }];
    for (const query of badQueries) {
      expect((await rejection(call('GET', '/v1/agents/:id/logs', user, { params: { id: agent.id }, query }))).code).toBe('invalid_request');
    }

    // A traversal-looking id never reaches the store: the params schema refuses it.
    for (const id of ['../etc', 'a/b', 'x'.repeat(65), '']) {
      expect((await rejection(call('GET', '/v1/agents/:id', user, { params: { id } }))).code).toBe('invalid_request');
    }
    for (const body of [{ image: 'x'.repeat(257) }, { image: 'sentinel/echo', environment: { 'BAD-NAME': 'v' } }, { image: 'sentinel/echo', environment: { OK: 'v'.repeat(4097) } }, { image: 'sentinel/echo', extra: true }, { image: 'sentinel/echo', name: '' }]) {
      expect((await rejection(call('POST', '/v1/agents', user, { body: json(body) }))).code).toBe('invalid_request');
    }
    expect((await rejection(call('POST', '/v1/agents', user, { body: json({ image: 'nope/nothing' }) }))).message).toBe('image "nope/nothing" not found');
    expect((await rejection(call('POST', '/v1/agents', user, { body: json({ image: 'sentinel/echo', name: 'route agent' }) }))).code).toBe('conflict');

    // The admin sees it; the image it uses cannot be deleted meanwhile.
    expect(((await call('GET', '/v1/agents', admin)).body as { agents: Array<{ id: string }> }).agents.map((a) => a.id)).toContain(agent.id);
    expect((await rejection(call('DELETE', '/v1/images/:ref', admin, { params: { ref: 'sentinel/echo' } }))).code).toBe('conflict');

    expect(await call('DELETE', '/v1/agents/:id', user, { params: { id: agent.id } })).toEqual({ status: 204, body: undefined });
    expect((await rejection(call('GET', '/v1/agents/:id', user, { params: { id: agent.id } }))).code).toBe('not_found');
    expect(await call('DELETE', '/v1/images/:ref', admin, { params: { ref: 'carol/helper:1.0' } })).toEqual({ status: 204, body: undefined });
  });

  it('serves an OpenAPI 3.1 document that lists every route of the table', async () => {
    const doc = (await call('GET', '/v1/openapi.json', null)).body as {
      openapi: string;
      paths: Record<string, Record<string, { security: unknown[]; parameters?: Array<{ name: string; in: string }>; requestBody?: { content: Record<string, unknown> }; responses: Record<string, unknown> }>>;
    };
    expect(doc.openapi).toBe('3.1.0');
    const operations = Object.values(doc.paths).reduce((n, ops) => n + Object.keys(ops).length, 0);
    expect(operations).toBe(api.routes.length);
    for (const r of api.routes) {
      const op = doc.paths[toOpenApiPath(r.path)]?.[r.method.toLowerCase()];
      expect(op, `${r.method} ${r.path}`).toBeDefined();
      expect(op!.security).toEqual(r.auth === 'public' ? [] : [{ bearerAuth: r.scope === undefined ? [] : [r.scope] }]);
    }
    const logs = doc.paths['/v1/agents/{id}/logs']!.get!;
    expect(logs.parameters!.map((p) => `${p.in}:${p.name}`)).toEqual(['path:id', 'query:since', 'query:tail', 'query:level', 'query:follow', 'header:If-None-Match']);
    expect(Object.keys(doc.paths['/v1/images']!.post!.requestBody!.content)).toEqual(['application/json', 'application/yaml']);
    expect(Object.keys(doc.paths['/v1/images']!.post!.responses)).toContain('201');
    expect(Object.keys(doc.paths['/v1/agents/{id}']!.delete!.responses)).toContain('204');
    expect(Object.keys(doc.paths['/v1/images/{ref}']!.delete!.responses)).toContain('403');
    // Same document object each time: generated once.
    expect((await call('GET', '/v1/openapi.json', null)).body).toBe(doc);
  });

  it('refuses a route table with a duplicate method and path shape', () => {
    const handler = () => undefined;
    expect(() =>
      assertUniqueRoutes([
        { method: 'GET', path: '/v1/agents/:id', auth: 'user', summary: 'a', handler },
        { method: 'GET', path: '/v1/agents/:agent', auth: 'user', summary: 'b', handler },
      ]),
    ).toThrow('duplicate route GET /v1/agents/:agent');
    expect(() => assertUniqueRoutes(api.routes)).not.toThrow();
  });
});

describe('createSentinelApi start-up', () => {
  it('creates the data directory 0700, generates the admin password once, and keeps tokens valid across restarts', async () => {
    const dataDir = join(tempDir(), 'nested', 'data');
    // The defaults come from the environment: make sure this test sees none.
    const saved = { user: process.env.SENTINEL_ADMIN_USER, password: process.env.SENTINEL_ADMIN_PASSWORD };
    delete process.env.SENTINEL_ADMIN_USER;
    delete process.env.SENTINEL_ADMIN_PASSWORD;
    const first = await createSentinelApi({ dataDir }).finally(() => {
      if (saved.user !== undefined) process.env.SENTINEL_ADMIN_USER = saved.user;
      if (saved.password !== undefined) process.env.SENTINEL_ADMIN_PASSWORD = saved.password;
    });
    let token: string;
    try {
      expect(statSync(dataDir).mode & 0o777).toBe(0o700);
      expect(first.dataDir).toBe(dataDir);
      expect(first.generatedAdminPassword).toMatch(/^\S{24,}$/);
      const loginRoute = first.routes.find((r) => r.path === '/v1/auth/login')!;
      const login = await first.invoke(loginRoute, { params: {}, query: {}, body: { format: 'json', text: JSON.stringify({ username: 'admin', password: first.generatedAdminPassword }) } }, ctx(null));
      token = (login.body as { token: string }).token;
    } finally {
      await first.close();
      await first.close();
    }
    const second = await createSentinelApi({ dataDir });
    try {
      expect(second.generatedAdminPassword).toBeUndefined();
      expect(await second.authenticate(`Bearer ${token}`)).toMatchObject({ username: 'admin', role: 'admin' });
    } finally {
      await second.close();
    }
  });

  it('an unusable data directory is one clear `unavailable` error', async () => {
    const file = join(tempDir(), 'not-a-dir');
    writeFileSync(file, 'x');
    const err = await rejection(createSentinelApi({ dataDir: join(file, 'data') }));
    expect(err.code).toBe('unavailable');
    expect(err.message).toMatch(new RegExp(`^cannot use data directory ${join(file, 'data')}: `));
  });
});
