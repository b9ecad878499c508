/**
 * ApiKeyService against the real core on a real SQLite file: the principal a key acts as, the
 * per-user cap, and "last used" written in batches at most once per interval, never on the
 * request's path.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSentinelApi, isSentinelError, type Principal, type SentinelApi } from '@sentinel/api-core';

const ADMIN: Principal = { username: 'admin', role: 'admin' };

async function refusal(promise: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await promise;
  } catch (err) {
    expect(isSentinelError(err)).toBe(true);
    return err as { code: string; message: string };
  }
  throw new Error('expected a refusal');
}

describe('ApiKeyService', () => {
  let dir: string;
  let api: SentinelApi;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-api-keys-'));
    api = await createSentinelApi({ dataDir: dir, tokenSecret: 'api-keys-secret-0123456789abcdef', adminPassword: 'admin-password-1' });
  });

  afterAll(async () => {
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a key acts as its owner with its own scopes, id and expiry', async () => {
    const before = Date.now();
    const created = await api.apiKeys.create(ADMIN, { name: '  deploy  ', scopes: ['images:write', 'agents:read'], expires_in: 600 });
    expect(created.name).toBe('deploy');
    expect(created.scopes).toEqual(['agents:read', 'images:write']);
    const principal = await api.authenticate(`Bearer ${created.key}`);
    expect(principal).toEqual({
      username: 'admin',
      role: 'admin',
      scopes: ['agents:read', 'images:write'],
      via: 'key',
      credentialId: created.id,
      expiresAtMs: Date.parse(created.expires_at as string),
    });
    expect(principal.expiresAtMs).toBeGreaterThanOrEqual(before + 600_000);
    // A key that never expires carries no expiry.
    const forever = await api.apiKeys.create(ADMIN, { name: 'forever', scopes: ['agents:read'] });
    expect((await api.authenticate(`Bearer ${forever.key}`)).expiresAtMs).toBeUndefined();
    // The scheme is case-insensitive, as for tokens; a key with a flipped character is unknown.
    expect((await api.authenticate(`bearer ${forever.key}`)).credentialId).toBe(forever.id);
    const flipped = forever.key.slice(0, -1) + (forever.key.endsWith('A') ? 'B' : 'A');
    expect(await refusal(api.authenticate(`Bearer ${flipped}`))).toMatchObject({ code: 'unauthorized', message: 'invalid api key' });
  });

  it('writes last_used_at in a batch, at most once a minute per key', async () => {
    const created = await api.apiKeys.create(ADMIN, { name: 'counted', scopes: ['agents:read'] });
    const lastUsed = async () => (await api.store.getApiKey(created.id))?.last_used_at;
    await api.authenticate(`Bearer ${created.key}`);
    // Not written by the request itself.
    expect(await lastUsed()).toBeNull();
    await api.apiKeys.flushUses();
    const first = await lastUsed();
    expect(first).not.toBeNull();
    await new Promise((resolve) => setTimeout(resolve, 5));
    for (let i = 0; i < 20; i++) await api.authenticate(`Bearer ${created.key}`);
    await api.apiKeys.flushUses();
    expect(await lastUsed()).toBe(first);
  });

  it('holds at most 100 active keys per user; a revoked one makes room', async () => {
    await api.users.create({ username: 'many', password: 'many-password-1', role: 'user' });
    const many: Principal = { username: 'many', role: 'user' };
    const ids: string[] = [];
    for (let i = 0; i < 100; i++) ids.push((await api.apiKeys.create(many, { name: `k${i}`, scopes: ['agents:read'] })).id);
    const full = await refusal(api.apiKeys.create(many, { name: 'one more', scopes: ['agents:read'] }));
    expect(full.code).toBe('conflict');
    expect(full.message).toMatch(/at most 100/);
    await api.apiKeys.revoke(many, ids[0] as string);
    await expect(api.apiKeys.create(many, { name: 'one more', scopes: ['agents:read'] })).resolves.toMatchObject({ name: 'one more' });
    expect(await api.apiKeys.list(many)).toHaveLength(100);
  });
});
