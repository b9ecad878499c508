/**
 * OpenID Connect bearer tokens end to end: a real OpenID provider (`oidc-provider`) on
 * loopback issues client-credentials access tokens as JWTs; the real core (createSentinelApi
 * on a SQLite file) verifies them behind a real HTTP listener on every host. Forged tokens
 * (unknown keys, HS256, none, expired, not yet valid) are signed by hand.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createSentinelApi, type AuditEvent, type SentinelApi } from '@sentinel/api-core';
import { HOSTS, mountApi } from '@sentinel/test-support/hosts';
import {
  EDDSA_RESOURCE,
  OIDC_AUDIENCE,
  OTHER_RESOURCE,
  RS256_RESOURCE,
  signJwt,
  startOidcProvider,
  unpublishedKey,
  type RunningOidcProvider,
} from '@sentinel/test-support/oidc-provider';

const ADMIN_PASSWORD = 'admin-password-123';
const TOKEN_SECRET = 'oidc-http-secret-0123456789abcdef';
const CLIENTS = [
  { clientId: 'build-bot' },
  { clientId: 'ops-console', claims: { groups: ['staff', 'sentinel-admins'] } },
  { clientId: 'named-svc', claims: { preferred_username: 'Ada Lovelace!' } },
  { clientId: 'alice-svc', claims: { preferred_username: 'alice' } },
  { clientId: 'burst-svc' },
];

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

async function call(base: string, method: string, path: string, token: string | null, body?: unknown): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await request(`${base}${path}`, { method: method as 'GET', headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body: text && String(res.headers['content-type']).includes('json') ? JSON.parse(text) : text };
}

/** Claims a genuine token of `issuer` would carry, valid for five minutes from now. */
function claimsFor(issuer: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return { iss: issuer, aud: OIDC_AUDIENCE, sub: 'forger', iat: now, exp: now + 300, jti: `j-${now}`, ...overrides };
}

