/**
 * The audit log through real HTTP against the real core on a real SQLite file: logins (good and
 * bad) journaled on every host with actor, target, client address, request id and time; every
 * other recorded action (users, passwords, image push and delete, an admin deleting someone
 * else's agent) on the standalone server; `GET /v1/audit` for admins only, filtered and paged;
 * no password anywhere in the journal or the server's log; the journal kept across a restart.
 * Client addresses are simulated with X-Forwarded-For under `trustProxy`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createJsonLogger, createSentinelApi, type AuditEntry, type SentinelApi } from '@sentinel/api-core';
import { HOSTS, mountApi } from '@sentinel/test-support/hosts';

const ADMIN_PASSWORD = 'admin-audit-password-1';
const ALICE_PASSWORD = 'alice-audit-password-1';
const ALICE_PASSWORD_2 = 'alice-audit-password-2';
const ALICE_PASSWORD_3 = 'alice-audit-password-3';
const WRONG_PASSWORD = 'wrong-audit-password-9';
const BOB_PASSWORD = 'bob-audit-password-1';
/** Every password this file sends: none may appear in an audit entry or a log line. */
const PASSWORDS = [ADMIN_PASSWORD, ALICE_PASSWORD, ALICE_PASSWORD_2, ALICE_PASSWORD_3, WRONG_PASSWORD, BOB_PASSWORD];

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

/** One server on one data directory, with every line its logger wrote. */
interface Harness {
  dir: string;
  api: SentinelApi;
  base: string;
  logLines: string[];
  close(): Promise<void>;
}

async function start(hostName: (typeof HOSTS)[number], dir: string): Promise<Harness> {
  const logLines: string[] = [];
  const logger = createJsonLogger({ level: 'debug', write: (line) => logLines.push(line) });
  const api = await createSentinelApi({ dataDir: dir, tokenSecret: 'audit-http-secret-0123456789abcdef', adminPassword: ADMIN_PASSWORD, logger });
  const mounted = await mountApi(hostName, api, { trustProxy: true, logger });
  return {
    dir,
    api,
    base: mounted.baseUrl,
    logLines,
    close: async () => {
      await mounted.close();
      await api.close();
    },
  };
}

async function call(
  base: string,
  method: string,
  path: string,
  options: { token?: string | null; body?: unknown; from?: string; requestId?: string } = {},
): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.from) headers['x-forwarded-for'] = options.from;
  if (options.requestId) headers['x-request-id'] = options.requestId;
  let body: string | undefined;
  if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers['content-type'] = 'application/json';
  }
  const res = await request(`${base}${path}`, { method: method as 'GET', headers, body });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body: text && String(res.headers['content-type']).includes('json') ? JSON.parse(text) : text };
}

async function tokenFor(base: string, username: string, password: string, from = '192.0.2.10'): Promise<string> {
  const r = await call(base, 'POST', '/v1/auth/login', { body: { username, password }, from });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.token as string;
}

/** Every entry, through the route, once what was recorded so far is written. */
async function journal(h: Harness, token: string, query = ''): Promise<AuditEntry[]> {
  await h.api.audit.flush();
  const r = await call(h.base, 'GET', `/v1/audit?limit=1000${query}`, { token });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.entries as AuditEntry[];
}

function expectNoPassword(text: string): void {
  for (const password of PASSWORDS) expect(text.includes(password), `a password appears in: ${text.slice(0, 300)}`).toBe(false);
}

