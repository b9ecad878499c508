import { createSecretKey } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jwt from 'jsonwebtoken';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuthService, LoginThrottle, TokenService, UserService, createJsonLogger, isSentinelError, openSqliteStore, type Store } from '@sentinel/api-core';

const key = createSecretKey(Buffer.from('service-test-secret-0123456789', 'utf8'));
const START = Date.UTC(2030, 5, 1);

let dir: string;
let store: Store;
let users: UserService;
let tokens: TokenService;
let auth: AuthService;
let clock: { ms: number };
let logLines: Record<string, unknown>[];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sentinel-auth-'));
  store = await openSqliteStore({ path: join(dir, 'sentinel.db') });
  clock = { ms: START };
  const now = () => clock.ms;
  logLines = [];
  const logger = createJsonLogger({ level: 'debug', write: (line) => logLines.push(JSON.parse(line) as Record<string, unknown>) });
  users = new UserService({ store });
  tokens = new TokenService({ key, now, ttlSeconds: 600 });
  auth = new AuthService({ users, tokens, throttle: new LoginThrottle({ now }), logger });
  await users.create({ username: 'root', password: 'root-password', role: 'admin' });
  await users.create({ username: 'alice', password: 'alice-password' });
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function errorOf(p: Promise<unknown>): Promise<{ code: string; message: string; retryAfter?: number }> {
  const err = await p.then(
    () => expect.unreachable('should have failed'),
    (e: unknown) => e,
  );
  if (!isSentinelError(err)) throw err;
  return err.retryAfter === undefined ? { code: err.code, message: err.message } : { code: err.code, message: err.message, retryAfter: err.retryAfter };
}

const unauthorized = (message: string) => ({ code: 'unauthorized', message });

describe('AuthService.login', () => {
  it('returns a token for good credentials and logs without secrets', async () => {
    const result = await auth.login({ username: 'alice', password: 'alice-password' }, '192.0.2.1');
    expect(result).toEqual({ token: expect.any(String), username: 'alice', expires: '2030-06-01T00:10:00Z' });
    expect(await auth.authenticate(`Bearer ${result.token}`)).toEqual({ username: 'alice', role: 'user' });
    expect(logLines).toEqual([expect.objectContaining({ level: 'info', msg: 'login succeeded', username: 'alice', address: '192.0.2.1' })]);
    expect(JSON.stringify(logLines)).not.toContain('alice-password');
    expect(JSON.stringify(logLines)).not.toContain(result.token);
  });

  it('answers wrong passwords and unknown users alike, logging the failure', async () => {
    expect(await errorOf(auth.login({ username: 'alice', password: 'wrong-password' }, '192.0.2.1'))).toEqual(unauthorized('invalid username or password'));
    expect(await errorOf(auth.login({ username: 'nobody', password: 'alice-password' }, '192.0.2.1'))).toEqual(unauthorized('invalid username or password'));
    expect(logLines.map((l) => [l.msg, l.username, l.address])).toEqual([
      ['login failed', 'alice', '192.0.2.1'],
      ['login failed', 'nobody', '192.0.2.1'],
    ]);
    expect(JSON.stringify(logLines)).not.toMatch(/wrong-password|alice-password/);
  });

  it('refuses a username after 5 failures (429 with retryAfter), even with the right password, until the window ends', async () => {
    for (let i = 0; i < 5; i++) {
      expect((await errorOf(auth.login({ username: 'alice', password: `guess-${i}-password` }, `198.51.100.${i}`))).code).toBe('unauthorized');
    }
    const refused = await errorOf(auth.login({ username: 'alice', password: 'alice-password' }, '203.0.113.9'));
    expect(refused).toEqual({ code: 'rate_limited', message: 'too many failed logins; try again in 900 s', retryAfter: 900 });
    expect(logLines.at(-1)).toMatchObject({ level: 'warn', msg: 'login refused: too many failures', username: 'alice' });
    // Other users are unaffected; the window's end lifts the refusal.
    expect((await auth.login({ username: 'root', password: 'root-password' }, '203.0.113.9')).username).toBe('root');
    clock.ms += 15 * 60 * 1000;
    expect((await auth.login({ username: 'alice', password: 'alice-password' }, '203.0.113.9')).username).toBe('alice');
  });

  it('a success resets the username budget', async () => {
    for (let i = 0; i < 4; i++) await errorOf(auth.login({ username: 'alice', password: 'wrong-password' }, '192.0.2.1'));
    await auth.login({ username: 'alice', password: 'alice-password' }, '192.0.2.1');
    for (let i = 0; i < 4; i++) await errorOf(auth.login({ username: 'alice', password: 'wrong-password' }, '192.0.2.1'));
    expect((await auth.login({ username: 'alice', password: 'alice-password' }, '192.0.2.1')).username).toBe('alice');
  });

  it('cannot be outrun with concurrent guesses', async () => {
    const attempts = await Promise.all(
      Array.from({ length: 8 }, (_, i) => errorOf(auth.login({ username: 'alice', password: `parallel-${i}-guess` }, '192.0.2.50'))),
    );
    expect(attempts.filter((e) => e.code === 'unauthorized')).toHaveLength(5);
    expect(attempts.filter((e) => e.code === 'rate_limited')).toHaveLength(3);
  });
});

