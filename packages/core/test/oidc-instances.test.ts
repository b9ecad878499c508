/**
 * OpenID Connect across two instances of the core on one PostgreSQL database and one Redis,
 * as two `sentinel api` processes would run: the first requests of a new identity arriving at
 * both instances at once create one account, and deleting that account on one instance makes
 * the other resolve the next token to a new account at once. Real provider, database and Redis.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSentinelApi, type AuditEvent, type SentinelApi } from '@sentinel/api-core';
import { OIDC_AUDIENCE, startOidcProvider, type RunningOidcProvider } from '@sentinel/test-support/oidc-provider';
import { createTestDatabase, type TestDatabase } from '@sentinel/test-support/postgres';
import { assertRedisRunning, busUrl, deletePrefix, uniquePrefix } from '@sentinel/test-support/redis';

describe('OpenID Connect on two instances (PostgreSQL + Redis)', () => {
  const prefix = uniquePrefix();
  const audit: AuditEvent[] = [];
  let provider: RunningOidcProvider;
  let database: TestDatabase;
  let dir: string;
  let a: SentinelApi;
  let b: SentinelApi;

  beforeAll(async () => {
    await assertRedisRunning();
    provider = await startOidcProvider({ clients: [{ clientId: 'fleet-bot' }] });
    database = await createTestDatabase();
    dir = mkdtempSync(join(tmpdir(), 'sentinel-oidc-instances-'));
    const open = (name: string) =>
      createSentinelApi({
        dataDir: join(dir, name),
        storeUrl: database.url,
        busUrl: busUrl(prefix),
        tokenSecret: 'oidc-instances-secret-0123456789',
        adminPassword: 'admin-password-123',
        oidc: { issuer: provider.issuer, audience: OIDC_AUDIENCE },
        audit: { record: (event) => audit.push(event) },
      });
    a = await open('a');
    b = await open('b');
  });

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await database?.drop();
    await provider?.close();
    await deletePrefix(prefix);
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates one account when a new identity arrives at both instances at once', async () => {
    const tokens = await Promise.all(Array.from({ length: 6 }, () => provider.token('fleet-bot')));
    const principals = await Promise.all(tokens.map((token, i) => (i % 2 === 0 ? a : b).authenticate(`Bearer ${token}`)));
    expect(principals.map((p) => p.username)).toEqual(tokens.map(() => 'fleet-bot'));
    expect((await a.store.listUsers()).filter((u) => u.username.startsWith('fleet-bot'))).toHaveLength(1);
    expect(audit.filter((e) => e.action === 'user.created')).toHaveLength(1);
  });

  it('deleting the account on one instance makes the other resolve the next request to a new account', async () => {
    const token = await provider.token('fleet-bot');
    expect((await b.authenticate(`Bearer ${token}`)).username).toBe('fleet-bot');
    const before = await b.store.getUser('fleet-bot');
    const admin = await a.authService.issueToken('admin');
    await a.users.delete('fleet-bot', await a.authenticate(`Bearer ${admin.token}`));
    // Within the user-change feed's delivery (well under a second), B no longer maps the identity to the old account.
    const deadline = Date.now() + 1000;
    let after = await b.store.getUser('fleet-bot');
    for (;;) {
      await b.authenticate(`Bearer ${token}`);
      after = await b.store.getUser('fleet-bot');
      if ((after !== null && after.id !== before?.id) || Date.now() > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(after?.id).toBeDefined();
    expect(after?.id).not.toBe(before?.id);
    expect(audit.filter((e) => e.action === 'user.created')).toHaveLength(2);
  });
});
