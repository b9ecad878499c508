/**
 * The webhook routes through real HTTP on every host on SQLite, and on the standalone server on
 * PostgreSQL: the caller's signing secret (made once, rotated, refused to a key without
 * `keys:write`, never in a log line or audit entry) and an agent's default webhook, checked at
 * the edge (absolute http/https, no credentials, at most 2048 characters, no private target
 * without the option).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createJsonLogger, createSentinelApi, type AuditEvent, type SentinelApi } from '@sentinel/api-core';
import { HOSTS, mountApi, type HostName } from '@sentinel/test-support/hosts';
import { createTestDatabase, type TestDatabase } from '@sentinel/test-support/postgres';

const SECRET_PATTERN = /^whsec_[A-Za-z0-9+/]{43}=$/;

interface Reply {
  status: number;
  body: any;
  text: string;
}

type StoreKind = 'sqlite' | 'postgres';
const CONFIGS: Array<[HostName, StoreKind]> = [...HOSTS.map((host): [HostName, StoreKind] => [host, 'sqlite']), ['standalone', 'postgres']];

describe.each(CONFIGS)('webhook routes on %s (%s)', (hostName, storeKind) => {
  let dir: string;
  let db: TestDatabase | undefined;
  let api: SentinelApi;
  let base: string;
  let close: () => Promise<void>;
  let aliceToken: string;
  let bobToken: string;
  const audit: AuditEvent[] = [];
  const logLines: string[] = [];
  const seenSecrets: string[] = [];

  async function call(method: string, path: string, token: string, body?: unknown): Promise<Reply> {
    const headers: Record<string, string> = { authorization: `Bearer ${token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await request(`${base}${path}`, { method: method as 'GET', headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    const text = await res.body.text();
    return { status: res.statusCode, body: text === '' ? undefined : JSON.parse(text), text };
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-webhook-routes-'));
    if (storeKind === 'postgres') db = await createTestDatabase();
    api = await createSentinelApi({
      dataDir: dir,
      tokenSecret: 'webhook-routes-secret-0123456789abcdef',
      adminPassword: 'admin-password-123',
      ...(db === undefined ? {} : { storeUrl: db.url }),
      logger: createJsonLogger({ level: 'debug', write: (line) => logLines.push(line) }),
      audit: { record: (event) => audit.push(event) },
    });
    const mounted = await mountApi(hostName, api, { logRequests: true });
    base = mounted.baseUrl;
    close = mounted.close;
    await api.users.create({ username: 'alice', password: 'alice-password-1', role: 'user' });
    await api.users.create({ username: 'bob', password: 'bob-password-12', role: 'user' });
    aliceToken = (await api.authService.issueToken('alice')).token;
    bobToken = (await api.authService.issueToken('bob')).token;
  });

  afterAll(async () => {
    await close?.();
    await api?.close();
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('makes a secret on first use, answers the same one after, and rotates it', async () => {
    const first = await call('GET', '/v1/auth/webhook-secret', aliceToken);
    expect(first.status, first.text).toBe(200);
    expect(first.body).toEqual({ secret: expect.stringMatching(SECRET_PATTERN) });
    expect((await call('GET', '/v1/auth/webhook-secret', aliceToken)).body.secret).toBe(first.body.secret);
    const theirs = await call('GET', '/v1/auth/webhook-secret', bobToken);
    expect(theirs.body.secret).not.toBe(first.body.secret);

    const rotated = await call('POST', '/v1/auth/webhook-secret/rotate', aliceToken);
    expect(rotated.status, rotated.text).toBe(200);
    expect(rotated.body.secret).toMatch(SECRET_PATTERN);
    expect(rotated.body.secret).not.toBe(first.body.secret);
    expect((await call('GET', '/v1/auth/webhook-secret', aliceToken)).body.secret).toBe(rotated.body.secret);
    expect((await call('GET', '/v1/auth/webhook-secret', bobToken)).body.secret).toBe(theirs.body.secret);
    seenSecrets.push(first.body.secret, rotated.body.secret, theirs.body.secret);
    expect(audit.filter((e) => e.action === 'auth.webhook_secret_rotated').map((e) => e.target)).toContain('user:alice');
  });

  it('refuses the secret to an API key with read-only scopes, gives it to one with keys:write', async () => {
    const reader = await call('POST', '/v1/keys', aliceToken, { name: 'reader', scopes: ['agents:read', 'images:read', 'agents:chat'] });
    expect(reader.status, reader.text).toBe(201);
    for (const [method, path] of [['GET', '/v1/auth/webhook-secret'], ['POST', '/v1/auth/webhook-secret/rotate']] as const) {
      const refused = await call(method, path, reader.body.key);
      expect(refused.status, `${method} ${path}`).toBe(403);
      expect(refused.body.code).toBe('insufficient_scope');
    }
    const manager = await call('POST', '/v1/keys', aliceToken, { name: 'manager', scopes: ['keys:write'] });
    const got = await call('GET', '/v1/auth/webhook-secret', manager.body.key);
    expect(got.status).toBe(200);
    expect(got.body.secret).toBe((await call('GET', '/v1/auth/webhook-secret', aliceToken)).body.secret);
    seenSecrets.push(got.body.secret);
  });

  it("stores an agent's default webhook given on create and shows it on the agent", async () => {
    const url = 'https://93.184.215.14/hooks/sentinel?team=a';
    const created = await call('POST', '/v1/agents', aliceToken, { image: 'sentinel/echo:latest', name: 'hooked', webhook: url });
    expect(created.status, created.text).toBe(201);
    expect(created.body.webhook).toBe(url);
    const got = await call('GET', `/v1/agents/${created.body.id}`, aliceToken);
    expect(got.body.webhook).toBe(url);
    expect(await api.store.getAgentWebhook(created.body.id)).toBe(url);
    const plain = await call('POST', '/v1/agents', aliceToken, { image: 'sentinel/echo:latest', name: 'plain' });
    expect(plain.body.webhook).toBeUndefined();
    expect((await call('GET', `/v1/agents/${plain.body.id}`, aliceToken)).body.webhook).toBeUndefined();
  });

  it('refuses bad and private webhook URLs at the edge, creating no agent', async () => {
    const cases: Array<[string, RegExp]> = [
      ['http://127.0.0.1:8080/hook', /loopback, private or link-local/],
      ['http://169.254.169.254/latest/meta-data', /loopback, private or link-local/],
      ['http://[::1]/hook', /loopback, private or link-local/],
      ['http://10.0.0.8/hook', /loopback, private or link-local/],
      ['https://user:secret@93.184.215.14/hook', /credentials/],
      ['ftp://93.184.215.14/hook', /webhook/],
      ['not a url', /webhook/],
      [`https://93.184.215.14/${'a'.repeat(2100)}`, /webhook/],
    ];
    for (const [url, message] of cases) {
      const refused = await call('POST', '/v1/agents', aliceToken, { image: 'sentinel/echo:latest', name: 'refused', webhook: url });
      expect(refused.status, url).toBe(400);
      expect(refused.body.code, url).toBe('invalid_request');
      expect(refused.body.error, url).toMatch(message);
    }
    const agents = await call('GET', '/v1/agents', aliceToken);
    expect(agents.body.agents.map((a: { name: string }) => a.name)).not.toContain('refused');
  });

  it('never writes a secret to a log line or an audit entry', () => {
    expect(seenSecrets.length).toBeGreaterThan(2);
    const haystack = `${logLines.join('\n')}\n${JSON.stringify(audit)}`;
    for (const secret of seenSecrets) {
      expect(haystack.includes(secret)).toBe(false);
      expect(haystack.includes(secret.slice('whsec_'.length))).toBe(false);
    }
    expect(logLines.some((line) => line.includes('/v1/auth/webhook-secret'))).toBe(true);
  });
});