describe.each(HOSTS)('audit log of logins on %s', (hostName) => {
  let h: Harness;
  let adminToken: string;

  beforeAll(async () => {
    h = await start(hostName, mkdtempSync(join(tmpdir(), 'sentinel-audit-http-')));
    adminToken = await tokenFor(h.base, 'admin', ADMIN_PASSWORD);
  });

  afterAll(async () => {
    await h?.close();
    if (h) rmSync(h.dir, { recursive: true, force: true });
  });

  it('journals a login and a failed login with actor, target, address, request id and time, never the password', async () => {
    const before = Date.now();
    const good = await call(h.base, 'POST', '/v1/auth/login', { body: { username: 'admin', password: ADMIN_PASSWORD }, from: '198.51.100.1', requestId: 'req-login-ok' });
    expect(good.status).toBe(200);
    const bad = await call(h.base, 'POST', '/v1/auth/login', { body: { username: 'admin', password: WRONG_PASSWORD }, from: '198.51.100.2', requestId: 'req-login-bad' });
    expect(bad.status).toBe(401);
    const unknown = await call(h.base, 'POST', '/v1/auth/login', { body: { username: 'mallory', password: WRONG_PASSWORD }, from: '198.51.100.3', requestId: 'req-login-who' });
    expect(unknown.status).toBe(401);
    const after = Date.now();

    const entries = await journal(h, adminToken);
    const byRequest = (id: string) => entries.filter((entry) => entry.request_id === id);
    expect(byRequest('req-login-ok')).toEqual([
      { seq: expect.any(Number), at: expect.any(String), actor: 'admin', action: 'auth.login', target: 'user:admin', address: '198.51.100.1', request_id: 'req-login-ok', details: {} },
    ]);
    expect(byRequest('req-login-bad')).toEqual([
      {
        seq: expect.any(Number),
        at: expect.any(String),
        actor: null,
        action: 'auth.login_failed',
        target: 'user:admin',
        address: '198.51.100.2',
        request_id: 'req-login-bad',
        details: { reason: 'invalid_credentials' },
      },
    ]);
    expect(byRequest('req-login-who')).toMatchObject([{ actor: null, action: 'auth.login_failed', target: 'user:mallory', address: '198.51.100.3' }]);
    for (const id of ['req-login-ok', 'req-login-bad', 'req-login-who']) {
      const at = Date.parse(byRequest(id)[0]?.at ?? '');
      expect(at).toBeGreaterThanOrEqual(before);
      expect(at).toBeLessThanOrEqual(after);
    }
    // Seq order is the order things happened in.
    const seqs = ['req-login-ok', 'req-login-bad', 'req-login-who'].map((id) => byRequest(id)[0]?.seq ?? 0);
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    expectNoPassword(JSON.stringify(entries));
    // The log was captured (the failures are in it), and holds no password either.
    expect(h.logLines.some((line) => line.includes('login failed'))).toBe(true);
    expectNoPassword(h.logLines.join('\n'));
  });

  it('refuses the audit route to a user (403), with or without a query', async () => {
    expect((await call(h.base, 'POST', '/v1/users', { token: adminToken, body: { username: 'reader', password: BOB_PASSWORD } })).status).toBe(201);
    const userToken = await tokenFor(h.base, 'reader', BOB_PASSWORD);
    const refused = await call(h.base, 'GET', '/v1/audit', { token: userToken });
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe('forbidden');
    expect((await call(h.base, 'GET', '/v1/audit?actor=reader', { token: userToken })).status).toBe(403);
    expect((await call(h.base, 'GET', '/v1/audit')).status).toBe(401);
  });
});

