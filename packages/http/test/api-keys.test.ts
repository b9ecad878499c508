/**
 * Scoped API keys through real HTTP on every host (standalone, node:http, Express, Fastify) on
 * SQLite, and on the standalone server on PostgreSQL: create (the secret once), list, revoke,
 * every scoped route of the route table allowed and refused by a key's scopes, keys never
 * above their owner, and no secret in any later response, log line or audit entry.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { SCOPES, bodyFormatsOf, createJsonLogger, createSentinelApi, type AuditEvent, type Scope, type SentinelApi } from '@sentinel/api-core';
import { HOSTS, mountApi, type HostName } from '@sentinel/test-support/hosts';
import { createTestDatabase, type TestDatabase } from '@sentinel/test-support/postgres';

const ADMIN_PASSWORD = 'admin-password-123';
const KEY_PATTERN = /^sk_sentinel_[A-Za-z0-9_-]{43}$/;

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
  text: string;
}

type StoreKind = 'sqlite' | 'postgres';
const CONFIGS: Array<[HostName, StoreKind]> = [...HOSTS.map((host): [HostName, StoreKind] => [host, 'sqlite']), ['standalone', 'postgres']];

describe.each(CONFIGS)('API keys on %s (%s)', (hostName, storeKind) => {
  let dir: string;
  let db: TestDatabase | undefined;
  let api: SentinelApi;
  let base: string;
  let close: () => Promise<void>;
  let adminToken: string;
  let aliceToken: string;
  const audit: AuditEvent[] = [];
  const logLines: string[] = [];
  /** Every response body after the one that created each key, for the no-secret check. */
  const laterBodies: string[] = [];
  const secrets: string[] = [];

  async function call(method: string, path: string, options: { token?: string | null; body?: unknown; contentType?: string } = {}): Promise<Reply> {
    const headers: Record<string, string> = {};
    const token = options.token === undefined ? adminToken : options.token;
    if (token) headers.authorization = `Bearer ${token}`;
    let body: string | undefined;
    if (options.body !== undefined) {
      body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
      headers['content-type'] = options.contentType ?? 'application/json';
    }
    const res = await request(`${base}${path}`, { method: method as 'GET', headers, body });
    const text = await res.body.text();
    const parsed = text && String(res.headers['content-type']).includes('json') ? JSON.parse(text) : text;
    return { status: res.statusCode, headers: res.headers, body: parsed, text };
  }

  /** Creates a key with the admin's session (default) and remembers its secret. */
  async function createKey(scopes: readonly string[], options: { token?: string; name?: string; expires_in?: number } = {}): Promise<{ id: string; key: string }> {
    const r = await call('POST', '/v1/keys', { token: options.token ?? adminToken, body: { name: options.name ?? `key ${scopes.join(' ')}`, scopes, ...(options.expires_in === undefined ? {} : { expires_in: options.expires_in }) } });
    expect(r.status, r.text).toBe(201);
    secrets.push(r.body.key as string);
    return { id: r.body.id as string, key: r.body.key as string };
  }

  /** A call whose response is checked for secrets later. */
  async function observed(method: string, path: string, options: { token?: string | null; body?: unknown; contentType?: string } = {}): Promise<Reply> {
    const r = await call(method, path, options);
    laterBodies.push(r.text, JSON.stringify(r.headers));
    return r;
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-keys-http-'));
    if (storeKind === 'postgres') db = await createTestDatabase();
    api = await createSentinelApi({
      dataDir: dir,
      tokenSecret: 'keys-http-secret-0123456789abcdef',
      adminPassword: ADMIN_PASSWORD,
      ...(db === undefined ? {} : { storeUrl: db.url }),
      logger: createJsonLogger({ level: 'debug', write: (line) => logLines.push(line) }),
      audit: { record: (event) => audit.push(event) },
    });
    const mounted = await mountApi(hostName, api, { logRequests: true });
    base = mounted.baseUrl;
    close = mounted.close;
    adminToken = (await api.authService.issueToken('admin')).token;
    await api.users.create({ username: 'alice', password: 'alice-password-1', role: 'user' });
    aliceToken = (await api.authService.issueToken('alice')).token;
  });

  afterAll(async () => {
    await close?.();
    await api?.close();
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates a key whose secret is answered once, lists it without secret or hash, and revokes it at once', async () => {
    const created = await call('POST', '/v1/keys', { body: { name: 'ci reader', scopes: ['images:read', 'agents:read'], expires_in: 3600 } });
    expect(created.status, created.text).toBe(201);
    const { key, id } = created.body as { key: string; id: string };
    secrets.push(key);
    expect(key).toMatch(KEY_PATTERN);
    expect(id).toMatch(/^key_[0-9a-f]{24}$/);
    expect(created.body).toEqual({
      id,
      name: 'ci reader',
      prefix: key.slice(0, 20),
      scopes: ['agents:read', 'images:read'],
      created_at: expect.any(String),
      expires_at: expect.any(String),
      last_used_at: null,
      key,
    });
    const expiresIn = Date.parse(created.body.expires_at) - Date.parse(created.body.created_at);
    expect(expiresIn).toBe(3600_000);

    const listed = await observed('GET', '/v1/keys');
    expect(listed.status).toBe(200);
    const mine = (listed.body.keys as Array<Record<string, unknown>>).find((k) => k.id === id);
    expect(mine).toEqual({ id, name: 'ci reader', prefix: key.slice(0, 20), scopes: ['agents:read', 'images:read'], created_at: created.body.created_at, expires_at: created.body.expires_at, last_used_at: null });

    // The key works as a bearer credential, within its scopes.
    expect((await observed('GET', '/v1/agents', { token: key })).status).toBe(200);
    const refused = await observed('POST', '/v1/agents', { token: key, body: { name: 'x', image: 'sentinel/echo:latest' } });
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe('insufficient_scope');
    expect(refused.headers['www-authenticate']).toBe('Bearer error="insufficient_scope", scope="agents:write"');

    // Last use shows up in the list, written off the request path.
    await api.apiKeys.flushUses();
    const used = (await observed('GET', '/v1/keys')).body.keys.find((k: { id: string }) => k.id === id);
    expect(used.last_used_at).not.toBeNull();

    expect((await observed('DELETE', `/v1/keys/${id}`)).status).toBe(204);
    const after = await observed('GET', '/v1/agents', { token: key });
    expect(after.status).toBe(401);
    expect(after.body).toMatchObject({ code: 'unauthorized', error: 'invalid api key' });
    expect((await observed('GET', '/v1/keys')).body.keys.map((k: { id: string }) => k.id)).not.toContain(id);
    expect((await observed('DELETE', `/v1/keys/${id}`)).status).toBe(404);

    const entries = audit.filter((e) => e.target === `key:${id}`);
    expect(entries.map((e) => e.action)).toEqual(['key.created', 'key.revoked']);
    expect(entries[0]).toMatchObject({ actor: 'admin', details: { name: 'ci reader', scopes: ['agents:read', 'images:read'] } });
    expect(typeof entries[0]?.request_id).toBe('string');
  });

  it('unknown, malformed and expired keys are all the same 401', async () => {
    const unknown = `sk_sentinel_${randomBytes(32).toString('base64url')}`;
    const malformed = 'sk_sentinel_short';
    // An expired key, written straight into the store with a past expiry.
    const expired = `sk_sentinel_${randomBytes(32).toString('base64url')}`;
    const owner = await api.users.authState('admin', { fresh: true });
    await api.store.createApiKey({
      id: `key_${randomBytes(12).toString('hex')}`,
      user_id: owner?.user_id ?? '',
      username: 'admin',
      name: 'expired',
      prefix: expired.slice(0, 20),
      hash: createHash('sha256').update(expired).digest('hex'),
      scopes: ['agents:read'],
      created_at: new Date(Date.now() - 7200_000).toISOString(),
      last_used_at: null,
      expires_at: new Date(Date.now() - 3600_000).toISOString(),
      revoked_at: null,
    });
    secrets.push(unknown, expired);
    for (const key of [unknown, malformed, expired]) {
      const r = await observed('GET', '/v1/agents', { token: key });
      expect(r.status).toBe(401);
      expect(r.body).toMatchObject({ code: 'unauthorized', error: 'invalid api key' });
    }
  });

  it('a key never holds more than its creator: scopes beyond the caller are 403 naming the first missing one', async () => {
    const escalation = await call('POST', '/v1/keys', { token: aliceToken, body: { name: 'too much', scopes: ['agents:read', 'admin'] } });
    expect(escalation.status).toBe(403);
    expect(escalation.body).toMatchObject({ code: 'insufficient_scope', details: { scope: 'admin' } });
    expect(escalation.headers['www-authenticate']).toBe('Bearer error="insufficient_scope", scope="admin"');

    const minter = await createKey(['keys:write', 'agents:read'], { token: aliceToken, expires_in: 3600 });
    const wider = await call('POST', '/v1/keys', { token: minter.key, body: { name: 'wider', scopes: ['agents:read', 'agents:write'] } });
    expect(wider.status).toBe(403);
    expect(wider.body.details).toEqual({ scope: 'agents:write' });
    const narrower = await call('POST', '/v1/keys', { token: minter.key, body: { name: 'narrower', scopes: ['agents:read'] } });
    expect(narrower.status, narrower.text).toBe(201);
    secrets.push(narrower.body.key as string);
    // Made by an expiring key, it expires with it (asked for no expiry, or for a later one).
    const minterExpiry = (await call('GET', '/v1/keys', { token: aliceToken })).body.keys.find((k: { id: string }) => k.id === minter.id).expires_at;
    expect(narrower.body.expires_at).toBe(minterExpiry);
    const later = await call('POST', '/v1/keys', { token: minter.key, body: { name: 'later', scopes: ['agents:read'], expires_in: 7200 } });
    expect(later.status).toBe(201);
    secrets.push(later.body.key as string);
    expect(later.body.expires_at).toBe(minterExpiry);
    // A key without keys:write cannot mint keys at all.
    const noMint = await call('POST', '/v1/keys', { token: narrower.body.key, body: { name: 'x', scopes: ['agents:read'] } });
    expect(noMint.status).toBe(403);
    expect(noMint.body.details).toEqual({ scope: 'keys:write' });
  });

  it('validates the body: known scopes, at least one, a sane name and expiry', async () => {
    const bad = [
      { name: 'x', scopes: ['agents:fly'] },
      { name: 'x', scopes: [] },
      { name: '', scopes: ['agents:read'] },
      { name: 'x'.repeat(65), scopes: ['agents:read'] },
      { name: 'line\nbreak', scopes: ['agents:read'] },
      { name: 'x', scopes: ['agents:read'], expires_in: 10 },
      { name: 'x', scopes: ['agents:read'], expires_in: 1.5 },
      { name: 'x', scopes: ['agents:read'], extra: true },
      { scopes: ['agents:read'] },
    ];
    for (const body of bad) {
      const r = await call('POST', '/v1/keys', { body });
      expect(r.status, JSON.stringify(body)).toBe(400);
    }
  });

  it("only the owner (or an admin) revokes a key; an admin lists any user's keys", async () => {
    const alices = await createKey(['agents:read'], { token: aliceToken, name: 'alice reader' });
    const admins = await createKey(['agents:read']);
    // Alice cannot see or revoke the admin's key: it does not exist for her.
    expect((await observed('DELETE', `/v1/keys/${admins.id}`, { token: aliceToken })).status).toBe(404);
    expect((await observed('GET', '/v1/keys', { token: aliceToken })).body.keys.map((k: { id: string }) => k.id)).not.toContain(admins.id);
    expect((await observed('GET', '/v1/agents', { token: admins.key })).status).toBe(200);
    const ofAlice = await observed('GET', '/v1/users/alice/keys');
    expect(ofAlice.status).toBe(200);
    expect(ofAlice.body.keys.map((k: { id: string }) => k.id)).toContain(alices.id);
    expect((await observed('GET', '/v1/users/alice/keys', { token: aliceToken })).status).toBe(403);
    expect((await observed('GET', '/v1/users/nobody-here/keys')).status).toBe(404);
    // The admin revokes Alice's key.
    expect((await observed('DELETE', `/v1/keys/${alices.id}`)).status).toBe(204);
    expect((await observed('GET', '/v1/agents', { token: alices.key })).status).toBe(401);
    const revokedEntry = audit.find((e) => e.action === 'key.revoked' && e.target === `key:${alices.id}`);
    expect(revokedEntry).toMatchObject({ actor: 'admin', details: { owner: 'alice', name: 'alice reader' } });
  });

  it('a key of an admin who becomes a user loses admin at once; a deleted owner takes the keys along', async () => {
    await api.users.create({ username: 'carol', password: 'carol-password-1', role: 'admin' });
    const carolToken = (await api.authService.issueToken('carol')).token;
    const carols = await createKey(['admin', 'agents:read'], { token: carolToken });
    expect((await observed('GET', '/v1/users', { token: carols.key })).status).toBe(200);
    // The role drops (the store is changed directly; an admin's password reset makes every
    // instance drop the cached account, as any account write does).
    await api.store.updateUser('carol', { role: 'user', updated_at: new Date().toISOString() });
    expect((await call('PUT', '/v1/users/carol/password', { body: { new_password: 'carol-password-2' } })).status).toBe(204);
    const principal = await api.authService.authenticate(`Bearer ${carols.key}`);
    expect(principal).toMatchObject({ username: 'carol', role: 'user', scopes: ['agents:read'], via: 'key', credentialId: carols.id });
    expect((await observed('GET', '/v1/users', { token: carols.key })).status).toBe(403);
    expect((await observed('GET', '/v1/agents', { token: carols.key })).status).toBe(200);

    expect((await call('DELETE', '/v1/users/carol')).status).toBe(204);
    expect((await observed('GET', '/v1/agents', { token: carols.key })).status).toBe(401);
    // Created again under the same name, carol is another account: the old key stays dead.
    await api.users.create({ username: 'carol', password: 'carol-password-3', role: 'admin' });
    expect((await observed('GET', '/v1/agents', { token: carols.key })).status).toBe(401);
  });

  it('every scoped route: a key lacking its scope gets 403 with the challenge, a key holding it is not refused for scope', async () => {
    const lacking = new Map<Scope, string>();
    const holding = new Map<Scope, string>();
    for (const scope of SCOPES) {
      // Without `admin` as well: an admin's `admin` scope implies every other one.
      lacking.set(scope, (await createKey(SCOPES.filter((s) => s !== scope && s !== 'admin'), { name: `all but ${scope}` })).key);
      holding.set(scope, (await createKey([scope], { name: `only ${scope}` })).key);
    }
    const scoped = api.routes.filter((r) => r.auth !== 'public' && r.scope !== undefined);
    expect(scoped.length).toBeGreaterThan(20);
    for (const route of scoped) {
      const scope = route.scope as Scope;
      const path = route.path.replace(/:[^/]+/g, 'no-such-thing');
      const formats = bodyFormatsOf(route);
      const body = formats.length === 0 ? undefined : formats.includes('json') ? '{}' : '{}\n';
      const contentType = formats.includes('json') ? 'application/json' : 'application/yaml';
      const where = `${route.method} ${route.path}`;
      const refused = await observed(route.method, path, { token: lacking.get(scope) as string, ...(body === undefined ? {} : { body, contentType }) });
      expect(refused.status, `${where} without ${scope}: ${refused.text}`).toBe(403);
      expect(refused.body.code, where).toBe('insufficient_scope');
      expect(refused.headers['www-authenticate'], where).toBe(`Bearer error="insufficient_scope", scope="${scope}"`);
      const allowed = await observed(route.method, path, { token: holding.get(scope) as string, ...(body === undefined ? {} : { body, contentType }) });
      expect(allowed.status === 403 && allowed.body?.code === 'insufficient_scope', `${where} with ${scope}: ${allowed.text}`).toBe(false);
      expect(allowed.status, `${where} with ${scope}`).not.toBe(401);
    }
    // Session-only: no key may change a password, whatever its scopes.
    const all = await createKey(SCOPES, { name: 'everything' });
    const password = await observed('PUT', '/v1/users/admin/password', { token: all.key, body: { current_password: ADMIN_PASSWORD, new_password: 'another-password-1' } });
    expect(password.status).toBe(403);
    expect(password.body.code).toBe('insufficient_scope');
  });

  it('no secret appears in a later response, a log line or an audit entry', async () => {
    await api.apiKeys.flushUses();
    expect(secrets.length).toBeGreaterThan(10);
    const haystacks = { responses: laterBodies.join('\n'), logs: logLines.join('\n'), audit: JSON.stringify(audit) };
    for (const secret of secrets) {
      const hash = createHash('sha256').update(secret).digest('hex');
      for (const [where, text] of Object.entries(haystacks)) {
        expect(text.includes(secret), `a key in the ${where}`).toBe(false);
        expect(text.includes(secret.slice(20)), `a key's secret part in the ${where}`).toBe(false);
        expect(text.includes(hash), `a key hash in the ${where}`).toBe(false);
      }
    }
    expect(logLines.some((line) => line.includes('api key created'))).toBe(true);
  });
});
