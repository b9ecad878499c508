/**
 * The standalone server: HTTPS, port selection, listen errors, timeouts, graceful close.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import type { IncomingMessage } from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { createServer, listen, statusForErrorCode, type RunningServer } from '@sentinel/api-http';
import { ERROR_CODES } from '@sentinel/api-core';
import { createFixtureApi, USER_TOKEN } from './fixture-api.js';
import { closedByPeer, connect, readResponse } from './raw-http.js';

let tempDir: string;
let tls: { cert: string; key: string };
const running: RunningServer[] = [];

beforeAll(() => {
  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sentinel-http-tls-'));
  const certFile = path.join(tempDir, 'cert.pem');
  const keyFile = path.join(tempDir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', keyFile, '-out', certFile,
  ], { stdio: 'ignore' });
  tls = { cert: fs.readFileSync(certFile, 'utf8'), key: fs.readFileSync(keyFile, 'utf8') };
});

afterAll(() => {
  fs.rmSync(tempDir, { recursive: true, force: true });
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((server) => server.close()));
});

async function start(options: Parameters<typeof listen>[1] = {}) {
  const fixture = createFixtureApi();
  const server = await listen(fixture.api, { port: 0, host: '127.0.0.1', ...options });
  running.push(server);
  return { ...fixture, server };
}

/** Resolves once the server has received a request (its handler is now in flight). */
function nextRequestArrives(server: RunningServer): Promise<IncomingMessage> {
  return new Promise((resolve) => server.server.once('request', resolve));
}

describe('listen', () => {
  it('serves HTTPS with the given certificate, and tells handlers the origin is secure', async () => {
    const { server } = await start({ tls });
    expect(server.url).toBe(`https://127.0.0.1:${server.port}`);
    const dispatcher = new Agent({ connect: { ca: tls.cert } });
    try {
      const res = await request(`${server.url}/v1/context`, { dispatcher, headers: { authorization: `Bearer ${USER_TOKEN}` } });
      expect(res.statusCode).toBe(200);
      expect(await res.body.json()).toMatchObject({ origin: { secure: true, host: `127.0.0.1:${server.port}` } });
    } finally {
      await dispatcher.close();
    }
  });

  it('picks a free port for 0 and reports the bound address', async () => {
    const { server } = await start();
    expect(server.port).toBeGreaterThan(0);
    expect(server.host).toBe('127.0.0.1');
    expect(server.url).toBe(`http://127.0.0.1:${server.port}`);
    const res = await request(`${server.url}/v1/health`);
    expect(await res.body.json()).toEqual({ status: 'ok' });
  });

  it('binds localhost by default and brackets an IPv6 address in the url', async () => {
    const { server } = await start({ host: undefined });
    expect(['127.0.0.1', '::1']).toContain(server.host);
    expect(server.url).toBe(server.host === '::1' ? `http://[::1]:${server.port}` : `http://127.0.0.1:${server.port}`);
  });

  it('rejects with the original EADDRINUSE error when the port is taken', async () => {
    const { server } = await start();
    const taken = listen(createFixtureApi().api, { port: server.port, host: '127.0.0.1' });
    await expect(taken).rejects.toMatchObject({ code: 'EADDRINUSE' });
  });
});

