/**
 * The agents list's prepared bytes and ETag with two instances on one PostgreSQL database:
 * a change made through instance B is in instance A's next body and tag (A's store hands back
 * fresh records, so nothing stale can be reused), and an unchanged list keeps its tag across
 * requests and instances. The HTTP side (304 for If-None-Match) is tested in
 * packages/http/test/list-etag.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSentinelApi, silentLogger, type CompiledRoute, type Principal, type RouteContext, type RouteResponse, type SentinelApi } from '@sentinel/api-core';
import { createTestDatabase, type TestDatabase } from '@sentinel/test-support/postgres';

const SECRET = 'list-etag-pg-secret-0123456789abcdef';
const ADMIN: Principal = { username: 'admin', role: 'admin' };

function ctx(principal: Principal): RouteContext {
  return { principal, requestId: 'test', signal: new AbortController().signal, log: silentLogger, origin: { secure: false, host: 'localhost:8080' }, remoteAddress: '127.0.0.1' };
}

function route(api: SentinelApi, method: string, path: string): CompiledRoute {
  const found = api.routes.find((r) => r.method === method && r.path === path);
  if (!found) throw new Error(`no route ${method} ${path}`);
  return found;
}

describe('agents list on PostgreSQL, two instances', () => {
  let database: TestDatabase;
  const dirs: string[] = [];
  const apis: SentinelApi[] = [];

  beforeAll(async () => {
    database = await createTestDatabase();
    for (let i = 0; i < 2; i++) {
      const dir = mkdtempSync(join(tmpdir(), `sentinel-etag-pg-${i}-`));
      dirs.push(dir);
      apis.push(await createSentinelApi({ dataDir: dir, storeUrl: database.url, tokenSecret: SECRET, adminPassword: 'admin-password-123' }));
    }
  });

  afterAll(async () => {
    for (const api of apis) await api.close();
    await database?.drop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it('gives instance A a new body and ETag after instance B changed the list, and the same tag while nothing changed', async () => {
    const [a, b] = apis as [SentinelApi, SentinelApi];
    const list = async (api: SentinelApi): Promise<RouteResponse & { prepared: { bytes: Buffer; etag: string } }> => {
      const response = await api.invoke(route(api, 'GET', '/v1/agents'), { params: {}, query: {} }, ctx(ADMIN));
      expect(response.prepared).toBeDefined();
      // The bytes are the body: in-process callers and the transport see the same list.
      expect(JSON.parse(response.prepared!.bytes.toString('utf8'))).toEqual(response.body);
      return response as RouteResponse & { prepared: { bytes: Buffer; etag: string } };
    };
    const created = await b.invoke(
      route(b, 'POST', '/v1/agents'),
      { params: {}, query: {}, body: { format: 'json', text: JSON.stringify({ image: 'sentinel/echo', name: 'pg one' }) } },
      ctx(ADMIN),
    );
    const id = (created.body as { id: string }).id;

    const first = await list(a);
    expect((first.body as { agents: Array<{ name: string }> }).agents.map((x) => x.name)).toEqual(['pg one']);
    expect((await list(a)).prepared.etag).toBe(first.prepared.etag);
    // The tag is of the bytes: the other instance gives the same one for the same list.
    expect((await list(b)).prepared.etag).toBe(first.prepared.etag);

    await b.invoke(route(b, 'POST', '/v1/agents/:id/stop'), { params: { id }, query: {} }, ctx(ADMIN));
    const afterStop = await list(a);
    expect(afterStop.prepared.etag).not.toBe(first.prepared.etag);
    expect((afterStop.body as { agents: Array<{ status: string }> }).agents[0]?.status).toBe('stopped');

    await b.store.addAgentUsage(id, 1, 7, new Date().toISOString());
    const afterUsage = await list(a);
    expect(afterUsage.prepared.etag).not.toBe(afterStop.prepared.etag);
    expect((afterUsage.body as { agents: Array<{ api_usage: unknown }> }).agents[0]?.api_usage).toEqual({ requests: 1, tokens: 7 });

    await b.invoke(route(b, 'DELETE', '/v1/agents/:id'), { params: { id }, query: {} }, ctx(ADMIN));
    const afterDelete = await list(a);
    expect((afterDelete.body as { agents: unknown[] }).agents).toEqual([]);
    expect(afterDelete.prepared.etag).not.toBe(afterUsage.prepared.etag);
  });
});
