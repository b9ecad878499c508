/**
 * Logout, revoke-tokens and ticket routes against real services on a real SQLite store: the
 * audit entries they write (and that no secret is in them), the revoked-token list surviving a
 * restart and pruned after expiry, and the credential-revocation signal transports follow.
 */
import { createSecretKey } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileRoute, invokeRoute, openSqliteStore, silentLogger, type CompiledRoute, type Principal, type RouteContext, type Store } from '@sentinel/api-core';
import type { AuditEvent } from '../src/contract/audit.js';
import { CredentialRevocations, TokenRevocations, type CredentialRevocation } from '../src/auth/revocations.js';
import { AuthService } from '../src/auth/service.js';
import { TicketService } from '../src/auth/tickets.js';
import { TokenService } from '../src/auth/tokens.js';
import { UserService } from '../src/auth/users.js';
import { sessionRoutes } from '../src/routes/sessions.js';
import { createSentinelApi, type SentinelApi } from '../src/create-api.js';

const KEY = createSecretKey(Buffer.from('session-routes-secret-0123456789', 'utf8'));
let dir: string;
let store: Store;
let routes: Map<string, CompiledRoute>;
let auth: AuthService;
let users: UserService;
let revocations: TokenRevocations;
const audit: AuditEvent[] = [];
const signals: CredentialRevocation[] = [];
const tokens = new TokenService({ key: KEY, ttlSeconds: 3600 });

let api: SentinelApi;
let agentId: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sentinel-session-routes-'));
  store = await openSqliteStore({ path: join(dir, 'sentinel.db') });
  users = new UserService({ store });
  const feed = new CredentialRevocations();
  feed.subscribe((signal) => signals.push(signal));
  users.watch((username) => feed.emit(username === null ? {} : { username }));
  revocations = new TokenRevocations({ store, onRevoked: (signal) => feed.emit(signal) });
  auth = new AuthService({ users, tokens, revocations });
  await users.create({ username: 'root', password: 'root-password', role: 'admin' });
  await users.create({ username: 'alice', password: 'alice-password' });
  // A real agent service (its own api on its own store) for the ticket route's visibility check.
  api = await createSentinelApi({ dataDir: join(dir, 'agents'), tokenSecret: 'session-routes-secret-0123456789', adminPassword: 'admin-password' });
  await api.users.create({ username: 'alice', password: 'alice-password' });
  agentId = (await api.agents.create({ username: 'alice', role: 'user' }, { image: 'sentinel/echo:latest', name: 'ticketed' }, { secure: false, host: 'localhost' })).id;
  const table = sessionRoutes({ auth, users, agents: api.agents, tickets: new TicketService(), audit: { record: (event) => audit.push(event) } });
  routes = new Map(table.map((r) => [`${r.method} ${r.path}`, compileRoute(r)]));
});

