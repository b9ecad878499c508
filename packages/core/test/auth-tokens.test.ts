import { createHmac, createSecretKey, generateKeyPairSync } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { describe, expect, it } from 'vitest';
import { isSentinelError } from '@sentinel/api-core';
import { TokenService } from '../src/auth/tokens.js';

const key = createSecretKey(Buffer.from('a-test-secret-of-enough-length', 'utf8'));
const START = Date.UTC(2030, 0, 1, 12, 0, 0);

function clock(startMs = START) {
  const c = { ms: startMs, now: () => c.ms };
  return c;
}

function expectUnauthorized(fn: () => unknown, message: string): void {
  try {
    fn();
    expect.unreachable('should have thrown');
  } catch (err) {
    expect(isSentinelError(err)).toBe(true);
    expect(err).toMatchObject({ code: 'unauthorized', message });
  }
}

/** A subject as UserService hands them to the token service. */
const subject = (username: string, role: 'admin' | 'user', user_id = `id-of-${username}`, token_version = 0) => ({ username, role, user_id, token_version });

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const epoch = (ms: number) => Math.floor(ms / 1000);
/** Signs by hand, bypassing jsonwebtoken's own claim checks. */
function handSigned(payload: unknown): string {
  const signingInput = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(payload)}`;
  return `${signingInput}.${createHmac('sha256', key.export()).update(signingInput).digest('base64url')}`;
}

describe('TokenService', () => {
  it('issues HS256 tokens with sub, uid, tv, role, iss, iat, exp, jti and verifies them', () => {
    const c = clock();
    const tokens = new TokenService({ key, now: c.now, ttlSeconds: 3600 });
    const issued = tokens.issue(subject('alice', 'admin'));
    expect(issued.expires).toBe('2030-01-01T13:00:00Z');
    const decoded = jwt.decode(issued.token, { complete: true });
    expect(decoded?.header.alg).toBe('HS256');
    expect(decoded?.payload).toMatchObject({ sub: 'alice', uid: 'id-of-alice', tv: 0, role: 'admin', iss: 'sentinelstacks', iat: epoch(START), exp: epoch(START) + 3600 });
    expect(typeof (decoded?.payload as jwt.JwtPayload).jti).toBe('string');
    expect(tokens.verify(issued.token)).toEqual({
      username: 'alice',
      role: 'admin',
      user_id: 'id-of-alice',
      token_version: 0,
      issued_at: epoch(START),
      expires_at_ms: (epoch(START) + 3600) * 1000,
      jti: (decoded?.payload as jwt.JwtPayload).jti,
    });
    expect(tokens.verify(tokens.issue(subject('alice', 'admin', 'another-id', 7)).token)).toMatchObject({ user_id: 'another-id', token_version: 7 });
    // Every token is distinct, even when issued in the same second.
    expect(tokens.issue(subject('alice', 'admin')).token).not.toBe(issued.token);
  });

  it('defaults to a 24 h lifetime', () => {
    const tokens = new TokenService({ key, now: clock().now });
    expect(tokens.issue(subject('bob', 'user')).expires).toBe('2030-01-02T12:00:00Z');
  });

  it('rejects an expired token, also when it was cached while valid', () => {
    const c = clock();
    const tokens = new TokenService({ key, now: c.now, ttlSeconds: 60 });
    const fresh = tokens.issue(subject('alice', 'user')).token;
    const unseen = tokens.issue(subject('alice', 'user')).token;
    expect(tokens.verify(fresh).username).toBe('alice'); // now cached
    c.ms += 59_999;
    expect(tokens.verify(fresh).username).toBe('alice');
    c.ms += 1;
    expectUnauthorized(() => tokens.verify(fresh), 'token expired'); // from the cache
    expectUnauthorized(() => tokens.verify(unseen), 'token expired'); // from jsonwebtoken
    expectUnauthorized(() => tokens.verify(fresh), 'token expired'); // evicted, re-verified
  });

  it('requires exp', () => {
    const tokens = new TokenService({ key, now: clock().now });
    const noExp = jwt.sign({ sub: 'alice', role: 'admin', iss: 'sentinelstacks' }, key, { algorithm: 'HS256' });
    expectUnauthorized(() => tokens.verify(noExp), 'invalid token');
    const handNoExp = handSigned({ sub: 'alice', role: 'admin', iss: 'sentinelstacks', iat: epoch(START) });
    expectUnauthorized(() => tokens.verify(handNoExp), 'invalid token');
    const textExp = handSigned({ sub: 'alice', role: 'admin', iss: 'sentinelstacks', exp: '9999999999' });
    expectUnauthorized(() => tokens.verify(textExp), 'invalid token');
    // The same hand signing with a numeric exp is accepted, so the refusals above are about exp.
    expect(tokens.verify(handSigned({ sub: 'alice', uid: 'id-of-alice', tv: 0, role: 'admin', iss: 'sentinelstacks', exp: epoch(START) + 60 })).username).toBe('alice');
  });

  it('refuses alg none, other algorithms, bad signatures, other issuers and odd claims', () => {
    const c = clock();
    const tokens = new TokenService({ key, now: c.now });
    const claims = { sub: 'alice', uid: 'id-of-alice', tv: 0, role: 'admin', iss: 'sentinelstacks', iat: epoch(START), exp: epoch(START) + 600 };

    const none = `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
    expectUnauthorized(() => tokens.verify(none), 'invalid token');

    const hs512 = jwt.sign(claims, key, { algorithm: 'HS512' });
    expectUnauthorized(() => tokens.verify(hs512), 'invalid token');

    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const rs256 = jwt.sign(claims, privateKey, { algorithm: 'RS256' });
    expectUnauthorized(() => tokens.verify(rs256), 'invalid token');

    const otherKey = createSecretKey(Buffer.from('another-secret-of-enough-length', 'utf8'));
    const forged = jwt.sign(claims, otherKey, { algorithm: 'HS256' });
    expectUnauthorized(() => tokens.verify(forged), 'invalid token');

    const good = jwt.sign(claims, key, { algorithm: 'HS256' });
    const [h, p, s] = good.split('.');
    const tampered = `${h}.${b64({ ...claims, role: 'admin', sub: 'mallory' })}.${s}`;
    expectUnauthorized(() => tokens.verify(tampered), 'invalid token');
    expect(tokens.verify(`${h}.${p}.${s}`).username).toBe('alice');

    const otherIssuer = jwt.sign({ ...claims, iss: 'someone-else' }, key, { algorithm: 'HS256' });
    expectUnauthorized(() => tokens.verify(otherIssuer), 'invalid token');
    const noIssuer = jwt.sign({ sub: 'alice', uid: 'id-of-alice', tv: 0, role: 'admin', exp: claims.exp }, key, { algorithm: 'HS256' });
    expectUnauthorized(() => tokens.verify(noIssuer), 'invalid token');

    const badRole = jwt.sign({ ...claims, role: 'root' }, key, { algorithm: 'HS256' });
    expectUnauthorized(() => tokens.verify(badRole), 'invalid token');
    const noSub = jwt.sign({ uid: 'id-of-alice', tv: 0, role: 'user', iss: 'sentinelstacks', exp: claims.exp }, key, { algorithm: 'HS256' });
    expectUnauthorized(() => tokens.verify(noSub), 'invalid token');
    // Unbound tokens (no uid or tv, as issued before tokens named user ids) and malformed bindings.
    const { uid: _uid, tv: _tv, ...unbound } = claims;
    for (const bad of [unbound, { ...claims, uid: undefined }, { ...claims, tv: undefined }, { ...claims, uid: '' }, { ...claims, uid: 7 }, { ...claims, uid: 'x'.repeat(129) }, { ...claims, tv: -1 }, { ...claims, tv: 1.5 }, { ...claims, tv: '0' }]) {
      expectUnauthorized(() => tokens.verify(jwt.sign(bad, key, { algorithm: 'HS256' })), 'invalid token');
    }

    for (const junk of ['', 'abc', 'a.b.c', 'x'.repeat(9000)]) expectUnauthorized(() => tokens.verify(junk), 'invalid token');
  });

  it('never echoes the token in its errors', () => {
    const tokens = new TokenService({ key, now: clock().now });
    const token = jwt.sign({ sub: 'alice', role: 'admin', iss: 'sentinelstacks' }, key, { algorithm: 'HS256' });
    try {
      tokens.verify(token);
      expect.unreachable();
    } catch (err) {
      const text = JSON.stringify({ message: (err as Error).message, cause: String((err as Error).cause) });
      for (const part of token.split('.')) expect(text).not.toContain(part);
    }
  });

  it('honours the issuer option and stays bounded by cacheSize', () => {
    const c = clock();
    const a = new TokenService({ key, now: c.now, issuer: 'site-a', cacheSize: 2 });
    const b = new TokenService({ key, now: c.now, issuer: 'site-b' });
    const fromB = b.issue(subject('bob', 'user')).token;
    expectUnauthorized(() => a.verify(fromB), 'invalid token');
    const issued = Array.from({ length: 5 }, (_, i) => a.issue(subject(`u${i}`, 'user')).token);
    for (const t of issued) a.verify(t);
    // Evicted entries are simply verified again; expiry still applies to them.
    expect(issued.map((t) => a.verify(t).username)).toEqual(['u0', 'u1', 'u2', 'u3', 'u4']);
    c.ms += 86_400_000;
    for (const t of issued) expectUnauthorized(() => a.verify(t), 'token expired');
  });

  it('rejects a non-positive lifetime at construction', () => {
    expect(() => new TokenService({ key, ttlSeconds: 0 })).toThrow(/lifetime/);
  });
});