describe.each(HOSTS)('OpenID Connect bearer tokens on %s', (hostName) => {
  let dir: string;
  let provider: RunningOidcProvider;
  let otherIssuer: RunningOidcProvider;
  let api: SentinelApi;
  let base: string;
  let close: () => Promise<void>;
  let adminToken: string;
  const audit: AuditEvent[] = [];

  beforeAll(async () => {
    provider = await startOidcProvider({ clients: CLIENTS });
    otherIssuer = await startOidcProvider({ clients: CLIENTS });
    dir = mkdtempSync(join(tmpdir(), 'sentinel-oidc-http-'));
    api = await createSentinelApi({
      dataDir: dir,
      tokenSecret: TOKEN_SECRET,
      adminPassword: ADMIN_PASSWORD,
      oidc: { issuer: provider.issuer, audience: OIDC_AUDIENCE, adminClaim: 'groups', adminValue: 'sentinel-admins' },
      audit: { record: (event) => audit.push(event) },
    });
    const mounted = await mountApi(hostName, api, { logRequests: false });
    base = mounted.baseUrl;
    close = mounted.close;
    const login = await call(base, 'POST', '/v1/auth/login', null, { username: 'admin', password: ADMIN_PASSWORD });
    adminToken = login.body.token as string;
  });

  afterAll(async () => {
    await close?.();
    await api?.close();
    await provider?.close();
    await otherIssuer?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('accepts a valid token: the subject becomes a user with role user on first use, and the next token reuses it', async () => {
    const first = await call(base, 'GET', '/v1/auth/me', await provider.token('build-bot'));
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    expect(first.body).toMatchObject({ username: 'build-bot', role: 'user', can_push: false });
    const usersBefore = await api.store.countUsers();

    const second = await call(base, 'GET', '/v1/agents', await provider.token('build-bot'));
    expect(second.status).toBe(200);
    expect(await api.store.countUsers()).toBe(usersBefore);
    expect((await api.store.getIdentityUser({ issuer: provider.issuer, subject: 'build-bot' }))?.username).toBe('build-bot');

    // Audited once, with the identity and never the token.
    const created = audit.filter((e) => e.action === 'user.created' && e.target === 'user:build-bot');
    expect(created).toHaveLength(1);
    expect(created[0]?.details).toMatchObject({ issuer: provider.issuer, subject: 'build-bot' });
    expect(JSON.stringify(audit)).not.toMatch(/eyJ/);
  });

  it('creates one account when the first requests of a new identity arrive together', async () => {
    const tokens = await Promise.all(Array.from({ length: 8 }, () => provider.token('burst-svc')));
    const replies = await Promise.all(tokens.map((t) => call(base, 'GET', '/v1/auth/me', t)));
    expect(replies.map((r) => r.body.username)).toEqual(tokens.map(() => 'burst-svc'));
    expect((await api.store.listUsers()).filter((u) => u.username.startsWith('burst-svc'))).toHaveLength(1);
    expect(audit.filter((e) => e.action === 'user.created' && e.target === 'user:burst-svc')).toHaveLength(1);
  });

  it('has no password: a password login as that user fails like any wrong password', async () => {
    await provider.token('build-bot').then((t) => call(base, 'GET', '/v1/auth/me', t));
    const login = await call(base, 'POST', '/v1/auth/login', null, { username: 'build-bot', password: 'any-password-123' });
    expect(login.status).toBe(401);
    expect(login.body).toEqual({ error: 'invalid username or password', code: 'unauthorized', docs: '/docs/errors#unauthorized' });
    // Nor can one be given to it, by the user or by an admin.
    const reset = await call(base, 'PUT', '/v1/users/build-bot/password', adminToken, { new_password: 'now-a-password-123' });
    expect(reset.status).toBe(409);
    const own = await call(base, 'PUT', '/v1/users/build-bot/password', await provider.token('build-bot'), { current_password: 'x', new_password: 'now-a-password-123' });
    expect(own.status).toBe(409);
    expect((await call(base, 'POST', '/v1/auth/login', null, { username: 'build-bot', password: 'now-a-password-123' })).status).toBe(401);
  });

  it('grants admin for the admin claim, per token; others get 403 on admin routes', async () => {
    const asOps = await call(base, 'GET', '/v1/users', await provider.token('ops-console'));
    expect(asOps.status, JSON.stringify(asOps.body)).toBe(200);
    const names = (asOps.body.users as { username: string; role: string }[]).map((u) => u.username);
    expect(names).toContain('ops-console');
    // Stored as a plain user: the admin comes from the claim of each token.
    expect((await api.store.getUser('ops-console'))?.role).toBe('user');
    const asBot = await call(base, 'GET', '/v1/users', await provider.token('build-bot'));
    expect(asBot.status).toBe(403);
  });

  it('maps the scope claim to our scopes: a route outside them is 403 insufficient_scope', async () => {
    const token = await provider.token('build-bot', { scope: 'agents:read profile' });
    expect((await call(base, 'GET', '/v1/agents', token)).status).toBe(200);
    const refused = await call(base, 'GET', '/v1/images', token);
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe('insufficient_scope');
    expect(refused.headers['www-authenticate']).toBe('Bearer error="insufficient_scope", scope="images:read"');
    // A user's token naming `admin` still does not make it an admin.
    const overreach = await provider.token('build-bot', { scope: 'agents:read admin' });
    expect((await call(base, 'GET', '/v1/users', overreach)).status).toBe(403);
    // An admin's token limited to agents:read cannot use the admin routes.
    const narrowAdmin = await provider.token('ops-console', { scope: 'agents:read' });
    const narrow = await call(base, 'GET', '/v1/users', narrowAdmin);
    expect(narrow.status).toBe(403);
    expect(narrow.body.code).toBe('insufficient_scope');
  });

  it('derives a valid, unique username and never takes over a local user of the same name', async () => {
    expect((await call(base, 'POST', '/v1/users', adminToken, { username: 'alice', password: 'alice-password' })).status).toBe(201);
    const named = await call(base, 'GET', '/v1/auth/me', await provider.token('named-svc'));
    expect(named.body.username).toBe('Ada-Lovelace-');
    const aliceSvc = await call(base, 'GET', '/v1/auth/me', await provider.token('alice-svc'));
    expect(aliceSvc.status).toBe(200);
    expect(aliceSvc.body.username).toBe('alice-2');
    // Local logins keep working beside OIDC.
    const login = await call(base, 'POST', '/v1/auth/login', null, { username: 'alice', password: 'alice-password' });
    expect(login.status).toBe(200);
    expect((await call(base, 'GET', '/v1/auth/me', login.body.token as string)).body.username).toBe('alice');
  });

  it('accepts RS256 and EdDSA tokens from the issuer as well as ES256', async () => {
    for (const resource of [RS256_RESOURCE, EDDSA_RESOURCE]) {
      const token = await provider.token('build-bot', { resource });
      const reply = await call(base, 'GET', '/v1/auth/me', token);
      expect(reply.status, `${resource}: ${JSON.stringify(reply.body)}`).toBe(200);
      expect(reply.body.username).toBe('build-bot');
    }
  });

  it('accepts a token signed with a rotated-in key after one JWKS refetch; a storm of unknown kids right after causes none', async () => {
    // Known keys first, so the JWKS is cached.
    expect((await call(base, 'GET', '/v1/auth/me', await provider.token('build-bot'))).status).toBe(200);
    const before = provider.jwksRequests();
    const rotated = provider.rotateKeys();
    const token = await provider.token('build-bot');
    expect(JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString()).kid).toBe(rotated.kid);
    const reply = await call(base, 'GET', '/v1/auth/me', token);
    expect(reply.status, JSON.stringify(reply.body)).toBe(200);
    expect(provider.jwksRequests()).toBe(before + 1);

    const storm = await Promise.all(
      Array.from({ length: 25 }, () => {
        const key = unpublishedKey();
        return call(base, 'GET', '/v1/agents', signJwt({ alg: 'ES256', kid: key.kid }, claimsFor(provider.issuer), { key }));
      }),
    );
    expect(storm.map((r) => r.status)).toEqual(storm.map(() => 401));
    expect(provider.jwksRequests()).toBe(before + 1);
  });

  it('refuses a token from another issuer (401)', async () => {
    const foreign = await otherIssuer.token('build-bot');
    const reply = await call(base, 'GET', '/v1/agents', foreign);
    expect(reply.status).toBe(401);
    expect(reply.body.code).toBe('unauthorized');
  });

  it('refuses an expired token and one not valid yet (401), beyond the clock tolerance', async () => {
    const key = provider.currentKey();
    const now = Math.floor(Date.now() / 1000);
    const expired = await call(base, 'GET', '/v1/agents', signJwt({ alg: 'ES256', kid: key.kid }, claimsFor(provider.issuer, { iat: now - 600, exp: now - 120 }), { key }));
    expect(expired.status).toBe(401);
    expect(expired.body).toEqual({ error: 'token expired', code: 'unauthorized', docs: '/docs/errors#unauthorized' });
    const early = await call(base, 'GET', '/v1/agents', signJwt({ alg: 'ES256', kid: key.kid }, claimsFor(provider.issuer, { nbf: now + 600 }), { key }));
    expect(early.status).toBe(401);
    // Within the tolerance (60 s) the same forms are still fine: the signature is genuine.
    const lateButTolerated = await call(base, 'GET', '/v1/auth/me', signJwt({ alg: 'ES256', kid: key.kid }, claimsFor(provider.issuer, { sub: 'late', exp: now - 5 }), { key }));
    expect(lateButTolerated.status).toBe(200);
    // A token without exp never expires: refused.
    const { exp: _dropped, ...noExp } = claimsFor(provider.issuer);
    expect((await call(base, 'GET', '/v1/agents', signJwt({ alg: 'ES256', kid: key.kid }, noExp, { key }))).status).toBe(401);
  });

  it('refuses a token for another audience (401)', async () => {
    const reply = await call(base, 'GET', '/v1/agents', await provider.token('build-bot', { resource: OTHER_RESOURCE }));
    expect(reply.status).toBe(401);
    expect(reply.body).toEqual({ error: 'invalid token', code: 'unauthorized', docs: '/docs/errors#unauthorized' });
  });

  it('refuses HS256 (even with our own token secret) and alg none with the issuer\'s iss (401)', async () => {
    const claims = claimsFor(provider.issuer, { sub: 'build-bot' });
    for (const secret of [TOKEN_SECRET, 'secret-of-build-bot-0123456789abcdef']) {
      const reply = await call(base, 'GET', '/v1/agents', signJwt({ alg: 'HS256' }, claims, { secret }));
      expect(reply.status).toBe(401);
    }
    expect((await call(base, 'GET', '/v1/agents', signJwt({ alg: 'none' }, claims))).status).toBe(401);
    // The issuer's key under a forged header algorithm changes nothing either.
    const key = provider.currentKey();
    const relabelled = signJwt({ alg: 'ES256', kid: key.kid }, claims, { key }).replace(/^[^.]+/, Buffer.from(JSON.stringify({ alg: 'HS256', kid: key.kid })).toString('base64url'));
    expect((await call(base, 'GET', '/v1/agents', relabelled)).status).toBe(401);
  });

  it('after the user is deleted, the next token creates a new account', async () => {
    const token = await provider.token('named-svc');
    const before = await api.store.getUser('Ada-Lovelace-');
    expect(before).not.toBeNull();
    expect((await call(base, 'DELETE', '/v1/users/Ada-Lovelace-', adminToken)).status).toBe(204);
    const reply = await call(base, 'GET', '/v1/auth/me', token);
    expect(reply.status).toBe(200);
    expect(reply.body.username).toBe('Ada-Lovelace-');
    expect((await api.store.getUser('Ada-Lovelace-'))?.id).not.toBe(before?.id);
  });
});

describe('OpenID Connect JWKS refetch window', () => {
  let dir: string;
  let provider: RunningOidcProvider;
  let api: SentinelApi;
  let base: string;
  let close: () => Promise<void>;

  beforeAll(async () => {
    provider = await startOidcProvider({ clients: CLIENTS });
    dir = mkdtempSync(join(tmpdir(), 'sentinel-oidc-window-'));
    api = await createSentinelApi({
      dataDir: dir,
      tokenSecret: TOKEN_SECRET,
      adminPassword: ADMIN_PASSWORD,
      oidc: { issuer: provider.issuer, audience: OIDC_AUDIENCE, jwksRefetchIntervalMs: 1500 },
    });
    const mounted = await mountApi('standalone', api, { logRequests: false });
    base = mounted.baseUrl;
    close = mounted.close;
  });

  afterAll(async () => {
    await close?.();
    await api?.close();
    await provider?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function storm(count: number): Promise<Reply[]> {
    return Promise.all(
      Array.from({ length: count }, () => {
        const key = unpublishedKey();
        return call(base, 'GET', '/v1/agents', signJwt({ alg: 'ES256', kid: key.kid }, claimsFor(provider.issuer), { key }));
      }),
    );
  }

  it('refetches the JWKS at most once per window for unknown kids, and again once the window has passed', async () => {
    expect(provider.jwksRequests()).toBe(0);
    expect((await call(base, 'GET', '/v1/agents', await provider.token('build-bot'))).status).toBe(200);
    expect(provider.jwksRequests()).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 20));

    expect((await storm(30)).every((r) => r.status === 401)).toBe(true);
    expect(provider.jwksRequests()).toBe(2);
    expect((await storm(30)).every((r) => r.status === 401)).toBe(true);
    expect(provider.jwksRequests()).toBe(2);

    await new Promise((resolve) => setTimeout(resolve, 1600));
    expect((await storm(30)).every((r) => r.status === 401)).toBe(true);
    expect(provider.jwksRequests()).toBe(3);
    // The cached keys still serve genuine tokens throughout.
    expect((await call(base, 'GET', '/v1/agents', await provider.token('build-bot'))).status).toBe(200);
    expect(provider.jwksRequests()).toBe(3);
  });
});
