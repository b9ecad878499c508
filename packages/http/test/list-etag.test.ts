/**
 * List routes serve bytes built once per version of the caller's view, with a strong ETag:
 * identical GETs get identical bytes and tag, `If-None-Match` gets 304, any change visible in
 * the list (status, usage counters, a new or deleted agent, another connection's commit) gives
 * another body and tag, and one user's bytes are never served to another. Real SQLite files,
 * real sockets. Two instances on PostgreSQL: packages/core/test/list-etag-postgres.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createSentinelApi, openSqliteStore, type SentinelApi } from '@sentinel/api-core';
import { listen, type RunningServer } from '../src/index.js';

const SECRET = 'list-etag-secret-0123456789abcdef';
const ADMIN_PASSWORD = 'admin-password-123';

interface Reply {
  status: number;
  etag: string | undefined;
  cacheControl: string | undefined;
  text: string;
}

async function get(base: string, path: string, token: string, headers: Record<string, string> = {}): Promise<Reply> {
  const res = await request(`${base}${path}`, { method: 'GET', headers: { authorization: `Bearer ${token}`, ...headers } });
  const text = await res.body.text();
  const etag = res.headers.etag;
  const cacheControl = res.headers['cache-control'];
  return { status: res.statusCode, etag: typeof etag === 'string' ? etag : undefined, cacheControl: typeof cacheControl === 'string' ? cacheControl : undefined, text };
}

async function send(base: string, method: string, path: string, token: string, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await request(`${base}${path}`, {
    method: method as 'POST',
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, json: text === '' ? undefined : JSON.parse(text) };
}

async function login(base: string, username: string, password: string): Promise<string> {
  const res = await request(`${base}/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }) });
  expect(res.statusCode).toBe(200);
  return ((await res.body.json()) as { token: string }).token;
}

describe('list routes on SQLite: prepared bytes with a strong ETag', () => {
  let dir: string;
  let api: SentinelApi;
  let server: RunningServer;
  let base: string;
  let admin: string;
  let alice: string;
  let bob: string;
  let aliceAgent: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sentinel-etag-'));
    api = await createSentinelApi({ dataDir: dir, tokenSecret: SECRET, adminPassword: ADMIN_PASSWORD });
    server = await listen(api, { port: 0, host: '127.0.0.1', logRequests: false });
    base = server.url;
    admin = await login(base, 'admin', ADMIN_PASSWORD);
    for (const name of ['alice', 'bob']) expect((await send(base, 'POST', '/v1/users', admin, { username: name, password: `${name}-password` })).status).toBe(201);
    alice = await login(base, 'alice', 'alice-password');
    bob = await login(base, 'bob', 'bob-password');
    const created = await send(base, 'POST', '/v1/agents', alice, { image: 'sentinel/echo', name: 'alice one' });
    expect(created.status).toBe(201);
    aliceAgent = created.json.id as string;
    expect((await send(base, 'POST', '/v1/agents', bob, { image: 'sentinel/echo', name: 'bob one' })).status).toBe(201);
  });

  afterAll(async () => {
    await server?.close();
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers two identical GETs with the same bytes and the same strong ETag, and 304 to If-None-Match', async () => {
    const first = await get(base, '/v1/agents', alice);
    const second = await get(base, '/v1/agents', alice);
    expect(first.status).toBe(200);
    expect(first.etag).toMatch(/^"[A-Za-z0-9_-]{43}"$/);
    expect(first.cacheControl).toBe('private, no-cache');
    expect(second.etag).toBe(first.etag);
    expect(second.text).toBe(first.text);
    expect(JSON.parse(first.text).agents.map((a: { name: string }) => a.name)).toEqual(['alice one']);

    const etag = first.etag as string;
    for (const ifNoneMatch of [etag, `W/${etag}`, `"nope", ${etag}`, '*']) {
      const conditional = await get(base, '/v1/agents', alice, { 'if-none-match': ifNoneMatch });
      expect(conditional.status).toBe(304);
      expect(conditional.text).toBe('');
      expect(conditional.etag).toBe(etag);
    }
    const stale = await get(base, '/v1/agents', alice, { 'if-none-match': '"some-other-tag"' });
    expect(stale.status).toBe(200);
    expect(stale.text).toBe(first.text);
    // HEAD: the same headers, no body.
    const head = await request(`${base}/v1/agents`, { method: 'HEAD', headers: { authorization: `Bearer ${alice}` } });
    await head.body.text();
    expect(head.headers.etag).toBe(etag);
    expect(head.headers['content-length']).toBe(String(Buffer.byteLength(first.text)));
  });

  it('never serves one user the bytes (or the 304) of another', async () => {
    const ofAlice = await get(base, '/v1/agents', alice);
    const ofBob = await get(base, '/v1/agents', bob);
    expect(ofBob.etag).not.toBe(ofAlice.etag);
    expect(JSON.parse(ofBob.text).agents.map((a: { name: string }) => a.name)).toEqual(['bob one']);
    // Bob presenting Alice's tag gets his own list, not a 304 for hers.
    const crossed = await get(base, '/v1/agents', bob, { 'if-none-match': ofAlice.etag as string });
    expect(crossed.status).toBe(200);
    expect(crossed.text).toBe(ofBob.text);
    // The admin's view is every agent, cached apart from both.
    const ofAdmin = await get(base, '/v1/agents', admin);
    expect(JSON.parse(ofAdmin.text).agents.map((a: { name: string }) => a.name).sort()).toEqual(['alice one', 'bob one']);
    expect(ofAdmin.etag).not.toBe(ofAlice.etag);
    // The endpoints carry the Host the client used: another Host is another view.
    const otherHost = await get(base, '/v1/agents', alice, { host: 'example.test:9999' });
    expect(JSON.parse(otherHost.text).agents[0].endpoints.chat).toBe(`ws://example.test:9999/v1/agents/${aliceAgent}/chat`);
    expect(otherHost.etag).not.toBe(ofAlice.etag);
    expect((await get(base, '/v1/agents', alice)).text).toBe(ofAlice.text);
  });

  it('changes body and ETag on every change visible in the list', async () => {
    const tags = new Set<string>();
    const look = async () => {
      const reply = await get(base, '/v1/agents', alice);
      expect(reply.status).toBe(200);
      expect(tags.has(reply.etag as string)).toBe(false);
      tags.add(reply.etag as string);
      return JSON.parse(reply.text).agents as Array<{ id: string; name: string; status: string; api_usage: { requests: number; tokens: number } }>;
    };
    await look();

    // Status.
    expect((await send(base, 'POST', `/v1/agents/${aliceAgent}/stop`, alice)).status).toBe(200);
    expect((await look())[0]?.status).toBe('stopped');

    // Usage counters, as a finished turn adds them.
    await api.store.addAgentUsage(aliceAgent, 1, 42, new Date().toISOString());
    expect((await look())[0]?.api_usage).toEqual({ requests: 1, tokens: 42 });

    // Another connection's commit (another process on the same file): PRAGMA data_version.
    const other = await openSqliteStore({ path: join(dir, 'sentinel.db') });
    try {
      await other.addAgentUsage(aliceAgent, 2, 8, new Date().toISOString());
    } finally {
      await other.close();
    }
    expect((await look())[0]?.api_usage).toEqual({ requests: 3, tokens: 50 });

    // A new agent, then a deleted one.
    const beforeCreate = await get(base, '/v1/agents', alice);
    const created = await send(base, 'POST', '/v1/agents', alice, { image: 'sentinel/echo', name: 'alice two' });
    expect((await look()).map((a) => a.name)).toEqual(['alice two', 'alice one']);
    expect((await send(base, 'DELETE', `/v1/agents/${created.json.id as string}`, alice)).status).toBe(204);
    // Back to the very same list: the tag is of the bytes, so it is the one from before.
    const afterDelete = await get(base, '/v1/agents', alice);
    expect(JSON.parse(afterDelete.text).agents.map((a: { name: string }) => a.name)).toEqual(['alice one']);
    expect(afterDelete.text).toBe(beforeCreate.text);
    expect(afterDelete.etag).toBe(beforeCreate.etag);
  });

  it('gives the images, users and logs lists an ETag and 304 too, changing with their content', async () => {
    for (const [path, token] of [['/v1/images', alice], ['/v1/users', admin], [`/v1/agents/${aliceAgent}/logs`, alice]] as const) {
      const first = await get(base, path, token);
      expect(first.status).toBe(200);
      expect(first.etag).toMatch(/^"[A-Za-z0-9_-]{43}"$/);
      expect((await get(base, path, token)).etag).toBe(first.etag);
      expect((await get(base, path, token, { 'if-none-match': first.etag as string })).status).toBe(304);
    }
    const logsBefore = await get(base, `/v1/agents/${aliceAgent}/logs`, alice);
    expect((await send(base, 'POST', `/v1/agents/${aliceAgent}/start`, alice)).status).toBe(200);
    const logsAfter = await get(base, `/v1/agents/${aliceAgent}/logs`, alice, { 'if-none-match': logsBefore.etag as string });
    expect(logsAfter.status).toBe(200);
    expect(logsAfter.etag).not.toBe(logsBefore.etag);

    const usersBefore = await get(base, '/v1/users', admin);
    expect((await send(base, 'POST', '/v1/users', admin, { username: 'carol', password: 'carol-password' })).status).toBe(201);
    const usersAfter = await get(base, '/v1/users', admin, { 'if-none-match': usersBefore.etag as string });
    expect(usersAfter.status).toBe(200);
    expect(usersAfter.text).toContain('carol');
  });
});
