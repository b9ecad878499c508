/**
 * The REST API spec of the foundation issue, run against the real core (`createSentinelApi` on a
 * real SQLite file) in every host: standalone `listen`, a bare node:http server, Express and
 * Fastify. One spec, every host (STYLE.md §11): it proves the listener is mountable anywhere.
 */
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createSentinelApi, type SentinelApi } from '@sentinel/api-core';
import { HOSTS, mountApi } from '@sentinel/test-support/hosts';

const SECRET = 'rest-spec-secret-0123456789abcdef';
const ADMIN_PASSWORD = 'admin-password-123';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

function b64url(value: unknown): string {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
}

/** Hand-built JWTs, so each refusal case is exactly the token it claims to be. */
function hs(alg: 'HS256' | 'HS512', payload: Record<string, unknown>, secret = SECRET): string {
  const head = `${b64url({ alg, typ: 'JWT' })}.${b64url(payload)}`;
  const sig = createHmac(alg === 'HS256' ? 'sha256' : 'sha512', secret).update(head).digest('base64url');
  return `${head}.${sig}`;
}

const now = () => Math.floor(Date.now() / 1000);

describe.each(HOSTS)('REST API on %s', (hostName) => {
  let dir: string;
  let api: SentinelApi;
  let base: string;
  let close: () => Promise<void>;
  let adminToken: string;

  async function call(method: string, path: string, options: { token?: string | null; body?: unknown; raw?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
    const headers: Record<string, string> = { ...options.headers };
    const token = options.token === undefined ? adminToken : options.token;
    if (token) headers.authorization = `Bearer ${token}`;
    let body: string | undefined = options.raw;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await request(`${base}${path}`, { method: method as 'GET', headers, body });
    const text = await res.body.text();
    let parsed: unknown = text;
    if ((res.headers['content-type'] ?? '').toString().includes('json') && text) parsed = JSON.parse(text);
    return { status: res.statusCode, headers: res.headers, body: parsed };
  }

  async function login(username: string, password: string): Promise<string> {
    const r = await call('POST', '/v1/auth/login', { token: null, body: { username, password } });
    expect(r.status).toBe(200);
    return r.body.token as string;
  }

  async function agentCount(): Promise<number> {
    return (await api.store.listAgents()).length;
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-rest-'));
    api = await createSentinelApi({ dataDir: dir, tokenSecret: SECRET, adminPassword: ADMIN_PASSWORD });
    const mounted = await mountApi(hostName, api, { logRequests: false });
    base = mounted.baseUrl;
    close = mounted.close;
    adminToken = await login('admin', ADMIN_PASSWORD);
  });

  afterAll(async () => {
    await close?.();
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers health without auth and every response carries X-Request-Id', async () => {
    const r = await call('GET', '/v1/health', { token: null });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ status: 'ok' });
    expect(r.headers['x-request-id']).toBeTruthy();
  });

  it('logs in with {token, username, expires} and refuses wrong credentials with 401', async () => {
    const r = await call('POST', '/v1/auth/login', { token: null, body: { username: 'admin', password: ADMIN_PASSWORD } });
    expect(r.status).toBe(200);
    expect(r.body.username).toBe('admin');
    expect(typeof r.body.token).toBe('string');
    expect(new Date(r.body.expires).getTime()).toBeGreaterThan(Date.now());
    expect(r.body.expires).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);

    const bad = await call('POST', '/v1/auth/login', { token: null, body: { username: 'admin', password: 'wrong-password' } });
    expect(bad.status).toBe(401);
    expect(bad.body).toEqual({ error: expect.any(String), code: 'unauthorized', docs: '/docs/errors#unauthorized' });
    const unknown = await call('POST', '/v1/auth/login', { token: null, body: { username: 'nobody', password: 'whatever-password' } });
    expect(unknown.status).toBe(401);
    expect(unknown.body.error).toBe(bad.body.error);
  });

  it('refuses repeated failed logins for one username with 429 and Retry-After', async () => {
    await call('POST', '/v1/users', { body: { username: 'victim', password: 'victim-password' } });
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) {
      const r = await call('POST', '/v1/auth/login', { token: null, body: { username: 'victim', password: `nope-${i}-password` } });
      statuses.push(r.status);
      if (r.status === 429) {
        expect(r.body.code).toBe('rate_limited');
        expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
      }
    }
    expect(statuses.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
    expect(statuses.slice(5)).toEqual([429, 429]);
    // Even the right password is refused while that address waits: the guesser learns nothing.
    const right = await call('POST', '/v1/auth/login', { token: null, body: { username: 'victim', password: 'victim-password' } });
    expect(right.status).toBe(429);
  });

  describe('every route except health and login needs a valid Bearer token', () => {
    const cases: [string, () => Record<string, string>][] = [
      ['missing header', () => ({})],
      ['wrong scheme', () => ({ authorization: `Basic ${Buffer.from('admin:' + ADMIN_PASSWORD).toString('base64')}` })],
      ['bad signature', () => ({ authorization: `Bearer ${hs('HS256', { sub: 'admin', role: 'admin', iss: 'sentinelstacks', exp: now() + 600 }, 'another-secret-another-secret')}` })],
      ['other algorithm (HS512)', () => ({ authorization: `Bearer ${hs('HS512', { sub: 'admin', role: 'admin', iss: 'sentinelstacks', exp: now() + 600 })}` })],
      ['alg none', () => ({ authorization: `Bearer ${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ sub: 'admin', role: 'admin', iss: 'sentinelstacks', exp: now() + 600 })}.` })],
      ['expired', () => ({ authorization: `Bearer ${hs('HS256', { sub: 'admin', role: 'admin', iss: 'sentinelstacks', iat: now() - 7200, exp: now() - 3600 })}` })],
      ['no exp', () => ({ authorization: `Bearer ${hs('HS256', { sub: 'admin', role: 'admin', iss: 'sentinelstacks', iat: now() })}` })],
      ['garbage', () => ({ authorization: 'Bearer not.a.jwt' })],
    ];
    it.each(cases)('%s → 401 {error, code}', async (_name, headers) => {
      for (const path of ['/v1/agents', '/v1/images', '/v1/users']) {
        const r = await call('GET', path, { token: null, headers: headers() });
        expect(r.status).toBe(401);
        expect(r.body).toEqual({ error: expect.any(String), code: 'unauthorized', docs: '/docs/errors#unauthorized' });
        expect(JSON.stringify(r.body)).not.toContain('eyJ');
      }
    });

    it('accepts a hand-built HS256 token with exp (the control case)', async () => {
      const uid = (await api.store.getUser('admin'))?.id;
      const token = hs('HS256', { sub: 'admin', uid, tv: 0, role: 'admin', iss: 'sentinelstacks', iat: now(), exp: now() + 600 });
      const r = await call('GET', '/v1/agents', { token });
      expect(r.status).toBe(200);
    });
  });

  it('manages users (admin only), and a user changes their own password', async () => {
    const created = await call('POST', '/v1/users', { body: { username: 'alice', password: 'alice-password' } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ username: 'alice', role: 'user' });
    expect(JSON.stringify(created.body)).not.toContain('scrypt');
    expect((await call('POST', '/v1/users', { body: { username: 'alice', password: 'alice-password' } })).status).toBe(409);

    const list = await call('GET', '/v1/users');
    expect(list.status).toBe(200);
    expect(list.body.users.map((u: { username: string }) => u.username)).toEqual(expect.arrayContaining(['admin', 'alice']));

    const alice = await login('alice', 'alice-password');
    expect((await call('GET', '/v1/users', { token: alice })).status).toBe(403);
    expect((await call('POST', '/v1/users', { token: alice, body: { username: 'mallory', password: 'mallory-password' } })).status).toBe(403);

    const wrong = await call('PUT', '/v1/users/alice/password', { token: alice, body: { current_password: 'not-it-at-all', new_password: 'alice-password-2' } });
    expect(wrong.status).toBeGreaterThanOrEqual(400);
    expect(wrong.status).toBeLessThan(500);
    const changed = await call('PUT', '/v1/users/alice/password', { token: alice, body: { current_password: 'alice-password', new_password: 'alice-password-2' } });
    expect(changed.status).toBe(204);
    expect((await call('POST', '/v1/auth/login', { token: null, body: { username: 'alice', password: 'alice-password' } })).status).toBe(401);
    await login('alice', 'alice-password-2');

    expect((await call('DELETE', '/v1/users/alice')).status).toBe(204);
    expect((await call('DELETE', '/v1/users/alice')).status).toBe(404);
    // A deleted user's token stops working.
    expect((await call('GET', '/v1/agents', { token: alice })).status).toBe(401);
  });

  it('lists the starter image and resolves it by digest, short id and encoded name:tag', async () => {
    const list = await call('GET', '/v1/images');
    expect(list.status).toBe(200);
    const echo = list.body.images.find((i: { name: string }) => i.name === 'sentinel/echo');
    expect(echo).toMatchObject({ name: 'sentinel/echo', tag: 'latest', base_model: 'echo/echo' });
    expect(echo.id).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(typeof echo.size).toBe('number');
    expect(Array.isArray(echo.features)).toBe(true);
    for (const ref of [echo.id, echo.id.slice(7, 19), encodeURIComponent('sentinel/echo:latest')]) {
      const r = await call('GET', `/v1/images/${ref}`);
      expect(r.status).toBe(200);
      expect(r.body.id).toBe(echo.id);
    }
    const missing = await call('GET', `/v1/images/${encodeURIComponent('nope/nothing:1')}`);
    expect(missing.status).toBe(404);
    expect(missing.body.code).toBe('not_found');
  });

  it('builds images from YAML and JSON definitions, numbers kept as numbers', async () => {
    const yaml = [
      'name: team/researcher',
      'tag: v1',
      'description: Looks things up',
      'model:',
      '  provider: echo',
      '  name: echo',
      '  parameters:',
      '    temperature: 0.7',
      'instructions: You research.',
      'tools: [calculator]',
      'capabilities: [chat]',
    ].join('\n');
    const r = await call('POST', '/v1/images', { raw: yaml, headers: { 'content-type': 'application/yaml' } });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ name: 'team/researcher', tag: 'v1' });
    expect(r.body.model.parameters.temperature).toBe(0.7);
    const json = await call('POST', '/v1/images', { body: { name: 'team/writer', model: { provider: 'echo', name: 'echo' } } });
    expect(json.status).toBe(201);
    expect(json.body.tag).toBe('latest');

    const invalid = await call('POST', '/v1/images', { body: { name: 'Bad Name!', model: 7, color: 'blue' } });
    expect(invalid.status).toBe(400);
    expect(invalid.body.code).toBe('invalid_request');
    expect(invalid.body.error).toContain('color');
    expect(invalid.body.error).toContain('name');
    expect(invalid.body.error).toContain('model');
    const badYaml = await call('POST', '/v1/images', { raw: 'name: [unclosed', headers: { 'content-type': 'application/yaml' } });
    expect(badYaml.status).toBe(400);
  });

  it('creates, reads, lists and deletes agents with tenancy, and serves their real logs', async () => {
    await call('POST', '/v1/users', { body: { username: 'bob', password: 'bob-password' } });
    await call('POST', '/v1/users', { body: { username: 'carol', password: 'carol-password' } });
    const bob = await login('bob', 'bob-password');
    const carol = await login('carol', 'carol-password');

    const created = await call('POST', '/v1/agents', { token: bob, body: { image: 'sentinel/echo:latest', name: 'helper', parameters: { temperature: 0.2 }, environment: { API_TOKEN: 's3cret' } } });
    expect(created.status).toBe(201);
    const agent = created.body;
    expect(agent).toMatchObject({ name: 'helper', image: 'sentinel/echo:latest', status: 'running', owner: 'bob', model: 'echo/echo', api_usage: { requests: 0, tokens: 0 } });
    expect(agent.id).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(agent.image_id).toMatch(/^sha256:/);
    expect(agent.endpoints.chat).toMatch(new RegExp(`^ws://[^/]+/v1/agents/${agent.id}/chat$`));
    expect(agent.endpoints.events).toMatch(new RegExp(`^ws://[^/]+/v1/agents/${agent.id}/events$`));
    expect(JSON.stringify(agent)).not.toContain('s3cret');

    expect((await call('GET', `/v1/agents/${agent.id}`, { token: bob })).body.id).toBe(agent.id);
    expect((await call('GET', `/v1/agents/${agent.id}`, { token: carol })).status).toBe(404);
    expect((await call('DELETE', `/v1/agents/${agent.id}`, { token: carol })).status).toBe(404);
    expect((await call('GET', '/v1/agents', { token: carol })).body.agents).toEqual([]);
    expect((await call('GET', '/v1/agents', { token: bob })).body.agents.map((a: { id: string }) => a.id)).toEqual([agent.id]);
    expect((await call('GET', '/v1/agents')).body.agents.map((a: { id: string }) => a.id)).toContain(agent.id);
    expect((await call('POST', '/v1/agents', { token: bob, body: { image: 'sentinel/echo:latest', name: 'helper' } })).status).toBe(409);

    const logs = await call('GET', `/v1/agents/${agent.id}/logs`, { token: bob });
    expect(logs.status).toBe(200);
    const messages = logs.body.logs.map((l: { message: string }) => l.message).join('\n');
    expect(messages).toMatch(/created/);
    expect(messages).toMatch(/started/);
    const tail = await call('GET', `/v1/agents/${agent.id}/logs?tail=1`, { token: bob });
    expect(tail.body.logs).toHaveLength(1);
    expect(tail.body.logs[0].message).toMatch(/started/);
    const future = await call('GET', `/v1/agents/${agent.id}/logs?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`, { token: bob });
    expect(future.body.logs).toEqual([]);
    const errorsOnly = await call('GET', `/v1/agents/${agent.id}/logs?level=error`, { token: bob });
    expect(errorsOnly.body.logs).toEqual([]);
    expect((await call('GET', `/v1/agents/${agent.id}/logs?tail=-3`, { token: bob })).status).toBe(400);

    const imageDelete = await call('DELETE', `/v1/images/${encodeURIComponent('sentinel/echo:latest')}`);
    expect(imageDelete.status).toBe(409);
    expect(imageDelete.body.code).toBe('conflict');

    expect((await call('DELETE', `/v1/agents/${agent.id}`, { token: bob })).status).toBe(204);
    expect((await call('GET', `/v1/agents/${agent.id}`, { token: bob })).status).toBe(404);
    expect((await call('DELETE', `/v1/agents/${agent.id}`, { token: bob })).status).toBe(404);
  });

  it('answers an unknown image with 404 and a message naming it', async () => {
    const r = await call('POST', '/v1/agents', { body: { image: 'ghost/image:9' } });
    expect(r.status).toBe(404);
    expect(r.body.code).toBe('not_found');
    expect(r.body.error).toContain('ghost/image:9');
  });

  it('accepts unicode agent names', async () => {
    const r = await call('POST', '/v1/agents', { body: { image: 'sentinel/echo:latest', name: 'агент 助手' } });
    expect(r.status).toBe(201);
    expect(r.body.name).toBe('агент 助手');
    expect((await call('DELETE', `/v1/agents/${r.body.id}`)).status).toBe(204);
  });

  it('answers 404 {error, code} for every other /v1 path and 405 with Allow', async () => {
    const r = await call('GET', '/v1/nothing/here');
    expect(r.status).toBe(404);
    expect(r.body).toEqual({ error: expect.any(String), code: 'not_found', docs: '/docs/errors#not_found' });
    const m = await call('PATCH', '/v1/agents');
    expect(m.status).toBe(405);
    expect(String(m.headers.allow)).toContain('GET');
    expect(String(m.headers.allow)).toContain('POST');
  });

  describe('bad input: a 4xx {error, code}, nothing written, the server stays up', () => {
    const bad: [string, () => Promise<Reply>][] = [
      ['malformed JSON', () => call('POST', '/v1/agents', { raw: '{"image": ', headers: { 'content-type': 'application/json' } })],
      ['wrong types', () => call('POST', '/v1/agents', { body: { image: 42, name: ['x'] } })],
      ['unknown fields', () => call('POST', '/v1/agents', { body: { image: 'sentinel/echo:latest', privileged: true } })],
      ['a JSON array body', () => call('POST', '/v1/agents', { body: [{ image: 'sentinel/echo:latest' }] })],
      ['a huge body', () => call('POST', '/v1/agents', { raw: JSON.stringify({ image: 'sentinel/echo:latest', name: 'x'.repeat(2 * 1024 * 1024) }), headers: { 'content-type': 'application/json' } })],
      ['a missing content type', () => call('POST', '/v1/agents', { raw: JSON.stringify({ image: 'sentinel/echo:latest' }) })],
      ['a text/plain content type', () => call('POST', '/v1/agents', { raw: JSON.stringify({ image: 'sentinel/echo:latest' }), headers: { 'content-type': 'text/plain' } })],
      ['an empty body', () => call('POST', '/v1/agents', { raw: '', headers: { 'content-type': 'application/json' } })],
      ['a name with control characters', () => call('POST', '/v1/agents', { body: { image: 'sentinel/echo:latest', name: 'bad\u0000name' } })],
      ['a too-long name', () => call('POST', '/v1/agents', { body: { image: 'sentinel/echo:latest', name: 'n'.repeat(65) } })],
      ['an environment with a non-string value', () => call('POST', '/v1/agents', { body: { image: 'sentinel/echo:latest', environment: { A: 1 } } })],
      ['a traversal-looking agent id', () => call('GET', '/v1/agents/..%2F..%2Fetc%2Fpasswd')],
      ['a traversal-looking agent id (delete)', () => call('DELETE', '/v1/agents/..%2Fsentinel.db')],
      ['a traversal-looking logs id', () => call('GET', '/v1/agents/%2e%2e/logs')],
      ['a unicode username', () => call('POST', '/v1/users', { body: { username: 'ü𝔫𝔦𝔠𝔬𝔡𝔢', password: 'unicode-password' } })],
      ['a too-short password', () => call('POST', '/v1/users', { body: { username: 'shorty', password: 'x' } })],
      ['a login without password', () => call('POST', '/v1/auth/login', { token: null, body: { username: 'admin' } })],
      ['a bad percent escape', () => call('GET', '/v1/images/%E0%A4%A')],
    ];
    it.each(bad)('%s', async (_name, send) => {
      const before = await agentCount();
      const usersBefore = (await api.store.listUsers()).length;
      const r = await send();
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
      expect(r.body).toMatchObject({ error: expect.any(String), code: expect.any(String) });
      expect(await agentCount()).toBe(before);
      expect((await api.store.listUsers()).length).toBe(usersBefore);
      const health = await call('GET', '/v1/health', { token: null });
      expect(health.status).toBe(200);
    });

    it('maps each case to the right code', async () => {
      expect((await call('POST', '/v1/agents', { raw: '{', headers: { 'content-type': 'application/json' } })).status).toBe(400);
      expect((await call('POST', '/v1/agents', { raw: 'x'.repeat(2 * 1024 * 1024), headers: { 'content-type': 'application/json' } })).status).toBe(413);
      expect((await call('POST', '/v1/agents', { raw: '{"image":"sentinel/echo"}' })).status).toBe(415);
    });
  });

  it('serves an OpenAPI document generated from the route table', async () => {
    const r = await call('GET', '/v1/openapi.json', { token: null });
    expect(r.status).toBe(200);
    expect(r.body.openapi).toMatch(/^3\.1/);
    expect(Object.keys(r.body.paths)).toEqual(expect.arrayContaining(['/v1/agents', '/v1/agents/{id}', '/v1/images', '/v1/auth/login']));
  });
});
