import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSentinelError, type HttpFetchToolOptions, type SentinelError } from '@sentinel/api-core';
import { createHttpFetchTool } from '../src/tools/http-fetch.js';
import { HostAllowList, isPrivateAddress, resolveAllowedAddresses } from '../src/tools/net-policy.js';
import { ToolSet } from '../src/tools/tool-set.js';

let server: Server;
let port: number;
let base: string;
const sockets = new Set<Socket>();
const seen: { path: string; method: string; headers: IncomingHttpHeaders }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push({ path: req.url ?? '', method: req.method ?? '', headers: req.headers });
    const path = req.url ?? '/';
    if (path === '/page') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<h1>Hello, fetch — ünïcode</h1>');
    } else if (path === '/latin1') {
      res.writeHead(200, { 'content-type': 'text/plain; charset=iso-8859-1' });
      res.end(Buffer.from([0x63, 0x61, 0x66, 0xe9]));
    } else if (path === '/big') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('x'.repeat(2 * 1024 * 1024));
    } else if (path === '/quotes') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('"\n'.repeat(5000));
    } else if (path === '/image') {
      res.writeHead(200, { 'content-type': 'image/png' });
      res.end(Buffer.alloc(64, 0x89));
    } else if (path === '/redirect-ok') {
      res.writeHead(302, { location: '/page' });
      res.end();
    } else if (path === '/redirect-out') {
      res.writeHead(301, { location: 'http://internal.example.net/secrets' });
      res.end();
    } else if (path === '/redirect-to-ip') {
      res.writeHead(307, { location: `http://127.0.0.1:${port}/page` });
      res.end();
    } else if (path.startsWith('/loop')) {
      res.writeHead(302, { location: `/loop${path.length}` });
      res.end();
    } else if (path === '/slow') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial');
      // Never ends: the tool's time cap must.
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('no such page');
    }
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function fetchWith(options: HttpFetchToolOptions) {
  const tools = new ToolSet().register(createHttpFetchTool(options));
  return (params: Record<string, unknown>, signal = new AbortController().signal) => tools.run('http_fetch', params, { signal, timeoutMs: 10_000 });
}

const LOCAL: HttpFetchToolOptions = { allowHosts: ['127.0.0.1'], allowPrivateAddresses: true };

async function failure(promise: Promise<unknown>): Promise<SentinelError> {
  try {
    await promise;
  } catch (err) {
    if (isSentinelError(err)) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

describe('address policy', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.255.0.9', true],
    ['10.1.2.3', true],
    ['172.16.0.1', true],
    ['172.31.255.255', true],
    ['172.32.0.1', false],
    ['192.168.1.1', true],
    ['169.254.169.254', true],
    ['100.64.0.1', true],
    ['0.0.0.0', true],
    ['224.0.0.1', true],
    ['255.255.255.255', true],
    ['8.8.8.8', false],
    ['93.184.216.34', false],
    ['::1', true],
    ['::', true],
    ['[::1]', true],
    ['::ffff:127.0.0.1', true],
    ['::ffff:7f00:1', true],
    ['::ffff:8.8.8.8', false],
    ['fc00::1', true],
    ['fd12:3456::1', true],
    ['fe80::1%eth0', true],
    ['ff02::1', true],
    ['64:ff9b::10.0.0.1', true],
    ['64:ff9b::8.8.8.8', false],
    ['2002:c0a8:0101::1', true],
    ['2001:db8::1', true],
    ['2606:4700:4700::1111', false],
    ['not-an-ip', true],
  ])('%s private: %s', (address, expected) => {
    expect(isPrivateAddress(address)).toBe(expected);
  });

  it('matches exact hosts, *.suffix subdomains (not the bare domain) and *', () => {
    const list = new HostAllowList(['Example.com', '*.docs.example.org', '127.0.0.1', '[::1]']);
    expect(list.allows('example.com')).toBe(true);
    expect(list.allows('EXAMPLE.com.')).toBe(true);
    expect(list.allows('www.example.com')).toBe(false);
    expect(list.allows('a.docs.example.org')).toBe(true);
    expect(list.allows('a.b.docs.example.org')).toBe(true);
    expect(list.allows('docs.example.org')).toBe(false);
    expect(list.allows('evildocs.example.org')).toBe(false);
    expect(list.allows('[::1]')).toBe(true);
    expect(list.allows('127.0.0.1')).toBe(true);
    expect(new HostAllowList(['*']).allows('anything.example')).toBe(true);
    expect(new HostAllowList([]).isEmpty).toBe(true);
    expect(() => new HostAllowList(['http://example.com/path'])).toThrow(/is not a host name/);
  });

  it('refuses a name when any of its addresses is private (one is enough to be dialled)', async () => {
    const resolver = async () => [
      { address: '93.184.216.34', family: 4 as const },
      { address: '10.0.0.5', family: 4 as const },
    ];
    const err = await failure(resolveAllowedAddresses('mixed.example', { resolver, what: 'http_fetch' }));
    expect(err.code).toBe('forbidden');
    expect(err.message).toBe('http_fetch: mixed.example resolves to 10.0.0.5, a loopback, private or link-local address; refused');
    expect(await resolveAllowedAddresses('mixed.example', { resolver, allowPrivateAddresses: true })).toHaveLength(2);
  });
});

