import { createSecretKey } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jwt from 'jsonwebtoken';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createJsonLogger, isSentinelError, openSqliteStore, type Store } from '@sentinel/api-core';
import { AuthService } from '../src/auth/service.js';
import { LoginThrottle } from '../src/auth/throttle.js';
import { TokenService } from '../src/auth/tokens.js';
import { UserService } from '../src/auth/users.js';

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
    expect(await auth.authenticate(`Bearer ${result.token}`)).toMatchObject({ username: 'alice', role: 'user' });
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

  it('after 5 failures from one address makes that address wait (429 with retryAfter, doubling), never a clean one', async () => {
    for (let i = 0; i < 5; i++) {
      expect((await errorOf(auth.login({ username: 'alice', password: `guess-${i}-password` }, '198.51.100.7'))).code).toBe('unauthorized');
    }
    // Even the right password waits at the guessing address: the guesser learns nothing.
    const refused = await errorOf(auth.login({ username: 'alice', password: 'alice-password' }, '198.51.100.7'));
    expect(refused).toEqual({ code: 'rate_limited', message: 'too many failed logins; try again in 1 s', retryAfter: 1 });
    expect(logLines.at(-1)).toMatchObject({ level: 'warn', msg: 'login refused: too many failures', username: 'alice' });
    // The owner, from anywhere else, logs in at once.
    expect((await auth.login({ username: 'alice', password: 'alice-password' }, '203.0.113.9')).username).toBe('alice');
    // Once the wait is over the guesser gets one more try, then waits twice as long.
    clock.ms += 1000;
    expect((await errorOf(auth.login({ username: 'alice', password: 'guess-5-password' }, '198.51.100.7'))).code).toBe('unauthorized');
    expect(await errorOf(auth.login({ username: 'alice', password: 'alice-password' }, '198.51.100.7'))).toMatchObject({ code: 'rate_limited', retryAfter: 2 });
    clock.ms += 2000;
    expect((await auth.login({ username: 'alice', password: 'alice-password' }, '198.51.100.7')).username).toBe('alice');
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
      expect(await auth.authenticate(`${scheme} ${token}`)).toMatchObject({ username: 'alice', role: 'user' });
    }
  });

  it('rejects a missing header, other schemes and malformed values', async () => {
    expect(await errorOf(auth.authenticate(undefined))).toMatchObject(unauthorized('authentication required'));
    expect(await errorOf(auth.authenticate(''))).toMatchObject(unauthorized('authentication required'));
    for (const header of ['Basic YWxpY2U6cGFzc3dvcmQ=', token, 'Bearer', 'Bearer ', `Bearer\t${token}`, `Token ${token}`]) {
      expect(await errorOf(auth.authenticate(header))).toMatchObject(unauthorized('Bearer token required'));
    }
    for (const header of [`Bearer  ${token}`, `Bearer ${token} extra`, `Bearer ${'a'.repeat(8200)}`, 'Bearer not-a-jwt']) {
      expect(await errorOf(auth.authenticate(header))).toMatchObject(unauthorized('invalid token'));
    }
  });

  it('rejects forged, downgraded, expiring-never and expired tokens', async () => {
    const uid = (await store.getUser('alice'))?.id;
    const claims = { sub: 'alice', uid, tv: 0, role: 'user', iss: 'sentinelstacks', exp: Math.floor(START / 1000) + 60 };
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const forged = jwt.sign(claims, createSecretKey(Buffer.from('not-the-server-secret-at-all', 'utf8')), { algorithm: 'HS256' });
    const none = `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
    const hs512 = jwt.sign(claims, key, { algorithm: 'HS512' });
    const noExp = jwt.sign({ sub: 'alice', uid, tv: 0, role: 'user', iss: 'sentinelstacks' }, key, { algorithm: 'HS256' });
    for (const bad of [forged, none, hs512, noExp]) {
      expect(await errorOf(auth.authenticate(`Bearer ${bad}`))).toMatchObject(unauthorized('invalid token'));
    }
    expect((await auth.authenticate(`Bearer ${jwt.sign(claims, key, { algorithm: 'HS256' })}`)).username).toBe('alice');
    clock.ms += 600_000;
    expect(await errorOf(auth.authenticate(`Bearer ${token}`))).toMatchObject(unauthorized('token expired'));
  });

  it('takes the role from the store and refuses tokens of deleted users', async () => {
    // A validly signed token claiming admin for a plain user does not make them admin.
    const uid = (await store.getUser('alice'))?.id ?? '';
    const claimsAdmin = tokens.issue({ username: 'alice', role: 'admin', user_id: uid, token_version: 0 }).token;
    expect(await auth.authenticate(`Bearer ${claimsAdmin}`)).toMatchObject({ username: 'alice', role: 'user' });

    await users.delete('alice', { username: 'root', role: 'admin' });
    expect(await errorOf(auth.authenticate(`Bearer ${token}`))).toMatchObject(unauthorized('user no longer exists'));
    const ghost = tokens.issue({ username: 'ghost', role: 'admin', user_id: uid, token_version: 0 }).token;
    expect(await errorOf(auth.authenticate(`Bearer ${ghost}`))).toMatchObject(unauthorized('user no longer exists'));
  });

  it('refuses tokens issued before a password change or an admin reset; new ones work', async () => {
    const alice = { username: 'alice', role: 'user' as const };
    const root = { username: 'root', role: 'admin' as const };
    expect(await auth.authenticate(`Bearer ${token}`)).toMatchObject(alice); // cached from here on
    await users.changePassword(alice, 'alice', { current_password: 'alice-password', new_password: 'alice-second-password' });
    expect(await errorOf(auth.authenticate(`Bearer ${token}`))).toMatchObject(unauthorized('token revoked'));
    const second = (await auth.login({ username: 'alice', password: 'alice-second-password' }, '192.0.2.1')).token;
    expect(await auth.authenticate(`Bearer ${second}`)).toMatchObject(alice);

    await users.changePassword(root, 'alice', { new_password: 'alice-reset-password' });
    expect(await errorOf(auth.authenticate(`Bearer ${second}`))).toMatchObject(unauthorized('token revoked'));
    expect(await errorOf(auth.authenticate(`Bearer ${token}`))).toMatchObject(unauthorized('token revoked'));
    const third = (await auth.login({ username: 'alice', password: 'alice-reset-password' }, '192.0.2.1')).token;
    expect(await auth.authenticate(`Bearer ${third}`)).toMatchObject(alice);
    expect((await store.getUser('alice'))?.token_version).toBe(2);
  });

  it('refuses the token of a deleted user once the name belongs to a new account, which sees only its own agents', async () => {
    await users.delete('alice', { username: 'root', role: 'admin' });
    await users.create({ username: 'alice', password: 'new-alice-password' });
    // Same name, same role, same token version 0: only the id tells the accounts apart.
    expect(await errorOf(auth.authenticate(`Bearer ${token}`))).toMatchObject(unauthorized('user no longer exists'));
    const fresh = (await auth.login({ username: 'alice', password: 'new-alice-password' }, '192.0.2.1')).token;
    expect(await auth.authenticate(`Bearer ${fresh}`)).toMatchObject({ username: 'alice', role: 'user' });
    expect(await errorOf(auth.authenticate(`Bearer ${token}`))).toMatchObject(unauthorized('user no longer exists'));
  });

  it('reads the store afresh for a token newer than its cached account (issued by another instance)', async () => {
    // A second instance on the same store, with no change feed between them: only the
    // freshness rule can tell it that the account changed.
    const otherUsers = new UserService({ store });
    const other = new AuthService({ users: otherUsers, tokens, throttle: new LoginThrottle({ now: () => clock.ms }) });
    expect(await other.authenticate(`Bearer ${token}`)).toMatchObject({ username: 'alice', role: 'user' }); // cached there
    await users.changePassword({ username: 'alice', role: 'user' }, 'alice', { current_password: 'alice-password', new_password: 'alice-other-password' });
    const newer = (await auth.login({ username: 'alice', password: 'alice-other-password' }, '192.0.2.1')).token;
    expect(await other.authenticate(`Bearer ${newer}`)).toMatchObject({ username: 'alice', role: 'user' });
    // That read refreshed its cache: the old token is refused there too.
    expect(await errorOf(other.authenticate(`Bearer ${token}`))).toMatchObject(unauthorized('token revoked'));
  });

  it('refuses a replayed revoked token from the cache, without a store read per request', async () => {
    // Real clocks here: the freshness rule compares the token's iat with when the account was read.
    let reads = 0;
    const counting = new Proxy(store, {
      get(target, name, receiver) {
        if (name === 'getUser') reads += 1;
        const value: unknown = Reflect.get(target, name, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const realUsers = new UserService({ store: counting });
    const realTokens = new TokenService({ key });
    const real = new AuthService({ users: realUsers, tokens: realTokens, throttle: new LoginThrottle() });
    const stale = (await real.issueToken('alice')).token;
    // Revoked, and issued well before the account is next read: it cannot be newer than the cache.
    await new Promise((r) => setTimeout(r, 2100));
    await realUsers.changePassword({ username: 'alice', role: 'user' }, 'alice', { current_password: 'alice-password', new_password: 'alice-password-2' });
    const current = (await real.issueToken('alice')).token;
    expect(await real.authenticate(`Bearer ${current}`)).toMatchObject({ username: 'alice', role: 'user' });
    const before = reads;
    for (let i = 0; i < 20; i++) expect(await errorOf(real.authenticate(`Bearer ${stale}`))).toMatchObject(unauthorized('token revoked'));
    expect(reads).toBe(before);
  });

  it('issues a token for an existing user without a password (embedding), not_found otherwise', async () => {
    const issued = await auth.issueToken('alice');
    expect(issued).toEqual({ token: expect.any(String), username: 'alice', expires: '2030-06-01T00:10:00Z' });
    expect(await auth.authenticate(`Bearer ${issued.token}`)).toMatchObject({ username: 'alice', role: 'user' });
    expect((await errorOf(auth.issueToken('nobody'))).code).toBe('not_found');
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
