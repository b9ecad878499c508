/**
 * OidcVerifier against issuers that misbehave, served by a real HTTP server on loopback:
 * a discovery document naming another issuer, an oversized JWKS, an unreachable issuer, a
 * JWKS with keys for other uses; and the admin claim reached through nested and URL-named
 * claims (Keycloak's `realm_access.roles`, Auth0's namespaced claims).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { isSentinelError } from '@sentinel/api-core';
import { checkIssuerUrl, OidcVerifier } from '../src/auth/oidc.js';
import { signJwt, unpublishedKey, type SigningKey } from '@sentinel/test-support/oidc-provider';

interface FakeIssuer {
  issuer: string;
  close(): Promise<void>;
}

const servers: Server[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** An issuer whose discovery and JWKS answers are whatever the spec says. */
async function fakeIssuer(answer: (issuer: string, path: string) => { status?: number; body: string }): Promise<FakeIssuer> {
  let issuer = '';
  const server = createServer((req, res) => {
    const { status, body } = answer(issuer, req.url ?? '/');
    res.writeHead(status ?? 200, { 'content-type': 'application/json' });
    res.end(body);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}/realms/test`;
  return { issuer, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

function publicJwk(key: SigningKey): Record<string, unknown> {
  // The private members (d, p, q, ...) stay out, as a real JWKS publishes only the public key.
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = key.jwk as Record<string, unknown>;
  return pub;
}

function wellBehaved(keys: Record<string, unknown>[]) {
  return (issuer: string, path: string) =>
    path.endsWith('/.well-known/openid-configuration')
      ? { body: JSON.stringify({ issuer, jwks_uri: `${issuer}/certs` }) }
      : { body: JSON.stringify({ keys }) };
}

function tokenFor(issuer: string, key: SigningKey, claims: Record<string, unknown> = {}): string {
  const now = Math.floor(Date.now() / 1000);
  return signJwt({ alg: key.alg, kid: key.kid }, { iss: issuer, aud: 'api', sub: 's-1', iat: now, exp: now + 60, ...claims }, { key });
}

async function failure(promise: Promise<unknown>): Promise<{ code: string; message: string }> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  if (!isSentinelError(err)) throw new Error(`expected a SentinelError, got ${String(err)}`);
  return { code: err.code, message: err.message };
}

describe('OidcVerifier', () => {
  it('takes https issuers, and http only on loopback, without query, fragment or credentials', () => {
    expect(checkIssuerUrl('https://keycloak.example.com/realms/sentinel').hostname).toBe('keycloak.example.com');
    expect(checkIssuerUrl('http://127.0.0.1:8080').port).toBe('8080');
    expect(checkIssuerUrl('http://localhost/x').hostname).toBe('localhost');
    for (const bad of ['http://keycloak.example.com/realms/sentinel', 'https://a.example.com/?x=1', 'https://u:p@a.example.com/', 'ftp://a.example.com', 'not a url']) {
      expect(() => checkIssuerUrl(bad), bad).toThrow();
    }
    expect(() => new OidcVerifier({ issuer: 'https://a.example.com', audience: '' })).toThrow('audience');
    expect(() => new OidcVerifier({ issuer: 'https://a.example.com', audience: 'x', adminClaim: 'groups' })).toThrow('together');
  });

  it('verifies a token with the published key, caches it, and reads the admin claim through nested and URL-named claims', async () => {
    const key = unpublishedKey('ES256');
    let fetches = 0;
    const serve = wellBehaved([publicJwk(key)]);
    const idp = await fakeIssuer((issuer, path) => {
      fetches += 1;
      return serve(issuer, path);
    });
    const keycloak = new OidcVerifier({ issuer: idp.issuer, audience: 'api', adminClaim: 'realm_access.roles', adminValue: 'sentinel-admin' });
    const admin = tokenFor(idp.issuer, key, { realm_access: { roles: ['offline_access', 'sentinel-admin'] }, scope: 'openid agents:read', jti: 'j-1' });
    expect(keycloak.claimsToBeOurs(admin)).toBe(true);
    expect(await keycloak.verify(admin)).toMatchObject({ subject: 's-1', admin: true, scopes: ['openid', 'agents:read'], tokenId: 'j-1' });
    expect(await keycloak.verify(tokenFor(idp.issuer, key, { realm_access: { roles: ['other'] } }))).toMatchObject({ admin: false });
    expect(fetches).toBe(2);
    // Cached: no fetch, the same answer.
    expect((await keycloak.verify(admin)).admin).toBe(true);
    expect(fetches).toBe(2);

    const auth0 = new OidcVerifier({ issuer: idp.issuer, audience: 'api', adminClaim: 'https://sentinel.example.com/roles', adminValue: 'admin' });
    expect((await auth0.verify(tokenFor(idp.issuer, key, { 'https://sentinel.example.com/roles': ['admin'] }))).admin).toBe(true);
    // Entra's scp claim counts as the scope claim.
    expect((await auth0.verify(tokenFor(idp.issuer, key, { scp: 'agents:chat' }))).scopes).toEqual(['agents:chat']);
    // Our own login tokens carry another iss: not for this verifier.
    expect(auth0.claimsToBeOurs(tokenFor('sentinelstacks', key))).toBe(false);
    expect(auth0.claimsToBeOurs('sk_sentinel_not_a_jwt')).toBe(false);
  });

  it('answers from the cache only briefly: a key the issuer withdraws stops working once the cache and the keys have aged', async () => {
    const key = unpublishedKey('ES256');
    let published = [publicJwk(key)];
    let fetches = 0;
    const idp = await fakeIssuer((issuer, path) => {
      fetches += 1;
      return wellBehaved(published)(issuer, path);
    });
    let clock = Date.now();
    const verifier = new OidcVerifier({ issuer: idp.issuer, audience: 'api', cacheTtlMs: 1000, jwksMaxAgeMs: 2000, now: () => clock });
    const token = tokenFor(idp.issuer, key, { exp: Math.floor(clock / 1000) + 3600 });
    expect((await verifier.verify(token)).subject).toBe('s-1');
    published = [];
    clock += 500;
    expect((await verifier.verify(token)).subject).toBe('s-1');
    expect(fetches).toBe(2);
    clock += 2000;
    expect(await failure(verifier.verify(token))).toEqual({ code: 'unauthorized', message: 'invalid token' });
    expect(fetches).toBe(3);
  });

  it('is unavailable (503) when discovery names another issuer, the JWKS is too large, or the issuer is unreachable', async () => {
    const key = unpublishedKey('ES256');
    const liar = await fakeIssuer((_issuer, path) =>
      path.endsWith('/.well-known/openid-configuration') ? { body: JSON.stringify({ issuer: 'https://evil.example.com', jwks_uri: 'https://evil.example.com/certs' }) } : { body: '{"keys":[]}' },
    );
    expect(await failure(new OidcVerifier({ issuer: liar.issuer, audience: 'api' }).verify(tokenFor(liar.issuer, key)))).toMatchObject({ code: 'unavailable' });

    const huge = await fakeIssuer((issuer, path) =>
      path.endsWith('/.well-known/openid-configuration')
        ? { body: JSON.stringify({ issuer, jwks_uri: `${issuer}/certs` }) }
        : { body: JSON.stringify({ keys: [publicJwk(key)], padding: 'x'.repeat(300_000) }) },
    );
    expect(await failure(new OidcVerifier({ issuer: huge.issuer, audience: 'api' }).verify(tokenFor(huge.issuer, key)))).toMatchObject({ code: 'unavailable' });

    const gone = await fakeIssuer(wellBehaved([publicJwk(key)]));
    const issuer = gone.issuer;
    await gone.close();
    servers.length = 0;
    expect(await failure(new OidcVerifier({ issuer, audience: 'api', fetchTimeoutMs: 1000 }).verify(tokenFor(issuer, key)))).toMatchObject({ code: 'unavailable' });
  });

  it('uses no key published for encryption or for another algorithm, and refuses tokens whose header names one', async () => {
    const es = unpublishedKey('ES256');
    const rs = unpublishedKey('RS256');
    const idp = await fakeIssuer(wellBehaved([{ ...publicJwk(es), use: 'enc' }, { ...publicJwk(rs), alg: 'RS512' }]));
    const verifier = new OidcVerifier({ issuer: idp.issuer, audience: 'api' });
    expect(await failure(verifier.verify(tokenFor(idp.issuer, es)))).toEqual({ code: 'unauthorized', message: 'invalid token' });
    expect(await failure(verifier.verify(tokenFor(idp.issuer, rs)))).toEqual({ code: 'unauthorized', message: 'invalid token' });
  });
});