describe('http_fetch', () => {
  it('is off until hosts are allowed', async () => {
    const err = await failure(fetchWith({})({ url: `${base}/page` }));
    expect(err.message).toBe('http_fetch is not enabled on this server (set --http-fetch-allow-hosts)');
  });

  it('fetches an allowed host and returns url, status, content type and text', async () => {
    const result = await fetchWith(LOCAL)({ url: `${base}/page` });
    expect(result).toEqual({ url: `${base}/page`, status: 200, content_type: 'text/html; charset=utf-8', body: '<h1>Hello, fetch — ünïcode</h1>', truncated: false });
    expect(seen.at(-1)?.headers['user-agent']).toMatch(/^SentinelStacks-http_fetch/);
  });

  it('decodes the declared charset, reports non-2xx statuses as results, and HEAD returns no body', async () => {
    const fetch = fetchWith(LOCAL);
    expect(await fetch({ url: `${base}/latin1` })).toMatchObject({ body: 'café' });
    expect(await fetch({ url: `${base}/missing` })).toMatchObject({ status: 404, body: 'no such page' });
    expect(await fetch({ url: `${base}/page`, method: 'HEAD' })).toMatchObject({ status: 200, body: '', truncated: false });
    expect(seen.at(-1)?.method).toBe('HEAD');
  });

  it('refuses loopback and private addresses unless allowed', async () => {
    const err = await failure(fetchWith({ allowHosts: ['127.0.0.1'] })({ url: `${base}/page` }));
    expect(err.code).toBe('forbidden');
    expect(err.message).toBe('http_fetch: 127.0.0.1 is a loopback, private or link-local address; refused');
  });

  it('refuses hosts outside the list, other schemes and URLs with credentials', async () => {
    const fetch = fetchWith(LOCAL);
    expect((await failure(fetchWith({ allowHosts: ['example.com'] })({ url: `${base}/page` }))).message).toBe("http_fetch: host 127.0.0.1 is not in this server's allow-list");
    expect((await failure(fetch({ url: 'file:///etc/passwd' }))).message).toBe('http_fetch: only http and https URLs can be fetched, not file:');
    expect((await failure(fetch({ url: `http://user:pw@127.0.0.1:${port}/page` }))).message).toBe('http_fetch: URLs with credentials are refused');
    expect((await failure(fetch({ url: 'not a url' }))).code).toBe('invalid_request');
    expect((await failure(fetch({ url: `${base}/page`, method: 'POST' }))).code).toBe('invalid_request');
  });

  it('follows redirects within the list and checks every hop', async () => {
    const fetch = fetchWith(LOCAL);
    expect(await fetch({ url: `${base}/redirect-ok` })).toMatchObject({ url: `${base}/page`, status: 200, body: '<h1>Hello, fetch — ünïcode</h1>' });
    const out = await failure(fetch({ url: `${base}/redirect-out` }));
    expect(out.message).toBe("http_fetch: host internal.example.net is not in this server's allow-list");
    const loop = await failure(fetch({ url: `${base}/loop` }));
    expect(loop.message).toBe('http_fetch: more than 5 redirects');
    // A listed name that redirects to a private address is refused at that hop.
    const resolver = async () => [{ address: '127.0.0.1', family: 4 as const }];
    const viaName = fetchWith({ allowHosts: ['*.test', '127.0.0.1'], allowPrivateAddresses: false, resolver });
    expect((await failure(viaName({ url: `http://start.test:${port}/redirect-to-ip` }))).code).toBe('forbidden');
  });

  it('connects to the address it checked, not to a second DNS answer', async () => {
    // "pinned.test" resolves nowhere but through this resolver: reaching the server proves the pin.
    const resolver = async (host: string) => (host === 'pinned.test' ? [{ address: '127.0.0.1', family: 4 as const }] : []);
    const result = await fetchWith({ allowHosts: ['*.test', 'pinned.test'], allowPrivateAddresses: true, resolver })({ url: `http://pinned.test:${port}/page` });
    expect(result).toMatchObject({ status: 200, url: `http://pinned.test:${port}/page` });
    expect(seen.at(-1)?.headers.host).toBe(`pinned.test:${port}`);
  });

  it('caps the size (truncated) and the time', async () => {
    const big = (await fetchWith({ ...LOCAL, maxBytes: 1000 })({ url: `${base}/big` })) as { body: string; truncated: boolean };
    expect(big.body).toHaveLength(1000);
    expect(big.truncated).toBe(true);
    // The default caps keep the result inside the tool registry's 100000-character limit.
    const fitted = (await fetchWith(LOCAL)({ url: `${base}/big` })) as { body: string; truncated: boolean };
    expect(JSON.stringify(fitted).length).toBeLessThan(100_000);
    expect(fitted.truncated).toBe(true);
    const escaped = (await fetchWith(LOCAL)({ url: `${base}/quotes` })) as { body: string };
    expect(JSON.stringify(escaped.body).length).toBeLessThanOrEqual(60_000);
    const started = Date.now();
    const slow = await failure(fetchWith({ ...LOCAL, timeoutMs: 300 })({ url: `${base}/slow` }));
    expect(slow.message).toBe('http_fetch: no complete answer from 127.0.0.1:' + port + ' within 300 ms');
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('does not return binary bodies', async () => {
    expect(await fetchWith(LOCAL)({ url: `${base}/image` })).toMatchObject({ status: 200, content_type: 'image/png', body: '', note: 'the body is not text and was not returned' });
  });

  it("stops when the caller's signal aborts", async () => {
    const controller = new AbortController();
    const pending = fetchWith(LOCAL)({ url: `${base}/slow` }, controller.signal);
    setTimeout(() => controller.abort(), 50);
    const err = await failure(pending);
    expect(err.message).toBe('tool http_fetch was cancelled');
  });
});