describe('audit log of every recorded action (standalone server)', () => {
  let h: Harness;
  let adminToken: string;

  beforeAll(async () => {
    h = await start('standalone', mkdtempSync(join(tmpdir(), 'sentinel-audit-actions-')));
    adminToken = await tokenFor(h.base, 'admin', ADMIN_PASSWORD);
  });

  afterAll(async () => {
    await h?.close();
    if (h) rmSync(h.dir, { recursive: true, force: true });
  });

  it('journals user create/delete, own and reset passwords, image push and delete, and an admin deleting another user\'s agent', async () => {
    const admin = { token: adminToken, from: '203.0.113.5' };
    const created = await call(h.base, 'POST', '/v1/users', { ...admin, body: { username: 'alice', password: ALICE_PASSWORD, can_push: true }, requestId: 'req-create' });
    expect(created.status).toBe(201);
    const aliceToken = await tokenFor(h.base, 'alice', ALICE_PASSWORD, '203.0.113.9');
    const own = await call(h.base, 'PUT', '/v1/users/alice/password', {
      token: aliceToken,
      from: '203.0.113.9',
      body: { current_password: ALICE_PASSWORD, new_password: ALICE_PASSWORD_2 },
      requestId: 'req-own',
    });
    expect(own.status).toBe(204);
    const reset = await call(h.base, 'PUT', '/v1/users/alice/password', { ...admin, body: { new_password: ALICE_PASSWORD_3 }, requestId: 'req-reset' });
    expect(reset.status).toBe(204);
    const alice = await tokenFor(h.base, 'alice', ALICE_PASSWORD_3, '203.0.113.9');

    // Alice's own agent deleted by herself is not an audit matter; by an admin it is.
    const mine = await call(h.base, 'POST', '/v1/agents', { token: alice, body: { image: 'sentinel/echo:latest', name: 'mine' } });
    expect(mine.status).toBe(201);
    expect((await call(h.base, 'DELETE', `/v1/agents/${mine.body.id}`, { token: alice, requestId: 'req-own-agent' })).status).toBe(204);
    const theirs = await call(h.base, 'POST', '/v1/agents', { token: alice, body: { image: 'sentinel/echo:latest', name: 'theirs' } });
    expect(theirs.status).toBe(201);
    expect((await call(h.base, 'DELETE', `/v1/agents/${theirs.body.id}`, { ...admin, requestId: 'req-agent' })).status).toBe(204);

    // An image of alice's, pushed to the embedded registry, then deleted.
    const built = await call(h.base, 'POST', '/v1/images', {
      token: alice,
      body: { name: 'alice/bot', tag: 'v1', description: 'audited', model: { provider: 'echo', name: 'echo' } },
    });
    expect(built.status, JSON.stringify(built.body)).toBe(201);
    const pushed = await call(h.base, 'POST', '/v1/registry/push', { token: alice, from: '203.0.113.9', body: { image: 'alice/bot:v1' }, requestId: 'req-push' });
    expect(pushed.status, JSON.stringify(pushed.body)).toBe(200);
    const deletedImage = await call(h.base, 'DELETE', '/v1/images/alice%2Fbot:v1', { token: alice, from: '203.0.113.9', requestId: 'req-image' });
    expect(deletedImage.status, JSON.stringify(deletedImage.body)).toBe(204);

    const deletedUser = await call(h.base, 'DELETE', '/v1/users/alice', { ...admin, requestId: 'req-delete' });
    expect(deletedUser.status).toBe(204);

    const entries = await journal(h, adminToken);
    const one = (id: string) => {
      const found = entries.filter((entry) => entry.request_id === id);
      expect(found, id).toHaveLength(1);
      return found[0];
    };
    expect(one('req-create')).toMatchObject({ actor: 'admin', action: 'user.created', target: 'user:alice', address: '203.0.113.5', details: { role: 'user', can_push: true } });
    expect(one('req-own')).toMatchObject({ actor: 'alice', action: 'auth.password_changed', target: 'user:alice', address: '203.0.113.9', details: { reset: false } });
    expect(one('req-reset')).toMatchObject({ actor: 'admin', action: 'auth.password_changed', target: 'user:alice', address: '203.0.113.5', details: { reset: true } });
    expect(entries.filter((entry) => entry.request_id === 'req-own-agent')).toEqual([]);
    expect(one('req-agent')).toMatchObject({ actor: 'admin', action: 'agent.deleted', target: `agent:${theirs.body.id}`, details: { owner: 'alice', name: 'theirs' } });
    expect(one('req-push')).toMatchObject({
      actor: 'alice',
      action: 'image.pushed',
      target: 'image:alice/bot:v1',
      address: '203.0.113.9',
      details: { digest: built.body.id, registry: pushed.body.registry, image: 'alice/bot:v1' },
    });
    expect(one('req-image')).toMatchObject({ actor: 'alice', action: 'image.deleted', target: 'image:alice/bot:v1', details: { digest: built.body.id, tags: ['alice/bot:v1'] } });
    expect(one('req-delete')).toMatchObject({ actor: 'admin', action: 'user.deleted', target: 'user:alice', address: '203.0.113.5' });
    for (const entry of entries) expect(Number.isNaN(Date.parse(entry.at))).toBe(false);

    // No password, nor a token, anywhere in the journal or the server's log.
    const everything = JSON.stringify(entries);
    expectNoPassword(everything);
    expectNoPassword(h.logLines.join('\n'));
    for (const token of [adminToken, aliceToken, alice]) {
      expect(everything.includes(token)).toBe(false);
      expect(h.logLines.join('\n').includes(token)).toBe(false);
    }
  });

  it('filters by actor and action and pages with since/limit/next', async () => {
    for (let i = 0; i < 5; i++) {
      expect((await call(h.base, 'POST', '/v1/auth/login', { body: { username: 'pager', password: WRONG_PASSWORD }, from: `198.18.0.${i + 1}` })).status).toBe(401);
    }
    await h.api.audit.flush();
    const failed = await call(h.base, 'GET', '/v1/audit?action=auth.login_failed&limit=1000', { token: adminToken });
    expect(failed.body.entries.filter((e: AuditEntry) => e.target === 'user:pager')).toHaveLength(5);
    expect(failed.body.entries.every((e: AuditEntry) => e.action === 'auth.login_failed')).toBe(true);
    const byAdmin = await call(h.base, 'GET', '/v1/audit?actor=admin&limit=1000', { token: adminToken });
    expect(byAdmin.body.entries.length).toBeGreaterThan(0);
    expect(byAdmin.body.entries.every((e: AuditEntry) => e.actor === 'admin')).toBe(true);
    const both = await call(h.base, 'GET', '/v1/audit?actor=admin&action=user.created', { token: adminToken });
    expect(both.body.entries.map((e: AuditEntry) => e.target)).toEqual(['user:alice']);

    // Pages of two over the failed logins: every entry once, in seq order; next null at the end.
    const seen: number[] = [];
    let since = 0;
    for (let pages = 0; pages < 100; pages++) {
      const page = await call(h.base, 'GET', `/v1/audit?action=auth.login_failed&limit=2&since=${since}`, { token: adminToken });
      expect(page.status).toBe(200);
      expect(page.body.entries.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.entries.map((e: AuditEntry) => e.seq));
      if (page.body.next === null) break;
      expect(page.body.next).toBe(page.body.entries.at(-1).seq);
      since = page.body.next;
    }
    expect(seen).toEqual(failed.body.entries.map((e: AuditEntry) => e.seq));
    expect((await call(h.base, 'GET', `/v1/audit?since=${seen.at(-1)}&action=auth.login_failed`, { token: adminToken })).body).toEqual({ entries: [], next: null });

    for (const bad of ['limit=0', 'limit=1001', 'since=-1', 'action=DROP', 'extra=1']) {
      const r = await call(h.base, 'GET', `/v1/audit?${bad}`, { token: adminToken });
      expect(r.status, bad).toBe(400);
      expect(r.body.code).toBe('invalid_request');
    }
  });

  it('keeps the journal across a restart on the same SQLite file, and numbers on after it', async () => {
    const before = await journal(h, adminToken);
    expect(before.length).toBeGreaterThan(5);
    await h.close();
    h = await start('standalone', h.dir);
    adminToken = await tokenFor(h.base, 'admin', ADMIN_PASSWORD, '192.0.2.77');
    const after = await journal(h, adminToken);
    expect(after.slice(0, before.length)).toEqual(before);
    expect(after.at(-1)).toMatchObject({ action: 'auth.login', actor: 'admin', address: '192.0.2.77' });
    expect(after.at(-1)?.seq).toBeGreaterThan(before.at(-1)?.seq ?? Infinity);
  });
});
