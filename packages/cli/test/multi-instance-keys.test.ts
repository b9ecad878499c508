/**
 * API keys across instances: two built `sentinel api` processes on one fresh PostgreSQL
 * database and one Redis (under a key prefix of this run's own). A key revoked on one instance
 * is refused on the other within 1 s, though that one had it cached; neither instance's output
 * ever holds a key.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createInstances, type Instance, type Instances } from './instances.js';
import { callJson as call } from './spawn-cli.js';

describe('API keys across instances on one PostgreSQL and one Redis', () => {
  let instances: Instances;
  let a: Instance;
  let b: Instance;
  let token: string;
  const secrets: string[] = [];

  async function createKey(on: { url: string }, scopes: string[]): Promise<{ id: string; key: string }> {
    const created = await call('POST', `${on.url}/v1/keys`, token, { name: `key ${scopes.join(' ')}`, scopes });
    expect(created.status, JSON.stringify(created.json)).toBe(201);
    secrets.push(created.json.key as string);
    return { id: created.json.id as string, key: created.json.key as string };
  }

  /** Polls `GET /v1/agents` with `key` on `on` until it is refused; resolves with how long that took. */
  async function refusedWithin(on: { url: string }, key: string, limitMs: number): Promise<number> {
    const started = Date.now();
    for (;;) {
      const r = await call('GET', `${on.url}/v1/agents`, key);
      if (r.status === 401) {
        expect(r.json).toMatchObject({ code: 'unauthorized', error: 'invalid api key' });
        return Date.now() - started;
      }
      expect(r.status).toBe(200);
      if (Date.now() - started > limitMs) throw new Error(`the revoked key was still accepted after ${limitMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  beforeAll(async () => {
    instances = await createInstances('sentinel-multi-keys-');
    // With the request log: the last test reads it.
    [a, b] = await Promise.all([instances.start('a', { logRequests: true }), instances.start('b', { logRequests: true })]);
    token = await instances.login(a);
  }, 60_000);

  afterAll(async () => {
    await instances?.close();
  });

  it('a key made on A works on B; revoked on A it is refused on B within 1 s, and the other way round', async () => {
    const first = await createKey(a, ['agents:read']);
    // Both instances have it cached now.
    for (const on of [a, b]) expect((await call('GET', `${on.url}/v1/agents`, first.key)).status).toBe(200);
    expect((await call('DELETE', `${a.url}/v1/keys/${first.id}`, token)).status).toBe(204);
    expect((await call('GET', `${a.url}/v1/agents`, first.key)).status).toBe(401);
    const onB = await refusedWithin(b, first.key, 1000);
    expect(onB).toBeLessThan(1000);

    const second = await createKey(b, ['agents:read', 'keys:write']);
    for (const on of [a, b]) expect((await call('GET', `${on.url}/v1/agents`, second.key)).status).toBe(200);
    // Revoked with the key itself (it holds keys:write), on B.
    expect((await call('DELETE', `${b.url}/v1/keys/${second.id}`, second.key)).status).toBe(204);
    expect(await refusedWithin(a, second.key, 1000)).toBeLessThan(1000);
    // The list on A no longer has either.
    const listed = await call('GET', `${a.url}/v1/keys`, token);
    expect(listed.json.keys.map((k: { id: string }) => k.id)).not.toContain(second.id);
  });

  it('no key appears in either instance’s logs', async () => {
    expect(secrets.length).toBe(2);
    for (const on of [a, b]) {
      const output = on.process.stdout() + on.process.stderr();
      expect(output).toContain('/v1/keys');
      for (const secret of secrets) expect(output.includes(secret.slice(12))).toBe(false);
    }
  });
});
