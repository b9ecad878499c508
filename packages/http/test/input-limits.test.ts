/**
 * Input hardening at the edge, on every host: JSON nested absurdly deep (10 000 levels once
 * crashed JSON.stringify in the store with a 500; 1 000 levels leaked SQLite's CHECK constraint
 * text), oversized free-form values, deep YAML Sentinelfiles, and calendar dates that do not
 * exist (2024-02-30 used to roll over to 1 March). Real core on a real SQLite file.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createJsonLogger, createSentinelApi, type SentinelApi } from '@sentinel/api-core';
import { createTestDatabase, type TestDatabase } from '@sentinel/test-support/postgres';
import { HOSTS, mountApi } from '@sentinel/test-support/hosts';

const SECRET = 'input-limits-secret-0123456789abcdef';
const ADMIN_PASSWORD = 'admin-password-123';

interface Reply {
  status: number;
  body: any;
}

/** `{"a":{"a":…{"a":1}…}}` with `levels` objects, as text (JSON.stringify would recurse). */
function nestedObjectText(levels: number): string {
  return '{"a":'.repeat(levels - 1) + '{"a":1}' + '}'.repeat(levels - 1);
}

function nestedArrayText(levels: number): string {
  return '['.repeat(levels) + ']'.repeat(levels);
}

