/**
 * `/v1/registry/{push,pull,search}` over real HTTP, between two data directories and a real
 * `docker-registry` process (anonymous and htpasswd): round trips with the same digest, search
 * paging, every fault as a clear `{error, code}`, NDJSON progress, and client-disconnect
 * cancellation through a loopback proxy that holds the registry back.
 */
import { rmSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createSentinelApi, RegistryClient, type RegistrySettings, type SentinelApi } from '@sentinel/api-core';
import { listen, type RunningServer } from '@sentinel/api-http';
import { listenLoopback, startDockerRegistry, startProxy, tempDir, type RunningRegistry } from './registry-support.js';

const SECRET = 'registry-routes-secret-0123456789';
const ADMIN_PASSWORD = 'admin-password-123';
const NDJSON = 'application/x-ndjson';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

interface Node {
  api: SentinelApi;
  server: RunningServer;
  dir: string;
  adminToken: string;
  call(method: string, path: string, options?: { token?: string | null; body?: unknown; accept?: string }): Promise<Reply>;
  close(): Promise<void>;
}

async function startNode(registry?: RegistrySettings): Promise<Node> {
  const dir = tempDir('registry-node');
  const api = await createSentinelApi({ dataDir: dir, tokenSecret: SECRET, adminPassword: ADMIN_PASSWORD, ...(registry ? { registry } : {}) });
  const server = await listen(api, { port: 0, host: '127.0.0.1', logRequests: false });
  const node: Node = {
    api,
    server,
    dir,
    adminToken: '',
    async call(method, path, options = {}) {
      const headers: Record<string, string> = {};
      const token = options.token === undefined ? node.adminToken : options.token;
      if (token) headers.authorization = `Bearer ${token}`;
      if (options.accept) headers.accept = options.accept;
      let body: string | undefined;
      if (options.body !== undefined) {
        body = JSON.stringify(options.body);
        headers['content-type'] = 'application/json';
      }
      const res = await request(`${server.url}${path}`, { method: method as 'GET', headers, body });
      const text = await res.body.text();
      const type = String(res.headers['content-type'] ?? '');
      let parsed: unknown = text;
      if (type.includes(NDJSON)) parsed = text.split('\n').filter(Boolean).map((line) => JSON.parse(line));
      else if (type.includes('json') && text) parsed = JSON.parse(text);
      return { status: res.statusCode, headers: res.headers, body: parsed };
    },
    async close() {
      await server.close();
      await api.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  node.adminToken = await login(node, 'admin', ADMIN_PASSWORD);
  return node;
}

async function login(node: Node, username: string, password: string): Promise<string> {
  const r = await node.call('POST', '/v1/auth/login', { token: null, body: { username, password } });
  expect(r.status).toBe(200);
  return r.body.token as string;
}

async function build(node: Node, name: string, tag: string, description = `the ${name} agent`): Promise<string> {
  const r = await node.call('POST', '/v1/images', { body: { name, tag, description, model: { provider: 'echo', name: 'echo' }, tools: ['calculator'] } });
  expect(r.status).toBe(201);
  return r.body.id as string;
}

/** Reads NDJSON lines as they arrive. */
class LineReader {
  lines: any[] = [];
  private buffered = '';
  private waiters: (() => void)[] = [];
  ended = false;

  constructor(readonly body: Readable) {
    body.setEncoding('utf8');
    body.on('data', (chunk: string) => {
      this.buffered += chunk;
      let newline: number;
      while ((newline = this.buffered.indexOf('\n')) !== -1) {
        this.lines.push(JSON.parse(this.buffered.slice(0, newline)));
        this.buffered = this.buffered.slice(newline + 1);
      }
      this.notify();
    });
    body.on('end', () => {
      this.ended = true;
      this.notify();
    });
    body.on('error', () => {
      this.ended = true;
      this.notify();
    });
  }

  private notify(): void {
    for (const wake of this.waiters.splice(0)) wake();
  }

  async until(predicate: (line: any) => boolean, timeoutMs = 10_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.find(predicate);
      if (found) return found;
      if (this.ended) throw new Error(`stream ended without the expected line: ${JSON.stringify(this.lines)}`);
      if (Date.now() > deadline) throw new Error(`no expected line within ${timeoutMs} ms: ${JSON.stringify(this.lines)}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }
}

async function waitFor(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('registry routes against docker-registry', () => {
  let registry: RunningRegistry;
  let a: Node;
  let b: Node;

  beforeAll(async () => {
    registry = await startDockerRegistry();
    // The proxies and fakes below are on loopback and named per request: allowed explicitly.
    [a, b] = await Promise.all([startNode({ url: registry.url, allowPrivateHosts: true }), startNode({ url: registry.url, allowPrivateHosts: true })]);
  });

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await registry?.stop();
  });

  it('pushes from one data directory and pulls into a fresh one: same digest, and an agent runs from it', async () => {
    const id = await build(a, 'demo/helper', 'v1');
    const pushed = await a.call('POST', '/v1/registry/push', { body: { image: 'demo/helper:v1' } });
    expect(pushed.status).toBe(200);
    expect(pushed.body).toEqual({ name: 'demo/helper', tag: 'v1', digest: id, status: 'pushed', registry: registry.host });

    const pulled = await b.call('POST', '/v1/registry/pull', { body: { name: 'demo/helper', tag: 'v1' } });
    expect(pulled.status).toBe(200);
    expect(pulled.body).toMatchObject({ name: 'demo/helper', tag: 'v1', digest: id, status: 'pulled', registry: registry.host });
    const images = await b.call('GET', '/v1/images');
    expect(images.body.images.find((i: any) => i.id === id)).toMatchObject({ name: 'demo/helper', tag: 'v1', description: 'the demo/helper agent' });

    const agent = await b.call('POST', '/v1/agents', { body: { image: 'demo/helper:v1', name: 'pulled-helper' } });
    expect(agent.status).toBe(201);
    expect(agent.body.image_id).toBe(id);

    const again = await b.call('POST', '/v1/registry/pull', { body: { name: 'demo/helper:v1' } });
    expect(again.body.status).toBe('up_to_date');
  });

  it('searches the catalog with limit and offset', async () => {
    const ids: Record<string, string> = {};
    for (const name of ['search/one', 'search/two', 'search/three']) {
      ids[name] = await build(a, name, 'latest', `${name} does things`);
      expect((await a.call('POST', '/v1/registry/push', { body: { image: name } })).status).toBe(200);
    }
    const first = await b.call('GET', '/v1/registry/search?query=search&limit=2&offset=0');
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ total: 3, offset: 0, limit: 2 });
    expect(first.body.results).toEqual([
      { name: 'search/one', tags: ['latest'], tag: 'latest', description: 'search/one does things', digest: ids['search/one'], agent: true },
      { name: 'search/three', tags: ['latest'], tag: 'latest', description: 'search/three does things', digest: ids['search/three'], agent: true },
    ]);
    const second = await b.call('GET', '/v1/registry/search?query=SEARCH&limit=2&offset=2');
    expect(second.body.results.map((r: any) => r.name)).toEqual(['search/two']);
    expect((await b.call('GET', '/v1/registry/search?query=nothing-like-it')).body).toEqual({ results: [], total: 0, offset: 0, limit: 25 });
    expect((await b.call('GET', '/v1/registry/search?limit=0')).status).toBe(400);
  });

  it('keeps a namespace given with the registry URL', async () => {
    const id = await build(a, 'demo/spaced', 'v1');
    const teamRegistry = `${registry.url}/team/agents`;
    const pushed = await a.call('POST', '/v1/registry/push', { body: { image: 'demo/spaced:v1', registry: teamRegistry } });
    expect(pushed.body).toMatchObject({ name: 'demo/spaced', digest: id });
    const client = new RegistryClient({ url: registry.url });
    try {
      expect(await client.listTags('team/agents/demo/spaced')).toEqual(['v1']);
    } finally {
      await client.close();
    }
    const found = await b.call('GET', `/v1/registry/search?registry=${encodeURIComponent(teamRegistry)}`);
    expect(found.body.results.map((r: any) => r.name)).toEqual(['demo/spaced']);
    const pulled = await b.call('POST', '/v1/registry/pull', { body: { name: 'demo/spaced:v1', registry: teamRegistry } });
    expect(pulled.body).toMatchObject({ name: 'demo/spaced', digest: id, status: 'pulled' });
    // The same image by its full reference, registry included: no namespace added.
    const full = await b.call('POST', '/v1/registry/pull', { body: { name: `${registry.host}/team/agents/demo/spaced:v1` } });
    expect(full.body).toMatchObject({ name: 'team/agents/demo/spaced', digest: id });
  });

  it('streams NDJSON progress per blob with overall bytes, then the result', async () => {
    const id = await build(a, 'demo/progress', 'v1');
    const pushed = await a.call('POST', '/v1/registry/push', { body: { image: 'demo/progress:v1' }, accept: NDJSON });
    expect(pushed.status).toBe(200);
    expect(pushed.headers['content-type']).toBe(NDJSON);
    const lines = pushed.body as any[];
    const final = lines.at(-1);
    expect(final).toEqual({ name: 'demo/progress', tag: 'v1', digest: id, status: 'pushed', registry: registry.host });
    const progress = lines.slice(0, -1);
    expect(progress.filter((l) => l.status === 'verified').map((l) => l.kind)).toEqual(['config', 'layer', 'manifest']);
    for (const line of progress) {
      expect(line).toEqual({
        status: expect.stringMatching(/^(uploading|exists|verified)$/),
        digest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
        kind: expect.stringMatching(/^(config|layer|manifest)$/),
        bytes: expect.any(Number),
        total: expect.any(Number),
        overall: { bytes: expect.any(Number), total: expect.any(Number) },
      });
    }
    const lastProgress = progress.at(-1);
    expect(lastProgress.overall.bytes).toBe(lastProgress.overall.total);

    const pulled = await b.call('POST', '/v1/registry/pull', { body: { name: 'demo/progress:v1' }, accept: NDJSON });
    const pullLines = pulled.body as any[];
    expect(pullLines.map((l) => l.status)).toEqual(['verified', 'downloading', 'downloading', 'verified', 'pulled']);
    expect(pullLines.at(-1)).toMatchObject({ digest: id, status: 'pulled' });
  });

  it('answers every fault with a clear {error, code}', async () => {
    const alice = await b.call('POST', '/v1/users', { body: { username: 'alice', password: 'alice-password-1', role: 'user' } });
    expect(alice.status).toBe(201);
    const aliceToken = await login(b, 'alice', 'alice-password-1');

    expect((await b.call('GET', '/v1/registry/search', { token: null })).status).toBe(401);
    const forbidden = await b.call('POST', '/v1/registry/push', { token: aliceToken, body: { image: 'demo/helper:v1' } });
    expect(forbidden).toMatchObject({ status: 403, body: { code: 'forbidden', docs: '/docs/errors#forbidden', error: 'pushing needs the admin role or a user allowed to push (can_push)' } });
    // A plain user may pull from the server's registry.
    expect((await b.call('POST', '/v1/registry/pull', { token: aliceToken, body: { name: 'search/one' } })).status).toBe(200);

    expect(await b.call('POST', '/v1/registry/push', { body: { image: 'nope/nothing:v1' } })).toMatchObject({
      status: 404,
      body: { code: 'not_found', docs: '/docs/errors#not_found', error: 'image "nope/nothing:v1" not found' },
    });
    const malformed = await b.call('POST', '/v1/registry/pull', { body: { name: 'Not A/Reference' } });
    expect(malformed.status).toBe(400);
    expect(malformed.body.code).toBe('invalid_request');
    expect(malformed.body.error).toMatch(/^invalid image reference "Not A\/Reference"/);

    expect(await b.call('POST', '/v1/registry/pull', { body: { name: 'demo/helper:v404' } })).toMatchObject({
      status: 404,
      body: { code: 'not_found', docs: '/docs/errors#not_found', error: `tag "v404" not found in ${registry.host}/demo/helper` },
    });

    const client = new RegistryClient({ url: registry.url });
    try {
      const config = Buffer.from('{"os":"linux"}');
      const { createHash } = await import('node:crypto');
      const configDigest = `sha256:${createHash('sha256').update(config).digest('hex')}`;
      await client.uploadBlob('containers/web', configDigest, config);
      await client.putManifest(
        'containers/web',
        'latest',
        Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length }, layers: [] })),
      );
    } finally {
      await client.close();
    }
    const notAgent = await b.call('POST', '/v1/registry/pull', { body: { name: 'containers/web' } });
    expect(notAgent.status).toBe(400);
    expect(notAgent.body.error).toMatch(/^127\.0\.0\.1:\d+\/containers\/web:latest is not an agent image: its config media type is application\/vnd\.oci\.image\.config\.v1\+json/);

    const closed = await listenLoopback(() => undefined);
    await closed.close();
    const unreachable = await b.call('POST', '/v1/registry/pull', { body: { name: 'demo/helper:v1', registry: closed.url } });
    // A registry named in the request: one message for every way of not reaching it (no port probing).
    expect(unreachable).toMatchObject({ status: 502, body: { code: 'upstream_error', docs: '/docs/errors#upstream_error', error: `registry ${new URL(closed.url).host} could not be reached` } });

    // A registry that answers the API but offers no catalog.
    const noCatalog = await listenLoopback((req, res) => {
      res.writeHead(req.url === '/v2/' ? 200 : 404, { 'content-type': 'application/json' }).end(req.url === '/v2/' ? '{}' : '{"errors":[{"code":"UNSUPPORTED"}]}');
    });
    try {
      const search = await b.call('GET', `/v1/registry/search?registry=${encodeURIComponent(noCatalog.url)}`);
      expect(search.status).toBe(502);
      expect(search.body).toEqual({
        code: 'upstream_error',
        docs: '/docs/errors#upstream_error',
        error: `registry ${new URL(noCatalog.url).host} offers no catalog (GET /v2/_catalog answered HTTP 404); search needs the catalog, pull by name instead`,
      });
    } finally {
      await noCatalog.close();
    }

    const otherRegistry = await b.call('POST', '/v1/registry/pull', { token: aliceToken, body: { name: 'demo/helper:v1', registry: 'http://127.0.0.1:9' } });
    expect(otherRegistry.status).toBe(403);
  });

  it('fails a pull whose blob was tampered with, and keeps nothing of it', async () => {
    const id = await build(a, 'demo/tampered', 'v1');
    expect((await a.call('POST', '/v1/registry/push', { body: { image: 'demo/tampered:v1' } })).status).toBe(200);
    const proxy = await startProxy(registry.url, {
      rewriteBody: (req, body) => (req.method === 'GET' && req.url?.includes('/blobs/') ? Buffer.from(body.toString('utf8').replace('calculator', 'calculat0r')) : undefined),
    });
    try {
      const plain = await b.call('POST', '/v1/registry/pull', { body: { name: 'demo/tampered:v1', registry: proxy.url } });
      expect(plain.status).toBe(502);
      expect(plain.body.code).toBe('upstream_error');
      expect(plain.body.error).toMatch(/^digest mismatch: blob from 127\.0\.0\.1:\d+\/demo\/tampered is sha256:/);
      const streamed = await b.call('POST', '/v1/registry/pull', { body: { name: 'demo/tampered:v1', registry: proxy.url }, accept: NDJSON });
      expect(streamed.status).toBe(200);
      expect(streamed.body.at(-1)).toMatchObject({ code: 'upstream_error', error: expect.stringMatching(/^digest mismatch/) });
      expect((await b.call('GET', '/v1/images/demo%2Ftampered:v1')).status).toBe(404);
      expect((await b.api.store.getImage(id))).toBeNull();
    } finally {
      await proxy.close();
    }
  });

  it('cancels a pull when the client hangs up: the registry request is dropped and nothing is stored', async () => {
    const id = await build(a, 'demo/slowpull', 'v1');
    expect((await a.call('POST', '/v1/registry/push', { body: { image: 'demo/slowpull:v1' } })).status).toBe(200);
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    // Holds back every blob download: the manifest comes through, the config does not.
    const proxy = await startProxy(registry.url, { beforeForward: (req) => (req.url?.includes('/blobs/') ? gate : undefined) });
    try {
      const res = await request(`${b.server.url}/v1/registry/pull`, {
        method: 'POST',
        headers: { authorization: `Bearer ${b.adminToken}`, accept: NDJSON, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'demo/slowpull:v1', registry: proxy.url }),
      });
      expect(res.statusCode).toBe(200);
      const reader = new LineReader(res.body);
      // Progress arrives while the transfer is still running.
      expect(await reader.until((l) => l.kind === 'manifest' && l.status === 'verified')).toMatchObject({ digest: id });
      await reader.until((l) => l.kind === 'config' && l.status === 'downloading');
      res.body.destroy();
      await waitFor(() => proxy.abandoned.some((line) => line.startsWith('GET /v2/demo/slowpull/blobs/')), 'the server to drop the blob request');
      release();
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(await b.api.store.getImage(id)).toBeNull();
      expect((await b.call('GET', '/v1/images/demo%2Fslowpull:v1')).status).toBe(404);
    } finally {
      release();
      await proxy.close();
    }
  });

  it('cancels a push when the client hangs up: the manifest is never put, so no tag appears', async () => {
    await build(a, 'demo/slowpush', 'v1');
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const proxy = await startProxy(registry.url, { beforeForward: (req) => (req.method === 'PUT' && req.url?.includes('/manifests/') ? gate : undefined) });
    try {
      const res = await request(`${a.server.url}/v1/registry/push`, {
        method: 'POST',
        headers: { authorization: `Bearer ${a.adminToken}`, accept: NDJSON, 'content-type': 'application/json' },
        body: JSON.stringify({ image: 'demo/slowpush:v1', registry: proxy.url }),
      });
      const reader = new LineReader(res.body);
      await reader.until((l) => l.kind === 'manifest' && l.status === 'uploading');
      expect(reader.lines.filter((l) => l.status === 'verified').map((l) => l.kind)).toEqual(['config', 'layer']);
      res.body.destroy();
      await waitFor(() => proxy.abandoned.some((line) => line.startsWith('PUT /v2/demo/slowpush/manifests/v1')), 'the server to drop the manifest upload');
      release();
      await new Promise((resolve) => setTimeout(resolve, 200));
      const client = new RegistryClient({ url: registry.url });
      try {
        await expect(client.getManifest('demo/slowpush', 'v1')).rejects.toMatchObject({ code: 'not_found' });
      } finally {
        await client.close();
      }
    } finally {
      release();
      await proxy.close();
    }
  });
});

describe('registry routes against docker-registry with htpasswd basic auth', () => {
  let registry: RunningRegistry;
  let a: Node;
  let b: Node;

  beforeAll(async () => {
    registry = await startDockerRegistry({ htpasswd: { username: 'robot', password: 'robot-registry-pass' } });
    [a, b] = await Promise.all([startNode({ url: registry.url, username: 'robot', password: 'robot-registry-pass' }), startNode({ allowPrivateHosts: true })]);
  });

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await registry?.stop();
  });

  it('pushes with the configured credentials; another server pulls with per-request credentials', async () => {
    const id = await build(a, 'private/helper', 'v2');
    expect((await a.call('POST', '/v1/registry/push', { body: { image: 'private/helper:v2' } })).body).toMatchObject({ digest: id, status: 'pushed' });
    expect((await a.call('GET', '/v1/registry/search?query=private')).body.results.map((r: any) => r.name)).toEqual(['private/helper']);

    // b's default registry is its embedded one; it names this registry per request.
    const anonymous = await b.call('POST', '/v1/registry/pull', { body: { name: `${registry.host}/private/helper:v2` } });
    expect(anonymous.status).toBe(502);
    expect(anonymous.body).toEqual({
      code: 'upstream_error',
      docs: '/docs/errors#upstream_error',
      error: `registry ${registry.host} refused anonymous access (HTTP 401 from GET /v2/private/helper/manifests/v2); give credentials`,
    });
    const wrong = await b.call('POST', '/v1/registry/pull', { body: { name: `${registry.host}/private/helper:v2`, credentials: { username: 'robot', password: 'guess' } } });
    expect(wrong.status).toBe(502);
    expect(wrong.body.error).toMatch(new RegExp(`^registry ${registry.host} refused the credentials`));
    expect(JSON.stringify(wrong.body)).not.toContain('guess');

    const pulled = await b.call('POST', '/v1/registry/pull', {
      body: { name: `${registry.host}/private/helper:v2`, credentials: { username: 'robot', password: 'robot-registry-pass' } },
    });
    expect(pulled.status).toBe(200);
    // Pulled from a registry b does not use by default: kept under its full reference.
    expect(pulled.body).toMatchObject({ name: `${registry.host}/private/helper`, tag: 'v2', digest: id, status: 'pulled', registry: registry.host });
    const agent = await b.call('POST', '/v1/agents', { body: { image: `${registry.host}/private/helper:v2` } });
    expect(agent.body.image_id).toBe(id);
  });

  it('the embedded registry works with no set-up at all', async () => {
    const id = await build(b, 'local/thing', 'v1');
    expect((await b.call('POST', '/v1/registry/push', { body: { image: 'local/thing:v1' } })).body).toEqual({ name: 'local/thing', tag: 'v1', digest: id, status: 'pushed', registry: 'embedded' });
    expect((await b.call('DELETE', '/v1/images/local%2Fthing:v1')).status).toBe(204);
    expect((await b.call('POST', '/v1/registry/pull', { body: { name: 'local/thing:v1' } })).body).toMatchObject({ digest: id, status: 'pulled', registry: 'embedded' });
    expect((await b.call('GET', '/v1/registry/search?query=local')).body).toMatchObject({ total: 1, results: [{ name: 'local/thing', digest: id }] });
  });
});
