/**
 * Registry hardening over real HTTP and real `docker-registry` processes: a registry that drips
 * bytes ends a pull or push with `upstream_timeout` within the configured bounds and nothing
 * stored; registries named in a request cannot be used to probe the server's network (closed,
 * open and private addresses all read the same); the configured registry stays trusted; and the
 * same repository path pulled from two registries is kept under two full names.
 */
import { rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createSentinelApi, RegistryClient, type RegistrySettings, type SentinelApi } from '@sentinel/api-core';
import { listen, type RunningServer } from '@sentinel/api-http';
import { listenLoopback, startDockerRegistry, startProxy, tempDir, type RunningRegistry } from './registry-support.js';

const SECRET = 'registry-hardening-secret-0123456789';
const ADMIN_PASSWORD = 'admin-password-123';

interface Reply {
  status: number;
  body: any;
}

interface Node {
  api: SentinelApi;
  call(method: string, path: string, body?: unknown): Promise<Reply>;
  close(): Promise<void>;
}

async function startNode(registry: RegistrySettings = {}): Promise<Node> {
  const dir = tempDir('registry-hardening');
  const api = await createSentinelApi({ dataDir: dir, tokenSecret: SECRET, adminPassword: ADMIN_PASSWORD, registry });
  const server: RunningServer = await listen(api, { port: 0, host: '127.0.0.1', logRequests: false });
  let token = '';
  const call = async (method: string, path: string, body?: unknown): Promise<Reply> => {
    const res = await request(`${server.url}${path}`, {
      method: method as 'GET',
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.body.text();
    return { status: res.statusCode, body: text ? JSON.parse(text) : undefined };
  };
  const login = await call('POST', '/v1/auth/login', { username: 'admin', password: ADMIN_PASSWORD });
  token = login.body.token as string;
  return {
    api,
    call,
    async close() {
      await server.close();
      await api.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function build(node: Node, name: string, tag: string, description: string): Promise<string> {
  const r = await node.call('POST', '/v1/images', { name, tag, description, model: { provider: 'echo', name: 'echo' } });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body.id as string;
}

/** A TCP server on 127.0.0.1:0 that does `onConnection` with every socket. */
async function tcpServer(onConnection: (socket: Socket) => void): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

async function closedPort(): Promise<number> {
  const server = await tcpServer(() => undefined);
  await server.close();
  return server.port;
}

describe('registry transfers against a registry that drips bytes', () => {
  let registry: RunningRegistry;
  let pusher: Node;

  beforeAll(async () => {
    registry = await startDockerRegistry();
    pusher = await startNode({ url: registry.url });
  });

  afterAll(async () => {
    await pusher?.close();
    await registry?.stop();
  });

  it('ends a pull below the minimum rate with upstream_timeout, and stores nothing', async () => {
    const id = await build(pusher, 'demo/drip', 'v1', 'dripped');
    expect((await pusher.call('POST', '/v1/registry/push', { image: 'demo/drip:v1' })).status).toBe(200);
    // The manifest comes at full speed, the config blob at 5 bytes/s.
    const proxy = await startProxy(registry.url, { drip: { match: (req) => req.method === 'GET' && (req.url ?? '').includes('/blobs/'), bytesPerSecond: 5 } });
    const node = await startNode({ allowPrivateHosts: true, timeoutMs: 60_000, minBytesPerSecond: 200, rateWindowMs: 1000 });
    try {
      const host = new URL(proxy.url).host;
      const started = Date.now();
      const pulled = await node.call('POST', '/v1/registry/pull', { name: 'demo/drip:v1', registry: proxy.url });
      const elapsed = Date.now() - started;
      expect(pulled).toEqual({
        status: 504,
        body: { code: 'upstream_timeout', docs: '/docs/errors#upstream_timeout', error: expect.stringMatching(new RegExp(`^registry ${host} moved \\d+ bytes in 1 s, below the minimum of 200 bytes/s; the pull was abandoned$`)) },
      });
      // Two windows at most: the first one saw the manifest.
      expect(elapsed).toBeGreaterThanOrEqual(900);
      expect(elapsed).toBeLessThan(8_000);
      expect(await node.api.store.getImage(id)).toBeNull();
      expect((await node.call('GET', `/v1/images/${encodeURIComponent(`${host}/demo/drip:v1`)}`)).status).toBe(404);
    } finally {
      await node.close();
      await proxy.close();
    }
  });

  it('ends a pull at the overall deadline with upstream_timeout even when bytes keep coming', async () => {
    const id = await build(pusher, 'demo/deadline', 'v1', 'too slow overall');
    expect((await pusher.call('POST', '/v1/registry/push', { image: 'demo/deadline:v1' })).status).toBe(200);
    const proxy = await startProxy(registry.url, { drip: { match: (req) => req.method === 'GET' && (req.url ?? '').includes('/blobs/'), bytesPerSecond: 50 } });
    const node = await startNode({ allowPrivateHosts: true, timeoutMs: 1500, minBytesPerSecond: 0 });
    try {
      const started = Date.now();
      const pulled = await node.call('POST', '/v1/registry/pull', { name: 'demo/deadline:v1', registry: proxy.url });
      const elapsed = Date.now() - started;
      expect(pulled).toEqual({ status: 504, body: { code: 'upstream_timeout', docs: '/docs/errors#upstream_timeout', error: `the pull from registry ${new URL(proxy.url).host} did not finish within 1500 ms` } });
      expect(elapsed).toBeGreaterThanOrEqual(1400);
      expect(elapsed).toBeLessThan(8_000);
      expect(await node.api.store.getImage(id)).toBeNull();
    } finally {
      await node.close();
      await proxy.close();
    }
  });

  it('ends a push below the minimum rate with upstream_timeout before the manifest is put', async () => {
    // The pusher's configured registry is the dripping proxy itself: trusted, and still guarded.
    const proxy = await startProxy(registry.url, { drip: { match: (req) => req.method === 'PUT' && (req.url ?? '').includes('/blobs/uploads/'), bytesPerSecond: 5 } });
    const node = await startNode({ url: proxy.url, timeoutMs: 60_000, minBytesPerSecond: 200, rateWindowMs: 1000 });
    try {
      await build(node, 'demo/drippush', 'v1', 'never arrives');
      const started = Date.now();
      const pushed = await node.call('POST', '/v1/registry/push', { image: 'demo/drippush:v1' });
      const elapsed = Date.now() - started;
      expect(pushed).toEqual({
        status: 504,
        body: { code: 'upstream_timeout', docs: '/docs/errors#upstream_timeout', error: expect.stringMatching(new RegExp(`^registry ${new URL(proxy.url).host} moved \\d+ bytes in 1 s, below the minimum of 200 bytes/s; the push was abandoned$`)) },
      });
      expect(elapsed).toBeLessThan(8_000);
      expect(proxy.requests.some((line) => line.startsWith('PUT /v2/demo/drippush/manifests/'))).toBe(false);
      const client = new RegistryClient({ url: registry.url });
      try {
        await expect(client.getManifest('demo/drippush', 'v1')).rejects.toMatchObject({ code: 'not_found' });
      } finally {
        await client.close();
      }
    } finally {
      await node.close();
      await proxy.close();
    }
  });
});

describe('registries named in a request', () => {
  let registry: RunningRegistry;
  let strict: Node;
  let open: Awaited<ReturnType<typeof tcpServer>>;
  let silent: Awaited<ReturnType<typeof tcpServer>>;
  let web: Awaited<ReturnType<typeof listenLoopback>>;

  beforeAll(async () => {
    registry = await startDockerRegistry();
    // The configured registry is on loopback: trusted, no allow option needed.
    strict = await startNode({ url: registry.url });
    // An open port speaking another protocol, one that never answers, one speaking plain HTTP.
    open = await tcpServer((socket) => socket.end('SSH-2.0-OpenSSH_9.6\r\n'));
    silent = await tcpServer(() => undefined);
    web = await listenLoopback((_req, res) => res.writeHead(404).end('not here'));
  });

  afterAll(async () => {
    await strict?.close();
    await open?.close();
    await silent?.close();
    await web?.close();
    await registry?.stop();
  });

  const shape = (reply: Reply, host: string) => ({ status: reply.status, code: reply.body.code, error: String(reply.body.error).replaceAll(host, '<host>') });

  it('refuse internal addresses with one message, whether the port is closed, open or private', async () => {
    const hosts = [`127.0.0.1:${await closedPort()}`, `127.0.0.1:${open.port}`, `127.0.0.1:${web.server.address() && (web.server.address() as AddressInfo).port}`, '10.255.255.1:5000', 'no-such-registry.invalid:5000'];
    const seen = [];
    for (const host of hosts) {
      const pull = await strict.call('POST', '/v1/registry/pull', { name: `${host}/demo/helper:v1` });
      seen.push(shape(pull, host));
      const field = await strict.call('POST', '/v1/registry/pull', { name: 'demo/helper:v1', registry: `http://${host}` });
      seen.push(shape(field, host));
      const search = await strict.call('GET', `/v1/registry/search?registry=${encodeURIComponent(`http://${host}`)}`);
      seen.push(shape(search, host));
    }
    for (const one of seen) expect(one).toEqual({ status: 502, code: 'upstream_error', error: 'registry <host> could not be reached' });
  });

  it('with private hosts allowed, closed, non-HTTP and silent ports still read the same', async () => {
    const node = await startNode({ allowPrivateHosts: true, timeoutMs: 1500 });
    try {
      const hosts = [`127.0.0.1:${await closedPort()}`, `127.0.0.1:${open.port}`, `127.0.0.1:${silent.port}`];
      for (const host of hosts) {
        const pull = await node.call('POST', '/v1/registry/pull', { name: `${host}/demo/helper:v1` });
        expect(shape(pull, host)).toEqual({ status: 502, code: 'upstream_error', error: 'registry <host> could not be reached' });
      }
      // A real registry on loopback works once allowed.
      expect((await node.call('POST', '/v1/registry/pull', { name: `${registry.host}/demo/nothing:v1` })).body).toEqual({
        code: 'not_found',
        docs: '/docs/errors#not_found',
        error: `tag "v1" not found in ${registry.host}/demo/nothing`,
      });
    } finally {
      await node.close();
    }
  });

  it('leave the configured registry trusted: push and pull work on loopback', async () => {
    const id = await build(strict, 'demo/trusted', 'v1', 'configured');
    expect((await strict.call('POST', '/v1/registry/push', { image: 'demo/trusted:v1' })).body).toMatchObject({ digest: id, registry: registry.host });
    expect((await strict.call('DELETE', '/v1/images/demo%2Ftrusted:v1')).status).toBe(204);
    expect((await strict.call('POST', '/v1/registry/pull', { name: 'demo/trusted:v1' })).body).toMatchObject({ name: 'demo/trusted', digest: id, status: 'pulled' });
    // Naming the configured registry by its host is the configured registry too.
    expect((await strict.call('POST', '/v1/registry/pull', { name: `${registry.host}/demo/trusted:v1` })).body).toMatchObject({ name: 'demo/trusted', digest: id });
  });
});

describe('one repository path on two registries', () => {
  let one: RunningRegistry;
  let two: RunningRegistry;
  let pusher: Node;
  let puller: Node;

  beforeAll(async () => {
    [one, two] = await Promise.all([startDockerRegistry(), startDockerRegistry()]);
    [pusher, puller] = await Promise.all([startNode({ url: one.url, allowPrivateHosts: true }), startNode({ url: one.url, allowPrivateHosts: true })]);
  });

  afterAll(async () => {
    await pusher?.close();
    await puller?.close();
    await one?.stop();
    await two?.stop();
  });

  it('keeps each under its full reference; the configured registry keeps the short name', async () => {
    const first = await build(pusher, 'agents/demo/helper', 'v2', 'from registry one');
    expect((await pusher.call('POST', '/v1/registry/push', { image: 'agents/demo/helper:v2' })).status).toBe(200);
    const second = await build(pusher, 'agents/demo/helper', 'v2', 'from registry two');
    expect((await pusher.call('POST', '/v1/registry/push', { image: `${two.host}/agents/demo/helper:v2` })).body).toMatchObject({ digest: second, registry: two.host });
    expect(first).not.toBe(second);

    const fromTwo = await puller.call('POST', '/v1/registry/pull', { name: `${two.host}/agents/demo/helper:v2` });
    expect(fromTwo.body).toMatchObject({ name: `${two.host}/agents/demo/helper`, tag: 'v2', digest: second, registry: two.host, image: { name: `${two.host}/agents/demo/helper`, tag: 'v2' } });
    const fromOne = await puller.call('POST', '/v1/registry/pull', { name: 'agents/demo/helper:v2' });
    expect(fromOne.body).toMatchObject({ name: 'agents/demo/helper', digest: first, registry: one.host });
    // Naming the configured registry explicitly is still the configured registry: the short name.
    const fromOneFull = await puller.call('POST', '/v1/registry/pull', { name: 'agents/demo/helper:v2', registry: `http://${one.host}` });
    expect(fromOneFull.body).toMatchObject({ name: 'agents/demo/helper', digest: first });

    const byFull = await puller.call('GET', `/v1/images/${encodeURIComponent(`${two.host}/agents/demo/helper:v2`)}`);
    expect(byFull.body).toMatchObject({ id: second, name: `${two.host}/agents/demo/helper`, tag: 'v2', description: 'from registry two' });
    const byLatest = await puller.call('GET', `/v1/images/${encodeURIComponent(`${two.host}/agents/demo/helper`)}`);
    expect(byLatest.status).toBe(404);
    expect((await puller.call('GET', '/v1/images/agents%2Fdemo%2Fhelper:v2')).body).toMatchObject({ id: first, description: 'from registry one' });

    const agent = await puller.call('POST', '/v1/agents', { image: `${two.host}/agents/demo/helper:v2`, name: 'from-two' });
    expect(agent.status).toBe(201);
    expect(agent.body).toMatchObject({ image_id: second });
    const other = await puller.call('POST', '/v1/agents', { image: 'agents/demo/helper:v2', name: 'from-one' });
    expect(other.body).toMatchObject({ image_id: first });

    // A pulled full name pushes back to its registry by that name.
    expect((await puller.call('POST', '/v1/registry/push', { image: `${two.host}/agents/demo/helper:v2`, tag: 'v3' })).body).toMatchObject({ name: 'agents/demo/helper', tag: 'v3', digest: second, registry: two.host });
  });
});