describe.each(HOSTS)('input limits on %s', (hostName) => {
  let dir: string;
  let api: SentinelApi;
  let base: string;
  let close: () => Promise<void>;
  let token: string;

  async function call(method: string, path: string, options: { raw?: string; contentType?: string; auth?: boolean } = {}): Promise<Reply> {
    const headers: Record<string, string> = {};
    if (options.auth !== false) headers.authorization = `Bearer ${token}`;
    if (options.raw !== undefined) headers['content-type'] = options.contentType ?? 'application/json';
    const res = await request(`${base}${path}`, { method: method as 'GET', headers, body: options.raw });
    const text = await res.body.text();
    return { status: res.statusCode, body: text ? JSON.parse(text) : undefined };
  }

  async function expectStillServing(): Promise<void> {
    expect((await call('GET', '/v1/health', { auth: false })).status).toBe(200);
    expect((await call('GET', '/v1/agents')).status).toBe(200);
  }

  function expectInvalid(reply: Reply, message: string): void {
    expect(reply.status).toBe(400);
    expect(reply.body).toEqual({ error: message, code: 'invalid_request', docs: '/docs/errors#invalid_request' });
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-limits-'));
    api = await createSentinelApi({ dataDir: dir, tokenSecret: SECRET, adminPassword: ADMIN_PASSWORD });
    const mounted = await mountApi(hostName, api, { logRequests: false });
    base = mounted.baseUrl;
    close = mounted.close;
    const login = await request(`${base}/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
    });
    token = ((await login.body.json()) as { token: string }).token;
  });

  afterAll(async () => {
    await close?.();
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  describe('deeply nested JSON bodies', () => {
    it.each([10_000, 1_000])('POST /v1/agents with parameters %i deep → 400 naming body.parameters, nothing written', async (levels) => {
      const before = (await api.store.listAgents()).length;
      const raw = `{"image":"sentinel/echo:latest","parameters":${nestedObjectText(levels)}}`;
      const reply = await call('POST', '/v1/agents', { raw });
      expectInvalid(reply, 'body.parameters: nested deeper than 32 levels');
      expect(JSON.stringify(reply.body)).not.toMatch(/CHECK|constraint|sqlite|RangeError/i);
      expect((await api.store.listAgents()).length).toBe(before);
      await expectStillServing();
    });

    it('arrays count as levels too, and an undeclared field is named by its key', async () => {
      expectInvalid(await call('POST', '/v1/agents', { raw: `{"image":"sentinel/echo:latest","parameters":{"x":${nestedArrayText(5_000)}}}` }), 'body.parameters: nested deeper than 32 levels');
      expectInvalid(await call('POST', '/v1/agents', { raw: `{"image":"sentinel/echo:latest","bogus":${nestedArrayText(100)}}` }), 'body.bogus: nested deeper than 32 levels');
      expectInvalid(await call('POST', '/v1/users', { raw: nestedArrayText(5_000) }), 'body[0]: nested deeper than 32 levels');
      await expectStillServing();
    });

    it('accepts parameters exactly at the cap (31 levels under the body) and refuses one more', async () => {
      const ok = await call('POST', '/v1/agents', { raw: `{"image":"sentinel/echo:latest","parameters":${nestedObjectText(31)}}` });
      expect(ok.status).toBe(201);
      expect(JSON.stringify(ok.body.parameters)).toBe(nestedObjectText(31));
      expect((await call('DELETE', `/v1/agents/${ok.body.id as string}`)).status).toBe(204);
      expectInvalid(await call('POST', '/v1/agents', { raw: `{"image":"sentinel/echo:latest","parameters":${nestedObjectText(32)}}` }), 'body.parameters: nested deeper than 32 levels');
    });

    it('caps the size of free-form parameters (64 KiB of JSON)', async () => {
      const before = (await api.store.listAgents()).length;
      const big = JSON.stringify({ image: 'sentinel/echo:latest', parameters: { blob: 'x'.repeat(70_000) } });
      expectInvalid(await call('POST', '/v1/agents', { raw: big }), 'body.parameters: larger than 65536 characters of JSON');
      expect((await api.store.listAgents()).length).toBe(before);
      const fits = await call('POST', '/v1/agents', { raw: JSON.stringify({ image: 'sentinel/echo:latest', parameters: { blob: 'x'.repeat(60_000) } }) });
      expect(fits.status).toBe(201);
      expect((await call('DELETE', `/v1/agents/${fits.body.id as string}`)).status).toBe(204);
    });

    it('a JSON Sentinelfile with deep model parameters → 400 naming body.model.parameters', async () => {
      const raw = `{"name":"deep/json","model":{"provider":"echo","name":"echo","parameters":${nestedObjectText(10_000)}}}`;
      expectInvalid(await call('POST', '/v1/images', { raw }), 'body.model.parameters: nested deeper than 32 levels');
      expect((await call('GET', `/v1/images/${encodeURIComponent('deep/json:latest')}`)).status).toBe(404);
      await expectStillServing();
    });
  });

  describe('deeply nested YAML Sentinelfiles', () => {
    it.each([
      ['flow sequences, 10 000 deep', `name: deep/yaml\nmodel: echo/echo\ntools: ${nestedArrayText(10_000)}\n`, 'body.tools'],
      ['flow mappings, 1 000 deep', `name: deep/yaml\nmodel:\n  provider: echo\n  name: echo\n  parameters: ${'{a: '.repeat(1_000)}1${'}'.repeat(1_000)}\n`, 'body.model'],
      ['block mappings, 40 deep', `name: deep/yaml\nmodel:\n  provider: echo\n  name: echo\n  parameters:\n${Array.from({ length: 40 }, (_, i) => `${'  '.repeat(i + 2)}k:`).join('\n')} 1\n`, 'body.model'],
    ])('%s → 400 naming the field, nothing built', async (_name, yaml, field) => {
      const reply = await call('POST', '/v1/images', { raw: yaml, contentType: 'application/yaml' });
      expectInvalid(reply, `${field}: nested deeper than 32 levels`);
      expect((await call('GET', `/v1/images/${encodeURIComponent('deep/yaml:latest')}`)).status).toBe(404);
      await expectStillServing();
    });

    it('a YAML alias that contains itself is refused at the depth cap', async () => {
      const yaml = 'name: deep/yaml\nmodel:\n  provider: echo\n  name: echo\n  parameters:\n    loop: &loop [*loop]\n';
      expectInvalid(await call('POST', '/v1/images', { raw: yaml, contentType: 'application/yaml' }), 'body.model.parameters: nested deeper than 32 levels');
      await expectStillServing();
    });

    it('a reasonable nested YAML Sentinelfile still builds', async () => {
      const yaml = 'name: deep/yaml\nmodel:\n  provider: echo\n  name: echo\n  parameters:\n    a:\n      b:\n        c: [1, [2, [3]]]\n';
      const reply = await call('POST', '/v1/images', { raw: yaml, contentType: 'application/yaml' });
      expect(reply.status).toBe(201);
      expect((await call('DELETE', `/v1/images/${encodeURIComponent('deep/yaml:latest')}`)).status).toBe(204);
    });
  });

  describe('impossible dates', () => {
    let agentId: string;
    beforeAll(async () => {
      const created = await call('POST', '/v1/agents', { raw: JSON.stringify({ image: 'sentinel/echo:latest' }) });
      expect(created.status).toBe(201);
      agentId = created.body.id as string;
    });

    it.each(['2024-02-30T00:00:00Z', '2023-02-29T00:00:00Z', '2024-01-01T25:00:00Z', '2024-13-01T00:00:00Z', '2024-04-31', '2024-01-01T12:60:00Z', '2024-01-01T00:00:00+24:00'])(
      'logs since=%s → 400 invalid_request',
      async (since) => {
        const reply = await call('GET', `/v1/agents/${agentId}/logs?since=${encodeURIComponent(since)}`);
        expect(reply.status).toBe(400);
        expect(reply.body.code).toBe('invalid_request');
        expect(reply.body.error).toContain('since');
      },
    );

    it.each(['2024-02-29T00:00:00Z', '2024-02-29', '2023-12-31T23:59:59.999+01:00', '1700000000', '10m'])('logs since=%s still works', async (since) => {
      const reply = await call('GET', `/v1/agents/${agentId}/logs?since=${encodeURIComponent(since)}`);
      expect(reply.status).toBe(200);
      expect(reply.body.agent_id).toBe(agentId);
    });
  });
});

describe('store refusals on PostgreSQL', () => {
  let database: TestDatabase;
  let dir: string;
  let api: SentinelApi;
  let base: string;
  let close: () => Promise<void>;
  let token: string;
  const lines: string[] = [];

  beforeAll(async () => {
    database = await createTestDatabase();
    dir = mkdtempSync(join(tmpdir(), 'sentinel-limits-pg-'));
    const logger = createJsonLogger({ write: (line) => void lines.push(line) });
    api = await createSentinelApi({ dataDir: dir, storeUrl: database.url, tokenSecret: SECRET, adminPassword: ADMIN_PASSWORD, logger });
    const mounted = await mountApi('standalone', api, { logRequests: false });
    base = mounted.baseUrl;
    close = mounted.close;
    token = (await api.authService.issueToken('admin')).token;
  });

  afterAll(async () => {
    await close?.();
    await api?.close();
    await database?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a value the database refuses (a NUL in jsonb) is a 400 with a fixed message; the database text goes to the log only', async () => {
    const res = await request(`${base}/v1/agents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ image: 'sentinel/echo:latest', environment: { NUL_VALUE: 'a\u0000b' } }),
    });
    expect(res.statusCode).toBe(400);
    expect(await res.body.json()).toEqual({ error: 'invalid record: the store refused a value', code: 'invalid_request', docs: '/docs/errors#invalid_request' });
    expect(await api.store.listAgents()).toEqual([]);
    const refused = lines.map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line.msg === 'request refused');
    expect(refused).toMatchObject({ level: 'warn', method: 'POST', path: '/v1/agents', code: 'invalid_request' });
    expect(String(refused?.error)).toMatch(/unicode|\\u0000|escape/i);
    expect(JSON.stringify(refused)).not.toContain('a\\u0000b');
  });
});
