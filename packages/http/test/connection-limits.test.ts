/**
 * Connection guards of the standalone server, with real raw TCP sockets: a connection that sends
 * nothing is closed within the header timeout (under TLS one that never starts its handshake was
 * held for Node's 120 s handshake timeout); the caps per address and overall close extra
 * connections at accept instead of running out of descriptors, and never touch connections in use.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { listen, type ListenOptions, type RunningServer } from '@sentinel/api-http';
import { createFixtureApi } from './fixture-api.js';
import { closedByPeer, connect, readResponse } from './raw-http.js';

const running: RunningServer[] = [];
const sockets: net.Socket[] = [];

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(running.splice(0).map((server) => server.close()));
});

async function start(options: ListenOptions): Promise<RunningServer> {
  const server = await listen(createFixtureApi().api, { port: 0, host: '127.0.0.1', logRequests: false, shutdownTimeoutMs: 500, ...options });
  running.push(server);
  return server;
}

async function open(server: RunningServer): Promise<net.Socket> {
  const socket = await connect(server.url);
  sockets.push(socket);
  return socket;
}

/** One keep-alive GET /v1/health on `socket`; resolves with the status. */
async function health(socket: net.Socket): Promise<number> {
  const reply = readResponse(socket, 3_000);
  socket.write('GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  return (await reply).status;
}

/** Whether the peer closes `socket` within `ms`, and what it sent before. */
async function watchClose(socket: net.Socket, ms: number): Promise<{ closed: boolean; received: string }> {
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
  const closed = await Promise.race([closedByPeer(socket).then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms))]);
  return { closed, received };
}

/** True when the peer closes `socket` within `ms` without sending a byte (refused at accept). */
async function closedWithin(socket: net.Socket, ms: number): Promise<boolean> {
  const { closed, received } = await watchClose(socket, ms);
  expect(received).toBe('');
  return closed;
}

/** A silent connection ends within `ms`: Node answers 408 and closes (a TLS one may just be cut). */
async function timedOut(socket: net.Socket, ms: number): Promise<void> {
  const { closed, received } = await watchClose(socket, ms);
  expect(closed).toBe(true);
  if (received !== '') expect(received).toMatch(/^HTTP\/1\.1 408 /);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function openConnectionsOf(server: RunningServer): Promise<number> {
  return new Promise((resolve, reject) => server.server.getConnections((err, count) => (err ? reject(err) : resolve(count))));
}

describe('idle connections', () => {
  it('closes a connection that sends nothing within the header timeout', async () => {
    const server = await start({ headersTimeout: 300, requestTimeout: 2_000 });
    const silent = await open(server);
    const started = Date.now();
    await timedOut(silent, 3_000);
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(2_000);
    await sleep(50);
    expect(await openConnectionsOf(server)).toBe(0);
  });

  it('keeps a keep-alive connection in use past the header timeout, and a slow request in flight', async () => {
    const server = await start({ headersTimeout: 300, requestTimeout: 5_000, keepAliveTimeout: 2_000 });
    const busy = await open(server);
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      statuses.push(await health(busy));
      await sleep(150);
    }
    // About a second on one connection: three header timeouts, all requests answered.
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200]);

    const slow = await open(server);
    const reply = readResponse(slow, 5_000);
    slow.write('GET /v1/slow?ms=900 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    expect((await reply).status).toBe(200);
    expect(await health(slow)).toBe(200);
    expect(busy.destroyed).toBe(false);
  });

});

describe('connection caps', () => {
  it('over the per-address cap new connections close at once; the others keep working; freed slots are reused', async () => {
    const server = await start({ maxConnectionsPerAddress: 3 });
    const held = [await open(server), await open(server), await open(server)];
    for (const socket of held) expect(await health(socket)).toBe(200);

    const extra = await open(server);
    const started = Date.now();
    expect(await closedWithin(extra, 2_000)).toBe(true);
    expect(Date.now() - started).toBeLessThan(1_000);
    for (const socket of held) expect(await health(socket)).toBe(200);

    held[0]?.destroy();
    await sleep(100);
    const next = await open(server);
    expect(await health(next)).toBe(200);
    // Still at the cap: the next one is refused again.
    expect(await closedWithin(await open(server), 2_000)).toBe(true);
  });

  it('counts addresses separately', async () => {
    const server = await start({ maxConnectionsPerAddress: 1, host: '::' });
    const { port } = server.server.address() as AddressInfo;
    const v4 = await connect(`http://127.0.0.1:${port}`);
    sockets.push(v4);
    expect(await health(v4)).toBe(200);
    const connectV6 = () =>
      new Promise<net.Socket | undefined>((resolve) => {
        const socket = net.connect({ host: '::1', port }, () => resolve(socket));
        socket.once('error', () => resolve(undefined));
      });
    const v6 = await connectV6();
    if (v6 === undefined) return; // no IPv6 loopback on this machine: the IPv4 half still ran
    sockets.push(v6);
    expect(await health(v6)).toBe(200);
    const secondV6 = await connectV6();
    expect(secondV6).toBeDefined();
    sockets.push(secondV6 as net.Socket);
    expect(await closedWithin(secondV6 as net.Socket, 2_000)).toBe(true);
    expect(await health(v4)).toBe(200);
  });

  it('over the overall cap new connections close at once; the others keep working', async () => {
    const server = await start({ maxConnections: 2 });
    const held = [await open(server), await open(server)];
    for (const socket of held) expect(await health(socket)).toBe(200);
    expect(await closedWithin(await open(server), 2_000)).toBe(true);
    for (const socket of held) expect(await health(socket)).toBe(200);
    held[1]?.destroy();
    await sleep(100);
    expect(await health(await open(server))).toBe(200);
  });

  it('refuses caps that are not positive integers', async () => {
    await expect(start({ maxConnections: 0 })).rejects.toThrow(/maxConnections must be a positive integer/);
    await expect(start({ maxConnectionsPerAddress: 1.5 })).rejects.toThrow(/maxConnectionsPerAddress must be a positive integer/);
  });
});

describe('idle connections under TLS', () => {
  function certificate(): { cert: string; key: string } {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sentinel-guard-tls-'));
    try {
      const certFile = path.join(dir, 'cert.pem');
      const keyFile = path.join(dir, 'key.pem');
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
      return { cert: fs.readFileSync(certFile, 'utf8'), key: fs.readFileSync(keyFile, 'utf8') };
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  function secureConnect(server: RunningServer): Promise<tls.TLSSocket> {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port: server.port, rejectUnauthorized: false }, () => resolve(socket));
      socket.once('error', reject);
      sockets.push(socket);
    });
  }

  it('closes a connection that never starts the handshake, and one that completes it but sends no request; serves one that does', async () => {
    const server = await start({ tls: certificate(), headersTimeout: 300, requestTimeout: 2_000, keepAliveTimeout: 2_000 });
    const silentTcp = await open(server);
    const handshakeOnly = await secureConnect(server);
    const started = Date.now();
    // Before the handshake only handshakeTimeout applies (Node's default: 120 s).
    await timedOut(silentTcp, 3_000);
    await timedOut(handshakeOnly as net.Socket, 3_000);
    expect(Date.now() - started).toBeLessThan(2_500);

    const busy = await secureConnect(server);
    for (let i = 0; i < 4; i++) {
      expect(await health(busy as net.Socket)).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(busy.destroyed).toBe(false);
  });
});
