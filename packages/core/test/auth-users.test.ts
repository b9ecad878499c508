import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isSentinelError, openSqliteStore, type Principal, type Store } from '@sentinel/api-core';
import { UserService } from '../src/auth/users.js';

let dir: string;
let store: Store;
let users: UserService;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sentinel-users-'));
  store = await openSqliteStore({ path: join(dir, 'sentinel.db') });
  users = new UserService({ store });
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function errorOf(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  const err = await p.then(
    () => expect.unreachable('should have failed'),
    (e: unknown) => e,
  );
  if (!isSentinelError(err)) throw err;
  return { code: err.code, message: err.message };
}

const admin: Principal = { username: 'root', role: 'admin' };
const NOW_ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

describe('UserService.ensureAdmin', () => {
  it('creates the admin once, with a generated 24-character password returned only then', async () => {
    const first = await users.ensureAdmin({ username: 'root' });
    expect(first.created).toBe(true);
    expect(first.generatedPassword).toMatch(/^[A-Za-z0-9_-]{24}$/);
    expect(await users.get('root')).toMatchObject({ username: 'root', role: 'admin', can_push: true });
    expect(await users.verifyCredentials('root', first.generatedPassword ?? '')).toMatchObject({ username: 'root', role: 'admin' });

    expect(await users.ensureAdmin({ username: 'root' })).toEqual({ created: false });
    expect(await users.ensureAdmin({ username: 'other-admin', password: 'some-password' })).toEqual({ created: false });
    expect((await users.list()).map((u) => u.username)).toEqual(['root']);
  });

  it('uses a given password and does not bootstrap a store that already has users', async () => {
    expect(await users.ensureAdmin({ username: 'boss', password: 'given-password' })).toEqual({ created: true });
    expect(await users.verifyCredentials('boss', 'given-password')).toMatchObject({ username: 'boss', role: 'admin' });
    // Once any user exists nothing is checked or created, whatever the options.
    expect(await users.ensureAdmin({ username: 'x', password: 'short' })).toEqual({ created: false });
  });

  it('refuses a given admin password that breaks the policy', async () => {
    expect((await errorOf(users.ensureAdmin({ username: 'root', password: 'short' }))).code).toBe('invalid_request');
    expect(await store.countUsers()).toBe(0);
  });
});

describe('UserService accounts', () => {
  it('creates users with defaults, never exposes the hash, and refuses duplicates', async () => {
    const alice = await users.create({ username: 'alice', password: 'alice-password' });
    expect(alice).toEqual({
      username: 'alice',
      role: 'user',
      can_push: false,
      disabled: false,
      quotas: { tokens_per_day: null, turns_per_day: null, concurrent_agents: null },
      created_at: expect.stringMatching(NOW_ISO),
      updated_at: alice.created_at,
    });
    const bob = await users.create({ username: 'bob.b_1-x', password: 'bob-password', role: 'admin', can_push: true });
    expect(bob).toMatchObject({ role: 'admin', can_push: true });
    expect(JSON.stringify(await users.list())).not.toContain('scrypt');
    expect((await users.list()).map((u) => u.username).sort()).toEqual(['alice', 'bob.b_1-x']);
    expect((await store.getUser('alice'))?.password_hash).toMatch(/^scrypt\$/);

    expect(await errorOf(users.create({ username: 'alice', password: 'another-password' }))).toEqual({ code: 'conflict', message: 'user "alice" already exists' });
  });

  it('validates usernames and password lengths', async () => {
    for (const username of ['', '-lead', '.hidden', 'has space', 'a/b', 'x'.repeat(65), 'ünïcode']) {
      expect((await errorOf(users.create({ username, password: 'long-enough' }))).code).toBe('invalid_request');
    }
    expect((await users.create({ username: 'x'.repeat(64), password: 'long-enough' })).username).toHaveLength(64);
    expect((await errorOf(users.create({ username: 'shorty', password: '1234567' }))).code).toBe('invalid_request');
    expect((await errorOf(users.create({ username: 'longy', password: 'x'.repeat(1025) }))).code).toBe('invalid_request');
    expect(await store.getUser('shorty')).toBeNull();
  });

  it('gets one user or 404', async () => {
    await users.create({ username: 'alice', password: 'alice-password' });
    expect((await users.get('alice')).username).toBe('alice');
    expect(await errorOf(users.get('nobody'))).toEqual({ code: 'not_found', message: 'user "nobody" not found' });
    expect((await errorOf(users.get('bad name'))).code).toBe('not_found');
  });
});

