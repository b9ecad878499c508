/**
 * registry.search/push/pull through the SDK between two servers and a real `docker-registry`:
 * push and pull are async iterables of progress records ending with the result, `.result()`
 * runs one to its end, an error line after the 200 is a SentinelApiError, and aborting a
 * transfer mid-stream fails it with `aborted`.
 */
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, isTransferProgress, type PullResult, type PushResult, type SentinelClient, type TransferProgress } from '@sentinel/api-client';
import { startDockerRegistry, type RunningRegistry } from './docker-registry.js';
import { ADMIN_PASSWORD, drain, rejection, startServer, type TestServer } from './server.js';

/** A loopback port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function adminOf(node: TestServer): Promise<SentinelClient> {
  const client = createClient({ baseUrl: node.url });
  await client.login('admin', ADMIN_PASSWORD);
  return client;
}

describe('the SDK registry namespace against docker-registry', () => {
  let registry: RunningRegistry;
  let a: TestServer;
  let b: TestServer;
  let adminA: SentinelClient;
  let adminB: SentinelClient;
  let imageId: string;

  beforeAll(async () => {
    registry = await startDockerRegistry();
    [a, b] = await Promise.all([startServer({ registry: { url: registry.url, allowPrivateHosts: true } }), startServer({ registry: { url: registry.url, allowPrivateHosts: true } })]);
    [adminA, adminB] = await Promise.all([adminOf(a), adminOf(b)]);
    imageId = (await adminA.images.build({ name: 'demo/helper', tag: 'v1', description: 'the helper', model: { provider: 'echo', name: 'echo' }, tools: ['calculator'] })).id;
  });

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await registry?.stop();
  });

  it('push: progress records with overall bytes, then the result', async () => {
    const records: Array<TransferProgress | PushResult> = [];
    for await (const record of adminA.registry.push({ image: 'demo/helper:v1' })) records.push(record);
    const result = records.at(-1) as PushResult;
    expect(result).toEqual({ name: 'demo/helper', tag: 'v1', digest: imageId, status: 'pushed', registry: registry.host });
    const progress = records.slice(0, -1);
    expect(progress.length).toBeGreaterThan(0);
    for (const record of progress) {
      expect(isTransferProgress(record)).toBe(true);
      expect((record as TransferProgress).overall.bytes).toBeLessThanOrEqual((record as TransferProgress).overall.total);
    }
    expect(progress.map((record) => (record as TransferProgress).kind)).toContain('manifest');
  });

  it('search finds the pushed repository; pull brings it to the other server with the same digest', async () => {
    await adminA.registry.push({ image: 'demo/helper:v1' }).result();
    const found = await adminB.registry.search({ query: 'demo', limit: 10 });
    expect(found.results).toEqual([expect.objectContaining({ name: 'demo/helper', tags: ['v1'], digest: imageId, agent: true })]);

    const records: Array<TransferProgress | PullResult> = [];
    for await (const record of adminB.registry.pull({ name: 'demo/helper', tag: 'v1' })) records.push(record);
    const result = records.at(-1) as PullResult;
    expect(result).toMatchObject({ name: 'demo/helper', tag: 'v1', digest: imageId, status: 'pulled', registry: registry.host });
    expect(result.image.id).toBe(imageId);
    expect(records.slice(0, -1).every((record) => isTransferProgress(record))).toBe(true);
    expect((await adminB.images.get('demo/helper:v1')).id).toBe(imageId);

    const progress: TransferProgress[] = [];
    const again = await adminB.registry.pull({ name: 'demo/helper:v1' }).result((record) => progress.push(record));
    expect(again).toMatchObject({ status: 'up_to_date', digest: imageId });
    expect(progress.every((record) => isTransferProgress(record))).toBe(true);
  });

  it('a transfer is iterated once', async () => {
    const transfer = adminA.registry.push({ image: 'demo/helper:v1' });
    await transfer.result();
    expect(() => transfer[Symbol.asyncIterator]()).toThrow(TypeError);
  });

  it('errors: a missing tag is a 404, a user who may not push a 403, both with code and docs', async () => {
    const missing = await drain(adminB.registry.pull({ name: 'demo/helper', tag: 'nope' }));
    expect(missing.items.filter((record) => !isTransferProgress(record))).toEqual([]);
    expect(missing.error).toMatchObject({ status: 404, code: 'not_found', docs: '/docs/errors#not_found' });

    await adminA.transport.request('POST', '/v1/users', { body: { username: 'bob', password: 'bob-password-123', role: 'user' } });
    const bob = createClient({ baseUrl: a.url });
    await bob.login('bob', 'bob-password-123');
    const denied = await rejection(bob.registry.push({ image: 'demo/helper:v1' }).result());
    expect(denied).toMatchObject({ status: 403, code: 'forbidden', docs: '/docs/errors#forbidden' });
  });

  it('aborting a push mid-stream fails it with aborted and hands out no further record', async () => {
    await adminA.images.build({ name: 'demo/abort', tag: 'v1', model: 'echo/echo' });
    const controller = new AbortController();
    const seen: Array<TransferProgress | PushResult> = [];
    const { error } = await drain(
      (async function* () {
        for await (const record of adminA.registry.push({ image: 'demo/abort:v1' }, { signal: controller.signal })) {
          seen.push(record);
          controller.abort();
          yield record;
        }
      })(),
    );
    expect(seen).toHaveLength(1);
    expect(isTransferProgress(seen[0] as TransferProgress)).toBe(true);
    expect(error).toMatchObject({ status: 0, code: 'aborted' });
  });

  it('a registry that fails after the stream began: the error line becomes a SentinelApiError with its status', async () => {
    const down = await startServer({ registry: { url: `http://127.0.0.1:${await closedPort()}`, allowPrivateHosts: true } });
    try {
      const admin = await adminOf(down);
      await admin.images.build({ name: 'demo/lost', tag: 'v1', model: 'echo/echo' });
      // The server answers 200 and then fails the stream: the failure is an error line.
      const raw = await admin.transport.send('POST', '/v1/registry/push', { body: { image: 'demo/lost:v1' }, accept: 'application/x-ndjson' });
      expect(raw.status).toBe(200);
      expect(JSON.parse((await raw.text()).trim())).toMatchObject({ code: 'upstream_error' });
      const { items, error } = await drain(admin.registry.push({ image: 'demo/lost:v1' }));
      expect(items.filter((record) => !isTransferProgress(record))).toEqual([]);
      expect(error).toMatchObject({ status: 502, code: 'upstream_error', docs: '/docs/errors#upstream_error' });
      expect(error?.message).toMatch(/127\.0\.0\.1/);
    } finally {
      await down.close();
    }
  });
});