describe('createServer', () => {
  it('sets protective timeouts by default and takes overrides', () => {
    const { api } = createFixtureApi();
    const server = createServer(api);
    expect(server.headersTimeout).toBe(15_000);
    expect(server.requestTimeout).toBe(60_000);
    expect(server.keepAliveTimeout).toBe(5_000);
    expect(server.maxHeadersCount).toBe(100);

    const tuned = createServer(api, { headersTimeout: 2_000, requestTimeout: 10_000, keepAliveTimeout: 1_000 });
    expect([tuned.headersTimeout, tuned.requestTimeout, tuned.keepAliveTimeout]).toEqual([2_000, 10_000, 1_000]);
  });

  it('drops requests whose headers arrive too slowly', async () => {
    const { api } = createFixtureApi();
    const server = createServer(api, { headersTimeout: 300, requestTimeout: 300 });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const socket = await connect(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`);
      socket.write('GET /v1/health HTTP/1.1\r\nHost: localhost\r\n'); // never finishes the headers
      const started = Date.now();
      await closedByPeer(socket);
      expect(Date.now() - started).toBeLessThan(5_000);
      socket.destroy();
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('listener options', () => {
  it('applies maxBodyBytes to routes without their own cap', async () => {
    const { server } = await start({ maxBodyBytes: 100 });
    const headers = { authorization: `Bearer ${USER_TOKEN}`, 'content-type': 'application/json' };
    const fits = await request(`${server.url}/v1/echo`, { method: 'POST', headers, body: JSON.stringify({ pad: 'x'.repeat(80) }) });
    expect(fits.statusCode).toBe(200);
    await fits.body.dump();
    const over = await request(`${server.url}/v1/echo`, { method: 'POST', headers, body: JSON.stringify({ pad: 'x'.repeat(100) }) });
    expect(over.statusCode).toBe(413);
    expect(await over.body.json()).toEqual({ error: 'request body exceeds 100 bytes', code: 'payload_too_large', docs: '/docs/errors#payload_too_large' });
  });

  const forwarded = {
    authorization: `Bearer ${USER_TOKEN}`,
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'api.example.com',
    'x-forwarded-for': '203.0.113.7, 10.0.0.1',
  };

  it('ignores X-Forwarded-* by default', async () => {
    const { server } = await start();
    const res = await request(`${server.url}/v1/context`, { headers: forwarded });
    expect(await res.body.json()).toMatchObject({ origin: { secure: false, host: `127.0.0.1:${server.port}` }, remote: '127.0.0.1' });
  });

  it('believes X-Forwarded-* (the right-most hop, the one our proxy appended) with trustProxy', async () => {
    const { server, logLines } = await start({ trustProxy: true });
    const res = await request(`${server.url}/v1/context`, { headers: { ...forwarded, 'x-request-id': 'proxied-1' } });
    // 203.0.113.7 is what the client claimed; 10.0.0.1 is what the proxy saw.
    expect(await res.body.json()).toMatchObject({ origin: { secure: true, host: 'api.example.com' }, remote: '10.0.0.1' });
    await expect.poll(() => logLines.find((l) => l.request_id === 'proxied-1' && l.msg === 'request')?.remote).toBe('10.0.0.1');
  });

  it('falls back to the local address when the Host header is not a plain host', async () => {
    const { server } = await start();
    const socket = await connect(server.url);
    try {
      socket.write(`GET /v1/context HTTP/1.1\r\nHost: evil.example/<script>\r\nAuthorization: Bearer ${USER_TOKEN}\r\n\r\n`);
      const res = await readResponse(socket);
      expect(JSON.parse(res.body)).toMatchObject({ origin: { host: `127.0.0.1:${server.port}` } });
    } finally {
      socket.destroy();
    }
  });
});

describe('close', () => {
  it('lets an in-flight request finish, refuses new connections, then resolves', async () => {
    const { server, slowOutcomes } = await start();
    const arrived = nextRequestArrives(server);
    const inFlight = request(`${server.url}/v1/slow?ms=400`, { headers: { 'x-request-id': 'graceful-1' } });
    await arrived;

    let closed = false;
    const closing = server.close().then(() => {
      closed = true;
    });
    const refused = await new Promise<string | undefined>((resolve) => {
      const socket = net.connect(server.port, '127.0.0.1', () => resolve('connected'));
      socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code));
    });
    expect(refused).toBe('ECONNREFUSED');

    const res = await inFlight;
    expect(res.statusCode).toBe(200);
    expect(res.headers.connection).toBe('close');
    expect(await res.body.json()).toEqual({ waited: true });
    expect(slowOutcomes.get('graceful-1')).toEqual({ aborted: false });
    await closing;
    expect(closed).toBe(true);
  });

  it('closes idle keep-alive connections at once instead of waiting for their timeout', async () => {
    const { server } = await start();
    const socket = await connect(server.url);
    try {
      socket.write('GET /v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n');
      const res = await readResponse(socket);
      expect(res.status).toBe(200);
      expect(socket.destroyed).toBe(false);

      const started = Date.now();
      await Promise.all([server.close(), closedByPeer(socket)]);
      expect(Date.now() - started).toBeLessThan(2_000); // keepAliveTimeout is 5 s
    } finally {
      socket.destroy();
    }
  });

  it('cuts requests still running after shutdownTimeoutMs and aborts their signal', async () => {
    const { server, slowOutcomes } = await start({ shutdownTimeoutMs: 200 });
    const arrived = nextRequestArrives(server);
    const inFlight = request(`${server.url}/v1/slow?ms=20000`, { headers: { 'x-request-id': 'cut-1' } });
    inFlight.catch(() => {});
    await arrived;

    const started = Date.now();
    await server.close();
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(150);
    expect(elapsed).toBeLessThan(3_000);
    await expect(inFlight).rejects.toThrow();
    await expect.poll(() => slowOutcomes.get('cut-1')).toEqual({ aborted: true });
  });

  it('is idempotent and leaves the api open for its owner', async () => {
    const fixture = createFixtureApi();
    let apiClosed = false;
    fixture.api.close = async () => {
      apiClosed = true;
    };
    const server = await listen(fixture.api, { port: 0, host: '127.0.0.1' });
    const first = server.close();
    expect(server.close()).toBe(first);
    await first;
    expect(apiClosed).toBe(false);
    expect(server.server.listening).toBe(false);
  });
});

describe('statusForErrorCode', () => {
  it('maps every core error code to its documented status', () => {
    const expected: Record<string, number> = {
      invalid_request: 400, unauthorized: 401, forbidden: 403, insufficient_scope: 403, not_found: 404, method_not_allowed: 405, conflict: 409,
      payload_too_large: 413, unsupported_media_type: 415, rate_limited: 429, quota_exceeded: 429, agent_busy: 429, approval_timeout: 408, idempotency_conflict: 409, interrupted: 503, upstream_error: 502,
      upstream_timeout: 504, unavailable: 503, internal: 500,
    };
    expect(Object.fromEntries(ERROR_CODES.map((code) => [code, statusForErrorCode(code)]))).toEqual(expected);
  });
});