afterAll(async () => {
  revocations.close();
  await api.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function ctx(principal: Principal): RouteContext {
  return { principal, requestId: 'req-7', signal: new AbortController().signal, log: silentLogger, origin: { secure: false, host: 'localhost' }, remoteAddress: '192.0.2.9' };
}

function call(key: string, principal: Principal, input: { params?: Record<string, string>; body?: unknown } = {}) {
  const route = routes.get(key);
  if (!route) throw new Error(`no route ${key}`);
  const body = input.body === undefined ? undefined : { format: 'json' as const, text: JSON.stringify(input.body) };
  return invokeRoute(route, { params: input.params ?? {}, query: {}, ...(body ? { body } : {}) }, ctx(principal), (_f, text) => JSON.parse(text));
}

describe('session routes', () => {
  it('logout revokes the presented token only, records auth.logout, and signals its credential id', async () => {
    const { token } = await auth.login({ username: 'alice', password: 'alice-password' }, '192.0.2.9');
    const { token: other } = await auth.login({ username: 'alice', password: 'alice-password' }, '192.0.2.9');
    const principal = await auth.authenticate(`Bearer ${token}`);
    expect(principal).toMatchObject({ username: 'alice', via: 'session', credentialId: expect.any(String), expiresAtMs: expect.any(Number) });
    expect(await call('POST /v1/auth/logout', principal)).toEqual({ status: 204, body: undefined });
    await expect(auth.authenticate(`Bearer ${token}`)).rejects.toMatchObject({ code: 'unauthorized', message: 'token revoked' });
    await expect(auth.authenticate(`Bearer ${other}`)).resolves.toMatchObject({ username: 'alice' });
    expect(signals).toContainEqual({ username: 'alice', credentialId: principal.credentialId });
    expect(audit.at(-1)).toEqual({ action: 'auth.logout', actor: 'alice', target: 'user:alice', address: '192.0.2.9', request_id: 'req-7' });

    // The list is in the store: a new instance (or a restart) refuses the token too.
    const restarted = new TokenRevocations({ store });
    await restarted.load();
    expect(restarted.isRevoked(principal.credentialId ?? '')).toBe(true);
    restarted.close();
    const fresh = new AuthService({ users, tokens, revocations: restarted });
    await expect(fresh.authenticate(`Bearer ${token}`)).rejects.toMatchObject({ code: 'unauthorized' });
  });

  it('revoke-tokens (admin only) revokes every earlier token of the user, records auth.tokens_revoked', async () => {
    const { token } = await auth.login({ username: 'alice', password: 'alice-password' }, '192.0.2.9');
    const alice = await auth.authenticate(`Bearer ${token}`);
    await expect(call('POST /v1/users/:name/revoke-tokens', alice, { params: { name: 'alice' } })).rejects.toMatchObject({ code: 'forbidden' });
    const root = await auth.authenticate(`Bearer ${(await auth.issueToken('root')).token}`);
    expect((await call('POST /v1/users/:name/revoke-tokens', root, { params: { name: 'alice' } })).status).toBe(204);
    await expect(auth.authenticate(`Bearer ${token}`)).rejects.toMatchObject({ code: 'unauthorized', message: 'token revoked' });
    await expect(auth.recheck(alice)).rejects.toMatchObject({ code: 'unauthorized' });
    expect(signals.at(-1)).toEqual({ username: 'alice' });
    expect(audit.at(-1)).toEqual({ action: 'auth.tokens_revoked', actor: 'root', target: 'user:alice', address: '192.0.2.9', request_id: 'req-7' });
    await expect(call('POST /v1/users/:name/revoke-tokens', root, { params: { name: 'nobody' } })).rejects.toMatchObject({ code: 'not_found' });
  });

  it('mints tickets for visible agents only, and no token or ticket ever reaches the audit log', async () => {
    const { token } = await auth.login({ username: 'alice', password: 'alice-password' }, '192.0.2.9');
    const alice = await auth.authenticate(`Bearer ${token}`);
    const minted = await call('POST /v1/ws-tickets', alice, { body: { agent_id: agentId, channel: 'chat' } });
    expect(minted.status).toBe(201);
    const { ticket } = minted.body as { ticket: string };
    await expect(call('POST /v1/ws-tickets', alice, { body: { agent_id: 'no-such-agent', channel: 'chat' } })).rejects.toMatchObject({ code: 'not_found' });
    await expect(call('POST /v1/ws-tickets', { ...alice, scopes: ['agents:read'] }, { body: { agent_id: agentId, channel: 'chat' } })).rejects.toMatchObject({ code: 'insufficient_scope' });
    const serialized = JSON.stringify(audit);
    expect(serialized).not.toContain(token);
    expect(serialized).not.toContain(ticket);
    expect(serialized).not.toContain(token.split('.')[2]);
  });

  it('prunes revocations once their tokens have expired', async () => {
    let now = 2_000_000_000_000;
    const clocked = new TokenRevocations({ store, now: () => now });
    await clocked.revoke({ jti: 'short-lived', username: 'alice', expires_at_ms: now + 1000 });
    expect(clocked.isRevoked('short-lived')).toBe(true);
    now += 1001;
    expect(clocked.isRevoked('short-lived')).toBe(false);
    await clocked.prune();
    expect((await store.listRevokedTokens(0)).map((r) => r.jti)).not.toContain('short-lived');
    clocked.close();
  });
});