describe('AuthService.authenticate', () => {
  let token: string;
  beforeEach(async () => {
    token = (await auth.login({ username: 'alice', password: 'alice-password' }, '192.0.2.1')).token;
  });

  it('accepts the Bearer scheme in any letter case', async () => {
    for (const scheme of ['Bearer', 'bearer', 'BEARER', 'bEaReR']) {
      expect(await auth.authenticate(`${scheme} ${token}`)).toEqual({ username: 'alice', role: 'user' });
    }
  });

  it('rejects a missing header, other schemes and malformed values', async () => {
    expect(await errorOf(auth.authenticate(undefined))).toEqual(unauthorized('authentication required'));
    expect(await errorOf(auth.authenticate(''))).toEqual(unauthorized('authentication required'));
    for (const header of ['Basic YWxpY2U6cGFzc3dvcmQ=', token, 'Bearer', 'Bearer ', `Bearer\t${token}`, `Token ${token}`]) {
      expect(await errorOf(auth.authenticate(header))).toEqual(unauthorized('Bearer token required'));
    }
    for (const header of [`Bearer  ${token}`, `Bearer ${token} extra`, `Bearer ${'a'.repeat(8200)}`, 'Bearer not-a-jwt']) {
      expect(await errorOf(auth.authenticate(header))).toEqual(unauthorized('invalid token'));
    }
  });

  it('rejects forged, downgraded, expiring-never and expired tokens', async () => {
    const claims = { sub: 'alice', role: 'user', iss: 'sentinelstacks', exp: Math.floor(START / 1000) + 60 };
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const forged = jwt.sign(claims, createSecretKey(Buffer.from('not-the-server-secret-at-all', 'utf8')), { algorithm: 'HS256' });
    const none = `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
    const hs512 = jwt.sign(claims, key, { algorithm: 'HS512' });
    const noExp = jwt.sign({ sub: 'alice', role: 'user', iss: 'sentinelstacks' }, key, { algorithm: 'HS256' });
    for (const bad of [forged, none, hs512, noExp]) {
      expect(await errorOf(auth.authenticate(`Bearer ${bad}`))).toEqual(unauthorized('invalid token'));
    }
    expect((await auth.authenticate(`Bearer ${jwt.sign(claims, key, { algorithm: 'HS256' })}`)).username).toBe('alice');
    clock.ms += 600_000;
    expect(await errorOf(auth.authenticate(`Bearer ${token}`))).toEqual(unauthorized('token expired'));
  });

  it('takes the role from the store and refuses tokens of deleted users', async () => {
    // A validly signed token claiming admin for a plain user does not make them admin.
    const claimsAdmin = tokens.issue({ username: 'alice', role: 'admin' }).token;
    expect(await auth.authenticate(`Bearer ${claimsAdmin}`)).toEqual({ username: 'alice', role: 'user' });

    await users.delete('alice', { username: 'root', role: 'admin' });
    expect(await errorOf(auth.authenticate(`Bearer ${token}`))).toEqual(unauthorized('user no longer exists'));
    const ghost = tokens.issue({ username: 'ghost', role: 'admin' }).token;
    expect(await errorOf(auth.authenticate(`Bearer ${ghost}`))).toEqual(unauthorized('user no longer exists'));
  });

  it('never puts the token in an error', async () => {
    const tampered = token.slice(0, -4) + 'AAAA';
    const err = await auth.authenticate(`Bearer ${tampered}`).then(
      () => expect.unreachable('should have failed'),
      (e: unknown) => e as Error,
    );
    expect(err.message).toBe('invalid token');
    expect(JSON.stringify({ m: err.message, c: String(err.cause) })).not.toContain(tampered.split('.')[1]);
  });
});