describe('UserService.delete', () => {
  it('deletes a user with their agents; refuses self, unknown users and non-admins', async () => {
    await users.create({ username: 'root', password: 'root-password', role: 'admin' });
    await users.create({ username: 'alice', password: 'alice-password' });
    const created = new Date().toISOString();
    const digest = `sha256:${'a'.repeat(64)}`;
    await store.putImage({ digest, manifest: '{}', config: '{}', config_digest: `sha256:${'b'.repeat(64)}`, size: 2, created_at: created }, ['test/image:latest']);
    await store.createAgent({
      id: 'agent-1', name: 'a1', owner: 'alice', image: 'test/image:latest', image_id: digest, status: 'created', model: 'echo/echo',
      parameters: {}, environment: {}, usage_requests: 0, usage_tokens: 0, created_at: created, updated_at: created,
    });
    expect(await users.getPrincipal('alice')).toEqual({ username: 'alice', role: 'user' }); // now cached

    expect(await errorOf(users.delete('root', admin))).toEqual({ code: 'conflict', message: 'you cannot delete yourself' });
    expect((await errorOf(users.delete('root', { username: 'alice', role: 'user' }))).code).toBe('forbidden');
    expect((await errorOf(users.delete('nobody', admin))).code).toBe('not_found');

    await users.delete('alice', admin);
    expect(await store.getUser('alice')).toBeNull();
    expect(await store.getAgent('agent-1')).toBeNull();
    expect(await users.getPrincipal('alice')).toBeNull();
    expect((await errorOf(users.delete('alice', admin))).code).toBe('not_found');
  });
});

describe('UserService.changePassword', () => {
  beforeEach(async () => {
    await users.create({ username: 'root', password: 'root-password', role: 'admin' });
    await users.create({ username: 'alice', password: 'alice-password' });
    await users.create({ username: 'bob', password: 'bob-password' });
  });
  const alice: Principal = { username: 'alice', role: 'user' };

  it('lets a user change their own password with the correct current one', async () => {
    const before = (await store.getUser('alice'))?.updated_at;
    await new Promise((resolve) => setTimeout(resolve, 5));
    await users.changePassword(alice, 'alice', { current_password: 'alice-password', new_password: 'alice-new-password' });
    expect(await users.verifyCredentials('alice', 'alice-new-password')).toMatchObject(alice);
    expect(await users.verifyCredentials('alice', 'alice-password')).toBeNull();
    expect((await users.get('alice')).updated_at).not.toBe(before);
  });

  it('refuses a wrong or missing current password, and weak new ones', async () => {
    expect(await errorOf(users.changePassword(alice, 'alice', { current_password: 'wrong-password', new_password: 'alice-new-password' }))).toEqual({
      code: 'forbidden',
      message: 'current password is incorrect',
    });
    expect((await errorOf(users.changePassword(alice, 'alice', { new_password: 'alice-new-password' }))).code).toBe('forbidden');
    expect((await errorOf(users.changePassword(alice, 'alice', { current_password: 'alice-password', new_password: 'short' }))).code).toBe('invalid_request');
    expect(await users.verifyCredentials('alice', 'alice-password')).toMatchObject(alice);
  });

  it("hides other users from a non-admin (404) and lets an admin reset others' without the current password", async () => {
    expect(await errorOf(users.changePassword(alice, 'bob', { current_password: 'bob-password', new_password: 'hijacked-password' }))).toEqual({
      code: 'not_found',
      message: 'user "bob" not found',
    });
    expect(await users.verifyCredentials('bob', 'bob-password')).not.toBeNull();

    await users.changePassword(admin, 'bob', { new_password: 'bob-reset-password' });
    expect(await users.verifyCredentials('bob', 'bob-reset-password')).toMatchObject({ username: 'bob', role: 'user' });
    expect((await errorOf(users.changePassword(admin, 'nobody', { new_password: 'whatever-password' }))).code).toBe('not_found');
    // An admin changing their own password proves it, like everyone else.
    expect((await errorOf(users.changePassword(admin, 'root', { new_password: 'root-new-password' }))).code).toBe('forbidden');
    await users.changePassword(admin, 'root', { current_password: 'root-password', new_password: 'root-new-password' });
    expect(await users.verifyCredentials('root', 'root-new-password')).toMatchObject(admin);
  });
});

describe('UserService credentials and principals', () => {
  it('verifies credentials, spending scrypt time on unknown users too', async () => {
    await users.create({ username: 'alice', password: 'alice-password' });
    expect(await users.verifyCredentials('alice', 'alice-password')).toMatchObject({ username: 'alice', role: 'user' });
    expect(await users.verifyCredentials('alice', 'wrong-password')).toBeNull();
    expect(await users.verifyCredentials('nobody', 'alice-password')).toBeNull();
    expect(await users.verifyCredentials('alice', 'x'.repeat(5000))).toBeNull();

    const fastest = async (fn: () => Promise<unknown>) => {
      let best = Infinity;
      for (let i = 0; i < 3; i++) {
        const start = performance.now();
        await fn();
        best = Math.min(best, performance.now() - start);
      }
      return best;
    };
    const known = await fastest(() => users.verifyCredentials('alice', 'wrong-password'));
    const unknown = await fastest(() => users.verifyCredentials('nobody', 'wrong-password'));
    expect(unknown).toBeGreaterThan(known / 4);
  });

  it('serves principals from the store, caches them, and never caches a read that raced a delete', async () => {
    await users.create({ username: 'root', password: 'root-password', role: 'admin' });
    await users.create({ username: 'alice', password: 'alice-password' });
    const first = await users.getPrincipal('alice');
    expect(first).toEqual({ username: 'alice', role: 'user' });
    expect(await users.getPrincipal('alice')).toBe(first);
    expect(await users.getPrincipal('nobody')).toBeNull();

    await users.create({ username: 'carol', password: 'carol-password' });
    const racing = users.getPrincipal('carol');
    await users.delete('carol', admin);
    await racing;
    expect(await users.getPrincipal('carol')).toBeNull();
  });
});
